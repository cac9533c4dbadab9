// Several gateways on one PostgreSQL database, as a region runs them behind a load balancer: two
// real `passerelle serve` processes, each with its own data folder (keys, certificates, audit
// checkpoints), sharing the database of a throw-away cluster and one hospital (a real MLLP peer).
// Referrals written through either leave once each; concurrent updates through both lose nothing;
// what one writes drops the other's cached access decisions; both audit trails verify.
// Skipped when PostgreSQL is not installed.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <mutex>
#include <regex>
#include <thread>

#include "connectors/mllp/mllp_transport.h"
#include "tests/support/gateway_process.h"
#include "tests/support/http_client.h"
#include "tests/support/pg_server.h"
#include "tests/support/test_gateway.h"

using namespace passerelle;
using namespace passerelle::testing;
using nlohmann::json;

namespace {

const std::string kExamples = PASSERELLE_NETWORK_EXAMPLES;

json example(const std::string& kind) { return json::parse(readFile(kExamples + "/" + kind + ".json")); }

// MSH-10 of an HL7 v2 message.
std::string controlId(std::string_view message) {
  std::size_t at = 0;
  for (int bar = 0; bar < 9 && at != std::string_view::npos; ++bar) at = message.find('|', at + 1);
  if (at == std::string_view::npos) return "";
  std::size_t end = message.find_first_of("|\r", at + 1);
  return std::string(message.substr(at + 1, end == std::string_view::npos ? std::string_view::npos : end - at - 1));
}

// The hospital's integration engine: accepts everything, counts what it receives by control id.
class Hospital {
 public:
  Hospital() {
    mllp::ListenerOptions o;
    o.port = 0;
    o.idleTimeoutSeconds = 5;
    std::string error;
    listener_ = mllp::Listener::start(
        o,
        [this](const mllp::Peer&, std::string_view m) -> std::optional<std::string> {
          std::string id = controlId(m);
          {
            std::lock_guard<std::mutex> lock(mutex_);
            ++received_[id];
          }
          return "MSH|^~\\&|EAI|930110036|PASSERELLE|DOULEUR77|20260910120000||ACK^I12^ACK|A" + id + "|P|2.5\rMSA|AA|" + id + "\r";
        },
        nullptr, error);
    if (!listener_) throw std::runtime_error(error);
  }
  ~Hospital() { listener_->stop(); }
  int port() const { return listener_->port(); }
  std::map<std::string, int> received() {
    std::lock_guard<std::mutex> lock(mutex_);
    return received_;
  }

 private:
  std::unique_ptr<mllp::Listener> listener_;
  std::mutex mutex_;
  std::map<std::string, int> received_;
};

template <typename F>
bool eventually(F f, int ms = 20000) {
  for (auto end = std::chrono::steady_clock::now() + std::chrono::milliseconds(ms); std::chrono::steady_clock::now() < end;) {
    if (f()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return f();
}

class InstancesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string skip;
    url_ = PgServer::freshDatabase(skip);
    if (url_.empty()) GTEST_SKIP() << skip;
    std::ofstream(partners_.path() + "/avicenne.json")
        << json{{"id", "avicenne"},
                {"name", "Hôpital Avicenne"},
                {"finess", "930110036"},
                {"account", "avicenne-eai"},
                {"role", "hospital"},
                {"inbound", {{"sendingApplication", "EAI-AVICENNE"}, {"sendingFacility", "930110036"}}},
                {"outbound", {{"protocol", "mllp"}, {"host", "127.0.0.1"}, {"port", hospital_.port()}, {"receivingApplication", "EAI-AVICENNE"},
                              {"connectTimeoutMs", 500}, {"answerTimeoutMs", 2000}, {"connections", 2}}},
                {"retry", {{"maxAttempts", 6}, {"initialDelayMs", 50}, {"maxDelayMs", 200}}}}
               .dump(2);
    for (int i = 0; i < 2; ++i) {
      gateways_.push_back(std::make_unique<GatewayProcess>(
          dirs_[i].path(), std::vector<std::string>{"storage.url=" + url_, "audit.url=" + url_, "mllp.port=0", "log.level=warn",
                                                    "partners.dir=" + partners_.path(), "gp.dir=" + dirs_[i].path() + "/no-gp",
                                                    "network.today=2026-09-10", "network.sweep_interval_seconds=0"}));
      clients_.push_back(client(i, system()));
    }
  }

  identity::IssueOptions system() const {
    identity::IssueOptions o;
    o.role = "system";
    o.subject = "test-system";
    o.scopes = {"system/*.cruds"};
    return o;
  }
  // A client of gateway `i` with a token its own key signed.
  std::unique_ptr<HttpClient> client(int i, identity::IssueOptions who) {
    auto c = std::make_unique<HttpClient>(gateways_[i]->httpPort());
    c->setBearer(devToken(dirs_[i].path(), std::move(who)));
    return c;
  }

  void post(int i, const std::string& kind, json d) {
    if (!d.contains("documentId") || kind != "referral") d["documentId"] = "T-" + kind + "-" + std::to_string(++documents_);
    auto r = clients_[i]->request("POST", "/network/v1/" + kind, d.dump(), {{"Content-Type", "application/json"}});
    ASSERT_EQ(r.status, 200) << kind << " through gateway " << i << ": " << r.body;
  }
  void put(int i, const std::string& type, const std::string& id, json body) {
    body["id"] = id;
    auto r = clients_[i]->send("PUT", "/fhir/" + type + "/" + id, body.dump());
    ASSERT_TRUE(r.status == 200 || r.status == 201) << type << "/" << id << ": " << r.body;
  }

  std::atomic<int> documents_{0};
  std::string url_;
  Hospital hospital_;
  TempDir partners_;
  TempDir dirs_[2];
  std::vector<std::unique_ptr<GatewayProcess>> gateways_;
  std::vector<std::unique_ptr<HttpClient>> clients_;
};

}  // namespace

// Referrals written through both gateways are each sent to the hospital once, whichever gateway's
// sender claims them; then both gateways stop cleanly and each one's checkpoints verify the one
// audit chain they wrote together.
TEST_F(InstancesTest, EachReferralLeavesOnceAndTheSharedAuditChainVerifies) {
  post(0, "structure", example("structure"));
  post(0, "professional", example("professional"));
  json coord = example("professional");
  coord["professional"] = {{"rpps", "10102223334"}, {"family", "BERNARD"}, {"given", {"Luc"}}, {"category", "coordinator"}, {"level", 2}};
  coord.erase("trainings");
  post(1, "professional", coord);
  post(0, "inclusion", example("inclusion"));
  post(1, "consent", example("consent"));
  post(0, "cied", example("cied"));
  const int kReferrals = 24;
  std::vector<std::thread> writers;
  for (int i = 0; i < 2; ++i)
    writers.emplace_back([&, i] {
      for (int n = i; n < kReferrals; n += 2) {
        json r = example("referral");
        r["referralId"] = "ORI-2026-" + std::to_string(1000 + n);
        r["documentId"] = "T-referral-" + std::to_string(n);
        post(i, "referral", r);
      }
    });
  for (auto& t : writers) t.join();
  ASSERT_TRUE(eventually([&] { return static_cast<int>(hospital_.received().size()) >= kReferrals; }))
      << hospital_.received().size() << " of " << kReferrals << " referrals received";
  std::this_thread::sleep_for(std::chrono::milliseconds(500));  // a second copy, if any, would come now
  auto received = hospital_.received();
  EXPECT_EQ(static_cast<int>(received.size()), kReferrals);
  for (const auto& [id, n] : received) EXPECT_EQ(n, 1) << "message " << id << " received " << n << " times";
  auto outbox = clients_[1]->get("/admin/v1/outbox");
  EXPECT_EQ(outbox.status, 200) << outbox.body;

  for (int i = 0; i < 2; ++i) EXPECT_EQ(gateways_[i]->stop(), 0) << gateways_[i]->log();
  // Each gateway's checkpoints verify the whole chain, records written by both.
  std::vector<long> records;
  for (int i = 0; i < 2; ++i) {
    std::string out = runCommand(std::string(PASSERELLE_BINARY) + " audit verify --config /dev/null --set log.level=warn --set data.dir=" +
                                 dirs_[i].path() + " --set audit.url=" + url_);
    std::smatch m;
    ASSERT_TRUE(std::regex_search(out, m, std::regex("audit trail verified: (\\d+) records"))) << out;
    records.push_back(std::stol(m[1]));
  }
  EXPECT_EQ(records[0], records[1]);
  EXPECT_GT(records[0], kReferrals * 2) << "every document and every delivery is audited";
}

// Both gateways update one resource at once without If-Match: each update is committed or refused
// with 409 (the other committed that version first); the history holds exactly the committed ones.
TEST_F(InstancesTest, ConcurrentUpdatesThroughTwoGatewaysLoseNothing) {
  put(0, "Patient", "shared", json{{"resourceType", "Patient"}, {"name", {{{"family", "Start"}}}}});
  std::atomic<int> ok{0}, conflict{0}, other{0};
  std::vector<std::thread> ts;
  for (int i = 0; i < 2; ++i)
    ts.emplace_back([&, i] {
      auto c = client(i, system());
      for (int n = 0; n < 40; ++n) {
        json p = {{"resourceType", "Patient"}, {"id", "shared"}, {"name", {{{"family", "G" + std::to_string(i) + "-" + std::to_string(n)}}}}};
        int status = c->send("PUT", "/fhir/Patient/shared", p.dump()).status;
        if (status == 200) ++ok;
        else if (status == 409) ++conflict;
        else ++other;
      }
    });
  for (auto& t : ts) t.join();
  std::cout << "[ INFO     ] concurrent updates: " << ok << " committed, " << conflict << " refused with 409\n";
  EXPECT_EQ(other.load(), 0);
  EXPECT_EQ(ok + conflict, 80);
  auto current = json::parse(clients_[1]->get("/fhir/Patient/shared").body, nullptr, false);
  EXPECT_EQ(current["meta"]["versionId"], std::to_string(1 + ok.load()));
  auto history = json::parse(clients_[0]->get("/fhir/Patient/shared/_history?_count=1000").body, nullptr, false);
  EXPECT_EQ(history.value("entry", json::array()).size(), static_cast<std::size_t>(1 + ok.load()));
}

// What a GP may read is cached by each gateway; a consent withdrawn through one gateway applies on
// the other from its next request (the commit is announced), not after its own next write.
TEST_F(InstancesTest, AConsentWithdrawnThroughOneGatewayAppliesOnTheOther) {
  const std::string kGp = "rpps:10100000001";
  put(0, "PractitionerRole", "gp", json{{"resourceType", "PractitionerRole"}, {"identifier", {{{"system", "https://douleur77.fr/fhir/sid/member"}, {"value", kGp}}}}});
  json ref = {{"reference", "Patient/pA"}};
  put(0, "Patient", "pA", json{{"resourceType", "Patient"}, {"name", {{{"family", "PatientA"}}}}});
  put(0, "EpisodeOfCare", "eocA",
      json{{"resourceType", "EpisodeOfCare"}, {"status", "active"},
           {"type", {{{"coding", {{{"system", "https://douleur77.fr/fhir/CodeSystem/d77-programme"}, {"code", "D77"}}}}}}},
           {"patient", ref}, {"careManager", {{"reference", "PractitionerRole/gp"}}}});
  json consent = {{"resourceType", "Consent"}, {"status", "active"},
                  {"scope", {{"coding", {{{"system", "http://terminology.hl7.org/CodeSystem/consentscope"}, {"code", "treatment"}}}}}},
                  {"category", {{{"coding", {{{"system", "http://loinc.org"}, {"code", "59284-0"}}}}}}},
                  {"policyRule", {{"coding", {{{"system", "http://terminology.hl7.org/CodeSystem/v3-ActCode"}, {"code", "OPTIN"}}}}}},
                  {"patient", ref}};
  put(0, "Consent", "consentA", consent);
  put(0, "CareTeam", "teamA",
      json{{"resourceType", "CareTeam"}, {"status", "active"}, {"subject", ref},
           {"participant", {{{"role", {{{"coding", {{{"system", "https://douleur77.fr/fhir/CodeSystem/network-role"}, {"code", "gp-correspondent"}}}}}}},
                             {"member", {{"reference", "PractitionerRole/gp"}}}}}}});
  put(0, "Observation", "hrA",
      json{{"resourceType", "Observation"}, {"status", "final"}, {"code", {{"coding", {{{"system", "http://loinc.org"}, {"code", "8867-4"}}}}}},
           {"subject", ref}, {"valueQuantity", {{"value", 70}}}});
  identity::IssueOptions gp;
  gp.role = "gp";
  gp.practitioner = kGp;
  gp.subject = "gp";
  gp.scopes = {"user/*.cruds"};
  auto gpOnB = client(1, gp);
  // Read twice through the second gateway: the second answer comes from its cache.
  ASSERT_EQ(gpOnB->get("/fhir/Observation/hrA").status, 200);
  ASSERT_EQ(gpOnB->get("/fhir/Observation/hrA").status, 200);
  consent["status"] = "inactive";
  consent["extension"] = {{{"url", "https://douleur77.fr/fhir/StructureDefinition/consent-state"}, {"valueCode", "withdrawn"}}};
  put(0, "Consent", "consentA", consent);
  EXPECT_TRUE(eventually([&] { return gpOnB->get("/fhir/Observation/hrA").status != 200; }, 3000))
      << "the second gateway still lets the GP read after the consent was withdrawn through the first";
}

// PostgreSQL restarts while both gateways take writes: what was acknowledged (201) before, during
// and after is there; requests that met the restart were refused as unavailable (503), not lost
// after an acknowledgement; the gateways recover by themselves (creates succeed again) and stop
// cleanly.
TEST_F(InstancesTest, ARestartOfTheDatabaseUnderLoadLosesNothingAcknowledgedAndTheGatewaysRecover) {
  std::string error;
  PgServer* server = PgServer::shared(error);
  ASSERT_NE(server, nullptr) << error;
  std::atomic<bool> stop{false}, restarted{false};
  std::mutex m;
  std::vector<std::string> acknowledged;
  std::map<int, int> statuses;
  std::atomic<int> afterRestart{0};
  std::vector<std::thread> load;
  for (int t = 0; t < 4; ++t)
    load.emplace_back([&, t] {
      auto c = client(t % 2, system());
      for (int n = 0; !stop; ++n) {
        std::string id = "load-" + std::to_string(t) + "-" + std::to_string(n);
        json p = {{"resourceType", "Patient"}, {"id", id}, {"name", {{{"family", id}}}}};
        int status = 0;
        try {
          status = c->send("PUT", "/fhir/Patient/" + id, p.dump()).status;
        } catch (const std::exception&) {
          status = -1;  // the connection was cut
          c = client(t % 2, system());
        }
        std::lock_guard<std::mutex> lock(m);
        ++statuses[status];
        if (status == 201) {
          acknowledged.push_back(id);
          if (restarted) ++afterRestart;
        }
      }
    });
  std::this_thread::sleep_for(std::chrono::milliseconds(1500));
  ASSERT_TRUE(server->restart(error)) << error;
  restarted = true;
  bool recovered = eventually([&] { return afterRestart >= 20; }, 30000);
  stop = true;
  for (auto& t : load) t.join();
  std::string seen;
  for (const auto& [status, n] : statuses) seen += " " + std::to_string(status) + ":" + std::to_string(n);
  std::cout << "[ INFO     ] answers during the restart (status:count):" << seen << "\n";
  EXPECT_TRUE(recovered) << "creates did not succeed again after the restart:" << seen;
  for (const auto& [status, n] : statuses) EXPECT_TRUE(status == 201 || status == 503) << status << " answered " << n << " times";
  int missing = 0;
  for (std::size_t i = 0; i < acknowledged.size(); ++i)
    if (clients_[i % 2]->get("/fhir/Patient/" + acknowledged[i]).status != 200) ++missing;
  EXPECT_EQ(missing, 0) << "of " << acknowledged.size() << " acknowledged creates";
  for (int i = 0; i < 2; ++i) EXPECT_EQ(gateways_[i]->stop(), 0) << gateways_[i]->log();
}
