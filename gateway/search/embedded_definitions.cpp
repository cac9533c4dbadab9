// Links schemas/fhir-r4/search_parameters.json into the binary (see the validation table, which
// is embedded the same way). The path comes from CMake (PASSERELLE_SEARCH_TABLE).
#include <string_view>

#ifndef PASSERELLE_SEARCH_TABLE
#error "PASSERELLE_SEARCH_TABLE must name schemas/fhir-r4/search_parameters.json"
#endif

__asm__(
    ".section .rodata\n"
    ".global passerelle_search_table_start\n"
    ".global passerelle_search_table_end\n"
    ".balign 16\n"
    "passerelle_search_table_start:\n"
    ".incbin \"" PASSERELLE_SEARCH_TABLE "\"\n"
    "passerelle_search_table_end:\n"
    ".byte 0\n"
    ".previous\n");

#ifdef PASSERELLE_SEARCH_TABLE_MD5
[[maybe_unused]] static const char kTableMd5[] = PASSERELLE_SEARCH_TABLE_MD5;
#endif

extern "C" const char passerelle_search_table_start[];
extern "C" const char passerelle_search_table_end[];

namespace passerelle::search {

std::string_view embeddedSearchTable() {
  return std::string_view(passerelle_search_table_start,
                          static_cast<std::size_t>(passerelle_search_table_end - passerelle_search_table_start));
}

}  // namespace passerelle::search
