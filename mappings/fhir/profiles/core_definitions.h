// The StructureDefinitions of the FHIR R4 base specification (data types, resources, core extension
// definitions) built into the binary from schemas/fhir-r4/core (scripts/gen_fhir_core_package.py):
// one definition a line, each file decompressed and indexed by url on first use only, so that a
// process that never needs them never pays for them. Thread-safe.
#pragma once

#include <string_view>

namespace passerelle::fhir::profiles {

// The JSON text of the base definition with this canonical url (no version), or empty when the
// base specification has none. `extensionsOnly`: among the core extension definitions only (the
// other files are not read).
std::string_view coreDefinitionJson(std::string_view url, bool extensionsOnly = false);

}  // namespace passerelle::fhir::profiles
