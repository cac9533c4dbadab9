// The text of an issue's location, written a piece at a time ("contact[0]", "value.ofType(Quantity)"),
// the same way by the base walker and the profile walk.
#pragma once

#include <charconv>
#include <cstdint>
#include <string>
#include <string_view>

namespace passerelle::fhir::validation {

// Appends ".name", or "name" to an empty text; then ".ofType(T)" and "[index]" when given.
inline void appendPathPiece(std::string& out, std::string_view name, std::int32_t index, std::string_view ofType) {
  if (!out.empty()) out += '.';
  out += name;
  if (!ofType.empty()) {
    out += ".ofType(";
    out += ofType;
    out += ')';
  }
  if (index >= 0) {
    char digits[12];
    auto [end, ec] = std::to_chars(digits, digits + sizeof digits, index);
    (void)ec;  // an int32 always fits
    out += '[';
    out.append(digits, end);
    out += ']';
  }
}

}  // namespace passerelle::fhir::validation
