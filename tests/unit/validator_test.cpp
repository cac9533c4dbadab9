// Unit tests of the FHIR R4 validator over the embedded tables (no disk, no network).
#include "mappings/fhir/validation/validation_tables.h"
#include "mappings/fhir/validator.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>
#include <simdjson.h>

#include "mappings/fhir/markdown.h"
#include "mappings/fhir/validation/primitive_checks.h"
#include "mappings/fhir/validation/xhtml_check.h"

using passerelle::fhir::ValidationResult;
using passerelle::fhir::Validator;
namespace v = passerelle::fhir::validation;

namespace {

ValidationResult check(std::string_view json, std::string_view type = {}) {
  return Validator::instance().validate(json, type);
}

std::string dump(const ValidationResult& r) {
  std::string out;
  for (const auto& i : r.issues) out += "\n  " + i.severity + " " + i.code + " @" + i.expression + ": " + i.diagnostics;
  return out;
}

int errors(const ValidationResult& r) {
  int n = 0;
  for (const auto& i : r.issues) n += i.severity == "error" || i.severity == "fatal";
  return n;
}

bool hasIssue(const ValidationResult& r, std::string_view expression, std::string_view code = {},
              std::string_view text = {}) {
  for (const auto& i : r.issues)
    if (i.expression == expression && (code.empty() || i.code == code) &&
        (text.empty() || i.diagnostics.find(text) != std::string::npos))
      return true;
  return false;
}

}  // namespace

TEST(ValidatorTest, AcceptsAMinimalPatient) {
  auto r = check(R"({"resourceType":"Patient","id":"p1","name":[{"family":"Martin","given":["Anne"]}],
    "gender":"female","birthDate":"1980-02-29"})");
  EXPECT_FALSE(r.hasErrors()) << dump(r);
}

TEST(ValidatorTest, ReportsEveryErrorWithItsFhirPath) {
  auto r = check(R"({"resourceType":"Patient","gender":"woman","birthDate":"1980-13-01",
    "contact":[{"name":{"family":"A"}},{"telecom":[{"system":"phone","value":""}]}]})");
  EXPECT_EQ(errors(r), 3) << dump(r);
  EXPECT_TRUE(hasIssue(r, "Patient.gender", "code-invalid")) << dump(r);
  EXPECT_TRUE(hasIssue(r, "Patient.birthDate", "value")) << dump(r);
  EXPECT_TRUE(hasIssue(r, "Patient.contact[1].telecom[0].value", "value")) << dump(r);
}

TEST(ValidatorTest, RejectsUnknownElementsAndUnknownResourceTypes) {
  auto r = check(R"({"resourceType":"Patient","nickname":"x","name":[{"family":"A","nick":"B"}]})");
  EXPECT_TRUE(hasIssue(r, "Patient", "structure", "nickname")) << dump(r);
  EXPECT_TRUE(hasIssue(r, "Patient.name[0]", "structure", "nick")) << dump(r);
  EXPECT_TRUE(check(R"({"resourceType":"Patientt"})").hasErrors());
  EXPECT_TRUE(check(R"({"id":"x"})").hasErrors());
  EXPECT_TRUE(check(R"({"resourceType":"Patient"})", "Observation").hasErrors());
}

TEST(ValidatorTest, ChecksArraysExactlyWhereMaxIsAboveOne) {
  auto r = check(R"({"resourceType":"Patient","name":{"family":"A"},"gender":["male"]})");
  EXPECT_TRUE(hasIssue(r, "Patient.name", "structure", "must be a JSON Array")) << dump(r);
  EXPECT_TRUE(hasIssue(r, "Patient.gender", "structure", "must not be a JSON Array")) << dump(r);
  EXPECT_TRUE(hasIssue(check(R"({"resourceType":"Patient","name":[]})"), "Patient.name", "invalid"));
}

TEST(ValidatorTest, AcceptsPrimitiveExtensions) {
  auto r = check(R"({"resourceType":"Patient","birthDate":"1970",
    "_birthDate":{"extension":[{"url":"http://example.org/x","valueString":"approx"}]},
    "name":[{"given":["A",null],"_given":[null,{"extension":[{"url":"http://example.org/y","valueBoolean":true}]}]}]})");
  EXPECT_FALSE(r.hasErrors()) << dump(r);
  auto bad = check(R"({"resourceType":"Patient","_birthDate":{"extension":[{"url":"http://example.org/x"}]}})");
  EXPECT_TRUE(hasIssue(bad, "Patient.birthDate.extension[0]", "invariant", "ext-1")) << dump(bad);
  EXPECT_TRUE(check(R"({"resourceType":"Patient","_name":{}})").hasErrors());
}

TEST(ValidatorTest, ChecksPrimitiveFormats) {
  EXPECT_TRUE(v::isFhirDate("2024") && v::isFhirDate("2024-02") && v::isFhirDate("2024-02-29"));
  EXPECT_FALSE(v::isFhirDate("2023-02-29") || v::isFhirDate("24-01-01") || v::isFhirDate("2024-1-01"));
  EXPECT_TRUE(v::isFhirDateTime("2024-01-01T10:00:00+01:00") && v::isFhirDateTime("2024-01"));
  EXPECT_FALSE(v::isFhirDateTime("2024-01-01T10:00") || v::isFhirDateTime("2024-01-01T10:00:00"));
  EXPECT_TRUE(v::isFhirInstant("2024-01-01T10:00:00.123Z"));
  EXPECT_FALSE(v::isFhirInstant("2024-01-01"));
  EXPECT_TRUE(v::isFhirTime("23:59:60") && !v::isFhirTime("24:00:00"));
  EXPECT_TRUE(v::isFhirId("a-B.9") && !v::isFhirId("a_b") && !v::isFhirId(std::string(65, 'a')));
  EXPECT_TRUE(v::isFhirCode("a b") && !v::isFhirCode(" a") && !v::isFhirCode("a  b"));
  EXPECT_TRUE(v::isFhirOid("urn:oid:1.2.250.1") && !v::isFhirOid("urn:oid:1.02"));
  EXPECT_TRUE(v::isFhirUuid("urn:uuid:c757873d-ec9a-4326-a141-556f43239520") && !v::isFhirUuid("urn:uuid:x"));
  EXPECT_TRUE(v::isFhirBase64("SGVsbG8=") && !v::isFhirBase64("%%%2@()()") && !v::isFhirBase64("SGVsbG8"));

  auto r = check(R"({"resourceType":"Observation","status":"final","code":{"text":"x"},"valueInteger":1.5,
    "issued":"2024-01-01","component":[{"code":{"text":"y"},"valueBoolean":"true"}]})");
  EXPECT_TRUE(hasIssue(r, "Observation.value.ofType(integer)", "value")) << dump(r);
  EXPECT_TRUE(hasIssue(r, "Observation.issued", "value")) << dump(r);
  EXPECT_TRUE(hasIssue(r, "Observation.component[0].value.ofType(boolean)", "structure")) << dump(r);
  EXPECT_TRUE(hasIssue(check(R"({"resourceType":"Patient","id":"bad_id"})"), "Patient.id", "value"));
  EXPECT_TRUE(hasIssue(check(R"({"resourceType":"Patient","multipleBirthInteger":3000000000})"),
                       "Patient.multipleBirth.ofType(integer)", "value"));
}

TEST(ValidatorTest, ChecksCardinalityInsideBackboneElements) {
  auto r = check(R"({"resourceType":"Patient","link":[{"type":"seealso"}]})");
  EXPECT_TRUE(hasIssue(r, "Patient.link[0]", "required", "Patient.link.other")) << dump(r);
  auto obs = check(R"({"resourceType":"Observation"})");
  EXPECT_EQ(errors(obs), 2) << dump(obs);  // status and code
}

TEST(ValidatorTest, AllowsOneTypeOfAChoice) {
  auto r = check(R"({"resourceType":"Patient","deceasedBoolean":true,"deceasedDateTime":"2020"})");
  EXPECT_TRUE(hasIssue(r, "Patient", "structure", "deceased[x]")) << dump(r);
  EXPECT_TRUE(check(R"({"resourceType":"Patient","deceasedString":"x"})").hasErrors());
}

TEST(ValidatorTest, ChecksCodingsAgainstRequiredBindings) {
  auto r = check(R"({"resourceType":"Patient","contact":[{"relationship":[{"coding":[{"system":"foo","code":"x"}]}]}]})");
  EXPECT_TRUE(hasIssue(r, "Patient.contact[0].relationship[0].coding[0].system", "invalid", "absolute")) << dump(r);
  auto ok = check(R"({"resourceType":"Patient","gender":"other"})");
  EXPECT_FALSE(ok.hasErrors()) << dump(ok);
}

TEST(ValidatorTest, ChecksReferenceSyntaxAndTargets) {
  auto ok = check(R"({"resourceType":"Observation","status":"final","code":{"text":"x"},
    "subject":{"reference":"Patient/p1"},"performer":[{"reference":"https://h.example/fhir/Practitioner/1/_history/2"}],
    "encounter":{"reference":"urn:uuid:c757873d-ec9a-4326-a141-556f43239520"}})");
  EXPECT_FALSE(ok.hasErrors()) << dump(ok);
  auto r = check(R"({"resourceType":"Observation","status":"final","code":{"text":"x"},
    "subject":{"reference":"Medication/m1"},"encounter":{"reference":"Encounter"},"specimen":{"reference":"Foo/1"}})");
  EXPECT_TRUE(hasIssue(r, "Observation.subject.reference", "invalid", "not a valid target")) << dump(r);
  EXPECT_TRUE(hasIssue(r, "Observation.encounter.reference", "invalid")) << dump(r);
  EXPECT_TRUE(hasIssue(r, "Observation.specimen.reference", "invalid")) << dump(r);
}

TEST(ValidatorTest, ValidatesContainedResourcesAndDomInvariants) {
  auto ok = check(R"({"resourceType":"Patient","contained":[{"resourceType":"Organization","id":"o1","name":"X"}],
    "managingOrganization":{"reference":"#o1"}})");
  EXPECT_FALSE(ok.hasErrors()) << dump(ok);
  auto r = check(R"({"resourceType":"Patient","contained":[{"resourceType":"Organization","id":"o1",
    "meta":{"versionId":"1"},"active":"yes","contained":[{"resourceType":"Basic","code":{"text":"b"}}]}]})");
  EXPECT_TRUE(hasIssue(r, "Patient.contained[0].active", "structure")) << dump(r);
  EXPECT_TRUE(hasIssue(r, "Patient.contained[0]", "invariant", "dom-2")) << dump(r);
  EXPECT_TRUE(hasIssue(r, "Patient.contained[0]", "invariant", "dom-3")) << dump(r);
  EXPECT_TRUE(hasIssue(r, "Patient.contained[0]", "invariant", "dom-4")) << dump(r);
}

TEST(ValidatorTest, ChecksObservationInvariants) {
  auto r = check(R"({"resourceType":"Observation","status":"final",
    "code":{"coding":[{"system":"http://loinc.org","code":"8867-4"}]},"valueQuantity":{"value":60},
    "dataAbsentReason":{"text":"x"},
    "component":[{"code":{"coding":[{"system":"http://loinc.org","code":"8867-4"}]},"valueQuantity":{"value":1}}]})");
  EXPECT_TRUE(hasIssue(r, "Observation", "invariant", "obs-6")) << dump(r);
  EXPECT_TRUE(hasIssue(r, "Observation", "invariant", "obs-7")) << dump(r);
}

TEST(ValidatorTest, ChecksNarrativeXhtml) {
  auto ok = check(R"({"resourceType":"Patient","text":{"status":"generated",
    "div":"<div xmlns=\"http://www.w3.org/1999/xhtml\"><p>Anne &amp; <b>Martin</b></p></div>"}})");
  EXPECT_FALSE(ok.hasErrors()) << dump(ok);
  auto r = check(R"({"resourceType":"Patient","text":{"status":"generated",
    "div":"<div xmlns=\"http://www.w3.org/1999/xhtml\"><script>x()</script><p onclick=\"y()\">a</p><iframe/></div>"}})");
  EXPECT_GE(errors(r), 3) << dump(r);
  EXPECT_TRUE(hasIssue(r, "Patient.text.div", "invariant", "txt-1")) << dump(r);
  auto empty = check(R"({"resourceType":"Patient","text":{"status":"generated",
    "div":"<div xmlns=\"http://www.w3.org/1999/xhtml\">  </div>"}})");
  EXPECT_TRUE(hasIssue(empty, "Patient.text.div", "invariant", "txt-2")) << dump(empty);
  EXPECT_TRUE(check(R"({"resourceType":"Patient","text":{"status":"generated","div":"<div>x</div>"}})").hasErrors());
  EXPECT_TRUE(check(R"({"resourceType":"Patient","text":{"status":"generated",
    "div":"<div xmlns=\"http://www.w3.org/1999/xhtml\">&reg;</div>"}})").hasErrors());
}

TEST(ValidatorTest, ValidatesBundleEntriesAndBundleRules) {
  auto ok = check(R"({"resourceType":"Bundle","type":"transaction","entry":[
    {"fullUrl":"urn:uuid:c757873d-ec9a-4326-a141-556f43239520","resource":{"resourceType":"Patient","active":true},
     "request":{"method":"POST","url":"Patient"}},
    {"resource":{"resourceType":"Observation","status":"final","code":{"text":"x"},
     "subject":{"reference":"urn:uuid:c757873d-ec9a-4326-a141-556f43239520"}},"request":{"method":"POST","url":"Observation"}}]})");
  EXPECT_FALSE(ok.hasErrors()) << dump(ok);
  auto r = check(R"({"resourceType":"Bundle","type":"transaction","total":2,"entry":[
    {"fullUrl":"http://h/fhir/Patient/1/_history/1","resource":{"resourceType":"Patient","gender":"x"}},
    {"request":{"method":"GET","url":"Patient"},"resource":{"resourceType":"Observation"}}]})");
  EXPECT_TRUE(hasIssue(r, "Bundle", "invariant", "bdl-1")) << dump(r);
  EXPECT_TRUE(hasIssue(r, "Bundle.entry[0]", "invariant", "bdl-3")) << dump(r);
  EXPECT_TRUE(hasIssue(r, "Bundle.entry[0]", "invariant", "bdl-8")) << dump(r);
  EXPECT_TRUE(hasIssue(r, "Bundle.entry[0].resource.gender", "code-invalid")) << dump(r);
  EXPECT_TRUE(hasIssue(r, "Bundle.entry[1].resource", "required")) << dump(r);
  auto doc = check(R"({"resourceType":"Bundle","type":"document","entry":[{"fullUrl":"urn:uuid:c757873d-ec9a-4326-a141-556f43239520","resource":{"resourceType":"Patient"}}]})");
  EXPECT_TRUE(hasIssue(doc, "Bundle", "invariant", "bdl-9")) << dump(doc);
  EXPECT_TRUE(hasIssue(doc, "Bundle", "invariant", "bdl-10")) << dump(doc);
  EXPECT_TRUE(hasIssue(doc, "Bundle.entry[0]", "invariant", "bdl-11")) << dump(doc);
}

// bundle.html: a RESTful fullUrl ends with the resource's type and id; urn: fullUrls are valid
// UUIDs and OIDs.
TEST(ValidatorTest, FullUrlAgreesWithTheResource) {
  auto r = check(R"({"resourceType":"Bundle","type":"collection","entry":[
    {"fullUrl":"http://h/fhir/Patient/1","resource":{"resourceType":"Observation","id":"1","status":"final","code":{"text":"x"}}},
    {"fullUrl":"http://h/fhir/Patient/2","resource":{"resourceType":"Patient","id":"3"}},
    {"fullUrl":"urn:uuid:not-a-uuid","resource":{"resourceType":"Patient"}},
    {"fullUrl":"urn:oid:1.2.x","resource":{"resourceType":"Patient"}},
    {"fullUrl":"http://h/fhir/Patient/4","resource":{"resourceType":"Patient","id":"4"}},
    {"fullUrl":"urn:uuid:c757873d-ec9a-4326-a141-556f43239520","resource":{"resourceType":"Patient","id":"5"}}]})");
  EXPECT_TRUE(hasIssue(r, "Bundle.entry[0].fullUrl", "invalid", "does not match")) << dump(r);
  EXPECT_TRUE(hasIssue(r, "Bundle.entry[1].fullUrl", "invalid", "does not match")) << dump(r);
  EXPECT_TRUE(hasIssue(r, "Bundle.entry[2].fullUrl", "invalid", "urn:uuid")) << dump(r);
  EXPECT_TRUE(hasIssue(r, "Bundle.entry[3].fullUrl", "invalid", "urn:oid")) << dump(r);
  EXPECT_EQ(errors(r), 4) << dump(r);
}

// In a document (and a message) every reference resolves to an entry: relative ones against the
// base of their entry's fullUrl, absolute and urn: ones by fullUrl, versions against meta.versionId.
TEST(ValidatorTest, ReferencesResolveInsideDocumentsAndMessages) {
  const std::string head = R"({"resourceType":"Bundle","type":"document","identifier":{"system":"urn:ietf:rfc:3986","value":"urn:uuid:0c3151bd-1cbf-4d64-b04d-cd9187a4c6e0"},"timestamp":"2026-01-02T10:00:00Z","entry":[
    {"fullUrl":"http://h/fhir/Composition/c","resource":{"resourceType":"Composition","id":"c","status":"final","type":{"text":"x"},"date":"2026-01-02","title":"t",
      "subject":{"reference":")";
  const std::string tail = R"("},"author":[{"reference":"urn:uuid:9a5b4b8e-7d4f-4c1e-8f1f-2f3a1f0f0a01"}]}},
    {"fullUrl":"http://h/fhir/Patient/1","resource":{"resourceType":"Patient","id":"1","meta":{"versionId":"3"}}},
    {"fullUrl":"urn:uuid:9a5b4b8e-7d4f-4c1e-8f1f-2f3a1f0f0a01","resource":{"resourceType":"Practitioner"}}]})";
  for (std::string ok : {"Patient/1", "http://h/fhir/Patient/1", "Patient/1/_history/3"}) {
    auto r = check(head + ok + tail);
    EXPECT_FALSE(r.hasErrors()) << ok << dump(r);
  }
  auto missing = check(head + "Patient/2" + tail);
  EXPECT_TRUE(hasIssue(missing, "Bundle.entry[0].resource.subject.reference", "not-found", "does not resolve"))
      << dump(missing);
  auto elsewhere = check(head + "http://other/fhir/Patient/1" + tail);
  EXPECT_TRUE(hasIssue(elsewhere, "Bundle.entry[0].resource.subject.reference", "not-found")) << dump(elsewhere);
  auto version = check(head + "Patient/1/_history/2" + tail);
  EXPECT_TRUE(hasIssue(version, "Bundle.entry[0].resource.subject.reference", "invalid", "version")) << dump(version);
  // Composition.subject may reference any resource, but Composition.author not a Patient.
  std::string wrongType = head + "Patient/1" + tail;
  wrongType.replace(wrongType.find(R"("resourceType":"Practitioner")"), 29, R"("resourceType":"Medication")");
  auto type = check(wrongType);
  EXPECT_TRUE(hasIssue(type, "Bundle.entry[0].resource.author[0].reference", "invalid", "not a valid target"))
      << dump(type);
  auto message = check(R"({"resourceType":"Bundle","type":"message","timestamp":"2026-01-02T10:00:00Z","entry":[
    {"fullUrl":"urn:uuid:0c3151bd-1cbf-4d64-b04d-cd9187a4c6e0","resource":{"resourceType":"MessageHeader","eventCoding":{"code":"x"},
      "source":{"endpoint":"http://h"},"focus":[{"reference":"urn:uuid:0c3151bd-1cbf-4d64-b04d-cd9187a4c6e1"}]}}]})");
  EXPECT_TRUE(hasIssue(message, "Bundle.entry[0].resource.focus[0].reference", "not-found")) << dump(message);
}

// Outside documents and messages a relative or absolute reference may point outside the Bundle; a
// urn: reference cannot.
TEST(ValidatorTest, UrnReferencesResolveInEveryBundle) {
  auto r = check(R"({"resourceType":"Bundle","type":"collection","entry":[
    {"fullUrl":"urn:uuid:0c3151bd-1cbf-4d64-b04d-cd9187a4c6e0","resource":{"resourceType":"Observation","status":"final","code":{"text":"x"},
     "subject":{"reference":"Patient/elsewhere"},"performer":[{"reference":"urn:uuid:0c3151bd-1cbf-4d64-b04d-cd9187a4c6e9"}]}}]})");
  EXPECT_TRUE(hasIssue(r, "Bundle.entry[0].resource.performer[0].reference", "not-found")) << dump(r);
  EXPECT_EQ(errors(r), 1) << dump(r);
}

// http.html#transaction: what each method's entry carries.
TEST(ValidatorTest, TransactionEntriesCarryWhatTheirMethodNeeds) {
  auto r = check(R"({"resourceType":"Bundle","type":"transaction","entry":[
    {"request":{"method":"DELETE","url":"Patient/1"},"resource":{"resourceType":"Patient"}},
    {"request":{"method":"POST","url":"Observation"},"resource":{"resourceType":"Patient"}},
    {"request":{"method":"PUT","url":"Patient/1"},"resource":{"resourceType":"Patient","id":"2"}},
    {"request":{"method":"PUT","url":"Patient/3"}},
    {"request":{"method":"PATCH","url":"Patient/3"},"resource":{"resourceType":"Patient"}},
    {"request":{"method":"PUT","url":"Patient/4"},"resource":{"resourceType":"Patient","id":"4"}},
    {"request":{"method":"PUT","url":"Patient?identifier=x|1"},"resource":{"resourceType":"Patient"}},
    {"request":{"method":"GET","url":"Patient?name=x"}}]})");
  EXPECT_TRUE(hasIssue(r, "Bundle.entry[0].resource", "invalid", "carries no resource")) << dump(r);
  EXPECT_TRUE(hasIssue(r, "Bundle.entry[1].request.url", "invalid", "names the type")) << dump(r);
  EXPECT_TRUE(hasIssue(r, "Bundle.entry[2].request.url", "invalid", "does not match the resource id")) << dump(r);
  EXPECT_TRUE(hasIssue(r, "Bundle.entry[3].request", "invalid", "must carry a resource")) << dump(r);
  EXPECT_TRUE(hasIssue(r, "Bundle.entry[4].request", "invalid", "PATCH")) << dump(r);
  EXPECT_EQ(errors(r), 5) << dump(r);
  auto search = check(R"({"resourceType":"Bundle","type":"searchset","entry":[
    {"fullUrl":"http://h/fhir/Patient/1","resource":{"resourceType":"Patient","id":"1"},"search":{"mode":"outcome"}}]})");
  EXPECT_TRUE(hasIssue(search, "Bundle.entry[0].search.mode", "invalid", "OperationOutcome")) << dump(search);
}

// dom-3 both ways: a contained resource is referenced, and a "#id" reference names one.
TEST(ValidatorTest, LocalReferencesNameAContainedResource) {
  auto ok = check(R"({"resourceType":"Observation","status":"final","code":{"text":"x"},
    "contained":[{"resourceType":"Patient","id":"p1"}],"subject":{"reference":"#p1"}})");
  EXPECT_FALSE(ok.hasErrors()) << dump(ok);
  auto missing = check(R"({"resourceType":"Observation","status":"final","code":{"text":"x"},"subject":{"reference":"#p1"}})");
  EXPECT_TRUE(hasIssue(missing, "Observation.subject.reference", "invalid", "no contained resource")) << dump(missing);
  auto noId = check(R"({"resourceType":"Observation","status":"final","code":{"text":"x"},"contained":[{"resourceType":"Patient"}]})");
  EXPECT_TRUE(hasIssue(noId, "Observation.contained[0]", "invariant", "dom-3")) << dump(noId);
  auto toContainer = check(R"({"resourceType":"Observation","id":"o","status":"final","code":{"text":"x"},
    "contained":[{"resourceType":"Provenance","target":[{"reference":"#"}],"recorded":"2026-01-01T00:00:00Z","agent":[{"who":{"display":"x"}}]}]})");
  EXPECT_FALSE(toContainer.hasErrors()) << dump(toContainer);
}

// per-1, with partial dates compared as FHIRPath does.
TEST(ValidatorTest, PeriodStartIsNotAfterItsEnd) {
  auto enc = [](std::string start, std::string end) {
    return check(R"({"resourceType":"Encounter","status":"finished","class":{"code":"AMB"},"period":{"start":")" + start +
                 R"(","end":")" + end + R"("}})");
  };
  EXPECT_FALSE(enc("2026-01-01", "2026-01-01").hasErrors());
  EXPECT_FALSE(enc("2026-01", "2026-02-15").hasErrors());
  EXPECT_FALSE(enc("2026-01-01T10:00:00Z", "2026-01-01T10:00:00.500Z").hasErrors());
  // Equal at the coarser precision: the comparison is empty, so the invariant is not true.
  EXPECT_TRUE(enc("2026-01", "2026-01-15").hasErrors());
  EXPECT_TRUE(enc("2023-06-21", "2023-06-21T06:20:00Z").hasErrors());
  EXPECT_FALSE(enc("2026-01-01T10:00:00+02:00", "2026-01-01T09:00:00Z").hasErrors());
  auto r = enc("2026-01-02", "2026-01-01");
  EXPECT_TRUE(hasIssue(r, "Encounter.period", "invariant", "per-1")) << dump(r);
  EXPECT_TRUE(enc("2026-01-01T10:00:00Z", "2026-01-01T09:59:59Z").hasErrors());
}

// An extension's url is absolute; the parts of a complex extension have relative ones.
TEST(ValidatorTest, ExtensionUrlsAreAbsoluteExceptForParts) {
  auto ok = check(R"({"resourceType":"Patient","extension":[{"url":"http://h/x","extension":[{"url":"part","valueString":"a"}]}]})");
  EXPECT_FALSE(ok.hasErrors()) << dump(ok);
  auto bad = check(R"({"resourceType":"Patient","extension":[{"url":"part","valueString":"a"}]})");
  EXPECT_TRUE(hasIssue(bad, "Patient.extension[0]", "invalid", "absolute URL")) << dump(bad);
  auto deep = check(R"({"resourceType":"Patient","name":[{"family":"x","extension":[{"url":"y","valueString":"a"}]}]})");
  EXPECT_TRUE(hasIssue(deep, "Patient.name[0].extension[0]", "invalid", "absolute URL")) << dump(deep);
}

// Plain text the mappings put in markdown elements (HL7 v2 and HPRIM notes, the network's notes)
// is escaped so that it carries no HTML, and reads back the same.
TEST(ValidatorTest, PlainTextWrittenAsMarkdownValidatesAndReadsBack) {
  for (std::string text : {"<b>urgent</b>", "a & b", "C:\\dossier", "x < y", "RDV <demain>"}) {
    std::string md = passerelle::fhir::markdownFromText(text);
    nlohmann::json org = {{"resourceType", "Organization"},
                          {"name", "x"},
                          {"extension", {{{"url", "http://h/x"}, {"valueMarkdown", md}}}}};
    auto r = check(org.dump());
    EXPECT_FALSE(r.hasErrors()) << text << dump(r);
    EXPECT_EQ(passerelle::fhir::textFromMarkdown(md), text);
  }
}

// A document of thousands of entries referencing each other in a circle: each reference is
// resolved once (no traversal), and one broken link is found.
TEST(ValidatorTest, ThousandsOfEntriesInACircleResolve) {
  auto urn = [](int i) {
    std::string n = std::to_string(i);
    return "urn:uuid:00000000-0000-4000-8000-" + std::string(12 - n.size(), '0') + n;
  };
  const int n = 5000;
  auto bundle = [&](int broken) {
    std::string b = R"({"resourceType":"Bundle","type":"document","identifier":{"system":"urn:ietf:rfc:3986","value":")" +
                    urn(99999) + R"("},"timestamp":"2026-01-02T10:00:00Z","entry":[{"fullUrl":")" + urn(n) +
                    R"(","resource":{"resourceType":"Composition","status":"final","type":{"text":"x"},"date":"2026-01-02","title":"t","author":[{"display":"x"}],"section":[{"entry":[{"reference":")" +
                    urn(0) + R"("}]}]}})";
    for (int i = 0; i < n; ++i)
      b += R"(,{"fullUrl":")" + urn(i) + R"(","resource":{"resourceType":"Observation","status":"final","code":{"text":"x"},"hasMember":[{"reference":")" +
           urn(i == broken ? n + 1 : (i + 1) % n) + R"("}]}})";
    return b + "]}";
  };
  auto circle = check(bundle(-1));
  EXPECT_FALSE(circle.hasErrors()) << dump(circle);
  auto broken = check(bundle(1234));
  EXPECT_EQ(errors(broken), 1) << dump(broken);
  EXPECT_TRUE(hasIssue(broken, "Bundle.entry[1235].resource.hasMember[0].reference", "not-found")) << dump(broken);
}

// Reference.type agrees with the reference and is an allowed target.
TEST(ValidatorTest, ReferenceTypeAgreesWithTheReference) {
  auto obs = [](std::string subject) {
    return check(R"({"resourceType":"Observation","status":"final","code":{"text":"x"},"subject":)" + subject + "}");
  };
  EXPECT_FALSE(obs(R"({"reference":"Patient/1","type":"Patient"})").hasErrors());
  EXPECT_FALSE(obs(R"({"identifier":{"value":"1"},"type":"Patient"})").hasErrors());
  auto r = obs(R"({"reference":"Patient/1","type":"Group"})");
  EXPECT_TRUE(hasIssue(r, "Observation.subject.type", "invalid", "its type says")) << dump(r);
  auto t = obs(R"({"identifier":{"value":"1"},"type":"Medication"})");
  EXPECT_TRUE(hasIssue(t, "Observation.subject.type", "invalid", "not a valid target")) << dump(t);
}

// txt-1 allows basic formatting only; internal links name an id of the resource; markdown carries
// no raw HTML.
TEST(ValidatorTest, NarrativeLinksAndMarkdown) {
  auto patient = [](std::string div) {
    return check(R"({"resourceType":"Patient","contained":[{"resourceType":"Binary","id":"c1","contentType":"image/png"}],
      "photo":[{"url":"#c1"}],"text":{"status":"generated","div":")" + div + R"("}})");
  };
  auto ok = patient(R"(<div xmlns=\"http://www.w3.org/1999/xhtml\"><a name=\"n1\">x</a> <a href=\"#n1\">up</a> <img src=\"#c1\" alt=\"\"/></div>)");
  EXPECT_FALSE(ok.hasErrors()) << dump(ok);
  auto dangling = patient(R"(<div xmlns=\"http://www.w3.org/1999/xhtml\"><a href=\"#nope\">x</a></div>)");
  EXPECT_TRUE(hasIssue(dangling, "Patient.text.div", "invalid", "#nope")) << dump(dangling);
  auto font = patient(R"(<div xmlns=\"http://www.w3.org/1999/xhtml\"><font color=\"red\">x</font></div>)");
  EXPECT_TRUE(hasIssue(font, "Patient.text.div", "invariant", "<font>")) << dump(font);
  auto attr = patient(R"(<div xmlns=\"http://www.w3.org/1999/xhtml\"><p data-x=\"1\">x</p></div>)");
  EXPECT_TRUE(hasIssue(attr, "Patient.text.div", "invariant", "data-x")) << dump(attr);
  auto md = [](std::string text) {
    return check(R"({"resourceType":"Organization","name":"x","extension":[{"url":"http://h/x","valueMarkdown":")" + text + R"("}]})");
  };
  for (std::string fine : {"a < b and c > d", "`<b>` in code", "see <https://example.org/x>", "**bold**"})
    EXPECT_FALSE(md(fine).hasErrors()) << fine << dump(md(fine));
  for (std::string html : {"<b>bold</b>", "line<br/>break", "<!-- hidden -->", "x</p>"})
    EXPECT_TRUE(hasIssue(md(html), "Organization.extension[0].value.ofType(markdown)", "invalid", "raw HTML"))
        << html << dump(md(html));
}

// RFC 2606 reserves example.org, example.com and example.net (and their subdomains) for documentation:
// accepted by default (nothing in R4 refuses them), refused when the policy asks.
TEST(ValidatorTest, ExampleUrlsRefusedOnlyWhenThePolicyAsks) {
  const std::string doc = R"({"resourceType":"DocumentReference","status":"current",
    "content":[{"attachment":{"url":"http://repository.Example.org/fhir/DocumentReference/1"}}]})";
  EXPECT_FALSE(Validator::instance().validate(doc).hasErrors());
  passerelle::fhir::ValidationPolicy policy;
  policy.refuseExampleUrls = true;
  auto r = Validator::instance().validate(doc, {}, &policy);
  EXPECT_TRUE(hasIssue(r, "DocumentReference.content[0].attachment.url", "value", "reserved for documentation")) << dump(r);
  using passerelle::fhir::ValidationPolicy;
  for (std::string url : {"https://example.com", "http://user@example.net:8080/x", "http://a.b.example.org./x"})
    EXPECT_TRUE(ValidationPolicy::isExampleUrl(url)) << url;
  for (std::string url : {"https://notexample.org/x", "https://example.org.fr/x", "urn:uuid:example.org", "example.org"})
    EXPECT_FALSE(ValidationPolicy::isExampleUrl(url)) << url;
}

// The invariants not coded in C++ are evaluated with FHIRPath on the element they belong to; only a
// false result breaks one (an absent probability passes ras-2; a range bound without a code gives an
// empty ras-1, not counted as broken).
TEST(ValidatorTest, SpecificationInvariantsEvaluatedWithFhirPath) {
  auto risk = [](std::string prediction) {
    return check(R"({"resourceType":"RiskAssessment","status":"final","subject":{"reference":"Patient/1"},
      "prediction":[)" + prediction + "]}");
  };
  EXPECT_FALSE(risk(R"({"probabilityDecimal":40})").hasErrors()) << dump(risk(R"({"probabilityDecimal":40})"));
  EXPECT_FALSE(risk(R"({"qualitativeRisk":{"text":"high"}})").hasErrors());
  auto over = risk(R"({"qualitativeRisk":{"text":"high"}},{"probabilityDecimal":150})");
  EXPECT_TRUE(hasIssue(over, "RiskAssessment.prediction[1]", "invariant", "ras-2")) << dump(over);
  auto range = risk(R"({"probabilityRange":{"low":{"value":20,"system":"http://unitsofmeasure.org","code":"mg"}}})");
  EXPECT_TRUE(hasIssue(range, "RiskAssessment.prediction[0].probability.ofType(Range)", "invariant", "ras-1")) << dump(range);
  // qty-3 on a Quantity anywhere: a code needs its system.
  auto obs = check(R"({"resourceType":"Observation","status":"final","code":{"text":"x"},
    "valueQuantity":{"value":1,"code":"mg"}})");
  EXPECT_TRUE(hasIssue(obs, "Observation.value.ofType(Quantity)", "invariant", "qty-3")) << dump(obs);
  // pat-1 on each contact.
  auto pat = check(R"({"resourceType":"Patient","contact":[{"name":{"family":"A"}},{"gender":"male"}]})");
  EXPECT_TRUE(hasIssue(pat, "Patient.contact[1]", "invariant", "pat-1")) << dump(pat);
  EXPECT_FALSE(hasIssue(pat, "Patient.contact[0]", "invariant", "pat-1")) << dump(pat);
  EXPECT_TRUE(passerelle::fhir::validation::ValidationTables::embedded().uncompiledInvariants().empty());
}

TEST(ValidatorTest, ReportsParseErrorsAsIssues) {
  for (std::string_view bad : {"", "{", "[1,2]", "{\"resourceType\":\"Patient\",}", "nul", "\"x\""}) {
    auto r = check(bad);
    EXPECT_TRUE(r.hasErrors()) << bad;
  }
  auto dup = check(R"({"resourceType":"Patient","active":true,"active":false})");
  EXPECT_TRUE(hasIssue(dup, "Patient", "structure", "Duplicate")) << dump(dup);
  auto utf8 = check("{\"resourceType\":\"Patient\",\"gender\":\"\xff\"}");
  EXPECT_TRUE(utf8.hasErrors());
  std::string deep = R"({"resourceType":"Patient","extension":)";
  for (int i = 0; i < 100; ++i) deep += R"([{"url":"http://x","extension":)";
  auto d = check(deep);
  EXPECT_TRUE(d.hasErrors());
}

TEST(ValidatorTest, NeverCrashesOnMangledInput) {
  std::string base = R"({"resourceType":"Bundle","type":"collection","entry":[{"fullUrl":"urn:uuid:1",
    "resource":{"resourceType":"Patient","name":[{"given":["a"],"_given":[{"id":"1"}]}],
    "contained":[{"resourceType":"Basic","contained":[{"resourceType":"Basic"}]}],
    "text":{"div":"<div xmlns=\"http://www.w3.org/1999/xhtml\"><a href=\"x\">&#x41;</a></div>","status":"x"}}}]})";
  std::uint32_t seed = 12345;
  for (int i = 0; i < 3000; ++i) {
    std::string s = base;
    for (int k = 0; k < 3; ++k) {
      seed = seed * 1103515245u + 12345u;
      std::size_t pos = (seed >> 8) % s.size();
      seed = seed * 1103515245u + 12345u;
      const char pool[] = "{}[]\",:nul0.-_ x#";
      s[pos] = pool[(seed >> 8) % (sizeof(pool) - 1)];
    }
    auto r = check(s);
    (void)r;
  }
  SUCCEED();
}

TEST(ValidatorTest, IsSafeToShareBetweenThreads) {
  std::vector<std::thread> threads;
  std::atomic<int> failures{0};
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([&] {
      for (int i = 0; i < 200; ++i)
        if (check(R"({"resourceType":"Patient","gender":"male"})").hasErrors()) ++failures;
    });
  for (auto& t : threads) t.join();
  EXPECT_EQ(failures.load(), 0);
}

// The string checks read eight bytes at a time and only look closer at a word that may hold a byte
// to refuse: a refused byte is found wherever it is, in a word or in the tail, and bytes from 0x80
// (UTF-8) are never refused.
TEST(ValidatorTest, StringChecksSeeEveryPosition) {
  for (std::size_t n = 1; n <= 24; ++n) {
    std::string text(n, 'a');
    EXPECT_TRUE(v::isFhirString(text) && v::isFhirUri(text) && v::isFhirCode(text)) << n;
    for (std::size_t at = 0; at < n; ++at) {
      std::string s = text;
      s[at] = '\x01';
      EXPECT_FALSE(v::isFhirString(s)) << n << " " << at;
      EXPECT_FALSE(v::isFhirUri(s)) << n << " " << at;
      s[at] = '\x1f';
      EXPECT_FALSE(v::isFhirString(s)) << n << " " << at;
      s[at] = '\t';
      EXPECT_TRUE(v::isFhirString(s)) << n << " " << at;
      EXPECT_FALSE(v::isFhirUri(s)) << n << " " << at;
      EXPECT_FALSE(v::isFhirCode(s)) << n << " " << at;
      s[at] = ' ';
      EXPECT_FALSE(v::isFhirUri(s)) << n << " " << at;
      // a code takes single spaces between words, not at its ends
      EXPECT_EQ(v::isFhirCode(s), at > 0 && at + 1 < n) << n << " " << at;
      if (at + 1 < n) {
        s[at + 1] = ' ';
        EXPECT_FALSE(v::isFhirCode(s)) << n << " " << at;
      }
    }
    std::string accents;
    while (accents.size() < n) accents += "\xC3\xA9";  // é
    EXPECT_TRUE(v::isFhirString(accents) && v::isFhirUri(accents) && v::isFhirCode(accents)) << n;
  }
  EXPECT_TRUE(v::onlyWhitespace(" \t\r\n") && v::onlyWhitespace(""));
  EXPECT_FALSE(v::onlyWhitespace("  x "));
}

// The codes of the required value sets are found by hash: every one of them, and nothing else.
TEST(ValidatorTest, EveryCodeOfARequiredValueSetIsFound) {
  const auto& tables = v::ValidationTables::embedded();
  ASSERT_FALSE(tables.valueSets().empty());
  std::size_t codes = 0;
  for (const auto& vs : tables.valueSets()) {
    for (const auto& code : vs.codes) {
      EXPECT_TRUE(vs.contains(code)) << vs.url << " " << code;
      std::string other = code + "~";
      EXPECT_EQ(vs.contains(other), std::binary_search(vs.codes.begin(), vs.codes.end(), other)) << vs.url;
      for (std::size_t at = 0; at < code.size(); ++at) {  // one byte changed, wherever it is
        other = code;
        other[at] = other[at] == '~' ? '!' : '~';
        EXPECT_EQ(vs.contains(other), std::binary_search(vs.codes.begin(), vs.codes.end(), other))
            << vs.url << " " << other;
      }
      ++codes;
    }
    EXPECT_FALSE(vs.contains(""));
  }
  EXPECT_GT(codes, 1000u);
  EXPECT_TRUE(hasIssue(check(R"({"resourceType":"Patient","gender":"Female"})"), "Patient.gender", "code-invalid"));
}

// A reference is read from its end: Type/id or Type/id/_history/version, alone when relative.
TEST(ValidatorTest, ReferencesAreReadFromTheirEnd) {
  auto ref = [](const std::string& r) {
    return check(R"({"resourceType":"Observation","status":"final","code":{"text":"x"},"subject":{"reference":")" + r +
                 R"("}})");
  };
  for (const char* ok : {"Patient/p1", "Patient/p1/_history/2", "https://h.example/fhir/Patient/1",
                         "https://h.example/fhir/Patient/1/_history/2", "https://h.example/other/thing"})
    EXPECT_FALSE(ref(ok).hasErrors()) << ok << dump(ref(ok));
  for (const char* bad : {"x/Patient/p1", "/Patient/p1", "Patient/p1/", "Patient/p1/_history/2/x", "Patient//1",
                          "_history/2", "Patient/p1/_history", "https://h.example/fhir/Medication/1"})
    EXPECT_TRUE(hasIssue(ref(bad), "Observation.subject.reference", "invalid")) << bad << dump(ref(bad));
}

// A member met twice, or a second type of a choice, is found wherever it is among the members (the
// elements seen are kept as bits, those past the 128th searched for).
TEST(ValidatorTest, RepeatedMembersAndChoicesAreFoundAnywhere) {
  auto dupStatus = check(R"({"resourceType":"Observation","status":"final","code":{"text":"x"},"issued":"2024-01-01T00:00:00Z",
    "note":[{"text":"a"}],"status":"final"})");
  EXPECT_TRUE(hasIssue(dupStatus, "Observation", "structure", "Duplicate JSON property 'status'")) << dump(dupStatus);
  auto halves = check(R"({"resourceType":"Observation","status":"final","code":{"text":"x"},
    "valueString":"a","_valueString":{"extension":[{"url":"http://example.org/x","valueString":"y"}]}})");
  EXPECT_FALSE(halves.hasErrors()) << dump(halves);
  auto twoTypes = check(R"({"resourceType":"Observation","status":"final","code":{"text":"x"},
    "valueString":"a","_valueBoolean":{"extension":[{"url":"http://example.org/x","valueString":"y"}]}})");
  EXPECT_TRUE(hasIssue(twoTypes, "Observation", "structure", "value[x]")) << dump(twoTypes);
  auto again = check(R"({"resourceType":"Observation","status":"final","code":{"text":"x"},
    "valueBoolean":true,"valueString":"a","valueString":"b"})");
  EXPECT_TRUE(hasIssue(again, "Observation", "structure", "value[x]")) << dump(again);
  auto dupHalf = check(R"({"resourceType":"Patient","_birthDate":{"id":"a"},"birthDate":"2000","_birthDate":{"id":"b"}})");
  EXPECT_TRUE(hasIssue(dupHalf, "Patient", "structure", "Duplicate JSON property '_birthDate'")) << dump(dupHalf);
}

// Whether the walk met an element extension or modifierExtension (what the profile pass relies on
// to leave the rest of a document without extensions unsearched).
TEST(ValidatorTest, SaysWhetherItMetAnExtension) {
  const auto seen = [](const std::string& text) {
    simdjson::dom::parser parser;
    simdjson::dom::element root;
    EXPECT_EQ(parser.parse(text).get(root), simdjson::SUCCESS) << text;
    std::vector<passerelle::fhir::Issue> issues;
    bool extension = false;
    Validator::instance().validateParsed(root, {}, nullptr, issues, &extension);
    return extension;
  };
  const std::string ext = R"({"url":"https://partner.test/ext","valueString":"x"})";
  EXPECT_FALSE(seen(R"({"resourceType":"Patient","birthDate":"1980-01-01","name":[{"family":"X"}]})"));
  EXPECT_FALSE(seen(R"({"resourceType":"Patient","name":[{"family":"extension"}]})"));  // a value, not a member
  EXPECT_TRUE(seen(R"({"resourceType":"Patient","_birthDate":{"extension":[)" + ext + R"(]},"birthDate":"1980-01-01"})"));
  EXPECT_TRUE(seen(R"({"resourceType":"Patient","contact":[{"name":{"family":"X"},"modifierExtension":[)" + ext + "]}]}"));
  EXPECT_TRUE(seen(R"({"resourceType":"Bundle","type":"collection","entry":[{"resource":{"resourceType":"Patient","extension":[)" +
                   ext + "]}}]}"));
  EXPECT_TRUE(seen(R"({"resourceType":"Patient","ext\u0065nsion":[)" + ext + "]}"));
}

// txt-1's lists are looked up by hash, and text is skipped a word at a time: every element and
// attribute the specification allows is found, a name one letter longer is not, and a tag, an
// entity or the first non-space character is seen at every offset of a word.
TEST(ValidatorTest, NarrativeNamesAndTextAreReadEverywhere) {
  const std::string ns = "<div xmlns=\"http://www.w3.org/1999/xhtml\">";
  auto problems = [](const std::string& div) {
    std::vector<v::XhtmlProblem> out;
    v::checkNarrativeXhtml(div, out, nullptr);
    std::string all;
    for (const auto& p : out) all += p.invariant + ": " + p.message + "\n";
    return all;
  };
  const char* elements[] = {"a", "abbr", "acronym", "address", "area", "b", "bdo", "big", "blockquote", "br",
                            "caption", "cite", "code", "col", "colgroup", "dd", "dfn", "div", "dl", "dt", "em",
                            "h1", "h2", "h3", "h4", "h5", "h6", "hr", "i", "img", "kbd", "li", "map", "ol", "p",
                            "pre", "q", "samp", "small", "span", "strong", "sub", "sup", "table", "tbody", "td",
                            "tfoot", "th", "thead", "tr", "tt", "ul", "var"};
  for (std::string e : elements) {
    EXPECT_EQ(problems(ns + "<" + e + ">x</" + e + "></div>"), "") << e;
    EXPECT_NE(problems(ns + "<" + e + "z>x</" + e + "z></div>").find("txt-1"), std::string::npos) << e << "z";
  }
  const char* attributes[] = {"abbr", "accesskey", "align", "alt", "axis", "bgcolor", "border", "cellpadding",
                              "cellspacing", "char", "charoff", "cite", "class", "colspan", "compact", "coords",
                              "datetime", "dir", "frame", "headers", "height", "href", "hreflang", "hspace", "id",
                              "ismap", "lang", "longdesc", "name", "nohref", "rel", "rev", "rowspan", "rules",
                              "scope", "shape", "span", "src", "start", "style", "summary", "tabindex", "target",
                              "title", "type", "usemap", "valign", "value", "vspace", "width", "xml:lang",
                              "xml:space"};
  for (std::string a : attributes) {
    EXPECT_EQ(problems(ns + "<p " + a + "=\"v\">x</p></div>"), "") << a;
    EXPECT_NE(problems(ns + "<p " + a + "z=\"v\">x</p></div>").find("txt-1"), std::string::npos) << a << "z";
  }
  for (std::size_t k = 0; k < 20; ++k) {
    std::string text(k, 'a');
    EXPECT_EQ(problems(ns + text + "<b>x</b>" + text + "&amp;" + text + "</div>"), "") << k;
    EXPECT_NE(problems(ns + text + "<script>x</script></div>").find("txt-1"), std::string::npos) << k;
    EXPECT_NE(problems(ns + text + "&bad;</div>").find("Invalid entity"), std::string::npos) << k;
    EXPECT_NE(problems(ns + text + "</p></div>").find("unexpected </p>"), std::string::npos) << k;
    std::string spaces(k, ' ');
    EXPECT_NE(problems(ns + spaces + "</div>").find("txt-2"), std::string::npos) << k;
    EXPECT_EQ(problems(ns + spaces + "x" + spaces + "</div>"), "") << k;
  }
}
