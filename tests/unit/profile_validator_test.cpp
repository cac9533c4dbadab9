// Profile validation rules on small hand-made profiles, each written from the rules of the R4
// specification (profiling.html, elementdefinition.html, extensibility.html): narrowed cardinality,
// fixed and pattern values, slicing by value, pattern, type and exists, extension slices by url,
// closed slicing, required and extensible bindings, extension definitions, choice types, reference
// targets, meta.profile, unknown profiles and profiles that do not load.
#include <gtest/gtest.h>

#include <algorithm>
#include <nlohmann/json.hpp>

#include "mappings/fhir/profiles/profile_validator.h"

namespace passerelle::fhir::profiles {
namespace {

using nlohmann::json;

const char* kBase = "http://example.org/fhir/StructureDefinition/";

// A StructureDefinition whose snapshot is the root element plus `elements` (id = path[:slice]).
json profile(const std::string& name, const std::string& type, json elements, const std::string& kind = "resource") {
  json snapshot = json::array({{{"id", type}, {"path", type}, {"min", 0}, {"max", "*"}}});
  for (auto& e : elements) {
    if (!e.contains("min")) e["min"] = 0;
    if (!e.contains("max")) e["max"] = "1";
    snapshot.push_back(e);
  }
  return {{"resourceType", "StructureDefinition"},
          {"url", kBase + name},
          {"version", "1.0.0"},
          {"name", name},
          {"kind", kind},
          {"type", type},
          {"derivation", "constraint"},
          {"snapshot", {{"element", snapshot}}}};
}

json el(const std::string& id, int min, const std::string& max, json extra = json::object()) {
  std::string path = id;
  // the path is the id without the slice names
  for (auto c = path.find(':'); c != std::string::npos; c = path.find(':')) {
    auto dot = path.find('.', c);
    path.erase(c, dot == std::string::npos ? std::string::npos : dot - c);
  }
  json e = {{"id", id}, {"path", path}, {"min", min}, {"max", max}};
  auto colon = id.rfind(':');
  if (colon != std::string::npos && id.find('.', colon) == std::string::npos) e["sliceName"] = id.substr(colon + 1);
  for (auto& [k, v] : extra.items()) e[k] = v;
  return e;
}

json type(const std::string& code) { return json::array({{{"code", code}}}); }

class ProfileValidatorTest : public ::testing::Test {
 protected:
  void load(const json& resource) {
    std::string error;
    ASSERT_TRUE(registry_.loadText(resource.dump(), "test", error)) << error;
  }
  std::vector<Issue> check(const json& resource, const std::string& name) {
    std::vector<Issue> issues;
    ProfileValidator(registry_).validate(resource.dump(), kBase + name, issues);
    return issues;
  }
  static int errors(const std::vector<Issue>& issues) {
    return static_cast<int>(std::count_if(issues.begin(), issues.end(), [](const Issue& i) {
      return i.severity == "error" || i.severity == "fatal";
    }));
  }
  static bool has(const std::vector<Issue>& issues, const std::string& severity, const std::string& location,
                  const std::string& text) {
    return std::any_of(issues.begin(), issues.end(), [&](const Issue& i) {
      return i.severity == severity && i.expression == location && i.diagnostics.find(text) != std::string::npos;
    });
  }
  static std::string dump(const std::vector<Issue>& issues) {
    std::string out;
    for (const auto& i : issues) out += "\n  " + i.severity + " " + i.expression + ": " + i.diagnostics;
    return out;
  }
  ProfileRegistry registry_;
};

TEST_F(ProfileValidatorTest, NarrowedCardinality) {
  load(profile("card", "Patient",
               {el("Patient.identifier", 1, "*", {{"type", type("Identifier")}}),
                el("Patient.name", 0, "1", {{"type", type("HumanName")}}),
                el("Patient.photo", 0, "0", {{"type", type("Attachment")}})}));
  json ok = {{"resourceType", "Patient"}, {"identifier", {{{"value", "1"}}}}, {"name", {{{"family", "A"}}}}};
  EXPECT_EQ(errors(check(ok, "card")), 0) << dump(check(ok, "card"));
  json none = {{"resourceType", "Patient"}};
  auto issues = check(none, "card");
  EXPECT_TRUE(has(issues, "error", "Patient", "Patient.identifier: minimum required = 1, but only found 0")) << dump(issues);
  json two = ok;
  two["name"].push_back({{"family", "B"}});
  two["photo"] = {{{"contentType", "image/png"}}};
  issues = check(two, "card");
  EXPECT_TRUE(has(issues, "error", "Patient.name", "max allowed = 1, but found 2")) << dump(issues);
  EXPECT_TRUE(has(issues, "error", "Patient.photo", "does not allow this element")) << dump(issues);
}

TEST_F(ProfileValidatorTest, FixedIsExactPatternIsContained) {
  load(profile("fp", "Observation",
               {el("Observation.status", 1, "1", {{"type", type("code")}, {"fixedCode", "final"}}),
                el("Observation.code", 1, "1",
                   {{"type", type("CodeableConcept")},
                    {"patternCodeableConcept", {{"coding", {{{"system", "http://loinc.org"}, {"code", "72514-3"}}}}}}}),
                el("Observation.category", 0, "*",
                   {{"type", type("CodeableConcept")}, {"fixedCodeableConcept", {{"text", "pain"}}}})}));
  json ok = {{"resourceType", "Observation"},
             {"status", "final"},
             {"code", {{"coding", {{{"system", "http://loinc.org"}, {"code", "72514-3"}, {"display", "Pain"}}}}, {"text", "x"}}}};
  EXPECT_EQ(errors(check(ok, "fp")), 0) << dump(check(ok, "fp"));
  json bad = ok;
  bad["status"] = "preliminary";
  bad["code"]["coding"][0]["code"] = "0000-0";
  bad["category"] = {{{"text", "pain"}, {"coding", {{{"code", "x"}}}}}};  // more than the fixed value: not exact
  auto issues = check(bad, "fp");
  EXPECT_TRUE(has(issues, "error", "Observation.status", "Value must be exactly \"final\"")) << dump(issues);
  EXPECT_TRUE(has(issues, "error", "Observation.code", "does not match the pattern")) << dump(issues);
  EXPECT_TRUE(has(issues, "error", "Observation.category[0]", "Value must be exactly")) << dump(issues);
}

// The invariants a profile adds (ElementDefinition.constraint) are evaluated where they are
// defined, with their severity; those of the base specification are left to the base validator.
TEST_F(ProfileValidatorTest, ConstraintsTheProfileAddsAreEvaluated) {
  std::string own = std::string(kBase) + "inv";
  load(profile("inv", "Patient",
               {el("Patient.identifier", 0, "*",
                   {{"type", type("Identifier")},
                    {"constraint", {{{"key", "inv-1"}, {"severity", "error"}, {"human", "An identifier has a system"},
                                     {"expression", "system.exists()"}, {"source", own}},
                                    // the base specification's own: not evaluated again here
                                    {{"key", "ele-1"}, {"severity", "error"}, {"human", "never"},
                                     {"expression", "false"}, {"source", "http://hl7.org/fhir/StructureDefinition/Element"}}}}}),
                el("Patient.contact", 0, "*",
                   {{"type", type("BackboneElement")},
                    // a backbone element: its children are found by the element's own type
                    {"constraint", {{{"key", "inv-2"}, {"severity", "warning"}, {"human", "A contact has a name"},
                                     {"expression", "name.exists()"}, {"source", own}}}}}),
                el("Patient.birthDate", 0, "1",
                   {{"type", type("date")},
                    // without a source, the differential says whose it is (here: nobody's, not checked)
                    {"constraint", {{{"key", "inv-3"}, {"severity", "error"}, {"expression", "false"}}}}})}));
  json ok = {{"resourceType", "Patient"},
             {"identifier", {{{"system", "urn:oid:1.2.250.1.213.1.4.8"}, {"value", "1"}}}},
             {"contact", {{{"name", {{"family", "A"}}}}}},
             {"birthDate", "1970-01-01"}};
  auto issues = check(ok, "inv");
  EXPECT_EQ(errors(issues), 0) << dump(issues);
  EXPECT_EQ(issues.size(), 0u) << dump(issues);
  json bad = ok;
  bad["identifier"].push_back({{"value", "2"}});
  bad["contact"][0].erase("name");
  bad["contact"][0]["gender"] = "male";
  issues = check(bad, "inv");
  EXPECT_EQ(errors(issues), 1) << dump(issues);
  EXPECT_TRUE(has(issues, "error", "Patient.identifier[1]", "Constraint failed: inv-1: 'An identifier has a system'")) << dump(issues);
  EXPECT_TRUE(has(issues, "warning", "Patient.contact[0]", "Constraint failed: inv-2")) << dump(issues);

  // %resource is the resource checked; an expression that does not compile says so, as information.
  load(profile("inv-res", "Patient",
               {el("Patient.name", 0, "*",
                   {{"type", type("HumanName")},
                    {"constraint", {{{"key", "res-1"}, {"severity", "error"}, {"expression", "%resource.active = true"}, {"source", own}},
                                    {{"key", "res-2"}, {"severity", "error"}, {"expression", "family.(("}, {"source", own}}}}})}));
  json named = {{"resourceType", "Patient"}, {"active", false}, {"name", {{{"family", "A"}}}}};
  issues = check(named, "inv-res");
  EXPECT_TRUE(has(issues, "error", "Patient.name[0]", "Constraint failed: res-1")) << dump(issues);
  EXPECT_TRUE(has(issues, "information", "Patient.name[0]", "res-2")) << dump(issues);
  named["active"] = true;
  EXPECT_EQ(errors(check(named, "inv-res")), 0) << dump(check(named, "inv-res"));
}

json identifierSlicing(const std::string& rules) {
  return profile("ids-" + rules, "Patient",
                 {el("Patient.identifier", 1, "*",
                     {{"type", type("Identifier")},
                      {"slicing", {{"discriminator", {{{"type", "value"}, {"path", "system"}}}}, {"rules", rules}}}}),
                  el("Patient.identifier:INS", 1, "1", {{"type", type("Identifier")}}),
                  el("Patient.identifier:INS.system", 1, "1", {{"type", type("uri")}, {"fixedUri", "urn:oid:1.2.250.1.213.1.4.8"}}),
                  el("Patient.identifier:INS.value", 1, "1", {{"type", type("string")}}),
                  el("Patient.identifier:IPP", 0, "1", {{"type", type("Identifier")}}),
                  el("Patient.identifier:IPP.system", 1, "1", {{"type", type("uri")}, {"fixedUri", "urn:ipp"}})});
}

TEST_F(ProfileValidatorTest, SlicingByValueOnIdentifierSystem) {
  load(identifierSlicing("open"));
  json ok = {{"resourceType", "Patient"},
             {"identifier",
              {{{"system", "urn:other"}, {"value", "x"}}, {{"system", "urn:oid:1.2.250.1.213.1.4.8"}, {"value", "1"}}}}};
  EXPECT_EQ(errors(check(ok, "ids-open")), 0) << dump(check(ok, "ids-open"));
  json missing = {{"resourceType", "Patient"}, {"identifier", {{{"system", "urn:other"}, {"value", "x"}}}}};
  auto issues = check(missing, "ids-open");
  EXPECT_TRUE(has(issues, "error", "Patient", "Slice 'INS' of Patient.identifier: minimum required = 1, but only found 0"))
      << dump(issues);
  json twice = ok;
  twice["identifier"].push_back({{"system", "urn:oid:1.2.250.1.213.1.4.8"}});
  issues = check(twice, "ids-open");
  EXPECT_TRUE(has(issues, "error", "Patient", "Slice 'INS' of Patient.identifier: max allowed = 1, but found 2")) << dump(issues);
  // the slice's own rules apply to the element it matched
  EXPECT_TRUE(has(issues, "error", "Patient.identifier[2]", "Patient.identifier:INS.value: minimum required = 1")) << dump(issues);
}

TEST_F(ProfileValidatorTest, ClosedSlicingRefusesOtherElements) {
  load(identifierSlicing("closed"));
  json doc = {{"resourceType", "Patient"},
              {"identifier",
               {{{"system", "urn:other"}, {"value", "x"}}, {{"system", "urn:oid:1.2.250.1.213.1.4.8"}, {"value", "1"}}}}};
  auto issues = check(doc, "ids-closed");
  EXPECT_EQ(errors(issues), 1) << dump(issues);
  EXPECT_TRUE(has(issues, "error", "Patient.identifier[0]", "matches none of the slices of Patient.identifier (INS, IPP)"))
      << dump(issues);
}

TEST_F(ProfileValidatorTest, SlicingByPatternOnCoding) {
  json survey = json::parse(R"({"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category",
                                            "code": "survey"}]})");
  json patternSlicing = json::parse(R"({"discriminator": [{"type": "pattern", "path": "$this"}], "rules": "open"})");
  load(profile("cat", "Observation",
               {el("Observation.category", 1, "*", {{"type", type("CodeableConcept")}, {"slicing", patternSlicing}}),
                el("Observation.category:survey", 1, "1",
                   {{"type", type("CodeableConcept")}, {"patternCodeableConcept", survey}}),
                el("Observation.code", 1, "1", {{"type", type("CodeableConcept")}}),
                el("Observation.code.coding", 1, "*", {{"type", type("Coding")}, {"slicing", patternSlicing}}),
                el("Observation.code.coding:loinc", 1, "1",
                   {{"type", type("Coding")},
                    {"patternCoding", json::parse(R"({"system": "http://loinc.org", "code": "72514-3"})")}})}));
  json ok = {{"resourceType", "Observation"},
             {"category",
              {{{"coding", {{{"system", "http://terminology.hl7.org/CodeSystem/observation-category"}, {"code", "survey"}}}}}}},
             {"code", {{"coding", {{{"system", "urn:local"}, {"code", "p"}}, {{"system", "http://loinc.org"}, {"code", "72514-3"}}}}}}};
  EXPECT_EQ(errors(check(ok, "cat")), 0) << dump(check(ok, "cat"));
  json bad = ok;
  bad["category"][0]["coding"][0]["code"] = "exam";
  bad["code"]["coding"].erase(1);
  auto issues = check(bad, "cat");
  EXPECT_TRUE(has(issues, "error", "Observation", "Slice 'survey' of Observation.category: minimum required = 1")) << dump(issues);
  EXPECT_TRUE(has(issues, "error", "Observation.code", "Slice 'loinc' of Observation.code.coding: minimum required = 1"))
      << dump(issues);
}

TEST_F(ProfileValidatorTest, SlicingByTypeOnAChoiceAndByExists) {
  load(profile("ty", "Observation",
               {el("Observation.value[x]", 1, "1",
                   {{"type", {{{"code", "Quantity"}}, {{"code", "string"}}}},
                    {"slicing", {{"discriminator", {{{"type", "type"}, {"path", "$this"}}}}, {"rules", "open"}}}}),
                el("Observation.value[x]:valueQuantity", 0, "1", {{"type", type("Quantity")}}),
                el("Observation.value[x]:valueQuantity.system", 1, "1", {{"type", type("uri")}, {"fixedUri", "http://unitsofmeasure.org"}}),
                el("Observation.component", 0, "*",
                   {{"type", type("BackboneElement")},
                    {"slicing", {{"discriminator", {{{"type", "exists"}, {"path", "valueQuantity"}}}}, {"rules", "closed"}}}}),
                el("Observation.component:measured", 0, "1", {{"type", type("BackboneElement")}}),
                el("Observation.component:measured.value[x]", 1, "1", {{"type", type("Quantity")}})}));
  json ok = {{"resourceType", "Observation"}, {"valueQuantity", {{"value", 3}, {"system", "http://unitsofmeasure.org"}}}};
  EXPECT_EQ(errors(check(ok, "ty")), 0) << dump(check(ok, "ty"));
  json str = {{"resourceType", "Observation"}, {"valueString", "x"}};
  EXPECT_EQ(errors(check(str, "ty")), 0) << dump(check(str, "ty"));
  json bad = {{"resourceType", "Observation"},
              {"valueQuantity", {{"value", 3}, {"system", "urn:units"}}},
              {"component", {{{"valueQuantity", {{"value", 1}}}}, {{"valueString", "x"}}}}};
  auto issues = check(bad, "ty");
  EXPECT_TRUE(has(issues, "error", "Observation.value.ofType(Quantity).system", "Value must be exactly")) << dump(issues);
  EXPECT_TRUE(has(issues, "error", "Observation.component[1]", "matches none of the slices")) << dump(issues);
  EXPECT_EQ(errors(issues), 2) << dump(issues);
  json other = {{"resourceType", "Observation"}, {"valueBoolean", true}};
  issues = check(other, "ty");
  EXPECT_TRUE(has(issues, "error", "Observation.value.ofType(boolean)", "The type boolean is not allowed")) << dump(issues);
}

// A simple extension (valueCode from a required value set) and a complex one (two sub-extensions).
void loadExtensions(ProfileRegistry& registry) {
  std::string error;
  json simple = profile("ext-level", "Extension",
                        {el("Extension.extension", 0, "0", {{"type", type("Extension")}}),
                         el("Extension.url", 1, "1", {{"type", type("uri")}, {"fixedUri", std::string(kBase) + "ext-level"}}),
                         el("Extension.value[x]", 1, "1",
                            {{"type", type("code")},
                             {"binding", {{"strength", "required"}, {"valueSet", "http://example.org/fhir/ValueSet/levels|1.0.0"}}}})},
                        "complex-type");
  simple["context"] = {{{"type", "element"}, {"expression", "Patient"}}};
  json complex = profile(
      "ext-consent", "Extension",
      {el("Extension.extension", 1, "*",
          {{"type", type("Extension")},
           {"slicing", {{"discriminator", {{{"type", "value"}, {"path", "url"}}}}, {"rules", "closed"}}}}),
       el("Extension.extension:date", 1, "1", {{"type", type("Extension")}}),
       el("Extension.extension:date.url", 1, "1", {{"type", type("uri")}, {"fixedUri", "date"}}),
       el("Extension.extension:date.value[x]", 1, "1", {{"type", type("date")}}),
       el("Extension.extension:form", 0, "1", {{"type", type("Extension")}}),
       el("Extension.extension:form.url", 1, "1", {{"type", type("uri")}, {"fixedUri", "form"}}),
       el("Extension.extension:form.value[x]", 1, "1", {{"type", type("string")}}),
       el("Extension.url", 1, "1", {{"type", type("uri")}, {"fixedUri", std::string(kBase) + "ext-consent"}}),
       el("Extension.value[x]", 0, "0", {{"type", type("string")}})},
      "complex-type");
  complex["context"] = {{{"type", "element"}, {"expression", "Consent"}}};
  json vs = {{"resourceType", "ValueSet"},
             {"url", "http://example.org/fhir/ValueSet/levels"},
             {"version", "1.0.0"},
             {"compose", {{"include", {{{"system", "http://example.org/fhir/CodeSystem/levels"}}}}}}};
  json cs = {{"resourceType", "CodeSystem"},
             {"url", "http://example.org/fhir/CodeSystem/levels"},
             {"content", "complete"},
             {"concept", {{{"code", "1"}}, {{"code", "2"}, {"concept", {{{"code", "2a"}}}}}, {{"code", "3"}}}}};
  json bundle = {{"resourceType", "Bundle"},
                 {"type", "collection"},
                 {"entry", {{{"resource", simple}}, {{"resource", complex}}, {{"resource", vs}}, {{"resource", cs}}}}};
  ASSERT_TRUE(registry.loadText(bundle.dump(), "extensions", error)) << error;
}

TEST_F(ProfileValidatorTest, ExtensionSlicesByUrl) {
  loadExtensions(registry_);
  load(profile("pat-ext", "Patient",
               {el("Patient.extension", 0, "*",
                   {{"type", type("Extension")},
                    {"slicing", {{"discriminator", {{{"type", "value"}, {"path", "url"}}}}, {"rules", "open"}}}}),
                el("Patient.extension:level", 1, "1",
                   {{"type", {{{"code", "Extension"}, {"profile", {std::string(kBase) + "ext-level|1.0.0"}}}}}})}));
  json ok = {{"resourceType", "Patient"},
             {"extension", {{{"url", std::string(kBase) + "ext-level"}, {"valueCode", "2a"}}, {{"url", "urn:other"}, {"valueString", "x"}}}}};
  EXPECT_EQ(errors(check(ok, "pat-ext")), 0) << dump(check(ok, "pat-ext"));
  json missing = {{"resourceType", "Patient"}, {"extension", {{{"url", "urn:other"}, {"valueString", "x"}}}}};
  auto issues = check(missing, "pat-ext");
  EXPECT_TRUE(has(issues, "error", "Patient", "Slice 'level' of Patient.extension: minimum required = 1")) << dump(issues);
  // the slice is checked against the extension's definition: value[x] type and binding
  json bad = {{"resourceType", "Patient"},
              {"extension", {{{"url", std::string(kBase) + "ext-level"}, {"valueCode", "9"}}}}};
  issues = check(bad, "pat-ext");
  EXPECT_TRUE(has(issues, "error", "Patient.extension[0].value.ofType(code)", "The code 9 is not in the value set")) << dump(issues);
  json wrongType = {{"resourceType", "Patient"},
                    {"extension", {{{"url", std::string(kBase) + "ext-level"}, {"valueString", "2"}}}}};
  issues = check(wrongType, "pat-ext");
  EXPECT_TRUE(has(issues, "error", "Patient.extension[0].value.ofType(string)", "is not allowed")) << dump(issues);
}

// A required extension slice inside an element the profile otherwise leaves as the base has it:
// the element is checked for the slice, with extensions in the document or without any.
TEST_F(ProfileValidatorTest, ARequiredExtensionSliceMakesItsElementChecked) {
  loadExtensions(registry_);
  auto base = [](const std::string& path, int min, const std::string& max) {
    return json{{"base", {{"path", path}, {"min", min}, {"max", max}}}};
  };
  json address = base("Patient.address", 0, "*");
  address["type"] = type("Address");
  json extension = base("Element.extension", 0, "*");
  extension["type"] = type("Extension");
  extension["slicing"] = {{"discriminator", {{{"type", "value"}, {"path", "url"}}}}, {"rules", "open"}};
  json level = base("Element.extension", 0, "*");
  level["type"] = {{{"code", "Extension"}, {"profile", {std::string(kBase) + "ext-level"}}}};
  json city = base("Address.city", 0, "1");
  city["type"] = type("string");
  load(profile("addr-ext", "Patient",
               {el("Patient.address", 0, "*", address), el("Patient.address.extension", 0, "*", extension),
                el("Patient.address.extension:level", 1, "1", level), el("Patient.address.city", 0, "1", city)}));
  json bare = {{"resourceType", "Patient"}, {"address", {{{"city", "Melun"}}}}};
  auto issues = check(bare, "addr-ext");
  EXPECT_TRUE(has(issues, "error", "Patient.address[0]", "minimum required = 1")) << dump(issues);
  json with = bare;
  with["address"][0]["extension"] = {{{"url", std::string(kBase) + "ext-level"}, {"valueCode", "high"}}};
  issues = check(with, "addr-ext");
  EXPECT_FALSE(has(issues, "error", "Patient.address[0]", "minimum required = 1")) << dump(issues);
}

TEST_F(ProfileValidatorTest, KnownExtensionsAreCheckedAgainstTheirDefinition) {
  loadExtensions(registry_);
  load(profile("plain", "Consent", {el("Consent.extension", 0, "*", {{"type", type("Extension")}})}));
  std::string url = std::string(kBase) + "ext-consent";
  json ok = {{"resourceType", "Consent"},
             {"extension", {{{"url", url}, {"extension", {{{"url", "date"}, {"valueDate", "2026-01-02"}}}}}}}};
  EXPECT_EQ(errors(check(ok, "plain")), 0) << dump(check(ok, "plain"));
  json bad = json::parse(R"({"resourceType": "Consent", "extension": [{"url": ")" + url + R"(", "valueString": "x",
      "extension": [{"url": "form", "valueString": "A"}, {"url": "other", "valueString": "B"}]}]})");
  auto issues = check(bad, "plain");
  EXPECT_TRUE(has(issues, "error", "Consent.extension[0]", "Slice 'date' of Extension.extension: minimum required = 1"))
      << dump(issues);
  EXPECT_TRUE(has(issues, "error", "Consent.extension[0].extension[1]", "matches none of the slices")) << dump(issues);
  EXPECT_TRUE(has(issues, "error", "Consent.extension[0].value.ofType(string)", "does not allow this element")) << dump(issues);
  // context: the level extension belongs on a Patient, not on a Consent
  json elsewhere = {{"resourceType", "Consent"}, {"extension", {{{"url", std::string(kBase) + "ext-level"}, {"valueCode", "1"}}}}};
  issues = check(elsewhere, "plain");
  EXPECT_TRUE(has(issues, "error", "Consent.extension[0]", "is not allowed on Consent")) << dump(issues);
}

TEST_F(ProfileValidatorTest, RequiredAndExtensibleBindings) {
  loadExtensions(registry_);
  load(profile("bind", "Observation",
               {el("Observation.code", 1, "1",
                   {{"type", type("CodeableConcept")},
                    {"binding", {{"strength", "required"}, {"valueSet", "http://example.org/fhir/ValueSet/levels|1.0.0"}}}}),
                el("Observation.method", 0, "1",
                   {{"type", type("CodeableConcept")},
                    {"binding", {{"strength", "extensible"}, {"valueSet", "http://example.org/fhir/ValueSet/levels"}}}}),
                el("Observation.bodySite", 0, "1",
                   {{"type", type("CodeableConcept")},
                    {"binding", {{"strength", "required"}, {"valueSet", "http://example.org/fhir/ValueSet/unknown"}}}})}));
  std::string sys = "http://example.org/fhir/CodeSystem/levels";
  auto cc = [](const std::string& system, const std::string& code) {
    return json{{"coding", json::array({{{"system", system}, {"code", code}}})}};
  };
  json ok = {{"resourceType", "Observation"}, {"code", cc("urn:x", "q")}, {"method", cc(sys, "1")}};
  ok["code"]["coding"].push_back({{"system", sys}, {"code", "3"}});
  EXPECT_TRUE(check(ok, "bind").empty()) << dump(check(ok, "bind"));
  json bad = {{"resourceType", "Observation"}, {"code", cc(sys, "4")}, {"method", cc("urn:x", "1")}, {"bodySite", cc("urn:x", "arm")}};
  auto issues = check(bad, "bind");
  EXPECT_TRUE(has(issues, "error", "Observation.code", "The code " + sys + "#4 is not in the value set")) << dump(issues);
  EXPECT_TRUE(has(issues, "warning", "Observation.method", "extensible binding")) << dump(issues);
  EXPECT_TRUE(has(issues, "information", "Observation.bodySite", "is not known here")) << dump(issues);
  EXPECT_EQ(errors(issues), 1) << dump(issues);
}

TEST_F(ProfileValidatorTest, ValueSetExpandedFromItsExpansionOnly) {
  load(json::parse(R"({"resourceType": "ValueSet", "url": "http://example.org/fhir/ValueSet/given",
    "compose": {"include": [{"system": "http://snomed.info/sct",
                             "filter": [{"property": "concept", "op": "is-a", "value": "1"}]}]},
    "expansion": {"total": 1, "contains": [{"system": "http://snomed.info/sct", "code": "22298006"}]}})"));
  load(profile("exp", "Condition",
               {el("Condition.code", 1, "1",
                   {{"type", type("CodeableConcept")},
                    {"binding", {{"strength", "required"}, {"valueSet", "http://example.org/fhir/ValueSet/given"}}}})}));
  json ok = json::parse(R"({"resourceType": "Condition",
                            "code": {"coding": [{"system": "http://snomed.info/sct", "code": "22298006"}]}})");
  EXPECT_EQ(errors(check(ok, "exp")), 0);
  ok["code"]["coding"][0]["code"] = "1";
  EXPECT_EQ(errors(check(ok, "exp")), 1);
}

TEST_F(ProfileValidatorTest, ReferenceTargetsAndTypeProfiles) {
  load(profile("name", "HumanName", {el("HumanName.family", 1, "1", {{"type", type("string")}})}, "complex-type"));
  load(profile("refs", "Observation",
               {el("Observation.subject", 1, "1",
                   {{"type", {{{"code", "Reference"}, {"targetProfile", {"http://hl7.org/fhir/StructureDefinition/Patient|4.0.1"}}}}}}),
                el("Observation.performer", 0, "*",
                   {{"type", {{{"code", "Reference"},
                               {"targetProfile", {"http://hl7.org/fhir/StructureDefinition/Practitioner",
                                                  "http://hl7.org/fhir/StructureDefinition/PractitionerRole"}}}}}}),
                el("Observation.contained", 0, "*", {{"type", type("Resource")}})}));
  json ok = {{"resourceType", "Observation"},
             {"subject", {{"reference", "Patient?identifier=urn:oid:1.2.250.1.213.1.4.8|1"}}},
             {"performer", {{{"reference", "https://x.org/fhir/PractitionerRole/3/_history/2"}}, {{"reference", "urn:uuid:0"}}}}};
  EXPECT_EQ(errors(check(ok, "refs")), 0) << dump(check(ok, "refs"));
  json bad = {{"resourceType", "Observation"},
              {"contained", {{{"resourceType", "Group"}, {"id", "g"}}}},
              {"subject", {{"reference", "#g"}}},
              {"performer", {{{"reference", "Organization/1"}}}}};
  auto issues = check(bad, "refs");
  EXPECT_TRUE(has(issues, "error", "Observation.subject.reference", "points to a Group, but the profile allows only Patient"))
      << dump(issues);
  EXPECT_TRUE(has(issues, "error", "Observation.performer[0].reference", "allows only Practitioner, PractitionerRole"))
      << dump(issues);
  // a data type profile on an element the snapshot does not unroll
  load(profile("pat-name", "Patient",
               {el("Patient.name", 0, "*",
                   {{"type", json::array({{{"code", "HumanName"}, {"profile", {std::string(kBase) + "name"}}}})}})}));
  json p = {{"resourceType", "Patient"}, {"name", {{{"given", {"A"}}}}}};
  issues = check(p, "pat-name");
  EXPECT_TRUE(has(issues, "error", "Patient.name[0]", "HumanName.family: minimum required = 1")) << dump(issues);
}

TEST_F(ProfileValidatorTest, MetaProfileNamesTheProfilesToCheck) {
  load(identifierSlicing("open"));
  json doc = {{"resourceType", "Patient"},
              {"meta", {{"profile", {std::string(kBase) + "ids-open|1.0.0", "http://example.org/unknown"}}}},
              {"identifier", {{{"system", "urn:other"}}}}};
  std::vector<Issue> issues;
  EXPECT_EQ(ProfileValidator(registry_).validateDeclared(doc.dump(), issues), 1);
  EXPECT_TRUE(has(issues, "error", "Patient", "Slice 'INS'")) << dump(issues);
  EXPECT_TRUE(has(issues, "warning", "Patient.meta.profile[1]", "is not known here")) << dump(issues);
  // a version that is not loaded is not the same profile
  issues.clear();
  EXPECT_EQ(ProfileValidator(registry_).validate(doc.dump(), std::string(kBase) + "ids-open|2.0.0", issues),
            ProfileValidator::Outcome::Unknown);
}

TEST_F(ProfileValidatorTest, UnknownProfileAndProfileThatDoesNotLoad) {
  json doc = {{"resourceType", "Patient"}};
  std::vector<Issue> issues;
  ProfileValidator v(registry_);
  EXPECT_EQ(v.validate(doc.dump(), "http://example.org/nothing", issues), ProfileValidator::Outcome::Unknown);
  ASSERT_EQ(issues.size(), 1u);
  EXPECT_EQ(issues[0].severity, "error");
  EXPECT_NE(issues[0].diagnostics.find("Profile 'http://example.org/nothing' is not known"), std::string::npos);
  // the base definitions are known: the resource type only is checked here
  issues.clear();
  EXPECT_EQ(v.validate(doc.dump(), "http://hl7.org/fhir/StructureDefinition/Patient", issues), ProfileValidator::Outcome::Checked);
  EXPECT_TRUE(issues.empty());
  EXPECT_EQ(v.validate(doc.dump(), "http://hl7.org/fhir/StructureDefinition/Observation", issues),
            ProfileValidator::Outcome::Checked);
  EXPECT_EQ(errors(issues), 1);
  // a differential without snapshot is loaded but cannot be used, and says why
  json diff = profile("diff-only", "Patient", json::array());
  diff.erase("snapshot");
  diff["differential"] = {{"element", {{{"id", "Patient.name"}, {"path", "Patient.name"}, {"min", 1}}}}};
  load(diff);
  issues.clear();
  EXPECT_EQ(v.validate(doc.dump(), std::string(kBase) + "diff-only", issues), ProfileValidator::Outcome::Unusable);
  ASSERT_EQ(issues.size(), 1u);
  EXPECT_NE(issues[0].diagnostics.find("has no snapshot"), std::string::npos) << issues[0].diagnostics;
  // a file that is not JSON does not load
  std::string error;
  EXPECT_FALSE(registry_.loadText("{not json", "broken.json", error));
  EXPECT_NE(error.find("broken.json"), std::string::npos);
  EXPECT_FALSE(registry_.loadPath("/nonexistent/folder", error));
}

TEST_F(ProfileValidatorTest, OrderedSlicing) {
  json p = identifierSlicing("open");
  p["url"] = std::string(kBase) + "ordered";
  p["snapshot"]["element"][1]["slicing"]["ordered"] = true;
  load(p);
  json doc = {{"resourceType", "Patient"},
              {"identifier", {{{"system", "urn:ipp"}}, {{"system", "urn:oid:1.2.250.1.213.1.4.8"}, {"value", "1"}}}}};
  auto issues = check(doc, "ordered");
  EXPECT_TRUE(has(issues, "error", "Patient.identifier[1]", "sliced in order")) << dump(issues);
}

// A StructureDefinition given as a differential only, on a base of the R4 specification.
json differential(const std::string& name, const std::string& type, const std::string& base, json elements,
                  const std::string& kind = "resource") {
  return {{"resourceType", "StructureDefinition"},
          {"url", kBase + name},
          {"name", name},
          {"kind", kind},
          {"type", type},
          {"derivation", "constraint"},
          {"baseDefinition", "http://hl7.org/fhir/StructureDefinition/" + base},
          {"differential", {{"element", elements}}}};
}

TEST_F(ProfileValidatorTest, SnapshotGeneratedFromADifferentialInsideADataType) {
  // Patient.identifier.system is not in the base Patient snapshot: Identifier's elements are unrolled.
  load(differential("diff-identifier", "Patient", "Patient",
                    {{{"id", "Patient.identifier"}, {"path", "Patient.identifier"}, {"min", 1}},
                     {{"id", "Patient.identifier.system"}, {"path", "Patient.identifier.system"}, {"min", 1},
                      {"fixedUri", "urn:oid:1.2.3"}}}));
  const Profile* p = registry_.find(kBase + std::string("diff-identifier"));
  ASSERT_NE(p, nullptr);
  ASSERT_TRUE(p->error.empty()) << p->error;
  EXPECT_TRUE(check({{"resourceType", "Patient"}, {"identifier", {{{"system", "urn:oid:1.2.3"}, {"value", "1"}}}}},
                    "diff-identifier")
                  .empty());
  auto issues = check({{"resourceType", "Patient"}}, "diff-identifier");
  EXPECT_TRUE(has(issues, "error", "Patient", "Patient.identifier: minimum required = 1")) << dump(issues);
  issues = check({{"resourceType", "Patient"}, {"identifier", {{{"value", "1"}}, {{"system", "urn:x"}}}}}, "diff-identifier");
  EXPECT_TRUE(has(issues, "error", "Patient.identifier[0]", "Patient.identifier.system: minimum required = 1"))
      << dump(issues);
  EXPECT_TRUE(has(issues, "error", "Patient.identifier[1].system", "Value must be exactly \"urn:oid:1.2.3\""))
      << dump(issues);
}

TEST_F(ProfileValidatorTest, SnapshotGeneratedWithASliceByValue) {
  load(differential("diff-slice", "Patient", "Patient",
                    {{{"id", "Patient.identifier"},
                      {"path", "Patient.identifier"},
                      {"slicing", {{"discriminator", {{{"type", "value"}, {"path", "system"}}}}, {"rules", "open"}}}},
                     {{"id", "Patient.identifier:nir"}, {"path", "Patient.identifier"}, {"sliceName", "nir"},
                      {"min", 1}, {"max", "1"}},
                     {{"id", "Patient.identifier:nir.system"}, {"path", "Patient.identifier.system"},
                      {"fixedUri", "urn:oid:1.2.250.1.213.1.4.8"}},
                     {{"id", "Patient.identifier:nir.value"}, {"path", "Patient.identifier.value"}, {"min", 1}}}));
  json nir = {{"system", "urn:oid:1.2.250.1.213.1.4.8"}, {"value", "1"}};
  json other = {{"system", "urn:x"}};
  EXPECT_TRUE(check({{"resourceType", "Patient"}, {"identifier", {other, nir}}}, "diff-slice").empty());
  auto issues = check({{"resourceType", "Patient"}, {"identifier", {other}}}, "diff-slice");
  EXPECT_TRUE(has(issues, "error", "Patient", "Slice 'nir' of Patient.identifier: minimum required = 1")) << dump(issues);
  // the slice's own children: its value is required, other identifiers' values are not
  issues = check({{"resourceType", "Patient"}, {"identifier", {other, {{"system", "urn:oid:1.2.250.1.213.1.4.8"}}}}},
                 "diff-slice");
  EXPECT_EQ(errors(issues), 1) << dump(issues);
  EXPECT_TRUE(has(issues, "error", "Patient.identifier[1]", "value: minimum required = 1")) << dump(issues);
}

TEST_F(ProfileValidatorTest, ExtensionDefinitionGivenAsADifferential) {
  json ext = differential("flag", "Extension", "Extension",
                          {{{"id", "Extension.extension"}, {"path", "Extension.extension"}, {"max", "0"}},
                           {{"id", "Extension.url"}, {"path", "Extension.url"}, {"fixedUri", kBase + std::string("flag")}},
                           {{"id", "Extension.valueBoolean"}, {"path", "Extension.valueBoolean"}, {"min", 1}}},
                          "complex-type");
  ext["context"] = {{{"type", "element"}, {"expression", "Patient"}}};
  load(ext);
  const Profile* p = registry_.find(kBase + std::string("flag"));
  ASSERT_NE(p, nullptr);
  ASSERT_TRUE(p->error.empty()) << p->error;
  ProfileValidator v(registry_);
  auto declared = [&](const json& resource) {
    std::vector<Issue> issues;
    v.validateDeclared(resource.dump(), issues);
    return issues;
  };
  json good = {{"url", kBase + std::string("flag")}, {"valueBoolean", true}};
  EXPECT_TRUE(declared({{"resourceType", "Patient"}, {"extension", {good}}}).empty());
  // valueString: the renamed choice allows boolean only
  json wrongType = {{"url", kBase + std::string("flag")}, {"valueString", "yes"}};
  auto issues = declared({{"resourceType", "Patient"}, {"extension", {wrongType}}});
  EXPECT_TRUE(has(issues, "error", "Patient.extension[0].value.ofType(string)", "The type string is not allowed"))
      << dump(issues);
  // its context is Patient, not Patient.name
  issues = declared({{"resourceType", "Patient"}, {"name", {{{"family", "X"}, {"extension", {good}}}}}});
  EXPECT_TRUE(has(issues, "error", "Patient.name[0].extension[0]", "is not allowed on Patient.name")) << dump(issues);
}

TEST_F(ProfileValidatorTest, DifferentialNamingAnElementTheBaseDoesNotHave) {
  load(differential("diff-unknown", "Patient", "Patient",
                    {{{"id", "Patient.nickname"}, {"path", "Patient.nickname"}, {"min", 1}}}));
  std::vector<Issue> issues;
  EXPECT_EQ(ProfileValidator(registry_).validate(json{{"resourceType", "Patient"}}.dump(), kBase + std::string("diff-unknown"),
                                                 issues),
            ProfileValidator::Outcome::Unusable);
  ASSERT_EQ(issues.size(), 1u);
  EXPECT_NE(issues[0].diagnostics.find("base does not have (no element Patient.nickname)"), std::string::npos)
      << issues[0].diagnostics;
  // a base that is not known either
  load(differential("diff-nobase", "Patient", "NoSuchType", json::array()));
  const Profile* p = registry_.find(kBase + std::string("diff-nobase"));
  ASSERT_NE(p, nullptr);
  EXPECT_NE(p->error.find("is not known"), std::string::npos) << p->error;
}

TEST_F(ProfileValidatorTest, CoreExtensionsAreKnownWithoutBeingLoaded) {
  ProfileValidator v(registry_);
  auto declared = [&](const json& resource) {
    std::vector<Issue> issues;
    v.validateDeclared(resource.dump(), issues);
    return issues;
  };
  const std::string mothers = "http://hl7.org/fhir/StructureDefinition/humanname-mothers-family";
  json ext = {{"url", mothers}, {"valueString", "Garcia"}};
  // its context is HumanName.family
  auto issues = declared({{"resourceType", "Patient"}, {"name", {{{"family", "X"}, {"_family", {{"extension", {ext}}}}}}}});
  EXPECT_TRUE(issues.empty()) << dump(issues);
  issues = declared({{"resourceType", "Patient"}, {"name", {{{"family", "X"}, {"extension", {ext}}}}}});
  EXPECT_TRUE(has(issues, "error", "Patient.name[0].extension[0]", "is not allowed on Patient.name")) << dump(issues);
  issues = declared({{"resourceType", "Patient"}, {"extension", {ext}}});
  EXPECT_TRUE(has(issues, "error", "Patient.extension[0]", "is not allowed on Patient")) << dump(issues);
  // a complex core extension: its sub-extensions are defined, species is required
  const std::string animal = "http://hl7.org/fhir/StructureDefinition/patient-animal";
  json species = {{"url", "species"}, {"valueCodeableConcept", {{"text", "dog"}}}};
  json undefined = {{"url", "species-x"}, {"valueCodeableConcept", {{"text", "dog"}}}};
  EXPECT_TRUE(declared({{"resourceType", "Patient"}, {"extension", {{{"url", animal}, {"extension", {species}}}}}}).empty());
  issues = declared({{"resourceType", "Patient"}, {"extension", {{{"url", animal}, {"extension", {species, undefined}}}}}});
  EXPECT_EQ(errors(issues), 1) << dump(issues);
  EXPECT_TRUE(has(issues, "error", "Patient.extension[0].extension[1]", "Sub-extension url 'species-x' is not defined"))
      << dump(issues);
  issues = declared({{"resourceType", "Patient"}, {"extension", {{{"url", animal}, {"extension", {undefined}}}}}});
  EXPECT_TRUE(has(issues, "error", "Patient.extension[0]", "Slice 'species'")) << dump(issues);
  // the same through the base definition named as a profile
  issues.clear();
  v.validate(json{{"resourceType", "Patient"}, {"extension", {ext}}}.dump(), "http://hl7.org/fhir/StructureDefinition/Patient",
             issues);
  EXPECT_TRUE(has(issues, "error", "Patient.extension[0]", "is not allowed on Patient")) << dump(issues);
}

// Unknown extensions are accepted by default (R4 extensibility.html); a policy refuses them, except
// under its allowed url prefixes, and never judges the parts of a complex extension on their own.
TEST_F(ProfileValidatorTest, UnknownExtensionsRefusedOnlyByPolicy) {
  json unknown = {{"url", "https://partner.test/fhir/StructureDefinition/age"}, {"valueInteger", 40}};
  json complex = {{"url", "https://other.test/ext"}, {"extension", {{{"url", "part"}, {"valueString", "x"}}}}};
  json patient = {{"resourceType", "Patient"},
                  {"_birthDate", {{"extension", {unknown}}}},
                  {"birthDate", "1980-01-01"},
                  {"extension", {complex}}};
  std::vector<Issue> issues;
  ProfileValidator(registry_).validateDeclared(patient.dump(), issues);
  EXPECT_EQ(errors(issues), 0) << dump(issues);
  passerelle::fhir::ValidationPolicy policy;
  policy.refuseUnknownExtensions = true;
  issues.clear();
  ProfileValidator(registry_, policy).validateDeclared(patient.dump(), issues);
  EXPECT_EQ(errors(issues), 2) << dump(issues);
  EXPECT_TRUE(has(issues, "error", "Patient.birthDate.extension[0]", "has no definition known here")) << dump(issues);
  EXPECT_TRUE(has(issues, "error", "Patient.extension[0]", "https://other.test/ext")) << dump(issues);
  policy.allowedExtensionDomains = {"https://partner.test/fhir/"};
  issues.clear();
  ProfileValidator(registry_, policy).validateDeclared(patient.dump(), issues);
  EXPECT_EQ(errors(issues), 1) << dump(issues);
  // a core extension is known
  json mothers = {{"url", "http://hl7.org/fhir/StructureDefinition/humanname-mothers-family"}, {"valueString", "G"}};
  issues.clear();
  ProfileValidator(registry_, policy).validateDeclared(
      json{{"resourceType", "Patient"}, {"name", {{{"family", "X"}, {"_family", {{"extension", {mothers}}}}}}}}.dump(), issues);
  EXPECT_EQ(errors(issues), 0) << dump(issues);
}

// elementdefinition.html: minValue[x] and maxValue[x] on dates (partial dates compared as FHIRPath
// does), numbers and quantities in the bound's unit; a Duration on a date is relative to now.
TEST_F(ProfileValidatorTest, MinAndMaxValues) {
  load(profile("ranges", "Observation",
               {el("Observation.effective[x]", 0, "1", {{"type", type("dateTime")}, {"minValueDateTime", "2020-01-01"},
                                                          {"maxValueDateTime", "2030-12-31"}}),
                el("Observation.value[x]", 0, "1",
                   {{"type", type("Quantity")}, {"maxValueQuantity", {{"value", 10}, {"code", "mg"}}}}),
                el("Observation.component", 0, "*", {{"type", type("BackboneElement")}}),
                el("Observation.component.value[x]", 0, "1", {{"type", type("integer")}, {"minValueInteger", 0}})}));
  auto obs = [](const std::string& effective, double mg, const std::string& unit, int component) {
    return json{{"resourceType", "Observation"},
                {"effectiveDateTime", effective},
                {"valueQuantity", {{"value", mg}, {"code", unit}}},
                {"component", {{{"valueInteger", component}}}}};
  };
  EXPECT_EQ(errors(check(obs("2024-05", 9.5, "mg", 0), "ranges")), 0) << dump(check(obs("2024-05", 9.5, "mg", 0), "ranges"));
  EXPECT_EQ(errors(check(obs("2020", 10, "mg", 3), "ranges")), 0);  // 2020 may be on or after 2020-01-01
  EXPECT_EQ(errors(check(obs("2024-05", 11, "g", 0), "ranges")), 0);  // another unit: not converted here
  auto issues = check(obs("2019-12-31T23:00:00Z", 11, "mg", -1), "ranges");
  EXPECT_EQ(errors(issues), 3) << dump(issues);
  EXPECT_TRUE(std::any_of(issues.begin(), issues.end(), [](const Issue& i) {
    return i.diagnostics.find("below the minimum") != std::string::npos;
  })) << dump(issues);
  load(profile("recent", "Patient",
               {el("Patient.birthDate", 0, "1", {{"type", type("date")},
                                                  {"minValueDuration", {{"value", 150}, {"code", "a"}}}})}));
  EXPECT_EQ(errors(check(json{{"resourceType", "Patient"}, {"birthDate", "1950-01-01"}}, "recent")), 0);
  EXPECT_EQ(errors(check(json{{"resourceType", "Patient"}, {"birthDate", "1800-01-01"}}, "recent")), 1);
}

// With the base's cardinality known (ElementDefinition.base), a choice or a reference counts only
// when it allows less than the base: the one that narrows is still checked, the one left as in the
// base is the base validator's (which checks it as the base has it).
TEST_F(ProfileValidatorTest, NarrowedChoicesAndTargetsCountWhenTheBaseIsKnown) {
  auto base = [](const std::string& path, const std::string& max) {
    return json{{"path", path}, {"min", 0}, {"max", max}};
  };
  json allPerformers = json::array();
  for (const char* t : {"Practitioner", "PractitionerRole", "Organization", "CareTeam", "Patient", "RelatedPerson"})
    allPerformers.push_back(std::string("http://hl7.org/fhir/StructureDefinition/") + t);
  load(profile("narrow", "Observation",
               {el("Observation.value[x]", 0, "1", {{"type", type("Quantity")}, {"base", base("Observation.value[x]", "1")}}),
                el("Observation.subject", 0, "1",
                   {{"type", {{{"code", "Reference"}, {"targetProfile", {"http://hl7.org/fhir/StructureDefinition/Patient"}}}}},
                    {"base", base("Observation.subject", "1")}}),
                el("Observation.performer", 0, "*",
                   {{"type", {{{"code", "Reference"}, {"targetProfile", allPerformers}}}},
                    {"base", base("Observation.performer", "*")}})}));
  json ok = {{"resourceType", "Observation"},
             {"valueQuantity", {{"value", 1}}},
             {"subject", {{"reference", "Patient/1"}}},
             {"performer", {{{"reference", "Organization/1"}}, {{"reference", "CareTeam/2"}}}}};
  EXPECT_EQ(errors(check(ok, "narrow")), 0) << dump(check(ok, "narrow"));
  json bad = {{"resourceType", "Observation"}, {"valueString", "x"}, {"subject", {{"reference", "Group/1"}}}};
  auto issues = check(bad, "narrow");
  EXPECT_TRUE(has(issues, "error", "Observation.value.ofType(string)", "The type string is not allowed")) << dump(issues);
  EXPECT_TRUE(has(issues, "error", "Observation.subject.reference", "allows only Patient")) << dump(issues);
  EXPECT_EQ(errors(issues), 2) << dump(issues);
}

// The base walk says whether it met an extension, in place of a search of the text: an extension
// wherever it is (a primitive's other half, a modifier extension, a contained resource, a name
// spelled with an escape) is still found and checked against the policy.
TEST_F(ProfileValidatorTest, ExtensionsMetByTheBaseWalkAreChecked) {
  passerelle::fhir::ValidationPolicy policy;
  policy.refuseUnknownExtensions = true;
  const ProfileValidator v(registry_, policy);
  const std::string unknown = R"({"url":"https://partner.test/ext","valueString":"x"})";
  const std::vector<std::pair<std::string, std::string>> cases = {
      {R"({"resourceType":"Patient","birthDate":"1980-01-01","_birthDate":{"extension":[)" + unknown + "]}}",
       "Patient.birthDate.extension[0]"},
      {R"({"resourceType":"Patient","contact":[{"modifierExtension":[)" + unknown + R"(],"name":{"family":"X"}}]})",
       "Patient.contact[0].modifierExtension[0]"},
      {R"({"resourceType":"Patient","contained":[{"resourceType":"Practitioner","id":"p","extension":[)" + unknown +
           R"(]}],"generalPractitioner":[{"reference":"#p"}]})",
       "Patient.contained[0].extension[0]"},
      {R"({"resourceType":"Patient","ext\u0065nsion":[)" + unknown + "]}", "Patient.extension[0]"},
  };
  for (const auto& [text, where] : cases) {
    auto result = v.validateWithBase(text);
    EXPECT_TRUE(has(result.issues, "error", where, "has no definition known here")) << text << dump(result.issues);
    EXPECT_EQ(errors(result.issues), 1) << text << dump(result.issues);
  }
  auto clean = v.validateWithBase(R"({"resourceType":"Patient","birthDate":"1980-01-01"})");
  EXPECT_EQ(errors(clean.issues), 0) << dump(clean.issues);
}

// An element whose profile narrows only its cardinality is counted by its parent; its values are
// still checked against its binding (here the base's extensible one), with or without an extension
// elsewhere in the document.
TEST_F(ProfileValidatorTest, ACountedElementKeepsItsBinding) {
  json base = {{"path", "Patient.maritalStatus"}, {"min", 0}, {"max", "1"}};
  load(profile("marital-counted", "Patient",
               {el("Patient.maritalStatus", 1, "1",
                   {{"type", type("CodeableConcept")},
                    {"base", base},
                    {"binding", {{"strength", "extensible"}, {"valueSet", "http://hl7.org/fhir/ValueSet/marital-status"}}}})}));
  json coding = {{"system", "http://terminology.hl7.org/CodeSystem/v3-MaritalStatus"}, {"code", "ZZ"}};
  json patient = {{"resourceType", "Patient"}, {"maritalStatus", {{"coding", {coding}}}}};
  for (bool extension : {false, true}) {
    json doc = patient;
    if (extension) doc["extension"] = {{{"url", "https://partner.test/ext"}, {"valueString", "x"}}};
    auto issues = check(doc, "marital-counted");
    bool found = std::any_of(issues.begin(), issues.end(), [](const Issue& i) {
      return i.expression == "Patient.maritalStatus" && i.diagnostics.find("marital-status") != std::string::npos;
    });
    EXPECT_TRUE(found) << "extension " << extension << dump(issues);
  }
  EXPECT_EQ(errors(check(json{{"resourceType", "Patient"}}, "marital-counted")), 1);
}

// A choice's type is the FHIR type its JSON name ends with (valueString: string): issues are
// located as the base validator locates them, and a constraint on the choice sees a FHIR string.
TEST_F(ProfileValidatorTest, ChoiceTypesAreFhirTypes) {
  std::string own = std::string(kBase) + "short-text";
  load(profile("short-text", "Observation",
               {el("Observation.value[x]", 0, "1",
                   {{"type", json::array({{{"code", "string"}}, {{"code", "Quantity"}}})},
                    {"constraint", {{{"key", "txt-9"}, {"severity", "error"}, {"human", "A text value is short"},
                                     {"expression", "$this is string implies $this.length() < 5"}, {"source", own}}}}})}));
  json obs = {{"resourceType", "Observation"}, {"status", "final"}, {"code", {{"text", "x"}}}, {"valueString", "longer"}};
  auto issues = check(obs, "short-text");
  EXPECT_TRUE(has(issues, "error", "Observation.value.ofType(string)", "Constraint failed: txt-9")) << dump(issues);
  obs["valueString"] = "ok";
  EXPECT_EQ(errors(check(obs, "short-text")), 0);
  obs.erase("valueString");
  obs["valueBoolean"] = true;
  issues = check(obs, "short-text");
  EXPECT_TRUE(has(issues, "error", "Observation.value.ofType(boolean)", "The type boolean is not allowed")) << dump(issues);
}

}  // namespace
}  // namespace passerelle::fhir::profiles
