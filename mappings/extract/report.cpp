// HTML report of an evaluation extract (see report.h).
#include "mappings/extract/report.h"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cmath>
#include <optional>
#include <utility>

namespace passerelle::extract {
namespace {

// The Okabe-Ito palette, distinguishable under the common colour-vision deficiencies; the yellow,
// faint on white, comes last.
constexpr const char* kPalette[] = {"#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#000000", "#F0E442"};
constexpr int kPaletteSize = sizeof kPalette / sizeof kPalette[0];
constexpr int kMarkerShapes = 4;  // circle, square, diamond, triangle: one per series, in turn

// Chart geometry in SVG user units (the viewBox); the SVG is scaled to the page width.
constexpr double kWidth = 640, kLeft = 64, kRight = 16, kPlotHeight = 220;
constexpr double kLegendFont = 12, kTickFont = 11, kLegendRow = 20;

// ---- text ------------------------------------------------------------------------------------

using Dims = std::vector<std::pair<std::string, std::string>>;

// "dim=value|dim=value" as pairs in order; "*" (the total) as none.
Dims parseStratum(const std::string& stratum) {
  Dims dims;
  if (stratum.empty() || stratum == "*") return dims;
  std::size_t start = 0;
  while (true) {
    std::size_t bar = stratum.find('|', start);
    std::string part = stratum.substr(start, bar == std::string::npos ? std::string::npos : bar - start);
    std::size_t eq = part.find('=');
    if (eq == std::string::npos)
      dims.emplace_back(part, "");
    else
      dims.emplace_back(part.substr(0, eq), part.substr(eq + 1));
    if (bar == std::string::npos) break;
    start = bar + 1;
  }
  return dims;
}

// A decimal number, whole string, finite; independent of the C locale.
std::optional<double> number(const std::string& text) {
  if (text.empty()) return std::nullopt;
  double v = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (ec != std::errc() || end != text.data() + text.size() || !std::isfinite(v)) return std::nullopt;
  return v;
}

// A coordinate or tick value: at most `decimals` digits after '.', trailing zeros dropped.
std::string num(double v, int decimals = 1) {
  char buf[64];
  auto [end, ec] = std::to_chars(buf, buf + sizeof buf, v, std::chars_format::fixed, decimals);
  std::string s(buf, ec == std::errc() ? end : buf);
  if (s.find('.') != std::string::npos) {
    while (s.back() == '0') s.pop_back();
    if (s.back() == '.') s.pop_back();
  }
  if (s == "-0" || s.empty()) s = "0";
  return s;
}

// A number as French readers write it: decimal comma.
std::string french(std::string decimalText) {
  std::replace(decimalText.begin(), decimalText.end(), '.', ',');
  return decimalText;
}

std::size_t codePoints(const std::string& s) {
  std::size_t n = 0;
  for (unsigned char c : s)
    if ((c & 0xC0) != 0x80) ++n;
  return n;
}

// The first `count` code points of `s`.
std::string firstCodePoints(const std::string& s, std::size_t count) {
  std::size_t seen = 0;
  for (std::size_t i = 0; i < s.size(); ++i) {
    if ((static_cast<unsigned char>(s[i]) & 0xC0) == 0x80) continue;
    if (seen == count) return s.substr(0, i);
    ++seen;
  }
  return s;
}

// An estimate of the rendered width of a sans-serif text (no font metrics without a browser).
double textWidth(const std::string& s, double fontSize) { return static_cast<double>(codePoints(s)) * fontSize * 0.58; }

// `s` cut with an ellipsis so that it fits in `width`.
std::string fit(const std::string& s, double width, double fontSize) {
  if (textWidth(s, fontSize) <= width) return s;
  auto keep = static_cast<std::size_t>(std::max(1.0, width / (fontSize * 0.58) - 1));
  return firstCodePoints(s, keep) + "…";
}

// `s` broken at spaces into at most `maxLines` lines of `width`, the excess cut with an ellipsis.
std::vector<std::string> wrap(const std::string& s, double width, double fontSize, std::size_t maxLines) {
  std::vector<std::string> lines;
  std::string current;
  std::size_t start = 0;
  while (start <= s.size()) {
    std::size_t space = s.find(' ', start);
    std::string word = s.substr(start, space == std::string::npos ? std::string::npos : space - start);
    if (!word.empty()) {
      std::string candidate = current.empty() ? word : current + " " + word;
      if (current.empty() || textWidth(candidate, fontSize) <= width) {
        current = candidate;
      } else {
        lines.push_back(current);
        current = word;
      }
    }
    if (space == std::string::npos) break;
    start = space + 1;
  }
  if (!current.empty() || lines.empty()) lines.push_back(current);
  if (lines.size() > maxLines) {
    lines.resize(maxLines);
    lines.back() += "…";
  }
  for (std::string& line : lines) line = fit(line, width, fontSize);
  return lines;
}

// "2026-05-13" as "13/05/2026"; "2026-05-13T10:15:00+02:00" as "13/05/2026 à 10:15 (+02:00)";
// anything else unchanged.
std::string frenchDate(const std::string& s) {
  auto digits = [&](std::size_t from, std::size_t count) {
    if (from + count > s.size()) return false;
    for (std::size_t i = from; i < from + count; ++i)
      if (s[i] < '0' || s[i] > '9') return false;
    return true;
  };
  if (!(digits(0, 4) && s.size() >= 10 && s[4] == '-' && digits(5, 2) && s[7] == '-' && digits(8, 2))) return s;
  std::string out = s.substr(8, 2) + "/" + s.substr(5, 2) + "/" + s.substr(0, 4);
  if (s.size() == 10) return out;
  if (!(s[10] == 'T' && digits(11, 2) && s.size() >= 16 && s[13] == ':' && digits(14, 2))) return s;
  out += " à " + s.substr(11, 2) + ":" + s.substr(14, 2);
  std::size_t i = 16;
  if (i < s.size() && s[i] == ':') i += 3;
  if (i < s.size() && s[i] == '.')
    for (++i; i < s.size() && s[i] >= '0' && s[i] <= '9';) ++i;
  if (i < s.size()) out += " (" + std::string(s.substr(i) == "Z" ? "UTC" : s.substr(i)) + ")";
  return out;
}

std::string label(const ReportInput& in, const std::string& key) {
  auto it = in.labels.find(key);
  return it == in.labels.end() ? key : it->second;
}
std::string valueLabel(const ReportInput& in, const std::string& dim, const std::string& value) {
  auto it = in.labels.find(dim + "=" + value);
  return it == in.labels.end() ? value : it->second;
}

// "Pathologie : migraine · Semestre : 2" (no-break spaces before the colons); "Ensemble" for the total.
std::string readableStratum(const ReportInput& in, const std::string& stratum) {
  Dims dims = parseStratum(stratum);
  if (dims.empty()) return "Ensemble";
  std::string out;
  for (const auto& [dim, value] : dims) {
    if (!out.empty()) out += " · ";
    out += label(in, dim) + "\u00a0: " + valueLabel(in, dim, value);  // a no-break space keeps "name : value" together
  }
  return out;
}

std::string statusLabel(const std::string& status) {
  if (status == "published") return "publié";
  if (status == "masked") return "masqué";
  if (status == "empty") return "vide (aucune personne)";
  return status;
}

std::string maskedLegend(int k) { return "masqué (effectif < " + std::to_string(k) + ")"; }

// The table-of-contents anchor of the indicator at `index`: letters, digits, '-' and '_' only.
std::string anchor(std::size_t index, const std::string& id) {
  std::string out = "ind-" + std::to_string(index + 1) + "-";
  for (char c : id)
    out += (std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_') ? c : '_';
  return out;
}

// ---- charts ----------------------------------------------------------------------------------

// The plotted cells of one indicator: x values and series values in display order, the cell at
// each (x, series) (the first one when the CSV repeats a stratum).
struct Plot {
  std::vector<std::string> xs, series;
  std::vector<std::vector<const ReportCell*>> at;
  int masked = 0, empty = 0, others = 0;  // `others`: cells of the table only (totals, margins)
};

std::size_t indexIn(std::vector<std::string>& list, const std::string& value) {
  auto it = std::find(list.begin(), list.end(), value);
  if (it != list.end()) return static_cast<std::size_t>(it - list.begin());
  list.push_back(value);
  return list.size() - 1;
}

Plot collect(const ReportIndicator& ind) {
  struct Entry {
    std::string x, s;
    const ReportCell* cell;
  };
  std::vector<Entry> entries;
  Plot p;
  for (const ReportCell& c : ind.cells) {
    Dims d = parseStratum(c.stratum);
    Entry e{"", "", &c};
    if (ind.series.empty() && d.size() == 1 && d[0].first == ind.x) {
      e.x = d[0].second;
    } else if (!ind.series.empty() && ind.series != ind.x && d.size() == 2 && d[0].first == ind.x && d[1].first == ind.series) {
      e.x = d[0].second, e.s = d[1].second;
    } else if (!ind.series.empty() && ind.series != ind.x && d.size() == 2 && d[1].first == ind.x && d[0].first == ind.series) {
      e.x = d[1].second, e.s = d[0].second;
    } else {
      ++p.others;
      continue;
    }
    entries.push_back(e);
  }
  for (const Entry& e : entries) {
    indexIn(p.xs, e.x);
    indexIn(p.series, e.s);
  }
  bool allNumbers = !p.xs.empty() && std::all_of(p.xs.begin(), p.xs.end(), [](const std::string& x) { return number(x).has_value(); });
  if (allNumbers) std::stable_sort(p.xs.begin(), p.xs.end(), [](const std::string& a, const std::string& b) { return *number(a) < *number(b); });
  p.at.assign(p.xs.size(), std::vector<const ReportCell*>(p.series.size(), nullptr));
  for (const Entry& e : entries) {
    const ReportCell*& slot = p.at[indexIn(p.xs, e.x)][indexIn(p.series, e.s)];
    if (slot) continue;
    slot = e.cell;
    if (e.cell->status == "masked") ++p.masked;
    if (e.cell->status == "empty") ++p.empty;
  }
  return p;
}

// The value drawn for a cell: published and a number.
std::optional<double> plotted(const ReportCell* c) { return c && c->status == "published" ? number(c->value) : std::nullopt; }

struct Axis {
  double min = 0, max = 1, step = 1;
};

// From 0 (or below, for negative values) to a "nice" maximum: about five steps of 1, 2, 2.5 or 5
// times a power of ten; steps of whole numbers when `whole`.
Axis niceAxis(double lo, double hi, bool whole) {
  lo = std::min(lo, 0.0);
  hi = std::max(hi, 0.0);
  if (hi - lo <= 0) hi = lo + (whole ? 5 : 1);
  double raw = (hi - lo) / 5;
  double magnitude = std::pow(10.0, std::floor(std::log10(raw)));
  double f = raw / magnitude;
  double nice = f <= 1 ? 1 : f <= 2 ? 2 : (f <= 2.5 && !whole) ? 2.5 : f <= 5 ? 5 : 10;
  Axis a;
  a.step = nice * magnitude;
  if (whole) a.step = std::max(1.0, std::round(a.step));
  a.max = std::ceil(hi / a.step - 1e-9) * a.step;
  a.min = std::floor(lo / a.step + 1e-9) * a.step;
  return a;
}

std::string colourOf(std::size_t series) { return kPalette[series % kPaletteSize]; }

// One marker of a line chart; `attributes` and `title` make it a plotted mark, else a legend symbol.
void marker(std::string& out, std::size_t series, double cx, double cy, const std::string& attributes, const std::string& title) {
  std::string colour = colourOf(series);
  std::string paint = " fill=\"" + colour + "\" stroke=\"#ffffff\" stroke-width=\"1\"" + attributes;
  switch (series % kMarkerShapes) {
    case 0:
      out += "<circle cx=\"" + num(cx) + "\" cy=\"" + num(cy) + "\" r=\"4.5\"" + paint;
      break;
    case 1:
      out += "<rect x=\"" + num(cx - 4) + "\" y=\"" + num(cy - 4) + "\" width=\"8\" height=\"8\"" + paint;
      break;
    case 2:
      out += "<path d=\"M" + num(cx) + " " + num(cy - 5.5) + "L" + num(cx + 5.5) + " " + num(cy) + "L" + num(cx) + " " + num(cy + 5.5) + "L" +
             num(cx - 5.5) + " " + num(cy) + "Z\"" + paint;
      break;
    default:
      out += "<path d=\"M" + num(cx) + " " + num(cy - 5.5) + "L" + num(cx + 5) + " " + num(cy + 4) + "L" + num(cx - 5) + " " + num(cy + 4) + "Z\"" +
             paint;
      break;
  }
  static const char* const kTags[] = {"circle", "rect", "path", "path"};
  if (title.empty())
    out += "/>";
  else
    out += "><title>" + escapeHtml(title) + "</title></" + kTags[series % kMarkerShapes] + ">";
}

// The data attributes of a plotted cell.
std::string dataAttributes(const ReportIndicator& ind, const ReportCell& c) {
  std::string out = " class=\"mark\" data-indicator=\"" + escapeHtml(ind.id) + "\" data-stratum=\"" + escapeHtml(c.stratum) + "\" data-status=\"" +
                    escapeHtml(c.status) + "\"";
  if (c.status == "published") out += " data-value=\"" + escapeHtml(c.value) + "\"";
  return out;
}

std::string tooltip(const ReportInput& in, const ReportIndicator& ind, const ReportCell& c) {
  std::string out = readableStratum(in, c.stratum) + " — ";
  if (c.status == "masked") return out + maskedLegend(in.k);
  out += french(c.value);
  if (!ind.unit.empty()) out += " " + ind.unit;
  if (!c.n.empty()) out += " (n = " + c.n + ")";
  return out;
}

void renderChart(std::string& out, const ReportInput& in, const ReportIndicator& ind, const Plot& p, std::size_t chartIndex) {
  const bool line = ind.chart == "line";
  const std::string hatch = "hatch-" + std::to_string(chartIndex + 1);
  const std::size_t nx = p.xs.size(), ns = p.series.size();
  const double plotWidth = kWidth - kLeft - kRight, slot = plotWidth / static_cast<double>(nx);

  // Legend rows: one entry per series (when there are several), then the masked cells.
  struct LegendItem {
    std::string text;
    int series;  // -1: masked
  };
  std::vector<LegendItem> legend;
  if (!ind.series.empty())
    for (std::size_t s = 0; s < ns; ++s) legend.push_back({valueLabel(in, ind.series, p.series[s]), static_cast<int>(s)});
  if (p.masked) legend.push_back({maskedLegend(in.k), -1});
  std::vector<std::pair<double, int>> legendAt;  // x and row of each item
  int rows = legend.empty() ? 0 : 1;
  double cursor = kLeft;
  for (const LegendItem& item : legend) {
    double w = 22 + textWidth(item.text, kLegendFont) + 18;
    if (cursor > kLeft && cursor + w > kWidth - kRight) {
      ++rows;
      cursor = kLeft;
    }
    legendAt.emplace_back(cursor, rows - 1);
    cursor += w;
  }
  const double plotTop = rows ? 10 + rows * kLegendRow + 8 : 14;
  const double plotBottom = plotTop + kPlotHeight;

  // X labels, wrapped to their slot.
  std::vector<std::vector<std::string>> xLabels;
  std::size_t labelLines = 1;
  for (const std::string& x : p.xs) {
    xLabels.push_back(wrap(valueLabel(in, ind.x, x), slot - 4, kTickFont, 2));
    labelLines = std::max(labelLines, xLabels.back().size());
  }
  const double xTitleY = plotBottom + 16 + 13.0 * static_cast<double>(labelLines) + 6;
  const double height = xTitleY + 10;

  // Y scale.
  double lo = 0, hi = 0;
  for (const auto& row : p.at)
    for (const ReportCell* c : row)
      if (auto v = plotted(c)) lo = std::min(lo, *v), hi = std::max(hi, *v);
  const Axis axis = niceAxis(lo, hi, ind.kind == "count");
  auto yOf = [&](double v) { return plotBottom - (v - axis.min) / (axis.max - axis.min) * kPlotHeight; };
  auto xOf = [&](std::size_t i) { return kLeft + slot * (static_cast<double>(i) + 0.5); };

  out += "<svg class=\"chart chart-" + escapeHtml(ind.chart) + "\" viewBox=\"0 0 " + num(kWidth) + " " + num(height) + "\" width=\"" + num(kWidth) +
         "\" height=\"" + num(height) + "\" role=\"img\" aria-label=\"" + escapeHtml(ind.title) + "\">\n";
  out += "<title>" + escapeHtml(ind.title) + "</title>\n";
  out += "<defs><pattern id=\"" + hatch +
         "\" patternUnits=\"userSpaceOnUse\" width=\"6\" height=\"6\" patternTransform=\"rotate(45)\">"
         "<rect width=\"6\" height=\"6\" fill=\"#ffffff\"/><line x1=\"0\" y1=\"0\" x2=\"0\" y2=\"6\" stroke=\"#8c8c8c\" stroke-width=\"2.4\"/>"
         "</pattern></defs>\n";

  // Legend.
  if (!legend.empty()) {
    out += "<g class=\"legend\" font-size=\"" + num(kLegendFont) + "\">";
    for (std::size_t i = 0; i < legend.size(); ++i) {
      double x = legendAt[i].first, y = 10 + legendAt[i].second * kLegendRow + kLegendRow / 2;
      const LegendItem& item = legend[i];
      if (item.series < 0) {
        out += "<rect x=\"" + num(x + 3) + "\" y=\"" + num(y - 7) + "\" width=\"12\" height=\"14\" fill=\"url(#" + hatch +
               ")\" stroke=\"#555555\" stroke-dasharray=\"3 2\"/>";
      } else if (line) {
        out += "<line x1=\"" + num(x) + "\" y1=\"" + num(y) + "\" x2=\"" + num(x + 18) + "\" y2=\"" + num(y) + "\" stroke=\"" + colourOf(item.series) +
               "\" stroke-width=\"2.5\"/>";
        marker(out, static_cast<std::size_t>(item.series), x + 9, y, "", "");
      } else {
        out += "<rect x=\"" + num(x + 3) + "\" y=\"" + num(y - 6) + "\" width=\"12\" height=\"12\" fill=\"" + colourOf(item.series) + "\"/>";
      }
      out += "<text x=\"" + num(x + 22) + "\" y=\"" + num(y + 4) + "\">" + escapeHtml(item.text) + "</text>";
    }
    out += "</g>\n";
  }

  // Grid and y axis.
  out += "<g class=\"axis y\" font-size=\"" + num(kTickFont) + "\">";
  for (int i = 0;; ++i) {
    double v = axis.min + axis.step * i;
    if (v > axis.max + axis.step * 1e-6) break;
    double y = yOf(v);
    out += "<line x1=\"" + num(kLeft) + "\" y1=\"" + num(y) + "\" x2=\"" + num(kWidth - kRight) + "\" y2=\"" + num(y) + "\" stroke=\"" +
           (std::fabs(v) < axis.step * 1e-6 ? "#555555" : "#e3e3e3") + "\" stroke-width=\"1\"/>";
    out += "<line x1=\"" + num(kLeft - 5) + "\" y1=\"" + num(y) + "\" x2=\"" + num(kLeft) + "\" y2=\"" + num(y) + "\" stroke=\"#555555\"/>";
    out += "<text x=\"" + num(kLeft - 8) + "\" y=\"" + num(y + 4) + "\" text-anchor=\"end\">" + escapeHtml(french(num(v, 6))) + "</text>";
  }
  out += "<line x1=\"" + num(kLeft) + "\" y1=\"" + num(plotTop) + "\" x2=\"" + num(kLeft) + "\" y2=\"" + num(plotBottom) + "\" stroke=\"#555555\"/>";
  if (!ind.unit.empty()) {
    double cy = plotTop + kPlotHeight / 2;
    out += "<text x=\"16\" y=\"" + num(cy) + "\" text-anchor=\"middle\" transform=\"rotate(-90 16 " + num(cy) + ")\">" +
           escapeHtml(fit(ind.unit, kPlotHeight, kTickFont)) + "</text>";
  }
  out += "</g>\n";

  // X axis.
  out += "<g class=\"axis x\" font-size=\"" + num(kTickFont) + "\">";
  out += "<line x1=\"" + num(kLeft) + "\" y1=\"" + num(plotBottom) + "\" x2=\"" + num(kWidth - kRight) + "\" y2=\"" + num(plotBottom) +
         "\" stroke=\"#555555\"/>";
  for (std::size_t i = 0; i < nx; ++i) {
    double x = xOf(i);
    out += "<line x1=\"" + num(x) + "\" y1=\"" + num(plotBottom) + "\" x2=\"" + num(x) + "\" y2=\"" + num(plotBottom + 5) + "\" stroke=\"#555555\"/>";
    out += "<text x=\"" + num(x) + "\" y=\"" + num(plotBottom + 18) + "\" text-anchor=\"middle\">";
    for (std::size_t l = 0; l < xLabels[i].size(); ++l)
      out += "<tspan x=\"" + num(x) + "\" dy=\"" + (l ? "13" : "0") + "\">" + escapeHtml(xLabels[i][l]) + "</tspan>";
    out += "</text>";
  }
  out += "<text x=\"" + num(kLeft + plotWidth / 2) + "\" y=\"" + num(xTitleY) + "\" text-anchor=\"middle\" font-weight=\"600\">" +
         escapeHtml(fit(label(in, ind.x), plotWidth, kTickFont)) + "</text>";
  out += "</g>\n";

  // Masked placeholders: hatched, spanning the y range (the value is unknown), one narrow band per
  // series in a line chart, the bar's place in a bar chart.
  const double group = std::min(slot * 0.8, 56.0 * static_cast<double>(ns)), bar = group / static_cast<double>(ns);
  const double band = std::min(10.0, group / static_cast<double>(ns) / 1.2);
  auto maskedBox = [&](std::string& o, const ReportCell& c, std::size_t s, double x, double w) {
    o += "<rect" + dataAttributes(ind, c) + " x=\"" + num(x) + "\" y=\"" + num(plotTop) + "\" width=\"" + num(w) + "\" height=\"" + num(kPlotHeight) +
         "\" fill=\"url(#" + hatch + ")\" stroke=\"" + colourOf(s) + "\" stroke-width=\"1.2\" stroke-dasharray=\"3 2\"><title>" +
         escapeHtml(tooltip(in, ind, c)) + "</title></rect>";
  };

  if (line) {
    for (std::size_t s = 0; s < ns; ++s) {
      std::string colour = colourOf(s);
      out += "<g class=\"series\" data-series=\"" + escapeHtml(p.series[s]) + "\">";
      // The line, broken wherever a value is not published.
      std::string d;
      std::size_t run = 0;
      for (std::size_t i = 0; i <= nx; ++i) {
        std::optional<double> v = i < nx ? plotted(p.at[i][s]) : std::nullopt;
        if (v) {
          d += (run ? "L" : "M") + num(xOf(i)) + " " + num(yOf(*v));
          ++run;
          continue;
        }
        if (run >= 2) out += "<path d=\"" + d + "\" fill=\"none\" stroke=\"" + colour + "\" stroke-width=\"2.5\" stroke-linejoin=\"round\"/>";
        d.clear();
        run = 0;
      }
      for (std::size_t i = 0; i < nx; ++i) {
        const ReportCell* c = p.at[i][s];
        if (!c) continue;
        if (c->status == "masked") {
          double offset = (static_cast<double>(s) - static_cast<double>(ns - 1) / 2) * band * 1.2;
          maskedBox(out, *c, s, xOf(i) + offset - band / 2, band);
        } else if (auto v = plotted(c)) {
          marker(out, s, xOf(i), yOf(*v), dataAttributes(ind, *c), tooltip(in, ind, *c));
        }
      }
      out += "</g>\n";
    }
  } else {
    const bool labels = bar >= 26;
    for (std::size_t s = 0; s < ns; ++s) {
      std::string colour = colourOf(s);
      out += "<g class=\"series\" data-series=\"" + escapeHtml(p.series[s]) + "\">";
      for (std::size_t i = 0; i < nx; ++i) {
        const ReportCell* c = p.at[i][s];
        if (!c) continue;
        double x = kLeft + slot * static_cast<double>(i) + (slot - group) / 2 + bar * static_cast<double>(s) + 1;
        double w = std::max(1.0, bar - 2);
        if (c->status == "masked") {
          maskedBox(out, *c, s, x, w);
        } else if (auto v = plotted(c)) {
          double y0 = yOf(0), y1 = yOf(*v);
          double top = std::min(y0, y1), h = std::max(1.5, std::fabs(y0 - y1));  // a zero stays visible as a line
          if (*v == 0) top = y0 - h;
          out += "<rect" + dataAttributes(ind, *c) + " x=\"" + num(x) + "\" y=\"" + num(top) + "\" width=\"" + num(w) + "\" height=\"" + num(h) +
                 "\" fill=\"" + colour + "\"><title>" + escapeHtml(tooltip(in, ind, *c)) + "</title></rect>";
          if (labels)
            out += "<text x=\"" + num(x + w / 2) + "\" y=\"" + num(*v < 0 ? top + h + 12 : top - 4) + "\" text-anchor=\"middle\" font-size=\"10\">" +
                   escapeHtml(french(c->value)) + "</text>";
        }
      }
      out += "</g>\n";
    }
  }
  out += "</svg>\n";
}

// ---- the page --------------------------------------------------------------------------------

constexpr const char* kStyle = R"(@page { size: A4; margin: 14mm 12mm; }
* { box-sizing: border-box; }
html { -webkit-print-color-adjust: exact; print-color-adjust: exact; }
body { margin: 0 auto; max-width: 186mm; padding: 8mm 4mm; color: #1a1a1a; background: #ffffff;
  font-family: system-ui, "Segoe UI", Roboto, "Helvetica Neue", Arial, "Liberation Sans", "DejaVu Sans", sans-serif;
  font-size: 11pt; line-height: 1.45; }
header { border-bottom: 2px solid #0072B2; padding-bottom: 4mm; margin-bottom: 6mm; }
h1 { font-size: 20pt; line-height: 1.2; margin: 0 0 3mm; }
h2 { font-size: 14pt; line-height: 1.25; margin: 0 0 1.5mm; color: #0b3d63; }
dl.meta { display: grid; grid-template-columns: max-content 1fr; gap: 0.5mm 4mm; margin: 0 0 3mm; font-size: 10pt; }
dl.meta dt { font-weight: 600; color: #444444; }
dl.meta dd { margin: 0; }
.note { background: #f2f6f9; border-left: 4px solid #0072B2; padding: 2mm 3mm; margin: 0; font-size: 10pt; }
.swatch-masked { display: inline-block; width: 1.1em; height: 0.9em; vertical-align: -0.1em; border: 1px dashed #555555;
  background: repeating-linear-gradient(45deg, #ffffff 0 2px, #8c8c8c 2px 3.5px); }
nav { margin: 0 0 6mm; font-size: 10pt; }
nav h2 { font-size: 11pt; color: #444444; }
nav ol { columns: 2; margin: 0; padding-left: 6mm; }
nav a { color: #0b3d63; text-decoration: none; }
section.indicator { margin: 0 0 9mm; break-inside: avoid-page; }
.definition { margin: 0 0 1mm; }
.unit { margin: 0 0 3mm; color: #555555; font-size: 10pt; }
figure { margin: 0 0 3mm; break-inside: avoid; }
svg.chart { display: block; width: 100%; max-width: 170mm; height: auto; }
svg.chart text { font-family: inherit; fill: #333333; }
figcaption { font-size: 9pt; color: #555555; margin-top: 1mm; }
table { border-collapse: collapse; width: 100%; font-size: 9.5pt; }
caption { text-align: left; font-weight: 600; padding-bottom: 1mm; }
th, td { border-bottom: 1px solid #dddddd; padding: 0.8mm 2mm; text-align: left; vertical-align: top; }
thead th { border-bottom: 2px solid #999999; vertical-align: bottom; }
.th-unit { font-weight: normal; color: #555555; }
thead { display: table-header-group; }
tr { break-inside: avoid; }
.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
tr.masked th, tr.masked td { background: repeating-linear-gradient(45deg, #ffffff 0 4px, #ececec 4px 8px); }
tr.empty { color: #777777; }
footer { border-top: 1px solid #cccccc; margin-top: 6mm; padding-top: 2mm; font-size: 9pt; color: #555555; }
@media print { body { padding: 0; max-width: none; } nav { display: none; } }
)";

void renderTable(std::string& out, const ReportInput& in, const ReportIndicator& ind) {
  out += "<table>\n<caption>Toutes les cellules</caption>\n<thead><tr><th scope=\"col\">Strate</th><th scope=\"col\" class=\"num\">Valeur";
  if (!ind.unit.empty()) out += "<br><span class=\"th-unit\">" + escapeHtml(ind.unit) + "</span>";
  out += "</th><th scope=\"col\" class=\"num\">Effectif (n)</th><th scope=\"col\">Statut</th></tr></thead>\n<tbody>\n";
  for (const ReportCell& c : ind.cells) {
    std::string rowClass = c.status == "masked" ? " class=\"masked\"" : c.status == "empty" ? " class=\"empty\"" : "";
    out += "<tr" + rowClass + "><th scope=\"row\">" + escapeHtml(readableStratum(in, c.stratum)) + "</th><td class=\"num\">" +
           escapeHtml(c.value.empty() ? "—" : french(c.value)) + "</td><td class=\"num\">" + escapeHtml(c.n.empty() ? "—" : c.n) + "</td><td>" +
           escapeHtml(statusLabel(c.status)) + "</td></tr>\n";
  }
  out += "</tbody>\n</table>\n";
}

}  // namespace

std::string escapeHtml(const std::string& text) {
  std::string out;
  out.reserve(text.size() + text.size() / 8);
  for (char c : text) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      case '\'': out += "&#39;"; break;
      case '\t':
      case '\n':
      case '\r': out += c; break;
      default:
        if (static_cast<unsigned char>(c) >= 0x20 && c != 0x7F) out += c;
        break;
    }
  }
  return out;
}

std::string renderHtml(const ReportInput& in) {
  std::string out;
  out += "<!DOCTYPE html>\n<html lang=\"fr\">\n<head>\n<meta charset=\"utf-8\">\n";
  out += "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n";
  out += "<title>" + escapeHtml(in.title) + "</title>\n<style>\n" + kStyle + "</style>\n</head>\n<body>\n";

  const std::string k = std::to_string(in.k);
  out += "<header>\n<h1>" + escapeHtml(in.title) + "</h1>\n<dl class=\"meta\">\n";
  auto meta = [&](const char* term, const std::string& value) {
    out += std::string("<dt>") + term + "</dt><dd>" + escapeHtml(value) + "</dd>\n";
  };
  meta("Destinataire", in.recipient);
  meta("Période", "du " + frenchDate(in.periodStart) + " au " + frenchDate(in.periodEnd));
  meta("Créé le", frenchDate(in.created));
  meta("Produit par", in.generator);
  meta("Seuil de masquage", "k = " + k);
  out += "</dl>\n<p class=\"note\">Pour protéger la vie privée, une cellule qui compte de 1 à " + escapeHtml(std::to_string(in.k - 1)) +
         " personnes (moins de k = " + escapeHtml(k) +
         ") n’est pas publiée, de même que les cellules voisines qui permettraient de la retrouver par différence : elles sont "
         "«\u00a0masquées\u00a0». Dans les graphiques, une cellule masquée apparaît comme une bande hachurée <span class=\"swatch-masked\"></span> "
         "sur toute la hauteur, car sa valeur est inconnue ; une cellule vide (aucune personne) n’est pas représentée. Sous chaque graphique, "
         "un tableau reprend toutes les cellules, totaux compris. Les nombres sont écrits avec une virgule décimale (le fichier "
         "indicators.csv emploie le point).</p>\n</header>\n";

  if (in.indicators.size() > 1) {
    out += "<nav>\n<h2>Sommaire</h2>\n<ol>\n";
    for (std::size_t i = 0; i < in.indicators.size(); ++i)
      out += "<li><a href=\"#" + anchor(i, in.indicators[i].id) + "\">" + escapeHtml(in.indicators[i].title) + "</a></li>\n";
    out += "</ol>\n</nav>\n";
  }

  out += "<main>\n";
  std::size_t charts = 0;
  for (std::size_t i = 0; i < in.indicators.size(); ++i) {
    const ReportIndicator& ind = in.indicators[i];
    out += "<section class=\"indicator\" id=\"" + anchor(i, ind.id) + "\">\n<h2>" + escapeHtml(ind.title) + "</h2>\n";
    if (!ind.definition.empty()) out += "<p class=\"definition\">" + escapeHtml(ind.definition) + "</p>\n";
    std::string unit = ind.unit.empty() ? "" : "Unité : " + ind.unit;
    std::string kind = ind.kind == "count" ? "nombre" : ind.kind == "mean" ? "moyenne" : ind.kind;
    if (!kind.empty()) unit += (unit.empty() ? "" : " · ") + std::string("Type : ") + kind;
    unit += (unit.empty() ? "" : " · ") + std::string("Identifiant : ") + ind.id;
    out += "<p class=\"unit\">" + escapeHtml(unit) + "</p>\n";

    if ((ind.chart == "line" || ind.chart == "bars") && !ind.x.empty()) {
      Plot p = collect(ind);
      if (!p.xs.empty()) {
        out += "<figure>\n";
        renderChart(out, in, ind, p, charts++);
        std::string caption = "Axe horizontal : " + label(in, ind.x) + ".";
        if (!ind.series.empty()) caption += " Une couleur par " + label(in, ind.series) + ".";
        if (p.masked) caption += " " + std::to_string(p.masked) + (p.masked > 1 ? " cellules masquées (hachurées)." : " cellule masquée (hachurée).");
        if (p.empty) caption += " " + std::to_string(p.empty) + (p.empty > 1 ? " cellules vides, non représentées." : " cellule vide, non représentée.");
        if (p.others) caption += " Totaux et marges : dans le tableau seulement.";
        out += "<figcaption>" + escapeHtml(caption) + "</figcaption>\n</figure>\n";
      }
    }
    renderTable(out, in, ind);
    out += "</section>\n";
  }
  out += "</main>\n<footer>Rapport produit par " + escapeHtml(in.generator) + " le " + escapeHtml(frenchDate(in.created)) +
         " ; les valeurs sont celles du fichier indicators.csv de l’extraction.</footer>\n</body>\n</html>\n";
  return out;
}

}  // namespace passerelle::extract
