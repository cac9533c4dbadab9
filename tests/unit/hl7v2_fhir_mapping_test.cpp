// HL7 v2 <-> FHIR mapping of the referral loop, without sockets or database: REF^I12 written from
// FHIR resources and read back field by field, RRI^I12 and MDM/ORU facts, ADT resources, strict
// Base64, HL7 dates.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "mappings/hl7v2/fhir_mapping.h"
#include "mappings/hl7v2/message.h"

using namespace passerelle::hl7v2;
using Json = nlohmann::json;

namespace {

Message parsed(const std::string& text) {
  std::vector<Issue> issues;
  auto m = Message::parse(text, issues);
  EXPECT_TRUE(m) << text;
  return *m;
}

std::string errorsOf(const std::vector<Issue>& issues) {
  std::string out;
  for (const auto& i : issues)
    if (i.severity == "error") out += i.location + ":" + i.code + " ";
  return out;
}

}  // namespace

TEST(Hl7v2FhirMappingTest, AReferralIsWrittenAsRefI12WithInsRppsFinessAndItsDueDate) {
  Json sr = {{"resourceType", "ServiceRequest"}, {"id", "sr1"}, {"status", "active"},
             {"identifier", {{{"system", "https://douleur77.fr/fhir/sid/referral"}, {"value", "ORI-7"}}}},
             {"subject", {{"reference", "Patient/p1"}}}, {"requester", {{"reference", "Practitioner/gp"}}},
             {"performer", {{{"reference", "Organization/avc"}}}}, {"authoredOn", "2026-09-03"},
             {"occurrencePeriod", {{"start", "2026-09-03"}, {"end", "2026-09-24"}}},
             {"reasonCode", {{{"coding", {{{"code", "no-50-percent-reduction"}}}}, {"text", "EVA 5,5 | 7,5"}}}}};
  Json patient = {{"resourceType", "Patient"}, {"id", "p1"},
                  {"identifier", {{{"system", "urn:oid:1.2.250.1.213.1.4.8"}, {"value", "185057512345673"}},
                                  {{"system", "https://douleur77.fr/fhir/sid/patient"}, {"value", "P77-000001"}}}},
                  {"name", {{{"family", "DURAND"}, {"given", {"Julien", "Pierre"}}}}}, {"birthDate", "1985-05-14"}, {"gender", "male"}};
  Json gp = {{"resourceType", "Practitioner"}, {"id", "gp"}, {"identifier", {{{"system", "https://rpps.esante.gouv.fr"}, {"value", "10101234567"}}}},
             {"name", {{{"family", "MARTIN"}, {"given", {"Sophie"}}}}}};
  Json org = {{"resourceType", "Organization"}, {"id", "avc"}, {"name", "Avicenne"},
              {"identifier", {{{"system", "https://finess.esante.gouv.fr"}, {"value", "930110036"}}}}};
  Json cond = {{"resourceType", "Condition"}, {"code", {{"coding", {{{"system", "https://smt.esante.gouv.fr/terminologie-cim-10"}, {"code", "M54.5"}}}}}}};
  Json vas = {{"resourceType", "Observation"}, {"code", {{"coding", {{{"system", "http://loinc.org"}, {"code", "72514-3"}}}}}},
              {"valueQuantity", {{"value", 5.5}, {"code", "{score}"}}}, {"effectiveDateTime", "2026-09-01"}};
  ReferralOut r;
  std::string error;
  ASSERT_TRUE(referralFromFhir({&sr, &patient, &gp, &org, &cond, &vas}, r, error)) << error;
  r.controlId = "D77-1";
  r.timestamp = "20260903101500";
  r.receivingApplication = "EAI";
  Message m = parsed(buildReferral(r));
  EXPECT_EQ(m.get("MSH-9.1"), "REF");
  EXPECT_EQ(m.get("MSH-9.2"), "I12");
  EXPECT_EQ(m.get("MSH-10"), "D77-1");
  EXPECT_EQ(m.get("MSH-12"), "2.5");
  EXPECT_EQ(m.get("RF1-6.1"), "ORI-7");
  EXPECT_EQ(m.get("RF1-7"), "20260903");
  EXPECT_EQ(m.get("RF1-8"), "20260924");
  EXPECT_EQ(m.get("RF1-10.2"), "EVA 5,5 | 7,5");  // escaped on the wire, the same once read
  EXPECT_EQ(m.get("PRD-1"), "RP");
  EXPECT_EQ(m.get("PRD-2.1"), "MARTIN");
  EXPECT_EQ(m.get("PRD-7.1"), "10101234567");
  EXPECT_EQ(m.get("PRD[2]-1"), "RT");
  EXPECT_EQ(m.get("PRD[2]-2.1"), "Avicenne");
  EXPECT_EQ(m.get("PRD[2]-7.1"), "930110036");
  EXPECT_EQ(m.get("PID-3.1"), "185057512345673");
  EXPECT_EQ(m.get("PID-3.4.2"), "1.2.250.1.213.1.4.8");
  EXPECT_EQ(m.get("PID-3(2).1"), "P77-000001");
  EXPECT_EQ(m.get("PID-5.2"), "Julien");
  EXPECT_EQ(m.get("PID-7"), "19850514");
  EXPECT_EQ(m.get("PID-8"), "M");
  EXPECT_EQ(m.get("DG1-3.1"), "M54.5");
  EXPECT_EQ(m.get("OBX-5"), "5.5");
  EXPECT_EQ(m.get("OBX-14"), "20260901");
  // Read back by the inbound side: the same patient.
  std::vector<Issue> issues;
  sr["status"] = "revoked";
  ReferralOut cancel;
  ASSERT_TRUE(referralFromFhir({&sr, &patient}, cancel, error));
  EXPECT_EQ(cancel.event, "I14");
  ReferralOut none;
  EXPECT_FALSE(referralFromFhir({&patient}, none, error));
  EXPECT_NE(error.find("ServiceRequest"), std::string::npos);
}

TEST(Hl7v2FhirMappingTest, ARepliesStatusComesFromTable0283) {
  std::vector<Issue> issues;
  auto f = readInbound(parsed("MSH|^~\\&|EAI|X|P|D|20260911||RRI^I12|1|P|2.5\rRF1|R^^HL70283||||||20260911\r"), issues);
  EXPECT_EQ(f.kind, InboundFacts::Kind::kReferralReply);
  EXPECT_EQ(f.replyStatus, "rejected");
  EXPECT_EQ(errorsOf(issues), "RF1-6.1:101 ");  // no referral named
  issues.clear();
  f = readInbound(parsed("MSH|^~\\&|EAI|X|P|D|20260911||RRI^I12|1|P|2.5\rRF1|Q|||||ORI-1|2026\r"), issues);
  EXPECT_EQ(errorsOf(issues), "RF1-1.1:103 ");
}

TEST(Hl7v2FhirMappingTest, AdtGivesPatientAndEncounterWithTheInsAndTheVisit) {
  std::vector<Issue> issues;
  auto f = readInbound(parsed("MSH|^~\\&|EAI|X|P|D|20260911||ADT^A01^ADT_A01|1|P|2.5\r"
                              "PID|||185057512345673^^^ASIP-SANTE-INS-NIR&1.2.250.1.213.1.4.8&ISO^INS~77^^^HOP&1.2.3&ISO^PI||DURAND^Julien^^^^^L||19850514|M\r"
                              "PV1|1|I|||||||||||||||||V42|||||||||||||||||||||||||20260911083000+0200\r"),
                       issues);
  EXPECT_EQ(errorsOf(issues), "");
  EXPECT_EQ(f.patient.ins(), "185057512345673");
  Json bundle;
  toBundle(f, bundle);
  ASSERT_EQ(bundle["entry"].size(), 2u);
  const Json& p = bundle["entry"][0]["resource"];
  EXPECT_EQ(p["identifier"][0]["type"]["coding"][0]["code"], "INS-NIR");
  EXPECT_EQ(p["identifier"][1]["system"], "urn:oid:1.2.3");
  EXPECT_EQ(p["name"][0]["use"], "official");
  EXPECT_EQ(bundle["entry"][0]["request"]["ifNoneExist"], "identifier=urn:oid:1.2.250.1.213.1.4.8|185057512345673");
  const Json& e = bundle["entry"][1]["resource"];
  EXPECT_EQ(e["class"]["code"], "IMP");
  EXPECT_EQ(e["identifier"][0]["value"], "V42");
  EXPECT_EQ(e["period"]["start"], "2026-09-11T08:30:00+02:00");
  // A fraction of a second and a negative offset are kept; a time without an offset keeps its date only.
  issues.clear();
  f = readInbound(parsed("MSH|^~\\&|EAI|X|P|D|202609111200||ADT^A03|1|P|2.5\rPID|||1^^^H^PI||A^B||19851231|M\r"
                         "PV1|1|I|||||||||||||||||V42|||||||||||||||||||||||||2026091108|20260911170502.25-0130\r"),
                  issues);
  EXPECT_EQ(errorsOf(issues), "");
  EXPECT_EQ(f.admitted, "2026-09-11");
  EXPECT_EQ(f.discharged, "2026-09-11T17:05:02.25-01:30");
  EXPECT_EQ(f.sentAt, "2026-09-11");
  EXPECT_EQ(f.patient.birthDate, "1985-12-31");
  // A date that is not one points at its field.
  issues.clear();
  readInbound(parsed("MSH|^~\\&|EAI|X|P|D|20260911||ADT^A04|1|P|2.5\rPID|||1^^^H^PI||A^B||19851345|M\r"), issues);
  EXPECT_EQ(errorsOf(issues), "PID-7.1:102 ");
}

TEST(Hl7v2FhirMappingTest, OtherTypesAreRefusedByTheConnectorAndConvertedBySegments) {
  const char* orm = "MSH|^~\\&|EAI|X|P|D|20260911||ORM^O01^ORM_O01|7|P|2.5\r"
                    "PID|||185057512345673^^^ASIP-SANTE-INS-NIR&1.2.250.1.213.1.4.8&ISO^INS||DURAND^Julien||19850514|M\r"
                    "PV1|1|O|||||||||||||||||V7\r"
                    "ORC|NW|42\r"
                    "OBX|1|NM|8867-4^Heart rate^LN||72|/min|||||F\r";
  std::vector<Issue> issues;
  auto loop = readInbound(parsed(orm), issues);
  EXPECT_EQ(errorsOf(issues), "MSH-9.1:200 ");
  EXPECT_EQ(loop.kind, InboundFacts::Kind::kUnsupported);
  issues.clear();
  auto f = readInbound(parsed(orm), issues, OtherTypes::kReadSegments);
  EXPECT_EQ(errorsOf(issues), "");
  EXPECT_EQ(f.kind, InboundFacts::Kind::kSegments);
  Json bundle;
  toBundle(f, bundle);
  ASSERT_EQ(bundle["entry"].size(), 3u);
  EXPECT_EQ(bundle["entry"][0]["resource"]["identifier"][0]["value"], "185057512345673");
  EXPECT_EQ(bundle["entry"][1]["resource"]["resourceType"], "Encounter");
  EXPECT_EQ(bundle["entry"][1]["resource"]["class"]["code"], "AMB");
  EXPECT_EQ(bundle["entry"][1]["resource"]["status"], "unknown");  // O01 is no event of table 0003's map
  EXPECT_EQ(bundle["entry"][2]["resource"]["valueQuantity"]["value"], 72);
  // The observations of an administration (after RXA) belong to it: not written as results.
  issues.clear();
  f = readInbound(parsed("MSH|^~\\&|EAI|X|P|D|20260911||VXU^V04^VXU_V04|8|P|2.5\r"
                         "PID|||77^^^H^PI||DURAND^Julien||19850514|M\r"
                         "OBX|1|NM|8867-4^Heart rate^LN||60|/min|||||F\r"
                         "ORC|RE|1\rRXA|0|1|20260911||08^HepB^CVX|1\r"
                         "OBX|2|CE|64994-7^Eligibility^LN||V01^Not eligible^HL70064||||||F\r"),
                  issues, OtherTypes::kReadSegments);
  EXPECT_EQ(errorsOf(issues), "");
  ASSERT_EQ(f.results.size(), 1u);
  EXPECT_EQ(f.results[0].code, "8867-4");
}

TEST(Hl7v2FhirMappingTest, ReportsCarryTheirDocumentAndBadBase64IsAnError) {
  std::vector<Issue> issues;
  auto f = readInbound(parsed("MSH|^~\\&|EAI|X|P|D|20260911||MDM^T10^MDM_T02|1|P|2.6\r"
                              "PID|||185057512345673^^^ASIP-SANTE-INS-NIR&1.2.250.1.213.1.4.8&ISO^INS\r"
                              "TXA|1|11488-4|TEXT|20260920||||||||1.2.3.2^H|1.2.3.1^H|ORI-7\r"
                              "OBX|1|ED|11488-4^CR^LN||^TEXT^XML^Base64^PENsaW5pY2FsRG9jdW1lbnQvPg==||||||F\r"),
                       issues);
  EXPECT_EQ(errorsOf(issues), "");
  EXPECT_TRUE(f.replaces);
  EXPECT_EQ(f.document.parentId, "1.2.3.1");
  EXPECT_EQ(f.document.placerOrder, "ORI-7");
  EXPECT_EQ(f.document.bytes, std::string("<ClinicalDocument/>").size());
  issues.clear();
  readInbound(parsed("MSH|^~\\&|EAI|X|P|D|20260911||ORU^R01|1|P|2.5\rPID|||1^^^H^PI\rOBR|1\r"
                     "OBX|1|ED|11502-2^CR^LN||^TEXT^XML^Base64^RG9jdW1lbnQ=x||||||F\r"),
              issues);
  EXPECT_EQ(errorsOf(issues), "OBX-5.5:102 ");
  // A text report (TX lines) becomes a text/plain document.
  issues.clear();
  f = readInbound(parsed("MSH|^~\\&|EAI|X|P|D|20260911||MDM^T02|1|P|2.5\rPID|||1^^^H^PI\rTXA|1|CN|TX\r"
                         "OBX|1|TX|11488-4^CR^LN||Line one~Line two||||||F\r"),
                  issues);
  EXPECT_EQ(errorsOf(issues), "");
  std::string text;
  ASSERT_TRUE(decodeBase64(f.document.data, text));
  EXPECT_EQ(text, "Line one\nLine two\n");
  EXPECT_EQ(f.document.contentType, "text/plain");
}

TEST(Hl7v2FhirMappingTest, Base64IsStrict) {
  std::string out;
  EXPECT_TRUE(decodeBase64("TWFu", out));
  EXPECT_EQ(out, "Man");
  EXPECT_TRUE(decodeBase64("TWE=", out));
  EXPECT_EQ(out, "Ma");
  EXPECT_TRUE(decodeBase64("TQ==\r\n", out));
  EXPECT_EQ(out, "M");
  for (const char* bad : {"", "TWF", "TW=u", "TQ=", "TR==", "T@Fu", "TWFu="}) EXPECT_FALSE(decodeBase64(bad, out)) << bad;
  for (const char* s : {"", "a", "ab", "abc", "abcd"}) {
    ASSERT_TRUE(std::string(s).empty() || decodeBase64(encodeBase64(s), out)) << s;
    if (*s) {
      EXPECT_EQ(out, s);
    }
  }
}

TEST(Hl7v2FhirMappingTest, OruResultsBecomeObservationsWithTheirCodesUnescaped) {
  std::vector<Issue> issues;
  auto f = readInbound(parsed("MSH|^~\\&|EAI|X|P|D|20260911||ORU^R01|1|P|2.5\rPID|||1^^^H^PI\rOBR|1\r"
                              "OBX|1|NM|72514-3&x^Douleur \\T\\ score^LN||5.5|{score}^^UCUM|||||F|||20260910+0200\r"
                              "OBX|2|NM|8867-4^Pouls^LN||abc|/min||||F\r"),
                       issues);
  ASSERT_EQ(f.results.size(), 1u);
  EXPECT_EQ(f.results[0].code, "72514-3");
  EXPECT_EQ(f.results[0].display, "Douleur & score");
  EXPECT_EQ(f.results[0].system, "http://loinc.org");
  EXPECT_EQ(f.results[0].unit, "{score}");
  EXPECT_EQ(errorsOf(issues), "OBX-5.1:102 ");  // "abc" is no number
  Json b;
  toBundle(f, b);
  const Json& o = b["entry"][1]["resource"];
  EXPECT_EQ(o["status"], "final");
  EXPECT_EQ(o["valueQuantity"]["value"], 5.5);
  EXPECT_EQ(o["effectiveDateTime"], "2026-09-10");
}

TEST(Hl7v2FhirMappingTest, UnknownTypesAreRefusedAsSuch) {
  std::vector<Issue> issues;
  auto f = readInbound(parsed("MSH|^~\\&|EAI|X|P|D|20260911||SIU^S12|1|P|2.5\rPID|||1\r"), issues);
  EXPECT_EQ(f.kind, InboundFacts::Kind::kUnsupported);
  EXPECT_EQ(errorsOf(issues), "MSH-9.1:200 ");
}
