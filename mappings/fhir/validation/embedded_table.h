// The bytes of schemas/fhir-r4/validation.json, linked into the binary by embedded_table.cpp.
#pragma once

#include <string_view>

namespace passerelle::fhir::validation {

// The embedded validation table (JSON text). Valid for the life of the program.
std::string_view embeddedTableJson();

}  // namespace passerelle::fhir::validation
