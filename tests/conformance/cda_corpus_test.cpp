// CDA conformance on ../shared/corpora (skipped, saying so, when absent): the ANS examples
// (ans-testcontenucda-3.0/ExemplesCDA) and the HL7 C-CDA examples are validated against the HL7 CDA
// R2 schema (CDA_SDTC.xsd of hl7-cda-core-2.0), and the ANS examples against Passerelle's French
// root over the ANS components, and our verdict is compared with xmllint's recorded in each
// corpus' xsd-results.tsv; the valid ANS documents are read and their patient's INS and
// their author's RPPS recognised where they carry them.
#include <gtest/gtest.h>

#include <filesystem>
#include <nlohmann/json.hpp>
#include <regex>
#include <set>
#include <fstream>
#include <sstream>

#include "mappings/cda/cda.h"
#include "tests/support/test_gateway.h"

namespace passerelle::cda {
namespace {

struct Verdict {
  std::string file, verdict;
};

// The rows of an xsd-results.tsv: file and the verdict of column `column` (0-based).
std::vector<Verdict> verdicts(const std::string& tsv, std::size_t column) {
  std::vector<Verdict> out;
  std::ifstream in(tsv);
  for (std::string line; std::getline(in, line);) {
    if (line.empty() || line[0] == '#') continue;
    std::vector<std::string> f;
    std::stringstream ss(line);
    for (std::string x; std::getline(ss, x, '\t');) f.push_back(x);
    if (f.size() > column) out.push_back({f[0], f[column]});
  }
  return out;
}

class CdaCorpus : public ::testing::Test {
 protected:
  void SetUp() override {
    corpora_ = testing::corporaDir();
    std::string xsd = corpora_ + "/hl7-cda-core-2.0/schema/extensions/SDTC/infrastructure/cda/CDA_SDTC.xsd";
    if (corpora_.empty() || !std::filesystem::exists(xsd)) GTEST_SKIP() << "../shared/corpora (hl7-cda-core-2.0) is absent: CDA conformance not run";
    std::string error;
    schema_ = Schema::load(xsd, error);
    ASSERT_TRUE(schema_) << error;
  }
  std::string corpora_;
  std::shared_ptr<Schema> schema_;
};

// The ANS examples validated with `schema`, our verdicts compared with xmllint's of column
// `column`; the valid ones read, their INS and RPPS counted. Returns how many were valid.
int checkAnsExamples(const std::string& corpora, Schema& schema, std::size_t column, const std::string& against) {
  std::string dir = corpora + "/ans-testcontenucda-3.0/";
  int compared = 0, agree = 0, valid = 0, withIns = 0, withRpps = 0;
  for (const auto& v : verdicts(dir + "xsd-results.tsv", column)) {
    std::string path = dir + v.file;
    if (!std::filesystem::exists(path)) continue;
    std::string xml = testing::readFile(path);
    Document d;
    std::vector<Issue> issues;
    bool ok = read(xml, &schema, Limits{}, d, issues);
    ++compared;
    bool same = (ok ? "valid" : "invalid") == v.verdict;
    agree += same;
    EXPECT_TRUE(same) << v.file << ": ours " << (ok ? "valid" : "invalid") << ", xmllint " << v.verdict
                      << (issues.empty() ? "" : " (" + issues[0].where + " " + issues[0].message + ")");
    if (!ok) continue;
    ++valid;
    for (const auto& id : d.patientIds)
      if (id.root.rfind("1.2.250.1.213.1.4.", 0) == 0 && id.extension.size() == 15) {
        ++withIns;
        break;
      }
    if (!rppsOf(d.authorId).empty()) ++withRpps;
  }
  std::cout << "[ CDA/ANS  ] " << agree << " of " << compared << " verdicts as xmllint's against " << against << "; of the " << valid
            << " valid, " << withIns << " with an INS, " << withRpps << " with an author's RPPS\n";
  EXPECT_GT(compared, 30);
  EXPECT_GT(withIns, valid / 2);
  EXPECT_GT(withRpps, valid / 2);
  return valid;
}

TEST_F(CdaCorpus, AnsExamplesGetXmllintsVerdictAndTheirInsAndRppsAreRecognised) {
  checkAnsExamples(corpora_, *schema_, 3, "CDA_SDTC.xsd");
}

// Passerelle's French root over the ANS components gives xmllint's verdicts against the ANS
// CDA_extended.xsd (which xerces-c cannot load as shipped): the documents with the French
// extensions (DICOM, pharmacy, lab) and the self-presenting one are valid there.
TEST(CdaCorpusFrench, AnsExamplesGetXmllintsVerdictAgainstCdaExtended) {
  std::string corpora = testing::corporaDir();
  std::string components = corpora + "/ans-testcontenucda-3.0/infrastructure/cda";
  if (corpora.empty() || !std::filesystem::exists(components)) GTEST_SKIP() << "../shared/corpora (ans-testcontenucda-3.0) is absent: not run";
  std::string error;
  auto schema = Schema::load(std::string(PASSERELLE_CDA_SCHEMAS) + "/CDA_FR.xsd", error, components);
  ASSERT_TRUE(schema) << error;
  int valid = checkAnsExamples(corpora, *schema, 1, "CDA_extended.xsd (schemas/cda/CDA_FR.xsd over its components)");
  EXPECT_GE(valid, 38);
  // The same documents with an element out of place after the header's title: all refused.
  std::string dir = corpora + "/ans-testcontenucda-3.0/";
  const std::regex title("</([A-Za-z]+:)?title>");
  int mutated = 0, refused = 0;
  for (const auto& v : verdicts(dir + "xsd-results.tsv", 1)) {
    std::string xml = testing::readFile(dir + v.file);
    std::smatch m;
    if (!std::regex_search(xml, m, title)) continue;
    xml.insert(m.position(0) + m.length(0), "<surprise xmlns=\"urn:hl7-org:v3\"/>");
    ++mutated;
    Document d;
    std::vector<Issue> issues;
    bool ok = read(xml, schema.get(), Limits{}, d, issues);
    refused += !ok;
    EXPECT_FALSE(ok) << v.file << " with an element out of place was taken as valid";
  }
  std::cout << "[ CDA/ANS  ] " << refused << " of " << mutated << " with an element out of place refused\n";
  EXPECT_GT(mutated, 30);
}

TEST_F(CdaCorpus, CcdaExamplesGetXmllintsVerdict) {
  std::string dir = corpora_ + "/hl7-ccda-examples/";
  int compared = 0, agree = 0;
  for (const auto& v : verdicts(dir + "xsd-results.tsv", 2)) {
    std::string path = dir + v.file;
    if (!std::filesystem::exists(path)) continue;
    Document d;
    std::vector<Issue> issues;
    bool ok = read(testing::readFile(path), schema_.get(), Limits{}, d, issues);
    ++compared;
    bool same = (ok ? "valid" : "invalid") == v.verdict;
    agree += same;
    EXPECT_TRUE(same) << v.file << ": ours " << (ok ? "valid" : "invalid") << ", xmllint " << v.verdict;
  }
  std::cout << "[ C-CDA    ] " << agree << " of " << compared << " verdicts as xmllint's against CDA_SDTC.xsd\n";
  EXPECT_GT(compared, 10);
}

// The FHIR-Converter's C-CDA samples: each read (no schema: some are not valid CDA R2) and mapped;
// the Patient compared with the expected Bundle's (family name, first given name, birth date, sex).
TEST(CdaFhirConverter, PatientsAgreeWithTheExpectedBundles) {
  std::string corpora = testing::corporaDir();
  std::string dir = corpora + "/ms-fhir-converter/";
  if (corpora.empty() || !std::filesystem::exists(dir + "cases.tsv")) GTEST_SKIP() << "../shared/corpora/ms-fhir-converter is absent";
  int cases = 0, read = 0, agree = 0;
  std::ifstream tsv(dir + "cases.tsv");
  for (std::string line; std::getline(tsv, line);) {
    std::vector<std::string> f;
    std::stringstream ss(line);
    for (std::string x; std::getline(ss, x, '\t');) f.push_back(x);
    if (f.size() < 4 || f[0] != "Ccda") continue;
    ++cases;
    std::string xml = testing::readFile(dir + f[2]);
    Document d;
    std::vector<Issue> issues;
    if (!cda::read(xml, nullptr, Limits{}, d, issues)) {
      ADD_FAILURE() << f[2] << ": " << (issues.empty() ? "" : issues[0].message);
      continue;
    }
    ++read;
    nlohmann::json ours;
    toBundle(d, xml, ours);
    nlohmann::json expected = nlohmann::json::parse(testing::gunzipFile(dir + f[3]), nullptr, false);
    const nlohmann::json* theirs = nullptr;
    if (!expected.is_object() || !expected.contains("entry")) continue;
    for (const auto& e : expected["entry"])
      if (e.is_object() && e.contains("resource") && e["resource"].is_object() && e["resource"].value("resourceType", "") == "Patient")
        theirs = &e["resource"];
    if (!theirs) continue;
    const auto& mine = ours["entry"][0]["resource"];
    auto family = [](const nlohmann::json& p) {
      std::set<std::string> out;
      for (const auto& n : p.value("name", nlohmann::json::array())) out.insert(n.value("family", ""));
      return out;
    };
    auto given = [](const nlohmann::json& p) {
      for (const auto& n : p.value("name", nlohmann::json::array()))
        if (n.contains("given") && !n["given"].empty()) return n["given"][0].get<std::string>();
      return std::string();
    };
    bool same = !family(mine).empty() && family(mine) == family(*theirs) && given(mine) == given(*theirs) &&
                mine.value("birthDate", "") == theirs->value("birthDate", "") && mine.value("gender", "") == theirs->value("gender", "");
    agree += same;
    EXPECT_TRUE(same) << f[2] << ": ours " << mine.dump() << "\nexpected " << theirs->dump();
  }
  // Every input of the corpus reads (the cases above are those with an expected Bundle).
  int inputs = 0, readable = 0;
  for (const auto& e : std::filesystem::directory_iterator(dir + "input/Ccda")) {
    ++inputs;
    Document d;
    std::vector<Issue> issues;
    bool ok = cda::read(testing::readFile(e.path().string()), nullptr, Limits{}, d, issues);
    readable += ok;
    EXPECT_TRUE(ok) << e.path() << ": " << (issues.empty() ? "" : issues[0].message);
  }
  std::cout << "[ CDA/FHIR-Converter ] " << readable << " of " << inputs << " C-CDA inputs read; of the " << cases
            << " with an expected Bundle, " << agree << " Patients agree (family, first given name, birth date, sex)\n";
  EXPECT_GE(cases, 4);
}

}  // namespace
}  // namespace passerelle::cda
