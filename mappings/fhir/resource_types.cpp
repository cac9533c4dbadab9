// Table lookups over the generated list in schemas/fhir-r4/resource_types.inc.
#include "mappings/fhir/resource_types.h"

#include <algorithm>

namespace passerelle::fhir {

const std::vector<std::string_view>& resourceTypes() {
  static const std::vector<std::string_view> kTypes = {
#include "schemas/fhir-r4/resource_types.inc"
  };
  return kTypes;
}

bool isResourceType(std::string_view name) {
  const auto& t = resourceTypes();
  return std::binary_search(t.begin(), t.end(), name);
}

bool hasIdentifierParam(std::string_view type) {
  static const std::vector<std::string_view> kTypes = {
#include "schemas/fhir-r4/identifier_types.inc"
  };
  return std::binary_search(kTypes.begin(), kTypes.end(), type);
}

bool isValidId(std::string_view id) {
  if (id.empty() || id.size() > 64) return false;
  for (char c : id) {
    bool ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '.';
    if (!ok) return false;
  }
  return true;
}

}  // namespace passerelle::fhir
