// The network's mapping definitions, kind by kind: the FHIR resources each document becomes (codes,
// systems, conditional references, identities) and the document each Bundle gives back.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "mappings/network/mapping_engine.h"

namespace passerelle::network {
namespace {

const MappingSet& mappings() { return MappingSet::builtIn(); }

std::string issuesText(const std::vector<MappingIssue>& issues) {
  std::string out;
  for (const auto& i : issues) out += i.path + ": " + i.message + "\n";
  return out;
}

// The Bundle of `doc`, which must map without issues.
Json bundleOf(const Json& doc, const Json& derived = Json::object()) {
  std::vector<MappingIssue> issues;
  Json bundle = mappings().toBundle(doc["documentType"].get<std::string>(), doc, derived, issues);
  EXPECT_TRUE(issues.empty()) << issuesText(issues);
  return bundle;
}

// The document the Bundle gives back must be `doc` (member order aside).
void expectRoundTrip(const Json& doc, const Json& derived = Json::object()) {
  Json bundle = bundleOf(doc, derived);
  std::vector<MappingIssue> issues;
  Json back = mappings().fromBundle(bundle, issues);
  EXPECT_TRUE(issues.empty()) << issuesText(issues);
  EXPECT_EQ(nlohmann::json(back), nlohmann::json(doc)) << "back: " << back.dump(1) << "\nsent: " << doc.dump(1);
}

const Json& listOf(const Json& bundle) {
  const Json& last = bundle["entry"].back()["resource"];
  EXPECT_EQ(last["resourceType"], "List");
  return last;
}

// The Bundle entries the rule `rule` made, in order, found through the List's flags.
std::vector<const Json*> entriesOf(const Json& bundle, const std::string& rule) {
  std::vector<const Json*> out;
  for (const auto& item : listOf(bundle).value("entry", Json::array())) {
    if (item["flag"]["coding"][0]["code"] != rule) continue;
    for (const auto& e : bundle["entry"])
      if (e["fullUrl"] == item["item"]["reference"]) out.push_back(&e);
  }
  return out;
}

// The one entry of rule `rule`.
const Json& entryOf(const Json& bundle, const std::string& rule) {
  static const Json none = Json::object();
  auto entries = entriesOf(bundle, rule);
  EXPECT_EQ(entries.size(), 1u) << "rule " << rule;
  return entries.empty() ? none : *entries[0];
}

const Json& resourceOf(const Json& bundle, const std::string& rule) {
  static const Json none = Json::object();
  const Json& e = entryOf(bundle, rule);
  return e.contains("resource") ? e["resource"] : none;
}

std::size_t countOf(const Json& bundle, const std::string& resourceType) {
  std::size_t n = 0;
  for (const auto& e : bundle["entry"]) n += e["resource"]["resourceType"] == resourceType;
  return n;
}

// The extension of `url` among `element`'s extensions, or an empty object.
const Json& extensionOf(const Json& element, const std::string& url) {
  static const Json none = Json::object();
  if (element.contains("extension"))
    for (const auto& x : element["extension"])
      if (x.value("url", "") == url) return x;
  ADD_FAILURE() << "no extension " << url << " in " << element.dump();
  return none;
}

const Json& identifierOf(const Json& resource, const std::string& system) {
  static const Json none = Json::object();
  if (resource.contains("identifier"))
    for (const auto& id : resource["identifier"])
      if (id.value("system", "") == system) return id;
  ADD_FAILURE() << "no identifier " << system << " in " << resource.dump();
  return none;
}

constexpr const char* kRpps = "https://rpps.esante.gouv.fr";
constexpr const char* kAdeli = "https://adeli.esante.gouv.fr";
constexpr const char* kFrCoreV20203 = "https://hl7.fr/ig/fhir/core/CodeSystem/fr-core-cs-v2-0203";
constexpr const char* kNetworkEvent = "https://douleur77.fr/fhir/CodeSystem/network-event";
constexpr const char* kSd = "https://douleur77.fr/fhir/StructureDefinition/";
constexpr const char* kPatientRef = "Patient?identifier=https://douleur77.fr/fhir/sid/patient|P77-000001";
constexpr const char* kGpRef = "PractitionerRole?identifier=https://douleur77.fr/fhir/sid/member|rpps:10101234567";

std::string sd(const std::string& name) { return std::string(kSd) + name; }

TEST(NetworkDefinitionsTest, EveryDocumentKindHasADefinition) {
  for (const char* kind : {"professional", "structure", "inclusion", "consent", "consent-renewal", "consent-withdrawal",
                           "cied", "csb", "liaison-sheet", "referral", "referral-update", "exit", "opera-enrolment",
                           "opera-activity"}) {
    EXPECT_TRUE(mappings().has(kind)) << kind;
    EXPECT_EQ(mappings().version(kind), "1.0.0") << kind;
  }
}

// ---- professional ----

Json professionalFull() {
  return Json::parse(R"({
    "documentType": "professional", "schemaVersion": "1.0", "documentId": "D77-PRO-2025-000017",
    "professional": {"rpps": "10101234567", "adeli": "771234560", "family": "MARTIN", "given": ["Sophie", "Anne"],
                     "category": "gp", "specialty": "SM54", "level": 1, "structure": {"finess": "770000123"},
                     "region": "est"},
    "membership": {"signatureDate": "2025-09-15", "status": "withdrawn", "endDate": "2026-10-31"},
    "trainings": [{"kind": "network-cycle", "date": "2025-10-06", "days": 2},
                  {"kind": "update", "date": "2026-01-19", "days": 0.5}]
  })");
}

Json professionalMinimal() {
  return Json::parse(R"({
    "documentType": "professional", "schemaVersion": "1.0", "documentId": "D77-PRO-2025-000018",
    "professional": {"adeli": "771234567", "family": "DURAND", "given": ["Luc"], "category": "physiotherapist", "level": 1},
    "membership": {"signatureDate": "2025-11-02", "status": "active"}
  })");
}

TEST(NetworkDefinitionsTest, ProfessionalBecomesPractitionerAndMemberRole) {
  Json bundle = bundleOf(professionalFull(), {{"active", false}});
  EXPECT_EQ(bundle["entry"].size(), 3u);
  const Json& pe = entryOf(bundle, "practitioner");
  EXPECT_EQ(pe["request"]["method"], "PUT");
  EXPECT_EQ(pe["request"]["url"], "Practitioner?identifier=https://rpps.esante.gouv.fr|10101234567");
  const Json& p = pe["resource"];
  EXPECT_EQ(p["resourceType"], "Practitioner");
  EXPECT_EQ(identifierOf(p, kRpps)["value"], "10101234567");
  EXPECT_EQ(identifierOf(p, kRpps)["type"]["coding"][0]["system"], kFrCoreV20203);
  EXPECT_EQ(identifierOf(p, kRpps)["type"]["coding"][0]["code"], "RPPS");
  EXPECT_EQ(identifierOf(p, kAdeli)["value"], "771234560");
  EXPECT_EQ(identifierOf(p, kAdeli)["type"]["coding"][0]["code"], "ADELI");
  EXPECT_EQ(p["name"][0]["family"], "MARTIN");
  EXPECT_EQ(p["name"][0]["given"][1], "Anne");
  ASSERT_EQ(p["qualification"].size(), 2u);
  EXPECT_EQ(p["qualification"][1]["code"]["coding"][0]["system"], "https://douleur77.fr/fhir/CodeSystem/training");
  EXPECT_EQ(p["qualification"][1]["code"]["coding"][0]["code"], "update");
  EXPECT_EQ(p["qualification"][1]["period"]["start"], "2026-01-19");
  EXPECT_EQ(extensionOf(p["qualification"][1], sd("training-days"))["valueDecimal"], 0.5);

  const Json& re = entryOf(bundle, "role");
  EXPECT_EQ(re["request"]["method"], "PUT");
  EXPECT_EQ(re["request"]["url"], kGpRef);
  const Json& r = re["resource"];
  EXPECT_EQ(r["resourceType"], "PractitionerRole");
  EXPECT_EQ(identifierOf(r, std::string(kMemberSystem))["value"], "rpps:10101234567");
  EXPECT_EQ(r["active"], false);
  EXPECT_EQ(extensionOf(r, sd("membership-status"))["valueCode"], "withdrawn");
  EXPECT_EQ(r["period"]["start"], "2025-09-15");
  EXPECT_EQ(r["period"]["end"], "2026-10-31");
  EXPECT_EQ(r["code"][0]["coding"][0]["system"], "https://douleur77.fr/fhir/CodeSystem/network-role");
  EXPECT_EQ(r["code"][0]["coding"][0]["code"], "gp");
  EXPECT_EQ(r["specialty"][0]["coding"][0]["system"],
            "https://mos.esante.gouv.fr/NOS/TRE_R38-SpecialiteOrdinale/FHIR/TRE-R38-SpecialiteOrdinale");
  EXPECT_EQ(r["specialty"][0]["coding"][0]["code"], "SM54");
  EXPECT_EQ(extensionOf(r, sd("network-level"))["valueInteger"], 1);
  EXPECT_EQ(extensionOf(r, sd("opera-region"))["valueCode"], "est");
  EXPECT_EQ(r["organization"]["reference"], "Organization?identifier=https://finess.esante.gouv.fr|770000123");
  EXPECT_EQ(r["practitioner"]["reference"], pe["fullUrl"]);
  EXPECT_FALSE(r.contains("subject"));
  EXPECT_FALSE(listOf(bundle).contains("subject"));  // a professional document has no patient
}

TEST(NetworkDefinitionsTest, MinimalProfessionalIsKnownByAdeliAndBelongsToTheNetwork) {
  Json bundle = bundleOf(professionalMinimal(), {{"active", true}});
  EXPECT_EQ(entryOf(bundle, "practitioner")["request"]["url"],
            "Practitioner?identifier=https://adeli.esante.gouv.fr|771234567");
  EXPECT_EQ(entryOf(bundle, "role")["request"]["url"],
            "PractitionerRole?identifier=https://douleur77.fr/fhir/sid/member|adeli:771234567");
  const Json& p = resourceOf(bundle, "practitioner");
  EXPECT_EQ(p["identifier"].size(), 1u);
  EXPECT_FALSE(p.contains("qualification"));
  const Json& r = resourceOf(bundle, "role");
  EXPECT_EQ(identifierOf(r, std::string(kMemberSystem))["value"], "adeli:771234567");
  EXPECT_EQ(r["organization"], (Json{{"display", "Douleur 77"}}));
  EXPECT_EQ(r["code"][0]["coding"][0]["code"], "physiotherapist");
  EXPECT_EQ(r["active"], true);
  EXPECT_FALSE(r["period"].contains("end"));
  EXPECT_FALSE(r.contains("specialty"));
}

TEST(NetworkDefinitionsTest, ProfessionalComesBackEqual) {
  expectRoundTrip(professionalFull(), {{"active", false}});
  expectRoundTrip(professionalMinimal());
}

// ---- structure ----

Json structureFull() {
  return Json::parse(R"({
    "documentType": "structure", "schemaVersion": "1.0", "documentId": "D77-STR-2025-000003",
    "structure": {"finess": "930110036", "name": "Hôpital Avicenne, centre d'évaluation et de traitement de la douleur",
                  "kind": "reference-centre", "level": 3, "referralDelayDays": 21}
  })");
}

Json structureMinimal() {
  return Json::parse(R"({
    "documentType": "structure", "schemaVersion": "1.0", "documentId": "D77-STR-2025-000004",
    "structure": {"finess": "2A0000012", "name": "Clinique du Parc", "kind": "clinic", "level": 2}
  })");
}

TEST(NetworkDefinitionsTest, StructureBecomesAnOrganizationKnownByItsFiness) {
  Json bundle = bundleOf(structureFull());
  EXPECT_EQ(bundle["entry"].size(), 2u);
  const Json& e = entryOf(bundle, "organization");
  EXPECT_EQ(e["request"]["method"], "PUT");
  EXPECT_EQ(e["request"]["url"], "Organization?identifier=https://finess.esante.gouv.fr|930110036");
  const Json& o = e["resource"];
  EXPECT_EQ(o["resourceType"], "Organization");
  const Json& finess = identifierOf(o, "https://finess.esante.gouv.fr");
  EXPECT_EQ(finess["value"], "930110036");
  EXPECT_EQ(finess["type"]["coding"][0]["system"], kFrCoreV20203);
  EXPECT_EQ(finess["type"]["coding"][0]["code"], "FINEG");
  EXPECT_EQ(o["type"][0]["coding"][0]["system"], "https://douleur77.fr/fhir/CodeSystem/structure-kind");
  EXPECT_EQ(o["type"][0]["coding"][0]["code"], "reference-centre");
  EXPECT_EQ(extensionOf(o, sd("network-level"))["valueInteger"], 3);
  EXPECT_EQ(extensionOf(o, sd("referral-delay-days"))["valueInteger"], 21);

  Json minimal = bundleOf(structureMinimal());
  const Json& m = resourceOf(minimal, "organization");
  EXPECT_EQ(entryOf(minimal, "organization")["request"]["url"],
            "Organization?identifier=https://finess.esante.gouv.fr|2A0000012");
  EXPECT_EQ(m["extension"].size(), 1u);  // the level only
}

TEST(NetworkDefinitionsTest, StructureComesBackEqual) {
  expectRoundTrip(structureFull());
  expectRoundTrip(structureMinimal());
}

// ---- consent renewal and withdrawal ----

Json consentRenewal() {
  return Json::parse(R"({
    "documentType": "consent-renewal", "schemaVersion": "1.0", "documentId": "D77-CRN-2027-000001",
    "patient": {"networkId": "P77-000001"}, "gp": {"rpps": "10101234567"}, "renewalDate": "2027-02-22"
  })");
}

TEST(NetworkDefinitionsTest, ConsentRenewalIsATaskOnTheActiveConsent) {
  Json derived = {{"consent", {{"reference", "Consent/42"}}}, {"consentEnd", "2028-02-22"}, {"renewalCount", 1}};
  Json bundle = bundleOf(consentRenewal(), derived);
  EXPECT_EQ(bundle["entry"].size(), 2u);
  const Json& e = entryOf(bundle, "event");
  EXPECT_EQ(e["request"]["method"], "POST");
  EXPECT_EQ(e["request"]["ifNoneExist"],
            "identifier=https://douleur77.fr/fhir/sid/network-entry|D77-CRN-2027-000001.event");
  const Json& t = e["resource"];
  EXPECT_EQ(t["resourceType"], "Task");
  EXPECT_EQ(t["status"], "completed");
  EXPECT_EQ(t["intent"], "order");
  EXPECT_EQ(t["code"]["coding"][0]["system"], kNetworkEvent);
  EXPECT_EQ(t["code"]["coding"][0]["code"], "consent-renewal");
  EXPECT_EQ(t["for"]["reference"], kPatientRef);
  EXPECT_EQ(t["requester"]["reference"], kGpRef);
  EXPECT_EQ(t["authoredOn"], "2027-02-22");
  EXPECT_EQ(t["focus"]["reference"], "Consent/42");
  ASSERT_EQ(t["output"].size(), 2u);
  EXPECT_EQ(t["output"][0]["type"]["coding"][0]["code"], "consent-end");
  EXPECT_EQ(t["output"][0]["valueDate"], "2028-02-22");
  EXPECT_EQ(t["output"][1]["valueInteger"], 1);
  EXPECT_EQ(listOf(bundle)["subject"]["reference"], kPatientRef);

  Json bareBundle = bundleOf(consentRenewal());  // the gateway gave nothing
  const Json& bare = resourceOf(bareBundle, "event");
  EXPECT_FALSE(bare.contains("focus"));
  EXPECT_FALSE(bare.contains("output"));
}

Json consentWithdrawal(bool withReason) {
  Json doc = Json::parse(R"({
    "documentType": "consent-withdrawal", "schemaVersion": "1.0", "documentId": "D77-CWD-2027-000001",
    "patient": {"nir": "185057512345678"}, "recordedBy": {"adeli": "771234567"}, "withdrawalDate": "2027-06-14"
  })");
  if (withReason) doc["reason"] = "Le patient souhaite arrêter le suivi du réseau.";
  return doc;
}

TEST(NetworkDefinitionsTest, ConsentWithdrawalIsATaskWithItsReason) {
  Json bundle = bundleOf(consentWithdrawal(true), {{"consent", {{"reference", "Consent/42"}}}});
  const Json& t = resourceOf(bundle, "event");
  EXPECT_EQ(t["code"]["coding"][0]["system"], kNetworkEvent);
  EXPECT_EQ(t["code"]["coding"][0]["code"], "consent-withdrawal");
  EXPECT_EQ(t["status"], "completed");
  EXPECT_EQ(t["for"]["reference"], "Patient?identifier=urn:oid:1.2.250.1.213.1.4.8|185057512345678");
  EXPECT_EQ(t["requester"]["reference"],
            "PractitionerRole?identifier=https://douleur77.fr/fhir/sid/member|adeli:771234567");
  EXPECT_EQ(t["authoredOn"], "2027-06-14");
  EXPECT_EQ(t["reasonCode"]["text"], "Le patient souhaite arrêter le suivi du réseau.");
  EXPECT_EQ(t["focus"]["reference"], "Consent/42");
  EXPECT_FALSE(resourceOf(bundleOf(consentWithdrawal(false)), "event").contains("reasonCode"));
}

TEST(NetworkDefinitionsTest, ConsentEventsComeBackEqual) {
  expectRoundTrip(consentRenewal(), {{"consent", {{"reference", "Consent/42"}}}, {"consentEnd", "2028-02-22"}});
  expectRoundTrip(consentRenewal());
  expectRoundTrip(consentWithdrawal(true), {{"consent", {{"reference", "Consent/42"}}}});
  expectRoundTrip(consentWithdrawal(false));
}

// ---- liaison sheet ----

Json liaisonStart() {
  return Json::parse(R"({
    "documentType": "liaison-sheet", "schemaVersion": "1.0", "documentId": "D77-FDL-2026-000001",
    "sheetId": "FDL-MK-2026-0001", "patient": {"networkId": "P77-000001"}, "author": {"adeli": "771234567"},
    "prescriber": {"rpps": "10101234567"}, "phase": "start",
    "start": {"date": "2026-03-16", "prescriptionDate": "2026-03-02",
              "objectives": "Renforcement des muscles du tronc, éducation posturale.", "vas": 7,
              "functionalStatus": "Marche limitée à 20 minutes.", "sessionsPlanned": 12}
  })");
}

Json liaisonEnd(bool withAdvice) {
  Json doc = Json::parse(R"({
    "documentType": "liaison-sheet", "schemaVersion": "1.0", "documentId": "D77-FDL-2026-000002",
    "sheetId": "FDL-MK-2026-0001", "patient": {"networkId": "P77-000001"}, "author": {"adeli": "771234567"},
    "prescriber": {"rpps": "10101234567"}, "phase": "end",
    "end": {"date": "2026-05-11", "sessionsDone": 11, "vas": 3.5, "outcome": "Marche d'une heure sans douleur.",
            "callBackGp": false}
  })");
  if (withAdvice) doc["end"]["advice"] = "Poursuivre les exercices à domicile.";
  return doc;
}

const char* kSheetUrl = "Composition?identifier=https://douleur77.fr/fhir/sid/liaison-sheet|FDL-MK-2026-0001";

TEST(NetworkDefinitionsTest, LiaisonSheetStartIsTheSheetsCompositionWithItsStartSection) {
  std::vector<MappingIssue> issues;
  auto entries = mappings().toEntries("liaison-sheet", liaisonStart(), {{"sheetType", "FICHE-LIAISON-MK"}}, issues);
  ASSERT_TRUE(issues.empty()) << issuesText(issues);
  ASSERT_EQ(entries.size(), 3u);  // the Composition, the VAS, the List
  EXPECT_EQ(entries[0].rule, "sheet-start");
  EXPECT_EQ(entries[0].method, "PUT");
  EXPECT_EQ(entries[0].url, kSheetUrl);
  EXPECT_TRUE(entries[0].merge);
  EXPECT_EQ(entries[0].keep, std::vector<std::string>{"section"});

  Json bundle = bundleOf(liaisonStart(), {{"sheetType", "FICHE-LIAISON-MK"}});
  const Json& c = resourceOf(bundle, "sheet-start");
  EXPECT_EQ(c["resourceType"], "Composition");
  EXPECT_EQ(c["identifier"], (Json{{"system", "https://douleur77.fr/fhir/sid/liaison-sheet"}, {"value", "FDL-MK-2026-0001"}}));
  EXPECT_EQ(c["status"], "preliminary");
  EXPECT_EQ(c["type"]["coding"][0]["system"], "https://douleur77.fr/fhir/CodeSystem/d77-doc");
  EXPECT_EQ(c["type"]["coding"][0]["code"], "FICHE-LIAISON-MK");
  EXPECT_EQ(c["date"], "2026-03-16");
  EXPECT_EQ(c["title"], "Fiche de liaison");
  EXPECT_EQ(c["subject"]["reference"], kPatientRef);
  EXPECT_EQ(c["author"][0]["reference"], "PractitionerRole?identifier=https://douleur77.fr/fhir/sid/member|adeli:771234567");
  EXPECT_EQ(extensionOf(c, sd("prescriber"))["valueReference"]["reference"], kGpRef);
  ASSERT_EQ(c["section"].size(), 1u);
  const Json& s = c["section"][0];
  EXPECT_EQ(s["title"], "Début de prise en charge");
  EXPECT_EQ(s["code"]["coding"][0]["system"], "https://douleur77.fr/fhir/CodeSystem/liaison-phase");
  EXPECT_EQ(s["code"]["coding"][0]["code"], "start");
  const Json& phase = extensionOf(s, sd("liaison-start"));
  EXPECT_EQ(extensionOf(phase, "prescriptionDate")["valueDate"], "2026-03-02");
  EXPECT_EQ(extensionOf(phase, "sessionsPlanned")["valueInteger"], 12);
  const Json& vas = entryOf(bundle, "vas-start");
  EXPECT_EQ(s["entry"][0]["reference"], vas["fullUrl"]);
  EXPECT_EQ(vas["resource"]["code"]["coding"][0]["code"], "72514-3");
  EXPECT_EQ(vas["resource"]["valueQuantity"]["value"], 7);
  EXPECT_EQ(vas["resource"]["effectiveDateTime"], "2026-03-16");
  EXPECT_EQ(vas["resource"]["subject"]["reference"], kPatientRef);
  EXPECT_TRUE(entriesOf(bundle, "sheet-end").empty());
  EXPECT_TRUE(entriesOf(bundle, "vas-end").empty());
}

TEST(NetworkDefinitionsTest, LiaisonSheetEndTargetsTheSameComposition) {
  Json bundle = bundleOf(liaisonEnd(true), {{"sheetType", "FICHE-LIAISON-MK"}});
  EXPECT_TRUE(entriesOf(bundle, "sheet-start").empty());
  const Json& e = entryOf(bundle, "sheet-end");
  EXPECT_EQ(e["request"]["url"], kSheetUrl);
  const Json& c = e["resource"];
  EXPECT_EQ(c["status"], "final");
  EXPECT_EQ(c["date"], "2026-05-11");
  ASSERT_EQ(c["section"].size(), 1u);
  EXPECT_EQ(c["section"][0]["title"], "Fin de prise en charge");
  EXPECT_EQ(c["section"][0]["code"]["coding"][0]["code"], "end");
  const Json& phase = extensionOf(c["section"][0], sd("liaison-end"));
  EXPECT_EQ(extensionOf(phase, "callBackGp")["valueBoolean"], false);
  EXPECT_EQ(extensionOf(phase, "advice")["valueString"], "Poursuivre les exercices à domicile.");
  EXPECT_EQ(c["section"][0]["entry"][0]["reference"], entryOf(bundle, "vas-end")["fullUrl"]);
  EXPECT_EQ(resourceOf(bundle, "vas-end")["valueQuantity"]["value"], 3.5);
  // Without the derived sheet type the Composition still has a type (text only).
  Json bareBundle = bundleOf(liaisonEnd(false));
  const Json& bare = resourceOf(bareBundle, "sheet-end");
  EXPECT_EQ(bare["type"], (Json{{"text", "Fiche de liaison"}}));
}

TEST(NetworkDefinitionsTest, LiaisonSheetComesBackEqual) {
  expectRoundTrip(liaisonStart(), {{"sheetType", "FICHE-LIAISON-MK"}});
  expectRoundTrip(liaisonEnd(true), {{"sheetType", "FICHE-LIAISON-IDE"}});
  expectRoundTrip(liaisonEnd(false));
}

// ---- referral and referral-update ----

Json referralToSpecialist() {
  return Json::parse(R"({
    "documentType": "referral", "schemaVersion": "1.0", "documentId": "D77-ORI-2026-000001",
    "referralId": "ORI-2026-0001", "patient": {"networkId": "P77-000001"}, "from": {"rpps": "10101234567"},
    "fromLevel": 1, "to": {"professional": {"rpps": "10107654321"}}, "toLevel": 2,
    "reason": "no-50-percent-reduction", "reasonText": "EVA 5,5/10 à la CSB contre 7,5/10 à la CIED.",
    "assistedBy": {"rpps": "10102223334"}, "requestedDate": "2026-09-03"
  })");
}

Json referralToStructure() {
  return Json::parse(R"({
    "documentType": "referral", "schemaVersion": "1.0", "documentId": "D77-ORI-2026-000002",
    "referralId": "ORI-2026-0002", "patient": {"nia": "285057512345678"}, "from": {"rpps": "10107654321"},
    "fromLevel": 2, "to": {"structure": {"finess": "930110036"}}, "toLevel": 3,
    "reason": "hospitalisation", "requestedDate": "2026-10-01"
  })");
}

TEST(NetworkDefinitionsTest, ReferralBecomesAServiceRequestAndItsTask) {
  Json bundle = bundleOf(referralToSpecialist(), {{"dueDate", "2026-09-18"}});
  EXPECT_EQ(bundle["entry"].size(), 3u);
  const Json& re = entryOf(bundle, "request");
  EXPECT_EQ(re["request"]["method"], "POST");
  EXPECT_EQ(re["request"]["ifNoneExist"], "identifier=https://douleur77.fr/fhir/sid/referral|ORI-2026-0001");
  const Json& sr = re["resource"];
  EXPECT_EQ(sr["resourceType"], "ServiceRequest");
  EXPECT_EQ(sr["identifier"].size(), 1u);
  EXPECT_EQ(identifierOf(sr, "https://douleur77.fr/fhir/sid/referral")["value"], "ORI-2026-0001");
  EXPECT_EQ(sr["status"], "active");
  EXPECT_EQ(sr["intent"], "order");
  EXPECT_EQ(sr["category"][0]["coding"][0]["system"], "http://snomed.info/sct");
  EXPECT_EQ(sr["category"][0]["coding"][0]["code"], "3457005");
  EXPECT_EQ(sr["subject"]["reference"], kPatientRef);
  EXPECT_EQ(sr["requester"]["reference"], kGpRef);
  EXPECT_EQ(sr["performer"].size(), 1u);
  EXPECT_EQ(sr["performer"][0]["reference"], "PractitionerRole?identifier=https://douleur77.fr/fhir/sid/member|rpps:10107654321");
  EXPECT_EQ(sr["reasonCode"][0]["coding"][0]["system"], "https://douleur77.fr/fhir/CodeSystem/referral-reason");
  EXPECT_EQ(sr["reasonCode"][0]["coding"][0]["code"], "no-50-percent-reduction");
  EXPECT_EQ(sr["reasonCode"][0]["text"], "EVA 5,5/10 à la CSB contre 7,5/10 à la CIED.");
  EXPECT_EQ(sr["authoredOn"], "2026-09-03");
  EXPECT_EQ(sr["occurrencePeriod"]["end"], "2026-09-18");
  EXPECT_EQ(extensionOf(sr, sd("referral-from-level"))["valueInteger"], 1);
  EXPECT_EQ(extensionOf(sr, sd("referral-to-level"))["valueInteger"], 2);
  EXPECT_EQ(extensionOf(sr, sd("referral-assisted-by"))["valueReference"]["reference"],
            "PractitionerRole?identifier=https://douleur77.fr/fhir/sid/member|rpps:10102223334");

  const Json& te = entryOf(bundle, "task");
  EXPECT_EQ(te["request"]["ifNoneExist"], "identifier=https://douleur77.fr/fhir/sid/referral-task|ORI-2026-0001");
  const Json& t = te["resource"];
  EXPECT_EQ(t["resourceType"], "Task");
  EXPECT_EQ(t["status"], "requested");
  EXPECT_EQ(t["intent"], "order");
  EXPECT_EQ(t["code"]["coding"][0]["system"], kNetworkEvent);  // what the overdue sweep searches
  EXPECT_EQ(t["code"]["coding"][0]["code"], "referral");
  EXPECT_EQ(t["focus"]["reference"], re["fullUrl"]);
  EXPECT_EQ(t["for"]["reference"], kPatientRef);
  EXPECT_EQ(t["requester"]["reference"], kGpRef);
  EXPECT_EQ(t["owner"]["reference"], sr["performer"][0]["reference"]);
  EXPECT_EQ(t["authoredOn"], "2026-09-03");
  EXPECT_EQ(t["restriction"]["period"]["end"], "2026-09-18");
}

TEST(NetworkDefinitionsTest, ReferralToAStructureNamesItsOrganization) {
  Json bundle = bundleOf(referralToStructure());
  const Json& sr = resourceOf(bundle, "request");
  EXPECT_EQ(sr["performer"][0]["reference"], "Organization?identifier=https://finess.esante.gouv.fr|930110036");
  EXPECT_EQ(sr["subject"]["reference"], "Patient?identifier=urn:oid:1.2.250.1.213.1.4.9|285057512345678");
  EXPECT_FALSE(sr["reasonCode"][0].contains("text"));
  EXPECT_FALSE(sr["occurrencePeriod"].contains("end"));
  EXPECT_EQ(sr["extension"].size(), 2u);  // the levels, no coordinating doctor
  const Json& t = resourceOf(bundle, "task");
  EXPECT_EQ(t["owner"]["reference"], "Organization?identifier=https://finess.esante.gouv.fr|930110036");
  EXPECT_FALSE(t.contains("restriction"));
}

Json referralUpdate(bool withNote) {
  Json doc = Json::parse(R"({
    "documentType": "referral-update", "schemaVersion": "1.0", "documentId": "D77-ORU-2026-000001",
    "referralId": "ORI-2026-0001", "patient": {"networkId": "P77-000001"}, "by": {"rpps": "10107654321"},
    "status": "accepted", "date": "2026-09-10"
  })");
  if (withNote) doc["note"] = "Consultation au centre le 2026-09-21.";
  return doc;
}

TEST(NetworkDefinitionsTest, ReferralUpdateIsATaskGroupedByTheReferral) {
  Json bundle = bundleOf(referralUpdate(true), {{"referralTask", {{"reference", "Task/7"}}}});
  const Json& t = resourceOf(bundle, "event");
  EXPECT_EQ(t["resourceType"], "Task");
  EXPECT_EQ(t["code"]["coding"][0]["system"], kNetworkEvent);
  EXPECT_EQ(t["code"]["coding"][0]["code"], "referral-update");
  EXPECT_EQ(t["groupIdentifier"], (Json{{"value", "ORI-2026-0001"}, {"system", "https://douleur77.fr/fhir/sid/referral"}}));
  EXPECT_EQ(t["businessStatus"]["coding"][0]["system"], "https://douleur77.fr/fhir/CodeSystem/referral-status");
  EXPECT_EQ(t["businessStatus"]["coding"][0]["code"], "accepted");
  const std::string by = "PractitionerRole?identifier=https://douleur77.fr/fhir/sid/member|rpps:10107654321";
  EXPECT_EQ(t["owner"]["reference"], by);
  EXPECT_EQ(t["requester"]["reference"], by);
  EXPECT_EQ(t["for"]["reference"], kPatientRef);
  EXPECT_EQ(t["authoredOn"], "2026-09-10");
  EXPECT_EQ(t["note"][0]["text"], "Consultation au centre le 2026-09-21.");
  EXPECT_EQ(t["focus"]["reference"], "Task/7");
  EXPECT_FALSE(resourceOf(bundleOf(referralUpdate(false)), "event").contains("note"));
}

TEST(NetworkDefinitionsTest, ReferralsComeBackEqual) {
  expectRoundTrip(referralToSpecialist(), {{"dueDate", "2026-09-18"}});
  expectRoundTrip(referralToStructure());
  expectRoundTrip(referralUpdate(true), {{"referralTask", {{"reference", "Task/7"}}}});
  Json seen = referralUpdate(false);
  seen["status"] = "report-returned";
  expectRoundTrip(seen);
}

// ---- exit ----

Json exclusion() {
  return Json::parse(R"({
    "documentType": "exit", "schemaVersion": "1.0", "documentId": "D77-EXI-2027-000002",
    "patient": {"networkId": "P77-000001"}, "recordedBy": {"rpps": "10102223334"}, "type": "exit",
    "date": "2027-04-03", "reason": "exclusion",
    "exclusion": {"decidingBody": "board", "decisionRef": "CA 2027-03, délibération 4",
                  "committeeOpinionRef": "Comité médical 2027-02, avis 2"},
    "note": "Consultations répétées hors réseau sans indication du médecin correspondant."
  })");
}

Json refusal() {
  return Json::parse(R"({
    "documentType": "exit", "schemaVersion": "1.0", "documentId": "D77-EXI-2026-000009",
    "patient": {"nir": "185057512345678"}, "recordedBy": {"rpps": "10101234567"}, "type": "refusal",
    "date": "2026-02-20", "reason": "age"
  })");
}

TEST(NetworkDefinitionsTest, ExitIsATaskWithTheExclusionDecision) {
  Json bundle = bundleOf(exclusion(), {{"episode", {{"reference", "EpisodeOfCare/3"}}}});
  EXPECT_EQ(bundle["entry"].size(), 2u);
  EXPECT_TRUE(entriesOf(bundle, "refusal").empty());
  const Json& t = resourceOf(bundle, "exit");
  EXPECT_EQ(t["resourceType"], "Task");
  EXPECT_EQ(t["status"], "completed");
  EXPECT_EQ(t["code"]["coding"][0]["system"], kNetworkEvent);
  EXPECT_EQ(t["code"]["coding"][0]["code"], "network-exit");
  EXPECT_EQ(t["reasonCode"]["coding"][0]["system"], "https://douleur77.fr/fhir/CodeSystem/exit-reason");
  EXPECT_EQ(t["reasonCode"]["coding"][0]["code"], "exclusion");
  ASSERT_EQ(t["input"].size(), 3u);
  EXPECT_EQ(t["input"][0]["type"]["coding"][0]["code"], "deciding-body");
  EXPECT_EQ(t["input"][0]["valueCode"], "board");
  EXPECT_EQ(t["input"][1]["type"]["coding"][0]["code"], "decision-ref");
  EXPECT_EQ(t["input"][1]["valueString"], "CA 2027-03, délibération 4");
  EXPECT_EQ(t["input"][2]["type"]["coding"][0]["code"], "committee-opinion-ref");
  EXPECT_EQ(t["input"][2]["valueString"], "Comité médical 2027-02, avis 2");
  EXPECT_EQ(t["for"]["reference"], kPatientRef);
  EXPECT_EQ(t["requester"]["reference"],
            "PractitionerRole?identifier=https://douleur77.fr/fhir/sid/member|rpps:10102223334");
  EXPECT_EQ(t["authoredOn"], "2027-04-03");
  EXPECT_EQ(t["focus"]["reference"], "EpisodeOfCare/3");
  EXPECT_EQ(t["note"][0]["text"], "Consultations répétées hors réseau sans indication du médecin correspondant.");
}

TEST(NetworkDefinitionsTest, RefusalIsATaskWithARefusalReason) {
  Json bundle = bundleOf(refusal());
  EXPECT_TRUE(entriesOf(bundle, "exit").empty());
  const Json& t = resourceOf(bundle, "refusal");
  EXPECT_EQ(t["code"]["coding"][0]["code"], "admission-refusal");
  EXPECT_EQ(t["reasonCode"]["coding"][0]["system"], "https://douleur77.fr/fhir/CodeSystem/refusal-reason");
  EXPECT_EQ(t["reasonCode"]["coding"][0]["code"], "age");
  EXPECT_FALSE(t.contains("input"));
  EXPECT_FALSE(t.contains("note"));
  EXPECT_FALSE(t.contains("focus"));
}

TEST(NetworkDefinitionsTest, ExitComesBackEqual) {
  expectRoundTrip(exclusion(), {{"episode", {{"reference", "EpisodeOfCare/3"}}}});
  expectRoundTrip(refusal());
  Json death = refusal();
  death["type"] = "exit";
  death["reason"] = "death";
  death["note"] = "Décès signalé par la famille.";
  expectRoundTrip(death);
}

// ---- OPERA ----

Json operaEnrolmentFull() {
  return Json::parse(R"({
    "documentType": "opera-enrolment", "schemaVersion": "1.0", "documentId": "OPE-ENR-2026-000001",
    "region": "nord-pas-de-calais",
    "patient": {"nir": "252035935012325", "networkId": "OP-000001", "family": "LEBRUN", "given": ["Monique"],
                "sex": "female", "birthDate": "1952-03-21", "birthPlace": "59350",
                "address": {"lines": ["14 cité des Provinces"], "postalCode": "62300", "city": "Lens"}},
    "pathology": "copd", "enrolmentDate": "2026-01-12", "professional": {"rpps": "10105556661"},
    "risk": {"level": "high", "date": "2026-01-12", "assessor": {"rpps": "10009876543"}}
  })");
}

Json operaEnrolmentMinimal() {
  return Json::parse(R"({
    "documentType": "opera-enrolment", "schemaVersion": "1.0", "documentId": "OPE-ENR-2026-000002",
    "region": "est",
    "patient": {"nia": "252035935012399", "networkId": "OP-000002", "family": "KOWALSKI", "given": ["Jan", "Piotr"],
                "sex": "male", "birthDate": "1948-11-02"},
    "pathology": "diabetes", "enrolmentDate": "2026-02-03", "professional": {"adeli": "571234567"},
    "risk": {"level": "medium", "date": "2026-02-01", "assessor": {"adeli": "571234567"}}
  })");
}

Json operaDerived() {
  return Json::parse(R"({
    "planDefinition": "https://douleur77.fr/fhir/PlanDefinition/OPERA-copd-high",
    "carePlanActivities": [
      {"detail": {"code": {"coding": [{"system": "https://douleur77.fr/fhir/CodeSystem/opera-activity", "code": "information"}]},
                  "status": "not-started"}},
      {"detail": {"code": {"coding": [{"system": "https://douleur77.fr/fhir/CodeSystem/opera-activity", "code": "evaluation"}]},
                  "status": "scheduled", "scheduledString": "M6 2026-07-12"}}
    ]
  })");
}

TEST(NetworkDefinitionsTest, OperaEnrolmentMakesTheProgrammeResources) {
  Json bundle = bundleOf(operaEnrolmentFull(), operaDerived());
  EXPECT_EQ(bundle["entry"].size(), 7u);
  const Json& pe = entryOf(bundle, "patient");
  EXPECT_EQ(pe["request"]["url"], "Patient?identifier=urn:oid:1.2.250.1.213.1.4.8|252035935012325");
  EXPECT_EQ(identifierOf(pe["resource"], "https://douleur77.fr/fhir/sid/patient")["value"], "OP-000001");
  // the patient is written by this document: its resources name the Patient's entry
  const std::string patientRef = pe["fullUrl"].get<std::string>();
  EXPECT_EQ(listOf(bundle)["subject"]["reference"], patientRef);

  const Json& condition = entryOf(bundle, "condition");
  const Json& code = condition["resource"]["code"]["coding"][0];
  EXPECT_EQ(code["system"], "https://smt.esante.gouv.fr/terminologie-cim-10");
  EXPECT_EQ(code["code"], "J44");
  EXPECT_EQ(condition["resource"]["subject"]["reference"], patientRef);

  const Json& episode = entryOf(bundle, "episode");
  const Json& eoc = episode["resource"];
  EXPECT_EQ(eoc["type"][0]["coding"][0]["system"], "https://douleur77.fr/fhir/CodeSystem/d77-programme");
  EXPECT_EQ(eoc["type"][0]["coding"][0]["code"], "OPERA");
  EXPECT_EQ(extensionOf(eoc, sd("opera-region"))["valueCode"], "nord-pas-de-calais");
  EXPECT_EQ(eoc["careManager"]["reference"], "PractitionerRole?identifier=https://douleur77.fr/fhir/sid/member|rpps:10105556661");
  EXPECT_EQ(eoc["period"]["start"], "2026-01-12");
  EXPECT_EQ(eoc["patient"]["reference"], patientRef);
  EXPECT_EQ(eoc["diagnosis"][0]["condition"]["reference"], condition["fullUrl"]);

  const Json& risk = entryOf(bundle, "risk");
  const Json& ra = risk["resource"];
  EXPECT_EQ(ra["resourceType"], "RiskAssessment");
  EXPECT_EQ(ra["prediction"][0]["qualitativeRisk"]["coding"][0]["system"],
            "http://terminology.hl7.org/CodeSystem/risk-probability");
  EXPECT_EQ(ra["prediction"][0]["qualitativeRisk"]["coding"][0]["code"], "high");
  EXPECT_EQ(ra["occurrenceDateTime"], "2026-01-12");
  EXPECT_EQ(ra["performer"]["reference"], "PractitionerRole?identifier=https://douleur77.fr/fhir/sid/member|rpps:10009876543");
  EXPECT_EQ(ra["condition"]["reference"], condition["fullUrl"]);

  const Json& plan = entryOf(bundle, "care-plan");
  const Json& cp = plan["resource"];
  EXPECT_EQ(cp["instantiatesCanonical"][0], "https://douleur77.fr/fhir/PlanDefinition/OPERA-copd-high");
  const Json derived = operaDerived();
  EXPECT_EQ(cp["activity"], derived["carePlanActivities"]);
  EXPECT_EQ(cp["category"][0]["coding"][0]["code"], "OPERA");
  EXPECT_EQ(cp["addresses"][0]["reference"], condition["fullUrl"]);

  const Json& file = entryOf(bundle, "patient-file");
  EXPECT_EQ(file["request"]["method"], "PUT");
  EXPECT_EQ(file["request"]["url"], "Composition?identifier=https://douleur77.fr/fhir/sid/opera-file|OP-000001");
  const Json& c = file["resource"];
  EXPECT_EQ(c["identifier"], (Json{{"system", "https://douleur77.fr/fhir/sid/opera-file"}, {"value", "OP-000001"}}));
  EXPECT_EQ(c["type"]["coding"][0]["code"], "OPERA-PATIENT-FILE");
  EXPECT_EQ(c["date"], "2026-01-12");
  EXPECT_EQ(c["author"][0]["reference"], "PractitionerRole?identifier=https://douleur77.fr/fhir/sid/member|rpps:10105556661");
  EXPECT_EQ(c["section"][0]["entry"][0]["reference"], episode["fullUrl"]);
  EXPECT_EQ(c["section"][0]["entry"][2]["reference"], risk["fullUrl"]);
  EXPECT_EQ(c["section"][1]["entry"][0]["reference"], plan["fullUrl"]);
}

TEST(NetworkDefinitionsTest, MinimalOperaEnrolmentTranslatesItsCodes) {
  Json bundle = bundleOf(operaEnrolmentMinimal());
  EXPECT_EQ(entryOf(bundle, "patient")["request"]["url"], "Patient?identifier=urn:oid:1.2.250.1.213.1.4.9|252035935012399");
  EXPECT_EQ(resourceOf(bundle, "condition")["code"]["coding"][0]["code"], "E14");
  EXPECT_EQ(resourceOf(bundle, "risk")["prediction"][0]["qualitativeRisk"]["coding"][0]["code"], "moderate");
  const Json& cp = resourceOf(bundle, "care-plan");
  EXPECT_FALSE(cp.contains("instantiatesCanonical"));
  EXPECT_FALSE(cp.contains("activity"));
  EXPECT_FALSE(resourceOf(bundle, "patient").contains("address"));
  Json heart = operaEnrolmentMinimal();
  heart["pathology"] = "heart-failure";
  heart["risk"]["level"] = "low";
  Json hb = bundleOf(heart);
  EXPECT_EQ(resourceOf(hb, "condition")["code"]["coding"][0]["code"], "I50");
  EXPECT_EQ(resourceOf(hb, "risk")["prediction"][0]["qualitativeRisk"]["coding"][0]["code"], "low");
}

TEST(NetworkDefinitionsTest, OperaEnrolmentComesBackEqual) {
  expectRoundTrip(operaEnrolmentFull(), operaDerived());
  expectRoundTrip(operaEnrolmentMinimal());
}

Json operaTelephone() {
  return Json::parse(R"({
    "documentType": "opera-activity", "schemaVersion": "1.0", "documentId": "OPE-ACT-2026-000042",
    "activity": "telephone", "date": "2026-02-09", "professional": {"rpps": "10009876543"},
    "patients": [{"networkId": "OP-000001"}], "durationMinutes": 20,
    "note": "Suivi téléphonique : dyspnée stable, pas d'exacerbation."
  })");
}

Json operaCollective() {
  return Json::parse(R"({
    "documentType": "opera-activity", "schemaVersion": "1.0", "documentId": "OPE-ACT-2026-000043",
    "activity": "etp-collective", "date": "2026-03-04", "professional": {"adeli": "591234567"},
    "patients": [{"networkId": "OP-000001"}, {"nir": "252035935012325"}, {"nia": "252035935012399"}],
    "durationMinutes": 120
  })");
}

Json operaEvaluation() {
  return Json::parse(R"({
    "documentType": "opera-activity", "schemaVersion": "1.0", "documentId": "OPE-ACT-2026-000044",
    "activity": "evaluation", "date": "2026-07-10", "professional": {"rpps": "10105556661"},
    "patients": [{"networkId": "OP-000002"}], "milestone": "M6"
  })");
}

TEST(NetworkDefinitionsTest, OperaContactIsAnEncounterOfItsClass) {
  Json bundle = bundleOf(operaTelephone());
  EXPECT_TRUE(entriesOf(bundle, "session").empty());
  const Json& e = resourceOf(bundle, "encounter");
  EXPECT_EQ(e["resourceType"], "Encounter");
  EXPECT_EQ(e["status"], "finished");
  EXPECT_EQ(e["class"]["system"], "http://terminology.hl7.org/CodeSystem/v3-ActCode");
  EXPECT_EQ(e["class"]["code"], "VR");
  EXPECT_EQ(e["type"][0]["coding"][0]["system"], "https://douleur77.fr/fhir/CodeSystem/opera-activity");
  EXPECT_EQ(e["type"][0]["coding"][0]["code"], "telephone");
  EXPECT_EQ(e["subject"]["reference"], "Patient?identifier=https://douleur77.fr/fhir/sid/patient|OP-000001");
  EXPECT_EQ(e["period"]["start"], "2026-02-09");
  EXPECT_EQ(e["length"]["value"], 20);
  EXPECT_EQ(e["length"]["code"], "min");
  EXPECT_EQ(e["participant"][0]["individual"]["reference"],
            "PractitionerRole?identifier=https://douleur77.fr/fhir/sid/member|rpps:10009876543");
  EXPECT_FALSE(e.contains("partOf"));
  EXPECT_EQ(listOf(bundle)["subject"]["reference"], "Patient?identifier=https://douleur77.fr/fhir/sid/patient|OP-000001");

  Json evaluation = bundleOf(operaEvaluation());
  const Json& ev = resourceOf(evaluation, "encounter");
  EXPECT_EQ(ev["class"]["code"], "AMB");
  EXPECT_EQ(extensionOf(ev, sd("opera-milestone"))["valueCode"], "M6");
  EXPECT_FALSE(ev.contains("length"));
  Json home = operaEvaluation();
  home["activity"] = "home-diagnosis";
  home.erase("milestone");
  EXPECT_EQ(resourceOf(bundleOf(home), "encounter")["class"]["code"], "HH");
}

TEST(NetworkDefinitionsTest, CollectiveSessionIsAGroupEncounterThePatientsArePartOf) {
  Json bundle = bundleOf(operaCollective());
  EXPECT_EQ(countOf(bundle, "Encounter"), 4u);
  const Json& session = entryOf(bundle, "session");
  EXPECT_EQ(session["resource"]["class"]["code"], "AMB");
  EXPECT_EQ(session["resource"]["type"][0]["coding"][0]["code"], "etp-collective");
  EXPECT_FALSE(session["resource"].contains("subject"));
  EXPECT_EQ(session["resource"]["length"]["value"], 120);
  auto encounters = entriesOf(bundle, "encounter");
  ASSERT_EQ(encounters.size(), 3u);
  const char* subjects[] = {"Patient?identifier=https://douleur77.fr/fhir/sid/patient|OP-000001",
                            "Patient?identifier=urn:oid:1.2.250.1.213.1.4.8|252035935012325",
                            "Patient?identifier=urn:oid:1.2.250.1.213.1.4.9|252035935012399"};
  for (std::size_t i = 0; i < 3; ++i) {
    const Json& r = (*encounters[i])["resource"];
    EXPECT_EQ(r["subject"]["reference"], subjects[i]);
    EXPECT_EQ(r["partOf"]["reference"], session["fullUrl"]);
    EXPECT_EQ(r["type"][0]["coding"][0]["code"], "etp-collective");
    EXPECT_EQ(r["class"]["code"], "AMB");
  }
  EXPECT_NE((*encounters[0])["fullUrl"], (*encounters[1])["fullUrl"]);
}

TEST(NetworkDefinitionsTest, OperaActivityComesBackEqual) {
  expectRoundTrip(operaTelephone());
  expectRoundTrip(operaCollective());
  expectRoundTrip(operaEvaluation());
}

}  // namespace
}  // namespace passerelle::network
