// The network's document API, mounted at /network/v1: POST /{kind} checks a document (JSON or
// XML) against its schema and the network's rules, maps it to FHIR with the built-in definitions
// and stores it as one transaction; GET /patients/{id}/dossier gives the patient's documents back
// in the network's format; GET /kinds and /schemas/{kind}[.xsd] describe the formats.
// Thread-safe: handle() runs on many threads at once.
#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "gateway/fhir/fhir_request.h"
#include "gateway/fhir/fhir_service.h"
#include "gateway/store/resource_store.h"
#include "mappings/network/rules/rules.h"

namespace passerelle::network {

struct FeeSettings {
  std::string agreementDate = "2026-01-01";  // experiment year 1 starts here (decree: 2001-12-19)
  int agreementYears = 3;                     // the agreement's term: no consent runs past its end
  double cValue = 23.0;                      // EUR per C (general-practice consultation) for the fee rows
  double ciedCoefficient = 3.0, csbCoefficient = 1.5;
  int csbCapYear1 = 1, csbCapLaterYears = 2;  // CSB fees per patient and experiment year
  double liaisonFee = 22.87;                  // EUR per professional, patient and year
};

struct NetworkOptions {
  fhir::JsonLimits json;
  RuleConfig rules;
  FeeSettings fees;
  std::string today;  // YYYY-MM-DD for demos and tests; empty: today's date (UTC)
  int plannedCiedMinutes = 60, plannedCsbMinutes = 30;
  std::size_t maxXmlBytes = 1 << 20;
  // The gateway's access checks; each returns the refusal to send, or nothing to go on. Unset:
  // every request goes on (access control off). `fieldKey(name)`: the professional a top-level
  // field of the (schema-valid) document names, as "rpps:N", "adeli:N" or "finess:N".
  using Refusal = std::optional<fhir::FhirResponse>;
  std::function<Refusal(const fhir::FhirRequest&, const std::string& kind, const std::function<std::string(const std::string&)>& fieldKey)>
      authorizeSubmit;
  std::function<Refusal(const fhir::FhirRequest&, const std::string& patientId)> authorizeDossier;
  std::function<Refusal(const fhir::FhirRequest&)> authorizeSweep;
};

class NetworkService {
 public:
  NetworkService(store::ResourceStore& store, fhir::FhirService& fhir, NetworkOptions options);
  ~NetworkService();
  // `request.path` is below /network/v1 ("/cied", "/patients/12/dossier"). Never throws.
  fhir::FhirResponse handle(const fhir::FhirRequest& request);
  // The daily work, as of `today` (YYYY-MM-DD; empty: options.today or the clock): consents past
  // their term become expired with a renewal Task for the GP, referrals past their due date are
  // marked overdue, semesters past without a CSB get a Task for the GP. Returns a summary
  // ({"expiredConsents": n, "overdueReferrals": m, "csbDue": k}). Running it twice changes nothing more.
  fhir::FhirResponse sweep(const std::string& today);
  // The same on behalf of `via` (the gate's request: its guard names the patients touched, its audit
  // record is committed with the changes). Overdue referrals also alert the coordinating doctors
  // and the referring GP (a Communication each).
  fhir::FhirResponse sweep(const std::string& today, const fhir::FhirRequest* via);

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace passerelle::network
