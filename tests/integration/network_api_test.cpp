// The network API (/network/v1) end to end, through HTTP against a gateway started in-process:
// the acceptance scenarios of /work/shared/DOMAIN.md §5 that concern the network's documents,
// idempotency, refusals (schema, rules, transport) and the dossier read back from the store.
// Every test starts its own gateway with network.today fixed and sends adapted copies of the
// examples in schemas/network/examples/.
#include <gtest/gtest.h>

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <fstream>
#include <map>
#include <memory>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "tests/support/http_client.h"
#include "tests/support/test_gateway.h"

using namespace passerelle::testing;
using nlohmann::json;

namespace {

const std::string kExamples = PASSERELLE_NETWORK_EXAMPLES;
const std::string kCs = "https://douleur77.fr/fhir/CodeSystem/";
const std::string kSd = "https://douleur77.fr/fhir/StructureDefinition/";
const std::string kPatientSystem = "https://douleur77.fr/fhir/sid/patient";
const std::string kMemberSystem = "https://douleur77.fr/fhir/sid/member";
const std::string kDocumentSystem = "https://douleur77.fr/fhir/sid/network-document";
const std::string kToday = "2026-03-20";

// The members of the network the examples name.
const json kGp = {{"rpps", "10101234567"}};
const json kPhysio = {{"adeli", "771234567"}};
const json kNurse = {{"adeli", "771112223"}};
const json kCoordinator = {{"rpps", "10102223334"}};
const json kSpecialist = {{"rpps", "10107654321"}};
const json kStructure = {{"finess", "930110036"}};
const json kOperaDoctor = {{"rpps", "10105556661"}};  // trained for ETP and telephone follow-up
const json kOperaNurse = {{"rpps", "10009876543"}};   // update training only

// Every resource type the documents write, for "nothing changed" comparisons.
const char* const kTypes[] = {"Patient",  "Practitioner", "PractitionerRole", "Organization", "Coverage",
                              "Condition", "Observation", "EpisodeOfCare",    "CareTeam",     "Consent",
                              "Encounter", "QuestionnaireResponse", "MedicationStatement", "Composition",
                              "CarePlan",  "Goal",         "ChargeItem",       "Task",         "ServiceRequest",
                              "RiskAssessment", "Basic", "List"};

std::string readText(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("cannot read " + path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

json example(const std::string& kind) { return json::parse(readText(kExamples + "/" + kind + ".json")); }

// A query value, percent-encoded.
std::string enc(const std::string& s) {
  static const char* hex = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : s) {
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') {
      out += static_cast<char>(c);
    } else {
      out += '%';
      out += hex[c >> 4];
      out += hex[c & 15];
    }
  }
  return out;
}

// A NIR: 13 digits and their key (97 minus the number modulo 97).
std::string nirOf(const std::string& thirteen) {
  long long n = std::stoll(thirteen);
  char key[4];
  std::snprintf(key, sizeof key, "%02d", static_cast<int>(97 - n % 97));
  return thirteen + key;
}

// The extension `url` of a resource (nullptr when absent).
const json* extensionOf(const json& res, const std::string& url) {
  if (!res.contains("extension")) return nullptr;
  for (const auto& e : res["extension"])
    if (e.value("url", "") == url) return &e;
  return nullptr;
}

std::vector<const json*> extensionsOf(const json& res, const std::string& url) {
  std::vector<const json*> out;
  if (res.contains("extension"))
    for (const auto& e : res["extension"])
      if (e.value("url", "") == url) out.push_back(&e);
  return out;
}

// The first code of a CodeableConcept (or "" when it has none).
std::string codeOf(const json& cc) {
  if (!cc.is_object() || !cc.contains("coding") || cc["coding"].empty()) return "";
  return cc["coding"][0].value("code", "");
}

// The reason codes (details.coding[0].code) of an OperationOutcome's issues.
std::vector<std::string> reasonsOf(const json& outcome) {
  std::vector<std::string> out;
  if (!outcome.is_object() || !outcome.contains("issue")) return out;
  for (const auto& i : outcome["issue"])
    if (i.contains("details") && i["details"].contains("coding") && !i["details"]["coding"].empty())
      out.push_back(i["details"]["coding"][0].value("code", ""));
  return out;
}

// The rule warnings of a transaction-response (outcomes of its entries).
std::vector<std::string> warningsOf(const json& response) {
  std::vector<std::string> out;
  for (const auto& e : response.value("entry", json::array()))
    if (e.contains("response") && e["response"].contains("outcome"))
      for (const auto& code : reasonsOf(e["response"]["outcome"])) out.push_back(code);
  return out;
}

bool has(const std::vector<std::string>& list, const std::string& value) {
  return std::find(list.begin(), list.end(), value) != list.end();
}

using Params = std::vector<std::pair<std::string, std::string>>;

class NetworkApiTest : public ::testing::Test {
 protected:
  // Starts this test's gateway with network.today fixed (and further settings).
  void start(const std::string& today = kToday, std::vector<std::string> sets = {}) {
    sets.push_back("network.today=" + today);
    gw_ = std::make_unique<TestGateway>(sets);
    client_ = std::make_unique<HttpClient>(gw_->httpPort());
  }
  HttpClient& http() { return *client_; }

  // ---- documents ----
  std::string newId(const std::string& kind) { return "T-" + kind + "-" + std::to_string(++ids_); }

  // A copy of the example of `kind` with a documentId of its own.
  json doc(const std::string& kind) {
    json d = example(kind);
    d["documentId"] = newId(kind);
    return d;
  }

  HttpResult post(const json& d, const std::string& contentType = "application/json") {
    return http().request("POST", "/network/v1/" + d.value("documentType", std::string("none")), d.dump(),
                          {{"Content-Type", contentType}});
  }

  HttpResult postText(const std::string& kind, const std::string& body, const std::string& contentType) {
    return http().request("POST", "/network/v1/" + kind, body, {{"Content-Type", contentType}});
  }

  static std::string describe(const json& d) {
    return d.value("documentType", std::string("?")) + " " + d.value("documentId", std::string("?"));
  }

  // The document is accepted: 200 with a transaction-response (kept in `out`).
  ::testing::AssertionResult accepted(const json& d, json* out = nullptr) { return isTransactionResponse(describe(d), post(d), out); }

  static ::testing::AssertionResult isTransactionResponse(const std::string& what, const HttpResult& r, json* out = nullptr) {
    if (r.status != 200) return ::testing::AssertionFailure() << what << ": HTTP " << r.status << " " << r.body;
    json b = json::parse(r.body, nullptr, false);
    if (!b.is_object() || b.value("resourceType", "") != "Bundle" || b.value("type", "") != "transaction-response")
      return ::testing::AssertionFailure() << what << ": not a transaction-response: " << r.body;
    if (out) *out = b;
    return ::testing::AssertionSuccess();
  }

  // The document is refused with 422 and an issue of reason `reason` at `path` ("" = any path).
  ::testing::AssertionResult refused(const json& d, const std::string& reason, const std::string& path = "") {
    HttpResult r = post(d);
    if (r.status != 422) return ::testing::AssertionFailure() << describe(d) << ": HTTP " << r.status << " " << r.body;
    json o = json::parse(r.body, nullptr, false);
    if (!o.is_object() || o.value("resourceType", "") != "OperationOutcome")
      return ::testing::AssertionFailure() << describe(d) << ": not an OperationOutcome: " << r.body;
    for (const auto& i : o["issue"]) {
      if (!i.contains("details") || i["details"]["coding"].empty()) continue;
      if (i["details"]["coding"][0].value("code", "") != reason) continue;
      if (path.empty()) return ::testing::AssertionSuccess();
      if (i.contains("expression") && !i["expression"].empty() && i["expression"][0] == path)
        return ::testing::AssertionSuccess();
    }
    return ::testing::AssertionFailure() << describe(d) << ": no issue " << reason << " at '" << path << "': " << r.body;
  }

  // ---- the FHIR side ----
  std::string query(const std::string& type, const Params& params) {
    std::string q = "/fhir/" + type;
    char sep = '?';
    for (const auto& [k, v] : params) {
      q += sep + enc(k) + "=" + enc(v);
      sep = '&';
    }
    return q;
  }

  std::vector<json> search(const std::string& type, Params params = {}) {
    params.emplace_back("_count", "500");
    auto r = http().get(query(type, params));
    EXPECT_EQ(r.status, 200) << type << " " << r.body;
    std::vector<json> out;
    json b = json::parse(r.body, nullptr, false);
    if (b.is_object() && b.contains("entry"))
      for (const auto& e : b["entry"]) out.push_back(e["resource"]);
    return out;
  }

  int total(const std::string& type, Params params = {}) {
    params.emplace_back("_summary", "count");
    auto r = http().get(query(type, params));
    EXPECT_EQ(r.status, 200) << type << " " << r.body;
    json b = json::parse(r.body, nullptr, false);
    return b.is_object() ? b.value("total", -1) : -1;
  }

  std::map<std::string, int> totals() {
    std::map<std::string, int> out;
    for (const char* t : kTypes) out[t] = total(t);
    return out;
  }

  json read(const std::string& reference) {
    auto r = http().get("/fhir/" + reference);
    EXPECT_EQ(r.status, 200) << reference << " " << r.body;
    return json::parse(r.body, nullptr, false);
  }

  std::string patientId(const std::string& networkId) {
    auto patients = search("Patient", {{"identifier", kPatientSystem + "|" + networkId}});
    EXPECT_EQ(patients.size(), 1u) << networkId;
    return patients.empty() ? "" : patients[0].value("id", "");
  }

  json dossier(const std::string& id) {
    auto r = http().get("/network/v1/patients/" + id + "/dossier");
    EXPECT_EQ(r.status, 200) << r.body;
    return json::parse(r.body, nullptr, false);
  }

  HttpResult sweep(const std::string& date) { return http().request("POST", "/network/v1/$sweep?date=" + date); }

  // ---- the network's members, the patient ----
  json professional(const json& ref, const std::string& family, const std::string& given, const std::string& category,
                    int level, const json& extra = json::object()) {
    json d = doc("professional");
    json p = ref;
    p["family"] = family;
    p["given"] = json::array({given});
    p["category"] = category;
    p["level"] = level;
    for (const auto& [k, v] : extra.items()) p[k] = v;
    d["professional"] = p;
    d.erase("trainings");
    return d;
  }

  // The structure and the professionals of the Douleur 77 examples.
  void registerNetwork() {
    ASSERT_TRUE(accepted(doc("structure")));
    ASSERT_TRUE(accepted(doc("professional")));  // the GP correspondent
    ASSERT_TRUE(accepted(professional(kPhysio, "LEROY", "Marc", "physiotherapist", 1)));
    ASSERT_TRUE(accepted(professional(kNurse, "PETIT", "Claire", "nurse", 1)));
    ASSERT_TRUE(accepted(professional(kCoordinator, "BERNARD", "Luc", "coordinator", 2)));
    ASSERT_TRUE(accepted(professional(kSpecialist, "MOREAU", "Anne", "specialist", 3,
                                      {{"specialty", "SM33"}, {"structure", kStructure}})));
  }

  // The OPERA professionals of the examples (Nord-Pas-de-Calais).
  void registerOpera() {
    json doctor = professional(kOperaDoctor, "DUBOIS", "Paul", "opera-professional", 1, {{"region", "nord-pas-de-calais"}});
    doctor["trainings"] = json::array({{{"kind", "update"}, {"date", "2025-11-03"}, {"days", 1}},
                                       {{"kind", "etp"}, {"date", "2025-11-17"}, {"days", 5}},
                                       {{"kind", "telephone-follow-up"}, {"date", "2025-12-01"}, {"days", 1}}});
    ASSERT_TRUE(accepted(doctor));
    json nurse = professional(kOperaNurse, "LEFEBVRE", "Julie", "opera-professional", 1, {{"region", "nord-pas-de-calais"}});
    nurse["trainings"] = json::array({{{"kind", "update"}, {"date", "2025-11-03"}, {"days", 1}}});
    ASSERT_TRUE(accepted(nurse));
  }

  // An inclusion of the example patient with another identity.
  json inclusion(const std::string& nir, const std::string& networkId) {
    json d = doc("inclusion");
    d["patient"]["nir"] = nir;
    d["patient"]["networkId"] = networkId;
    d["coverage"]["memberId"] = nir;
    return d;
  }

  json consent(const std::string& networkId) {
    json d = doc("consent");
    d["patient"] = {{"networkId", networkId}};
    return d;
  }

  // Includes the patient and has the consent signed.
  void include(const json& inclusionDoc) {
    ASSERT_TRUE(accepted(inclusionDoc));
    ASSERT_TRUE(accepted(consent(inclusionDoc["patient"]["networkId"].get<std::string>())));
  }

  json cied(double vas) {
    json d = doc("cied");
    d["measures"]["vas"]["value"] = vas;
    d["measures"]["vas"]["rawMm"] = static_cast<int>(vas * 10 + 0.5);
    return d;
  }

  json csb(double vas, int semester, const std::string& date) {
    json d = doc("csb");
    d["measures"]["vas"]["value"] = vas;
    d["measures"]["vas"]["rawMm"] = static_cast<int>(vas * 10 + 0.5);
    d["semester"] = semester;
    d["date"] = date;
    return d;
  }

  json operaEnrolment(const std::string& nir, const std::string& networkId) {
    json d = doc("opera-enrolment");
    d["patient"]["nir"] = nir;
    d["patient"]["networkId"] = networkId;
    return d;
  }

  std::unique_ptr<TestGateway> gw_;
  std::unique_ptr<HttpClient> client_;
  int ids_ = 0;
};

// ---------------------------------------------------------------------------------------------
// Scenarios 1 to 3: refused inclusions, counted with their reasons.

// The Basic records of refused admissions, with their refusal-reason codes.
std::vector<std::string> refusalReasons(const std::vector<json>& basics) {
  std::vector<std::string> out;
  for (const auto& b : basics)
    for (const json* e : extensionsOf(b, kSd + "refusal-reason")) out.push_back((*e).value("valueCode", ""));
  return out;
}

TEST_F(NetworkApiTest, InclusionOfA67YearOldIsRefusedForAgeAndCountedAmongRefusals) {
  start();
  ASSERT_NO_FATAL_FAILURE(registerNetwork());
  json d = doc("inclusion");
  d["patient"]["birthDate"] = "1958-06-01";  // 67 on the inclusion date, 2026-03-02
  auto before = totals();
  ASSERT_TRUE(refused(d, "age", "patient.birthDate"));
  EXPECT_EQ(total("Patient"), 0);
  EXPECT_EQ(total("EpisodeOfCare"), 0);
  EXPECT_EQ(total("List"), before["List"]);

  auto basics = search("Basic", {{"code", kCs + "network-event|admission-refusal"}});
  ASSERT_EQ(basics.size(), 1u);
  EXPECT_EQ(refusalReasons(basics), std::vector<std::string>{"age"});
  EXPECT_EQ(basics[0].value("created", ""), "2026-03-02");
  EXPECT_EQ(basics[0]["author"].value("reference", "").rfind("PractitionerRole/", 0), 0u) << basics[0].dump();
  // The refusal is counted without the candidate's identity.
  EXPECT_EQ(basics[0].dump().find("185057512345673"), std::string::npos);
  EXPECT_EQ(basics[0].dump().find("DURAND"), std::string::npos);
}

TEST_F(NetworkApiTest, InclusionOfAnMsaPatientIsRefusedAsSchemeNotAdhering) {
  start();
  ASSERT_NO_FATAL_FAILURE(registerNetwork());
  json d = doc("inclusion");
  d["coverage"]["scheme"] = "msa";
  d["coverage"]["caisse"] = "MSA Île-de-France";
  ASSERT_TRUE(refused(d, "scheme-not-adhering", "coverage.scheme"));
  EXPECT_EQ(total("Patient"), 0);
  EXPECT_EQ(refusalReasons(search("Basic", {{"code", kCs + "network-event|admission-refusal"}})),
            std::vector<std::string>{"scheme-not-adhering"});
}

TEST_F(NetworkApiTest, GpWhoseMembershipIsWithdrawnCannotIncludeAndTheRefusalIsRecorded) {
  start();
  ASSERT_NO_FATAL_FAILURE(registerNetwork());
  json withdrawal = doc("professional");
  withdrawal["membership"] = {{"signatureDate", "2025-09-15"}, {"status", "withdrawn"}, {"endDate", "2026-03-01"}};
  ASSERT_TRUE(accepted(withdrawal));
  auto roles = search("PractitionerRole", {{"identifier", kMemberSystem + "|rpps:10101234567"}});
  ASSERT_EQ(roles.size(), 1u);
  ASSERT_NE(extensionOf(roles[0], kSd + "membership-status"), nullptr) << roles[0].dump();
  EXPECT_EQ((*extensionOf(roles[0], kSd + "membership-status"))["valueCode"], "withdrawn");

  ASSERT_TRUE(refused(doc("inclusion"), "gp-not-member", "gp"));
  EXPECT_EQ(total("Patient"), 0);
  EXPECT_EQ(total("EpisodeOfCare"), 0);
  auto basics = search("Basic", {{"code", kCs + "network-event|admission-refusal"}});
  EXPECT_EQ(refusalReasons(basics), std::vector<std::string>{"gp-not-member"});
}

// ---------------------------------------------------------------------------------------------
// Scenario 6: the goal at the first review consultation.

TEST_F(NetworkApiTest, GoalIsAchievedWhenTheFirstReviewHalvesThePain) {
  start();
  ASSERT_NO_FATAL_FAILURE(registerNetwork());
  ASSERT_NO_FATAL_FAILURE(include(doc("inclusion")));
  std::string pid = patientId("P77-000001");
  ASSERT_TRUE(accepted(cied(8.0)));
  auto goals = search("Goal", {{"subject", "Patient/" + pid}});
  ASSERT_EQ(goals.size(), 1u);
  EXPECT_EQ(codeOf(goals[0]["achievementStatus"]), "in-progress");
  EXPECT_EQ(goals[0]["target"][0]["detailQuantity"]["value"], 4.0);

  ASSERT_TRUE(accepted(csb(3.5, 1, "2026-09-01")));
  goals = search("Goal", {{"subject", "Patient/" + pid}});
  ASSERT_EQ(goals.size(), 1u);
  EXPECT_EQ(codeOf(goals[0]["achievementStatus"]), "achieved") << goals[0].dump();
  EXPECT_EQ(goals[0].value("lifecycleStatus", ""), "completed");
  EXPECT_EQ(total("Task", {{"code", kCs + "network-event|referral-prompt"}}), 0);
}

TEST_F(NetworkApiTest, GoalIsNotAchievedWithoutHalfThePainAndTheGpIsPromptedToRefer) {
  start();
  ASSERT_NO_FATAL_FAILURE(registerNetwork());
  ASSERT_NO_FATAL_FAILURE(include(doc("inclusion")));
  std::string pid = patientId("P77-000001");
  ASSERT_TRUE(accepted(cied(8.0)));
  ASSERT_TRUE(accepted(csb(6.0, 1, "2026-09-01")));
  auto goals = search("Goal", {{"subject", "Patient/" + pid}});
  ASSERT_EQ(goals.size(), 1u);
  EXPECT_EQ(codeOf(goals[0]["achievementStatus"]), "not-achieved") << goals[0].dump();
  auto tasks = search("Task", {{"code", kCs + "network-event|referral-prompt"}});
  ASSERT_EQ(tasks.size(), 1u);
  EXPECT_EQ(tasks[0]["for"]["reference"], "Patient/" + pid);
  EXPECT_EQ(tasks[0]["focus"]["reference"], "Goal/" + goals[0].value("id", ""));
  EXPECT_EQ(tasks[0]["owner"].value("reference", "").rfind("PractitionerRole/", 0), 0u) << tasks[0].dump();
}

// ---------------------------------------------------------------------------------------------
// Scenario 7: a nurse's liaison sheet for a cancer patient.

json liaisonEnd(json d, const std::string& date) {
  d["phase"] = "end";
  d.erase("start");
  d["end"] = {{"date", date}, {"sessionsDone", 10}, {"vas", 4},
              {"outcome", "Douleur mieux contrôlée, autonomie pour les soins."}, {"callBackGp", false}};
  return d;
}

TEST_F(NetworkApiTest, NurseLiaisonSheetHasBothPhasesAndOneNurseFeeAccruesForTheYear) {
  start();
  ASSERT_NO_FATAL_FAILURE(registerNetwork());
  json inc = doc("inclusion");
  inc["pathology"] = "cancer";
  inc["diagnosisCode"] = "G89.3";
  ASSERT_NO_FATAL_FAILURE(include(inc));
  std::string pid = patientId("P77-000001");

  json opening = doc("liaison-sheet");
  opening["sheetId"] = "FDL-IDE-2026-0001";
  opening["author"] = kNurse;
  ASSERT_TRUE(accepted(opening));
  json early = liaisonEnd(opening, "2026-03-10");  // before the start (2026-03-16)
  early["documentId"] = newId("liaison-sheet");
  ASSERT_TRUE(refused(early, "end-before-start", "end.date"));
  json end = liaisonEnd(opening, "2026-05-29");
  end["documentId"] = newId("liaison-sheet");
  ASSERT_TRUE(accepted(end));
  json endAgain = liaisonEnd(opening, "2026-06-02");
  endAgain["documentId"] = newId("liaison-sheet");
  ASSERT_TRUE(refused(endAgain, "liaison-ended", "sheetId"));

  auto sheets = search("Composition", {{"identifier", "https://douleur77.fr/fhir/sid/liaison-sheet|FDL-IDE-2026-0001"}});
  ASSERT_EQ(sheets.size(), 1u);
  const json& sheet = sheets[0];
  EXPECT_EQ(codeOf(sheet["type"]), "FICHE-LIAISON-IDE");
  EXPECT_EQ(sheet.value("status", ""), "final");
  std::set<std::string> phases;
  for (const auto& s : sheet.value("section", json::array())) phases.insert(codeOf(s["code"]));
  EXPECT_EQ(phases, (std::set<std::string>{"start", "end"})) << sheet.dump();

  auto fees = search("ChargeItem", {{"code", kCs + "d77-fee|LIAISON-IDE"}});
  ASSERT_EQ(fees.size(), 1u);
  EXPECT_DOUBLE_EQ(fees[0]["priceOverride"]["value"].get<double>(), 22.87);
  EXPECT_EQ(fees[0]["priceOverride"]["currency"], "EUR");
  EXPECT_EQ(fees[0]["subject"]["reference"], "Patient/" + pid);

  // A second sheet by the same nurse in the same year: no second fee.
  json again = doc("liaison-sheet");
  again["sheetId"] = "FDL-IDE-2026-0002";
  again["author"] = kNurse;
  again["start"]["date"] = "2026-09-07";
  ASSERT_TRUE(accepted(again));
  json againEnd = liaisonEnd(again, "2026-11-30");
  againEnd["documentId"] = newId("liaison-sheet");
  ASSERT_TRUE(accepted(againEnd));
  EXPECT_EQ(total("ChargeItem", {{"code", kCs + "d77-fee|LIAISON-IDE"}}), 1);

  // A physiotherapist keeps liaison sheets for low-back pain only.
  json physio = doc("liaison-sheet");
  physio["sheetId"] = "FDL-MK-2026-0009";
  ASSERT_TRUE(refused(physio, "liaison-pathology", "author"));
  EXPECT_EQ(total("ChargeItem", {{"code", kCs + "d77-fee|LIAISON-MK"}}), 0);
  EXPECT_EQ(total("Composition", {{"identifier", "https://douleur77.fr/fhir/sid/liaison-sheet|FDL-MK-2026-0009"}}), 0);
}

// ---------------------------------------------------------------------------------------------
// Scenario 8: the review consultation fee cap by experiment year.

TEST_F(NetworkApiTest, InExperimentYearOneASecondReviewAccruesNoFee) {
  start(kToday, {"network.agreement_date=2026-03-01"});  // year 1: 2026-03-01 to 2027-02-28
  ASSERT_NO_FATAL_FAILURE(registerNetwork());
  ASSERT_NO_FATAL_FAILURE(include(doc("inclusion")));
  ASSERT_TRUE(accepted(cied(7.5)));
  json first;
  ASSERT_TRUE(accepted(csb(5.5, 1, "2026-09-01"), &first));
  EXPECT_FALSE(has(warningsOf(first), "csb-fee-cap"));
  auto fees = search("ChargeItem", {{"code", kCs + "d77-fee|CSB-1.5C"}});
  ASSERT_EQ(fees.size(), 1u);
  EXPECT_DOUBLE_EQ(fees[0]["priceOverride"]["value"].get<double>(), 34.5);  // 1.5 C at 23 EUR

  json second;
  ASSERT_TRUE(accepted(csb(5.0, 2, "2027-02-10"), &second));
  EXPECT_TRUE(has(warningsOf(second), "csb-fee-cap")) << second.dump();
  EXPECT_EQ(total("ChargeItem", {{"code", kCs + "d77-fee|CSB-1.5C"}}), 1);
  EXPECT_EQ(total("Encounter", {{"type", kCs + "d77-enc|CSB"}}), 2);
}

TEST_F(NetworkApiTest, InExperimentYearTwoTwoReviewsAccrueFees) {
  start(kToday, {"network.agreement_date=2025-04-01"});  // year 2: 2026-04-01 to 2027-03-31
  ASSERT_NO_FATAL_FAILURE(registerNetwork());
  ASSERT_NO_FATAL_FAILURE(include(doc("inclusion")));
  ASSERT_TRUE(accepted(cied(7.5)));
  json first, second;
  ASSERT_TRUE(accepted(csb(5.5, 1, "2026-09-01"), &first));
  ASSERT_TRUE(accepted(csb(5.0, 2, "2027-02-10"), &second));
  EXPECT_FALSE(has(warningsOf(second), "csb-fee-cap")) << second.dump();
  EXPECT_EQ(total("ChargeItem", {{"code", kCs + "d77-fee|CSB-1.5C"}}), 2);
}

// ---------------------------------------------------------------------------------------------
// Scenario 9: the patient withdraws.

TEST_F(NetworkApiTest, WithdrawalEndsConsentAndEnrolmentAndFurtherReportsAreRefused) {
  start();
  ASSERT_NO_FATAL_FAILURE(registerNetwork());
  ASSERT_NO_FATAL_FAILURE(include(doc("inclusion")));
  std::string pid = patientId("P77-000001");
  ASSERT_TRUE(accepted(cied(7.5)));

  json w = doc("consent-withdrawal");
  w["withdrawalDate"] = "2026-06-14";
  ASSERT_TRUE(accepted(w));

  auto consents = search("Consent", {{"patient", "Patient/" + pid}});
  ASSERT_EQ(consents.size(), 2u);  // network participation and sharing
  for (const auto& c : consents) {
    EXPECT_EQ(c.value("status", ""), "inactive") << c.dump();
    EXPECT_EQ(c["provision"]["period"].value("end", ""), "2026-06-14");
    ASSERT_NE(extensionOf(c, kSd + "consent-state"), nullptr) << c.dump();
    EXPECT_EQ((*extensionOf(c, kSd + "consent-state"))["valueCode"], "withdrawn");
  }
  auto episodes = search("EpisodeOfCare", {{"patient", "Patient/" + pid}});
  ASSERT_EQ(episodes.size(), 1u);
  EXPECT_EQ(episodes[0].value("status", ""), "finished");
  EXPECT_EQ(episodes[0]["period"].value("end", ""), "2026-06-14");
  ASSERT_NE(extensionOf(episodes[0], kSd + "exit-reason"), nullptr) << episodes[0].dump();
  EXPECT_EQ((*extensionOf(episodes[0], kSd + "exit-reason"))["valueCode"], "patient-withdrawal");

  ASSERT_TRUE(refused(csb(5.5, 1, "2026-09-01"), "consent-not-active", "patient"));
  EXPECT_EQ(total("Encounter", {{"type", kCs + "d77-enc|CSB"}}), 0);
  json status = dossier("P77-000001")["status"];
  EXPECT_EQ(status["enrolment"], "withdrawn");
  EXPECT_EQ(status["consent"], "withdrawn");
  EXPECT_EQ(status["exitReason"], "patient-withdrawal");
}

// ---------------------------------------------------------------------------------------------
// Scenario 10: consent term and renewals.

TEST_F(NetworkApiTest, ConsentNeverRenewedExpiresAfterTwelveMonthsAndTheGpGetsARenewalTask) {
  start();
  ASSERT_NO_FATAL_FAILURE(registerNetwork());
  ASSERT_NO_FATAL_FAILURE(include(doc("inclusion")));  // signed 2026-03-02: until 2027-03-02
  std::string pid = patientId("P77-000001");

  auto onLastDay = sweep("2027-03-02");
  ASSERT_EQ(onLastDay.status, 200) << onLastDay.body;
  EXPECT_EQ(onLastDay.json()["expiredConsents"], 0);
  EXPECT_EQ(dossier("P77-000001")["status"]["consent"], "active");

  auto dayAfter = sweep("2027-03-03");  // 12 months and 1 day after the signature
  ASSERT_EQ(dayAfter.status, 200) << dayAfter.body;
  EXPECT_GE(dayAfter.json()["expiredConsents"].get<int>(), 1);
  auto consents = search("Consent", {{"patient", "Patient/" + pid}});
  ASSERT_FALSE(consents.empty());
  for (const auto& c : consents) {
    EXPECT_EQ(c.value("status", ""), "inactive") << c.dump();
    ASSERT_NE(extensionOf(c, kSd + "consent-state"), nullptr) << c.dump();
    EXPECT_EQ((*extensionOf(c, kSd + "consent-state"))["valueCode"], "expired");
  }
  auto tasks = search("Task", {{"code", kCs + "network-event|consent-renewal-due"}});
  ASSERT_EQ(tasks.size(), 1u);
  EXPECT_EQ(tasks[0]["for"]["reference"], "Patient/" + pid);
  EXPECT_EQ(tasks[0]["owner"].value("reference", "").rfind("PractitionerRole/", 0), 0u) << tasks[0].dump();
  auto gp = search("PractitionerRole", {{"identifier", kMemberSystem + "|rpps:10101234567"}});
  ASSERT_EQ(gp.size(), 1u);
  EXPECT_EQ(tasks[0]["owner"]["reference"], "PractitionerRole/" + gp[0].value("id", ""));
  EXPECT_EQ(dossier("P77-000001")["status"]["consent"], "expired");

  // The next day's sweep changes nothing.
  auto again = sweep("2027-03-04");
  ASSERT_EQ(again.status, 200) << again.body;
  EXPECT_EQ(again.json()["expiredConsents"], 0);
  EXPECT_EQ(total("Task", {{"code", kCs + "network-event|consent-renewal-due"}}), 1);
  // A report needs an active consent.
  ASSERT_TRUE(refused(cied(7.5), "consent-not-active", "patient"));
}

TEST_F(NetworkApiTest, ConsentIsRenewedTwiceAndTheThirdRenewalIsRefused) {
  start();
  ASSERT_NO_FATAL_FAILURE(registerNetwork());
  ASSERT_NO_FATAL_FAILURE(include(doc("inclusion")));
  const char* dates[] = {"2027-02-22", "2028-02-21", "2029-02-19"};
  json renewal = doc("consent-renewal");
  renewal["renewalDate"] = dates[0];
  ASSERT_TRUE(accepted(renewal));
  renewal = doc("consent-renewal");
  renewal["renewalDate"] = dates[1];
  ASSERT_TRUE(accepted(renewal));
  json status = dossier("P77-000001")["status"];
  EXPECT_EQ(status["consentRenewals"], 2);
  EXPECT_EQ(status["consentEnd"], "2029-01-01");  // three years would be 2029-03-02: the agreement (2026-01-01, 3 years) ends first
  EXPECT_EQ(status["consent"], "active");

  renewal = doc("consent-renewal");
  renewal["renewalDate"] = dates[2];
  ASSERT_TRUE(refused(renewal, "consent-renewals", "renewalDate"));
  status = dossier("P77-000001")["status"];
  EXPECT_EQ(status["consentRenewals"], 2);
  EXPECT_EQ(status["consentEnd"], "2029-01-01");
}

TEST_F(NetworkApiTest, ConsentNeverRunsPastTheAgreementsEnd) {
  start(kToday, {"network.agreement_date=2024-06-01"});  // three years: ends 2027-06-01
  ASSERT_NO_FATAL_FAILURE(registerNetwork());
  ASSERT_TRUE(accepted(doc("inclusion")));
  json signed_ = consent("P77-000001");  // signed 2026-03-02: a year would end 2027-03-02, inside the agreement
  ASSERT_TRUE(accepted(signed_));
  EXPECT_EQ(dossier("P77-000001")["status"]["consentEnd"], "2027-03-02");
  json renewal = doc("consent-renewal");
  renewal["renewalDate"] = "2027-02-22";
  json out;
  ASSERT_TRUE(accepted(renewal, &out));
  EXPECT_EQ(dossier("P77-000001")["status"]["consentEnd"], "2027-06-01");
  EXPECT_NE(out.dump().find("consent-capped-at-agreement-end"), std::string::npos) << out.dump();
  auto consents = search("Consent", {{"patient.identifier", "https://douleur77.fr/fhir/sid/patient|P77-000001"}});
  EXPECT_EQ(consents.size(), 2u);  // network participation and sharing
  for (const auto& c : consents) EXPECT_EQ(c["provision"]["period"]["end"], "2027-06-01");
}

TEST_F(NetworkApiTest, SweepMarksAReferralPastItsDueDateOverdue) {
  start();
  ASSERT_NO_FATAL_FAILURE(registerNetwork());
  ASSERT_NO_FATAL_FAILURE(include(doc("inclusion")));
  ASSERT_TRUE(accepted(doc("referral")));  // 2026-09-03, to the reference centre (agreed delay: 21 days)
  const Params byId = {{"identifier", "https://douleur77.fr/fhir/sid/referral-task|ORI-2026-0001"}};
  auto tasks = search("Task", byId);
  ASSERT_EQ(tasks.size(), 1u);
  EXPECT_EQ(tasks[0]["restriction"]["period"].value("end", ""), "2026-09-24");

  auto onDueDate = sweep("2026-09-24");
  ASSERT_EQ(onDueDate.status, 200) << onDueDate.body;
  EXPECT_EQ(onDueDate.json()["overdueReferrals"], 0);
  auto dayAfter = sweep("2026-09-25");
  ASSERT_EQ(dayAfter.status, 200) << dayAfter.body;
  EXPECT_EQ(dayAfter.json()["overdueReferrals"], 1);
  tasks = search("Task", byId);
  ASSERT_EQ(tasks.size(), 1u);
  EXPECT_EQ(codeOf(tasks[0]["businessStatus"]), "overdue") << tasks[0].dump();
  auto again = sweep("2026-09-26");
  ASSERT_EQ(again.status, 200) << again.body;
  EXPECT_EQ(again.json()["overdueReferrals"], 0);
}

// ---------------------------------------------------------------------------------------------
// Scenario 11: exclusion by the board after the medical committee's opinion.

TEST_F(NetworkApiTest, ExclusionFinishesTheEnrolmentAndKeepsTheDecisionAndOpinionReferences) {
  start();
  ASSERT_NO_FATAL_FAILURE(registerNetwork());
  ASSERT_NO_FATAL_FAILURE(include(doc("inclusion")));
  std::string pid = patientId("P77-000001");
  json exitDoc = doc("exit");
  exitDoc["date"] = "2026-07-01";
  exitDoc["reason"] = "exclusion";
  exitDoc["exclusion"] = {{"decidingBody", "board"}, {"decisionRef", "CA-2026-07-01/04"}, {"committeeOpinionRef", "CM-2026-06-18/02"}};
  exitDoc["note"] = "Exclusion prononcée par le conseil d'administration après avis du comité médical.";
  ASSERT_TRUE(accepted(exitDoc));

  auto episodes = search("EpisodeOfCare", {{"patient", "Patient/" + pid}});
  ASSERT_EQ(episodes.size(), 1u);
  EXPECT_EQ(episodes[0].value("status", ""), "finished");
  ASSERT_NE(extensionOf(episodes[0], kSd + "exit-reason"), nullptr) << episodes[0].dump();
  EXPECT_EQ((*extensionOf(episodes[0], kSd + "exit-reason"))["valueCode"], "exclusion");

  auto exits = search("Task", {{"code", kCs + "network-event|network-exit"}});
  ASSERT_EQ(exits.size(), 1u);  // counted among the exits
  const json& task = exits[0];
  EXPECT_EQ(codeOf(task["reasonCode"]), "exclusion");
  EXPECT_EQ(task["focus"]["reference"], "EpisodeOfCare/" + episodes[0].value("id", ""));
  std::set<std::string> inputs;
  for (const auto& i : task.value("input", json::array()))
    for (const char* k : {"valueString", "valueCode"})
      if (i.contains(k)) inputs.insert(i[k].get<std::string>());
  EXPECT_TRUE(inputs.count("CA-2026-07-01/04")) << task.dump();
  EXPECT_TRUE(inputs.count("CM-2026-06-18/02")) << task.dump();
  EXPECT_TRUE(inputs.count("board")) << task.dump();

  json status = dossier("P77-000001")["status"];
  EXPECT_EQ(status["enrolment"], "excluded");
  EXPECT_EQ(status["exitReason"], "exclusion");
  EXPECT_NE(status["consent"], "active");
}

// ---------------------------------------------------------------------------------------------
// Scenario 16: evaluable patients (pain for more than 3 months and less than a year at inclusion).

TEST_F(NetworkApiTest, PainForFourteenMonthsAtInclusionMakesThePatientNotEvaluable) {
  start();
  ASSERT_NO_FATAL_FAILURE(registerNetwork());
  json longPain = inclusion(nirOf("1850575123457"), "P77-000014");
  longPain["painOnsetDate"] = "2025-01-02";  // 14 months before 2026-03-02
  ASSERT_TRUE(accepted(longPain));
  json recent = inclusion(nirOf("1850575123458"), "P77-000008");
  recent["painOnsetDate"] = "2025-07-02";  // 8 months
  ASSERT_TRUE(accepted(recent));

  json status = dossier("P77-000014")["status"];
  EXPECT_EQ(status["enrolment"], "active");
  EXPECT_EQ(status["evaluable"], false) << status.dump();
  status = dossier("P77-000008")["status"];
  EXPECT_EQ(status["evaluable"], true) << status.dump();
}

// ---------------------------------------------------------------------------------------------
// Scenarios 22 to 24: OPERA.

TEST_F(NetworkApiTest, OperaHighRiskCopdEnrolmentPlansInformationEtpTelephoneAndTheEvaluations) {
  start();
  ASSERT_NO_FATAL_FAILURE(registerOpera());
  ASSERT_TRUE(accepted(doc("opera-enrolment")));
  std::string pid = patientId("OP-000001");
  auto episodes = search("EpisodeOfCare", {{"patient", "Patient/" + pid}, {"type", kCs + "d77-programme|OPERA"}});
  ASSERT_EQ(episodes.size(), 1u);
  EXPECT_EQ(episodes[0].value("status", ""), "active");
  auto risks = search("RiskAssessment", {{"subject", "Patient/" + pid}});
  ASSERT_EQ(risks.size(), 1u);
  EXPECT_EQ(codeOf(risks[0]["prediction"][0]["qualitativeRisk"]), "high");

  auto plans = search("CarePlan", {{"subject", "Patient/" + pid}});
  ASSERT_EQ(plans.size(), 1u);
  const json& plan = plans[0];
  EXPECT_EQ(plan.value("instantiatesCanonical", json::array()),
            json::array({"https://douleur77.fr/fhir/PlanDefinition/OPERA-copd-high"}))
      << plan.dump();
  std::set<std::string> activities;
  std::map<std::string, std::string> evaluations;  // milestone -> scheduled
  for (const auto& a : plan.value("activity", json::array())) {
    std::string code = codeOf(a["detail"]["code"]);
    if (code != "evaluation") {
      activities.insert(code);
      continue;
    }
    std::string when = a["detail"].value("scheduledString", "");
    evaluations[when.substr(0, when.find(' '))] = when;
  }
  EXPECT_EQ(activities, (std::set<std::string>{"information", "etp", "telephone"})) << plan.dump();
  EXPECT_EQ(evaluations, (std::map<std::string, std::string>{{"M6", "M6 2026-07-12"},
                                                             {"M12", "M12 2027-01-12"},
                                                             {"M24", "M24 2028-01-12"},
                                                             {"M36", "M36 2029-01-12"}}))
      << plan.dump();
}

TEST_F(NetworkApiTest, CollectiveEtpSessionGivesEachPatientsFileAnEncounterAndANewVersion) {
  start();
  ASSERT_NO_FATAL_FAILURE(registerOpera());
  json session = doc("opera-activity");
  session["activity"] = "etp-collective";
  session["professional"] = kOperaDoctor;
  session["durationMinutes"] = 120;
  session["note"] = "Séance collective : reconnaître une exacerbation, techniques d'inhalation.";
  session["patients"] = json::array();
  std::vector<std::string> networkIds;
  for (int i = 1; i <= 8; ++i) {
    char networkId[16], thirteen[16];
    std::snprintf(networkId, sizeof networkId, "OP-%06d", 100 + i);
    std::snprintf(thirteen, sizeof thirteen, "25203593501%02d", i);
    ASSERT_TRUE(accepted(operaEnrolment(nirOf(thirteen), networkId)));
    networkIds.push_back(networkId);
    session["patients"].push_back({{"networkId", networkId}});
  }
  const std::string fileSystem = "https://douleur77.fr/fhir/sid/opera-file";
  std::map<std::string, int> versions;
  for (const auto& id : networkIds) {
    auto files = search("Composition", {{"identifier", fileSystem + "|" + id}});
    ASSERT_EQ(files.size(), 1u) << id;
    versions[id] = std::stoi(files[0]["meta"].value("versionId", "0"));
  }

  json response;
  ASSERT_TRUE(accepted(session, &response));
  EXPECT_FALSE(has(warningsOf(response), "untrained-activity"));
  for (const auto& id : networkIds) {
    std::string pid = patientId(id);
    auto encounters = search("Encounter", {{"subject", "Patient/" + pid}, {"type", kCs + "opera-activity|etp-collective"}});
    ASSERT_EQ(encounters.size(), 1u) << id;
    EXPECT_TRUE(encounters[0].contains("partOf")) << encounters[0].dump();
    auto files = search("Composition", {{"identifier", fileSystem + "|" + id}});
    ASSERT_EQ(files.size(), 1u);
    EXPECT_EQ(std::stoi(files[0]["meta"].value("versionId", "0")), versions[id] + 1) << id;
    std::string ref = "Encounter/" + encounters[0].value("id", "");
    EXPECT_NE(files[0].dump().find("\"" + ref + "\""), std::string::npos) << id << " " << files[0].dump();
  }
  EXPECT_EQ(total("Encounter", {{"type", kCs + "opera-activity|etp-collective"}}), 9);  // the session and 8 patients
}

TEST_F(NetworkApiTest, TelephoneContactByAProfessionalWithoutTheTrainingIsKeptWithARecordedWarning) {
  start();
  ASSERT_NO_FATAL_FAILURE(registerOpera());
  ASSERT_TRUE(accepted(doc("opera-enrolment")));
  json call = doc("opera-activity");  // by the nurse without telephone-follow-up training
  json response;
  ASSERT_TRUE(accepted(call, &response));
  EXPECT_TRUE(has(warningsOf(response), "untrained-activity")) << response.dump();

  std::string pid = patientId("OP-000001");
  auto encounters = search("Encounter", {{"subject", "Patient/" + pid}, {"type", kCs + "opera-activity|telephone"}});
  ASSERT_EQ(encounters.size(), 1u);
  EXPECT_EQ(encounters[0]["class"].value("code", ""), "VR");
  // The warning is recorded with the document.
  auto lists = search("List", {{"identifier", kDocumentSystem + "|" + call["documentId"].get<std::string>()}});
  ASSERT_EQ(lists.size(), 1u);
  std::vector<std::string> recorded;
  for (const json* e : extensionsOf(lists[0], kSd + "rule-warning")) recorded.push_back((*e)["valueCoding"].value("code", ""));
  EXPECT_TRUE(has(recorded, "untrained-activity")) << lists[0].dump();

  // The trained doctor's call has no warning.
  json trained = doc("opera-activity");
  trained["professional"] = kOperaDoctor;
  trained["date"] = "2026-03-09";
  ASSERT_TRUE(accepted(trained, &response));
  EXPECT_FALSE(has(warningsOf(response), "untrained-activity")) << response.dump();
}

// ---------------------------------------------------------------------------------------------
// Idempotency and refusals.

TEST_F(NetworkApiTest, SameDocumentTwiceIsAcknowledgedAndStoresNothingNew) {
  start();
  ASSERT_NO_FATAL_FAILURE(registerNetwork());
  json inc = doc("inclusion");
  ASSERT_NO_FATAL_FAILURE(include(inc));
  json report = cied(7.5);
  ASSERT_TRUE(accepted(report));
  std::string pid = patientId("P77-000001");
  std::string patientVersion = read("Patient/" + pid)["meta"].value("versionId", "");
  auto before = totals();

  for (const json* d : {&report, &inc}) {
    auto again = post(*d);
    ASSERT_EQ(again.status, 200) << again.body;
    json o = again.json();
    EXPECT_EQ(o.value("resourceType", ""), "OperationOutcome") << again.body;
    ASSERT_FALSE(o["issue"].empty());
    EXPECT_EQ(o["issue"][0]["severity"], "information");
    EXPECT_NE(o["issue"][0].value("diagnostics", "").find("already received"), std::string::npos) << again.body;
  }
  // The same document with its members in another order is the same document.
  json reordered = json::object();
  std::vector<std::string> keys;
  for (const auto& [k, v] : report.items()) keys.push_back(k);
  for (auto it = keys.rbegin(); it != keys.rend(); ++it) reordered[*it] = report[*it];
  EXPECT_EQ(post(reordered).status, 200);
  EXPECT_EQ(totals(), before);
  EXPECT_EQ(read("Patient/" + pid)["meta"].value("versionId", ""), patientVersion);
}

TEST_F(NetworkApiTest, AnotherDocumentUnderAUsedDocumentIdIsAConflict) {
  start();
  ASSERT_NO_FATAL_FAILURE(registerNetwork());
  ASSERT_NO_FATAL_FAILURE(include(doc("inclusion")));
  json report = cied(7.5);
  ASSERT_TRUE(accepted(report));
  auto before = totals();
  json other = report;
  other["durationMinutes"] = 50;
  auto r = post(other);
  EXPECT_EQ(r.status, 409) << r.body;
  json o = json::parse(r.body, nullptr, false);
  ASSERT_TRUE(o.is_object());
  EXPECT_EQ(o["issue"][0]["expression"][0], "documentId");
  // Another kind under the same identifier as well.
  json consentDoc = consent("P77-000001");
  consentDoc["documentId"] = report["documentId"];
  EXPECT_EQ(post(consentDoc).status, 409);
  EXPECT_EQ(totals(), before);
}

TEST_F(NetworkApiTest, SchemaViolationsAreAllListedByPathAndNothingIsStored) {
  start();
  ASSERT_NO_FATAL_FAILURE(registerNetwork());
  ASSERT_NO_FATAL_FAILURE(include(doc("inclusion")));
  auto before = totals();
  json bad = cied(7.5);
  bad["durationMinutes"] = 0;
  bad["measures"]["vas"]["value"] = 11;
  bad["measures"]["vas"].erase("method");
  bad["date"] = "2026-02-30";
  bad["comment"] = "not a member of a CIED report";
  auto r = post(bad);
  ASSERT_EQ(r.status, 422) << r.body;
  json o = r.json();
  EXPECT_EQ(o.value("resourceType", ""), "OperationOutcome");
  std::set<std::string> paths;
  for (const auto& i : o["issue"]) {
    EXPECT_EQ(i["severity"], "error");
    if (i.contains("expression")) paths.insert(i["expression"][0].get<std::string>());
  }
  for (const char* p : {"durationMinutes", "measures.vas.value", "measures.vas.method", "date", "comment"})
    EXPECT_TRUE(paths.count(p)) << p << " missing from " << r.body;
  EXPECT_EQ(totals(), before);
  // The identifier is still free: the corrected document is accepted.
  json fixed = cied(7.5);
  fixed["documentId"] = bad["documentId"];
  EXPECT_TRUE(accepted(fixed));
}

TEST_F(NetworkApiTest, DocumentNamingAnUnknownPatientIsRefused) {
  start();
  ASSERT_NO_FATAL_FAILURE(registerNetwork());
  ASSERT_NO_FATAL_FAILURE(include(doc("inclusion")));
  auto before = totals();
  ASSERT_TRUE(refused(consent("P77-999999"), "unknown-patient", "patient"));
  json report = cied(7.5);
  report["patient"] = {{"networkId", "P77-999999"}};
  ASSERT_TRUE(refused(report, "unknown-patient", "patient"));
  EXPECT_EQ(totals(), before);
}

TEST_F(NetworkApiTest, XmlDocumentsAreAcceptedLikeTheirJson) {
  start();
  // The XML examples as they are, then their JSON twins: the same documents.
  for (const char* kind : {"structure", "professional", "inclusion", "consent", "cied"}) {
    std::string xml = readText(kExamples + "/" + std::string(kind) + ".xml");
    ASSERT_TRUE(isTransactionResponse(std::string(kind) + ".xml", postText(kind, xml, "application/xml")));
  }
  for (const char* kind : {"structure", "professional", "inclusion", "consent", "cied"}) {
    auto r = post(example(kind));
    EXPECT_EQ(r.status, 200) << kind << " " << r.body;
    EXPECT_NE(r.body.find("already received"), std::string::npos) << kind << ": the JSON is not the XML's document: " << r.body;
  }
  json status = dossier("P77-000001")["status"];
  EXPECT_EQ(status["enrolment"], "active");
  EXPECT_EQ(status["consent"], "active");
  EXPECT_EQ(total("Encounter", {{"type", kCs + "d77-enc|CIED"}}), 1);
  // text/xml is XML as well.
  std::string xml = readText(kExamples + "/csb.xml");
  ASSERT_TRUE(isTransactionResponse("csb.xml", postText("csb", xml, "text/xml; charset=utf-8")));
  EXPECT_EQ(total("Encounter", {{"type", kCs + "d77-enc|CSB"}}), 1);
}

TEST_F(NetworkApiTest, XmlWithADoctypeIsRefused) {
  start();
  ASSERT_NO_FATAL_FAILURE(registerNetwork());
  std::string xml = readText(kExamples + "/structure.xml");
  auto decl = xml.find("?>");
  ASSERT_NE(decl, std::string::npos);
  std::string withDoctype = xml.substr(0, decl + 2) + "\n<!DOCTYPE structure [<!ENTITY name \"Hôpital\">]>" + xml.substr(decl + 2);
  auto before = totals();
  auto r = postText("structure", withDoctype, "application/xml");
  EXPECT_EQ(r.status, 400) << r.body;
  EXPECT_EQ(json::parse(r.body, nullptr, false).value("resourceType", ""), "OperationOutcome");
  EXPECT_EQ(totals(), before);
}

TEST_F(NetworkApiTest, TransportErrors) {
  start();
  std::string body = example("structure").dump();
  auto wrongType = postText("structure", body, "text/plain");
  EXPECT_EQ(wrongType.status, 415) << wrongType.body;
  auto unknownKind = postText("prescription", body, "application/json");
  EXPECT_EQ(unknownKind.status, 404) << unknownKind.body;
  auto notJson = postText("structure", "{\"documentType\": ", "application/json");
  EXPECT_EQ(notJson.status, 400) << notJson.body;
  auto otherKind = postText("professional", body, "application/json");  // a structure sent as a professional
  EXPECT_EQ(otherKind.status, 422) << otherKind.body;
  EXPECT_EQ(http().get("/network/v1/patients/P77-123456/dossier").status, 404);
  EXPECT_EQ(total("Organization"), 0);
  EXPECT_EQ(total("List"), 0);
}

// ---------------------------------------------------------------------------------------------
// The dossier: every document comes back as it was sent.

TEST_F(NetworkApiTest, DossierGivesBackEveryDocumentAsItWasSent) {
  start();
  ASSERT_NO_FATAL_FAILURE(registerNetwork());
  std::vector<json> sent;
  auto send = [&](const json& d) {
    EXPECT_TRUE(accepted(d));
    sent.push_back(d);
  };
  send(doc("inclusion"));
  send(doc("consent"));
  send(doc("cied"));
  send(doc("csb"));
  json opening = doc("liaison-sheet");
  send(opening);
  json end = liaisonEnd(opening, "2026-05-29");
  end["documentId"] = newId("liaison-sheet");
  send(end);
  send(doc("referral"));
  send(doc("referral-update"));
  send(doc("consent-renewal"));
  send(doc("consent-withdrawal"));
  if (HasFailure()) return;

  json d = dossier("P77-000001");
  EXPECT_EQ(d["dossierType"], "network-dossier");
  EXPECT_FALSE(d.contains("issues")) << d["issues"].dump();
  const json& documents = d["documents"];
  EXPECT_EQ(documents.size(), sent.size()) << documents.dump();
  std::vector<bool> matched(documents.size(), false);
  for (const auto& s : sent) {
    json expected = json::parse(s.dump());  // order-insensitive objects
    bool found = false;
    for (std::size_t i = 0; i < documents.size() && !found; ++i)
      if (!matched[i] && documents[i] == expected) matched[i] = found = true;
    if (found) continue;
    json same;
    for (const auto& got : documents)
      if (got.value("documentId", "") == s.value("documentId", "")) same = got;
    ADD_FAILURE() << describe(s) << " does not come back as sent:\n  sent " << expected.dump() << "\n  got  " << same.dump()
                  << "\n  diff " << json::diff(expected, same).dump();
  }
  // By the Patient id as well.
  json byId = dossier(patientId("P77-000001"));
  EXPECT_EQ(byId["documents"].size(), documents.size());
  EXPECT_EQ(byId["patient"], d["patient"]);
}

}  // namespace
