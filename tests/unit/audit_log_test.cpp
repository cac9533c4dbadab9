// Tests of the audit trail: append, query, group commit under concurrency, signed checkpoints,
// tamper detection on copies of the database and of the checkpoint folder, retention purge,
// failing closed, the journal (recovery after a crash, torn and edited frames), the AuditEvent
// (BALP) rendering and the command line.
#include "gateway/audit/audit_log.h"

#include <gtest/gtest.h>
#include <sqlite3.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <random>
#include <set>
#include <sstream>
#include <thread>
#include <vector>

#include "gateway/audit/checkpoint_file.h"
#include "gateway/audit/journal.h"
#include "gateway/audit/record_codec.h"
#include "mappings/fhir/validator.h"
#include "tests/support/pg_server.h"
#include "tests/support/test_gateway.h"

namespace passerelle::audit {
namespace {

namespace fs = std::filesystem;
using passerelle::testing::PgServer;
using passerelle::testing::runCommand;
using passerelle::testing::TempDir;
using Json = nlohmann::json;

constexpr std::int64_t kBaseMs = 1767225600000;  // 2026-01-01T00:00:00Z

Options optionsIn(const std::string& dir, std::int64_t checkpointRecords = 10000) {
  Options o;
  o.url = "sqlite:" + dir + "/audit.db";
  o.checkpointDir = dir + "/checkpoints";
  o.checkpointRecords = checkpointRecords;
  return o;
}

std::unique_ptr<AuditLog> openLog(const Options& o) {
  auto r = AuditLog::open(o);
  EXPECT_TRUE(r.ok()) << (r.ok() ? "" : r.error().message);
  return r.ok() ? std::move(r.value()) : nullptr;
}

Record sample(int i) {
  Record r;
  r.kind = "rest";
  r.action = i % 3 == 0 ? "search" : "read";
  r.outcome = i % 5 == 0 ? "denied" : "granted";
  r.status = i % 5 == 0 ? 403 : 200;
  r.reason = i % 5 == 0 ? "no-care-relationship" : "";
  r.subject = "user-" + std::to_string(i % 4);
  r.role = "gp";
  r.practitioner = "rpps:1000" + std::to_string(i % 4);
  r.tokenId = "jti-" + std::to_string(i);
  r.purpose = "TREAT";
  r.sourceAddress = "10.0.0." + std::to_string(i % 200) + ":5" + std::to_string(1000 + i);
  r.method = "GET";
  r.resourceType = "Observation";
  r.path = "/fhir/Observation/o" + std::to_string(i);
  r.query = i % 3 == 0 ? "patient=p" + std::to_string(i % 7) + "&_count=10" : "";
  r.resources = {"Observation/o" + std::to_string(i)};
  r.patients = {"p" + std::to_string(i % 7)};
  if (i % 11 == 0) r.patients.push_back("p" + std::to_string((i + 3) % 7));
  r.detail = i % 13 == 0 ? R"({"note":"é \"quoted\"\nline"})" : "";
  return r;
}

// Four appends at once while the log cannot write: how many failed as unavailable.
int unavailableOfFourConcurrentAppends(AuditLog& log) {
  std::vector<std::thread> ts;
  std::atomic<int> failures{0};
  for (int t = 0; t < 4; ++t)
    ts.emplace_back([&, t] {
      auto r = log.append(sample(10 + t));
      if (!r.ok() && r.error().code == ErrorCode::kUnavailable) ++failures;
    });
  for (auto& t : ts) t.join();
  return failures.load();
}

// Direct SQL on an audit database file (the attacker's tools).
class Sql {
 public:
  explicit Sql(const std::string& path) { EXPECT_EQ(sqlite3_open(path.c_str(), &db_), SQLITE_OK); }
  ~Sql() { sqlite3_close(db_); }
  void exec(const std::string& sql) {
    char* msg = nullptr;
    int rc = sqlite3_exec(db_, sql.c_str(), nullptr, nullptr, &msg);
    EXPECT_EQ(rc, SQLITE_OK) << sql << ": " << (msg ? msg : "");
    sqlite3_free(msg);
  }
  bool tryExec(const std::string& sql) { return sqlite3_exec(db_, sql.c_str(), nullptr, nullptr, nullptr) == SQLITE_OK; }
  std::int64_t count(const std::string& sql) { return std::atoll(text(sql).c_str()); }
  std::string text(const std::string& sql) {
    sqlite3_stmt* st = nullptr;
    std::string out;
    EXPECT_EQ(sqlite3_prepare_v2(db_, sql.c_str(), -1, &st, nullptr), SQLITE_OK) << sql;
    if (sqlite3_step(st) == SQLITE_ROW && sqlite3_column_text(st, 0))
      out.assign(reinterpret_cast<const char*>(sqlite3_column_text(st, 0)), sqlite3_column_bytes(st, 0));
    sqlite3_finalize(st);
    return out;
  }
  // Sets a text column of one record (bound, so any bytes go through).
  void setText(std::int64_t seq, const std::string& column, const std::string& value) {
    sqlite3_stmt* st = nullptr;
    std::string sql = "UPDATE audit_record SET " + column + " = ? WHERE seq = ?";
    ASSERT_EQ(sqlite3_prepare_v2(db_, sql.c_str(), -1, &st, nullptr), SQLITE_OK);
    sqlite3_bind_text(st, 1, value.data(), static_cast<int>(value.size()), SQLITE_TRANSIENT);
    sqlite3_bind_int64(st, 2, seq);
    EXPECT_EQ(sqlite3_step(st), SQLITE_DONE);
    sqlite3_finalize(st);
  }

 private:
  sqlite3* db_ = nullptr;
};

void copyFile(const std::string& from, const std::string& to) {
  fs::copy_file(from, to, fs::copy_options::overwrite_existing);
  if (fs::exists(from + "-wal")) fs::copy_file(from + "-wal", to + "-wal", fs::copy_options::overwrite_existing);
}

std::vector<std::string> readLines(const std::string& path) {
  std::ifstream in(path);
  std::vector<std::string> lines;
  for (std::string l; std::getline(in, l);) lines.push_back(l);
  return lines;
}

void writeLines(const std::string& path, const std::vector<std::string>& lines) {
  std::ofstream out(path, std::ios::trunc);
  for (const auto& l : lines) out << l << "\n";
}

// Appends `n` sample records from `threads` threads (group commit keeps it quick).
void fill(AuditLog& log, int n, int threads, int offset = 0) {
  std::vector<std::thread> ts;
  std::atomic<int> next{0};
  for (int t = 0; t < threads; ++t)
    ts.emplace_back([&] {
      for (int i; (i = next++) < n;) {
        auto r = log.append(sample(offset + i));
        ASSERT_TRUE(r.ok()) << r.error().message;
      }
    });
  for (auto& t : ts) t.join();
}

// The tests that hold for either database run on both: "sqlite" (a file in the test's folder)
// and "postgresql" (a fresh database of the shared test server; skipped, saying so, without one).
std::string backendUrl(const std::string& backend, const std::string& dir, std::string& skip) {
  if (backend == "postgresql") return PgServer::freshDatabase(skip);
  return "sqlite:" + dir + "/audit.db";
}

class AuditBackendTest : public ::testing::TestWithParam<const char*> {
 protected:
  void SetUp() override {
    std::string skip;
    url_ = backendUrl(GetParam(), dir_.path(), skip);
    if (url_.empty()) GTEST_SKIP() << skip;
  }
  Options options(std::int64_t checkpointRecords = 10000) const {
    Options o = optionsIn(dir_.path(), checkpointRecords);
    o.url = url_;
    return o;
  }

  TempDir dir_;
  std::string url_;
};

std::string backendName(const ::testing::TestParamInfo<const char*>& info) { return info.param; }

INSTANTIATE_TEST_SUITE_P(Databases, AuditBackendTest, ::testing::Values("sqlite", "postgresql"), backendName);

// ---------------------------------------------------------------------------------------------
// Append, get, query.

TEST_P(AuditBackendTest, AppendsAndReadsRecordsBack) {
  auto log = openLog(options());
  ASSERT_TRUE(log);
  Record r = sample(1);
  r.patients = {"p2", "p1", "p2", ""};
  auto s1 = log->append(r);
  ASSERT_TRUE(s1.ok()) << s1.error().message;
  EXPECT_EQ(s1.value(), 1);
  auto s2 = log->append(sample(2));
  ASSERT_TRUE(s2.ok());
  EXPECT_EQ(s2.value(), 2);

  auto got = log->get(1);
  ASSERT_TRUE(got.ok()) << got.error().message;
  ASSERT_TRUE(got->has_value());
  const Record& g = **got;
  EXPECT_EQ(g.seq, 1);
  EXPECT_GT(g.timeMs, kBaseMs);
  EXPECT_EQ(g.kind, "rest");
  EXPECT_EQ(g.action, r.action);
  EXPECT_EQ(g.subject, r.subject);
  EXPECT_EQ(g.practitioner, r.practitioner);
  EXPECT_EQ(g.tokenId, r.tokenId);
  EXPECT_EQ(g.sourceAddress, r.sourceAddress);
  EXPECT_EQ(g.path, r.path);
  EXPECT_EQ(g.resources, r.resources);
  EXPECT_EQ(g.patients, (std::vector<std::string>{"p1", "p2"}));  // sorted, no duplicates or empties
  EXPECT_EQ(g.prevHash, std::string(codec::kGenesisHash));
  EXPECT_EQ(g.hash.size(), 64u);

  auto second = log->get(2);
  ASSERT_TRUE(second.ok() && second->has_value());
  EXPECT_EQ((*second)->prevHash, g.hash);
  EXPECT_NE((*second)->hash, g.hash);

  auto missing = log->get(99);
  ASSERT_TRUE(missing.ok());
  EXPECT_FALSE(missing->has_value());
  EXPECT_EQ(log->lastSeq(), 2);
}

TEST_P(AuditBackendTest, ARecordTooLargeToReadBackIsRefusedAndTheChainGoesOn) {
  auto log = openLog(options());
  ASSERT_TRUE(log);
  Record big = sample(1);
  for (int i = 0; i < 400000; ++i) big.patients.push_back("0190aaaa-bbbb-7ccc-8ddd-" + std::to_string(100000000000 + i));  // ~15 MB
  auto refused = log->append(big);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.error().code, passerelle::ErrorCode::kInvalid);
  EXPECT_NE(refused.error().message.find("several records"), std::string::npos) << refused.error().message;
  big.patients.resize(100000);  // ~3.7 MB: taken
  auto taken = log->append(big);
  ASSERT_TRUE(taken.ok()) << taken.error().message;
  EXPECT_EQ(taken.value(), 1);
  auto got = log->get(1);
  ASSERT_TRUE(got.ok() && got->has_value());
  EXPECT_EQ((*got)->patients.size(), 100000u);
  auto next = log->append(sample(2));
  ASSERT_TRUE(next.ok());
  auto second = log->get(2);
  ASSERT_TRUE(second.ok() && second->has_value());
  EXPECT_EQ((*second)->prevHash, (*got)->hash);
}

TEST(AuditLogTest, KeepsEveryFieldThroughTheCanonicalText) {
  Record r = sample(13);
  r.seq = 7;
  r.timeMs = kBaseMs;
  r.breakGlassReason = "urgence: patient inconscient";
  r.detail = std::string("bytes \0 and :#; separators", 26);
  std::string text;
  codec::encode(r, text);
  Record back;
  ASSERT_TRUE(codec::decode(text, back));
  std::string again;
  codec::encode(back, again);
  EXPECT_EQ(again, text);
  EXPECT_EQ(back.detail, r.detail);
  EXPECT_EQ(back.breakGlassReason, r.breakGlassReason);
  EXPECT_FALSE(codec::decode(text.substr(0, text.size() - 1), back));
  EXPECT_FALSE(codec::decode(text + "x", back));
  EXPECT_EQ(text.substr(0, 4), "PA1;");
  // A record that waited elsewhere carries its origin as one more field, under another magic.
  r.origin = "outbox:42";
  std::string withOrigin;
  codec::encode(r, withOrigin);
  EXPECT_EQ(withOrigin.substr(0, 4), "PA2;");
  ASSERT_TRUE(codec::decode(withOrigin, back));
  EXPECT_EQ(back.origin, "outbox:42");
  EXPECT_FALSE(codec::decode("PA2;" + text.substr(4), back));  // PA2 without its origin
}

TEST_P(AuditBackendTest, TimeNeverDecreasesAlongTheChain) {
  auto log = openLog(options());
  ASSERT_TRUE(log);
  Record a = sample(1), b = sample(2);
  a.timeMs = kBaseMs + 5000;
  b.timeMs = kBaseMs + 1000;
  ASSERT_TRUE(log->append(a).ok());
  ASSERT_TRUE(log->append(b).ok());
  auto got = log->get(2);
  ASSERT_TRUE(got.ok() && got->has_value());
  EXPECT_EQ((*got)->timeMs, kBaseMs + 5000);
}

TEST_P(AuditBackendTest, SixteenThreadsAppendContiguousRecordsThatVerify) {
  Options o = options(1000);
  auto log = openLog(o);
  ASSERT_TRUE(log);
  constexpr int kThreads = 16, kEach = 500;
  std::vector<std::vector<std::int64_t>> seqs(kThreads);
  std::vector<std::thread> ts;
  for (int t = 0; t < kThreads; ++t)
    ts.emplace_back([&, t] {
      for (int i = 0; i < kEach; ++i) {
        auto r = log->append(sample(t * kEach + i));
        ASSERT_TRUE(r.ok()) << r.error().message;
        seqs[t].push_back(r.value());
      }
    });
  for (auto& t : ts) t.join();
  std::set<std::int64_t> all;
  for (const auto& v : seqs) {
    for (std::size_t i = 1; i < v.size(); ++i) EXPECT_LT(v[i - 1], v[i]);  // each thread's records in its order
    all.insert(v.begin(), v.end());
  }
  ASSERT_EQ(all.size(), static_cast<std::size_t>(kThreads * kEach));
  EXPECT_EQ(*all.begin(), 1);
  EXPECT_EQ(*all.rbegin(), kThreads * kEach);
  EXPECT_EQ(log->lastSeq(), kThreads * kEach);
  log->close();
  VerifyReport v = verify(o.url, o.checkpointDir, "");
  EXPECT_TRUE(v.ok) << v.problem;
  EXPECT_EQ(v.records, kThreads * kEach);
  EXPECT_GE(v.checkpoints, 8);
}

TEST_P(AuditBackendTest, QueriesByPatientSubjectActionAndTimeNewestFirst) {
  auto log = openLog(options());
  ASSERT_TRUE(log);
  for (int i = 1; i <= 70; ++i) {
    Record r = sample(i);
    r.timeMs = kBaseMs + i * 1000;
    ASSERT_TRUE(log->append(r).ok());
  }
  AuditLog::Query q;
  q.patient = "p3";
  q.count = 100;
  auto byPatient = log->query(q);
  ASSERT_TRUE(byPatient.ok()) << byPatient.error().message;
  int expected = 0;
  for (int i = 1; i <= 70; ++i) {
    Record r = sample(i);
    expected += std::find(r.patients.begin(), r.patients.end(), "p3") != r.patients.end();
  }
  ASSERT_EQ(static_cast<int>(byPatient->size()), expected);
  for (std::size_t i = 0; i < byPatient->size(); ++i) {
    const Record& r = (*byPatient)[i];
    EXPECT_NE(std::find(r.patients.begin(), r.patients.end(), "p3"), r.patients.end());
    if (i) {
      EXPECT_LT(r.seq, (*byPatient)[i - 1].seq);
    }
  }
  // Paging.
  q.count = 3;
  auto page1 = log->query(q);
  ASSERT_TRUE(page1.ok());
  ASSERT_EQ(page1->size(), 3u);
  q.beforeSeq = page1->back().seq;
  auto page2 = log->query(q);
  ASSERT_TRUE(page2.ok());
  ASSERT_FALSE(page2->empty());
  EXPECT_EQ(page2->front().seq, (*byPatient)[3].seq);

  AuditLog::Query bySubject;
  bySubject.subject = "user-1";
  bySubject.action = "search";
  bySubject.count = 100;
  auto s = log->query(bySubject);
  ASSERT_TRUE(s.ok());
  ASSERT_FALSE(s->empty());
  for (const auto& r : *s) {
    EXPECT_EQ(r.subject, "user-1");
    EXPECT_EQ(r.action, "search");
  }

  AuditLog::Query byTime;
  byTime.sinceMs = kBaseMs + 10 * 1000;
  byTime.untilMs = kBaseMs + 20 * 1000;
  byTime.count = 100;
  auto t = log->query(byTime);
  ASSERT_TRUE(t.ok());
  ASSERT_EQ(t->size(), 10u);
  EXPECT_EQ(t->front().seq, 19);
  EXPECT_EQ(t->back().seq, 10);
}

// ---------------------------------------------------------------------------------------------
// Checkpoints.

TEST_P(AuditBackendTest, WritesSignedCheckpointsApartFromTheDatabase) {
  Options o = options(100);
  auto log = openLog(o);
  ASSERT_TRUE(log);
  fill(*log, 250, 1);
  ASSERT_TRUE(log->checkpoint().ok());
  auto lines = readLines(o.checkpointDir + "/checkpoints.jsonl");
  ASSERT_GE(lines.size(), 3u);  // the first record, then every 100 records, then the explicit one
  std::int64_t n = 0, lastSeq = 0;
  for (const auto& l : lines) {
    Json c = Json::parse(l);
    EXPECT_EQ(c["n"].get<std::int64_t>(), ++n);
    EXPECT_EQ(c["type"], "checkpoint");
    EXPECT_GE(c["seq"].get<std::int64_t>(), lastSeq);
    lastSeq = c["seq"].get<std::int64_t>();
    EXPECT_EQ(c["hash"].get<std::string>().size(), 64u);
    EXPECT_EQ(c["keyId"].get<std::string>().size(), 16u);
    EXPECT_GT(c["signature"].get<std::string>().size(), 80u);
  }
  EXPECT_EQ(lastSeq, 250);
  auto rec = log->get(250);
  ASSERT_TRUE(rec.ok() && rec->has_value());
  EXPECT_EQ(Json::parse(lines.back())["hash"], (*rec)->hash);
  ASSERT_TRUE(log->checkpoint().ok());  // nothing new: no new line
  EXPECT_EQ(readLines(o.checkpointDir + "/checkpoints.jsonl").size(), lines.size());

  // The development key is private to its owner; its public half is beside the checkpoints.
  struct stat st {};
  ASSERT_EQ(::stat((o.checkpointDir + "/audit-signing-key.pem").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  std::ifstream pub(o.checkpointDir + "/audit-public-keys.pem");
  std::stringstream ss;
  ss << pub.rdbuf();
  EXPECT_EQ(ss.str(), log->publicKeyPem());
  log->close();

  VerifyReport v = verify(o.url, o.checkpointDir, "");
  EXPECT_TRUE(v.ok) << v.problem;
  EXPECT_EQ(v.records, 250);
  EXPECT_EQ(v.checkpoints, static_cast<std::int64_t>(lines.size()));
}

TEST_P(AuditBackendTest, WritesACheckpointAfterCheckpointSecondsWhileRecordsArrive) {
  Options o = options(1000000);
  o.checkpointSeconds = 1;
  auto log = openLog(o);
  ASSERT_TRUE(log);
  ASSERT_TRUE(log->append(sample(1)).ok());  // the first record gets a checkpoint at once
  ASSERT_TRUE(log->append(sample(2)).ok());
  std::string path = o.checkpointDir + "/checkpoints.jsonl";
  EXPECT_EQ(readLines(path).size(), 1u);
  for (int i = 0; i < 40 && readLines(path).size() < 2; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  auto lines = readLines(path);
  ASSERT_EQ(lines.size(), 2u);
  EXPECT_EQ(Json::parse(lines[1])["seq"], 2);
}

TEST(AuditLogTest, ProductionRequiresASigningKey) {
  TempDir dir;
  Options o = optionsIn(dir.path());
  o.production = true;
  auto r = AuditLog::open(o);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message.find("signing_key"), std::string::npos);

  // A key made elsewhere (here: the development key of another log) is accepted.
  TempDir other;
  Options dev = optionsIn(other.path());
  { auto l = openLog(dev); }
  o.signingKey = dev.checkpointDir + "/audit-signing-key.pem";
  auto log = openLog(o);
  ASSERT_TRUE(log);
  ASSERT_TRUE(log->append(sample(1)).ok());
  log->close();
  EXPECT_FALSE(fs::exists(o.checkpointDir + "/audit-signing-key.pem"));
  EXPECT_TRUE(verify(o.url, o.checkpointDir, dev.checkpointDir + "/audit-public-keys.pem").ok);

  o.signingKey = dir.path() + "/nope.pem";
  EXPECT_FALSE(AuditLog::open(o).ok());
}

// ---------------------------------------------------------------------------------------------
// Tamper evidence: a log is built once; each test tampers with copies.

class AuditTamperTest : public ::testing::Test {
 protected:
  static constexpr int kRecords = 400;

  static void SetUpTestSuite() {
    dir_ = new TempDir();
    Options o = optionsIn(dir_->path(), 50);
    auto log = AuditLog::open(o);
    ASSERT_TRUE(log.ok()) << log.error().message;
    fill(*log.value(), kRecords, 8);
    log.value()->close();
    VerifyReport v = verify(o.url, o.checkpointDir, "");
    ASSERT_TRUE(v.ok) << v.problem;
    ASSERT_EQ(v.records, kRecords);
  }
  static void TearDownTestSuite() {
    delete dir_;
    dir_ = nullptr;
  }

  void SetUp() override {
    copy_ = dir_->path() + "/copy-" + ::testing::UnitTest::GetInstance()->current_test_info()->name();
    fs::create_directories(copy_);
    fresh();
  }
  void TearDown() override { fs::remove_all(copy_); }

  std::string original() const { return dir_->path() + "/audit.db"; }
  std::string db() const { return copy_ + "/audit.db"; }
  std::string checkpoints() const { return dir_->path() + "/checkpoints"; }
  // A fresh copy of the database.
  void fresh() {
    fs::remove(db());
    fs::remove(db() + "-wal");
    fs::remove(db() + "-shm");
    copyFile(original(), db());
  }
  VerifyReport check(const std::string& checkpointDir = {}, const std::string& key = {}) {
    return verify("sqlite:" + db(), checkpointDir.empty() ? checkpoints() : checkpointDir, key);
  }
  // A copy of the checkpoint folder to tamper with.
  std::string copyCheckpoints() {
    std::string to = copy_ + "/checkpoints";
    fs::copy(checkpoints(), to, fs::copy_options::recursive | fs::copy_options::overwrite_existing);
    return to;
  }

  static TempDir* dir_;
  std::string copy_;
};

TempDir* AuditTamperTest::dir_ = nullptr;

TEST_F(AuditTamperTest, TheUntouchedCopyVerifies) {
  VerifyReport v = check();
  EXPECT_TRUE(v.ok) << v.problem;
  EXPECT_EQ(v.records, kRecords);
  EXPECT_EQ(v.firstBadSeq, 0);
}

TEST_F(AuditTamperTest, EveryEditOfAnyFieldIsDetectedAtOrBeforeTheEditedRecord) {
  std::mt19937 rng(20260101);
  const char* kColumns[] = {"time_ms", "kind", "action", "outcome", "subject", "record", "prev_hash", "hash", "seq",
                            "patient-edit", "patient-delete", "patient-insert", "record-type"};
  int edits = 0;
  for (int iteration = 0; iteration < 120; ++iteration) {
    fresh();
    std::int64_t seq = std::uniform_int_distribution<std::int64_t>(1, kRecords)(rng);
    std::string column = kColumns[std::uniform_int_distribution<int>(0, std::size(kColumns) - 1)(rng)];
    {
      Sql sql(db());
      std::string where = " WHERE seq = " + std::to_string(seq);
      if (column == "time_ms") {
        sql.exec("UPDATE audit_record SET time_ms = time_ms + " +
                 std::to_string(std::uniform_int_distribution<int>(-5, 5)(rng) * 2 + 1) + where);
      } else if (column == "seq") {
        sql.exec("UPDATE audit_record SET seq = " + std::to_string(kRecords + 1000) + where);
      } else if (column == "record") {
        std::string text = sql.text("SELECT record FROM audit_record" + where);
        std::size_t pos = std::uniform_int_distribution<std::size_t>(0, text.size() - 1)(rng);
        text[pos] = static_cast<char>(text[pos] == 'x' ? 'y' : 'x');
        sql.setText(seq, "record", text);
      } else if (column == "prev_hash" || column == "hash") {
        std::string h = sql.text("SELECT " + column + " FROM audit_record" + where);
        std::size_t pos = std::uniform_int_distribution<std::size_t>(0, h.size() - 1)(rng);
        h[pos] = h[pos] == '0' ? '1' : '0';
        sql.setText(seq, column, h);
      } else if (column == "patient-edit") {
        sql.exec("UPDATE audit_patient SET patient = patient || 'x'" + where);
      } else if (column == "patient-delete") {
        sql.exec("DELETE FROM audit_patient" + where);
      } else if (column == "patient-insert") {
        sql.exec("INSERT INTO audit_patient(patient, seq) VALUES('intruder', " + std::to_string(seq) + ")");
      } else if (column == "record-type") {
        sql.exec("UPDATE audit_record SET record = CAST(record AS BLOB)" + where);
      } else {
        std::string v = sql.text("SELECT " + column + " FROM audit_record" + where);
        sql.setText(seq, column, v == "denied" ? "granted" : v + "x");
      }
    }
    ++edits;
    VerifyReport v = check();
    EXPECT_FALSE(v.ok) << "edit of " << column << " at record " << seq << " went unnoticed";
    EXPECT_GE(v.firstBadSeq, 1) << column << " at " << seq << ": " << v.problem;
    EXPECT_LE(v.firstBadSeq, seq) << column << " at " << seq << ": " << v.problem;
  }
  EXPECT_EQ(edits, 120);
}

TEST_F(AuditTamperTest, ADeletedRecordIsDetected) {
  {
    Sql sql(db());
    sql.exec("DELETE FROM audit_record WHERE seq = 200");
    sql.exec("DELETE FROM audit_patient WHERE seq = 200");
  }
  VerifyReport v = check();
  EXPECT_FALSE(v.ok);
  EXPECT_EQ(v.firstBadSeq, 200);
  EXPECT_NE(v.problem.find("record 200 missing"), std::string::npos) << v.problem;
}

TEST_F(AuditTamperTest, ADeletedFirstRecordIsDetected) {
  { Sql(db()).exec("DELETE FROM audit_record WHERE seq = 1; DELETE FROM audit_patient WHERE seq = 1"); }
  VerifyReport v = check();
  EXPECT_FALSE(v.ok);
  EXPECT_EQ(v.firstBadSeq, 1);
}

TEST_F(AuditTamperTest, AnInsertedForgedRecordIsDetected) {
  {
    Sql sql(db());
    // Make room at seq 200 and forge a well-formed record there, chained to record 199.
    sql.exec("UPDATE audit_record SET seq = -seq WHERE seq >= 200; UPDATE audit_record SET seq = 1 - seq WHERE seq < 0;"
             "UPDATE audit_patient SET seq = -seq WHERE seq >= 200; UPDATE audit_patient SET seq = 1 - seq WHERE seq < 0;");
    Record forged = sample(999);
    forged.seq = 200;
    forged.timeMs = std::stoll(sql.text("SELECT time_ms FROM audit_record WHERE seq = 199"));
    std::string prev = sql.text("SELECT hash FROM audit_record WHERE seq = 199");
    std::string text;
    codec::encode(forged, text);
    codec::ChainHasher h;
    sql.exec("INSERT INTO audit_record VALUES(200, " + std::to_string(forged.timeMs) + ", 'rest', '" + forged.action +
             "', '" + forged.outcome + "', '" + forged.subject + "', '', '" + prev + "', '')");
    sql.setText(200, "record", text);
    sql.setText(200, "hash", h.hash(prev, text));
    for (const auto& p : forged.patients) sql.exec("INSERT INTO audit_patient VALUES('" + p + "', 200)");
  }
  VerifyReport v = check();
  EXPECT_FALSE(v.ok);
  EXPECT_GE(v.firstBadSeq, 1);
  EXPECT_LE(v.firstBadSeq, 201) << v.problem;  // the record after it, or a checkpoint at or after it
}

TEST_F(AuditTamperTest, RecordsAppendedWithABrokenChainAreDetected) {
  {
    Sql sql(db());
    sql.exec("INSERT INTO audit_record SELECT seq + 1, time_ms, kind, action, outcome, subject, record, prev_hash, hash "
             "FROM audit_record WHERE seq = " + std::to_string(kRecords));
  }
  VerifyReport v = check();
  EXPECT_FALSE(v.ok);
  EXPECT_EQ(v.firstBadSeq, kRecords + 1);
}

TEST_F(AuditTamperTest, SwappedRecordsAreDetected) {
  {
    Sql sql(db());
    sql.exec("CREATE TEMP TABLE r AS SELECT * FROM audit_record WHERE seq IN (100, 101);"
             "UPDATE audit_record SET (time_ms, kind, action, outcome, subject, record, prev_hash, hash) = "
             "(SELECT time_ms, kind, action, outcome, subject, record, prev_hash, hash FROM r WHERE r.seq = 201 - audit_record.seq) "
             "WHERE seq IN (100, 101);"
             "CREATE TEMP TABLE p AS SELECT * FROM audit_patient WHERE seq IN (100, 101);"
             "DELETE FROM audit_patient WHERE seq IN (100, 101);"
             "INSERT INTO audit_patient SELECT patient, 201 - seq FROM p;");
  }
  VerifyReport v = check();
  EXPECT_FALSE(v.ok);
  EXPECT_EQ(v.firstBadSeq, 100) << v.problem;
}

TEST_F(AuditTamperTest, ATruncatedTailIsDetectedByTheLastCheckpoint) {
  constexpr int kCut = 7;
  {
    Sql sql(db());
    sql.exec("DELETE FROM audit_record WHERE seq >= " + std::to_string(kRecords - kCut + 1));
  }
  VerifyReport v = check();
  EXPECT_FALSE(v.ok);
  EXPECT_EQ(v.firstBadSeq, kRecords - kCut + 1);
  EXPECT_NE(v.problem.find("truncated: the last checkpoint names seq " + std::to_string(kRecords) + ", the log ends at " +
                           std::to_string(kRecords - kCut)),
            std::string::npos)
      << v.problem;
}

TEST_F(AuditTamperTest, AChainRewrittenAfterAnEditIsDetectedBySignedCheckpoints) {
  constexpr std::int64_t kEdited = 123;
  {
    Sql sql(db());
    codec::ChainHasher h;
    std::string prev = sql.text("SELECT hash FROM audit_record WHERE seq = " + std::to_string(kEdited - 1));
    for (std::int64_t seq = kEdited; seq <= kRecords; ++seq) {
      Record r;
      ASSERT_TRUE(codec::decode(sql.text("SELECT record FROM audit_record WHERE seq = " + std::to_string(seq)), r));
      if (seq == kEdited) r.subject = "someone-else";
      std::string text;
      codec::encode(r, text);
      std::string hash = h.hash(prev, text);
      sql.setText(seq, "record", text);
      sql.setText(seq, "subject", r.subject);
      sql.setText(seq, "prev_hash", prev);
      sql.setText(seq, "hash", hash);
      prev = hash;
    }
  }
  VerifyReport v = check();
  EXPECT_FALSE(v.ok);
  EXPECT_GE(v.firstBadSeq, 1);
  EXPECT_LE(v.firstBadSeq, kEdited) << v.problem;
  EXPECT_NE(v.problem.find("rewritten"), std::string::npos) << v.problem;
  EXPECT_NE(v.problem.find("signed checkpoint"), std::string::npos) << v.problem;
}

TEST_F(AuditTamperTest, AnEditedCheckpointFailsItsSignature) {
  std::string dir = copyCheckpoints();
  auto lines = readLines(dir + "/checkpoints.jsonl");
  ASSERT_GE(lines.size(), 3u);
  Json c = Json::parse(lines[1]);
  c["seq"] = c["seq"].get<std::int64_t>() - 1;
  lines[1] = c.dump();
  writeLines(dir + "/checkpoints.jsonl", lines);
  VerifyReport v = check(dir);
  EXPECT_FALSE(v.ok);
  EXPECT_NE(v.problem.find("checkpoint 2 (seq "), std::string::npos) << v.problem;
  EXPECT_NE(v.problem.find("signature invalid"), std::string::npos) << v.problem;
}

TEST_F(AuditTamperTest, ARemovedCheckpointLineIsDetected) {
  std::string dir = copyCheckpoints();
  auto lines = readLines(dir + "/checkpoints.jsonl");
  ASSERT_GE(lines.size(), 3u);
  lines.erase(lines.begin() + 1);
  writeLines(dir + "/checkpoints.jsonl", lines);
  VerifyReport v = check(dir);
  EXPECT_FALSE(v.ok);
  EXPECT_NE(v.problem.find("missing or out of order"), std::string::npos) << v.problem;
}

TEST_F(AuditTamperTest, ARemovedCheckpointFileIsDetected) {
  std::string dir = copyCheckpoints();
  fs::remove(dir + "/checkpoints.jsonl");
  VerifyReport v = check(dir);
  EXPECT_FALSE(v.ok);
  EXPECT_NE(v.problem.find("no signed checkpoint"), std::string::npos) << v.problem;
}

TEST_F(AuditTamperTest, AnotherPublicKeyFails) {
  TempDir other;
  Options o = optionsIn(other.path());
  { auto l = openLog(o); }
  VerifyReport v = check({}, o.checkpointDir + "/audit-public-keys.pem");
  EXPECT_FALSE(v.ok);
  EXPECT_NE(v.problem.find("signature invalid"), std::string::npos) << v.problem;

  // Re-signing the checkpoints with another key and swapping the public key in the folder is caught
  // by verifying against the real public key kept elsewhere.
  std::string dir = copyCheckpoints();
  fs::copy_file(o.checkpointDir + "/audit-public-keys.pem", dir + "/audit-public-keys.pem",
                fs::copy_options::overwrite_existing);
  VerifyReport swapped = check(dir, checkpoints() + "/audit-public-keys.pem");
  EXPECT_TRUE(swapped.ok) << swapped.problem;  // the checkpoints themselves are the originals
  VerifyReport trusting = check(dir);
  EXPECT_FALSE(trusting.ok);
}

TEST_F(AuditTamperTest, OpeningATruncatedDatabaseIsRefused) {
  { Sql(db()).exec("DELETE FROM audit_record WHERE seq > 390; DELETE FROM audit_patient WHERE seq > 390"); }
  std::string dir = copyCheckpoints();
  Options o;
  o.url = "sqlite:" + db();
  o.checkpointDir = dir;
  auto r = AuditLog::open(o);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message.find("ends at seq 390"), std::string::npos) << r.error().message;
}

// ---------------------------------------------------------------------------------------------
// Retention.

class AuditPurgeFixture {
 protected:
  void start(const std::string& url) {
    options_ = optionsIn(dir_.path(), 30);
    options_.url = url;
    log_ = openLog(options_);
    ASSERT_TRUE(log_);
    for (int i = 1; i <= 100; ++i) {
      Record r = sample(i);
      r.timeMs = kBaseMs + i * 1000;
      ASSERT_TRUE(log_->append(r).ok());
    }
  }
  Record admin() {
    Record by;
    by.subject = "admin-1";
    by.role = "admin";
    by.account = "ops";
    return by;
  }
  VerifyReport check() { return verify(options_.url, options_.checkpointDir, ""); }

  TempDir dir_;
  Options options_;
  std::unique_ptr<AuditLog> log_;
};

// On SQLite, with the attacker's tools.
class AuditPurgeTest : public AuditPurgeFixture, public ::testing::Test {
 protected:
  void SetUp() override { start("sqlite:" + dir_.path() + "/audit.db"); }
};

// On either database.
class AuditPurgeBackendTest : public AuditPurgeFixture, public ::testing::TestWithParam<const char*> {
 protected:
  void SetUp() override {
    std::string skip, url = backendUrl(GetParam(), dir_.path(), skip);
    if (url.empty()) GTEST_SKIP() << skip;
    start(url);
  }
};

INSTANTIATE_TEST_SUITE_P(Databases, AuditPurgeBackendTest, ::testing::Values("sqlite", "postgresql"), backendName);

TEST_P(AuditPurgeBackendTest, PurgeRemovesAPrefixKeepsTheChainVerifiableAndIsAudited) {
  auto p = log_->purge(kBaseMs + 41 * 1000 + 500, admin());
  ASSERT_TRUE(p.ok()) << p.error().message;
  EXPECT_EQ(p->removed, 41);
  EXPECT_EQ(p->upToSeq, 41);
  auto gone = log_->get(41);
  ASSERT_TRUE(gone.ok());
  EXPECT_FALSE(gone->has_value());
  auto kept = log_->get(42);
  ASSERT_TRUE(kept.ok());
  EXPECT_TRUE(kept->has_value());

  auto purgeRecord = log_->get(101);
  ASSERT_TRUE(purgeRecord.ok() && purgeRecord->has_value());
  const Record& pr = **purgeRecord;
  EXPECT_EQ(pr.kind, "purge");
  EXPECT_EQ(pr.action, "purge");
  EXPECT_EQ(pr.subject, "admin-1");
  Json detail = Json::parse(pr.detail);
  EXPECT_EQ(detail["removed"], 41);
  EXPECT_EQ(detail["fromSeq"], 1);
  EXPECT_EQ(detail["toSeq"], 41);
  EXPECT_EQ(detail["cutoffMs"], kBaseMs + 41 * 1000 + 500);

  AuditLog::Query q;
  q.patient = "p1";
  q.count = 1000;
  auto rows = log_->query(q);
  ASSERT_TRUE(rows.ok());
  for (const auto& r : *rows) EXPECT_GT(r.seq, 41);

  // The log goes on; a second purge; a reopen; everything still verifies.
  ASSERT_TRUE(log_->append(sample(500)).ok());
  auto p2 = log_->purge(kBaseMs + 60 * 1000 + 500, admin());
  ASSERT_TRUE(p2.ok()) << p2.error().message;
  EXPECT_EQ(p2->removed, 19);
  log_->close();
  VerifyReport v = check();
  EXPECT_TRUE(v.ok) << v.problem;
  EXPECT_EQ(v.records, 100 - 60 + 3);

  auto again = openLog(options_);
  ASSERT_TRUE(again);
  auto s = again->append(sample(501));
  ASSERT_TRUE(s.ok()) << s.error().message;
  EXPECT_EQ(s.value(), 104);
  again->close();
  v = check();
  EXPECT_TRUE(v.ok) << v.problem;
}

TEST_P(AuditPurgeBackendTest, PurgingEverythingContinuesTheChainFromTheAnchor) {
  auto p = log_->purge(kBaseMs + 10'000'000, admin());
  ASSERT_TRUE(p.ok()) << p.error().message;
  EXPECT_EQ(p->removed, 100);
  EXPECT_EQ(log_->lastSeq(), 101);
  log_->close();
  VerifyReport v = check();
  EXPECT_TRUE(v.ok) << v.problem;
  EXPECT_EQ(v.records, 1);

  auto again = openLog(options_);
  ASSERT_TRUE(again);
  auto s = again->append(sample(1));
  ASSERT_TRUE(s.ok());
  EXPECT_EQ(s.value(), 102);
  again->close();
  EXPECT_TRUE(check().ok);
}

TEST_P(AuditPurgeBackendTest, NothingToPurgeIsStillAudited) {
  auto p = log_->purge(kBaseMs, admin());
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(p->removed, 0);
  auto rec = log_->get(101);
  ASSERT_TRUE(rec.ok() && rec->has_value());
  EXPECT_EQ((*rec)->kind, "purge");
  EXPECT_EQ(Json::parse((*rec)->detail)["removed"], 0);
}

TEST_F(AuditPurgeTest, AnAnchorWrittenByAnInterruptedPurgeKeepsTheLogVerifiable) {
  log_->close();
  // A purge that stopped after signing its anchor (records 1-40 go) but before deleting them.
  auto key = internal::SigningKey::load(options_.checkpointDir + "/" + internal::kDevKeyFile);
  ASSERT_TRUE(key.ok()) << key.error().message;
  auto lines = readLines(options_.checkpointDir + "/" + internal::kCheckpointFile);
  Sql sql(dir_.path() + "/audit.db");
  internal::Checkpoint anchor;
  anchor.n = static_cast<std::int64_t>(lines.size()) + 1;
  anchor.type = "anchor";
  anchor.seq = 41;
  anchor.hash = sql.text("SELECT hash FROM audit_record WHERE seq = 40");
  anchor.timeMs = kBaseMs;
  anchor.records = 40;
  anchor.cutoffMs = kBaseMs + 40500;
  anchor.keyId = key.value()->keyId();
  auto sig = key.value()->sign(internal::canonicalText(anchor));
  ASSERT_TRUE(sig.ok());
  anchor.signature = sig.value();
  ASSERT_TRUE(internal::appendCheckpoint(options_.checkpointDir, anchor).ok());
  VerifyReport v = check();
  EXPECT_TRUE(v.ok) << v.problem;  // nothing deleted yet
  sql.exec("DELETE FROM audit_record WHERE seq <= 40; DELETE FROM audit_patient WHERE seq <= 40");
  v = check();
  EXPECT_TRUE(v.ok) << v.problem;  // the purge done
  EXPECT_EQ(v.records, 60);
  sql.exec("DELETE FROM audit_record WHERE seq = 41; DELETE FROM audit_patient WHERE seq = 41");
  v = check();
  EXPECT_FALSE(v.ok);  // one more than the anchor allows
  EXPECT_EQ(v.firstBadSeq, 41) << v.problem;
}

TEST_F(AuditPurgeTest, TamperingAfterAPurgeIsStillDetected) {
  ASSERT_TRUE(log_->purge(kBaseMs + 41 * 1000 + 500, admin()).ok());
  log_->close();
  ASSERT_TRUE(check().ok);
  std::string copy = dir_.path() + "/copy.db";
  auto verifyCopy = [&] { return verify("sqlite:" + copy, options_.checkpointDir, ""); };

  // More of the prefix deleted, as if it had been purged too.
  copyFile(dir_.path() + "/audit.db", copy);
  { Sql(copy).exec("DELETE FROM audit_record WHERE seq <= 50; DELETE FROM audit_patient WHERE seq <= 50"); }
  VerifyReport v = verifyCopy();
  EXPECT_FALSE(v.ok);
  EXPECT_EQ(v.firstBadSeq, 42) << v.problem;
  EXPECT_NE(v.problem.find("records 42-50 missing"), std::string::npos) << v.problem;

  // The first remaining record edited.
  fs::remove(copy);
  copyFile(dir_.path() + "/audit.db", copy);
  { Sql(copy).exec("UPDATE audit_record SET subject = 'nobody' WHERE seq = 42"); }
  v = verifyCopy();
  EXPECT_FALSE(v.ok);
  EXPECT_EQ(v.firstBadSeq, 42) << v.problem;

  // The purge record itself removed.
  fs::remove(copy);
  copyFile(dir_.path() + "/audit.db", copy);
  { Sql(copy).exec("DELETE FROM audit_record WHERE seq = 101"); }
  v = verifyCopy();
  EXPECT_FALSE(v.ok);
  EXPECT_NE(v.problem.find("truncated"), std::string::npos) << v.problem;
}

// ---------------------------------------------------------------------------------------------
// Failing closed.

TEST_P(AuditBackendTest, AppendAfterCloseFails) {
  Options o = options();
  auto log = openLog(o);
  ASSERT_TRUE(log);
  ASSERT_TRUE(log->append(sample(1)).ok());
  log->close();
  auto r = log->append(sample(2));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, ErrorCode::kUnavailable);
  EXPECT_FALSE(log->query({}).ok());
  EXPECT_TRUE(verify(o.url, o.checkpointDir, "").ok);
}

TEST(AuditLogTest, AppendFailsClosedWhileTheJournalCannotBeSyncedThenResumesTheChain) {
  TempDir dir;
  Options o = optionsIn(dir.path());
  std::atomic<bool> broken{false};
  o.journalSync = [&broken](int fd) {
    if (broken) {
      errno = EIO;
      return -1;
    }
    return ::fdatasync(fd);
  };
  auto log = openLog(o);
  ASSERT_TRUE(log);
  ASSERT_TRUE(log->append(sample(1)).ok());
  broken = true;
  EXPECT_EQ(unavailableOfFourConcurrentAppends(*log), 4);
  EXPECT_EQ(log->lastSeq(), 1);
  broken = false;
  auto r = log->append(sample(2));
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(r.value(), 2);
  log->close();
  VerifyReport v = verify(o.url, o.checkpointDir, "");
  EXPECT_TRUE(v.ok) << v.problem;
  EXPECT_EQ(v.records, 2);
}

TEST(AuditLogTest, AppendsStayDurableWhileTheDatabaseRefusesWritesAndReachItLater) {
  TempDir dir;
  Options o = optionsIn(dir.path());
  auto log = openLog(o);
  ASSERT_TRUE(log);
  ASSERT_TRUE(log->append(sample(1)).ok());
  ASSERT_TRUE(log->query({}).ok());  // the database has caught up
  {
    Sql sql(dir.path() + "/audit.db");
    sql.exec("CREATE TRIGGER refuse BEFORE INSERT ON audit_record BEGIN SELECT RAISE(ABORT, 'disk refuses'); END;");
  }
  // The journal holds them: acknowledged, and the chain goes on.
  for (int i = 2; i <= 5; ++i) {
    auto r = log->append(sample(i));
    ASSERT_TRUE(r.ok()) << r.error().message;
    EXPECT_EQ(r.value(), i);
  }
  { Sql(dir.path() + "/audit.db").exec("DROP TRIGGER refuse"); }
  auto all = log->query({});
  ASSERT_TRUE(all.ok()) << all.error().message;
  EXPECT_EQ(all->size(), 5u);
  log->close();
  VerifyReport v = verify(o.url, o.checkpointDir, "");
  EXPECT_TRUE(v.ok) << v.problem;
  EXPECT_EQ(v.records, 5);
}

// A crash: the records of the journal that never reached the database are found by verify and
// copied into the database by the next open.
TEST(AuditLogTest, RecordsOnlyInTheJournalAfterACrashAreVerifiedAndRecoveredAtOpen) {
  TempDir dir;
  Options o = optionsIn(dir.path(), 3);
  auto log = openLog(o);
  ASSERT_TRUE(log);
  for (int i = 1; i <= 4; ++i) ASSERT_TRUE(log->append(sample(i)).ok());
  ASSERT_TRUE(log->query({}).ok());
  {
    Sql sql(dir.path() + "/audit.db");
    sql.exec("CREATE TRIGGER refuse BEFORE INSERT ON audit_record BEGIN SELECT RAISE(ABORT, 'disk refuses'); END;");
  }
  for (int i = 5; i <= 9; ++i) ASSERT_TRUE(log->append(sample(i)).ok());
  ASSERT_TRUE(log->checkpoint().ok());  // a signed checkpoint names seq 9, which only the journal holds
  // The state a crash leaves: the database (with its write-ahead log), the journal and the
  // checkpoints, copied while the log is open.
  std::string image = dir.path() + "/image";
  fs::create_directories(image);
  copyFile(dir.path() + "/audit.db", image + "/audit.db");
  fs::copy(dir.path() + "/audit.db.journal", image + "/audit.db.journal", fs::copy_options::recursive);
  fs::copy(dir.path() + "/checkpoints", image + "/checkpoints", fs::copy_options::recursive);
  fs::remove(image + "/checkpoints/audit.lock");
  { Sql(image + "/audit.db").exec("DROP TRIGGER refuse"); }
  log->close();

  Options io = optionsIn(image, 3);
  {
    Sql sql(image + "/audit.db");
    EXPECT_EQ(sql.count("SELECT count(*) FROM audit_record"), 4);
  }
  VerifyReport before = verify(io.url, io.checkpointDir, "");
  EXPECT_TRUE(before.ok) << before.problem;
  EXPECT_EQ(before.records, 9);
  // Without its journal the database is short of a signed checkpoint: verify says so.
  fs::rename(image + "/audit.db.journal", image + "/hidden.journal");
  VerifyReport without = verify(io.url, io.checkpointDir, "");
  EXPECT_FALSE(without.ok);
  EXPECT_NE(without.problem.find("truncated"), std::string::npos) << without.problem;
  fs::rename(image + "/hidden.journal", image + "/audit.db.journal");

  auto reopened = openLog(io);
  ASSERT_TRUE(reopened);
  EXPECT_EQ(reopened->lastSeq(), 9);
  auto r = reopened->append(sample(10));
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(r.value(), 10);
  AuditLog::Query q;
  q.patient = "p5";
  auto byPatient = reopened->query(q);
  ASSERT_TRUE(byPatient.ok());
  EXPECT_EQ(byPatient->size(), 1u);  // record 5, recovered from the journal into the patient index
  reopened->close();
  {
    Sql sql(image + "/audit.db");
    EXPECT_EQ(sql.count("SELECT count(*) FROM audit_record"), 10);
  }
  VerifyReport after = verify(io.url, io.checkpointDir, "");
  EXPECT_TRUE(after.ok) << after.problem;
  EXPECT_EQ(after.records, 10);
}

// Records committed elsewhere (a write's, in the resource store) are chained in order, with their
// origin, without a waiter; at the next start, those already chained are recognised and not
// chained twice.
TEST_P(AuditBackendTest, CommittedRecordsAreChainedOnceWithTheirOrigin) {
  Options o = options();
  auto log = openLog(o);
  ASSERT_TRUE(log);
  std::atomic<std::int64_t> released{0};
  log->onCommittedChained([&](std::int64_t id) { released = id; });
  auto committed = [](int from, int to) {
    std::vector<AuditLog::Committed> out;
    for (int i = from; i <= to; ++i) {
      Record r = sample(i);
      r.timeMs = kBaseMs + i;
      out.push_back({100 + i, encodeRecord(r)});
    }
    return out;
  };
  log->appendCommitted(committed(1, 3));
  ASSERT_TRUE(log->append(sample(50)).ok());
  auto all = log->query({});  // the query waits for what was given before it
  ASSERT_TRUE(all.ok()) << all.error().message;
  ASSERT_EQ(all->size(), 4u);
  EXPECT_EQ(released.load(), 103);
  std::set<std::string> origins;
  for (const auto& r : *all) origins.insert(r.origin);
  EXPECT_EQ(origins, (std::set<std::string>{"", "outbox:101", "outbox:102", "outbox:103"}));
  log->close();

  // The store still lists 101-103 (a stop before it deleted them) and 104-105 (never chained).
  auto again = openLog(o);
  ASSERT_TRUE(again);
  again->onCommittedChained([&](std::int64_t id) { released = id; });
  ASSERT_TRUE(again->adoptCommitted(committed(1, 5)).ok());
  all = again->query({});
  ASSERT_TRUE(all.ok());
  EXPECT_EQ(all->size(), 6u);
  EXPECT_EQ(released.load(), 105);
  int with105 = 0;
  for (const auto& r : *all) with105 += r.origin == "outbox:105";
  EXPECT_EQ(with105, 1);
  again->close();
  VerifyReport v = verify(o.url, o.checkpointDir, "");
  EXPECT_TRUE(v.ok) << v.problem;
  EXPECT_EQ(v.records, 6);
}

// The journal's reader stops where the chain stops: a torn last frame, an edited frame, and an
// older cycle's frames left in a reused segment are never taken for records.
TEST(AuditJournalTest, ReadsOnlyWhatContinuesTheChain) {
  TempDir dir;
  Options o = optionsIn(dir.path());
  o.journalSegmentBytes = 8192;  // several segments, reused once the database holds them
  auto log = openLog(o);
  ASSERT_TRUE(log);
  fill(*log, 60, 4);
  ASSERT_TRUE(log->query({}).ok());
  {
    Sql sql(dir.path() + "/audit.db");
    sql.exec("CREATE TRIGGER refuse BEFORE INSERT ON audit_record BEGIN SELECT RAISE(ABORT, 'disk refuses'); END;");
  }
  for (int i = 0; i < 6; ++i) ASSERT_TRUE(log->append(sample(100 + i)).ok());
  std::string journal = dir.path() + "/audit.db.journal";
  auto frames = [&](std::int64_t after, std::string_view hash) {
    std::vector<std::int64_t> seqs;
    auto n = internal::readJournal(journal, after, hash, [&](const internal::JournalFrame& f) {
      seqs.push_back(f.seq);
      return true;
    });
    EXPECT_TRUE(n.ok());
    return seqs;
  };
  std::string hash60;
  {
    Sql sql(dir.path() + "/audit.db");
    hash60 = sql.text("SELECT hash FROM audit_record WHERE seq = 60");
  }
  EXPECT_EQ(frames(60, hash60), (std::vector<std::int64_t>{61, 62, 63, 64, 65, 66}));
  EXPECT_TRUE(frames(60, codec::kGenesisHash).empty());  // another chain: nothing continues it
  // Find the segment holding seq 66 and damage its last frame's text.
  std::string target;
  for (const auto& e : fs::directory_iterator(journal)) {
    std::ifstream in(e.path(), std::ios::binary);
    std::string data((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    if (data.find(":/fhir/Observation/o105") != std::string::npos) target = e.path().string();
  }
  ASSERT_FALSE(target.empty());
  {
    std::fstream f(target, std::ios::binary | std::ios::in | std::ios::out);
    std::string data((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
    auto at = data.find(":/fhir/Observation/o105");
    f.seekp(static_cast<std::streamoff>(at + 20));
    f.put('9');
  }
  EXPECT_EQ(frames(60, hash60), (std::vector<std::int64_t>{61, 62, 63, 64, 65}));
  { Sql(dir.path() + "/audit.db").exec("DROP TRIGGER refuse"); }
  log->close();
}

TEST(AuditLogTest, OpenFailsWhereNothingCanBeWritten) {
  TempDir dir;
  std::ofstream(dir.path() + "/file") << "x";
  Options o;
  o.url = "sqlite:" + dir.path() + "/file/audit.db";
  o.checkpointDir = dir.path() + "/checkpoints";
  EXPECT_FALSE(AuditLog::open(o).ok());
  o = optionsIn(dir.path());
  o.checkpointDir = dir.path() + "/file/checkpoints";
  EXPECT_FALSE(AuditLog::open(o).ok());
  o = optionsIn(dir.path());
  o.url = "postgresql://localhost/audit";
  EXPECT_FALSE(AuditLog::open(o).ok());
}

TEST(AuditLogTest, ASecondWriterOfTheSameLogIsRefused) {
  TempDir dir;
  Options o = optionsIn(dir.path());
  auto log = openLog(o);
  ASSERT_TRUE(log);
  auto second = AuditLog::open(o);
  ASSERT_FALSE(second.ok());
  EXPECT_EQ(second.error().code, ErrorCode::kUnavailable);
  log->close();
  EXPECT_TRUE(AuditLog::open(o).ok());
}

// ---------------------------------------------------------------------------------------------
// AuditEvent (IHE BALP).

Json event(const Record& r) { return Json::parse(toAuditEventJson(r, "https://gw.example.fr/fhir")); }

void expectValid(const Record& r) {
  std::string json = toAuditEventJson(r, "https://gw.example.fr/fhir");
  auto result = fhir::Validator::instance().validate(json, "AuditEvent");
  std::string issues;
  for (const auto& i : result.issues) issues += "\n  " + i.severity + " @" + i.expression + ": " + i.diagnostics;
  EXPECT_FALSE(result.hasErrors()) << json << issues;
}

const Json* agentOfType(const Json& e, const std::string& code) {
  for (const auto& a : e["agent"])
    if (a["type"]["coding"][0]["code"] == code) return &a;
  return nullptr;
}

Record readOfObservation() {
  Record r;
  r.seq = 42;
  r.timeMs = kBaseMs + 1234;
  r.kind = "rest";
  r.action = "read";
  r.outcome = "granted";
  r.status = 200;
  r.subject = "b1f0c2";
  r.role = "gp";
  r.practitioner = "rpps:10101234567";
  r.tokenId = "jti-7";
  r.purpose = "TREAT";
  r.sourceAddress = "192.168.1.20:53122";
  r.method = "GET";
  r.path = "/fhir/Observation/o1";
  r.resourceType = "Observation";
  r.resources = {"Observation/o1"};
  r.patients = {"pat-1"};
  return r;
}

TEST(AuditEventTest, AReadOfPatientDataFollowsBalpPatientRead) {
  Record r = readOfObservation();
  Json e = event(r);
  EXPECT_EQ(e["resourceType"], "AuditEvent");
  EXPECT_EQ(e["id"], "42");
  EXPECT_EQ(e["meta"]["profile"][0], "https://profiles.ihe.net/ITI/BALP/StructureDefinition/IHE.BasicAudit.PatientRead");
  EXPECT_EQ(e["type"]["system"], "http://terminology.hl7.org/CodeSystem/audit-event-type");
  EXPECT_EQ(e["type"]["code"], "rest");
  EXPECT_EQ(e["subtype"][0]["system"], "http://hl7.org/fhir/restful-interaction");
  EXPECT_EQ(e["subtype"][0]["code"], "read");
  EXPECT_EQ(e["action"], "R");
  EXPECT_EQ(e["recorded"], "2026-01-01T00:00:01.234Z");
  EXPECT_EQ(e["outcome"], "0");
  EXPECT_EQ(e["purposeOfEvent"][0]["coding"][0]["code"], "TREAT");

  const Json* user = agentOfType(e, "IRCP");
  ASSERT_TRUE(user);
  EXPECT_EQ((*user)["who"]["identifier"]["system"], "https://rpps.esante.gouv.fr");
  EXPECT_EQ((*user)["who"]["identifier"]["value"], "10101234567");
  EXPECT_EQ((*user)["role"][0]["coding"][0]["code"], "gp");
  EXPECT_EQ((*user)["requestor"], true);
  EXPECT_EQ((*user)["policy"][0], "jti-7");
  const Json* client = agentOfType(e, "110152");  // a read: the data flows to the client
  ASSERT_TRUE(client);
  EXPECT_EQ((*client)["network"]["address"], "192.168.1.20");
  EXPECT_EQ((*client)["network"]["type"], "2");
  const Json* server = agentOfType(e, "110153");
  ASSERT_TRUE(server);
  EXPECT_EQ((*server)["who"]["display"], "Passerelle");
  EXPECT_EQ((*server)["requestor"], false);
  EXPECT_EQ(e["source"]["observer"]["display"], "Passerelle");

  ASSERT_EQ(e["entity"].size(), 2u);
  EXPECT_EQ(e["entity"][0]["what"]["reference"], "Patient/pat-1");
  EXPECT_EQ(e["entity"][0]["type"]["code"], "1");
  EXPECT_EQ(e["entity"][0]["role"]["code"], "1");
  EXPECT_EQ(e["entity"][1]["what"]["reference"], "Observation/o1");
  EXPECT_EQ(e["entity"][1]["type"]["code"], "2");
  expectValid(r);
}

TEST(AuditEventTest, ASearchCarriesTheRawQueryInBase64) {
  Record r = readOfObservation();
  r.action = "search";
  r.path = "/fhir/Observation";
  r.query = "patient=pat-1&code=http://loinc.org|8867-4&_count=10";
  r.resources = {"Observation/o1", "Observation/o2"};
  Json e = event(r);
  EXPECT_EQ(e["meta"]["profile"][0], "https://profiles.ihe.net/ITI/BALP/StructureDefinition/IHE.BasicAudit.PatientQuery");
  EXPECT_EQ(e["subtype"][0]["code"], "search-type");
  EXPECT_EQ(e["action"], "E");
  EXPECT_TRUE(agentOfType(e, "110153"));  // a query: the client is the source
  const Json* query = nullptr;
  for (const auto& en : e["entity"])
    if (en.contains("role") && en["role"]["code"] == "24") query = &en;
  ASSERT_TRUE(query);
  EXPECT_EQ((*query)["type"]["code"], "2");
  EXPECT_EQ((*query)["query"], "cGF0aWVudD1wYXQtMSZjb2RlPWh0dHA6Ly9sb2luYy5vcmd8ODg2Ny00Jl9jb3VudD0xMA==");
  expectValid(r);

  r.patients.clear();
  EXPECT_EQ(event(r)["meta"]["profile"][0], "https://profiles.ihe.net/ITI/BALP/StructureDefinition/IHE.BasicAudit.Query");
}

TEST(AuditEventTest, ADeniedAccessHasOutcome4WithTheReason) {
  Record r = readOfObservation();
  r.outcome = "denied";
  r.status = 403;
  r.reason = "no-care-relationship";
  r.practitioner.clear();
  r.account = "labo-connector";
  Json e = event(r);
  EXPECT_EQ(e["outcome"], "4");
  EXPECT_EQ(e["outcomeDesc"], "no-care-relationship");
  EXPECT_FALSE(e.contains("meta"));  // BALP profiles describe successes only
  const Json* user = agentOfType(e, "IRCP");
  ASSERT_TRUE(user);
  EXPECT_EQ((*user)["who"]["display"], "labo-connector");
  EXPECT_EQ((*user)["altId"], "b1f0c2");
  expectValid(r);

  r.outcome = "error";
  r.reason = "database unavailable";
  EXPECT_EQ(event(r)["outcome"], "8");
  expectValid(r);
}

TEST(AuditEventTest, BreakGlassAddsThePurposeAndTheReason) {
  Record r = readOfObservation();
  r.kind = "break-glass";
  r.breakGlassReason = "patient inconscient aux urgences";
  Json e = event(r);
  EXPECT_EQ(e["type"]["code"], "110110");  // patient record
  bool btg = false;
  for (const auto& p : e["purposeOfEvent"])
    if (p["coding"][0]["code"] == "BTG") {
      btg = true;
      EXPECT_EQ(p["text"], "patient inconscient aux urgences");
    }
  EXPECT_TRUE(btg);
  EXPECT_EQ(e["entity"][0]["detail"][0]["valueString"], "patient inconscient aux urgences");
  expectValid(r);
}

TEST(AuditEventTest, WritesAndOtherKindsAreValid) {
  for (const char* action : {"create", "update", "patch", "delete", "history", "transaction", "vread"}) {
    Record r = readOfObservation();
    r.action = action;
    Json e = event(r);
    std::string a = action;
    EXPECT_EQ(e["action"], a == "create" ? "C" : a == "update" || a == "patch" ? "U" : a == "delete" ? "D"
                                                                              : a == "transaction" ? "E" : "R")
        << action;
    expectValid(r);
  }
  Record create = readOfObservation();
  create.action = "create";
  EXPECT_EQ(event(create)["meta"]["profile"][0],
            "https://profiles.ihe.net/ITI/BALP/StructureDefinition/IHE.BasicAudit.PatientCreate");
  EXPECT_TRUE(agentOfType(event(create), "AUT"));

  Record purge;
  purge.seq = 9;
  purge.timeMs = kBaseMs;
  purge.kind = "purge";
  purge.action = "purge";
  purge.outcome = "granted";
  purge.subject = "admin-1";
  purge.detail = R"({"removed":41})";
  Json e = event(purge);
  EXPECT_EQ(e["type"]["code"], "110101");
  EXPECT_EQ(e["action"], "D");
  expectValid(purge);

  Record login;
  login.seq = 10;
  login.timeMs = kBaseMs;
  login.kind = "auth";
  login.action = "login";
  login.outcome = "granted";
  login.subject = "Patient/pat-1";
  login.role = "patient";
  Json l = event(login);
  EXPECT_EQ(l["type"]["code"], "110114");
  EXPECT_EQ(l["subtype"][0]["code"], "110122");
  EXPECT_EQ(l["agent"][0]["who"]["reference"], "Patient/pat-1");
  expectValid(login);
}

// ---------------------------------------------------------------------------------------------
// Command line.

int run(std::vector<std::string> args, std::string& out) {
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  ::testing::internal::CaptureStdout();
  int rc = auditCommand(static_cast<int>(argv.size()), argv.data());
  out = ::testing::internal::GetCapturedStdout();
  return rc;
}

TEST(AuditCommandTest, VerifiesAndPurgesFromTheCommandLine) {
  TempDir dir;
  Options o;
  o.url = "sqlite:" + dir.path() + "/audit.db";
  o.checkpointDir = dir.path() + "/audit-checkpoints";
  {
    auto log = openLog(o);
    ASSERT_TRUE(log);
    for (int i = 1; i <= 20; ++i) {
      Record r = sample(i);
      r.timeMs = kBaseMs + i * 86400000LL;  // one a day from 2026-01-02
      ASSERT_TRUE(log->append(r).ok());
    }
  }
  std::string out;
  std::vector<std::string> common = {"--config", "/dev/null", "--set", "data.dir=" + dir.path()};
  auto cmd = [&](std::vector<std::string> head) {
    head.insert(head.begin(), {"passerelle", "audit"});
    head.insert(head.end(), common.begin(), common.end());
    return head;
  };
  EXPECT_EQ(run(cmd({"verify"}), out), 0);
  EXPECT_NE(out.find("audit trail verified: 20 records, "), std::string::npos) << out;

  EXPECT_EQ(run(cmd({"purge", "--before", "2026-01-11"}), out), 0);
  EXPECT_NE(out.find("purged 9 records (up to seq 9) older than 2026-01-11; the purge is recorded as record 21"),
            std::string::npos)
      << out;
  EXPECT_EQ(run(cmd({"verify"}), out), 0) << out;
  EXPECT_NE(out.find("verified: 12 records"), std::string::npos) << out;

  { Sql(dir.path() + "/audit.db").exec("UPDATE audit_record SET action = action || 'x' WHERE seq = 15"); }
  EXPECT_EQ(run(cmd({"verify"}), out), 1);
  EXPECT_NE(out.find("audit trail BROKEN at record 15: record 15: column action differs from the hashed record"),
            std::string::npos)
      << out;

  EXPECT_EQ(run(cmd({"verify", "--public-key", dir.path() + "/none.pem"}), out), 1);
  EXPECT_EQ(run({"passerelle", "audit", "frobnicate"}, out), 2);
  EXPECT_EQ(run({"passerelle", "audit", "--help"}, out), 0);
  EXPECT_NE(out.find("passerelle audit verify"), std::string::npos);
}

// ---------------------------------------------------------------------------------------------
// PostgreSQL: several gateways append to one shared database, and the chain stays one.

// Runs SQL in the database of `url` (made by PgServer) through psql.
std::string psql(PgServer& server, const std::string& url, const std::string& sql) {
  return server.psql(url.substr(url.rfind('/') + 1), sql);
}

class AuditPgTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string skip;
    url_ = PgServer::freshDatabase(skip);
    if (url_.empty()) GTEST_SKIP() << skip;
    std::string error;
    server_ = PgServer::shared(error);
    ASSERT_TRUE(server_) << error;
  }
  // The options of one gateway: the shared database, a checkpoint folder of its own.
  Options gateway(const std::string& name, std::int64_t checkpointRecords = 10000) const {
    Options o = optionsIn(dir_.path() + "/" + name, checkpointRecords);
    o.url = url_;
    return o;
  }
  std::string sql(const std::string& statement) { return psql(*server_, url_, statement); }

  TempDir dir_;
  std::string url_;
  PgServer* server_ = nullptr;
};

TEST_F(AuditPgTest, TwoGatewaysAppendingAtOnceKeepOneContiguousChainThatEachOnesCheckpointsVerify) {
  Options a = gateway("a", 2000), b = gateway("b", 2000);
  auto logA = openLog(a), logB = openLog(b);
  ASSERT_TRUE(logA && logB);
  // More records and patient rows than the verifier reads in one page.
  constexpr int kThreads = 8, kEach = 700;
  std::mutex mutex;
  std::vector<std::int64_t> seqs;
  std::vector<std::thread> ts;
  for (AuditLog* log : {logA.get(), logB.get()})
    for (int t = 0; t < kThreads; ++t)
      ts.emplace_back([&, log, t] {
        std::vector<std::int64_t> mine;
        for (int i = 0; i < kEach; ++i) {
          auto r = log->append(sample(t * kEach + i));
          ASSERT_TRUE(r.ok()) << r.error().message;
          if (!mine.empty()) {
            EXPECT_LT(mine.back(), r.value());
          }
          mine.push_back(r.value());
        }
        std::lock_guard<std::mutex> lk(mutex);
        seqs.insert(seqs.end(), mine.begin(), mine.end());
      });
  for (auto& t : ts) t.join();
  constexpr std::int64_t kTotal = 2 * kThreads * kEach;
  std::sort(seqs.begin(), seqs.end());
  ASSERT_EQ(static_cast<std::int64_t>(seqs.size()), kTotal);
  for (std::int64_t i = 0; i < kTotal; ++i) ASSERT_EQ(seqs[static_cast<std::size_t>(i)], i + 1) << "a gap or a duplicate";
  EXPECT_EQ(sql("SELECT count(*), min(seq), max(seq), (SELECT seq FROM audit_head) FROM audit_record"),
            std::to_string(kTotal) + "|1|" + std::to_string(kTotal) + "|" + std::to_string(kTotal) + "\n");
  logA->close();
  logB->close();
  for (const Options* o : {&a, &b}) {
    VerifyReport v = verify(url_, o->checkpointDir, "");
    EXPECT_TRUE(v.ok) << o->checkpointDir << ": " << v.problem;
    EXPECT_EQ(v.records, kTotal);
    EXPECT_GE(v.checkpoints, 3);
    // Each gateway signed the shared chain's last record at close, whoever wrote it.
    EXPECT_EQ(Json::parse(readLines(o->checkpointDir + "/checkpoints.jsonl").back())["seq"], kTotal);
  }
}

TEST_F(AuditPgTest, AnOutboxRecordAdoptedByTwoGatewaysIsChainedOnce) {
  auto logA = openLog(gateway("a")), logB = openLog(gateway("b"));
  ASSERT_TRUE(logA && logB);
  std::atomic<std::int64_t> releasedA{0}, releasedB{0};
  logA->onCommittedChained([&](std::int64_t id) { releasedA = id; });
  logB->onCommittedChained([&](std::int64_t id) { releasedB = id; });
  std::vector<AuditLog::Committed> pending;
  for (int i = 1; i <= 60; ++i) {
    Record r = sample(i);
    r.timeMs = kBaseMs + i;
    pending.push_back({1000 + i, encodeRecord(r)});
  }
  // Both gateways start at once and adopt every pending row, while appends go on in both.
  std::vector<std::thread> ts;
  for (AuditLog* log : {logA.get(), logB.get()}) {
    ts.emplace_back([log, pending] {
      for (int from = 0; from < 60; from += 10)  // in several groups, interleaving with the other's
        log->appendCommitted(std::vector<AuditLog::Committed>(pending.begin() + from, pending.begin() + from + 10));
    });
    ts.emplace_back([log] {
      for (int i = 0; i < 30; ++i) ASSERT_TRUE(log->append(sample(100 + i)).ok());
    });
  }
  for (auto& t : ts) t.join();
  ASSERT_TRUE(logB->adoptCommitted(pending).ok());  // a third start: all are chained already
  ASSERT_TRUE(logA->query({}).ok());  // waits until what was given to each is chained
  ASSERT_TRUE(logB->query({}).ok());
  EXPECT_EQ(releasedA.load(), 1060);
  EXPECT_EQ(releasedB.load(), 1060);
  EXPECT_EQ(sql("SELECT count(*), count(DISTINCT origin), min(origin), max(origin) FROM audit_record "
                "WHERE origin IS NOT NULL"),
            "60|60|outbox:1001|outbox:1060\n");
  EXPECT_EQ(sql("SELECT count(*) FROM audit_record"), "120\n");
  AuditLog::Query q;
  q.count = 1000;
  auto all = logB->query(q);
  ASSERT_TRUE(all.ok()) << all.error().message;
  std::map<std::string, int> origins;
  for (const auto& r : *all)
    if (!r.origin.empty()) ++origins[r.origin];
  EXPECT_EQ(origins.size(), 60u);
  for (const auto& [origin, n] : origins) EXPECT_EQ(n, 1) << origin;
  Options a = gateway("a");
  logA->close();
  logB->close();
  VerifyReport v = verify(url_, a.checkpointDir, "");
  EXPECT_TRUE(v.ok) << v.problem;
  EXPECT_EQ(v.records, 120);
}

TEST_F(AuditPgTest, EditedDeletedOrTruncatedRecordsAreDetected) {
  Options o = gateway("a", 50);
  {
    auto log = openLog(o);
    ASSERT_TRUE(log);
    fill(*log, 200, 4);
  }
  VerifyReport v = verify(url_, o.checkpointDir, "");
  ASSERT_TRUE(v.ok) << v.problem;
  ASSERT_EQ(v.records, 200);
  // Each tampering is earlier in the chain than the one before: the verifier stops at the first.
  ASSERT_EQ(sql("UPDATE audit_record SET action = 'delete' WHERE seq = 170"), "");
  v = verify(url_, o.checkpointDir, "");
  EXPECT_FALSE(v.ok);
  EXPECT_EQ(v.firstBadSeq, 170);
  EXPECT_NE(v.problem.find("column action differs from the hashed record"), std::string::npos) << v.problem;

  ASSERT_EQ(sql("UPDATE audit_record SET record = overlay(record placing '\\x58'::bytea from 40 for 1) "
                "WHERE seq = 120"),
            "");
  v = verify(url_, o.checkpointDir, "");
  EXPECT_EQ(v.firstBadSeq, 120);
  EXPECT_NE(v.problem.find("hash does not match its content"), std::string::npos) << v.problem;

  ASSERT_EQ(sql("UPDATE audit_record SET origin = 'outbox:1' WHERE seq = 90"), "");
  v = verify(url_, o.checkpointDir, "");
  EXPECT_EQ(v.firstBadSeq, 90);
  EXPECT_NE(v.problem.find("column origin differs from the hashed record"), std::string::npos) << v.problem;

  ASSERT_EQ(sql("DELETE FROM audit_patient WHERE seq = 70"), "");
  v = verify(url_, o.checkpointDir, "");
  EXPECT_EQ(v.firstBadSeq, 70);
  EXPECT_NE(v.problem.find("the patient index (audit_patient) differs"), std::string::npos) << v.problem;

  ASSERT_EQ(sql("DELETE FROM audit_record WHERE seq = 60"), "");
  v = verify(url_, o.checkpointDir, "");
  EXPECT_EQ(v.firstBadSeq, 60);
  EXPECT_NE(v.problem.find("record 60 missing"), std::string::npos) << v.problem;

  // The tail cut off and the head moved back: the checkpoints name later records.
  ASSERT_EQ(sql("DELETE FROM audit_record WHERE seq > 180; "
                "UPDATE audit_head SET seq = 180, hash = (SELECT hash FROM audit_record WHERE seq = 180)"),
            "");
  auto reopened = AuditLog::open(o);
  ASSERT_FALSE(reopened.ok());
  EXPECT_NE(reopened.error().message.find("ends at seq 180"), std::string::npos) << reopened.error().message;

  // A record slipped in after the head: no gateway chains from a head that is not the last record.
  ASSERT_EQ(sql("INSERT INTO audit_record SELECT seq + 1000, time_ms, kind, action, outcome, subject, origin, record, "
                "prev_hash, hash FROM audit_record WHERE seq = 180"),
            "");
  reopened = AuditLog::open(gateway("b"));
  ASSERT_FALSE(reopened.ok());
  EXPECT_NE(reopened.error().message.find("records after the chain's head"), std::string::npos) << reopened.error().message;
}

TEST_F(AuditPgTest, APurgeWhileAnotherGatewayAppendsKeepsTheChainVerifiable) {
  Options a = gateway("a", 50), b = gateway("b", 50);
  auto logA = openLog(a), logB = openLog(b);
  ASSERT_TRUE(logA && logB);
  for (int i = 1; i <= 100; ++i) {
    Record r = sample(i);
    r.timeMs = kBaseMs + i * 1000;
    ASSERT_TRUE((i % 2 ? logA : logB)->append(r).ok());
  }
  std::thread appender([&] { fill(*logB, 200, 4, 1000); });
  Record by;
  by.subject = "admin-1";
  auto p = logA->purge(kBaseMs + 50 * 1000 + 500, by);
  appender.join();
  ASSERT_TRUE(p.ok()) << p.error().message;
  EXPECT_EQ(p->removed, 50);
  EXPECT_EQ(p->upToSeq, 50);
  EXPECT_EQ(sql("SELECT min(seq), max(seq), count(*) FROM audit_record"), "51|301|251\n");
  EXPECT_EQ(sql("SELECT count(*) FROM audit_patient WHERE seq <= 50"), "0\n");
  EXPECT_EQ(sql("SELECT value FROM audit_meta WHERE key = 'purged_seq'"), "50\n");
  AuditLog::Query q;
  q.action = "purge";
  auto purges = logB->query(q);
  ASSERT_TRUE(purges.ok());
  ASSERT_EQ(purges->size(), 1u);
  EXPECT_EQ(purges->front().subject, "admin-1");
  EXPECT_EQ(Json::parse(purges->front().detail)["removed"], 50);
  logA->close();
  logB->close();
  // The purging gateway's folder holds the signed anchor the shortened chain starts from.
  VerifyReport v = verify(url_, a.checkpointDir, "");
  EXPECT_TRUE(v.ok) << v.problem;
  EXPECT_EQ(v.records, 251);
}

// A server of its own, stopped and started again: the shared one serves the other tests.
TEST(AuditPgServerTest, AppendsFailClosedWhileTheServerIsDownAndTheChainGoesOnAfterIt) {
  if (!PgServer::available()) GTEST_SKIP() << "PostgreSQL is not available: " << PgServer::unavailableReason();
  PgServer server;
  std::string error;
  ASSERT_TRUE(server.start(error)) << error;
  std::string url = server.createDatabase(error);
  ASSERT_FALSE(url.empty()) << error;
  TempDir dir;
  Options o = optionsIn(dir.path());
  o.url = url;
  auto log = openLog(o);
  ASSERT_TRUE(log);
  ASSERT_TRUE(log->append(sample(1)).ok());
  server.stop();
  EXPECT_EQ(unavailableOfFourConcurrentAppends(*log), 4);
  EXPECT_EQ(log->lastSeq(), 1);
  EXPECT_GE(log->failures(), 4u);
  EXPECT_FALSE(log->query({}).ok());
  ASSERT_TRUE(server.start(error)) << error;
  auto r = log->append(sample(2));
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(r.value(), 2);
  EXPECT_EQ(psql(server, url, "SELECT count(*) FROM audit_record"), "2\n");
  auto got = log->get(2);
  ASSERT_TRUE(got.ok() && got->has_value()) << (got.ok() ? "" : got.error().message);
  log->close();
  VerifyReport v = verify(url, o.checkpointDir, "");
  EXPECT_TRUE(v.ok) << v.problem;
  EXPECT_EQ(v.records, 2);
}

TEST_F(AuditPgTest, TheCommandLineVerifiesAPostgreSqlTrail) {
  Options o = gateway("a");
  {
    auto log = openLog(o);
    ASSERT_TRUE(log);
    fill(*log, 20, 2);
  }
  const std::string verifyBy = std::string(PASSERELLE_BINARY) + " audit verify --config /dev/null ";
  std::string out = runCommand(verifyBy + "--db '" + url_ + "' --checkpoints " + o.checkpointDir);
  EXPECT_NE(out.find("audit trail verified: 20 records"), std::string::npos) << out;
  out = runCommand(verifyBy + "--set 'audit.url=" + url_ + "' --set audit.checkpoint_dir=" + o.checkpointDir);
  EXPECT_NE(out.find("audit trail verified: 20 records"), std::string::npos) << out;

  ASSERT_EQ(sql("UPDATE audit_record SET subject = 'someone-else' WHERE seq = 15"), "");
  out = runCommand(verifyBy + "--db '" + url_ + "' --checkpoints " + o.checkpointDir);
  EXPECT_EQ(out.rfind("FAILED", 0), 0u) << out;
  EXPECT_NE(out.find("audit trail BROKEN at record 15: record 15: column subject differs from the hashed record"),
            std::string::npos)
      << out;
}

// Not a check: how many appends a second 16 threads make on each database (run with
// --gtest_also_run_disabled_tests --gtest_filter='*Throughput*').
TEST_P(AuditBackendTest, DISABLED_ThroughputOfSixteenThreads) {
  auto log = openLog(options());
  ASSERT_TRUE(log);
  constexpr int kRecords = 40000;
  auto t0 = std::chrono::steady_clock::now();
  fill(*log, kRecords, 16);
  double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::printf("[ throughput ] %s: %d appends from 16 threads in %.2f s: %.0f appends/s\n", GetParam(), kRecords, s,
              kRecords / s);
}

}  // namespace
}  // namespace passerelle::audit
