// A PostgreSQL connection with prepared statements (see pg_connection.h).
#include "gateway/store/pg_connection.h"

#include <endian.h>
#include <libpq-fe.h>
#include <poll.h>

#include <cstdlib>
#include <cstring>

namespace passerelle::store::pg {
namespace {

// Type OIDs of the parameters (catalog/pg_type.h, which only the server's headers have).
constexpr Oid kInt8 = 20, kFloat8 = 701, kText = 25, kBytea = 17;

// Prepared statements kept per connection before they are all deallocated and prepared anew.
constexpr std::size_t kMaxPrepared = 512;

std::string trimmed(const char* m) {
  std::string s = m ? m : "";
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
  return s;
}

void appendBigEndian(std::string& out, std::uint64_t v) {
  v = htobe64(v);
  out.append(reinterpret_cast<const char*>(&v), sizeof v);
}

}  // namespace

Rows::Rows(pg_result* r) : r_(r) {}
Rows::Rows(Rows&& o) noexcept : r_(o.r_) { o.r_ = nullptr; }
Rows& Rows::operator=(Rows&& o) noexcept {
  if (this != &o) {
    if (r_) PQclear(r_);
    r_ = o.r_;
    o.r_ = nullptr;
  }
  return *this;
}
Rows::~Rows() {
  if (r_) PQclear(r_);
}
int Rows::size() const { return r_ ? PQntuples(r_) : 0; }
int Rows::columns() const { return r_ ? PQnfields(r_) : 0; }
bool Rows::null(int row, int col) const { return PQgetisnull(r_, row, col) != 0; }
std::int64_t Rows::i64(int row, int col) const { return null(row, col) ? 0 : std::strtoll(PQgetvalue(r_, row, col), nullptr, 10); }
double Rows::real(int row, int col) const { return null(row, col) ? 0 : std::strtod(PQgetvalue(r_, row, col), nullptr); }
std::string Rows::text(int row, int col) const {
  if (null(row, col)) return std::string();
  const char* v = PQgetvalue(r_, row, col);
  if (PQftype(r_, col) == kBytea) {
    std::size_t n = 0;
    unsigned char* raw = PQunescapeBytea(reinterpret_cast<const unsigned char*>(v), &n);
    if (!raw) return std::string();
    std::string out(reinterpret_cast<const char*>(raw), n);
    PQfreemem(raw);
    return out;
  }
  return std::string(v, static_cast<std::size_t>(PQgetlength(r_, row, col)));
}
std::int64_t Rows::affected() const {
  const char* n = r_ ? PQcmdTuples(r_) : "";
  return *n ? std::strtoll(n, nullptr, 10) : 0;
}

Result<std::unique_ptr<Connection>> Connection::open(const std::string& url, bool reader) {
  pg_conn* c = PQconnectdb(url.c_str());
  if (!c) return makeError(ErrorCode::kUnavailable, "database: cannot allocate a connection");
  if (PQstatus(c) != CONNECTION_OK) {
    std::string m = trimmed(PQerrorMessage(c));
    PQfinish(c);
    countDatabaseFailure();
    return makeError(ErrorCode::kUnavailable, "database: cannot connect: " + m);
  }
  std::unique_ptr<Connection> conn(new Connection(url, c, reader));
  if (auto r = conn->configure(); !r.ok()) return r.error();
  return conn;
}

Result<void> Connection::configure() {
  // Statements are prepared once per connection and run with their own values each time. By
  // default PostgreSQL plans each run again for its values (a custom plan) as long as that looks
  // cheaper than one generic plan, and the planning then costs more than running the lookup
  // (0.2 ms against 0.05 ms for a search by identifier). The store's statements are shaped by the
  // gateway (it picks the driving index itself), so their generic plans are kept.
  return run("SET plan_cache_mode = force_generic_plan", "configure the session");
}

Connection::~Connection() {
  if (conn_) PQfinish(conn_);
}

bool Connection::broken() const { return PQstatus(conn_) != CONNECTION_OK; }

bool Connection::reconnect() {
  PQreset(conn_);
  // A new server connection: the statements prepared on the old one are gone, and its settings.
  prepared_.clear();
  return PQstatus(conn_) == CONNECTION_OK && configure().ok();
}

bool Connection::ensureOpen() { return !broken() || reconnect(); }

Error Connection::error(pg_result* r, const char* what) {
  const char* state = r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : nullptr;
  std::string message = std::string("database: ") + what + ": " + trimmed(r ? PQresultErrorMessage(r) : PQerrorMessage(conn_));
  if (r) PQclear(r);
  std::string code = state ? state : "";
  // Class 23: integrity constraint violation (a unique key taken). Class 40: a transaction that
  // another one ran into (a deadlock between two gateways' writes): a conflict, not a failure.
  if (code.rfind("23", 0) == 0 || code.rfind("40", 0) == 0) return makeError(ErrorCode::kConflict, message);
  countDatabaseFailure();
  return makeError(code == "53100" ? ErrorCode::kStorageFull : ErrorCode::kUnavailable, message);
}

Result<Rows> Connection::exec(const std::string& sql, const std::vector<Value>& params, const char* what) {
  auto r = execOnce(sql, params, what);
  // A reader's statement changes nothing: when it failed because the connection was lost (the
  // server restarted, or ended idle connections), it runs once more on a new one.
  if (!r.ok() && reader_ && r.error().code != ErrorCode::kTimeout && broken() && reconnect())
    r = execOnce(sql, params, what);
  return r;
}

Result<Rows> Connection::execOnce(const std::string& sql, const std::vector<Value>& params, const char* what) {
  std::string kinds;
  std::vector<Oid> types;
  std::vector<std::string> buffers;
  buffers.reserve(params.size());
  for (const auto& p : params) {
    std::string b;
    if (const auto* i = std::get_if<std::int64_t>(&p)) {
      kinds += 'i';
      types.push_back(kInt8);
      appendBigEndian(b, static_cast<std::uint64_t>(*i));
    } else if (const auto* d = std::get_if<double>(&p)) {
      kinds += 'r';
      types.push_back(kFloat8);
      std::uint64_t bits;
      std::memcpy(&bits, d, sizeof bits);
      appendBigEndian(b, bits);
    } else if (const auto* s = std::get_if<std::string>(&p)) {
      kinds += 's';
      types.push_back(kText);
      b = *s;
    } else {
      kinds += 'b';
      types.push_back(kBytea);
      b = std::get<Bytes>(p).data;
    }
    buffers.push_back(std::move(b));
  }
  std::vector<const char*> values;
  std::vector<int> lengths, formats;
  for (const auto& b : buffers) {
    values.push_back(b.data());
    lengths.push_back(static_cast<int>(b.size()));
    formats.push_back(1);
  }
  std::string key = kinds + '\x1f' + sql;
  auto it = prepared_.find(key);
  if (it == prepared_.end()) {
    if (prepared_.size() >= kMaxPrepared) {
      auto d = run("DEALLOCATE ALL", "deallocate statements");
      if (!d.ok()) return d.error();
      prepared_.clear();
    }
    std::string name = "p" + std::to_string(++nextName_);
    pg_result* pr = PQprepare(conn_, name.c_str(), sql.c_str(), static_cast<int>(types.size()), types.data());
    if (!pr || PQresultStatus(pr) != PGRES_COMMAND_OK) return error(pr, what);
    PQclear(pr);
    it = prepared_.emplace(key, name).first;
  }
  const char* name = it->second.c_str();
  int n = static_cast<int>(values.size());
  pg_result* res = nullptr;
  if (reader_ && readLimitActive()) {
    // A long read is sent, then waited for a few milliseconds at a time, so that it can be
    // cancelled as soon as its deadline passes or its client goes away.
    if (readLimitReached()) return readStoppedError();
    if (!PQsendQueryPrepared(conn_, name, n, values.data(), lengths.data(), formats.data(), 0)) return error(nullptr, what);
    bool cancelled = false;
    while (PQconsumeInput(conn_) && PQisBusy(conn_)) {
      pollfd p{PQsocket(conn_), POLLIN, 0};
      ::poll(&p, 1, 2);
      if (!cancelled && readLimitReached()) {
        if (PGcancel* c = PQgetCancel(conn_)) {
          char buf[256];
          PQcancel(c, buf, sizeof buf);
          PQfreeCancel(c);
        }
        cancelled = true;
      }
    }
    // The results until the last; the first failure is kept.
    pg_result* failed = nullptr;
    for (pg_result* r = PQgetResult(conn_); r; r = PQgetResult(conn_)) {
      ExecStatusType st = PQresultStatus(r);
      if (st != PGRES_TUPLES_OK && st != PGRES_COMMAND_OK) {
        if (failed) PQclear(r);
        else failed = r;
      } else {
        if (res) PQclear(res);
        res = r;
      }
    }
    if (failed) {
      if (res) PQclear(res);
      res = failed;
    }
    if (cancelled) {
      if (res) PQclear(res);
      return readStoppedError();
    }
  } else {
    res = PQexecPrepared(conn_, name, n, values.data(), lengths.data(), formats.data(), 0);
  }
  if (!res) return error(nullptr, what);
  ExecStatusType st = PQresultStatus(res);
  if (st != PGRES_TUPLES_OK && st != PGRES_COMMAND_OK) return error(res, what);
  return Rows(res);
}

Result<void> Connection::run(const std::string& sql, const char* what) {
  pg_result* r = PQexec(conn_, sql.c_str());
  if (!r) return error(nullptr, what);
  ExecStatusType st = PQresultStatus(r);
  if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) return error(r, what);
  PQclear(r);
  return {};
}

Result<std::vector<std::string>> Connection::notifications(int timeoutMs) {
  std::vector<std::string> out;
  auto drain = [&] {
    while (PGnotify* n = PQnotifies(conn_)) {
      out.emplace_back(n->extra ? n->extra : "");
      PQfreemem(n);
    }
  };
  if (broken()) return makeError(ErrorCode::kUnavailable, "database: the listening connection is lost");
  drain();
  if (!out.empty()) return out;
  pollfd p{PQsocket(conn_), POLLIN, 0};
  if (::poll(&p, 1, timeoutMs) > 0) {
    if (!PQconsumeInput(conn_))
      return makeError(ErrorCode::kUnavailable, "database: the listening connection is lost: " + trimmed(PQerrorMessage(conn_)));
    drain();
  }
  return out;
}

Result<void> Connection::commit(const std::string& first) {
  // One round trip for both: a simple query may hold several statements; its result is the last's.
  pg_result* r = PQexec(conn_, first.empty() ? "COMMIT" : (first + "; COMMIT").c_str());
  if (!r) return error(nullptr, "commit");
  if (PQresultStatus(r) != PGRES_COMMAND_OK) return error(r, "commit");
  // COMMIT of a transaction in which a statement failed answers ROLLBACK.
  bool committed = std::strcmp(PQcmdStatus(r), "COMMIT") == 0;
  PQclear(r);
  if (!committed) {
    countDatabaseFailure();
    return makeError(ErrorCode::kUnavailable, "database: commit: the transaction was rolled back (a statement in it had failed)");
  }
  return {};
}

}  // namespace passerelle::store::pg
