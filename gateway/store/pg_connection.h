// A PostgreSQL connection (libpq) with a cache of prepared statements, and its results. Internal
// to the store library; libpq's header stays in the .cpp files.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <unordered_map>
#include <variant>
#include <vector>

#include "gateway/common/status.h"
#include "gateway/store/sql_dialect.h"

struct pg_conn;
struct pg_result;

namespace passerelle::store::pg {

// Bytes for a bytea column (a message as received, an audit record): sent and read unchanged.
struct Bytes {
  std::string data;
};

// A statement parameter. Every kind is sent in binary form: text of any content keeps its length
// (nothing is cut at a NUL byte or re-parsed), numbers keep every bit.
using Value = std::variant<std::int64_t, std::string, double, Bytes>;

// A statement's result, rows in text form (bytea columns decoded).
class Rows {
 public:
  Rows() = default;
  explicit Rows(pg_result* r);
  Rows(Rows&&) noexcept;
  Rows& operator=(Rows&&) noexcept;
  ~Rows();
  int size() const;
  int columns() const;
  bool null(int row, int col) const;
  std::int64_t i64(int row, int col) const;
  double real(int row, int col) const;
  std::string text(int row, int col) const;
  // Rows changed by an INSERT/UPDATE/DELETE.
  std::int64_t affected() const;

 private:
  pg_result* r_ = nullptr;
};

// One row of Rows as the shared search code reads it.
class RowView : public SqlRow {
 public:
  RowView(const Rows& rows, int row) : rows_(rows), row_(row) {}
  int columns() const override { return rows_.columns(); }
  std::int64_t i64(int col) const override { return rows_.i64(row_, col); }
  double real(int col) const override { return rows_.real(row_, col); }
  std::string text(int col) const override { return rows_.text(row_, col); }

 private:
  const Rows& rows_;
  int row_;
};

// One connection. Not thread-safe: used by one thread at a time.
class Connection {
 public:
  // Connects to `url` (postgresql://user@host:port/db or any libpq connection string). With
  // `reader`, statements honour the calling thread's SearchLimit and a statement that fails
  // because the connection broke (the server restarted) is run once more on a new connection.
  static Result<std::unique_ptr<Connection>> open(const std::string& url, bool reader);
  ~Connection();
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  // Runs `sql` ($1, $2... placeholders) as a statement prepared once per connection.
  Result<Rows> exec(const std::string& sql, const std::vector<Value>& params, const char* what);
  // Runs SQL without parameters (one or more statements: BEGIN, SAVEPOINT, a migration...).
  Result<void> run(const std::string& sql, const char* what);
  // COMMIT, telling a commit from the rollback that ends a transaction a statement failed in.
  // `first`: a statement without parameters run just before, in the same round trip.
  Result<void> commit(const std::string& first = "");
  // Whether the connection is known to be lost; reconnects it if so (true when usable).
  bool ensureOpen();
  // After LISTEN on this connection: the payloads of the notifications received, waiting up to
  // `timeoutMs` for the first; an error when the connection is lost.
  Result<std::vector<std::string>> notifications(int timeoutMs);

 private:
  Connection(std::string url, pg_conn* conn, bool reader) : url_(std::move(url)), conn_(conn), reader_(reader) {}
  Result<void> configure();
  Result<Rows> execOnce(const std::string& sql, const std::vector<Value>& params, const char* what);
  Error error(pg_result* r, const char* what);
  bool broken() const;
  bool reconnect();

  std::string url_;
  pg_conn* conn_;
  bool reader_;
  // Statements prepared on this server connection, by SQL text and parameter kinds.
  std::unordered_map<std::string, std::string> prepared_;
  int nextName_ = 0;
};

}  // namespace passerelle::store::pg
