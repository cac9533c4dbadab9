// The resource store on real databases, the same tests on both: SQLite (a temporary file) and
// PostgreSQL (a fresh database of a throw-away cluster, skipped when PostgreSQL is not installed):
// versions, group commit, savepoints, migrations, audit records, the message store; then what is
// particular to each (SQLite's journal, PostgreSQL's reconnection).
#include <gtest/gtest.h>

#include <signal.h>
#include <sqlite3.h>

#include <algorithm>
#include <atomic>
#include <map>
#include <mutex>
#include <thread>

#include "gateway/search/reindex.h"
#include "gateway/store/resource_store.h"
#include "tests/support/pg_server.h"
#include "tests/support/ssh_server.h"
#include "tests/support/test_gateway.h"

using namespace passerelle;
using namespace passerelle::store;
using passerelle::testing::PgServer;

namespace {

std::unique_ptr<ResourceStore> openUrl(const std::string& url) {
  auto s = openStore(url, StoreOptions{});
  if (!s.ok()) throw std::runtime_error(s.error().message);
  return std::move(s.value());
}

std::unique_ptr<ResourceStore> open(const std::string& dir) { return openUrl("sqlite:" + dir + "/db/p.db"); }

Result<void> putVersion(WriteTxn& t, const std::string& id, std::int64_t version, bool deleted = false,
                        IndexRows rows = {}) {
  ResourceVersion v;
  v.type = "Patient";
  v.id = id;
  v.version = version;
  v.method = deleted ? "DELETE" : "PUT";
  v.deleted = deleted;
  v.body = deleted ? "" : "{\"resourceType\":\"Patient\",\"id\":\"" + id + "\"}";
  return t.put(v, rows);
}

// Queues a delivery to `destination` per order key of `keys`, in one unit; the deliveries made.
std::vector<Delivery> enqueueDeliveries(ResourceStore& s, const std::string& destination, const std::vector<std::string>& keys) {
  std::vector<Delivery> made;
  auto w = s.write([&](WriteTxn& t) -> Result<void> {
    for (const auto& key : keys) {
      Delivery d;
      d.destination = destination;
      d.orderKey = key;
      d.kind = "REF^I12";
      d.focus = "ServiceRequest/x/_history/1";
      auto r = t.enqueue(d);
      if (!r.ok()) return r;
      made.push_back(d);
    }
    return {};
  });
  if (!w.ok()) throw std::runtime_error(w.error().message);
  return made;
}


// Each test on each database: GetParam() names it.
class StoreTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    if (GetParam() == "postgresql") {
      std::string skip;
      url_ = PgServer::freshDatabase(skip);
      if (url_.empty()) GTEST_SKIP() << skip;
    } else {
      url_ = "sqlite:" + dir_.path() + "/db/p.db";
    }
  }
  std::unique_ptr<ResourceStore> open() { return openUrl(url_); }

  passerelle::testing::TempDir dir_;
  std::string url_;
};

}  // namespace

INSTANTIATE_TEST_SUITE_P(Databases, StoreTest, ::testing::Values("sqlite", "postgresql"),
                         [](const ::testing::TestParamInfo<std::string>& info) { return info.param; });

TEST_P(StoreTest, KeepsEveryVersionAndTheCurrentOne) {
  auto s = open();
  for (int v = 1; v <= 3; ++v)
    ASSERT_TRUE(s->write([&](WriteTxn& t) { return putVersion(t, "p1", v); }).ok());
  auto cur = s->read("Patient", "p1");
  ASSERT_TRUE(cur.ok() && cur->has_value());
  EXPECT_EQ((*cur)->version, 3);
  auto v2 = s->vread("Patient", "p1", 2);
  ASSERT_TRUE(v2.ok() && v2->has_value());
  EXPECT_EQ((*v2)->version, 2);
  auto h = s->history(HistoryQuery{"Patient", "p1", std::nullopt, std::nullopt, 2});
  ASSERT_TRUE(h.ok());
  ASSERT_EQ(h->items.size(), 2u);
  EXPECT_EQ(h->items[0].version, 3);
  ASSERT_TRUE(h->nextCursor.has_value());
  auto h2 = s->history(HistoryQuery{"Patient", "p1", std::nullopt, h->nextCursor, 2});
  ASSERT_EQ(h2->items.size(), 1u);
  EXPECT_EQ(h2->items[0].version, 1);
  EXPECT_FALSE(h2->nextCursor.has_value());
}

TEST_P(StoreTest, AFailedUnitLeavesNoTraceAndOthersInTheGroupCommit) {
  auto s = open();
  std::vector<std::thread> threads;
  std::atomic<int> ok{0}, failed{0};
  for (int i = 0; i < 16; ++i) {
    threads.emplace_back([&, i] {
      for (int k = 0; k < 25; ++k) {
        std::string id = "t" + std::to_string(i) + "-" + std::to_string(k);
        auto r = s->write([&](WriteTxn& t) -> Result<void> {
          auto w = putVersion(t, id, 1);
          if (!w.ok()) return w;
          if (k % 5 == 0) return makeError(ErrorCode::kInvalid, "refused on purpose");
          return {};
        });
        (r.ok() ? ok : failed)++;
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(ok.load(), 16 * 20);
  EXPECT_EQ(failed.load(), 16 * 5);
  SearchQuery q;
  q.type = "Patient";
  q.count = 0;
  auto page = s->search(q);
  ASSERT_TRUE(page.ok());
  EXPECT_EQ(page->total, 16 * 20);  // the refused units were rolled back
  auto stats = s->stats();
  EXPECT_EQ(stats.units, 320u);
  EXPECT_EQ(stats.unitsFailed, 80u);
  EXPECT_LT(stats.commits, 400u);  // concurrent units shared commits
}

TEST_P(StoreTest, NestedUnitsRollBackAlone) {
  auto s = open();
  ASSERT_TRUE(s->write([&](WriteTxn& t) -> Result<void> {
                 auto a = t.atomically([&] { return putVersion(t, "kept", 1); });
                 auto b = t.atomically([&]() -> Result<void> {
                   auto w = putVersion(t, "dropped", 1);
                   return makeError(ErrorCode::kInvalid, "no");
                 });
                 EXPECT_TRUE(a.ok());
                 EXPECT_FALSE(b.ok());
                 return {};
               }).ok());
  EXPECT_TRUE(s->read("Patient", "kept")->has_value());
  EXPECT_FALSE(s->read("Patient", "dropped")->has_value());
}

TEST_P(StoreTest, DuplicateVersionIsAConflict) {
  auto s = open();
  ASSERT_TRUE(s->write([&](WriteTxn& t) { return putVersion(t, "p", 1); }).ok());
  auto r = s->write([&](WriteTxn& t) { return putVersion(t, "p", 1); });
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, ErrorCode::kConflict);
}

TEST_P(StoreTest, TokenIndexFollowsTheCurrentVersion) {
  auto s = open();
  ASSERT_TRUE(s->write([&](WriteTxn& t) { return putVersion(t, "p", 1, false, IndexRows{{{"Patient.identifier", "sys", "A"}}}); }).ok());
  ASSERT_TRUE(s->write([&](WriteTxn& t) { return putVersion(t, "p", 2, false, IndexRows{{{"Patient.identifier", "sys", "B"}}}); }).ok());
  auto find = [&](const std::string& value) {
    SearchQuery q;
    q.type = "Patient";
    Condition m;
    m.kind = Condition::Kind::kToken;
    m.param = "Patient.identifier";
    m.value = value;
    q.where.push_back({m});
    return s->search(q)->total;
  };
  EXPECT_EQ(find("A"), 0);
  EXPECT_EQ(find("B"), 1);
  ASSERT_TRUE(s->write([&](WriteTxn& t) { return putVersion(t, "p", 3, true); }).ok());
  EXPECT_EQ(find("B"), 0);
}

TEST(SqliteStoreTest, UsesWalWithFullSyncAndRecordsMigrations) {
  passerelle::testing::TempDir dir;
  {
    auto s = open(dir.path());
    s->close();
  }
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open((dir.path() + "/db/p.db").c_str(), &db), SQLITE_OK);
  auto scalar = [&](const char* sql) {
    sqlite3_stmt* st = nullptr;
    sqlite3_prepare_v2(db, sql, -1, &st, nullptr);
    std::string out;
    if (sqlite3_step(st) == SQLITE_ROW) out = reinterpret_cast<const char*>(sqlite3_column_text(st, 0));
    sqlite3_finalize(st);
    return out;
  };
  EXPECT_EQ(scalar("PRAGMA journal_mode"), "wal");
  EXPECT_EQ(scalar("SELECT MAX(version) FROM schema_migrations"), "5");
  sqlite3_close(db);
  // Opening again applies nothing twice.
  auto again = open(dir.path());
  again->close();
}

TEST_P(StoreTest, DataSurvivesReopening) {
  {
    auto s = open();
    ASSERT_TRUE(s->write([&](WriteTxn& t) { return putVersion(t, "durable", 1); }).ok());
    s->close();
  }
  auto s = open();
  EXPECT_TRUE(s->read("Patient", "durable")->has_value());
}

TEST_P(StoreTest, WritesAfterCloseAreRefused) {
  auto s = open();
  s->close();
  auto r = s->write([&](WriteTxn& t) { return putVersion(t, "late", 1); });
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, ErrorCode::kUnavailable);
}

TEST(OpenStoreTest, UnsupportedUrlNamesTheScheme) {
  auto s = openStore("mysql://x", StoreOptions{});
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.error().message.find("unsupported scheme"), std::string::npos);
}

// A database made before the search indexes existed (schema 1, a token table) is migrated and
// its resources indexed again on start, so they are found by the new parameters.
TEST(SqliteStoreTest, AnOlderDatabaseIsMigratedAndReindexed) {
  passerelle::testing::TempDir dir;
  std::string path = dir.path() + "/old.db";
  {
    sqlite3* db = nullptr;
    ASSERT_EQ(sqlite3_open(path.c_str(), &db), SQLITE_OK);
    std::string schema;
    for (const auto& m : {std::string(
             "CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at INTEGER NOT NULL);"
             "INSERT INTO schema_migrations VALUES (1, 'resources', 0);"
             "CREATE TABLE resource_version (seq INTEGER PRIMARY KEY, res_type TEXT NOT NULL, res_id TEXT NOT NULL,"
             " version INTEGER NOT NULL, last_updated INTEGER NOT NULL, method TEXT NOT NULL, deleted INTEGER NOT NULL,"
             " body TEXT, UNIQUE (res_type, res_id, version));"
             "CREATE TABLE resource_current (res_type TEXT NOT NULL, res_id TEXT NOT NULL, version INTEGER NOT NULL,"
             " seq INTEGER NOT NULL, deleted INTEGER NOT NULL, last_updated INTEGER NOT NULL, PRIMARY KEY (res_type, res_id));"
             "CREATE INDEX resource_current_updated ON resource_current (res_type, last_updated);"
             "CREATE TABLE token_index (res_type TEXT NOT NULL, res_id TEXT NOT NULL, param TEXT NOT NULL,"
             " system TEXT NOT NULL, value TEXT NOT NULL);"
             "INSERT INTO resource_version VALUES (1, 'Patient', 'old', 1, 1000, 'PUT', 0,"
             " '{\"resourceType\":\"Patient\",\"id\":\"old\",\"name\":[{\"family\":\"Lefèvre\"}]}');"
             "INSERT INTO resource_current VALUES ('Patient', 'old', 1, 1, 0, 1000);")})
      ASSERT_EQ(sqlite3_exec(db, m.c_str(), nullptr, nullptr, nullptr), SQLITE_OK) << sqlite3_errmsg(db);
    sqlite3_close(db);
  }
  auto s = openStore("sqlite:" + path, StoreOptions{});
  ASSERT_TRUE(s.ok()) << s.error().message;
  auto& store = *s.value();
  auto byName = [&] {
    SearchQuery q;
    q.type = "Patient";
    Condition c;
    c.kind = Condition::Kind::kString;
    c.match = Condition::Match::kPrefix;
    c.param = "Patient.family";
    c.value = "lefevre";
    q.where.push_back({c});
    return store.search(q)->items.size();
  };
  EXPECT_EQ(byName(), 0u);
  auto r = passerelle::search::reindexIfNeeded(store, "", false);
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_TRUE(r->ran);
  EXPECT_EQ(r->resources, 1);
  EXPECT_EQ(byName(), 1u);
  // Nothing to do the second time; forced, it runs again.
  EXPECT_FALSE(passerelle::search::reindexIfNeeded(store, "", false)->ran);
  EXPECT_TRUE(passerelle::search::reindexIfNeeded(store, "", true)->ran);
  EXPECT_EQ(byName(), 1u);
}

// A write's audit record is committed in its unit: handed to the sink once committed, in commit
// order, never for a unit that failed; kept until released, then deleted with a later commit.
TEST_P(StoreTest, AuditRecordsAreCommittedWithTheirUnitAndKeptUntilReleased) {
  auto s = open();
  std::mutex m;
  std::vector<OutboxRecord> sunk;
  s->setAuditSink([&](std::vector<OutboxRecord>&& rs) {
    std::lock_guard<std::mutex> lock(m);
    for (auto& r : rs) sunk.push_back(std::move(r));
  });
  std::vector<std::thread> ts;
  std::atomic<int> failed{0};
  for (int i = 0; i < 8; ++i)
    ts.emplace_back([&, i] {
      auto r = s->write([&](WriteTxn& t) -> Result<void> {
        auto p = putVersion(t, "a" + std::to_string(i), 1);
        if (!p.ok()) return p;
        auto a = t.attachAudit("record " + std::to_string(i));
        if (!a.ok()) return a;
        if (i % 3 == 0) return makeError(ErrorCode::kConflict, "refused after attaching");  // rolled back, record too
        return {};
      });
      if (!r.ok()) ++failed;
    });
  for (auto& t : ts) t.join();
  EXPECT_EQ(failed.load(), 3);
  ASSERT_EQ(sunk.size(), 5u);
  for (std::size_t i = 1; i < sunk.size(); ++i) EXPECT_LT(sunk[i - 1].id, sunk[i].id);
  for (const auto& r : sunk) {
    int i = std::stoi(r.record.substr(7));
    EXPECT_NE(i % 3, 0) << r.record;
    auto cur = s->read("Patient", "a" + std::to_string(i));
    EXPECT_TRUE(cur.ok() && cur->has_value());  // durable together
  }
  auto pending = s->pendingAuditRecords();
  ASSERT_TRUE(pending.ok());
  EXPECT_EQ(pending->size(), 5u);
  s->releaseAuditRecords(sunk[2].id);
  ASSERT_TRUE(s->write([&](WriteTxn& t) { return putVersion(t, "other", 1); }).ok());
  pending = s->pendingAuditRecords();
  ASSERT_TRUE(pending.ok());
  ASSERT_EQ(pending->size(), 2u);
  EXPECT_EQ(pending->front().id, sunk[3].id);
  // What is released when no more writes come is deleted at close.
  s->releaseAuditRecords(sunk[4].id);
  s->close();
  s = open();
  pending = s->pendingAuditRecords();
  ASSERT_TRUE(pending.ok());
  EXPECT_TRUE(pending->empty());
}

// Reads honour the calling thread's SearchLimit: past its deadline, or once its client is gone,
// they stop with kTimeout; without one (or once it has ended) they run to their end.
TEST_P(StoreTest, ReadsStopAtTheirThreadsDeadlineOrWhenTheClientIsGone) {
  auto s = open();
  ASSERT_TRUE(s->write([&](WriteTxn& t) -> Result<void> {
                 for (int i = 0; i < 300; ++i) {
                   IndexRows rows;
                   rows.strings.push_back({"Patient.name", "name" + std::to_string(i), "Name" + std::to_string(i)});
                   auto r = putVersion(t, "p" + std::to_string(i), 1, false, rows);
                   if (!r.ok()) return r;
                 }
                 return {};
               }).ok());
  SearchQuery q;
  q.type = "Patient";
  Condition c;
  c.kind = Condition::Kind::kString;
  c.param = "Patient.name";
  c.match = Condition::Match::kContains;
  c.value = "ame";
  q.where.push_back({c});
  q.count = 1000;
  q.total = SearchQuery::Total::kAccurate;
  auto before = s->stats();
  {
    SearchLimit past(std::chrono::steady_clock::now() - std::chrono::milliseconds(1), nullptr);
    auto r = s->search(q);
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.error().code, ErrorCode::kTimeout);
    EXPECT_NE(r.error().message.find("time limit"), std::string::npos);
  }
  {
    SearchLimit gone(std::chrono::steady_clock::now() + std::chrono::hours(1), [] { return true; });
    auto r = s->search(q);
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.error().code, ErrorCode::kTimeout);
    EXPECT_NE(r.error().message.find("client went away"), std::string::npos);
  }
  auto after = s->stats();
  EXPECT_EQ(after.searchesPastDeadline, before.searchesPastDeadline + 1);
  EXPECT_EQ(after.searchesAbandoned, before.searchesAbandoned + 1);
  auto r = s->search(q);
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(r->total, 300);
}

// The message store: a partner's control id is kept once; deliveries leave per order key in order,
// a later one waiting for the one before it, other keys not blocked.
TEST_P(StoreTest, InboxKeepsAControlIdOnceAndTheOutboxKeepsOrderPerKey) {
  auto s = open();
  passerelle::store::InboxMessage m;
  m.channel = "mllp";
  m.partner = "avicenne";
  m.controlId = "42";
  m.type = "RRI^I12";
  m.status = "processed";
  m.ackCode = "AA";
  m.message = "MSH|...";
  m.ack = "MSH|...ACK";
  ASSERT_TRUE(s->write([&](WriteTxn& t) { return t.putInbox(m); }).ok());
  auto again = s->write([&](WriteTxn& t) {
    passerelle::store::InboxMessage copy = m;
    return t.putInbox(copy);
  });
  ASSERT_FALSE(again.ok());
  EXPECT_EQ(again.error().code, passerelle::ErrorCode::kConflict);
  auto found = s->findInbox("avicenne", "42");
  ASSERT_TRUE(found.ok() && found->has_value());
  EXPECT_EQ((*found)->ack, "MSH|...ACK");
  EXPECT_FALSE(s->findInbox("saint-antoine", "42")->has_value());
  // Refusals of one control id may repeat (the sender fixed something and sends it again); the
  // one taken in is what findInbox gives.
  for (int i = 0; i < 2; ++i) {
    passerelle::store::InboxMessage refused = m;
    refused.controlId = "43";
    refused.status = "error";
    refused.ackCode = "AE";
    refused.ack = "AE" + std::to_string(i);
    ASSERT_TRUE(s->write([&](WriteTxn& t) { return t.putInbox(refused); }).ok());
  }
  EXPECT_EQ(s->findInbox("avicenne", "43")->value().ack, "AE1");
  passerelle::store::InboxMessage taken = m;
  taken.controlId = "43";
  ASSERT_TRUE(s->write([&](WriteTxn& t) { return t.putInbox(taken); }).ok());
  EXPECT_EQ(s->findInbox("avicenne", "43")->value().status, "processed");

  auto made = enqueueDeliveries(*s, "avicenne", {"Patient/a", "Patient/a", "Patient/b"});
  std::int64_t now = made[0].createdMs;
  auto due = s->claimDeliveries("avicenne", now, 10, kDeliveryLeaseMs);
  ASSERT_TRUE(due.ok());
  ASSERT_EQ(due->size(), 2u);  // the heads of Patient/a and Patient/b
  EXPECT_EQ((*due)[0].id, made[0].id);
  EXPECT_EQ((*due)[1].id, made[2].id);
  // The head of Patient/a waits for a retry: Patient/a's second waits too, Patient/b does not.
  passerelle::store::Delivery head = made[0];
  head.attempts = 1;
  head.nextTryMs = now + 60000;
  ASSERT_TRUE(s->write([&](WriteTxn& t) { return t.updateDelivery(head); }).ok());
  due = s->claimDeliveries("avicenne", now, 10, kDeliveryLeaseMs);
  ASSERT_EQ(due->size(), 1u);
  EXPECT_EQ((*due)[0].id, made[2].id);
  EXPECT_EQ(s->nextDeliveryTime("avicenne")->value(), now);
  // Once it is dead, the next one of Patient/a goes.
  head.status = "dead";
  ASSERT_TRUE(s->write([&](WriteTxn& t) { return t.updateDelivery(head); }).ok());
  due = s->claimDeliveries("avicenne", now, 10, kDeliveryLeaseMs);
  ASSERT_EQ(due->size(), 2u);
  EXPECT_EQ((*due)[0].id, made[1].id);
  auto counts = s->deliveryCounts();
  ASSERT_EQ(counts->size(), 1u);
  EXPECT_EQ((*counts)[0].queued, 2);
  EXPECT_EQ((*counts)[0].dead, 1);
  s->close();
}

// Messages keep their bytes: an HPRIM file in ISO 8859-1 is not UTF-8, an acknowledgement may
// carry any byte.
TEST_P(StoreTest, MessagesAndPayloadsKeepTheirBytes) {
  auto s = open();
  const std::string latin1 = "H|^~\\&|||DR M\xc9" "DECIN\r\xff\x01\x7f", ack = std::string("MSA|AA\r\x80\xfe", 10);
  passerelle::store::InboxMessage m;
  m.channel = "file";
  m.partner = "gp";
  m.controlId = "f1";
  m.type = "HPRIM";
  m.status = "processed";
  m.ackCode = "AA";
  m.message = latin1;
  m.ack = ack;
  ASSERT_TRUE(s->write([&](WriteTxn& t) { return t.putInbox(m); }).ok());
  auto back = s->inboxMessage(m.id);
  ASSERT_TRUE(back.ok() && back->has_value());
  EXPECT_EQ((*back)->message, latin1);
  EXPECT_EQ((*back)->ack, ack);
  passerelle::store::Delivery d;
  d.destination = "gp";
  d.orderKey = "Patient/a";
  d.kind = "hprim";
  d.focus = "DiagnosticReport/r/_history/1";
  d.payload = latin1;
  ASSERT_TRUE(s->write([&](WriteTxn& t) { return t.enqueue(d); }).ok());
  auto list = s->listDeliveries(passerelle::store::DeliveryFilter{});
  ASSERT_TRUE(list.ok());
  ASSERT_EQ(list->size(), 1u);
  EXPECT_EQ((*list)[0].payload, latin1);
}

// Resources written without index rows (as before a migration) are found once reindexed; scans
// page through a type in id order.
TEST_P(StoreTest, ReindexFindsResourcesAndScansPageInIdOrder) {
  auto s = open();
  ASSERT_TRUE(s->write([&](WriteTxn& t) -> Result<void> {
                 for (const char* id : {"c", "a", "b"}) {
                   ResourceVersion v;
                   v.type = "Patient";
                   v.id = id;
                   v.version = 1;
                   v.method = "PUT";
                   v.body = std::string("{\"resourceType\":\"Patient\",\"id\":\"") + id + "\",\"name\":[{\"family\":\"Lef\u00e8vre\"}]}";
                   auto r = t.put(v, {});
                   if (!r.ok()) return r;
                 }
                 return {};
               }).ok());
  auto byName = [&] {
    SearchQuery q;
    q.type = "Patient";
    Condition c;
    c.kind = Condition::Kind::kString;
    c.match = Condition::Match::kPrefix;
    c.param = "Patient.family";
    c.value = "lefe";
    q.where.push_back({c});
    auto page = s->search(q);
    EXPECT_TRUE(page.ok()) << page.error().message;
    return page.ok() ? page->items.size() : 0u;
  };
  EXPECT_EQ(byName(), 0u);
  auto r = passerelle::search::reindexIfNeeded(*s, "", true);
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(r->resources, 3);
  EXPECT_EQ(byName(), 3u);
  auto first = s->scan("Patient", "", 2);
  ASSERT_TRUE(first.ok());
  ASSERT_EQ(first->size(), 2u);
  EXPECT_EQ((*first)[0].id, "a");
  EXPECT_EQ((*first)[1].id, "b");
  auto rest = s->scan("Patient", "b", 2);
  ASSERT_TRUE(rest.ok());
  ASSERT_EQ(rest->size(), 1u);
  EXPECT_EQ((*rest)[0].id, "c");
  ASSERT_TRUE(s->setMeta("k", "v1").ok());
  ASSERT_TRUE(s->setMeta("k", "v2").ok());
  EXPECT_EQ(s->getMeta("k").value(), "v2");
  EXPECT_EQ(s->getMeta("absent").value(), "");
}

// Every version read back page by page, in write order and in (type, id, version) byte order,
// with the counts of what the store holds.
TEST_P(StoreTest, ScansEveryVersionInSeqAndKeyOrderAndCountsWhatItHolds) {
  auto s = open();
  // Written interleaved, so that seq order and key order differ; "B" sorts before "a" byte-wise.
  std::vector<std::pair<std::string, std::int64_t>> writes = {{"b", 1}, {"a", 1}, {"B", 1}, {"b", 2}, {"a", 2}, {"b", 3}};
  for (const auto& [id, version] : writes)
    ASSERT_TRUE(s->write([&](WriteTxn& t) { return putVersion(t, id, version, id == "b" && version == 3); }).ok());
  std::vector<std::string> bySeq;
  for (std::int64_t after = 0;;) {
    auto page = s->scanVersions(after, 4);
    ASSERT_TRUE(page.ok()) << page.error().message;
    if (page->empty()) break;
    for (const auto& v : *page) bySeq.push_back(v.id + "/" + std::to_string(v.version) + (v.deleted ? " deleted" : ""));
    after = page->back().seq;
  }
  EXPECT_EQ(bySeq, (std::vector<std::string>{"b/1", "a/1", "B/1", "b/2", "a/2", "b/3 deleted"}));
  std::vector<std::string> byKey;
  std::string type, id;
  std::int64_t version = 0;
  for (;;) {
    auto page = s->scanVersionsByKey(type, id, version, 2);
    ASSERT_TRUE(page.ok()) << page.error().message;
    if (page->empty()) break;
    for (const auto& v : *page) byKey.push_back(v.id + "/" + std::to_string(v.version));
    type = page->back().type;
    id = page->back().id;
    version = page->back().version;
  }
  EXPECT_EQ(byKey, (std::vector<std::string>{"B/1", "a/1", "a/2", "b/1", "b/2", "b/3"}));
  auto st = s->status();
  ASSERT_TRUE(st.ok()) << st.error().message;
  EXPECT_EQ(st->backend, GetParam());
  EXPECT_EQ(st->schemaVersion, 5);
  EXPECT_FALSE(st->pending());
  ASSERT_EQ(st->types.size(), 1u);
  EXPECT_EQ(st->types[0].type, "Patient");
  EXPECT_EQ(st->types[0].current, 2);
  EXPECT_EQ(st->types[0].deleted, 1);
  EXPECT_EQ(st->types[0].versions, 6);
  EXPECT_EQ(st->versions, 6);
  ASSERT_TRUE(s->setMeta("z", "last").ok());
  ASSERT_TRUE(s->setMeta("m", "first").ok());
  auto meta = s->listMeta();
  ASSERT_TRUE(meta.ok());
  EXPECT_EQ(*meta, (std::vector<std::pair<std::string, std::string>>{{"m", "first"}, {"z", "last"}}));
}

// ---- PostgreSQL only ----

// The schema is made once: opening again (or by a second store at once) applies nothing twice.
TEST(PgStoreTest, MigrationsAreAppliedOnce) {
  std::string skip;
  std::string url = PgServer::freshDatabase(skip);
  if (url.empty()) GTEST_SKIP() << skip;
  std::string error;
  PgServer* server = PgServer::shared(error);
  std::string db = url.substr(url.rfind('/') + 1);
  {
    auto a = openUrl(url);
    auto b = openUrl(url);  // while the first is open
    a->close();
    b->close();
  }
  EXPECT_EQ(server->psql(db, "SELECT COUNT(*), MAX(version) FROM schema_migrations"), "5|5\n");
  auto again = openUrl(url);
  again->close();
  EXPECT_EQ(server->psql(db, "SELECT COUNT(*), MAX(version) FROM schema_migrations"), "5|5\n");
  EXPECT_EQ(server->psql(db, "SELECT name FROM schema_migrations ORDER BY version"),
            "0001_resources\n0002_search_index\n0003_audit_outbox\n0004_messages\n0005_instances\n");
}

// The server restarts under an open store: what was acknowledged before is there, and the next
// reads and writes go through on new connections.
TEST(PgStoreTest, ReconnectsAfterTheServerRestarts) {
  std::string skip;
  std::string url = PgServer::freshDatabase(skip);
  if (url.empty()) GTEST_SKIP() << skip;
  std::string error;
  PgServer* server = PgServer::shared(error);
  auto s = openUrl(url);
  IndexRows rows;
  rows.tokens.push_back({"Patient.identifier", "sys", "B"});
  ASSERT_TRUE(s->write([&](WriteTxn& t) { return putVersion(t, "before", 1, false, rows); }).ok());
  ASSERT_TRUE(s->read("Patient", "before").value().has_value());  // a reader connection is open
  ASSERT_TRUE(server->restart(error)) << error;
  auto read = s->read("Patient", "before");
  ASSERT_TRUE(read.ok()) << read.error().message;
  ASSERT_TRUE(read->has_value());
  EXPECT_EQ((*read)->version, 1);
  SearchQuery q;
  q.type = "Patient";
  Condition c;
  c.kind = Condition::Kind::kToken;
  c.param = "Patient.identifier";
  c.value = "B";
  q.where.push_back({c});
  auto page = s->search(q);
  ASSERT_TRUE(page.ok()) << page.error().message;
  EXPECT_EQ(page->total, 1);
  auto w = s->write([&](WriteTxn& t) { return putVersion(t, "after", 1); });
  ASSERT_TRUE(w.ok()) << w.error().message;
  EXPECT_TRUE(s->read("Patient", "after").value().has_value());
  // While the server is down, reads and writes fail as unavailable, then work again.
  server->stop();
  auto down = s->read("Patient", "before");
  ASSERT_FALSE(down.ok());
  EXPECT_EQ(down.error().code, ErrorCode::kUnavailable);
  auto refused = s->write([&](WriteTxn& t) { return putVersion(t, "during", 1); });
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.error().code, ErrorCode::kUnavailable);
  ASSERT_TRUE(server->start(error)) << error;
  EXPECT_TRUE(s->read("Patient", "before").value().has_value());
  EXPECT_TRUE(s->write([&](WriteTxn& t) { return putVersion(t, "later", 1); }).ok());
  EXPECT_FALSE(s->read("Patient", "during").value().has_value());
  s->close();
}

// PostgreSQL cannot call back during a query as SQLite does: a read is sent, then waited for a
// few milliseconds at a time, and cancelled on the server once its client has gone.
TEST(PgStoreTest, AReadInFlightIsCancelledWhenItsClientGoes) {
  std::string skip;
  std::string url = PgServer::freshDatabase(skip);
  if (url.empty()) GTEST_SKIP() << skip;
  auto s = openUrl(url);
  // Many string rows that a "contains" search reads one by one (no index serves it).
  for (int r = 0; r < 10; ++r) {
    IndexRows rows;
    for (int i = 0; i < 20000; ++i) rows.strings.push_back({"Patient.name", "name" + std::to_string(i), "Name"});
    ASSERT_TRUE(s->write([&](WriteTxn& t) { return putVersion(t, "p" + std::to_string(r), 1, false, rows); }).ok());
  }
  SearchQuery q;
  q.type = "Patient";
  Condition c;
  c.kind = Condition::Kind::kString;
  c.param = "Patient.name";
  c.match = Condition::Match::kContains;
  c.value = "absent";
  q.where.push_back({c});
  q.total = SearchQuery::Total::kAccurate;
  auto complete = s->search(q);
  ASSERT_TRUE(complete.ok()) << complete.error().message;
  EXPECT_EQ(complete->total, 0);
  std::atomic<int> checks{0};
  auto before = s->stats();
  {
    // Still there when the query is sent, gone at the next look.
    SearchLimit limit(std::chrono::steady_clock::now() + std::chrono::hours(1), [&] { return ++checks > 1; });
    auto r = s->search(q);
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.error().code, ErrorCode::kTimeout);
    EXPECT_NE(r.error().message.find("client went away"), std::string::npos) << r.error().message;
  }
  EXPECT_GE(checks.load(), 2);
  EXPECT_EQ(s->stats().searchesAbandoned, before.searchesAbandoned + 1);
  // The connection is still usable.
  auto again = s->search(q);
  ASSERT_TRUE(again.ok()) << again.error().message;
  EXPECT_EQ(again->total, 0);
}

TEST(PgStoreTest, AnUnreachableServerIsNamedWithoutItsPassword) {
  int port = passerelle::testing::freePort();
  auto s = openStore("postgresql://u:secret@127.0.0.1:" + std::to_string(port) + "/db?connect_timeout=2", StoreOptions{});
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.error().code, ErrorCode::kUnavailable);
  EXPECT_NE(s.error().message.find("postgresql://u:***@127.0.0.1"), std::string::npos) << s.error().message;
  EXPECT_EQ(s.error().message.find("secret"), std::string::npos) << s.error().message;
}

// The harness itself: the server listens on 127.0.0.1 only, with fsync on, and its processes are
// gone with it.
// ---- several gateways on one PostgreSQL database: two stores open on it, as two gateways have ----

namespace {

// Two stores open on one fresh PostgreSQL database, as two gateways have them.
class SharedPgTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string skip;
    url = PgServer::freshDatabase(skip);
    if (url.empty()) GTEST_SKIP() << skip;
    a = openUrl(url);
    b = openUrl(url);
  }
  std::string url;
  std::unique_ptr<ResourceStore> a, b;
};


}  // namespace

TEST_P(StoreTest, AJobIsClaimedOnceUntilItsLeaseRunsOutOrItIsFinished) {
  auto a = open();
  EXPECT_TRUE(a->claimJob("network.sweep", 1000, 500).value());
  EXPECT_FALSE(a->claimJob("network.sweep", 1400, 500).value());  // within the lease
  EXPECT_TRUE(a->claimJob("network.sweep", 1500, 500).value());   // the next period
  EXPECT_TRUE(a->claimJob("extract:caisse:annual:2025", 2000, 60000).value());
  ASSERT_TRUE(a->finishJob("extract:caisse:annual:2025", false).ok());  // failed: free again
  EXPECT_TRUE(a->claimJob("extract:caisse:annual:2025", 2001, 60000).value());
  ASSERT_TRUE(a->finishJob("extract:caisse:annual:2025", true).ok());  // done for good
  EXPECT_FALSE(a->claimJob("extract:caisse:annual:2025", 1000000000, 60000).value());
  a->close();
}

TEST_F(SharedPgTest, OfTwoGatewaysClaimingAJobAtOnceOneGetsIt) {
  EXPECT_NE(a->instance(), b->instance());
  for (int round = 0; round < 20; ++round) {
    std::atomic<int> won{0};
    std::string job = "job" + std::to_string(round);
    std::thread ta([&] { won += a->claimJob(job, 1000, 60000).value() ? 1 : 0; });
    std::thread tb([&] { won += b->claimJob(job, 1000, 60000).value() ? 1 : 0; });
    ta.join();
    tb.join();
    EXPECT_EQ(won.load(), 1) << job;
  }
  // A claim dropped by another gateway stays: only its owner drops it.
  ASSERT_TRUE(b->finishJob("job0", false).ok());
  EXPECT_FALSE(b->claimJob("job0", 2000, 60000).value() && a->claimJob("job0", 2000, 60000).value());
  a->close();
  b->close();
}

// Deliveries claimed by one gateway are skipped by the other until the lease runs out (the first
// stopped or crashed): then the other takes them over.
TEST_F(SharedPgTest, ADeliveryClaimedByOneGatewayIsTakenOverWhenItsLeaseRunsOut) {
  auto made = enqueueDeliveries(*a, "avicenne", {"Patient/a", "Patient/b", "Patient/a"});
  std::int64_t now = made[0].createdMs;
  auto claimedA = a->claimDeliveries("avicenne", now, 10, 1000);
  ASSERT_TRUE(claimedA.ok());
  ASSERT_EQ(claimedA->size(), 2u);
  EXPECT_TRUE(b->claimDeliveries("avicenne", now + 10, 10, 1000)->empty());
  // A sends Patient/a's head: the next of Patient/a is free for anyone; Patient/b's stays with A.
  Delivery sent = (*claimedA)[0];
  sent.status = "sent";
  sent.doneMs = now + 20;
  ASSERT_TRUE(a->write([&](WriteTxn& t) { return t.updateDelivery(sent); }).ok());
  auto claimedB = b->claimDeliveries("avicenne", now + 30, 10, 1000);
  ASSERT_EQ(claimedB->size(), 1u);
  EXPECT_EQ((*claimedB)[0].id, made[2].id);
  // A stops without sending Patient/b's: once its lease has run out, B takes it.
  a->close();
  claimedB = b->claimDeliveries("avicenne", now + 1001, 10, 1000);
  ASSERT_EQ(claimedB->size(), 2u);  // its own renewed, and the one taken over
  EXPECT_EQ((*claimedB)[0].id, made[1].id);
  b->close();
}

// Two gateways with two senders each drain one queue: every delivery is sent once, and the
// deliveries of one order key in order. As in the connectors, a gateway's senders share its claims
// and each sends the order keys that fall to it.
TEST_F(SharedPgTest, TwoGatewaysSendEveryDeliveryOnceAndInOrderPerKey) {
  std::vector<std::string> keys;
  for (int i = 0; i < 400; ++i) keys.push_back("Patient/" + std::to_string(i % 40));
  auto made = enqueueDeliveries(*a, "avicenne", keys);
  std::mutex m;
  std::map<std::int64_t, int> sends;
  std::map<std::string, std::vector<std::int64_t>> perKey;
  auto sender = [&](ResourceStore& s, std::size_t lane) {
    for (int idle = 0; idle < 20;) {
      auto due = s.claimDeliveries("avicenne", made[0].createdMs + 1, 8, kDeliveryLeaseMs);
      ASSERT_TRUE(due.ok()) << due.error().message;
      if (due->empty()) {
        ++idle;
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
        continue;
      }
      idle = 0;
      for (auto d : due.value()) {
        if (std::hash<std::string>{}(d.orderKey) % 2 != lane) continue;
        {
          std::lock_guard<std::mutex> lock(m);
          ++sends[d.id];
          perKey[d.orderKey].push_back(d.id);
        }
        d.status = "sent";
        ASSERT_TRUE(s.write([&](WriteTxn& t) { return t.updateDelivery(d); }).ok());
      }
    }
  };
  std::vector<std::thread> ts;
  for (std::size_t lane = 0; lane < 2; ++lane) {
    ts.emplace_back([&, lane] { sender(*a, lane); });
    ts.emplace_back([&, lane] { sender(*b, lane); });
  }
  for (auto& t : ts) t.join();
  EXPECT_EQ(sends.size(), made.size());
  for (const auto& [id, n] : sends) EXPECT_EQ(n, 1) << "delivery " << id << " sent " << n << " times";
  for (const auto& [key, ids] : perKey) EXPECT_TRUE(std::is_sorted(ids.begin(), ids.end())) << key;
  a->close();
  b->close();
}

// Two gateways update one resource at once, each reading the current version and writing the next:
// a write that lost the race fails with a conflict (the client may try again); none overwrites
// another, and every version committed is in the history.
TEST_F(SharedPgTest, ConcurrentUpdatesFromTwoGatewaysLoseNothing) {
  ASSERT_TRUE(a->write([&](WriteTxn& t) { return putVersion(t, "shared", 1); }).ok());
  std::atomic<int> committed{0}, conflicts{0}, other{0};
  auto updater = [&](ResourceStore& s) {
    for (int i = 0; i < 100; ++i) {
      auto r = s.write([&](WriteTxn& t) -> Result<void> {
        auto head = t.currentHead("Patient", "shared");
        if (!head.ok()) return head.error();
        return putVersion(t, "shared", (*head)->version + 1);
      });
      if (r.ok()) ++committed;
      else if (r.error().code == ErrorCode::kConflict) ++conflicts;
      else ++other;
    }
  };
  std::thread ta([&] { updater(*a); }), tb([&] { updater(*b); });
  ta.join();
  tb.join();
  EXPECT_EQ(other.load(), 0);
  EXPECT_EQ(committed + conflicts, 200);
  auto cur = b->read("Patient", "shared");
  ASSERT_TRUE(cur.ok() && cur->has_value());
  EXPECT_EQ((*cur)->version, 1 + committed.load());
  auto h = a->history(HistoryQuery{"Patient", "shared", std::nullopt, std::nullopt, 1000});
  ASSERT_TRUE(h.ok());
  EXPECT_EQ(static_cast<int>(h->items.size()), 1 + committed.load());
  a->close();
  b->close();
}

// What one gateway commits moves the other's change count (caches of the data are dropped).
TEST_F(SharedPgTest, AnotherGatewaysCommitIsAnnounced) {
  auto settled = [&](ResourceStore& s) {  // the listener connected, announcements before it counted
    std::uint64_t last = s.stats().changes;
    for (int i = 0; i < 50; ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
      std::uint64_t now = s.stats().changes;
      if (now == last && now > 0) return now;
      last = now;
    }
    return last;
  };
  std::uint64_t before = settled(*b);
  ASSERT_TRUE(a->write([&](WriteTxn& t) { return putVersion(t, "announced", 1); }).ok());
  std::uint64_t after = before;
  for (int i = 0; i < 250 && after == before; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    after = b->stats().changes;
  }
  EXPECT_GT(after, before);
  EXPECT_EQ(b->stats().commits, 0u);  // not its own
  a->close();
  b->close();
}

// Each gateway deletes its own audit records once its trail holds them, never another's that may
// not be chained yet; those it took over at start it deletes by id.
TEST_F(SharedPgTest, EachGatewayDeletesOnlyTheAuditRecordsItsTrailHolds) {
  std::vector<OutboxRecord> sunkA, sunkB;
  a->setAuditSink([&](std::vector<OutboxRecord>&& rs) { sunkA.insert(sunkA.end(), rs.begin(), rs.end()); });
  b->setAuditSink([&](std::vector<OutboxRecord>&& rs) { sunkB.insert(sunkB.end(), rs.begin(), rs.end()); });
  auto attach = [](ResourceStore& s, const std::string& text) {
    ASSERT_TRUE(s.write([&](WriteTxn& t) { return t.attachAudit(text); }).ok());
  };
  attach(*a, "a1");
  attach(*b, "b1");
  attach(*a, "a2");
  ASSERT_EQ(sunkA.size(), 2u);
  ASSERT_EQ(sunkB.size(), 1u);
  a->releaseAuditRecords(sunkA[1].id);  // above b1's id
  attach(*a, "a3");                      // the release goes with this commit
  auto pending = b->pendingAuditRecords();
  ASSERT_TRUE(pending.ok());
  std::vector<std::string> left;
  for (const auto& r : pending.value()) left.push_back(r.record);
  EXPECT_EQ(left, (std::vector<std::string>{"b1", "a3"}));
  // A third gateway starting takes both over and, once chained, deletes them by id.
  auto c = openUrl(url);
  auto adopted = c->pendingAuditRecords();
  ASSERT_EQ(adopted->size(), 2u);
  c->releaseAuditRecords(adopted->back().id);
  c->close();
  EXPECT_TRUE(b->pendingAuditRecords()->empty());
  a->close();
  b->close();
}

TEST(PgServerTest, ListensOnLoopbackOnlyAndLeavesNoProcess) {
  if (!PgServer::available()) GTEST_SKIP() << "PostgreSQL is not available: " << PgServer::unavailableReason();
  std::vector<pid_t> processes;
  {
    PgServer server;
    std::string error;
    ASSERT_TRUE(server.start(error)) << error;
    EXPECT_EQ(server.psql("postgres", "SHOW listen_addresses"), "127.0.0.1\n");
    EXPECT_EQ(server.psql("postgres", "SHOW fsync"), "on\n");
    pid_t first = server.pid();
    ASSERT_TRUE(server.restart(error)) << error;
    EXPECT_NE(server.pid(), first);
    EXPECT_NE(::kill(first, 0), 0);  // the first server is gone
    EXPECT_EQ(server.psql("postgres", "SELECT 1"), "1\n");
    processes = passerelle::testing::descendants(server.pid());
    processes.push_back(server.pid());
    EXPECT_GT(processes.size(), 2u);  // the postmaster and its background processes
  }
  for (pid_t p : processes) EXPECT_NE(::kill(p, 0), 0) << "process " << p << " is still there";
}
