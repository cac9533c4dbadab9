// The network's documents: the JSON Schema check and its issues, the XML form both ways, and the
// examples in schemas/network/examples (read from the source tree).
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <thread>

#include "mappings/network/documents/document_schemas.h"
#include "mappings/network/documents/xml_form.h"

using namespace passerelle::network;
namespace fs = std::filesystem;

namespace {

const fs::path kExamples = PASSERELLE_NETWORK_EXAMPLES;

std::string readFile(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

Json example(const std::string& kind) { return Json::parse(readFile(kExamples / (kind + ".json"))); }

std::string describe(const std::vector<DocumentIssue>& issues) {
  std::string out;
  for (const auto& i : issues) out += "  [" + i.path + "] " + i.message + "\n";
  return out;
}

const DocumentIssue* issueAt(const std::vector<DocumentIssue>& issues, const std::string& path) {
  for (const auto& i : issues)
    if (i.path == path) return &i;
  return nullptr;
}

std::vector<DocumentIssue> check(const std::string& kind, const Json& doc) {
  return DocumentSchemas::instance().validate(kind, doc);
}

}  // namespace

TEST(NetworkDocumentsTest, KnowsTheFourteenKindsInReadmeOrder) {
  const auto kinds = DocumentSchemas::instance().kinds();
  ASSERT_EQ(kinds.size(), 14u);
  EXPECT_EQ(kinds.front(), "professional");
  EXPECT_EQ(kinds.back(), "opera-activity");
  EXPECT_TRUE(DocumentSchemas::instance().hasKind("consent-renewal"));
  EXPECT_FALSE(DocumentSchemas::instance().hasKind("common"));
  EXPECT_FALSE(DocumentSchemas::instance().schemaText("liaison-sheet").empty());
  EXPECT_FALSE(DocumentSchemas::instance().schemaText("common").empty());
  EXPECT_NE(DocumentSchemas::instance().xsdText("liaison-sheet").find("name=\"liaisonSheet\""), std::string::npos);
}

TEST(NetworkDocumentsTest, EveryExampleJsonValidates) {
  for (const auto& kind : DocumentSchemas::instance().kinds()) {
    Json doc = example(kind);
    EXPECT_EQ(doc.value("documentType", ""), kind);
    auto issues = check(kind, doc);
    EXPECT_TRUE(issues.empty()) << kind << ":\n" << describe(issues);
  }
}

TEST(NetworkDocumentsTest, EveryExampleXmlConvertsToItsJsonExampleAndValidates) {
  for (const auto& kind : DocumentSchemas::instance().kinds()) {
    Json doc;
    std::vector<DocumentIssue> issues;
    ASSERT_TRUE(xmlToJson(kind, readFile(kExamples / (kind + ".xml")), doc, issues)) << kind << ":\n"
                                                                                     << describe(issues);
    EXPECT_EQ(doc, example(kind)) << kind << ":\n" << doc.dump(2);
    EXPECT_EQ(doc.dump(), example(kind).dump()) << kind;
    auto problems = check(kind, doc);
    EXPECT_TRUE(problems.empty()) << kind << ":\n" << describe(problems);
  }
}

TEST(NetworkDocumentsTest, JsonToXmlWritesTheExampleXmlAndReadsBackTheExample) {
  for (const auto& kind : DocumentSchemas::instance().kinds()) {
    const Json doc = example(kind);
    std::string xml = jsonToXml(kind, doc);
    EXPECT_EQ(xml, readFile(kExamples / (kind + ".xml"))) << kind;
    Json back;
    std::vector<DocumentIssue> issues;
    ASSERT_TRUE(xmlToJson(kind, xml, back, issues)) << kind << ":\n" << describe(issues);
    EXPECT_EQ(back, doc) << kind;
  }
}

TEST(NetworkDocumentsTest, JsonToXmlWritesMembersInSchemaOrderWhateverTheirOrderInTheDocument) {
  Json doc = example("consent-renewal");
  Json shuffled = Json::object();
  for (const char* key : {"renewalDate", "gp", "patient", "documentId", "schemaVersion", "documentType"})
    shuffled[key] = doc[key];
  Json back;
  std::vector<DocumentIssue> issues;
  ASSERT_TRUE(xmlToJson("consent-renewal", jsonToXml("consent-renewal", shuffled), back, issues)) << describe(issues);
  EXPECT_EQ(back, doc);
}

TEST(NetworkDocumentsTest, XmlEscapesTextAndKeepsAccents) {
  Json doc = example("consent-withdrawal");
  doc["reason"] = "Douleur <intense> & \"persistante\" à l'effort\r\nsuite";
  std::string xml = jsonToXml("consent-withdrawal", doc);
  EXPECT_NE(xml.find("&lt;intense&gt; &amp;"), std::string::npos) << xml;
  Json back;
  std::vector<DocumentIssue> issues;
  ASSERT_TRUE(xmlToJson("consent-withdrawal", xml, back, issues)) << describe(issues);
  EXPECT_EQ(back, doc);
}

TEST(NetworkDocumentsTest, RequiredArrayWithNoItemReadsBackAsEmptyArray) {
  Json doc = example("csb");
  doc["treatments"] = Json::array();
  ASSERT_TRUE(check("csb", doc).empty());
  Json back;
  std::vector<DocumentIssue> issues;
  ASSERT_TRUE(xmlToJson("csb", jsonToXml("csb", doc), back, issues)) << describe(issues);
  EXPECT_EQ(back, doc);
}

TEST(NetworkDocumentsTest, MissingRequiredMemberReportsItsPath) {
  Json doc = example("inclusion");
  doc["patient"].erase("birthDate");
  auto issues = check("inclusion", doc);
  ASSERT_EQ(issues.size(), 1u) << describe(issues);
  EXPECT_EQ(issues[0].path, "patient.birthDate");
  EXPECT_NE(issues[0].message.find("missing"), std::string::npos);
}

TEST(NetworkDocumentsTest, WrongPatternReportsThePathAndThePattern) {
  Json doc = example("inclusion");
  doc["patient"]["birthDate"] = "14/05/1985";
  auto issues = check("inclusion", doc);
  ASSERT_EQ(issues.size(), 1u) << describe(issues);
  EXPECT_EQ(issues[0].path, "patient.birthDate");
  EXPECT_NE(issues[0].message.find("^[0-9]{4}-[0-9]{2}-[0-9]{2}$"), std::string::npos) << issues[0].message;
}

TEST(NetworkDocumentsTest, DateThatIsNotOnTheCalendarIsRefused) {
  Json doc = example("inclusion");
  doc["patient"]["birthDate"] = "1985-02-29";
  auto issues = check("inclusion", doc);
  ASSERT_EQ(issues.size(), 1u) << describe(issues);
  EXPECT_EQ(issues[0].path, "patient.birthDate");
  EXPECT_NE(issues[0].message.find("calendar"), std::string::npos);
  doc["patient"]["birthDate"] = "1984-02-29";
  EXPECT_TRUE(check("inclusion", doc).empty());
}

TEST(NetworkDocumentsTest, WrongTypeReportsThePath) {
  Json doc = example("inclusion");
  doc["criteria"]["activityImpact"]["met"] = "yes";
  auto issues = check("inclusion", doc);
  ASSERT_EQ(issues.size(), 1u) << describe(issues);
  EXPECT_EQ(issues[0].path, "criteria.activityImpact.met");
  EXPECT_NE(issues[0].message.find("true or false"), std::string::npos) << issues[0].message;
}

TEST(NetworkDocumentsTest, NumberOutOfRangeOrWithTooManyDecimalsReportsThePath) {
  Json doc = example("cied");
  doc["measures"]["vas"]["value"] = 12;
  auto issues = check("cied", doc);
  ASSERT_EQ(issues.size(), 1u) << describe(issues);
  EXPECT_EQ(issues[0].path, "measures.vas.value");
  EXPECT_NE(issues[0].message.find("maximum 10"), std::string::npos) << issues[0].message;

  doc["measures"]["vas"]["value"] = 7.25;
  issues = check("cied", doc);
  ASSERT_EQ(issues.size(), 1u) << describe(issues);
  EXPECT_EQ(issues[0].path, "measures.vas.value");
  EXPECT_NE(issues[0].message.find("decimals"), std::string::npos) << issues[0].message;

  doc["measures"]["vas"]["value"] = "7.5";
  issues = check("cied", doc);
  ASSERT_EQ(issues.size(), 1u) << describe(issues);
  EXPECT_EQ(issues[0].path, "measures.vas.value");
}

TEST(NetworkDocumentsTest, WrongEnumValueListsTheAllowedValues) {
  Json doc = example("inclusion");
  doc["pathology"] = "fibromyalgia";
  auto issues = check("inclusion", doc);
  ASSERT_EQ(issues.size(), 1u) << describe(issues);
  EXPECT_EQ(issues[0].path, "pathology");
  EXPECT_NE(issues[0].message.find("low-back-pain, migraine, cancer"), std::string::npos) << issues[0].message;
}

TEST(NetworkDocumentsTest, ArrayItemPathsHaveTheirIndex) {
  Json doc = example("inclusion");
  doc["patient"]["given"][1] = "";
  auto issues = check("inclusion", doc);
  ASSERT_EQ(issues.size(), 1u) << describe(issues);
  EXPECT_EQ(issues[0].path, "patient.given[1]");
}

TEST(NetworkDocumentsTest, AdditionalPropertiesAreRefusedWithTheirPaths) {
  Json doc = example("consent");
  doc["signatories"]["witness"] = true;
  doc["comment"] = "x";
  auto issues = check("consent", doc);
  ASSERT_EQ(issues.size(), 2u) << describe(issues);
  EXPECT_NE(issueAt(issues, "signatories.witness"), nullptr) << describe(issues);
  EXPECT_NE(issueAt(issues, "comment"), nullptr) << describe(issues);
}

TEST(NetworkDocumentsTest, DocumentTypeMustBeTheKind) {
  Json doc = example("consent");
  auto issues = check("consent-renewal", doc);
  ASSERT_FALSE(issues.empty());
  const DocumentIssue* type = issueAt(issues, "documentType");
  ASSERT_NE(type, nullptr) << describe(issues);
  EXPECT_NE(type->message.find("\"consent-renewal\""), std::string::npos) << type->message;
}

TEST(NetworkDocumentsTest, PatientReferenceHoldsExactlyOneIdentifier) {
  Json doc = example("consent");
  doc["patient"]["nir"] = "185057512345673";
  auto issues = check("consent", doc);
  ASSERT_EQ(issues.size(), 1u) << describe(issues);
  EXPECT_EQ(issues[0].path, "patient");
  EXPECT_NE(issues[0].message.find("only one of 'nir', 'nia' or 'networkId'"), std::string::npos) << issues[0].message;

  doc["patient"] = Json::object();
  issues = check("consent", doc);
  ASSERT_EQ(issues.size(), 1u) << describe(issues);
  EXPECT_NE(issues[0].message.find("needs one of"), std::string::npos) << issues[0].message;
}

TEST(NetworkDocumentsTest, IdentityNeedsNirOrNiaNotBoth) {
  Json doc = example("inclusion");
  doc["patient"].erase("nir");
  auto issues = check("inclusion", doc);
  ASSERT_EQ(issues.size(), 1u) << describe(issues);
  EXPECT_EQ(issues[0].path, "patient");
  EXPECT_NE(issues[0].message.find("exactly one of 'nir' or 'nia'"), std::string::npos) << issues[0].message;

  doc["patient"]["nir"] = "185057512345673";
  doc["patient"]["nia"] = "185057512345673";
  issues = check("inclusion", doc);
  ASSERT_EQ(issues.size(), 1u) << describe(issues);
  EXPECT_EQ(issues[0].path, "patient");
}

TEST(NetworkDocumentsTest, LiaisonSheetHasTheSectionOfItsPhaseOnly) {
  Json doc = example("liaison-sheet");
  doc["phase"] = "end";
  auto issues = check("liaison-sheet", doc);
  EXPECT_NE(issueAt(issues, "end"), nullptr) << describe(issues);
  EXPECT_NE(issueAt(issues, "start"), nullptr) << describe(issues);
  EXPECT_EQ(issues.size(), 2u) << describe(issues);
}

TEST(NetworkDocumentsTest, ExitReasonsDependOnTheTypeAndExclusionNeedsItsReferences) {
  Json doc = example("exit");
  doc["reason"] = "age";
  auto issues = check("exit", doc);
  ASSERT_EQ(issues.size(), 1u) << describe(issues);
  EXPECT_EQ(issues[0].path, "reason");

  doc["reason"] = "exclusion";
  issues = check("exit", doc);
  ASSERT_EQ(issues.size(), 1u) << describe(issues);
  EXPECT_EQ(issues[0].path, "exclusion");

  doc["exclusion"] = {{"decidingBody", "board"}, {"decisionRef", "CA-2027-04"}, {"committeeOpinionRef", "CM-2027-11"}};
  EXPECT_TRUE(check("exit", doc).empty()) << describe(check("exit", doc));

  doc["reason"] = "death";
  issues = check("exit", doc);
  ASSERT_EQ(issues.size(), 1u) << describe(issues);
  EXPECT_EQ(issues[0].path, "exclusion");
}

TEST(NetworkDocumentsTest, OperaActivityHasOnePatientUnlessCollective) {
  Json doc = example("opera-activity");
  doc["patients"].push_back({{"networkId", "OP-000002"}});
  auto issues = check("opera-activity", doc);
  ASSERT_EQ(issues.size(), 1u) << describe(issues);
  EXPECT_EQ(issues[0].path, "patients");
  doc["activity"] = "etp-collective";
  EXPECT_TRUE(check("opera-activity", doc).empty());
}

TEST(NetworkDocumentsTest, Base64IsChecked) {
  Json doc = example("consent");
  doc["form"]["data"] = "not base64!";
  auto issues = check("consent", doc);
  ASSERT_EQ(issues.size(), 1u) << describe(issues);
  EXPECT_EQ(issues[0].path, "form.data");
}

TEST(NetworkDocumentsTest, WrongShapesAnywhereDoNotThrow) {
  for (const auto& kind : DocumentSchemas::instance().kinds()) {
    for (const Json& doc : {Json(nullptr), Json(3), Json::array(), Json::object(),
                            Json{{"documentType", kind}, {"patient", {{"nir", {{"a", 1}}}}}, {"date", {{"x", 1}}}}}) {
      auto issues = check(kind, doc);
      EXPECT_FALSE(issues.empty()) << kind;
    }
  }
}

TEST(NetworkDocumentsTest, UnknownKindIsAnIssueNotACrash) {
  auto issues = check("prescription", example("consent"));
  ASSERT_EQ(issues.size(), 1u);
  EXPECT_EQ(issues[0].path, "");
  EXPECT_NE(issues[0].message.find("unknown document kind"), std::string::npos);

  Json out;
  std::vector<DocumentIssue> xmlIssues;
  EXPECT_FALSE(xmlToJson("prescription", "<prescription/>", out, xmlIssues));
  ASSERT_EQ(xmlIssues.size(), 1u);
  EXPECT_NE(xmlIssues[0].message.find("unknown document kind"), std::string::npos);
  EXPECT_EQ(jsonToXml("prescription", example("consent")), "");
  EXPECT_TRUE(DocumentSchemas::instance().schemaText("prescription").empty());
}

TEST(NetworkDocumentsTest, DoctypeIsRefusedBeforeParsing) {
  Json out;
  std::vector<DocumentIssue> issues;
  EXPECT_FALSE(xmlToJson("consent-renewal",
                         "<?xml version=\"1.0\"?>\n<!DOCTYPE consentRenewal>\n"
                         "<consentRenewal xmlns=\"urn:douleur77:network:1\"/>",
                         out, issues));
  ASSERT_EQ(issues.size(), 1u) << describe(issues);
  EXPECT_NE(issues[0].message.find("DOCTYPE"), std::string::npos);
}

TEST(NetworkDocumentsTest, DoctypeWithAnExternalEntityIsRefused) {
  std::string xml = readFile(kExamples / "consent-withdrawal.xml");
  xml.replace(xml.find("<consentWithdrawal"), 0,
              "<!DOCTYPE consentWithdrawal [ <!ENTITY secret SYSTEM \"file:///etc/passwd\"> ]>\n");
  xml.replace(xml.find("<reason>") + 8, 0, "&secret;");
  Json out;
  std::vector<DocumentIssue> issues;
  EXPECT_FALSE(xmlToJson("consent-withdrawal", xml, out, issues));
  ASSERT_EQ(issues.size(), 1u) << describe(issues);
  EXPECT_NE(issues[0].message.find("DOCTYPE"), std::string::npos);
  EXPECT_EQ(out, Json());
}

TEST(NetworkDocumentsTest, EntityReferenceWithoutDeclarationIsAnErrorNotAFetch) {
  std::string xml = readFile(kExamples / "consent-withdrawal.xml");
  xml.replace(xml.find("<reason>") + 8, 0, "&secret;");
  Json out;
  std::vector<DocumentIssue> issues;
  EXPECT_FALSE(xmlToJson("consent-withdrawal", xml, out, issues));
  ASSERT_FALSE(issues.empty());
  EXPECT_NE(issues[0].message.find("line "), std::string::npos) << describe(issues);
}

TEST(NetworkDocumentsTest, MalformedXmlGivesLineAndColumn) {
  Json out;
  std::vector<DocumentIssue> issues;
  EXPECT_FALSE(xmlToJson("consent-renewal",
                         "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
                         "<consentRenewal xmlns=\"urn:douleur77:network:1\">\n"
                         "  <documentType>consent-renewal</documentType>\n"
                         "  <schemaVersion>1.0</schemaVerzion>\n"
                         "</consentRenewal>\n",
                         out, issues));
  ASSERT_FALSE(issues.empty());
  EXPECT_NE(issues[0].message.find("line 4, column"), std::string::npos) << describe(issues);
}

TEST(NetworkDocumentsTest, XsdViolationNamesLineColumnAndElementPath) {
  std::string xml = readFile(kExamples / "inclusion.xml");
  xml.replace(xml.find("<birthDate>1985-05-14"), 21, "<birthDate>14/05/1985");
  Json out;
  std::vector<DocumentIssue> issues;
  EXPECT_FALSE(xmlToJson("inclusion", xml, out, issues));
  ASSERT_FALSE(issues.empty());
  EXPECT_EQ(issues[0].path, "patient.birthDate") << describe(issues);
  EXPECT_NE(issues[0].message.find("line "), std::string::npos);
  EXPECT_NE(issues[0].message.find(", column "), std::string::npos);
}

TEST(NetworkDocumentsTest, RepeatedElementPathsCarryTheirIndex) {
  std::string xml = readFile(kExamples / "inclusion.xml");
  xml.replace(xml.find("<given>Pierre</given>"), 21, "<given>Pierre<x/></given>");
  Json out;
  std::vector<DocumentIssue> issues;
  EXPECT_FALSE(xmlToJson("inclusion", xml, out, issues));
  ASSERT_FALSE(issues.empty());
  EXPECT_EQ(issues[0].path, "patient.given[1]") << describe(issues);
}

TEST(NetworkDocumentsTest, WrongRootOrNamespaceIsRefused) {
  std::string xml = readFile(kExamples / "consent-renewal.xml");
  Json out;
  std::vector<DocumentIssue> issues;
  EXPECT_FALSE(xmlToJson("consent", xml, out, issues));
  EXPECT_FALSE(issues.empty());
  issues.clear();
  std::string noNamespace = xml;
  noNamespace.replace(noNamespace.find(" xmlns=\"urn:douleur77:network:1\""), 32, "");
  EXPECT_FALSE(xmlToJson("consent-renewal", noNamespace, out, issues));
  EXPECT_FALSE(issues.empty());
}

TEST(NetworkDocumentsTest, SchemaLocationHintsAreIgnored) {
  std::string xml = readFile(kExamples / "consent-renewal.xml");
  xml.replace(xml.find(" xmlns="), 0,
              " xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\""
              " xsi:schemaLocation=\"urn:douleur77:network:1 http://127.0.0.1:9/evil.xsd\"");
  Json out;
  std::vector<DocumentIssue> issues;
  EXPECT_TRUE(xmlToJson("consent-renewal", xml, out, issues)) << describe(issues);
  EXPECT_EQ(out, example("consent-renewal"));
}

TEST(NetworkDocumentsTest, XmlOverTheSizeLimitIsRefused) {
  std::string xml = readFile(kExamples / "consent-withdrawal.xml");
  std::string big = xml;
  big.replace(big.find("</reason>"), 0, std::string((1u << 20), 'x'));
  Json out;
  std::vector<DocumentIssue> issues;
  EXPECT_FALSE(xmlToJson("consent-withdrawal", big, out, issues));
  ASSERT_EQ(issues.size(), 1u);
  EXPECT_NE(issues[0].message.find("over the limit"), std::string::npos);

  issues.clear();
  EXPECT_FALSE(xmlToJson("consent-withdrawal", xml, out, issues, XmlLimits{100}));
  ASSERT_EQ(issues.size(), 1u);
}

TEST(NetworkDocumentsTest, EncodingsOtherThanUtf8AreRefused) {
  std::string xml = readFile(kExamples / "consent-renewal.xml");
  xml.replace(xml.find("UTF-8"), 5, "ISO-8859-1");
  Json out;
  std::vector<DocumentIssue> issues;
  EXPECT_FALSE(xmlToJson("consent-renewal", xml, out, issues));
  ASSERT_EQ(issues.size(), 1u);
  EXPECT_NE(issues[0].message.find("UTF-8"), std::string::npos);
}

TEST(NetworkDocumentsTest, ConvertsConcurrentlyFromSeveralThreads) {
  std::vector<std::thread> threads;
  std::vector<int> failures(4, 0);
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([t, &failures] {
      for (int i = 0; i < 20; ++i) {
        for (const auto& kind : {std::string("cied"), std::string("inclusion"), std::string("exit")}) {
          Json out;
          std::vector<DocumentIssue> issues;
          if (!xmlToJson(kind, jsonToXml(kind, example(kind)), out, issues) ||
              !DocumentSchemas::instance().validate(kind, out).empty())
            ++failures[t];
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  for (int f : failures) EXPECT_EQ(f, 0);
}

namespace passerelle::network {
namespace {

TEST(NetworkDocumentsOrderTest, DocumentsAreWrittenInSchemaOrder) {
  const auto& schemas = DocumentSchemas::instance();
  Json doc = Json::parse(R"({"report": {"text": "x"}, "measures": {"vas": {"method": "vas", "value": 3}},
    "documentId": "D1", "documentType": "cied", "zzz": 1})");
  Json ordered = schemas.inSchemaOrder("cied", doc);
  std::vector<std::string> keys;
  for (const auto& [k, v] : ordered.items()) keys.push_back(k);
  EXPECT_EQ(keys, (std::vector<std::string>{"documentType", "documentId", "measures", "report", "zzz"}));
  std::vector<std::string> vas;
  for (const auto& [k, v] : ordered["measures"]["vas"].items()) vas.push_back(k);
  EXPECT_EQ(vas, (std::vector<std::string>{"value", "method"}));
  EXPECT_EQ(ordered, schemas.inSchemaOrder("cied", ordered));
}

}  // namespace
}  // namespace passerelle::network

namespace passerelle::network {
namespace {

TEST(NetworkDocumentsBlankTest, BlankTextIsRefusedWithItsPath) {
  const auto& schemas = DocumentSchemas::instance();
  std::ifstream in(std::string(PASSERELLE_NETWORK_EXAMPLES) + "/cied.json");
  std::stringstream ss;
  ss << in.rdbuf();
  Json doc = Json::parse(ss.str());
  ASSERT_TRUE(schemas.validate("cied", doc).empty());
  doc["report"]["text"] = " \n\t ";
  auto issues = schemas.validate("cied", doc);
  ASSERT_EQ(issues.size(), 1u);
  EXPECT_EQ(issues[0].path, "report.text");
}

}  // namespace
}  // namespace passerelle::network
