// A SQLite connection with a statement cache, shared by the store's implementation files.
// Internal to the store library.
#pragma once

#include <Poco/Data/Session.h>
#include <Poco/Data/SQLite/Utility.h>
#include <sqlite3.h>

#include <cstdint>
#include <memory>
#include <string>
#include <unordered_map>
#include <variant>
#include <vector>

#include "gateway/common/status.h"
#include "gateway/store/resource_store.h"
#include "gateway/store/sql_dialect.h"

namespace passerelle::store::sqlite {

using Bind = SqlValue;

// Counts a database failure (for /metrics).
void countFailure();

// A database error as the store reports it: a constraint is a conflict, an interrupted read ran
// past its SearchLimit, a full disk is kStorageFull, anything else makes the store unavailable.
inline Error sqlError(sqlite3* db, int rc, const char* what) {
  int primary = rc & 0xff;
  if (primary == SQLITE_CONSTRAINT)
    return makeError(ErrorCode::kConflict, std::string("database: ") + what + ": " + (db ? sqlite3_errmsg(db) : sqlite3_errstr(rc)));
  if (primary == SQLITE_INTERRUPT) return readStoppedError();
  countFailure();
  ErrorCode code = primary == SQLITE_FULL ? ErrorCode::kStorageFull : ErrorCode::kUnavailable;
  return makeError(code, std::string("database: ") + what + ": " + (db ? sqlite3_errmsg(db) : sqlite3_errstr(rc)));
}

// One connection with its statement cache. Not thread-safe: used by one thread at a time.
class Connection {
 public:
  explicit Connection(const std::string& path)
      : session_("SQLite", path), db_(Poco::Data::SQLite::Utility::dbHandle(session_)) {}
  ~Connection() {
    for (auto& [sql, st] : cache_) sqlite3_finalize(st);
  }
  sqlite3* db() const { return db_; }

  Result<void> exec(const char* sql) {
    char* msg = nullptr;
    int rc = sqlite3_exec(db_, sql, nullptr, nullptr, &msg);
    if (rc != SQLITE_OK) {
      std::string m = msg ? msg : sqlite3_errstr(rc);
      sqlite3_free(msg);
      countFailure();
      return makeError((rc & 0xff) == SQLITE_FULL ? ErrorCode::kStorageFull : ErrorCode::kUnavailable, std::string("database: ") + m);
    }
    return {};
  }

  // Runs a statement without parameters or results through the statement cache (for the
  // BEGIN/SAVEPOINT/RELEASE/COMMIT of every unit, which sqlite3_exec would parse each time).
  Result<void> run(const std::string& sql);

  // A statement ready to bind, reset when the Statement goes out of scope.
  class Statement {
   public:
    Statement(sqlite3_stmt* st, sqlite3* db) : st_(st), db_(db) {}
    Statement(const Statement&) = delete;
    ~Statement() {
      if (st_) {
        sqlite3_reset(st_);
        sqlite3_clear_bindings(st_);
      }
    }
    void bind(int i, std::int64_t v) { sqlite3_bind_int64(st_, i, v); }
    void bind(int i, std::string&&) = delete;  // a temporary would be gone before the step
    void bind(int i, double v) { sqlite3_bind_double(st_, i, v); }
    // Text is bound without a copy: `v` must live until the statement has stepped.
    // Text is bound without a copy: `v` must live until the statement has stepped.
    void bind(int i, const std::string& v) { sqlite3_bind_text(st_, i, v.data(), static_cast<int>(v.size()), SQLITE_STATIC); }
    void bindAll(const std::vector<Bind>& binds) {
      int i = 1;
      for (const auto& b : binds) {
        if (b.index() == 0) bind(i++, std::get<0>(b));
        else if (b.index() == 1) bind(i++, std::get<1>(b));
        else sqlite3_bind_double(st_, i++, std::get<2>(b));
      }
    }
    int step() { return sqlite3_step(st_); }
    // Ready to bind and step again.
    void reset() {
      sqlite3_reset(st_);
      sqlite3_clear_bindings(st_);
    }
    std::int64_t i64(int col) const { return sqlite3_column_int64(st_, col); }
    int columns() const { return sqlite3_column_count(st_); }
    double real(int col) const { return sqlite3_column_double(st_, col); }
    int columnType(int col) const { return sqlite3_column_type(st_, col); }
    std::string text(int col) const {
      const unsigned char* p = sqlite3_column_text(st_, col);
      return p ? std::string(reinterpret_cast<const char*>(p), sqlite3_column_bytes(st_, col)) : std::string();
    }
    sqlite3* db() const { return db_; }

   private:
    sqlite3_stmt* st_;
    sqlite3* db_;
  };

  Result<std::unique_ptr<Statement>> prepare(const std::string& sql) {
    auto it = cache_.find(sql);
    if (it == cache_.end()) {
      if (cache_.size() > 512) {
        for (auto& [s, st] : cache_) sqlite3_finalize(st);
        cache_.clear();
      }
      sqlite3_stmt* st = nullptr;
      int rc = sqlite3_prepare_v3(db_, sql.c_str(), static_cast<int>(sql.size()), SQLITE_PREPARE_PERSISTENT, &st, nullptr);
      if (rc != SQLITE_OK) return sqlError(db_, rc, "prepare");
      it = cache_.emplace(sql, st).first;
    }
    return std::make_unique<Statement>(it->second, db_);
  }

 private:
  Poco::Data::Session session_;
  sqlite3* db_;
  std::unordered_map<std::string, sqlite3_stmt*> cache_;
};

inline Result<void> Connection::run(const std::string& sql) {
  auto st = prepare(sql);
  if (!st.ok()) return st.error();
  int rc = (*st)->step();
  if (rc != SQLITE_DONE && rc != SQLITE_ROW) return sqlError(db_, rc, sql.c_str());
  return {};
}

// Makes `db` honour the calling thread's SearchLimit.
void limitReads(sqlite3* db);
// Counters of interrupted reads and of failures (for StoreStats).
void limitCounters(std::uint64_t& pastDeadline, std::uint64_t& abandoned, std::uint64_t& failures);

// Search, includes and index maintenance (sqlite_search.cpp). `c` is used by one thread.
Result<SearchPage> runSearch(Connection& c, const SearchQuery& q);
Result<std::vector<ResourceVersion>> runInclude(Connection& c, const IncludeQuery& q);
Result<void> writeIndex(Connection& c, std::int64_t rid, const IndexRows& rows);
Result<void> clearIndex(Connection& c, std::int64_t rid);

using store::kVersionColumns;
ResourceVersion rowToVersion(const Connection::Statement& st);

}  // namespace passerelle::store::sqlite
