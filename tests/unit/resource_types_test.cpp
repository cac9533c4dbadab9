#include <gtest/gtest.h>

#include "mappings/fhir/resource_types.h"

using namespace passerelle::fhir;

TEST(ResourceTypesTest, KnowsEveryR4ResourceAndNothingElse) {
  EXPECT_EQ(resourceTypes().size(), 146u);  // FHIR 4.0.1 concrete resource types
  EXPECT_TRUE(isResourceType("Patient"));
  EXPECT_TRUE(isResourceType("MedicinalProductAuthorization"));
  EXPECT_FALSE(isResourceType("patient"));
  EXPECT_FALSE(isResourceType("DomainResource"));
  EXPECT_FALSE(isResourceType("SubscriptionStatus"));  // R4B, not R4
}

TEST(ResourceTypesTest, IdentifierParameterFollowsTheDefinitions) {
  EXPECT_TRUE(hasIdentifierParam("Patient"));
  EXPECT_TRUE(hasIdentifierParam("Observation"));
  EXPECT_FALSE(hasIdentifierParam("Binary"));
}

TEST(ResourceTypesTest, ValidatesIds) {
  EXPECT_TRUE(isValidId("a-b.C9"));
  EXPECT_TRUE(isValidId(std::string(64, 'x')));
  EXPECT_FALSE(isValidId(std::string(65, 'x')));
  EXPECT_FALSE(isValidId(""));
  EXPECT_FALSE(isValidId("a/b"));
  EXPECT_FALSE(isValidId("a_b"));
}
