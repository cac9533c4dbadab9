// HL7 v2 acknowledgements: the mode a message asks for, MSA codes, ERR segments for 2.5+ and for
// earlier versions, an acknowledgement of a message that could not be read, and the ACKs the ANS
// examples expect (../shared/corpora, skipped when absent).
#include "mappings/hl7v2/ack.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "tests/support/test_gateway.h"

using namespace passerelle::hl7v2;
namespace fs = std::filesystem;

namespace {

Message read(std::string_view text) {
  std::vector<Issue> issues;
  auto m = Message::parse(text, issues);
  EXPECT_TRUE(m.has_value());
  return *m;
}

const char* kOriginal = "MSH|^~\\&|SIL|LABO|D77|GW|20250101||ORU^R01^ORU_R01|MSG1|P|2.5|||||FRA|UNICODE UTF-8\rPID|1\r";
const char* kEnhanced = "MSH|^~\\&|SIL|LABO|D77|GW|20250101||ORU^R01^ORU_R01|MSG2|P|2.5.1|||ER|AL|FRA|8859/1\rPID|1\r";

AckOptions fixed() {
  AckOptions o;
  o.controlId = "ACK1";
  o.timestamp = "20261206020000";
  return o;
}

}  // namespace

TEST(Hl7v2AckTest, OriginalModeAsksForTheApplicationAcknowledgementOnly) {
  Message m = read(kOriginal);
  EXPECT_FALSE(enhancedMode(m));
  EXPECT_FALSE(wantsAck(m, AckResult::kAccept, true));
  EXPECT_TRUE(wantsAck(m, AckResult::kAccept, false));
  EXPECT_TRUE(wantsAck(m, AckResult::kReject, false));
}

TEST(Hl7v2AckTest, EnhancedModeFollowsMsh15AndMsh16) {
  Message m = read(kEnhanced);
  EXPECT_TRUE(enhancedMode(m));
  EXPECT_FALSE(wantsAck(m, AckResult::kAccept, true));  // MSH-15 ER: an accept only on error
  EXPECT_TRUE(wantsAck(m, AckResult::kError, true));
  EXPECT_TRUE(wantsAck(m, AckResult::kAccept, false));  // MSH-16 AL
  Message ne = read("MSH|^~\\&|A|B|C|D|1||ADT^A01|1|P|2.5|||NE|SU\r");
  EXPECT_FALSE(wantsAck(ne, AckResult::kReject, true));
  EXPECT_FALSE(wantsAck(ne, AckResult::kError, false));
  EXPECT_TRUE(wantsAck(ne, AckResult::kAccept, false));
}

TEST(Hl7v2AckTest, AnswersAsTheApplicationAddressedWithTheReceivedControlId) {
  Message m = read(kOriginal);
  Message ack = read(buildAck(&m, "", AckResult::kAccept, false, {}, fixed()));
  EXPECT_EQ(ack.get("MSH-3"), "D77");
  EXPECT_EQ(ack.get("MSH-4"), "GW");
  EXPECT_EQ(ack.get("MSH-5"), "SIL");
  EXPECT_EQ(ack.get("MSH-6"), "LABO");
  EXPECT_EQ(ack.get("MSH-7"), "20261206020000");
  EXPECT_EQ(ack.get("MSH-9"), "ACK^R01^ACK");
  EXPECT_EQ(ack.get("MSH-10"), "ACK1");
  EXPECT_EQ(ack.get("MSH-12"), "2.5");
  EXPECT_EQ(ack.get("MSH-18"), "UNICODE UTF-8");
  EXPECT_EQ(ack.get("MSA-1"), "AA");
  EXPECT_EQ(ack.get("MSA-2"), "MSG1");
  EXPECT_FALSE(ack.find("ERR"));
}

TEST(Hl7v2AckTest, PointsEachErrSegmentAtTheFaultyField) {
  Message m = read(kEnhanced);
  Issue date;
  date.severity = "error";
  date.segmentId = "PID";
  date.segment = 2;
  date.field = 7;
  date.component = 1;
  date.code = "102";
  date.message = "PID-7 '19791399' is not a date | nor ^ a time";
  Issue type;
  type.severity = "warning";
  type.code = "200";
  type.message = "unknown";
  std::string text = buildAck(&m, "", AckResult::kError, true, {date, type}, fixed());
  Message ack = read(text);
  EXPECT_EQ(ack.get("MSA-1"), "CE");
  EXPECT_EQ(ack.get("MSA-2"), "MSG2");
  EXPECT_EQ(ack.get("ERR-2"), "PID^2^7^1^1");
  EXPECT_EQ(ack.get("ERR-3"), "102^Data type error^HL70357");
  EXPECT_EQ(ack.get("ERR-4"), "E");
  EXPECT_EQ(ack.get("ERR-8"), "PID-7 '19791399' is not a date | nor ^ a time");
  EXPECT_EQ(ack.get("ERR[2]-3.1"), "200");
  EXPECT_EQ(ack.get("ERR[2]-4"), "W");
  EXPECT_EQ(ack.get("MSH-18"), "8859/1");
  // Before 2.5 the place and the code go into ERR-1.
  Message old = read("MSH|^~\\&|A|B|C|D|1||ADT^A08|X9|P|2.3\rPID|1\r");
  Message oldAck = read(buildAck(&old, "", AckResult::kReject, false, {date}, fixed()));
  EXPECT_EQ(oldAck.get("MSA-1"), "AR");
  EXPECT_EQ(oldAck.get("ERR-1"), "PID^2^7^102&Data type error&HL70357");
  EXPECT_EQ(oldAck.get("ERR-2"), "");
}

TEST(Hl7v2AckTest, RejectsAMessageThatCouldNotBeReadFromWhatItsFirstLineGives) {
  std::string header = "MSH|^~\\&|SIL|LABO|D77|GW|20250101||ADT^A01|CTRL7|P|2.4|||||FRA\rPID|||garbage";
  Issue broken;
  broken.severity = "error";
  broken.code = "102";
  broken.segmentId = "MSH";
  broken.field = 2;
  broken.message = "MSH-2 is not readable";
  Message ack = read(buildAck(nullptr, header, AckResult::kReject, false, {broken}, fixed()));
  EXPECT_EQ(ack.get("MSA-1"), "AR");
  EXPECT_EQ(ack.get("MSA-2"), "CTRL7");
  EXPECT_EQ(ack.get("MSH-12"), "2.4");
  EXPECT_EQ(ack.get("MSH-9.2"), "A01");
  Message none = read(buildAck(nullptr, "\x0b\x01 not hl7", AckResult::kReject, false, {broken}, fixed()));
  EXPECT_EQ(none.get("MSA-2"), "");
  EXPECT_EQ(none.get("MSH-12"), "2.5");
}

// The ANS's examples come with the acknowledgement expected for each (ack.er7 / ack.hl7 beside it).
TEST(Hl7v2AckTest, GivesTheAcknowledgementsTheAnsExamplesExpect) {
  std::string corpora = passerelle::testing::corporaDir();
  fs::path dir = corpora.empty() ? fs::path() : fs::path(corpora) / "ans-hl7v2-exemples" / "Volets";
  if (corpora.empty() || !fs::exists(dir)) GTEST_SKIP() << "../shared/corpora is absent: the ANS acknowledgements are skipped";
  auto slurp = [](const fs::path& p) {
    std::ifstream in(p, std::ios::binary);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
  };
  int pairs = 0;
  for (const auto& e : fs::recursive_directory_iterator(dir)) {
    if (!e.is_regular_file() || e.path().stem() != "ack") continue;
    fs::path message;
    for (const auto& f : fs::directory_iterator(e.path().parent_path()))
      if (f.path().stem() != "ack" && (f.path().extension() == ".er7" || f.path().extension() == ".hl7")) message = f.path();
    if (message.empty()) continue;
    std::vector<Issue> issues;
    auto m = Message::parse(slurp(message), issues);
    if (!m) continue;  // the typographic-tilde examples (see the corpus test)
    auto expected = read(slurp(e.path()));
    AckOptions o;
    o.controlId = expected.get("MSH-10");
    o.timestamp = expected.get("MSH-7");
    Message got = read(buildAck(&*m, "", AckResult::kAccept, false, {}, o));
    // What follows from the message (the character set and country are the responder's choice:
    // some expected ACKs answer a UTF-8 message in 8859/15; ours answers in the message's own).
    for (const char* path : {"MSH-3", "MSH-4", "MSH-5", "MSH-6", "MSH-9", "MSH-11", "MSH-12", "MSA-1", "MSA-2"})
      EXPECT_EQ(got.get(path), expected.get(path)) << message << " " << path;
    ++pairs;
  }
  EXPECT_GE(pairs, 6);
  std::cout << "[ conformance ] ANS acknowledgements given as expected: " << pairs << "\n";
}
