// The gate every request passes: identity (bearer token or client certificate), the access
// guard of the caller's role, the request itself, the break-glass notifications, and one audit
// record written before the answer leaves (fail closed: no record, no answer but 503). Also
// serves the audit trail as FHIR AuditEvent (/fhir/AuditEvent) to the roles allowed to read it.
// Thread-safe: one gate serves every request.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "gateway/access/access_control.h"
#include "gateway/audit/audit_log.h"
#include "gateway/fhir/fhir_service.h"
#include "gateway/http/http_server.h"
#include "gateway/identity/identity.h"

namespace passerelle::gate {

struct GateOptions {
  bool enabled = true;  // false: no identity, no policy, no audit (benchmark baselines only)
  std::string fhirBaseUrl;  // for the AuditEvent view (may be empty)
};

class AccessGate : public http::Gate {
 public:
  AccessGate(GateOptions options, identity::TokenVerifier* verifier, std::vector<identity::CertificateAccount> accounts,
             access::AccessControl* access, audit::AuditLog* audit, fhir::FhirService& fhir);
  ~AccessGate() override;
  fhir::FhirResponse handle(const http::Caller& caller, fhir::FhirRequest& request, const std::string& area,
                            const Serve& serve) override;

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

// The audit action of a request: read, vread, search, history, create, update, delete,
// transaction, batch, operation, submit.
std::string actionOf(const std::string& area, const std::string& method, const std::string& path, const std::string& body);

}  // namespace passerelle::gate
