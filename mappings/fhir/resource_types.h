// The resource types of FHIR R4, generated from the official StructureDefinitions.
#pragma once

#include <string_view>
#include <vector>

namespace passerelle::fhir {

bool isResourceType(std::string_view name);
const std::vector<std::string_view>& resourceTypes();  // sorted

// Whether the type has the R4 `identifier` search parameter (a token on Type.identifier).
bool hasIdentifierParam(std::string_view type);

// FHIR id: [A-Za-z0-9\-\.]{1,64}
bool isValidId(std::string_view id);

}  // namespace passerelle::fhir
