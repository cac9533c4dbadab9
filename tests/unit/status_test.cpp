#include <gtest/gtest.h>

#include "gateway/common/status.h"
#include "gateway/fhir/fhir_service.h"

using namespace passerelle;

TEST(StatusTest, OneTableGivesEachCodeItsHttpStatus) {
  EXPECT_EQ(errorInfo(ErrorCode::kInvalid).httpStatus, 400);
  EXPECT_EQ(errorInfo(ErrorCode::kNotFound).httpStatus, 404);
  EXPECT_EQ(errorInfo(ErrorCode::kMethodNotAllowed).httpStatus, 405);
  EXPECT_EQ(errorInfo(ErrorCode::kConflict).httpStatus, 409);
  EXPECT_EQ(errorInfo(ErrorCode::kGone).httpStatus, 410);
  EXPECT_EQ(errorInfo(ErrorCode::kPreconditionFailed).httpStatus, 412);
  EXPECT_EQ(errorInfo(ErrorCode::kTooLarge).httpStatus, 413);
  EXPECT_EQ(errorInfo(ErrorCode::kUnsupportedMediaType).httpStatus, 415);
  EXPECT_EQ(errorInfo(ErrorCode::kUnprocessable).httpStatus, 422);
  EXPECT_EQ(errorInfo(ErrorCode::kInternal).httpStatus, 500);
  EXPECT_EQ(errorInfo(ErrorCode::kUnauthorized).httpStatus, 401);
  EXPECT_EQ(errorInfo(ErrorCode::kForbidden).httpStatus, 403);
  EXPECT_STREQ(errorInfo(ErrorCode::kForbidden).fhirIssueCode, "forbidden");
  EXPECT_EQ(errorInfo(ErrorCode::kTimeout).httpStatus, 503);
  EXPECT_STREQ(errorInfo(ErrorCode::kTimeout).fhirIssueCode, "timeout");
  EXPECT_EQ(errorInfo(ErrorCode::kStorageFull).httpStatus, 507);
  EXPECT_STREQ(errorInfo(ErrorCode::kStorageFull).fhirIssueCode, "no-store");
  EXPECT_TRUE(errorInfo(ErrorCode::kUnavailable).retryable);
  EXPECT_FALSE(errorInfo(ErrorCode::kInvalid).retryable);
}

TEST(StatusTest, ParsesETags) {
  std::int64_t v = 0;
  EXPECT_TRUE(fhir::parseETag("W/\"12\"", v));
  EXPECT_EQ(v, 12);
  EXPECT_TRUE(fhir::parseETag("\"3\"", v));
  EXPECT_EQ(v, 3);
  EXPECT_FALSE(fhir::parseETag("W/\"x\"", v));
  EXPECT_FALSE(fhir::parseETag("", v));
}
