#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "mappings/fhir/json_reader.h"

using namespace passerelle::fhir;

namespace {
bool parse(const std::string& text, JsonError& err, int depth = 64) {
  Json j;
  return parseJson(text, JsonLimits{depth}, j, err);
}
}  // namespace

TEST(JsonReaderTest, ParsesAndKeepsMemberOrder) {
  Json j;
  JsonError err;
  ASSERT_TRUE(parseJson(R"({"resourceType":"Patient","b":1,"a":[true,null,"x"]})", {}, j, err));
  EXPECT_EQ(j.begin().key(), "resourceType");
  EXPECT_EQ(j["a"][2], "x");
}

TEST(JsonReaderTest, RefusesDuplicateKeysAndNamesThePath) {
  JsonError err;
  EXPECT_FALSE(parse(R"({"resourceType":"Patient","name":[{"family":"A","family":"B"}]})", err));
  EXPECT_NE(err.message.find("duplicate key 'family'"), std::string::npos) << err.message;
  EXPECT_EQ(err.path, "name.family");
}

TEST(JsonReaderTest, RefusesDuplicatesInLargeObjects) {
  std::string text = "{";
  for (int i = 0; i < 40; ++i) text += "\"k" + std::to_string(i) + "\":1,";
  text += "\"k7\":2}";
  JsonError err;
  EXPECT_FALSE(parse(text, err));
  EXPECT_NE(err.message.find("k7"), std::string::npos);
}

TEST(JsonReaderTest, RefusesNestingBeyondTheLimit) {
  std::string ok(64, '['), okEnd(64, ']');
  JsonError err;
  EXPECT_TRUE(parse(ok + okEnd, err));
  std::string deep(65, '['), deepEnd(65, ']');
  EXPECT_FALSE(parse(deep + deepEnd, err));
  EXPECT_NE(err.message.find("deeper than 64"), std::string::npos);
  std::string huge(100000, '[');
  EXPECT_FALSE(parse(huge, err));  // no stack overflow
}

TEST(JsonReaderTest, RefusesInvalidUtf8WithItsOffset) {
  JsonError err;
  EXPECT_FALSE(parse("{\"a\":\"\xC3\x28\"}", err));
  EXPECT_NE(err.message.find("byte"), std::string::npos) << err.message;
  EXPECT_FALSE(parse("{\"a\":\"\xED\xA0\x80\"}", err));  // UTF-16 surrogate encoded in UTF-8
}

TEST(JsonReaderTest, RefusesTruncatedAndTrailingInput) {
  JsonError err;
  EXPECT_FALSE(parse("{\"a\":", err));
  EXPECT_FALSE(parse("{} {}", err));
  EXPECT_FALSE(parse("", err));
}
