// FHIR REST interactions through a real gateway on port 0 over HTTP.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "tests/support/http_client.h"
#include "tests/support/test_gateway.h"

using namespace passerelle::testing;
using nlohmann::json;

namespace {

const char* kPatient = R"({"resourceType":"Patient","identifier":[{"system":"urn:oid:1.2.250.1.213.1.4.8","value":"180057512345678"}],
  "name":[{"family":"Martin","given":["Claire"]}],"gender":"female","birthDate":"1980-05-12"})";

class FhirRestTest : public ::testing::Test {
 protected:
  FhirRestTest() : client_(gw_.httpPort()) {}
  std::string create(const std::string& body = kPatient) {
    auto r = client_.send("POST", "/fhir/Patient", body);
    EXPECT_EQ(r.status, 201) << r.body;
    return r.json()["id"];
  }
  json issue(const HttpResult& r) { return r.json()["issue"][0]; }
  TestGateway gw_;
  HttpClient client_;
};

}  // namespace

TEST_F(FhirRestTest, CreateAssignsIdAndAnswersWithLocationETagLastModified) {
  auto r = client_.send("POST", "/fhir/Patient", kPatient);
  ASSERT_EQ(r.status, 201) << r.body;
  auto body = r.json();
  std::string id = body["id"];
  EXPECT_EQ(id.size(), 36u);
  EXPECT_EQ(body["meta"]["versionId"], "1");
  EXPECT_EQ(r.header("Location"), gw_.base() + "/Patient/" + id + "/_history/1");
  EXPECT_EQ(r.header("ETag"), "W/\"1\"");
  EXPECT_NE(r.header("Last-Modified").find("GMT"), std::string::npos);
  EXPECT_EQ(r.header("Content-Type").rfind("application/fhir+json", 0), 0u);
  auto read = client_.get("/fhir/Patient/" + id);
  ASSERT_EQ(read.status, 200);
  EXPECT_EQ(read.json()["name"][0]["family"], "Martin");
  EXPECT_EQ(read.header("ETag"), "W/\"1\"");
}

TEST_F(FhirRestTest, StoredJsonKeepsDecimalPrecision) {
  auto r = client_.send("POST", "/fhir/Observation",
                        R"({"resourceType":"Observation","status":"final","code":{"text":"EVA"},"valueQuantity":{"value":3.50,"unit":"cm"}})");
  ASSERT_EQ(r.status, 201);
  auto read = client_.get("/fhir/Observation/" + r.json()["id"].get<std::string>());
  EXPECT_NE(read.body.find("\"value\":3.50"), std::string::npos) << read.body;
}

TEST_F(FhirRestTest, UpdateWithIfMatchAndStaleVersion) {
  std::string id = create();
  json p = json::parse(kPatient);
  p["id"] = id;
  p["gender"] = "other";
  auto u = client_.send("PUT", "/fhir/Patient/" + id, p.dump(), {{"If-Match", "W/\"1\""}});
  ASSERT_EQ(u.status, 200) << u.body;
  EXPECT_EQ(u.header("ETag"), "W/\"2\"");
  auto stale = client_.send("PUT", "/fhir/Patient/" + id, p.dump(), {{"If-Match", "W/\"1\""}});
  EXPECT_EQ(stale.status, 412);
  EXPECT_EQ(issue(stale)["code"], "conflict");
  EXPECT_EQ(client_.get("/fhir/Patient/" + id).json()["meta"]["versionId"], "2");
}

TEST_F(FhirRestTest, UpdateCanCreateWithTheClientsId) {
  json p = json::parse(kPatient);
  p["id"] = "chosen-id";
  auto r = client_.send("PUT", "/fhir/Patient/chosen-id", p.dump());
  EXPECT_EQ(r.status, 201);
  EXPECT_EQ(client_.get("/fhir/Patient/chosen-id").status, 200);
}

TEST_F(FhirRestTest, UpdateIdMustMatchTheUrl) {
  json p = json::parse(kPatient);
  p["id"] = "other";
  auto r = client_.send("PUT", "/fhir/Patient/one", p.dump());
  EXPECT_EQ(r.status, 400);
  EXPECT_EQ(issue(r)["expression"][0], "Patient.id");
  p.erase("id");
  EXPECT_EQ(client_.send("PUT", "/fhir/Patient/one", p.dump()).status, 400);
}

TEST_F(FhirRestTest, VreadReadsEachVersion) {
  std::string id = create();
  json p = json::parse(kPatient);
  p["id"] = id;
  p["gender"] = "male";
  ASSERT_EQ(client_.send("PUT", "/fhir/Patient/" + id, p.dump()).status, 200);
  EXPECT_EQ(client_.get("/fhir/Patient/" + id + "/_history/1").json()["gender"], "female");
  EXPECT_EQ(client_.get("/fhir/Patient/" + id + "/_history/2").json()["gender"], "male");
  EXPECT_EQ(client_.get("/fhir/Patient/" + id + "/_history/3").status, 404);
  EXPECT_EQ(client_.get("/fhir/Patient/" + id + "/_history/x").status, 404);
}

TEST_F(FhirRestTest, DeleteThenReadIsGoneAndHistoryKeepsIt) {
  std::string id = create();
  auto d = client_.request("DELETE", "/fhir/Patient/" + id);
  EXPECT_EQ(d.status, 200) << d.body;
  auto g = client_.get("/fhir/Patient/" + id);
  EXPECT_EQ(g.status, 410);
  EXPECT_EQ(issue(g)["code"], "deleted");
  EXPECT_EQ(client_.get("/fhir/Patient/" + id + "/_history/2").status, 410);
  EXPECT_EQ(client_.get("/fhir/Patient/" + id + "/_history/1").status, 200);
  auto h = client_.get("/fhir/Patient/" + id + "/_history").json();
  EXPECT_EQ(h["type"], "history");
  ASSERT_EQ(h["entry"].size(), 2u);
  EXPECT_EQ(h["entry"][0]["request"]["method"], "DELETE");
  EXPECT_FALSE(h["entry"][0].contains("resource"));
  EXPECT_EQ(h["entry"][1]["request"]["method"], "POST");
  EXPECT_EQ(client_.request("DELETE", "/fhir/Patient/" + id).status, 204);  // already deleted
  // Search no longer finds it.
  EXPECT_EQ(client_.get("/fhir/Patient?_id=" + id).json()["total"], 0);
}

TEST_F(FhirRestTest, ReadOfUnknownIs404WithOperationOutcome) {
  auto r = client_.get("/fhir/Patient/nope");
  EXPECT_EQ(r.status, 404);
  EXPECT_EQ(r.json()["resourceType"], "OperationOutcome");
  EXPECT_EQ(client_.get("/fhir/NotAType/1").status, 404);
}

TEST_F(FhirRestTest, ConditionalCreateFindsTheExistingResource) {
  std::string id = create();
  auto r = client_.send("POST", "/fhir/Patient", kPatient,
                        {{"If-None-Exist", "identifier=urn:oid:1.2.250.1.213.1.4.8|180057512345678"}});
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.json()["id"], id);
  auto other = client_.send("POST", "/fhir/Patient", kPatient, {{"If-None-Exist", "identifier=urn:oid:1.2.250.1.213.1.4.8|999"}});
  EXPECT_EQ(other.status, 201);
  // Two now match the value alone: 412.
  auto many = client_.send("POST", "/fhir/Patient", kPatient, {{"If-None-Exist", "identifier=180057512345678"}});
  EXPECT_EQ(many.status, 412);
}

TEST_F(FhirRestTest, ConditionalUpdateCreatesThenUpdates) {
  json p = json::parse(kPatient);
  auto first = client_.send("PUT", "/fhir/Patient?identifier=urn:oid:1.2.250.1.213.1.4.8|180057512345678", p.dump());
  ASSERT_EQ(first.status, 201) << first.body;
  std::string id = first.json()["id"];
  p["gender"] = "unknown";
  auto second = client_.send("PUT", "/fhir/Patient?identifier=urn:oid:1.2.250.1.213.1.4.8|180057512345678", p.dump());
  ASSERT_EQ(second.status, 200) << second.body;
  EXPECT_EQ(second.json()["id"], id);
  EXPECT_EQ(second.json()["meta"]["versionId"], "2");
  auto unknown = client_.send("PUT", "/fhir/Patient?nickname=x", p.dump());
  EXPECT_EQ(unknown.status, 400);  // an ignored parameter would widen the match
}

TEST_F(FhirRestTest, ConditionalUpdateRefusesABodyIdThatExistsButDoesNotMatch) {
  json other = json::parse(R"({"resourceType":"Patient","id":"taken","active":true})");
  ASSERT_EQ(client_.send("PUT", "/fhir/Patient/taken", other.dump()).status, 201);
  json p = json::parse(kPatient);
  p["id"] = "taken";
  auto r = client_.send("PUT", "/fhir/Patient?identifier=urn:oid:1.2.250.1.213.1.4.8|nobody", p.dump());
  EXPECT_EQ(r.status, 409) << r.body;
  EXPECT_EQ(issue(r)["code"], "conflict");
  EXPECT_EQ(client_.get("/fhir/Patient/taken").json()["meta"]["versionId"], "1");
}

TEST_F(FhirRestTest, ServerIdsAreTimeOrderedUuids) {
  std::string a = create(), b = create();
  EXPECT_EQ(a[14], '7');  // UUID version 7
  EXPECT_LT(a.substr(0, 13), b.substr(0, 13) + "~");
  EXPECT_NE(a, b);
}

TEST_F(FhirRestTest, ConditionalDeleteRemovesTheSingleMatch) {
  std::string id = create();
  auto d = client_.request("DELETE", "/fhir/Patient?identifier=urn:oid:1.2.250.1.213.1.4.8|180057512345678");
  EXPECT_EQ(d.status, 200);
  EXPECT_EQ(client_.get("/fhir/Patient/" + id).status, 410);
}

TEST_F(FhirRestTest, PreferControlsTheBody) {
  auto minimal = client_.send("POST", "/fhir/Patient", kPatient, {{"Prefer", "return=minimal"}});
  EXPECT_EQ(minimal.status, 201);
  EXPECT_TRUE(minimal.body.empty());
  EXPECT_FALSE(minimal.header("Location").empty());
  auto oo = client_.send("POST", "/fhir/Patient", kPatient, {{"Prefer", "return=OperationOutcome"}});
  EXPECT_EQ(oo.status, 201);
  EXPECT_EQ(oo.json()["resourceType"], "OperationOutcome");
  EXPECT_EQ(oo.json()["issue"][0]["severity"], "information");
  auto rep = client_.send("POST", "/fhir/Patient", kPatient, {{"Prefer", "return=representation"}});
  EXPECT_EQ(rep.json()["resourceType"], "Patient");
}

TEST_F(FhirRestTest, SearchByIdentifierIdAndLastUpdatedWithPaging) {
  std::vector<std::string> ids;
  for (int i = 0; i < 5; ++i) {
    json p = json::parse(kPatient);
    p["identifier"][0]["value"] = "v" + std::to_string(i);
    ids.push_back(create(p.dump()));
  }
  auto byIdent = client_.get("/fhir/Patient?identifier=urn:oid:1.2.250.1.213.1.4.8%7Cv3").json();
  ASSERT_EQ(byIdent["total"], 1);
  EXPECT_EQ(byIdent["entry"][0]["resource"]["id"], ids[3]);
  EXPECT_EQ(byIdent["entry"][0]["search"]["mode"], "match");
  EXPECT_EQ(client_.get("/fhir/Patient?identifier=v3").json()["total"], 1);
  EXPECT_EQ(client_.get("/fhir/Patient?identifier=urn:oid:1.2.250.1.213.1.4.8%7C").json()["total"], 5);
  EXPECT_EQ(client_.get("/fhir/Patient?identifier=other%7Cv3").json()["total"], 0);
  EXPECT_EQ(client_.get("/fhir/Patient?_id=" + ids[0] + "," + ids[1]).json()["total"], 2);
  EXPECT_EQ(client_.get("/fhir/Patient?_lastUpdated=ge2020-01-01&_lastUpdated=lt2999").json()["total"], 5);
  EXPECT_EQ(client_.get("/fhir/Patient?_lastUpdated=lt2020").json()["total"], 0);
  // Paging: 5 results, 2 per page.
  auto page1 = client_.get("/fhir/Patient?_count=2").json();
  EXPECT_EQ(page1["entry"].size(), 2u);
  std::string next;
  for (auto& l : page1["link"])
    if (l["relation"] == "next") next = l["url"];
  ASSERT_FALSE(next.empty());
  std::set<std::string> seen;
  int pages = 0;
  while (!next.empty() && pages < 10) {
    auto path = next.substr(next.find("/fhir"));
    auto page = client_.get(path).json();
    for (auto& e : page["entry"]) seen.insert(e["resource"]["id"]);
    next.clear();
    for (auto& l : page["link"])
      if (l["relation"] == "next") next = l["url"];
    ++pages;
  }
  EXPECT_EQ(seen.size(), 3u);
  auto count = client_.get("/fhir/Patient?_summary=count").json();
  EXPECT_EQ(count["total"], 5);
  EXPECT_FALSE(count.contains("entry"));
}

TEST_F(FhirRestTest, PostSearchTakesFormParameters) {
  create();
  auto r = client_.request("POST", "/fhir/Patient/_search", "identifier=180057512345678",
                           {{"Content-Type", "application/x-www-form-urlencoded"}});
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.json()["total"], 1);
}

TEST_F(FhirRestTest, StrictHandlingRefusesUnknownParameters) {
  auto lenient = client_.get("/fhir/Patient?nickname=x");
  EXPECT_EQ(lenient.status, 200);
  auto strict = client_.request("GET", "/fhir/Patient?nickname=x", "", {{"Prefer", "handling=strict"}});
  EXPECT_EQ(strict.status, 400);
}

TEST_F(FhirRestTest, SearchValuesAreNeverSql) {
  create();
  for (std::string v : {"'", "%27%20OR%201%3D1--", "x%22%3B%20DROP%20TABLE%20resource_version%3B--", "%5C"}) {
    auto r = client_.get("/fhir/Patient?identifier=" + v);
    EXPECT_EQ(r.status, 200) << v;
    EXPECT_EQ(r.json()["total"], 0) << v;
  }
  EXPECT_EQ(client_.get("/fhir/Patient").json()["total"], 1);
}

TEST_F(FhirRestTest, HistoryOfTypeAndSystemWithSinceAndPaging) {
  for (int i = 0; i < 3; ++i) create();
  client_.send("POST", "/fhir/Observation", R"({"resourceType":"Observation","status":"final","code":{"text":"x"}})");
  auto type = client_.get("/fhir/Patient/_history").json();
  EXPECT_EQ(type["entry"].size(), 3u);
  auto system = client_.get("/fhir/_history").json();
  EXPECT_EQ(system["entry"].size(), 4u);
  EXPECT_EQ(system["entry"][0]["resource"]["resourceType"], "Observation");  // newest first
  EXPECT_EQ(client_.get("/fhir/_history?_since=2999-01-01T00:00:00Z").json().value("entry", json::array()).size(), 0u);
  auto p1 = client_.get("/fhir/_history?_count=3").json();
  ASSERT_EQ(p1["entry"].size(), 3u);
  std::string next;
  for (auto& l : p1["link"])
    if (l["relation"] == "next") next = l["url"];
  ASSERT_FALSE(next.empty());
  // A write between pages does not shift the next page.
  create();
  auto p2 = client_.get(next.substr(next.find("/fhir"))).json();
  ASSERT_EQ(p2["entry"].size(), 1u);
  EXPECT_EQ(p2["entry"][0]["resource"]["resourceType"], "Patient");
  EXPECT_EQ(client_.get("/fhir/_history?_since=garbage").status, 400);
}

TEST_F(FhirRestTest, InvalidResourcesAreRefusedWith422AndEveryIssue) {
  json p = json::parse(kPatient);
  p["gender"] = "dragon";
  p["birthDate"] = "1980-13-45";
  p["unknownThing"] = 1;
  auto r = client_.send("POST", "/fhir/Patient", p.dump());
  ASSERT_EQ(r.status, 422) << r.body;
  std::set<std::string> paths;
  json oo = r.json();
  for (auto& i : oo["issue"])
    if (i.contains("expression")) paths.insert(i["expression"][0]);
  EXPECT_TRUE(paths.count("Patient.gender")) << r.body;
  EXPECT_TRUE(paths.count("Patient.birthDate")) << r.body;
  EXPECT_EQ(client_.get("/fhir/Patient?_summary=count").json()["total"], 0);
  p = json::parse(kPatient);
  p["id"] = "v1";
  p["active"] = "yes";
  EXPECT_EQ(client_.send("PUT", "/fhir/Patient/v1", p.dump()).status, 422);
}

TEST_F(FhirRestTest, ValidateOperationReportsWithoutStoring) {
  json p = json::parse(kPatient);
  p["gender"] = "dragon";
  auto r = client_.send("POST", "/fhir/Patient/$validate", p.dump());
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.json()["issue"][0]["expression"][0], "Patient.gender");
  json params = {{"resourceType", "Parameters"}, {"parameter", {{{"name", "resource"}, {"resource", json::parse(kPatient)}}}}};
  auto ok = client_.send("POST", "/fhir/$validate", params.dump());
  ASSERT_EQ(ok.status, 200) << ok.body;
  EXPECT_EQ(ok.json()["issue"][0]["severity"], "information");
  EXPECT_EQ(client_.get("/fhir/Patient?_summary=count").json()["total"], 0);
  EXPECT_EQ(client_.get("/fhir/Patient/$validate").status, 405);
}

TEST_F(FhirRestTest, CapabilityStatementTellsWhatIsSupported) {
  auto r = client_.get("/fhir/metadata");
  ASSERT_EQ(r.status, 200);
  auto cs = r.json();
  EXPECT_EQ(cs["resourceType"], "CapabilityStatement");
  EXPECT_EQ(cs["fhirVersion"], "4.0.1");
  auto& resources = cs["rest"][0]["resource"];
  EXPECT_EQ(resources.size(), 146u);
  for (auto& res : resources) {
    if (res["type"] != "Patient") continue;
    std::set<std::string> params;
    for (auto& p : res["searchParam"]) params.insert(p["name"]);
    // Every Patient parameter of the R4 definitions, and the Resource-level ones.
    for (const char* p : {"_id", "_lastUpdated", "_tag", "_profile", "_security", "identifier", "name", "family",
                          "given", "birthdate", "gender", "general-practitioner", "address-city", "phone", "deceased"})
      EXPECT_EQ(params.count(p), 1u) << p;
    EXPECT_EQ(params.count("_text"), 0u);  // not supported, so not listed
    EXPECT_EQ(params.size(), res["searchParam"].size());
  }
  std::set<std::string> inter;
  for (auto& i : cs["rest"][0]["interaction"]) inter.insert(i["code"]);
  EXPECT_TRUE(inter.count("transaction") && inter.count("batch") && inter.count("history-system"));
}

TEST_F(FhirRestTest, BadInputGetsAClearOperationOutcome) {
  struct Case {
    std::string method, path, body, contentType;
    int status;
    std::string needle;
  };
  std::string deep;
  for (int i = 0; i < 70; ++i) deep += "{\"a\":";
  deep += "1";
  for (int i = 0; i < 70; ++i) deep += "}";
  std::vector<Case> cases = {
      {"POST", "/fhir/Patient", "{not json", "application/fhir+json", 400, "invalid JSON"},
      {"POST", "/fhir/Patient", R"({"resourceType":"Patient","a":1,"a":2})", "application/fhir+json", 400, "duplicate key"},
      {"POST", "/fhir/Patient", "{\"resourceType\":\"Patient\",\"x\":\"\xff\"}", "application/fhir+json", 400, "invalid JSON"},
      {"POST", "/fhir/Patient", R"({"resourceType":"Patient","x":)" + deep + "}", "application/fhir+json", 400, "deeper than 64"},
      {"POST", "/fhir/Patient", R"({"resourceType":"Observation"})", "application/fhir+json", 400, "URL names Patient"},
      {"POST", "/fhir/Patient", R"({"resourceType":"Patient","id":"x"})", "application/fhir+json", 400, "must not carry an id"},
      {"POST", "/fhir/Patient", R"({"resourceType":"Nope"})", "application/fhir+json", 400, "not a FHIR R4 resource type"},
      {"POST", "/fhir/Patient", R"({"name":"x"})", "application/fhir+json", 400, "no resourceType"},
      {"POST", "/fhir/Patient", R"([1,2])", "application/fhir+json", 400, "JSON object"},
      {"POST", "/fhir/Patient", R"({"resourceType":"Patient"})", "text/plain", 415, "not supported"},
      {"POST", "/fhir/Patient", R"({"resourceType":"Patient"})", "application/xml", 400, "not well-formed"},
      {"POST", "/fhir/Patient", R"({"resourceType":"Patient"})", "", 415, "Content-Type is required"},
      {"POST", "/fhir/Patient", R"({"resourceType":"Patient"})", "application/fhir+json; charset=latin1", 415, "charset"},
      {"PUT", "/fhir/Patient/a", R"({"resourceType":"Patient","id":"a","meta":[]})", "application/fhir+json", 422, "meta"},
      {"POST", "/fhir/Patient/123", R"({"resourceType":"Patient"})", "application/fhir+json", 405, "not allowed"},
      {"DELETE", "/fhir/metadata", "", "", 405, "GET only"},
      {"GET", "/fhir/Patient?_format=turtle", "", "", 406, "not supported"},
      {"GET", "/fhir/Patient/bad%20id", "", "", 400, "not a valid resource id"},
  };
  for (const auto& c : cases) {
    std::vector<std::pair<std::string, std::string>> h;
    if (!c.contentType.empty()) h.emplace_back("Content-Type", c.contentType);
    auto r = client_.request(c.method, c.path, c.body, h);
    EXPECT_EQ(r.status, c.status) << c.method << " " << c.path << " " << c.body.substr(0, 60) << " -> " << r.body;
    ASSERT_FALSE(r.body.empty()) << c.path;
    auto oo = r.json();
    EXPECT_EQ(oo["resourceType"], "OperationOutcome");
    EXPECT_NE(oo["issue"][0]["diagnostics"].get<std::string>().find(c.needle), std::string::npos)
        << c.needle << " not in " << r.body;
  }
  // Still serving.
  EXPECT_EQ(client_.get("/fhir/metadata").status, 200);
}
