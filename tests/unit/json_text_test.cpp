#include <gtest/gtest.h>

#include "mappings/fhir/json_text.h"

using namespace passerelle::fhir;

TEST(JsonTextTest, FindsMembersAndElements) {
  std::string t = R"( { "a" : [1, {"b":"x,]"}, "y"] , "c\"d": {} } )";
  Span whole = wholeValue(t);
  auto members = objectMembers(t, whole);
  ASSERT_EQ(members.size(), 2u);
  EXPECT_EQ(members[1].key, "c\"d");
  auto elems = arrayElements(t, members[0].value);
  ASSERT_EQ(elems.size(), 3u);
  EXPECT_EQ(t.substr(elems[1].begin, elems[1].end - elems[1].begin), R"({"b":"x,]"})");
}

TEST(JsonTextTest, CompactsAndKeepsDecimalDigits) {
  std::string t = "{ \"v\" : 1.50 ,\n \"w\": [ 1e2 , \"a b\" ] }";
  std::string out;
  writeCompact(t, wholeValue(t), out);
  EXPECT_EQ(out, R"({"v":1.50,"w":[1e2,"a b"]})");
}

TEST(JsonTextTest, WritesResourceWithIdAndMetaAfterResourceType) {
  std::string t = R"({"name":[{"family":"Durand"}],"resourceType":"Patient","id":"old","meta":{"versionId":"9"}})";
  std::string out;
  writeResource(t, wholeValue(t), "new-id", R"({"versionId":"1"})", out);
  EXPECT_EQ(out, R"({"name":[{"family":"Durand"}],"resourceType":"Patient","id":"new-id","meta":{"versionId":"1"}})");
}

TEST(JsonTextTest, RewritesReferencesOnly) {
  std::string t = R"({"resourceType":"Observation","subject":{"reference":"urn:uuid:1"},"note":[{"text":"urn:uuid:1"}]})";
  std::string target = "Patient/abc";
  std::string out;
  writeResource(t, wholeValue(t), "o1", "", out, [&](const std::string& ref) -> const std::string* {
    return ref == "urn:uuid:1" ? &target : nullptr;
  });
  EXPECT_EQ(out, R"({"resourceType":"Observation","id":"o1","subject":{"reference":"Patient/abc"},"note":[{"text":"urn:uuid:1"}]})");
}

TEST(JsonTextTest, EscapesStrings) {
  std::string out;
  appendJsonString(out, "a\"b\\c\n\x01");
  EXPECT_EQ(out, "\"a\\\"b\\\\c\\n\\u0001\"");
}

TEST(JsonTextTest, SanitizesInvalidUtf8) {
  EXPECT_EQ(sanitizeUtf8("ok \xC3\xA9"), "ok \xC3\xA9");
  EXPECT_EQ(sanitizeUtf8("a\xFF" "b"), "a\xEF\xBF\xBD" "b");
  EXPECT_EQ(sanitizeUtf8("\xED\xA0\x80"), "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD");  // surrogate
  EXPECT_EQ(sanitizeUtf8("\xC0\xAF"), "\xEF\xBF\xBD\xEF\xBF\xBD");                  // overlong
}
