// FHIR R4 REST interactions over a ResourceStore: read, vread, create (conditional), update
// (conditional, If-Match), delete (conditional), history (instance, type, system), a basic search
// (_id, _lastUpdated, identifier), batch and transaction Bundles, and the CapabilityStatement; in
// JSON, or in XML by the Content-Type of the body and the _format or Accept of the answer.
// Knows no HTTP server: the front builds a FhirRequest and sends the FhirResponse.
// Thread-safe: handle() may run on many threads at once.
#pragma once

#include <string>

#include "gateway/fhir/fhir_request.h"
#include "gateway/fhir/search_params.h"
#include "gateway/store/resource_store.h"
#include "mappings/fhir/json_reader.h"
#include "mappings/fhir/validator.h"

namespace passerelle::fhir {

namespace profiles {
class ProfileValidator;
}

struct FhirServiceOptions {
  JsonLimits json;
  SearchLimits search;
  int maxBundleEntries = 10000;
  // Profiles (FR Core, the network package, fhir.profile_packages): what $validate?profile= checks
  // against; with validateProfiles (fhir.validate_profiles) every write is also checked against the
  // known profiles of its resources' meta.profile. Null: no profile is known.
  const profiles::ProfileValidator* profiles = nullptr;
  bool validateProfiles = false;
  // What is refused beyond the specification's rules (fhir.refuse_example_urls, fhir.unknown_extensions,
  // fhir.allowed_extension_domains); the profile validator above holds the same policy.
  ValidationPolicy policy;
  std::string softwareVersion = "0.1.0";
};

class FhirService {
 public:
  FhirService(store::ResourceStore& store, FhirServiceOptions options);
  // Never throws: failures become an OperationOutcome with the status of the error table.
  FhirResponse handle(const FhirRequest& request);

  class Impl;  // one request being handled (defined in the .cpp)

 private:
  store::ResourceStore& store_;
  FhirServiceOptions options_;
};

// The answer to an error: its status from the error table and an OperationOutcome (the one the
// error carries, or one built from its message and location).
FhirResponse errorResponse(const Error& error);

// The format of the answer: _format (json, xml, or their media types), else the best of Accept by
// its q-values (application/fhir+xml, application/xml, text/xml for XML); JSON by default and for
// */*. A 406 error when neither is acceptable.
enum class WireFormat { kJson, kXml };
Result<WireFormat> responseFormat(const FhirRequest& request);

// A request whose Content-Type is FHIR XML (application/fhir+xml, application/xml, text/xml): its
// body becomes the equivalent JSON and its Content-Type application/fhir+json. A body that is not
// XML gives a 400 error, XML that is not a FHIR resource a 422, both with every issue in their
// OperationOutcome. Other requests are left as they are.
Result<void> xmlBodyToJson(FhirRequest& request);

// A JSON answer (Content-Type application/fhir+json) written as FHIR XML, with the Content-Type
// application/fhir+xml; charset=utf-8. Other answers are left as they are.
void answerAsXml(FhirResponse& response);

// W/"3" or "3" -> 3; returns false for anything else.
bool parseETag(const std::string& header, std::int64_t& version);

}  // namespace passerelle::fhir
