// The HTML report of an evaluation extract as headless Chromium renders it: a copy of the page with
// a checking script appended (the report itself has none) measures each chart and each plotted
// element; the dumped DOM carries the measures as JSON. The page also prints on A4 pages.
// Skipped, saying so, when /usr/bin/chromium is absent.
#include <gtest/gtest.h>
#include <stdlib.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "mappings/extract/report.h"

namespace passerelle::extract {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

const char* const kChromium = "/usr/bin/chromium";

// For each svg.chart: its indicator, rendered size, its plotted elements (those with data-stratum),
// how many have a non-zero box (getBBox and on screen) inside the chart's box, and how many of those
// are masked placeholders painted with a pattern.
const char* const kCheckScript = R"js(<script>
(function () {
  var out = [];
  document.querySelectorAll('svg.chart').forEach(function (svg) {
    var r = svg.getBoundingClientRect();
    var marks = svg.querySelectorAll('[data-stratum]');
    var item = { indicator: '', width: r.width, height: r.height, marks: marks.length, visible: 0, inside: 0, maskedVisible: 0, hatched: 0 };
    marks.forEach(function (m) {
      item.indicator = m.getAttribute('data-indicator');
      var b = m.getBBox(), c = m.getBoundingClientRect();
      if (!(b.width > 0 && b.height > 0 && c.width > 0 && c.height > 0)) return;
      item.visible++;
      if (c.left >= r.left - 0.5 && c.right <= r.right + 0.5 && c.top >= r.top - 0.5 && c.bottom <= r.bottom + 0.5) item.inside++;
      if (m.getAttribute('data-status') === 'masked') {
        item.maskedVisible++;
        var fill = getComputedStyle(m).fill;
        var id = (fill.match(/url\("?#([^")]+)"?\)/) || [])[1];
        if (id && document.getElementById(id) && document.getElementById(id).tagName === 'pattern') item.hatched++;
      }
    });
    out.push(item);
  });
  var pre = document.createElement('pre');
  pre.id = 'check';
  pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
})();
</script>
)js";

std::string run(const std::string& command) {
  std::string out;
  FILE* p = popen(command.c_str(), "r");
  if (!p) return out;
  char buf[4096];
  std::size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
  pclose(p);
  return out;
}

// Text content as the DOM serialiser writes it: &, <, > and no-break spaces escaped.
std::string unescape(const std::string& s) {
  std::string out;
  for (std::size_t i = 0; i < s.size();) {
    if (s.compare(i, 5, "&amp;") == 0) out += '&', i += 5;
    else if (s.compare(i, 4, "&lt;") == 0) out += '<', i += 4;
    else if (s.compare(i, 4, "&gt;") == 0) out += '>', i += 4;
    else if (s.compare(i, 6, "&nbsp;") == 0) out += "\u00a0", i += 6;
    else out += s[i++];
  }
  return out;
}

std::string readFile(const fs::path& path) {
  std::ifstream f(path, std::ios::binary);
  std::stringstream s;
  s << f.rdbuf();
  return s.str();
}

ReportInput sample() {
  ReportInput in;
  in.title = "Évaluation du réseau Douleur 77 — 2025";
  in.recipient = "CPAM de Seine-et-Marne";
  in.periodStart = "2025-01-01";
  in.periodEnd = "2025-12-31";
  in.created = "2026-01-15T09:30:00Z";
  in.generator = "Passerelle 0.1.0";
  in.k = 10;
  in.labels = {{"pathology", "Pathologie"}, {"semester", "Semestre"}, {"phase", "Phase"}, {"phase=before", "avant"}, {"phase=after", "après"}};

  // 3 series x 4 semesters: 9 published, 2 masked, 1 empty.
  ReportIndicator vas{"vas", "Intensité de la douleur (EVA)", "EVA moyenne à la consultation", "EVA (0-10)", "mean", "line", "semester", "pathology", {}};
  vas.cells = {{"*", "5.8", "412", "published"}, {"pathology=migraine", "5.2", "150", "published"}};
  const char* const paths[] = {"migraine", "lombalgie chronique", "fibromyalgie"};
  const char* const values[3][4] = {{"6.3", "5.4", "4.75", "4.1"}, {"7.4", "6.8", "6.2", "masked"}, {"masked", "5.9", "5.5", "empty"}};
  for (int p = 0; p < 3; ++p)
    for (int s = 0; s < 4; ++s) {
      std::string stratum = std::string("pathology=") + paths[p] + "|semester=" + std::to_string(s + 1), v = values[p][s];
      if (v == "masked" || v == "empty")
        vas.cells.push_back({stratum, "", v == "empty" ? "0" : "", v});
      else
        vas.cells.push_back({stratum, v, "30", "published"});
    }

  // 2 phases x 3 pathologies: 5 published, 1 masked.
  ReportIndicator beforeAfter{"pain_before_after", "Douleur avant et après le programme", "EVA moyenne en début et en fin de programme",
                              "EVA (0-10)", "mean", "bars", "phase", "pathology", {}};
  beforeAfter.cells = {{"*", "5.6", "300", "published"},
                       {"phase=before|pathology=migraine", "6.5", "60", "published"},
                       {"phase=after|pathology=migraine", "4.0", "60", "published"},
                       {"phase=before|pathology=lombalgie chronique", "7.2", "84", "published"},
                       {"phase=after|pathology=lombalgie chronique", "4.6", "84", "published"},
                       {"phase=before|pathology=fibromyalgie", "5.1", "31", "published"},
                       {"phase=after|pathology=fibromyalgie", "", "", "masked"}};

  // One series of counts; a published zero is still drawn.
  ReportIndicator sessions{"group_sessions", "Séances d'éducation thérapeutique", "Séances collectives par semestre", "séances", "count", "bars",
                           "semester", "", {}};
  sessions.cells = {{"*", "57", "57", "published"}, {"semester=2", "31", "31", "published"}, {"semester=1", "26", "26", "published"},
                    {"semester=3", "0", "0", "published"}};

  ReportIndicator included{"patients_included", "Patients inclus", "Patients ayant au moins une consultation", "patients", "count", "table", "", "", {}};
  included.cells = {{"*", "245", "245", "published"}, {"sex=F", "150", "150", "published"}, {"sex=M", "95", "95", "published"}};

  in.indicators = {vas, beforeAfter, sessions, included};
  return in;
}

class ReportBrowserTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (access(kChromium, X_OK) != 0) GTEST_SKIP() << kChromium << " is absent: the report is not checked in a browser";
    char dir[] = "/tmp/passerelle-report-XXXXXX";
    ASSERT_NE(mkdtemp(dir), nullptr);
    dir_ = dir;
    html_ = renderHtml(sample());
    std::ofstream(dir_ / "report.html", std::ios::binary) << html_;
  }
  void TearDown() override {
    std::error_code ec;
    if (!dir_.empty()) fs::remove_all(dir_, ec);
  }
  std::string chromium(const std::string& arguments, const fs::path& page) {
    return run(std::string("timeout 120 ") + kChromium + " --headless --no-sandbox --disable-gpu --user-data-dir=" + (dir_ / "profile").string() + " " +
               arguments + " file://" + page.string() + " 2>/dev/null");
  }
  fs::path dir_;
  std::string html_;
};

TEST_F(ReportBrowserTest, EveryChartRendersWithAllItsPointsAndBarsVisible) {
  ASSERT_EQ(html_.find("<script"), std::string::npos);
  std::string copy = html_;
  std::size_t body = copy.rfind("</body>");
  ASSERT_NE(body, std::string::npos);
  copy.insert(body, kCheckScript);
  std::ofstream(dir_ / "report-checked.html", std::ios::binary) << copy;
  EXPECT_EQ(readFile(dir_ / "report.html"), html_) << "the report itself stays as rendered";

  std::string dom = chromium("--dump-dom", dir_ / "report-checked.html");
  const std::string open = "<pre id=\"check\">";
  std::size_t at = dom.find(open), end = dom.find("</pre>", at);
  ASSERT_TRUE(at != std::string::npos && end != std::string::npos) << dom.substr(0, 2000);
  std::string text = unescape(dom.substr(at + open.size(), end - at - open.size()));
  json charts = json::parse(text, nullptr, false);
  ASSERT_TRUE(charts.is_array()) << text;

  struct Expected {
    const char* indicator;
    int marks, masked;
  };
  const Expected expected[] = {{"vas", 11, 2}, {"pain_before_after", 6, 1}, {"group_sessions", 3, 0}};
  ASSERT_EQ(charts.size(), std::size(expected)) << text << " (the table-only indicator has no chart)";
  for (std::size_t i = 0; i < charts.size(); ++i) {
    const json& c = charts[i];
    SCOPED_TRACE(c.dump());
    EXPECT_EQ(c.value("indicator", ""), expected[i].indicator);
    EXPECT_GT(c.value("width", 0.0), 300.0);
    EXPECT_GT(c.value("height", 0.0), 150.0);
    EXPECT_EQ(c.value("marks", -1), expected[i].marks);
    EXPECT_EQ(c.value("visible", -1), expected[i].marks) << "every plotted cell has a non-zero size";
    EXPECT_EQ(c.value("inside", -1), expected[i].marks) << "every plotted cell is inside its chart";
    EXPECT_EQ(c.value("maskedVisible", -1), expected[i].masked);
    EXPECT_EQ(c.value("hatched", -1), expected[i].masked) << "masked cells are painted with a pattern";
  }
}

TEST_F(ReportBrowserTest, PrintsOnA4Pages) {
  fs::path pdf = dir_ / "report.pdf";
  chromium("--no-pdf-header-footer --print-to-pdf=" + pdf.string(), dir_ / "report.html");
  std::string bytes = readFile(pdf);
  ASSERT_EQ(bytes.rfind("%PDF-", 0), 0u) << "no PDF printed";
  int pages = 0;
  for (std::size_t at = bytes.find("/MediaBox"); at != std::string::npos; at = bytes.find("/MediaBox", at + 1), ++pages) {
    std::size_t open = bytes.find('[', at), close = bytes.find(']', at);
    ASSERT_TRUE(open != std::string::npos && close != std::string::npos && open < close);
    std::istringstream box(bytes.substr(open + 1, close - open - 1));
    double x0 = -1, y0 = -1, x1 = 0, y1 = 0;
    box >> x0 >> y0 >> x1 >> y1;
    // A4 is 210 x 297 mm: 595.3 x 841.9 points.
    EXPECT_EQ(x0, 0);
    EXPECT_EQ(y0, 0);
    EXPECT_NEAR(x1, 595.3, 1.5);
    EXPECT_NEAR(y1, 841.9, 1.5);
  }
  EXPECT_GE(pages, 1) << "no page size found in the PDF";
}

}  // namespace
}  // namespace passerelle::extract
