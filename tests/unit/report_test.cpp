// The HTML report of an evaluation extract, read back with a small tag reader of its own: every
// plotted cell is an element carrying its stratum, status and verbatim value; masked cells are
// hatched placeholders without a value; totals and margins are in the tables only; every cell is in
// a table; no script, no external resource; every text escaped.
#include <gtest/gtest.h>

#include <algorithm>
#include <cctype>
#include <map>

#include "mappings/extract/report.h"

namespace passerelle::extract {
namespace {

// ---- a minimal reader of the rendered page -------------------------------------------------------

std::string unescape(const std::string& s) {
  static const std::pair<const char*, const char*> kEntities[] = {{"&lt;", "<"}, {"&gt;", ">"}, {"&quot;", "\""}, {"&#39;", "'"}, {"&amp;", "&"}};
  std::string out;
  for (std::size_t i = 0; i < s.size();) {
    bool done = false;
    for (const auto& [entity, text] : kEntities) {
      std::string e = entity;
      if (s.compare(i, e.size(), e) == 0) {
        out += text;
        i += e.size();
        done = true;
        break;
      }
    }
    if (!done) out += s[i++];
  }
  return out;
}

struct Tag {
  std::string name;
  std::map<std::string, std::string> attributes;  // unescaped values
  std::size_t begin = 0, end = 0;                 // the tag's span in the page
};

// The start tags of `html`, in order.
std::vector<Tag> startTags(const std::string& html) {
  std::vector<Tag> tags;
  for (std::size_t i = html.find('<'); i != std::string::npos; i = html.find('<', i + 1)) {
    if (i + 1 >= html.size() || !std::isalpha(static_cast<unsigned char>(html[i + 1]))) continue;
    Tag t;
    t.begin = i;
    std::size_t j = i + 1;
    while (j < html.size() && (std::isalnum(static_cast<unsigned char>(html[j])) || html[j] == '-')) t.name += html[j++];
    while (j < html.size() && html[j] != '>') {
      if (std::isspace(static_cast<unsigned char>(html[j])) || html[j] == '/') {
        ++j;
        continue;
      }
      std::string name;
      while (j < html.size() && html[j] != '=' && html[j] != '>' && html[j] != '/' && !std::isspace(static_cast<unsigned char>(html[j]))) name += html[j++];
      std::string value;
      if (j < html.size() && html[j] == '=') {
        ++j;
        char quote = html[j];
        if (quote == '"' || quote == '\'') {
          std::size_t close = html.find(quote, j + 1);
          value = html.substr(j + 1, close - j - 1);
          j = close + 1;
        } else {
          while (j < html.size() && html[j] != '>' && !std::isspace(static_cast<unsigned char>(html[j]))) value += html[j++];
        }
      }
      t.attributes[name] = unescape(value);
    }
    t.end = j + 1;
    tags.push_back(std::move(t));
  }
  return tags;
}

std::string attribute(const Tag& t, const std::string& name) {
  auto it = t.attributes.find(name);
  return it == t.attributes.end() ? "" : it->second;
}

std::vector<Tag> marksOf(const std::vector<Tag>& tags, const std::string& indicator, const std::string& stratum) {
  std::vector<Tag> out;
  for (const Tag& t : tags)
    if (attribute(t, "data-indicator") == indicator && t.attributes.count("data-stratum") && attribute(t, "data-stratum") == stratum) out.push_back(t);
  return out;
}

// The <section> holding the heading `escapedTitle`.
std::string sectionOf(const std::string& html, const std::string& escapedTitle) {
  std::size_t h = html.find("<h2>" + escapedTitle + "</h2>");
  if (h == std::string::npos) return "";
  std::size_t begin = html.rfind("<section", h), end = html.find("</section>", h);
  return begin == std::string::npos || end == std::string::npos ? "" : html.substr(begin, end - begin);
}

// The rows of the first table body of `html`: the text of each cell, tags removed, unescaped.
std::vector<std::vector<std::string>> tableRows(const std::string& html) {
  std::vector<std::vector<std::string>> rows;
  std::size_t body = html.find("<tbody>"), bodyEnd = html.find("</tbody>", body);
  if (body == std::string::npos || bodyEnd == std::string::npos) return rows;
  std::string t = html.substr(body, bodyEnd - body);
  for (std::size_t r = t.find("<tr"); r != std::string::npos; r = t.find("<tr", r + 1)) {
    std::size_t rowEnd = t.find("</tr>", r);
    std::vector<std::string> cells;
    for (std::size_t c = t.find("<t", r + 3); c != std::string::npos && c < rowEnd; c = t.find("<t", c + 1)) {
      if (t.compare(c, 3, "<td") != 0 && t.compare(c, 3, "<th") != 0) continue;
      std::size_t open = t.find('>', c) + 1, close = t.find("</t", open);
      std::string text, inner = t.substr(open, close - open);
      bool inTag = false;
      for (char ch : inner) {
        if (ch == '<') inTag = true;
        if (!inTag) text += ch;
        if (ch == '>') inTag = false;
      }
      cells.push_back(unescape(text));
      c = close;
    }
    rows.push_back(cells);
  }
  return rows;
}

// ---- the report under test -----------------------------------------------------------------------

const std::string kHostileTitle = "Évaluation 2025 <script>alert(1)</script> & \"co\" 'réseau'";
const std::string kHostileTitleEscaped = "Évaluation 2025 &lt;script&gt;alert(1)&lt;/script&gt; &amp; &quot;co&quot; &#39;réseau&#39;";
const std::string kDiffuse = "douleurs <diffuses> & \"autres\"";

ReportInput sample() {
  ReportInput in;
  in.title = kHostileTitle;
  in.recipient = "CPAM de Seine-et-Marne";
  in.periodStart = "2025-01-01";
  in.periodEnd = "2025-12-31";
  in.created = "2026-01-15T09:30:00+01:00";
  in.generator = "Passerelle 0.1.0";
  in.k = 10;
  in.labels = {{"pathology", "Pathologie"}, {"semester", "Semestre"}, {"phase", "Phase"}, {"phase=before", "avant"}, {"phase=after", "après"}, {"sex", "Sexe"}};

  ReportIndicator vas{"vas", "Intensité de la douleur (EVA)", "EVA moyenne <b>à la consultation</b> & suivi", "EVA (0-10)", "mean", "line",
                      "semester", "pathology", {}};
  // Semesters given out of order (2, 1, 10, 3); one stratum with its dimensions the other way round.
  vas.cells = {{"*", "5.8", "412", "published"},
               {"pathology=migraine", "5.2", "150", "published"},
               {"semester=1", "6.1", "200", "published"},
               {"pathology=migraine|semester=2", "5.4", "40", "published"},
               {"pathology=migraine|semester=1", "6.3", "38", "published"},
               {"pathology=migraine|semester=10", "4.1", "35", "published"},
               {"semester=3|pathology=migraine", "4.75", "37", "published"},
               {"pathology=lombalgie|semester=2", "6.8", "52", "published"},
               {"pathology=lombalgie|semester=1", "7.4", "50", "published"},
               {"pathology=lombalgie|semester=10", "", "", "masked"},
               {"pathology=lombalgie|semester=3", "6.2", "48", "published"},
               {"pathology=" + kDiffuse + "|semester=2", "5.9", "22", "published"},
               {"pathology=" + kDiffuse + "|semester=1", "", "", "masked"},
               {"pathology=" + kDiffuse + "|semester=10", "", "0", "empty"},
               {"pathology=" + kDiffuse + "|semester=3", "5.5", "12", "published"}};

  ReportIndicator beforeAfter{"pain_before_after", "Douleur avant et après le programme", "EVA moyenne en début et en fin de programme",
                              "EVA (0-10)", "mean", "bars", "phase", "pathology", {}};
  beforeAfter.cells = {{"*", "5.6", "300", "published"},
                       {"phase=before", "6.9", "150", "published"},
                       {"phase=after", "4.3", "150", "published"},
                       {"phase=before|pathology=migraine", "6.5", "60", "published"},
                       {"phase=after|pathology=migraine", "4.0", "60", "published"},
                       {"phase=before|pathology=lombalgie", "7.2", "84", "published"},
                       {"phase=after|pathology=lombalgie", "4.6", "84", "published"},
                       {"phase=before|pathology=fibromyalgie", "", "", "masked"},
                       {"phase=after|pathology=fibromyalgie", "", "", "masked"}};

  ReportIndicator included{"patients_included", "Patients inclus", "Patients ayant au moins une consultation", "patients", "count", "table", "", "", {}};
  included.cells = {{"*", "245", "245", "published"},
                    {"sex=F", "150", "150", "published"},
                    {"sex=M", "95", "95", "published"},
                    {"sex=X", "", "", "masked"},
                    {"sex=U", "", "0", "empty"}};

  in.indicators = {vas, beforeAfter, included};
  return in;
}

// A cell of the two charts of the sample: its stratum has the two chart dimensions.
bool isChartCell(const ReportIndicator& ind, const ReportCell& c) { return ind.chart != "table" && std::count(c.stratum.begin(), c.stratum.end(), '|') == 1; }

class ReportTest : public ::testing::Test {
 protected:
  void SetUp() override {
    input_ = sample();
    html_ = renderHtml(input_);
    tags_ = startTags(html_);
  }
  ReportInput input_;
  std::string html_;
  std::vector<Tag> tags_;
};

TEST_F(ReportTest, EveryPlottedCellIsOneElementWithItsStratumStatusAndVerbatimValue) {
  int published = 0, masked = 0;
  for (const ReportIndicator& ind : input_.indicators) {
    for (const ReportCell& c : ind.cells) {
      if (!isChartCell(ind, c)) continue;
      SCOPED_TRACE(ind.id + " " + c.stratum);
      std::vector<Tag> marks = marksOf(tags_, ind.id, c.stratum);
      if (c.status == "empty") {
        EXPECT_TRUE(marks.empty()) << "an empty cell is not drawn";
        continue;
      }
      ASSERT_EQ(marks.size(), 1u);
      const Tag& m = marks[0];
      EXPECT_EQ(attribute(m, "data-status"), c.status);
      EXPECT_EQ(html_.compare(m.end, 7, "<title>"), 0) << "a tooltip follows the mark";
      if (c.status == "published") {
        ++published;
        ASSERT_TRUE(m.attributes.count("data-value"));
        EXPECT_EQ(attribute(m, "data-value"), c.value);
      } else {
        ++masked;
        EXPECT_EQ(m.attributes.count("data-value"), 0u) << "a masked cell has no value";
      }
    }
  }
  EXPECT_EQ(published, 13);
  EXPECT_EQ(masked, 4);
  // Nothing else is plotted.
  int marks = static_cast<int>(std::count_if(tags_.begin(), tags_.end(), [](const Tag& t) { return t.attributes.count("data-stratum") > 0; }));
  EXPECT_EQ(marks, published + masked);
}

TEST_F(ReportTest, TotalsMarginsAndTableOnlyIndicatorsAreNotPlotted) {
  for (const ReportIndicator& ind : input_.indicators)
    for (const ReportCell& c : ind.cells)
      if (!isChartCell(ind, c)) {
        EXPECT_TRUE(marksOf(tags_, ind.id, c.stratum).empty()) << ind.id << " " << c.stratum;
      }
  std::string table = sectionOf(html_, "Patients inclus");
  ASSERT_FALSE(table.empty());
  EXPECT_EQ(table.find("<svg"), std::string::npos);
  for (const char* title : {"Intensité de la douleur (EVA)", "Douleur avant et après le programme"}) {
    std::string s = sectionOf(html_, title);
    ASSERT_FALSE(s.empty()) << title;
    std::size_t first = s.find("<svg class=\"chart");
    EXPECT_NE(first, std::string::npos) << title;
    EXPECT_EQ(s.find("<svg", first + 1), std::string::npos) << title;
  }
}

TEST_F(ReportTest, MaskedCellsAreHatchedPlaceholdersNamedInTheLegend) {
  int masked = 0;
  for (const Tag& t : tags_) {
    if (attribute(t, "data-status") != "masked") continue;
    ++masked;
    std::string fill = attribute(t, "fill");
    ASSERT_EQ(fill.rfind("url(#", 0), 0u) << fill;
    std::string id = fill.substr(5, fill.size() - 6);
    bool defined = std::any_of(tags_.begin(), tags_.end(), [&](const Tag& p) { return p.name == "pattern" && attribute(p, "id") == id; });
    EXPECT_TRUE(defined) << id;
    EXPECT_GT(std::stod(attribute(t, "height")), 0);
  }
  EXPECT_EQ(masked, 4);
  for (const char* title : {"Intensité de la douleur (EVA)", "Douleur avant et après le programme"})
    EXPECT_NE(sectionOf(html_, title).find(">masqué (effectif &lt; 10)</text>"), std::string::npos) << title;
}

TEST_F(ReportTest, NumericCategoriesAreSortedAndOthersKeepTheirFirstSeenOrder) {
  auto at = [&](const std::string& indicator, const std::string& stratum) {
    std::vector<Tag> m = marksOf(tags_, indicator, stratum);
    return m.empty() ? std::string::npos : m[0].begin;
  };
  std::size_t s1 = at("vas", "pathology=migraine|semester=1"), s2 = at("vas", "pathology=migraine|semester=2");
  std::size_t s3 = at("vas", "semester=3|pathology=migraine"), s10 = at("vas", "pathology=migraine|semester=10");
  ASSERT_NE(s10, std::string::npos);
  EXPECT_LT(s1, s2);
  EXPECT_LT(s2, s3);
  EXPECT_LT(s3, s10);
  // "before" was seen first ("after" sorts first alphabetically).
  EXPECT_LT(at("pain_before_after", "phase=before|pathology=migraine"), at("pain_before_after", "phase=after|pathology=migraine"));
  std::string bars = sectionOf(html_, "Douleur avant et après le programme");
  EXPECT_LT(bars.find(">avant</tspan>"), bars.find(">après</tspan>"));
}

TEST_F(ReportTest, TheYAxisRunsFromZeroToANiceMaximum) {
  // Largest values 7.4 and 7.2: ticks 0, 2, 4, 6, 8.
  for (const char* title : {"Intensité de la douleur (EVA)", "Douleur avant et après le programme"}) {
    std::string s = sectionOf(html_, title);
    std::size_t axis = s.find("<g class=\"axis y\""), axisEnd = s.find("</g>", axis);
    ASSERT_NE(axis, std::string::npos) << title;
    std::string y = s.substr(axis, axisEnd - axis);
    for (const char* tick : {">0</text>", ">2</text>", ">4</text>", ">6</text>", ">8</text>"}) EXPECT_NE(y.find(tick), std::string::npos) << title << tick;
    EXPECT_EQ(y.find(">10</text>"), std::string::npos) << title;
    EXPECT_EQ(y.find(">7,4</text>"), std::string::npos) << title;
  }
}

TEST_F(ReportTest, BarsAreProportionalToTheValuesAndLinesBreakAtHiddenCells) {
  // Bars: rectangles standing on the zero line, their height proportional to the value.
  double ratio = 0;
  int bars = 0;
  for (const Tag& t : tags_) {
    if (attribute(t, "data-indicator") != "pain_before_after" || attribute(t, "data-status") != "published") continue;
    ++bars;
    EXPECT_EQ(t.name, "rect");
    double h = std::stod(attribute(t, "height")), v = std::stod(attribute(t, "data-value"));
    if (ratio == 0) ratio = h / v;
    EXPECT_NEAR(h / v, ratio, ratio * 0.01) << attribute(t, "data-stratum");
  }
  EXPECT_EQ(bars, 4);
  EXPECT_GT(ratio, 0);

  // Lines: one path per run of published values; migraine (4 points), lombalgie (semesters 1-3),
  // the third series (semesters 2-3, after its masked semester 1).
  std::string vas = sectionOf(html_, "Intensité de la douleur (EVA)");
  std::vector<Tag> vasTags = startTags(vas);
  std::vector<std::size_t> segments;
  for (const Tag& t : vasTags)
    if (t.name == "path" && attribute(t, "fill") == "none") {
      std::string d = attribute(t, "d");
      segments.push_back(static_cast<std::size_t>(std::count(d.begin(), d.end(), 'L')));
    }
  EXPECT_EQ(segments, (std::vector<std::size_t>{3, 2, 1}));
  // Higher values are higher on the page (smaller y).
  double previous = -1;
  for (const char* stratum : {"pathology=migraine|semester=1", "pathology=migraine|semester=2", "semester=3|pathology=migraine", "pathology=migraine|semester=10"}) {
    std::vector<Tag> m = marksOf(vasTags, "vas", stratum);
    ASSERT_EQ(m.size(), 1u) << stratum;
    ASSERT_EQ(m[0].name, "circle") << stratum;
    double cy = std::stod(attribute(m[0], "cy"));
    EXPECT_GT(cy, previous) << stratum;
    previous = cy;
  }
}

TEST_F(ReportTest, HasNoScriptAndNoExternalResource) {
  std::string lower = html_;
  std::transform(lower.begin(), lower.end(), lower.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  EXPECT_EQ(lower.find("<script"), std::string::npos);
  EXPECT_EQ(lower.find("<link"), std::string::npos);
  EXPECT_EQ(lower.find("@import"), std::string::npos);
  EXPECT_EQ(lower.find("@font-face"), std::string::npos);
  for (std::size_t u = lower.find("url("); u != std::string::npos; u = lower.find("url(", u + 1)) EXPECT_EQ(lower.compare(u, 5, "url(#"), 0);
  int links = 0;
  for (const Tag& t : tags_)
    for (const char* name : {"src", "href", "xlink:href"})
      if (t.attributes.count(name)) {
        ++links;
        std::string v = attribute(t, name);
        EXPECT_EQ(v.rfind('#', 0), 0u) << t.name << " " << name << "=" << v;
        EXPECT_EQ(v.find("http://"), std::string::npos);
        EXPECT_EQ(v.find("https://"), std::string::npos);
      }
  EXPECT_EQ(links, 3) << "the table of contents links to the three sections";
}

TEST_F(ReportTest, EveryTextIsEscaped) {
  EXPECT_EQ(html_.find(kHostileTitle), std::string::npos);
  EXPECT_EQ(html_.find("<script>alert"), std::string::npos);
  EXPECT_NE(html_.find("<title>" + kHostileTitleEscaped + "</title>"), std::string::npos);
  EXPECT_NE(html_.find("<h1>" + kHostileTitleEscaped + "</h1>"), std::string::npos);
  EXPECT_NE(html_.find("EVA moyenne &lt;b&gt;à la consultation&lt;/b&gt; &amp; suivi"), std::string::npos);
  EXPECT_EQ(html_.find("<b>"), std::string::npos);
  EXPECT_EQ(html_.find("<diffuses>"), std::string::npos);
  EXPECT_NE(html_.find("douleurs &lt;diffuses&gt; &amp; &quot;autres&quot;"), std::string::npos);
  EXPECT_EQ(escapeHtml("a&b<c>d\"e'f\x01g"), "a&amp;b&lt;c&gt;d&quot;e&#39;fg");
}

TEST_F(ReportTest, TablesListEveryCellWithValueCountAndStatus) {
  const std::map<std::string, std::string> statuses = {{"published", "publié"}, {"masked", "masqué"}, {"empty", "vide (aucune personne)"}};
  for (const ReportIndicator& ind : input_.indicators) {
    std::string section = sectionOf(html_, escapeHtml(ind.title));
    std::vector<std::vector<std::string>> rows = tableRows(section);
    ASSERT_EQ(rows.size(), ind.cells.size()) << ind.id;
    for (std::size_t i = 0; i < rows.size(); ++i) {
      const ReportCell& c = ind.cells[i];
      SCOPED_TRACE(ind.id + " " + c.stratum);
      ASSERT_EQ(rows[i].size(), 4u);
      EXPECT_FALSE(rows[i][0].empty());
      std::string value = c.value;
      std::replace(value.begin(), value.end(), '.', ',');
      EXPECT_EQ(rows[i][1], c.value.empty() ? "—" : value);
      EXPECT_EQ(rows[i][2], c.n.empty() ? "—" : c.n);
      EXPECT_EQ(rows[i][3], statuses.at(c.status));
    }
  }
  std::vector<std::vector<std::string>> vas = tableRows(sectionOf(html_, "Intensité de la douleur (EVA)"));
  ASSERT_GE(vas.size(), 7u);
  EXPECT_EQ(vas[0][0], "Ensemble");
  EXPECT_EQ(vas[3][0], "Pathologie\u00a0: migraine · Semestre\u00a0: 2");
  EXPECT_EQ(vas[6][0], "Semestre\u00a0: 3 · Pathologie\u00a0: migraine");
  EXPECT_EQ(vas[6][1], "4,75");
  std::vector<std::vector<std::string>> bars = tableRows(sectionOf(html_, "Douleur avant et après le programme"));
  ASSERT_GE(bars.size(), 4u);
  EXPECT_EQ(bars[3][0], "Phase\u00a0: avant · Pathologie\u00a0: migraine");
}

TEST_F(ReportTest, TheHeaderNamesRecipientPeriodDateGeneratorAndK) {
  EXPECT_EQ(html_.rfind("<!DOCTYPE html>\n<html lang=\"fr\">", 0), 0u);
  EXPECT_NE(html_.find("<meta charset=\"utf-8\">"), std::string::npos);
  std::size_t header = html_.find("<header>"), headerEnd = html_.find("</header>");
  ASSERT_NE(headerEnd, std::string::npos);
  std::string h = html_.substr(header, headerEnd - header);
  for (const char* text : {"CPAM de Seine-et-Marne", "du 01/01/2025 au 31/12/2025", "15/01/2026 à 09:30 (+01:00)", "Passerelle 0.1.0", "k = 10",
                           "1 à 9 personnes", "class=\"swatch-masked\""})
    EXPECT_NE(h.find(text), std::string::npos) << text;
}

TEST(Report, AnIndicatorWithoutPlottableCellsHasNoChart) {
  ReportInput in;
  in.title = "t";
  ReportIndicator ind{"x", "Seul total", "", "", "count", "line", "semester", "", {{"*", "12", "12", "published"}}};
  in.indicators = {ind};
  std::string html = renderHtml(in);
  EXPECT_EQ(html.find("<svg"), std::string::npos);
  EXPECT_NE(html.find("<td class=\"num\">12</td>"), std::string::npos);
  // A single series: the cells "semester=v" are plotted, the legend only names masked cells.
  in.indicators[0].cells = {{"semester=1", "12", "12", "published"}, {"semester=2", "", "", "masked"}};
  html = renderHtml(in);
  std::vector<Tag> tags = startTags(html);
  EXPECT_EQ(marksOf(tags, "x", "semester=1").size(), 1u);
  EXPECT_EQ(marksOf(tags, "x", "semester=2").size(), 1u);
  EXPECT_NE(html.find(">masqué (effectif &lt; 10)</text>"), std::string::npos);
}

}  // namespace
}  // namespace passerelle::extract
