// The audit database's layout and small SQLite helpers shared by the log and the verifier.
// Internal to the audit library.
//
//   audit_record(seq INTEGER PRIMARY KEY, time_ms, kind, action, outcome, subject, record, prev_hash, hash)
//     record: the canonical text (record_codec.h), which the hash covers; the other columns are
//     copies for queries, checked against it by verify().
//   audit_patient(patient, seq): one row per Patient id of a record, for queries by patient.
//   audit_meta(key, value): schema version; where the chain continues after a purge emptied it.
#pragma once

#include <sqlite3.h>

#include <cstdint>
#include <string>
#include <string_view>

#include "gateway/common/status.h"

namespace passerelle::audit::db {

extern const char* const kSchema;

// The file path of an audit URL: "sqlite:PATH" or a plain path.
Result<std::string> sqlitePath(const std::string& url);

Error sqlError(sqlite3* db, int rc, const std::string& what);

// Runs SQL without results.
Result<void> exec(sqlite3* db, const char* sql);

// A prepared statement, finalized when it goes away.
class Statement {
 public:
  Statement() = default;
  Statement(const Statement&) = delete;
  Statement& operator=(const Statement&) = delete;
  Statement(Statement&& o) noexcept : st_(o.st_) { o.st_ = nullptr; }
  ~Statement() { sqlite3_finalize(st_); }
  Result<void> prepare(sqlite3* db, const char* sql);
  sqlite3_stmt* get() const { return st_; }
  explicit operator bool() const { return st_ != nullptr; }
  void reset() {
    sqlite3_reset(st_);
    sqlite3_clear_bindings(st_);
  }
  void finalize() {
    sqlite3_finalize(st_);
    st_ = nullptr;
  }
  // Text is bound without a copy: it must live until the step.
  void bind(int i, std::string_view v) { sqlite3_bind_text(st_, i, v.data(), static_cast<int>(v.size()), SQLITE_STATIC); }
  void bind(int i, std::int64_t v) { sqlite3_bind_int64(st_, i, v); }
  std::string_view text(int col) const {
    const unsigned char* p = sqlite3_column_text(st_, col);
    return p ? std::string_view(reinterpret_cast<const char*>(p), static_cast<std::size_t>(sqlite3_column_bytes(st_, col)))
             : std::string_view();
  }

 private:
  sqlite3_stmt* st_ = nullptr;
};

}  // namespace passerelle::audit::db
