// FHIR R4 REST interactions over a ResourceStore: read, vread, create (conditional), update
// (conditional, If-Match), delete (conditional), history (instance, type, system), a basic search
// (_id, _lastUpdated, identifier), batch and transaction Bundles, and the CapabilityStatement.
// Knows no HTTP server: the front builds a FhirRequest and sends the FhirResponse.
// Thread-safe: handle() may run on many threads at once.
#pragma once

#include <string>

#include "gateway/fhir/fhir_request.h"
#include "gateway/fhir/search_params.h"
#include "gateway/store/resource_store.h"
#include "mappings/fhir/json_reader.h"

namespace passerelle::fhir {

struct FhirServiceOptions {
  JsonLimits json;
  SearchLimits search;
  int maxBundleEntries = 10000;
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

// W/"3" or "3" -> 3; returns false for anything else.
bool parseETag(const std::string& header, std::int64_t& version);

}  // namespace passerelle::fhir
