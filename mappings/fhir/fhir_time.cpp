// Calendar arithmetic on the proleptic Gregorian calendar, UTC only.
#include "mappings/fhir/fhir_time.h"

#include <chrono>
#include <cstdio>

namespace passerelle::fhir {
namespace {

// Days since 1970-01-01 of a civil date (month 1..12).
std::int64_t daysFromCivil(std::int64_t y, unsigned m, unsigned d) {
  y -= m <= 2;
  const std::int64_t era = (y >= 0 ? y : y - 399) / 400;
  const unsigned yoe = static_cast<unsigned>(y - era * 400);
  const unsigned doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
  const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + static_cast<std::int64_t>(doe) - 719468;
}

void civilFromDays(std::int64_t z, int& y, unsigned& m, unsigned& d) {
  z += 719468;
  const std::int64_t era = (z >= 0 ? z : z - 146096) / 146097;
  const unsigned doe = static_cast<unsigned>(z - era * 146097);
  const unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
  const std::int64_t yy = static_cast<std::int64_t>(yoe) + era * 400;
  const unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
  const unsigned mp = (5 * doy + 2) / 153;
  d = doy - (153 * mp + 2) / 5 + 1;
  m = mp < 10 ? mp + 3 : mp - 9;
  y = static_cast<int>(yy + (m <= 2));
}

bool isLeap(int y) { return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0; }
unsigned daysInMonth(int y, unsigned m) {
  static const unsigned k[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  return m == 2 && isLeap(y) ? 29 : k[m - 1];
}

bool digits(std::string_view s, std::size_t pos, std::size_t n, int& out) {
  if (pos + n > s.size()) return false;
  int v = 0;
  for (std::size_t i = 0; i < n; ++i) {
    char c = s[pos + i];
    if (c < '0' || c > '9') return false;
    v = v * 10 + (c - '0');
  }
  out = v;
  return true;
}

}  // namespace

std::int64_t nowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::string formatInstant(std::int64_t ms) {
  std::int64_t days = ms >= 0 ? ms / 86400000 : (ms - 86399999) / 86400000;
  std::int64_t rem = ms - days * 86400000;
  int y;
  unsigned m, d;
  civilFromDays(days, y, m, d);
  char buf[40];
  std::snprintf(buf, sizeof buf, "%04d-%02u-%02uT%02d:%02d:%02d.%03dZ", y, m, d, static_cast<int>(rem / 3600000),
                static_cast<int>(rem / 60000 % 60), static_cast<int>(rem / 1000 % 60), static_cast<int>(rem % 1000));
  return buf;
}

std::string formatHttpDate(std::int64_t ms) {
  static const char* kDays[] = {"Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"};
  static const char* kMonths[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                  "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
  std::int64_t secs = ms >= 0 ? ms / 1000 : (ms - 999) / 1000;
  std::int64_t days = secs >= 0 ? secs / 86400 : (secs - 86399) / 86400;
  std::int64_t rem = secs - days * 86400;
  int y;
  unsigned m, d;
  civilFromDays(days, y, m, d);
  char buf[40];
  std::snprintf(buf, sizeof buf, "%s, %02u %s %04d %02d:%02d:%02d GMT", kDays[((days % 7) + 7) % 7], d, kMonths[m - 1], y,
                static_cast<int>(rem / 3600), static_cast<int>(rem / 60 % 60), static_cast<int>(rem % 60));
  return buf;
}

bool parseDateRange(std::string_view s, std::int64_t& lo, std::int64_t& hi) {
  int y = 0, mo = 1, d = 1, h = 0, mi = 0, se = 0, msec = 0;
  if (!digits(s, 0, 4, y)) return false;
  std::size_t p = 4;
  enum { kYear, kMonth, kDay, kMinute, kSecond, kMilli } precision = kYear;
  int fracDigits = 0;
  if (p < s.size() && s[p] == '-') {
    if (!digits(s, p + 1, 2, mo) || mo < 1 || mo > 12) return false;
    p += 3;
    precision = kMonth;
    if (p < s.size() && s[p] == '-') {
      if (!digits(s, p + 1, 2, d) || d < 1 || static_cast<unsigned>(d) > daysInMonth(y, mo)) return false;
      p += 3;
      precision = kDay;
      if (p < s.size() && s[p] == 'T') {
        if (!digits(s, p + 1, 2, h) || h > 23 || p + 3 >= s.size() || s[p + 3] != ':' ||
            !digits(s, p + 4, 2, mi) || mi > 59)
          return false;
        p += 6;
        precision = kMinute;
        if (p < s.size() && s[p] == ':') {
          if (!digits(s, p + 1, 2, se) || se > 60) return false;
          p += 3;
          precision = kSecond;
          if (p < s.size() && s[p] == '.') {
            ++p;
            std::size_t start = p;
            while (p < s.size() && s[p] >= '0' && s[p] <= '9') {
              if (fracDigits < 3) msec = msec * 10 + (s[p] - '0');
              ++fracDigits;
              ++p;
            }
            if (p == start) return false;
            for (int i = fracDigits; i < 3; ++i) msec *= 10;
            precision = kMilli;
          }
        }
      }
    }
  }
  std::int64_t offsetMs = 0;
  if (precision >= kMinute) {
    if (p < s.size() && s[p] == 'Z') {
      ++p;
    } else if (p < s.size() && (s[p] == '+' || s[p] == '-')) {
      int oh, om;
      if (!digits(s, p + 1, 2, oh) || p + 3 >= s.size() || s[p + 3] != ':' || !digits(s, p + 4, 2, om) || oh > 14 ||
          om > 59)
        return false;
      offsetMs = (oh * 60 + om) * 60000LL * (s[p] == '+' ? 1 : -1);
      p += 6;
    }
  }
  if (p != s.size()) return false;
  std::int64_t base = daysFromCivil(y, mo, d) * 86400000LL + h * 3600000LL + mi * 60000LL + se * 1000LL + msec - offsetMs;
  lo = base;
  switch (precision) {
    case kYear: hi = daysFromCivil(y + 1, 1, 1) * 86400000LL; break;
    case kMonth: hi = (mo == 12 ? daysFromCivil(y + 1, 1, 1) : daysFromCivil(y, mo + 1, 1)) * 86400000LL; break;
    case kDay: hi = base + 86400000LL; break;
    case kMinute: hi = base + 60000LL; break;
    case kSecond: hi = base + 1000LL; break;
    case kMilli: {
      std::int64_t step = fracDigits >= 3 ? 1 : (fracDigits == 2 ? 10 : 100);
      hi = base + step;
      break;
    }
  }
  return true;
}

}  // namespace passerelle::fhir
