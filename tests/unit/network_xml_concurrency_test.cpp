// The XML form under concurrency, on a cold start: each round forks a process that has never parsed
// XML, then parses from 16 threads at once. Under the benchmark's load (16 concurrent XML CIEDs on
// a freshly started gateway) xerces-c aborted in RangeToken::doCreateMap in 4 starts out of 10: it
// builds a grammar's pattern maps lazily inside the shared grammar. Parses are now serialised per
// grammar. This test did not reproduce the abort without the guard; it checks that concurrent cold
// parses all succeed.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <thread>
#include <vector>

#include "mappings/network/documents/xml_form.h"

namespace passerelle::network {
namespace {

std::string readFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

TEST(NetworkXmlConcurrencyTest, SixteenThreadsParseAtOnceFromAColdStart) {
  const std::vector<std::string> kinds = {"cied", "csb", "inclusion", "opera-enrolment"};
  std::vector<std::string> texts;
  for (const auto& k : kinds) texts.push_back(readFile(std::string(PASSERELLE_NETWORK_EXAMPLES) + "/" + k + ".xml"));
  for (int round = 0; round < 8; ++round) {
    pid_t pid = fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      std::atomic<int> ready{0}, failures{0};
      std::vector<std::thread> threads;
      for (int t = 0; t < 16; ++t)
        threads.emplace_back([&, t] {
          ready.fetch_add(1);
          while (ready.load() < 16) std::this_thread::yield();
          for (int i = 0; i < 5; ++i) {
            std::size_t k = static_cast<std::size_t>(t + i) % kinds.size();
            Json out;
            std::vector<DocumentIssue> issues;
            if (!xmlToJson(kinds[k], texts[k], out, issues)) failures.fetch_add(1);
          }
        });
      for (auto& th : threads) th.join();
      _exit(failures.load() == 0 ? 0 : 1);
    }
    int status = 0;
    ASSERT_EQ(waitpid(pid, &status, 0), pid);
    ASSERT_TRUE(WIFEXITED(status)) << "round " << round << ": the process died (signal " << WTERMSIG(status) << ")";
    EXPECT_EQ(WEXITSTATUS(status), 0) << "round " << round << ": a document was refused";
  }
}

}  // namespace
}  // namespace passerelle::network
