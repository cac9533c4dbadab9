// HPRIM Net and HPRIM Santé: reading, writing, the NIR and date checks, and the mappings to and
// from FHIR.
#include <gtest/gtest.h>

#include <algorithm>
#include <nlohmann/json.hpp>

#include "mappings/hprim/fhir_mapping.h"
#include "mappings/hprim/hprim.h"

namespace passerelle::hprim {
namespace {

using Json = nlohmann::json;

// An HPRIM Net letter with results, in ISO 8859-1 as laboratories send it.
const std::string kNet =
    "Bilan sanguin\r\n"
    "DUPONT\r\n"
    "Marie Claire\r\n"
    "12 rue des Lilas\r\n"
    "\r\n"
    "77000 MELUN\r\n"
    "14/03/1962\r\n"
    "2620377123456 94\r\n"
    "DEM-2026-001\r\n"
    "02/03/2026\r\n"
    "LAB77 Laboratoire de Melun\r\n"
    "10101234567 Dr Martin\r\n"
    "R\xe9sultats du bilan :\r\n"
    "  H\xe9moglobine 13,5 g/dL\r\n"
    "****LAB****\r\n"
    "RES|H\xe9moglobine|HB|N|13,5|g/dL|12|16||F|8,4|mmol/L|7,4|9,9|\r\n"
    "RES|Ferritine|FER|N|< 5|\xb5g/L|15|150|L|F|\r\n"
    "RES|Aspect|ASP|A|Clair||||N|F|\r\n"
    "****FIN****\r\n"
    "****FINFICHIER****\r\n";

std::string describe(const std::vector<Issue>& issues) {
  std::string s;
  for (const auto& i : issues) s += (i.error ? "error " : "warning ") + i.where + ": " + i.message + "\n";
  return s;
}

bool hasIssue(const std::vector<Issue>& issues, const std::string& where, const std::string& part, bool error) {
  return std::any_of(issues.begin(), issues.end(), [&](const Issue& i) {
    return i.error == error && i.where.find(where) != std::string::npos && i.message.find(part) != std::string::npos;
  });
}

TEST(HprimNet, ReadsTheHeaderTextAndResultsOfALatin1File) {
  NetFile f;
  std::vector<Issue> issues;
  ASSERT_TRUE(readNet(kNet, f, issues)) << describe(issues);
  EXPECT_TRUE(issues.empty()) << describe(issues);
  EXPECT_EQ(f.encoding, Encoding::kLatin1);
  EXPECT_TRUE(f.finFichier);
  ASSERT_EQ(f.documents.size(), 1u);
  const auto& d = f.documents[0];
  EXPECT_EQ(d.reference, "Bilan sanguin");
  EXPECT_EQ(d.family, "DUPONT");
  EXPECT_EQ(d.given, "Marie Claire");
  EXPECT_EQ(d.address2, "");
  EXPECT_EQ(d.postcodeCity, "77000 MELUN");
  EXPECT_EQ(d.birthDate, "14/03/1962");
  EXPECT_EQ(d.recipient, "10101234567 Dr Martin");
  EXPECT_EQ(d.text, "R\xc3\xa9sultats du bilan :\n  H\xc3\xa9moglobine 13,5 g/dL");
  ASSERT_EQ(d.results.size(), 3u);
  EXPECT_EQ(d.results[0].label, "H\xc3\xa9moglobine");
  EXPECT_EQ(d.results[0].value, "13,5");
  EXPECT_EQ(d.results[0].high, "16");
  EXPECT_EQ(d.results[0].unit2, "mmol/L");
  EXPECT_EQ(d.results[0].high2, "9,9");
  EXPECT_EQ(d.results[1].unit, "\xc2\xb5g/L");
  EXPECT_EQ(d.results[1].flag, "L");
  EXPECT_EQ(d.results[2].type, "A");
}

TEST(HprimNet, ReadsSeveralDocumentsAndUtf8WithABom) {
  std::string one = kNet.substr(0, kNet.find("****FINFICHIER****"));
  std::string text = "\xEF\xBB\xBF" + one + "\r\n" + one + "****FINFICHIER****\r\n";
  // As UTF-8: the Latin-1 bytes become their UTF-8 forms.
  std::string converted = "\xEF\xBB\xBF";
  for (std::size_t i = 3; i < text.size(); ++i) {
    auto c = static_cast<unsigned char>(text[i]);
    if (c < 0x80) converted += static_cast<char>(c);
    else {
      converted += static_cast<char>(0xC0 | (c >> 6));
      converted += static_cast<char>(0x80 | (c & 0x3F));
    }
  }
  NetFile f;
  std::vector<Issue> issues;
  ASSERT_TRUE(readNet(converted, f, issues));
  EXPECT_EQ(f.encoding, Encoding::kUtf8);
  ASSERT_EQ(f.documents.size(), 2u);
  EXPECT_EQ(f.documents[1].family, "DUPONT");
  EXPECT_EQ(f.documents[1].firstLine, 21u);
  EXPECT_EQ(f.documents[1].results[0].label, "H\xc3\xa9moglobine");
}

TEST(HprimNet, RefusesATruncatedFileAndAShortHeader) {
  NetFile f;
  std::vector<Issue> issues;
  EXPECT_FALSE(readNet(kNet.substr(0, kNet.find("****FIN****")), f, issues));
  EXPECT_TRUE(hasIssue(issues, "line", "looks truncated", true));
  issues.clear();
  EXPECT_FALSE(readNet("Bilan\r\nDUPONT\r\nMarie\r\n****FIN****\r\n****FINFICHIER****\r\n", f, issues));
  EXPECT_TRUE(hasIssue(issues, "line 4", "3 header lines", true));
  issues.clear();
  EXPECT_FALSE(readNet("", f, issues));
  EXPECT_TRUE(hasIssue(issues, "line 1", "no HPRIM Net document", true));
}

TEST(HprimNet, ChecksTheHeaderValues) {
  std::string bad = kNet;
  bad.replace(bad.find("14/03/1962"), 10, "31/02/1962");
  bad.replace(bad.find("\r\nDUPONT\r\n") + 2, 6, "");
  NetFile f;
  std::vector<Issue> issues;
  EXPECT_FALSE(readNet(bad, f, issues));
  EXPECT_TRUE(hasIssue(issues, "line 7", "not a date written DD/MM/YYYY", true));
  EXPECT_TRUE(hasIssue(issues, "line 2", "surname", true));
  std::string wrongKey = kNet;
  wrongKey.replace(wrongKey.find(" 94\r\n"), 3, " 54");
  issues.clear();
  EXPECT_TRUE(readNet(wrongKey, f, issues));
  EXPECT_TRUE(hasIssue(issues, "line 8", "key is 54, its number gives 94", false));
}

TEST(HprimNet, WarnsOnResultsItCannotReadAsDeclared) {
  std::string text = kNet;
  text.replace(text.find("RES|Aspect|ASP|A|Clair||||N|"), 28, "RES|Aspect|ASP|N|Clair||||Z|");
  text.insert(text.find("****LAB****"), "RES|hors section|X|N|1|\r\n");
  text.insert(text.find("****FIN****"), "TEX|ligne libre\r\n");
  NetFile f;
  std::vector<Issue> issues;
  ASSERT_TRUE(readNet(text, f, issues)) << describe(issues);
  EXPECT_TRUE(hasIssue(issues, "line 19 field 4", "'Clair' is not a number", false));
  EXPECT_TRUE(hasIssue(issues, "line 19 field 8", "'Z' is not L, H, LL, HH or N", false));
  EXPECT_TRUE(hasIssue(issues, "line 15", "outside the ****LAB**** section", false));
  EXPECT_TRUE(hasIssue(issues, "line 20", "not a RES line", false));
  EXPECT_NE(f.documents[0].text.find("RES|hors section"), std::string::npos);
}

TEST(HprimNet, WritesWhatItReadsInEitherEncoding) {
  NetFile f;
  std::vector<Issue> issues;
  ASSERT_TRUE(readNet(kNet, f, issues));
  for (Encoding e : {Encoding::kLatin1, Encoding::kUtf8}) {
    std::size_t lost = 0;
    std::string written = writeNet(f.documents, e, &lost);
    EXPECT_EQ(lost, 0u);
    NetFile back;
    std::vector<Issue> again;
    ASSERT_TRUE(readNet(written, back, again)) << encodingName(e);
    EXPECT_EQ(back.encoding, e);
    ASSERT_EQ(back.documents.size(), 1u);
    EXPECT_EQ(back.documents[0].text, f.documents[0].text);
    EXPECT_EQ(back.documents[0].results.size(), 3u);
    EXPECT_EQ(back.documents[0].results[1].value, "< 5");
    EXPECT_EQ(back.documents[0].nir, f.documents[0].nir);
  }
  EXPECT_EQ(writeNet(f.documents, Encoding::kLatin1), kNet);
}

TEST(HprimNet, KeepsTheFormatWhateverTheValues) {
  NetDocument d;
  d.family = "DURAND\r\nX";
  d.birthDate = "01/01/1970";
  d.text = "avant\n****FIN****\napr\xc3\xa8s \xe2\x82\xac";
  Result r;
  r.label = "a|b";
  r.type = "A";
  r.value = "x\ny";
  d.results.push_back(r);
  std::size_t lost = 0;
  std::string w = writeNet({d}, Encoding::kLatin1, &lost);
  EXPECT_EQ(lost, 1u);  // the euro sign is not in ISO 8859-1
  NetFile f;
  std::vector<Issue> issues;
  ASSERT_TRUE(readNet(w, f, issues)) << describe(issues) << w;
  ASSERT_EQ(f.documents.size(), 1u);
  EXPECT_EQ(f.documents[0].family, "DURAND X");
  EXPECT_EQ(f.documents[0].text, "avant\n.****FIN****\napr\xc3\xa8s ?");
  EXPECT_EQ(f.documents[0].results[0].label, "a/b");
  EXPECT_EQ(f.documents[0].results[0].value, "x y");
}

TEST(HprimNir, ChecksTheKeyIncludingCorsica) {
  std::string why;
  EXPECT_EQ(checkedNir("2 62 03 77 123 456 94", why), "262037712345694");
  EXPECT_EQ(checkedNir("2620377123456", why), "262037712345694");  // the key computed
  EXPECT_EQ(checkedNir("18505 2A 123456 33", why), "185052A12345633");
  EXPECT_EQ(checkedNir("185052B12345660", why), "185052B12345660");
  EXPECT_EQ(checkedNir("185052A12345660", why), "");
  EXPECT_NE(why.find("key"), std::string::npos);
  EXPECT_EQ(checkedNir("26203771234", why), "");
  EXPECT_EQ(checkedNir("5620377123456", why), "");
  EXPECT_EQ(checkedNir("26203X7123456", why), "");
}

TEST(HprimDates, AcceptOnlyRealDates) {
  EXPECT_EQ(netDateToIso("29/02/2024"), "2024-02-29");
  EXPECT_EQ(netDateToIso("29/02/2023"), "");
  EXPECT_EQ(netDateToIso("1/2/2024"), "");
  EXPECT_EQ(santeDateToIso("202603021015"), "2026-03-02");
  EXPECT_EQ(santeDateToIso("20261301"), "");
  EXPECT_EQ(santeDateToIso("2026"), "");
}

// An HPRIM Santé result message: two requests, a continuation record, escapes, comments.
const std::string kSante =
    "H|~^\\&|RES0001.HPR||LAB77~Laboratoire de Melun||ORU|||10101234567~Dr Martin||P|H2.2~C|20260302101500\r"
    "P|1|PAT-12|L-998||MARTIN~Paul~~~M.|DURAND|19580722|M||3 place du March\xe9~~MEAUX~~77100\r"
    "OBR|1|DEM-7|L-7001|NFS~Num\xe9ration formule~L|||202603020815\r"
    "OBX|1|NM|HB~H\xe9moglobine~L||14.2|g/dL|13-17|N|||F|||202603020900\r"
    "C|1|L|contr\xf4l\xe9 sur second pr\xe9l\xe8vement|G\r"
    "OBX|2|NM|2345-7~Glucose~LN||7,1|mmol/L|3.9-6.1|H|||P\r"
    "OBR|2|DEM-8||CRP~Prot\xe9ine C r\xe9\r"
    "A|active~L\r"
    "OBX|1|TX|COM~Commentaire~L||Ligne 1^Ligne 2 \\S\\ fin||||||F\r"
    "ZZZ|1|ignored\r"
    "L|1|||\r";

TEST(HprimSante, ReadsRecordsDelimitersContinuationsAndEscapes) {
  SanteMessage m;
  std::vector<Issue> issues;
  ASSERT_TRUE(readSante(kSante, m, issues)) << (issues.empty() ? "" : issues[0].message);
  EXPECT_EQ(m.encoding, Encoding::kLatin1);
  EXPECT_EQ(m.component, '~');
  EXPECT_EQ(m.repetition, '^');
  EXPECT_EQ(m.senderCode, "LAB77");
  EXPECT_EQ(m.senderName, "Laboratoire de Melun");
  EXPECT_EQ(m.type, "ORU");
  EXPECT_EQ(m.receiverCode, "10101234567");
  EXPECT_EQ(m.version, "H2.2");
  EXPECT_TRUE(m.ended);
  ASSERT_EQ(m.patients.size(), 1u);
  const auto& p = m.patients[0];
  EXPECT_EQ(p.family, "MARTIN");
  EXPECT_EQ(p.given, "Paul");
  EXPECT_EQ(p.birthName, "DURAND");
  EXPECT_EQ(p.birthDate, "19580722");
  EXPECT_EQ(p.city, "MEAUX");
  EXPECT_EQ(p.postcode, "77100");
  ASSERT_EQ(p.requests.size(), 2u);
  EXPECT_EQ(p.requests[0].results.size(), 2u);
  EXPECT_EQ(p.requests[0].results[0].low, "13");
  EXPECT_EQ(p.requests[0].results[0].high, "17");
  ASSERT_EQ(p.requests[0].results[0].comments.size(), 1u);
  EXPECT_EQ(p.requests[0].results[0].comments[0], "contr\xc3\xb4l\xc3\xa9 sur second pr\xc3\xa9l\xc3\xa8vement");
  EXPECT_EQ(p.requests[0].results[1].codeSystem, "LN");
  EXPECT_EQ(p.requests[1].label, "Prot\xc3\xa9ine C r\xc3\xa9" "active");  // continued by the A record
  EXPECT_EQ(p.requests[1].results[0].value, "Ligne 1\nLigne 2 ~ fin");   // repetitions and \S\ escape
  EXPECT_TRUE(hasIssue(issues, "line 10 (ZZZ)", "not read", false));
}

TEST(HprimSante, AcceptsTheHl7OrderOfDelimiters) {
  std::string text = "H|^~\\&|F||S||ORU|||R||P|H2.1^C|20260101\nP|1|||A|DUPONT^Jean||19700101|F\nOBR|1|||X^Y\nOBX|1|NM|A^B||1|u\nL|1\n";
  SanteMessage m;
  std::vector<Issue> issues;
  ASSERT_TRUE(readSante(text, m, issues));
  EXPECT_EQ(m.component, '^');
  EXPECT_EQ(m.patients[0].given, "Jean");
  EXPECT_EQ(m.patients[0].sex, "F");
}

TEST(HprimSante, RefusesWhatCannotBeRead) {
  struct Case {
    std::string text, where, part;
  };
  std::vector<Case> cases = {
      {"P|1\nL|1\n", "line 1", "starts with an H record"},
      {"H|||\nL|1\n", "line 1 (H) field 1", "declares its delimiters"},
      {"H|~~\\&|\nP|1||||A~B\nL|1\n", "line 1 (H) field 1", "used twice"},
      {"H|~\xb4\\&|\nP|1||||A~B\nL|1\n", "line 1 (H) field 1", "declares its delimiters"},  // 5 bytes once read as Latin-1
      {"H|&\xb4\\|\nP|1||||A&B\nL|1\n", "line 1 (H) field 1", "not ASCII"},
      {"H\xe9~^\\&|\nP|1||||A~B\nL|1\n", "line 1 (H)", "not a printable ASCII sign"},
      {"H|~^\\&|\nOBR|1\nL|1\n", "line 2 (OBR)", "before any P record"},
      {"H|~^\\&|\nP|1||||A~B\nOBX|1|NM|X~Y||1\nL|1\n", "line 3 (OBX)", "before any OBR"},
      {"H|~^\\&|\nP|1||||A~B\nOBR|1|||X\n", "line", "no L record"},
      {"H|~^\\&|\nP|1||||A~B||19701332\nL|1\n", "line 2 (P) field 7", "not a date"},
      {"H|~^\\&|\nL|1\n", "line 1", "no P record"},
  };
  for (const auto& c : cases) {
    SanteMessage m;
    std::vector<Issue> issues;
    EXPECT_FALSE(readSante(c.text, m, issues)) << c.text;
    EXPECT_TRUE(hasIssue(issues, c.where, c.part, true)) << c.text << " -> " << (issues.empty() ? "" : issues[0].where + ": " + issues[0].message);
  }
}

TEST(HprimDetect, TellsTheFlavoursApart) {
  EXPECT_EQ(detect(kNet), Flavour::kNet);
  EXPECT_EQ(detect(kSante), Flavour::kSante);
  EXPECT_EQ(detect("\xEF\xBB\xBF\r\n" + kSante), Flavour::kSante);
  EXPECT_EQ(detect("{\"resourceType\":\"Bundle\"}"), Flavour::kUnknown);
  EXPECT_EQ(detect("Hello\nworld"), Flavour::kUnknown);
  // Cut before its markers: still HPRIM Net (its reader then says it is truncated).
  EXPECT_EQ(detect(kNet.substr(0, kNet.find("****LAB****"))), Flavour::kNet);
}

const Json* findResource(const Json& bundle, const std::string& type, std::size_t nth = 0) {
  for (const auto& e : bundle["entry"])
    if (e["resource"]["resourceType"] == type && nth-- == 0) return &e["resource"];
  return nullptr;
}

TEST(HprimFhir, NetDocumentBecomesPatientDocumentAndObservations) {
  NetFile f;
  std::vector<Issue> issues;
  ASSERT_TRUE(readNet(kNet, f, issues));
  Json bundle;
  netToBundle(f.documents[0], bundle, issues);
  EXPECT_EQ(bundle["type"], "transaction");
  ASSERT_EQ(bundle["entry"].size(), 5u);
  const Json* patient = findResource(bundle, "Patient");
  ASSERT_TRUE(patient);
  EXPECT_EQ((*patient)["birthDate"], "1962-03-14");
  EXPECT_EQ((*patient)["name"][0]["given"], Json::array({"Marie", "Claire"}));
  EXPECT_EQ((*patient)["address"][0]["postalCode"], "77000");
  // The social-security number as NSS-NIR (it may be the insured person's): never an INS.
  EXPECT_EQ((*patient)["identifier"][0]["system"], "urn:oid:1.2.250.1.213.1.4.13");
  EXPECT_EQ((*patient)["identifier"][0]["value"], "262037712345694");
  const Json* doc = findResource(bundle, "DocumentReference");
  ASSERT_TRUE(doc);
  EXPECT_EQ((*doc)["content"][0]["attachment"]["contentType"], "text/plain; charset=utf-8");
  EXPECT_EQ((*doc)["context"]["period"]["start"], "2026-03-02");
  const Json* hb = findResource(bundle, "Observation", 0);
  EXPECT_EQ((*hb)["valueQuantity"]["value"], 13.5);
  EXPECT_EQ((*hb)["referenceRange"][0]["low"]["value"], 12);
  EXPECT_EQ((*hb)["note"][0]["text"], "8,4 mmol/L");
  const Json* fer = findResource(bundle, "Observation", 1);
  EXPECT_EQ((*fer)["valueQuantity"]["comparator"], "<");
  EXPECT_EQ((*fer)["interpretation"][0]["coding"][0]["code"], "L");
  const Json* aspect = findResource(bundle, "Observation", 2);
  EXPECT_EQ((*aspect)["valueString"], "Clair");
  EXPECT_EQ((*aspect)["subject"]["reference"], bundle["entry"][0]["fullUrl"]);
}

TEST(HprimFhir, ANirWithAWrongKeyIsNotAnIdentifier) {
  std::string text = kNet;
  text.replace(text.find(" 94\r\n"), 3, " 54");
  NetFile f;
  std::vector<Issue> issues;
  ASSERT_TRUE(readNet(text, f, issues));
  Json bundle;
  netToBundle(f.documents[0], bundle, issues);
  EXPECT_FALSE(findResource(bundle, "Patient")->contains("identifier"));
}

TEST(HprimFhir, SanteMessageBecomesReportsWithTheirResults) {
  SanteMessage m;
  std::vector<Issue> issues;
  ASSERT_TRUE(readSante(kSante, m, issues));
  Json bundle;
  santeToBundle(m, bundle, issues);
  const Json* patient = findResource(bundle, "Patient");
  EXPECT_EQ((*patient)["gender"], "male");
  EXPECT_EQ((*patient)["name"][0]["use"], "usual");
  EXPECT_EQ((*patient)["name"][1]["use"], "official");
  EXPECT_EQ((*patient)["name"][1]["family"], "DURAND");
  const Json* report = findResource(bundle, "DiagnosticReport");
  ASSERT_TRUE(report);
  EXPECT_EQ((*report)["result"].size(), 2u);
  EXPECT_EQ((*report)["effectiveDateTime"], "2026-03-02");
  const Json* glucose = findResource(bundle, "Observation", 1);
  EXPECT_EQ((*glucose)["code"]["coding"][0]["system"], "http://loinc.org");
  EXPECT_EQ((*glucose)["status"], "preliminary");
  EXPECT_EQ((*glucose)["interpretation"][0]["coding"][0]["code"], "H");
  const Json* hb = findResource(bundle, "Observation", 0);
  EXPECT_FALSE((*hb)["code"]["coding"][0].contains("system"));  // a local code
  EXPECT_EQ((*hb)["note"][0]["text"], "contr\xc3\xb4l\xc3\xa9 sur second pr\xc3\xa9l\xc3\xa8vement");
}

Json cied() {
  return Json::parse(R"({"resourceType": "Bundle", "type": "transaction", "entry": [
    {"resource": {"resourceType": "Patient", "name": [{"use": "usual", "family": "DUPONT"},
        {"use": "official", "family": "LEBLANC", "given": ["Marie", "Claire"]}], "birthDate": "1962-03-14",
      "identifier": [{"system": "urn:oid:1.2.250.1.213.1.4.13", "value": "262037712345694"},
                     {"system": "urn:oid:1.2.250.1.213.1.4.8", "value": "262037712345694"}]}},
    {"resource": {"resourceType": "Composition", "title": "Compte rendu CIED", "date": "2026-03-02",
      "identifier": {"value": "D77-CIED-2026-000001.report"},
      "extension": [{"url": "https://douleur77.fr/fhir/StructureDefinition/report-text", "valueString": "Lombalgie chronique."}]}},
    {"resource": {"resourceType": "Observation", "status": "final",
      "code": {"coding": [{"system": "http://loinc.org", "code": "72514-3"}]}, "valueQuantity": {"value": 7.5, "unit": "Level"},
      "component": [{"code": {"coding": [{"system": "http://loinc.org", "code": "38214-3"}]}, "valueQuantity": {"value": 75}}]}},
    {"resource": {"resourceType": "Observation", "status": "entered-in-error",
      "code": {"coding": [{"system": "http://loinc.org", "code": "72514-3"}]}, "valueQuantity": {"value": 2}}},
    {"resource": {"resourceType": "Observation", "status": "final",
      "code": {"coding": [{"system": "https://douleur77.fr/fhir/CodeSystem/d77-ind", "code": "SICK-LEAVE-DAYS"}]},
      "valueQuantity": {"value": 45, "unit": "d"}}}]})");
}

TEST(HprimFhir, ReportAndScoresBecomeAnHprimNetDocument) {
  NetDocument d;
  std::string error;
  ASSERT_TRUE(netFromFhir(cied(), {"D77 R\xc3\xa9seau Douleur 77", "10101234567 Dr Martin"}, d, error)) << error;
  EXPECT_EQ(d.family, "LEBLANC");  // the official (birth) name
  EXPECT_EQ(d.given, "Marie Claire");
  EXPECT_EQ(d.birthDate, "14/03/1962");
  EXPECT_EQ(d.date, "02/03/2026");
  EXPECT_EQ(d.reference, "Compte rendu CIED");
  EXPECT_EQ(d.requestNumber, "D77-CIED-2026-000001.report");
  EXPECT_EQ(d.sender, "D77 R\xc3\xa9seau Douleur 77");
  ASSERT_EQ(d.results.size(), 3u);  // the score, its VAS component, the sick-leave days (not the erroneous one)
  EXPECT_EQ(d.results[0].label, "Intensit\xc3\xa9 de la douleur (\xc3\xa9" "chelle 0-10)");
  EXPECT_EQ(d.results[0].type, "N");
  EXPECT_EQ(d.results[0].value, "7.5");
  EXPECT_EQ(d.results[0].unit, "");
  EXPECT_EQ(d.results[1].code, "38214-3");
  EXPECT_EQ(d.results[2].value, "45");
  EXPECT_EQ(d.results[2].unit, "j");  // UCUM's d as French GP software shows it
  EXPECT_EQ(d.text.rfind("Lombalgie chronique.", 0), 0u);
  EXPECT_NE(d.text.find("Jours d'arr\xc3\xaat de travail : 45"), std::string::npos);
  // What is written reads back to the same results.
  NetFile f;
  std::vector<Issue> issues;
  ASSERT_TRUE(readNet(writeNet({d}, Encoding::kLatin1), f, issues));
  EXPECT_TRUE(issues.empty());
  ASSERT_EQ(f.documents[0].results.size(), 3u);
  EXPECT_EQ(f.documents[0].results[0].label, d.results[0].label);
}

TEST(HprimFhir, RefusesABundleWithoutPatientOrContent) {
  NetDocument d;
  std::string error;
  Json noPatient = cied();
  noPatient["entry"].erase(0);
  EXPECT_FALSE(netFromFhir(noPatient, {}, d, error));
  EXPECT_NE(error.find("no Patient"), std::string::npos);
  Json empty = Json::parse(R"({"resourceType": "Bundle", "entry": [{"resource": {"resourceType": "Patient", "name": [{"family": "X"}]}}]})");
  EXPECT_FALSE(netFromFhir(empty, {}, d, error));
  EXPECT_NE(error.find("nothing to send"), std::string::npos);
  EXPECT_FALSE(netFromFhir(Json::array(), {}, d, error));
}

}  // namespace
}  // namespace passerelle::hprim
