// The connectors' message store on SQLite (tables of migration 0004).
#include "gateway/store/sqlite_messages.h"

namespace passerelle::store::sqlite {
namespace {

constexpr const char* kInboxColumns =
    "id, channel, partner, control_id, type, received, status, ack_code, COALESCE(patient, ''), COALESCE(detail, ''), message, ack";
constexpr const char* kDeliveryColumns =
    "id, destination, order_key, kind, focus, COALESCE(payload, ''), status, attempts, created, next_try, COALESCE(done, 0),"
    " COALESCE(last_error, '')";

InboxMessage inboxRow(const Connection::Statement& s) {
  InboxMessage m;
  m.id = s.i64(0);
  m.channel = s.text(1);
  m.partner = s.text(2);
  m.controlId = s.text(3);
  m.type = s.text(4);
  m.receivedMs = s.i64(5);
  m.status = s.text(6);
  m.ackCode = s.text(7);
  m.patient = s.text(8);
  m.detail = s.text(9);
  m.message = s.text(10);
  m.ack = s.text(11);
  return m;
}

Delivery deliveryRow(const Connection::Statement& s) {
  Delivery d;
  d.id = s.i64(0);
  d.destination = s.text(1);
  d.orderKey = s.text(2);
  d.kind = s.text(3);
  d.focus = s.text(4);
  d.payload = s.text(5);
  d.status = s.text(6);
  d.attempts = static_cast<int>(s.i64(7));
  d.createdMs = s.i64(8);
  d.nextTryMs = s.i64(9);
  d.doneMs = s.i64(10);
  d.lastError = s.text(11);
  return d;
}

template <typename Row, typename Make>
Result<std::vector<Row>> rows(Connection& c, const std::string& sql, const std::vector<Bind>& binds, Make make, const char* what) {
  auto st = c.prepare(sql);
  if (!st.ok()) return st.error();
  (*st)->bindAll(binds);
  std::vector<Row> out;
  for (;;) {
    int rc = (*st)->step();
    if (rc == SQLITE_ROW) out.push_back(make(**st));
    else if (rc == SQLITE_DONE) return out;
    else return sqlError(c.db(), rc, what);
  }
}

}  // namespace

Result<void> insertInbox(Connection& c, InboxMessage& m) {
  auto st = c.prepare(
      "INSERT OR FAIL INTO message_inbox (channel, partner, control_id, type, received, status, ack_code, patient, detail, message, ack)"
      " VALUES (?, ?, ?, ?, ?, ?, ?, NULLIF(?, ''), NULLIF(?, ''), ?, ?)");
  if (!st.ok()) return st.error();
  auto& s = **st;
  s.bind(1, m.channel);
  s.bind(2, m.partner);
  s.bind(3, m.controlId);
  s.bind(4, m.type);
  s.bind(5, m.receivedMs);
  s.bind(6, m.status);
  s.bind(7, m.ackCode);
  s.bind(8, m.patient);
  s.bind(9, m.detail);
  s.bind(10, m.message);
  s.bind(11, m.ack);
  int rc = s.step();
  if (rc != SQLITE_DONE) return sqlError(c.db(), rc, "store a received message");
  m.id = sqlite3_last_insert_rowid(c.db());
  return {};
}

Result<std::optional<InboxMessage>> findInbox(Connection& c, const std::string& partner, const std::string& controlId) {
  // The one taken in if any, else the latest refusal.
  auto r = rows<InboxMessage>(c, std::string("SELECT ") + kInboxColumns +
                                     " FROM message_inbox WHERE partner = ? AND control_id = ?"
                                     " ORDER BY status IN ('processed', 'review') DESC, id DESC LIMIT 1",
                              {partner, controlId}, inboxRow, "read the inbox");
  if (!r.ok()) return r.error();
  if (r->empty()) return std::optional<InboxMessage>();
  return std::optional<InboxMessage>(std::move(r->front()));
}

Result<std::optional<InboxMessage>> inboxById(Connection& c, std::int64_t id) {
  auto r = rows<InboxMessage>(c, std::string("SELECT ") + kInboxColumns + " FROM message_inbox WHERE id = ?", {id}, inboxRow,
                              "read the inbox");
  if (!r.ok()) return r.error();
  if (r->empty()) return std::optional<InboxMessage>();
  return std::optional<InboxMessage>(std::move(r->front()));
}

Result<void> updateInbox(Connection& c, const InboxMessage& m) {
  auto st = c.prepare(
      "UPDATE message_inbox SET status = ?, ack_code = ?, patient = NULLIF(?, ''), detail = NULLIF(?, '') WHERE id = ?");
  if (!st.ok()) return st.error();
  auto& s = **st;
  s.bind(1, m.status);
  s.bind(2, m.ackCode);
  s.bind(3, m.patient);
  s.bind(4, m.detail);
  s.bind(5, m.id);
  int rc = s.step();
  if (rc != SQLITE_DONE) return sqlError(c.db(), rc, "update a received message");
  if (sqlite3_changes(c.db()) != 1) return makeError(ErrorCode::kNotFound, "no received message " + std::to_string(m.id));
  return {};
}

Result<std::vector<InboxMessage>> listInbox(Connection& c, const std::string& status, int limit) {
  std::string sql = std::string("SELECT ") + kInboxColumns + " FROM message_inbox";
  std::vector<Bind> binds;
  if (!status.empty()) {
    sql += " WHERE status = ?";
    binds.emplace_back(status);
  }
  sql += " ORDER BY id DESC LIMIT ?";
  binds.emplace_back(static_cast<std::int64_t>(limit));
  return rows<InboxMessage>(c, sql, binds, inboxRow, "list the inbox");
}

Result<void> insertDelivery(Connection& c, Delivery& d, std::int64_t nowMs) {
  if (d.createdMs == 0) d.createdMs = nowMs;
  if (d.nextTryMs == 0) d.nextTryMs = d.createdMs;
  auto st = c.prepare(
      "INSERT INTO message_outbox (destination, order_key, kind, focus, payload, status, attempts, created, next_try)"
      " VALUES (?, ?, ?, ?, NULLIF(?, ''), ?, ?, ?, ?)");
  if (!st.ok()) return st.error();
  auto& s = **st;
  s.bind(1, d.destination);
  s.bind(2, d.orderKey);
  s.bind(3, d.kind);
  s.bind(4, d.focus);
  s.bind(5, d.payload);
  s.bind(6, d.status);
  s.bind(7, static_cast<std::int64_t>(d.attempts));
  s.bind(8, d.createdMs);
  s.bind(9, d.nextTryMs);
  int rc = s.step();
  if (rc != SQLITE_DONE) return sqlError(c.db(), rc, "queue a delivery");
  d.id = sqlite3_last_insert_rowid(c.db());
  return {};
}

Result<void> saveDelivery(Connection& c, const Delivery& d) {
  auto st = c.prepare(
      "UPDATE message_outbox SET payload = NULLIF(?, ''), status = ?, attempts = ?, next_try = ?, done = NULLIF(?, 0),"
      " last_error = NULLIF(?, '') WHERE id = ?");
  if (!st.ok()) return st.error();
  auto& s = **st;
  s.bind(1, d.payload);
  s.bind(2, d.status);
  s.bind(3, static_cast<std::int64_t>(d.attempts));
  s.bind(4, d.nextTryMs);
  s.bind(5, d.doneMs);
  s.bind(6, d.lastError);
  s.bind(7, d.id);
  int rc = s.step();
  if (rc != SQLITE_DONE) return sqlError(c.db(), rc, "update a delivery");
  if (sqlite3_changes(c.db()) == 0) return makeError(ErrorCode::kNotFound, "no delivery " + std::to_string(d.id));
  return {};
}

Result<std::optional<Delivery>> loadDelivery(Connection& c, std::int64_t id) {
  auto r = rows<Delivery>(c, std::string("SELECT ") + kDeliveryColumns + " FROM message_outbox WHERE id = ?", {id}, deliveryRow,
                          "read a delivery");
  if (!r.ok()) return r.error();
  if (r->empty()) return std::optional<Delivery>();
  return std::optional<Delivery>(std::move(r->front()));
}

Result<std::vector<Delivery>> dueDeliveries(Connection& c, const std::string& destination, std::int64_t nowMs, int limit) {
  // The head of each order key's queue (its oldest queued delivery, found on the index alone); it
  // goes when its time has come (a later one waits for it).
  static const std::string sql = std::string("SELECT ") + kDeliveryColumns +
                                 " FROM message_outbox WHERE id IN (SELECT MIN(id) FROM message_outbox WHERE destination = ?1"
                                 " AND status = 'queued' GROUP BY order_key) AND next_try <= ?2 ORDER BY id LIMIT ?3";
  return rows<Delivery>(c, sql, {destination, nowMs, static_cast<std::int64_t>(limit)}, deliveryRow, "read due deliveries");
}

Result<std::optional<std::int64_t>> nextDeliveryTime(Connection& c, const std::string& destination) {
  auto st = c.prepare("SELECT MIN(next_try) FROM message_outbox WHERE destination = ? AND status = 'queued'");
  if (!st.ok()) return st.error();
  (*st)->bind(1, destination);
  int rc = (*st)->step();
  if (rc != SQLITE_ROW) return sqlError(c.db(), rc, "read the next delivery time");
  if ((*st)->columnType(0) == SQLITE_NULL) return std::optional<std::int64_t>();
  return std::optional<std::int64_t>((*st)->i64(0));
}

Result<std::vector<Delivery>> listDeliveries(Connection& c, const DeliveryFilter& f) {
  std::string sql = std::string("SELECT ") + kDeliveryColumns + " FROM message_outbox WHERE 1 = 1";
  std::vector<Bind> binds;
  if (!f.destination.empty()) {
    sql += " AND destination = ?";
    binds.emplace_back(f.destination);
  }
  if (!f.status.empty()) {
    sql += " AND status = ?";
    binds.emplace_back(f.status);
  }
  if (f.beforeId > 0) {
    sql += " AND id < ?";
    binds.emplace_back(f.beforeId);
  }
  sql += " ORDER BY id DESC LIMIT ?";
  binds.emplace_back(static_cast<std::int64_t>(std::max(1, f.limit)));
  return rows<Delivery>(c, sql, binds, deliveryRow, "list deliveries");
}

Result<std::vector<DeliveryCounts>> deliveryCounts(Connection& c) {
  static const std::string sql =
      "SELECT destination, SUM(status = 'queued'), SUM(status = 'sent'), SUM(status = 'dead'), SUM(status = 'cancelled'),"
      " COALESCE(MIN(CASE WHEN status = 'queued' THEN created END), 0) FROM message_outbox GROUP BY destination ORDER BY destination";
  return rows<DeliveryCounts>(
      c, sql, {},
      [](const Connection::Statement& s) {
        DeliveryCounts n;
        n.destination = s.text(0);
        n.queued = s.i64(1);
        n.sent = s.i64(2);
        n.dead = s.i64(3);
        n.cancelled = s.i64(4);
        n.oldestQueuedMs = s.i64(5);
        return n;
      },
      "count deliveries");
}

Result<std::vector<InboxMessage>> scanInbox(Connection& c, std::int64_t afterId, int limit) {
  static const std::string sql = std::string("SELECT ") + kInboxColumns + " FROM message_inbox WHERE id > ? ORDER BY id LIMIT ?";
  return rows<InboxMessage>(c, sql, {afterId, static_cast<std::int64_t>(std::max(1, limit))}, inboxRow, "read the inbox");
}

Result<std::vector<Delivery>> scanDeliveries(Connection& c, std::int64_t afterId, int limit) {
  static const std::string sql = std::string("SELECT ") + kDeliveryColumns + " FROM message_outbox WHERE id > ? ORDER BY id LIMIT ?";
  return rows<Delivery>(c, sql, {afterId, static_cast<std::int64_t>(std::max(1, limit))}, deliveryRow, "read the outbox");
}

Result<void> copyInbox(Connection& c, const InboxMessage& m) {
  auto st = c.prepare(
      "INSERT OR FAIL INTO message_inbox (id, channel, partner, control_id, type, received, status, ack_code, patient, detail,"
      " message, ack) VALUES (?, ?, ?, ?, ?, ?, ?, ?, NULLIF(?, ''), NULLIF(?, ''), ?, ?)");
  if (!st.ok()) return st.error();
  auto& s = **st;
  s.bind(1, m.id);
  s.bind(2, m.channel);
  s.bind(3, m.partner);
  s.bind(4, m.controlId);
  s.bind(5, m.type);
  s.bind(6, m.receivedMs);
  s.bind(7, m.status);
  s.bind(8, m.ackCode);
  s.bind(9, m.patient);
  s.bind(10, m.detail);
  s.bind(11, m.message);
  s.bind(12, m.ack);
  int rc = s.step();
  if (rc != SQLITE_DONE) return sqlError(c.db(), rc, "copy a received message");
  return {};
}

Result<void> copyDelivery(Connection& c, const Delivery& d) {
  auto st = c.prepare(
      "INSERT OR FAIL INTO message_outbox (id, destination, order_key, kind, focus, payload, status, attempts, created, next_try,"
      " done, last_error) VALUES (?, ?, ?, ?, ?, NULLIF(?, ''), ?, ?, ?, ?, NULLIF(?, 0), NULLIF(?, ''))");
  if (!st.ok()) return st.error();
  auto& s = **st;
  s.bind(1, d.id);
  s.bind(2, d.destination);
  s.bind(3, d.orderKey);
  s.bind(4, d.kind);
  s.bind(5, d.focus);
  s.bind(6, d.payload);
  s.bind(7, d.status);
  s.bind(8, static_cast<std::int64_t>(d.attempts));
  s.bind(9, d.createdMs);
  s.bind(10, d.nextTryMs);
  s.bind(11, d.doneMs);
  s.bind(12, d.lastError);
  int rc = s.step();
  if (rc != SQLITE_DONE) return sqlError(c.db(), rc, "copy a delivery");
  return {};
}

}  // namespace passerelle::store::sqlite
