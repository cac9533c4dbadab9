// What the verifier and copyTrail() read from an audit database, whichever it is: the records in
// seq order and the patient index in (seq, patient) order, one row at a time, and audit_meta. The
// checks themselves (audit_verify.cpp) are the same for SQLite and PostgreSQL. Internal to the
// audit library.
// Thread-safety: a source is used by one thread.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace passerelle::audit::internal {

// One row of audit_record. The views stay valid until the next nextRecord().
struct WalkRecord {
  std::int64_t seq = 0, timeMs = 0;
  std::string_view kind, action, outcome, subject, text, prevHash, hash;
  // PostgreSQL keeps the origin as a column too (unique, so that an outbox row is chained once):
  // it is checked against the text. SQLite has no such column.
  bool hasOrigin = false;
  std::string_view origin;  // empty for NULL
  // Set when a column holds a value of the wrong type (SQLite does not enforce them).
  const char* typeProblem = nullptr;
};

// One row of audit_patient. The view stays valid until the next nextPatient().
struct WalkPatient {
  std::int64_t seq = 0;
  std::string_view patient;
};

class WalkSource {
 public:
  virtual ~WalkSource() = default;
  // 1: `out` holds the next row; 0: no more rows; -1: an error, described by error and errorSeq.
  virtual int nextRecord(WalkRecord& out) = 0;
  virtual int nextPatient(WalkPatient& out) = 0;
  // The rows of audit_meta (key, value), in the same snapshot as the records: 0, or -1 with error.
  virtual int readMeta(std::vector<std::pair<std::string, std::string>>& out) = 0;

  std::string error;
  std::int64_t errorSeq = 0;

 protected:
  // Keeps the error of a row that cannot be read; returns -1.
  int fail(std::int64_t seq, std::string message) {
    error = std::move(message);
    errorSeq = seq;
    return -1;
  }
};

// The SQLite audit database at `path`, opened read-only, its rows read within one snapshot until
// the source goes away. nullptr with `error` when it is absent or cannot be read.
std::unique_ptr<WalkSource> openSqliteWalk(const std::string& path, std::string& error);

}  // namespace passerelle::audit::internal
