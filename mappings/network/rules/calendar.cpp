// Calendar date arithmetic for the network's rules (see calendar.h).
#include "mappings/network/rules/calendar.h"

#include <cstdio>

namespace passerelle::network {
namespace {

// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's days_from_civil).
long daysFromCivil(int y, int m, int d) {
  y -= m <= 2 ? 1 : 0;
  const long era = (y >= 0 ? y : y - 399) / 400;
  const long yoe = y - era * 400;
  const long doy = (153L * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
  const long doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + doe - 719468;
}

Date civilFromDays(long z) {
  z += 719468;
  const long era = (z >= 0 ? z : z - 146096) / 146097;
  const long doe = z - era * 146097;
  const long yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
  const long doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
  const long mp = (5 * doy + 2) / 153;
  const int d = static_cast<int>(doy - (153 * mp + 2) / 5 + 1);
  const int m = static_cast<int>(mp < 10 ? mp + 3 : mp - 9);
  const long y = yoe + era * 400 + (m <= 2 ? 1 : 0);
  return Date{static_cast<int>(y), m, d};
}

bool digitsAt(std::string_view s, size_t pos, size_t count, int& value) {
  value = 0;
  for (size_t i = pos; i < pos + count; ++i) {
    if (s[i] < '0' || s[i] > '9') return false;
    value = value * 10 + (s[i] - '0');
  }
  return true;
}

}  // namespace

bool isLeapYear(int year) { return (year % 4 == 0 && year % 100 != 0) || year % 400 == 0; }

int daysInMonth(int year, int month) {
  static constexpr int kDays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  if (month == 2 && isLeapYear(year)) return 29;
  return kDays[month - 1];
}

std::optional<Date> parseDate(std::string_view text) {
  if (text.size() != 10 || text[4] != '-' || text[7] != '-') return std::nullopt;
  Date date;
  if (!digitsAt(text, 0, 4, date.year) || !digitsAt(text, 5, 2, date.month) || !digitsAt(text, 8, 2, date.day))
    return std::nullopt;
  if (date.year < 1 || date.month < 1 || date.month > 12 || date.day < 1 ||
      date.day > daysInMonth(date.year, date.month))
    return std::nullopt;
  return date;
}

std::string formatDate(const Date& date) {
  char buffer[16];
  std::snprintf(buffer, sizeof buffer, "%04d-%02d-%02d", date.year, date.month, date.day);
  return buffer;
}

Date addMonths(const Date& date, int months) {
  const long index = static_cast<long>(date.year) * 12 + (date.month - 1) + months;
  long year = index / 12;
  long month0 = index % 12;
  if (month0 < 0) {
    month0 += 12;
    year -= 1;
  }
  Date out{static_cast<int>(year), static_cast<int>(month0) + 1, date.day};
  const int last = daysInMonth(out.year, out.month);
  if (out.day > last) out.day = last;
  return out;
}

Date addDays(const Date& date, int days) {
  return civilFromDays(daysFromCivil(date.year, date.month, date.day) + days);
}

long daysBetween(const Date& from, const Date& to) {
  return daysFromCivil(to.year, to.month, to.day) - daysFromCivil(from.year, from.month, from.day);
}

int wholeMonthsBetween(const Date& from, const Date& to) {
  if (to <= from) return 0;
  int months = (to.year - from.year) * 12 + (to.month - from.month);
  // At most one too many: the calendar difference overshoots when to.day is before from.day,
  // except where clamping to the end of a short month makes it reach `to` anyway.
  while (months > 0 && addMonths(from, months) > to) --months;
  return months;
}

int wholeYearsBetween(const Date& from, const Date& to) { return wholeMonthsBetween(from, to) / 12; }

int ageAt(const Date& birth, const Date& at) { return wholeYearsBetween(birth, at); }

}  // namespace passerelle::network
