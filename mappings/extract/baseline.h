// The caisse's baseline file: what each patient consumed in the 6 months before their inclusion,
// sent by the caisse's medical service under the pseudonyms of its key domain, so that the final
// evaluation can compare before and after.
//
// The file is the extracts' CSV (UTF-8, a BOM tolerated, ';' between fields, '.' as the decimal
// point, a header row) with the columns pseudo_id, period_start, period_end, indicator, value and,
// optionally, key_version (the pseudonymisation key's version; the current one when absent) and
// unit. Periods are months (YYYY-MM) or days (YYYY-MM-DD); indicators are the utilisation codes of
// the network (d77-ind): SICK-LEAVE-DAYS, HOSP-DAYS, GP-CONSULT, SPEC-CONSULT, IMAGING,
// PHYSIO-ACTS, HOME-NURSING-RX, EQUIP-RX, RADIOTHERAPY, DRUG-<ATC class>. Stateless, thread-safe.
#pragma once

#include <string>
#include <vector>

namespace passerelle::extract {

struct BaselineRow {
  int line = 0;
  std::string pseudonym;  // 64 lowercase hexadecimal characters
  int keyVersion = 0;     // 0: not given
  std::string start, end;  // YYYY-MM-DD: the first day of the first month, the last day of the last
  std::string indicator;   // the d77-ind code, upper case
  double value = 0;
  std::string unit;        // UCUM: "d" for days, "{count}" otherwise unless given
};

// Reads the whole file; nothing when any line is wrong: `errors` then says which and why (at most
// `maxErrors` lines, then how many more).
bool parseBaseline(const std::string& text, std::vector<BaselineRow>& rows, std::vector<std::string>& errors, std::size_t maxErrors = 20);

// True when `code` is a utilisation indicator a baseline may carry.
bool isBaselineIndicator(const std::string& code);

// The date `months` months before `date` (YYYY-MM-DD), the day clamped to the month's length.
std::string monthsBefore(const std::string& date, int months);

}  // namespace passerelle::extract
