// Unit tests of FHIR XML to and from JSON (no disk, no network): the mapping of primitives,
// extensions, attributes, contained resources and the narrative, and the refusal of bad XML
// (DOCTYPE, entity, depth, namespace, mixed content, unknown element, truncation, encoding), each
// with a clear issue.
#include "mappings/fhir/xml/fhir_xml.h"

#include <gtest/gtest.h>

#include <atomic>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "mappings/fhir/validator.h"

using passerelle::fhir::fhirJsonToXml;
using passerelle::fhir::fhirXmlToJson;
using passerelle::fhir::Issue;
using nlohmann::json;

namespace {

std::string dump(const std::vector<Issue>& issues) {
  std::string out;
  for (const auto& i : issues) out += "\n  " + i.severity + " " + i.code + " @" + i.expression + ": " + i.diagnostics;
  return out;
}

// Reads `xml` and expects a refusal whose message holds `text` (at `expression` when given).
void expectRefused(const std::string& xml, std::string_view text, std::string_view expression = "*") {
  std::string out;
  std::vector<Issue> issues;
  EXPECT_FALSE(fhirXmlToJson(xml, out, issues)) << xml;
  bool found = false;
  for (const auto& i : issues)
    if (i.diagnostics.find(text) != std::string::npos && (i.severity == "error" || i.severity == "fatal") &&
        (expression == "*" || i.expression == expression))
      found = true;
  EXPECT_TRUE(found) << "no issue with '" << text << "' at " << expression << " for " << xml.substr(0, 200) << dump(issues);
}

json read(const std::string& xml) {
  std::string out;
  std::vector<Issue> issues;
  EXPECT_TRUE(fhirXmlToJson(xml, out, issues)) << dump(issues);
  json j = json::parse(out, nullptr, false);
  EXPECT_FALSE(j.is_discarded()) << out;
  return j;
}

const char* kPatientXml = R"(<?xml version="1.0" encoding="UTF-8"?>
<Patient xmlns="http://hl7.org/fhir" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"
         xsi:schemaLocation="http://hl7.org/fhir ../../schema/patient.xsd">
  <id value="p1"/>
  <!-- a comment is ignored -->
  <text>
    <status value="generated"/>
    <div xmlns="http://www.w3.org/1999/xhtml"><p>Anne &amp; <b>Martin</b> &lt;3<br/></p></div>
  </text>
  <extension url="http://example.org/ext">
    <valueDecimal value="1.50"/>
  </extension>
  <active value="true"/>
  <name id="n1">
    <family value="Martin"/>
    <given value="Anne"/>
    <given id="g2">
      <extension url="http://example.org/absent">
        <valueCode value="unknown"/>
      </extension>
    </given>
  </name>
  <gender value="female"/>
  <birthDate value="1980-02-29">
    <extension url="http://hl7.org/fhir/StructureDefinition/patient-birthTime">
      <valueDateTime value="1980-02-29T10:15:00+01:00"/>
    </extension>
  </birthDate>
  <multipleBirthInteger value="2"/>
</Patient>)";

}  // namespace

TEST(FhirXmlTest, ReadsPrimitivesExtensionsAndTheNarrative) {
  json j = read(kPatientXml);
  EXPECT_EQ(j["resourceType"], "Patient");
  EXPECT_EQ(j["id"], "p1");
  EXPECT_EQ(j["active"], true);
  EXPECT_EQ(j["multipleBirthInteger"], 2);
  EXPECT_EQ(j["extension"][0]["url"], "http://example.org/ext");
  EXPECT_EQ(j["name"][0]["id"], "n1");
  EXPECT_EQ(j["name"][0]["given"], json::parse(R"(["Anne", null])"));
  EXPECT_EQ(j["name"][0]["_given"][0], nullptr);
  EXPECT_EQ(j["name"][0]["_given"][1]["id"], "g2");
  EXPECT_EQ(j["name"][0]["_given"][1]["extension"][0]["valueCode"], "unknown");
  EXPECT_EQ(j["_birthDate"]["extension"][0]["valueDateTime"], "1980-02-29T10:15:00+01:00");
  EXPECT_EQ(j["text"]["div"], "<div xmlns=\"http://www.w3.org/1999/xhtml\"><p>Anne &amp; <b>Martin</b> &lt;3<br/></p></div>");
  std::string out;
  std::vector<Issue> issues;
  ASSERT_TRUE(fhirXmlToJson(kPatientXml, out, issues));
  EXPECT_NE(out.find("\"valueDecimal\":1.50"), std::string::npos) << out;  // the decimal keeps its text
  auto v = passerelle::fhir::Validator::instance().validate(out);
  EXPECT_FALSE(v.hasErrors()) << dump(v.issues);
}

TEST(FhirXmlTest, WritesTheOfficialXmlForm) {
  std::string xml;
  std::vector<Issue> issues;
  std::string json = R"({"resourceType":"Patient","id":"p1","birthDate":"1980-02-29",
    "_birthDate":{"id":"b","extension":[{"url":"http://x/y","valueBoolean":true}]},
    "name":[{"given":["A<B",null],"_given":[null,{"extension":[{"url":"u","valueString":"q\"\n"}]}],"family":"F"}],
    "extension":[{"url":"http://e","valueQuantity":{"value":1.50,"unit":"mg"}}],
    "contained":[{"resourceType":"Organization","id":"o","name":"Org"}],
    "managingOrganization":{"reference":"#o"},
    "text":{"status":"generated","div":"<div xmlns=\"http://www.w3.org/1999/xhtml\">Hi</div>"}})";
  ASSERT_TRUE(fhirJsonToXml(json, xml, issues)) << dump(issues);
  EXPECT_EQ(xml,
            "<Patient xmlns=\"http://hl7.org/fhir\"><id value=\"p1\"/><text><status value=\"generated\"/>"
            "<div xmlns=\"http://www.w3.org/1999/xhtml\">Hi</div></text>"
            "<contained><Organization><id value=\"o\"/><name value=\"Org\"/></Organization></contained>"
            "<extension url=\"http://e\"><valueQuantity><value value=\"1.50\"/><unit value=\"mg\"/></valueQuantity></extension>"
            "<name><family value=\"F\"/><given value=\"A&lt;B\"/><given><extension url=\"u\"><valueString value=\"q&quot;&#10;\"/>"
            "</extension></given></name>"
            "<birthDate id=\"b\" value=\"1980-02-29\"><extension url=\"http://x/y\"><valueBoolean value=\"true\"/></extension></birthDate>"
            "<managingOrganization><reference value=\"#o\"/></managingOrganization></Patient>");
  std::string back;
  ASSERT_TRUE(fhirXmlToJson(xml, back, issues)) << dump(issues);
  EXPECT_EQ(json::parse(back), json::parse(json));
}

TEST(FhirXmlTest, WritesResourcesInsideBundlesAndParameters) {
  std::string json = R"({"resourceType":"Parameters","parameter":[{"name":"resource","resource":
    {"resourceType":"Bundle","type":"collection","entry":[{"fullUrl":"urn:uuid:1","resource":{"resourceType":"Patient","active":false}}]}},
    {"name":"n","valueInteger":-3}]})";
  std::string xml, back;
  std::vector<Issue> issues;
  ASSERT_TRUE(fhirJsonToXml(json, xml, issues)) << dump(issues);
  EXPECT_NE(xml.find("<resource><Bundle><type value=\"collection\"/><entry><fullUrl value=\"urn:uuid:1\"/><resource><Patient>"
                     "<active value=\"false\"/></Patient></resource></entry></Bundle></resource>"),
            std::string::npos)
      << xml;
  ASSERT_TRUE(fhirXmlToJson(xml, back, issues)) << dump(issues);
  EXPECT_EQ(json::parse(back), json::parse(json));
}

TEST(FhirXmlTest, RefusesJsonItCannotWrite) {
  std::string xml;
  std::vector<Issue> issues;
  EXPECT_FALSE(fhirJsonToXml(R"({"resourceType":"Patient","colour":"blue"})", xml, issues));
  EXPECT_NE(dump(issues).find("Unrecognized property 'colour'"), std::string::npos) << dump(issues);
  issues.clear();
  EXPECT_FALSE(fhirJsonToXml(R"({"resourceType":"Nope"})", xml, issues));
  issues.clear();
  EXPECT_FALSE(fhirJsonToXml(R"({"resourceType":"Patient",)", xml, issues));
  issues.clear();
  EXPECT_FALSE(fhirJsonToXml(R"({"resourceType":"Patient","text":{"status":"generated","div":"<div>unclosed"}})", xml, issues));
  issues.clear();
  EXPECT_FALSE(fhirJsonToXml(R"({"resourceType":"Patient","name":[{"family":"a\u0001b"}]})", xml, issues));
  EXPECT_NE(dump(issues).find("control character"), std::string::npos) << dump(issues);
}

TEST(FhirXmlTest, RefusesADoctype) {
  expectRefused("<?xml version=\"1.0\"?><!DOCTYPE Patient><Patient xmlns=\"http://hl7.org/fhir\"/>", "DOCTYPE");
  expectRefused("<?xml version=\"1.0\"?><!DOCTYPE x [<!ENTITY e SYSTEM \"file:///etc/passwd\">]>"
                "<Patient xmlns=\"http://hl7.org/fhir\"><id value=\"&e;\"/></Patient>",
                "DOCTYPE");
  expectRefused("<!doctype lol [<!ENTITY a \"aaaa\"><!ENTITY b \"&a;&a;&a;\">]><Patient xmlns=\"http://hl7.org/fhir\"/>", "DOCTYPE");
}

TEST(FhirXmlTest, RefusesAnUndeclaredEntity) {
  expectRefused("<Patient xmlns=\"http://hl7.org/fhir\"><id value=\"&secret;\"/></Patient>", "entit");
  // XML's own entities and character references are fine.
  json j = read("<Patient xmlns=\"http://hl7.org/fhir\"><name><family value=\"a&amp;b&#233;&#x41;&quot;\"/></name></Patient>");
  EXPECT_EQ(j["name"][0]["family"], "a&b\xC3\xA9" "A\"");
}

TEST(FhirXmlTest, RefusesDeepNesting) {
  std::string xml = "<Patient xmlns=\"http://hl7.org/fhir\">";
  for (int i = 0; i < 100; ++i) xml += "<extension url=\"u\">";
  for (int i = 0; i < 100; ++i) xml += "</extension>";
  xml += "</Patient>";
  expectRefused(xml, "nested deeper than 64");
  // Unknown elements are skipped but still counted.
  std::string skipped = "<Patient xmlns=\"http://hl7.org/fhir\">";
  for (int i = 0; i < 100000; ++i) skipped += "<x>";
  expectRefused(skipped, "nested deeper than 64");
}

TEST(FhirXmlTest, RefusesTheWrongNamespace) {
  expectRefused("<Patient><id value=\"x\"/></Patient>", "has no namespace: a FHIR resource in XML is in the namespace http://hl7.org/fhir");
  expectRefused("<Patient xmlns=\"http://hl7.org/fhir/\"><id value=\"x\"/></Patient>", "http://hl7.org/fhir");
  expectRefused("<Patient xmlns=\"http://hl7.org/fhir\"><id xmlns=\"urn:other\" value=\"x\"/></Patient>", "urn:other", "Patient");
  expectRefused("<Patient xmlns=\"http://hl7.org/fhir\"><text><status value=\"generated\"/><div>no xhtml</div></text></Patient>",
                "http://www.w3.org/1999/xhtml", "Patient.text");
  expectRefused("<Patient xmlns=\"http://hl7.org/fhir\"><text><status value=\"generated\"/><div xmlns=\"http://www.w3.org/1999/xhtml\">"
                "<p xmlns=\"urn:x\">a</p></div></text></Patient>",
                "http://www.w3.org/1999/xhtml", "Patient.text.div");
}

TEST(FhirXmlTest, RefusesMixedContent) {
  expectRefused("<Patient xmlns=\"http://hl7.org/fhir\"><name><family>Martin</family></name></Patient>", "no mixed content",
                "Patient.name[0].family");
  expectRefused("<Patient xmlns=\"http://hl7.org/fhir\">text<id value=\"x\"/></Patient>", "no mixed content", "Patient");
}

TEST(FhirXmlTest, RefusesUnknownElementsAndAttributes) {
  expectRefused("<Patient xmlns=\"http://hl7.org/fhir\"><colour value=\"blue\"/></Patient>", "Unrecognized element 'colour'",
                "Patient");
  expectRefused("<Observation xmlns=\"http://hl7.org/fhir\"><status value=\"final\"/><code><text value=\"t\"/></code>"
                "<valueQuantity><value value=\"1\"/><id value=\"no\"/></valueQuantity></Observation>",
                "Unrecognized element 'id'");
  expectRefused("<Patient xmlns=\"http://hl7.org/fhir\"><active value=\"true\" colour=\"blue\"/></Patient>",
                "Unrecognized attribute 'colour'");
  expectRefused("<Nonsense xmlns=\"http://hl7.org/fhir\"/>", "Unknown resource type 'Nonsense'");
}

TEST(FhirXmlTest, RefusesPrimitivesWithoutValueAndBadValues) {
  expectRefused("<Patient xmlns=\"http://hl7.org/fhir\"><active/></Patient>", "has no value attribute", "Patient.active");
  expectRefused("<Patient xmlns=\"http://hl7.org/fhir\"><active value=\"yes\"/></Patient>", "not a valid boolean", "Patient.active");
  expectRefused("<Patient xmlns=\"http://hl7.org/fhir\"><multipleBirthInteger value=\"02\"/></Patient>", "not a valid integer");
  expectRefused("<Observation xmlns=\"http://hl7.org/fhir\"><valueQuantity><value value=\"1,5\"/></valueQuantity></Observation>",
                "not a valid decimal", "Observation.valueQuantity.value");
}

TEST(FhirXmlTest, WarnsOfElementsOutOfOrderAndRefusesSplitRepeats) {
  std::string out;
  std::vector<Issue> issues;
  EXPECT_TRUE(fhirXmlToJson("<Patient xmlns=\"http://hl7.org/fhir\"><gender value=\"male\"/><active value=\"true\"/></Patient>",
                            out, issues));
  ASSERT_EQ(issues.size(), 1u) << dump(issues);
  EXPECT_EQ(issues[0].severity, "warning");
  EXPECT_NE(issues[0].diagnostics.find("active is out of order: in Patient it comes before gender"), std::string::npos) << dump(issues);
  EXPECT_EQ(json::parse(out), json::parse(R"({"resourceType":"Patient","gender":"male","active":true})"));
  expectRefused("<Patient xmlns=\"http://hl7.org/fhir\"><name><given value=\"a\"/><family value=\"b\"/><given value=\"c\"/></name></Patient>",
                "must follow each other", "Patient.name[0]");
  expectRefused("<Patient xmlns=\"http://hl7.org/fhir\"><gender value=\"male\"/><gender value=\"female\"/></Patient>",
                "more than once");
}

TEST(FhirXmlTest, RefusesTruncatedAndEmptyDocuments) {
  std::string xml = kPatientXml;
  for (std::size_t cut : {std::size_t{0}, std::size_t{10}, xml.size() / 3, xml.size() / 2, xml.size() - 3})
    expectRefused(xml.substr(0, cut), cut == 0 ? "" : "");
  expectRefused(xml.substr(0, xml.size() / 2), "not well-formed");
  expectRefused("", "", "*");
}

TEST(FhirXmlTest, RefusesEncodingsOtherThanUtf8) {
  expectRefused("<?xml version=\"1.0\" encoding=\"ISO-8859-1\"?><Patient xmlns=\"http://hl7.org/fhir\"/>", "only UTF-8");
  std::string utf16("\xFF\xFE<\0P\0", 6);
  expectRefused(utf16, "UTF-8");
  expectRefused("<Patient xmlns=\"http://hl7.org/fhir\"><name><family value=\"Mart\xE9n\"/></name></Patient>", "");
}

TEST(FhirXmlTest, RefusesSeveralResourcesInOneHolder) {
  expectRefused("<Patient xmlns=\"http://hl7.org/fhir\"><contained><Patient/><Patient/></contained></Patient>", "one resource only");
  expectRefused("<Patient xmlns=\"http://hl7.org/fhir\"><contained/></Patient>", "must contain a resource");
}

TEST(FhirXmlTest, NeverCrashesOnGarbage) {
  const std::string seeds[] = {kPatientXml, "<Bundle xmlns=\"http://hl7.org/fhir\"><entry><resource><Patient><id value=\"a\"/></Patient></resource></entry></Bundle>"};
  std::uint32_t state = 12345;
  std::string out;
  for (const std::string& seed : seeds) {
    for (int round = 0; round < 2000; ++round) {
      std::string s = seed;
      for (int k = 0; k < 4; ++k) {
        state = state * 1103515245u + 12345u;
        std::size_t at = (state >> 8) % s.size();
        char c = static_cast<char>(state >> 24);
        if (state & 1) s[at] = c;
        else s.erase(at, 1 + (state >> 3) % 8);
        if (s.empty()) s = "<";
      }
      std::vector<Issue> issues;
      if (fhirXmlToJson(s, out, issues)) {
        EXPECT_FALSE(json::parse(out, nullptr, false).is_discarded()) << s << "\n" << out;
        std::string xml;
        fhirJsonToXml(out, xml, issues);
      }
    }
  }
}

TEST(FhirXmlTest, MediaTypes) {
  EXPECT_TRUE(passerelle::fhir::isXmlMediaType("application/fhir+xml; charset=utf-8"));
  EXPECT_TRUE(passerelle::fhir::isXmlMediaType("Application/XML"));
  EXPECT_TRUE(passerelle::fhir::isXmlMediaType("text/xml"));
  EXPECT_FALSE(passerelle::fhir::isXmlMediaType("application/fhir+json"));
  EXPECT_TRUE(passerelle::fhir::looksLikeXml("\xEF\xBB\xBF  \n<?xml version=\"1.0\"?>"));
  EXPECT_FALSE(passerelle::fhir::looksLikeXml(" {\"resourceType\":\"Patient\"}"));
}

TEST(FhirXmlTest, ThreadsReadAtOnce) {
  std::vector<std::thread> threads;
  std::atomic<int> failures{0};
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([&] {
      std::string out;
      for (int i = 0; i < 200; ++i) {
        std::vector<Issue> issues;
        if (!fhirXmlToJson(kPatientXml, out, issues)) ++failures;
        if (fhirXmlToJson("<Patient xmlns=\"http://hl7.org/fhir\"><x/></Patient>", out, issues)) ++failures;
      }
    });
  for (auto& th : threads) th.join();
  EXPECT_EQ(failures.load(), 0);
}
