// The SQLite store on a real temporary database: versions, group commit, savepoints, migrations.
#include <gtest/gtest.h>

#include <sqlite3.h>

#include <thread>

#include "gateway/store/resource_store.h"
#include "tests/support/test_gateway.h"

using namespace passerelle;
using namespace passerelle::store;

namespace {

std::unique_ptr<ResourceStore> open(const std::string& dir) {
  auto s = openStore("sqlite:" + dir + "/db/p.db", StoreOptions{});
  if (!s.ok()) throw std::runtime_error(s.error().message);
  return std::move(s.value());
}

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

}  // namespace

TEST(SqliteStoreTest, KeepsEveryVersionAndTheCurrentOne) {
  passerelle::testing::TempDir dir;
  auto s = open(dir.path());
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

TEST(SqliteStoreTest, AFailedUnitLeavesNoTraceAndOthersInTheGroupCommit) {
  passerelle::testing::TempDir dir;
  auto s = open(dir.path());
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

TEST(SqliteStoreTest, NestedUnitsRollBackAlone) {
  passerelle::testing::TempDir dir;
  auto s = open(dir.path());
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

TEST(SqliteStoreTest, DuplicateVersionIsAConflict) {
  passerelle::testing::TempDir dir;
  auto s = open(dir.path());
  ASSERT_TRUE(s->write([&](WriteTxn& t) { return putVersion(t, "p", 1); }).ok());
  auto r = s->write([&](WriteTxn& t) { return putVersion(t, "p", 1); });
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, ErrorCode::kConflict);
}

TEST(SqliteStoreTest, TokenIndexFollowsTheCurrentVersion) {
  passerelle::testing::TempDir dir;
  auto s = open(dir.path());
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
  EXPECT_EQ(scalar("SELECT MAX(version) FROM schema_migrations"), "2");
  sqlite3_close(db);
  // Opening again applies nothing twice.
  auto again = open(dir.path());
  again->close();
}

TEST(SqliteStoreTest, DataSurvivesReopening) {
  passerelle::testing::TempDir dir;
  {
    auto s = open(dir.path());
    ASSERT_TRUE(s->write([&](WriteTxn& t) { return putVersion(t, "durable", 1); }).ok());
    s->close();
  }
  auto s = open(dir.path());
  EXPECT_TRUE(s->read("Patient", "durable")->has_value());
}

TEST(SqliteStoreTest, WritesAfterCloseAreRefused) {
  passerelle::testing::TempDir dir;
  auto s = open(dir.path());
  s->close();
  auto r = s->write([&](WriteTxn& t) { return putVersion(t, "late", 1); });
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, ErrorCode::kUnavailable);
}

TEST(SqliteStoreTest, UnsupportedUrlNamesTheScheme) {
  auto s = openStore("mysql://x", StoreOptions{});
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.error().message.find("unsupported scheme"), std::string::npos);
}
