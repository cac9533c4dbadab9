// The CSV of evaluation extracts: UTF-8, ';' between fields, CRLF-free ("\n" line ends), a header
// row, '.' as the decimal point; a field holding ';', '"', a line end or leading/trailing spaces is
// quoted with '"' doubled inside. Numbers are written without exponent. Not thread-safe.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <string>
#include <string_view>
#include <vector>

namespace passerelle::extract {

class CsvWriter {
 public:
  explicit CsvWriter(std::vector<std::string> header);
  // One row; it must have as many fields as the header.
  bool row(const std::vector<std::string>& fields);
  const std::string& text() const { return text_; }
  // Forgets the text written so far, keeping its memory (rows written out in pieces).
  void clear() { text_.clear(); }
  std::size_t rows() const { return rows_; }

 private:
  void line(const std::vector<std::string>& fields);
  std::string text_;
  std::size_t columns_ = 0, rows_ = 0;
};

// A decimal number for the CSV: up to `decimals` digits after '.', trailing zeros dropped.
std::string decimal(double value, int decimals = 2);

// Splits one CSV line as CsvWriter writes it (quotes honoured). False when a quote is not closed.
bool splitCsvLine(std::string_view line, std::vector<std::string>& fields, char separator = ';');

}  // namespace passerelle::extract
