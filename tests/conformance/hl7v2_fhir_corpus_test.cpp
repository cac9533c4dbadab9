// HL7 v2 -> FHIR against the FHIR-Converter's expected Bundles (../shared/corpora/ms-fhir-converter,
// MIT) and the ANS's French examples. For every message of a type the gateway reads (ADT A01, A03,
// A04, A08, A28, A31, A40; MDM T02, T10; ORU R01; RRI I12), the conversion must succeed and agree
// with the expected Bundle on what both carry: the patient's identifiers (every value written is
// one the expected Patient holds), a name with the same family and given names, the birth date and
// the gender; an Encounter for the visit events, a DocumentReference for the reports. Messages of
// other types are refused as such by the connector's reading (HL7 code 200), never misread, and
// converted by their segments (PID, PV1, OBX) by the conversion's, compared the same way, with each
// Observation's code among the expected ones. Skipped, saying so, when ../shared/corpora is absent.
#include <gtest/gtest.h>
#include <zlib.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

#include "mappings/hl7v2/fhir_mapping.h"
#include "mappings/hl7v2/message.h"
#include "tests/support/test_gateway.h"

namespace fs = std::filesystem;
using namespace passerelle::hl7v2;
using Json = nlohmann::json;

namespace {

std::string gunzip(const fs::path& p) { return passerelle::testing::gunzipFile(p.string()); }

const Json* resourceOf(const Json& bundle, const std::string& type) {
  if (!bundle.contains("entry") || !bundle["entry"].is_array()) return nullptr;
  for (const auto& e : bundle["entry"])
    if (e.contains("resource") && e["resource"].value("resourceType", "") == type) return &e["resource"];
  return nullptr;
}

int countOf(const Json& bundle, const std::string& type) {
  int n = 0;
  for (const auto& e : bundle.value("entry", Json::array()))
    if (e.contains("resource") && e["resource"].value("resourceType", "") == type) ++n;
  return n;
}

// What the two Patients disagree on ("" when nothing).
std::string comparePatients(const Json& mine, const Json& expected) {
  std::set<std::string> values;
  for (const auto& id : expected.value("identifier", Json::array()))
    if (id.is_object() && id.contains("value") && id["value"].is_string()) values.insert(id["value"].get<std::string>());
  for (const auto& id : mine.value("identifier", Json::array()))
    if (!values.count(id.value("value", ""))) return "identifier " + id.value("value", "") + " is not the expected Patient's";
  if (mine.contains("name")) {
    const Json& n = mine["name"][0];
    bool found = false;
    for (const auto& e : expected.value("name", Json::array())) {
      if (!e.is_object() || e.value("family", "") != n.value("family", "")) continue;
      Json given = e.value("given", Json::array());
      bool all = true;
      for (const auto& g : n.value("given", Json::array())) all = all && std::find(given.begin(), given.end(), g) != given.end();
      if (all) found = true;
    }
    if (!found) return "no expected name is " + n.dump();
  }
  if (mine.value("birthDate", "") != expected.value("birthDate", "").substr(0, mine.value("birthDate", "").size()))
    return "birthDate " + mine.value("birthDate", "") + " vs " + expected.value("birthDate", "");
  if (mine.value("gender", "") != expected.value("gender", "")) return "gender " + mine.value("gender", "") + " vs " + expected.value("gender", "");
  return {};
}

}  // namespace

TEST(Hl7v2FhirCorpusTest, ConversionsAgreeWithTheFhirConvertersExpectedBundles) {
  std::string corpora = passerelle::testing::corporaDir();
  fs::path root = fs::path(corpora) / "ms-fhir-converter";
  if (corpora.empty() || !fs::exists(root / "cases.tsv")) GTEST_SKIP() << "../shared/corpora/ms-fhir-converter is absent";
  std::ifstream cases(root / "cases.tsv");
  int converted = 0, refused = 0, patients = 0, encounters = 0, statusByTheMap = 0, observationsCompared = 0, valuesAgreeing = 0;
  std::map<std::string, int> produced;
  for (std::string line; std::getline(cases, line);) {
    if (line.empty() || line[0] == '#' || line.rfind("Hl7v2\t", 0) != 0) continue;
    std::vector<std::string> cols;
    std::stringstream ls(line);
    for (std::string c; std::getline(ls, c, '\t');) cols.push_back(c);
    ASSERT_GE(cols.size(), 4u) << line;
    std::string input = passerelle::testing::readFile(root / cols[2]);
    std::vector<Issue> issues;
    auto m = Message::parse(input, issues);
    ASSERT_TRUE(m) << cols[2];
    auto errorsOf = [](const std::vector<Issue>& list) {
      std::string errors;
      for (const auto& i : list)
        if (i.severity == "error") errors += i.location + " " + i.code + " " + i.message + "; ";
      return errors;
    };
    // The hospital connector's reading: a type outside the referral loop is refused as such.
    std::vector<Issue> strict = issues;
    InboundFacts loop = readInbound(*m, strict);
    if (!supportedInbound(loop.type, loop.event)) {
      ++refused;
      EXPECT_NE(errorsOf(strict).find(" 200 "), std::string::npos) << cols[2] << " should be refused as an unsupported type";
    }
    // The conversion's: every type, by its segments where it is not one of the loop's.
    InboundFacts f = readInbound(*m, issues, OtherTypes::kReadSegments);
    std::string errors = errorsOf(issues);
    EXPECT_TRUE(errors.empty()) << cols[2] << ": " << errors;
    if (!errors.empty()) continue;
    ++converted;
    Json mine;
    toBundle(f, mine);
    Json expected = Json::parse(gunzip(root / cols[3]), nullptr, false);
    ASSERT_FALSE(expected.is_discarded()) << cols[3];
    const Json* p = resourceOf(mine, "Patient");
    const Json* e = resourceOf(expected, "Patient");
    // For the merge and move events the FHIR-Converter writes no Patient (a Linkage, or the
    // Encounter moved); the segment maps make a Patient of PID (and an Encounter of PV1) in every message.
    static const std::set<std::string> merges = {"A39", "A40", "A41", "A42", "A44", "A45", "A47", "A49", "A50", "A51"};
    bool linkageInstead = merges.count(f.event) && !e;
    if (p && e) {
      ++patients;
      EXPECT_EQ(comparePatients(*p, *e), "") << cols[2];
    } else if (!linkageInstead) {
      EXPECT_EQ(p != nullptr, e != nullptr) << cols[2] << ": a Patient on one side only";
    }
    // The Encounter's class and status follow the official maps (tables 0004 and 0003), as theirs.
    if (const Json* me = resourceOf(mine, "Encounter"))
      if (const Json* ex = resourceOf(expected, "Encounter")) {
        ++encounters;
        EXPECT_EQ((*me)["class"].value("code", ""), (*ex).value("class", Json::object()).value("code", "")) << cols[2];
        // The status: where the converter's sample differs from the v2-to-FHIR map of table 0003
        // (A04 -> planned there, in-progress in the sample), the map is the rule.
        // (The events of the map; any other leaves the status unknown.)
        static const std::map<std::string, std::string> event = {{"A01", "in-progress"}, {"A02", "in-progress"}, {"A03", "finished"},
                                                                 {"A04", "planned"},     {"A05", "planned"},     {"A08", "unknown"},
                                                                 {"A11", "cancelled"},   {"A13", "in-progress"}};
        std::string status = (*me).value("status", "");
        if (status != (*ex).value("status", "")) {
          ++statusByTheMap;
          std::string byMap = event.count(f.event) ? event.at(f.event) : "unknown";
          EXPECT_TRUE(status == "finished" || status == byMap) << cols[2] << ": " << status;
        }
      }
    for (const char* type : {"Encounter", "DocumentReference", "Observation"}) {
      int n = countOf(mine, type);
      produced[type] += n;
      if (n > 0 && !(linkageInstead && std::string(type) == "Encounter")) {
        EXPECT_GE(countOf(expected, type), n) << cols[2] << ": " << type << " not in the expected Bundle";
      }
    }
    // Each Observation's code is one of the expected Observations' codes, with the same value where
    // both carry a quantity or a string.
    std::multiset<std::string> expectedResults;
    for (const auto& e : expected.value("entry", Json::array())) {
      const Json& r = e.value("resource", Json::object());
      if (r.value("resourceType", "") != "Observation") continue;
      for (const auto& c : r.value("code", Json::object()).value("coding", Json::array())) {
        std::string code = c.value("code", "");
        if (r.contains("valueQuantity") && r["valueQuantity"].contains("value")) code += "=" + r["valueQuantity"]["value"].dump();
        else if (r.contains("valueString")) code += "=" + r["valueString"].get<std::string>();
        expectedResults.insert(code);
        expectedResults.insert(c.value("code", ""));
      }
    }
    for (const auto& e : mine["entry"]) {
      const Json& r = e["resource"];
      if (r["resourceType"] != "Observation") continue;
      ++observationsCompared;
      std::string code = r["code"]["coding"][0].value("code", "");
      EXPECT_TRUE(expectedResults.count(code)) << cols[2] << ": no expected Observation is coded " << code;
      std::string valued = code;
      if (r.contains("valueQuantity")) valued += "=" + r["valueQuantity"]["value"].dump();
      else if (r.contains("valueString")) valued += "=" + r["valueString"].get<std::string>();
      if (valued != code && expectedResults.count(valued)) ++valuesAgreeing;
    }
  }
  std::cout << "FHIR-Converter corpus: " << converted << " messages converted (" << patients << " Patients compared, " << encounters
            << " Encounters' class and status compared (" << statusByTheMap << " statuses by the official map where the sample differs), "
            << produced["Encounter"] << " Encounters, " << produced["DocumentReference"] << " DocumentReferences, " << produced["Observation"]
            << " Observations, " << observationsCompared << " Observation codes found among the expected ones, " << valuesAgreeing
            << " with the same value); " << refused << " of types outside the referral loop refused as such by the connector's reading\n";
  EXPECT_GT(converted, 70);
  EXPECT_GT(refused, 10);
}

TEST(Hl7v2FhirCorpusTest, TheAnsReportsConvertToADocumentReferenceCarryingTheCda) {
  std::string corpora = passerelle::testing::corporaDir();
  fs::path root = fs::path(corpora) / "ans-hl7v2-exemples";
  if (corpora.empty() || !fs::exists(root)) GTEST_SKIP() << "../shared/corpora/ans-hl7v2-exemples is absent";
  int documents = 0, unreadable = 0, badBase64 = 0;
  for (const auto& entry : fs::recursive_directory_iterator(root)) {
    if (!entry.is_regular_file()) continue;
    std::string name = entry.path().filename().string();
    if (name.rfind("message", 0) != 0) continue;
    std::string text = passerelle::testing::readFile(entry.path());
    std::vector<Issue> issues;
    auto m = Message::parse(text, issues);
    if (!m) {
      // MSH-2 written with a look-alike of '~' (U+02DC): refused at MSH-2, as an encoding character must be one byte.
      ++unreadable;
      EXPECT_EQ(issues.at(0).location.substr(0, 5), "MSH-2") << entry.path();
      continue;
    }
    InboundFacts f = readInbound(*m, issues);
    if (f.kind != InboundFacts::Kind::kReport) continue;
    bool deletion = f.document.status == "D";
    std::string errors;
    for (const auto& i : issues)
      if (i.severity == "error") errors += i.location + " " + i.message + "; ";
    if (errors.find("OBX-5.5 is not valid Base64") != std::string::npos) {
      // A document cut short (its Base64 cannot be decoded, padded or not): refused at OBX-5.5.
      ++badBase64;
      EXPECT_EQ(errors.find("OBX-5.5"), 0u) << entry.path() << ": " << errors;
      continue;
    }
    EXPECT_TRUE(errors.empty()) << entry.path() << ": " << errors;
    Json b;
    toBundle(f, b);
    const Json* d = resourceOf(b, "DocumentReference");
    ASSERT_TRUE(d) << entry.path();
    EXPECT_EQ((*d)["status"], deletion ? "entered-in-error" : "current") << entry.path();
    EXPECT_EQ((*d)["content"][0]["attachment"]["contentType"], "text/xml") << entry.path();
    std::string cda;
    EXPECT_TRUE(decodeBase64((*d)["content"][0]["attachment"]["data"].get<std::string>(), cda)) << entry.path();
    EXPECT_FALSE(cda.empty());
    const Json* p = resourceOf(b, "Patient");
    ASSERT_TRUE(p);
    EXPECT_EQ((*p)["identifier"][0]["system"].get<std::string>().rfind("urn:oid:1.2.250.1.213.1.4.", 0), 0u) << entry.path();  // INS (NIR, NIA, test)
    ++documents;
  }
  std::cout << "ANS examples: " << documents << " MDM/ORU reports converted with their CDA, " << badBase64
            << " refused at OBX-5.5 (a document whose Base64 is cut short), " << unreadable << " refused at MSH-2\n";
  EXPECT_GE(documents, 8);
}
