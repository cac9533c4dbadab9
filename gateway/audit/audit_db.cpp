// The audit database's layout and SQLite helpers (see audit_db.h).
#include "gateway/audit/audit_db.h"

namespace passerelle::audit::db {

const char* const kSchema = R"sql(
CREATE TABLE IF NOT EXISTS audit_record(
  seq INTEGER PRIMARY KEY,
  time_ms INTEGER NOT NULL,
  kind TEXT NOT NULL,
  action TEXT NOT NULL,
  outcome TEXT NOT NULL,
  subject TEXT NOT NULL,
  record TEXT NOT NULL,
  prev_hash TEXT NOT NULL,
  hash TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS audit_record_time ON audit_record(time_ms);
CREATE INDEX IF NOT EXISTS audit_record_subject ON audit_record(subject, seq);
CREATE TABLE IF NOT EXISTS audit_patient(
  patient TEXT NOT NULL,
  seq INTEGER NOT NULL,
  PRIMARY KEY(patient, seq)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS audit_patient_seq ON audit_patient(seq, patient);
CREATE TABLE IF NOT EXISTS audit_meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
INSERT OR IGNORE INTO audit_meta(key, value) VALUES('schema', '1');
)sql";

Result<std::string> sqlitePath(const std::string& url) {
  std::string path = url;
  if (path.rfind("sqlite:", 0) == 0) {
    path = path.substr(7);
  } else if (path.find("://") != std::string::npos) {
    return makeError(ErrorCode::kInvalid, "audit.url '" + url + "': expected sqlite:PATH, a path or postgresql://...");
  }
  if (path.empty()) return makeError(ErrorCode::kInvalid, "audit.url: no database path");
  return path;
}

Error sqlError(sqlite3* db, int rc, const std::string& what) {
  ErrorCode code = (rc & 0xff) == SQLITE_FULL ? ErrorCode::kStorageFull : ErrorCode::kUnavailable;
  return makeError(code, "audit database: " + what + ": " + (db ? sqlite3_errmsg(db) : sqlite3_errstr(rc)));
}

Result<void> exec(sqlite3* db, const char* sql) {
  char* msg = nullptr;
  int rc = sqlite3_exec(db, sql, nullptr, nullptr, &msg);
  if (rc != SQLITE_OK) {
    std::string m = msg ? msg : sqlite3_errstr(rc);
    sqlite3_free(msg);
    return makeError(rc == SQLITE_BUSY ? ErrorCode::kUnavailable : ErrorCode::kInternal, "audit database: " + m);
  }
  return {};
}

Result<void> Statement::prepare(sqlite3* db, const char* sql) {
  sqlite3_finalize(st_);
  st_ = nullptr;
  int rc = sqlite3_prepare_v3(db, sql, -1, SQLITE_PREPARE_PERSISTENT, &st_, nullptr);
  if (rc != SQLITE_OK) return sqlError(db, rc, "prepare");
  return {};
}

}  // namespace passerelle::audit::db
