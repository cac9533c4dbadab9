// The audit trail's PostgreSQL database (see audit_pg.h).
#include "gateway/audit/audit_pg.h"

#include <algorithm>
#include <array>
#include <cstdlib>
#include <iterator>
#include <limits>

#include "gateway/audit/record_codec.h"
#include "gateway/store/pg_connection.h"
#include "gateway/store/sql_dialect.h"

namespace passerelle::audit::internal {

namespace {

using store::pg::Bytes;
using store::pg::Connection;
using store::pg::Rows;
using store::pg::Value;

// The key of the advisory lock under which a gateway creates the tables ("audt").
constexpr std::int64_t kSchemaLock = 0x61756474;

const char* const kSchema = R"sql(
CREATE TABLE IF NOT EXISTS audit_record(
  seq bigint PRIMARY KEY,
  time_ms bigint NOT NULL,
  kind text COLLATE "C" NOT NULL,
  action text COLLATE "C" NOT NULL,
  outcome text COLLATE "C" NOT NULL,
  subject text COLLATE "C" NOT NULL,
  origin text COLLATE "C",
  record bytea NOT NULL,
  prev_hash text COLLATE "C" NOT NULL,
  hash text COLLATE "C" NOT NULL);
CREATE INDEX IF NOT EXISTS audit_record_time ON audit_record(time_ms);
CREATE INDEX IF NOT EXISTS audit_record_subject ON audit_record(subject, seq);
CREATE UNIQUE INDEX IF NOT EXISTS audit_record_origin ON audit_record(origin) WHERE origin IS NOT NULL;
CREATE TABLE IF NOT EXISTS audit_patient(
  patient text COLLATE "C" NOT NULL,
  seq bigint NOT NULL,
  PRIMARY KEY(patient, seq));
CREATE INDEX IF NOT EXISTS audit_patient_seq ON audit_patient(seq, patient);
CREATE TABLE IF NOT EXISTS audit_meta(key text COLLATE "C" PRIMARY KEY, value text NOT NULL);
INSERT INTO audit_meta(key, value) VALUES('schema', '1') ON CONFLICT DO NOTHING;
CREATE TABLE IF NOT EXISTS audit_head(
  id int PRIMARY KEY CHECK (id = 1),
  seq bigint NOT NULL,
  hash text COLLATE "C" NOT NULL,
  time_ms bigint NOT NULL);
)sql";

// Rows are inserted by statements of a few fixed sizes, the last one padded with rows of seq 0
// that the statement drops: a group of any size takes few round trips, and the connection
// prepares few statements.
constexpr std::size_t kBatchSizes[] = {8, 64, 512, 4096};

std::size_t batchSize(std::size_t left) {
  for (std::size_t s : kBatchSizes)
    if (left <= s) return s;
  return kBatchSizes[std::size(kBatchSizes) - 1];
}

// INSERT INTO table(columns) SELECT select FROM (VALUES ($1..), ...) v(columns) WHERE v.seq > 0
std::string paddedInsert(const char* table, const char* columns, const char* select, int width, std::size_t rows) {
  std::string sql = std::string("INSERT INTO ") + table + "(" + columns + ") SELECT " + select + " FROM (VALUES ";
  int n = 0;
  for (std::size_t r = 0; r < rows; ++r) {
    sql += r ? ",(" : "(";
    for (int c = 0; c < width; ++c) {
      if (c) sql += ',';
      sql += '$';
      sql += std::to_string(++n);
    }
    sql += ')';
  }
  sql += std::string(") AS v(") + columns + ") WHERE v.seq > 0";
  return sql;
}

// Inserts `count` rows, `row(i, params)` appending the values of row i.
Result<void> insertRows(Connection& c, const char* table, const char* columns, const char* select,
                        const std::vector<Value>& padding, std::size_t count,
                        const std::function<void(std::size_t, std::vector<Value>&)>& row, const char* what) {
  std::vector<Value> params;
  for (std::size_t at = 0; at < count;) {
    std::size_t size = batchSize(count - at), take = std::min(size, count - at);
    params.clear();
    for (std::size_t i = 0; i < take; ++i) row(at + i, params);
    for (std::size_t i = take; i < size; ++i) params.insert(params.end(), padding.begin(), padding.end());
    auto r = c.exec(paddedInsert(table, columns, select, static_cast<int>(padding.size()), size), params, what);
    if (!r.ok()) return r.error();
    at += take;
  }
  return {};
}

}  // namespace

bool isPostgresUrl(const std::string& url) {
  return url.rfind("postgresql://", 0) == 0 || url.rfind("postgres://", 0) == 0;
}

PgAuditDb::~PgAuditDb() = default;

Result<std::unique_ptr<PgAuditDb>> PgAuditDb::open(const std::string& url) {
  std::unique_ptr<PgAuditDb> db(new PgAuditDb());
  auto w = Connection::open(url, false);
  if (!w.ok()) return makeError(w.error().code, "audit " + w.error().message);
  db->writer_ = std::move(w.value());
  auto r = Connection::open(url, true);
  if (!r.ok()) return makeError(r.error().code, "audit " + r.error().message);
  db->reader_ = std::move(r.value());

  Connection& c = *db->writer_;
  auto schema = [&]() -> Result<void> {
    if (auto b = c.run("BEGIN", "begin"); !b.ok()) return b;
    if (auto l = c.exec("SELECT pg_advisory_xact_lock($1)", {kSchemaLock}, "lock for the audit tables"); !l.ok())
      return l.error();
    // Tables made by an earlier start are left alone: creating an index, even one that exists,
    // would wait for the appends of running gateways and hold back theirs.
    auto made = c.exec("SELECT to_regclass('audit_head') IS NOT NULL", {}, "look for the audit tables");
    if (!made.ok()) return made.error();
    if (made->text(0, 0) != "t") {
      if (auto s = c.run(kSchema, "create the audit tables"); !s.ok()) return s;
      if (auto h = c.exec("INSERT INTO audit_head(id, seq, hash, time_ms) VALUES(1, 0, $1, 0) ON CONFLICT DO NOTHING",
                          {std::string(codec::kGenesisHash)}, "create the chain's head");
          !h.ok())
        return h.error();
    }
    return c.commit();
  };
  if (auto s = schema(); !s.ok()) {
    (void)c.run("ROLLBACK", "rollback");
    return makeError(s.error().code, "audit " + s.error().message);
  }
  // The head names the last record: records beyond it mean the tables were edited.
  auto check = c.exec("SELECT h.seq, (SELECT max(seq) FROM audit_record) FROM audit_head h WHERE h.id = 1", {},
                      "read the chain's head");
  if (!check.ok()) return makeError(check.error().code, "audit " + check.error().message);
  if (check->size() != 1)
    return makeError(ErrorCode::kInternal, "audit database: the chain's head (audit_head) is missing");
  if (!check->null(0, 1) && check->i64(0, 1) > check->i64(0, 0))
    return makeError(ErrorCode::kInternal, "audit database: records after the chain's head (seq " +
                                               std::to_string(check->i64(0, 0)) + ") (run 'passerelle audit verify')");
  return db;
}

Result<ChainHead> PgAuditDb::lockHead() {
  // A connection lost since the last group (the server restarted) is opened again first; BEGIN
  // is tried once more on a new connection if it finds the connection lost (nothing was done yet).
  if (!writer_->ensureOpen())
    return makeError(ErrorCode::kUnavailable, "audit database: the connection is lost and cannot be opened again");
  auto b = writer_->run("BEGIN", "begin");
  if (!b.ok()) {
    if (!writer_->ensureOpen()) return b.error();
    b = writer_->run("BEGIN", "begin");
    if (!b.ok()) return b.error();
  }
  return readHead(true);
}

Result<std::set<std::string>> PgAuditDb::chainedOrigins(const std::vector<std::string>& origins) {
  // Origins are "outbox:<id>": one parameter, one per line.
  std::string list;
  for (const auto& o : origins) {
    if (!list.empty()) list += '\n';
    list += o;
  }
  auto rows = writer_->exec("SELECT origin FROM audit_record WHERE origin = ANY(string_to_array($1, E'\\n'))", {list},
                            "find the records already chained");
  if (!rows.ok()) return rows.error();
  std::set<std::string> out;
  for (int i = 0; i < rows->size(); ++i) out.insert(rows->text(i, 0));
  return out;
}

Result<void> PgAuditDb::insert(const std::vector<const Record*>& records, const std::vector<std::string>& texts,
                               const ChainHead& head) {
  static const char* const kColumns = "seq, time_ms, kind, action, outcome, subject, origin, record, prev_hash, hash";
  static const char* const kSelect =
      "seq, time_ms, kind, action, outcome, subject, NULLIF(origin, ''), record, prev_hash, hash";
  const std::vector<Value> recordPadding = {std::int64_t{0}, std::int64_t{0}, std::string(), std::string(),
                                            std::string(),   std::string(),   std::string(), Bytes{},
                                            std::string(),   std::string()};
  auto r = insertRows(
      *writer_, "audit_record", kColumns, kSelect, recordPadding, records.size(),
      [&](std::size_t i, std::vector<Value>& p) {
        const Record& x = *records[i];
        p.insert(p.end(), {x.seq, x.timeMs, x.kind, x.action, x.outcome, x.subject, x.origin, Bytes{texts[i]},
                           x.prevHash, x.hash});
      },
      "insert the records");
  if (!r.ok()) return r;
  // The patient rows in key order: neighbours in the index, inserted together.
  std::vector<std::pair<std::string_view, std::int64_t>> rows;
  for (const Record* x : records)
    for (const auto& patient : x->patients) rows.emplace_back(patient, x->seq);
  std::sort(rows.begin(), rows.end());
  r = insertRows(
      *writer_, "audit_patient", "patient, seq", "patient, seq", {std::string(), std::int64_t{0}}, rows.size(),
      [&](std::size_t i, std::vector<Value>& p) {
        p.emplace_back(std::string(rows[i].first));
        p.emplace_back(rows[i].second);
      },
      "insert the patient rows");
  if (!r.ok()) return r;
  auto h = writer_->exec("UPDATE audit_head SET seq = $1, hash = $2, time_ms = $3 WHERE id = 1",
                         {head.seq, head.hash, head.timeMs}, "move the chain's head");
  if (!h.ok()) return h.error();
  return {};
}

Result<void> PgAuditDb::commit() { return writer_->commit(); }

void PgAuditDb::rollback() { (void)writer_->run("ROLLBACK", "rollback"); }

Result<std::optional<PurgeRange>> PgAuditDb::purgeBefore(
    std::int64_t cutoffMs, const std::function<Result<void>(const PurgeRange&)>& beforeDelete) {
  auto last = writer_->exec(
      "SELECT seq, hash, time_ms, (SELECT min(seq) FROM audit_record) FROM audit_record WHERE seq = "
      "(SELECT max(seq) FROM audit_record WHERE time_ms < $1)",
      {cutoffMs}, "find the records to purge");
  if (!last.ok()) return last.error();
  if (last->size() == 0) return std::optional<PurgeRange>();
  PurgeRange range{last->i64(0, 3), last->i64(0, 0), last->text(0, 1)};
  std::int64_t upToTime = last->i64(0, 2);
  if (auto b = beforeDelete(range); !b.ok()) return b.error();
  for (const char* sql : {"DELETE FROM audit_patient WHERE seq <= $1", "DELETE FROM audit_record WHERE seq <= $1"})
    if (auto d = writer_->exec(sql, {range.upToSeq}, "delete the purged records"); !d.ok()) return d.error();
  auto meta = writer_->exec(
      "INSERT INTO audit_meta(key, value) VALUES('purged_seq', $1), ('purged_hash', $2), "
      "('purged_time', $3) ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value",
      {std::to_string(range.upToSeq), range.upToHash, std::to_string(upToTime)}, "keep where the chain continues");
  if (!meta.ok()) return meta.error();
  return std::optional<PurgeRange>(range);
}

Result<ChainHead> PgAuditDb::head() {
  writer_->ensureOpen();
  return readHead(false);
}

Result<ChainHead> PgAuditDb::readHead(bool lock) {
  auto rows =
      lock ? writer_->exec("SELECT seq, hash, time_ms FROM audit_head WHERE id = 1 FOR UPDATE", {},
                           "lock the chain's head")
           : writer_->exec("SELECT seq, hash, time_ms FROM audit_head WHERE id = 1", {}, "read the chain's head");
  if (!rows.ok()) return rows.error();
  if (rows->size() != 1)
    return makeError(ErrorCode::kInternal, "audit database: the chain's head (audit_head) is missing");
  return ChainHead{rows->i64(0, 0), rows->text(0, 1), rows->i64(0, 2)};
}

Result<std::pair<std::int64_t, std::int64_t>> PgAuditDb::counts() {
  auto rows = writer_->exec("SELECT (SELECT count(*) FROM audit_record), (SELECT count(*) FROM audit_patient)", {},
                            "count the records");
  if (!rows.ok()) return rows.error();
  return std::pair{rows->i64(0, 0), rows->i64(0, 1)};
}

Result<void> PgAuditDb::putMeta(const std::vector<std::pair<std::string, std::string>>& values) {
  for (const auto& [key, value] : values) {
    auto r = writer_->exec(
        "INSERT INTO audit_meta(key, value) VALUES($1, $2) ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value",
        {key, value}, "write audit_meta");
    if (!r.ok()) return r.error();
  }
  return {};
}

Result<std::int64_t> PgAuditDb::firstSeq() {
  auto rows = writer_->exec("SELECT coalesce(min(seq), 0) FROM audit_record", {}, "find the first record");
  if (!rows.ok()) return rows.error();
  return rows->i64(0, 0);
}

Result<std::string> PgAuditDb::hashAt(std::int64_t seq) {
  writer_->ensureOpen();
  auto rows = writer_->exec("SELECT hash FROM audit_record WHERE seq = $1", {seq}, "read a record's hash");
  if (!rows.ok()) return rows.error();
  return rows->size() ? rows->text(0, 0) : std::string();
}

Result<std::vector<Record>> PgAuditDb::records(const std::string& sql, const std::vector<QueryBind>& binds) {
  std::vector<Value> params;
  for (const auto& b : binds) {
    if (const auto* i = std::get_if<std::int64_t>(&b))
      params.emplace_back(*i);
    else
      params.emplace_back(std::get<std::string>(b));
  }
  auto rows = reader_->exec(store::Dialect::postgresql().placeholders(sql), params, "query the audit trail");
  if (!rows.ok()) return rows.error();
  std::vector<Record> out;
  out.reserve(static_cast<std::size_t>(rows->size()));
  for (int i = 0; i < rows->size(); ++i) {
    Record r;
    if (!codec::decode(rows->text(i, 0), r))
      return makeError(ErrorCode::kInternal, "audit database: a record is damaged");
    r.prevHash = rows->text(i, 1);
    r.hash = rows->text(i, 2);
    out.push_back(std::move(r));
  }
  return out;
}

namespace {

// Pages of this many rows, by key: memory stays bounded whatever the trail's length.
constexpr int kWalkPage = 10000;

class PgWalk : public WalkSource {
 public:
  PgWalk(std::unique_ptr<Connection> c, std::vector<std::pair<std::string, std::string>> meta)
      : c_(std::move(c)), meta_(std::move(meta)) {
    for (const auto& [key, value] : meta_)
      if (key == kCopiedSeq) copiedSeq_ = std::atoll(value.c_str());
  }
  ~PgWalk() override { (void)c_->run("ROLLBACK", "end the snapshot"); }

  int readMeta(std::vector<std::pair<std::string, std::string>>& out) override {
    out.insert(out.end(), meta_.begin(), meta_.end());
    return 0;
  }

  int nextRecord(WalkRecord& out) override {
    if (row_ >= records_.size()) {
      if (recordsDone_) return 0;
      auto r = c_->exec(
          "SELECT seq, time_ms, kind, action, outcome, subject, origin, record, prev_hash, hash "
          "FROM audit_record WHERE seq > $1 ORDER BY seq LIMIT " +
              std::to_string(kWalkPage),
          {afterSeq_}, "read the records");
      if (!r.ok()) return fail(0, r.error().message);
      records_ = std::move(r.value());
      row_ = 0;
      recordsDone_ = records_.size() < kWalkPage;
      if (records_.size() == 0) return 0;
    }
    int i = row_++;
    for (int c = 2; c < 10; ++c) cols_[c - 2] = records_.text(i, c);
    out.seq = afterSeq_ = records_.i64(i, 0);
    out.timeMs = records_.i64(i, 1);
    out.kind = cols_[0];
    out.action = cols_[1];
    out.outcome = cols_[2];
    out.subject = cols_[3];
    out.origin = cols_[4];
    out.text = cols_[5];
    out.prevHash = cols_[6];
    out.hash = cols_[7];
    out.typeProblem = records_.null(i, 6) || !cols_[4].empty() ? nullptr : "column origin holds an empty text";
    // A record copied from another trail keeps its origin in its text only (see copyTrail()).
    out.hasOrigin = out.seq > copiedSeq_;
    if (!out.hasOrigin && !records_.null(i, 6)) out.typeProblem = "column origin of a copied record is not empty";
    return 1;
  }

  int nextPatient(WalkPatient& out) override {
    if (prow_ >= patients_.size()) {
      if (patientsDone_) return 0;
      const std::string page = " ORDER BY seq, patient LIMIT " + std::to_string(kWalkPage);
      auto r = pstarted_ ? c_->exec("SELECT seq, patient FROM audit_patient WHERE (seq, patient) > ($1, $2)" + page,
                                    {pafterSeq_, patient_}, "read the patient index")
                         : c_->exec("SELECT seq, patient FROM audit_patient" + page, {}, "read the patient index");
      if (!r.ok()) return fail(0, r.error().message);
      patients_ = std::move(r.value());
      prow_ = 0;
      pstarted_ = true;
      patientsDone_ = patients_.size() < kWalkPage;
      if (patients_.size() == 0) return 0;
    }
    int i = prow_++;
    out.seq = pafterSeq_ = patients_.i64(i, 0);
    patient_ = patients_.text(i, 1);
    out.patient = patient_;
    return 1;
  }

 private:
  std::unique_ptr<Connection> c_;
  std::vector<std::pair<std::string, std::string>> meta_;
  std::int64_t copiedSeq_ = 0;
  Rows records_, patients_;
  int row_ = 0, prow_ = 0;
  bool recordsDone_ = false, patientsDone_ = false, pstarted_ = false;
  std::int64_t afterSeq_ = std::numeric_limits<std::int64_t>::min(), pafterSeq_ = 0;
  std::array<std::string, 8> cols_;
  std::string patient_;
};

}  // namespace

std::unique_ptr<WalkSource> openPgWalk(const std::string& url, std::string& error) {
  auto c = Connection::open(url, false);
  if (!c.ok()) {
    error = c.error().message;
    return nullptr;
  }
  // Both scans read one snapshot: records appended meanwhile by running gateways are not seen.
  if (auto b = c.value()->run("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY", "begin"); !b.ok()) {
    error = b.error().message;
    return nullptr;
  }
  auto meta = c.value()->exec("SELECT key, value FROM audit_meta ORDER BY key", {}, "read audit_meta");
  if (!meta.ok()) {
    error = meta.error().message;
    return nullptr;
  }
  std::vector<std::pair<std::string, std::string>> kept;
  for (int i = 0; i < meta->size(); ++i) kept.emplace_back(meta->text(i, 0), meta->text(i, 1));
  return std::make_unique<PgWalk>(std::move(c.value()), std::move(kept));
}

}  // namespace passerelle::audit::internal
