// `passerelle convert`: the network's documents to FHIR and back, offline (no database: the
// network rules that need the dossier are checked when the gateway receives the document).
#include "gateway/app/convert_command.h"

#include <ctime>
#include <fstream>
#include <iostream>
#include <iterator>
#include <nlohmann/json.hpp>
#include <sstream>

#include "mappings/cda/cda.h"
#include "mappings/fhir/json_reader.h"
#include "mappings/fhir/operation_outcome.h"
#include "mappings/fhir/xml/fhir_xml.h"
#include "mappings/hl7v2/fhir_mapping.h"
#include "mappings/hl7v2/message.h"
#include "mappings/hprim/fhir_mapping.h"
#include "mappings/hprim/hprim.h"
#include "mappings/network/documents/document_schemas.h"
#include "mappings/network/documents/xml_form.h"
#include "mappings/network/mapping_engine.h"
#include "mappings/network/rules/rules.h"

namespace passerelle::app {

namespace {

using network::Json;

void outcome(const std::vector<std::pair<std::string, std::string>>& issues) {
  Json o = {{"resourceType", "OperationOutcome"}, {"issue", Json::array()}};
  for (const auto& [path, message] : issues) {
    Json i = {{"severity", "error"}, {"code", "invalid"}, {"diagnostics", message}};
    if (!path.empty()) i["expression"] = Json::array({path});
    o["issue"].push_back(std::move(i));
  }
  std::cerr << o.dump(2) << "\n";
}

// HPRIM problems as an OperationOutcome (errors and warnings); true when one is an error.
bool hprimOutcome(const std::vector<hprim::Issue>& issues) {
  if (issues.empty()) return false;
  bool error = false;
  Json o = {{"resourceType", "OperationOutcome"}, {"issue", Json::array()}};
  for (const auto& i : issues) {
    error = error || i.error;
    Json x = {{"severity", i.error ? "error" : "warning"}, {"code", i.error ? "invalid" : "informational"}, {"diagnostics", i.message}};
    if (!i.where.empty()) x["location"] = Json::array({i.where});
    o["issue"].push_back(std::move(x));
  }
  std::cerr << o.dump(2) << "\n";
  return error;
}

// The kind an XML document declares by its root element (consentRenewal -> consent-renewal).
std::string kindOfXml(const std::string& text) {
  auto lt = text.find('<');
  while (lt != std::string::npos && (text.compare(lt, 2, "<?") == 0 || text.compare(lt, 4, "<!--") == 0))
    lt = text.find('<', lt + 1);
  if (lt == std::string::npos) return "";
  std::string name;
  for (std::size_t i = lt + 1; i < text.size() && (std::isalnum(static_cast<unsigned char>(text[i])) || text[i] == ':'); ++i)
    name += text[i];
  if (auto c = name.find(':'); c != std::string::npos) name = name.substr(c + 1);
  std::string kind;
  for (char c : name) {
    if (std::isupper(static_cast<unsigned char>(c))) {
      kind += '-';
      kind += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    } else {
      kind += c;
    }
  }
  return kind;
}

}  // namespace

bool readCommandInput(const std::string& command, const std::string& file, std::string& text) {
  if (file == "-") {
    text.assign(std::istreambuf_iterator<char>(std::cin), std::istreambuf_iterator<char>());
    return true;
  }
  std::ifstream in(file, std::ios::binary);
  if (!in) {
    std::cerr << "passerelle " << command << ": cannot read '" << file << "'\n";
    return false;
  }
  std::ostringstream ss;
  ss << in.rdbuf();
  text = ss.str();
  return true;
}

int convertCommand(int argc, char** argv) {
  std::string from, to, file = "-", today, encodingName = "ISO-8859-1", schemaPath, schemaComponents;
  hprim::NetExport netExport;
  bool xml = false;
  for (int i = 2; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--help" || a == "-h") {
      std::cout << "Usage: passerelle convert --from FORMAT --to FORMAT [--xml] [--today YYYY-MM-DD] [FILE|-]\n\n"
                   "Converts one document offline and prints the result on stdout; problems go to stderr as an\n"
                   "OperationOutcome and the exit status is 1 (2 when the input cannot be read).\n\n"
                   "  --from network --to fhir   a network document (JSON, or XML: detected) -> the FHIR R4\n"
                   "                             transaction Bundle the gateway would store\n"
                   "  --from fhir --to network   such a Bundle -> the network document (JSON; --xml for XML)\n"
                   "  --from hl7v2 --to fhir     an HL7 v2 message (ADT A01/A03/A04/A08/A28/A31/A40, RRI^I12,\n"
                   "                             MDM^T02/T10, ORU^R01; other types by their PID, PV1 and\n"
                   "                             OBX segments) -> a FHIR R4 transaction Bundle\n"
                   "  --from fhir --to hl7v2     a Bundle holding a referral (ServiceRequest, Patient, requester,\n"
                   "                             performer, Conditions, Observations) -> REF^I12 (I14 when revoked)\n"
                   "  --from hprim --to fhir     an HPRIM Net file (header, text, ****LAB**** results) or an HPRIM\n"
                   "                             Santé message (H, P, OBR, OBX, C, L), ISO 8859-1 or UTF-8 ->\n"
                   "                             a FHIR R4 transaction Bundle\n"
                   "  --from fhir --to hprim     a Bundle holding a Patient and a report or Observations -> an\n"
                   "                             HPRIM Net file (the scores as RES lines)\n"
                   "  --from cda --to fhir       a CDA R2 document (CI-SIS) -> Patient and DocumentReference\n"
                   "                             carrying it; --schema XSD validates it first (the HL7 CDA R2\n"
                   "                             schema, e.g. CDA_SDTC.xsd, or a root schema importing it)\n"
                   "  --from fhir --to cda       a Bundle holding a Patient (with its INS), a report (Composition)\n"
                   "                             and Observations -> a CI-SIS CDA R2 document, the scores as\n"
                   "                             level 3 entries (--schema XSD: checked against it)\n"
                   "  --from fhir-xml --to fhir  a FHIR R4 resource in XML -> the same resource in JSON\n"
                   "  --from fhir --to fhir-xml  a FHIR R4 resource in JSON -> the same resource in XML\n"
                   "  --schema-components DIR    where the --schema root's includes are found when not beside\n"
                   "                             it: for French documents, --schema schemas/cda/CDA_FR.xsd and\n"
                   "                             the ANS package's infrastructure/cda folder\n"
                   "  --encoding NAME            HPRIM output: ISO-8859-1 (default) or UTF-8\n"
                   "  --sender \"CODE NAME\"       HPRIM Net header line 11; --recipient: line 12\n"
                   "  --today DATE               the date derived values are computed at (default: today)\n\n"
                   "Checked offline: the document's schema and the mapping. The network's rules that need the\n"
                   "dossier (the patient's consent, the GP's membership...) are checked by the gateway.\n";
      return 0;
    }
    if (a == "--from" && i + 1 < argc) from = argv[++i];
    else if (a == "--to" && i + 1 < argc) to = argv[++i];
    else if (a == "--today" && i + 1 < argc) today = argv[++i];
    else if (a == "--xml") xml = true;
    else if (a == "--encoding" && i + 1 < argc) encodingName = argv[++i];
    else if (a == "--schema" && i + 1 < argc) schemaPath = argv[++i];
    else if (a == "--schema-components" && i + 1 < argc) schemaComponents = argv[++i];
    else if (a == "--sender" && i + 1 < argc) netExport.sender = argv[++i];
    else if (a == "--recipient" && i + 1 < argc) netExport.recipient = argv[++i];
    else if (a.size() > 1 && a[0] == '-') {
      std::cerr << "passerelle convert: unexpected option '" << a << "'\n";
      return 2;
    } else file = a;
  }
  std::string text;
  if (!readCommandInput("convert", file, text)) return 2;
  const auto& schemas = network::DocumentSchemas::instance();
  const auto& mappings = network::MappingSet::builtIn();
  std::vector<std::pair<std::string, std::string>> issues;
  if (from == "network" && to == "fhir") {
    Json doc;
    auto first = text.find_first_not_of(" \t\r\n\xEF\xBB\xBF");
    if (first != std::string::npos && text[first] == '<') {
      std::string kind = kindOfXml(text);
      std::vector<network::DocumentIssue> xi;
      if (!schemas.hasKind(kind)) {
        outcome({{"", "the XML root element does not name a network document kind"}});
        return 1;
      }
      if (!network::xmlToJson(kind, text, doc, xi)) {
        for (const auto& i : xi) issues.emplace_back(i.path, i.message);
        outcome(issues);
        return 1;
      }
    } else {
      fhir::JsonError err;
      if (!fhir::parseJson(text, fhir::JsonLimits{}, doc, err)) {
        outcome({{err.path, err.message}});
        return 1;
      }
    }
    std::string kind = doc.is_object() ? doc.value("documentType", "") : "";
    if (!schemas.hasKind(kind) || !mappings.has(kind)) {
      outcome({{"documentType", "'" + kind + "' is not a network document kind"}});
      return 1;
    }
    for (const auto& i : schemas.validate(kind, doc)) issues.emplace_back(i.path, i.message);
    if (!issues.empty()) {
      outcome(issues);
      return 1;
    }
    network::RuleContext ctx;
    ctx.today = today;
    Json derived = network::deriveValues(kind, doc, ctx, network::RuleConfig{});
    std::vector<network::MappingIssue> mi;
    Json bundle = mappings.toBundle(kind, doc, derived, mi);
    for (const auto& i : mi) issues.emplace_back(i.path, i.message);
    if (!issues.empty()) {
      outcome(issues);
      return 1;
    }
    std::cout << bundle.dump(2) << "\n";
    return 0;
  }
  if (from == "fhir" && to == "network") {
    fhir::JsonError err;
    Json bundle;
    if (!fhir::parseJson(text, fhir::JsonLimits{}, bundle, err)) {
      outcome({{err.path, err.message}});
      return 1;
    }
    std::vector<network::MappingIssue> mi;
    Json doc = mappings.fromBundle(bundle, mi);
    for (const auto& i : mi) issues.emplace_back(i.path, i.message);
    if (!issues.empty() || !doc.is_object()) {
      outcome(issues);
      return 1;
    }
    std::string kind = doc.value("documentType", "");
    for (const auto& i : schemas.validate(kind, doc)) issues.emplace_back(i.path, "the document read back breaks its schema: " + i.message);
    if (!issues.empty()) {
      outcome(issues);
      return 1;
    }
    doc = schemas.inSchemaOrder(kind, doc);
    std::cout << (xml ? network::jsonToXml(kind, doc) : doc.dump(2)) << "\n";
    return 0;
  }
  if ((from == "fhir-xml" && to == "fhir") || (from == "fhir" && to == "fhir-xml")) {
    // The official XML form and the JSON form of one resource; warnings (elements out of order)
    // go to stderr, as the errors do.
    std::vector<fhir::Issue> fi;
    std::string out;
    bool ok = from == "fhir-xml" ? fhir::fhirXmlToJson(text, out, fi)
                                 : fhir::fhirJsonToXml(text, out, fi, fhir::XmlWriteOptions{true, true});
    if (!fi.empty()) std::cerr << fhir::operationOutcome(fi) << "\n";
    if (!ok) return 1;
    std::cout << out << (out.empty() || out.back() == '\n' ? "" : "\n");
    return 0;
  }
  if (from == "hl7v2" && to == "fhir") {
    std::vector<hl7v2::Issue> hi;
    auto m = hl7v2::Message::parse(text, hi);
    hl7v2::InboundFacts facts;
    if (m) facts = hl7v2::readInbound(*m, hi, hl7v2::OtherTypes::kReadSegments);
    for (const auto& i : hi)
      if (i.severity == "error") issues.emplace_back(i.location, i.message + " (HL7 table 0357 code " + i.code + ")");
    if (!m || !issues.empty()) {
      outcome(issues);
      return 1;
    }
    nlohmann::json bundle;
    hl7v2::toBundle(facts, bundle);
    std::cout << bundle.dump(2) << "\n";
    return 0;
  }
  if (from == "fhir" && to == "hl7v2") {
    fhir::JsonError err;
    Json bundle;
    if (!fhir::parseJson(text, fhir::JsonLimits{}, bundle, err)) {
      outcome({{err.path, err.message}});
      return 1;
    }
    // Entries referenced by their fullUrl (urn:uuid:...) are named Type/<uuid> so that references resolve.
    std::string body = bundle.dump();
    std::vector<std::pair<std::string, std::string>> renames;
    if (bundle.is_object() && bundle.contains("entry") && bundle["entry"].is_array())
      for (const auto& e : bundle["entry"]) {
        std::string full = e.value("fullUrl", "");
        if (full.rfind("urn:uuid:", 0) == 0 && e.contains("resource") && e["resource"].is_object())
          renames.emplace_back("\"" + full + "\"", "\"" + e["resource"].value("resourceType", "") + "/" + full.substr(9) + "\"");
      }
    for (const auto& [a, b] : renames)
      for (std::size_t at; (at = body.find(a)) != std::string::npos;) body.replace(at, a.size(), b);
    nlohmann::json plain = nlohmann::json::parse(body);
    std::vector<nlohmann::json> resources;
    if (plain.value("resourceType", "") == "Bundle") {
      for (auto& e : plain.value("entry", nlohmann::json::array())) {
        if (!e.contains("resource")) continue;
        nlohmann::json r = e["resource"];
        std::string full = e.value("fullUrl", "");
        if (!r.contains("id") && full.rfind("urn:uuid:", 0) == 0) r["id"] = full.substr(9);
        resources.push_back(std::move(r));
      }
    } else {
      resources.push_back(plain);
    }
    std::vector<const nlohmann::json*> ptrs;
    for (const auto& r : resources) ptrs.push_back(&r);
    hl7v2::ReferralOut out;
    std::string error;
    if (!hl7v2::referralFromFhir(ptrs, out, error)) {
      outcome({{"Bundle.entry", error}});
      return 1;
    }
    out.controlId = "CONVERT-" + (out.referralId.empty() ? std::string("1") : out.referralId);
    std::time_t t = std::time(nullptr);
    std::tm tm{};
    gmtime_r(&t, &tm);
    char stamp[20];
    std::strftime(stamp, sizeof stamp, "%Y%m%d%H%M%S", &tm);
    out.timestamp = stamp;
    std::cout << hl7v2::buildReferral(out) << "\n";
    return 0;
  }
  if (from == "hprim" && to == "fhir") {
    std::vector<hprim::Issue> hi;
    nlohmann::json bundle;
    auto flavour = hprim::detect(text);
    if (flavour == hprim::Flavour::kSante) {
      hprim::SanteMessage m;
      bool ok = hprim::readSante(text, m, hi);
      if (hprimOutcome(hi) || !ok) return 1;
      hprim::santeToBundle(m, bundle, hi);
    } else if (flavour == hprim::Flavour::kNet) {
      hprim::NetFile f;
      bool ok = hprim::readNet(text, f, hi);
      if (hprimOutcome(hi) || !ok) return 1;
      for (const auto& d : f.documents) hprim::netToBundle(d, bundle, hi);
    } else {
      outcome({{"", "neither HPRIM Santé (a first line 'H|...') nor HPRIM Net (****FIN**** or ****FINFICHIER****)"}});
      return 1;
    }
    std::cout << bundle.dump(2) << "\n";
    return 0;
  }
  if (from == "cda" && to == "fhir") {
    std::shared_ptr<cda::Schema> schema;
    if (!schemaPath.empty()) {
      std::string error;
      schema = cda::Schema::load(schemaPath, error, schemaComponents);
      if (!schema) {
        std::cerr << "passerelle convert: " << error << "\n";
        return 2;
      }
    }
    cda::Document doc;
    std::vector<cda::Issue> ci;
    if (!cda::read(text, schema.get(), cda::Limits{}, doc, ci)) {
      for (const auto& i : ci) issues.emplace_back(i.where, i.message);
      outcome(issues);
      return 1;
    }
    nlohmann::json bundle;
    cda::toBundle(doc, text, bundle);
    std::cout << bundle.dump(2) << "\n";
    return 0;
  }
  if (from == "fhir" && to == "cda") {
    fhir::JsonError err;
    Json bundle;
    if (!fhir::parseJson(text, fhir::JsonLimits{}, bundle, err)) {
      outcome({{err.path, err.message}});
      return 1;
    }
    cda::Document doc;
    std::string error;
    if (!cda::fromFhir(nlohmann::json(bundle), "Réseau Douleur 77", doc, error)) {
      outcome({{"Bundle.entry", error}});
      return 1;
    }
    std::string xml = cda::write(doc);
    if (!schemaPath.empty()) {
      auto schema = cda::Schema::load(schemaPath, error, schemaComponents);
      if (!schema) {
        std::cerr << "passerelle convert: " << error << "\n";
        return 2;
      }
      cda::Document back;
      std::vector<cda::Issue> ci;
      if (!cda::read(xml, schema.get(), cda::Limits{}, back, ci)) {
        for (const auto& i : ci) issues.emplace_back(i.where, "the CDA written breaks the schema: " + i.message);
        outcome(issues);
        return 1;
      }
    }
    std::cout << xml;
    return 0;
  }
  if (from == "fhir" && to == "hprim") {
    hprim::Encoding encoding;
    if (!hprim::parseEncoding(encodingName, encoding)) {
      std::cerr << "passerelle convert: --encoding takes ISO-8859-1 or UTF-8\n";
      return 2;
    }
    fhir::JsonError err;
    Json bundle;
    if (!fhir::parseJson(text, fhir::JsonLimits{}, bundle, err)) {
      outcome({{err.path, err.message}});
      return 1;
    }
    hprim::NetDocument doc;
    std::string error;
    if (!hprim::netFromFhir(bundle, netExport, doc, error)) {
      outcome({{"Bundle.entry", error}});
      return 1;
    }
    std::size_t lost = 0;
    std::cout << hprim::writeNet({doc}, encoding, &lost);
    if (lost)
      hprimOutcome({{false, "", std::to_string(lost) + " character(s) that " + hprim::encodingName(encoding) + " cannot hold written as '?'"}});
    return 0;
  }
  std::cerr << "passerelle convert: from '" << from << "' to '" << to
            << "' is not a conversion this gateway has (network -> fhir, fhir -> network, hl7v2 -> fhir, fhir -> hl7v2,\n"
               "hprim -> fhir, fhir -> hprim, cda -> fhir, fhir -> cda, fhir-xml -> fhir, fhir -> fhir-xml)\n";
  return 2;
}

}  // namespace passerelle::app
