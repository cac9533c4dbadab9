// PostgreSQL implementation of the resource store, with group commit (see pg_resource_store.h).
//
// The statements follow the SQLite implementation's one for one. Where SQLite lets a statement
// fail and the transaction go on, PostgreSQL aborts the whole transaction; so the statements a
// unit may expect to fail (a version or a control id already taken) are written not to fail
// (ON CONFLICT DO NOTHING, then "no row" is the conflict), and a unit that swallowed a real
// failure is caught at COMMIT, which then answers ROLLBACK.
#include "gateway/store/pg_resource_store.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <condition_variable>
#include <cstdio>
#include <deque>
#include <map>
#include <mutex>
#include <semaphore>
#include <thread>

#include "gateway/common/log.h"
#include "gateway/store/migrations.h"
#include "gateway/store/pg_connection.h"
#include "gateway/store/sql_dialect.h"

namespace passerelle::store {

namespace {

using pg::Bytes;
using pg::Connection;
using pg::Rows;
using pg::RowView;
using pg::Value;

const Dialect& kDialect = Dialect::postgresql();

// Runs the shared search SQL on a connection.
class Runner : public SqlRunner {
 public:
  explicit Runner(Connection& c) : c_(c) {}
  const Dialect& dialect() const override { return kDialect; }
  Result<void> query(const std::string& sql, const std::vector<SqlValue>& binds, const std::function<void(const SqlRow&)>& row,
                     const char* what) override {
    std::vector<Value> values;
    values.reserve(binds.size());
    for (const auto& b : binds) std::visit([&](const auto& v) { values.emplace_back(v); }, b);
    auto rows = c_.exec(kDialect.placeholders(sql), values, what);
    if (!rows.ok()) return rows.error();
    for (int i = 0; i < rows->size(); ++i) row(RowView(*rows, i));
    return {};
  }

 private:
  Connection& c_;
};

Result<std::vector<ResourceVersion>> queryVersions(Connection& c, const std::string& sql, const std::vector<Value>& params,
                                                   const char* what) {
  auto rows = c.exec(sql, params, what);
  if (!rows.ok()) return rows.error();
  std::vector<ResourceVersion> out;
  out.reserve(rows->size());
  for (int i = 0; i < rows->size(); ++i) out.push_back(rowToVersion(RowView(*rows, i)));
  return out;
}

Result<std::optional<ResourceVersion>> first(Result<std::vector<ResourceVersion>> rows) {
  if (!rows.ok()) return rows.error();
  if (rows->empty()) return std::optional<ResourceVersion>();
  return std::optional<ResourceVersion>(std::move(rows->front()));
}

Result<std::optional<ResourceVersion>> readCurrent(Connection& c, const std::string& type, const std::string& id) {
  static const std::string sql = std::string("SELECT ") + kVersionColumns +
                                 ", c.rid FROM resource_current c JOIN resource_version v ON v.seq = c.seq"
                                 " WHERE c.res_type = $1 AND c.res_id = $2";
  return first(queryVersions(c, sql, {type, id}, "read"));
}

// ---- index rows ----

// An array literal ({"a","b"}) for a text[] parameter: every element quoted and escaped.
std::string textArray(const std::vector<const std::string*>& items) {
  std::string out = "{";
  for (std::size_t i = 0; i < items.size(); ++i) {
    if (i) out += ',';
    out += '"';
    for (char ch : *items[i]) {
      if (ch == '"' || ch == '\\') out += '\\';
      out += ch;
    }
    out += '"';
  }
  return out + "}";
}

std::string intArray(const std::vector<std::int64_t>& items) {
  std::string out = "{";
  for (std::size_t i = 0; i < items.size(); ++i) {
    if (i) out += ',';
    out += std::to_string(items[i]);
  }
  return out + "}";
}

std::string realArray(const std::vector<double>& items) {
  std::string out = "{";
  for (std::size_t i = 0; i < items.size(); ++i) {
    if (i) out += ',';
    if (std::isinf(items[i])) {
      out += items[i] < 0 ? "-Infinity" : "Infinity";
    } else {
      char buf[40];
      std::snprintf(buf, sizeof buf, "%.17g", items[i]);
      out += buf;
    }
  }
  return out + "}";
}

template <typename Row>
std::string paramArray(const std::vector<Row>& rows) {
  std::vector<std::int64_t> keys;
  for (const auto& r : rows) keys.push_back(indexParamKey(r.param));
  return intArray(keys);
}

template <typename Row, typename Field>
std::string texts(const std::vector<Row>& rows, Field field) {
  std::vector<const std::string*> items;
  for (const auto& r : rows) items.push_back(&(r.*field));
  return textArray(items);
}

template <typename Row, typename Field>
std::string reals(const std::vector<Row>& rows, Field field) {
  std::vector<double> items;
  for (const auto& r : rows) items.push_back(static_cast<double>(r.*field));
  return realArray(items);
}

template <typename Row, typename Field>
std::string ints(const std::vector<Row>& rows, Field field) {
  std::vector<std::int64_t> items;
  for (const auto& r : rows) items.push_back(r.*field);
  return intArray(items);
}

Result<void> clearIndex(Connection& c, std::int64_t rid) {
  // One round trip for the six tables.
  auto r = c.exec(
      "WITH t AS (DELETE FROM search_token WHERE rid = $1), s AS (DELETE FROM search_string WHERE rid = $1),"
      " d AS (DELETE FROM search_date WHERE rid = $1), n AS (DELETE FROM search_number WHERE rid = $1),"
      " r AS (DELETE FROM search_reference WHERE rid = $1), c AS (DELETE FROM search_composite WHERE rid = $1) SELECT 1",
      {rid}, "clear index");
  if (!r.ok()) return r.error();
  return {};
}

// Each table's rows go in one statement, as arrays unnested (duplicates ignored, as on SQLite).
Result<void> writeIndex(Connection& c, std::int64_t rid, const IndexRows& rows) {
  auto insert = [&](bool any, const char* sql, std::vector<Value> params) -> Result<void> {
    if (!any) return {};
    params.emplace_back(rid);
    auto r = c.exec(sql, params, "write index");
    if (!r.ok()) return r.error();
    return {};
  };
  Result<void> r = insert(!rows.tokens.empty(),
                          "INSERT INTO search_token (param, value, system, rid) SELECT p, v, s, $4"
                          " FROM unnest($1::int8[], $2::text[], $3::text[]) AS t(p, v, s) ON CONFLICT DO NOTHING",
                          {paramArray(rows.tokens), texts(rows.tokens, &TokenRow::value), texts(rows.tokens, &TokenRow::system)});
  if (r.ok())
    r = insert(!rows.strings.empty(),
               "INSERT INTO search_string (param, norm, exact, rid) SELECT p, n, e, $4"
               " FROM unnest($1::int8[], $2::text[], $3::text[]) AS t(p, n, e) ON CONFLICT DO NOTHING",
               {paramArray(rows.strings), texts(rows.strings, &StringRow::norm), texts(rows.strings, &StringRow::exact)});
  if (r.ok())
    r = insert(!rows.dates.empty(),
               "INSERT INTO search_date (param, lo, hi, rid) SELECT p, l, h, $4"
               " FROM unnest($1::int8[], $2::int8[], $3::int8[]) AS t(p, l, h) ON CONFLICT DO NOTHING",
               {paramArray(rows.dates), ints(rows.dates, &DateRow::lo), ints(rows.dates, &DateRow::hi)});
  if (r.ok())
    r = insert(!rows.numbers.empty(),
               "INSERT INTO search_number (param, lo, hi, system, code, rid) SELECT p, l, h, s, c, $6"
               " FROM unnest($1::int8[], $2::float8[], $3::float8[], $4::text[], $5::text[]) AS t(p, l, h, s, c)"
               " ON CONFLICT DO NOTHING",
               {paramArray(rows.numbers), reals(rows.numbers, &NumberRow::lo), reals(rows.numbers, &NumberRow::hi),
                texts(rows.numbers, &NumberRow::system), texts(rows.numbers, &NumberRow::code)});
  if (r.ok())
    r = insert(!rows.references.empty(),
               "INSERT INTO search_reference (param, target_id, target_type, rid) SELECT p, i, t, $4"
               " FROM unnest($1::int8[], $2::text[], $3::text[]) AS x(p, i, t) ON CONFLICT DO NOTHING",
               {paramArray(rows.references), texts(rows.references, &ReferenceRow::targetId),
                texts(rows.references, &ReferenceRow::targetType)});
  if (r.ok())
    r = insert(!rows.composites.empty(),
               "INSERT INTO search_composite (param, value1, system1, value2, system2, lo, hi, rid)"
               " SELECT p, v1, s1, v2, s2, l, h, $8 FROM unnest($1::int8[], $2::text[], $3::text[], $4::text[], $5::text[],"
               " $6::float8[], $7::float8[]) AS t(p, v1, s1, v2, s2, l, h) ON CONFLICT DO NOTHING",
               {paramArray(rows.composites), texts(rows.composites, &CompositeRow::value1),
                texts(rows.composites, &CompositeRow::system1), texts(rows.composites, &CompositeRow::value2),
                texts(rows.composites, &CompositeRow::system2), reals(rows.composites, &CompositeRow::lo),
                reals(rows.composites, &CompositeRow::hi)});
  return r;
}

// ---- the message store (migration 0004) ----

constexpr const char* kInboxColumns =
    "id, channel, partner, control_id, type, received, status, ack_code, COALESCE(patient, ''), COALESCE(detail, ''), message, ack";
constexpr const char* kDeliveryColumns =
    "id, destination, order_key, kind, focus, COALESCE(payload, ''::bytea), status, attempts, created, next_try, COALESCE(done, 0),"
    " COALESCE(last_error, '')";

InboxMessage inboxRow(const Rows& r, int i) {
  InboxMessage m;
  m.id = r.i64(i, 0);
  m.channel = r.text(i, 1);
  m.partner = r.text(i, 2);
  m.controlId = r.text(i, 3);
  m.type = r.text(i, 4);
  m.receivedMs = r.i64(i, 5);
  m.status = r.text(i, 6);
  m.ackCode = r.text(i, 7);
  m.patient = r.text(i, 8);
  m.detail = r.text(i, 9);
  m.message = r.text(i, 10);
  m.ack = r.text(i, 11);
  return m;
}

Delivery deliveryRow(const Rows& r, int i) {
  Delivery d;
  d.id = r.i64(i, 0);
  d.destination = r.text(i, 1);
  d.orderKey = r.text(i, 2);
  d.kind = r.text(i, 3);
  d.focus = r.text(i, 4);
  d.payload = r.text(i, 5);
  d.status = r.text(i, 6);
  d.attempts = static_cast<int>(r.i64(i, 7));
  d.createdMs = r.i64(i, 8);
  d.nextTryMs = r.i64(i, 9);
  d.doneMs = r.i64(i, 10);
  d.lastError = r.text(i, 11);
  return d;
}

template <typename Row>
Result<std::vector<Row>> rows(Connection& c, const std::string& sql, const std::vector<Value>& params, Row (*make)(const Rows&, int),
                              const char* what) {
  auto r = c.exec(sql, params, what);
  if (!r.ok()) return r.error();
  std::vector<Row> out;
  for (int i = 0; i < r->size(); ++i) out.push_back(make(*r, i));
  return out;
}

template <typename Row>
Result<std::optional<Row>> firstRow(Result<std::vector<Row>> r) {
  if (!r.ok()) return r.error();
  if (r->empty()) return std::optional<Row>();
  return std::optional<Row>(std::move(r->front()));
}

Result<void> insertInbox(Connection& c, InboxMessage& m) {
  auto r = c.exec(
      "INSERT INTO message_inbox (channel, partner, control_id, type, received, status, ack_code, patient, detail, message, ack)"
      " VALUES ($1, $2, $3, $4, $5, $6, $7, NULLIF($8, ''), NULLIF($9, ''), $10, $11) ON CONFLICT DO NOTHING RETURNING id",
      {m.channel, m.partner, m.controlId, m.type, m.receivedMs, m.status, m.ackCode, m.patient, m.detail, Bytes{m.message},
       Bytes{m.ack}},
      "store a received message");
  if (!r.ok()) return r.error();
  if (r->size() == 0)
    return makeError(ErrorCode::kConflict, "database: store a received message: " + m.partner + " " + m.controlId + " was taken in already");
  m.id = r->i64(0, 0);
  return {};
}

Result<void> updateInboxRow(Connection& c, const InboxMessage& m) {
  auto r = c.exec("UPDATE message_inbox SET status = $1, ack_code = $2, patient = NULLIF($3, ''), detail = NULLIF($4, '') WHERE id = $5",
                  {m.status, m.ackCode, m.patient, m.detail, m.id}, "update a received message");
  if (!r.ok()) return r.error();
  if (r->affected() != 1) return makeError(ErrorCode::kNotFound, "no received message " + std::to_string(m.id));
  return {};
}

Result<std::optional<InboxMessage>> findInboxRow(Connection& c, const std::string& partner, const std::string& controlId) {
  // The one taken in if any, else the latest refusal.
  static const std::string sql = std::string("SELECT ") + kInboxColumns +
                                 " FROM message_inbox WHERE partner = $1 AND control_id = $2"
                                 " ORDER BY status IN ('processed', 'review') DESC, id DESC LIMIT 1";
  return firstRow(rows<InboxMessage>(c, sql, {partner, controlId}, inboxRow, "read the inbox"));
}

Result<void> insertDelivery(Connection& c, Delivery& d, std::int64_t nowMs) {
  if (d.createdMs == 0) d.createdMs = nowMs;
  if (d.nextTryMs == 0) d.nextTryMs = d.createdMs;
  auto r = c.exec(
      "INSERT INTO message_outbox (destination, order_key, kind, focus, payload, status, attempts, created, next_try)"
      " VALUES ($1, $2, $3, $4, NULLIF($5, ''::bytea), $6, $7, $8, $9) RETURNING id",
      {d.destination, d.orderKey, d.kind, d.focus, Bytes{d.payload}, d.status, static_cast<std::int64_t>(d.attempts), d.createdMs,
       d.nextTryMs},
      "queue a delivery");
  if (!r.ok()) return r.error();
  d.id = r->i64(0, 0);
  return {};
}

Result<void> saveDelivery(Connection& c, const Delivery& d) {
  auto r = c.exec(
      "UPDATE message_outbox SET payload = NULLIF($1, ''::bytea), status = $2, attempts = $3, next_try = $4, done = NULLIF($5, 0),"
      " last_error = NULLIF($6, ''), lease_owner = NULL, lease_until = NULL WHERE id = $7",
      {Bytes{d.payload}, d.status, static_cast<std::int64_t>(d.attempts), d.nextTryMs, d.doneMs, d.lastError, d.id},
      "update a delivery");
  if (!r.ok()) return r.error();
  if (r->affected() == 0) return makeError(ErrorCode::kNotFound, "no delivery " + std::to_string(d.id));
  return {};
}

Result<std::optional<Delivery>> loadDelivery(Connection& c, std::int64_t id) {
  static const std::string sql = std::string("SELECT ") + kDeliveryColumns + " FROM message_outbox WHERE id = $1";
  return firstRow(rows<Delivery>(c, sql, {id}, deliveryRow, "read a delivery"));
}

// A row copied from another store keeps its id; the identity column's sequence is then moved past
// it, so that the rows the gateway adds later are numbered after the copied ones.
Result<void> followCopiedId(Connection& c, const char* table, const char* what) {
  auto r = c.exec(std::string("SELECT setval(pg_get_serial_sequence('") + table + "', 'id'), (SELECT MAX(id) FROM " + table + "))", {},
                  what);
  if (!r.ok()) return r.error();
  return {};
}

Result<void> copyInboxRow(Connection& c, const InboxMessage& m) {
  auto r = c.exec(
      "INSERT INTO message_inbox (id, channel, partner, control_id, type, received, status, ack_code, patient, detail, message, ack)"
      " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, NULLIF($9, ''), NULLIF($10, ''), $11, $12)",
      {m.id, m.channel, m.partner, m.controlId, m.type, m.receivedMs, m.status, m.ackCode, m.patient, m.detail, Bytes{m.message},
       Bytes{m.ack}},
      "copy a received message");
  if (!r.ok()) return r.error();
  return followCopiedId(c, "message_inbox", "number the inbox after a copy");
}

Result<void> copyDeliveryRow(Connection& c, const Delivery& d) {
  auto r = c.exec(
      "INSERT INTO message_outbox (id, destination, order_key, kind, focus, payload, status, attempts, created, next_try, done,"
      " last_error) VALUES ($1, $2, $3, $4, $5, NULLIF($6, ''::bytea), $7, $8, $9, $10, NULLIF($11, 0), NULLIF($12, ''))",
      {d.id, d.destination, d.orderKey, d.kind, d.focus, Bytes{d.payload}, d.status, static_cast<std::int64_t>(d.attempts),
       d.createdMs, d.nextTryMs, d.doneMs, d.lastError},
      "copy a delivery");
  if (!r.ok()) return r.error();
  return followCopiedId(c, "message_outbox", "number the outbox after a copy");
}

using WriteObserver = std::function<Result<void>(WriteTxn&, const ResourceVersion&)>;

class WriteTxnImpl : public WriteTxn {
 public:
  WriteTxnImpl(Connection& c, std::int64_t now, std::vector<OutboxRecord>& outbox, const std::string& owner,
               const WriteObserver* observer = nullptr, bool* enqueued = nullptr)
      : c_(c), now_(now), outbox_(outbox), owner_(owner), observer_(observer), enqueued_(enqueued) {}

  Result<std::optional<ResourceVersion>> current(const std::string& type, const std::string& id) override {
    return readCurrent(c_, type, id);
  }
  Result<std::optional<ResourceVersion>> currentHead(const std::string& type, const std::string& id) override {
    auto r = c_.exec("SELECT version, deleted, last_updated, seq FROM resource_current WHERE res_type = $1 AND res_id = $2",
                     {type, id}, "read current version");
    if (!r.ok()) return r.error();
    if (r->size() == 0) return std::optional<ResourceVersion>();
    ResourceVersion v;
    v.type = type;
    v.id = id;
    v.version = r->i64(0, 0);
    v.deleted = r->i64(0, 1) != 0;
    v.lastUpdatedMs = r->i64(0, 2);
    v.seq = r->i64(0, 3);
    return std::optional<ResourceVersion>(std::move(v));
  }
  Result<SearchPage> search(const SearchQuery& q) override {
    Runner runner(c_);
    return runSearch(runner, q);
  }
  Result<std::vector<ResourceVersion>> include(const IncludeQuery& q) override {
    Runner runner(c_);
    return runInclude(runner, q);
  }
  std::int64_t nowMs() override { return now_; }

  Result<void> atomically(const std::function<Result<void>()>& work) override {
    std::string name = "nested" + std::to_string(++depth_);
    auto sp = c_.run("SAVEPOINT " + name, "savepoint");
    if (!sp.ok()) {
      --depth_;
      return sp;
    }
    Result<void> r;
    try {
      r = work();
    } catch (const std::exception& ex) {
      r = makeError(ErrorCode::kInternal, std::string("unexpected failure in a write: ") + ex.what());
    }
    if (!r.ok()) (void)c_.run("ROLLBACK TO " + name, "rollback to savepoint");
    auto rel = c_.run("RELEASE " + name, "release savepoint");
    --depth_;
    if (!rel.ok() && r.ok()) return rel;
    return r;
  }

  Result<void> put(ResourceVersion& v, const IndexRows& rows) override {
    if (v.lastUpdatedMs == 0) v.lastUpdatedMs = now_;
    {
      auto r = c_.exec(
          "INSERT INTO resource_version (res_type, res_id, version, last_updated, method, deleted, body)"
          " VALUES ($1, $2, $3, $4, $5, $6, CASE WHEN $6 <> 0 THEN NULL ELSE $7 END) ON CONFLICT DO NOTHING RETURNING seq",
          {v.type, v.id, v.version, v.lastUpdatedMs, v.method, static_cast<std::int64_t>(v.deleted), v.body}, "insert version");
      if (!r.ok()) return r.error();
      if (r->size() == 0) {
        // Another gateway wrote this version between this unit's read and its write (optimistic
        // locking: the unique key decides, the later write fails rather than overwrite).
        return makeError(ErrorCode::kConflict,
                         "database: insert version: " + v.type + "/" + v.id + " has a version " + std::to_string(v.version) + " already");
      }
      v.seq = r->i64(0, 0);
    }
    {
      // Version 1 is a resource that never existed (the caller numbers versions from the current one).
      auto r = c_.exec(v.version == 1 ? "INSERT INTO resource_current (res_type, res_id, version, seq, deleted, last_updated)"
                                        " VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING RETURNING rid"
                                      : "UPDATE resource_current SET version = $3, seq = $4, deleted = $5, last_updated = $6"
                                        " WHERE res_type = $1 AND res_id = $2 RETURNING rid",
                       {v.type, v.id, v.version, v.seq, static_cast<std::int64_t>(v.deleted), v.lastUpdatedMs}, "update current");
      if (!r.ok()) return r.error();
      if (r->size() == 0) {
        return makeError(ErrorCode::kConflict, v.version == 1 ? v.type + "/" + v.id + ": exists already"
                                                              : v.type + "/" + v.id + ": no current version to follow");
      }
      v.rid = r->i64(0, 0);
    }
    if (v.version > 1) {
      auto r = clearIndex(c_, v.rid);
      if (!r.ok()) return r;
    }
    if (!v.deleted) {
      auto r = writeIndex(c_, v.rid, rows);
      if (!r.ok()) return r;
    }
    if (observer_ && *observer_) return (*observer_)(*this, v);
    return {};
  }

  Result<void> putInbox(InboxMessage& m) override {
    if (m.receivedMs == 0) m.receivedMs = now_;
    return insertInbox(c_, m);
  }
  Result<void> updateInbox(const InboxMessage& m) override { return updateInboxRow(c_, m); }
  Result<void> enqueue(Delivery& d) override {
    auto r = insertDelivery(c_, d, now_);
    if (r.ok() && enqueued_) *enqueued_ = true;
    return r;
  }
  Result<void> updateDelivery(const Delivery& d) override {
    auto r = saveDelivery(c_, d);
    if (r.ok() && enqueued_ && d.status == "queued") *enqueued_ = true;
    return r;
  }
  Result<std::optional<Delivery>> delivery(std::int64_t id) override { return loadDelivery(c_, id); }
  Result<void> copyInbox(const InboxMessage& m) override { return copyInboxRow(c_, m); }
  Result<void> copyDelivery(const Delivery& d) override { return copyDeliveryRow(c_, d); }

  Result<void> attachAudit(std::string record) override {
    auto r = c_.exec("INSERT INTO audit_outbox (record, owner) VALUES ($1, $2) RETURNING id", {Bytes{record}, owner_},
                     "insert an audit record");
    if (!r.ok()) return r.error();
    outbox_.push_back(OutboxRecord{r->i64(0, 0), std::move(record)});
    return {};
  }

  Connection& connection() { return c_; }

  // Replaces the index rows of an existing resource (reindexing).
  Result<void> replaceIndex(std::int64_t rid, const IndexRows& rows) {
    auto r = clearIndex(c_, rid);
    if (!r.ok()) return r;
    return writeIndex(c_, rid, rows);
  }

 private:
  Connection& c_;
  std::int64_t now_;
  std::vector<OutboxRecord>& outbox_;  // the audit records of the commit being made
  const std::string& owner_;           // this gateway (the audit records it commits are its own)
  const WriteObserver* observer_;
  bool* enqueued_;  // set when the unit queued a delivery
  int depth_ = 0;
};

std::int64_t wallMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

// Where each commit is announced to the other gateways on the database (the payload: who committed).
constexpr const char* kChangesChannel = "passerelle_changes";

// The key of the advisory lock that serialises migrations between gateways starting together.
constexpr std::int64_t kMigrationLock = 0x70617373;  // "pass"

class PgResourceStore : public ResourceStore {
 public:
  PgResourceStore(std::string url, StoreOptions options) : url_(std::move(url)), options_(options) {}
  ~PgResourceStore() override { close(); }

  Result<void> open() {
    auto c = Connection::open(url_, false);
    if (!c.ok()) return makeError(c.error().code, "cannot open database '" + redactedUrl(url_) + "': " + c.error().message);
    writer_ = std::move(c.value());
    if (options_.migrate) {
      auto m = migrate();
      if (!m.ok()) return m;
    }
    thread_ = std::thread([this] { writerLoop(); });
    if (options_.migrate) listener_ = std::thread([this] { listenLoop(); });
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
                                   " FROM resource_version v WHERE v.res_type = $1 AND v.res_id = $2 AND v.version = $3";
    return first(queryVersions(**lease.value(), sql, {type, id, version}, "read a version"));
  }

  Result<std::vector<ResourceVersion>> scan(const std::string& type, const std::string& afterId, int limit) override {
    auto lease = acquireReader();
    if (!lease.ok()) return lease.error();
    static const std::string sql = std::string("SELECT ") + kVersionColumns +
                                   ", c.rid FROM resource_current c JOIN resource_version v ON v.seq = c.seq"
                                   " WHERE c.res_type = $1 AND c.res_id > $2 AND c.deleted = 0 ORDER BY c.res_id LIMIT $3";
    return queryVersions(**lease.value(), sql, {type, afterId, static_cast<std::int64_t>(limit)}, "scan");
  }

  Result<std::vector<ResourceVersion>> scanVersions(std::int64_t afterSeq, int limit) override {
    auto lease = acquireReader();
    if (!lease.ok()) return lease.error();
    static const std::string sql =
        std::string("SELECT ") + kVersionColumns + " FROM resource_version v WHERE v.seq > $1 ORDER BY v.seq LIMIT $2";
    return queryVersions(**lease.value(), sql, {afterSeq, static_cast<std::int64_t>(std::max(1, limit))}, "read versions");
  }

  Result<std::vector<ResourceVersion>> scanVersionsByKey(const std::string& afterType, const std::string& afterId,
                                                         std::int64_t afterVersion, int limit) override {
    auto lease = acquireReader();
    if (!lease.ok()) return lease.error();
    // A row comparison on the UNIQUE (res_type, res_id, version) index (COLLATE "C": byte order,
    // as on SQLite): each page starts where the last one ended.
    static const std::string sql = std::string("SELECT ") + kVersionColumns +
                                   " FROM resource_version v WHERE (v.res_type, v.res_id, v.version) > ($1, $2, $3)"
                                   " ORDER BY v.res_type, v.res_id, v.version LIMIT $4";
    return queryVersions(**lease.value(), sql, {afterType, afterId, afterVersion, static_cast<std::int64_t>(std::max(1, limit))},
                         "read versions");
  }

  Result<StoreStatus> status() override {
    auto lease = acquireReader();
    if (!lease.ok()) return lease.error();
    Connection& c = **lease.value();
    StoreStatus out;
    out.backend = "postgresql";
    out.knownVersion = postgresqlMigrations().empty() ? 0 : postgresqlMigrations().back().version;
    auto scalar = [&](const char* sql, std::int64_t& value) -> Result<void> {
      auto r = c.exec(sql, {}, "read the schema");
      if (!r.ok()) return r.error();
      value = r->size() == 0 || r->null(0, 0) ? 0 : r->i64(0, 0);
      return {};
    };
    std::int64_t n = 0;
    auto r = scalar("SELECT COUNT(*) FROM pg_catalog.pg_tables WHERE schemaname = current_schema() AND tablename = 'schema_migrations'", n);
    if (!r.ok()) return r.error();
    if (n > 0) {
      r = scalar("SELECT COALESCE(MAX(version), 0) FROM schema_migrations", n);
      if (!r.ok()) return r.error();
      out.schemaVersion = static_cast<int>(n);
    }
    if (out.schemaVersion >= 1) {
      std::map<std::string, TypeCount> types;
      auto current = c.exec(
          "SELECT res_type, COUNT(*) FILTER (WHERE deleted = 0), COUNT(*) FILTER (WHERE deleted <> 0) FROM resource_current"
          " GROUP BY res_type",
          {}, "count resources");
      if (!current.ok()) return current.error();
      for (int i = 0; i < current->size(); ++i) {
        auto& t = types[current->text(i, 0)];
        t.type = current->text(i, 0);
        t.current = current->i64(i, 1);
        t.deleted = current->i64(i, 2);
      }
      auto versions = c.exec("SELECT res_type, COUNT(*) FROM resource_version GROUP BY res_type", {}, "count versions");
      if (!versions.ok()) return versions.error();
      for (int i = 0; i < versions->size(); ++i) {
        auto& t = types[versions->text(i, 0)];
        t.type = versions->text(i, 0);
        t.versions = versions->i64(i, 1);
      }
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
    Runner runner(**lease.value());
    return runSearch(runner, q);
  }

  Result<HistoryPage> history(const HistoryQuery& q) override {
    auto lease = acquireReader();
    if (!lease.ok()) return lease.error();
    std::string sql = std::string("SELECT ") + kVersionColumns + " FROM resource_version v WHERE TRUE";
    std::vector<Value> params;
    if (!q.type.empty()) {
      sql += " AND v.res_type = ?";
      params.emplace_back(q.type);
    }
    if (!q.id.empty()) {
      sql += " AND v.res_id = ?";
      params.emplace_back(q.id);
    }
    if (q.sinceMs) {
      sql += " AND v.last_updated >= ?";
      params.emplace_back(*q.sinceMs);
    }
    if (q.beforeSeq) {
      sql += " AND v.seq < ?";
      params.emplace_back(*q.beforeSeq);
    }
    sql += " ORDER BY v.seq DESC LIMIT ?";
    params.emplace_back(static_cast<std::int64_t>(q.count + 1));
    auto rows = queryVersions(**lease.value(), kDialect.placeholders(sql), params, "history");
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
    Runner runner(**lease.value());
    return runInclude(runner, q);
  }

  Result<std::int64_t> reindex(const std::function<Result<IndexRows>(const ResourceVersion&)>& index, int batch) override {
    std::int64_t after = 0, done = 0;
    static const std::string sql = std::string("SELECT ") + kVersionColumns +
                                   ", c.rid FROM resource_current c JOIN resource_version v ON v.seq = c.seq"
                                   " WHERE c.rid > $1 AND c.deleted = 0 ORDER BY c.rid LIMIT $2";
    // Resources deleted since the migration, or never indexed, keep no rows.
    for (;;) {
      std::vector<ResourceVersion> rows;
      {
        auto lease = acquireReader();
        if (!lease.ok()) return lease.error();
        auto r = queryVersions(**lease.value(), sql, {after, static_cast<std::int64_t>(std::max(1, batch))}, "reindex");
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
    auto r = (**lease.value()).exec("SELECT value FROM store_meta WHERE key = $1", {key}, "read store_meta");
    if (!r.ok()) return r.error();
    if (r->size() == 0) return std::string();
    return r->text(0, 0);
  }

  Result<std::vector<std::pair<std::string, std::string>>> listMeta() override {
    auto lease = acquireReader();
    if (!lease.ok()) return lease.error();
    auto r = (**lease.value()).exec("SELECT key, value FROM store_meta ORDER BY key", {}, "read store_meta");
    if (!r.ok()) return r.error();
    std::vector<std::pair<std::string, std::string>> out;
    for (int i = 0; i < r->size(); ++i) out.emplace_back(r->text(i, 0), r->text(i, 1));
    return out;
  }

  Result<void> setMeta(const std::string& key, const std::string& value) override {
    return write([&](WriteTxn& txn) -> Result<void> {
      auto& c = static_cast<WriteTxnImpl&>(txn).connection();
      auto r = c.exec("INSERT INTO store_meta (key, value) VALUES ($1, $2) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                      {key, value}, "write store_meta");
      if (!r.ok()) return r.error();
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
    if (listener_.joinable()) listener_.join();
    if (writer_) (void)deleteReleased();
    std::lock_guard<std::mutex> lock(readersMutex_);
    freeReaders_.clear();
    writer_.reset();
  }

  void setAuditSink(std::function<void(std::vector<OutboxRecord>&&)> sink) override { auditSink_ = std::move(sink); }

  Result<std::vector<OutboxRecord>> pendingAuditRecords() override {
    auto lease = acquireReader();
    if (!lease.ok()) return lease.error();
    auto r = (**lease.value()).exec("SELECT id, record FROM audit_outbox ORDER BY id", {}, "read the audit outbox");
    if (!r.ok()) return r.error();
    std::vector<OutboxRecord> out;
    for (int i = 0; i < r->size(); ++i) out.push_back(OutboxRecord{r->i64(i, 0), r->text(i, 1)});
    // Rows of other gateways (or of this one's earlier run) are deleted by id once the trail holds
    // them: a range would take along another running gateway's rows not chained yet.
    std::lock_guard<std::mutex> lock(adoptedMutex_);
    for (const auto& o : out) adopted_.push_back(o.id);
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
    return findInboxRow(**lease.value(), partner, controlId);
  }
  Result<std::vector<InboxMessage>> listInbox(const std::string& status, int limit) override {
    auto lease = acquireReader();
    if (!lease.ok()) return lease.error();
    std::string sql = std::string("SELECT ") + kInboxColumns + " FROM message_inbox";
    std::vector<Value> params;
    if (!status.empty()) {
      sql += " WHERE status = ?";
      params.emplace_back(status);
    }
    sql += " ORDER BY id DESC LIMIT ?";
    params.emplace_back(static_cast<std::int64_t>(limit));
    return rows<InboxMessage>(**lease.value(), kDialect.placeholders(sql), params, inboxRow, "list the inbox");
  }
  Result<std::optional<InboxMessage>> inboxMessage(std::int64_t id) override {
    auto lease = acquireReader();
    if (!lease.ok()) return lease.error();
    static const std::string sql = std::string("SELECT ") + kInboxColumns + " FROM message_inbox WHERE id = $1";
    return firstRow(rows<InboxMessage>(**lease.value(), sql, {id}, inboxRow, "read the inbox"));
  }
  Result<std::vector<Delivery>> claimDeliveries(const std::string& destination, std::int64_t nowMs, int limit,
                                                std::int64_t leaseMs) override {
    auto lease = acquireReader();
    if (!lease.ok()) return lease.error();
    // The head of each order key's queue (its oldest queued delivery) goes when its time has come
    // (a later one waits for it) and no other gateway holds it. Rows another gateway is claiming
    // right now are skipped, not waited for; the status is checked again on the row locked (one
    // sent meanwhile is not taken).
    static const std::string sql =
        std::string("UPDATE message_outbox m SET lease_owner = $3, lease_until = $4 WHERE m.id IN (SELECT o.id FROM message_outbox o"
                    " WHERE o.id IN (SELECT MIN(id) FROM message_outbox WHERE destination = $1 AND status = 'queued' GROUP BY order_key)"
                    " AND o.status = 'queued' AND o.next_try <= $2 AND (o.lease_until IS NULL OR o.lease_until <= $2 OR o.lease_owner = $3)"
                    " ORDER BY o.id LIMIT $5 FOR UPDATE SKIP LOCKED) RETURNING ") +
        kDeliveryColumns;
    auto claimed = rows<Delivery>(**lease.value(), sql, {destination, nowMs, instance_, nowMs + leaseMs, static_cast<std::int64_t>(limit)},
                                  deliveryRow, "claim due deliveries");
    if (claimed.ok())
      std::sort(claimed->begin(), claimed->end(), [](const Delivery& a, const Delivery& b) { return a.id < b.id; });
    return claimed;
  }
  Result<bool> claimJob(const std::string& job, std::int64_t nowMs, std::int64_t leaseMs) override {
    auto lease = acquireReader();
    if (!lease.ok()) return lease.error();
    static const std::string sql = kDialect.placeholders(kClaimJobSql);
    auto r = (**lease.value()).exec(sql, {job, nowMs, instance_, leaseMs}, "claim a job");
    if (!r.ok()) return r.error();
    return r->size() > 0;
  }
  Result<void> finishJob(const std::string& job, bool done) override {
    auto lease = acquireReader();
    if (!lease.ok()) return lease.error();
    static const std::string doneSql = kDialect.placeholders(kJobDoneSql), dropSql = kDialect.placeholders(kJobDropSql);
    auto r = done ? (**lease.value()).exec(doneSql, {job}, "finish a job") : (**lease.value()).exec(dropSql, {job, instance_}, "drop a job");
    if (!r.ok()) return r.error();
    return {};
  }
  const std::string& instance() const override { return instance_; }
  Result<std::optional<std::int64_t>> nextDeliveryTime(const std::string& destination) override {
    auto lease = acquireReader();
    if (!lease.ok()) return lease.error();
    // A delivery another sender holds is not due before its lease runs out.
    auto r = (**lease.value()).exec("SELECT MIN(GREATEST(next_try, COALESCE(lease_until, 0))) FROM message_outbox"
                                    " WHERE destination = $1 AND status = 'queued'",
                                    {destination}, "read the next delivery time");
    if (!r.ok()) return r.error();
    if (r->size() == 0 || r->null(0, 0)) return std::optional<std::int64_t>();
    return std::optional<std::int64_t>(r->i64(0, 0));
  }
  Result<std::vector<Delivery>> listDeliveries(const DeliveryFilter& f) override {
    auto lease = acquireReader();
    if (!lease.ok()) return lease.error();
    std::string sql = std::string("SELECT ") + kDeliveryColumns + " FROM message_outbox WHERE TRUE";
    std::vector<Value> params;
    if (!f.destination.empty()) {
      sql += " AND destination = ?";
      params.emplace_back(f.destination);
    }
    if (!f.status.empty()) {
      sql += " AND status = ?";
      params.emplace_back(f.status);
    }
    if (f.beforeId > 0) {
      sql += " AND id < ?";
      params.emplace_back(f.beforeId);
    }
    sql += " ORDER BY id DESC LIMIT ?";
    params.emplace_back(static_cast<std::int64_t>(std::max(1, f.limit)));
    return rows<Delivery>(**lease.value(), kDialect.placeholders(sql), params, deliveryRow, "list deliveries");
  }
  Result<std::vector<DeliveryCounts>> deliveryCounts() override {
    auto lease = acquireReader();
    if (!lease.ok()) return lease.error();
    auto r = (**lease.value()).exec(
        "SELECT destination, COUNT(*) FILTER (WHERE status = 'queued'), COUNT(*) FILTER (WHERE status = 'sent'),"
        " COUNT(*) FILTER (WHERE status = 'dead'), COUNT(*) FILTER (WHERE status = 'cancelled'),"
        " COALESCE(MIN(created) FILTER (WHERE status = 'queued'), 0) FROM message_outbox GROUP BY destination ORDER BY destination",
        {}, "count deliveries");
    if (!r.ok()) return r.error();
    std::vector<DeliveryCounts> out;
    for (int i = 0; i < r->size(); ++i) {
      DeliveryCounts n;
      n.destination = r->text(i, 0);
      n.queued = r->i64(i, 1);
      n.sent = r->i64(i, 2);
      n.dead = r->i64(i, 3);
      n.cancelled = r->i64(i, 4);
      n.oldestQueuedMs = r->i64(i, 5);
      out.push_back(std::move(n));
    }
    return out;
  }

  Result<std::vector<InboxMessage>> scanInbox(std::int64_t afterId, int limit) override {
    auto lease = acquireReader();
    if (!lease.ok()) return lease.error();
    static const std::string sql = std::string("SELECT ") + kInboxColumns + " FROM message_inbox WHERE id > $1 ORDER BY id LIMIT $2";
    return rows<InboxMessage>(**lease.value(), sql, {afterId, static_cast<std::int64_t>(std::max(1, limit))}, inboxRow, "read the inbox");
  }
  Result<std::vector<Delivery>> scanDeliveries(std::int64_t afterId, int limit) override {
    auto lease = acquireReader();
    if (!lease.ok()) return lease.error();
    static const std::string sql = std::string("SELECT ") + kDeliveryColumns + " FROM message_outbox WHERE id > $1 ORDER BY id LIMIT $2";
    return rows<Delivery>(**lease.value(), sql, {afterId, static_cast<std::int64_t>(std::max(1, limit))}, deliveryRow, "read the outbox");
  }

  StoreStats stats() const override {
    std::lock_guard<std::mutex> lock(mutex_);
    StoreStats s = stats_;
    s.changes = s.commits + remoteChanges_.load(std::memory_order_relaxed);
    std::uint64_t failures = 0;
    readLimitCounters(s.searchesPastDeadline, s.searchesAbandoned, failures);
    s.failures = failures;
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
    Lease(PgResourceStore* s, std::unique_ptr<Connection> c) : s_(s), c_(std::move(c)) {}
    ~Lease() {
      if (c_) s_->releaseReader(std::move(c_));
    }
    Connection& operator*() { return *c_; }

   private:
    PgResourceStore* s_;
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
    auto c = Connection::open(url_, true);
    if (!c.ok()) {
      std::lock_guard<std::mutex> relock(readersMutex_);
      --openReaders_;
      readersCv_.notify_one();
      return makeError(ErrorCode::kUnavailable, "cannot open a reader: " + c.error().message);
    }
    return std::make_unique<Lease>(this, std::move(c.value()));
  }
  void releaseReader(std::unique_ptr<Connection> c) {
    {
      std::lock_guard<std::mutex> lock(readersMutex_);
      freeReaders_.push_back(std::move(c));
    }
    readersCv_.notify_one();
  }

  Result<void> migrate() {
    // Gateways started together against one database migrate one after the other.
    auto lock = writer_->exec("SELECT pg_advisory_lock($1)", {kMigrationLock}, "lock for migrations");
    if (!lock.ok()) return lock.error();
    auto r = applyMigrations();
    (void)writer_->exec("SELECT pg_advisory_unlock($1)", {kMigrationLock}, "unlock after migrations");
    return r;
  }

  Result<void> applyMigrations() {
    auto r = writer_->run(
        "CREATE TABLE IF NOT EXISTS schema_migrations (version integer PRIMARY KEY, name text NOT NULL, applied_at bigint NOT NULL)",
        "create schema_migrations");
    if (!r.ok()) return r;
    auto have = writer_->exec("SELECT COALESCE(MAX(version), 0) FROM schema_migrations", {}, "read the schema version");
    if (!have.ok()) return have.error();
    std::int64_t version = have->i64(0, 0);
    for (const Migration& m : postgresqlMigrations()) {
      if (m.version <= version) continue;
      auto b = writer_->run("BEGIN", "begin a migration");
      if (!b.ok()) return b;
      auto e = writer_->run(m.sql, m.name);
      if (e.ok()) {
        auto rec = writer_->exec("INSERT INTO schema_migrations (version, name, applied_at) VALUES ($1, $2, $3)",
                                 {static_cast<std::int64_t>(m.version), std::string(m.name), wallMs()}, "record migration");
        if (!rec.ok()) e = rec.error();
      }
      if (e.ok()) e = writer_->commit();
      if (!e.ok()) {
        (void)writer_->run("ROLLBACK", "rollback a migration");
        return makeError(ErrorCode::kInternal, "migration " + std::to_string(m.version) + " (" + m.name +
                                                   ") failed: " + e.error().message);
      }
      log::info("store.migrated", {{"version", std::to_string(m.version)}, {"name", m.name}});
    }
    return {};
  }

  void writerLoop() {
    std::vector<Job*> batch;
    std::vector<Result<void>> results;
    for (;;) {
      {
        std::unique_lock<std::mutex> lock(mutex_);
        cv_.wait(lock, [&] { return !queue_.empty() || stopping_; });
        if (queue_.empty() && stopping_) return;
        // Optionally give concurrent requests a moment to join this commit.
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

  // BEGIN, on a new connection if the server ended the writer's (nothing was done on it yet).
  Result<void> begin() {
    auto b = writer_->run("BEGIN", "begin");
    if (!b.ok() && writer_->ensureOpen()) b = writer_->run("BEGIN", "begin");
    return b;
  }

  void runBatch(const std::vector<Job*>& batch, std::vector<Result<void>>& results) {
    auto began = begin();
    if (!began.ok()) {
      for (std::size_t i = 0; i < batch.size(); ++i) results.emplace_back(began.error());
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
      WriteTxnImpl txn(*writer_, now, outbox_, instance_, &observer_, &unitEnqueued);
      if (!alone) {
        auto sp = writer_->run("SAVEPOINT unit", "savepoint");
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
        (void)writer_->run("ROLLBACK TO unit", "rollback to savepoint");
        outbox_.resize(outboxMark);
      }
      auto rel = writer_->run("RELEASE unit", "release savepoint");
      if (!rel.ok() && r.ok()) r = rel.error();
      results.push_back(std::move(r));
    }
    if (alone && !results.front().ok()) {
      (void)writer_->run("ROLLBACK", "rollback");
      outbox_.clear();
      return;
    }
    // Audit records the trail holds by now go with this commit.
    std::int64_t release = releaseUpTo_.load();
    bool releasing = release > released_ && !outboxDelete(release).has_value();
    // The other gateways on the database learn of the change at the commit (what they cached from
    // the data is stale).
    bool changed = std::any_of(results.begin(), results.end(), [](const Result<void>& r) { return r.ok(); });
    auto commit = writer_->commit(changed ? announceSql_ : std::string());
    if (!commit.ok()) {
      (void)writer_->run("ROLLBACK", "rollback");
      for (auto& r : results)
        if (r.ok()) r = commit.error();
      outbox_.clear();
      log::error("store.commit_failed", {{"error", commit.error().message}});
      return;
    }
    if (releasing) released(release);
    if (!outbox_.empty() && auditSink_) auditSink_(std::move(outbox_));
    outbox_.clear();
    if (enqueued && deliveryListener_) deliveryListener_();
  }

  // Counts the changes other gateways announce. While the connection is lost, announcements may be
  // missed: one change is counted for each loss, so that caches are dropped, then it reconnects.
  void listenLoop() {
    std::unique_ptr<Connection> c;
    auto stopping = [this] {
      std::lock_guard<std::mutex> lock(mutex_);
      return stopping_;
    };
    while (!stopping()) {
      if (!c) {
        auto o = Connection::open(url_, false);
        if (o.ok() && o.value()->run(std::string("LISTEN ") + kChangesChannel, "listen for changes").ok()) {
          c = std::move(o.value());
          remoteChanges_.fetch_add(1, std::memory_order_relaxed);  // what was announced before now is unknown
        } else {
          std::this_thread::sleep_for(std::chrono::milliseconds(500));
          continue;
        }
      }
      auto n = c->notifications(200);
      if (!n.ok()) {
        log::warn("store.listen_lost", {{"error", n.error().message}});
        c.reset();
        remoteChanges_.fetch_add(1, std::memory_order_relaxed);
        continue;
      }
      for (const auto& from : n.value())
        if (from != instance_) remoteChanges_.fetch_add(1, std::memory_order_relaxed);
    }
  }

  // Deletes the released audit records inside the open transaction; the error, if any. This
  // gateway's own up to `upTo` (it chains its own in id order), and those it adopted at start by id.
  std::optional<Error> outboxDelete(std::int64_t upTo) {
    std::string adopted = "{";
    {
      std::lock_guard<std::mutex> lock(adoptedMutex_);
      for (std::int64_t id : adopted_)
        if (id <= upTo) adopted += (adopted.size() > 1 ? "," : "") + std::to_string(id);
    }
    adopted += "}";
    auto r = writer_->exec("DELETE FROM audit_outbox WHERE (id <= $1 AND owner = $2) OR id = ANY(CAST($3 AS bigint[]))",
                           {upTo, instance_, adopted}, "delete released audit records");
    if (!r.ok()) return r.error();
    return std::nullopt;
  }
  // After the commit that deleted them.
  void released(std::int64_t upTo) {
    released_ = upTo;
    std::lock_guard<std::mutex> lock(adoptedMutex_);
    adopted_.erase(std::remove_if(adopted_.begin(), adopted_.end(), [&](std::int64_t id) { return id <= upTo; }), adopted_.end());
  }

  // At close: the released audit records in a commit of their own.
  Result<void> deleteReleased() {
    std::int64_t release = releaseUpTo_.load();
    if (release <= released_) return {};
    auto b = begin();
    if (!b.ok()) return b;
    if (auto e = outboxDelete(release)) {
      (void)writer_->run("ROLLBACK", "rollback");
      return *e;
    }
    auto c = writer_->commit();
    if (!c.ok()) {
      (void)writer_->run("ROLLBACK", "rollback");
      return c;
    }
    released(release);
    return {};
  }

  std::string url_;
  StoreOptions options_;
  std::unique_ptr<Connection> writer_;
  std::thread thread_;
  std::thread listener_;
  std::atomic<std::uint64_t> remoteChanges_{0};  // changes announced by the other gateways (and losses)
  mutable std::mutex mutex_;
  std::condition_variable cv_;
  std::deque<Job*> queue_;
  bool stopping_ = false;
  StoreStats stats_;
  std::int64_t lastMs_ = 0;

  // Audit records committed with the writes (see WriteTxn::attachAudit).
  std::function<void(std::vector<OutboxRecord>&&)> auditSink_;
  std::vector<OutboxRecord> outbox_;          // writer thread: the commit being made
  std::atomic<std::int64_t> releaseUpTo_{0};  // the trail holds every record up to this id
  std::int64_t released_ = 0;                 // writer thread: deleted up to this id
  std::mutex adoptedMutex_;
  std::vector<std::int64_t> adopted_;  // rows taken at start, not this gateway's: deleted by id
  const std::string instance_ = newInstanceName();
  // NOTIFY with this gateway's name (host name, digits and dashes: nothing to quote).
  const std::string announceSql_ = std::string("NOTIFY ") + kChangesChannel + ", '" + instance_ + "'";

  WriteObserver observer_;  // set before the first write
  std::function<void()> deliveryListener_;

  std::mutex readersMutex_;
  std::condition_variable readersCv_;
  std::vector<std::unique_ptr<Connection>> freeReaders_;
  int openReaders_ = 0;
};

}  // namespace

Result<std::unique_ptr<ResourceStore>> openPgStore(const std::string& url, const StoreOptions& options) {
  auto store = std::make_unique<PgResourceStore>(url, options);
  auto r = store->open();
  if (!r.ok()) return r.error();
  return std::unique_ptr<ResourceStore>(std::move(store));
}

}  // namespace passerelle::store
