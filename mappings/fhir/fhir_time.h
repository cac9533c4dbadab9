// FHIR date/dateTime/instant text <-> milliseconds since the Unix epoch (UTC), and HTTP dates.
// Stateless and thread-safe.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace passerelle::fhir {

std::int64_t nowMs();
// "2026-11-23T09:49:33.123Z"
std::string formatInstant(std::int64_t ms);
// "Mon, 23 Nov 2026 09:49:33 GMT" (RFC 9110 IMF-fixdate)
std::string formatHttpDate(std::int64_t ms);

// Parses a FHIR date, dateTime or instant, possibly partial (2026, 2026-11, 2026-11-23,
// 2026-11-23T09:49, ...:33, ...:33.123, with Z or +hh:mm; no zone means UTC) into the range of
// instants it denotes, [lo, hi) in ms. Returns false when the text is not such a value.
bool parseDateRange(std::string_view text, std::int64_t& lo, std::int64_t& hi);

}  // namespace passerelle::fhir
