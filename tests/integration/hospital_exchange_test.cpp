// The hospital exchange end to end: a gateway started in-process with its MLLP listener, partners
// written to a temporary conf/partners, and a hospital played by a real MLLP server started by the
// test. A referral document leaves as REF^I12, the hospital's RRI^I12 accepts it, its MDM^T02 brings
// the report into the dossier; faults on the hospital's side (down, answering AE/AR, closing in the
// middle) lose nothing and send nothing twice; bad input gets a NAK with an ERR segment and is kept.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <fstream>
#include <map>
#include <mutex>
#include <set>
#include <thread>

#include <nlohmann/json.hpp>

#include "connectors/mllp/mllp_framer.h"
#include "connectors/http/rest_client.h"
#include "connectors/mllp/mllp_transport.h"
#include "mappings/hl7v2/message.h"
#include "tests/support/http_client.h"
#include "tests/support/test_gateway.h"

using namespace passerelle;
using namespace passerelle::testing;
using nlohmann::json;

namespace {

const std::string kExamples = PASSERELLE_NETWORK_EXAMPLES;
const std::string kNir = "185057512345673";  // the example patient's INS

json example(const std::string& kind) { return json::parse(readFile(kExamples + "/" + kind + ".json")); }

std::string field(const std::string& message, const std::string& path) {
  std::vector<hl7v2::Issue> issues;
  auto m = hl7v2::Message::parse(message, issues);
  return m ? m->get(path) : std::string();
}

// The hospital's integration engine: an MLLP server that records what it receives and answers as
// told (AA by default; a queue of answers to give first: "AE", "AR", "close", "silent").
class Hospital {
 public:
  explicit Hospital(int port = 0, std::optional<mllp::TlsSettings> tls = std::nullopt) {
    mllp::ListenerOptions o;
    o.port = port;
    o.idleTimeoutSeconds = 5;
    o.tls = tls;
    std::string error;
    listener_ = mllp::Listener::start(o, [this](const mllp::Peer&, std::string_view m) { return answer(m); }, nullptr, error);
    if (!listener_) throw std::runtime_error(error);
  }
  int port() const { return listener_->port(); }
  void script(std::vector<std::string> answers) {
    std::lock_guard<std::mutex> lock(mutex_);
    script_ = std::move(answers);
  }
  // Messages received (every attempt) and those it accepted, by control id.
  std::vector<std::string> received() {
    std::lock_guard<std::mutex> lock(mutex_);
    return received_;
  }
  std::vector<std::string> accepted() {
    std::lock_guard<std::mutex> lock(mutex_);
    return accepted_;
  }
  void stop() { listener_->stop(); }

 private:
  std::optional<std::string> answer(std::string_view m) {
    std::string msg(m), code = "AA";
    {
      std::lock_guard<std::mutex> lock(mutex_);
      received_.push_back(msg);
      if (!script_.empty()) {
        code = script_.front();
        script_.erase(script_.begin());
      }
      if (code == "AA") accepted_.push_back(msg);
    }
    if (code == "close") return std::nullopt;
    if (code == "silent") {
      std::this_thread::sleep_for(std::chrono::milliseconds(1500));
      return std::nullopt;
    }
    return "MSH|^~\\&|EAI|930110036|PASSERELLE|DOULEUR77|20260910120000||ACK^I12^ACK|A" + field(msg, "MSH-10") + "|P|2.5\r" +
           "MSA|" + code + "|" + field(msg, "MSH-10") + "|" + (code == "AA" ? "" : "refused by the test") + "\r";
  }
  std::unique_ptr<mllp::Listener> listener_;
  std::mutex mutex_;
  std::vector<std::string> script_, received_, accepted_;
};

std::string partnerJson(int port, int maxAttempts = 6, int connections = 1) {
  return json{{"id", "avicenne"},
              {"name", "Hôpital Avicenne"},
              {"finess", "930110036"},
              {"account", "avicenne-eai"},
              {"role", "hospital"},
              {"inbound", {{"sendingApplication", "EAI-AVICENNE"}, {"sendingFacility", "930110036"}}},
              {"outbound", {{"protocol", "mllp"}, {"host", "127.0.0.1"}, {"port", port}, {"receivingApplication", "EAI-AVICENNE"},
                            {"connectTimeoutMs", 500}, {"answerTimeoutMs", 1000}, {"connections", connections}}},
              {"retry", {{"maxAttempts", maxAttempts}, {"initialDelayMs", 50}, {"maxDelayMs", 200}}}}
      .dump(2);
}

class HospitalExchangeTest : public ::testing::Test {
 protected:
  void start(int hospitalPort, int maxAttempts = 6, std::vector<std::string> sets = {}, int connections = 1) {
    std::ofstream(partners_.path() + "/avicenne.json") << partnerJson(hospitalPort, maxAttempts, connections);
    sets.push_back("mllp.port=0");
    sets.push_back("partners.dir=" + partners_.path());
    sets.push_back("network.today=2026-09-10");
    sets.push_back("network.sweep_interval_seconds=0");
    gw_ = std::make_unique<TestGateway>(sets);
    http_ = std::make_unique<HttpClient>(gw_->httpPort());
  }

  json post(const std::string& kind, json d) {
    d["documentId"] = "T-" + kind + "-" + std::to_string(++ids_);
    auto r = http_->request("POST", "/network/v1/" + kind, d.dump(), {{"Content-Type", "application/json"}});
    EXPECT_EQ(r.status, 200) << kind << ": " << r.body;
    return json::parse(r.body, nullptr, false);
  }

  // The network of the examples, the patient included with consent and a CIED.
  void prepare() {
    post("structure", example("structure"));
    post("professional", example("professional"));
    json coord = example("professional");
    coord["professional"] = {{"rpps", "10102223334"}, {"family", "BERNARD"}, {"given", {"Luc"}}, {"category", "coordinator"}, {"level", 2}};
    coord.erase("trainings");
    post("professional", coord);
    post("inclusion", example("inclusion"));
    post("consent", example("consent"));
    post("cied", example("cied"));
  }

  json referral(const std::string& id) {
    json r = example("referral");
    r["referralId"] = id;
    return r;
  }

  std::vector<json> search(const std::string& query) {
    auto r = http_->get("/fhir/" + query);
    EXPECT_EQ(r.status, 200) << query << ": " << r.body;
    std::vector<json> out;
    json b = json::parse(r.body, nullptr, false);
    for (const auto& e : b.value("entry", json::array())) out.push_back(e["resource"]);
    return out;
  }

  json task(const std::string& referralId) {
    auto t = search("Task?identifier=https://douleur77.fr/fhir/sid/referral-task|" + referralId);
    EXPECT_EQ(t.size(), 1u);
    return t.empty() ? json::object() : t[0];
  }

  json outbox(const std::string& query = "") {
    auto r = http_->get("/admin/v1/outbox" + query);
    EXPECT_EQ(r.status, 200) << r.body;
    return json::parse(r.body, nullptr, false);
  }

  // Sends an HL7 v2 message to the gateway's MLLP port as the hospital; the acknowledgement.
  std::string send(const std::string& message) {
    if (!sender_) {
      mllp::SenderOptions so;
      so.host = "127.0.0.1";
      so.port = gw_->mllpPort();
      so.answerTimeoutMs = 10000;
      sender_ = std::make_unique<mllp::Sender>(so);
    }
    auto out = sender_->exchange(message);
    EXPECT_TRUE(out.answered) << out.error;
    return out.answer;
  }

  template <typename F>
  bool eventually(F f, int ms = 10000) {
    for (auto end = std::chrono::steady_clock::now() + std::chrono::milliseconds(ms); std::chrono::steady_clock::now() < end;) {
      if (f()) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    return f();
  }

  static std::string rri(const std::string& control, const std::string& referralId, const std::string& status) {
    return "MSH|^~\\&|EAI-AVICENNE|930110036|PASSERELLE|DOULEUR77|20260911093000||RRI^I12^RRI_I12|" + control +
           "|P|2.5|||||FRA|UNICODE UTF-8\r"
           "RF1|" + status + "^^HL70283|R|Med||O|" + referralId + "^DOULEUR77|20260911\r"
           "PID|1||" + kNir + "^^^ASIP-SANTE-INS-NIR&1.2.250.1.213.1.4.8&ISO^INS||DURAND^Julien^^^^^L||19850514|M\r";
  }

  static std::string mdm(const std::string& control, const std::string& referralId, const std::string& base64,
                         const std::string& nir = kNir, const std::string& event = "T02", const std::string& replaced = "") {
    return "MSH|^~\\&|EAI-AVICENNE|930110036|PASSERELLE|DOULEUR77|20260920101500||MDM^" + event + "^MDM_T02|" + control +
           "|P|2.6|||||FRA|UNICODE UTF-8\r"
           "EVN||20260920101500\r"
           "PID|||" + nir + "^^^ASIP-SANTE-INS-NIR&1.2.250.1.213.1.4.8&ISO^INS||DURAND^Julien^^^^^L||19850514|M\r"
           "PV1|1|O\r"
           "TXA|1|11488-4|TEXT|20260920101000+0200||||||||2.999.77.1.77." + control + "^AVICENNE|" + replaced + "|" + referralId + "||||LA\r"
           "OBX|1|ED|11488-4^Compte rendu de consultation^LN||^TEXT^XML^Base64^" + base64 + "||||||F\r";
  }

  TempDir partners_;
  std::unique_ptr<TestGateway> gw_;
  std::unique_ptr<HttpClient> http_;
  std::unique_ptr<mllp::Sender> sender_;
  int ids_ = 0;
};

// "PD94bWwgdmVyc2lvbj0iMS4wIj8+PENsaW5pY2FsRG9jdW1lbnQvPg==" is <?xml version="1.0"?><ClinicalDocument/>
const std::string kCda = "PD94bWwgdmVyc2lvbj0iMS4wIj8+PENsaW5pY2FsRG9jdW1lbnQvPg==";

TEST_F(HospitalExchangeTest, AReferralLeavesAsRefI12AndItsReplyAndReportComeBack) {
  Hospital hospital;
  start(hospital.port());
  prepare();
  post("referral", referral("ORI-2026-0001"));

  ASSERT_TRUE(eventually([&] { return hospital.accepted().size() == 1; })) << outbox().dump();
  std::string ref = hospital.accepted()[0];
  EXPECT_EQ(field(ref, "MSH-9.1") + "^" + field(ref, "MSH-9.2"), "REF^I12");
  EXPECT_EQ(field(ref, "MSH-5"), "EAI-AVICENNE");
  EXPECT_EQ(field(ref, "RF1-6.1"), "ORI-2026-0001");
  EXPECT_EQ(field(ref, "RF1-8"), "20260924");  // due: requested + the centre's 21 days
  EXPECT_EQ(field(ref, "PID-3.1"), kNir);
  EXPECT_EQ(field(ref, "PID-3.4.2"), "1.2.250.1.213.1.4.8");
  EXPECT_EQ(field(ref, "PID-3.5"), "INS");
  EXPECT_EQ(field(ref, "PRD-1"), "RP");
  EXPECT_EQ(field(ref, "PRD-7.1"), "10101234567");
  EXPECT_EQ(field(ref, "PRD[2]-1"), "RT");
  EXPECT_EQ(field(ref, "PRD[2]-7.1"), "930110036");
  EXPECT_EQ(field(ref, "DG1-3.1"), "M54.5");
  EXPECT_EQ(field(ref, "OBX-3.1"), "72514-3");
  EXPECT_EQ(field(ref, "OBX-5"), "7.5");
  ASSERT_TRUE(eventually([&] { return outbox("?status=sent")["deliveries"].size() == 1; }));

  // The hospital accepts: the referral's Task moves, once, however often the answer is sent.
  std::string ack = send(rri("RRI-1", "ORI-2026-0001", "A"));
  EXPECT_EQ(field(ack, "MSA-1"), "AA") << ack;
  EXPECT_EQ(field(ack, "MSA-2"), "RRI-1");
  EXPECT_EQ(task("ORI-2026-0001")["status"], "accepted");
  EXPECT_EQ(send(rri("RRI-1", "ORI-2026-0001", "A")), ack);
  EXPECT_EQ(search("Task?code=https://douleur77.fr/fhir/CodeSystem/network-event|referral-update").size(), 1u);

  // The report: a DocumentReference linked to the referral, the CDA kept, the Task completed.
  ack = send(mdm("MDM-1", "ORI-2026-0001", kCda));
  EXPECT_EQ(field(ack, "MSA-1"), "AA") << ack;
  auto docs = search("DocumentReference?type=http://loinc.org|11488-4&custodian.identifier=https://finess.esante.gouv.fr|930110036");
  ASSERT_EQ(docs.size(), 1u);
  EXPECT_EQ(docs[0]["content"][0]["attachment"]["data"], kCda);
  EXPECT_EQ(docs[0]["content"][0]["attachment"]["contentType"], "text/xml");
  json t = task("ORI-2026-0001");
  EXPECT_EQ(t["status"], "completed");
  EXPECT_EQ(docs[0]["context"]["related"][0]["reference"], t["focus"]["reference"]);
  EXPECT_EQ(t["output"][0]["valueReference"]["reference"], "DocumentReference/" + docs[0]["id"].get<std::string>());
  // It is in the patient's dossier.
  std::string pid = docs[0]["subject"]["reference"].get<std::string>().substr(8);
  auto dossier = http_->get("/network/v1/patients/" + pid + "/dossier");
  EXPECT_EQ(dossier.status, 200);

  // T10 replaces it: the first one is superseded, the new one says so.
  ack = send(mdm("MDM-2", "ORI-2026-0001", kCda, kNir, "T10", "2.999.77.1.77.MDM-1"));
  EXPECT_EQ(field(ack, "MSA-1"), "AA") << ack;
  docs = search("DocumentReference?subject=Patient/" + pid + "&_sort=_lastUpdated");
  ASSERT_EQ(docs.size(), 2u) << json(docs).dump() << http_->get("/admin/v1/inbox").body;
  EXPECT_EQ(docs[0]["status"], "superseded");
  EXPECT_EQ(docs[1]["relatesTo"][0]["code"], "replaces");

  // Every message received or sent is in the audit trail, naming the patient.
  auto audit = http_->get("/fhir/AuditEvent?patient=" + pid + "&_count=200");
  ASSERT_EQ(audit.status, 200);
  EXPECT_NE(audit.body.find("mllp:avicenne"), std::string::npos);
  auto inbox = http_->get("/admin/v1/inbox").json();
  EXPECT_EQ(inbox["messages"].size(), 3u) << inbox.dump();
}

TEST_F(HospitalExchangeTest, DeliveriesSurviveAPartnerThatIsDownRefusesOrHangsUpAndKeepOrder) {
  // Nothing listens on the hospital's port at first.
  int port;
  {
    Hospital probe;
    port = probe.port();
    probe.stop();
  }
  start(port, 8, {}, 2);  // two sender connections: a patient's deliveries still go in order, on one
  prepare();
  post("referral", referral("ORI-A"));
  post("referral", referral("ORI-B"));  // same patient: must leave after ORI-A
  ASSERT_TRUE(eventually([&] {
    auto o = outbox("?status=queued");
    return o["deliveries"].size() == 2 && o["deliveries"][1].value("attempts", 0) >= 2;
  })) << outbox().dump();
  // It comes back, answers AE, then hangs up in the middle, then accepts.
  Hospital hospital(port);
  hospital.script({"AE", "close", "AA", "AA"});
  ASSERT_TRUE(eventually([&] { return hospital.accepted().size() == 2; })) << outbox().dump();
  auto accepted = hospital.accepted();
  EXPECT_EQ(field(accepted[0], "RF1-6.1"), "ORI-A");
  EXPECT_EQ(field(accepted[1], "RF1-6.1"), "ORI-B");
  // Retries send the same message (same control id): the hospital's own duplicate check holds.
  std::set<std::string> ids;
  for (const auto& m : hospital.received()) ids.insert(field(m, "MSH-10"));
  EXPECT_EQ(ids.size(), 2u);
  // The hospital has answered; the gateway records the answer just after (wait for that commit).
  ASSERT_TRUE(eventually([&] { return outbox("?status=sent")["deliveries"].size() == 2; })) << outbox().dump();
  auto sent = outbox("?status=sent")["deliveries"];
  EXPECT_GE(sent[1]["attempts"].get<int>(), 3);  // ORI-A: AE, hang-up, AA (after the failed connections)

  // A rejection (AR) is a dead letter at once; an operator sends it again.
  hospital.script({"AR"});
  post("referral", referral("ORI-C"));
  ASSERT_TRUE(eventually([&] { return outbox("/dead-letters")["deliveries"].size() == 1; }));
  auto dead = outbox("/dead-letters")["deliveries"][0];
  EXPECT_NE(dead["lastError"].get<std::string>().find("AR"), std::string::npos);
  auto retry = http_->request("POST", "/admin/v1/outbox/" + std::to_string(dead["id"].get<int>()) + "/retry");
  ASSERT_EQ(retry.status, 200) << retry.body;
  ASSERT_TRUE(eventually([&] { return hospital.accepted().size() == 3; }));
  EXPECT_EQ(field(hospital.accepted()[2], "RF1-6.1"), "ORI-C");
}

TEST_F(HospitalExchangeTest, AWithdrawnPatientsQueuedReferralNeverLeaves) {
  int port;
  {
    Hospital probe;
    port = probe.port();
    probe.stop();
  }
  start(port);
  prepare();
  post("referral", referral("ORI-W"));
  ASSERT_TRUE(eventually([&] { return outbox()["deliveries"][0].value("attempts", 0) >= 1; }));
  json w = example("consent-withdrawal");
  w["withdrawalDate"] = "2026-09-10";
  post("consent-withdrawal", w);
  Hospital hospital(port);
  ASSERT_TRUE(eventually([&] { return outbox("?status=cancelled")["deliveries"].size() == 1; })) << outbox().dump();
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  EXPECT_TRUE(hospital.received().empty());
  EXPECT_NE(outbox("?status=cancelled")["deliveries"][0]["lastError"].get<std::string>().find("consent"), std::string::npos);
}

TEST_F(HospitalExchangeTest, BadInputGetsANakWithAnErrSegmentAndIsKept) {
  Hospital hospital;
  start(hospital.port());
  prepare();
  post("referral", referral("ORI-2026-0001"));
  // Not HL7 at all.
  std::string ack = send("this is not an HL7 message");
  EXPECT_EQ(field(ack, "MSA-1"), "AR") << ack;
  // An unknown message type: rejected, ERR-3 code 200 (unsupported message type) at MSH-9.
  ack = send("MSH|^~\\&|EAI-AVICENNE|930110036|PASSERELLE|DOULEUR77|20260911||ZZZ^Z01|BAD-1|P|2.5\rPID|||1\r");
  EXPECT_EQ(field(ack, "MSA-1"), "AR") << ack;
  EXPECT_EQ(field(ack, "ERR-3.1"), "200") << ack;
  EXPECT_EQ(field(ack, "ERR-2.1"), "MSH");
  EXPECT_EQ(field(ack, "ERR-2.3"), "9");
  // An unknown patient: AE pointing at PID-3 (204 unknown key identifier).
  ack = send(mdm("BAD-2", "ORI-2026-0001", kCda, "299999999999999"));
  EXPECT_EQ(field(ack, "MSA-1"), "AE") << ack;
  EXPECT_EQ(field(ack, "ERR-2.1"), "PID");
  EXPECT_EQ(field(ack, "ERR-2.3"), "3");
  EXPECT_EQ(field(ack, "ERR-3.1"), "204");
  // Sent again unchanged, a refused message is processed anew (and refused again): its sender may
  // have fixed what was wrong on its side.
  EXPECT_EQ(field(send(mdm("BAD-2", "ORI-2026-0001", kCda, "299999999999999")), "MSA-1"), "AE");
  // A document whose Base64 does not decode: AE at OBX-5.
  ack = send(mdm("BAD-3", "ORI-2026-0001", "RG9jdW1lbnQgbWVkY2lhbCBhdSBmb3JtYXQgQ0RBIG5pdmVhdSAx!"));
  EXPECT_EQ(field(ack, "MSA-1"), "AE") << ack;
  EXPECT_EQ(field(ack, "ERR-2.1"), "OBX");
  EXPECT_EQ(field(ack, "ERR-2.3"), "5");
  // A sender that is not a partner.
  ack = send("MSH|^~\\&|SOMEONE|000000000|PASSERELLE|DOULEUR77|20260911||RRI^I12|BAD-4|P|2.5\rRF1|A||||||\r");
  EXPECT_EQ(field(ack, "MSA-1"), "AR") << ack;
  // Each is kept for review with its reason; nothing was written.
  auto inbox = http_->get("/admin/v1/inbox?message=true").json();
  ASSERT_EQ(inbox["messages"].size(), 6u) << inbox.dump();
  for (const auto& m : inbox["messages"]) {
    EXPECT_NE(m["status"], "processed");
    EXPECT_FALSE(m.value("detail", "").empty()) << m.dump();
  }
  EXPECT_TRUE(search("DocumentReference").empty());
  EXPECT_EQ(task("ORI-2026-0001")["status"], "requested");

  // A frame over the limit closes the connection (with a log line); the listener goes on.
  mllp::SenderOptions so;
  so.host = "127.0.0.1";
  so.port = gw_->mllpPort();
  so.answerTimeoutMs = 3000;
  mllp::Sender big(so);
  auto out = big.exchange(std::string(2 << 20, 'x'));
  EXPECT_FALSE(out.answered);
  EXPECT_EQ(field(send(rri("RRI-OK", "ORI-2026-0001", "A")), "MSA-1"), "AA");
}

// Person information (A31) and merges (A40) change nothing in the dossier; each is kept once, with
// an audit record naming its patient; the same control id again gets the stored answer.
TEST_F(HospitalExchangeTest, PersonInformationIsKeptOnceAndAuditedWithItsPatient) {
  Hospital hospital;
  start(hospital.port());
  prepare();
  auto adt = [](const std::string& control, const std::string& event, const std::string& nir, const std::string& extra = "") {
    return "MSH|^~\\&|EAI-AVICENNE|930110036|PASSERELLE|DOULEUR77|20260912080000||ADT^" + event + "|" + control +
           "|P|2.5|||||FRA|UNICODE UTF-8\rEVN||20260912080000\r"
           "PID|1||" + nir + "^^^ASIP-SANTE-INS-NIR&1.2.250.1.213.1.4.8&ISO^INS||DURAND^Julien^^^^^L||19850514|M\r" + extra;
  };
  auto patients = search("Patient?identifier=urn:oid:1.2.250.1.213.1.4.8|" + kNir);
  ASSERT_EQ(patients.size(), 1u);
  std::string pid = patients[0]["id"];
  json before = patients[0]["meta"]["versionId"];

  std::string ack = send(adt("PERSON-1", "A31", kNir, "PV1|1|N\r"));
  EXPECT_EQ(field(ack, "MSA-1"), "AA") << ack;
  EXPECT_EQ(field(ack, "MSA-2"), "PERSON-1");
  // Sent again: the very same acknowledgement, and still one message kept.
  EXPECT_EQ(send(adt("PERSON-1", "A31", kNir, "PV1|1|N\r")), ack);
  // A patient the network does not know: AE at PID-3 (204), kept with its reason.
  std::string unknown = send(adt("PERSON-2", "A31", "299999999999999", "PV1|1|N\r"));
  EXPECT_EQ(field(unknown, "MSA-1"), "AE") << unknown;
  EXPECT_EQ(field(unknown, "ERR-2.1"), "PID");
  EXPECT_EQ(field(unknown, "ERR-2.3"), "3");
  EXPECT_EQ(field(unknown, "ERR-3.1"), "204");
  // A merge: accepted and kept for a coordinator's review.
  EXPECT_EQ(field(send(adt("MERGE-1", "A40", kNir, "MRG|199999999999999^^^ASIP-SANTE-INS-NIR&1.2.250.1.213.1.4.8&ISO^INS\r")), "MSA-1"), "AA");

  auto inbox = http_->get("/admin/v1/inbox").json();
  std::map<std::string, std::vector<json>> byControl;
  for (const auto& m : inbox["messages"]) byControl[m["controlId"]].push_back(m);
  ASSERT_EQ(byControl["PERSON-1"].size(), 1u) << inbox.dump();
  EXPECT_EQ(byControl["PERSON-1"][0]["status"], "processed");
  EXPECT_EQ(byControl["PERSON-1"][0]["patient"], "Patient/" + pid);
  ASSERT_EQ(byControl["PERSON-2"].size(), 1u);
  EXPECT_EQ(byControl["PERSON-2"][0]["status"], "error");
  ASSERT_EQ(byControl["MERGE-1"].size(), 1u);
  EXPECT_EQ(byControl["MERGE-1"][0]["status"], "review");
  // Nothing changed in the patient's record.
  EXPECT_EQ(search("Patient?identifier=urn:oid:1.2.250.1.213.1.4.8|" + kNir)[0]["meta"]["versionId"], before);
  // Each message taken in is in the audit trail with its patient, once (the repeat left none).
  auto audit = http_->get("/fhir/AuditEvent?patient=" + pid + "&_count=200");
  ASSERT_EQ(audit.status, 200);
  std::size_t count = 0;
  for (std::size_t at = audit.body.find("ADT^A31 PERSON-1 AA"); at != std::string::npos; at = audit.body.find("ADT^A31 PERSON-1 AA", at + 1))
    ++count;
  EXPECT_EQ(count, 1u) << audit.body;
  EXPECT_NE(audit.body.find("ADT^A40 MERGE-1 AA"), std::string::npos) << audit.body;
}

TEST_F(HospitalExchangeTest, AConsultationWithoutAReferralIsAnE2SuspicionForTheCoordinators) {
  Hospital hospital;
  start(hospital.port());
  prepare();
  // No referral to Avicenne: its report is kept for review, and the coordinators get a flagged Task.
  std::string ack = send(mdm("E2-1", "", kCda));
  EXPECT_EQ(field(ack, "MSA-1"), "AA") << ack;
  auto flagged = search("Task?code=https://douleur77.fr/fhir/CodeSystem/network-event|e2-suspicion");
  ASSERT_EQ(flagged.size(), 1u);
  EXPECT_EQ(flagged[0]["status"], "requested");
  EXPECT_FALSE(flagged[0]["restriction"]["recipient"].empty());
  EXPECT_TRUE(search("DocumentReference").empty());
  auto review = http_->get("/admin/v1/inbox?status=review").json();
  ASSERT_EQ(review["messages"].size(), 1u);
  // No exclusion follows: the enrolment is still active.
  EXPECT_EQ(search("EpisodeOfCare?status=active").size(), 1u);
}

TEST_F(HospitalExchangeTest, AnUnansweredReferralPastItsDueDateAlertsTheCoordinators) {
  Hospital hospital;
  hospital.script({"AA"});
  start(hospital.port());
  prepare();
  post("referral", referral("ORI-LATE"));  // requested 2026-09-03, due 2026-09-24; never accepted
  auto r = http_->request("POST", "/network/v1/$sweep?date=2026-09-25");
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.json()["overdueReferrals"], 1);
  EXPECT_EQ(task("ORI-LATE")["businessStatus"]["coding"][0]["code"], "overdue");
  auto alerts = search("Communication?category=https://douleur77.fr/fhir/CodeSystem/d77-notification|referral-overdue");
  ASSERT_EQ(alerts.size(), 1u);
  auto coordinators = search("PractitionerRole?role=https://douleur77.fr/fhir/CodeSystem/network-role|coordinator");
  ASSERT_EQ(coordinators.size(), 1u);
  std::string recipients = alerts[0]["recipient"].dump();
  EXPECT_NE(recipients.find("PractitionerRole/" + coordinators[0]["id"].get<std::string>()), std::string::npos) << recipients;
  // Running it again alerts no one twice; the sweep's changes are audited with the patient named.
  ASSERT_EQ(http_->request("POST", "/network/v1/$sweep?date=2026-09-26").status, 200);
  EXPECT_EQ(search("Communication?category=https://douleur77.fr/fhir/CodeSystem/d77-notification|referral-overdue").size(), 1u);
  json late = task("ORI-LATE");
  std::string pid = late["for"]["reference"].get<std::string>().substr(8);
  auto audit = http_->get("/fhir/AuditEvent?patient=" + pid + "&_count=200");
  ASSERT_EQ(audit.status, 200);
  EXPECT_NE(audit.body.find("Communication/" + alerts[0]["id"].get<std::string>()), std::string::npos) << audit.body;
}

// A development PKI made with the openssl command: a CA, the gateway's and the hospital's server
// certificates, and client certificates (the hospital's, and one the CA did not sign).
struct Pki {
  TempDir dir;
  std::string path(const std::string& name) const { return dir.path() + "/" + name; }
  Pki() {
    std::string d = dir.path();
    std::string script =
        "set -e; cd '" + d + "'; "
        "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout ca.key -out ca.crt -days 2 -subj '/CN=Test CA' 2>/dev/null; "
        "for n in gateway hospital avicenne-eai; do "
        "openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout $n.key -out $n.csr -subj \"/O=Douleur 77 (development)/CN=$n\" 2>/dev/null; "
        "printf 'subjectAltName=DNS:localhost,IP:127.0.0.1' > $n.ext; "
        "openssl x509 -req -in $n.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out $n.crt -days 2 -extfile $n.ext 2>/dev/null; done; "
        "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout rogue.key -out rogue.crt -days 2 "
        "-subj '/O=Douleur 77 (development)/CN=avicenne-eai' 2>/dev/null";
    if (std::system(("bash -c " + quote(script)).c_str()) != 0)
      throw std::runtime_error("openssl failed");
  }
  static std::string quote(const std::string& s) {
    std::string out = "'";
    for (char c : s) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
    return out + "'";
  }
};

TEST_F(HospitalExchangeTest, OverTlsPartnersAreKnownByTheirCertificateBothWays) {
  Pki pki;
  // The hospital listens over TLS and asks for the gateway's client certificate.
  mllp::TlsSettings hospitalTls{pki.path("hospital.crt"), pki.path("hospital.key"), pki.path("ca.crt"), true, ""};
  Hospital hospital(0, hospitalTls);
  json partner = json::parse(partnerJson(hospital.port()));
  partner["inbound"] = {{"certificateSubject", "CN=avicenne-eai, O=Douleur 77 (development)"}};  // order and spaces as people write them
  partner["outbound"]["tls"] = {{"certificate", pki.path("gateway.crt")}, {"privateKey", pki.path("gateway.key")},
                                {"caFile", pki.path("ca.crt")}, {"serverName", "localhost"}};
  std::ofstream(partners_.path() + "/avicenne.json") << partner.dump(2);
  gw_ = std::make_unique<TestGateway>(std::vector<std::string>{
      "mllp.port=0", "partners.dir=" + partners_.path(), "network.today=2026-09-10", "network.sweep_interval_seconds=0",
      "mllp.tls_certificate=" + pki.path("gateway.crt"), "mllp.tls_private_key=" + pki.path("gateway.key"),
      "mllp.client_ca=" + pki.path("ca.crt")});
  http_ = std::make_unique<HttpClient>(gw_->httpPort());
  prepare();
  post("referral", referral("ORI-TLS"));
  ASSERT_TRUE(eventually([&] { return hospital.accepted().size() == 1; })) << outbox().dump();

  auto sendWith = [&](std::optional<mllp::TlsSettings> tls, const std::string& message) {
    mllp::SenderOptions so;
    so.host = "127.0.0.1";
    so.port = gw_->mllpPort();
    so.answerTimeoutMs = 5000;
    so.connectTimeoutMs = 2000;
    so.tls = tls;
    mllp::Sender s(so);
    return s.exchange(message);
  };
  // With its certificate, the hospital is recognised whatever MSH-4 says.
  std::string reply = rri("RRI-TLS", "ORI-TLS", "A");
  reply.replace(reply.find("930110036"), 9, "SOMETHING");
  auto ok = sendWith(mllp::TlsSettings{pki.path("avicenne-eai.crt"), pki.path("avicenne-eai.key"), pki.path("ca.crt"), false, "localhost"}, reply);
  ASSERT_TRUE(ok.answered) << ok.error;
  EXPECT_EQ(field(ok.answer, "MSA-1"), "AA") << ok.answer;
  EXPECT_EQ(task("ORI-TLS")["status"], "accepted");
  // Without a client certificate, with one the CA did not sign, or in clear: no answer at all.
  auto none = sendWith(mllp::TlsSettings{"", "", pki.path("ca.crt"), false, "localhost"}, rri("RRI-X1", "ORI-TLS", "A"));
  EXPECT_FALSE(none.answered);
  auto rogue = sendWith(mllp::TlsSettings{pki.path("rogue.crt"), pki.path("rogue.key"), pki.path("ca.crt"), false, "localhost"},
                        rri("RRI-X2", "ORI-TLS", "A"));
  EXPECT_FALSE(rogue.answered);
  auto clear = sendWith(std::nullopt, rri("RRI-X3", "ORI-TLS", "A"));
  EXPECT_FALSE(clear.answered);
  // Only the recognised message was taken in.
  EXPECT_EQ(http_->get("/admin/v1/inbox").json()["messages"].size(), 1u);
}

// A partner that speaks FHIR: the referral leaves as a transaction to its server (another gateway,
// started by the test, standing for the hospital's FHIR server), its Task is followed there, and the
// report it links to the completed Task comes back into the dossier.
TEST_F(HospitalExchangeTest, AFhirPartnerGetsTheReferralAsATransactionAndItsReportComesBack) {
  TestGateway hospitalServer;
  HttpClient remote(hospitalServer.httpPort());
  remote.setBearer(hospitalServer.systemToken());
  ::setenv("PASSERELLE_TEST_PARTNER_TOKEN", hospitalServer.systemToken().c_str(), 1);
  json partner = {{"id", "avicenne"}, {"name", "Hôpital Avicenne (FHIR)"}, {"finess", "930110036"}, {"account", "avicenne-fhir"},
                  {"role", "hospital"},
                  {"outbound", {{"protocol", "fhir"}, {"baseUrl", "http://127.0.0.1:" + std::to_string(hospitalServer.httpPort()) + "/fhir"},
                                {"tokenEnv", "PASSERELLE_TEST_PARTNER_TOKEN"}, {"pollSeconds", 1}}},
                  {"retry", {{"maxAttempts", 5}, {"initialDelayMs", 50}, {"maxDelayMs", 200}}}};
  std::ofstream(partners_.path() + "/avicenne.json") << partner.dump(2);
  gw_ = std::make_unique<TestGateway>(std::vector<std::string>{"partners.dir=" + partners_.path(), "network.today=2026-09-10",
                                                               "network.sweep_interval_seconds=0"});
  http_ = std::make_unique<HttpClient>(gw_->httpPort());
  http_->setBearer(gw_->systemToken());
  prepare();
  post("referral", referral("ORI-FHIR"));
  auto remoteSearch = [&](const std::string& q) {
    auto r = remote.get("/fhir/" + q);
    json b = json::parse(r.body, nullptr, false);
    std::vector<json> out;
    if (b.is_object())
      for (const auto& e : b.value("entry", json::array())) out.push_back(e["resource"]);
    return out;
  };
  ASSERT_TRUE(eventually([&] { return remoteSearch("Task?identifier=https://douleur77.fr/fhir/sid/referral-task|ORI-FHIR").size() == 1; }))
      << outbox().dump();
  auto sr = remoteSearch("ServiceRequest?identifier=https://douleur77.fr/fhir/sid/referral|ORI-FHIR");
  ASSERT_EQ(sr.size(), 1u);
  auto patients = remoteSearch("Patient?identifier=urn:oid:1.2.250.1.213.1.4.8|" + kNir);
  ASSERT_EQ(patients.size(), 1u);
  EXPECT_EQ(sr[0]["subject"]["reference"], "Patient/" + patients[0]["id"].get<std::string>());
  EXPECT_FALSE(remoteSearch("Observation?code=http://loinc.org|72514-3").empty());
  ASSERT_TRUE(eventually([&] { return outbox("?status=sent")["deliveries"].size() == 1; }));

  // The hospital accepts on its server: the gateway sees it at its next look.
  json task = remoteSearch("Task?identifier=https://douleur77.fr/fhir/sid/referral-task|ORI-FHIR")[0];
  task["status"] = "accepted";
  ASSERT_EQ(remote.send("PUT", "/fhir/Task/" + task["id"].get<std::string>(), task.dump()).status, 200);
  ASSERT_TRUE(eventually([&] { return this->task("ORI-FHIR")["status"] == "accepted"; }, 8000));

  // Its report, linked from the completed Task, comes into the dossier.
  json doc = {{"resourceType", "DocumentReference"}, {"status", "current"},
              {"masterIdentifier", {{"system", "urn:ietf:rfc:3986"}, {"value", "urn:oid:2.999.77.1.77.42"}}},
              {"type", {{"coding", {{{"system", "http://loinc.org"}, {"code", "11488-4"}}}}}},
              {"subject", {{"reference", "Patient/" + patients[0]["id"].get<std::string>()}}},
              {"content", {{{"attachment", {{"contentType", "text/xml"}, {"data", kCda}}}}}}};
  auto created = remote.send("POST", "/fhir/DocumentReference", doc.dump());
  ASSERT_EQ(created.status, 201) << created.body;
  task = remoteSearch("Task?identifier=https://douleur77.fr/fhir/sid/referral-task|ORI-FHIR")[0];
  task["status"] = "completed";
  task["output"] = {{{"type", {{"text", "report"}}}, {"valueReference", {{"reference", "DocumentReference/" + created.json()["id"].get<std::string>()}}}}};
  ASSERT_EQ(remote.send("PUT", "/fhir/Task/" + task["id"].get<std::string>(), task.dump()).status, 200);
  ASSERT_TRUE(eventually([&] { return this->task("ORI-FHIR")["status"] == "completed"; }, 8000));
  auto docs = search("DocumentReference?type=http://loinc.org|11488-4");
  ASSERT_EQ(docs.size(), 1u);
  EXPECT_EQ(docs[0]["content"][0]["attachment"]["data"], kCda);
  EXPECT_EQ(docs[0]["context"]["related"][0]["reference"], this->task("ORI-FHIR")["focus"]["reference"]);
  std::string pid = docs[0]["subject"]["reference"].get<std::string>().substr(8);
  EXPECT_NE(http_->get("/fhir/AuditEvent?patient=" + pid + "&_count=200").body.find("fhir:avicenne"), std::string::npos);
}

}  // namespace

namespace {

// The REST client verifies the partner's server: over HTTPS it trusts the configured authorities
// only, and speaks TLS 1.2 or later.
TEST(RestClientTest, VerifiesTheServerItTalksTo) {
  TestGateway server({}, true);
  std::string ca = server.dataDir() + "/tls/dev-server.crt";
  http_client::Options trusted;
  trusted.baseUrl = "https://localhost:" + std::to_string(server.httpsPort()) + "/fhir";
  trusted.caFile = ca;
  http_client::RestClient client(trusted);
  auto ok = client.get("/metadata");
  EXPECT_EQ(ok.status, 200) << ok.error;
  EXPECT_NE(ok.body.find("CapabilityStatement"), std::string::npos);
  // The same server without its authority configured: no answer, a TLS error.
  http_client::Options untrusted = trusted;
  untrusted.caFile = "/dev/null";
  http_client::RestClient stranger(untrusted);
  auto refused = stranger.get("/metadata");
  EXPECT_EQ(refused.status, 0);
  EXPECT_FALSE(refused.error.empty());
  // A bearer token goes with every request.
  http_client::Options withToken = trusted;
  withToken.bearerToken = server.systemToken();
  http_client::RestClient authed(withToken);
  EXPECT_EQ(authed.get("/Patient?_count=1").status, 200);
  http_client::RestClient anonymous(trusted);
  EXPECT_EQ(anonymous.get("/Patient?_count=1").status, 401);
}

}  // namespace
