#include <gtest/gtest.h>

#include "gateway/fhir/search_params.h"

using namespace passerelle::fhir;
using passerelle::ErrorCode;

TEST(SearchParamsTest, ParsesTokenForms) {
  auto r = parseSearch("Patient", {{"identifier", "urn:oid:1.2|123,|456,urn:x|,789"}}, {}, false);
  ASSERT_TRUE(r.ok()) << r.error().message;
  const auto& g = r->query.where.at(0);
  ASSERT_EQ(g.size(), 4u);
  EXPECT_EQ(g[0].param, "Patient.identifier");
  EXPECT_TRUE(g[0].system && g[0].value);
  EXPECT_EQ(*g[0].system, "urn:oid:1.2");
  EXPECT_TRUE(g[1].system && g[1].system->empty() && g[1].value == "456");
  EXPECT_TRUE(g[2].system && !g[2].value);
  EXPECT_TRUE(!g[3].system && g[3].value == "789");
}

TEST(SearchParamsTest, HonoursEscapes) {
  auto parts = splitEscaped("a\\,b,c\\|d", ',');
  ASSERT_EQ(parts.size(), 2u);
  EXPECT_EQ(parts[0], "a,b");
  EXPECT_EQ(parts[1], "c|d");
}

TEST(SearchParamsTest, DatePrefixesBecomeRanges) {
  auto r = parseSearch("Patient", {{"_lastUpdated", "gt2024-01-01"}, {"_lastUpdated", "lt2025"}}, {}, false);
  ASSERT_TRUE(r.ok());
  ASSERT_EQ(r->query.where.size(), 2u);
  const auto& gt = r->query.where[0][0];
  EXPECT_EQ(gt.op, passerelle::store::Condition::Op::kGt);
  EXPECT_EQ(gt.dlo, 1704067200000);  // 2024-01-01T00:00Z
  EXPECT_EQ(gt.dhi, 1704153600000);  // 2024-01-02T00:00Z
  EXPECT_EQ(r->query.where[1][0].op, passerelle::store::Condition::Op::kLt);
  EXPECT_EQ(r->query.where[1][0].dlo, 1735689600000);  // 2025-01-01T00:00Z
  auto ne = parseSearch("Patient", {{"birthdate", "ne2024"}}, {}, false);
  ASSERT_TRUE(ne.ok());
  EXPECT_EQ(ne->query.where[0][0].op, passerelle::store::Condition::Op::kNe);
  EXPECT_EQ(ne->query.where[0][0].param, "Patient.birthdate");
}

TEST(SearchParamsTest, BadValuesAreClearErrors) {
  for (auto [k, v] : std::vector<std::pair<std::string, std::string>>{
           {"_lastUpdated", "xx2024"}, {"_lastUpdated", "2024-13-01"}, {"birthdate", "2024-02-30"},
           {"_id", "a'b"}, {"_count", "-1"}, {"_count", "abc"}, {"identifier", "a|b|c"}, {"identifier:of-type", "x"},
           {"name:below", "x"}, {"general-practitioner:Observation", "1"}, {"general-practitioner.nope", "x"},
           {"organization:Organization.name.family", "x"}, {"_sort", "nope"}, {"_include", "Patient:name"}}) {
    auto r = parseSearch("Patient", {{k, v}}, {}, false);
    ASSERT_FALSE(r.ok()) << k << "=" << v;
    EXPECT_EQ(r.error().code, ErrorCode::kInvalid);
    EXPECT_NE(r.error().message.find(k.substr(0, k.find(':'))), std::string::npos);
  }
}

TEST(SearchParamsTest, UnknownParametersDependOnHandling) {
  EXPECT_TRUE(parseSearch("Patient", {{"nickname", "x"}}, {}, false).ok());
  EXPECT_TRUE(parseSearch("Patient", {{"nickname", "x"}}, {}, false)->query.where.empty());
  auto strict = parseSearch("Patient", {{"nickname", "x"}}, {}, true);
  ASSERT_FALSE(strict.ok());
  EXPECT_NE(strict.error().message.find("nickname"), std::string::npos);
  EXPECT_FALSE(parseSearch("Binary", {{"identifier", "x"}}, {}, true).ok());
  EXPECT_TRUE(parseSearch("Patient", {{"name", "x"}}, {}, true).ok());
}

TEST(SearchParamsTest, TooManyValuesAreRefused) {
  std::string v;
  for (int i = 0; i < 10000; ++i) v += (i ? "," : "") + std::to_string(i);
  auto r = parseSearch("Patient", {{"_id", v}}, {}, false);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message.find("more than"), std::string::npos);
}

TEST(SearchParamsTest, CountIsCappedAndDefaulted) {
  SearchLimits l;
  l.defaultCount = 20;
  l.maxCount = 100;
  EXPECT_EQ(parseSearch("Patient", {}, l, false)->query.count, 20);
  EXPECT_EQ(parseSearch("Patient", {{"_count", "5000"}}, l, false)->query.count, 100);
}

TEST(SearchParamsTest, DecodesQueryStrings) {
  auto p = parseQueryString("identifier=urn%3Aoid%3A1%7C12&name=a+b&flag");
  ASSERT_EQ(p.size(), 3u);
  EXPECT_EQ(p[0].second, "urn:oid:1|12");
  EXPECT_EQ(p[1].second, "a b");
  EXPECT_EQ(p[2].first, "flag");
}

TEST(SearchParamsTest, RangesOnASingleValuedDateShareOneRow) {
  auto r = parseSearch("Patient", {{"birthdate", "ge1960-01-01"}, {"birthdate", "lt1961-01-01"}, {"gender", "female"}}, {}, false);
  ASSERT_TRUE(r.ok());
  ASSERT_EQ(r->query.where.size(), 2u);  // birthdate (both bounds) and gender
  EXPECT_EQ(r->query.where[0][0].sameRow.size(), 1u);
  // Encounter.period: one Period.
  auto e = parseSearch("Encounter", {{"date", "ge2025"}, {"date", "lt2026"}}, {}, false);
  ASSERT_EQ(e->query.where.size(), 1u);
  // Observation.date may be a Timing (several events): kept apart.
  auto o = parseSearch("Observation", {{"date", "ge2025"}, {"date", "lt2026"}}, {}, false);
  ASSERT_EQ(o->query.where.size(), 2u);
  // CarePlan.activity-date repeats: each bound may hold on another value, so they stay apart.
  auto c = parseSearch("CarePlan", {{"activity-date", "ge2025"}, {"activity-date", "lt2026"}}, {}, false);
  ASSERT_EQ(c->query.where.size(), 2u);
  EXPECT_TRUE(c->query.where[0][0].sameRow.empty());
}
