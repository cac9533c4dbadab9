// A throw-away PostgreSQL cluster for tests (see pg_server.h).
#include "tests/support/pg_server.h"

#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <stdexcept>
#include <thread>

#include "tests/support/ssh_server.h"
#include "tests/support/test_gateway.h"

namespace passerelle::testing {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

std::string pgBin() {
  const char* env = std::getenv("PASSERELLE_PG_BIN");
  return env && *env ? env : "/usr/lib/postgresql/15/bin";
}

namespace {

// initdb and postgres refuse to run as root: as root the cluster runs as this user.
constexpr const char* kUnprivileged = "nobody";

bool executable(const std::string& path) { return ::access(path.c_str(), X_OK) == 0; }

std::string shellQuote(const std::string& s) {
  std::string out = "'";
  for (char ch : s) {
    if (ch == '\'') out += "'\\''";
    else out += ch;
  }
  return out + "'";
}

}  // namespace

PgServer::PgServer() = default;

PgServer::~PgServer() {
  // Immediate shutdown: the data is thrown away, so no shutdown checkpoint (which, with fsync on,
  // would write out every database the tests made); the server still removes its shared memory.
  shutdown(SIGQUIT);
  kill();
}

bool PgServer::available() { return unavailableReason().empty(); }

std::string PgServer::unavailableReason() {
  for (const char* tool : {"initdb", "postgres", "psql"})
    if (!executable(pgBin() + "/" + tool))
      return pgBin() + "/" + tool + " is not installed (Debian package postgresql, see scripts/install-deps.sh)";
  if (::geteuid() == 0 && !::getpwnam(kUnprivileged))
    return std::string("running as root and there is no user '") + kUnprivileged + "' to run PostgreSQL as";
  return "";
}

pid_t PgServer::spawn(const std::vector<std::string>& args, const std::string& log, bool ownGroup) {
  std::vector<std::string> copy = args;
  std::vector<char*> argv;
  for (auto& a : copy) argv.push_back(a.data());
  argv.push_back(nullptr);
  bool drop = ::geteuid() == 0;
  pid_t pid = ::fork();
  if (pid == 0) {
    if (ownGroup) ::setpgid(0, 0);
    int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (fd >= 0) {
      ::dup2(fd, 1);
      ::dup2(fd, 2);
    }
    if (drop && (::setgroups(0, nullptr) != 0 || ::setgid(gid_) != 0 || ::setuid(uid_) != 0)) ::_exit(126);
    // Set after the change of user, which clears it: should the test process die without its
    // destructors (a crash, a ctest timeout), the server shuts down at once instead of staying.
    if (ownGroup) ::prctl(PR_SET_PDEATHSIG, SIGQUIT);
    if (::chdir(dir_->path().c_str()) != 0) ::_exit(126);
    ::execv(argv[0], argv.data());
    ::_exit(127);
  }
  if (pid > 0 && ownGroup) ::setpgid(pid, pid);
  return pid;
}

bool PgServer::start(std::string& error) {
  if (pid_ > 0) return true;
  std::string why = unavailableReason();
  if (!why.empty()) {
    error = why;
    return false;
  }
  if (!dir_) {
    dir_ = std::make_unique<TempDir>();
    if (::geteuid() == 0) {
      const passwd* pw = ::getpwnam(kUnprivileged);
      uid_ = pw->pw_uid;
      gid_ = pw->pw_gid;
      user_ = kUnprivileged;
      if (::chown(dir_->path().c_str(), uid_, gid_) != 0) {
        error = "cannot give " + dir_->path() + " to " + user_;
        return false;
      }
    } else {
      user_ = currentUser();
    }
  }
  const std::string data = dir_->path() + "/data", log = dir_->path() + "/server.log";
  if (!initialised_) {
    // --no-sync: the new cluster's files need not reach the disk before the server starts (it is
    // thrown away with the test); the server itself runs with fsync on, as in production.
    pid_t p = spawn({pgBin() + "/initdb", "-D", data, "-U", user_, "--auth=trust", "-E", "UTF8", "--locale=C", "--no-sync"},
                    dir_->path() + "/initdb.log", false);
    int status = 0;
    if (p < 0 || ::waitpid(p, &status, 0) != p || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
      error = "initdb failed: " + readFile(dir_->path() + "/initdb.log");
      return false;
    }
    initialised_ = true;
    port_ = freePort();
  }
  pid_ = spawn({pgBin() + "/postgres", "-D", data, "-p", std::to_string(port_), "-c", "listen_addresses=127.0.0.1",
                "-c", "unix_socket_directories=", "-c", "fsync=on", "-c", "synchronous_commit=on", "-c", "max_connections=200"},
               log, true);
  if (pid_ < 0) {
    error = "fork failed";
    return false;
  }
  for (auto until = std::chrono::steady_clock::now() + 30s; std::chrono::steady_clock::now() < until; std::this_thread::sleep_for(20ms)) {
    int status = 0;
    if (::waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -1;
      error = "postgres stopped: " + readFile(log);
      return false;
    }
    // Accepting TCP is not enough: during start-up the server answers "the database system is
    // starting up".
    if (acceptsConnections(port_) && psql("postgres", "SELECT 1").rfind("1", 0) == 0) return true;
  }
  error = "postgres did not accept connections on port " + std::to_string(port_) + ": " + readFile(log);
  kill();
  return false;
}

void PgServer::stop() { shutdown(SIGINT); }

void PgServer::shutdown(int signal) {
  if (pid_ <= 0) return;
  // SIGINT: fast shutdown (clients are disconnected, a checkpoint is written); SIGQUIT: immediate.
  ::kill(pid_, signal);
  for (auto until = std::chrono::steady_clock::now() + 30s; std::chrono::steady_clock::now() < until; std::this_thread::sleep_for(10ms)) {
    if (::waitpid(pid_, nullptr, WNOHANG) == pid_) {
      pid_ = -1;
      break;
    }
  }
  kill();
}

void PgServer::kill() {
  if (pid_ <= 0) return;
  std::vector<pid_t> all = descendants(pid_);
  ::kill(-pid_, SIGKILL);
  for (pid_t p : all) ::kill(p, SIGKILL);
  ::waitpid(pid_, nullptr, 0);
  pid_ = -1;
}

bool PgServer::restart(std::string& error) {
  stop();
  return start(error);
}

std::string PgServer::url(const std::string& database) const {
  return "postgresql://" + user_ + "@127.0.0.1:" + std::to_string(port_) + "/" + database;
}

std::string PgServer::createDatabase(std::string& error) {
  std::string name = "test_" + std::to_string(::getpid()) + "_" + std::to_string(++databases_);
  std::string out = psql("postgres", "CREATE DATABASE " + name);
  if (out.rfind("FAILED", 0) == 0) {
    error = "CREATE DATABASE " + name + ": " + out;
    return "";
  }
  return url(name);
}

std::string PgServer::psql(const std::string& database, const std::string& sql) const {
  return runCommand("PGCONNECT_TIMEOUT=5 " + pgBin() + "/psql -X -q -A -t -v ON_ERROR_STOP=1 -h 127.0.0.1 -p " +
                    std::to_string(port_) + " -U " + shellQuote(user_) + " -d " + shellQuote(database) + " -c " + shellQuote(sql));
}

std::string PgServer::freshDatabase(std::string& skip) {
  if (!available()) {
    skip = "PostgreSQL is not available: " + unavailableReason();
    return "";
  }
  std::string error;
  PgServer* server = shared(error);
  if (!server) throw std::runtime_error("cannot start PostgreSQL: " + error);
  std::string url = server->createDatabase(error);
  if (url.empty()) throw std::runtime_error(error);
  return url;
}

PgServer* PgServer::shared(std::string& error) {
  // Destroyed at exit, which stops the server.
  static std::unique_ptr<PgServer> server;
  if (!server) server = std::make_unique<PgServer>();
  if (!server->running() && !server->start(error)) return nullptr;
  return server.get();
}

}  // namespace passerelle::testing
