// Seeing and reprocessing the message store: the outbox's deliveries (queued, sent, dead letters,
// cancelled) and the inbox's received messages. Served at /admin/v1 to system accounts and used by
// `passerelle outbox` and `passerelle inbox`.
#pragma once

#include <string>
#include <vector>

#include "connectors/http/rest_client.h"
#include "gateway/fhir/fhir_request.h"
#include "gateway/store/resource_store.h"

namespace passerelle::exchange {

// GET /outbox[?destination=&status=&_count=&before=], POST /outbox/{id}/retry,
// GET /inbox[?status=&_count=&message=true]. `request.path` is below /admin/v1. Never throws.
fhir::FhirResponse adminRequest(store::ResourceStore& store, const fhir::FhirRequest& request);

// A dead or cancelled delivery queued again (attempts from zero, due now). kNotFound, or kConflict
// when it is queued or sent.
Result<store::Delivery> retryDelivery(store::ResourceStore& store, std::int64_t id);

// `passerelle outbox list|dead-letters|retry ID` and `passerelle inbox list`: argv[0] is the
// subcommand's name. Returns the exit status.
int outboxCommand(int argc, char** argv);
int inboxCommand(int argc, char** argv);

// A client of the running gateway's admin API for `command` (e.g. "passerelle inbox"): `url` (else
// http://http.host:http.port of the configuration, from `configFile` and `sets`), `token` (else the
// environment's PASSERELLE_TOKEN). False, having said why on stderr, without a token or when the
// configuration cannot be read.
bool adminClientOptions(const std::string& command, const std::string& configFile, const std::vector<std::string>& sets, std::string url,
                        std::string token, http_client::Options& out);

}  // namespace passerelle::exchange
