// `passerelle db copy` and `passerelle db status` through the real binary: a SQLite store with
// versions, a deletion, index rows, kept values and messages copied into PostgreSQL (skipped when
// it is not installed) and into SQLite, then the target answering reads, vreads, history and
// searches as the source does; status reports and its exit codes. The audit trail copied with it
// (--audit-to) from SQLite into PostgreSQL, verified against the signed checkpoints.
#include <gtest/gtest.h>

#include <fcntl.h>
#include <sqlite3.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <tuple>

#include "gateway/app/store_copy.h"
#include "gateway/audit/audit_log.h"
#include "gateway/fhir/search_params.h"
#include "gateway/search/reindex.h"
#include "gateway/store/migrations.h"
#include "gateway/store/resource_store.h"
#include "tests/support/pg_server.h"
#include "tests/support/test_gateway.h"

using namespace passerelle;
using namespace passerelle::store;
using passerelle::testing::PgServer;
using passerelle::testing::TempDir;

namespace {

struct Outcome {
  int status = -1;
  std::string out, err;
};

std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

// The binary run to its end, its standard output and error kept in files of `dir`.
Outcome runBinary(const TempDir& dir, std::vector<std::string> args) {
  args.insert(args.begin(), PASSERELLE_BINARY);
  args.insert(args.end(), {"--config", "/dev/null", "--set", "log.level=warn", "--set", "data.dir=" + dir.path()});
  std::string out = dir.path() + "/run.out", err = dir.path() + "/run.err";
  pid_t pid = fork();
  if (pid == 0) {
    int o = open(out.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
    int e = open(err.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
    dup2(o, 1);
    dup2(e, 2);
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    execv(argv[0], argv.data());
    _exit(127);
  }
  int status = 0;
  waitpid(pid, &status, 0);
  Outcome r;
  r.status = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  r.out = slurp(out);
  r.err = slurp(err);
  return r;
}

std::unique_ptr<ResourceStore> openUrl(const std::string& url) {
  auto s = openStore(url, StoreOptions{});
  if (!s.ok()) throw std::runtime_error(s.error().message);
  return std::move(s.value());
}


const std::int64_t kT0 = 1700000000000;  // the versions' lastUpdated, set so that a copy must keep them

std::string patient(const std::string& id, const std::string& identifier, const std::string& birthDate) {
  return R"({"resourceType":"Patient","id":")" + id + R"(","identifier":[{"system":"urn:test","value":")" + identifier +
         R"("}],"birthDate":")" + birthDate + R"("})";
}

std::string observation(const std::string& id, const std::string& when) {
  return R"({"resourceType":"Observation","id":")" + id +
         R"(","status":"final","code":{"coding":[{"system":"http://loinc.org","code":"8867-4"}]},"effectiveDateTime":")" + when +
         R"("})";
}

// The source: 4 resources, 7 versions (updates and a deletion), indexed; a kept value, two
// received messages and two deliveries (one sent, one with bytes a text column would cut).
void fillSource(ResourceStore& s) {
  struct V {
    const char* type;
    const char* id;
    std::int64_t version;
    std::string body;  // empty: a deletion
  };
  std::vector<V> versions = {
      {"Patient", "p1", 1, patient("p1", "A", "1960-05-01")},
      {"Patient", "p2", 1, patient("p2", "C", "1970-01-01")},
      {"Observation", "o1", 1, observation("o1", "2024-03-01")},
      {"Patient", "p1", 2, patient("p1", "B", "1961-02-03")},
      {"Patient", "p2", 2, ""},
      {"Observation", "o1", 2, observation("o1", "2024-04-02")},
      {"Patient", "p3", 1, patient("p3", "D", "1980-07-14")},
  };
  std::int64_t t = kT0;
  for (const auto& v : versions) {
    auto r = s.write([&](WriteTxn& txn) -> Result<void> {
      ResourceVersion rv;
      rv.type = v.type;
      rv.id = v.id;
      rv.version = v.version;
      rv.deleted = v.body.empty();
      rv.method = rv.deleted ? "DELETE" : v.version == 1 ? "POST" : "PUT";
      rv.body = v.body;
      rv.lastUpdatedMs = t += 1000;
      return txn.put(rv, IndexRows{});
    });
    if (!r.ok()) throw std::runtime_error(r.error().message);
  }
  if (auto r = search::reindexIfNeeded(s, "", true); !r.ok()) throw std::runtime_error(r.error().message);
  if (auto r = s.setMeta("test.note", "kept"); !r.ok()) throw std::runtime_error(r.error().message);
  auto r = s.write([&](WriteTxn& txn) -> Result<void> {
    InboxMessage m;
    m.channel = "mllp";
    m.partner = "chu";
    m.controlId = "MSG1";
    m.type = "ADT^A01";
    m.status = "processed";
    m.ackCode = "AA";
    m.patient = "Patient/p1";
    m.message = "MSH|^~\\&|CHU\rPID|1\r";
    m.ack = "MSH|^~\\&|P\rMSA|AA|MSG1\r";
    if (auto p = txn.putInbox(m); !p.ok()) return p;
    InboxMessage refused = m;
    refused.controlId = "MSG2";
    refused.status = "rejected";
    refused.ackCode = "AR";
    refused.patient.clear();
    refused.detail = "PID-3 is missing";
    if (auto p = txn.putInbox(refused); !p.ok()) return p;
    Delivery d;
    d.destination = "gp1";
    d.orderKey = "Patient/p1";
    d.kind = "REF^I12";
    d.focus = "Patient/p1/_history/2";
    if (auto e = txn.enqueue(d); !e.ok()) return e;
    d.payload = "MSH|sent";
    d.status = "sent";
    d.attempts = 2;
    d.doneMs = kT0 + 99000;
    d.lastError = "timeout once";
    if (auto u = txn.updateDelivery(d); !u.ok()) return u;
    Delivery queued;
    queued.destination = "gp2";
    queued.orderKey = "Patient/p3";
    queued.kind = "fhir-transaction";
    queued.focus = "Patient/p3/_history/1";
    if (auto e = txn.enqueue(queued); !e.ok()) return e;
    queued.payload = std::string("a\0b\xff", 4);
    return txn.updateDelivery(queued);
  });
  if (!r.ok()) throw std::runtime_error(r.error().message);
}

std::string describe(const ResourceVersion& v) {
  return v.type + "/" + v.id + "/" + std::to_string(v.version) + " " + std::to_string(v.lastUpdatedMs) + " " + v.method + " " +
         (v.deleted ? "deleted" : "") + " " + v.body;
}

std::vector<std::string> searchIds(ResourceStore& s, const std::string& type, const fhir::Params& params) {
  auto q = fhir::parseSearch(type, params, fhir::SearchLimits{}, true);
  if (!q.ok()) throw std::runtime_error(q.error().message);
  auto page = s.search(q->query);
  if (!page.ok()) throw std::runtime_error(page.error().message);
  std::vector<std::string> ids;
  for (const auto& v : page->items) ids.push_back(v.id);
  std::sort(ids.begin(), ids.end());
  return ids;
}

std::vector<std::string> historyOf(ResourceStore& s, const std::string& type, const std::string& id) {
  HistoryQuery q;
  q.type = type;
  q.id = id;
  q.count = 100;
  auto h = s.history(q);
  if (!h.ok()) throw std::runtime_error(h.error().message);
  std::vector<std::string> out;
  for (const auto& v : h->items) out.push_back(describe(v));
  return out;
}

// The target answers as the source does.
void expectSameAnswers(ResourceStore& source, ResourceStore& target) {
  for (auto [type, id] : std::vector<std::pair<std::string, std::string>>{
           {"Patient", "p1"}, {"Patient", "p2"}, {"Patient", "p3"}, {"Observation", "o1"}}) {
    auto a = source.read(type, id), b = target.read(type, id);
    ASSERT_TRUE(a.ok() && b.ok() && a->has_value() && b->has_value()) << type << "/" << id;
    EXPECT_EQ(describe(**a), describe(**b));
  }
  auto old = target.vread("Patient", "p1", 1);
  ASSERT_TRUE(old.ok() && old->has_value());
  EXPECT_EQ((*old)->body, patient("p1", "A", "1960-05-01"));
  EXPECT_EQ((*old)->lastUpdatedMs, kT0 + 1000);
  EXPECT_EQ(historyOf(source, "Patient", "p2"), historyOf(target, "Patient", "p2"));
  auto whole = historyOf(target, "", "");
  EXPECT_EQ(historyOf(source, "", ""), whole);
  ASSERT_EQ(whole.size(), 7u);
  EXPECT_EQ(whole.front().rfind("Patient/p3/1 ", 0), 0u) << whole.front();  // newest first
  EXPECT_EQ(whole.back().rfind("Patient/p1/1 ", 0), 0u) << whole.back();

  // A token and a date, on the current versions only; the deleted resource is found by neither.
  for (const auto& [type, params, expected] : std::vector<std::tuple<std::string, fhir::Params, std::vector<std::string>>>{
           {"Patient", {{"identifier", "urn:test|B"}}, {"p1"}},
           {"Patient", {{"identifier", "urn:test|A"}}, {}},
           {"Patient", {{"identifier", "urn:test|C"}}, {}},
           {"Patient", {{"birthdate", "lt1975"}}, {"p1"}},
           {"Observation", {{"date", "2024-04"}}, {"o1"}},
           {"Observation", {{"code", "http://loinc.org|8867-4"}}, {"o1"}}}) {
    EXPECT_EQ(searchIds(source, type, params), expected) << params[0].first << "=" << params[0].second << " on the source";
    EXPECT_EQ(searchIds(target, type, params), expected) << params[0].first << "=" << params[0].second << " on the target";
  }

  auto meta = target.getMeta("test.note");
  ASSERT_TRUE(meta.ok());
  EXPECT_EQ(*meta, "kept");
  auto inA = source.scanInbox(0, 100), inB = target.scanInbox(0, 100);
  ASSERT_TRUE(inA.ok() && inB.ok());
  ASSERT_EQ(inB->size(), 2u);
  for (std::size_t i = 0; i < inA->size(); ++i) {
    const auto &a = (*inA)[i], &b = (*inB)[i];
    EXPECT_EQ(std::tie(a.id, a.channel, a.partner, a.controlId, a.type, a.receivedMs, a.status, a.ackCode, a.patient, a.detail, a.message, a.ack),
              std::tie(b.id, b.channel, b.partner, b.controlId, b.type, b.receivedMs, b.status, b.ackCode, b.patient, b.detail, b.message, b.ack));
  }
  auto taken = target.findInbox("chu", "MSG1");
  ASSERT_TRUE(taken.ok() && taken->has_value());
  EXPECT_EQ((*taken)->status, "processed");
  auto outA = source.scanDeliveries(0, 100), outB = target.scanDeliveries(0, 100);
  ASSERT_TRUE(outA.ok() && outB.ok());
  ASSERT_EQ(outB->size(), 2u);
  for (std::size_t i = 0; i < outA->size(); ++i) {
    const auto &a = (*outA)[i], &b = (*outB)[i];
    EXPECT_EQ(std::tie(a.id, a.destination, a.orderKey, a.kind, a.focus, a.payload, a.status, a.attempts, a.createdMs, a.nextTryMs, a.doneMs, a.lastError),
              std::tie(b.id, b.destination, b.orderKey, b.kind, b.focus, b.payload, b.status, b.attempts, b.createdMs, b.nextTryMs, b.doneMs, b.lastError));
  }
  EXPECT_EQ((*outB)[1].payload, std::string("a\0b\xff", 4));
  // The target's own rows are numbered after the copied ones.
  Delivery next;
  next.destination = "gp1";
  next.orderKey = "Patient/p1";
  next.kind = "REF^I12";
  next.focus = "Patient/p1/_history/2";
  ASSERT_TRUE(target.write([&](WriteTxn& t) { return t.enqueue(next); }).ok());
  EXPECT_GT(next.id, outB->back().id);
  ResourceVersion v;
  v.type = "Patient";
  v.id = "p1";
  v.version = 3;
  v.method = "PUT";
  v.body = patient("p1", "E", "1961-02-03");
  ASSERT_TRUE(target.write([&](WriteTxn& t) { return t.put(v, IndexRows{}); }).ok());
}

class DbCopyTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    if (GetParam() == "postgresql") {
      std::string skip;
      target_ = PgServer::freshDatabase(skip);
      if (target_.empty()) GTEST_SKIP() << skip;
    } else {
      target_ = "sqlite:" + dir_.path() + "/target/p.db";
    }
    source_ = "sqlite:" + dir_.path() + "/source/p.db";
    auto s = openUrl(source_);
    fillSource(*s);
    s->close();
  }

  TempDir dir_;
  std::string source_, target_;
};

}  // namespace

INSTANTIATE_TEST_SUITE_P(Targets, DbCopyTest, ::testing::Values("sqlite", "postgresql"),
                         [](const ::testing::TestParamInfo<std::string>& info) { return info.param; });

TEST_P(DbCopyTest, CopiesEveryVersionAndMessageAndTheTargetAnswersAlike) {
  Outcome copy = runBinary(dir_, {"db", "copy", "--from", source_, "--to", target_});
  ASSERT_EQ(copy.status, 0) << copy.out << copy.err;
  EXPECT_NE(copy.out.find("copied 7 versions, 2 kept values, 2 received messages and 2 deliveries; indexed 3 resources"), std::string::npos)
      << copy.out;
  EXPECT_NE(copy.out.find("\nverified\n"), std::string::npos) << copy.out;
  // Both sides' figures are printed, and agree.
  std::size_t at = copy.out.find("source ");
  std::size_t to = copy.out.find("target ");
  ASSERT_NE(at, std::string::npos);
  ASSERT_NE(to, std::string::npos);
  std::string sourceFigures = copy.out.substr(copy.out.find('\n', at), to - copy.out.find('\n', at));
  std::string targetFigures = copy.out.substr(copy.out.find('\n', to), copy.out.find("verified") - copy.out.find('\n', to));
  EXPECT_EQ(sourceFigures, targetFigures);
  EXPECT_NE(sourceFigures.find("Patient: 2 current, 1 deleted, 5 versions"), std::string::npos) << sourceFigures;
  EXPECT_NE(sourceFigures.find("digest: "), std::string::npos);

  {
    auto source = openUrl(source_);
    auto target = openUrl(target_);
    expectSameAnswers(*source, *target);
  }

  // The target's status: the figures, exit 0 (up to date).
  Outcome status = runBinary(dir_, {"db", "status", "--set", "storage.url=" + target_});
  EXPECT_EQ(status.status, 0) << status.out << status.err;
  EXPECT_NE(status.out.find("back-end: " + GetParam()), std::string::npos) << status.out;
  EXPECT_NE(status.out.find("schema: version 5, newest known 5: up to date"), std::string::npos) << status.out;
  EXPECT_NE(status.out.find("resources: 3 current, 1 deleted, 8 versions"), std::string::npos) << status.out;
  EXPECT_NE(status.out.find("  Observation: 1 current, 0 deleted, 2 versions"), std::string::npos) << status.out;
  EXPECT_NE(status.out.find("messages: 2 received, 3 deliveries"), std::string::npos) << status.out;

  // Copying again into the now non-empty target is refused, and changes nothing.
  Outcome again = runBinary(dir_, {"db", "copy", "--from", source_, "--to", target_});
  EXPECT_EQ(again.status, 1) << again.out;
  EXPECT_NE(again.err.find("the target already holds 4 resources"), std::string::npos) << again.err;
  auto target = openUrl(target_);
  auto st = target->status();
  ASSERT_TRUE(st.ok());
  EXPECT_EQ(st->versions, 8);
}

// A database with migrations pending is reported (exit 3) and left as it is; a source in that
// state is not copied.
TEST(DbStatusTest, ASqliteDatabaseWithPendingMigrationsExitsThreeAndStaysAsItIs) {
  TempDir dir;
  std::string path = dir.path() + "/old.db";
  {
    sqlite3* db = nullptr;
    ASSERT_EQ(sqlite3_open(path.c_str(), &db), SQLITE_OK);
    std::string sql = std::string(
                          "CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at INTEGER NOT NULL);"
                          "INSERT INTO schema_migrations VALUES (1, 'resources', 0);") +
                      sqliteMigrations().at(0).sql +
                      "INSERT INTO resource_version VALUES (1, 'Patient', 'old', 1, 1000, 'PUT', 0, '{}');"
                      "INSERT INTO resource_current VALUES ('Patient', 'old', 1, 1, 0, 1000);";
    ASSERT_EQ(sqlite3_exec(db, sql.c_str(), nullptr, nullptr, nullptr), SQLITE_OK) << sqlite3_errmsg(db);
    sqlite3_close(db);
  }
  Outcome status = runBinary(dir, {"db", "status", "--set", "storage.url=sqlite:" + path});
  EXPECT_EQ(status.status, 3) << status.out << status.err;
  EXPECT_NE(status.out.find("schema: version 1, newest known 5: 4 migrations pending"), std::string::npos) << status.out;
  EXPECT_NE(status.out.find("resources: 1 current, 0 deleted, 1 versions"), std::string::npos) << status.out;
  EXPECT_NE(status.out.find("messages: 0 received, 0 deliveries"), std::string::npos) << status.out;
  {
    sqlite3* db = nullptr;
    ASSERT_EQ(sqlite3_open(path.c_str(), &db), SQLITE_OK);
    sqlite3_stmt* st = nullptr;
    ASSERT_EQ(sqlite3_prepare_v2(db, "SELECT MAX(version) FROM schema_migrations", -1, &st, nullptr), SQLITE_OK);
    ASSERT_EQ(sqlite3_step(st), SQLITE_ROW);
    EXPECT_EQ(sqlite3_column_int(st, 0), 1);
    sqlite3_finalize(st);
    sqlite3_close(db);
  }
  Outcome copy = runBinary(dir, {"db", "copy", "--from", "sqlite:" + path, "--to", "sqlite:" + dir.path() + "/new.db"});
  EXPECT_EQ(copy.status, 1) << copy.out;
  EXPECT_NE(copy.err.find("its schema is at version 1 of 5: run 'passerelle db migrate' on it first"), std::string::npos) << copy.err;
}

TEST(DbStatusTest, AnAbsentDatabaseExitsOneNamingIt) {
  TempDir dir;
  Outcome status = runBinary(dir, {"db", "status", "--set", "storage.url=sqlite:" + dir.path() + "/absent/p.db"});
  EXPECT_EQ(status.status, 1) << status.out;
  EXPECT_NE(status.err.find(dir.path() + "/absent/p.db"), std::string::npos) << status.err;
  EXPECT_FALSE(std::filesystem::exists(dir.path() + "/absent/p.db"));
}

TEST(DbStatusTest, AFreshPostgresqlDatabaseHasEveryMigrationPendingAndAWrongOneExitsOne) {
  std::string skip;
  std::string url = PgServer::freshDatabase(skip);
  if (url.empty()) GTEST_SKIP() << skip;
  TempDir dir;
  Outcome status = runBinary(dir, {"db", "status", "--set", "storage.url=" + url});
  EXPECT_EQ(status.status, 3) << status.out << status.err;
  EXPECT_NE(status.out.find("back-end: postgresql"), std::string::npos) << status.out;
  EXPECT_NE(status.out.find("schema: version 0, newest known 5: 5 migrations pending"), std::string::npos) << status.out;
  std::string error;
  PgServer* server = PgServer::shared(error);
  ASSERT_NE(server, nullptr) << error;
  std::string db = url.substr(url.rfind('/') + 1);
  EXPECT_EQ(server->psql(db, "SELECT COUNT(*) FROM pg_tables WHERE tablename = 'schema_migrations'"), "0\n");
  // A database that does not exist, named without its password.
  std::string wrong = "postgresql://" + server->user() + ":hush@127.0.0.1:" + std::to_string(server->port()) + "/absent";
  status = runBinary(dir, {"db", "status", "--set", "storage.url=" + wrong});
  EXPECT_EQ(status.status, 1) << status.out;
  EXPECT_NE(status.err.find("absent"), std::string::npos) << status.err;
  EXPECT_EQ(status.err.find("hush"), std::string::npos) << status.err;
}

// The comparison that ends a copy finds a version that differs in its body alone.
TEST(StoreCopyTest, FingerprintsOfStoresDifferingInOneBodyDiffer) {
  TempDir dir;
  auto a = openUrl("sqlite:" + dir.path() + "/a.db");
  auto b = openUrl("sqlite:" + dir.path() + "/b.db");
  for (auto* s : {a.get(), b.get()}) {
    auto r = s->write([&](WriteTxn& t) -> Result<void> {
      ResourceVersion v;
      v.type = "Patient";
      v.id = "p";
      v.version = 1;
      v.method = "POST";
      v.lastUpdatedMs = kT0;
      v.body = s == a.get() ? patient("p", "A", "1960-01-01") : patient("p", "A", "1960-01-02");
      return t.put(v, IndexRows{});
    });
    ASSERT_TRUE(r.ok());
  }
  auto fa = app::fingerprintStore(*a), fb = app::fingerprintStore(*b);
  ASSERT_TRUE(fa.ok() && fb.ok());
  EXPECT_EQ(fa->digest.size(), 64u);
  EXPECT_TRUE(app::compareFingerprints(*fa, *fa).empty());
  auto differences = app::compareFingerprints(*fa, *fb);
  ASSERT_EQ(differences.size(), 1u);
  EXPECT_NE(differences[0].find("digest"), std::string::npos) << differences[0];
  // A copy into a store that holds resources is refused before anything is written.
  auto refused = app::copyStore(*a, *b, app::CopyOptions{});
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.error().message, "the target already holds 1 resources");
}

// Small units: every page boundary of the versions, the inbox and the outbox is crossed; progress
// is reported at the given step.
TEST(StoreCopyTest, CopiesInSmallUnitsAndReportsProgress) {
  TempDir dir;
  auto a = openUrl("sqlite:" + dir.path() + "/a.db");
  fillSource(*a);
  auto b = openUrl("sqlite:" + dir.path() + "/b.db");
  app::CopyOptions options;
  options.perUnit = 2;
  options.progressEvery = 3;
  std::vector<std::string> lines;
  options.progress = [&](const std::string& line) { lines.push_back(line); };
  auto r = app::copyStore(*a, *b, options);
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_TRUE(r->differences.empty()) << r->differences.front();
  EXPECT_EQ(r->versions, 7);
  EXPECT_EQ(r->inbox, 2);
  EXPECT_EQ(r->deliveries, 2);
  EXPECT_EQ(r->indexed, 3);
  EXPECT_EQ(r->source.digest, r->target.digest);
  ASSERT_GE(lines.size(), 2u);
  EXPECT_EQ(lines[0], "copied 4 of 7 versions");
  EXPECT_EQ(lines[1], "copied 6 of 7 versions");
  expectSameAnswers(*a, *b);
}

namespace {

// The SQLite audit trail of a gateway whose data.dir is `dir`, where `passerelle` finds it.
audit::Options trailOptions(const std::string& dir) {
  audit::Options o;
  o.url = "sqlite:" + dir + "/audit.db";
  o.checkpointDir = dir + "/audit-checkpoints";
  o.checkpointRecords = 250;
  return o;
}

std::unique_ptr<audit::AuditLog> openTrail(const audit::Options& o) {
  auto log = audit::AuditLog::open(o);
  if (!log.ok()) throw std::runtime_error(log.error().message);
  return std::move(log.value());
}

// Runs SQL on the SQLite database at `path`.
void sqliteExec(const std::string& path, const std::string& sql) {
  sqlite3* db = nullptr;
  if (sqlite3_open(path.c_str(), &db) != SQLITE_OK) throw std::runtime_error("open " + path);
  char* message = nullptr;
  int rc = sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &message);
  std::string error = message ? message : "";
  sqlite3_free(message);
  sqlite3_close(db);
  if (rc != SQLITE_OK) throw std::runtime_error(sql + ": " + error);
}

std::int64_t sqliteCount(const std::string& path, const std::string& sql) {
  sqlite3* db = nullptr;
  sqlite3_stmt* st = nullptr;
  std::int64_t n = -1;
  if (sqlite3_open(path.c_str(), &db) == SQLITE_OK && sqlite3_prepare_v2(db, sql.c_str(), -1, &st, nullptr) == SQLITE_OK &&
      sqlite3_step(st) == SQLITE_ROW)
    n = sqlite3_column_int64(st, 0);
  sqlite3_finalize(st);
  sqlite3_close(db);
  return n;
}

audit::Record sampleRecord(int i) {
  audit::Record r;
  r.timeMs = kT0 + i * 1000;
  r.kind = "rest";
  r.action = i % 4 ? "read" : "search";
  r.outcome = "granted";
  r.status = 200;
  r.subject = "user" + std::to_string(i % 7);
  r.method = "GET";
  r.path = "/fhir/Patient/p" + std::to_string(i % 11);
  if (i % 3 == 0) r.patients = {"p" + std::to_string(i % 11), "p" + std::to_string(i % 5)};
  return r;
}

// 600 records a second apart, every third naming patients; two pairs committed in the store's
// outbox under the same ids (SQLite numbers its outbox anew once it is empty); then the oldest 100
// purged (an anchor, audit_meta, a purge record); then 5 records that only the journal holds (the
// database refused them, as after a crash): 510 records, seq 101 to 610, 505 in the database.
void fillTrail(const std::string& dir) {
  auto log = openTrail(trailOptions(dir));
  for (int i = 0; i < 600; ++i) {
    if (auto a = log->append(sampleRecord(i)); !a.ok()) throw std::runtime_error(a.error().message);
  }
  for (int round = 0; round < 2; ++round) {
    std::vector<audit::AuditLog::Committed> committed;
    for (std::int64_t id : {1, 2}) {
      audit::Record r;
      r.kind = "rest";
      r.action = "create";
      r.outcome = "granted";
      r.status = 201;
      r.subject = "writer";
      r.patients = {"p3"};
      committed.push_back({id, audit::encodeRecord(r)});
    }
    log->appendCommitted(std::move(committed));
  }
  audit::Record by;
  by.subject = "test";
  by.role = "admin";
  auto purged = log->purge(kT0 + 100 * 1000, by);
  if (!purged.ok()) throw std::runtime_error(purged.error().message);
  if (purged->removed != 100) throw std::runtime_error("purged " + std::to_string(purged->removed));
  if (auto q = log->query({}); !q.ok()) throw std::runtime_error(q.error().message);
  sqliteExec(dir + "/audit.db", "CREATE TRIGGER refuse BEFORE INSERT ON audit_record BEGIN SELECT RAISE(ABORT, 'refused'); END;");
  for (int i = 600; i < 605; ++i)
    if (auto a = log->append(sampleRecord(i * 3)); !a.ok()) throw std::runtime_error(a.error().message);
  log->close();
  sqliteExec(dir + "/audit.db", "DROP TRIGGER refuse");
}

// The records naming `patient`, newest first, as "seq hash action origin".
std::vector<std::string> recordsOf(const audit::AuditLog& log, const std::string& patient) {
  audit::AuditLog::Query q;
  q.patient = patient;
  q.count = 1000;
  auto r = log.query(q);
  if (!r.ok()) throw std::runtime_error(r.error().message);
  std::vector<std::string> out;
  for (const auto& x : r.value()) out.push_back(std::to_string(x.seq) + " " + x.hash + " " + x.action + " " + x.origin);
  return out;
}

std::int64_t storeVersions(const std::string& url) {
  auto s = openUrl(url);
  auto st = s->status();
  if (!st.ok()) throw std::runtime_error(st.error().message);
  return st->versions;
}

class DbCopyAuditTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string skip;
    target_ = PgServer::freshDatabase(skip);
    if (target_.empty()) GTEST_SKIP() << skip;
    source_ = "sqlite:" + dir_.path() + "/source/p.db";
    auto s = openUrl(source_);
    fillSource(*s);
    s->close();
    fillTrail(dir_.path());
  }

  TempDir dir_;
  std::string source_, target_;
};

}  // namespace

TEST_F(DbCopyAuditTest, TheTrailMovesIntoPostgresqlWithItsChainAndTheCheckpointsStillVerifyIt) {
  const std::string checkpoints = dir_.path() + "/audit-checkpoints";
  EXPECT_EQ(sqliteCount(dir_.path() + "/audit.db", "SELECT count(*) FROM audit_record"), 505);

  // The store and the trail into one PostgreSQL database; the journal's records are taken first.
  Outcome copy = runBinary(dir_, {"db", "copy", "--from", source_, "--to", target_, "--audit-to", target_});
  ASSERT_EQ(copy.status, 0) << copy.out << copy.err;
  EXPECT_NE(copy.out.find("\nverified\n"), std::string::npos) << copy.out;
  EXPECT_NE(copy.out.find("audit trail copied: 510 records, last seq 610, verified against the signed checkpoints"),
            std::string::npos)
      << copy.out;
  EXPECT_EQ(sqliteCount(dir_.path() + "/audit.db", "SELECT count(*) FROM audit_record"), 510);

  Outcome verify = runBinary(dir_, {"audit", "verify", "--db", target_, "--checkpoints", checkpoints});
  EXPECT_EQ(verify.status, 0) << verify.out << verify.err;
  EXPECT_NE(verify.out.find("audit trail verified: 510 records"), std::string::npos) << verify.out;

  std::vector<std::string> p3, p4;
  {
    auto log = openTrail(trailOptions(dir_.path()));
    p3 = recordsOf(*log, "p3");
    p4 = recordsOf(*log, "p4");
  }
  ASSERT_GT(p3.size(), 10u);
  // The pairs from the store's outbox, twice under each id, and a record of the journal.
  EXPECT_EQ(std::count_if(p3.begin(), p3.end(), [](const std::string& r) { return r.ends_with(" outbox:1"); }), 2);
  EXPECT_EQ(p3.front().rfind("607 ", 0), 0u) << p3.front();

  // The gateway goes on with the copy: the same answers, the chain continued from its last record.
  audit::Options onPg = trailOptions(dir_.path());
  onPg.url = target_;
  {
    auto log = openTrail(onPg);
    EXPECT_EQ(recordsOf(*log, "p3"), p3);
    EXPECT_EQ(recordsOf(*log, "p4"), p4);
    auto last = log->get(610);
    ASSERT_TRUE(last.ok() && last->has_value());
    audit::Record next;
    next.kind = "rest";
    next.action = "read";
    next.outcome = "granted";
    next.subject = "after";
    next.patients = {"p3"};
    auto seq = log->append(next);
    ASSERT_TRUE(seq.ok()) << seq.error().message;
    EXPECT_EQ(seq.value(), 611);
    auto appended = log->get(611);
    ASSERT_TRUE(appended.ok() && appended->has_value());
    EXPECT_EQ((*appended)->prevHash, (*last)->hash);
    // The new store's outbox numbers its rows from 1 again: its record 1 is chained, not taken for
    // the source store's record 1 that the copied trail holds.
    audit::Record written = next;
    written.action = "create";
    ASSERT_TRUE(log->adoptCommitted({{1, audit::encodeRecord(written)}}).ok());
    log->close();
    auto reopened = openTrail(onPg);
    auto adopted = reopened->get(612);
    ASSERT_TRUE(adopted.ok() && adopted->has_value());
    EXPECT_EQ((*adopted)->action, "create");
    EXPECT_EQ((*adopted)->origin, "outbox:1");
  }
  auto after = audit::verify(target_, checkpoints, "");
  EXPECT_TRUE(after.ok) << after.firstBadSeq << ": " << after.problem;
  EXPECT_EQ(after.records, 512);
}

TEST_F(DbCopyAuditTest, ATargetTrailHoldingRecordsIsRefusedAndNothingIsWritten) {
  audit::Options other;
  other.url = target_;
  other.checkpointDir = dir_.path() + "/other-checkpoints";
  {
    auto log = openTrail(other);
    for (int i = 0; i < 3; ++i) {
      audit::Record r;
      r.kind = "admin";
      r.action = "verify";
      r.outcome = "granted";
      ASSERT_TRUE(log->append(r).ok());
    }
    log->close();
  }
  Outcome copy = runBinary(dir_, {"db", "copy", "--from", source_, "--to", target_, "--audit-to", target_});
  EXPECT_EQ(copy.status, 1) << copy.out;
  EXPECT_NE(copy.err.find("the target audit trail already holds 3 records"), std::string::npos) << copy.err;
  EXPECT_EQ(storeVersions(target_), 0);
  auto r = audit::verify(target_, other.checkpointDir, "");
  EXPECT_TRUE(r.ok) << r.problem;
  EXPECT_EQ(r.records, 3);
  // --audit-from alone is a usage error.
  Outcome alone = runBinary(dir_, {"db", "copy", "--from", source_, "--to", target_, "--audit-from", "sqlite:x.db"});
  EXPECT_EQ(alone.status, 2) << alone.err;
  // A PostgreSQL trail beside a SQLite store: the gateway would not start on them.
  Outcome split = runBinary(dir_, {"db", "copy", "--from", source_, "--to", "sqlite:" + dir_.path() + "/other.db", "--audit-to", target_});
  EXPECT_EQ(split.status, 2) << split.err;
  EXPECT_NE(split.err.find("needs --to a PostgreSQL store"), std::string::npos) << split.err;
}

TEST_F(DbCopyAuditTest, ARecordEditedInTheSourceFailsTheCopysVerificationNamingIt) {
  {
    sqlite3* db = nullptr;
    ASSERT_EQ(sqlite3_open((dir_.path() + "/audit.db").c_str(), &db), SQLITE_OK);
    ASSERT_EQ(sqlite3_exec(db, "UPDATE audit_record SET record = replace(record, 'user3', 'user9') WHERE seq = 305",
                           nullptr, nullptr, nullptr),
              SQLITE_OK)
        << sqlite3_errmsg(db);
    EXPECT_EQ(sqlite3_changes(db), 1);
    sqlite3_close(db);
  }
  Outcome copy = runBinary(dir_, {"db", "copy", "--from", source_, "--to", target_, "--audit-to", target_});
  EXPECT_EQ(copy.status, 1) << copy.out << copy.err;
  EXPECT_NE(copy.err.find("does not verify against the signed checkpoints"), std::string::npos) << copy.err;
  EXPECT_NE(copy.err.find("record 305: hash does not match its content"), std::string::npos) << copy.err;
}

// A trail longer than a page of the copy (10,000 records): every page boundary crossed, the patient
// index with it; then the copy copied again, PostgreSQL to PostgreSQL.
TEST(TrailCopyTest, ATrailOfSeveralPagesCopiesIntoPostgresqlAndOnIntoAnother) {
  std::string skip;
  std::string first = PgServer::freshDatabase(skip);
  if (first.empty()) GTEST_SKIP() << skip;
  std::string second = PgServer::freshDatabase(skip);
  ASSERT_FALSE(second.empty()) << skip;
  TempDir dir;
  audit::Options o = trailOptions(dir.path());
  o.checkpointRecords = 5000;
  {
    auto log = openTrail(o);
    std::vector<audit::AuditLog::Committed> committed;
    for (int i = 0; i < 25000; ++i) committed.push_back({i % 50 + 1, audit::encodeRecord(sampleRecord(i))});
    log->appendCommitted(std::move(committed));
    log->close();
  }
  const std::int64_t patientRows = sqliteCount(dir.path() + "/audit.db", "SELECT count(*) FROM audit_patient");
  ASSERT_GT(patientRows, 10000);

  auto copied = audit::copyTrail(o, first);
  ASSERT_TRUE(copied.ok()) << copied.error().message;
  EXPECT_EQ(copied->records, 25000);
  EXPECT_EQ(copied->patientRows, patientRows);
  EXPECT_EQ(copied->firstSeq, 1);
  EXPECT_EQ(copied->lastSeq, 25000);
  auto v = audit::verify(first, o.checkpointDir, "");
  EXPECT_TRUE(v.ok) << v.firstBadSeq << ": " << v.problem;
  EXPECT_EQ(v.records, 25000);

  audit::Options fromPg = o;
  fromPg.url = first;
  auto again = audit::copyTrail(fromPg, second);
  ASSERT_TRUE(again.ok()) << again.error().message;
  EXPECT_EQ(again->records, 25000);
  EXPECT_EQ(again->lastHash, copied->lastHash);
  v = audit::verify(second, o.checkpointDir, "");
  EXPECT_TRUE(v.ok) << v.firstBadSeq << ": " << v.problem;
  // A copied record whose origin column is set again would be taken for a row of the new store's
  // outbox: verify names it.
  std::string error;
  PgServer* server = PgServer::shared(error);
  ASSERT_NE(server, nullptr) << error;
  server->psql(second.substr(second.rfind('/') + 1), "UPDATE audit_record SET origin = 'outbox:7' WHERE seq = 12345");
  v = audit::verify(second, o.checkpointDir, "");
  EXPECT_FALSE(v.ok);
  EXPECT_EQ(v.firstBadSeq, 12345);
  EXPECT_EQ(v.problem, "record 12345: column origin of a copied record is not empty");
  // A copy into a trail that holds records is refused, and says how many.
  auto refused = audit::copyTrail(o, second);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.error().message, "the target audit trail already holds 25000 records");
}
