// copyTrail(): a whole audit trail into an empty PostgreSQL one, read through the verifier's row
// sources (one snapshot) and written through the PostgreSQL writer, page by page.
#include <cstdlib>
#include <filesystem>

#include "gateway/audit/audit_db.h"
#include "gateway/audit/audit_log.h"
#include "gateway/audit/audit_pg.h"
#include "gateway/audit/audit_walk.h"

namespace passerelle::audit {

namespace {

// Records per page, written in one transaction: memory stays bounded whatever the trail's length.
constexpr std::size_t kCopyPage = 10000;

Error invalid(const std::string& message) { return makeError(ErrorCode::kInvalid, message); }

// The target, opened, when it can take a copy.
Result<std::unique_ptr<internal::PgAuditDb>> openTarget(const std::string& toUrl) {
  if (!internal::isPostgresUrl(toUrl))
    return invalid("the target audit trail must be on PostgreSQL (postgresql://...); a SQLite trail is moved as a file");
  auto target = internal::PgAuditDb::open(toUrl);
  if (!target.ok()) return makeError(target.error().code, "target: " + target.error().message);
  auto counts = target.value()->counts();
  if (!counts.ok()) return makeError(counts.error().code, "target: " + counts.error().message);
  if (counts->first > 0)
    return invalid("the target audit trail already holds " + std::to_string(counts->first) + " records");
  auto head = target.value()->head();
  if (!head.ok()) return makeError(head.error().code, "target: " + head.error().message);
  if (head->seq > 0)
    return invalid("the target audit trail already continues a chain (up to seq " + std::to_string(head->seq) + ")");
  return target;
}

}  // namespace

Result<void> checkCopyTarget(const std::string& toUrl) {
  auto target = openTarget(toUrl);
  if (!target.ok()) return target.error();
  return {};
}

Result<CopyReport> copyTrail(const Options& from, const std::string& toUrl) {
  auto opened = openTarget(toUrl);
  if (!opened.ok()) return opened.error();
  internal::PgAuditDb& target = *opened.value();

  // The source, with every record in its database.
  std::string error;
  std::unique_ptr<internal::WalkSource> source;
  if (internal::isPostgresUrl(from.url)) {
    source = internal::openPgWalk(from.url, error);
  } else {
    auto path = db::sqlitePath(from.url);
    if (!path.ok()) return path.error();
    std::error_code ec;
    if (!std::filesystem::is_regular_file(path.value(), ec)) return invalid("source: no audit database at " + path.value());
    // Opened as a gateway's start opens it: the records still only in its journal are copied into
    // the database, and a trail another process holds open is refused (its lock). Closed at once.
    auto log = AuditLog::open(from);
    if (!log.ok()) return makeError(log.error().code, "source: " + log.error().message);
    log.value()->close();
    log.value().reset();
    source = internal::openSqliteWalk(path.value(), error);
  }
  if (!source) return makeError(ErrorCode::kUnavailable, "source: " + error);
  std::vector<std::pair<std::string, std::string>> meta;
  if (source->readMeta(meta) < 0) return makeError(ErrorCode::kUnavailable, "source: " + source->error);

  CopyReport report;
  internal::ChainHead head;  // the target's, as the last page left it
  std::vector<Record> page;
  std::vector<std::string> texts;
  page.reserve(kCopyPage);
  texts.reserve(kCopyPage);
  auto flush = [&]() -> Result<void> {
    if (page.empty()) return {};
    auto locked = target.lockHead();
    if (!locked.ok()) return makeError(locked.error().code, "target: " + locked.error().message);
    if (locked->seq != head.seq) {
      target.rollback();
      return makeError(ErrorCode::kConflict, "target: its chain moved to seq " + std::to_string(locked->seq) +
                                                 " during the copy (stop the gateways first)");
    }
    std::vector<const Record*> records;
    for (const Record& r : page) records.push_back(&r);
    internal::ChainHead next{page.back().seq, page.back().hash, page.back().timeMs};
    if (auto w = target.insert(records, texts, next); !w.ok()) {
      target.rollback();
      return makeError(w.error().code, "target: records " + std::to_string(page.front().seq) + "-" +
                                           std::to_string(page.back().seq) + ": " + w.error().message);
    }
    if (auto c = target.commit(); !c.ok()) {
      target.rollback();
      return makeError(c.error().code, "target: " + c.error().message);
    }
    head = next;
    page.clear();
    texts.clear();
    return {};
  };

  // The records in seq order, each with its rows of the patient index (read side by side, in
  // (seq, patient) order), as the source holds them: the target's verification judges them.
  internal::WalkRecord row;
  internal::WalkPatient patient;
  auto orphan = [&] {
    return invalid("source: the patient index has a row for seq " + std::to_string(patient.seq) +
                   ", which is not in the trail (run 'passerelle audit verify')");
  };
  int prc = source->nextPatient(patient);
  int rc = 0;
  while (prc >= 0 && (rc = source->nextRecord(row)) > 0) {
    if (row.typeProblem) return invalid("source: record " + std::to_string(row.seq) + ": " + row.typeProblem);
    if (prc > 0 && patient.seq < row.seq) return orphan();
    Record& r = page.emplace_back();
    r.seq = row.seq;
    r.timeMs = row.timeMs;
    r.kind = row.kind;
    r.action = row.action;
    r.outcome = row.outcome;
    r.subject = row.subject;
    r.prevHash = row.prevHash;
    r.hash = row.hash;
    texts.emplace_back(row.text);
    for (; prc > 0 && patient.seq == row.seq; prc = source->nextPatient(patient)) {
      r.patients.emplace_back(patient.patient);
      ++report.patientRows;
    }
    if (report.records++ == 0) report.firstSeq = row.seq;
    report.lastSeq = row.seq;
    report.lastHash = r.hash;
    if (page.size() == kCopyPage)
      if (auto f = flush(); !f.ok()) return f.error();
  }
  if (prc < 0 || rc < 0) return makeError(ErrorCode::kUnavailable, "source: " + source->error);
  if (prc > 0) return orphan();
  if (auto f = flush(); !f.ok()) return f.error();

  // audit_meta: where the chain continues after a purge (and the head, when the purge emptied the
  // trail), and the last record copied.
  std::vector<std::pair<std::string, std::string>> kept;
  internal::ChainHead purged;
  for (const auto& [key, value] : meta) {
    if (key == "schema" || key == internal::kCopiedSeq) continue;
    if (key == "purged_seq") purged.seq = std::atoll(value.c_str());
    if (key == "purged_hash") purged.hash = value;
    if (key == "purged_time") purged.timeMs = std::atoll(value.c_str());
    kept.emplace_back(key, value);
  }
  if (report.records == 0 && purged.seq > 0) {
    report.lastSeq = purged.seq;
    report.lastHash = purged.hash;
  }
  if (report.lastSeq > 0) kept.emplace_back(internal::kCopiedSeq, std::to_string(report.lastSeq));
  if (!kept.empty()) {
    auto locked = target.lockHead();
    if (!locked.ok()) return makeError(locked.error().code, "target: " + locked.error().message);
    auto done = [&]() -> Result<void> {
      if (auto m = target.putMeta(kept); !m.ok()) return m;
      if (report.records == 0 && purged.seq > 0)
        if (auto h = target.insert({}, {}, purged); !h.ok()) return h;
      return target.commit();
    }();
    if (!done.ok()) {
      target.rollback();
      return makeError(done.error().code, "target: " + done.error().message);
    }
  }

  // The target recounted, its head and last record against the source's.
  auto counts = target.counts();
  if (!counts.ok()) return makeError(counts.error().code, "target: " + counts.error().message);
  if (counts->first != report.records || counts->second != report.patientRows)
    return makeError(ErrorCode::kInternal, "the target holds " + std::to_string(counts->first) + " records and " +
                                               std::to_string(counts->second) + " patient rows, the source " +
                                               std::to_string(report.records) + " and " +
                                               std::to_string(report.patientRows));
  auto last = target.head();
  if (!last.ok()) return makeError(last.error().code, "target: " + last.error().message);
  if (last->seq != report.lastSeq || (report.lastSeq > 0 && last->hash != report.lastHash))
    return makeError(ErrorCode::kInternal, "the target's chain ends at seq " + std::to_string(last->seq) + " (" +
                                               last->hash + "), the source's at seq " + std::to_string(report.lastSeq) +
                                               " (" + report.lastHash + ")");
  if (report.records > 0) {
    auto hash = target.hashAt(report.lastSeq);
    if (!hash.ok()) return makeError(hash.error().code, "target: " + hash.error().message);
    if (hash.value() != report.lastHash)
      return makeError(ErrorCode::kInternal, "the target's record " + std::to_string(report.lastSeq) +
                                                 " has another hash than the source's");
  }
  return report;
}

}  // namespace passerelle::audit
