// Moving a network's data from one store to another (`passerelle db copy`), typically from SQLite
// to PostgreSQL, and proving the copy: every version of every resource, the kept values, the
// received messages and the deliveries; the search rows are rebuilt on the target. The audit trail
// is a database of its own and is not part of it (`db copy --audit-to` moves it after the store,
// with audit::copyTrail()).
// Not thread-safe: one caller, with no gateway writing to either store meanwhile.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "gateway/common/status.h"
#include "gateway/store/resource_store.h"

namespace passerelle::app {

// What a store holds, read back from it: its counts and a digest of its versions.
struct StoreFingerprint {
  store::StoreStatus status;
  // SHA-256 (hex) over every version in (type, id, version) order (byte order), each as
  // "type|id|version|lastUpdatedMs|deleted(0/1)|method|<body length>:body\n".
  std::string digest;
};

// Reads every version of `s` (page by page) and counts what it holds.
Result<StoreFingerprint> fingerprintStore(store::ResourceStore& s);

// The differences between two fingerprints, one sentence each ("Patient: 3 current resources on
// the source, 2 on the target"); empty when they agree.
std::vector<std::string> compareFingerprints(const StoreFingerprint& source, const StoreFingerprint& target);

struct CopyOptions {
  // Versions (or messages) written per unit of work: one transaction each.
  int perUnit = 2000;
  // fhir.base_url: absolute references to this server are indexed as local ones.
  std::string baseUrl;
  // Receives a line every `progressEvery` versions copied, and at each step.
  std::function<void(const std::string&)> progress;
  std::int64_t progressEvery = 100000;
};

struct CopyReport {
  std::int64_t versions = 0, inbox = 0, deliveries = 0, meta = 0, indexed = 0;
  StoreFingerprint source, target;
  std::vector<std::string> differences;  // empty: verified
};

// Copies `from` into `to`, then reindexes `to` and compares both fingerprints (the report says
// what differs). Refused (kInvalid, nothing written) when `from` has migrations pending, holds audit
// records the trail has not taken yet, or when `to` holds resources or messages already. An error
// names the step that failed; what was written before it stays (the target is not empty then).
Result<CopyReport> copyStore(store::ResourceStore& from, store::ResourceStore& to, const CopyOptions& options);

}  // namespace passerelle::app
