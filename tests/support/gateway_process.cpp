// Test support implementation.
#include "tests/support/gateway_process.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <regex>
#include <stdexcept>
#include <thread>

#include "tests/support/test_gateway.h"

namespace passerelle::testing {

GatewayProcess::GatewayProcess(const std::string& dataDir, const std::vector<std::string>& sets) : dataDir_(dataDir) {
  std::vector<std::string> args = {PASSERELLE_BINARY, "serve", "--config", "/dev/null", "--set", "http.port=0", "--set", "https.port=0",
                                   "--set", "data.dir=" + dataDir};
  for (const auto& s : sets) args.insert(args.end(), {"--set", s});
  std::string out = dataDir + "/serve.out", err = dataDir + "/serve.err";
  pid_ = ::fork();
  if (pid_ < 0) throw std::runtime_error("fork failed");
  if (pid_ == 0) {
    int o = ::open(out.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
    int e = ::open(err.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
    ::dup2(o, 1);
    ::dup2(e, 2);
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    ::execv(argv[0], argv.data());
    ::_exit(127);
  }
  std::regex ready("passerelle listening: http=[^:]+:(\\d+) https=[^ ]+(?: mllp=[^:]+:(\\d+))?");
  for (auto end = std::chrono::steady_clock::now() + std::chrono::seconds(60); std::chrono::steady_clock::now() < end;) {
    std::smatch m;
    std::string text = readFile(out);
    if (std::regex_search(text, m, ready)) {
      httpPort_ = std::stoi(m[1]);
      if (m[2].matched) mllpPort_ = std::stoi(m[2]);
      return;
    }
    int status = 0;
    if (::waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -1;
      throw std::runtime_error("the gateway exited at start: " + log());
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  ::kill(pid_, SIGKILL);
  ::waitpid(pid_, nullptr, 0);
  pid_ = -1;
  throw std::runtime_error("the gateway did not start within 60 s: " + log());
}

GatewayProcess::~GatewayProcess() {
  if (pid_ > 0) {
    ::kill(pid_, SIGKILL);
    ::waitpid(pid_, nullptr, 0);
  }
}

int GatewayProcess::stop() {
  if (pid_ <= 0) return -1;
  ::kill(pid_, SIGTERM);
  int status = 0;
  for (int i = 0; i < 600; ++i) {
    if (::waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -1;
      return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  ::kill(pid_, SIGKILL);
  ::waitpid(pid_, &status, 0);
  pid_ = -1;
  return 128 + SIGKILL;
}

std::string GatewayProcess::log() const { return readFile(dataDir_ + "/serve.err"); }

}  // namespace passerelle::testing
