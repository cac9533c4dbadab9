// Search definitions, text folding and index extraction (no sockets, no disk).
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <map>

#include "gateway/search/index_extractor.h"
#include "gateway/search/search_definitions.h"
#include "gateway/search/text_fold.h"

using namespace passerelle;
using namespace passerelle::search;
using Json = nlohmann::ordered_json;

TEST(TextFoldTest, RemovesCaseAndAccents) {
  EXPECT_EQ(foldText("Hélène"), "helene");
  EXPECT_EQ(foldText("FRANÇOISE"), "francoise");
  EXPECT_EQ(foldText("Œdipe Müller Straße"), "oedipe muller strasse");
  EXPECT_EQ(foldText("e\xCC\x81"), "e");  // e + combining acute accent
  EXPECT_EQ(foldText("ΣΟΦΙΑ"), "σοφια");  // beyond Latin: lower case only
  EXPECT_EQ(foldText(std::string("a\xFF") + "b"), std::string("a\xFF") + "b");  // invalid bytes kept
}

TEST(SearchDefinitionsTest, HoldsTheR4ParametersWithResourceLevelOnes) {
  const auto& d = SearchDefinitions::r4();
  ASSERT_NE(d.find("Patient", "name"), nullptr);
  EXPECT_EQ(d.find("Patient", "name")->kind, ParamKind::kString);
  ASSERT_NE(d.find("Observation", "_tag"), nullptr);
  EXPECT_EQ(d.find("Observation", "_tag")->key, "Resource._tag");
  EXPECT_EQ(d.find("Observation", "code-value-quantity")->components.size(), 2u);
  EXPECT_EQ(d.find("Patient", "nickname"), nullptr);
  EXPECT_EQ(d.find("Patient", "_text"), nullptr);  // no expression: not supported
  EXPECT_FALSE(d.summary("Patient").empty());
  EXPECT_TRUE(d.find("Patient", "birthdate")->single);
  EXPECT_FALSE(d.find("Patient", "name")->single);
  EXPECT_TRUE(d.find("Condition", "onset-date")->single);  // onsetDateTime | onsetPeriod: one choice
  EXPECT_FALSE(d.find("Observation", "date")->single);     // effectiveTiming has several events
}

// Rows are keyed by a 31-bit hash of "Type.code" (and derived names): no two may collide.
TEST(SearchDefinitionsTest, IndexKeysDoNotCollide) {
  const auto& d = SearchDefinitions::r4();
  std::map<std::int64_t, std::string> seen;
  std::size_t n = 0;
  for (const char* type : {"Resource", "Patient", "Observation", "Condition", "Encounter", "Practitioner", "Organization",
                           "Consent", "DocumentReference", "ServiceRequest", "CarePlan", "Questionnaire"}) {
    for (const ParamDef* p : d.forType(type)) {
      for (std::string suffix : {"", ":text", ":of-type", ":identifier"}) {
        std::string key = p->key + suffix;
        auto h = store::indexParamKey(key);
        auto [it, fresh] = seen.emplace(h, key);
        EXPECT_TRUE(fresh || it->second == key) << key << " and " << it->second;
        ++n;
      }
    }
  }
  EXPECT_GT(n, 500u);
}

// Parameters of a type that extract the same values share one set of index rows: the second is
// searched through the first one's key and gets no rows of its own.
TEST(SearchDefinitionsTest, ParametersWithTheSamePathsShareRows) {
  const auto& d = SearchDefinitions::r4();
  const ParamDef* name = d.find("Patient", "name");
  const ParamDef* phonetic = d.find("Patient", "phonetic");
  ASSERT_TRUE(name && phonetic);
  EXPECT_FALSE(name->sharesRows);
  EXPECT_TRUE(phonetic->sharesRows);
  EXPECT_EQ(phonetic->key, "Patient.name");
  const ParamDef* beneficiary = d.find("Coverage", "beneficiary");
  const ParamDef* patient = d.find("Coverage", "patient");
  ASSERT_TRUE(beneficiary && patient);
  EXPECT_EQ(beneficiary->key, patient->key);
  // Different paths, or composites, keep their own rows.
  EXPECT_FALSE(d.find("Patient", "family")->sharesRows);
  EXPECT_FALSE(d.find("Observation", "code-value-concept")->sharesRows);
  EXPECT_FALSE(d.find("Observation", "code-value-quantity")->sharesRows);
}

namespace {

store::IndexRows rowsOf(const std::string& type, const char* json) {
  return extractIndex(SearchDefinitions::r4(), type, Json::parse(json), "https://gw.example/fhir");
}

template <typename Rows, typename Pred>
int count(const Rows& rows, Pred p) {
  int n = 0;
  for (const auto& r : rows) n += p(r) ? 1 : 0;
  return n;
}

}  // namespace

TEST(IndexExtractorTest, PatientNamesIdentifiersAndDates) {
  auto rows = rowsOf("Patient", R"({"resourceType":"Patient","id":"p",
    "identifier":[{"system":"urn:oid:1.2.250.1.213.1.4.8","value":"1234567890123",
                   "type":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/v2-0203","code":"NI"}],"text":"INS"}}],
    "name":[{"family":"Dupré","given":["Hélène","Marie"]}],
    "telecom":[{"system":"phone","value":"0102030405"},{"system":"email","value":"h@example.fr"}],
    "birthDate":"1960-05","deceasedBoolean":false,"meta":{"tag":[{"system":"urn:t","code":"demo"}]}})");
  EXPECT_EQ(count(rows.tokens, [](auto& t) { return t.param == "Patient.identifier" && t.value == "1234567890123"; }), 1);
  EXPECT_EQ(count(rows.tokens, [](auto& t) { return t.param == "Patient.identifier:of-type" && t.value == "NI|1234567890123"; }), 1);
  EXPECT_EQ(count(rows.strings, [](auto& s) { return s.param == "Patient.identifier:text" && s.norm == "ins"; }), 1);
  EXPECT_EQ(count(rows.strings, [](auto& s) { return s.param == "Patient.name" && s.norm == "helene" && s.exact == "Hélène"; }), 1);
  EXPECT_EQ(count(rows.strings, [](auto& s) { return s.param == "Patient.family" && s.norm == "dupre"; }), 1);
  EXPECT_EQ(count(rows.strings, [](auto& s) { return s.param == "Patient.phonetic"; }), 0);  // shares Patient.name's
  EXPECT_EQ(count(rows.tokens, [](auto& t) { return t.param == "Patient.phone" && t.value == "0102030405"; }), 1);
  EXPECT_EQ(count(rows.tokens, [](auto& t) { return t.param == "Patient.phone" && t.value == "h@example.fr"; }), 0);
  EXPECT_EQ(count(rows.tokens, [](auto& t) { return t.param == "Patient.deceased" && t.value == "false"; }), 1);
  EXPECT_EQ(count(rows.tokens, [](auto& t) { return t.param == "Resource._tag" && t.system == "urn:t"; }), 1);
  ASSERT_EQ(count(rows.dates, [](auto& d) { return d.param == "Patient.birthdate"; }), 1);
  for (const auto& d : rows.dates)
    if (d.param == "Patient.birthdate") {
      EXPECT_EQ(d.lo, -305164800000);  // 1960-05-01T00:00Z
      EXPECT_EQ(d.hi, -302486400000);  // 1960-06-01T00:00Z
    }
}

TEST(IndexExtractorTest, ObservationReferencesQuantitiesAndComposites) {
  auto rows = rowsOf("Observation", R"({"resourceType":"Observation","status":"final",
    "code":{"coding":[{"system":"http://loinc.org","code":"72514-3","display":"Pain severity"}],"text":"EVA"},
    "subject":{"reference":"https://gw.example/fhir/Patient/p1/_history/2"},
    "performer":[{"reference":"#c1"},{"reference":"http://other.example/fhir/Practitioner/x"}],
    "effectivePeriod":{"start":"2025-03-04"},
    "valueQuantity":{"value":7,"unit":"score","system":"http://unitsofmeasure.org","code":"{score}"},
    "component":[{"code":{"coding":[{"system":"http://loinc.org","code":"8480-6"}]},
                  "valueQuantity":{"value":120,"system":"http://unitsofmeasure.org","code":"mm[Hg]"}}]})");
  EXPECT_EQ(count(rows.references, [](auto& r) { return r.param == "Observation.subject" && r.targetType == "Patient" && r.targetId == "p1"; }), 1);
  EXPECT_EQ(count(rows.references, [](auto& r) { return r.param == "Observation.patient" && r.targetId == "p1"; }), 1);
  EXPECT_EQ(count(rows.references, [](auto& r) { return r.param == "Observation.performer" && r.targetType.empty() &&
                                                        r.targetId == "http://other.example/fhir/Practitioner/x"; }), 1);
  EXPECT_EQ(count(rows.references, [](auto& r) { return r.targetId == "#c1"; }), 0);  // contained: not indexed
  EXPECT_EQ(count(rows.numbers, [](auto& n) { return n.param == "Observation.value-quantity" && n.lo == 7 && n.code == "{score}"; }), 1);
  EXPECT_EQ(count(rows.numbers, [](auto& n) { return n.param == "Observation.value-quantity" && n.code == "score"; }), 1);
  EXPECT_EQ(count(rows.strings, [](auto& s) { return s.param == "Observation.code:text" && s.norm == "eva"; }), 1);
  for (const auto& d : rows.dates)
    if (d.param == "Observation.date") EXPECT_EQ(d.hi, INT64_MAX);  // open-ended Period
  EXPECT_EQ(count(rows.composites, [](auto& c) { return c.param == "Observation.code-value-quantity" && c.value1 == "72514-3" && c.lo == 7; }), 2);
  // combo: the Observation's own code+value and the component's, never crossed.
  EXPECT_EQ(count(rows.composites, [](auto& c) { return c.param == "Observation.combo-code-value-quantity" && c.value1 == "8480-6" && c.lo == 120; }), 1);
  EXPECT_EQ(count(rows.composites, [](auto& c) { return c.param == "Observation.combo-code-value-quantity" && c.value1 == "8480-6" && c.lo == 7; }), 0);
  EXPECT_EQ(count(rows.composites, [](auto& c) { return c.param == "Observation.component-code-value-quantity" && c.value1 == "72514-3"; }), 0);
}

TEST(IndexExtractorTest, SplitsReferences) {
  std::string t, id;
  splitReference("Patient/1", "", t, id);
  EXPECT_EQ(t + "|" + id, "Patient|1");
  splitReference("https://gw.example/fhir/Patient/1", "https://gw.example/fhir", t, id);
  EXPECT_EQ(t + "|" + id, "Patient|1");
  splitReference("urn:uuid:9d0c5a3e-0000-0000-0000-000000000000", "", t, id);
  EXPECT_EQ(t, "");
  splitReference("Nope/1", "", t, id);
  EXPECT_EQ(t + "|" + id, "|Nope/1");
}
