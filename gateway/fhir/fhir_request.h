// A FHIR REST request and response as the service sees them, independent of the HTTP server.
#pragma once

#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "gateway/common/status.h"
#include "gateway/identity/principal.h"

namespace passerelle::store {
class WriteTxn;
}

namespace passerelle::fhir {

class AccessGuard;

using Params = std::vector<std::pair<std::string, std::string>>;  // decoded, in order

struct FhirRequest {
  std::string method;       // GET, POST, PUT, DELETE, ...
  std::string path;         // below the FHIR base, e.g. "/Patient/123/_history/2"
  Params query;             // the URL's query parameters
  std::string body;
  std::string contentType;  // the Content-Type header, as sent
  std::string accept;
  std::string ifMatch;
  std::string ifNoneExist;
  std::string prefer;
  std::string baseUrl;      // e.g. "https://gw.example/fhir", no trailing slash
  AccessGuard* guard = nullptr;  // the caller's access policy; null: the gateway itself (unrestricted)
  const identity::Principal* principal = nullptr;  // the verified caller (null with the guard)
  // Set by the gate: the audit record of this request, made inside a successful write's unit with
  // the status the answer will carry, and committed with that write (WriteTxn::attachAudit). The
  // service then sets *auditAttached; an answer of 2xx then means the record is durable with it.
  std::function<std::string(int status)> auditRecord;
  bool* auditAttached = nullptr;
  // Set by a connector: more to commit with a successful write (the received message in the
  // inbox), called inside the write's unit with the answer's status; an error undoes the write.
  std::function<Result<void>(store::WriteTxn&, int status)> alsoInUnit;
};

struct FhirResponse {
  int status = 200;
  std::string body;  // JSON text; empty for no body
  std::vector<std::pair<std::string, std::string>> headers;
};

}  // namespace passerelle::fhir
