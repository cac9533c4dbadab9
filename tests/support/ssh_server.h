// A real OpenSSH server for tests: /usr/sbin/sshd started over a temporary folder on a free
// loopback port, with host and user keys made by ssh-keygen (ed25519), logging in as the current
// user with public keys only, serving SFTP (internal-sftp) from <dir>/remote.
#pragma once

#include <sys/resource.h>
#include <sys/types.h>

#include <string>
#include <vector>

namespace passerelle::testing {

extern const std::string kSshd;    // /usr/sbin/sshd (Debian package openssh-server)
extern const std::string kKeygen;  // /usr/bin/ssh-keygen (openssh-client)

// A TCP port nobody listens on at the time of the call.
int freePort();
bool acceptsConnections(int port);
// The processes descending from `root`, read from /proc.
std::vector<pid_t> descendants(pid_t root);
// The user name of the effective user.
std::string currentUser();

// An OpenSSH server for one test: host and user keys (ed25519), authorized_keys and sshd_config in
// `dir`, files served from `dir`/remote.
class SshServer {
 public:
  explicit SshServer(std::string dir) : dir_(std::move(dir)) {}
  ~SshServer() { kill(); }

  // Keys, configuration and the first start; false with `error`.
  bool setUp(std::string& error);
  // Starts sshd in a process group of its own and waits until it accepts connections. With
  // `maxFileBytes`, it and its processes cannot write files larger than that (EFBIG, as from a
  // quota).
  bool start(std::string& error, rlim_t maxFileBytes = 0);
  // SIGKILL to sshd's process group and to every process it started (the connections' ones, which
  // start sessions of their own).
  void kill();

  int port() const { return port_; }
  const std::string& fingerprint() const { return fingerprint_; }  // "SHA256:..." as ssh-keygen prints it
  const std::string& dir() const { return dir_; }
  std::string remote() const { return dir_ + "/remote"; }
  std::string url() const { return "sftp://127.0.0.1:" + std::to_string(port_) + remote() + "/"; }
  // A known_hosts line for this server with the public key in `keyFile`, for `port`.
  std::string knownHostsLine(const std::string& keyFile, int port) const;

 private:
  std::string dir_;
  std::string fingerprint_;
  int port_ = 0;
  pid_t pid_ = -1;
};

}  // namespace passerelle::testing
