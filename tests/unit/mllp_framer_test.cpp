// MLLP framing: frames split across reads, several frames in one read, the size limit, and the
// malformed streams a connection can bring.
#include "connectors/mllp/mllp_framer.h"

#include <gtest/gtest.h>

#include <random>
#include <vector>

using namespace passerelle::mllp;

namespace {

struct Collect {
  std::vector<std::string> frames;
  std::vector<std::pair<MllpDecoder::Problem, std::size_t>> problems;
  MllpDecoder decoder(std::size_t max = 1 << 20) {
    return MllpDecoder(max, {[this](std::string_view f) { frames.emplace_back(f); },
                             [this](MllpDecoder::Problem p, std::size_t n) { problems.emplace_back(p, n); }});
  }
};

const std::string kA = "MSH|^~\\&|A|B|C|D|20250101||ADT^A01|1|P|2.5\rPID|1\r";
const std::string kB = "MSH|^~\\&|A|B|C|D|20250101||ADT^A08|2|P|2.5\r";

}  // namespace

TEST(MllpFramerTest, FramesAMessage) {
  EXPECT_EQ(frame("x"), std::string("\x0Bx\x1C\x0D"));
}

TEST(MllpFramerTest, SplitsTwoFramesInOneRead) {
  Collect c;
  auto d = c.decoder();
  d.feed(frame(kA) + frame(kB));
  EXPECT_EQ(c.frames, (std::vector<std::string>{kA, kB}));
  EXPECT_TRUE(c.problems.empty());
  EXPECT_FALSE(d.inFrame());
}

TEST(MllpFramerTest, JoinsAFrameReadByteByByteOrInRandomPieces) {
  std::string stream = frame(kA) + "\r\n" + frame(kB) + frame("");
  Collect one;
  auto d = one.decoder();
  for (char ch : stream) d.feed(std::string_view(&ch, 1));
  EXPECT_EQ(one.frames, (std::vector<std::string>{kA, kB, ""}));
  EXPECT_TRUE(one.problems.empty());  // a line break between frames is not a problem
  std::mt19937 rng(7);
  for (int round = 0; round < 200; ++round) {
    Collect c;
    auto dd = c.decoder();
    for (std::size_t at = 0; at < stream.size();) {
      std::size_t n = std::uniform_int_distribution<std::size_t>(1, 17)(rng);
      dd.feed(std::string_view(stream).substr(at, n));
      at += n;
    }
    ASSERT_EQ(c.frames, one.frames) << "round " << round;
  }
}

TEST(MllpFramerTest, ReportsBytesOutsideAFrameAndKeepsTheNextFrame) {
  Collect c;
  auto d = c.decoder();
  d.feed("GET / HTTP/1.1\r\n" + frame(kA));
  ASSERT_EQ(c.problems.size(), 1u);
  EXPECT_EQ(c.problems[0].first, MllpDecoder::Problem::kBytesOutsideAFrame);
  EXPECT_EQ(c.problems[0].second, 14u);
  EXPECT_EQ(c.frames, (std::vector<std::string>{kA}));
}

TEST(MllpFramerTest, DropsAFrameOverTheLimitUpToItsEndAndReadsTheNext) {
  Collect c;
  auto d = c.decoder(64);
  std::string big(200, 'x');
  d.feed(frame(big).substr(0, 100));
  d.feed(frame(big).substr(100) + frame(kB));
  ASSERT_EQ(c.problems.size(), 1u);
  EXPECT_EQ(c.problems[0].first, MllpDecoder::Problem::kFrameTooLarge);
  EXPECT_EQ(c.frames, (std::vector<std::string>{kB}));
}

TEST(MllpFramerTest, AStartBlockInsideAFrameBeginsANewOne) {
  Collect c;
  auto d = c.decoder();
  d.feed(std::string("\x0B") + "truncated" + frame(kA));
  ASSERT_EQ(c.problems.size(), 1u);
  EXPECT_EQ(c.problems[0].first, MllpDecoder::Problem::kStartInsideAFrame);
  EXPECT_EQ(c.frames, (std::vector<std::string>{kA}));
}

TEST(MllpFramerTest, AnEndBlockWithoutItsReturnDropsTheFrame) {
  Collect c;
  auto d = c.decoder();
  d.feed(std::string("\x0B") + kA + "\x1C" + "x" + frame(kB));
  ASSERT_EQ(c.problems.size(), 2u);
  EXPECT_EQ(c.problems[0].first, MllpDecoder::Problem::kEndWithoutReturn);
  EXPECT_EQ(c.problems[1].first, MllpDecoder::Problem::kBytesOutsideAFrame);
  EXPECT_EQ(c.frames, (std::vector<std::string>{kB}));
}

TEST(MllpFramerTest, HoldsAnUnfinishedFrame) {
  Collect c;
  auto d = c.decoder();
  d.feed(std::string("\x0B") + "half a mess");
  EXPECT_TRUE(d.inFrame());
  EXPECT_EQ(d.pending(), 11u);
  EXPECT_TRUE(c.frames.empty());
  d.feed(std::string("age\x1C\x0D"));
  EXPECT_EQ(c.frames, (std::vector<std::string>{"half a message"}));
}
