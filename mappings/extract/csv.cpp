// CSV of evaluation extracts (see csv.h).
#include "mappings/extract/csv.h"

#include <cmath>
#include <cstdio>

namespace passerelle::extract {

CsvWriter::CsvWriter(std::vector<std::string> header) : columns_(header.size()) { line(header); }

bool CsvWriter::row(const std::vector<std::string>& fields) {
  if (fields.size() != columns_) return false;
  line(fields);
  ++rows_;
  return true;
}

void CsvWriter::line(const std::vector<std::string>& fields) {
  for (std::size_t i = 0; i < fields.size(); ++i) {
    if (i) text_ += ';';
    const std::string& f = fields[i];
    bool quote = !f.empty() && (f.front() == ' ' || f.back() == ' ');
    for (std::size_t k = 0; k < f.size() && !quote; ++k) quote = f[k] == ';' || f[k] == '"' || f[k] == '\r' || f[k] == '\n';
    if (!quote) {
      text_ += f;
      continue;
    }
    text_ += '"';
    for (char c : f) {
      if (c == '"') text_ += '"';
      text_ += c;
    }
    text_ += '"';
  }
  text_ += '\n';
}

std::string decimal(double value, int decimals) {
  if (!std::isfinite(value)) return "";
  if (value == std::floor(value) && std::fabs(value) < 1e15) return std::to_string(static_cast<long long>(value));  // most counts: no formatting
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*f", decimals, value);
  std::string s = buf;
  if (s.find('.') != std::string::npos) {
    while (s.back() == '0') s.pop_back();
    if (s.back() == '.') s.pop_back();
  }
  if (s == "-0") s = "0";
  return s;
}

bool splitCsvLine(std::string_view line, std::vector<std::string>& fields, char separator) {
  fields.clear();
  std::string cur;
  bool quoted = false, any = false;
  for (std::size_t i = 0; i < line.size(); ++i) {
    char c = line[i];
    if (quoted) {
      if (c == '"' && i + 1 < line.size() && line[i + 1] == '"') {
        cur += '"';
        ++i;
      } else if (c == '"') {
        quoted = false;
      } else {
        cur += c;
      }
    } else if (c == '"') {
      quoted = true;
    } else if (c == separator) {
      fields.push_back(std::move(cur));
      cur.clear();
    } else if (c != '\r') {
      cur += c;
    }
    any = true;
  }
  if (quoted) return false;
  if (any || !fields.empty()) fields.push_back(std::move(cur));
  return true;
}

}  // namespace passerelle::extract
