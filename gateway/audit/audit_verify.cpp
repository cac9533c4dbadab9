// verify(): checks the signed checkpoints, then walks the whole chain in one sequential scan of the
// records and of the patient index side by side (SQLite: two statements, without allocating per
// record; PostgreSQL: pages of both by key in one snapshot), the same checks for both.
#include <algorithm>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <map>

#include "gateway/audit/audit_db.h"
#include "gateway/audit/audit_log.h"
#include "gateway/audit/audit_pg.h"
#include "gateway/audit/audit_walk.h"
#include "gateway/audit/checkpoint_file.h"
#include "gateway/audit/journal.h"
#include "gateway/audit/record_codec.h"

namespace passerelle::audit {

namespace {

// What a signed checkpoint says about one record: its hash.
struct Expectation {
  std::int64_t seq;
  std::string_view hash;
  std::int64_t n;
  bool anchor;
};

std::string range(std::int64_t from, std::int64_t to) {
  return from == to ? "record " + std::to_string(from) + " missing"
                    : "records " + std::to_string(from) + "-" + std::to_string(to) + " missing";
}

// The SQLite database's rows, read by two statements side by side within one read transaction;
// the source closes the database.
class SqliteWalk : public internal::WalkSource {
 public:
  explicit SqliteWalk(sqlite3* db) : db_(db) {}
  ~SqliteWalk() override {
    records_.finalize();
    patients_.finalize();
    (void)db::exec(db_, "COMMIT");
    sqlite3_close_v2(db_);
  }
  Result<void> prepare() {
    if (auto r = records_.prepare(db_, "SELECT seq, time_ms, kind, action, outcome, subject, record, prev_hash, hash "
                                       "FROM audit_record ORDER BY seq");
        !r.ok())
      return r;
    if (auto r = patients_.prepare(db_, "SELECT seq, patient FROM audit_patient ORDER BY seq, patient"); !r.ok()) return r;
    return db::exec(db_, "BEGIN");  // one snapshot for both scans
  }
  int readMeta(std::vector<std::pair<std::string, std::string>>& out) override {
    db::Statement st;
    if (auto r = st.prepare(db_, "SELECT key, value FROM audit_meta ORDER BY key"); !r.ok()) return fail(0, r.error().message);
    int rc;
    while ((rc = sqlite3_step(st.get())) == SQLITE_ROW) out.emplace_back(st.text(0), st.text(1));
    if (rc != SQLITE_DONE) return fail(0, db::sqlError(db_, rc, "read audit_meta").message);
    return 0;
  }
  int nextRecord(internal::WalkRecord& out) override {
    sqlite3_stmt* st = records_.get();
    int rc = sqlite3_step(st);
    if (rc == SQLITE_DONE) return 0;
    if (rc != SQLITE_ROW) return fail(0, db::sqlError(db_, rc, "read the records").message);
    out.seq = sqlite3_column_int64(st, 0);
    out.typeProblem = nullptr;
    if (sqlite3_column_type(st, 1) != SQLITE_INTEGER) out.typeProblem = "column time_ms is not an integer";
    for (int c = 2; c <= 8 && !out.typeProblem; ++c)
      if (sqlite3_column_type(st, c) != SQLITE_TEXT) out.typeProblem = "a text column holds another type";
    out.timeMs = sqlite3_column_int64(st, 1);
    out.kind = records_.text(2);
    out.action = records_.text(3);
    out.outcome = records_.text(4);
    out.subject = records_.text(5);
    out.text = records_.text(6);
    out.prevHash = records_.text(7);
    out.hash = records_.text(8);
    return 1;
  }
  int nextPatient(internal::WalkPatient& out) override {
    sqlite3_stmt* st = patients_.get();
    int rc = sqlite3_step(st);
    if (rc == SQLITE_DONE) return 0;
    if (rc != SQLITE_ROW) return fail(0, db::sqlError(db_, rc, "read the patient index").message);
    if (sqlite3_column_type(st, 0) != SQLITE_INTEGER || sqlite3_column_type(st, 1) != SQLITE_TEXT)
      return fail(sqlite3_column_int64(st, 0),
                  "the patient index has a row of the wrong type (seq " + std::string(patients_.text(0)) + ")");
    out.seq = sqlite3_column_int64(st, 0);
    out.patient = patients_.text(1);
    return 1;
  }

 private:
  sqlite3* db_;
  db::Statement records_, patients_;
};

// The checks of verify() over the rows of either database (and the journal beside a SQLite one).
class Walk {
 public:
  Walk(internal::WalkSource& source, const std::vector<internal::Checkpoint>& checkpoints, std::string journalDir)
      : src_(source), checkpoints_(checkpoints), journalDir_(std::move(journalDir)) {}

  // Returns false with (badSeq, problem) at the first inconsistency.
  bool run(std::int64_t& records, std::int64_t& badSeq, std::string& problem);

 private:
  bool fail(std::int64_t seq, std::string p) {
    bad_ = seq;
    problem_ = std::move(p);
    return false;
  }
  bool stepPatient() {
    prc_ = src_.nextPatient(patient_);
    if (prc_ < 0) return fail(src_.errorSeq, src_.error);
    return true;
  }
  // One record: its hash recomputed from its text and chained from `prev`, its query columns and
  // patient rows against the text, its time against the one before it.
  bool checkRecord(const internal::WalkRecord& row, const char* prev, bool first, std::int64_t lastTime);

  internal::WalkSource& src_;
  const std::vector<internal::Checkpoint>& checkpoints_;
  std::string journalDir_;
  internal::WalkPatient patient_;
  int prc_ = 0;  // 1: patient_ holds the next row of the patient index
  codec::ChainHasher hasher_;
  codec::RecordView v_;  // the record checkRecord() read last
  std::int64_t bad_ = 0;
  std::string problem_;
};

bool Walk::checkRecord(const internal::WalkRecord& row, const char* prev, bool first, std::int64_t lastTime) {
  const std::int64_t seq = row.seq;
  auto where = [seq](const char* what) { return "record " + std::to_string(seq) + ": " + what; };
  if (row.typeProblem) return fail(seq, where(row.typeProblem));
  char computed[codec::kHashHex];
  if (row.prevHash.size() != codec::kHashHex || std::memcmp(row.prevHash.data(), prev, codec::kHashHex) != 0)
    return fail(seq, first ? where("its previous hash does not match the purge anchor")
                           : where("its previous hash does not match the record before it"));
  if (!hasher_.hash(std::string_view(prev, codec::kHashHex), row.text, computed)) return fail(seq, where("SHA-256 failed"));
  if (row.hash.size() != codec::kHashHex || std::memcmp(row.hash.data(), computed, codec::kHashHex) != 0)
    return fail(seq, where("hash does not match its content"));
  codec::RecordView& v = v_;
  if (!codec::decodeView(row.text, v)) return fail(seq, where("not a well-formed record"));
  if (v.seq != seq) return fail(seq, where("the hashed record names another seq"));
  if (v.timeMs != row.timeMs) return fail(seq, where("column time_ms differs from the hashed record"));
  if (v.kind != row.kind) return fail(seq, where("column kind differs from the hashed record"));
  if (v.action != row.action) return fail(seq, where("column action differs from the hashed record"));
  if (v.outcome != row.outcome) return fail(seq, where("column outcome differs from the hashed record"));
  if (v.subject != row.subject) return fail(seq, where("column subject differs from the hashed record"));
  if (row.hasOrigin && v.origin != row.origin) return fail(seq, where("column origin differs from the hashed record"));
  if (v.timeMs < lastTime) return fail(seq, where("its time is earlier than the record before it"));

  // The patient index rows of this record, in order, must be exactly its (sorted) patients.
  if (prc_ > 0 && patient_.seq < seq)
    return fail(patient_.seq,
                "the patient index has a row for seq " + std::to_string(patient_.seq) + ", which is not in the log");
  codec::ListView::Iterator it(v.patients);
  std::string_view patient;
  std::string_view lastPatient;
  bool firstPatient = true;
  while (it.next(patient)) {
    if (!firstPatient && patient <= lastPatient) return fail(seq, where("its patients are not in order"));
    if (prc_ <= 0 || patient_.seq != seq || patient_.patient != patient)
      return fail(seq, where("the patient index (audit_patient) differs from the hashed record"));
    lastPatient = patient;
    firstPatient = false;
    if (!stepPatient()) return false;
  }
  if (prc_ > 0 && patient_.seq == seq)
    return fail(seq, where("the patient index (audit_patient) differs from the hashed record"));
  return true;
}

bool Walk::run(std::int64_t& count, std::int64_t& badSeq, std::string& problem) {
  auto done = [&](bool ok) {
    badSeq = bad_;
    problem = problem_;
    return ok;
  };
  // What the checkpoints state, in seq order; anchors also state where a purged chain resumes.
  std::vector<Expectation> expect;
  std::map<std::int64_t, std::string_view> anchors;  // first remaining seq -> the hash it chains from
  std::int64_t lastCovered = 0;
  bool anyCheckpoint = false;
  for (const auto& c : checkpoints_) {
    if (c.isAnchor()) {
      anchors[c.seq] = c.hash;
      if (c.seq > 1) expect.push_back({c.seq - 1, c.hash, c.n, true});
      lastCovered = std::max(lastCovered, c.seq - 1);
    } else {
      anyCheckpoint = true;
      expect.push_back({c.seq, c.hash, c.n, false});
      lastCovered = std::max(lastCovered, c.seq);
    }
  }
  std::stable_sort(expect.begin(), expect.end(), [](const Expectation& a, const Expectation& b) { return a.seq < b.seq; });

  if (!stepPatient()) return done(false);

  char prev[codec::kHashHex];
  std::int64_t expected = 0, startSeq = 0, lastTime = INT64_MIN, lastGood = 0;
  std::size_t ei = 0;
  int rc;
  internal::WalkRecord row;
  codec::RecordView& v = v_;
  while ((rc = src_.nextRecord(row)) > 0) {
    std::int64_t seq = row.seq;
    if (count == 0) {
      startSeq = seq;
      if (seq == 1) {
        std::memcpy(prev, codec::kGenesisHash.data(), codec::kHashHex);
      } else {
        auto a = anchors.find(seq);
        if (a == anchors.end()) {
          // Records are missing at the start: from the last purge's anchor before them, or from 1.
          auto before = anchors.lower_bound(seq);
          std::int64_t from = before == anchors.begin() ? 1 : std::prev(before)->first;
          return fail(from, range(from, seq - 1) + " (no purge anchor starts the log at " + std::to_string(seq) + ")"),
                 done(false);
        }
        std::memcpy(prev, a->second.data(), codec::kHashHex);
      }
      while (ei < expect.size() && expect[ei].seq < seq) ++ei;  // purged
      lastGood = seq - 1;
    } else if (seq != expected) {
      return fail(expected, range(expected, seq - 1)), done(false);
    }
    if (!checkRecord(row, prev, count == 0, lastTime)) return done(false);
    std::string_view hashCol = row.hash;

    // Signed checkpoints naming this seq.
    for (; ei < expect.size() && expect[ei].seq == seq; ++ei) {
      if (expect[ei].hash != hashCol) {
        std::string what = expect[ei].anchor ? "purge anchor " : "signed checkpoint ";
        return fail(lastGood + 1, "records " + std::to_string(lastGood + 1) + "-" + std::to_string(seq) +
                                      " rewritten: the hash of record " + std::to_string(seq) + " differs from " + what +
                                      std::to_string(expect[ei].n)),
               done(false);
      }
      lastGood = seq;
    }
    std::memcpy(prev, hashCol.data(), codec::kHashHex);
    lastTime = v.timeMs;
    expected = seq + 1;
    ++count;
  }
  if (rc < 0) return fail(expected, src_.error), done(false);
  std::int64_t end = count > 0 ? expected - 1 : 0;
  if (count == 0 && !anchors.empty()) {  // everything purged
    end = anchors.rbegin()->first - 1;
    std::memcpy(prev, anchors.rbegin()->second.data(), codec::kHashHex);
  } else if (count == 0) {
    std::memcpy(prev, codec::kGenesisHash.data(), codec::kHashHex);
  }

  // Records the journal holds beyond the database (the gateway stopped before copying them):
  // the chain, the order of times and the checkpoints go on through them.
  if (!journalDir_.empty()) {
    while (ei < expect.size() && expect[ei].seq <= end) ++ei;
    bool ok = true;
    auto read = internal::readJournal(journalDir_, end, std::string_view(prev, codec::kHashHex), [&](const internal::JournalFrame& f) {
      auto where = [&](const char* what) { return "record " + std::to_string(f.seq) + " (journal): " + what; };
      if (!codec::decodeView(f.text, v)) return ok = fail(f.seq, where("not a well-formed record"));
      if (v.timeMs < lastTime) return ok = fail(f.seq, where("its time is earlier than the record before it"));
      for (; ei < expect.size() && expect[ei].seq == f.seq; ++ei) {
        if (expect[ei].hash != f.hash)
          return ok = fail(lastGood + 1, "records " + std::to_string(lastGood + 1) + "-" + std::to_string(f.seq) +
                                             " rewritten: the hash of record " + std::to_string(f.seq) +
                                             " differs from checkpoint " + std::to_string(expect[ei].n));
        lastGood = f.seq;
      }
      lastTime = v.timeMs;
      end = f.seq;
      ++count;
      return true;
    });
    if (!read.ok()) return fail(end + 1, read.error().message), done(false);
    if (!ok) return done(false);
  }
  if (lastCovered > end)
    return fail(end + 1, "truncated: the last checkpoint names seq " + std::to_string(lastCovered) + ", the log ends at " +
                             std::to_string(end)),
           done(false);
  if (prc_ > 0)
    return fail(patient_.seq,
                "the patient index has a row for seq " + std::to_string(patient_.seq) + ", which is not in the log"),
           done(false);
  if (count > 0 && !anyCheckpoint)
    return fail(startSeq, "no signed checkpoint covers the log (" + std::string(internal::kCheckpointFile) +
                              " is missing or empty)"),
           done(false);
  return done(true);
}

}  // namespace

std::unique_ptr<internal::WalkSource> internal::openSqliteWalk(const std::string& path, std::string& error) {
  std::error_code ec;
  if (!std::filesystem::is_regular_file(path, ec)) {
    error = "no audit database at " + path;
    return nullptr;
  }
  sqlite3* handle = nullptr;
  int rc = sqlite3_open_v2(path.c_str(), &handle, SQLITE_OPEN_READONLY | SQLITE_OPEN_NOMUTEX, nullptr);
  if (rc != SQLITE_OK) {
    error = db::sqlError(handle, rc, "open " + path).message;
    sqlite3_close_v2(handle);
    return nullptr;
  }
  sqlite3_busy_timeout(handle, 5000);
  // One sequential pass: pages mapped rather than copied into a cache.
  (void)db::exec(handle, "PRAGMA mmap_size=4294967296");
  auto source = std::make_unique<SqliteWalk>(handle);
  if (auto r = source->prepare(); !r.ok()) {
    error = "not an audit database: " + r.error().message;
    return nullptr;
  }
  return source;
}

VerifyReport verify(const std::string& url, const std::string& checkpointDir, const std::string& publicKeyPath) {
  auto t0 = std::chrono::steady_clock::now();
  VerifyReport rep;
  auto finish = [&](std::int64_t badSeq, std::string problem) {
    rep.ok = problem.empty();
    rep.firstBadSeq = badSeq;
    rep.problem = std::move(problem);
    rep.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    return rep;
  };
  const bool postgres = internal::isPostgresUrl(url);
  Result<std::string> path = postgres ? Result<std::string>(url) : db::sqlitePath(url);
  if (!path.ok()) return finish(0, path.error().message);
  if (postgres && checkpointDir.empty())
    return finish(0, "a PostgreSQL audit database is verified against a checkpoint folder: give it (--checkpoints)");
  std::string dir = checkpointDir.empty()
                        ? (std::filesystem::path(path.value()).parent_path() / "audit-checkpoints").string()
                        : checkpointDir;
  std::string keyPath =
      publicKeyPath.empty() ? (std::filesystem::path(dir) / internal::kPublicKeysFile).string() : publicKeyPath;
  auto keys = internal::PublicKeys::load(keyPath);
  if (!keys.ok()) return finish(0, keys.error().message);
  auto checkpoints = internal::readCheckpoints(dir);
  if (!checkpoints.ok()) return finish(0, checkpoints.error().message);

  // Every checkpoint is signed and numbered in order; checkpoints never go back, nor do anchors.
  std::int64_t lastCheckpoint = 0, lastAnchor = 0;
  for (std::size_t i = 0; i < checkpoints->size(); ++i) {
    const auto& c = (*checkpoints)[i];
    std::string name = "checkpoint " + std::to_string(c.n) + " (seq " + std::to_string(c.seq) + ")";
    if (!keys->has(c.keyId))
      return finish(c.seq, name + ": signature invalid (signed by key " + c.keyId + ", not by " + keys->keyIds() + ")");
    if (!keys->verify(internal::canonicalText(c), c.signature, c.keyId)) return finish(c.seq, name + ": signature invalid");
    if (c.n != static_cast<std::int64_t>(i) + 1)
      return finish(c.seq, "checkpoint file: line " + std::to_string(i + 1) + " holds checkpoint " + std::to_string(c.n) +
                               " (checkpoints missing or out of order)");
    std::int64_t& previous = c.isAnchor() ? lastAnchor : lastCheckpoint;
    if (c.seq < previous) return finish(c.seq, name + ": goes back from seq " + std::to_string(previous));
    previous = c.seq;
    ++rep.checkpoints;
  }

  std::int64_t bad = 0;
  std::string problem;
  if (postgres) {
    std::string error;
    auto source = internal::openPgWalk(url, error);
    if (!source) return finish(0, error);
    Walk walk(*source, checkpoints.value(), std::string());
    walk.run(rep.records, bad, problem);
    return finish(bad, problem);
  }

  std::string error;
  auto source = internal::openSqliteWalk(path.value(), error);
  if (!source) return finish(0, error);
  std::error_code ec;
  std::string journal = path.value() + ".journal";
  Walk walk(*source, checkpoints.value(), std::filesystem::is_directory(journal, ec) ? journal : std::string());
  walk.run(rep.records, bad, problem);
  return finish(bad, problem);
}

}  // namespace passerelle::audit
