// What the FHIR service asks the access policy while it handles one request. The gateway gives
// each request a guard built from the caller's verified identity; requests the gateway makes for
// itself (the network API's transactions) carry none and are not restricted.
// One guard serves one request on one thread.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "gateway/common/status.h"
#include "gateway/store/resource_store.h"

namespace passerelle::fhir {

enum class Interaction { kRead, kVread, kSearch, kHistory, kCreate, kUpdate, kDelete };

class AccessGuard {
 public:
  virtual ~AccessGuard() = default;
  // May the caller use `interaction` on `type` ("" for the whole system) at all? kForbidden otherwise.
  virtual Result<void> allowType(const std::string& type, Interaction interaction) = 0;
  // Conditions ANDed to a search over `type` so that it matches only what the caller may read
  // (empty: no restriction). Applied inside chains and _has too, so that nothing hidden shapes a result.
  virtual Result<std::vector<std::vector<store::Condition>>> readConstraint(const std::string& type) = 0;
  // Restricts a whole search: its own type and every chained and _has type (a type the caller may
  // not read matches nothing there).
  virtual Result<void> constrain(store::SearchQuery& query) = 0;
  // The resources of `found` the caller may read (same order), for read, vread, history and includes.
  virtual Result<std::vector<bool>> readable(const std::vector<store::ResourceVersion>& found) = 0;
  // May the caller write `body` as type/id (`old`: the current version, or null when there is none)?
  // `deleting`: the write is a deletion of `old`. kForbidden with the reason otherwise.
  virtual Result<void> allowWrite(const std::string& type, const std::string& id, std::string_view body,
                                  const store::ResourceVersion* old, bool deleting) = 0;
  // Patients created earlier in the same transaction count as the caller's own.
  virtual void createdPatient(const std::string& id) = 0;
  // What the answer contains or changed, for the audit record.
  virtual void touched(const store::ResourceVersion& v) = 0;
};

}  // namespace passerelle::fhir
