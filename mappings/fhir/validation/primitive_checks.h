// Lexical rules of the FHIR R4 primitive types, hand-written from the regexes of the R4 primitive
// StructureDefinitions (the "regex" extension of each <type>.value element) plus the rules stated
// in their prose (dates must exist, ids at most 64 characters, strings at most 1 MB).
// Stateless and thread-safe.
#pragma once

#include <string_view>

namespace passerelle::fhir::validation {

constexpr std::size_t kMaxStringBytes = 1024 * 1024;

// year, year-month or year-month-day; the day must exist in that month.
bool isFhirDate(std::string_view s);
// date, or date "T" time with seconds and a zone (Z or +hh:mm, -hh:mm).
bool isFhirDateTime(std::string_view s);
// full date, time with seconds and a zone.
bool isFhirInstant(std::string_view s);
// hh:mm:ss(.fraction)
bool isFhirTime(std::string_view s);
// [A-Za-z0-9\-\.]{1,64}
bool isFhirId(std::string_view s);
// [^\s]+(\s[^\s]+)*  (no leading, trailing or double whitespace)
bool isFhirCode(std::string_view s);
// \S* and not empty
bool isFhirUri(std::string_view s);
// urn:oid:[0-2](\.(0|[1-9][0-9]*))+
bool isFhirOid(std::string_view s);
// urn:uuid: followed by a lowercase or uppercase 8-4-4-4-12 hexadecimal UUID
bool isFhirUuid(std::string_view s);
// groups of 4 characters of [A-Za-z0-9+/=], whitespace ignored, padding only at the end
bool isFhirBase64(std::string_view s);
// [ \r\n\t\S]+ : no control characters other than tab, CR and LF
bool isFhirString(std::string_view s);
// Whether the text is made of spaces, tabs, CR and LF only (true when empty).
bool onlyWhitespace(std::string_view s);
// Whether the text has leading or trailing whitespace.
bool hasOuterWhitespace(std::string_view s);

}  // namespace passerelle::fhir::validation
