// The HTML report of an evaluation extract: one self-contained page (inline CSS and SVG, no script,
// no external resource, printable on A4) showing the cells of indicators.csv as charts and tables,
// with masked cells visible as such. Labels are in French. Pure functions; thread-safe.
#pragma once

#include <map>
#include <string>
#include <vector>

namespace passerelle::extract {

// One row of indicators.csv for one indicator.
struct ReportCell {
  std::string stratum;  // "*" (the total) or "dim=value|dim=value", verbatim
  std::string value;    // decimal string as in the CSV; empty when masked or empty
  std::string n;        // persons counted, as in the CSV; empty when masked
  std::string status;   // "published", "masked" (small cell hidden) or "empty" (nobody in the cell)
};

struct ReportIndicator {
  std::string id, title, definition, unit;
  std::string kind;   // "count" (y ticks are whole numbers) or "mean"
  // "line": x is a stratifier (such as semester), one line per value of `series`;
  // "bars": grouped bars, x categories, one bar per value of `series`;
  // anything else ("table"): no chart.
  std::string chart;
  // The stratifiers of the x axis and of the series; `series` empty means a single series. Only the
  // cells whose stratum has exactly these dimensions are plotted; every cell is in the table.
  std::string x, series;
  std::vector<ReportCell> cells;
};

struct ReportInput {
  std::string title, recipient, periodStart, periodEnd, created, generator;
  int k = 10;  // the small-cell threshold the extract was masked with
  std::vector<ReportIndicator> indicators;
  // Display names: a stratifier ("semester" -> "Semestre") or one of its values
  // ("phase=before" -> "avant"). Names without an entry are shown as they are.
  std::map<std::string, std::string> labels;
};

// The report as a UTF-8 HTML document. Every text and attribute is escaped. Each plotted cell is
// one SVG element carrying data-indicator, data-stratum (verbatim), data-status and, when
// published, data-value (the CSV string verbatim), with a <title> tooltip. Masked cells are drawn
// as hatched placeholders spanning the y range; empty cells and published values that are not
// numbers are not drawn. X categories are sorted numerically when all are numbers, else kept in
// first-seen order; series keep their first-seen order.
std::string renderHtml(const ReportInput& in);

// The text with & < > " ' replaced by entities and control characters other than tab and line
// ends dropped: safe in element content and in quoted attributes.
std::string escapeHtml(const std::string& text);

}  // namespace passerelle::extract
