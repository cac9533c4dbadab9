// Fuzz target: the FHIR R4 validator and the profile pass must never crash, hang or throw,
// whatever the bytes (the profile pass against the network package: its patient profile, and the
// profiles and extensions the input names itself).
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "mappings/fhir/profiles/packages.h"
#include "mappings/fhir/profiles/profile_validator.h"
#include "mappings/fhir/validator.h"

namespace {

const passerelle::fhir::profiles::ProfileRegistry& networkRegistry() {
  static passerelle::fhir::profiles::ProfileRegistry registry;
  static const bool loaded = [] {
    std::string error;
    return passerelle::fhir::profiles::loadNetworkPackage(registry, error);
  }();
  (void)loaded;
  return registry;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  auto result = passerelle::fhir::Validator::instance().validate(text);
  (void)result.hasErrors();
  // The expected type path as well.
  (void)passerelle::fhir::Validator::instance().validate(text, "Bundle");
  passerelle::fhir::profiles::ProfileValidator profiles(networkRegistry());
  std::vector<passerelle::fhir::Issue> issues;
  profiles.validate(text, std::string(passerelle::fhir::profiles::kNetworkProfileBase) + "network-patient", issues);
  profiles.validateDeclared(text, issues);
  return 0;
}
