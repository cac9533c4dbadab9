// Links schemas/fhir-r4/validation.json into the binary with the assembler's .incbin, so the
// gateway needs no file at run time. The path comes from CMake (PASSERELLE_VALIDATION_TABLE).
#include "mappings/fhir/validation/embedded_table.h"

#ifndef PASSERELLE_VALIDATION_TABLE
#error "PASSERELLE_VALIDATION_TABLE must name schemas/fhir-r4/validation.json"
#endif

__asm__(
    ".section .rodata\n"
    ".global passerelle_fhir_validation_table_start\n"
    ".global passerelle_fhir_validation_table_end\n"
    ".balign 16\n"
    "passerelle_fhir_validation_table_start:\n"
    ".incbin \"" PASSERELLE_VALIDATION_TABLE "\"\n"
    "passerelle_fhir_validation_table_end:\n"
    ".byte 0\n"
    ".previous\n");

// Used so that the preprocessed text (what ccache hashes) changes with the table's content.
#ifdef PASSERELLE_VALIDATION_TABLE_MD5
[[maybe_unused]] static const char kTableMd5[] = PASSERELLE_VALIDATION_TABLE_MD5;
#endif

extern "C" const char passerelle_fhir_validation_table_start[];
extern "C" const char passerelle_fhir_validation_table_end[];

namespace passerelle::fhir::validation {

std::string_view embeddedTableJson() {
  return std::string_view(passerelle_fhir_validation_table_start,
                          static_cast<std::size_t>(passerelle_fhir_validation_table_end -
                                                   passerelle_fhir_validation_table_start));
}

}  // namespace passerelle::fhir::validation
