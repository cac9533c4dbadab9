// The network mapping engine: element paths, forward and reverse mappings, definitions as data.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "mappings/network/element_path.h"
#include "mappings/network/mapping_engine.h"

namespace passerelle::network {
namespace {

ElementPath P(const std::string& text) {
  std::string error;
  auto p = parseElementPath(text, error);
  EXPECT_TRUE(p) << error;
  return p ? *p : ElementPath{};
}

TEST(ElementPathTest, WritesThroughMatchSelectorsAndReadsBack) {
  Json r = Json::object();
  setAt(r, P("identifier[system=https://a.b/c.d].value"), "42");
  setAt(r, P("name[0].given[*]"), "Anne", 1);
  EXPECT_EQ(r["identifier"][0]["system"], "https://a.b/c.d");
  EXPECT_EQ(*getAt(r, P("identifier[system=https://a.b/c.d].value")), "42");
  EXPECT_EQ(r["name"][0]["given"].size(), 2u);
  EXPECT_EQ(countEach(r, P("name[0].given[*]")), 2u);
  EXPECT_EQ(getAt(r, P("identifier[system=other].value")), nullptr);
}

TEST(ElementPathTest, MatchEachCountsOnlyMatchingElements) {
  Json r = Json::object();
  auto p = P("extension[url=e,*].valueCode");
  setAt(r, p, "E1", 0);
  setAt(r, P("extension[url=x].valueBoolean"), true);
  setAt(r, p, "E2", 1);
  EXPECT_EQ(countEach(r, p), 2u);
  EXPECT_EQ(*getAt(r, p, 1), "E2");
  EXPECT_EQ(r["extension"].size(), 3u);
}

TEST(ElementPathTest, RefusesMalformedPaths) {
  std::string error;
  EXPECT_FALSE(parseElementPath("a..b", error));
  EXPECT_FALSE(parseElementPath("a[", error));
  EXPECT_FALSE(parseElementPath("a[x]", error));
  EXPECT_FALSE(parseElementPath("a[*].b[*]", error));
  EXPECT_FALSE(parseElementPath("", error));
}

TEST(MappingReferenceTest, ConditionalReferencesRoundTrip) {
  std::string kind;
  Json ref;
  std::string r = MappingSet::conditionalReference("professional", Json{{"rpps", "10101234567"}});
  EXPECT_EQ(r, "PractitionerRole?identifier=https://douleur77.fr/fhir/sid/member|rpps:10101234567");
  ASSERT_TRUE(MappingSet::parseConditionalReference(r, kind, ref));
  EXPECT_EQ(kind, "professional");
  EXPECT_EQ(ref, (Json{{"rpps", "10101234567"}}));
  r = MappingSet::conditionalReference("patient", Json{{"nir", "185057512345678"}, {"networkId", "P77-000001"}});
  EXPECT_EQ(r, "Patient?identifier=urn:oid:1.2.250.1.213.1.4.8|185057512345678");
  EXPECT_FALSE(MappingSet::parseConditionalReference("Patient/12", kind, ref));
}

Json ciedDocument() {
  return Json::parse(R"({
    "documentType": "cied", "schemaVersion": "1.0", "documentId": "CIED-0001",
    "patient": {"nir": "185057512345678"}, "gp": {"rpps": "10101234567"},
    "date": "2026-03-02", "durationMinutes": 65,
    "measures": {"vas": {"value": 8, "method": "vas", "rawMm": 78},
                 "dallas": {"dailyActivities": 60, "workLeisure": 70, "anxietyDepression": 40, "socialInterest": 30}},
    "treatments": [{"atc": "N02AX02", "label": "Tramadol", "dose": "50 mg x3/j"}, {"atc": "M01AE01", "label": "Ibuprofène"}],
    "opioidDailyDoseMg": 30,
    "utilisation": {"period": {"start": "2025-09-02", "end": "2026-03-01"}, "sickLeaveDays": 21, "imagingActs": 1},
    "report": {"text": "Lombalgie chronique."}
  })");
}

TEST(MappingEngineTest, BuiltInDefinitionsLoad) {
  const auto& set = MappingSet::builtIn();
  EXPECT_TRUE(set.has("cied"));
  EXPECT_TRUE(set.has("csb"));
  EXPECT_TRUE(set.has("inclusion"));
  EXPECT_FALSE(set.has("nothing"));
}

TEST(MappingEngineTest, CiedBecomesATransactionAndComesBackEqual) {
  const auto& set = MappingSet::builtIn();
  std::vector<MappingIssue> issues;
  Json derived = {{"goalDue", "2026-09-02"}, {"goalTarget", 4}};
  Json bundle = set.toBundle("cied", ciedDocument(), derived, issues);
  ASSERT_TRUE(issues.empty()) << issues[0].path << ": " << issues[0].message;
  std::map<std::string, int> types;
  for (const auto& e : bundle["entry"]) types[e["resource"]["resourceType"].get<std::string>()]++;
  EXPECT_EQ(types["Encounter"], 1);
  EXPECT_EQ(types["Observation"], 5);  // VAS, Dallas, OME, 2 utilisation counts
  EXPECT_EQ(types["MedicationStatement"], 2);
  EXPECT_EQ(types["Goal"], 1);
  EXPECT_EQ(types["List"], 1);
  const Json& vas = bundle["entry"][1]["resource"];
  EXPECT_EQ(vas["code"]["coding"][0]["code"], "72514-3");
  EXPECT_EQ(vas["method"]["coding"][0]["code"], "C121547");
  EXPECT_EQ(vas["encounter"]["reference"], bundle["entry"][0]["fullUrl"]);
  EXPECT_EQ(vas["subject"]["reference"], "Patient?identifier=urn:oid:1.2.250.1.213.1.4.8|185057512345678");
  Json back = set.fromBundle(bundle, issues);
  ASSERT_TRUE(issues.empty()) << issues[0].path << ": " << issues[0].message;
  EXPECT_EQ(nlohmann::json(back), nlohmann::json(ciedDocument())) << back.dump(1);
}

TEST(MappingEngineTest, SameDocumentGivesTheSameBundle) {
  const auto& set = MappingSet::builtIn();
  std::vector<MappingIssue> issues;
  EXPECT_EQ(set.toBundle("cied", ciedDocument(), Json::object(), issues),
            set.toBundle("cied", ciedDocument(), Json::object(), issues));
}

TEST(MappingEngineTest, UntranslatableCodeIsAnIssueWithTheDocumentPath) {
  const auto& set = MappingSet::builtIn();
  std::vector<MappingIssue> issues;
  Json doc = ciedDocument();
  doc["measures"]["vas"]["method"] = "smell";
  set.toBundle("cied", doc, Json::object(), issues);
  ASSERT_EQ(issues.size(), 1u);
  EXPECT_EQ(issues[0].path, "measures.vas.method");
}

TEST(MappingEngineTest, MalformedDefinitionsAreRefusedWithTheirPlace) {
  std::string error;
  EXPECT_FALSE(MappingSet::load({{"d.json", R"({"kind":"k","version":"1","resources":[{"name":"a","resourceType":"Patient","fields":[{"doc":"x","fhir":"a..b"}]}]})"}}, {}, error));
  EXPECT_NE(error.find("resources[0].fields[0]"), std::string::npos) << error;
  EXPECT_FALSE(MappingSet::load({{"d.json", R"({"kind":"k","version":"1","resources":[{"name":"a","resourceType":"Patient","fields":[{"doc":"x","fhir":"y","map":"nope"}]}]})"}}, {}, error));
  EXPECT_NE(error.find("unknown ConceptMap"), std::string::npos) << error;
  EXPECT_FALSE(MappingSet::load({{"d.json", R"({"kind":"k","version":"1","resources":[{"name":"a","resourceType":"Patient","fields":[{"link":"b","fhir":"y"}]}]})"}}, {}, error));
  EXPECT_NE(error.find("link to unknown rule"), std::string::npos) << error;
}

}  // namespace
}  // namespace passerelle::network

namespace passerelle::network {
namespace {

TEST(MappingReferenceTest, StoredResourcesAreReferencedByTheirPreferredIdentifier) {
  Json patient = Json::parse(R"({"resourceType":"Patient","identifier":[
    {"system":"https://douleur77.fr/fhir/sid/patient","value":"P77-000001"},
    {"system":"urn:oid:1.2.250.1.213.1.4.8","value":"185057512345673"}]})");
  EXPECT_EQ(MappingSet::conditionalReferenceOf(patient), "Patient?identifier=urn:oid:1.2.250.1.213.1.4.8|185057512345673");
  Json role = Json::parse(R"({"resourceType":"PractitionerRole","identifier":[{"system":"https://douleur77.fr/fhir/sid/member","value":"adeli:771234567"}]})");
  EXPECT_EQ(MappingSet::conditionalReferenceOf(role), "PractitionerRole?identifier=https://douleur77.fr/fhir/sid/member|adeli:771234567");
  Json org = Json::parse(R"({"resourceType":"Organization","identifier":[{"system":"https://finess.esante.gouv.fr","value":"930110036"}]})");
  EXPECT_EQ(MappingSet::conditionalReferenceOf(org), "Organization?identifier=https://finess.esante.gouv.fr|930110036");
  EXPECT_EQ(MappingSet::conditionalReferenceOf(Json::parse(R"({"resourceType":"Patient"})")), "");
}

}  // namespace
}  // namespace passerelle::network
