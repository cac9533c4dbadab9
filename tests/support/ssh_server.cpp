// A real OpenSSH server for tests (see ssh_server.h).
#include "tests/support/ssh_server.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pwd.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <thread>

#include "tests/support/test_gateway.h"

namespace passerelle::testing {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

const std::string kSshd = "/usr/sbin/sshd";
const std::string kKeygen = "/usr/bin/ssh-keygen";

namespace {

std::string run(const std::string& command) { return runCommand(command); }

}  // namespace

// A TCP port nobody listens on at the time of the call.
int freePort() {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  int port = 0;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0 && ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) == 0)
    port = ntohs(a.sin_port);
  ::close(fd);
  return port;
}

bool acceptsConnections(int port) {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<std::uint16_t>(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bool ok = ::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
  ::close(fd);
  return ok;
}

// True once a connection to the port is answered with an SSH identification line: the daemon
// listens and its child for the connection runs, which a bare TCP connect does not show.
static bool answersSsh(int port) {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return false;
  timeval wait{2, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &wait, sizeof wait);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<std::uint16_t>(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bool ok = false;
  if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0) {
    char banner[4] = {};
    std::size_t got = 0;
    while (got < sizeof banner) {
      ssize_t n = ::recv(fd, banner + got, sizeof banner - got, 0);
      if (n <= 0) break;
      got += static_cast<std::size_t>(n);
    }
    ok = got == sizeof banner && std::string(banner, sizeof banner) == "SSH-";
  }
  ::close(fd);
  return ok;
}

std::vector<pid_t> descendants(pid_t root) {
  std::multimap<pid_t, pid_t> children;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator("/proc", ec)) {
    const std::string name = entry.path().filename().string();
    if (name.find_first_not_of("0123456789") != std::string::npos) continue;
    std::string stat = readFile("/proc/" + name + "/stat");
    auto close = stat.rfind(')');
    if (close == std::string::npos) continue;
    std::istringstream fields(stat.substr(close + 1));
    std::string state;
    pid_t parent = 0;
    fields >> state >> parent;
    children.emplace(parent, static_cast<pid_t>(std::stol(name)));
  }
  std::vector<pid_t> out;
  std::vector<pid_t> todo = {root};
  while (!todo.empty()) {
    pid_t p = todo.back();
    todo.pop_back();
    auto [from, to] = children.equal_range(p);
    for (auto it = from; it != to; ++it) {
      out.push_back(it->second);
      todo.push_back(it->second);
    }
  }
  return out;
}

std::string currentUser() {
  const passwd* pw = ::getpwuid(::geteuid());
  return pw ? pw->pw_name : "";
}

bool SshServer::setUp(std::string& error) {
  for (const char* key : {"host_key", "user_key", "other_key"}) {
    std::string out = run(kKeygen + " -q -t ed25519 -N '' -C test -f " + dir_ + "/" + key);
    if (out.rfind("FAILED", 0) == 0) {
      error = "ssh-keygen: " + out;
      return false;
    }
  }
  std::string printed = run(kKeygen + " -lf " + dir_ + "/host_key.pub");  // "256 SHA256:... test (ED25519)"
  std::istringstream fields(printed);
  std::string bits;
  fields >> bits >> fingerprint_;
  if (fingerprint_.rfind("SHA256:", 0) != 0) {
    error = "ssh-keygen -lf printed: " + printed;
    return false;
  }
  std::ofstream(dir_ + "/authorized_keys") << readFile(dir_ + "/user_key.pub");
  fs::create_directories(dir_ + "/remote");
  port_ = freePort();
  std::ofstream(dir_ + "/sshd_config") << "ListenAddress 127.0.0.1\n"
                                       << "Port " << port_ << "\n"
                                       << "HostKey " << dir_ << "/host_key\n"
                                       << "PidFile " << dir_ << "/sshd.pid\n"
                                       << "AuthorizedKeysFile " << dir_ << "/authorized_keys\n"
                                       << "StrictModes no\n"
                                       << "PasswordAuthentication no\n"
                                       << "KbdInteractiveAuthentication no\n"
                                       << "UsePAM no\n"
                                       << "PermitRootLogin prohibit-password\n"
                                       << "Subsystem sftp internal-sftp\n";
  if (::geteuid() == 0) fs::create_directories("/run/sshd");  // privilege separation, as root
  return start(error);
}

bool SshServer::start(std::string& error, rlim_t maxFileBytes) {
  const std::string log = dir_ + "/sshd.log", config = dir_ + "/sshd_config";
  std::vector<std::string> args = {kSshd, "-D", "-e", "-f", config};
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  pid_ = ::fork();
  if (pid_ == 0) {
    ::setpgid(0, 0);
    if (maxFileBytes > 0) {
      ::signal(SIGXFSZ, SIG_IGN);
      rlimit limit{maxFileBytes, maxFileBytes};
      ::setrlimit(RLIMIT_FSIZE, &limit);
    }
    int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0600);
    if (fd >= 0) {
      ::dup2(fd, 1);
      ::dup2(fd, 2);
    }
    ::execv(argv[0], argv.data());
    ::_exit(127);
  }
  if (pid_ < 0) {
    error = "fork failed";
    return false;
  }
  ::setpgid(pid_, pid_);
  for (auto until = std::chrono::steady_clock::now() + 10s; std::chrono::steady_clock::now() < until; std::this_thread::sleep_for(20ms)) {
    int status = 0;
    if (::waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -1;
      error = "sshd stopped: " + readFile(log);
      return false;
    }
    if (answersSsh(port_)) return true;
  }
  error = "sshd did not listen on port " + std::to_string(port_) + ": " + readFile(log);
  return false;
}

void SshServer::kill() {
  if (pid_ <= 0) return;
  for (int round = 0; round < 2; ++round) {
    std::vector<pid_t> all = descendants(pid_);
    if (round == 0) ::kill(-pid_, SIGKILL);
    for (pid_t p : all) ::kill(p, SIGKILL);
  }
  ::waitpid(pid_, nullptr, 0);
  pid_ = -1;
}

std::string SshServer::knownHostsLine(const std::string& keyFile, int port) const {
  std::istringstream fields(readFile(dir_ + "/" + keyFile));
  std::string type, key;
  fields >> type >> key;
  return "[127.0.0.1]:" + std::to_string(port) + " " + type + " " + key + "\n";
}

}  // namespace passerelle::testing
