// The HL7 v2 ER7 reader and writer: delimiters, positions, escapes, character sets, segment ends,
// Z-segments, broken headers, and the builder.
#include "mappings/hl7v2/message.h"

#include <gtest/gtest.h>

#include <algorithm>

using namespace passerelle::hl7v2;

namespace {

Message parsed(std::string_view text, std::vector<Issue>* out = nullptr) {
  std::vector<Issue> issues;
  auto m = Message::parse(text, issues);
  if (out) *out = issues;
  EXPECT_TRUE(m.has_value()) << (issues.empty() ? "" : issues[0].message);
  return m ? *m : *Message::parse("MSH|^~\\&|x", issues);
}

const char* kAdt =
    "MSH|^~\\&|GAM|CHU-X|DPI|CHU-X|20240306111154||ADT^A01^ADT_A01|3975|D|2.5^FRA^2.11|||||FRA|UNICODE UTF-8|FR||2.11^IHE_FRANCE-2.11-PAM\r"
    "EVN||20240306111154\r"
    "PID|1||000003^^^CHU-X&000897406&N^PI~279035121518989^^^ASIP-SANTE-INS-NIR&1.2.250.1.213.1.4.10&ISO^INS||PAT-TROIS^DOMINIQUE^^^^^L||19790328|F\r"
    "ZBE|001^CHU-X^000897406|20240306110000||INSERT|N\r";

}  // namespace

TEST(Hl7v2MessageTest, NumbersFieldsAsTheStandardDoesWithMsh1AndMsh2) {
  Message m = parsed(kAdt);
  ASSERT_EQ(m.segmentCount(), 4u);
  EXPECT_EQ(m.segmentName(0), "MSH");
  EXPECT_EQ(m.value(0, 1), "|");
  EXPECT_EQ(m.value(0, 2), "^~\\&");
  EXPECT_EQ(m.value(0, 3), "GAM");
  EXPECT_EQ(m.value(0, 9, 1, 1), "ADT");
  EXPECT_EQ(m.value(0, 9, 1, 2), "A01");
  EXPECT_EQ(m.value(0, 10), "3975");
  EXPECT_EQ(m.get("MSH-12.1"), "2.5");
  EXPECT_EQ(m.get("MSH-18"), "UNICODE UTF-8");
  EXPECT_EQ(m.charset(), Charset::kUtf8);
  EXPECT_EQ(m.get("EVN-2"), "20240306111154");
}

TEST(Hl7v2MessageTest, ReadsRepetitionsComponentsAndSubComponents) {
  Message m = parsed(kAdt);
  auto pid = m.find("PID");
  ASSERT_TRUE(pid);
  EXPECT_EQ(m.repetitions(*pid, 3), 2);
  EXPECT_EQ(m.value(*pid, 3, 2, 1), "279035121518989");
  EXPECT_EQ(m.value(*pid, 3, 2, 4, 1), "ASIP-SANTE-INS-NIR");
  EXPECT_EQ(m.value(*pid, 3, 2, 4, 2), "1.2.250.1.213.1.4.10");
  EXPECT_EQ(m.value(*pid, 3, 2, 5), "INS");
  EXPECT_EQ(m.subcomponents(*pid, 3, 2, 4), 3);
  EXPECT_EQ(m.components(*pid, 5), 7);
  EXPECT_EQ(m.get("PID-3(2).4.2"), "1.2.250.1.213.1.4.10");
  EXPECT_EQ(m.get("PID-5.7"), "L");
  EXPECT_EQ(m.get("PID-8"), "F");
  EXPECT_EQ(m.get("PID-3(3)"), "");       // no third repetition
  EXPECT_EQ(m.get("PID-99"), "");         // beyond the last field
  EXPECT_EQ(m.get("PID-3.x"), "");        // malformed path
  EXPECT_EQ(m.raw(*pid, 3, 0, 0, 0), "000003^^^CHU-X&000897406&N^PI~279035121518989^^^ASIP-SANTE-INS-NIR&1.2.250.1.213.1.4.10&ISO^INS");
}

TEST(Hl7v2MessageTest, KeepsZSegmentsInOrder) {
  Message m = parsed(kAdt);
  EXPECT_EQ(m.segmentName(3), "ZBE");
  EXPECT_EQ(m.get("ZBE-4"), "INSERT");
  EXPECT_EQ(m.get("ZBE-1.3"), "000897406");
}

TEST(Hl7v2MessageTest, SegmentsMayEndWithCrLfOrCrLfAfterAByteOrderMark) {
  std::string cr = kAdt;
  std::string lf = cr, crlf;
  std::replace(lf.begin(), lf.end(), '\r', '\n');
  for (char c : cr) crlf += c == '\r' ? std::string("\r\n") : std::string(1, c);
  for (const std::string& text : {cr, lf, crlf, "\xEF\xBB\xBF" + lf, lf + "\n\n"}) {
    Message m = parsed(text);
    EXPECT_EQ(m.segmentCount(), 4u);
    EXPECT_EQ(m.get("PID-5.2"), "DOMINIQUE");
    EXPECT_EQ(m.encode("\r"), cr);  // written back as parsed, whatever the segment ends were
  }
  EXPECT_EQ(parsed(lf).encode("\n"), lf);
}

TEST(Hl7v2MessageTest, OneMessageReadsManyWithoutKeepingAnythingOfTheLast) {
  Message m;
  std::vector<Issue> issues;
  ASSERT_TRUE(m.read(kAdt, issues));
  ASSERT_EQ(m.segmentCount(), 4u);
  // A shorter message with other delimiters, blank lines and LF ends, read into the same object.
  std::string other = "MSH#$*!@#A#B#C#D#20260101##ADT$A08#X2#P#2.5\n\nPID###77$$$H##MARTIN$ANNE\n";
  issues.clear();
  ASSERT_TRUE(m.read(other, issues)) << (issues.empty() ? "" : issues[0].message);
  EXPECT_EQ(m.segmentCount(), 2u);
  EXPECT_EQ(m.delimiters().component, '$');
  EXPECT_EQ(m.get("MSH-9.2"), "A08");
  EXPECT_EQ(m.get("PID-5.2"), "ANNE");
  EXPECT_FALSE(m.find("ZBE"));
  EXPECT_EQ(m.encode("\r"), "MSH#$*!@#A#B#C#D#20260101##ADT$A08#X2#P#2.5\rPID###77$$$H##MARTIN$ANNE\r");
  // A message that cannot be read leaves it empty, not holding the previous one.
  issues.clear();
  EXPECT_FALSE(m.read("PID|1", issues));
  EXPECT_EQ(m.segmentCount(), 0u);
  EXPECT_EQ(m.get("PID-5.2"), "");
}

TEST(Hl7v2MessageTest, FindsFieldsAcrossTheSixteenByteBlocksOfTheScan) {
  // Separators at every offset of a block, and a last segment without its terminator.
  for (std::size_t pad = 0; pad < 20; ++pad) {
    std::string text = "MSH|^~\\&|A|B|C|D|20260101||ADT^A08|" + std::string(pad, 'x') + "|P|2.5\rPID|1||" +
                       std::string(pad, '7') + "^^^H||NOM^" + std::string(pad % 5, 'e') + "Z";
    std::vector<Issue> issues;
    auto m = Message::parse(text, issues);
    ASSERT_TRUE(m);
    EXPECT_EQ(m->get("MSH-10"), std::string(pad, 'x'));
    EXPECT_EQ(m->get("MSH-11"), "P");
    EXPECT_EQ(m->get("PID-3.1"), std::string(pad, '7'));
    EXPECT_EQ(m->get("PID-5.2"), std::string(pad % 5, 'e') + "Z");
    EXPECT_EQ(m->fieldCount(1), 5);
  }
}

TEST(Hl7v2MessageTest, UnescapesEveryEscapeSequence) {
  Delimiters d;
  EXPECT_EQ(unescape("a\\F\\b\\S\\c\\T\\d\\R\\e\\E\\f", d), "a|b^c&d~e\\f");
  EXPECT_EQ(unescape("line\\.br\\next", d), "line\nnext");
  EXPECT_EQ(unescape("a\\.sp 2\\b\\.sp\\c", d), "a\n\nb\nc");
  EXPECT_EQ(unescape("\\H\\bold\\N\\ \\.in+4\\x\\.ti-2\\\\.sk 3\\\\.ce\\\\.fi\\\\.nf\\y", d), "bold xy");
  EXPECT_EQ(unescape("caf\\XC3A9\\ \\X41\\", d), "café A");    // bytes that are UTF-8
  EXPECT_EQ(unescape("caf\\XE9\\", d), "café");                // a byte that is not: ISO 8859-1
  EXPECT_EQ(unescape("\\Zlocal\\ and \\C2842\\ kept", d), "\\Zlocal\\ and \\C2842\\ kept");
  EXPECT_EQ(unescape("no closing \\F", d), "no closing \\F");
  EXPECT_EQ(unescape("\\\\", d), "\\\\");
  Delimiters other{'*', '@', '!', '$', '%', 0};
  EXPECT_EQ(unescape("a$F$b$S$c$E$", other), "a*b@c$");
}

TEST(Hl7v2MessageTest, EscapesWhatUnescapeGivesBack) {
  Delimiters d;
  d.truncation = '#';
  std::string text = "a|b^c&d~e\\f#g\nh";
  std::string escaped = escape(text, d);
  EXPECT_EQ(escaped, "a\\F\\b\\S\\c\\T\\d\\R\\e\\E\\f\\P\\g\\.br\\h");
  EXPECT_EQ(unescape(escaped, d), text);
  EXPECT_EQ(escape("x\r\ny", d), "x\\.br\\y");
}

TEST(Hl7v2MessageTest, ReadsIso8859OneAndFifteenAndWritesThemBack) {
  std::string latin1 = "MSH|^~\\&|A|B|C|D|20250101||ADT^A08|1|P|2.5|||||FRA|8859/1\rPID|1||1^^^X^PI||H\xE9l\xE8ne^Fran\xE7oise\r";
  Message m = parsed(latin1);
  EXPECT_EQ(m.charset(), Charset::kLatin1);
  EXPECT_EQ(m.get("PID-5.1"), "Hélène");
  EXPECT_EQ(m.get("PID-5.2"), "Françoise");
  EXPECT_EQ(m.encodeInCharset(), latin1);
  std::string latin9 = "MSH|^~\\&|A|B|C|D|20250101||ADT^A08|1|P|2.5|||||FRA|8859/15\rOBX|1|ST|X||\xA4 \xBC\xBD\r";
  Message n = parsed(latin9);
  EXPECT_EQ(n.charset(), Charset::kLatin9);
  EXPECT_EQ(n.get("OBX-5"), "€ Œœ");
  EXPECT_EQ(n.encodeInCharset(), latin9);
}

TEST(Hl7v2MessageTest, WarnsAboutTextThatIsNotItsDeclaredCharacterSet) {
  std::vector<Issue> issues;
  Message m = parsed("MSH|^~\\&|A|B|C|D|20250101||ADT^A08|1|P|2.5|||||FRA|UNICODE UTF-8\rPID|1||1||H\xE9l\xE8ne\r", &issues);
  ASSERT_FALSE(issues.empty());
  EXPECT_EQ(issues[0].severity, "warning");
  EXPECT_EQ(issues[0].location, "MSH-18");
  EXPECT_EQ(m.get("PID-5"), "Hélène");
  issues.clear();
  parsed("MSH|^~\\&|A|B|C|D|20250101||ADT^A08|1|P|2.5|||||FRA|ISO IR87\rPID|1\r", &issues);
  ASSERT_EQ(issues.size(), 1u);
  EXPECT_NE(issues[0].message.find("ISO IR87"), std::string::npos);
}

TEST(Hl7v2MessageTest, ReadsOtherDelimitersAndTheTruncationCharacter) {
  Message m = parsed("MSH*@!$%#*SND*FAC*RCV*FAC*20250101**ORU@R01*9*P*2.7\rOBX*1*ST*X@Code**a$F$b!c@d%e\r");
  EXPECT_EQ(m.delimiters().field, '*');
  EXPECT_EQ(m.delimiters().truncation, '#');
  EXPECT_EQ(m.get("MSH-9.2"), "R01");
  EXPECT_EQ(m.get("OBX-5"), "a*b");
  EXPECT_EQ(m.get("OBX-5(2).1"), "c");
  EXPECT_EQ(m.get("OBX-5(2).2.2"), "e");
}

TEST(Hl7v2MessageTest, RefusesAMessageWithoutAUsableHeader) {
  for (const char* bad : {"", "PID|1||x\r", "MSH|^~\\\r", "MSH|^~\\&&|A\r", "MSH|^a\\&|A\r", "MSHA^~\\&|A\r", "MSH|^~\\&^x|A\r",
                          "MSH|^\xCB\x9C\\&|A|B\r"}) {
    std::vector<Issue> issues;
    auto m = Message::parse(bad, issues);
    EXPECT_FALSE(m.has_value()) << bad;
    ASSERT_FALSE(issues.empty()) << bad;
    EXPECT_EQ(issues[0].severity, "error");
    EXPECT_TRUE(issues[0].code == "100" || issues[0].code == "102") << issues[0].code;
  }
}

TEST(Hl7v2MessageTest, WarnsAboutASegmentWithoutAName) {
  std::vector<Issue> issues;
  Message m = parsed("MSH|^~\\&|A|B|C|D|20250101||ADT^A08|1|P|2.5\rthis is not a segment\rPID|1\r", &issues);
  EXPECT_EQ(m.segmentCount(), 3u);
  ASSERT_EQ(issues.size(), 1u);
  EXPECT_EQ(issues[0].segment, 2);
  EXPECT_EQ(issues[0].code, "100");
}

TEST(Hl7v2MessageTest, BuildsMessagesThatReadBack) {
  MessageBuilder b;
  b.segment("MSH").set(3, "PASSERELLE").set(4, "D77").set(7, "20261206010203").set(9, "ACK").set(9, "A01", 1, 2).set(10, "42").set(11, "P").set(12, "2.5");
  b.segment("MSA").set(1, "AE").set(2, "3975");
  b.segment("ERR").set(2, "PID").set(2, "1", 1, 2).set(2, "7", 1, 3).set(3, "102").set(8, "date 2024|13|40 is not a date ^ & ~ \\");
  std::string text = b.encode();
  EXPECT_EQ(text.substr(0, 18), "MSH|^~\\&|PASSERELL");
  Message m = parsed(text);
  EXPECT_EQ(m.get("MSH-9.2"), "A01");
  EXPECT_EQ(m.get("MSA-2"), "3975");
  EXPECT_EQ(m.get("ERR-2.3"), "7");
  EXPECT_EQ(m.get("ERR-8"), "date 2024|13|40 is not a date ^ & ~ \\");
  EXPECT_EQ(m.encode(), text);
  // Trailing empty fields and components are left out; raw text goes through as it is.
  MessageBuilder c;
  c.segment("MSH").set(3, "A").set(9, "X");
  c.segment("OBX").set(1, "1").set(5, "").setRaw(3, "a^b&c");
  EXPECT_EQ(c.encode("\n"), "MSH|^~\\&|A||||||X\nOBX|1||a^b&c\n");
}
