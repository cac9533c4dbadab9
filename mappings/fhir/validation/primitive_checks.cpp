// Hand-written matchers for the R4 primitive regexes (faster than std::regex and without its
// recursion on long inputs).
#include "mappings/fhir/validation/primitive_checks.h"

#include <algorithm>
#include <cstdint>
#include <cstring>

namespace passerelle::fhir::validation {

namespace {

bool isDigit(char c) { return c >= '0' && c <= '9'; }

// Whether any of the 8 bytes of `w` is below `n` (n <= 128; bytes from 0x80, the UTF-8
// continuation and lead bytes, never count): the strings are checked a word at a time, and only a
// word that may hold a character to refuse is looked at byte by byte.
constexpr std::uint64_t kOnes = 0x0101010101010101ull;
inline bool anyByteBelow(std::uint64_t w, unsigned n) { return ((w - kOnes * n) & ~w & (kOnes * 0x80)) != 0; }

// Calls `bytewise(from, to)` on the parts of `s` that may hold a byte below `n`; false as soon as
// it says so.
template <typename Fn>
bool wordsBelow(std::string_view s, unsigned n, Fn&& bytewise) {
  std::size_t i = 0;
  for (; i + 8 <= s.size(); i += 8) {
    std::uint64_t w;
    std::memcpy(&w, s.data() + i, 8);
    if (anyByteBelow(w, n) && !bytewise(i, i + 8)) return false;
  }
  return i == s.size() || bytewise(i, s.size());
}
bool isSpace(char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; }

bool digits(std::string_view s, std::size_t pos, std::size_t n, int& value) {
  if (pos + n > s.size()) return false;
  value = 0;
  for (std::size_t i = pos; i < pos + n; ++i) {
    if (!isDigit(s[i])) return false;
    value = value * 10 + (s[i] - '0');
  }
  return true;
}

int daysInMonth(int year, int month) {
  static const int kDays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  if (month == 2 && ((year % 4 == 0 && year % 100 != 0) || year % 400 == 0)) return 29;
  return kDays[month - 1];
}

// Parses a date prefix; returns the number of characters consumed (0 when invalid) and whether
// it was a full date.
std::size_t parseDate(std::string_view s, bool& full) {
  int year = 0, month = 0, day = 0;
  full = false;
  if (!digits(s, 0, 4, year) || year == 0) return 0;
  if (s.size() == 4 || s[4] != '-') return 4;
  if (!digits(s, 5, 2, month) || month < 1 || month > 12) return 0;
  if (s.size() == 7 || s[7] != '-') return 7;
  if (!digits(s, 8, 2, day) || day < 1 || day > daysInMonth(year, month)) return 0;
  full = true;
  return 10;
}

// hh:mm:ss(.f+) at pos; returns the end or 0.
std::size_t parseTime(std::string_view s, std::size_t pos) {
  int h = 0, m = 0, sec = 0;
  if (!digits(s, pos, 2, h) || h > 23) return 0;
  if (pos + 2 >= s.size() || s[pos + 2] != ':') return 0;
  if (!digits(s, pos + 3, 2, m) || m > 59) return 0;
  if (pos + 5 >= s.size() || s[pos + 5] != ':') return 0;
  if (!digits(s, pos + 6, 2, sec) || sec > 60) return 0;
  std::size_t end = pos + 8;
  if (end < s.size() && s[end] == '.') {
    std::size_t start = ++end;
    while (end < s.size() && isDigit(s[end])) ++end;
    if (end == start) return 0;
  }
  return end;
}

bool zoneAt(std::string_view s, std::size_t pos) {
  if (pos >= s.size()) return false;
  if (s[pos] == 'Z') return pos + 1 == s.size();
  if (s[pos] != '+' && s[pos] != '-') return false;
  int h = 0, m = 0;
  if (s.size() != pos + 6 || s[pos + 3] != ':') return false;
  if (!digits(s, pos + 1, 2, h) || !digits(s, pos + 4, 2, m)) return false;
  if (m > 59) return false;
  return h < 14 || (h == 14 && m == 0);
}

}  // namespace

bool isFhirDate(std::string_view s) {
  bool full = false;
  std::size_t n = parseDate(s, full);
  return n != 0 && n == s.size();
}

bool isFhirDateTime(std::string_view s) {
  bool full = false;
  std::size_t n = parseDate(s, full);
  if (n == 0) return false;
  if (n == s.size()) return true;
  if (!full || s[n] != 'T') return false;
  std::size_t end = parseTime(s, n + 1);
  return end != 0 && zoneAt(s, end);
}

bool isFhirInstant(std::string_view s) {
  bool full = false;
  std::size_t n = parseDate(s, full);
  if (n == 0 || !full || n >= s.size() || s[n] != 'T') return false;
  std::size_t end = parseTime(s, n + 1);
  return end != 0 && zoneAt(s, end);
}

bool isFhirTime(std::string_view s) { return !s.empty() && parseTime(s, 0) == s.size(); }

bool isFhirId(std::string_view s) {
  if (s.empty() || s.size() > 64) return false;
  for (char c : s)
    if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || isDigit(c) || c == '-' || c == '.')) return false;
  return true;
}

bool isFhirCode(std::string_view s) {
  if (s.empty() || isSpace(s.front()) || isSpace(s.back())) return false;
  // Single spaces between words, no other whitespace: only words with a byte up to 0x20 are read.
  return wordsBelow(s, 0x21, [&](std::size_t from, std::size_t to) {
    for (std::size_t i = std::max<std::size_t>(from, 1); i < to; ++i)
      if (isSpace(s[i]) && (isSpace(s[i - 1]) || s[i] != ' ')) return false;
    return true;
  });
}

bool isFhirUri(std::string_view s) {
  if (s.empty()) return false;
  // No whitespace and no control character: no byte up to 0x20.
  return wordsBelow(s, 0x21, [&](std::size_t from, std::size_t to) {
    for (std::size_t i = from; i < to; ++i)
      if (static_cast<unsigned char>(s[i]) <= 0x20) return false;
    return true;
  });
}

bool isFhirOid(std::string_view s) {
  constexpr std::string_view kPrefix = "urn:oid:";
  if (s.substr(0, kPrefix.size()) != kPrefix) return false;
  s.remove_prefix(kPrefix.size());
  if (s.size() < 3 || s[0] < '0' || s[0] > '2') return false;
  std::size_t i = 1;
  int arcs = 0;
  while (i < s.size()) {
    if (s[i] != '.') return false;
    ++i;
    std::size_t start = i;
    while (i < s.size() && isDigit(s[i])) ++i;
    if (i == start || (s[start] == '0' && i - start > 1)) return false;
    ++arcs;
  }
  return arcs > 0;
}

bool isFhirUuid(std::string_view s) {
  constexpr std::string_view kPrefix = "urn:uuid:";
  if (s.substr(0, kPrefix.size()) != kPrefix) return false;
  s.remove_prefix(kPrefix.size());
  if (s.size() != 36) return false;
  for (std::size_t i = 0; i < 36; ++i) {
    char c = s[i];
    if (i == 8 || i == 13 || i == 18 || i == 23) {
      if (c != '-') return false;
    } else if (!(isDigit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'))) {
      return false;
    }
  }
  return true;
}

bool isFhirBase64(std::string_view s) {
  std::size_t count = 0, padding = 0;
  for (char c : s) {
    if (isSpace(c)) continue;
    if (c == '=') {
      ++padding;
    } else if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || isDigit(c) || c == '+' || c == '/') {
      if (padding) return false;  // data after padding
    } else {
      return false;
    }
    ++count;
  }
  return count > 0 && count % 4 == 0 && padding <= 2;
}

bool isFhirString(std::string_view s) {
  if (s.empty()) return false;
  return wordsBelow(s, 0x20, [&](std::size_t from, std::size_t to) {
    for (std::size_t i = from; i < to; ++i) {
      char c = s[i];
      if (static_cast<unsigned char>(c) < 0x20 && c != '\t' && c != '\r' && c != '\n') return false;
    }
    return true;
  });
}

bool onlyWhitespace(std::string_view s) {
  for (char c : s)
    if (!isSpace(c)) return false;
  return true;
}

bool hasOuterWhitespace(std::string_view s) { return !s.empty() && (isSpace(s.front()) || isSpace(s.back())); }

}  // namespace passerelle::fhir::validation
