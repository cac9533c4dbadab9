// The caisse's baseline file (see baseline.h).
#include "mappings/extract/baseline.h"

#include <algorithm>
#include <cstdio>
#include <map>
#include <set>

#include "mappings/common/charset.h"
#include "mappings/extract/csv.h"

namespace passerelle::extract {

namespace {

bool leap(int y) { return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0; }
int daysIn(int y, int m) {
  static const int days[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  return m == 2 && leap(y) ? 29 : days[m - 1];
}

bool digits(const std::string& s, std::size_t at, std::size_t n) {
  if (s.size() < at + n) return false;
  return std::all_of(s.begin() + static_cast<long>(at), s.begin() + static_cast<long>(at + n), [](unsigned char c) { return std::isdigit(c); });
}

std::string ymd(int y, int m, int d) {
  char b[32];
  std::snprintf(b, sizeof b, "%04d-%02d-%02d", y, m, d);
  return b;
}

// A month or a day; `first`: the first day of a month, else its last.
bool readPeriod(const std::string& s, bool first, std::string& out) {
  if (!(s.size() == 7 || s.size() == 10) || !digits(s, 0, 4) || s[4] != '-' || !digits(s, 5, 2)) return false;
  int y = std::stoi(s.substr(0, 4)), m = std::stoi(s.substr(5, 2));
  if (m < 1 || m > 12 || y < 1900) return false;
  if (s.size() == 7) {
    out = ymd(y, m, first ? 1 : daysIn(y, m));
    return true;
  }
  if (s[7] != '-' || !digits(s, 8, 2)) return false;
  int d = std::stoi(s.substr(8, 2));
  if (d < 1 || d > daysIn(y, m)) return false;
  out = s;
  return true;
}

bool readValue(const std::string& s, double& v) {
  if (s.empty() || s.size() > 20) return false;
  int dots = 0;
  for (char c : s) {
    if (c == '.') ++dots;
    else if (!std::isdigit(static_cast<unsigned char>(c))) return false;
  }
  if (dots > 1 || s.front() == '.' || s.back() == '.') return false;
  v = std::stod(s);
  return true;
}

}  // namespace

bool isBaselineIndicator(const std::string& code) {
  static const std::set<std::string> codes = {"SICK-LEAVE-DAYS", "HOSP-DAYS", "GP-CONSULT", "SPEC-CONSULT", "IMAGING",
                                              "PHYSIO-ACTS", "HOME-NURSING-RX", "EQUIP-RX", "RADIOTHERAPY"};
  if (codes.count(code)) return true;
  // DRUG-<ATC>: an ATC anatomical group and its subgroups (N, N02, N02A...).
  if (code.rfind("DRUG-", 0) != 0 || code.size() < 6 || code.size() > 12) return false;
  std::string atc = code.substr(5);
  return std::isupper(static_cast<unsigned char>(atc[0])) &&
         std::all_of(atc.begin(), atc.end(), [](unsigned char c) { return std::isupper(c) || std::isdigit(c); });
}

std::string monthsBefore(const std::string& date, int months) {
  if (date.size() < 10) return "";
  int y = std::stoi(date.substr(0, 4)), m = std::stoi(date.substr(5, 2)), d = std::stoi(date.substr(8, 2));
  int total = y * 12 + (m - 1) - months;
  y = total / 12;
  m = total % 12 + 1;
  return ymd(y, m, std::min(d, daysIn(y, m)));
}

bool parseBaseline(const std::string& input, std::vector<BaselineRow>& rows, std::vector<std::string>& errors, std::size_t maxErrors) {
  rows.clear();
  errors.clear();
  std::size_t more = 0;
  auto fail = [&](int line, const std::string& why) {
    if (errors.size() < maxErrors) errors.push_back((line ? "line " + std::to_string(line) + ": " : std::string()) + why);
    else ++more;
  };
  std::string text = input.rfind("\xEF\xBB\xBF", 0) == 0 ? input.substr(3) : input;
  if (!charset::validUtf8(text)) {
    // Say where: the first line that is not UTF-8 (a Latin-1 export, typically).
    int line = 1;
    std::size_t start = 0;
    for (std::size_t i = 0; i <= text.size(); ++i)
      if (i == text.size() || text[i] == '\n') {
        if (!charset::validUtf8(std::string_view(text).substr(start, i - start))) break;
        ++line;
        start = i + 1;
      }
    fail(line, "not UTF-8 (the file must be UTF-8; ISO-8859-1 exports are to be converted first)");
    return false;
  }
  std::vector<std::string> lines;
  for (std::size_t start = 0; start < text.size();) {
    std::size_t end = text.find('\n', start);
    if (end == std::string::npos) end = text.size();
    std::string l = text.substr(start, end - start);
    if (!l.empty() && l.back() == '\r') l.pop_back();
    lines.push_back(l);
    start = end + 1;
  }
  while (!lines.empty() && lines.back().empty()) lines.pop_back();
  if (lines.empty()) {
    fail(0, "the file is empty");
    return false;
  }
  static const std::vector<std::string> required = {"pseudo_id", "period_start", "period_end", "indicator", "value"};
  static const std::vector<std::string> optional = {"key_version", "unit"};
  std::vector<std::string> header;
  if (!splitCsvLine(lines[0], header)) {
    fail(1, "the header row has an unclosed quote");
    return false;
  }
  std::map<std::string, std::size_t> column;
  for (std::size_t i = 0; i < header.size(); ++i) {
    const std::string& h = header[i];
    if (std::find(required.begin(), required.end(), h) == required.end() && std::find(optional.begin(), optional.end(), h) == optional.end())
      fail(1, "unknown column \"" + h + "\" (expected pseudo_id;period_start;period_end;indicator;value, and optionally key_version;unit)");
    else if (!column.emplace(h, i).second)
      fail(1, "the column \"" + h + "\" appears twice");
  }
  for (const auto& r : required)
    if (!column.count(r)) fail(1, "the column \"" + r + "\" is missing (found: " + lines[0] + ")");
  if (!errors.empty()) return false;
  for (std::size_t n = 1; n < lines.size(); ++n) {
    int line = static_cast<int>(n + 1);
    if (lines[n].empty()) continue;
    std::vector<std::string> f;
    if (!splitCsvLine(lines[n], f)) {
      fail(line, "an unclosed quote");
      continue;
    }
    if (f.size() != header.size()) {
      fail(line, std::to_string(f.size()) + " fields where the header has " + std::to_string(header.size()));
      continue;
    }
    auto at = [&](const char* name) { return column.count(name) ? f[column[name]] : std::string(); };
    BaselineRow row;
    row.line = line;
    row.pseudonym = at("pseudo_id");
    std::transform(row.pseudonym.begin(), row.pseudonym.end(), row.pseudonym.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    if (row.pseudonym.size() != 64 || !std::all_of(row.pseudonym.begin(), row.pseudonym.end(), [](unsigned char c) { return std::isxdigit(c); })) {
      fail(line, "pseudo_id is not a pseudonym (64 hexadecimal characters)");
      continue;
    }
    std::string version = at("key_version");
    if (!version.empty()) {
      if (!digits(version, 0, version.size()) || version.size() > 6 || std::stoi(version) < 1) {
        fail(line, "key_version \"" + version + "\" is not a key version (1, 2...)");
        continue;
      }
      row.keyVersion = std::stoi(version);
    }
    if (!readPeriod(at("period_start"), true, row.start) || !readPeriod(at("period_end"), false, row.end)) {
      fail(line, "the period \"" + at("period_start") + "\" to \"" + at("period_end") + "\" is not two months (YYYY-MM) or days (YYYY-MM-DD)");
      continue;
    }
    if (row.start > row.end) {
      fail(line, "the period starts after it ends");
      continue;
    }
    row.indicator = at("indicator");
    std::transform(row.indicator.begin(), row.indicator.end(), row.indicator.begin(), [](unsigned char c) { return static_cast<char>(std::toupper(c)); });
    if (!isBaselineIndicator(row.indicator)) {
      fail(line, "unknown indicator \"" + at("indicator") + "\" (SICK-LEAVE-DAYS, HOSP-DAYS, GP-CONSULT, SPEC-CONSULT, IMAGING, PHYSIO-ACTS, HOME-NURSING-RX, "
                                                           "EQUIP-RX, RADIOTHERAPY or DRUG-<ATC>)");
      continue;
    }
    if (!readValue(at("value"), row.value)) {
      fail(line, "the value \"" + at("value") + "\" is not a number at least 0 (with '.' as the decimal point)");
      continue;
    }
    bool days = row.indicator.size() > 5 && row.indicator.substr(row.indicator.size() - 5) == "-DAYS";
    row.unit = at("unit").empty() ? (days ? "d" : "{count}") : at("unit");
    if (days && row.unit != "d") {
      fail(line, "a number of days is in \"d\", not \"" + row.unit + "\"");
      continue;
    }
    rows.push_back(std::move(row));
  }
  if (rows.empty() && errors.empty()) fail(0, "the file has a header but no row");
  if (more) errors.push_back("and " + std::to_string(more) + " more line(s) in error");
  if (!errors.empty()) rows.clear();
  return errors.empty();
}

}  // namespace passerelle::extract
