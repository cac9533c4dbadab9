// The FHIR validator against the official validator test cases (../shared/corpora/fhir-test-cases):
// the R4 cases of modules general, fmt, json5, extensions and base that need no profile, package or
// supporting resource, compared by verdict and error count with the Java validator's expected
// outcome; and every JSON example of r4/examples, which must validate clean.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>

#include "mappings/fhir/validator.h"
#include "tests/support/test_gateway.h"

using passerelle::fhir::ValidationResult;
using passerelle::fhir::Validator;
namespace fs = std::filesystem;

namespace {

// The share of selected cases whose verdict and error count match the reference validator's.
// Measured at 36/47 = 0.766; the test fails below this floor. Raise it when the validator improves.
constexpr double kMinCasePassRate = 0.76;

std::string readFile(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

int errorCount(const ValidationResult& r) {
  return static_cast<int>(std::count_if(r.issues.begin(), r.issues.end(), [](const auto& i) {
    return i.severity == "error" || i.severity == "fatal";
  }));
}

std::string describe(const ValidationResult& r) {
  std::string out;
  for (const auto& i : r.issues)
    if (i.severity == "error" || i.severity == "fatal") out += "\n    " + i.expression + ": " + i.diagnostics;
  return out;
}

}  // namespace

TEST(ValidatorConformanceTest, OfficialValidatorCasesMatchTheReferenceVerdict) {
  std::string corpora = passerelle::testing::corporaDir();
  if (corpora.empty()) GTEST_SKIP() << "../shared/corpora is absent: the validator conformance suite is skipped";
  fs::path dir = fs::path(corpora) / "fhir-test-cases" / "validator";
  if (!fs::exists(dir / "manifest-r4.json")) GTEST_SKIP() << dir << " has no manifest-r4.json: suite skipped";
  nlohmann::json manifest = nlohmann::json::parse(readFile(dir / "manifest-r4.json"));
  const std::vector<std::string> modules = {"general", "fmt", "json5", "extensions", "base"};
  // Cases that need a profile, a package, supporting resources, a logical model, or a validator
  // option we do not offer (allow-comments: JSON5 comments) are left out.
  const std::vector<std::string> needs = {"profiles",    "profile", "packages", "supporting",
                                          "supporting5", "logical", "use-test", "allow-comments"};
  int cases = 0, verdicts = 0, exact = 0;
  for (const auto& tc : manifest["test-cases"]) {
    std::string module = tc.value("module", "");
    std::string file = tc.value("file", "");
    if (std::find(modules.begin(), modules.end(), module) == modules.end()) continue;
    if (file.size() < 5 || file.substr(file.size() - 5) != ".json") continue;
    if (std::any_of(needs.begin(), needs.end(), [&](const std::string& k) { return tc.contains(k); })) continue;
    int expected = -1;
    const auto& java = tc["java"];
    if (java.is_object()) {
      expected = java.value("errorCount", -1);
    } else if (java.is_string()) {
      fs::path outcome = dir / "outcomes" / java.get<std::string>();
      if (!fs::exists(outcome)) continue;  // no reference outcome in this snapshot
      nlohmann::json oo = nlohmann::json::parse(readFile(outcome), nullptr, false);
      if (oo.is_discarded()) continue;
      expected = 0;
      for (const auto& issue : oo.value("issue", nlohmann::json::array())) {
        std::string sev = issue.value("severity", "");
        if (sev == "error" || sev == "fatal") ++expected;
      }
    }
    if (expected < 0 || !fs::exists(dir / file)) continue;
    ValidationResult r = Validator::instance().validate(readFile(dir / file));
    int got = errorCount(r);
    ++cases;
    bool verdict = (got > 0) == (expected > 0);
    verdicts += verdict;
    exact += verdict && got == expected;
    if (!(verdict && got == expected))
      std::cout << "[ mismatch ] " << tc.value("name", file) << ": expected " << expected << " error(s), got " << got
                << describe(r) << "\n";
  }
  ASSERT_GT(cases, 20);
  double rate = static_cast<double>(exact) / cases;
  std::cout << "[ conformance ] validator cases: " << cases << ", verdict matches " << verdicts
            << ", verdict and error count match " << exact << " (" << static_cast<int>(rate * 1000) / 10.0
            << "%)\n";
  EXPECT_GE(rate, kMinCasePassRate) << "the conformance pass rate dropped below the recorded floor";
}

TEST(ValidatorConformanceTest, EveryR4JsonExampleValidatesClean) {
  std::string corpora = passerelle::testing::corporaDir();
  if (corpora.empty()) GTEST_SKIP() << "../shared/corpora is absent: the R4 examples validation is skipped";
  fs::path dir = fs::path(corpora) / "fhir-test-cases" / "r4" / "examples";
  if (!fs::exists(dir)) GTEST_SKIP() << dir << " is absent: suite skipped";
  std::vector<fs::path> files;
  for (const auto& f : fs::directory_iterator(dir))
    if (f.path().extension() == ".json") files.push_back(f.path());
  std::sort(files.begin(), files.end());
  // Published examples that break the R4 base definitions themselves; each must yield exactly the
  // errors listed here (the Java validator reports the same faults), every other example none.
  const std::map<std::string, std::pair<int, std::string>> knownBad = {
      // Questionnaire.item.linkId is 1..1; nested display items of this bundle have none.
      {"bundle-questionnaire.json", {-1, "linkId: minimum required = 1"}},
      // DeviceMetric.parent may only reference a Device.
      {"devicemetric-example.json", {1, "DeviceMetric.parent.reference"}},
      // DeviceUseStatement.reasonReference does not allow Procedure in R4.
      {"deviceusestatement-example.json", {1, "DeviceUseStatement.reasonReference[0].reference"}},
      // MedicationRequest.dispenseRequest.performer may only reference an Organization.
      {"medicationrequest0301.json", {1, "MedicationRequest.dispenseRequest.performer.reference"}},
  };
  int clean = 0;
  for (const auto& path : files) {
    ValidationResult r = Validator::instance().validate(readFile(path));
    auto bad = knownBad.find(path.filename().string());
    if (bad != knownBad.end()) {
      int errors = errorCount(r);
      if (bad->second.first >= 0) {
        EXPECT_EQ(errors, bad->second.first) << path.filename().string() << describe(r);
      }
      EXPECT_GT(errors, 0) << path.filename().string();
      for (const auto& i : r.issues)
        EXPECT_NE((i.expression + ": " + i.diagnostics).find(bad->second.second), std::string::npos)
            << path.filename().string() << ": unexpected " << i.expression << ": " << i.diagnostics;
      continue;
    }
    EXPECT_FALSE(r.hasErrors()) << path.filename().string() << describe(r);
    clean += !r.hasErrors();
  }
  std::cout << "[ conformance ] R4 examples validating clean: " << clean << "/" << files.size() - knownBad.size()
            << " (plus " << knownBad.size() << " published examples with known faults, reported as expected)\n";
  EXPECT_GT(files.size(), 50u);
}
