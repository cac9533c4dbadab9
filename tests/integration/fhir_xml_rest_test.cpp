// FHIR XML over the REST API of a real gateway on port 0: XML bodies (application/fhir+xml,
// application/xml, text/xml) are read as their JSON, answers are XML by _format or Accept (with
// its q-values; JSON stays the default), OperationOutcomes of errors included.
#include <gtest/gtest.h>

#include <functional>
#include <nlohmann/json.hpp>

#include "mappings/fhir/validator.h"
#include "mappings/fhir/xml/fhir_xml.h"
#include "tests/support/http_client.h"
#include "tests/support/test_gateway.h"

using namespace passerelle::testing;
using nlohmann::json;

namespace {

const char* kPatientXml = R"(<?xml version="1.0" encoding="UTF-8"?>
<Patient xmlns="http://hl7.org/fhir">
  <identifier><system value="urn:oid:1.2.250.1.213.1.4.8"/><value value="180057512345678"/></identifier>
  <name><family value="Dupont"/><given value="Léa"/></name>
  <gender value="female"/>
  <birthDate value="1980-05-12"/>
</Patient>)";

const char* kFhirXml = "application/fhir+xml";

// An XML answer read into JSON (fails the test when it is not FHIR XML).
json fromXml(const HttpResult& r) {
  std::string out;
  std::vector<passerelle::fhir::Issue> issues;
  bool ok = passerelle::fhir::fhirXmlToJson(r.body, out, issues);
  EXPECT_TRUE(ok) << r.body.substr(0, 500) << (issues.empty() ? "" : "\n" + issues[0].diagnostics);
  return ok ? json::parse(out) : json();
}

class FhirXmlRestTest : public ::testing::Test {
 protected:
  FhirXmlRestTest() : client_(gw_.httpPort()) {}
  HttpResult postXml(const std::string& path, const std::string& xml, const std::string& contentType = kFhirXml,
                     std::vector<std::pair<std::string, std::string>> more = {}) {
    more.emplace_back("Content-Type", contentType);
    return client_.request("POST", path, xml, more);
  }
  TestGateway gw_;
  HttpClient client_;
};

}  // namespace

TEST_F(FhirXmlRestTest, CreateWithXmlAndReadBackAsXml) {
  auto created = postXml("/fhir/Patient", kPatientXml);
  ASSERT_EQ(created.status, 201) << created.body;
  EXPECT_EQ(created.header("Content-Type").rfind("application/fhir+json", 0), 0u);  // JSON stays the default
  std::string id = created.json()["id"];
  EXPECT_EQ(created.json()["name"][0]["given"][0], "Léa");

  auto read = client_.request("GET", "/fhir/Patient/" + id, "", {{"Accept", "application/fhir+xml"}});
  ASSERT_EQ(read.status, 200) << read.body;
  EXPECT_EQ(read.header("Content-Type"), "application/fhir+xml; charset=utf-8");
  EXPECT_EQ(read.body.rfind("<Patient xmlns=\"http://hl7.org/fhir\"><id value=\"" + id + "\"/><meta>", 0), 0u) << read.body;
  json back = fromXml(read);
  EXPECT_EQ(back["name"][0]["family"], "Dupont");
  EXPECT_EQ(back["meta"]["versionId"], "1");
  EXPECT_EQ(read.header("ETag"), "W/\"1\"");

  // The other XML media types, and _format.
  for (const char* ct : {"application/xml", "text/xml; charset=utf-8"})
    EXPECT_EQ(postXml("/fhir/Patient", kPatientXml, ct).status, 201) << ct;
  for (const char* f : {"xml", "application/fhir%2Bxml", "application/fhir+xml", "application/xml"}) {
    auto r = client_.get("/fhir/Patient/" + id + "?_format=" + f);
    EXPECT_EQ(r.header("Content-Type"), "application/fhir+xml; charset=utf-8") << f;
  }
  // _format wins over Accept.
  auto j = client_.request("GET", "/fhir/Patient/" + id + "?_format=json", "", {{"Accept", "application/fhir+xml"}});
  EXPECT_EQ(j.json()["id"], id);

  // An update in XML, answered in XML.
  std::string updated = kPatientXml;
  updated.replace(updated.find("<identifier>"), 0, "<id value=\"" + id + "\"/>");
  updated.replace(updated.find("female"), 6, "other");
  auto u = client_.request("PUT", "/fhir/Patient/" + id, updated, {{"Content-Type", kFhirXml}, {"Accept", kFhirXml}});
  ASSERT_EQ(u.status, 200) << u.body;
  EXPECT_EQ(fromXml(u)["gender"], "other");
}

TEST_F(FhirXmlRestTest, DecimalsKeepTheirDigitsThroughXml) {
  auto r = postXml("/fhir/Observation",
                   "<Observation xmlns=\"http://hl7.org/fhir\"><status value=\"final\"/><code><text value=\"EVA\"/></code>"
                   "<valueQuantity><value value=\"3.50\"/><unit value=\"cm\"/></valueQuantity></Observation>");
  ASSERT_EQ(r.status, 201) << r.body;
  std::string id = r.json()["id"];
  EXPECT_NE(client_.get("/fhir/Observation/" + id).body.find("\"value\":3.50"), std::string::npos);
  auto x = client_.request("GET", "/fhir/Observation/" + id, "", {{"Accept", kFhirXml}});
  EXPECT_NE(x.body.find("<value value=\"3.50\"/>"), std::string::npos) << x.body;
}

TEST_F(FhirXmlRestTest, AcceptIsWeighedByItsQValues) {
  std::string id = postXml("/fhir/Patient", kPatientXml).json()["id"];
  struct Case {
    std::string accept;
    std::string type;  // "" for 406
  };
  std::vector<Case> cases = {
      {"application/fhir+json;q=0.5, application/fhir+xml", "application/fhir+xml"},
      {"application/fhir+xml;q=0.1, application/json", "application/fhir+json"},
      {"text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8", "application/fhir+xml"},
      {"*/*", "application/fhir+json"},
      {"application/fhir+xml;q=0, application/fhir+json", "application/fhir+json"},
      {"text/xml", "application/fhir+xml"},
      {"text/plain", ""},
  };
  for (const auto& c : cases) {
    auto r = client_.request("GET", "/fhir/Patient/" + id, "", {{"Accept", c.accept}});
    if (c.type.empty()) {
      EXPECT_EQ(r.status, 406) << c.accept;
      continue;
    }
    EXPECT_EQ(r.status, 200) << c.accept;
    EXPECT_EQ(r.header("Content-Type").rfind(c.type, 0), 0u) << c.accept << " -> " << r.header("Content-Type");
  }
}

TEST_F(FhirXmlRestTest, SearchBundleAsXml) {
  for (int i = 0; i < 3; ++i) ASSERT_EQ(postXml("/fhir/Patient", kPatientXml).status, 201);
  auto r = client_.request("GET", "/fhir/Patient?family=Dupont&_count=2", "", {{"Accept", kFhirXml}});
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.body.rfind("<Bundle xmlns=\"http://hl7.org/fhir\">", 0), 0u) << r.body.substr(0, 200);
  EXPECT_NE(r.body.find("<resource><Patient><id value="), std::string::npos) << r.body.substr(0, 800);
  json b = fromXml(r);
  EXPECT_EQ(b["type"], "searchset");
  EXPECT_EQ(b["total"], 3);
  EXPECT_EQ(b["entry"].size(), 2u);
  EXPECT_EQ(b["entry"][0]["resource"]["name"][0]["family"], "Dupont");
  EXPECT_FALSE(passerelle::fhir::Validator::instance().validate(b.dump()).hasErrors());
  // History too, and the CapabilityStatement, which names both formats.
  EXPECT_EQ(client_.get("/fhir/Patient/_history?_format=xml").header("Content-Type"), "application/fhir+xml; charset=utf-8");
  auto cs = client_.request("GET", "/fhir/metadata", "", {{"Accept", kFhirXml}});
  json formats = fromXml(cs)["format"];
  EXPECT_NE(std::find(formats.begin(), formats.end(), "application/fhir+xml"), formats.end()) << formats;
  EXPECT_NE(std::find(formats.begin(), formats.end(), "application/fhir+json"), formats.end()) << formats;
}

TEST_F(FhirXmlRestTest, TransactionBundleInXml) {
  std::string bundle = R"(<Bundle xmlns="http://hl7.org/fhir"><type value="transaction"/>
    <entry><fullUrl value="urn:uuid:0c3a8f0e-8a63-4a4e-9e0c-2f1b8f5a7c11"/><resource>)" +
                       std::string(kPatientXml).substr(std::string(kPatientXml).find("<Patient")) +
                       R"(</resource><request><method value="POST"/><url value="Patient"/></request></entry>
    <entry><resource><Observation><status value="final"/><code><text value="EVA"/></code>
      <subject><reference value="urn:uuid:0c3a8f0e-8a63-4a4e-9e0c-2f1b8f5a7c11"/></subject>
      <valueInteger value="4"/></Observation></resource><request><method value="POST"/><url value="Observation"/></request></entry>
  </Bundle>)";
  auto r = postXml("/fhir", bundle, kFhirXml, {{"Accept", kFhirXml}});
  ASSERT_EQ(r.status, 200) << r.body;
  json b = fromXml(r);
  EXPECT_EQ(b["type"], "transaction-response");
  ASSERT_EQ(b["entry"].size(), 2u);
  EXPECT_EQ(b["entry"][1]["response"]["status"].get<std::string>().rfind("201", 0), 0u);
}

TEST_F(FhirXmlRestTest, BadXmlGetsAnOperationOutcome) {
  struct Case {
    std::string body;
    int status;
    std::string needle, expression;
  };
  std::vector<Case> cases = {
      {"<Patient xmlns=\"http://hl7.org/fhir\"><name>", 400, "not well-formed", ""},
      {"<?xml version=\"1.0\"?><!DOCTYPE x [<!ENTITY e SYSTEM \"file:///etc/passwd\">]><Patient xmlns=\"http://hl7.org/fhir\"/>", 400,
       "DOCTYPE", ""},
      {"<Patient xmlns=\"http://hl7.org/fhir\"><id value=\"&e;\"/></Patient>", 400, "entit", ""},
      {"<Patient><active value=\"true\"/></Patient>", 400, "http://hl7.org/fhir", ""},
      {"<Patient xmlns=\"http://hl7.org/fhir\"><colour value=\"blue\"/></Patient>", 422, "Unrecognized element 'colour'", "Patient"},
      {"<Patient xmlns=\"http://hl7.org/fhir\"><name><family>Dupont</family></name></Patient>", 422, "no mixed content",
       "Patient.name[0].family"},
      {"<Patient xmlns=\"http://hl7.org/fhir\"><gender value=\"woman\"/></Patient>", 422, "not in the value set", "Patient.gender"},
  };
  for (const auto& c : cases) {
    auto r = postXml("/fhir/Patient", c.body);
    EXPECT_EQ(r.status, c.status) << c.body << " -> " << r.body;
    json oo = r.json();
    ASSERT_EQ(oo["resourceType"], "OperationOutcome") << r.body;
    bool found = false;
    for (const auto& i : oo["issue"])
      if (i.value("diagnostics", "").find(c.needle) != std::string::npos &&
          (c.expression.empty() || (i.contains("expression") && i["expression"][0] == c.expression)))
        found = true;
    EXPECT_TRUE(found) << c.needle << " not in " << r.body;
    // The same OperationOutcome in XML when XML is asked for.
    auto x = postXml("/fhir/Patient", c.body, kFhirXml, {{"Accept", kFhirXml}});
    EXPECT_EQ(x.status, c.status);
    EXPECT_EQ(x.header("Content-Type"), "application/fhir+xml; charset=utf-8");
    EXPECT_EQ(fromXml(x)["resourceType"], "OperationOutcome") << x.body;
  }
  // Errors that are not about XML answer in XML as well.
  auto missing = client_.request("GET", "/fhir/Patient/nobody", "", {{"Accept", kFhirXml}});
  EXPECT_EQ(missing.status, 404);
  EXPECT_EQ(fromXml(missing)["resourceType"], "OperationOutcome");
  HttpClient anonymous(gw_.httpPort());
  anonymous.setBearer("");
  auto denied = anonymous.request("GET", "/fhir/Patient?_format=xml");
  EXPECT_EQ(denied.status, 401);
  EXPECT_EQ(denied.header("Content-Type"), "application/fhir+xml; charset=utf-8");
  EXPECT_EQ(fromXml(denied)["resourceType"], "OperationOutcome") << denied.body;
}

// An XML body is read only once the gate has let its caller in: an anonymous one, however
// malformed, gets the gate's 401 (its body never parsed), and a body refused after the gate is an
// audited request like any other. An XML transaction is audited as a transaction.
TEST_F(FhirXmlRestTest, XmlBodiesAreReadAfterTheGate) {
  const std::string doctype =
      "<?xml version=\"1.0\"?><!DOCTYPE x [<!ENTITY e SYSTEM \"file:///etc/passwd\">]><Patient xmlns=\"http://hl7.org/fhir\"/>";
  // How many of the trail's records (as AuditEvents) are of that kind (scheduled jobs write too).
  auto count = [&](const std::function<bool(const json&)>& kind) {
    auto b = client_.get("/fhir/AuditEvent?_count=500");
    EXPECT_EQ(b.status, 200) << b.body;
    int n = 0;
    for (const auto& entry : b.json().value("entry", json::array())) n += kind(entry["resource"]) ? 1 : 0;
    return n;
  };
  auto subtype = [](const json& e) { return e.contains("subtype") ? e["subtype"][0].value("code", "") : ""; };
  auto loginRefused = [](const json& e) { return e["type"].value("code", "") == "110114" && e.value("outcome", "") == "4"; };
  auto createRefused = [&](const json& e) {
    return subtype(e) == "create" && e.value("outcome", "") == "8" && e.value("outcomeDesc", "") == "HTTP 400";
  };
  auto transaction = [&](const json& e) { return subtype(e) == "transaction" && e.value("outcome", "") == "0"; };

  HttpClient anonymous(gw_.httpPort());
  anonymous.setBearer("");
  int before = count(loginRefused);
  for (const std::string& body : {doctype, std::string("<Patient xmlns=\"http://hl7.org/fhir\"><name>")}) {
    auto r = anonymous.request("POST", "/fhir/Patient", body, {{"Content-Type", kFhirXml}});
    EXPECT_EQ(r.status, 401) << r.body;
    EXPECT_FALSE(r.header("WWW-Authenticate").empty());
  }
  EXPECT_EQ(count(loginRefused), before + 2);

  before = count(createRefused);
  auto refused = postXml("/fhir/Patient", doctype);
  EXPECT_EQ(refused.status, 400) << refused.body;
  EXPECT_NE(refused.body.find("DOCTYPE"), std::string::npos) << refused.body;
  EXPECT_EQ(count(createRefused), before + 1);

  for (const char* quote : {"\"", "'"}) {
    std::string q = quote;
    std::string bundle = "<Bundle xmlns=\"http://hl7.org/fhir\"><type value=" + q + "transaction" + q +
                         "/><entry><resource><Patient><gender value=\"male\"/></Patient></resource>"
                         "<request><method value=\"POST\"/><url value=\"Patient\"/></request></entry></Bundle>";
    before = count(transaction);
    auto t = postXml("/fhir", bundle);
    ASSERT_EQ(t.status, 200) << t.body;
    EXPECT_EQ(count(transaction), before + 1) << q;
  }
}
