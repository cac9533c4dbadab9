// Test support: the real `passerelle serve` binary run as a child process (several gateways on
// one database are several processes), its output kept in files of its data folder.
#pragma once

#include <sys/types.h>

#include <string>
#include <vector>

namespace passerelle::testing {

class GatewayProcess {
 public:
  // Starts `passerelle serve --config /dev/null` with data.dir=`dataDir`, ports 0 and the extra
  // "key=value" settings; waits (up to 60 s) for its "passerelle listening:" line. Throws with the
  // process's standard error when it does not come.
  GatewayProcess(const std::string& dataDir, const std::vector<std::string>& sets);
  ~GatewayProcess();  // SIGKILL if still running
  GatewayProcess(const GatewayProcess&) = delete;
  GatewayProcess& operator=(const GatewayProcess&) = delete;

  int httpPort() const { return httpPort_; }
  int mllpPort() const { return mllpPort_; }
  const std::string& dataDir() const { return dataDir_; }
  pid_t pid() const { return pid_; }
  // SIGTERM, then waits for the exit (SIGKILL after 30 s): the exit status (128 + signal when killed).
  int stop();
  // What it wrote on its standard error so far.
  std::string log() const;

 private:
  std::string dataDir_;
  pid_t pid_ = -1;
  int httpPort_ = 0, mllpPort_ = 0;
};

}  // namespace passerelle::testing
