// Fuzz target: the MLLP decoder on any byte stream, fed in pieces: it never crashes, never hands
// out a frame over its limit or one holding a framing byte, and gives the same frames whatever
// the pieces; frames of the messages it found, framed again, decode to themselves.
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "connectors/mllp/mllp_framer.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace passerelle::mllp;
  std::string_view bytes(reinterpret_cast<const char*>(data), size);
  constexpr std::size_t kMax = 1024;
  auto run = [&](std::size_t piece) {
    std::vector<std::string> frames;
    MllpDecoder d(kMax, {[&](std::string_view f) { frames.emplace_back(f); }, nullptr});
    for (std::size_t at = 0; at < bytes.size(); at += piece) d.feed(bytes.substr(at, piece));
    return frames;
  };
  auto whole = run(bytes.size() ? bytes.size() : 1);
  for (const auto& f : whole)
    if (f.size() > kMax || f.find('\x0B') != std::string::npos || f.find('\x1C') != std::string::npos) __builtin_trap();
  if (run(1) != whole || run(7) != whole) __builtin_trap();
  std::string again;
  for (const auto& f : whole) again += frame(f);
  std::vector<std::string> back;
  MllpDecoder d(kMax, {[&](std::string_view f) { back.emplace_back(f); }, nullptr});
  d.feed(again);
  if (back != whole) __builtin_trap();
  return 0;
}
