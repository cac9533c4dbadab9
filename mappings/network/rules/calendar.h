// Calendar dates (YYYY-MM-DD, proleptic Gregorian, no time zone) and the arithmetic the network's
// rules need: add months or days, whole months and years between two dates, age. Thread-safe.
#pragma once

#include <compare>
#include <optional>
#include <string>
#include <string_view>

namespace passerelle::network {

struct Date {
  int year = 0, month = 0, day = 0;
  auto operator<=>(const Date&) const = default;
};

// Parses exactly "YYYY-MM-DD" (years 0001 to 9999) and checks the day exists (2026-02-29 does not).
std::optional<Date> parseDate(std::string_view text);
// "YYYY-MM-DD".
std::string formatDate(const Date& date);

bool isLeapYear(int year);
int daysInMonth(int year, int month);

// Adds (or with a negative count, subtracts) months; a day the target month lacks becomes its last
// day: 2026-01-31 + 1 month = 2026-02-28, 2024-02-29 + 12 months = 2025-02-28.
Date addMonths(const Date& date, int months);
Date addDays(const Date& date, int days);
// Days from `from` to `to` (negative when `to` is earlier).
long daysBetween(const Date& from, const Date& to);

// The greatest n with addMonths(from, n) <= to (0 when `to` is not after `from`). From 2026-01-31,
// 2026-02-28 is one whole month; from 2025-12-02, 2026-03-01 is 2 whole months and 2026-03-02 is 3.
int wholeMonthsBetween(const Date& from, const Date& to);
// wholeMonthsBetween / 12.
int wholeYearsBetween(const Date& from, const Date& to);
// Age in completed years at `at`; one gets a year older on one's birthday, and on 28 February in
// common years when born on 29 February.
int ageAt(const Date& birth, const Date& at);

}  // namespace passerelle::network
