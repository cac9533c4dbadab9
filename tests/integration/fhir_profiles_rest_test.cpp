// Profiles through a real gateway on port 0: $validate?profile= (and the profile parameter of a
// Parameters body) against the built-in network package, and meta.profile checked on writes
// (create, update, transaction) when fhir.validate_profiles is true.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "tests/support/http_client.h"
#include "tests/support/test_gateway.h"

using namespace passerelle::testing;
using nlohmann::json;

namespace {

const std::string kProfile = "https://douleur77.fr/fhir/StructureDefinition/network-patient";

json patient(bool withNetworkId) {
  json p = json::parse(R"({"resourceType":"Patient",
    "identifier":[{"system":"urn:oid:1.2.250.1.213.1.4.8","value":"185057512345673","use":"official"}],
    "name":[{"family":"DURAND","given":["Julien"]}],"gender":"male","birthDate":"1985-05-14"})");
  if (withNetworkId) p["identifier"].push_back({{"system", "https://douleur77.fr/fhir/sid/patient"}, {"value", "P77-9"}});
  return p;
}

bool hasIssue(const json& oo, const std::string& severity, const std::string& text) {
  for (const auto& i : oo.value("issue", json::array()))
    if (i.value("severity", "") == severity && i.value("diagnostics", "").find(text) != std::string::npos) return true;
  return false;
}

}  // namespace

TEST(FhirProfilesRestTest, ValidateAgainstAProfile) {
  TestGateway gw;
  HttpClient client(gw.httpPort());
  auto ok = client.send("POST", "/fhir/Patient/$validate?profile=" + kProfile, patient(true).dump());
  ASSERT_EQ(ok.status, 200) << ok.body;
  EXPECT_FALSE(hasIssue(ok.json(), "error", "")) << ok.body;
  auto bad = client.send("POST", "/fhir/Patient/$validate?profile=" + kProfile + "%7C1.0.0", patient(false).dump());
  ASSERT_EQ(bad.status, 200) << bad.body;
  EXPECT_TRUE(hasIssue(bad.json(), "error", "Slice 'network-id' of Patient.identifier")) << bad.body;
  EXPECT_EQ(bad.json()["issue"][0]["expression"][0], "Patient") << bad.body;
  // the profile as a parameter of a Parameters body
  json params = {{"resourceType", "Parameters"},
                 {"parameter", {{{"name", "resource"}, {"resource", patient(false)}}, {{"name", "profile"}, {"valueCanonical", kProfile}}}}};
  auto viaParams = client.send("POST", "/fhir/$validate", params.dump());
  ASSERT_EQ(viaParams.status, 200) << viaParams.body;
  EXPECT_TRUE(hasIssue(viaParams.json(), "error", "Slice 'network-id'")) << viaParams.body;
  // a profile nobody knows is an error of the request
  auto unknown = client.send("POST", "/fhir/Patient/$validate?profile=http://example.org/nothing", patient(true).dump());
  EXPECT_EQ(unknown.status, 400) << unknown.body;
  EXPECT_TRUE(hasIssue(unknown.json(), "error", "Profile 'http://example.org/nothing' is not known")) << unknown.body;
  EXPECT_EQ(client.get("/fhir/Patient?_summary=count").json()["total"], 0);
}

TEST(FhirProfilesRestTest, WritesAreCheckedAgainstTheirMetaProfileWhenAsked) {
  TestGateway gw({"fhir.validate_profiles=true"});
  HttpClient client(gw.httpPort());
  json good = patient(true);
  good["meta"] = {{"profile", {kProfile, "http://example.org/unknown-profile"}}};
  auto created = client.send("POST", "/fhir/Patient", good.dump());
  EXPECT_EQ(created.status, 201) << created.body;  // an unknown profile is not an error
  json bad = patient(false);
  bad["meta"] = {{"profile", {kProfile}}};
  auto refused = client.send("POST", "/fhir/Patient", bad.dump());
  ASSERT_EQ(refused.status, 422) << refused.body;
  EXPECT_TRUE(hasIssue(refused.json(), "error", "Slice 'network-id'")) << refused.body;
  bad["id"] = "p1";
  EXPECT_EQ(client.send("PUT", "/fhir/Patient/p1", bad.dump()).status, 422);
  EXPECT_EQ(client.get("/fhir/Patient?_summary=count").json()["total"], 1);
}

TEST(FhirProfilesRestTest, TransactionEntriesAreCheckedAndWithoutTheSettingNothingIs) {
  json bad = patient(false);
  bad["meta"] = {{"profile", {kProfile}}};
  json tx = {{"resourceType", "Bundle"},
             {"type", "transaction"},
             {"entry", json::array({{{"fullUrl", "urn:uuid:8a0b8e2e-6c3c-4a47-9a53-4d1b1b1d1d10"},
                                     {"resource", bad},
                                     {"request", {{"method", "POST"}, {"url", "Patient"}}}}})}};
  {
    TestGateway gw({"fhir.validate_profiles=true"});
    HttpClient client(gw.httpPort());
    auto r = client.send("POST", "/fhir", tx.dump());
    ASSERT_EQ(r.status, 422) << r.body;
    bool located = false;
    json oo = r.json();
    for (const auto& i : oo["issue"])
      if (i.contains("expression") && i["expression"][0] == "Bundle.entry[0].resource") located = true;
    EXPECT_TRUE(located) << r.body;
    EXPECT_EQ(client.get("/fhir/Patient?_summary=count").json()["total"], 0);
  }
  {
    TestGateway gw;  // fhir.validate_profiles defaults to false
    HttpClient client(gw.httpPort());
    EXPECT_EQ(client.send("POST", "/fhir", tx.dump()).status, 200);
    EXPECT_EQ(client.send("POST", "/fhir/Patient", bad.dump()).status, 201);
  }
}

TEST(FhirProfilesRestTest, UnknownExtensionsAndExampleUrlsRefusedWhenConfigured) {
  json p = patient(true);
  p["extension"] = {{{"url", "https://partner.test/fhir/StructureDefinition/x"}, {"valueString", "y"}}};
  p["photo"] = {{{"url", "https://images.example.org/1.png"}}};
  {
    TestGateway gw;  // R4's defaults: neither is refused
    HttpClient client(gw.httpPort());
    EXPECT_EQ(client.send("POST", "/fhir/Patient", p.dump()).status, 201);
  }
  {
    TestGateway gw({"fhir.unknown_extensions=refuse", "fhir.refuse_example_urls=true"});
    HttpClient client(gw.httpPort());
    auto r = client.send("POST", "/fhir/Patient", p.dump());
    ASSERT_EQ(r.status, 422) << r.body;
    EXPECT_TRUE(hasIssue(r.json(), "error", "reserved for documentation")) << r.body;
    p.erase("photo");
    r = client.send("POST", "/fhir/Patient", p.dump());
    ASSERT_EQ(r.status, 422) << r.body;
    EXPECT_TRUE(hasIssue(r.json(), "error", "https://partner.test/fhir/StructureDefinition/x has no definition")) << r.body;
    EXPECT_EQ(client.get("/fhir/Patient?_summary=count").json()["total"], 0);
  }
  {
    TestGateway gw({"fhir.unknown_extensions=refuse", "fhir.allowed_extension_domains=https://partner.test/fhir/"});
    HttpClient client(gw.httpPort());
    p.erase("photo");
    EXPECT_EQ(client.send("POST", "/fhir/Patient", p.dump()).status, 201);
  }
}
