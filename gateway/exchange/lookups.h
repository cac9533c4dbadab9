// What the connectors share: their own lookups in the store (the gateway's, not a disclosure: no
// access decision, no audit record): ids from the search index without a Bundle written and read
// back, a resource's current JSON text; the clock; an answer's OperationOutcome as one line.
// Thread-safe (the store is).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "gateway/fhir/fhir_request.h"
#include "gateway/store/resource_store.h"

namespace passerelle::exchange {

// The ids of the `type` resources matching `query` (at most `count`); none when the query is not
// valid or the store fails.
std::vector<std::string> findIds(store::ResourceStore& store, const std::string& type, const fhir::Params& query, int count);
// The current JSON text of the `type` resources matching `query` (at most its _count, else
// `count`), in the query's order: the search's page without a Bundle written and read back.
std::vector<std::string> findBodies(store::ResourceStore& store, const std::string& type, const fhir::Params& query, int count = 50);
// The same inside a write unit (sees the unit's own writes; on the writer's connection, whose pages
// stay cached between commits). kInvalid when the query is not valid.
Result<std::vector<std::string>> findIds(store::WriteTxn& txn, const std::string& type, const fhir::Params& query, int count);

// The current JSON text of `ref` ("Type/id"); nullopt when absent, deleted or unreadable.
std::optional<std::string> currentBody(store::ResourceStore& store, const std::string& ref);

// A transaction Bundle (`body`) to POST at the FHIR base, with the received message `row` kept in
// the write's commit when it succeeds (inserted, or updated when it has an id). `row` must outlive
// the request.
fhir::FhirRequest transactionKeeping(std::string body, store::InboxMessage& row);

// Milliseconds since the epoch.
std::int64_t nowMs();

// An OperationOutcome's issues as one line ("expression: diagnostics; ..."), or the start of
// `body` when it is not one.
std::string outcomeText(const std::string& body);

}  // namespace passerelle::exchange
