// SQLite implementation of the resource store, with group commit.
#include "gateway/store/sqlite_resource_store.h"

#include <Poco/Data/SQLite/Connector.h>
#include <Poco/Data/SQLite/Utility.h>
#include <Poco/Data/Session.h>
#include <sqlite3.h>

#include <atomic>
#include <condition_variable>
#include <deque>
#include <filesystem>
#include <map>
#include <semaphore>
#include <mutex>
#include <thread>
#include <unordered_map>
#include <variant>

#include "gateway/common/log.h"
#include "gateway/store/migrations.h"
#include "gateway/store/sqlite_connection.h"
#include "gateway/store/sqlite_messages.h"

namespace passerelle::store {
namespace {

using sqlite::Bind;
using sqlite::Connection;
using sqlite::sqlError;

using sqlite::kVersionColumns;
using sqlite::rowToVersion;
using sqlite::runSearch;

Result<std::vector<ResourceVersion>> queryVersions(Connection& c, const std::string& sql, const std::vector<Bind>& binds) {
  auto st = c.prepare(sql);
  if (!st.ok()) return st.error();
  (*st)->bindAll(binds);
  std::vector<ResourceVersion> out;
  for (;;) {
    int rc = (*st)->step();
    if (rc == SQLITE_ROW) out.push_back(rowToVersion(**st));
    else if (rc == SQLITE_DONE) break;
    else return sqlError(c.db(), rc, "query");
  }
  return out;
}

Result<std::optional<ResourceVersion>> readCurrent(Connection& c, const std::string& type, const std::string& id) {
  static const std::string sql = std::string("SELECT ") + kVersionColumns +
                                 ", c.rid FROM resource_current c JOIN resource_version v ON v.seq = c.seq"
                                 " WHERE c.res_type = ? AND c.res_id = ?";
  auto rows = queryVersions(c, sql, {type, id});
  if (!rows.ok()) return rows.error();
  if (rows->empty()) return std::optional<ResourceVersion>();
  return std::optional<ResourceVersion>(std::move(rows->front()));
}

using WriteObserver = std::function<Result<void>(WriteTxn&, const ResourceVersion&)>;

class WriteTxnImpl : public WriteTxn {
 public:
  WriteTxnImpl(Connection& c, std::int64_t now, std::vector<OutboxRecord>& outbox, const WriteObserver* observer = nullptr,
               bool* enqueued = nullptr)
      : c_(c), now_(now), outbox_(outbox), observer_(observer), enqueued_(enqueued) {}
  Result<std::optional<ResourceVersion>> current(const std::string& type, const std::string& id) override {
    return readCurrent(c_, type, id);
  }
  Result<std::optional<ResourceVersion>> currentHead(const std::string& type, const std::string& id) override {
    auto st = c_.prepare(
        "SELECT version, deleted, last_updated, seq FROM resource_current WHERE res_type = ? AND res_id = ?");
    if (!st.ok()) return st.error();
    (*st)->bind(1, type);
    (*st)->bind(2, id);
    int rc = (*st)->step();
    if (rc == SQLITE_DONE) return std::optional<ResourceVersion>();
    if (rc != SQLITE_ROW) return sqlError(c_.db(), rc, "read current version");
    ResourceVersion v;
    v.type = type;
    v.id = id;
    v.version = (*st)->i64(0);
    v.deleted = (*st)->i64(1) != 0;
    v.lastUpdatedMs = (*st)->i64(2);
    v.seq = (*st)->i64(3);
    return std::optional<ResourceVersion>(std::move(v));
  }
  Result<SearchPage> search(const SearchQuery& q) override { return runSearch(c_, q); }
  Result<std::vector<ResourceVersion>> include(const IncludeQuery& q) override { return sqlite::runInclude(c_, q); }
  std::int64_t nowMs() override { return now_; }

  Result<void> atomically(const std::function<Result<void>()>& work) override {
    std::string name = "nested" + std::to_string(++depth_);
    auto sp = c_.run("SAVEPOINT " + name);
    if (!sp.ok()) return sp;
    Result<void> r;
    try {
      r = work();
    } catch (const std::exception& ex) {
      r = makeError(ErrorCode::kInternal, std::string("unexpected failure in a write: ") + ex.what());
    }
    if (!r.ok()) (void)c_.run("ROLLBACK TO " + name);
    auto rel = c_.run("RELEASE " + name);
    --depth_;
    if (!rel.ok() && r.ok()) return rel;
    return r;
  }

  Result<void> put(ResourceVersion& v, const IndexRows& rows) override {
    if (v.lastUpdatedMs == 0) v.lastUpdatedMs = now_;
    // OR FAIL rather than the default ABORT: a statement that cannot abort half-way needs no
    // statement journal (inside a unit's savepoint, truncating that journal after every statement
    // cost time in proportion to everything the unit had written: quadratic in a transaction).
    {
      auto st = c_.prepare(
          "INSERT OR FAIL INTO resource_version (res_type, res_id, version, last_updated, method, deleted, body)"
          " VALUES (?, ?, ?, ?, ?, ?, ?)");
      if (!st.ok()) return st.error();
      auto& s = **st;
      s.bind(1, v.type);
      s.bind(2, v.id);
      s.bind(3, v.version);
      s.bind(4, v.lastUpdatedMs);
      s.bind(5, v.method);
      s.bind(6, static_cast<std::int64_t>(v.deleted));
      if (!v.deleted) s.bind(7, v.body);
      int rc = s.step();
      if (rc != SQLITE_DONE) return sqlError(c_.db(), rc, "insert version");
      v.seq = sqlite3_last_insert_rowid(c_.db());
    }
    {
      // Version 1 is a resource that never existed (the caller numbers versions from the current one).
      auto st = c_.prepare(v.version == 1
                               ? "INSERT OR FAIL INTO resource_current (res_type, res_id, version, seq, deleted, last_updated)"
                                 " VALUES (?, ?, ?, ?, ?, ?) RETURNING rid"
                               : "UPDATE OR FAIL resource_current SET version = ?3, seq = ?4, deleted = ?5, last_updated = ?6"
                                 " WHERE res_type = ?1 AND res_id = ?2 RETURNING rid");
      if (!st.ok()) return st.error();
      auto& s = **st;
      s.bind(1, v.type);
      s.bind(2, v.id);
      s.bind(3, v.version);
      s.bind(4, v.seq);
      s.bind(5, static_cast<std::int64_t>(v.deleted));
      s.bind(6, v.lastUpdatedMs);
      int rc = s.step();
      if (rc == SQLITE_DONE) return makeError(ErrorCode::kConflict, v.type + "/" + v.id + ": no current version to follow");
      if (rc != SQLITE_ROW) return sqlError(c_.db(), rc, "update current");
      v.rid = s.i64(0);
      rc = s.step();
      if (rc != SQLITE_DONE) return sqlError(c_.db(), rc, "update current");
    }
    if (v.version > 1) {
      auto r = sqlite::clearIndex(c_, v.rid);
      if (!r.ok()) return r;
    }
    if (!v.deleted) {
      auto r = sqlite::writeIndex(c_, v.rid, rows);
      if (!r.ok()) return r;
    }
    if (observer_ && *observer_) return (*observer_)(*this, v);
    return {};
  }

  Result<void> putInbox(InboxMessage& m) override {
    if (m.receivedMs == 0) m.receivedMs = now_;
    return sqlite::insertInbox(c_, m);
  }
  Result<void> updateInbox(const InboxMessage& m) override { return sqlite::updateInbox(c_, m); }
  Result<void> enqueue(Delivery& d) override {
    auto r = sqlite::insertDelivery(c_, d, now_);
    if (r.ok() && enqueued_) *enqueued_ = true;
    return r;
  }
  Result<void> updateDelivery(const Delivery& d) override {
    auto r = sqlite::saveDelivery(c_, d);
    if (r.ok() && enqueued_ && d.status == "queued") *enqueued_ = true;
    return r;
  }
  Result<std::optional<Delivery>> delivery(std::int64_t id) override { return sqlite::loadDelivery(c_, id); }
  Result<void> copyInbox(const InboxMessage& m) override { return sqlite::copyInbox(c_, m); }
  Result<void> copyDelivery(const Delivery& d) override { return sqlite::copyDelivery(c_, d); }

  Result<void> attachAudit(std::string record) override {
    auto st = c_.prepare("INSERT INTO audit_outbox (record) VALUES (?)");
    if (!st.ok()) return st.error();
    (*st)->bind(1, record);
    int rc = (*st)->step();
    if (rc != SQLITE_DONE) return sqlError(c_.db(), rc, "insert an audit record");
    outbox_.push_back(OutboxRecord{sqlite3_last_insert_rowid(c_.db()), std::move(record)});
    return {};
  }

  Connection& connection() { return c_; }

  // Replaces the index rows of an existing resource (reindexing).
  Result<void> replaceIndex(std::int64_t rid, const IndexRows& rows) {
    auto r = sqlite::clearIndex(c_, rid);
    if (!r.ok()) return r;
    return sqlite::writeIndex(c_, rid, rows);
  }

 private:
  Connection& c_;
  std::int64_t now_;
  std::vector<OutboxRecord>& outbox_;  // the audit records of the commit being made
  const WriteObserver* observer_;
  bool* enqueued_;  // set when the unit queued a delivery
  int depth_ = 0;
};

std::int64_t wallMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

class SqliteResourceStore : public ResourceStore {
 public:
  SqliteResourceStore(std::string path, StoreOptions options) : path_(std::move(path)), options_(options) {}
  ~SqliteResourceStore() override { close(); }

  Result<void> open() {
    try {
      writer_ = std::make_unique<Connection>(path_);
    } catch (const std::exception& ex) {
      return makeError(ErrorCode::kInternal, "cannot open database '" + path_ + "': " + ex.what());
    }
    // The writer keeps a large page cache: inserts under random UUID keys touch pages all over
    // the indexes, and each miss is a pread. Memory-mapped reads avoid the copies.
    for (const char* pragma : {"PRAGMA journal_mode=WAL", "PRAGMA synchronous=FULL", "PRAGMA busy_timeout=10000",
                               "PRAGMA foreign_keys=ON", "PRAGMA temp_store=MEMORY", "PRAGMA cache_size=-65536", "PRAGMA mmap_size=1073741824"}) {
      auto r = writer_->exec(pragma);
      if (!r.ok()) return r;
    }
    if (options_.migrate) {
      auto m = migrate();
      if (!m.ok()) return m;
    }
    // Checkpoints run on their own thread and connection, so the writer never copies WAL pages
    // into the database (and fsyncs it) in the middle of a group commit. The hook replaces
    // SQLite's automatic checkpoint.
    try {
      checkpointConn_ = std::make_unique<Connection>(path_);
    } catch (const std::exception& ex) {
      return makeError(ErrorCode::kInternal, std::string("cannot open the checkpoint connection: ") + ex.what());
    }
    sqlite3_wal_hook(writer_->db(), &SqliteResourceStore::walHook, this);
    checkpointer_ = std::thread([this] { checkpointLoop(); });
    thread_ = std::thread([this] { writerLoop(); });
    return {};
  }

  Result<std::optional<ResourceVersion>> read(const std::string& type, const std::string& id) override {
    auto lease = acquireReader();
    if (!lease.ok()) return lease.error();
    return readCurrent(**lease.value(), type, id);
  }

  Result<std::optional<ResourceVersion>> vread(const std::string& type, const std::string& id, std::int64_t version) override {
    auto lease = acquireReader();
    if (!lease.ok()) return lease.error();
    static const std::string sql = std::string("SELECT ") + kVersionColumns +
                                   " FROM resource_version v WHERE v.res_type = ? AND v.res_id = ? AND v.version = ?";
    auto rows = queryVersions(**lease.value(), sql, {type, id, version});
    if (!rows.ok()) return rows.error();
    if (rows->empty()) return std::optional<ResourceVersion>();
    return std::optional<ResourceVersion>(std::move(rows->front()));
  }

  // Scans (the extracts reading a whole type) go through a connection of their own, without a memory
  // map and with a small page cache: read through the readers' map, a scan of a database larger than
  // memory would leave every page it touched resident in this process and push the request path's
  // pages out of the readers' caches.
  Result<std::vector<ResourceVersion>> scan(const std::string& type, const std::string& afterId, int limit) override {
    static const std::string sql = std::string("SELECT ") + kVersionColumns +
                                   ", c.rid FROM resource_current c JOIN resource_version v ON v.seq = c.seq"
                                   " WHERE c.res_type = ? AND c.res_id > ? AND c.deleted = 0 ORDER BY c.res_id LIMIT ?";
    return scanQuery(sql, {type, afterId, static_cast<std::int64_t>(limit)});
  }

  // Whole-store reads (copies, digests) go through the scanner's connection too, for the same reason.
  Result<std::vector<ResourceVersion>> scanVersions(std::int64_t afterSeq, int limit) override {
    static const std::string sql = std::string("SELECT ") + kVersionColumns + " FROM resource_version v WHERE v.seq > ? ORDER BY v.seq LIMIT ?";
    return scanQuery(sql, {afterSeq, static_cast<std::int64_t>(std::max(1, limit))});
  }

  Result<std::vector<ResourceVersion>> scanVersionsByKey(const std::string& afterType, const std::string& afterId,
                                                         std::int64_t afterVersion, int limit) override {
    // A row value compared on the UNIQUE (res_type, res_id, version) index: each page starts where
    // the last one ended, at a cost that does not grow with its position.
    static const std::string sql = std::string("SELECT ") + kVersionColumns +
                                   " FROM resource_version v WHERE (v.res_type, v.res_id, v.version) > (?, ?, ?)"
                                   " ORDER BY v.res_type, v.res_id, v.version LIMIT ?";
    return scanQuery(sql, {afterType, afterId, afterVersion, static_cast<std::int64_t>(std::max(1, limit))});
  }

  Result<StoreStatus> status() override {
    auto lease = acquireReader();
    if (!lease.ok()) return lease.error();
    Connection& c = **lease.value();
    StoreStatus out;
    out.backend = "sqlite";
    out.knownVersion = sqliteMigrations().empty() ? 0 : sqliteMigrations().back().version;
    auto scalar = [&](const char* sql, std::int64_t& value) -> Result<void> {
      auto st = c.prepare(sql);
      if (!st.ok()) return st.error();
      int rc = (*st)->step();
      if (rc != SQLITE_ROW) return sqlError(c.db(), rc, "read the schema");
      value = (*st)->i64(0);
      return {};
    };
    std::int64_t n = 0;
    auto r = scalar("SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = 'schema_migrations'", n);
    if (!r.ok()) return r.error();
    if (n > 0) {
      r = scalar("SELECT COALESCE(MAX(version), 0) FROM schema_migrations", n);
      if (!r.ok()) return r.error();
      out.schemaVersion = static_cast<int>(n);
    }
    if (out.schemaVersion >= 1) {
      std::map<std::string, TypeCount> types;
      auto each = [&](const char* sql, const std::function<void(const Connection::Statement&, TypeCount&)>& add) -> Result<void> {
        auto st = c.prepare(sql);
        if (!st.ok()) return st.error();
        for (;;) {
          int rc = (*st)->step();
          if (rc == SQLITE_DONE) return {};
          if (rc != SQLITE_ROW) return sqlError(c.db(), rc, "count resources");
          std::string type = (*st)->text(0);
          auto& t = types[type];
          t.type = type;
          add(**st, t);
        }
      };
      r = each("SELECT res_type, SUM(deleted = 0), SUM(deleted <> 0) FROM resource_current GROUP BY res_type",
               [](const Connection::Statement& st, TypeCount& t) {
                 t.current = st.i64(1);
                 t.deleted = st.i64(2);
               });
      if (r.ok())
        r = each("SELECT res_type, COUNT(*) FROM resource_version GROUP BY res_type",
                 [](const Connection::Statement& st, TypeCount& t) { t.versions = st.i64(1); });
      if (!r.ok()) return r.error();
      for (auto& [name, t] : types) {
        out.current += t.current;
        out.deleted += t.deleted;
        out.versions += t.versions;
        out.types.push_back(std::move(t));
      }
    }
    if (out.schemaVersion >= 4) {
      r = scalar("SELECT COUNT(*) FROM message_inbox", out.inbox);
      if (r.ok()) r = scalar("SELECT COUNT(*) FROM message_outbox", out.deliveries);
      if (!r.ok()) return r.error();
    }
    return out;
  }

  Result<SearchPage> search(const SearchQuery& q) override {
    auto lease = acquireReader();
    if (!lease.ok()) return lease.error();
    return runSearch(**lease.value(), q);
  }

  Result<HistoryPage> history(const HistoryQuery& q) override {
    auto lease = acquireReader();
    if (!lease.ok()) return lease.error();
    std::string sql = std::string("SELECT ") + kVersionColumns + " FROM resource_version v WHERE 1 = 1";
    std::vector<Bind> binds;
    if (!q.type.empty()) {
      sql += " AND v.res_type = ?";
      binds.emplace_back(q.type);
    }
    if (!q.id.empty()) {
      sql += " AND v.res_id = ?";
      binds.emplace_back(q.id);
    }
    if (q.sinceMs) {
      sql += " AND v.last_updated >= ?";
      binds.emplace_back(*q.sinceMs);
    }
    if (q.beforeSeq) {
      sql += " AND v.seq < ?";
      binds.emplace_back(*q.beforeSeq);
    }
    sql += " ORDER BY v.seq DESC LIMIT ?";
    binds.emplace_back(static_cast<std::int64_t>(q.count + 1));
    auto rows = queryVersions(**lease.value(), sql, binds);
    if (!rows.ok()) return rows.error();
    HistoryPage page;
    page.items = std::move(rows.value());
    if (static_cast<int>(page.items.size()) > q.count) {
      page.items.resize(q.count);
      page.nextCursor = page.items.empty() ? std::optional<std::int64_t>() : page.items.back().seq;
    }
    return page;
  }

  Result<std::vector<ResourceVersion>> include(const IncludeQuery& q) override {
    auto lease = acquireReader();
    if (!lease.ok()) return lease.error();
    return sqlite::runInclude(**lease.value(), q);
  }

  Result<std::int64_t> reindex(const std::function<Result<IndexRows>(const ResourceVersion&)>& index, int batch) override {
    std::int64_t after = 0, done = 0;
    static const std::string sql = std::string("SELECT ") + kVersionColumns +
                                   ", c.rid FROM resource_current c JOIN resource_version v ON v.seq = c.seq"
                                   " WHERE c.rid > ? AND c.deleted = 0 ORDER BY c.rid LIMIT ?";
    // Resources deleted since the migration, or never indexed, keep no rows.
    for (;;) {
      std::vector<ResourceVersion> rows;
      {
        auto lease = acquireReader();
        if (!lease.ok()) return lease.error();
        auto r = queryVersions(**lease.value(), sql, {after, static_cast<std::int64_t>(std::max(1, batch))});
        if (!r.ok()) return r.error();
        rows = std::move(r.value());
      }
      if (rows.empty()) return done;
      std::vector<IndexRows> computed;
      computed.reserve(rows.size());
      for (const auto& v : rows) {
        auto ix = index(v);
        if (!ix.ok()) {
          log::warn("store.reindex_skipped", {{"resource", v.type + "/" + v.id}, {"error", ix.error().message}});
          computed.emplace_back();
        } else {
          computed.push_back(std::move(ix.value()));
        }
      }
      auto w = write([&](WriteTxn& txn) -> Result<void> {
        auto& impl = static_cast<WriteTxnImpl&>(txn);
        for (std::size_t i = 0; i < rows.size(); ++i) {
          auto r = impl.replaceIndex(rows[i].rid, computed[i]);
          if (!r.ok()) return r;
        }
        return {};
      });
      if (!w.ok()) return w.error();
      done += static_cast<std::int64_t>(rows.size());
      after = rows.back().rid;
    }
  }

  Result<std::string> getMeta(const std::string& key) override {
    auto lease = acquireReader();
    if (!lease.ok()) return lease.error();
    auto st = (**lease.value()).prepare("SELECT value FROM store_meta WHERE key = ?");
    if (!st.ok()) return st.error();
    (*st)->bind(1, key);
    int rc = (*st)->step();
    if (rc == SQLITE_DONE) return std::string();
    if (rc != SQLITE_ROW) return sqlError(nullptr, rc, "read store_meta");
    return (*st)->text(0);
  }

  Result<std::vector<std::pair<std::string, std::string>>> listMeta() override {
    auto lease = acquireReader();
    if (!lease.ok()) return lease.error();
    Connection& c = **lease.value();
    auto st = c.prepare("SELECT key, value FROM store_meta ORDER BY key");
    if (!st.ok()) return st.error();
    std::vector<std::pair<std::string, std::string>> out;
    for (;;) {
      int rc = (*st)->step();
      if (rc == SQLITE_DONE) return out;
      if (rc != SQLITE_ROW) return sqlError(c.db(), rc, "read store_meta");
      out.emplace_back((*st)->text(0), (*st)->text(1));
    }
  }

  Result<void> setMeta(const std::string& key, const std::string& value) override {
    return write([&](WriteTxn& txn) -> Result<void> {
      auto& c = static_cast<WriteTxnImpl&>(txn).connection();
      auto st = c.prepare("INSERT INTO store_meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value");
      if (!st.ok()) return st.error();
      (*st)->bind(1, key);
      (*st)->bind(2, value);
      int rc = (*st)->step();
      if (rc != SQLITE_DONE) return sqlError(c.db(), rc, "write store_meta");
      return {};
    });
  }

  Result<void> write(const std::function<Result<void>(WriteTxn&)>& work) override {
    Job job{&work};
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (stopping_) return makeError(ErrorCode::kUnavailable, "the store is shutting down");
      queue_.push_back(&job);
    }
    cv_.notify_one();
    job.done.acquire();
    return std::move(job.result);
  }

  void close() override {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (stopping_ && !thread_.joinable()) return;
      stopping_ = true;
    }
    cv_.notify_all();
    if (thread_.joinable()) thread_.join();
    {
      std::lock_guard<std::mutex> lock(scannerMutex_);
      scanner_.reset();
    }
    if (writer_) (void)deleteReleased();
    {
      std::lock_guard<std::mutex> lock(checkpointMutex_);
      checkpointStop_ = true;
    }
    checkpointCv_.notify_all();
    if (checkpointer_.joinable()) checkpointer_.join();
    checkpointConn_.reset();
    std::lock_guard<std::mutex> lock(readersMutex_);
    freeReaders_.clear();
    writer_.reset();
  }

  void setAuditSink(std::function<void(std::vector<OutboxRecord>&&)> sink) override { auditSink_ = std::move(sink); }

  Result<std::vector<OutboxRecord>> pendingAuditRecords() override {
    auto lease = acquireReader();
    if (!lease.ok()) return lease.error();
    auto st = (**lease.value()).prepare("SELECT id, record FROM audit_outbox ORDER BY id");
    if (!st.ok()) return st.error();
    std::vector<OutboxRecord> out;
    for (;;) {
      int rc = (*st)->step();
      if (rc == SQLITE_DONE) break;
      if (rc != SQLITE_ROW) return sqlError(nullptr, rc, "read the audit outbox");
      out.push_back(OutboxRecord{(*st)->i64(0), (*st)->text(1)});
    }
    return out;
  }

  void releaseAuditRecords(std::int64_t id) override {
    std::int64_t seen = releaseUpTo_.load();
    while (id > seen && !releaseUpTo_.compare_exchange_weak(seen, id)) {
    }
  }

  void setWriteObserver(WriteObserver observer) override { observer_ = std::move(observer); }
  void setDeliveryListener(std::function<void()> listener) override { deliveryListener_ = std::move(listener); }

  Result<std::optional<InboxMessage>> findInbox(const std::string& partner, const std::string& controlId) override {
    auto lease = acquireReader();
    if (!lease.ok()) return lease.error();
    return sqlite::findInbox(**lease.value(), partner, controlId);
  }
  Result<std::vector<InboxMessage>> listInbox(const std::string& status, int limit) override {
    auto lease = acquireReader();
    if (!lease.ok()) return lease.error();
    return sqlite::listInbox(**lease.value(), status, limit);
  }
  Result<std::optional<InboxMessage>> inboxMessage(std::int64_t id) override {
    auto lease = acquireReader();
    if (!lease.ok()) return lease.error();
    return sqlite::inboxById(**lease.value(), id);
  }
  // A SQLite database serves one gateway: what is due is this gateway's, no lease is written.
  Result<std::vector<Delivery>> claimDeliveries(const std::string& destination, std::int64_t nowMs, int limit,
                                                std::int64_t /*leaseMs*/) override {
    auto lease = acquireReader();
    if (!lease.ok()) return lease.error();
    return sqlite::dueDeliveries(**lease.value(), destination, nowMs, limit);
  }
  Result<bool> claimJob(const std::string& job, std::int64_t nowMs, std::int64_t leaseMs) override {
    bool claimed = false;
    auto w = write([&](WriteTxn& txn) -> Result<void> {
      auto& c = static_cast<WriteTxnImpl&>(txn).connection();
      auto st = c.prepare(kClaimJobSql);
      if (!st.ok()) return st.error();
      (*st)->bind(1, job);
      (*st)->bind(2, nowMs);
      (*st)->bind(3, instance_);
      (*st)->bind(4, leaseMs);
      int rc = (*st)->step();
      if (rc != SQLITE_ROW && rc != SQLITE_DONE) return sqlError(c.db(), rc, "claim a job");
      claimed = rc == SQLITE_ROW;
      if (claimed) (void)(*st)->step();  // to the end of the statement, which completes it
      return {};
    });
    if (!w.ok()) return w.error();
    return claimed;
  }
  Result<void> finishJob(const std::string& job, bool done) override {
    return write([&](WriteTxn& txn) -> Result<void> {
      auto& c = static_cast<WriteTxnImpl&>(txn).connection();
      auto st = c.prepare(done ? kJobDoneSql : kJobDropSql);
      if (!st.ok()) return st.error();
      (*st)->bind(1, job);
      if (!done) (*st)->bind(2, instance_);
      int rc = (*st)->step();
      if (rc != SQLITE_DONE) return sqlError(c.db(), rc, "finish a job");
      return {};
    });
  }
  const std::string& instance() const override { return instance_; }
  Result<std::optional<std::int64_t>> nextDeliveryTime(const std::string& destination) override {
    auto lease = acquireReader();
    if (!lease.ok()) return lease.error();
    return sqlite::nextDeliveryTime(**lease.value(), destination);
  }
  Result<std::vector<Delivery>> listDeliveries(const DeliveryFilter& filter) override {
    auto lease = acquireReader();
    if (!lease.ok()) return lease.error();
    return sqlite::listDeliveries(**lease.value(), filter);
  }
  Result<std::vector<DeliveryCounts>> deliveryCounts() override {
    auto lease = acquireReader();
    if (!lease.ok()) return lease.error();
    return sqlite::deliveryCounts(**lease.value());
  }
  Result<std::vector<InboxMessage>> scanInbox(std::int64_t afterId, int limit) override {
    auto lease = acquireReader();
    if (!lease.ok()) return lease.error();
    return sqlite::scanInbox(**lease.value(), afterId, limit);
  }
  Result<std::vector<Delivery>> scanDeliveries(std::int64_t afterId, int limit) override {
    auto lease = acquireReader();
    if (!lease.ok()) return lease.error();
    return sqlite::scanDeliveries(**lease.value(), afterId, limit);
  }

  StoreStats stats() const override {
    std::lock_guard<std::mutex> lock(mutex_);
    StoreStats s = stats_;
    s.changes = s.commits;
    s.walFrames = walFramesTotal_.load(std::memory_order_relaxed);
    sqlite::limitCounters(s.searchesPastDeadline, s.searchesAbandoned, s.failures);
    return s;
  }

 private:
  // A unit of work waiting for its group commit; lives on the waiting thread's stack.
  struct Job {
    explicit Job(const std::function<Result<void>(WriteTxn&)>* w) : work(w) {}
    const std::function<Result<void>(WriteTxn&)>* work;
    Result<void> result;
    std::binary_semaphore done{0};
  };

  // A reader connection on loan; returned to the pool on destruction.
  class Lease {
   public:
    Lease(SqliteResourceStore* s, std::unique_ptr<Connection> c) : s_(s), c_(std::move(c)) {}
    Lease(Lease&&) = default;
    ~Lease() {
      if (c_) s_->releaseReader(std::move(c_));
    }
    Connection& operator*() { return *c_; }

   private:
    SqliteResourceStore* s_;
    std::unique_ptr<Connection> c_;
  };

  Result<std::unique_ptr<Lease>> acquireReader() {
    std::unique_lock<std::mutex> lock(readersMutex_);
    readersCv_.wait(lock, [&] { return !freeReaders_.empty() || openReaders_ < options_.readers; });
    if (!freeReaders_.empty()) {
      auto c = std::move(freeReaders_.back());
      freeReaders_.pop_back();
      return std::make_unique<Lease>(this, std::move(c));
    }
    ++openReaders_;
    lock.unlock();
    try {
      auto c = std::make_unique<Connection>(path_);
      for (const char* pragma : {"PRAGMA busy_timeout=10000", "PRAGMA mmap_size=1073741824"}) {
        auto r = c->exec(pragma);
        if (!r.ok()) throw std::runtime_error(r.error().message);
      }
      sqlite::limitReads(c->db());
      return std::make_unique<Lease>(this, std::move(c));
    } catch (const std::exception& ex) {
      std::lock_guard<std::mutex> relock(readersMutex_);
      --openReaders_;
      readersCv_.notify_one();
      return makeError(ErrorCode::kUnavailable, std::string("cannot open a reader: ") + ex.what());
    }
  }
  void releaseReader(std::unique_ptr<Connection> c) {
    {
      std::lock_guard<std::mutex> lock(readersMutex_);
      freeReaders_.push_back(std::move(c));
    }
    readersCv_.notify_one();
  }

  // Runs a query on the scanner's connection, opened on first use.
  Result<std::vector<ResourceVersion>> scanQuery(const std::string& sql, const std::vector<Bind>& binds) {
    std::lock_guard<std::mutex> lock(scannerMutex_);
    if (!scanner_) {
      try {
        auto c = std::make_unique<Connection>(path_);
        for (const char* pragma : {"PRAGMA busy_timeout=10000", "PRAGMA mmap_size=0", "PRAGMA cache_size=-8192"}) {
          auto r = c->exec(pragma);
          if (!r.ok()) throw std::runtime_error(r.error().message);
        }
        sqlite::limitReads(c->db());
        scanner_ = std::move(c);
      } catch (const std::exception& ex) {
        return makeError(ErrorCode::kUnavailable, std::string("cannot open a reader: ") + ex.what());
      }
    }
    return queryVersions(*scanner_, sql, binds);
  }

  Result<void> migrate() {
    auto r = writer_->exec(
        "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL,"
        " applied_at INTEGER NOT NULL)");
    if (!r.ok()) return r;
    std::int64_t have = 0;
    {
      auto st = writer_->prepare("SELECT COALESCE(MAX(version), 0) FROM schema_migrations");
      if (!st.ok()) return st.error();
      if ((*st)->step() == SQLITE_ROW) have = (*st)->i64(0);
    }
    for (const Migration& m : sqliteMigrations()) {
      if (m.version <= have) continue;
      auto b = writer_->exec("BEGIN IMMEDIATE");
      if (!b.ok()) return b;
      auto e = writer_->exec(m.sql);
      if (!e.ok()) {
        (void)writer_->exec("ROLLBACK");
        return makeError(ErrorCode::kInternal, "migration " + std::to_string(m.version) + " (" + m.name +
                                                   ") failed: " + e.error().message);
      }
      auto st = writer_->prepare("INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)");
      if (!st.ok()) return st.error();
      (*st)->bind(1, static_cast<std::int64_t>(m.version));
      std::string name(m.name);  // bound without a copy: must outlive the step
      (*st)->bind(2, name);
      (*st)->bind(3, wallMs());
      if ((*st)->step() != SQLITE_DONE) return sqlError(writer_->db(), SQLITE_ERROR, "record migration");
      st.value().reset();
      auto c = writer_->exec("COMMIT");
      if (!c.ok()) return c;
      log::info("store.migrated", {{"version", std::to_string(m.version)}, {"name", m.name}});
    }
    return {};
  }

  // Called by SQLite on the writer thread after each commit with the WAL's size in pages.
  static int walHook(void* self, sqlite3*, const char*, int frames) {
    auto* store = static_cast<SqliteResourceStore*>(self);
    // `frames` is the log's size; it starts again from 0 when the log is rewound.
    int added = frames >= store->lastWalFrames_ ? frames - store->lastWalFrames_ : frames;
    store->lastWalFrames_ = frames;
    store->walFramesTotal_.fetch_add(static_cast<std::uint64_t>(added), std::memory_order_relaxed);
    if (frames >= 4 * kCheckpointFrames) {
      // A background checkpoint never catches up with a busy writer, so the WAL could not start
      // over; finishing it here is cheap (the background copied most frames) and lets the next
      // transaction rewind the WAL.
      sqlite3_wal_checkpoint_v2(store->writer_->db(), "main", SQLITE_CHECKPOINT_PASSIVE, nullptr, nullptr);
    } else if (frames >= kCheckpointFrames) {
      {
        std::lock_guard<std::mutex> lock(store->checkpointMutex_);
        store->checkpointWanted_ = true;
      }
      store->checkpointCv_.notify_one();
    }
    return SQLITE_OK;
  }

  void checkpointLoop() {
    std::unique_lock<std::mutex> lock(checkpointMutex_);
    for (;;) {
      checkpointCv_.wait(lock, [&] { return checkpointWanted_ || checkpointStop_; });
      bool stop = checkpointStop_;
      checkpointWanted_ = false;
      lock.unlock();
      int logFrames = 0, done = 0;
      int rc = sqlite3_wal_checkpoint_v2(checkpointConn_->db(), "main", stop ? SQLITE_CHECKPOINT_TRUNCATE : SQLITE_CHECKPOINT_PASSIVE,
                                         &logFrames, &done);
      if (rc != SQLITE_OK && rc != SQLITE_BUSY)
        log::warn("store.checkpoint_failed", {{"error", sqlite3_errmsg(checkpointConn_->db())}});
      lock.lock();
      if (stop) return;
    }
  }

  void writerLoop() {
    std::vector<Job*> batch;
    std::vector<Result<void>> results;
    for (;;) {
      {
        std::unique_lock<std::mutex> lock(mutex_);
        cv_.wait(lock, [&] { return !queue_.empty() || stopping_; });
        if (queue_.empty() && stopping_) return;
        // Optionally give concurrent requests a moment to join this commit: fewer, larger
        // commits write fewer log pages per request.
        if (options_.commitDelayMicros > 0 && static_cast<int>(queue_.size()) < options_.maxGroup && !stopping_)
          cv_.wait_for(lock, std::chrono::microseconds(options_.commitDelayMicros),
                       [&] { return static_cast<int>(queue_.size()) >= options_.maxGroup || stopping_; });
        while (!queue_.empty() && static_cast<int>(batch.size()) < options_.maxGroup) {
          batch.push_back(queue_.front());
          queue_.pop_front();
        }
      }
      runBatch(batch, results);
      std::uint64_t failed = 0;
      for (auto& r : results) failed += !r.ok();
      {
        std::lock_guard<std::mutex> lock(mutex_);
        stats_.commits += 1;
        stats_.units += batch.size() - failed;
        stats_.unitsFailed += failed;
      }
      for (std::size_t i = 0; i < batch.size(); ++i) {
        batch[i]->result = std::move(results[i]);
        batch[i]->done.release();
      }
      batch.clear();
      results.clear();
    }
  }

  void runBatch(const std::vector<Job*>& batch, std::vector<Result<void>>& results) {
    auto begin = writer_->run("BEGIN IMMEDIATE");
    if (!begin.ok()) {
      for (std::size_t i = 0; i < batch.size(); ++i) results.emplace_back(begin.error());
      return;
    }
    std::int64_t now = std::max(wallMs(), lastMs_);
    lastMs_ = now;
    // A unit alone in its commit needs no savepoint of its own: if it fails, the transaction is
    // rolled back whole. With others, a savepoint lets it fail alone.
    bool alone = batch.size() == 1;
    outbox_.clear();
    bool enqueued = false;
    for (Job* job : batch) {
      std::size_t outboxMark = outbox_.size();
      bool unitEnqueued = false;
      WriteTxnImpl txn(*writer_, now, outbox_, &observer_, &unitEnqueued);
      if (!alone) {
        auto sp = writer_->run("SAVEPOINT unit");
        if (!sp.ok()) {
          results.emplace_back(sp.error());
          continue;
        }
      }
      Result<void> r;
      try {
        r = (*job->work)(txn);
      } catch (const std::exception& ex) {
        r = makeError(ErrorCode::kInternal, std::string("unexpected failure in a write: ") + ex.what());
      }
      if (r.ok() && unitEnqueued) enqueued = true;
      if (alone) {
        results.push_back(std::move(r));
        break;
      }
      if (!r.ok()) {
        (void)writer_->run("ROLLBACK TO unit");
        outbox_.resize(outboxMark);
      }
      auto rel = writer_->run("RELEASE unit");
      if (!rel.ok() && r.ok()) r = rel.error();
      results.push_back(std::move(r));
    }
    if (alone && !results.front().ok()) {
      (void)writer_->exec("ROLLBACK");
      outbox_.clear();
      return;
    }
    // Audit records the trail holds by now go with this commit.
    std::int64_t release = releaseUpTo_.load();
    bool releasing = release > released_ && !outboxDelete(release).has_value();
    auto commit = writer_->run("COMMIT");
    if (!commit.ok()) {
      (void)writer_->exec("ROLLBACK");
      for (auto& r : results)
        if (r.ok()) r = commit.error();
      outbox_.clear();
      log::error("store.commit_failed", {{"error", commit.error().message}});
      return;
    }
    if (releasing) released_ = release;
    if (!outbox_.empty() && auditSink_) auditSink_(std::move(outbox_));
    outbox_.clear();
    if (enqueued && deliveryListener_) deliveryListener_();
  }

  // Deletes the released audit records inside the open transaction; the error, if any.
  std::optional<Error> outboxDelete(std::int64_t upTo) {
    auto st = writer_->prepare("DELETE FROM audit_outbox WHERE id <= ?");
    if (!st.ok()) return st.error();
    (*st)->bind(1, upTo);
    if ((*st)->step() != SQLITE_DONE) return sqlError(writer_->db(), SQLITE_ERROR, "delete released audit records");
    return std::nullopt;
  }

  // At close: the released audit records in a commit of their own.
  Result<void> deleteReleased() {
    std::int64_t release = releaseUpTo_.load();
    if (release <= released_) return {};
    auto b = writer_->run("BEGIN IMMEDIATE");
    if (!b.ok()) return b;
    if (auto e = outboxDelete(release)) {
      (void)writer_->exec("ROLLBACK");
      return *e;
    }
    auto c = writer_->run("COMMIT");
    if (!c.ok()) {
      (void)writer_->exec("ROLLBACK");
      return c;
    }
    released_ = release;
    return {};
  }

  std::string path_;
  StoreOptions options_;
  std::unique_ptr<Connection> writer_;
  std::thread thread_;
  mutable std::mutex mutex_;
  std::condition_variable cv_;
  std::deque<Job*> queue_;
  bool stopping_ = false;
  StoreStats stats_;
  const std::string instance_ = newInstanceName();
  std::int64_t lastMs_ = 0;

  // Audit records committed with the writes (see WriteTxn::attachAudit).
  std::function<void(std::vector<OutboxRecord>&&)> auditSink_;
  std::vector<OutboxRecord> outbox_;            // writer thread: the commit being made
  std::atomic<std::int64_t> releaseUpTo_{0};    // the trail holds every record up to this id
  std::int64_t released_ = 0;                   // writer thread: deleted up to this id

  WriteObserver observer_;                      // set before the first write
  std::function<void()> deliveryListener_;

  static constexpr int kCheckpointFrames = 1000;
  int lastWalFrames_ = 0;                       // writer thread only
  std::atomic<std::uint64_t> walFramesTotal_{0};
  std::unique_ptr<Connection> checkpointConn_;
  std::thread checkpointer_;
  std::mutex checkpointMutex_;
  std::condition_variable checkpointCv_;
  bool checkpointWanted_ = false;
  bool checkpointStop_ = false;

  std::mutex scannerMutex_;
  std::unique_ptr<Connection> scanner_;  // scan()'s own connection (under scannerMutex_)
  std::mutex readersMutex_;
  std::condition_variable readersCv_;
  std::vector<std::unique_ptr<Connection>> freeReaders_;
  int openReaders_ = 0;
};

}  // namespace

Result<std::unique_ptr<ResourceStore>> openSqliteStore(const std::string& path, const StoreOptions& options) {
  static std::once_flag registered;
  std::call_once(registered, [] { Poco::Data::SQLite::Connector::registerConnector(); });
  if (!options.migrate && !std::filesystem::exists(path))
    return makeError(ErrorCode::kNotFound, "no database at '" + path + "'");
  std::error_code ec;
  auto parent = std::filesystem::path(path).parent_path();
  if (!parent.empty()) std::filesystem::create_directories(parent, ec);
  if (ec) return makeError(ErrorCode::kInternal, "cannot create the folder '" + parent.string() + "': " + ec.message());
  auto store = std::make_unique<SqliteResourceStore>(path, options);
  auto r = store->open();
  if (!r.ok()) return r.error();
  return std::unique_ptr<ResourceStore>(std::move(store));
}

}  // namespace passerelle::store
