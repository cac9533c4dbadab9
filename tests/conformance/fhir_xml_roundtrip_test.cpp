// FHIR XML against the official R4 examples of ../shared/corpora/fhir-test-cases/r4: every JSON
// example goes JSON -> XML -> JSON and comes back equal (as JSON values, numbers by their text,
// the narrative div by its XHTML content), and every XML example reads into JSON that the validator
// judges as it judges the JSON twin of the example, where there is one.
#include <gtest/gtest.h>

#include <filesystem>
#include <nlohmann/json.hpp>
#include <regex>

#include "mappings/fhir/validator.h"
#include "mappings/fhir/xml/fhir_xml.h"
#include "tests/support/test_gateway.h"

using namespace passerelle::testing;
using passerelle::fhir::Issue;
using nlohmann::json;
namespace fs = std::filesystem;

namespace {

// The text of every number of a JSON document, sorted (1.50 and 1.5 differ here).
std::vector<std::string> numberTexts(const std::string& text) {
  std::vector<std::string> out;
  for (std::size_t i = 0; i < text.size(); ++i) {
    char c = text[i];
    if (c == '"') {
      for (++i; i < text.size() && text[i] != '"'; ++i)
        if (text[i] == '\\') ++i;
    } else if (c == '-' || (c >= '0' && c <= '9')) {
      std::size_t b = i;
      while (i < text.size() && std::string_view("+-.eE0123456789").find(text[i]) != std::string_view::npos) ++i;
      out.push_back(text.substr(b, i - b));
      --i;
    }
  }
  std::sort(out.begin(), out.end());  // the XML follows the definition's order, not the JSON's
  return out;
}

// The XHTML of a div as XML reads it: character references decoded, <x></x> written <x/>. The XML
// form keeps the content, not these spellings.
std::string canonicalDiv(std::string s) {
  static const std::regex empty(R"(<([A-Za-z][A-Za-z0-9]*)((?:\s+[^<>]*?)?)\s*></\1>)");
  s = std::regex_replace(s, empty, "<$1$2/>");
  std::string out;
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '&') {
      auto semi = s.find(';', i);
      std::string ent = semi == std::string::npos ? "" : s.substr(i + 1, semi - i - 1);
      std::string rep;
      if (ent == "quot") rep = "\"";
      else if (ent == "apos") rep = "'";
      else if (ent.size() > 1 && ent[0] == '#') {
        unsigned long cp = ent[1] == 'x' ? std::stoul(ent.substr(2), nullptr, 16) : std::stoul(ent.substr(1));
        if (cp == '&') rep = "&amp;";
        else if (cp == '<') rep = "&lt;";
        else if (cp < 0x80) rep = std::string(1, static_cast<char>(cp));
      }
      if (!rep.empty()) {
        out += rep;
        i = semi;
        continue;
      }
    }
    out += s[i];
  }
  return out;
}

void canonicalDivs(json& j) {
  if (j.is_object()) {
    for (auto& [k, v] : j.items()) {
      if (k == "div" && v.is_string()) v = canonicalDiv(v.get<std::string>());
      else canonicalDivs(v);
    }
  } else if (j.is_array()) {
    for (auto& v : j) canonicalDivs(v);
  }
}

std::string issuesText(const std::vector<Issue>& issues) {
  std::string s;
  for (const auto& i : issues) s += "\n  " + i.severity + " " + i.expression + ": " + i.diagnostics;
  return s;
}

std::vector<fs::path> filesIn(const fs::path& dir, const std::string& ext) {
  std::vector<fs::path> files;
  for (const auto& f : fs::directory_iterator(dir))
    if (f.is_regular_file() && f.path().extension() == ext) files.push_back(f.path());
  std::sort(files.begin(), files.end());
  return files;
}

fs::path examplesDir() {
  std::string corpora = corporaDir();
  if (corpora.empty()) return {};
  return fs::path(corpora) / "fhir-test-cases" / "r4" / "examples";
}

}  // namespace

TEST(FhirXmlRoundTripTest, EveryJsonExampleComesBackEqualThroughXml) {
  fs::path dir = examplesDir();
  if (dir.empty() || !fs::exists(dir)) GTEST_SKIP() << "../shared/corpora/fhir-test-cases/r4/examples is absent: the FHIR XML round trip is skipped";
  const auto& validator = passerelle::fhir::Validator::instance();
  int count = 0, exact = 0;
  std::string xml, back;
  for (const auto& path : filesIn(dir, ".json")) {
    std::string text = readFile(path.string());
    std::vector<Issue> issues;
    ASSERT_TRUE(passerelle::fhir::fhirJsonToXml(text, xml, issues)) << path.filename() << issuesText(issues);
    ASSERT_TRUE(passerelle::fhir::fhirXmlToJson(xml, back, issues)) << path.filename() << issuesText(issues) << "\n" << xml.substr(0, 2000);
    json original = json::parse(text), again = json::parse(back, nullptr, false);
    ASSERT_FALSE(again.is_discarded()) << path.filename() << ": the JSON written from XML does not parse:\n" << back.substr(0, 2000);
    EXPECT_EQ(numberTexts(back), numberTexts(text)) << path.filename();
    if (again == original) {
      ++exact;
    } else {
      canonicalDivs(original);
      canonicalDivs(again);
      EXPECT_EQ(again, original) << path.filename() << "\n" << json::diff(original, again).dump(1).substr(0, 3000);
    }
    EXPECT_EQ(validator.validate(back).hasErrors(), validator.validate(text).hasErrors()) << path.filename();
    // Pretty XML reads the same.
    std::string pretty, back2;
    ASSERT_TRUE(passerelle::fhir::fhirJsonToXml(text, pretty, issues, {true, true})) << path.filename();
    ASSERT_TRUE(passerelle::fhir::fhirXmlToJson(pretty, back2, issues)) << path.filename() << issuesText(issues);
    EXPECT_EQ(back2, back) << path.filename();
    ++count;
  }
  EXPECT_GT(count, 50);
  std::cout << "[ FHIR XML ] " << count << " JSON examples through XML and back: " << exact
            << " identical, the rest equal but for the spelling of their div (character references, <x></x>)\n";
  RecordProperty("examples", count);
  RecordProperty("identical", exact);
}

TEST(FhirXmlRoundTripTest, EveryXmlExampleReadsAndValidatesAsItsJsonTwin) {
  fs::path dir = examplesDir();
  if (dir.empty() || !fs::exists(dir)) GTEST_SKIP() << "../shared/corpora/fhir-test-cases/r4/examples is absent: the FHIR XML examples are skipped";
  const auto& validator = passerelle::fhir::Validator::instance();
  int count = 0, twins = 0, sameContent = 0, refused = 0;
  std::string json;
  for (const fs::path& folder : {dir, dir.parent_path()}) {
    for (const auto& path : filesIn(folder, ".xml")) {
      std::string text = readFile(path.string());
      std::vector<Issue> issues;
      passerelle::fhir::ValidationResult verdict;
      if (!passerelle::fhir::fhirXmlToJson(text, json, issues)) {
        // Refused as XML: the verdict is "invalid", with the reader's issues.
        verdict.issues = issues;
        ++refused;
        std::cout << "[ FHIR XML ] " << path.filename().string() << " refused:" << issuesText(issues) << "\n";
      } else {
        verdict = validator.validate(json);
      }
      ++count;
      fs::path twin = path.parent_path() / (path.stem().string() + ".json");
      if (!fs::exists(twin)) twin = dir / (path.stem().string() + ".json");
      if (!fs::exists(twin)) continue;
      ++twins;
      std::string twinText = readFile(twin.string());
      auto twinVerdict = validator.validate(twinText);
      EXPECT_EQ(verdict.hasErrors(), twinVerdict.hasErrors())
          << path << " against " << twin << issuesText(verdict.issues) << "\n-- twin:" << issuesText(twinVerdict.issues);
      if (refused && verdict.issues.size() && json.empty()) continue;
      nlohmann::json a = nlohmann::json::parse(json, nullptr, false), b = nlohmann::json::parse(twinText);
      canonicalDivs(a);
      canonicalDivs(b);
      if (a == b) ++sameContent;
    }
  }
  EXPECT_GT(count, 10);
  EXPECT_LE(refused, 2) << "only the examples that are not R4 (STU3 elements) may be refused";
  std::cout << "[ FHIR XML ] " << count << " XML examples read (" << refused << " refused as not R4), " << twins << " with a JSON twin, same verdict for all; "
            << sameContent << " of the twins with the very same content\n";
  RecordProperty("xml", count);
  RecordProperty("twins", twins);
}
