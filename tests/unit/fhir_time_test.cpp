#include <gtest/gtest.h>

#include "mappings/fhir/fhir_time.h"

using namespace passerelle::fhir;

TEST(FhirTimeTest, FormatsInstantsWithMilliseconds) {
  EXPECT_EQ(formatInstant(0), "1970-01-01T00:00:00.000Z");
  EXPECT_EQ(formatInstant(1795427373123), "2026-11-23T09:49:33.123Z");
}

TEST(FhirTimeTest, FormatsHttpDates) {
  EXPECT_EQ(formatHttpDate(0), "Thu, 01 Jan 1970 00:00:00 GMT");
  EXPECT_EQ(formatHttpDate(1795427373123), "Mon, 23 Nov 2026 09:49:33 GMT");
}

TEST(FhirTimeTest, PartialDatesCoverTheirWholeRange) {
  std::int64_t lo, hi;
  ASSERT_TRUE(parseDateRange("2024", lo, hi));
  EXPECT_EQ(formatInstant(lo), "2024-01-01T00:00:00.000Z");
  EXPECT_EQ(formatInstant(hi), "2025-01-01T00:00:00.000Z");
  ASSERT_TRUE(parseDateRange("2024-02", lo, hi));
  EXPECT_EQ(formatInstant(hi), "2024-03-01T00:00:00.000Z");
  ASSERT_TRUE(parseDateRange("2024-12-31", lo, hi));
  EXPECT_EQ(formatInstant(hi), "2025-01-01T00:00:00.000Z");
  ASSERT_TRUE(parseDateRange("2024-12-31T23:59:59.5Z", lo, hi));
  EXPECT_EQ(hi - lo, 100);
}

TEST(FhirTimeTest, TimeZonesShiftToUtc) {
  std::int64_t lo, hi;
  ASSERT_TRUE(parseDateRange("2026-11-23T10:00:00+01:00", lo, hi));
  EXPECT_EQ(formatInstant(lo), "2026-11-23T09:00:00.000Z");
}

TEST(FhirTimeTest, RejectsMalformedDates) {
  std::int64_t lo, hi;
  for (const char* bad : {"", "24", "2024-13", "2024-02-30", "2023-02-29", "2024-01-01T25:00Z", "2024-01-01T10",
                          "2024-01-01T10:00:00.Z", "2024-01-01x", "2024-01-01T10:00+1:00", "'; DROP TABLE x; --"})
    EXPECT_FALSE(parseDateRange(bad, lo, hi)) << bad;
  EXPECT_TRUE(parseDateRange("2024-02-29", lo, hi));
}
