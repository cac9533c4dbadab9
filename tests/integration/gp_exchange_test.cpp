// The GP software exchange end to end: a gateway started in-process with a GP installation whose
// folders are watched; files dropped as GP software does (write, then rename) land in the dossier
// as that GP, wait for review when the patient is uncertain, or go to quarantine with their reason.
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <fstream>
#include <sstream>
#include <thread>

#include <nlohmann/json.hpp>

#include "mappings/cda/cda.h"
#include "mappings/common/base64.h"
#include "tests/support/http_client.h"
#include "tests/support/test_gateway.h"

using namespace passerelle;
using namespace passerelle::testing;
using nlohmann::json;
namespace fs = std::filesystem;

namespace {

const std::string kExamples = PASSERELLE_NETWORK_EXAMPLES;

json example(const std::string& kind) { return json::parse(readFile(kExamples + "/" + kind + ".json")); }

// An HPRIM Net result for the example patient (DURAND Julien, 14/05/1985), in ISO 8859-1.
std::string hprimNet(const std::string& family = "DURAND", const std::string& given = "Julien", const std::string& birth = "14/05/1985",
                     const std::string& value = "13,5") {
  return "Bilan sanguin\r\n" + family + "\r\n" + given + "\r\n12 rue des Tanneurs\r\n\r\n77000 MELUN\r\n" + birth +
         "\r\n\r\nDEM-2026-001\r\n02/03/2026\r\nLAB77 Laboratoire de Melun\r\n10101234567 Dr Martin\r\n"
         "R\xe9sultats :\r\n  H\xe9moglobine " + value + " g/dL\r\n****LAB****\r\nRES|H\xe9moglobine|HB|N|" + value +
         "|g/dL|13|17||F|\r\n****FIN****\r\n****FINFICHIER****\r\n";
}

class GpExchangeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = conf_.path() + "/martin";
    std::ofstream(conf_.path() + "/martin.json")
        << json{{"id", "gp-martin"},
                {"name", "Cabinet du Dr Martin"},
                {"practitioner", {{"rpps", "10101234567"}}},
                {"folder", root_},
                {"import", {{"stableForMs", 50}, {"pollMs", 100}}},
                {"export", {{"recipient", "10101234567 Dr MARTIN Sophie"}, {"retry", {{"initialDelayMs", 50}, {"maxDelayMs", 200}}}}}}
               .dump();
    // A software installed for a doctor who is nobody's GP in the network.
    std::ofstream(conf_.path() + "/other.json")
        << json{{"id", "gp-other"}, {"practitioner", {{"rpps", "10109999999"}}}, {"folder", conf_.path() + "/other"},
                {"import", {{"stableForMs", 50}, {"pollMs", 100}}}}
               .dump();
    gw_ = std::make_unique<TestGateway>(std::vector<std::string>{"gp.dir=" + conf_.path(), "network.today=2026-09-10",
                                                                 "network.sweep_interval_seconds=0"});
    http_ = std::make_unique<HttpClient>(gw_->httpPort());
    post("structure", example("structure"));
    post("professional", example("professional"));
    post("inclusion", example("inclusion"));
    post("consent", example("consent"));
    patient_ = search("Patient?identifier=urn:oid:1.2.250.1.213.1.4.8|185057512345673").at(0)["id"];
  }

  void post(const std::string& kind, json d) {
    d["documentId"] = "T-" + kind + "-" + std::to_string(++ids_);
    auto r = http_->request("POST", "/network/v1/" + kind, d.dump(), {{"Content-Type", "application/json"}});
    ASSERT_EQ(r.status, 200) << kind << ": " << r.body;
  }

  std::vector<json> search(const std::string& query) {
    auto r = http_->get("/fhir/" + query);
    EXPECT_EQ(r.status, 200) << query << ": " << r.body;
    std::vector<json> out;
    json b = json::parse(r.body, nullptr, false);
    for (const auto& e : b.value("entry", json::array())) out.push_back(e["resource"]);
    return out;
  }

  void drop(const std::string& folder, const std::string& name, const std::string& bytes) {
    std::ofstream(folder + "/inbox/" + name + ".part", std::ios::binary) << bytes;
    fs::rename(folder + "/inbox/" + name + ".part", folder + "/inbox/" + name);
  }

  template <typename F>
  bool eventually(F f, int ms = 10000) {
    for (auto end = std::chrono::steady_clock::now() + std::chrono::milliseconds(ms); std::chrono::steady_clock::now() < end;) {
      if (f()) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    return f();
  }

  bool taken(const std::string& folder, const std::string& sub, const std::string& name) {
    return eventually([&] { return fs::exists(folder + "/" + sub + "/" + name) && !fs::exists(folder + "/inbox/" + name); });
  }

  json inbox(const std::string& status) {
    auto r = http_->get("/admin/v1/inbox?status=" + status);
    EXPECT_EQ(r.status, 200) << r.body;
    return json::parse(r.body, nullptr, false)["messages"];
  }

  std::vector<json> hemoglobins() { return search("Observation?patient=" + patient_ + "&code=HB"); }

  TempDir conf_;
  std::string root_;
  std::unique_ptr<TestGateway> gw_;
  std::unique_ptr<HttpClient> http_;
  std::string patient_;
  int ids_ = 0;
};

TEST_F(GpExchangeTest, AnHprimResultLandsInThePatientsDossierAsTheGpAndOnlyOnce) {
  drop(root_, "resultat-1.hpr", hprimNet());
  ASSERT_TRUE(taken(root_, "done", "resultat-1.hpr"));
  auto obs = hemoglobins();
  ASSERT_EQ(obs.size(), 1u);
  EXPECT_EQ(obs[0]["valueQuantity"]["value"], 13.5);
  EXPECT_EQ(obs[0]["subject"]["reference"], "Patient/" + patient_);
  auto docs = search("DocumentReference?patient=" + patient_);
  ASSERT_FALSE(docs.empty());
  // The network's identity record is not touched by the file.
  auto p = search("Patient?_id=" + patient_);
  EXPECT_EQ(p.at(0)["meta"]["versionId"], "1");
  // Kept in the message store, with the patient.
  auto processed = inbox("processed");
  ASSERT_FALSE(processed.empty());
  EXPECT_EQ(processed[0]["channel"], "file");
  EXPECT_EQ(processed[0]["patient"], "Patient/" + patient_);
  // Audited as the GP, naming the patient.
  auto events = search("AuditEvent?patient=Patient/" + patient_ + "&_count=100");
  bool byFile = false;
  for (const auto& e : events)
    if (e.dump().find("file:gp-martin") != std::string::npos) byFile = true;
  EXPECT_TRUE(byFile);
  // The same content again, under another name: moved to done/, not imported twice.
  drop(root_, "resultat-1-copie.hpr", hprimNet());
  ASSERT_TRUE(taken(root_, "done", "resultat-1-copie.hpr"));
  EXPECT_EQ(hemoglobins().size(), 1u);
}

TEST_F(GpExchangeTest, AnUncertainPatientWaitsForReviewAndIsAttachedByHand) {
  // Another first name: no network patient has these traits.
  drop(root_, "inconnu.hpr", hprimNet("DURAND", "Jules", "14/05/1985", "11,2"));
  ASSERT_TRUE(taken(root_, "done", "inconnu.hpr"));
  EXPECT_TRUE(hemoglobins().empty());
  auto held = inbox("review");
  ASSERT_EQ(held.size(), 1u);
  EXPECT_NE(held[0]["detail"].get<std::string>().find("no network patient has these traits"), std::string::npos);
  // Traits incomplete (no birth date): never attached by guess either.
  drop(root_, "sans-date.hpr", hprimNet("DURAND", "Julien", "", "12,0"));
  ASSERT_TRUE(taken(root_, "done", "sans-date.hpr"));
  EXPECT_EQ(inbox("review").size(), 2u);
  // A reviewer attaches the first one to the patient, and refuses the second.
  std::int64_t id = held[0]["id"];
  auto r = http_->request("POST", "/admin/v1/inbox/" + std::to_string(id) + "/attach", json{{"patient", "Patient/" + patient_}}.dump(),
                          {{"Content-Type", "application/json"}});
  ASSERT_EQ(r.status, 200) << r.body;
  auto obs = hemoglobins();
  ASSERT_EQ(obs.size(), 1u);
  EXPECT_EQ(obs[0]["valueQuantity"]["value"], 11.2);
  std::int64_t second = inbox("review").at(0)["id"];
  // The second refused from the command line (which asks the running gateway).
  std::string cli = std::string(PASSERELLE_BINARY) + " inbox reject " + std::to_string(second) + " --reason 'not our patient' --url http://127.0.0.1:" +
                    std::to_string(gw_->httpPort()) + " --token " + gw_->systemToken() + " > /dev/null";
  ASSERT_EQ(std::system(cli.c_str()), 0);
  EXPECT_TRUE(inbox("review").empty());
  bool said = false;
  for (const auto& m : inbox("rejected"))
    if (m["id"] == second && m["detail"].get<std::string>().find("not our patient") != std::string::npos) said = true;
  EXPECT_TRUE(said);
  // Decided once: attaching it again is a conflict.
  r = http_->request("POST", "/admin/v1/inbox/" + std::to_string(id) + "/attach", json{{"patient", "Patient/" + patient_}}.dump(),
                     {{"Content-Type", "application/json"}});
  EXPECT_EQ(r.status, 409) << r.body;
}

TEST_F(GpExchangeTest, WhatCannotBeReadOrIsNotAllowedGoesToQuarantineWithItsReason) {
  std::string truncated = hprimNet();
  truncated = truncated.substr(0, truncated.find("****FIN****"));
  drop(root_, "coupe.hpr", truncated);
  ASSERT_TRUE(taken(root_, "quarantine", "coupe.hpr"));
  std::string reason = readFile(root_ + "/quarantine/coupe.hpr.error.txt");
  EXPECT_NE(reason.find("looks truncated"), std::string::npos) << reason;
  drop(root_, "date.hpr", hprimNet("DURAND", "Julien", "31/02/1985"));
  ASSERT_TRUE(taken(root_, "quarantine", "date.hpr"));
  EXPECT_NE(readFile(root_ + "/quarantine/date.hpr.error.txt").find("line 7: the birth date '31/02/1985'"), std::string::npos);
  drop(root_, "cda.xml", "<?xml version=\"1.0\"?><ClinicalDocument/>");
  ASSERT_TRUE(taken(root_, "quarantine", "cda.xml"));
  drop(root_, "deep.json", std::string(100, '[') + std::string(100, ']'));
  ASSERT_TRUE(taken(root_, "quarantine", "deep.json"));
  EXPECT_NE(readFile(root_ + "/quarantine/deep.json.error.txt").find("not valid JSON"), std::string::npos);
  // A GP who is not the patient's correspondent imports nothing for them.
  std::string other = conf_.path() + "/other";
  drop(other, "resultat.hpr", hprimNet());
  ASSERT_TRUE(taken(other, "quarantine", "resultat.hpr"));
  EXPECT_NE(readFile(other + "/quarantine/resultat.hpr.error.txt").find("refused by the access policy"), std::string::npos);
  EXPECT_TRUE(hemoglobins().empty());
  EXPECT_GE(inbox("rejected").size(), 5u);
}

TEST_F(GpExchangeTest, AFhirBundleFromTheGpSoftwareIsMatchedByItsIns) {
  json bundle = json::parse(R"({"resourceType": "Bundle", "type": "transaction", "entry": [
    {"fullUrl": "urn:uuid:6f1c0a52-0b7e-4c55-9f0d-2b1b5f0f0001",
     "resource": {"resourceType": "Patient", "identifier": [{"system": "urn:oid:1.2.250.1.213.1.4.8", "value": "185057512345673"}],
                  "name": [{"family": "Durand", "given": ["Julien"]}], "birthDate": "1985-05-14"},
     "request": {"method": "POST", "url": "Patient"}},
    {"resource": {"resourceType": "Observation", "status": "final",
                  "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}], "text": "Heart rate"},
                  "subject": {"reference": "urn:uuid:6f1c0a52-0b7e-4c55-9f0d-2b1b5f0f0001"}, "effectiveDateTime": "2026-09-01",
                  "valueQuantity": {"value": 72, "unit": "/min"}},
     "request": {"method": "POST", "url": "Observation"}}]})");
  drop(root_, "export.json", bundle.dump());
  ASSERT_TRUE(taken(root_, "done", "export.json"));
  auto obs = search("Observation?patient=" + patient_ + "&code=8867-4");
  ASSERT_EQ(obs.size(), 1u);
  // The same INS with another birth date: the identity is to be checked, not guessed.
  bundle["entry"][0]["resource"]["birthDate"] = "1985-05-15";
  bundle["entry"][1]["resource"]["valueQuantity"]["value"] = 80;
  drop(root_, "export-2.json", bundle.dump());
  ASSERT_TRUE(taken(root_, "done", "export-2.json"));
  auto held = inbox("review");
  ASSERT_EQ(held.size(), 1u);
  EXPECT_NE(held[0]["detail"].get<std::string>().find("the birth date differs"), std::string::npos);
  EXPECT_EQ(search("Observation?patient=" + patient_ + "&code=8867-4").size(), 1u);
}

// The files of a folder, without the temporary ones being written (".name.xxx.tmp").
std::vector<std::string> files(const std::string& dir) {
  std::vector<std::string> out;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir, ec))
    if (e.path().filename().string()[0] != '.') out.push_back(e.path().filename().string());
  std::sort(out.begin(), out.end());
  return out;
}

TEST_F(GpExchangeTest, ACiedReportReachesTheGpsOutboxAsHprimNet) {
  post("cied", example("cied"));
  ASSERT_TRUE(eventually([&] { return files(root_ + "/outbox").size() == 1; }));
  std::string name = files(root_ + "/outbox")[0];
  EXPECT_EQ(name.rfind("d77-Composition-", 0), 0u) << name;
  std::string text = readFile(root_ + "/outbox/" + name);
  // ISO 8859-1, CRLF, the twelve header lines, the scores as RES lines.
  EXPECT_EQ(text.find("\xc3"), std::string::npos);
  std::vector<std::string> lines;
  std::stringstream ss(text);
  for (std::string l; std::getline(ss, l);) lines.push_back(l.substr(0, l.size() - 1));
  ASSERT_GT(lines.size(), 14u);
  EXPECT_EQ(lines[1], "DURAND");
  EXPECT_EQ(lines[2], "Julien Pierre");
  EXPECT_EQ(lines[6], "14/05/1985");
  EXPECT_EQ(lines[7], "185057512345673");
  EXPECT_EQ(lines[11], "10101234567 Dr MARTIN Sophie");
  EXPECT_NE(text.find("RES|Intensit\xe9 de la douleur (\xe9" "chelle 0-10)|72514-3|N|7.5|"), std::string::npos) << text;
  EXPECT_NE(text.find("RES|Dallas - activit\xe9s quotidiennes|DALLAS-DAILY-ACTIVITIES|N|65|%|"), std::string::npos);
  EXPECT_EQ(lines.back(), "****FINFICHIER****");
  // The delivery is marked sent once the file is in place (just after it appears).
  json deliveries;
  EXPECT_TRUE(eventually([&] {
    deliveries = json::parse(http_->get("/admin/v1/outbox?destination=gp:gp-martin").body)["deliveries"];
    return deliveries.size() == 1 && deliveries[0]["status"] == "sent";
  })) << deliveries.dump();
  // Nothing for the other installation's doctor, who is not this patient's GP.
  EXPECT_TRUE(files(conf_.path() + "/other/outbox").empty());
  // The export is an audit record naming the patient.
  bool exported = false;
  for (const auto& e : search("AuditEvent?patient=Patient/" + patient_ + "&_count=200"))
    if (e.dump().find("HPRIM-NET delivery") != std::string::npos) exported = true;
  EXPECT_TRUE(exported);
}

TEST_F(GpExchangeTest, AWithdrawnPatientsQueuedReportIsNeverWritten) {
  // The outbox cannot be written for now (a file where the folder should be): the export waits.
  fs::remove_all(root_ + "/outbox");
  std::ofstream(root_ + "/outbox") << "in the way";
  post("cied", example("cied"));
  ASSERT_TRUE(eventually([&] {
    auto r = http_->get("/admin/v1/outbox?destination=gp:gp-martin");
    json d = json::parse(r.body, nullptr, false)["deliveries"];
    return d.size() == 1 && d[0]["attempts"].get<int>() >= 1 && d[0]["status"] == "queued";
  }));
  post("consent-withdrawal", example("consent-withdrawal"));
  fs::remove(root_ + "/outbox");
  fs::create_directory(root_ + "/outbox");
  ASSERT_TRUE(eventually([&] {
    auto r = http_->get("/admin/v1/outbox?destination=gp:gp-martin");
    json d = json::parse(r.body, nullptr, false)["deliveries"];
    return d.size() == 1 && d[0]["status"] == "cancelled";
  }));
  EXPECT_TRUE(files(root_ + "/outbox").empty());
}

TEST_F(GpExchangeTest, SoftwareThatPullsGetsThePatientsRecordAndWhatChangedSince) {
  post("cied", example("cied"));
  identity::IssueOptions asGp;
  asGp.role = "gp";
  asGp.practitioner = "rpps:10101234567";
  asGp.scopes = {"user/*.cruds"};
  std::string gp = gw_->token(asGp);
  auto everything = [&](const std::string& token, const std::string& query) {
    auto r = http_->request("GET", "/fhir/Patient/" + patient_ + "/$everything" + query, "", {{"Authorization", "Bearer " + token}});
    return std::make_pair(r.status, json::parse(r.body, nullptr, false));
  };
  auto [status, all] = everything(gp, "");
  ASSERT_EQ(status, 200) << all.dump();
  std::map<std::string, int> types;
  for (const auto& e : all["entry"]) types[e["resource"]["resourceType"]]++;
  EXPECT_EQ(types["Patient"], 1);
  EXPECT_GE(types["Observation"], 3);
  EXPECT_EQ(types["Composition"], 1);
  EXPECT_EQ(all["total"], all["entry"].size());
  // Only some types; and what changed since the last export (its meta.lastUpdated).
  auto [s2, some] = everything(gp, "?_type=Composition,Encounter");
  ASSERT_EQ(s2, 200);
  for (const auto& e : some["entry"]) EXPECT_TRUE(e["resource"]["resourceType"] == "Composition" || e["resource"]["resourceType"] == "Encounter");
  std::string mark = all["meta"]["lastUpdated"];
  auto [s3, none] = everything(gp, "?_since=" + mark);
  ASSERT_EQ(s3, 200);
  EXPECT_EQ(none["total"], 0);
  post("csb", example("csb"));
  auto [s4, changed] = everything(gp, "?_since=" + mark);
  ASSERT_EQ(s4, 200);
  EXPECT_GT(changed["total"].get<int>(), 0);
  for (const auto& e : changed["entry"]) EXPECT_GE(e["resource"]["meta"]["lastUpdated"].get<std::string>(), mark);
  // A doctor who is not the patient's GP sees nothing; bad parameters are refused.
  asGp.practitioner = "rpps:10109999999";
  std::string other = gw_->token(asGp);
  EXPECT_EQ(everything(other, "").first, 404);
  EXPECT_EQ(everything(gp, "?_type=Nothing").first, 400);
  EXPECT_EQ(everything(gp, "?_since=yesterday").first, 400);
  EXPECT_EQ(everything(gp, "?start=2026-01-01").first, 400);
}

// A CI-SIS level 1 consult note for the example patient (INS), written by the example GP.
std::string cdaDocument(const std::string& ins, const std::string& birthPlace = "") {
  return R"(<?xml version="1.0" encoding="UTF-8"?>
<ClinicalDocument xmlns="urn:hl7-org:v3">
  <realmCode code="FR"/>
  <typeId root="2.16.840.1.113883.1.3" extension="POCD_HD000040"/>
  <templateId root="1.2.250.1.213.1.1.1.1"/>
  <id root="2.999.77.1" extension="CR-GP-0001"/>
  <code code="11488-4" codeSystem="2.16.840.1.113883.6.1" displayName="Compte rendu de consultation"/>
  <title>Consultation de suivi</title>
  <effectiveTime value="20260905101500+0200"/>
  <confidentialityCode code="N" codeSystem="2.16.840.1.113883.5.25"/>
  <recordTarget><patientRole><id root="1.2.250.1.213.1.4.8" extension=")" + ins + R"("/>
    <patient><name><given>Julien</given><family qualifier="BR">DURAND</family></name>
      <administrativeGenderCode code="M" codeSystem="2.16.840.1.113883.5.1"/><birthTime value="19850514"/>)" +
         (birthPlace.empty() ? "" : "<birthplace><place><addr><county>" + birthPlace + "</county></addr></place></birthplace>") + R"(</patient>
  </patientRole></recordTarget>
  <author><time value="20260905101500+0200"/><assignedAuthor><id root="1.2.250.1.71.4.2.1" extension="810101234567"/>
    <assignedPerson><name><given>Sophie</given><family>MARTIN</family></name></assignedPerson></assignedAuthor></author>
  <custodian><assignedCustodian><representedCustodianOrganization><id root="1.2.250.1.71.4.2.2" extension="1770000001"/>
  </representedCustodianOrganization></assignedCustodian></custodian>
  <component><nonXMLBody><text mediaType="application/pdf" representation="B64">JVBERi0xLjQK</text></nonXMLBody></component>
</ClinicalDocument>
)";
}

// A report answering a referral (the hospital's DocumentReference linked to the ServiceRequest)
// reaches the GP's HPRIM software: a CDA's text as HPRIM Net, a PDF written beside it and named in
// the text; a document not linked to a referral (what the GP's software sent) is not sent back.
TEST_F(GpExchangeTest, AHospitalsReportOnAReferralReachesTheGpsOutbox) {
  auto sr = http_->request("POST", "/fhir/ServiceRequest",
                           json{{"resourceType", "ServiceRequest"}, {"status", "active"}, {"intent", "order"}, {"subject", {{"reference", "Patient/" + patient_}}}}.dump(),
                           {{"Content-Type", "application/fhir+json"}});
  ASSERT_EQ(sr.status, 201) << sr.body;
  std::string referral = "ServiceRequest/" + json::parse(sr.body)["id"].get<std::string>();
  auto postReport = [&](const std::string& contentType, const std::string& bytes, bool linked) {
    json d = {{"resourceType", "DocumentReference"}, {"status", "current"}, {"subject", {{"reference", "Patient/" + patient_}}},
              {"date", "2026-09-20T10:00:00+02:00"},
              {"type", json::parse(R"({"coding": [{"system": "http://loinc.org", "code": "11488-4", "display": "Compte rendu de consultation"}]})")},
              {"content", json::array({{{"attachment", {{"contentType", contentType}, {"data", base64::encode(bytes)}}}}})}};
    if (linked) d["context"] = {{"related", json::array({{{"reference", referral}}})}};
    auto r = http_->request("POST", "/fhir/DocumentReference", d.dump(), {{"Content-Type", "application/fhir+json"}});
    EXPECT_EQ(r.status, 201) << r.body;
  };
  // A level 1 CDA carrying a PDF, then a structured CDA.
  std::string pdf = "%PDF-1.4\n% compte rendu\n";
  std::string level1 = cdaDocument("185057512345673");
  level1.replace(level1.find("Consultation de suivi"), 21, "Consultation au centre de la douleur");
  level1.replace(level1.find("JVBERi0xLjQK"), 12, base64::encode(pdf));
  postReport("text/xml", level1, true);
  ASSERT_TRUE(eventually([&] { return files(root_ + "/outbox").size() == 2; })) << http_->get("/admin/v1/outbox?destination=gp:gp-martin").body;
  std::string hpr, pdfName;
  for (const auto& f : files(root_ + "/outbox")) (f.size() > 4 && f.substr(f.size() - 4) == ".pdf" ? pdfName : hpr) = f;
  ASSERT_FALSE(pdfName.empty());
  EXPECT_EQ(readFile(root_ + "/outbox/" + pdfName), pdf);
  std::string text = readFile(root_ + "/outbox/" + hpr);
  EXPECT_EQ(text.rfind("Consultation au centre de la douleur\r\nDURAND\r\n", 0), 0u) << text;
  EXPECT_NE(text.find("Compte rendu joint au format PDF : " + pdfName), std::string::npos) << text;
  std::string structured = cdaDocument("185057512345673");
  auto body = structured.find("<component><nonXMLBody>");
  structured.replace(body, structured.find("</ClinicalDocument>") - body,
                     "<component><structuredBody><component><section><title>Conclusion</title><text>Reprise progressive du travail.</text>"
                     "</section></component></structuredBody></component>\n");
  postReport("text/xml", structured, true);
  ASSERT_TRUE(eventually([&] { return files(root_ + "/outbox").size() == 3; }));
  bool found = false;
  for (const auto& f : files(root_ + "/outbox")) found |= readFile(root_ + "/outbox/" + f).find("Reprise progressive du travail.") != std::string::npos;
  EXPECT_TRUE(found);
  // Not linked to a referral: stays in the dossier.
  postReport("text/plain", "Résultat importé du logiciel du médecin", false);
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  EXPECT_EQ(files(root_ + "/outbox").size(), 3u);
  json deliveries = json::parse(http_->get("/admin/v1/outbox?destination=gp:gp-martin").body)["deliveries"];
  EXPECT_EQ(deliveries.size(), 2u);
  for (const auto& d : deliveries) EXPECT_EQ(d["status"], "sent") << d.dump();
}

TEST_F(GpExchangeTest, CdaFilesAreRefusedWithoutASchemaToValidateThem) {
  drop(root_, "cr.xml", cdaDocument("185057512345673"));
  ASSERT_TRUE(taken(root_, "quarantine", "cr.xml"));
  EXPECT_NE(readFile(root_ + "/quarantine/cr.xml.error.txt").find("none is configured (cda.schema)"), std::string::npos);
}

TEST(GpCdaTest, AValidatedCdaLandsInTheDossierByItsIns) {
  std::string corpora = corporaDir();
  // As a French network runs it: Passerelle's French root over the ANS components.
  std::string xsd = std::string(PASSERELLE_CDA_SCHEMAS) + "/CDA_FR.xsd";
  std::string components = corpora + "/ans-testcontenucda-3.0/infrastructure/cda";
  if (corpora.empty() || !fs::exists(components)) GTEST_SKIP() << "../shared/corpora (ans-testcontenucda-3.0) is absent: no CDA schema to validate with";
  TempDir conf;
  std::string root = conf.path() + "/martin";
  std::ofstream(conf.path() + "/martin.json")
      << json{{"id", "gp-martin"}, {"practitioner", {{"rpps", "10101234567"}}}, {"folder", root}, {"import", {{"stableForMs", 50}, {"pollMs", 100}}},
              {"export", {{"format", "cda"}}}}
             .dump();
  TestGateway gw({"gp.dir=" + conf.path(), "cda.schema=" + xsd, "cda.schema_components=" + components, "network.sweep_interval_seconds=0"});
  HttpClient http(gw.httpPort());
  int n = 0;
  for (const char* kind : {"structure", "professional", "inclusion", "consent"}) {
    json d = example(kind);
    d["documentId"] = "T-" + std::string(kind) + "-" + std::to_string(++n);
    if (std::string(kind) == "inclusion") d["patient"]["birthPlace"] = "77288";  // born in Melun
    ASSERT_EQ(http.request("POST", std::string("/network/v1/") + kind, d.dump(), {{"Content-Type", "application/json"}}).status, 200);
  }
  auto drop = [&](const std::string& name, const std::string& bytes) {
    std::ofstream(root + "/inbox/" + name + ".part") << bytes;
    fs::rename(root + "/inbox/" + name + ".part", root + "/inbox/" + name);
  };
  auto arrived = [&](const std::string& sub, const std::string& name) {
    for (int i = 0; i < 500 && !fs::exists(root + "/" + sub + "/" + name); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(20));
    return fs::exists(root + "/" + sub + "/" + name);
  };
  drop("cr.xml", cdaDocument("185057512345673", "77288"));
  ASSERT_TRUE(arrived("done", "cr.xml"));
  auto r = http.get("/fhir/DocumentReference?identifier=urn:oid:2.999.77.1|CR-GP-0001");
  json b = json::parse(r.body);
  ASSERT_EQ(b["entry"].size(), 1u) << r.body;
  EXPECT_EQ(b["entry"][0]["resource"]["content"][0]["attachment"]["contentType"], "text/xml");
  EXPECT_EQ(b["entry"][0]["resource"]["author"][0]["identifier"]["value"], "10101234567");
  // A self-presenting document (its ClinicalDocument in data:Contenu inside the stylesheet that
  // displays it): validated and read as the document it carries.
  std::string inner = cdaDocument("185057512345673");
  inner.replace(inner.find("CR-GP-0001"), 10, "CR-GP-0002");
  drop("autopresentable.xml", "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
                              "<xsl:stylesheet version=\"1.0\" xmlns:xsl=\"http://www.w3.org/1999/XSL/Transform\" xmlns:data=\"urn:asip-sante:ci-sis\">"
                              "<data:Contenu>" + inner.substr(inner.find("<ClinicalDocument")) + "</data:Contenu>"
                              "<xsl:template match=\"/\"><html><xsl:value-of select=\"//title\"/></html></xsl:template></xsl:stylesheet>\n");
  ASSERT_TRUE(arrived("done", "autopresentable.xml")) << (fs::exists(root + "/quarantine/autopresentable.xml.error.txt") ? readFile(root + "/quarantine/autopresentable.xml.error.txt") : "");
  EXPECT_EQ(json::parse(http.get("/fhir/DocumentReference?identifier=urn:oid:2.999.77.1|CR-GP-0002").body)["entry"].size(), 1u);
  // Invalid against the schema: quarantined with the schema's message and its line.
  std::string invalid = cdaDocument("185057512345673");
  invalid.replace(invalid.find("<title>"), 7, "<surprise/><title>");
  drop("invalide.xml", invalid);
  ASSERT_TRUE(arrived("quarantine", "invalide.xml"));
  EXPECT_NE(readFile(root + "/quarantine/invalide.xml.error.txt").find("line 8, column 14: no declaration found for element 'surprise'"), std::string::npos)
      << readFile(root + "/quarantine/invalide.xml.error.txt");
  // An INS no network patient has: held for review.
  drop("inconnu.xml", cdaDocument("277057512345620"));
  ASSERT_TRUE(arrived("done", "inconnu.xml"));
  json held = json::parse(http.get("/admin/v1/inbox?status=review").body)["messages"];
  ASSERT_EQ(held.size(), 1u);
  EXPECT_NE(held[0]["detail"].get<std::string>().find("no network patient has the INS"), std::string::npos);
  // The patient's INS with another commune of birth: held for review, not attached.
  std::string elsewhere = cdaDocument("185057512345673", "75056");
  elsewhere.replace(elsewhere.find("CR-GP-0001"), 10, "CR-GP-0003");
  drop("ailleurs.xml", elsewhere);
  ASSERT_TRUE(arrived("done", "ailleurs.xml"));
  held = json::parse(http.get("/admin/v1/inbox?status=review").body)["messages"];
  ASSERT_EQ(held.size(), 2u);
  bool birthplace = false;
  for (const auto& h : held) birthplace |= h["detail"].get<std::string>().find("the birthplace differs: identity to check") != std::string::npos;
  EXPECT_TRUE(birthplace) << held.dump();
  EXPECT_EQ(json::parse(http.get("/fhir/DocumentReference?identifier=urn:oid:2.999.77.1|CR-GP-0003").body)["entry"].size(), 0u);
  // The same document again with other bytes: not stored twice.
  std::string again = cdaDocument("185057512345673");
  again.replace(again.find("<title>"), 0, "\n  ");
  drop("cr-encore.xml", again);
  ASSERT_TRUE(arrived("done", "cr-encore.xml"));
  EXPECT_EQ(json::parse(http.get("/fhir/DocumentReference?identifier=urn:oid:2.999.77.1|CR-GP-0001").body)["entry"].size(), 1u);
  // This installation takes its reports as CI-SIS CDA: the CIED arrives as a document that the
  // schema accepts and that reads back to the patient, the author and the scores.
  json cied = example("cied");
  cied["documentId"] = "T-cied-9";
  ASSERT_EQ(http.request("POST", "/network/v1/cied", cied.dump(), {{"Content-Type", "application/json"}}).status, 200);
  std::string name;
  for (int i = 0; i < 500 && name.empty(); ++i) {
    for (const auto& e : fs::directory_iterator(root + "/outbox"))
      if (e.path().extension() == ".xml" && e.path().filename().string()[0] != '.') name = e.path().string();
    if (name.empty()) std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  ASSERT_FALSE(name.empty()) << http.get("/admin/v1/outbox").body;  // (a dead letter says why)
  std::string error;
  auto schema = cda::Schema::load(xsd, error, components);
  ASSERT_TRUE(schema) << error;
  cda::Document out;
  std::vector<cda::Issue> issues;
  ASSERT_TRUE(cda::read(readFile(name), schema.get(), cda::Limits{}, out, issues)) << (issues.empty() ? "" : issues[0].message);
  EXPECT_EQ(out.patientIds.at(0).extension, "185057512345673");
  EXPECT_EQ(cda::rppsOf(out.authorId), "10101234567");
  EXPECT_EQ(out.code, "11488-4");
  EXPECT_GE(out.results.size(), 3u);
  // A hospital's CDA answering a referral reaches this software as the hospital wrote it.
  std::string patient = json::parse(http.get("/fhir/Patient?identifier=urn:oid:1.2.250.1.213.1.4.8|185057512345673").body)["entry"][0]["resource"]["id"];
  auto sr = http.request("POST", "/fhir/ServiceRequest",
                         json{{"resourceType", "ServiceRequest"}, {"status", "active"}, {"intent", "order"}, {"subject", {{"reference", "Patient/" + patient}}}}.dump(),
                         {{"Content-Type", "application/fhir+json"}});
  ASSERT_EQ(sr.status, 201) << sr.body;
  std::string hospitalCda = cdaDocument("185057512345673");
  hospitalCda.replace(hospitalCda.find("CR-GP-0001"), 10, "CR-AVC-0001");
  json report = {{"resourceType", "DocumentReference"}, {"status", "current"}, {"subject", {{"reference", "Patient/" + patient}}},
                 {"context", {{"related", json::array({{{"reference", "ServiceRequest/" + json::parse(sr.body)["id"].get<std::string>()}}})}}},
                 {"content", json::array({{{"attachment", {{"contentType", "text/xml"}, {"data", base64::encode(hospitalCda)}}}}})}};
  ASSERT_EQ(http.request("POST", "/fhir/DocumentReference", report.dump(), {{"Content-Type", "application/fhir+json"}}).status, 201);
  std::string forwarded;
  for (int i = 0; i < 500 && forwarded.empty(); ++i) {
    for (const auto& e : fs::directory_iterator(root + "/outbox"))
      if (e.path().filename().string().rfind("d77-DocumentReference-", 0) == 0) forwarded = e.path().string();
    if (forwarded.empty()) std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  ASSERT_FALSE(forwarded.empty()) << http.get("/admin/v1/outbox").body;
  EXPECT_EQ(readFile(forwarded), hospitalCda);
}

}  // namespace
