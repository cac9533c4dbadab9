// Runs a fuzz target without libFuzzer (for compilers without -fsanitize=fuzzer): every file of
// the given folders as is, then deterministic mutations of them (bit flips, truncation, byte
// insertion and deletion, splicing), for a bounded number of rounds. Used as a regression test.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size);

int main(int argc, char** argv) {
  std::vector<std::string> seeds;
  long rounds = 2000;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a.rfind("--rounds=", 0) == 0) {
      rounds = std::strtol(a.c_str() + 9, nullptr, 10);
      continue;
    }
    std::error_code ec;
    if (!std::filesystem::exists(a, ec)) {
      std::printf("seed folder %s is absent: skipped\n", a.c_str());
      continue;
    }
    for (const auto& f : std::filesystem::recursive_directory_iterator(a, ec)) {
      if (!f.is_regular_file()) continue;
      std::ifstream in(f.path(), std::ios::binary);
      std::ostringstream ss;
      ss << in.rdbuf();
      seeds.push_back(ss.str());
    }
  }
  if (seeds.empty()) seeds.push_back("{}");
  for (const auto& s : seeds) LLVMFuzzerTestOneInput(reinterpret_cast<const std::uint8_t*>(s.data()), s.size());
  std::mt19937_64 rng(20261123);
  for (long r = 0; r < rounds; ++r) {
    std::string s = seeds[rng() % seeds.size()];
    int edits = 1 + static_cast<int>(rng() % 8);
    for (int e = 0; e < edits && !s.empty(); ++e) {
      std::size_t pos = rng() % s.size();
      switch (rng() % 5) {
        case 0: s[pos] = static_cast<char>(s[pos] ^ (1u << (rng() % 8))); break;
        case 1: s.resize(pos); break;
        case 2: s.insert(pos, 1, "{}[]\",:\\0-.eE\x80\xff"[rng() % 16]); break;
        case 3: s.erase(pos, 1 + rng() % 16); break;
        case 4: {
          const std::string& other = seeds[rng() % seeds.size()];
          if (!other.empty()) s.insert(pos, other.substr(rng() % other.size(), 1 + rng() % 64));
          break;
        }
      }
    }
    LLVMFuzzerTestOneInput(reinterpret_cast<const std::uint8_t*>(s.data()), s.size());
  }
  std::printf("%zu seeds and %ld mutations ran without a crash\n", seeds.size(), rounds);
  return 0;
}
