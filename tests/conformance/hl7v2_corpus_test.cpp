// The HL7 v2 reader against messages nobody here wrote (../shared/corpora): the FHIR-Converter's
// 139 messages (v2.3 to 2.8, LF ends, byte-order marks), the ANS's French examples (PAM-Fr
// Z-segments, INS, MDM/ORU carrying CDA, ACKs) and the HAPI parser's trees of the NIST and Cerner
// messages. Every message must be read without error and written back as it came (segment ends
// aside), and every value of a HAPI tree must be the value read here at the same place.
// Skipped, saying so, when ../shared/corpora is absent.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "mappings/hl7v2/message.h"
#include "tests/support/test_gateway.h"

namespace fs = std::filesystem;
using passerelle::hl7v2::Issue;
using passerelle::hl7v2::Message;
using Json = nlohmann::ordered_json;

namespace {

// The message as the reader normalises it: no byte-order mark, no leading blank lines, every
// segment ended by one CR.
std::string normalised(std::string text) {
  if (text.rfind("\xEF\xBB\xBF", 0) == 0) text.erase(0, 3);
  std::string out;
  bool atStart = true;
  for (std::size_t i = 0; i < text.size(); ++i) {
    char c = text[i];
    if (c == '\r' || c == '\n') {
      if (!atStart && !out.empty() && out.back() != '\r') out += '\r';
      continue;
    }
    atStart = false;
    out += c;
  }
  if (!out.empty() && out.back() != '\r') out += '\r';
  return out;
}

std::vector<fs::path> messages(const fs::path& dir, std::initializer_list<const char*> extensions) {
  std::vector<fs::path> out;
  if (!fs::exists(dir)) return out;
  for (const auto& e : fs::recursive_directory_iterator(dir)) {
    if (!e.is_regular_file()) continue;
    for (const char* ext : extensions)
      if (e.path().extension() == ext) out.push_back(e.path());
  }
  std::sort(out.begin(), out.end());
  return out;
}

// Reads every message of `files`: no error, written back as read. Returns how many were read.
int readAll(const std::vector<fs::path>& files, int& warnings) {
  int n = 0;
  for (const auto& f : files) {
    std::string text = passerelle::testing::readFile(f);
    std::vector<Issue> issues;
    auto m = Message::parse(text, issues);
    EXPECT_TRUE(m.has_value()) << f << ": " << (issues.empty() ? "" : issues[0].location + " " + issues[0].message);
    if (!m) continue;
    for (const auto& i : issues) {
      EXPECT_NE(i.severity, "error") << f << ": " << i.location << " " << i.message;
      ++warnings;
    }
    if (m->charset() == passerelle::hl7v2::Charset::kLatin1 || m->charset() == passerelle::hl7v2::Charset::kLatin9)
      EXPECT_EQ(m->encodeInCharset("\r"), normalised(text)) << f;
    else
      EXPECT_EQ(m->encode("\r"), normalised(text)) << f;
    EXPECT_GE(m->segmentCount(), 1u);
    ++n;
  }
  return n;
}

std::string corpus(const char* sub) {
  std::string c = passerelle::testing::corporaDir();
  return c.empty() ? c : (fs::path(c) / sub).string();
}

}  // namespace

TEST(Hl7v2CorpusTest, ReadsAndWritesBackEveryFhirConverterMessage) {
  std::string dir = corpus("ms-fhir-converter/input/Hl7v2");
  if (dir.empty() || !fs::exists(dir)) GTEST_SKIP() << "../shared/corpora is absent: the HL7 v2 corpus suite is skipped";
  int warnings = 0;
  int n = readAll(messages(dir, {".hl7"}), warnings);
  EXPECT_GE(n, 139);
  std::cout << "[ conformance ] FHIR-Converter HL7 v2 messages read and written back: " << n << " (" << warnings << " warnings)\n";
}

TEST(Hl7v2CorpusTest, ReadsAndWritesBackEveryAnsExample) {
  std::string dir = corpus("ans-hl7v2-exemples");
  if (dir.empty() || !fs::exists(dir)) GTEST_SKIP() << "../shared/corpora is absent: the ANS HL7 v2 examples are skipped";
  int warnings = 0;
  // Three examples (the V2.0 ORU ones) were edited with a typographic tilde: MSH-2 holds "^˜\&",
  // U+02DC where "~" belongs, and every repetition uses it. Delimiters are single characters; such a
  // message is refused (102 on MSH-2), not read with its values split wrongly.
  std::vector<fs::path> files, typographic;
  for (const auto& f : messages(dir, {".hl7", ".er7"}))
    (passerelle::testing::readFile(f).find("MSH|^\xCB\x9C") == 0 ? typographic : files).push_back(f);
  int n = readAll(files, warnings);
  EXPECT_EQ(n, static_cast<int>(files.size()));
  EXPECT_GE(n, 20);
  EXPECT_EQ(typographic.size(), 3u);
  for (const auto& f : typographic) {
    std::vector<Issue> issues;
    EXPECT_FALSE(Message::parse(passerelle::testing::readFile(f), issues).has_value()) << f;
    ASSERT_FALSE(issues.empty());
    EXPECT_EQ(issues[0].code, "102");
    EXPECT_EQ(issues[0].location, "MSH-2");
  }
  std::cout << "[ conformance ] ANS HL7 v2 examples read and written back: " << n << " (" << warnings << " warnings); "
            << typographic.size() << " refused (U+02DC in MSH-2)\n";
  // The PAM-Fr admission: INS in PID-3, Z-segments kept.
  std::vector<Issue> adtIssues;
  auto adt = Message::parse(passerelle::testing::readFile(fs::path(dir) / "SGL" / "admission.er7"), adtIssues);
  ASSERT_TRUE(adt);
  EXPECT_EQ(adt->get("MSH-9.2"), "A01");
  EXPECT_EQ(adt->get("PID-3(2).4.1"), "ASIP-SANTE-INS-NIR");
  EXPECT_EQ(adt->get("PID-3(2).5"), "INS");
  EXPECT_TRUE(adt->find("ZBE").has_value());
}

namespace {

// Compares a HAPI parse tree with the message read here: segments in tree order against segments
// in message order, and each value of the tree against the value at its place.
struct TreeWalk {
  const Message& m;
  std::size_t nextSegment = 0;
  int values = 0;
  std::vector<std::string> mismatches;

  static int position(const std::string& key) {  // "PID.3" -> 3, "CX.4" -> 4
    auto dot = key.rfind('.');
    return dot == std::string::npos ? 0 : std::atoi(key.c_str() + dot + 1);
  }
  void check(const std::string& where, std::string expected, const std::string& got) {
    ++values;
    // HAPI keeps the line feed that ends the Cerner files (after CR-ended segments) in the last
    // value; here it ends the segment, as a segment terminator.
    if (!expected.empty() && expected.back() == '\n') expected.pop_back();
    if (expected != got && mismatches.size() < 20) mismatches.push_back(where + ": HAPI '" + expected + "', here '" + got + "'");
  }
  void segment(const std::string& name, const Json& seg) {
    std::size_t index = nextSegment++;
    if (std::string(m.segmentName(index)) != name) {
      mismatches.push_back("segment " + std::to_string(index + 1) + ": HAPI " + name + ", here " + std::string(m.segmentName(index)));
      return;
    }
    for (auto f = seg.begin(); f != seg.end(); ++f) {
      int field = position(f.key());
      int rep = 0;
      for (const auto& r : f.value()) {
        ++rep;
        std::string where = name + "-" + std::to_string(field) + "(" + std::to_string(rep) + ")";
        if (r.is_string()) {
          check(where, r.get<std::string>(), m.value(index, field, rep, 1, 1));
          continue;
        }
        for (auto c = r.begin(); c != r.end(); ++c) {
          int comp = position(c.key());
          for (const auto& cv : c.value()) {
            if (cv.is_string()) {
              check(where + "." + std::to_string(comp), cv.get<std::string>(), m.value(index, field, rep, comp, 1));
              continue;
            }
            for (auto s = cv.begin(); s != cv.end(); ++s)
              for (const auto& sv : s.value())
                if (sv.is_string())
                  check(where + "." + std::to_string(comp) + "." + std::to_string(position(s.key())), sv.get<std::string>(),
                        m.value(index, field, rep, comp, position(s.key())));
          }
        }
      }
    }
  }
  void group(const Json& g) {
    for (auto it = g.begin(); it != g.end(); ++it) {
      bool isSegment = it.key().size() == 3;
      for (const auto& item : it.value()) {
        if (isSegment) segment(it.key(), item);
        else group(item);
      }
    }
  }
};

}  // namespace

TEST(Hl7v2CorpusTest, GivesTheValuesOfTheHapiParseTrees) {
  std::string dir = corpus("hapi-parse-trees-node-hl7-complete/valid");
  if (dir.empty() || !fs::exists(dir)) GTEST_SKIP() << "../shared/corpora is absent: the HAPI parse trees are skipped";
  int files = 0, values = 0;
  // Only the CR-terminated NIST and Cerner trees are clean (the corpus's README).
  for (const char* sub : {"nist", "cerner"})
    for (const auto& f : messages(fs::path(dir) / sub, {".hl7"})) {
      fs::path expected = f;
      expected.replace_extension(".expected.json");
      if (!fs::exists(expected)) continue;
      std::vector<Issue> issues;
      auto m = Message::parse(passerelle::testing::readFile(f), issues);
      ASSERT_TRUE(m) << f;
      Json tree = Json::parse(passerelle::testing::readFile(expected));
      TreeWalk walk{*m};
      for (auto it = tree.begin(); it != tree.end(); ++it) walk.group(it.value());
      EXPECT_EQ(walk.nextSegment, m->segmentCount()) << f << ": segments in the tree and here";
      std::string all;
      for (const auto& x : walk.mismatches) all += "\n  " + x;
      EXPECT_TRUE(walk.mismatches.empty()) << f << all;
      ++files;
      values += walk.values;
    }
  EXPECT_GE(files, 10);
  std::cout << "[ conformance ] HAPI parse trees matched: " << files << " messages, " << values << " values\n";
}
