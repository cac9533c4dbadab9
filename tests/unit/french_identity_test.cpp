// The French identity facts of a FHIR Patient: INS systems, INSEE commune codes, the birthplace
// extension written and read back.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "mappings/fhir/french_identity.h"

namespace passerelle::fhir::fr {
namespace {

TEST(FrenchIdentity, InseeCommuneCodesHaveTheirForm) {
  for (const char* good : {"77288", "2A004", "2B033", "97411"}) EXPECT_TRUE(isInseeCommuneCode(good)) << good;
  for (const char* bad : {"", "7728", "772880", "2C004", "A2004", "7728X", "77 28"}) EXPECT_FALSE(isInseeCommuneCode(bad)) << bad;
}

TEST(FrenchIdentity, TheBirthplaceIsWrittenAndReadBack) {
  nlohmann::json p = {{"resourceType", "Patient"}};
  setBirthPlace(p, "", "");
  EXPECT_FALSE(p.contains("extension"));
  setBirthPlace(p, "77288", "Melun");
  EXPECT_EQ(birthPlaceCode(p), "77288");
  EXPECT_EQ(birthPlaceCity(p), "Melun");
  EXPECT_EQ(p["extension"][0]["valueAddress"]["extension"][0]["valueCoding"]["system"], "https://mos.esante.gouv.fr/NOS/TRE_R13-CommuneOM/FHIR/TRE-R13-CommuneOM");
  EXPECT_EQ(birthPlaceCode(nlohmann::json::parse(R"({"extension": [{"url": "other", "valueString": "x"}]})")), "");
  EXPECT_EQ(birthPlaceCode(nlohmann::json::parse(R"({"extension": "not an array"})")), "");
  EXPECT_TRUE(isInsSystem(kInsNia));
  EXPECT_FALSE(isInsSystem("urn:oid:1.2.250.1.213.1.4.2"));
}

}  // namespace
}  // namespace passerelle::fhir::fr
