// Batch and transaction Bundles through a real gateway.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "tests/support/http_client.h"
#include "tests/support/test_gateway.h"

using namespace passerelle::testing;
using nlohmann::json;

namespace {

json entry(const std::string& fullUrl, json resource, const std::string& method, const std::string& url) {
  json e = {{"resource", resource}, {"request", {{"method", method}, {"url", url}}}};
  if (!fullUrl.empty()) e["fullUrl"] = fullUrl;
  return e;
}

json patient(const std::string& nir) {
  return {{"resourceType", "Patient"},
          {"identifier", {{{"system", "urn:oid:1.2.250.1.213.1.4.8"}, {"value", nir}}}},
          {"name", {{{"family", "Petit"}}}}};
}

json observation(const std::string& subjectRef, double eva) {
  return {{"resourceType", "Observation"},
          {"status", "final"},
          {"code", {{"coding", {{{"system", "http://loinc.org"}, {"code", "72514-3"}}}}}},
          {"subject", {{"reference", subjectRef}}},
          {"valueQuantity", {{"value", eva}, {"unit", "{score}"}}}};
}

class FhirBundleTest : public ::testing::Test {
 protected:
  FhirBundleTest() : client_(gw_.httpPort()) {}
  HttpResult post(const json& bundle) { return client_.send("POST", "/fhir", bundle.dump()); }
  int count(const std::string& type) { return client_.get("/fhir/" + type + "?_summary=count").json()["total"]; }
  TestGateway gw_;
  HttpClient client_;
};

}  // namespace

TEST_F(FhirBundleTest, TransactionRewritesUrnUuidReferences) {
  json b = {{"resourceType", "Bundle"}, {"type", "transaction"}, {"entry", json::array()}};
  b["entry"].push_back(entry("urn:uuid:61ebe359-bfdc-4613-8bf2-c5e300945f0a", patient("1"), "POST", "Patient"));
  b["entry"].push_back(entry("urn:uuid:0d3a6f1c-1111-4613-8bf2-c5e300945f0a",
                             observation("urn:uuid:61ebe359-bfdc-4613-8bf2-c5e300945f0a", 8), "POST", "Observation"));
  auto r = post(b);
  ASSERT_EQ(r.status, 200) << r.body;
  auto resp = r.json();
  EXPECT_EQ(resp["type"], "transaction-response");
  ASSERT_EQ(resp["entry"].size(), 2u);
  EXPECT_EQ(resp["entry"][0]["response"]["status"], "201 Created");
  std::string loc = resp["entry"][0]["response"]["location"];
  std::string pid = loc.substr(8, loc.find("/_history") - 8);
  EXPECT_EQ(resp["entry"][1]["resource"]["subject"]["reference"], "Patient/" + pid);
  std::string oid = resp["entry"][1]["resource"]["id"];
  EXPECT_EQ(client_.get("/fhir/Observation/" + oid).json()["subject"]["reference"], "Patient/" + pid);
  // The index holds the rewritten reference, not the urn:uuid.
  auto found = client_.get("/fhir/Observation?subject=Patient/" + pid).json();
  ASSERT_EQ(found["entry"].size(), 1u) << found.dump();
  EXPECT_EQ(found["entry"][0]["resource"]["id"], oid);
  EXPECT_EQ(client_.get("/fhir/Observation?subject=urn:uuid:61ebe359-bfdc-4613-8bf2-c5e300945f0a").json()["total"], 0);
}

TEST_F(FhirBundleTest, TransactionIsAllOrNothing) {
  json b = {{"resourceType", "Bundle"}, {"type", "transaction"}, {"entry", json::array()}};
  b["entry"].push_back(entry("urn:uuid:3c1d0f6e-5a1b-4c7e-9d2f-0a1b2c3d4e5f", patient("2"), "POST", "Patient"));
  // The second entry fails: update with a stale If-Match on a missing resource.
  json e = entry("", json{{"resourceType", "Patient"}, {"id", "missing"}}, "PUT", "Patient/missing");
  e["request"]["ifMatch"] = "W/\"4\"";
  b["entry"].push_back(e);
  auto r = post(b);
  EXPECT_EQ(r.status, 412) << r.body;
  EXPECT_EQ(r.json()["issue"][0]["expression"][0], "Bundle.entry[1]");
  EXPECT_EQ(count("Patient"), 0);  // the first entry was rolled back
}

TEST_F(FhirBundleTest, TransactionResolvesConditionalReferencesAndCreates) {
  ASSERT_EQ(client_.send("POST", "/fhir/Patient", patient("269054958815780").dump()).status, 201);
  json b = {{"resourceType", "Bundle"}, {"type", "transaction"}, {"entry", json::array()}};
  json e = entry("urn:uuid:7e2a9b40-1c3d-4e5f-8a6b-9c0d1e2f3a4b", patient("269054958815780"), "POST", "Patient");
  e["request"]["ifNoneExist"] = "identifier=urn:oid:1.2.250.1.213.1.4.8|269054958815780";
  b["entry"].push_back(e);
  b["entry"].push_back(entry("", observation("Patient?identifier=urn:oid:1.2.250.1.213.1.4.8|269054958815780", 4.5),
                             "POST", "Observation"));
  auto r = post(b);
  ASSERT_EQ(r.status, 200) << r.body;
  auto resp = r.json();
  EXPECT_EQ(resp["entry"][0]["response"]["status"], "200 OK");  // matched, not created
  std::string pid = resp["entry"][0]["resource"]["id"];
  EXPECT_EQ(resp["entry"][1]["resource"]["subject"]["reference"], "Patient/" + pid);
  EXPECT_EQ(count("Patient"), 1);
  // A conditional reference that matches nothing fails the transaction.
  json bad = {{"resourceType", "Bundle"}, {"type", "transaction"}, {"entry", json::array()}};
  bad["entry"].push_back(entry("", observation("Patient?identifier=nobody", 1), "POST", "Observation"));
  EXPECT_EQ(post(bad).status, 412);
  EXPECT_EQ(count("Observation"), 1);
}

TEST_F(FhirBundleTest, TransactionOrdersDeleteBeforeCreateAndAnswersInRequestOrder) {
  ASSERT_EQ(client_.send("PUT", "/fhir/Patient/old", json{{"resourceType", "Patient"}, {"id", "old"}}.dump()).status, 201);
  json b = {{"resourceType", "Bundle"}, {"type", "transaction"}, {"entry", json::array()}};
  b["entry"].push_back(entry("", json{{"resourceType", "Patient"}, {"id", "p9"}}, "PUT", "Patient/p9"));
  b["entry"].push_back({{"request", {{"method", "DELETE"}, {"url", "Patient/old"}}}});
  b["entry"].push_back({{"request", {{"method", "GET"}, {"url", "Patient/p9"}}}});
  auto r = post(b);
  ASSERT_EQ(r.status, 200) << r.body;
  auto resp = r.json();
  EXPECT_EQ(resp["entry"][0]["response"]["status"], "201 Created");
  EXPECT_EQ(resp["entry"][1]["response"]["status"], "200 OK");
  EXPECT_EQ(resp["entry"][2]["resource"]["id"], "p9");  // GET runs last and sees the PUT
  EXPECT_EQ(client_.get("/fhir/Patient/old").status, 410);
}

TEST_F(FhirBundleTest, TransactionRefusesTwoEntriesOnOneResourceAndDanglingUuids) {
  json b = {{"resourceType", "Bundle"}, {"type", "transaction"}, {"entry", json::array()}};
  b["entry"].push_back(entry("", json{{"resourceType", "Patient"}, {"id", "x"}}, "PUT", "Patient/x"));
  b["entry"].push_back(entry("", json{{"resourceType", "Patient"}, {"id", "x"}}, "PUT", "Patient/x"));
  EXPECT_EQ(post(b).status, 400);
  json d = {{"resourceType", "Bundle"}, {"type", "transaction"}, {"entry", json::array()}};
  d["entry"].push_back(entry("", observation("urn:uuid:9a0b5d1e-0000-4000-8000-000000000000", 1), "POST", "Observation"));
  auto r = post(d);
  EXPECT_EQ(r.status, 422);  // a urn: reference resolves inside its Bundle or nowhere: a validation error
  EXPECT_NE(r.body.find("urn:uuid:9a0b5d1e-0000-4000-8000-000000000000"), std::string::npos);
  EXPECT_EQ(count("Patient") + count("Observation"), 0);
}

TEST_F(FhirBundleTest, MalformedEntriesNameTheirPath) {
  json b = {{"resourceType", "Bundle"}, {"type", "transaction"}, {"entry", json::array()}};
  b["entry"].push_back(entry("", patient("3"), "POST", "Patient"));
  b["entry"].push_back({{"resource", patient("4")}});
  auto r = post(b);
  EXPECT_EQ(r.status, 400);
  EXPECT_EQ(r.json()["issue"][0]["expression"][0], "Bundle.entry[1].request");
  json wrongType = {{"resourceType", "Bundle"}, {"type", "transaction"}, {"entry", json::array()}};
  wrongType["entry"].push_back(entry("", patient("5"), "POST", "Observation"));
  auto w = post(wrongType);
  EXPECT_EQ(w.status, 400);
  EXPECT_EQ(w.json()["issue"][0]["expression"][0], "Bundle.entry[0].resource.resourceType");
  json collection = {{"resourceType", "Bundle"}, {"type", "collection"}};
  EXPECT_EQ(post(collection).status, 400);
}

TEST_F(FhirBundleTest, BatchEntriesSucceedOrFailOnTheirOwn) {
  json b = {{"resourceType", "Bundle"}, {"type", "batch"}, {"entry", json::array()}};
  b["entry"].push_back(entry("", patient("6"), "POST", "Patient"));
  json stale = entry("", json{{"resourceType", "Patient"}, {"id", "nobody"}}, "PUT", "Patient/nobody");
  stale["request"]["ifMatch"] = "W/\"2\"";
  b["entry"].push_back(stale);
  b["entry"].push_back({{"request", {{"method", "GET"}, {"url", "Patient/unknown"}}}});
  b["entry"].push_back(entry("", patient("7"), "POST", "Patient"));
  auto r = post(b);
  ASSERT_EQ(r.status, 200) << r.body;
  auto resp = r.json();
  EXPECT_EQ(resp["type"], "batch-response");
  EXPECT_EQ(resp["entry"][0]["response"]["status"], "201 Created");
  EXPECT_EQ(resp["entry"][1]["response"]["status"], "412");
  EXPECT_EQ(resp["entry"][1]["response"]["outcome"]["resourceType"], "OperationOutcome");
  EXPECT_EQ(resp["entry"][2]["response"]["status"], "404");
  EXPECT_EQ(resp["entry"][3]["response"]["status"], "201 Created");
  EXPECT_EQ(count("Patient"), 2);
}

TEST_F(FhirBundleTest, InvalidResourcesAreRefusedWithTheirPathInTheBundle) {
  json t = {{"resourceType", "Bundle"}, {"type", "transaction"}, {"entry", json::array()}};
  t["entry"].push_back(entry("urn:uuid:61ebe359-bfdc-4613-8bf2-c5e300945f0a", patient("8"), "POST", "Patient"));
  json bad = patient("9");
  bad["gender"] = "dragon";
  t["entry"].push_back(entry("", bad, "POST", "Patient"));
  auto r = post(t);
  EXPECT_EQ(r.status, 422) << r.body;
  EXPECT_NE(r.body.find("Bundle.entry[1].resource.gender"), std::string::npos) << r.body;
  EXPECT_EQ(count("Patient"), 0);
  json b = t;
  b["type"] = "batch";
  b["entry"][0].erase("fullUrl");
  auto br = post(b);
  ASSERT_EQ(br.status, 200) << br.body;
  auto resp = br.json();
  EXPECT_EQ(resp["entry"][0]["response"]["status"], "201 Created");
  EXPECT_EQ(resp["entry"][1]["response"]["status"], "422");
  EXPECT_NE(resp["entry"][1]["response"]["outcome"].dump().find("Bundle.entry[1].resource.gender"), std::string::npos);
}

TEST_F(FhirBundleTest, ConditionalPutCannotOverwriteAnUnmatchedResourceByItsId) {
  ASSERT_EQ(client_.send("PUT", "/fhir/Patient/taken", json{{"resourceType", "Patient"}, {"id", "taken"}}.dump()).status, 201);
  json b = {{"resourceType", "Bundle"}, {"type", "transaction"}, {"entry", json::array()}};
  json p = patient("nobody");
  p["id"] = "taken";
  b["entry"].push_back(entry("", p, "PUT", "Patient?identifier=urn:oid:1.2.250.1.213.1.4.8|nobody"));
  EXPECT_EQ(post(b).status, 409);
  b["type"] = "batch";
  auto r = post(b);
  ASSERT_EQ(r.status, 200);
  EXPECT_EQ(r.json()["entry"][0]["response"]["status"], "409");
  EXPECT_EQ(client_.get("/fhir/Patient/taken").json()["meta"]["versionId"], "1");
}

TEST_F(FhirBundleTest, HundredEntryTransactionCommitsTogether) {
  json b = {{"resourceType", "Bundle"}, {"type", "transaction"}, {"entry", json::array()}};
  for (int i = 0; i < 50; ++i) {
    std::string u = "urn:uuid:00000000-0000-4000-8000-" + std::string(12 - std::to_string(i).size(), '0') + std::to_string(i);
    b["entry"].push_back(entry(u, patient("n" + std::to_string(i)), "POST", "Patient"));
    b["entry"].push_back(entry("", observation(u, i % 10), "POST", "Observation"));
  }
  auto r = post(b);
  ASSERT_EQ(r.status, 200) << r.body.substr(0, 500);
  EXPECT_EQ(r.json()["entry"].size(), 100u);
  EXPECT_EQ(count("Patient"), 50);
  EXPECT_EQ(count("Observation"), 50);
}
