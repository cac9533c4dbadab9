// CDA R2 reading: the header's facts, the hardening (DOCTYPE, entities, nesting, encoding), the
// checks of a usable document, self-presenting documents, where a schema's parts are read from,
// XSD validation with the HL7 schema and with Passerelle's French root over the ANS components of
// ../shared/corpora (skipped when absent), and the mapping to FHIR.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "mappings/cda/cda.h"
#include "tests/support/test_gateway.h"

namespace passerelle::cda {
namespace {

using Json = nlohmann::json;

// A CI-SIS level 1 document (a consult note carrying a PDF) for a patient with an INS.
std::string sample(const std::string& body = "", const std::string& extra = "") {
  std::string b = body.empty() ? R"(<component><nonXMLBody><text mediaType="application/pdf" representation="B64">JVBERi0xLjQK</text></nonXMLBody></component>)" : body;
  return R"(<?xml version="1.0" encoding="UTF-8"?>
<ClinicalDocument xmlns="urn:hl7-org:v3" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">
  <realmCode code="FR"/>
  <typeId root="2.16.840.1.113883.1.3" extension="POCD_HD000040"/>
  <templateId root="2.16.840.1.113883.2.8.2.1"/>
  <templateId root="1.2.250.1.213.1.1.1.1"/>
  <id root="2.999.77.1" extension="CR-2026-0042"/>
  <code code="11488-4" codeSystem="2.16.840.1.113883.6.1" displayName="Compte rendu de consultation"/>
  <title>Compte rendu de consultation douleur</title>
  <effectiveTime value="20260302101500+0100"/>
  <confidentialityCode code="N" codeSystem="2.16.840.1.113883.5.25"/>
  <languageCode code="fr-FR"/>)" + extra + R"(
  <recordTarget><patientRole>
    <id root="1.2.250.1.213.1.4.8" extension="185057512345673"/>
    <id root="1.2.250.1.213.1.4.2" extension="IPP-77"/>
    <patient>
      <name><given>Julien</given><given>Pierre</given><family qualifier="BR">DURAND</family><family qualifier="SP">MARTIN</family></name>
      <administrativeGenderCode code="M" codeSystem="2.16.840.1.113883.5.1"/>
      <birthTime value="19850514"/>
      <birthplace><place><addr><county>77288</county><city>MELUN</city></addr></place></birthplace>
    </patient>
  </patientRole></recordTarget>
  <author><time value="20260302101500+0100"/><assignedAuthor>
    <id root="1.2.250.1.71.4.2.1" extension="810101234567"/>
    <assignedPerson><name><given>Sophie</given><family>MARTIN</family></name></assignedPerson>
  </assignedAuthor></author>
  <custodian><assignedCustodian><representedCustodianOrganization>
    <id root="1.2.250.1.71.4.2.2" extension="1770000001"/><name>Clinique de Seine-et-Marne</name>
  </representedCustodianOrganization></assignedCustodian></custodian>
  )" + b + R"(
</ClinicalDocument>
)";
}

bool says(const std::vector<Issue>& issues, const std::string& part) {
  for (const auto& i : issues)
    if (i.message.find(part) != std::string::npos || i.where.find(part) != std::string::npos) return true;
  return false;
}

TEST(Cda, ReadsTheHeaderAndALevelOneBody) {
  Document d;
  std::vector<Issue> issues;
  ASSERT_TRUE(read(sample(), nullptr, Limits{}, d, issues)) << (issues.empty() ? "" : issues[0].message);
  EXPECT_EQ(d.id.root, "2.999.77.1");
  EXPECT_EQ(d.id.extension, "CR-2026-0042");
  EXPECT_EQ(d.code, "11488-4");
  EXPECT_EQ(d.title, "Compte rendu de consultation douleur");
  ASSERT_EQ(d.templateIds.size(), 2u);
  ASSERT_EQ(d.patientIds.size(), 2u);
  EXPECT_EQ(d.patientIds[0].extension, "185057512345673");
  EXPECT_EQ(d.birthFamily, "DURAND");
  EXPECT_EQ(d.usualFamily, "MARTIN");
  EXPECT_EQ(d.given, (std::vector<std::string>{"Julien", "Pierre"}));
  EXPECT_EQ(d.birthPlaceCode, "77288");
  EXPECT_EQ(d.birthPlaceCity, "MELUN");
  EXPECT_EQ(rppsOf(d.authorId), "10101234567");
  EXPECT_EQ(d.custodianName, "Clinique de Seine-et-Marne");
  EXPECT_EQ(d.bodyMediaType, "application/pdf");
  EXPECT_EQ(d.bodyBase64, "JVBERi0xLjQK");
}

TEST(Cda, ReadsTheTextOfAStructuredBody) {
  Document d;
  std::vector<Issue> issues;
  std::string body = R"(<component><structuredBody><component><section><title>Motif</title><text><paragraph>Lombalgie chronique</paragraph>
    <list><item>EVA 7/10</item></list></text></section></component></structuredBody></component>)";
  ASSERT_TRUE(read(sample(body), nullptr, Limits{}, d, issues));
  EXPECT_TRUE(d.structured);
  EXPECT_NE(d.bodyText.find("Motif\nLombalgie chronique\nEVA 7/10"), std::string::npos) << d.bodyText;
}

TEST(Cda, RefusesWhatIsNotSafeOrNotADocument) {
  struct Case {
    std::string xml, part;
  };
  std::string deep = "<ClinicalDocument xmlns=\"urn:hl7-org:v3\">" + std::string(300 * 3, ' ');
  deep.clear();
  for (int i = 0; i < 300; ++i) deep += "<a>";
  std::vector<Case> cases = {
      {"<?xml version=\"1.0\"?><!DOCTYPE x [<!ENTITY e SYSTEM \"file:///etc/passwd\">]><ClinicalDocument xmlns=\"urn:hl7-org:v3\">&e;</ClinicalDocument>",
       "DOCTYPE"},
      {"<?xml version=\"1.0\"?><!doctype lol [<!ENTITY a \"aaaa\"><!ENTITY b \"&a;&a;&a;\">]><x>&b;</x>", "DOCTYPE"},
      {"<?xml version=\"1.0\" encoding=\"ISO-8859-1\"?><ClinicalDocument xmlns=\"urn:hl7-org:v3\"/>", "only UTF-8"},
      {"<ClinicalDocument xmlns=\"urn:hl7-org:v3\"><id root=\"1\"/>", "line"},
      {"<ClinicalDocument xmlns=\"urn:hl7-org:v3\">&undeclared;</ClinicalDocument>", "line"},
      {"<Document xmlns=\"urn:hl7-org:v3\"/>", "not ClinicalDocument"},
      {"<ClinicalDocument/>", "not ClinicalDocument"},
      {"<ClinicalDocument xmlns=\"urn:hl7-org:v3\"/>", "names no patient id"},
      {deep, "nested deeper than 256"},
      {sample(R"(<component><nonXMLBody><text mediaType="application/pdf" representation="B64">@@@</text></nonXMLBody></component>)"),
       "does not decode"},
  };
  for (const auto& c : cases) {
    Document d;
    std::vector<Issue> issues;
    EXPECT_FALSE(read(c.xml, nullptr, Limits{}, d, issues)) << c.xml.substr(0, 80);
    EXPECT_TRUE(says(issues, c.part)) << c.part << " <- " << (issues.empty() ? "(none)" : issues[0].where + " " + issues[0].message);
  }
  Limits small;
  small.maxBytes = 100;
  Document d;
  std::vector<Issue> issues;
  EXPECT_FALSE(read(sample(), nullptr, small, d, issues));
  EXPECT_TRUE(says(issues, "more than the 100"));
}

TEST(Cda, MapsToPatientAndDocumentReference) {
  Document d;
  std::vector<Issue> issues;
  std::string xml = sample();
  ASSERT_TRUE(read(xml, nullptr, Limits{}, d, issues));
  Json b;
  toBundle(d, xml, b);
  ASSERT_EQ(b["entry"].size(), 2u);
  const Json& p = b["entry"][0]["resource"];
  EXPECT_EQ(p["identifier"][0]["system"], "urn:oid:1.2.250.1.213.1.4.8");
  EXPECT_EQ(p["identifier"][0]["type"]["coding"][0]["code"], "INS-NIR");
  EXPECT_EQ(p["name"][0]["use"], "official");
  EXPECT_EQ(p["name"][0]["family"], "DURAND");
  EXPECT_EQ(p["gender"], "male");
  EXPECT_EQ(p["birthDate"], "1985-05-14");
  // The birthplace as FR Core writes it: the INSEE code of the commune, and its name.
  ASSERT_EQ(p["extension"][0]["url"], "http://hl7.org/fhir/StructureDefinition/patient-birthPlace");
  EXPECT_EQ(p["extension"][0]["valueAddress"]["extension"][0]["valueCoding"]["code"], "77288");
  EXPECT_EQ(p["extension"][0]["valueAddress"]["city"], "MELUN");
  const Json& r = b["entry"][1]["resource"];
  EXPECT_EQ(r["type"]["coding"][0]["system"], "http://loinc.org");
  EXPECT_EQ(r["date"], "2026-03-02T10:15:00+01:00");
  EXPECT_EQ(r["author"][0]["identifier"]["value"], "10101234567");
  EXPECT_EQ(r["subject"]["reference"], b["entry"][0]["fullUrl"]);
  EXPECT_EQ(r["content"][0]["attachment"]["contentType"], "text/xml");
  EXPECT_EQ(r["content"][1]["attachment"]["contentType"], "application/pdf");
  EXPECT_EQ(r["masterIdentifier"]["system"], "urn:oid:2.999.77.1");
  EXPECT_EQ(r["masterIdentifier"]["value"], "CR-2026-0042");
}

// A report as the network writes it (the CIED's Composition and scores) with its patient.
Json networkReport() {
  return Json::parse(R"({"resourceType": "Bundle", "type": "collection", "entry": [
    {"resource": {"resourceType": "Patient", "identifier": [{"system": "urn:oid:1.2.250.1.213.1.4.8", "value": "185057512345673"}],
      "name": [{"use": "official", "family": "DURAND", "given": ["Julien", "Pierre"]}], "gender": "male", "birthDate": "1985-05-14",
      "extension": [{"url": "http://hl7.org/fhir/StructureDefinition/patient-birthPlace", "valueAddress": {"extension": [
        {"url": "https://hl7.fr/ig/fhir/core/StructureDefinition/fr-core-address-insee-code", "valueCoding": {"code": "2A004"}}]}}]}},
    {"resource": {"resourceType": "Composition", "status": "final", "title": "Compte rendu de consultation douleur", "date": "2026-03-02",
      "type": {"coding": [{"system": "http://loinc.org", "code": "11488-4", "display": "Consult note"}]},
      "identifier": {"system": "https://douleur77.fr/fhir/sid/network-entry", "value": "D77-CIED-2026-000001.report"},
      "author": [{"identifier": {"system": "https://douleur77.fr/fhir/sid/member", "value": "rpps:10101234567"}}],
      "extension": [{"url": "https://douleur77.fr/fhir/StructureDefinition/report-text", "valueString": "Lombalgie chronique.\nPlan : kinésithérapie & reprise."}]}},
    {"resource": {"resourceType": "Observation", "status": "final", "effectiveDateTime": "2026-03-02",
      "code": {"coding": [{"system": "http://loinc.org", "code": "72514-3"}]}, "valueQuantity": {"value": 7.5, "unit": "Level", "code": "1"},
      "component": [{"code": {"coding": [{"system": "http://loinc.org", "code": "38214-3"}]}, "valueQuantity": {"value": 75, "unit": "mm", "code": "mm"}}]}}]})");
}

TEST(Cda, TheNetworksReportIsWrittenAsCisisCdaAndReadsBackToTheSameFacts) {
  Document d;
  std::string error;
  ASSERT_TRUE(fromFhir(networkReport(), "R\xc3\xa9seau Douleur 77", d, error)) << error;
  std::string xml = write(d);
  Document back;
  std::vector<Issue> issues;
  ASSERT_TRUE(read(xml, nullptr, Limits{}, back, issues)) << (issues.empty() ? "" : issues[0].where + " " + issues[0].message) << xml;
  EXPECT_EQ(back.id.root, d.id.root);
  EXPECT_EQ(back.id.extension, "D77-CIED-2026-000001.report");
  EXPECT_EQ(back.code, "11488-4");
  EXPECT_EQ(back.effectiveTime, "20260302");
  ASSERT_EQ(back.patientIds.size(), 1u);
  EXPECT_EQ(back.patientIds[0].extension, "185057512345673");
  EXPECT_EQ(back.birthFamily, "DURAND");
  EXPECT_EQ(back.given, (std::vector<std::string>{"Julien", "Pierre"}));
  EXPECT_EQ(back.gender, "M");
  EXPECT_EQ(back.birthTime, "19850514");
  EXPECT_EQ(back.birthPlaceCode, "2A004");  // a Corsican commune
  EXPECT_EQ(rppsOf(back.authorId), "10101234567");
  EXPECT_NE(back.bodyText.find("Plan : kin\xc3\xa9sith\xc3\xa9rapie & reprise."), std::string::npos) << back.bodyText;
  ASSERT_EQ(back.results.size(), 2u);
  EXPECT_EQ(back.results[0].code, "72514-3");
  EXPECT_EQ(back.results[0].value, "7.5");
  EXPECT_EQ(back.results[1].value, "75");
  EXPECT_EQ(back.results[1].unit, "mm");
  // Imported, the scores become Observations again, derived from the document.
  Json b;
  toBundle(back, xml, b);
  ASSERT_EQ(b["entry"].size(), 4u);
  EXPECT_EQ(b["entry"][1]["resource"]["code"]["coding"][0]["system"], "http://loinc.org");
  EXPECT_EQ(b["entry"][1]["resource"]["valueQuantity"]["value"], 7.5);
  EXPECT_EQ(b["entry"][2]["resource"]["valueQuantity"]["code"], "mm");
  EXPECT_EQ(b["entry"][1]["resource"]["derivedFrom"][0]["reference"], b["entry"][3]["fullUrl"]);
  EXPECT_EQ(b["entry"][3]["resource"]["resourceType"], "DocumentReference");
  // The same report gives the same document id; another report another.
  Json other = networkReport();
  other["entry"][1]["resource"]["identifier"]["value"] = "D77-CSB-2026-000002.report";
  Document d2;
  ASSERT_TRUE(fromFhir(other, "", d2, error));
  EXPECT_NE(d2.id.root, d.id.root);
  // Without an INS or a report: refused.
  Json noIns = networkReport();
  noIns["entry"][0]["resource"].erase("identifier");
  EXPECT_FALSE(fromFhir(noIns, "", d2, error));
  EXPECT_NE(error.find("INS"), std::string::npos);
  Json noReport = networkReport();
  noReport["entry"].erase(1);
  EXPECT_FALSE(fromFhir(noReport, "", d2, error));
  // A referral without a report: the referral letter.
  noReport["entry"].push_back(Json::parse(R"({"resource": {"resourceType": "ServiceRequest", "status": "active", "intent": "order",
    "identifier": [{"system": "https://douleur77.fr/fhir/sid/referral", "value": "ORI-2026-0001"}], "authoredOn": "2026-09-03",
    "requester": {"identifier": {"system": "https://douleur77.fr/fhir/sid/member", "value": "rpps:10101234567"}},
    "reasonCode": [{"text": "EVA 5,5/10 contre 7,5/10 à la CIED."}], "occurrencePeriod": {"start": "2026-09-03", "end": "2026-09-18"}}})"));
  ASSERT_TRUE(fromFhir(noReport, "", d2, error)) << error;
  Document letter;
  issues.clear();
  ASSERT_TRUE(read(write(d2), nullptr, Limits{}, letter, issues));
  EXPECT_EQ(letter.code, "57133-1");
  EXPECT_EQ(letter.id.extension, "ORI-2026-0001");
  EXPECT_EQ(rppsOf(letter.authorId), "10101234567");
  EXPECT_NE(letter.bodyText.find("Motif : EVA 5,5/10"), std::string::npos) << letter.bodyText;
  EXPECT_NE(letter.bodyText.find("2026-09-18"), std::string::npos);
}

// `sample()` as a self-presenting CI-SIS document: the ClinicalDocument in data:Contenu, inside the
// stylesheet that displays it.
std::string selfPresenting(const std::string& cda) {
  std::string inner = cda.substr(cda.find("<ClinicalDocument"));
  return R"(<?xml version="1.0" encoding="UTF-8"?>
<xsl:stylesheet version="1.0" xmlns:xsl="http://www.w3.org/1999/XSL/Transform" xmlns:data="urn:asip-sante:ci-sis">
  <data:Contenu>)" + inner + R"(</data:Contenu>
  <xsl:param name="vocFile" select="'cda_l10n.xml'"/>
  <xsl:template match="/"><html><body><xsl:value-of select="//title"/></body></html></xsl:template>
</xsl:stylesheet>
)";
}

TEST(Cda, ReadsTheClinicalDocumentOfASelfPresentingDocument) {
  Document d;
  std::vector<Issue> issues;
  ASSERT_TRUE(read(selfPresenting(sample()), nullptr, Limits{}, d, issues)) << (issues.empty() ? "" : issues[0].message);
  EXPECT_EQ(d.id.extension, "CR-2026-0042");
  EXPECT_EQ(d.patientIds.at(0).extension, "185057512345673");
  // An envelope without the container: refused, saying what is missing.
  issues.clear();
  EXPECT_FALSE(read(R"(<xsl:stylesheet version="1.0" xmlns:xsl="http://www.w3.org/1999/XSL/Transform"><xsl:template match="/"/></xsl:stylesheet>)", nullptr,
                    Limits{}, d, issues));
  EXPECT_TRUE(says(issues, "without a ClinicalDocument in its data:Contenu"));
}

TEST(Cda, ASchemasPartsAreLocalFilesFoundBesideItOrInTheComponentsFolder) {
  testing::TempDir dir;
  std::filesystem::create_directories(dir.path() + "/root");
  std::filesystem::create_directories(dir.path() + "/components");
  const std::string head = R"(<?xml version="1.0" encoding="UTF-8"?>
<xs:schema targetNamespace="urn:hl7-org:v3" xmlns:xs="http://www.w3.org/2001/XMLSchema" xmlns="urn:hl7-org:v3" elementFormDefault="qualified">)";
  std::ofstream(dir.path() + "/root/root.xsd") << head << R"(<xs:include schemaLocation="part.xsd"/><xs:element name="ClinicalDocument" type="Doc"/></xs:schema>)";
  std::ofstream(dir.path() + "/components/part.xsd") << head << R"(<xs:complexType name="Doc"><xs:sequence><xs:element name="title" type="xs:string"/></xs:sequence></xs:complexType></xs:schema>)";
  std::string error;
  // Not beside the root and no components folder: the missing file is named.
  EXPECT_FALSE(Schema::load(dir.path() + "/root/root.xsd", error));
  EXPECT_NE(error.find("root/part.xsd (named by"), std::string::npos) << error;
  auto schema = Schema::load(dir.path() + "/root/root.xsd", error, dir.path() + "/components");
  ASSERT_TRUE(schema) << error;
  Document d;
  std::vector<Issue> issues;
  EXPECT_FALSE(read(R"(<ClinicalDocument xmlns="urn:hl7-org:v3"><code/></ClinicalDocument>)", schema.get(), Limits{}, d, issues));
  EXPECT_TRUE(says(issues, "code")) << (issues.empty() ? "" : issues[0].message);
  // A location on the network is never fetched: the load fails and says so.
  std::ofstream(dir.path() + "/root/remote.xsd") << head << R"(<xs:import namespace="urn:x" schemaLocation="http://127.0.0.1:9/x.xsd"/></xs:schema>)";
  EXPECT_FALSE(Schema::load(dir.path() + "/root/remote.xsd", error));
  EXPECT_NE(error.find("http://127.0.0.1:9/x.xsd is not a local file"), std::string::npos) << error;
}

std::string hl7Schema() {
  std::string c = testing::corporaDir();
  if (c.empty()) return "";
  std::string p = c + "/hl7-cda-core-2.0/schema/extensions/SDTC/infrastructure/cda/CDA_SDTC.xsd";
  return std::filesystem::exists(p) ? p : "";
}

TEST(Cda, ValidatesAgainstTheHl7Schema) {
  std::string path = hl7Schema();
  if (path.empty()) GTEST_SKIP() << "../shared/corpora/hl7-cda-core-2.0 is absent: the XSD validation is not run";
  std::string error;
  auto schema = Schema::load(path, error);
  ASSERT_TRUE(schema) << error;
  Document d;
  std::vector<Issue> issues;
  EXPECT_TRUE(read(sample(), schema.get(), Limits{}, d, issues)) << (issues.empty() ? "" : issues[0].where + " " + issues[0].message);
  // An element the schema does not allow there: refused with its line.
  issues.clear();
  EXPECT_FALSE(read(sample("", "\n  <surprise/>"), schema.get(), Limits{}, d, issues));
  EXPECT_TRUE(says(issues, "line 13")) << (issues.empty() ? "" : issues[0].where + " " + issues[0].message);
  // What the network writes validates too.
  Document report;
  ASSERT_TRUE(fromFhir(networkReport(), "Réseau", report, error)) << error;
  issues.clear();
  EXPECT_TRUE(read(write(report), schema.get(), Limits{}, d, issues)) << (issues.empty() ? "" : issues[0].where + " " + issues[0].message);
  EXPECT_FALSE(Schema::load("/nonexistent.xsd", error));
  EXPECT_NE(error.find("cannot be loaded"), std::string::npos);
}

// Passerelle's French root (schemas/cda/CDA_FR.xsd) over the ANS components: what the network
// writes validates, in both forms, and an element out of place inside the envelope is still caught.
TEST(Cda, ValidatesAgainstTheFrenchRootSchema) {
  std::string c = testing::corporaDir();
  std::string components = c + "/ans-testcontenucda-3.0/infrastructure/cda";
  if (c.empty() || !std::filesystem::exists(components)) GTEST_SKIP() << "../shared/corpora/ans-testcontenucda-3.0 is absent: the French schema is not run";
  std::string error;
  auto schema = Schema::load(std::string(PASSERELLE_CDA_SCHEMAS) + "/CDA_FR.xsd", error, components);
  ASSERT_TRUE(schema) << error;
  Document d, report;
  std::vector<Issue> issues;
  EXPECT_TRUE(read(sample(), schema.get(), Limits{}, d, issues)) << (issues.empty() ? "" : issues[0].where + " " + issues[0].message);
  ASSERT_TRUE(fromFhir(networkReport(), "Réseau", report, error)) << error;
  EXPECT_TRUE(read(write(report), schema.get(), Limits{}, d, issues)) << (issues.empty() ? "" : issues[0].where + " " + issues[0].message);
  EXPECT_TRUE(read(selfPresenting(write(report)), schema.get(), Limits{}, d, issues)) << (issues.empty() ? "" : issues[0].where + " " + issues[0].message);
  EXPECT_EQ(d.code, "11488-4");
  issues.clear();
  EXPECT_FALSE(read(selfPresenting(sample("", "\n  <surprise/>")), schema.get(), Limits{}, d, issues));
  EXPECT_TRUE(says(issues, "surprise")) << (issues.empty() ? "" : issues[0].message);
}

}  // namespace
}  // namespace passerelle::cda
