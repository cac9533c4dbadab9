// AuditLog: the append path (one writer thread chains every queued record and makes the group
// durable in the journal with one write and one fdatasync, then wakes the waiters), the indexer
// that copies the records into the database in batches, records committed elsewhere (a write's, in
// the resource store), queries on a second read-only connection, signed checkpoints and the
// retention purge. On PostgreSQL the writer commits each group straight into the shared database
// (audit_pg.h), chaining it from the head row it locks; there is no journal and no indexer.
#include "gateway/audit/audit_log.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <iterator>
#include <mutex>
#include <set>
#include <nlohmann/json.hpp>
#include <thread>
#include <variant>

#include "gateway/audit/audit_db.h"
#include "gateway/audit/audit_pg.h"
#include "gateway/audit/checkpoint_file.h"
#include "gateway/audit/journal.h"
#include "gateway/audit/record_codec.h"
#include "gateway/common/log.h"

namespace passerelle::audit {

namespace {

using Clock = std::chrono::steady_clock;

std::int64_t nowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::string isoTime(std::int64_t ms) {
  std::time_t s = static_cast<std::time_t>(ms / 1000);
  std::tm tm{};
  gmtime_r(&s, &tm);
  char buf[80];
  std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
                tm.tm_hour, tm.tm_min, tm.tm_sec, static_cast<int>(ms % 1000));
  return buf;
}

void normalizePatients(std::vector<std::string>& patients) {
  patients.erase(std::remove(patients.begin(), patients.end(), std::string()), patients.end());
  std::sort(patients.begin(), patients.end());
  patients.erase(std::unique(patients.begin(), patients.end()), patients.end());
}

Error closedError() { return makeError(ErrorCode::kUnavailable, "audit trail closed: the event cannot be recorded"); }

// The indexer copies records into the database in batches of this many, or once the oldest has
// waited this long (queries make it copy at once).
constexpr std::size_t kIndexBatch = 4096;
constexpr std::size_t kIndexBacklogBytes = 64u << 20;
constexpr auto kIndexDelay = std::chrono::milliseconds(100);

}  // namespace

struct AuditLog::Impl {
  // An append waiting for its group; lives on the appending thread's stack.
  struct Pending {
    Record* record = nullptr;
    std::uint32_t group = 0;  // the group it goes into
    bool ok = false;
    std::int64_t seq = 0;
    Error error;
    // A record made durable elsewhere (appendCommitted): nobody waits for it; the writer owns it.
    std::unique_ptr<Record> owned;
    std::int64_t outboxId = 0;
    std::uint64_t ticket = 0;  // its place in the order of arrival
  };
  // What the indexer writes into the database for one record.
  struct Indexed {
    std::int64_t seq = 0, timeMs = 0;
    std::string kind, action, outcome, subject, text, prevHash, hash;
    std::vector<std::string> patients;
    std::size_t weight() const {  // about what it holds in memory
      std::size_t w = sizeof(Indexed) + text.size();
      for (const auto& p : patients) w += sizeof(std::string) + p.size();
      return w;
    }
  };

  Options options;
  std::string dbPath;
  std::string dir;         // the checkpoint folder
  std::string journalDir;  // beside the database
  int lockFd = -1;
  std::unique_ptr<internal::SigningKey> key;

  // append() -> the writer thread.
  std::mutex queueMutex;
  std::condition_variable queueCv;  // wakes the writer
  std::vector<Pending*> queue;
  std::vector<Pending*> retry;              // writer only: committed records to write again
  std::function<void(std::int64_t)> committedChained;
  std::uint64_t arrived = 0;                // tickets given (queueMutex)
  std::uint64_t settled = 0;                // every record up to this ticket is chained or refused (queueMutex)
  std::condition_variable settledCv;
  std::uint32_t nextGroup = 1;              // the group the queue's appends go into
  std::atomic<std::uint32_t> doneGroup{0};  // the last group written: its appenders wake together
  bool closing = false;
  std::thread writer;
  std::mutex closeMutex;
  bool closed = false;

  // The chain's tail, the journal and the checkpoint file: held by the writer for each group, and
  // by checkpoint() and purge().
  std::mutex stateMutex;
  std::unique_ptr<internal::Journal> journal;
  std::int64_t lastSeq = 0, lastTimeMs = 0;
  std::string lastHash = std::string(codec::kGenesisHash);
  std::int64_t nextCheckpointN = 1, lastCheckpointSeq = 0, sinceCheckpoint = 0;
  Clock::time_point lastCheckpointTime = Clock::now(), checkpointRetryAfter{};
  codec::ChainHasher hasher;
  std::vector<std::string> texts;
  std::string frames;
  std::atomic<std::int64_t> committedSeq{0};
  std::atomic<std::uint64_t> failedAppends{0};

  // The writer -> the indexer thread, which copies durable records into the database.
  std::mutex indexMutex;
  std::condition_variable indexCv;    // wakes the indexer
  std::condition_variable indexedCv;  // wakes queries waiting for the database to catch up
  std::vector<Indexed> toIndex;
  Clock::time_point oldestToIndex{};  // when the oldest record of toIndex arrived
  bool flushWanted = false;          // a query waits: index now
  // What is waiting to be copied (toIndex and the indexer's batch), about, in bytes: appends wait
  // while it is above kIndexBacklogBytes, so that a burst (an extract naming a million patients)
  // does not pile up in memory; not while the database refuses the copies (they are durable in the
  // journal; appends must not hang on the database).
  std::size_t pendingIndexBytes = 0;
  bool indexerFailing = false;
  std::int64_t indexedSeq = 0;
  bool indexerStop = false;
  std::thread indexer;

  // The database: written by the indexer, and by open(), purge() and close().
  std::mutex dbMutex;
  sqlite3* wdb = nullptr;
  db::Statement insertRecord, insertPatient, begin, commit, rollback;
  std::int64_t firstSeq = 1;  // the first record the database holds

  // Queries.
  mutable std::mutex readMutex;
  sqlite3* rdb = nullptr;

  // PostgreSQL instead of the journal, the indexer and SQLite: its writer connection is used under
  // stateMutex, its reader under readMutex.
  bool postgres = false;  // set at open
  std::unique_ptr<internal::PgAuditDb> pg;

  ~Impl() {
    if (rdb) sqlite3_close_v2(rdb);
    insertRecord.finalize();
    insertPatient.finalize();
    begin.finalize();
    commit.finalize();
    rollback.finalize();
    if (wdb) sqlite3_close_v2(wdb);
    if (lockFd >= 0) ::close(lockFd);
  }

  Result<void> openDatabase();
  Result<void> loadTail();
  Result<void> readPgHead();
  Result<void> recoverJournal();
  static bool indexedFrom(std::string_view text, std::string_view prevHash, std::string_view hash, Indexed& out);
  Result<void> insertBatch(const std::vector<Indexed>& batch);
  // Chains `records` after `tail`, their canonical texts in texts[0..]; moves `tail` to the last.
  bool chainRecords(const std::vector<Record*>& records, internal::ChainHead& tail);
  void writeGroup(std::vector<Pending*>& group);
  void writeGroupJournal(std::vector<Pending*>& group);
  void writeGroupPg(std::vector<Pending*>& group);
  // The hash of record `seq` in the database ("" when it has no such record).
  Result<std::string> hashAt(std::int64_t seq);
  // Signs an anchor for a purge of fromSeq..upToSeq (see purge()).
  Result<void> writeAnchor(const internal::PurgeRange& range, std::int64_t cutoffMs);
  Result<void> writeCheckpoint();
  void maybeCheckpoint(bool closingNow);
  // Waits until the database holds every record committed so far (queries read it).
  Result<void> waitIndexed() const;
  // Waits until every record given to the log so far (appendCommitted's too) is chained, then
  // until the database holds them.
  Result<void> waitSettled() const;
  void runWriter();
  void runIndexer();
};

Result<void> AuditLog::Impl::openDatabase() {
  int rc = sqlite3_open_v2(dbPath.c_str(), &wdb, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_FULLMUTEX,
                           nullptr);
  if (rc != SQLITE_OK) return db::sqlError(wdb, rc, "open " + dbPath);
  sqlite3_busy_timeout(wdb, 5000);
  {
    db::Statement st;
    if (auto r = st.prepare(wdb, "PRAGMA journal_mode=WAL"); !r.ok()) return r;
    if (sqlite3_step(st.get()) != SQLITE_ROW || st.text(0) != "wal")
      return makeError(ErrorCode::kInternal, "audit database " + dbPath + ": cannot use write-ahead logging");
  }
  // Every commit is fsynced; the write-ahead log is copied back into the database every 32 MB.
  // A page cache of 64 MiB: the patient index takes rows all over its key range (each batch names
  // patients anywhere in the network), which a small cache turns into a read per row.
  if (auto r = db::exec(wdb, "PRAGMA synchronous=FULL; PRAGMA wal_autocheckpoint=8192; PRAGMA cache_size=-65536"); !r.ok()) return r;
  if (auto r = db::exec(wdb, (std::string("BEGIN IMMEDIATE;") + db::kSchema + "COMMIT;").c_str()); !r.ok()) {
    (void)db::exec(wdb, "ROLLBACK");
    return r;
  }
  for (auto [st, sql] : {std::pair{&insertRecord,
                                   "INSERT INTO audit_record(seq, time_ms, kind, action, outcome, subject, record, "
                                   "prev_hash, hash) VALUES(?,?,?,?,?,?,?,?,?)"},
                         std::pair{&insertPatient, "INSERT INTO audit_patient(patient, seq) VALUES(?,?)"},
                         std::pair{&begin, "BEGIN IMMEDIATE"}, std::pair{&commit, "COMMIT"},
                         std::pair{&rollback, "ROLLBACK"}}) {
    if (auto r = st->prepare(wdb, sql); !r.ok()) return r;
  }
  rc = sqlite3_open_v2(dbPath.c_str(), &rdb, SQLITE_OPEN_READONLY | SQLITE_OPEN_FULLMUTEX, nullptr);
  if (rc != SQLITE_OK) return db::sqlError(rdb, rc, "open " + dbPath + " for reading");
  sqlite3_busy_timeout(rdb, 5000);
  return {};
}

// The tail of the shared chain (PostgreSQL): its head row and its first record.
Result<void> AuditLog::Impl::readPgHead() {
  auto head = pg->head();
  if (!head.ok()) return head.error();
  auto first = pg->firstSeq();
  if (!first.ok()) return first.error();
  lastSeq = head->seq;
  lastTimeMs = head->timeMs;
  lastHash = head->hash;
  firstSeq = first.value() > 0 ? first.value() : lastSeq + 1;
  return {};
}

Result<void> AuditLog::Impl::loadTail() {
  if (pg) {
    if (auto r = readPgHead(); !r.ok()) return r;
    committedSeq.store(lastSeq);
    if (!codec::isHexHash(lastHash))
      return makeError(ErrorCode::kInternal, "audit database: the chain's head hash is malformed");
    return {};
  }
  db::Statement st;
  if (auto r = st.prepare(wdb, "SELECT seq, time_ms, hash FROM audit_record ORDER BY seq DESC LIMIT 1"); !r.ok())
    return r;
  int rc = sqlite3_step(st.get());
  if (rc == SQLITE_ROW) {
    lastSeq = sqlite3_column_int64(st.get(), 0);
    lastTimeMs = sqlite3_column_int64(st.get(), 1);
    lastHash = std::string(st.text(2));
  } else if (rc == SQLITE_DONE) {
    // Empty: the chain starts at the beginning, or where the last purge left it.
    lastSeq = 0;
    lastTimeMs = 0;
    lastHash = std::string(codec::kGenesisHash);
    db::Statement meta;
    if (auto r = meta.prepare(wdb, "SELECT key, value FROM audit_meta WHERE key IN ('purged_seq', 'purged_hash', 'purged_time')");
        !r.ok())
      return r;
    while (sqlite3_step(meta.get()) == SQLITE_ROW) {
      std::string_view k = meta.text(0), v = meta.text(1);
      if (k == "purged_seq") lastSeq = std::atoll(std::string(v).c_str());
      if (k == "purged_hash") lastHash = std::string(v);
      if (k == "purged_time") lastTimeMs = std::atoll(std::string(v).c_str());
    }
  } else {
    return db::sqlError(wdb, rc, "read the last record");
  }
  if (!codec::isHexHash(lastHash))
    return makeError(ErrorCode::kInternal, "audit database: the last record's hash is malformed");
  db::Statement first;
  if (auto r = first.prepare(wdb, "SELECT min(seq) FROM audit_record"); !r.ok()) return r;
  rc = sqlite3_step(first.get());
  firstSeq = (rc == SQLITE_ROW && sqlite3_column_type(first.get(), 0) == SQLITE_INTEGER)
                 ? sqlite3_column_int64(first.get(), 0)
                 : lastSeq + 1;
  committedSeq.store(lastSeq);
  return {};
}

// The fields the database keeps beside a record's text, read back from the text.
bool AuditLog::Impl::indexedFrom(std::string_view text, std::string_view prevHash, std::string_view hash, Indexed& out) {
  codec::RecordView v;
  if (!codec::decodeView(text, v)) return false;
  out.seq = v.seq;
  out.timeMs = v.timeMs;
  out.kind = v.kind;
  out.action = v.action;
  out.outcome = v.outcome;
  out.subject = v.subject;
  out.text = text;
  out.prevHash = prevHash;
  out.hash = hash;
  out.patients.clear();
  codec::ListView::Iterator it(v.patients);
  std::string_view p;
  while (it.next(p)) out.patients.emplace_back(p);
  return true;
}

Result<void> AuditLog::Impl::insertBatch(const std::vector<Indexed>& batch) {
  std::lock_guard<std::mutex> db(dbMutex);
  if (!wdb) return closedError();
  auto fail = [&](int rc, const char* what) -> Result<void> {
    Error e = db::sqlError(wdb, rc, what);
    sqlite3_reset(insertRecord.get());
    sqlite3_reset(insertPatient.get());
    if (!sqlite3_get_autocommit(wdb)) {
      sqlite3_step(rollback.get());
      sqlite3_reset(rollback.get());
    }
    return e;
  };
  int rc = sqlite3_step(begin.get());
  sqlite3_reset(begin.get());
  if (rc != SQLITE_DONE) return fail(rc, "begin");
  for (const Indexed& r : batch) {
    insertRecord.bind(1, r.seq);
    insertRecord.bind(2, r.timeMs);
    insertRecord.bind(3, r.kind);
    insertRecord.bind(4, r.action);
    insertRecord.bind(5, r.outcome);
    insertRecord.bind(6, r.subject);
    insertRecord.bind(7, r.text);
    insertRecord.bind(8, r.prevHash);
    insertRecord.bind(9, r.hash);
    rc = sqlite3_step(insertRecord.get());
    insertRecord.reset();
    if (rc != SQLITE_DONE) return fail(rc, "insert a record");
  }
  // The patient rows of the whole batch in key order: neighbours in the index, inserted together.
  std::vector<std::pair<std::string_view, std::int64_t>> rows;
  for (const Indexed& r : batch)
    for (const auto& patient : r.patients) rows.emplace_back(patient, r.seq);
  std::sort(rows.begin(), rows.end());
  for (const auto& [patient, seq] : rows) {
    insertPatient.bind(1, patient);
    insertPatient.bind(2, seq);
    rc = sqlite3_step(insertPatient.get());
    insertPatient.reset();
    if (rc != SQLITE_DONE) return fail(rc, "insert a patient row");
  }
  rc = sqlite3_step(commit.get());
  sqlite3_reset(commit.get());
  if (rc != SQLITE_DONE) return fail(rc, "commit");
  return {};
}

// Records the journal holds beyond the database (an unclean stop) go into the database before
// anything else happens.
Result<void> AuditLog::Impl::recoverJournal() {
  std::vector<Indexed> batch;
  std::string prev = lastHash;
  auto read = internal::readJournal(journalDir, lastSeq, lastHash, [&](const internal::JournalFrame& f) {
    Indexed x;
    if (!indexedFrom(f.text, prev, f.hash, x)) return false;
    prev.assign(f.hash);
    batch.push_back(std::move(x));
    return true;
  });
  if (!read.ok()) return read.error();
  if (batch.empty()) return {};
  if (auto r = insertBatch(batch); !r.ok())
    return makeError(r.error().code, "cannot copy " + std::to_string(batch.size()) +
                                         " records from the journal into the database: " + r.error().message);
  log::warn("audit.journal_recovered", {{"records", std::to_string(batch.size())},
                                        {"from", std::to_string(batch.front().seq)},
                                        {"to", std::to_string(batch.back().seq)}});
  std::lock_guard<std::mutex> db(dbMutex);
  return loadTail();
}

bool AuditLog::Impl::chainRecords(const std::vector<Record*>& records, internal::ChainHead& tail) {
  const std::int64_t now = nowMs();
  if (texts.size() < records.size()) texts.resize(records.size());
  for (std::size_t i = 0; i < records.size(); ++i) {
    Record& r = *records[i];
    normalizePatients(r.patients);
    r.seq = ++tail.seq;
    if (r.timeMs <= 0) r.timeMs = now;
    if (r.timeMs < tail.timeMs) r.timeMs = tail.timeMs;
    tail.timeMs = r.timeMs;
    r.prevHash = tail.hash;
    texts[i].clear();
    codec::encode(r, texts[i]);
    r.hash = hasher.hash(tail.hash, texts[i]);
    if (r.hash.empty()) return false;
    tail.hash = r.hash;
  }
  return true;
}

void AuditLog::Impl::writeGroup(std::vector<Pending*>& group) {
  if (pg) writeGroupPg(group);
  else writeGroupJournal(group);
}

// One group on PostgreSQL, in one transaction: the head row locked (writers of every gateway wait
// here in turn), the records chained from it whoever wrote it, inserted with their patient rows,
// the head moved, committed; the appenders are woken once it is committed. A committed record
// another gateway has chained already (its origin is in the table) is not chained again.
void AuditLog::Impl::writeGroupPg(std::vector<Pending*>& group) {
  auto failGroup = [&](const Error& e) {
    pg->rollback();
    failedAppends.fetch_add(group.size(), std::memory_order_relaxed);
    log::error("audit.append_failed", {{"error", e.message}});
    for (Pending* p : group) {
      p->ok = false;
      p->error = e;
    }
  };
  auto head = pg->lockHead();
  if (!head.ok()) return failGroup(head.error());
  std::vector<std::string> origins;
  for (Pending* p : group)
    if (!p->record->origin.empty()) origins.push_back(p->record->origin);
  std::set<std::string> held;
  if (!origins.empty()) {
    auto c = pg->chainedOrigins(origins);
    if (!c.ok()) return failGroup(c.error());
    held = std::move(c.value());
  }
  std::vector<Record*> records;
  std::vector<Pending*> chained, skipped;
  for (Pending* p : group) {
    const std::string& origin = p->record->origin;
    if (origin.empty() || held.insert(origin).second) {
      records.push_back(p->record);
      chained.push_back(p);
    } else if (p->owned) {
      skipped.push_back(p);  // in the chain already: held, as if chained here
    } else {
      p->error = makeError(ErrorCode::kConflict, "audit: a record with the origin '" + origin + "' is in the trail already");
    }
  }
  internal::ChainHead tail = head.value();
  if (!chainRecords(records, tail)) return failGroup(makeError(ErrorCode::kInternal, "audit: SHA-256 failed"));
  if (!records.empty()) {
    std::vector<const Record*> inserted(records.begin(), records.end());
    if (auto w = pg->insert(inserted, texts, tail); !w.ok()) return failGroup(w.error());
  }
  if (auto c = pg->commit(); !c.ok()) {
    // A connection lost during COMMIT leaves its outcome unknown: the database tells.
    pg->rollback();
    auto h = records.empty() ? Result<std::string>(std::string()) : pg->hashAt(tail.seq);
    if (!h.ok() || h.value().empty() || h.value() != tail.hash) return failGroup(c.error());
  }
  for (Pending* p : chained) {
    p->ok = true;
    p->seq = p->record->seq;
  }
  for (Pending* p : skipped) p->ok = true;
  lastSeq = tail.seq;
  lastTimeMs = tail.timeMs;
  lastHash = std::move(tail.hash);
  sinceCheckpoint += static_cast<std::int64_t>(records.size());
  committedSeq.store(lastSeq);
}

// One group: chained and framed here, then one write and one fdatasync of the journal; the
// appenders are woken once it is durable and the indexer takes the records from there.
void AuditLog::Impl::writeGroupJournal(std::vector<Pending*>& group) {
  internal::ChainHead tail{lastSeq, lastHash, lastTimeMs};
  std::vector<Record*> records;
  records.reserve(group.size());
  for (Pending* p : group) records.push_back(p->record);
  if (!chainRecords(records, tail)) {
    for (Pending* p : group) p->error = makeError(ErrorCode::kInternal, "audit: SHA-256 failed");
    return;
  }
  frames.clear();
  for (std::size_t i = 0; i < group.size(); ++i) internal::appendFrame(frames, texts[i], records[i]->hash);
  if (auto w = journal->append(frames, lastSeq + 1); !w.ok()) {
    failedAppends.fetch_add(group.size(), std::memory_order_relaxed);
    log::error("audit.append_failed", {{"error", w.error().message}});
    for (Pending* p : group) p->error = w.error();
    return;
  }
  std::vector<Indexed> items(group.size());
  for (std::size_t i = 0; i < group.size(); ++i) {
    Record& r = *group[i]->record;
    Indexed& x = items[i];
    x.seq = r.seq;
    x.timeMs = r.timeMs;
    x.kind = r.kind;
    x.action = r.action;
    x.outcome = r.outcome;
    x.subject = r.subject;
    x.text = std::move(texts[i]);
    x.prevHash = r.prevHash;
    x.hash = r.hash;
    x.patients = r.patients;
    group[i]->ok = true;
    group[i]->seq = r.seq;
  }
  lastSeq = tail.seq;
  lastTimeMs = tail.timeMs;
  lastHash = std::move(tail.hash);
  sinceCheckpoint += static_cast<std::int64_t>(group.size());
  committedSeq.store(lastSeq);
  std::size_t weight = 0;
  for (const auto& x : items) weight += x.weight();
  std::unique_lock<std::mutex> lk(indexMutex);
  if (toIndex.empty()) {
    toIndex = std::move(items);
    oldestToIndex = Clock::now();
  } else {
    std::move(items.begin(), items.end(), std::back_inserter(toIndex));
  }
  pendingIndexBytes += weight;
  if (toIndex.size() >= kIndexBatch) indexCv.notify_one();
  if (pendingIndexBytes > kIndexBacklogBytes && !indexerFailing && !indexerStop) {
    flushWanted = true;
    indexCv.notify_one();
    indexedCv.wait_for(lk, std::chrono::seconds(30),
                       [&] { return pendingIndexBytes <= kIndexBacklogBytes / 2 || indexerFailing || indexerStop; });
  }
}

Result<void> AuditLog::Impl::waitSettled() const {
  auto* self = const_cast<Impl*>(this);
  {
    std::unique_lock<std::mutex> lk(self->queueMutex);
    std::uint64_t want = self->arrived;
    if (!self->settledCv.wait_for(lk, std::chrono::seconds(10), [&] { return self->settled >= want || self->closing; }))
      return makeError(ErrorCode::kUnavailable, "audit trail: records wait to be written (see the log)");
  }
  return waitIndexed();
}

Result<void> AuditLog::Impl::waitIndexed() const {
  if (pg) return {};  // committed into the database itself
  auto* self = const_cast<Impl*>(this);
  std::int64_t want = committedSeq.load();
  std::unique_lock<std::mutex> lk(self->indexMutex);
  if (self->indexedSeq < want) {
    self->flushWanted = true;
    self->indexCv.notify_one();
  }
  if (!self->indexedCv.wait_for(lk, std::chrono::seconds(10), [&] { return self->indexedSeq >= want || self->indexerStop; }))
    return makeError(ErrorCode::kUnavailable, "audit trail: the database is behind the journal (see the log)");
  return {};
}

Result<void> AuditLog::Impl::writeCheckpoint() {
  if (pg) {
    // The shared chain as the database has it: its last record may be another gateway's.
    if (auto r = readPgHead(); !r.ok()) return r;
    if (lastSeq > committedSeq.load()) committedSeq.store(lastSeq);
  }
  if (lastSeq == 0 || lastSeq == lastCheckpointSeq) return {};
  internal::Checkpoint c;
  c.n = nextCheckpointN;
  c.type = "checkpoint";
  c.seq = lastSeq;
  c.hash = lastHash;
  c.timeMs = nowMs();
  c.records = lastSeq - firstSeq + 1;
  c.keyId = key->keyId();
  auto sig = key->sign(internal::canonicalText(c));
  if (!sig.ok()) return sig.error();
  c.signature = std::move(sig.value());
  if (auto w = internal::appendCheckpoint(dir, c); !w.ok()) return w;
  ++nextCheckpointN;
  lastCheckpointSeq = lastSeq;
  sinceCheckpoint = 0;
  lastCheckpointTime = Clock::now();
  return {};
}

void AuditLog::Impl::maybeCheckpoint(bool closingNow) {
  if (lastSeq == 0 || lastSeq == lastCheckpointSeq) return;
  auto now = Clock::now();
  bool due = closingNow || lastCheckpointSeq == 0 || sinceCheckpoint >= options.checkpointRecords ||
             now - lastCheckpointTime >= std::chrono::seconds(options.checkpointSeconds);
  if (!due || (!closingNow && now < checkpointRetryAfter)) return;
  if (auto r = writeCheckpoint(); !r.ok()) {
    log::error("audit.checkpoint_failed", {{"error", r.error().message}});
    checkpointRetryAfter = now + std::chrono::seconds(1);
  }
}

void AuditLog::Impl::runWriter() {
  std::vector<Pending*> group;
  std::function<void(std::int64_t)> chained;
  for (;;) {
    bool exiting = false;
    Clock::time_point deadline{};  // the next time-based checkpoint, if records wait for one
    {
      std::lock_guard<std::mutex> st(stateMutex);
      if (lastSeq != lastCheckpointSeq)
        deadline = std::max(lastCheckpointTime + std::chrono::seconds(options.checkpointSeconds), checkpointRetryAfter);
    }
    if (!retry.empty()) {
      auto soon = Clock::now() + std::chrono::milliseconds(200);
      deadline = deadline == Clock::time_point{} ? soon : std::min(deadline, soon);
    }
    {
      std::unique_lock<std::mutex> lk(queueMutex);
      auto ready = [&] { return !queue.empty() || closing; };
      if (deadline != Clock::time_point{}) queueCv.wait_until(lk, deadline, ready);
      else queueCv.wait(lk, ready);
      // Committed records that failed before go first: they keep their order.
      exiting = closing && queue.empty();
      chained = committedChained;
      group.swap(retry);
      group.insert(group.end(), queue.begin(), queue.end());
      queue.clear();
      if (!group.empty()) ++nextGroup;
    }
    if (!group.empty()) {
      {
        std::lock_guard<std::mutex> st(stateMutex);
        writeGroup(group);
      }
      std::int64_t chainedUpTo = 0;
      std::uint32_t wake = 0;
      std::uint64_t lastTicket = group.back()->ticket;
      for (Pending* p : group) {
        if (!p->owned) {
          wake = p->group;
        } else if (p->ok) {
          chainedUpTo = std::max(chainedUpTo, p->outboxId);
          delete p;
        } else if (exiting) {
          delete p;  // still in the store: adopted at the next start
        } else {
          retry.push_back(p);
        }
      }
      // One wake-up for the whole group (a later one's appenders, if woken, wait again).
      if (wake) {
        doneGroup.store(wake, std::memory_order_release);
        doneGroup.notify_all();
      }
      {
        std::lock_guard<std::mutex> lk(queueMutex);
        std::uint64_t upTo = retry.empty() ? lastTicket : retry.front()->ticket - 1;
        settled = std::max(settled, upTo);
      }
      settledCv.notify_all();
      if (chainedUpTo && chained) chained(chainedUpTo);
      group.clear();
    }
    {
      std::lock_guard<std::mutex> st(stateMutex);
      maybeCheckpoint(false);
    }
    if (exiting) {
      for (Pending* p : retry) delete p;
      retry.clear();
      return;
    }
  }
}

void AuditLog::Impl::runIndexer() {
  std::vector<Indexed> batch;
  int failures = 0;
  for (;;) {
    {
      // Records are copied in batches (one commit, one fsync each): when enough have come, when
      // the oldest has waited kIndexDelay, when a query wants them, and at close.
      std::unique_lock<std::mutex> lk(indexMutex);
      auto ready = [&] {
        return indexerStop || flushWanted || toIndex.size() >= kIndexBatch || !batch.empty() ||
               (!toIndex.empty() && Clock::now() - oldestToIndex >= kIndexDelay);
      };
      while (!ready()) {
        if (toIndex.empty()) indexCv.wait(lk);
        else indexCv.wait_until(lk, oldestToIndex + kIndexDelay);
      }
      if (toIndex.empty() && batch.empty()) {
        if (indexerStop) return;  // stopping, nothing left
        flushWanted = false;
        indexedCv.notify_all();
        continue;
      }
      flushWanted = false;
      std::move(toIndex.begin(), toIndex.end(), std::back_inserter(batch));
      toIndex.clear();
    }
    auto r = insertBatch(batch);
    if (!r.ok()) {
      // The records are durable in the journal: try again, more slowly each time (the next start
      // copies them at the latest).
      if (failures++ % 20 == 0)
        log::error("audit.index_failed", {{"error", r.error().message}, {"pending", std::to_string(batch.size())}});
      std::unique_lock<std::mutex> lk(indexMutex);
      indexerFailing = true;
      indexedCv.notify_all();
      if (indexerStop && failures >= 3) return;
      indexCv.wait_for(lk, std::chrono::milliseconds(std::min(1000, 20 * failures)), [&] { return indexerStop; });
      continue;
    }
    failures = 0;
    std::int64_t upTo = batch.back().seq;
    std::size_t weight = 0;
    for (const auto& x : batch) weight += x.weight();
    batch.clear();
    {
      std::lock_guard<std::mutex> lk(indexMutex);
      indexedSeq = upTo;
      pendingIndexBytes -= std::min(weight, pendingIndexBytes);
      indexerFailing = false;
    }
    indexedCv.notify_all();
    journal->release(upTo);
    if (auto sp = journal->prepareSpare(); !sp.ok()) log::warn("audit.journal_spare", {{"error", sp.error().message}});
  }
}

Result<std::string> AuditLog::Impl::hashAt(std::int64_t seq) {
  if (pg) return pg->hashAt(seq);
  db::Statement st;
  if (auto r = st.prepare(wdb, "SELECT hash FROM audit_record WHERE seq = ?"); !r.ok()) return r.error();
  st.bind(1, seq);
  int rc = sqlite3_step(st.get());
  if (rc == SQLITE_DONE) return std::string();
  if (rc != SQLITE_ROW) return db::sqlError(wdb, rc, "read a record's hash");
  return std::string(st.text(0));
}

// The anchor comes first: once it is signed, the shortened chain is verifiable from it.
Result<void> AuditLog::Impl::writeAnchor(const internal::PurgeRange& range, std::int64_t cutoffMs) {
  internal::Checkpoint anchor;
  anchor.n = nextCheckpointN;
  anchor.type = "anchor";
  anchor.seq = range.upToSeq + 1;
  anchor.hash = range.upToHash;
  anchor.timeMs = nowMs();
  anchor.records = range.upToSeq - range.fromSeq + 1;
  anchor.cutoffMs = cutoffMs;
  anchor.keyId = key->keyId();
  auto sig = key->sign(internal::canonicalText(anchor));
  if (!sig.ok()) return sig.error();
  anchor.signature = std::move(sig.value());
  if (auto w = internal::appendCheckpoint(dir, anchor); !w.ok()) return w.error();
  ++nextCheckpointN;
  return {};
}

AuditLog::AuditLog(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

AuditLog::~AuditLog() { close(); }

Result<std::unique_ptr<AuditLog>> AuditLog::open(const Options& options) {
  auto impl = std::make_unique<Impl>();
  impl->options = options;
  if (impl->options.checkpointRecords < 1) impl->options.checkpointRecords = 1;
  if (impl->options.checkpointSeconds < 1) impl->options.checkpointSeconds = 1;
  const bool postgres = internal::isPostgresUrl(options.url);
  if (postgres) {
    // Each gateway sharing the database signs checkpoints into a folder of its own.
    if (options.checkpointDir.empty())
      return makeError(ErrorCode::kInvalid, "audit.checkpoint_dir is required with a PostgreSQL audit database");
    impl->postgres = true;
    impl->dbPath = "(PostgreSQL)";
    impl->dir = options.checkpointDir;
  } else {
    auto path = db::sqlitePath(options.url);
    if (!path.ok()) return path.error();
    impl->dbPath = path.value();
    std::filesystem::path parent = std::filesystem::path(impl->dbPath).parent_path();
    impl->dir = options.checkpointDir.empty() ? (parent / "audit-checkpoints").string() : options.checkpointDir;
    if (!parent.empty())
      if (auto r = internal::makeDirs(parent.string()); !r.ok()) return r.error();
  }
  if (auto r = internal::makeDirs(impl->dir); !r.ok()) return r.error();

  // One process at a time writes a log (its tail and checkpoint numbers live in memory).
  std::string lockPath = (std::filesystem::path(impl->dir) / internal::kLockFile).string();
  impl->lockFd = ::open(lockPath.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (impl->lockFd < 0) return makeError(ErrorCode::kInternal, "cannot open " + lockPath);
  if (::flock(impl->lockFd, LOCK_EX | LOCK_NB) != 0)
    return makeError(ErrorCode::kUnavailable, "the audit trail in " + impl->dir + " is open in another process");

  if (options.signingKey.empty()) {
    if (options.production)
      return makeError(ErrorCode::kInvalid, "audit.signing_key is required in production (a PEM EC P-256 private key)");
    auto k = internal::SigningKey::loadOrGenerate((std::filesystem::path(impl->dir) / internal::kDevKeyFile).string());
    if (!k.ok()) return k.error();
    impl->key = std::move(k.value());
  } else {
    auto k = internal::SigningKey::load(options.signingKey);
    if (!k.ok()) return k.error();
    impl->key = std::move(k.value());
  }
  if (auto r = internal::ensurePublicKey(impl->dir, impl->key->publicKeyPem(), impl->key->keyId()); !r.ok())
    return r.error();

  if (auto r = internal::repairCheckpointFile(impl->dir); !r.ok()) return r.error();
  auto checkpoints = internal::readCheckpoints(impl->dir);
  if (!checkpoints.ok()) return checkpoints.error();
  if (postgres) {
    auto pg = internal::PgAuditDb::open(options.url);
    if (!pg.ok()) return pg.error();
    impl->pg = std::move(pg.value());
    if (auto r = impl->loadTail(); !r.ok()) return r.error();
  } else {
    if (auto r = impl->openDatabase(); !r.ok()) return r.error();
    if (auto r = impl->loadTail(); !r.ok()) return r.error();
    impl->journalDir = impl->dbPath + ".journal";
    if (auto r = impl->recoverJournal(); !r.ok()) return r.error();
    internal::JournalIo io = internal::JournalIo::system();
    if (options.journalWrite) io.pwrite = options.journalWrite;
    if (options.journalSync) io.fdatasync = options.journalSync;
    auto journal = internal::Journal::open(impl->journalDir, options.journalSegmentBytes, std::move(io));
    if (!journal.ok()) return journal.error();
    impl->journal = std::move(journal.value());
    impl->indexedSeq = impl->lastSeq;
  }

  // Refuse to extend a log that no longer matches its signed checkpoints (restored from an old
  // backup, truncated, replaced): appending would hide it.
  const internal::Checkpoint* last = nullptr;
  for (const auto& c : checkpoints.value()) {
    impl->nextCheckpointN = c.n + 1;
    if (!c.isAnchor()) last = &c;
    std::int64_t covered = c.isAnchor() ? c.seq - 1 : c.seq;
    if (covered > impl->lastSeq)
      return makeError(ErrorCode::kInternal, "audit database " + impl->dbPath + " ends at seq " +
                                                 std::to_string(impl->lastSeq) + " but checkpoint " + std::to_string(c.n) +
                                                 " names seq " + std::to_string(covered) +
                                                 " (run 'passerelle audit verify')");
  }
  if (last) {
    impl->lastCheckpointSeq = last->seq;
    if (last->seq >= impl->firstSeq) {
      auto hash = impl->hashAt(last->seq);
      if (!hash.ok()) return hash.error();
      if (hash.value() != last->hash)
        return makeError(ErrorCode::kInternal, "audit database " + impl->dbPath + ": record " + std::to_string(last->seq) +
                                                   " differs from checkpoint " + std::to_string(last->n) +
                                                   " (run 'passerelle audit verify')");
    }
  }
  // Records written after the last checkpoint (an unclean stop) get one now.
  if (impl->lastSeq != impl->lastCheckpointSeq)
    if (auto r = impl->writeCheckpoint(); !r.ok()) return r.error();

  Impl* raw = impl.get();
  impl->writer = std::thread([raw] { raw->runWriter(); });
  if (!impl->pg) impl->indexer = std::thread([raw] { raw->runIndexer(); });
  return std::unique_ptr<AuditLog>(new AuditLog(std::move(impl)));
}

Result<std::int64_t> AuditLog::append(Record record) {
  Impl& m = *impl_;
  // A record the journal could not read back after a crash is refused, not written.
  std::size_t size = record.detail.size() + record.path.size() + record.query.size() + 4096;
  for (const auto& p : record.patients) size += p.size() + 1;
  if (size > kMaxRecordBytes)
    return makeError(ErrorCode::kInvalid, "audit record of about " + std::to_string(size) + " bytes refused: one record holds at most " +
                                              std::to_string(kMaxRecordBytes) + " (name many patients in several records)");
  Impl::Pending p;
  p.record = &record;
  {
    std::lock_guard<std::mutex> lk(m.queueMutex);
    if (m.closing) return closedError();
    p.group = m.nextGroup;
    p.ticket = ++m.arrived;
    m.queue.push_back(&p);
  }
  m.queueCv.notify_one();
  for (;;) {
    std::uint32_t done = m.doneGroup.load(std::memory_order_acquire);
    if (static_cast<std::int32_t>(done - p.group) >= 0) break;
    m.doneGroup.wait(done, std::memory_order_acquire);
  }
  if (!p.ok) return p.error;
  return p.seq;
}

void AuditLog::appendCommitted(std::vector<Committed> records) {
  Impl& m = *impl_;
  std::vector<Impl::Pending*> ps;
  ps.reserve(records.size());
  for (auto& c : records) {
    auto p = std::make_unique<Impl::Pending>();
    p->owned = std::make_unique<Record>();
    if (!codec::decode(c.record, *p->owned)) {
      // Not a record this trail wrote: keep what can be kept, marked, rather than drop it.
      log::error("audit.committed_unreadable", {{"id", std::to_string(c.id)}});
      *p->owned = Record{};
      p->owned->kind = "admin";
      p->owned->action = "unreadable";
      p->owned->outcome = "error";
      p->owned->detail = c.record.substr(0, 4096);
    }
    p->owned->seq = 0;
    p->owned->origin = "outbox:" + std::to_string(c.id);
    p->record = p->owned.get();
    p->outboxId = c.id;
    ps.push_back(p.release());
  }
  {
    std::lock_guard<std::mutex> lk(m.queueMutex);
    if (m.closing) {
      for (auto* p : ps) delete p;  // they stay in the store: adopted at the next start
      return;
    }
    for (auto* p : ps) p->ticket = ++m.arrived;
    m.queue.insert(m.queue.end(), ps.begin(), ps.end());
  }
  m.queueCv.notify_one();
}

void AuditLog::onCommittedChained(std::function<void(std::int64_t)> callback) {
  std::lock_guard<std::mutex> lk(impl_->queueMutex);
  impl_->committedChained = std::move(callback);
}

Result<void> AuditLog::adoptCommitted(std::vector<Committed> records) {
  Impl& m = *impl_;
  if (records.empty()) return {};
  if (m.postgres) {
    // Other gateways may be chaining the same records now: the writer skips, under the head's
    // lock, those whose origin the chain has, and reports them held with the others.
    {
      std::lock_guard<std::mutex> lk(m.queueMutex);
      if (m.closing) return closedError();
    }
    log::info("audit.adopted", {{"pending", std::to_string(records.size())}});
    appendCommitted(std::move(records));
    return {};
  }
  if (auto w = m.waitIndexed(); !w.ok()) return w.error();
  // Records chained since the oldest of them was made: the chain's time is never earlier than a
  // record's own.
  std::int64_t since = INT64_MAX;
  for (const auto& c : records) {
    codec::RecordView v;
    if (codec::decodeView(c.record, v)) since = std::min(since, v.timeMs);
  }
  std::set<std::string> chained;
  {
    std::lock_guard<std::mutex> lk(m.readMutex);
    if (!m.rdb) return closedError();
    db::Statement st;
    if (auto r = st.prepare(m.rdb, "SELECT record FROM audit_record WHERE time_ms >= ? ORDER BY seq"); !r.ok()) return r.error();
    st.bind(1, since == INT64_MAX ? std::int64_t{0} : since - 1000);
    int rc;
    codec::RecordView v;
    while ((rc = sqlite3_step(st.get())) == SQLITE_ROW)
      if (codec::decodeView(st.text(0), v) && !v.origin.empty()) chained.emplace(v.origin);
    if (rc != SQLITE_DONE) return db::sqlError(m.rdb, rc, "find the chained records");
  }
  std::vector<Committed> todo;
  std::int64_t releasable = 0;
  for (auto& c : records) {
    if (chained.count("outbox:" + std::to_string(c.id))) {
      if (todo.empty()) releasable = c.id;
      continue;
    }
    todo.push_back(std::move(c));
  }
  log::info("audit.adopted", {{"pending", std::to_string(records.size())}, {"alreadyChained", std::to_string(records.size() - todo.size())}});
  if (releasable) {
    std::function<void(std::int64_t)> cb;
    {
      std::lock_guard<std::mutex> lk(m.queueMutex);
      cb = m.committedChained;
    }
    if (cb) cb(releasable);
  }
  appendCommitted(std::move(todo));
  return {};
}

std::string encodeRecord(const Record& record) {
  Record r = record;
  r.seq = 0;
  r.prevHash.clear();
  r.hash.clear();
  r.origin.clear();
  std::string out;
  codec::encode(r, out);
  return out;
}

Result<std::vector<Record>> AuditLog::query(const Query& q) const {
  const Impl& m = *impl_;
  if (auto w = m.waitSettled(); !w.ok()) return w.error();
  std::string sql;
  std::vector<internal::QueryBind> binds;
  // SQLite is told the join order (CROSS JOIN); PostgreSQL has statistics and no such hint.
  if (!q.patient.empty()) {
    sql = std::string("SELECT r.record, r.prev_hash, r.hash FROM audit_patient p ") + (m.postgres ? "JOIN" : "CROSS JOIN") +
          " audit_record r ON r.seq = p.seq WHERE p.patient = ?";
    binds.emplace_back(q.patient);
    if (q.beforeSeq > 0) {
      sql += " AND p.seq < ?";
      binds.emplace_back(q.beforeSeq);
    }
  } else {
    sql = std::string("SELECT r.record, r.prev_hash, r.hash FROM audit_record r WHERE ") + (m.postgres ? "true" : "1");
    if (q.beforeSeq > 0) {
      sql += " AND r.seq < ?";
      binds.emplace_back(q.beforeSeq);
    }
  }
  if (!q.subject.empty()) {
    sql += " AND r.subject = ?";
    binds.emplace_back(q.subject);
  }
  if (!q.action.empty()) {
    sql += " AND r.action = ?";
    binds.emplace_back(q.action);
  }
  if (q.sinceMs > 0) {
    sql += " AND r.time_ms >= ?";
    binds.emplace_back(q.sinceMs);
  }
  if (q.untilMs > 0) {
    sql += " AND r.time_ms < ?";
    binds.emplace_back(q.untilMs);
  }
  sql += q.patient.empty() ? " ORDER BY r.seq DESC LIMIT ?" : " ORDER BY p.seq DESC LIMIT ?";
  binds.emplace_back(static_cast<std::int64_t>(std::clamp(q.count <= 0 ? 50 : q.count, 1, 1000)));

  std::lock_guard<std::mutex> lk(m.readMutex);
  if (m.pg) return m.pg->records(sql, binds);
  if (!m.rdb) return closedError();
  db::Statement st;
  if (auto r = st.prepare(m.rdb, sql.c_str()); !r.ok()) return r.error();
  int i = 1;
  for (const auto& b : binds) {
    if (b.index() == 0) st.bind(i++, std::get<0>(b));
    else st.bind(i++, std::string_view(std::get<1>(b)));
  }
  std::vector<Record> out;
  int rc;
  while ((rc = sqlite3_step(st.get())) == SQLITE_ROW) {
    Record r;
    if (!codec::decode(st.text(0), r)) return makeError(ErrorCode::kInternal, "audit database: a record is damaged");
    r.prevHash = st.text(1);
    r.hash = st.text(2);
    out.push_back(std::move(r));
  }
  if (rc != SQLITE_DONE) return db::sqlError(m.rdb, rc, "query");
  return out;
}

Result<std::optional<Record>> AuditLog::get(std::int64_t seq) const {
  const Impl& m = *impl_;
  if (auto w = m.waitSettled(); !w.ok()) return w.error();
  std::lock_guard<std::mutex> lk(m.readMutex);
  if (m.pg) {
    auto rows = m.pg->records("SELECT record, prev_hash, hash FROM audit_record WHERE seq = ?", {seq});
    if (!rows.ok()) return rows.error();
    if (rows->empty()) return std::optional<Record>();
    return std::optional<Record>(std::move(rows->front()));
  }
  if (!m.rdb) return closedError();
  db::Statement st;
  if (auto r = st.prepare(m.rdb, "SELECT record, prev_hash, hash FROM audit_record WHERE seq = ?"); !r.ok())
    return r.error();
  st.bind(1, seq);
  int rc = sqlite3_step(st.get());
  if (rc == SQLITE_DONE) return std::optional<Record>();
  if (rc != SQLITE_ROW) return db::sqlError(m.rdb, rc, "get");
  Record r;
  if (!codec::decode(st.text(0), r))
    return makeError(ErrorCode::kInternal, "audit database: record " + std::to_string(seq) + " is damaged");
  r.prevHash = st.text(1);
  r.hash = st.text(2);
  return std::optional<Record>(std::move(r));
}

Result<AuditLog::PurgeResult> AuditLog::purge(std::int64_t cutoffMs, const Record& by) {
  Impl& m = *impl_;
  PurgeResult result;
  std::int64_t fromSeq = 0;
  {
    // No appends meanwhile, and the database holding every record before the purge looks at it.
    std::lock_guard<std::mutex> st(m.stateMutex);
    if (auto w = m.waitIndexed(); !w.ok()) return w.error();
    std::optional<internal::PurgeRange> range;
    if (m.pg) {
      // The head row stays locked from the search to the commit: no gateway appends meanwhile.
      auto head = m.pg->lockHead();
      if (!head.ok()) {
        m.pg->rollback();
        return head.error();
      }
      auto purged = m.pg->purgeBefore(cutoffMs, [&](const internal::PurgeRange& r) { return m.writeAnchor(r, cutoffMs); });
      Result<void> done = purged.ok() ? m.pg->commit() : Result<void>(purged.error());
      if (!done.ok()) {
        m.pg->rollback();
        return done.error();
      }
      range = std::move(purged.value());
    } else {
      std::lock_guard<std::mutex> db(m.dbMutex);
      if (!m.wdb) return closedError();
      // Times never decrease along the chain: the records before the cutoff are a prefix.
      db::Statement find;
      if (auto r = find.prepare(m.wdb, "SELECT seq, hash, time_ms FROM audit_record WHERE seq = "
                                       "(SELECT max(seq) FROM audit_record WHERE time_ms < ?)");
          !r.ok())
        return r.error();
      find.bind(1, cutoffMs);
      int rc = sqlite3_step(find.get());
      if (rc != SQLITE_ROW && rc != SQLITE_DONE) return db::sqlError(m.wdb, rc, "find the records to purge");
      if (rc == SQLITE_ROW) {
        range = internal::PurgeRange{m.firstSeq, sqlite3_column_int64(find.get(), 0), std::string(find.text(1))};
        std::int64_t upToTime = sqlite3_column_int64(find.get(), 2);
        if (auto a = m.writeAnchor(*range, cutoffMs); !a.ok()) return a.error();
        const std::string upTo = std::to_string(range->upToSeq);
        std::string sql = "BEGIN IMMEDIATE;"
                          "DELETE FROM audit_patient WHERE seq <= " + upTo + ";"
                          "DELETE FROM audit_record WHERE seq <= " + upTo + ";"
                          "INSERT OR REPLACE INTO audit_meta(key, value) VALUES"
                          "('purged_seq', '" + upTo + "'), ('purged_hash', '" + range->upToHash + "'),"
                          "('purged_time', '" + std::to_string(upToTime) + "');"
                          "COMMIT;";
        if (auto r = db::exec(m.wdb, sql.c_str()); !r.ok()) {
          (void)db::exec(m.wdb, "ROLLBACK");
          return r.error();
        }
      }
    }
    if (range) {
      fromSeq = range->fromSeq;
      m.firstSeq = range->upToSeq + 1;
      result.removed = range->upToSeq - range->fromSeq + 1;
      result.upToSeq = range->upToSeq;
    }
  }
  Record rec;
  rec.kind = "purge";
  rec.action = "purge";
  rec.outcome = "granted";
  rec.subject = by.subject;
  rec.role = by.role;
  rec.practitioner = by.practitioner;
  rec.account = by.account;
  rec.tokenId = by.tokenId;
  rec.purpose = by.purpose;
  rec.sourceAddress = by.sourceAddress;
  rec.method = by.method;
  rec.path = by.path;
  rec.query = by.query;
  rec.reason = by.reason;
  nlohmann::ordered_json d;
  d["removed"] = result.removed;
  if (result.removed > 0) {
    d["fromSeq"] = fromSeq;
    d["toSeq"] = result.upToSeq;
  }
  d["cutoff"] = isoTime(cutoffMs);
  d["cutoffMs"] = cutoffMs;
  rec.detail = d.dump();
  auto a = append(std::move(rec));
  if (!a.ok())
    return makeError(a.error().code, "purged " + std::to_string(result.removed) +
                                         " records but could not record the purge: " + a.error().message);
  return result;
}

Result<void> AuditLog::checkpoint() {
  Impl& m = *impl_;
  std::lock_guard<std::mutex> st(m.stateMutex);
  if (!m.journal && !m.pg) return closedError();
  return m.writeCheckpoint();
}

void AuditLog::close() {
  Impl& m = *impl_;
  std::lock_guard<std::mutex> once(m.closeMutex);
  if (m.closed) return;
  {
    std::lock_guard<std::mutex> lk(m.queueMutex);
    m.closing = true;
  }
  m.queueCv.notify_all();
  if (m.writer.joinable()) m.writer.join();
  // The indexer copies what is left into the database before it stops (what it cannot copy stays
  // in the journal for the next start).
  {
    std::lock_guard<std::mutex> lk(m.indexMutex);
    m.indexerStop = true;
  }
  m.indexCv.notify_all();
  m.indexedCv.notify_all();
  if (m.indexer.joinable()) m.indexer.join();
  {
    std::lock_guard<std::mutex> st(m.stateMutex);
    if (auto r = m.writeCheckpoint(); !r.ok()) log::error("audit.checkpoint_failed", {{"error", r.error().message}});
    m.journal.reset();
    {
      std::lock_guard<std::mutex> rd(m.readMutex);
      if (m.rdb) sqlite3_close_v2(m.rdb);
      m.rdb = nullptr;
      m.pg.reset();
    }
    std::lock_guard<std::mutex> db(m.dbMutex);
    m.insertRecord.finalize();
    m.insertPatient.finalize();
    m.begin.finalize();
    m.commit.finalize();
    m.rollback.finalize();
    if (m.wdb) sqlite3_close_v2(m.wdb);
    m.wdb = nullptr;
    if (m.lockFd >= 0) ::close(m.lockFd);
    m.lockFd = -1;
  }
  m.closed = true;
}

std::string AuditLog::publicKeyPem() const { return impl_->key->publicKeyPem(); }

std::int64_t AuditLog::lastSeq() const { return impl_->committedSeq.load(); }

std::uint64_t AuditLog::failures() const { return impl_->failedAppends.load(std::memory_order_relaxed); }

}  // namespace passerelle::audit
