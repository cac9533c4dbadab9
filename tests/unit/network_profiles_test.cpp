// The network package (schemas/fhir-profiles/network, built in): every Bundle the network documents
// give (the mapping code's own API on schemas/network/examples) validates against it, resource by
// resource, with no error; and a few broken copies do not.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "mappings/fhir/profiles/packages.h"
#include "mappings/fhir/profiles/profile_validator.h"
#include "mappings/network/mapping_engine.h"

namespace passerelle::fhir::profiles {
namespace {

namespace fs = std::filesystem;
using network::Json;

std::string describe(const std::vector<Issue>& issues) {
  std::string out;
  for (const auto& i : issues)
    if (i.severity == "error" || i.severity == "fatal") out += "\n    " + i.expression + ": " + i.diagnostics;
  return out;
}

const ProfileRegistry& networkRegistry() {
  static const ProfileRegistry* registry = [] {
    auto* r = new ProfileRegistry();
    std::string error;
    EXPECT_TRUE(loadNetworkPackage(*r, error)) << error;
    return r;
  }();
  return *registry;
}

// The network profile a mapped resource is checked against; empty when the package has none.
std::string networkProfileOf(const Json& r) {
  std::string type = r.value("resourceType", "");
  if (type == "Patient") return std::string(kNetworkProfileBase) + "network-patient";
  if (type == "Consent") return std::string(kNetworkProfileBase) + "network-consent";
  if (type == "ServiceRequest") return std::string(kNetworkProfileBase) + "network-service-request";
  if (type == "Task") return std::string(kNetworkProfileBase) + "network-task";
  if (type == "Observation" && r["code"]["coding"][0].value("code", "") == "72514-3")
    return std::string(kNetworkProfileBase) + "network-pain-score";
  return "";
}

std::vector<Json> exampleBundles() {
  std::vector<fs::path> files;
  for (const auto& f : fs::directory_iterator(PASSERELLE_NETWORK_EXAMPLES))
    if (f.path().extension() == ".json") files.push_back(f.path());
  std::sort(files.begin(), files.end());
  std::vector<Json> out;
  const auto& set = network::MappingSet::builtIn();
  for (const auto& path : files) {
    std::ifstream in(path);
    std::stringstream ss;
    ss << in.rdbuf();
    Json doc = Json::parse(ss.str());
    std::string kind = doc.value("documentType", "");
    if (!set.has(kind)) continue;
    std::vector<network::MappingIssue> issues;
    out.push_back(set.toBundle(kind, doc, Json::object(), issues));
    EXPECT_TRUE(issues.empty()) << path;
  }
  return out;
}

TEST(NetworkProfilesTest, PackageLoadsAndEveryProfileCompiles) {
  const auto& r = networkRegistry();
  EXPECT_GE(r.structureDefinitionCount(), 13u);
  for (const auto& url : r.profileUrls()) {
    const Profile* p = r.find(url);
    ASSERT_NE(p, nullptr);
    EXPECT_TRUE(p->error.empty()) << p->error;
  }
  EXPECT_NE(r.find(std::string(kNetworkProfileBase) + "network-patient|1.0.0"), nullptr);
}

TEST(NetworkProfilesTest, EveryMappedBundleValidatesAgainstTheNetworkProfiles) {
  ProfileValidator validator(networkRegistry());
  auto bundles = exampleBundles();
  std::size_t checked = 0;
  for (const auto& bundle : bundles) {
    std::size_t i = 0;
    for (const auto& entry : bundle["entry"]) {
      const Json& r = entry["resource"];
      std::string profile = networkProfileOf(r);
      if (!profile.empty()) {
        std::vector<Issue> issues;
        std::string text = r.dump();
        EXPECT_EQ(validator.validate(text, profile, issues), ProfileValidator::Outcome::Checked);
        EXPECT_TRUE(describe(issues).empty())
            << "Bundle.entry[" << i << "] (" << r["resourceType"] << ") against " << profile << describe(issues);
        ++checked;
      }
      ++i;
    }
  }
  std::cout << "[ network ] bundles: " << bundles.size() << ", resources checked against the network profiles: "
            << checked << "\n";
  EXPECT_EQ(bundles.size(), 14u);
  EXPECT_GE(checked, 13u);
}

TEST(NetworkProfilesTest, BrokenCopiesFail) {
  ProfileValidator validator(networkRegistry());
  auto bundles = exampleBundles();
  const Json* patient = nullptr;
  const Json* consent = nullptr;
  const Json* pain = nullptr;
  for (const auto& b : bundles)
    for (const auto& e : b["entry"]) {
      const Json& r = e["resource"];
      std::string p = networkProfileOf(r);
      if (!patient && r["resourceType"] == "Patient") patient = &r;
      if (!consent && r["resourceType"] == "Consent") consent = &r;
      if (!pain && p.find("pain-score") != std::string::npos) pain = &r;
    }
  ASSERT_TRUE(patient && consent && pain);
  auto check = [&](const Json& r) {
    std::vector<Issue> issues;
    validator.validate(r.dump(), networkProfileOf(r), issues);
    return issues;
  };
  auto errorAt = [](const std::vector<Issue>& issues, const std::string& where, const std::string& text) {
    return std::any_of(issues.begin(), issues.end(), [&](const Issue& i) {
      return i.severity == "error" && i.expression == where && i.diagnostics.find(text) != std::string::npos;
    });
  };
  Json p = *patient;
  p["identifier"].erase(1);  // the network id
  auto issues = check(p);
  EXPECT_TRUE(errorAt(issues, "Patient", "Slice 'network-id'")) << describe(issues);
  Json c = *consent;
  c["scope"]["coding"][0]["code"] = "research";
  for (auto& e : c["extension"])
    if (e["url"] == std::string(kNetworkProfileBase) + "consent-sharing") e = {{"url", e["url"]}, {"valueString", "yes"}};
  issues = check(c);
  EXPECT_TRUE(errorAt(issues, "Consent.scope", "is not in the value set")) << describe(issues);
  EXPECT_TRUE(std::any_of(issues.begin(), issues.end(), [](const Issue& i) {
    return i.severity == "error" && i.expression.find(".value.ofType(string)") != std::string::npos;
  })) << describe(issues);
  Json o = *pain;
  o["valueQuantity"]["system"] = "urn:other";
  o["subject"] = {{"reference", "Group/1"}};
  issues = check(o);
  EXPECT_TRUE(errorAt(issues, "Observation.value.ofType(Quantity).system", "Value must be exactly")) << describe(issues);
  EXPECT_TRUE(errorAt(issues, "Observation.subject.reference", "allows only Patient")) << describe(issues);
}

}  // namespace
}  // namespace passerelle::fhir::profiles
