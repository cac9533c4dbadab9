// Access control end to end: an authorisation matrix generated from conf/access/policy.json
// (role x resource x consent state x interaction, against a gateway holding patients in every
// consent state), leak tests (counts, _has, _revinclude, error texts), identity (401), break-glass,
// the network API's senders, and audit completeness (one record per request), also with two
// gateways appending to one audit trail in PostgreSQL.
#include <gtest/gtest.h>

#include <atomic>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <thread>

#include "gateway/audit/audit_log.h"
#include "tests/support/http_client.h"
#include "tests/support/pg_server.h"
#include "tests/support/test_gateway.h"

using namespace passerelle::testing;
using nlohmann::json;
using passerelle::identity::IssueOptions;

namespace {

const char* kStates = "ADWEX";
const std::string kGp = "rpps:10100000001", kGp2 = "rpps:10100000002", kSpecialist = "rpps:10100000003", kNurse = "adeli:771000001";

struct Resource {
  std::string type, id, code;  // code: the Observation's LOINC code
};

class AccessTest : public ::testing::Test {
 protected:
  void SetUp() override {
    gw = std::make_unique<TestGateway>(std::vector<std::string>{"network.today=2026-11-23"});
    sys = std::make_unique<HttpClient>(gw->httpPort());
    put("PractitionerRole", "gp", member(kGp));
    put("PractitionerRole", "gp2", member(kGp2));
    put("PractitionerRole", "spec", member(kSpecialist));
    put("PractitionerRole", "nurse", member(kNurse));
    put("Organization", "org", R"({"resourceType":"Organization","name":"Hôpital Avicenne"})");
    for (const char* s = kStates; *s; ++s) seedPatient(*s);
  }

  static std::string member(const std::string& id) {
    return R"({"resourceType":"PractitionerRole","identifier":[{"system":"https://douleur77.fr/fhir/sid/member","value":")" + id + R"("}]})";
  }

  void put(const std::string& type, const std::string& id, std::string body) {
    json j = json::parse(body);
    j["id"] = id;
    auto r = sys->send("PUT", "/fhir/" + type + "/" + id, j.dump());
    ASSERT_TRUE(r.status == 200 || r.status == 201) << type << "/" << id << ": " << r.body;
  }

  void seedPatient(char s) {
    std::string p(1, s);
    std::string pid = "p" + p, ref = R"({"reference":"Patient/p)" + p + R"("})";
    put("Patient", pid, R"({"resourceType":"Patient","name":[{"family":"Patient)" + p + R"("}]})");
    std::string exit = s == 'X' ? R"(,"extension":[{"url":"https://douleur77.fr/fhir/StructureDefinition/exit-reason","valueCode":"exclusion"}])" : "";
    put("EpisodeOfCare", "eoc" + p,
        R"({"resourceType":"EpisodeOfCare")" + exit + R"(,"status":")" + (s == 'A' || s == 'D' ? "active" : "finished") +
            R"(","type":[{"coding":[{"system":"https://douleur77.fr/fhir/CodeSystem/d77-programme","code":"D77"}]}],"patient":)" + ref +
            R"(,"careManager":{"reference":"PractitionerRole/gp"}})");
    std::string status = s == 'A' ? "active" : s == 'D' ? "draft" : "inactive";
    std::string state = s == 'W' ? "withdrawn" : s == 'E' ? "expired" : s == 'X' ? "excluded" : "";
    std::string ext = state.empty() ? "" : R"(,"extension":[{"url":"https://douleur77.fr/fhir/StructureDefinition/consent-state","valueCode":")" + state + R"("}])";
    put("Consent", "consent" + p,
        R"({"resourceType":"Consent")" + ext + R"(,"status":")" + status +
            R"(","scope":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/consentscope","code":"treatment"}]},"category":[{"coding":[{"system":"http://loinc.org","code":"59284-0"}]}],)"
            R"("policyRule":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/v3-ActCode","code":"OPTIN"}]},"patient":)" +
            ref + "}");
    // The network's inclusion names the GP correspondent in the patient's CareTeam.
    put("CareTeam", "team" + p,
        R"({"resourceType":"CareTeam","status":"active","subject":)" + ref +
            R"(,"participant":[{"role":[{"coding":[{"system":"https://douleur77.fr/fhir/CodeSystem/network-role","code":"gp-correspondent"}]}],"member":{"reference":"PractitionerRole/gp"}}]})");
    put("Task", "task" + p, R"({"resourceType":"Task","status":"accepted","intent":"order","for":)" + ref + R"(,"owner":{"reference":"PractitionerRole/spec"}})");
    put("ServiceRequest", "sr" + p,
        R"({"resourceType":"ServiceRequest","status":"active","intent":"order","subject":)" + ref + R"(,"performer":[{"reference":"PractitionerRole/nurse"}]})");
    put("Observation", "vas" + p,
        R"({"resourceType":"Observation","status":"final","code":{"coding":[{"system":"http://loinc.org","code":"72514-3"}]},"subject":)" + ref +
            R"(,"valueQuantity":{"value":7}})");
    put("Observation", "hr" + p,
        R"({"resourceType":"Observation","status":"final","code":{"coding":[{"system":"http://loinc.org","code":"8867-4"}]},"subject":)" + ref +
            R"(,"valueQuantity":{"value":70}})");
    put("Condition", "cond" + p, R"({"resourceType":"Condition","code":{"text":"Lombalgie chronique"},"subject":)" + ref + "}");
    put("ChargeItem", "fee" + p, R"({"resourceType":"ChargeItem","status":"billable","code":{"text":"CIED 3C"},"subject":)" + ref + "}");
  }

  std::vector<Resource> resourcesOf(char s) {
    std::string p(1, s);
    return {{"Patient", "p" + p, ""},       {"EpisodeOfCare", "eoc" + p, ""}, {"Consent", "consent" + p, ""},
            {"Task", "task" + p, ""},       {"ServiceRequest", "sr" + p, ""}, {"Observation", "vas" + p, "72514-3"},
            {"Observation", "hr" + p, "8867-4"}, {"Condition", "cond" + p, ""},   {"ChargeItem", "fee" + p, ""}};
  }

  std::string token(const std::string& role, const std::string& practitioner, const std::string& patient = "",
                    std::vector<std::string> scopes = {"user/*.cruds"}) {
    IssueOptions o;
    o.role = role;
    o.practitioner = practitioner;
    o.patient = patient;
    o.scopes = patient.empty() ? scopes : std::vector<std::string>{"patient/*.cruds"};
    return gw->token(o);
  }

  std::unique_ptr<HttpClient> as(const std::string& tok) {
    auto c = std::make_unique<HttpClient>(gw->httpPort());
    c->setBearer(tok);
    return c;
  }

  std::unique_ptr<TestGateway> gw;
  std::unique_ptr<HttpClient> sys;
};

// --- the expected decision, read straight from the policy file ------------------------------------

struct Table {
  json doc;
  Table() {
    std::ifstream in(std::string(PASSERELLE_SOURCE_DIR) + "/conf/access/policy.json");
    std::stringstream ss;
    ss << in.rdbuf();
    doc = json::parse(ss.str());
  }
  // Does some category of `cats` give `type`, and the resource pass the category's filter?
  bool gives(const json& cats, const Resource& r) const {
    for (const auto& c : cats) {
      std::string name = c;
      if (name == "*") return true;
      const json& cat = doc["categories"][name];
      bool has = false;
      for (const auto& t : cat["types"]) has = has || t == r.type;
      if (!has) continue;
      if (cat.contains("filters") && cat["filters"].contains(r.type)) {
        std::string f = cat["filters"][r.type];
        if (r.type == "Observation" && f.find(r.code) == std::string::npos) continue;
        if (r.type != "Observation") continue;  // the other filters (liaison sheets) match none of these resources
      }
      return true;
    }
    return false;
  }
  bool expect(const std::string& role, const std::set<std::string>& rels, char state, const Resource& r, bool write) const {
    for (const auto& g : doc["roles"][role]["grants"]) {
      std::string rel = g["relationship"];
      if (rel != "any" && !rels.count(rel)) continue;
      bool stateOk = false;
      for (const auto& s : g["consent"]) stateOk = stateOk || s == std::string(1, state);
      if (stateOk && gives(g[write ? "write" : "read"], r)) return true;
    }
    return false;
  }
};

struct Caller {
  std::string name, role, practitioner;
  std::set<std::string> rels;  // its relationships with every seeded patient
};

TEST_F(AccessTest, AuthorisationMatrixFollowsThePolicyTable) {
  Table table;
  std::vector<Caller> callers = {
      {"GP correspondent", "gp", kGp, {"gp-correspondent"}},
      {"other network GP", "gp", kGp2, {}},
      {"referred specialist", "specialist", kSpecialist, {"referral"}},
      {"nurse with a prescription", "nurse", kNurse, {"prescription"}},
      {"coordinating doctor", "coordinator", "rpps:10100000009", {"enrolled"}},
      {"caisse administrative agent", "caisse-agent", "", {"enrolled"}},
      {"caisse medical service", "caisse-medical", "", {}},
      {"management committee", "management-committee", "", {}},
      {"medical committee", "medical-committee", "", {}},
      {"financial partner", "financial-partner", "", {}},
      {"connector account", "connector", "", {}},
  };
  int cases = 0, failures = 0;
  auto check = [&](bool ok, const std::string& what) {
    ++cases;
    if (!ok && ++failures < 40) ADD_FAILURE() << what;
  };
  for (const auto& c : callers) {
    auto client = as(token(c.role, c.practitioner, "", {c.role == "connector" ? "system/*.cruds" : "user/*.cruds"}));
    for (const char* s = kStates; *s; ++s)
      for (const auto& r : resourcesOf(*s)) {
        bool read = table.expect(c.role, c.rels, *s, r, false);
        bool write = table.expect(c.role, c.rels, *s, r, true);
        std::string what = c.name + " / " + r.type + "/" + r.id + " / consent " + *s;
        auto got = client->get("/fhir/" + r.type + "/" + r.id);
        check((got.status == 200) == read, what + ": read " + std::to_string(got.status) + " expected " + (read ? "200" : "refusal"));
        if (!read) check(got.status == 404 || got.status == 403, what + ": a refused read is 403 or 404, got " + std::to_string(got.status));
        auto found = client->get("/fhir/" + r.type + "?_id=" + r.id);
        bool listed = found.status == 200 && found.json().contains("entry");
        check(listed == read, what + ": search " + (listed ? "lists it" : "does not list it") + " (" + std::to_string(found.status) + ")");
        auto counted = client->get("/fhir/" + r.type + "?_id=" + r.id + "&_summary=count");
        bool one = counted.status == 200 && counted.json().value("total", -1) == 1;
        check(one == read, what + ": _summary=count " + counted.body.substr(0, 120));
        // An update with the same content: allowed or refused, never a leak.
        if (got.status == 200 || c.role != "connector") {
          auto body = sys->get("/fhir/" + r.type + "/" + r.id).json();
          body.erase("meta");
          auto w = client->send("PUT", "/fhir/" + r.type + "/" + r.id, body.dump());
          check((w.status == 200) == write, what + ": update " + std::to_string(w.status) + " expected " + (write ? "200" : "403") + " " + w.body.substr(0, 160));
        }
      }
  }
  // The patient: their own compartment in every state, never another patient's.
  for (const char* s = kStates; *s; ++s) {
    auto me = as(token("patient", "", std::string("p") + *s));
    for (const char* o = kStates; *o; ++o)
      for (const auto& r : resourcesOf(*o)) {
        auto got = me->get("/fhir/" + r.type + "/" + r.id);
        bool own = *o == *s;
        check((got.status == 200) == own, std::string("patient p") + *s + " reading " + r.type + "/" + r.id + ": " + std::to_string(got.status));
      }
  }
  EXPECT_EQ(failures, 0);
  EXPECT_GE(cases, 1500) << "the matrix is generated from the table: it should cover every role, resource, state and interaction";
  std::cout << "[ INFO     ] authorisation matrix: " << cases << " cases\n";
}

TEST_F(AccessTest, DomainAnchorsOfTheMatrix) {
  // Scenario 18: the caisse agent reads fee rows, not a VAS.
  auto caisse = as(token("caisse-agent", ""));
  EXPECT_NE(caisse->get("/fhir/Observation/vasA").status, 200);
  EXPECT_EQ(caisse->get("/fhir/ChargeItem/feeA").status, 200);
  // The GP correspondent: full dossier under an active consent, identity only in draft, nothing clinical once withdrawn.
  auto gp = as(token("gp", kGp));
  EXPECT_EQ(gp->get("/fhir/Observation/hrA").status, 200);
  EXPECT_EQ(gp->get("/fhir/Patient/pD").status, 200);
  EXPECT_NE(gp->get("/fhir/Observation/hrD").status, 200);
  EXPECT_NE(gp->get("/fhir/Observation/hrW").status, 200);
  // Scenario 9: once withdrawn, the specialist's writes are refused.
  auto spec = as(token("specialist", kSpecialist));
  std::string obs = R"({"resourceType":"Observation","status":"final","code":{"text":"note"},"subject":{"reference":"Patient/pW"}})";
  EXPECT_EQ(spec->send("POST", "/fhir/Observation", obs).status, 403);
  std::string obsA = R"({"resourceType":"Observation","status":"final","code":{"text":"note"},"subject":{"reference":"Patient/pA"}})";
  EXPECT_EQ(spec->send("POST", "/fhir/Observation", obsA).status, 201);
  // Management committee: aggregates only.
  auto mgmt = as(token("management-committee", ""));
  EXPECT_EQ(mgmt->get("/fhir/Patient/pA").status, 403);
  EXPECT_EQ(mgmt->get("/fhir/MeasureReport").status, 200);
}

TEST_F(AccessTest, HiddenDataLeaksThroughNoCountIncludeChainOrErrorText) {
  auto other = as(token("gp", kGp2));
  EXPECT_EQ(other->get("/fhir/Observation?_summary=count").json()["total"], 0);
  EXPECT_EQ(other->get("/fhir/Observation?code=http://loinc.org|72514-3&_total=accurate").json()["total"], 0);
  EXPECT_EQ(other->get("/fhir/Patient?name=PatientA&_total=accurate").json()["total"], 0);
  // The error for a hidden resource is the error for one that does not exist.
  auto hidden = other->get("/fhir/Observation/vasA"), missing = other->get("/fhir/Observation/nosuch");
  EXPECT_EQ(hidden.status, missing.status);
  std::string h = hidden.json()["issue"][0]["diagnostics"], m = missing.json()["issue"][0]["diagnostics"];
  EXPECT_EQ(h.substr(h.find(" is")), m.substr(m.find(" is")));
  // The nurse sees the VAS, not the heart rate: _has and _revinclude must not reveal it.
  auto nurse = as(token("nurse", kNurse));
  EXPECT_EQ(nurse->get("/fhir/Observation/vasA").status, 200);
  EXPECT_EQ(nurse->get("/fhir/Observation/hrA").status, 404);
  EXPECT_EQ(nurse->get("/fhir/Patient?_has:Observation:subject:code=http://loinc.org|8867-4&_total=accurate").json()["total"], 0);
  EXPECT_EQ(nurse->get("/fhir/Patient?_has:Observation:subject:code=http://loinc.org|72514-3&_total=accurate").json()["total"], 1);
  auto rev = nurse->get("/fhir/Patient?_id=pA&_revinclude=Observation:subject").json();
  std::set<std::string> ids;
  for (const auto& e : rev["entry"]) ids.insert(e["resource"]["id"].get<std::string>());
  EXPECT_TRUE(ids.count("vasA"));
  EXPECT_FALSE(ids.count("hrA"));
  // A chain through a hidden patient matches nothing.
  EXPECT_EQ(other->get("/fhir/Observation?subject:Patient.name=PatientA&_total=accurate").json()["total"], 0);
  // History across a type is for system accounts.
  EXPECT_EQ(nurse->get("/fhir/Observation/_history").status, 403);
}

TEST_F(AccessTest, NothingIsReachableWithoutIdentity) {
  HttpClient anon(gw->httpPort());
  anon.setBearer("");
  EXPECT_EQ(anon.get("/healthz").status, 200);
  EXPECT_EQ(anon.get("/fhir/metadata").status, 200);
  for (std::string path : {"/fhir/Patient/pA", "/fhir/Patient", "/fhir", "/fhir/_history", "/metrics", "/network/v1/kinds",
                           "/network/v1/patients/pA/dossier", "/fhir/AuditEvent"}) {
    auto r = anon.get(path);
    EXPECT_EQ(r.status, 401) << path;
    EXPECT_EQ(r.header("WWW-Authenticate"), "Bearer realm=\"passerelle\"") << path;
  }
  HttpClient bad(gw->httpPort());
  bad.setBearer("not.a.token");
  auto r = bad.get("/fhir/Patient/pA");
  EXPECT_EQ(r.status, 401);
  EXPECT_NE(r.header("WWW-Authenticate").find("invalid_token"), std::string::npos);
  IssueOptions expired;
  expired.role = "system";
  expired.scopes = {"system/*.cruds"};
  expired.nowSeconds = 1000000000;
  HttpClient old(gw->httpPort());
  old.setBearer(gw->token(expired));
  EXPECT_EQ(old.get("/fhir/Patient/pA").status, 401);
  // A role outside the policy, or a token whose scopes do not cover the interaction.
  EXPECT_EQ(as(token("janitor", ""))->get("/fhir/Patient/pA").status, 403);
  EXPECT_EQ(as(token("connector", "", "", {"system/Patient.r"}))->get("/fhir/Observation/vasA").status, 403);
  EXPECT_EQ(as(token("connector", "", "", {"system/Patient.r"}))->get("/fhir/Patient/pA").status, 200);
}

TEST_F(AccessTest, BreakGlassShowsASummaryNotifiesAndIsAudited) {
  auto other = as(token("gp", kGp2));
  EXPECT_EQ(other->get("/fhir/Observation/vasA").status, 404);
  auto r = other->request("GET", "/fhir/Observation/vasA", "", {{"X-Break-Glass", "unconscious patient in the surgery"}});
  EXPECT_EQ(r.status, 200) << r.body;
  // The summary only: no consent form, no fee rows.
  EXPECT_NE(other->request("GET", "/fhir/Consent/consentA", "", {{"X-Break-Glass", "x"}}).status, 200);
  // Not for a withdrawn patient.
  EXPECT_NE(other->request("GET", "/fhir/Observation/vasW", "", {{"X-Break-Glass", "x"}}).status, 200);
  // The GP correspondent is notified.
  auto notes = sys->get("/fhir/Communication?subject=Patient/pA").json();
  ASSERT_TRUE(notes.contains("entry")) << notes.dump();
  std::string text = notes["entry"][0]["resource"].dump();
  EXPECT_NE(text.find("PractitionerRole/gp\""), std::string::npos) << text;
  EXPECT_NE(text.find("unconscious patient"), std::string::npos);
  // A role without emergency access is refused.
  EXPECT_EQ(as(token("caisse-agent", ""))->request("GET", "/fhir/Patient/pA", "", {{"X-Break-Glass", "x"}}).status, 403);
  // The access is in the patient's log, as a break-glass access with its reason.
  auto mine = as(token("patient", "", "pA"))->get("/fhir/AuditEvent?_count=200").json();
  bool seen = false;
  for (const auto& e : mine["entry"]) {
    std::string s = e["resource"].dump();
    if (s.find("unconscious patient") != std::string::npos) seen = true;
  }
  EXPECT_TRUE(seen) << mine.dump().substr(0, 2000);
}

TEST_F(AccessTest, PatientsReadTheirOwnAccessLogOnly) {
  auto gp = as(token("gp", kGp));
  ASSERT_EQ(gp->get("/fhir/Observation/vasA").status, 200);
  auto me = as(token("patient", "", "pA"));
  auto log = me->get("/fhir/AuditEvent?_count=500");
  ASSERT_EQ(log.status, 200) << log.body;
  bool gpRead = false;
  json entries = log.json()["entry"];
  for (const auto& e : entries) {
    std::string s = e["resource"].dump();
    EXPECT_NE(s.find("Patient/pA"), std::string::npos);
    if (s.find(kGp.substr(5)) != std::string::npos && s.find("Observation/vasA") != std::string::npos) gpRead = true;
  }
  EXPECT_TRUE(gpRead) << "the GP's read of the patient's VAS is in the patient's access log: " << log.body.substr(0, 3000);
  EXPECT_EQ(me->get("/fhir/AuditEvent?patient=Patient/pW").status, 403);
  EXPECT_EQ(gp->get("/fhir/AuditEvent").status, 403);
  EXPECT_EQ(me->send("POST", "/fhir/AuditEvent", R"({"resourceType":"AuditEvent"})").status, 405);
}

TEST_F(AccessTest, EveryRequestWritesExactlyOneAuditRecord) {
  auto last = [&]() {
    auto b = sys->get("/fhir/AuditEvent?_count=1").json();
    return std::stoll(b["entry"][0]["resource"]["id"].get<std::string>());
  };
  long long before = last();
  HttpClient anon(gw->httpPort());
  anon.setBearer("");
  auto gp = as(token("gp", kGp)), other = as(token("gp", kGp2));
  int n = 0;
  for (int i = 0; i < 20; ++i) {
    anon.get("/fhir/Patient/pA");                 // 401
    other->get("/fhir/Observation/vasA");         // hidden
    gp->get("/fhir/Observation?subject=Patient/pA");  // granted
    other->send("POST", "/fhir/Observation", R"({"resourceType":"Observation","status":"final","code":{"text":"x"},"subject":{"reference":"Patient/pA"}})");  // 403
    as(token("management-committee", ""))->get("/fhir/Patient/pA");  // 403 by type
    n += 5;
  }
  long long after = last();
  // the records of the n requests and of the first AuditEvent search (the second's is written after it answers)
  EXPECT_EQ(after - before, n + 1);

}

TEST_F(AccessTest, NetworkDocumentsAreSentByTheirAuthorsRoles) {
  std::ifstream in(std::string(PASSERELLE_SOURCE_DIR) + "/schemas/network/examples/exit.json");
  std::stringstream ss;
  ss << in.rdbuf();
  json exit = json::parse(ss.str());
  exit["recordedBy"] = {{"rpps", "10100000001"}};
  std::string doc = exit.dump();
  auto nurse = as(token("nurse", kNurse));
  auto r = nurse->request("POST", "/network/v1/exit", doc, {{"Content-Type", "application/json"}});
  EXPECT_EQ(r.status, 403) << r.body;
  auto other = as(token("gp", kGp2));
  r = other->request("POST", "/network/v1/exit", doc, {{"Content-Type", "application/json"}});
  EXPECT_EQ(r.status, 403) << r.body;
  EXPECT_NE(r.body.find("recordedBy"), std::string::npos);
  // The author gets past the gate (the network's rules then judge the document: an unknown patient here).
  r = as(token("gp", kGp))->request("POST", "/network/v1/exit", doc, {{"Content-Type", "application/json"}});
  EXPECT_NE(r.status, 403) << r.body;
  EXPECT_EQ(other->get("/network/v1/patients/pA/dossier").status, 404);
  EXPECT_EQ(as(token("caisse-agent", ""))->get("/network/v1/patients/pA/dossier").status, 403);
  EXPECT_EQ(nurse->request("POST", "/network/v1/$sweep", "").status, 403);
}

// Two gateways sharing one PostgreSQL database (store and audit trail), written to and read from
// at once: the trail is one chain, with each write's record chained once, that each gateway's own
// checkpoints verify.
TEST(SharedAuditTest, TwoGatewaysOnOnePostgreSqlDatabaseKeepOneChain) {
  std::string skip, url = PgServer::freshDatabase(skip);
  if (url.empty()) GTEST_SKIP() << skip;
  std::vector<std::unique_ptr<TestGateway>> gateways;
  for (int g = 0; g < 2; ++g)
    gateways.push_back(std::make_unique<TestGateway>(
        std::vector<std::string>{"storage.url=" + url, "audit.url=" + url, "audit.checkpoint_records=50"}));
  constexpr int kThreads = 4, kEach = 15;
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int g = 0; g < 2; ++g)
    for (int t = 0; t < kThreads; ++t)
      threads.emplace_back([&, g, t] {
        HttpClient client(gateways[g]->httpPort());
        client.setBearer(gateways[g]->systemToken());
        for (int i = 0; i < kEach; ++i) {
          std::string id = "g" + std::to_string(g) + "t" + std::to_string(t) + "i" + std::to_string(i);
          auto w = client.send("PUT", "/fhir/Patient/" + id, R"({"resourceType":"Patient","id":")" + id + R"("})");
          auto r = client.get("/fhir/Patient/" + id);
          if ((w.status != 200 && w.status != 201) || r.status != 200) ++failures;
        }
      });
  for (auto& t : threads) t.join();
  EXPECT_EQ(failures.load(), 0);
  for (auto& g : gateways) g->stop();

  std::string error;
  PgServer* server = PgServer::shared(error);
  ASSERT_NE(server, nullptr) << error;
  std::string db = url.substr(url.rfind('/') + 1);
  std::string counts = server->psql(db, "SELECT count(*) = max(seq) AND min(seq) = 1, count(*), count(origin), "
                                        "count(DISTINCT origin) FROM audit_record");
  EXPECT_EQ(counts.substr(0, 2), "t|") << counts;  // seqs 1..N, contiguous
  long long records = std::atoll(counts.substr(2).c_str());
  EXPECT_GE(records, 2 * kThreads * kEach * 2) << counts;
  // Each write's record, committed with it in the shared store, is in the chain once.
  EXPECT_NE(counts.find("|" + std::to_string(2 * kThreads * kEach) + "|" + std::to_string(2 * kThreads * kEach) + "\n"),
            std::string::npos)
      << counts;
  for (auto& g : gateways) {
    auto v = passerelle::audit::verify(url, g->dataDir() + "/audit-checkpoints", "");
    EXPECT_TRUE(v.ok) << v.problem;
    EXPECT_EQ(v.records, records);
  }
  // A gateway with a store of its own would give its outbox rows origins the others' rows have.
  if (!testStorageIsPostgresql()) {
    try {
      TestGateway alone({"audit.url=" + url});
      ADD_FAILURE() << "a PostgreSQL audit trail with a SQLite store was accepted";
    } catch (const std::runtime_error& e) {
      EXPECT_NE(std::string(e.what()).find("storage.url on PostgreSQL"), std::string::npos) << e.what();
    }
  }
}

}  // namespace
