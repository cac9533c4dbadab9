// Reads bounded by a deadline and by their client's presence, and store failures answered as
// unavailability (503 with an OperationOutcome, counted in /metrics), never as "not found" or as an
// empty result: through a real gateway on port 0, with a real database made to fail underneath it.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sqlite3.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <thread>

#include "tests/support/http_client.h"
#include "tests/support/test_gateway.h"

using namespace passerelle::testing;
using nlohmann::json;

namespace {

// `n` Patients in one transaction (its reads run on the writer: no deadline applies to them).
void seedPatients(HttpClient& c, int n) {
  json bundle = {{"resourceType", "Bundle"}, {"type", "transaction"}, {"entry", json::array()}};
  for (int i = 0; i < n; ++i)
    bundle["entry"].push_back(
        {{"resource",
          {{"resourceType", "Patient"},
           {"identifier", json::array({{{"system", "urn:oid:1.2.250.1.213.1.4.10"}, {"value", std::to_string(100000 + i)}}})},
           {"name", json::array({{{"family", "Famille" + std::to_string(i)}, {"given", json::array({"Prenom" + std::to_string(i % 97)})}}})}}},
         {"request", {{"method", "POST"}, {"url", "Patient"}}}});
  auto r = c.send("POST", "/fhir", bundle.dump());
  ASSERT_EQ(r.status, 200) << r.body.substr(0, 500);
}

std::int64_t metric(HttpClient& c, const std::string& name) {
  auto r = c.get("/metrics");
  std::istringstream in(r.body);
  for (std::string line; std::getline(in, line);)
    if (line.rfind(name + " ", 0) == 0) return std::stoll(line.substr(name.size() + 1));
  return -1;
}

// Runs SQL on the gateway's database from another connection (what an operator's mistake, a
// failing disk or a concurrent migration would do to it).
void sql(const std::string& dbPath, const std::string& statement) {
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(dbPath.c_str(), &db), SQLITE_OK);
  sqlite3_busy_timeout(db, 5000);
  char* msg = nullptr;
  EXPECT_EQ(sqlite3_exec(db, statement.c_str(), nullptr, nullptr, &msg), SQLITE_OK) << (msg ? msg : "");
  sqlite3_free(msg);
  sqlite3_close(db);
}

const char* kSlowSearch = "/fhir/Patient?name:contains=e&_sort=-family&_total=accurate&_count=1000";

}  // namespace

TEST(UnavailabilityTest, ASearchPastItsDeadlineAnswers503WithATimeoutOutcome) {
  TestGateway gw({"search.timeout_ms=1"});
  HttpClient c(gw.httpPort());
  seedPatients(c, 3000);
  auto r = c.get(kSlowSearch);
  ASSERT_EQ(r.status, 503) << r.body.substr(0, 300);
  auto oo = r.json();
  EXPECT_EQ(oo["resourceType"], "OperationOutcome");
  EXPECT_EQ(oo["issue"][0]["code"], "timeout");
  EXPECT_NE(oo["issue"][0]["diagnostics"].get<std::string>().find("search.timeout_ms"), std::string::npos);
  EXPECT_GE(metric(c, "passerelle_search_stopped_total{reason=\"deadline\"}"), 1);
  EXPECT_GE(metric(c, "passerelle_http_unavailable_total"), 1);
}

TEST(UnavailabilityTest, ASearchWhoseClientWentAwayIsStopped) {
  TestGateway gw;
  HttpClient c(gw.httpPort());
  seedPatients(c, 3000);
  ASSERT_EQ(metric(c, "passerelle_search_stopped_total{reason=\"client-gone\"}"), 0);
  // A client that sends the search and leaves at once.
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<std::uint16_t>(gw.httpPort()));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  std::string request = std::string("GET ") + kSlowSearch + " HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer " +
                        gw.systemToken() + "\r\n\r\n";
  ASSERT_EQ(::send(fd, request.data(), request.size(), 0), static_cast<ssize_t>(request.size()));
  ::close(fd);
  std::int64_t stopped = 0;
  for (int i = 0; i < 100 && stopped < 1; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    stopped = metric(c, "passerelle_search_stopped_total{reason=\"client-gone\"}");
  }
  EXPECT_EQ(stopped, 1);
  // The same search with its client there runs to its end.
  auto r = c.get(kSlowSearch);
  EXPECT_EQ(r.status, 200) << r.body.substr(0, 300);
  EXPECT_EQ(r.json()["total"], 3000);
}

TEST(UnavailabilityTest, DatabaseFailuresAnswer503NeverNotFoundThenServiceResumes) {
  if (testStorageIsPostgresql()) GTEST_SKIP() << "the database failures are made in SQLite's file (PASSERELLE_TEST_STORAGE=postgresql)";
  TestGateway gw;
  HttpClient c(gw.httpPort());
  std::string db = gw.dataDir() + "/passerelle.db";
  auto created = c.send("POST", "/fhir/Patient",
                        R"({"resourceType":"Patient","identifier":[{"system":"urn:oid:1.2.250.1.213.1.4.10","value":"42"}]})");
  ASSERT_EQ(created.status, 201) << created.body;
  std::string id = created.json()["id"];
  // The care relationship of a GP is read from the store by the access guard.
  passerelle::identity::IssueOptions gp;
  gp.role = "gp";
  gp.practitioner = "rpps:10101234567";
  gp.scopes = {"user/*.rs"};
  HttpClient asGp(gw.httpPort());
  asGp.setBearer(gw.token(gp));

  std::int64_t failuresBefore = metric(c, "passerelle_store_failures_total");
  sql(db, "ALTER TABLE search_token RENAME TO search_token_away");
  // A search, the guard's relationship lookups, and the network rules' lookups.
  auto search = c.get("/fhir/Patient?identifier=urn:oid:1.2.250.1.213.1.4.10|42");
  EXPECT_EQ(search.status, 503) << search.body;
  EXPECT_EQ(search.json()["resourceType"], "OperationOutcome");
  auto guarded = asGp.get("/fhir/Patient/" + id);
  EXPECT_EQ(guarded.status, 503) << guarded.body;  // not 404
  std::ifstream in(std::string(PASSERELLE_SOURCE_DIR) + "/schemas/network/examples/consent.json");
  std::stringstream doc;
  doc << in.rdbuf();
  auto consent = c.request("POST", "/network/v1/consent", doc.str(), {{"Content-Type", "application/json"}});
  EXPECT_EQ(consent.status, 503) << consent.body.substr(0, 400);  // not 422 "unknown patient"
  EXPECT_EQ(consent.json()["resourceType"], "OperationOutcome");
  EXPECT_GT(metric(c, "passerelle_store_failures_total"), failuresBefore);
  EXPECT_GE(metric(c, "passerelle_http_unavailable_total"), 3);

  sql(db, "ALTER TABLE search_token_away RENAME TO search_token");
  search = c.get("/fhir/Patient?identifier=urn:oid:1.2.250.1.213.1.4.10|42");
  EXPECT_EQ(search.status, 200) << search.body;
  EXPECT_EQ(search.json()["total"], 1);
  EXPECT_EQ(asGp.get("/fhir/Patient/" + id).status, 404);  // no care relationship: hidden, as unknown
}
