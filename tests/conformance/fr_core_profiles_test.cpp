// The profile validator against FR Core 2.2.0 (../shared/corpora/fr-core): the IG's examples
// validate against their meta.profile with no error, and copies broken on purpose fail at the
// expected location.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "mappings/fhir/profiles/profile_validator.h"
#include "tests/support/test_gateway.h"

namespace passerelle::fhir::profiles {
namespace {

namespace fs = std::filesystem;

std::string readFile(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string describe(const std::vector<Issue>& issues) {
  std::string out;
  for (const auto& i : issues)
    if (i.severity == "error" || i.severity == "fatal") out += "\n    " + i.expression + ": " + i.diagnostics;
  return out;
}

bool hasErrorAt(const std::vector<Issue>& issues, const std::string& location, const std::string& text = {}) {
  return std::any_of(issues.begin(), issues.end(), [&](const Issue& i) {
    return (i.severity == "error" || i.severity == "fatal") && i.expression == location &&
           i.diagnostics.find(text) != std::string::npos;
  });
}

class FrCoreTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    std::string corpora = passerelle::testing::corporaDir();
    if (corpora.empty() || !fs::exists(fs::path(corpora) / "fr-core" / "definitions")) return;
    dir_ = fs::path(corpora) / "fr-core";
    registry_ = new ProfileRegistry();
    std::string error;
    loaded_ = registry_->loadPath((dir_ / "definitions").string(), error) &&
              registry_->loadPath((dir_ / "expansions.json.gz").string(), error);
    if (!loaded_) std::cerr << "FR Core did not load: " << error << "\n";
  }
  static void TearDownTestSuite() {
    delete registry_;
    registry_ = nullptr;
  }
  void SetUp() override {
    if (!registry_) GTEST_SKIP() << "../shared/corpora/fr-core is absent: the FR Core profile tests are skipped";
    ASSERT_TRUE(loaded_);
  }
  static nlohmann::json example(const std::string& name) {
    return nlohmann::json::parse(readFile(dir_ / "examples" / name));
  }
  static std::vector<Issue> check(const nlohmann::json& resource, const std::string& profile) {
    std::vector<Issue> issues;
    ProfileValidator(*registry_).validate(resource.dump(), profile, issues);
    return issues;
  }

  static inline fs::path dir_;
  static inline ProfileRegistry* registry_ = nullptr;
  static inline bool loaded_ = false;
};

TEST_F(FrCoreTest, EveryProfileCompiles) {
  int profiles = 0;
  for (const auto& url : registry_->profileUrls()) {
    const Profile* p = registry_->find(url);
    ASSERT_NE(p, nullptr) << url;
    EXPECT_TRUE(p->error.empty()) << p->error;
    ++profiles;
  }
  EXPECT_EQ(profiles, 64);
}

TEST_F(FrCoreTest, ExamplesValidateAgainstTheirProfiles) {
  std::vector<fs::path> files;
  for (const auto& f : fs::directory_iterator(dir_ / "examples"))
    if (f.path().extension() == ".json") files.push_back(f.path());
  std::sort(files.begin(), files.end());
  ProfileValidator validator(*registry_);
  int checked = 0, clean = 0;
  for (const auto& path : files) {
    std::vector<Issue> issues;
    int n = validator.validateDeclared(readFile(path), issues, "error");
    bool errors = !describe(issues).empty();
    EXPECT_FALSE(errors) << path.filename().string() << describe(issues);
    if (n > 0) {
      ++checked;
      clean += !errors;
    }
  }
  std::cout << "[ fr-core ] examples checked against their meta.profile: " << checked << "/" << files.size()
            << ", with no error: " << clean << "\n";
  EXPECT_EQ(checked, 30);  // all but Location-loc-radiologie-z name their profile
}

TEST_F(FrCoreTest, PatientInsWithoutBirthPlaceFails) {
  auto p = example("Patient-FRCorePatientExample.json");
  std::string profile = p["meta"]["profile"][0];
  auto& ext = p["extension"];
  ext.erase(std::remove_if(ext.begin(), ext.end(),
                           [](const nlohmann::json& e) {
                             return e["url"] == "http://hl7.org/fhir/StructureDefinition/patient-birthPlace";
                           }),
            ext.end());
  auto issues = check(p, profile);
  if (profile.find("fr-core-patient-ins") != std::string::npos) {
    EXPECT_TRUE(hasErrorAt(issues, "Patient", "birthPlace")) << describe(issues);
  }
}

TEST_F(FrCoreTest, BrokenCopiesFailAtTheExpectedLocation) {
  {
    // Patient.gender is 1..1 in fr-core-patient-ins
    auto p = example("Patient-FRCorePatientExample.json");
    p["meta"]["profile"] = {"https://hl7.fr/ig/fhir/core/StructureDefinition/fr-core-patient-ins"};
    auto before = check(p, "https://hl7.fr/ig/fhir/core/StructureDefinition/fr-core-patient-ins");
    p.erase("birthDate");
    auto issues = check(p, "https://hl7.fr/ig/fhir/core/StructureDefinition/fr-core-patient-ins");
    EXPECT_TRUE(hasErrorAt(issues, "Patient", "Patient.birthDate")) << describe(issues) << "\nbefore:" << describe(before);
  }
  {
    // fr-core-2, an invariant of the profile itself: a qualified identity (VALI) has one official
    // identifier, not two
    auto p = example("Patient-FRCorePatientExample.json");
    std::string profile = "https://hl7.fr/ig/fhir/core/StructureDefinition/fr-core-patient-ins";
    EXPECT_FALSE(hasErrorAt(check(p, profile), "Patient", "fr-core-2"));
    auto second = p["identifier"][0];
    second["system"] = "urn:oid:1.2.250.1.213.1.4.10";
    second["value"] = "123456789012345";
    p["identifier"].push_back(second);
    auto issues = check(p, profile);
    EXPECT_TRUE(hasErrorAt(issues, "Patient", "Constraint failed: fr-core-2")) << describe(issues);
  }
  {
    // the vital-sign code is a pattern: LOINC 8867-4 for the heart rate
    auto o = example("Observation-FRCoreObservationHeartRateExample.json");
    std::string profile = o["meta"]["profile"][0];
    o["code"]["coding"] = {{{"system", "http://loinc.org"}, {"code", "0000-0"}}};
    auto issues = check(o, profile);
    EXPECT_TRUE(std::any_of(issues.begin(), issues.end(), [](const Issue& i) {
      return i.severity == "error" && i.expression.rfind("Observation.code", 0) == 0;
    })) << describe(issues);
  }
  {
    // the value must be a Quantity with the UCUM unit /min
    auto o = example("Observation-FRCoreObservationHeartRateExample.json");
    std::string profile = o["meta"]["profile"][0];
    o["valueQuantity"]["code"] = "kg";
    o["valueQuantity"]["unit"] = "kg";
    auto issues = check(o, profile);
    EXPECT_TRUE(std::any_of(issues.begin(), issues.end(), [](const Issue& i) {
      return i.severity == "error" && i.expression.rfind("Observation.value.ofType(Quantity)", 0) == 0;
    })) << describe(issues);
  }
  {
    // an Observation is not a Patient
    auto o = example("Observation-FRCoreObservationHeartRateExample.json");
    auto issues = check(o, "https://hl7.fr/ig/fhir/core/StructureDefinition/fr-core-patient");
    EXPECT_TRUE(hasErrorAt(issues, "Observation", "constrains Patient")) << describe(issues);
  }
  {
    // the identity reliability extension: its validation mode comes from a required value set
    auto p = example("Patient-FRCorePatientExample.json");
    bool changed = false;
    for (auto& e : p["extension"]) {
      if (e["url"] != "https://hl7.fr/ig/fhir/core/StructureDefinition/fr-core-identity-reliability") continue;
      for (auto& sub : e["extension"])
        if (sub["url"] == "validationMode") {
          sub["valueCoding"]["code"] = "NOT-A-MODE";
          changed = true;
        }
    }
    if (changed) {
      auto issues = check(p, p["meta"]["profile"][0]);
      EXPECT_TRUE(std::any_of(issues.begin(), issues.end(), [](const Issue& i) {
        return i.severity == "error" && i.diagnostics.find("NOT-A-MODE") != std::string::npos &&
               i.expression.rfind("Patient.extension[", 0) == 0;
      })) << describe(issues);
    }
  }
}

}  // namespace
}  // namespace passerelle::fhir::profiles
