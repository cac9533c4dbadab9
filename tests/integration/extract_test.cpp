// Evaluation extracts end to end: a cohort entered through the network API, an extract run through
// the admin API for the caisse's medical service and for a financial partner, opened with the
// openssl command as the independent verifier (CMS decryption and signature), and checked: no
// direct identifier in any file, pseudonyms equal to the HMAC of the INS that openssl computes
// with the key, no published cell between 1 and k-1, aggregates only for the partner, a new key
// version after a rotation, and audit records naming the patients.
#include <gtest/gtest.h>

#include <csignal>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <regex>
#include <set>
#include <thread>

#include "gateway/extract/extract_service.h"
#include "mappings/extract/csv.h"
#include "tests/support/http_client.h"
#include "tests/support/ssh_server.h"
#include "tests/support/test_gateway.h"

namespace passerelle::testing {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

const std::string kExamples = PASSERELLE_NETWORK_EXAMPLES;
json example(const std::string& kind) { return json::parse(readFile(kExamples + "/" + kind + ".json")); }

std::string run(const std::string& command) { return runCommand(command); }

// A valid NIR for patient n: a man born in May 1985 in Seine-et-Marne, order number n, with its key.
std::string nir(int n) {
  char base[14];
  std::snprintf(base, sizeof base, "18505772%02d%03d", n % 100, n);
  long long v = std::atoll(base);
  char out[16];
  std::snprintf(out, sizeof out, "%s%02lld", base, 97 - v % 97);
  return out;
}

class ExtractTest : public ::testing::Test {
 protected:
  void SetUp() override {
    // The recipient's key pair, made here: the gateway only ever sees its certificate.
    std::string rc = run("openssl req -x509 -newkey rsa:2048 -nodes -days 30 -subj '/CN=Service medical CPAM 77' -keyout " + conf_.path() +
                         "/recipient.key -out " + conf_.path() + "/recipient.crt");
    ASSERT_EQ(rc.rfind("FAILED", 0), std::string::npos) << rc;
    std::ofstream(conf_.path() + "/recipients.json")
        << json::array({{{"id", "cpam77"}, {"role", "caisse-medical"}, {"domain", "cpam77"}, {"k", 5}, {"certificate", "recipient.crt"},
                         {"schedule", {"annual", "interim"}}},
                        {{"id", "ligue"}, {"role", "financial-partner"}, {"k", 5}, {"certificate", "recipient.crt"}},
                        {{"id", "evaluateur"}, {"role", "evaluator"}, {"domain", "evaluation"}, {"k", 5}, {"certificate", "recipient.crt"}},
                        {{"id", "paiements"}, {"role", "caisse-agent"}, {"certificate", "recipient.crt"}}})
               .dump();
    gw_ = std::make_unique<TestGateway>(std::vector<std::string>{"extract.recipients=" + conf_.path() + "/recipients.json",
                                                                 "extract.indicators=" + std::string(PASSERELLE_SOURCE_DIR) + "/conf/extracts/indicators.json",
                                                                 "extract.tariffs=" + std::string(PASSERELLE_SOURCE_DIR) + "/conf/extracts/tariffs.json",
                                                                 "network.today=2026-09-10", "network.sweep_interval_seconds=0",
                                                                 "extract.experiment_start=2025-03-01", "extract.schedule_interval_seconds=0"});
    http_ = std::make_unique<HttpClient>(gw_->httpPort());
    post("structure", example("structure"));
    post("professional", example("professional"));
    // Twelve patients with low back pain, each included, consenting and seen at a CIED (VAS 5 to 8).
    for (int i = 1; i <= 12; ++i) {
      std::string network = "P77-0001" + std::string(i < 10 ? "0" : "") + std::to_string(i);
      json inc = example("inclusion");
      inc["patient"]["nir"] = nir(i);
      inc["patient"]["networkId"] = network;
      inc["patient"]["family"] = "PATIENT" + std::string(1, static_cast<char>('A' + i));
      inc["coverage"]["memberId"] = nir(i);
      post("inclusion", inc);
      json con = example("consent");
      con["patient"]["networkId"] = network;
      post("consent", con);
      json cied = example("cied");
      cied["patient"]["networkId"] = network;
      cied["measures"]["vas"]["value"] = 5 + i % 4;
      cied["measures"]["vas"]["rawMm"] = (5 + i % 4) * 10;
      // The Brief Pain Inventory: its seven interference items average (i % 5 + 33) / 7.
      cied["measures"]["bpi"] = {{"severity", {5, 2, 4, 3}}, {"interference", {i % 5, 3, 4, 5, 6, 7, 8}}};
      post("cied", cied);
    }
  }

  void post(const std::string& kind, json d) {
    d["documentId"] = "T-" + kind + "-" + std::to_string(++ids_);
    auto r = http_->request("POST", "/network/v1/" + kind, d.dump(), {{"Content-Type", "application/json"}});
    ASSERT_EQ(r.status, 200) << kind << ": " << r.body;
  }

  // Runs an extract and opens its package with the openssl command: the files, by name.
  std::map<std::string, std::string> extract(const std::string& recipient, json& manifest) {
    auto r = http_->request("POST", "/admin/v1/extracts", json{{"recipient", recipient}, {"from", "2026-01-01"}, {"to", "2026-12-31"}}.dump(),
                            {{"Content-Type", "application/json"}});
    EXPECT_EQ(r.status, 200) << r.body;
    manifest = json::parse(r.body, nullptr, false);
    std::map<std::string, std::string> files;
    if (!manifest.is_object() || !manifest.contains("package")) return files;
    std::string out = conf_.path() + "/open-" + recipient;
    fs::create_directories(out);
    std::string c = conf_.path();
    std::string dec = run("openssl cms -decrypt -inform DER -in " + manifest["package"].get<std::string>() + " -recip " + c + "/recipient.crt -inkey " +
                          c + "/recipient.key -out " + out + "/signed.der");
    EXPECT_EQ(dec.rfind("FAILED", 0), std::string::npos) << dec;
    std::string ver = run("openssl cms -verify -inform DER -in " + out + "/signed.der -CAfile " + gw_->dataDir() +
                          "/extract-signing/signer.crt -out " + out + "/extract.zip");
    EXPECT_EQ(ver.rfind("FAILED", 0), std::string::npos) << ver;
    std::string list = run("cd " + out + " && python3 -c \"import zipfile,sys; z=zipfile.ZipFile('extract.zip'); z.extractall('files'); "
                           "print('\\n'.join(z.namelist()))\"");
    EXPECT_EQ(list.rfind("FAILED", 0), std::string::npos) << list;
    for (const auto& e : fs::directory_iterator(out + "/files")) files[e.path().filename().string()] = readFile(e.path().string());
    return files;
  }

  TempDir conf_;
  std::unique_ptr<TestGateway> gw_;
  std::unique_ptr<HttpClient> http_;
  int ids_ = 0;
};

TEST_F(ExtractTest, TheCaissesMedicalServiceGetsPseudonymisedRowsSealedForItAndNothingIdentifying) {
  json manifest;
  auto files = extract("cpam77", manifest);
  ASSERT_TRUE(files.count("patients.csv")) << manifest.dump();
  for (const char* name : {"indicators.csv", "measure.json", "measure-report.json", "manifest.json"}) EXPECT_TRUE(files.count(name)) << name;
  // The FHIR resources are valid R4.
  for (const char* name : {"measure.json", "measure-report.json"}) {
    std::string v = run(std::string(PASSERELLE_BINARY) + " validate " + conf_.path() + "/open-cpam77/files/" + name);
    EXPECT_EQ(v.rfind("FAILED", 0), std::string::npos) << name << ": " << v;
  }
  // The MeasureReport: one stratifier per set of dimensions, several dimensions as components.
  json report = json::parse(files["measure-report.json"]);
  std::map<std::string, json> groups;
  for (const auto& g : report["group"]) groups[g["code"]["coding"][0]["code"]] = g;
  ASSERT_TRUE(groups.count("patients-admitted") && groups.count("vas"));
  // pathology x sex, its margins (pathology, sex), and the semester of inclusion
  std::map<std::string, json> stratifiers;
  for (const auto& st : groups["patients-admitted"]["stratifier"]) {
    std::string name;
    for (const auto& c : st["code"]) name += (name.empty() ? "" : "|") + c["text"].get<std::string>();
    stratifiers[name] = st;
  }
  EXPECT_EQ(stratifiers.size(), 4u);
  EXPECT_EQ(groups["patients-admitted"]["population"][0]["count"], 12);
  const json& bySex = stratifiers["pathology|sex"];
  bool twelveMen = false;
  for (const auto& st : bySex["stratum"])
    twelveMen |= st["component"][0]["value"]["text"] == "low-back-pain" && st["component"][1]["value"]["text"] == "male" &&
                 st.value("population", json::array()).size() == 1 && st["population"][0]["count"] == 12;
  EXPECT_TRUE(twelveMen) << bySex.dump();
  EXPECT_EQ(stratifiers["period"]["stratum"][0]["value"]["text"], "2026-S1");
  EXPECT_EQ(groups["vas"]["measureScore"]["value"], 6.5);
  json measureDefinition = json::parse(files["measure.json"]);
  EXPECT_EQ(measureDefinition["group"][0]["stratifier"][0]["component"].size(), 2u) << measureDefinition["group"][0].dump();
  // The manifest: each file's SHA-256 and row count, k, the key version.
  json inside = json::parse(files["manifest.json"]);
  EXPECT_EQ(inside["k"], 5);
  EXPECT_EQ(inside["pseudonym"]["keyVersion"], 1);
  for (const auto& f : inside["files"]) {
    std::string name = f["name"];
    ASSERT_TRUE(files.count(name)) << name;
    std::string sha = run("sha256sum '" + conf_.path() + "/open-cpam77/files/" + name + "'");
    EXPECT_EQ(sha.substr(0, 64), f["sha256"].get<std::string>()) << name;
  }
  // Nothing that identifies: no NIR, no name, no exact date, no network number.
  for (const auto& [name, bytes] : files) {
    for (int i = 1; i <= 12; ++i) {
      EXPECT_EQ(bytes.find(nir(i)), std::string::npos) << name;
      EXPECT_EQ(bytes.find(nir(i).substr(0, 13)), std::string::npos) << name;
      EXPECT_EQ(bytes.find("PATIENT" + std::string(1, static_cast<char>('A' + i))), std::string::npos) << name;
    }
    EXPECT_EQ(bytes.find("P77-0001"), std::string::npos) << name;
    EXPECT_EQ(bytes.find("DURAND"), std::string::npos) << name;
    if (name.size() > 4 && name.substr(name.size() - 4) == ".csv")
      EXPECT_FALSE(std::regex_search(bytes, std::regex("[0-9]{4}-[0-9]{2}-[0-9]{2}"))) << name << " carries an exact date";
  }
  // The pseudonyms: HMAC-SHA-256 of the INS with the domain's key, as openssl computes it.
  // The keys: readable by the gateway's account only.
  EXPECT_EQ(fs::status(gw_->dataDir() + "/extract-keys.json").permissions() & fs::perms::all, fs::perms::owner_read | fs::perms::owner_write);
  json keys = json::parse(readFile(gw_->dataDir() + "/extract-keys.json"));
  std::string keyHex = run("printf '%s' '" + keys["cpam77"][0]["key"].get<std::string>() + "' | base64 -d | od -An -tx1 | tr -d ' \\n'");
  std::string expected = run("printf " + nir(3) + " | openssl dgst -sha256 -mac HMAC -macopt hexkey:" + keyHex);
  std::vector<std::string> f;
  std::set<std::string> pseudonyms;
  std::stringstream lines(files["patients.csv"]);
  std::string line;
  std::getline(lines, line);
  EXPECT_EQ(line, "pseudo_id;pathology;age_band;sex;inclusion_semester;period_start;period_end;phase;indicator;value;unit;source");
  int vasRows = 0;
  while (std::getline(lines, line)) {
    ASSERT_TRUE(extract::splitCsvLine(line, f));
    ASSERT_EQ(f.size(), 12u) << line;
    pseudonyms.insert(f[0]);
    EXPECT_EQ(f[2], "35-44");  // born in May 1985, included in 2026
    vasRows += f[8] == "vas";
  }
  EXPECT_EQ(pseudonyms.size(), 12u);
  EXPECT_EQ(vasRows, 12);
  std::string mine = expected.substr(expected.rfind(' ') + 1, 64);
  EXPECT_TRUE(pseudonyms.count(mine)) << expected;
  // The evaluator's domain has a key of its own: the same patients, none of the same pseudonyms.
  json evaluation;
  auto theirs = extract("evaluateur", evaluation);
  ASSERT_TRUE(theirs.count("patients.csv"));
  std::stringstream theirLines(theirs["patients.csv"]);
  std::set<std::string> theirPseudonyms;
  std::getline(theirLines, line);
  while (std::getline(theirLines, line))
    if (extract::splitCsvLine(line, f)) theirPseudonyms.insert(f[0]);
  EXPECT_EQ(theirPseudonyms.size(), 12u);
  for (const auto& x : theirPseudonyms) EXPECT_FALSE(pseudonyms.count(x)) << x;
  // The aggregates: 12 men with low back pain published; the other strata zero; no cell in 1..4.
  std::stringstream agg(files["indicators.csv"]);
  std::getline(agg, line);
  bool admitted = false;
  while (std::getline(agg, line)) {
    ASSERT_TRUE(extract::splitCsvLine(line, f));
    if (f[5] == "published" && f[0] != "professionals" && !f[4].empty()) {
      long n = std::atol(f[4].c_str());
      EXPECT_FALSE(n >= 1 && n < 5) << line;
    }
    if (f[0] == "patients-admitted" && f[1] == "pathology=low-back-pain|sex=male") admitted = f[2] == "12";
  }
  EXPECT_TRUE(admitted) << files["indicators.csv"];
  // Scores from a questionnaire's group (BPI interference: (23 + 12 x 33) / 7 / 12 = 4.99) and from
  // an observation's component (the Dallas dimensions of the example CIED).
  EXPECT_NE(files["indicators.csv"].find("bpi-interference;*;4.99;{score};12;published"), std::string::npos) << files["indicators.csv"];
  EXPECT_NE(files["indicators.csv"].find("bpi-severity;*;3.5;{score};12;published"), std::string::npos);
  EXPECT_NE(files["indicators.csv"].find("dallas-daily-activities;*;65;%;12;published"), std::string::npos);
  std::cout << "[ extract  ] indicators.csv:\n" << files["indicators.csv"] << "[ extract  ] patients.csv, first lines:\n"
            << files["patients.csv"].substr(0, files["patients.csv"].find('\n', 600)) << "\n";
  // The extract is an audit record naming its patients.
  std::string patient = json::parse(http_->get("/fhir/Patient?identifier=urn:oid:1.2.250.1.213.1.4.8|" + nir(3)).body)["entry"][0]["resource"]["id"];
  std::string audit = http_->get("/fhir/AuditEvent?patient=Patient/" + patient + "&_count=500").body;
  EXPECT_NE(audit.find("\\\"recipient\\\":\\\"cpam77\\\""), std::string::npos) << audit.substr(0, 2000);
  // A new key version: other pseudonyms, the manifest says which.
  auto rot = http_->request("POST", "/admin/v1/extracts/keys/cpam77/rotate", "{}", {{"Content-Type", "application/json"}});
  ASSERT_EQ(rot.status, 200) << rot.body;
  EXPECT_EQ(json::parse(rot.body)["keyVersion"], 2);
  json second;
  auto again = extract("cpam77", second);
  EXPECT_EQ(json::parse(again["manifest.json"])["pseudonym"]["keyVersion"], 2);
  EXPECT_EQ(again["patients.csv"].find(mine), std::string::npos);
}

// The caisse's administrative agents: the fee statement and the payment file, checked against the
// tariffs by hand: twelve CIED by one GP at 3 C of 23.00 EUR, and the shared-dossier fee of the
// decree (35.06 EUR) for ten of the twelve patients.
TEST_F(ExtractTest, TheCaissesAgentsGetTheFeeStatementAndThePaymentFile) {
  json manifest;
  auto files = extract("paiements", manifest);
  ASSERT_TRUE(files.count("fees.csv")) << manifest.dump();
  EXPECT_FALSE(files.count("patients.csv"));
  std::map<std::string, std::vector<std::string>> byFee;
  std::stringstream fees(files["fees.csv"]);
  std::string line;
  std::getline(fees, line);
  EXPECT_EQ(line, "professional;category;year;fee;count;patients;key_letter;coefficient;unit_amount;amount;currency;source");
  std::vector<std::string> f;
  while (std::getline(fees, line)) {
    ASSERT_TRUE(extract::splitCsvLine(line, f));
    byFee[f[3]] = f;
  }
  ASSERT_TRUE(byFee.count("CIED-3C")) << files["fees.csv"];
  EXPECT_EQ(byFee["CIED-3C"][0], "rpps:10101234567");
  EXPECT_EQ(byFee["CIED-3C"][4], "12");
  EXPECT_EQ(byFee["CIED-3C"][6], "C");
  EXPECT_EQ(byFee["CIED-3C"][7], "3");
  EXPECT_EQ(byFee["CIED-3C"][9], "828");  // 12 x 3 x 23.00
  ASSERT_TRUE(byFee.count("DOSSIER")) << files["fees.csv"];
  EXPECT_EQ(byFee["DOSSIER"][4], "10");     // at most ten patients
  EXPECT_EQ(byFee["DOSSIER"][9], "350.6");  // 10 x 35.06 (the decree's amount, in force)
  EXPECT_NE(byFee["DOSSIER"][11].find("Art. 9"), std::string::npos);
  std::stringstream pay(files["payments.csv"]);
  std::getline(pay, line);
  std::getline(pay, line);
  ASSERT_TRUE(extract::splitCsvLine(line, f));
  EXPECT_EQ(f[0], "rpps:10101234567");
  EXPECT_EQ(f[1], "2026");
  EXPECT_EQ(f[2], "1178.6");
}

TEST_F(ExtractTest, AFinancialPartnerGetsAggregatesOnlyAndSmallCellsAreMasked) {
  json manifest;
  auto files = extract("ligue", manifest);
  ASSERT_TRUE(files.count("indicators.csv")) << manifest.dump();
  EXPECT_FALSE(files.count("patients.csv"));
  EXPECT_FALSE(manifest.contains("pseudonym"));
  // `passerelle extract open` on the recipient's side: decrypted, verified, checked against the
  // manifest; refused with another signer.
  std::string c = conf_.path(), bin = PASSERELLE_BINARY, package = manifest["package"];
  std::string opened = run(bin + " extract open " + package + " --certificate " + c + "/recipient.crt --key " + c + "/recipient.key --signer " +
                           gw_->dataDir() + "/extract-signing/signer.crt --out " + c + "/opened");
  EXPECT_NE(opened.find("files checked against the manifest"), std::string::npos) << opened;
  EXPECT_EQ(readFile(c + "/opened/indicators.csv"), files["indicators.csv"]);
  std::string refused = run(bin + " extract open " + package + " --certificate " + c + "/recipient.crt --key " + c + "/recipient.key --signer " + c +
                            "/recipient.crt --out " + c + "/refused");
  EXPECT_EQ(refused.rfind("FAILED", 0), 0u) << refused;
  EXPECT_FALSE(fs::exists(c + "/refused/indicators.csv"));
  // One exit: a cell of 1, masked with its complement (the total alone would give it away).
  json exit = example("exit");
  exit["patient"]["networkId"] = "P77-000101";
  exit["date"] = "2026-09-01";
  post("exit", exit);
  json second;
  auto again = extract("ligue", second);
  std::stringstream agg(again["indicators.csv"]);
  std::string line;
  std::vector<std::string> f;
  int exitsMasked = 0, exitsPublished = 0;
  while (std::getline(agg, line)) {
    ASSERT_TRUE(extract::splitCsvLine(line, f));
    if (f[0] != "exits") continue;
    (f[5] == "masked" ? exitsMasked : exitsPublished) += 1;
    if (f[5] == "masked") EXPECT_TRUE(f[2].empty() && f[4].empty()) << line;
  }
  EXPECT_GE(exitsMasked, 2) << again["indicators.csv"];
  // An unknown recipient, a period backwards: clear errors, nothing written.
  auto bad = http_->request("POST", "/admin/v1/extracts", json{{"recipient", "nobody"}, {"from", "2026-01-01"}, {"to", "2026-12-31"}}.dump(),
                            {{"Content-Type", "application/json"}});
  EXPECT_EQ(bad.status, 404) << bad.body;
  bad = http_->request("POST", "/admin/v1/extracts", json{{"recipient", "ligue"}, {"from", "2026-12-31"}, {"to", "2026-01-01"}}.dump(),
                       {{"Content-Type", "application/json"}});
  EXPECT_EQ(bad.status, 400) << bad.body;
}

// The caisse's baseline (what each patient consumed in the 6 months before inclusion), sent under
// the pseudonyms of its key domain: refused whole when a row cannot be linked, imported as
// utilisation observations with the caisse as their source otherwise (again: replaced, not
// doubled), then in the rows and the before/after aggregates and the report of the next extract.
TEST_F(ExtractTest, TheCaissesBaselineIsLinkedThroughItsPseudonymsAllOrNothing) {
  auto post = [&](const std::string& text) {
    return http_->request("POST", "/admin/v1/extracts/baselines/cpam77", text, {{"Content-Type", "text/csv"}});
  };
  std::string header = "pseudo_id;key_version;period_start;period_end;indicator;value\n";
  auto early = post(header + std::string(64, 'a') + ";;2025-09;2026-02;SICK-LEAVE-DAYS;3\n");
  EXPECT_EQ(early.status, 400);
  EXPECT_NE(early.body.find("has no key yet"), std::string::npos) << early.body;
  json manifest;
  extract("cpam77", manifest);  // the domain's first key
  json keys = json::parse(readFile(gw_->dataDir() + "/extract-keys.json"));
  std::string keyHex = run("printf '%s' '" + keys["cpam77"][0]["key"].get<std::string>() + "' | base64 -d | od -An -tx1 | tr -d ' \\n'");
  auto pseudo = [&](const std::string& ins) {
    std::string out = run("printf " + ins + " | openssl dgst -sha256 -mac HMAC -macopt hexkey:" + keyHex);
    return out.substr(out.rfind(' ') + 1, 64);
  };
  std::string rows;
  for (int i = 1; i <= 12; ++i) rows += pseudo(nir(i)) + ";1;2025-09;2026-02;SICK-LEAVE-DAYS;" + std::to_string(10 + i) + "\n";
  auto countBaseline = [&] {
    // (the consultation reports of the 12 CIED also recorded their sick leave)
    json b = json::parse(http_->get("/fhir/Observation?code=https://douleur77.fr/fhir/CodeSystem/d77-ind|SICK-LEAVE-DAYS&_summary=count").body);
    return b.value("total", -1) - 12;
  };
  // A pseudonym of nobody in the network, a period that is not the 6 months before: nothing kept.
  auto unknown = post(header + rows + pseudo(nir(99)) + ";1;2025-09;2026-02;SICK-LEAVE-DAYS;4\n" + pseudo(nir(1)) + ";1;2024-01;2024-06;HOSP-DAYS;2\n");
  EXPECT_EQ(unknown.status, 400);
  EXPECT_NE(unknown.body.find("line 14: the pseudonym is not one of the network's patients"), std::string::npos) << unknown.body;
  EXPECT_NE(unknown.body.find("line 15: the period is not within the 6 months before"), std::string::npos) << unknown.body;
  // An OperationOutcome with an issue per line at fault, located at its line.
  json outcome = json::parse(unknown.body);
  ASSERT_EQ(outcome["issue"].size(), 3u) << unknown.body;
  EXPECT_EQ(outcome["issue"][1]["location"][0], "line 14");
  EXPECT_EQ(outcome["issue"][2]["location"][0], "line 15");
  EXPECT_EQ(countBaseline(), 0);
  auto latin1 = post(header + rows + pseudo(nir(1)) + ";1;2025-09;2026-02;IMAGING;1;\xE9\n");
  EXPECT_EQ(latin1.status, 400);
  EXPECT_NE(latin1.body.find("not UTF-8"), std::string::npos) << latin1.body;
  auto wrongKey = post(header + pseudo(nir(1)) + ";7;2025-09;2026-02;IMAGING;1\n");
  EXPECT_EQ(wrongKey.status, 400);
  EXPECT_NE(wrongKey.body.find("key version 7"), std::string::npos) << wrongKey.body;
  EXPECT_EQ(countBaseline(), 0);
  // The right file, twice: twelve observations.
  for (int round = 0; round < 2; ++round) {
    auto ok = post(header + rows);
    ASSERT_EQ(ok.status, 200) << ok.body;
    json answer = json::parse(ok.body);
    EXPECT_EQ(answer["rows"], 12);
    EXPECT_EQ(answer["patients"], 12);
    EXPECT_EQ(countBaseline(), 12);
  }
  // Audited, naming the patient.
  std::string patient = json::parse(http_->get("/fhir/Patient?identifier=urn:oid:1.2.250.1.213.1.4.8|" + nir(3)).body)["entry"][0]["resource"]["id"];
  std::string audit = http_->get("/fhir/AuditEvent?patient=Patient/" + patient + "&_count=500").body;
  EXPECT_NE(audit.find("\\\"keyVersions\\\""), std::string::npos) << audit.substr(0, 2000);
  // In the next extract: the rows (phase before, source caisse) and the before/after aggregate.
  json second;
  auto files = extract("cpam77", second);
  std::stringstream lines(files["patients.csv"]);
  std::string line;
  std::vector<std::string> f;
  int before = 0;
  while (std::getline(lines, line)) {
    ASSERT_TRUE(extract::splitCsvLine(line, f));
    if (f[8] != "sick-leave-days" || f[11] != "caisse") continue;
    EXPECT_EQ(f[7], "before") << line;
    EXPECT_EQ(f[5], "2025-09") << line;
    EXPECT_EQ(f[6], "2026-02") << line;
    ++before;
  }
  EXPECT_EQ(before, 12);
  EXPECT_NE(files["indicators.csv"].find("sick-leave-days;pathology=low-back-pain|phase=before;16.5;d;12;published"), std::string::npos)
      << files["indicators.csv"];  // (11 + ... + 22) / 12: the caisse's figures, not the 45 days the CIED reported
  // The report shows the same cell in its before/after chart.
  ASSERT_TRUE(files.count("report.html"));
  const std::string& html = files["report.html"];
  EXPECT_NE(html.find("<svg"), std::string::npos);
  std::regex cell("data-indicator=\"sick-leave-days\"[^>]*data-stratum=\"pathology=low-back-pain\\|phase=before\"[^>]*data-value=\"16.5\"");
  EXPECT_TRUE(std::regex_search(html, cell)) << html.substr(0, 3000);
  EXPECT_EQ(html.find("<script"), std::string::npos);
  // Only a recipient of pseudonymised rows may send a baseline.
  EXPECT_EQ(http_->request("POST", "/admin/v1/extracts/baselines/ligue", header + rows, {{"Content-Type", "text/csv"}}).status, 400);
}

// Scheduled extracts: from the experiment's first day (2025-03-01) to today (2026-09-10), the annual
// report of 2025 and the interim report of the first 18 months are due, once.
TEST_F(ExtractTest, ScheduledExtractsAreRunOnceWhenDue) {
  auto r = http_->request("POST", "/admin/v1/extracts/scheduled", "{}", {{"Content-Type", "application/json"}});
  ASSERT_EQ(r.status, 200) << r.body;
  json done = json::parse(r.body)["extracts"];
  ASSERT_EQ(done.size(), 2u) << done.dump();
  std::map<std::string, std::pair<std::string, std::string>> periods;
  for (const auto& m : done) periods[m["kind"]] = {m["period"]["start"], m["period"]["end"]};
  EXPECT_EQ(periods["annual"], std::make_pair(std::string("2025-03-01"), std::string("2025-12-31")));
  EXPECT_EQ(periods["interim"], std::make_pair(std::string("2025-03-01"), std::string("2026-08-31")));
  auto again = http_->request("POST", "/admin/v1/extracts/scheduled", "{}", {{"Content-Type", "application/json"}});
  ASSERT_EQ(again.status, 200) << again.body;
  EXPECT_TRUE(json::parse(again.body)["extracts"].empty()) << again.body;
  // A final evaluation keeps the evaluable patients only (the example's pain started more than a year
  // before inclusion: none is evaluable).
  auto final = http_->request("POST", "/admin/v1/extracts", json{{"recipient", "ligue"}, {"from", "2026-01-01"}, {"to", "2026-12-31"}, {"kind", "final"}}.dump(),
                              {{"Content-Type", "application/json"}});
  ASSERT_EQ(final.status, 200) << final.body;
  EXPECT_EQ(json::parse(final.body)["kind"], "final");
  auto wrong = http_->request("POST", "/admin/v1/extracts", json{{"recipient", "ligue"}, {"from", "2026-01-01"}, {"to", "2026-12-31"}, {"kind", "weekly"}}.dump(),
                              {{"Content-Type", "application/json"}});
  EXPECT_EQ(wrong.status, 400);
  auto progress = json::parse(http_->get("/admin/v1/extracts/progress").body);
  EXPECT_EQ(progress["running"], false);
}

// The transfer by SFTP to a real OpenSSH server started here: down at the first attempt (retried),
// then up: the package lands under its final name, byte for byte, with its receipt.
TEST(ExtractTransfer, APackageIsUploadedBySftpOnceTheServerIsUp) {
  if (!fs::exists(kSshd) || !fs::exists(kKeygen)) GTEST_SKIP() << "no OpenSSH server at " << kSshd << " (Debian package openssh-server)";
  TempDir d;
  std::string p = d.path();
  SshServer sshd(p);
  std::string error;
  ASSERT_TRUE(sshd.setUp(error)) << error;
  sshd.kill();
  std::string pki = run("cd '" + p + "' && openssl req -x509 -newkey rsa:2048 -nodes -days 30 -subj '/CN=Service medical' -keyout recipient.key -out recipient.crt");
  ASSERT_EQ(pki.rfind("FAILED", 0), std::string::npos) << pki;
  json transfer = {{"url", sshd.url()}, {"user", currentUser()}, {"privateKey", "user_key"}, {"hostKeySha256", sshd.fingerprint()},
                   {"initialDelayMs", 300}, {"maxDelayMs", 300}, {"maxAttempts", 50}};
  std::ofstream(p + "/recipients.json") << json::array({{{"id", "cpam77"}, {"role", "supervisor"}, {"certificate", "recipient.crt"}, {"transfer", transfer}}}).dump();
  TestGateway gw({"extract.recipients=" + p + "/recipients.json", "extract.indicators=" + std::string(PASSERELLE_SOURCE_DIR) + "/conf/extracts/indicators.json"});
  HttpClient http(gw.httpPort());
  auto m = json::parse(http.request("POST", "/admin/v1/extracts", json{{"recipient", "cpam77"}, {"from", "2026-01-01"}, {"to", "2026-12-31"}}.dump(),
                                    {{"Content-Type", "application/json"}})
                           .body);
  std::string id = m.value("id", "");
  ASSERT_FALSE(id.empty()) << m.dump();
  ASSERT_EQ(http.request("POST", "/admin/v1/extracts/" + id + "/send", "{}", {{"Content-Type", "application/json"}}).status, 202);
  json deliveries;
  for (int i = 0; i < 250; ++i) {
    deliveries = json::parse(http.get("/admin/v1/outbox?destination=extract:cpam77").body)["deliveries"];
    if (!deliveries.empty() && deliveries[0].value("attempts", 0) >= 1) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  ASSERT_EQ(deliveries.size(), 1u);
  EXPECT_EQ(deliveries[0]["status"], "queued") << deliveries.dump();
  EXPECT_FALSE(deliveries[0]["lastError"].get<std::string>().empty());
  ASSERT_TRUE(sshd.start(error)) << error;
  std::string receiptFile = gw.dataDir() + "/extracts/" + id + "/receipt.json";
  for (int i = 0; i < 500 && !fs::exists(receiptFile); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(20));
  ASSERT_TRUE(fs::exists(receiptFile)) << readFile(p + "/sshd.log");
  EXPECT_EQ(readFile(sshd.remote() + "/" + id + ".p7m"), readFile(m["package"].get<std::string>()));
  EXPECT_FALSE(fs::exists(sshd.remote() + "/" + id + ".p7m.part"));
  json receipt = json::parse(readFile(receiptFile));
  EXPECT_EQ(receipt["bytesSent"], fs::file_size(m["package"].get<std::string>()));
  EXPECT_EQ(receipt["remotePath"], sshd.remote() + "/" + id + ".p7m");
}

// The transfer: the package PUT over HTTPS with mutual TLS to a real server (python's, started here)
// that asks for the gateway's client certificate; its receipt kept; an endpoint that is down is
// retried, then given up, with the reason on the delivery.
TEST(ExtractTransfer, APackageIsSentOverMutualTlsAndItsReceiptKept) {
  TempDir d;
  std::string p = d.path();
  std::string pki = run("set -e; cd '" + p + "'; "
                        "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout ca.key -out ca.crt -days 2 -subj '/CN=Test CA'; "
                        "for n in caisse gateway; do "
                        "openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout $n.key -out $n.csr -subj \"/CN=$n\"; "
                        "printf 'subjectAltName=DNS:localhost,IP:127.0.0.1' > $n.ext; "
                        "openssl x509 -req -in $n.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out $n.crt -days 2 -extfile $n.ext; done; "
                        "openssl req -x509 -newkey rsa:2048 -nodes -days 30 -subj '/CN=Service medical' -keyout recipient.key -out recipient.crt");
  ASSERT_EQ(pki.rfind("FAILED", 0), std::string::npos) << pki;
  fs::create_directories(p + "/received");
  FILE* server = popen(("python3 " + std::string(PASSERELLE_SOURCE_DIR) + "/tests/integration/upload_server.py " + p + "/caisse.crt " + p +
                        "/caisse.key " + p + "/ca.crt " + p + "/received")
                           .c_str(),
                       "r");
  ASSERT_TRUE(server);
  char portLine[64] = {0};
  ASSERT_TRUE(std::fgets(portLine, sizeof portLine, server));
  int port = 0, pid = 0;
  ASSERT_EQ(std::sscanf(portLine, "%d %d", &port, &pid), 2) << portLine;
  ASSERT_GT(port, 0);
  json transfer = {{"url", "https://localhost:" + std::to_string(port) + "/extracts"}, {"clientCertificate", "gateway.crt"}, {"clientKey", "gateway.key"},
                   {"caFile", "ca.crt"}, {"initialDelayMs", 50}, {"maxDelayMs", 100}, {"maxAttempts", 3}};
  json down = transfer;
  down["url"] = "https://localhost:1/extracts";
  std::ofstream(p + "/recipients.json") << json::array({{{"id", "cpam77"}, {"role", "supervisor"}, {"certificate", "recipient.crt"}, {"transfer", transfer}},
                                                        {{"id", "ailleurs"}, {"role", "supervisor"}, {"certificate", "recipient.crt"}, {"transfer", down}}})
                                               .dump();
  {
    TestGateway gw({"extract.recipients=" + p + "/recipients.json",
                    "extract.indicators=" + std::string(PASSERELLE_SOURCE_DIR) + "/conf/extracts/indicators.json"});
    HttpClient http(gw.httpPort());
    auto runFor = [&](const std::string& who) {
      auto r = http.request("POST", "/admin/v1/extracts", json{{"recipient", who}, {"from", "2026-01-01"}, {"to", "2026-12-31"}}.dump(),
                            {{"Content-Type", "application/json"}});
      EXPECT_EQ(r.status, 200) << r.body;
      return json::parse(r.body, nullptr, false);
    };
    json m = runFor("cpam77");
    std::string id = m.value("id", "");
    auto q = http.request("POST", "/admin/v1/extracts/" + id + "/send", "{}", {{"Content-Type", "application/json"}});
    ASSERT_EQ(q.status, 202) << q.body;
    std::string received = p + "/received/" + id + ".p7m";
    for (int i = 0; i < 500 && !fs::exists(gw.dataDir() + "/extracts/" + id + "/receipt.json"); ++i)
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    ASSERT_TRUE(fs::exists(received));
    EXPECT_EQ(readFile(received), readFile(m["package"].get<std::string>()));
    json receipt = json::parse(readFile(gw.dataDir() + "/extracts/" + id + "/receipt.json"));
    EXPECT_EQ(receipt["status"], 201);
    json answer = json::parse(receipt["answer"].get<std::string>());
    EXPECT_EQ(answer["sha256"], receipt["packageSha256"]);
    EXPECT_EQ(answer["by"], "gateway");  // the server saw the gateway's client certificate
    // Down: retried, then given up with the reason; nothing else disturbed.
    json other = runFor("ailleurs");
    ASSERT_EQ(http.request("POST", "/admin/v1/extracts/" + other.value("id", "") + "/send", "{}", {{"Content-Type", "application/json"}}).status, 202);
    json deliveries;
    for (int i = 0; i < 500; ++i) {
      deliveries = json::parse(http.get("/admin/v1/outbox?destination=extract:ailleurs").body)["deliveries"];
      if (!deliveries.empty() && deliveries[0]["status"] == "dead") break;
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    ASSERT_EQ(deliveries.size(), 1u);
    EXPECT_EQ(deliveries[0]["status"], "dead");
    EXPECT_EQ(deliveries[0]["attempts"], 3);
    EXPECT_FALSE(deliveries[0]["lastError"].get<std::string>().empty());
    EXPECT_EQ(json::parse(http.get("/admin/v1/outbox?destination=extract:cpam77").body)["deliveries"][0]["status"], "sent");
    // Unknown extracts are refused.
    EXPECT_EQ(http.request("POST", "/admin/v1/extracts/nothing-here/send", "{}", {{"Content-Type", "application/json"}}).status, 404);
  }
  ::kill(pid, SIGTERM);
  pclose(server);
}

// A recipient certificate that cannot receive (for signing only; an expired one is refused the same
// way, checked in secure_package_test): nothing is sealed, nothing is written, and the answer says why.
TEST(ExtractRefusal, NothingIsWrittenForACertificateThatCannotReceive) {
  TempDir d;
  std::string p = d.path();
  std::string pki = run("cd '" + p + "' && openssl req -x509 -newkey rsa:2048 -nodes -days 30 -subj '/CN=Signing only' "
                        "-addext 'keyUsage=critical,digitalSignature' -keyout signing.key -out signing.crt");
  ASSERT_EQ(pki.rfind("FAILED", 0), std::string::npos) << pki;
  std::ofstream(p + "/recipients.json") << json::array({{{"id", "signing"}, {"role", "supervisor"}, {"certificate", "signing.crt"}}}).dump();
  TestGateway gw({"extract.recipients=" + p + "/recipients.json", "extract.indicators=" + std::string(PASSERELLE_SOURCE_DIR) + "/conf/extracts/indicators.json"});
  HttpClient http(gw.httpPort());
  auto r = http.request("POST", "/admin/v1/extracts", json{{"recipient", "signing"}, {"from", "2026-01-01"}, {"to", "2026-12-31"}}.dump(),
                        {{"Content-Type", "application/json"}});
  EXPECT_EQ(r.status, 400) << r.body;
  EXPECT_NE(r.body.find("is not sealed (nothing written)"), std::string::npos) << r.body;
  std::error_code ec;
  EXPECT_TRUE(!fs::exists(gw.dataDir() + "/extracts") || fs::is_empty(gw.dataDir() + "/extracts", ec));
  EXPECT_TRUE(json::parse(http.get("/admin/v1/extracts").body)["extracts"].empty());
}

TEST(ExtractConfig, RecipientsAndIndicatorsAreCheckedWhenLoaded) {
  TempDir dir;
  auto write = [&](const std::string& name, const json& j) {
    std::ofstream(dir.path() + "/" + name) << j.dump();
    return dir.path() + "/" + name;
  };
  auto low = extract::loadRecipients(write("r1.json", json::array({{{"id", "x"}, {"role", "supervisor"}, {"k", 4}}})));
  ASSERT_FALSE(low.ok());
  EXPECT_NE(low.error().message.find("below the minimum of 5"), std::string::npos) << low.error().message;
  auto noDomain = extract::loadRecipients(write("r2.json", json::array({{{"id", "x"}, {"role", "caisse-medical"}}})));
  ASSERT_FALSE(noDomain.ok());
  EXPECT_NE(noDomain.error().message.find("domain"), std::string::npos);
  // A role the access policy does not know (a typo would otherwise get the aggregates of "others").
  auto typo = extract::loadRecipients(write("r5.json", json::array({{{"id", "x"}, {"role", "caisse-medicale"}, {"domain", "d"}}})),
                                      {"caisse-medical", "evaluator", "supervisor"});
  ASSERT_FALSE(typo.ok());
  EXPECT_NE(typo.error().message.find("\"caisse-medicale\" is not a role of the access policy"), std::string::npos) << typo.error().message;
  auto twice = extract::loadRecipients(write("r3.json", json::array({{{"id", "x"}, {"role", "supervisor"}}, {{"id", "x"}, {"role", "supervisor"}}})));
  EXPECT_FALSE(twice.ok());
  auto ok = extract::loadRecipients(write("r4.json", json::array({{{"id", "x"}, {"role", "evaluator"}, {"domain", "eval"}, {"certificate", "x.crt"}}})));
  ASSERT_TRUE(ok.ok()) << ok.error().message;
  EXPECT_TRUE(ok.value()[0].rows());
  EXPECT_EQ(ok.value()[0].k, 10);
  EXPECT_EQ(ok.value()[0].certificate, dir.path() + "/x.crt");
  auto unknown = extract::loadIndicators(write("i.json", json{{"indicators", json::array({{{"id", "happiness"}, {"title", "t"}, {"definition", "d"},
                                                                                           {"population", "p"}, {"numerator", "n"}, {"unit", "u"},
                                                                                           {"source", "s"}, {"compute", "happiness"}}})}}));
  ASSERT_FALSE(unknown.ok());
  EXPECT_NE(unknown.error().message.find("no computation \"happiness\""), std::string::npos) << unknown.error().message;
  auto shipped = extract::loadIndicators(std::string(PASSERELLE_SOURCE_DIR) + "/conf/extracts/indicators.json");
  ASSERT_TRUE(shipped.ok()) << shipped.error().message;
  // Every computation is used by the shipped declarations.
  std::set<std::string> used;
  for (const auto& i : shipped.value()) used.insert(i.compute);
  EXPECT_EQ(used.size(), extract::computations().size());
  auto demo = extract::loadRecipients(std::string(PASSERELLE_SOURCE_DIR) + "/conf/extracts/recipients.json");
  ASSERT_TRUE(demo.ok()) << demo.error().message;
}

}  // namespace
}  // namespace passerelle::testing
