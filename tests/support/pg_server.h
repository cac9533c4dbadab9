// A throw-away PostgreSQL 15 cluster for tests: initdb into a temporary folder, then the server
// on a free port of 127.0.0.1 only (no Unix socket), trust authentication for loopback, fsync on.
// As root (initdb refuses to run as root) the cluster belongs to the unprivileged user `nobody`.
// Not thread-safe: one test thread drives it.
#pragma once

#include <sys/types.h>

#include <memory>
#include <string>
#include <vector>

namespace passerelle::testing {

class TempDir;

// The folder of initdb, postgres and psql: $PASSERELLE_PG_BIN, else /usr/lib/postgresql/15/bin
// (Debian package postgresql-15).
std::string pgBin();

class PgServer {
 public:
  PgServer();
  ~PgServer();  // stops the server at once (SIGKILL to its whole process group if it does not stop)
  PgServer(const PgServer&) = delete;
  PgServer& operator=(const PgServer&) = delete;

  // Whether initdb and postgres are installed (and, as root, whether `nobody` exists).
  static bool available();
  // What a skipped test says when available() is false.
  static std::string unavailableReason();

  // initdb on the first call, then the server; waits until it accepts connections. False with `error`.
  bool start(std::string& error);
  // Fast shutdown (clients are disconnected), waiting until the server has exited.
  void stop();
  // Fast shutdown and start again on the same data and port.
  bool restart(std::string& error);
  bool running() const { return pid_ > 0; }
  pid_t pid() const { return pid_; }  // the postmaster's

  int port() const { return port_; }
  const std::string& user() const { return user_; }
  // postgresql://USER@127.0.0.1:PORT/DB
  std::string url(const std::string& database = "postgres") const;
  // Creates a new, empty database and returns its URL ("" with `error` on failure).
  std::string createDatabase(std::string& error);
  // Runs one SQL statement in `database` through psql; its output (unaligned, tuples only), or
  // "FAILED..." as runCommand gives it.
  std::string psql(const std::string& database, const std::string& sql) const;

  // The server shared by the tests of this process, started on first use (nullptr with `error`).
  static PgServer* shared(std::string& error);
  // A new, empty database of the shared server; "" with the reason in `skip` when PostgreSQL is not
  // installed. Throws when it is installed but cannot be started (a test must fail then, not skip).
  static std::string freshDatabase(std::string& skip);

 private:
  pid_t spawn(const std::vector<std::string>& args, const std::string& log, bool ownGroup);
  void shutdown(int signal);
  void kill();

  std::unique_ptr<TempDir> dir_;
  std::string user_;
  uid_t uid_ = 0;
  gid_t gid_ = 0;
  bool initialised_ = false;
  int port_ = 0;
  pid_t pid_ = -1;
  int databases_ = 0;
};

}  // namespace passerelle::testing
