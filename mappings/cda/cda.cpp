// CDA R2 reading and mapping (see cda.h).
#include "mappings/cda/cda.h"

#include <filesystem>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <xercesc/framework/LocalFileInputSource.hpp>
#include <xercesc/framework/MemBufInputSource.hpp>
#include <xercesc/framework/XMLGrammarPoolImpl.hpp>
#include <xercesc/parsers/SAX2XMLReaderImpl.hpp>
#include <xercesc/sax/Locator.hpp>
#include <xercesc/sax2/Attributes.hpp>
#include <xercesc/sax2/XMLReaderFactory.hpp>
#include <xercesc/util/XMLEntityResolver.hpp>
#include <xercesc/util/XMLResourceIdentifier.hpp>
#include <xercesc/validators/common/Grammar.hpp>

#include "mappings/common/base64.h"
#include "mappings/fhir/french_identity.h"
#include "mappings/fhir/markdown.h"
#include "mappings/xml/secure_xml.h"

namespace passerelle::cda {

namespace xc = XERCES_CPP_NAMESPACE;
using Json = nlohmann::json;

constexpr const char* kHl7 = "urn:hl7-org:v3";
constexpr const char* kXslt = "http://www.w3.org/1999/XSL/Transform";
constexpr const char* kCisis = "urn:asip-sante:ci-sis";

struct Schema::Impl {
  xc::XMLGrammarPool* pool = nullptr;
  std::mutex parse;  // one parse per grammar at a time (xerces compiles patterns lazily in it)
  ~Impl() { delete pool; }
};

Schema::Schema() : impl_(std::make_unique<Impl>()) {}
Schema::~Schema() = default;

namespace {

// Where a schema's includes and imports are read: the local file named, relative to the including
// schema; for the references of the schemas in the root's folder, `components` when the file is
// not beside them. A
// location with a scheme other than file: is refused (a schema is never fetched).
class SchemaFiles : public xc::XMLEntityResolver {
 public:
  SchemaFiles(std::string root, std::string components) : root_(std::move(root)), components_(std::move(components)) {}
  std::string refused, missing;

  xc::InputSource* resolveEntity(xc::XMLResourceIdentifier* r) override {
    std::string location = r->getSystemId() ? xml::utf8(r->getSystemId()) : "";
    std::string base = r->getBaseURI() ? xml::utf8(r->getBaseURI()) : "";
    auto localPath = [](std::string s) {
      if (s.rfind("file://", 0) == 0) s.erase(0, 7);
      return s;
    };
    namespace fs = std::filesystem;
    if (location.empty()) return empty();  // an import without a location: the namespace comes from elsewhere
    std::string::size_type colon = location.find(':');
    bool hasScheme = colon != std::string::npos && colon > 1 && location.find('/') > colon;
    if (hasScheme && location.rfind("file:", 0) != 0) {
      if (!refused.empty()) refused += "; ";
      refused += "the schema location " + location + " is not a local file (schemas are never fetched)";
      return empty();
    }
    fs::path target = localPath(location);
    fs::path from = fs::path(localPath(base)).parent_path();
    if (target.is_relative()) {
      fs::path beside = (from / target).lexically_normal();
      bool fromRoot = from.lexically_normal() == fs::path(root_).parent_path().lexically_normal();
      target = (!fs::exists(beside) && fromRoot && !components_.empty()) ? (fs::path(components_) / target).lexically_normal() : beside;
    }
    if (!fs::exists(target)) {
      if (!missing.empty()) missing += "; ";
      missing += "the schema file " + target.string() + " (named by " + localPath(base) + ") does not exist";
    }
    XMLCh* p = xc::XMLString::transcode(target.string().c_str());
    auto* source = new xc::LocalFileInputSource(p);
    xc::XMLString::release(&p);
    return source;
  }

 private:
  static xc::InputSource* empty() {
    static const char kEmpty[] = "<xs:schema xmlns:xs=\"http://www.w3.org/2001/XMLSchema\"/>";
    return new xc::MemBufInputSource(reinterpret_cast<const XMLByte*>(kEmpty), sizeof kEmpty - 1, "refused", false);
  }
  std::string root_, components_;
};

}  // namespace

std::shared_ptr<Schema> Schema::load(const std::string& path, std::string& error, const std::string& components) {
  error = xml::start();
  if (!error.empty()) return nullptr;
  std::shared_ptr<Schema> s(new Schema());
  s->impl_->pool = new xc::XMLGrammarPoolImpl(xc::XMLPlatformUtils::fgMemoryManager);
  xml::LoadErrors handler;
  std::string absolute = std::filesystem::absolute(path).lexically_normal().string();
  SchemaFiles files(absolute, components.empty() ? "" : std::filesystem::absolute(components).lexically_normal().string());
  try {
    auto reader = std::make_unique<xc::SAX2XMLReaderImpl>(xc::XMLPlatformUtils::fgMemoryManager, s->impl_->pool);
    // The schema is the operator's local files: its includes and imports are read through
    // SchemaFiles. A namespace may be imported from several locations: the CDA schemas' cycles
    // (urn:hl7-org:v3 with its extensions' namespaces) need it.
    xml::configureSecure(*reader, true);
    reader->setFeature(xc::XMLUni::fgXercesDisableDefaultEntityResolution, false);
    reader->setFeature(xc::XMLUni::fgXercesHandleMultipleImports, true);
    reader->setXMLEntityResolver(&files);
    reader->setErrorHandler(&handler);
    XMLCh* p = xc::XMLString::transcode(absolute.c_str());
    xc::LocalFileInputSource source(p);
    xc::XMLString::release(&p);
    if (!reader->loadGrammar(source, xc::Grammar::SchemaGrammarType, true) && handler.text.empty()) handler.text = "no grammar";
  } catch (const xc::XMLException& e) {
    handler.text += xml::utf8(e.getMessage());
  } catch (...) {
    handler.text += "unexpected failure";
  }
  for (const std::string* first : {&files.missing, &files.refused})
    if (!first->empty()) handler.text = *first + (handler.text.empty() ? "" : "; " + handler.text);
  if (!handler.text.empty()) {
    error = "the CDA schema " + path + " cannot be loaded: " + handler.text;
    if (handler.text.find(".dtd") != std::string::npos)
      error += " (a schema that needs a DTD is not read: for the ANS CDA_extended.xsd, use schemas/cda/CDA_FR.xsd with cda.schema_components naming its folder)";
    return nullptr;
  }
  s->impl_->pool->lockPool();
  return s;
}

namespace {

struct Element {
  std::string ns, name, text;
  std::vector<std::pair<std::string, std::string>> attrs;
  std::vector<Element> children;
  const std::string& attr(const char* n) const {
    static const std::string none;
    for (const auto& [k, v] : attrs)
      if (k == n) return v;
    return none;
  }
  // The first child named `n` in the HL7 namespace, or null.
  const Element* child(const char* n) const {
    for (const auto& c : children)
      if (c.name == n && c.ns == kHl7) return &c;
    return nullptr;
  }
  std::vector<const Element*> all(const char* n) const {
    std::vector<const Element*> out;
    for (const auto& c : children)
      if (c.name == n && c.ns == kHl7) out.push_back(&c);
    return out;
  }
  // Along a path of child names ("recordTarget/patientRole/patient").
  const Element* at(std::string_view path) const {
    const Element* e = this;
    while (e && !path.empty()) {
      auto slash = path.find('/');
      std::string step(path.substr(0, slash));
      e = e->child(step.c_str());
      path = slash == std::string_view::npos ? std::string_view() : path.substr(slash + 1);
    }
    return e;
  }
};

struct Stop {};

class Handler : public xc::DefaultHandler {
 public:
  Handler(int maxDepth, std::vector<Issue>& issues) : maxDepth_(maxDepth), issues_(issues) {}
  Element root;
  bool failed = false;

  void setDocumentLocator(const xc::Locator* const l) override { locator_ = l; }
  void startElement(const XMLCh* const uri, const XMLCh* const localname, const XMLCh* const, const xc::Attributes& a) override {
    Element* e;
    if (stack_.empty()) {
      e = &root;
    } else {
      if (static_cast<int>(stack_.size()) >= maxDepth_) {
        add("elements are nested deeper than " + std::to_string(maxDepth_) + " levels");
        throw Stop{};
      }
      stack_.back()->children.emplace_back();
      e = &stack_.back()->children.back();
    }
    e->ns = xml::utf8(uri);
    e->name = xml::utf8(localname);
    for (XMLSize_t i = 0; i < a.getLength(); ++i) e->attrs.emplace_back(xml::utf8(a.getLocalName(i)), xml::utf8(a.getValue(i)));
    stack_.push_back(e);
  }
  void endElement(const XMLCh* const, const XMLCh* const, const XMLCh* const) override {
    if (!stack_.empty()) stack_.pop_back();
  }
  void characters(const XMLCh* const chars, const XMLSize_t length) override {
    if (!stack_.empty()) xml::appendUtf8(stack_.back()->text, chars, length);
  }
  void startDTD(const XMLCh* const, const XMLCh* const, const XMLCh* const) override {
    add("DOCTYPE declarations are refused");
    throw Stop{};
  }
  void error(const xc::SAXParseException& e) override { note(e); }
  void fatalError(const xc::SAXParseException& e) override {
    note(e);
    throw Stop{};
  }

 private:
  void add(const std::string& m) {
    failed = true;
    std::string where;
    if (locator_) where = "line " + std::to_string(locator_->getLineNumber()) + ", column " + std::to_string(locator_->getColumnNumber());
    if (issues_.size() < 50) issues_.push_back({where, m});
  }
  void note(const xc::SAXParseException& e) {
    failed = true;
    if (issues_.size() < 50)
      issues_.push_back({"line " + std::to_string(e.getLineNumber()) + ", column " + std::to_string(e.getColumnNumber()), xml::utf8(e.getMessage())});
  }
  int maxDepth_;
  std::vector<Issue>& issues_;
  std::vector<Element*> stack_;
  const xc::Locator* locator_ = nullptr;
};

Identifier idOf(const Element* e) {
  if (!e) return {};
  return {e->attr("root"), e->attr("extension")};
}

std::string trimmed(const std::string& s) {
  auto b = s.find_first_not_of(" \t\r\n");
  if (b == std::string::npos) return "";
  return s.substr(b, s.find_last_not_of(" \t\r\n") - b + 1);
}

// The text of an element and its descendants, blocks separated by line breaks.
void textOf(const Element& e, std::string& out) {
  std::string t = trimmed(e.text);
  if (!t.empty()) {
    if (!out.empty() && out.back() != '\n') out += ' ';
    out += t;
  }
  for (const auto& c : e.children) {
    textOf(c, out);
    if (c.name == "paragraph" || c.name == "br" || c.name == "item" || c.name == "tr" || c.name == "title")
      if (!out.empty() && out.back() != '\n') out += '\n';
  }
}

// The observations under a section's entries (directly, or in organizers), as level 3 results.
void observations(const Element& e, std::vector<Document::Result>& out) {
  for (const auto& c : e.children) {
    if (c.ns != kHl7) continue;
    if (c.name == "observation") {
      Document::Result r;
      if (const Element* code = c.child("code")) {
        r.code = code->attr("code");
        r.codeSystem = code->attr("codeSystem");
        r.codeSystemName = code->attr("codeSystemName");
        r.display = code->attr("displayName");
      }
      if (const Element* v = c.child("value")) {
        r.value = v->attr("value");
        r.unit = v->attr("unit");
      }
      if (const Element* t = c.child("effectiveTime")) r.time = t->attr("value");
      if (!r.code.empty() && !r.value.empty()) out.push_back(std::move(r));
    }
    if (c.name == "entry" || c.name == "organizer" || c.name == "component") observations(c, out);
  }
}

void sections(const Element& e, std::string& out, std::vector<Document::Result>& results) {
  for (const Element* comp : e.all("component")) {
    const Element* s = comp->child("section");
    if (!s) continue;
    for (const Element* entry : s->all("entry")) observations(*entry, results);
    if (const Element* t = s->child("title")) {
      std::string title = trimmed(t->text);
      if (!title.empty()) out += (out.empty() ? "" : "\n") + title + "\n";
    }
    if (const Element* t = s->child("text")) textOf(*t, out);
    sections(*s, out, results);
  }
}

// YYYYMMDD[hhmm[ss]][+zzzz] -> a FHIR date or dateTime ("" when not one).
std::string fhirTime(const std::string& v) {
  if (v.size() < 8 || v.find_first_not_of("0123456789", 0) < 8) return "";
  std::string date = v.substr(0, 4) + "-" + v.substr(4, 2) + "-" + v.substr(6, 2);
  std::size_t zone = v.find_first_of("+-", 8);
  std::string digits = v.substr(8, zone == std::string::npos ? std::string::npos : zone - 8);
  auto dot = digits.find('.');
  if (dot != std::string::npos) digits = digits.substr(0, dot);
  // A time needs its zone in FHIR: without one, the date alone.
  if (digits.size() < 4 || zone == std::string::npos || v.size() < zone + 5) return date;
  std::string time = digits.substr(0, 2) + ":" + digits.substr(2, 2) + ":" + (digits.size() >= 6 ? digits.substr(4, 2) : "00");
  return date + "T" + time + v.substr(zone, 3) + ":" + v.substr(zone + 3, 2);
}

}  // namespace

namespace {

void escape(std::string& out, std::string_view v) {
  for (char c : v) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      default:
        if (static_cast<unsigned char>(c) < 0x20 && c != '\n' && c != '\t') out += ' ';
        else out += c;
    }
  }
}

std::string esc(std::string_view v) {
  std::string out;
  escape(out, v);
  return out;
}

std::string idXml(const Identifier& id) {
  if (id.root.empty()) return "<id nullFlavor=\"UNK\"/>";
  return "<id root=\"" + esc(id.root) + "\"" + (id.extension.empty() ? "" : " extension=\"" + esc(id.extension) + "\"") + "/>";
}

// A FHIR date or dateTime as an HL7 TS (YYYYMMDD[hhmmss+zzzz]).
std::string hl7Time(const std::string& v) {
  if (v.size() < 10) return "";
  std::string out = v.substr(0, 4) + v.substr(5, 2) + v.substr(8, 2);
  if (v.size() >= 19 && v[10] == 'T') {
    out += v.substr(11, 2) + v.substr(14, 2) + v.substr(17, 2);
    auto zone = v.find_first_of("+-Z", 19);
    if (zone != std::string::npos) out += v[zone] == 'Z' ? "+0000" : v.substr(zone, 3) + v.substr(zone + 4, 2);
  }
  return out;
}

// A version 4-shaped UUID derived from `key` (two FNV-1a hashes): the same key, the same UUID.
std::string uuidFrom(const std::string& key) {
  auto fnv = [&](std::uint64_t h) {
    for (unsigned char c : key) h = (h ^ c) * 1099511628211ULL;
    return h;
  };
  std::uint64_t a = fnv(1469598103934665603ULL), b = fnv(0x9E3779B97F4A7C15ULL);
  char out[40];
  std::snprintf(out, sizeof out, "%08x-%04x-4%03x-%04x-%012llx", static_cast<unsigned>(a >> 32), static_cast<unsigned>((a >> 16) & 0xffff),
                static_cast<unsigned>(a & 0xfff), static_cast<unsigned>(0x8000 | ((b >> 48) & 0x3fff)),
                static_cast<unsigned long long>(b & 0xffffffffffffULL));
  return out;
}

std::string str(const Json& j, const char* key) {
  auto it = j.find(key);
  return it != j.end() && it->is_string() ? it->get<std::string>() : std::string();
}

}  // namespace

std::string write(const Document& d) {
  std::string x;
  x.reserve(4096 + d.bodyText.size());
  x += "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<ClinicalDocument xmlns=\"urn:hl7-org:v3\" xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\">\n";
  x += "  <realmCode code=\"FR\"/>\n  <typeId root=\"2.16.840.1.113883.1.3\" extension=\"POCD_HD000040\"/>\n";
  // HL7 France and the CI-SIS header templates.
  x += "  <templateId root=\"2.16.840.1.113883.2.8.2.1\"/>\n  <templateId root=\"1.2.250.1.213.1.1.1.1\"/>\n";
  x += "  " + idXml(d.id) + "\n";
  x += "  <code code=\"" + esc(d.code) + "\" codeSystem=\"" + esc(d.codeSystem) + "\"" +
       (d.codeDisplay.empty() ? "" : " displayName=\"" + esc(d.codeDisplay) + "\"") + "/>\n";
  x += "  <title>" + esc(d.title) + "</title>\n";
  x += "  <effectiveTime value=\"" + esc(d.effectiveTime) + "\"/>\n";
  x += "  <confidentialityCode code=\"N\" codeSystem=\"2.16.840.1.113883.5.25\"/>\n  <languageCode code=\"fr-FR\"/>\n";
  x += "  <recordTarget><patientRole>";
  for (const auto& id : d.patientIds) x += idXml(id);
  x += "<patient><name>";
  for (const auto& g : d.given) x += "<given>" + esc(g) + "</given>";
  if (!d.birthFamily.empty()) x += "<family qualifier=\"BR\">" + esc(d.birthFamily) + "</family>";
  if (!d.usualFamily.empty()) x += "<family qualifier=\"SP\">" + esc(d.usualFamily) + "</family>";
  x += "</name>";
  x += d.gender.empty() ? "<administrativeGenderCode nullFlavor=\"UNK\"/>"
                        : "<administrativeGenderCode code=\"" + esc(d.gender) + "\" codeSystem=\"2.16.840.1.113883.5.1\"/>";
  if (!d.birthTime.empty()) x += "<birthTime value=\"" + esc(d.birthTime) + "\"/>";
  if (!d.birthPlaceCode.empty() || !d.birthPlaceCity.empty())
    x += "<birthplace><place><addr>" + (d.birthPlaceCode.empty() ? "" : "<county>" + esc(d.birthPlaceCode) + "</county>") +
         (d.birthPlaceCity.empty() ? "" : "<city>" + esc(d.birthPlaceCity) + "</city>") + "</addr></place></birthplace>";
  x += "</patient></patientRole></recordTarget>\n";
  x += "  <author><time value=\"" + esc(d.effectiveTime) + "\"/><assignedAuthor>" + idXml(d.authorId);
  if (!d.authorFamily.empty() || !d.authorGiven.empty())
    x += "<assignedPerson><name>" + (d.authorGiven.empty() ? "" : "<given>" + esc(d.authorGiven) + "</given>") +
         (d.authorFamily.empty() ? "" : "<family>" + esc(d.authorFamily) + "</family>") + "</name></assignedPerson>";
  x += "</assignedAuthor></author>\n";
  x += "  <custodian><assignedCustodian><representedCustodianOrganization>" + idXml(d.custodianId);
  if (!d.custodianName.empty()) x += "<name>" + esc(d.custodianName) + "</name>";
  x += "</representedCustodianOrganization></assignedCustodian></custodian>\n";
  x += "  <component><structuredBody>\n";
  x += std::string("    <component><section><title>") + (d.code == "57133-1" ? "Adressage" : "Compte rendu") + "</title><text>";
  std::size_t at = 0;
  while (at <= d.bodyText.size()) {
    auto nl = d.bodyText.find('\n', at);
    std::string line = d.bodyText.substr(at, nl == std::string::npos ? std::string::npos : nl - at);
    if (!line.empty()) x += "<paragraph>" + esc(line) + "</paragraph>";
    if (nl == std::string::npos) break;
    at = nl + 1;
  }
  if (d.bodyText.empty()) x += "<paragraph/>";
  x += "</text></section></component>\n";
  if (!d.results.empty()) {
    x += "    <component><section><title>Scores</title><text><table><tbody>";
    for (const auto& r : d.results)
      x += "<tr><td>" + esc(r.display.empty() ? r.code : r.display) + "</td><td>" + esc(r.value) + (r.unit.empty() || r.unit == "1" ? "" : " " + esc(r.unit)) +
           "</td></tr>";
    x += "</tbody></table></text>\n";
    for (const auto& r : d.results) {
      x += "      <entry><observation classCode=\"OBS\" moodCode=\"EVN\"><code code=\"" + esc(r.code) + "\" codeSystem=\"" + esc(r.codeSystem) + "\"" +
           (r.codeSystemName.empty() ? "" : " codeSystemName=\"" + esc(r.codeSystemName) + "\"") +
           (r.display.empty() ? "" : " displayName=\"" + esc(r.display) + "\"") + "/><statusCode code=\"completed\"/>";
      if (!r.time.empty()) x += "<effectiveTime value=\"" + esc(r.time) + "\"/>";
      x += "<value xsi:type=\"PQ\" value=\"" + esc(r.value) + "\" unit=\"" + esc(r.unit.empty() ? "1" : r.unit) + "\"/></observation></entry>\n";
    }
    x += "    </section></component>\n";
  }
  x += "  </structuredBody></component>\n</ClinicalDocument>\n";
  return x;
}

bool fromFhir(const Json& bundle, const std::string& custodianName, Document& d, std::string& error) {
  d = Document{};
  if (!bundle.is_object() || !bundle.contains("entry") || !bundle["entry"].is_array()) {
    error = "a Bundle with entries is expected";
    return false;
  }
  const Json* patient = nullptr;
  const Json* composition = nullptr;
  const Json* referral = nullptr;
  std::vector<const Json*> observations;
  for (const auto& e : bundle["entry"]) {
    if (!e.is_object() || !e.contains("resource") || !e["resource"].is_object()) continue;
    const Json& r = e["resource"];
    std::string t = str(r, "resourceType");
    if (t == "Patient" && !patient) patient = &r;
    else if (t == "Composition" && !composition) composition = &r;
    else if (t == "ServiceRequest" && !referral) referral = &r;
    else if (t == "Observation") observations.push_back(&r);
  }
  if (!patient || (!composition && !referral)) {
    error = patient ? "the Bundle holds no Composition (a report) nor ServiceRequest (a referral)" : "the Bundle holds no Patient";
    return false;
  }
  // A referral without a report: the referral letter (LOINC 57133-1 "Referral note") made from it.
  Json letter;
  if (!composition) {
    letter = {{"resourceType", "Composition"}, {"status", "final"}, {"title", "Lettre d'adressage"}, {"date", str(*referral, "authoredOn")},
              {"type", {{"coding", Json::array({{{"system", "http://loinc.org"}, {"code", "57133-1"}, {"display", "Referral note"}}})}}}};
    if (auto ids = referral->find("identifier"); ids != referral->end() && ids->is_array() && !ids->empty()) letter["identifier"] = (*ids)[0];
    if (auto rq = referral->find("requester"); rq != referral->end() && rq->is_object()) letter["author"] = Json::array({*rq});
    std::string text;
    for (const auto& r : referral->value("reasonCode", Json::array()))
      if (auto t = str(r, "text"); !t.empty()) text += (text.empty() ? "Motif : " : "\n") + t;
    if (auto p = referral->find("occurrencePeriod"); p != referral->end() && p->is_object() && !str(*p, "end").empty())
      text += (text.empty() ? "" : "\n") + std::string("Réponse attendue avant le ") + str(*p, "end") + ".";
    for (const auto& n : referral->value("note", Json::array()))
      if (auto t = str(n, "text"); !t.empty()) text += (text.empty() ? "" : "\n") + fhir::textFromMarkdown(t);
    letter["extension"] = Json::array({{{"url", "https://douleur77.fr/fhir/StructureDefinition/report-text"}, {"valueString", text}}});
    composition = &letter;
  }
  for (const auto& id : patient->value("identifier", Json::array())) {
    std::string system = str(id, "system");
    if (system.rfind("urn:oid:1.2.250.1.213.1.4.", 0) == 0) d.patientIds.push_back({system.substr(8), str(id, "value")});
  }
  if (d.patientIds.empty()) {
    error = "the Patient has no INS: a CI-SIS document names its patient by the INS";
    return false;
  }
  for (const auto& n : patient->value("name", Json::array())) {
    std::string use = str(n, "use"), family = str(n, "family");
    if ((use == "official" || use.empty()) && d.birthFamily.empty()) d.birthFamily = family;
    else if (use == "usual" && d.usualFamily.empty()) d.usualFamily = family;
    if (d.given.empty())
      for (const auto& g : n.value("given", Json::array()))
        if (g.is_string()) d.given.push_back(g.get<std::string>());
  }
  std::string gender = str(*patient, "gender");
  d.gender = gender == "male" ? "M" : gender == "female" ? "F" : gender.empty() ? "" : "UN";
  d.birthTime = hl7Time(str(*patient, "birthDate"));
  d.birthPlaceCode = fhir::fr::birthPlaceCode(*patient);
  d.birthPlaceCity = fhir::fr::birthPlaceCity(*patient);
  const Json& c = *composition;
  // The document's id: a UUID made from the network's identifier of the report (the network has no
  // OID of its own), that identifier as the extension.
  std::string key = str(c, "id");
  std::string extension;
  if (auto id = c.find("identifier"); id != c.end() && id->is_object()) {
    key = str(*id, "system") + "|" + str(*id, "value");
    extension = str(*id, "value");
  }
  d.id = {uuidFrom(key), extension};
  if (auto t = c.find("type"); t != c.end() && t->is_object())
    for (const auto& k : t->value("coding", Json::array()))
      if (str(k, "system") == "http://loinc.org") {
        d.code = str(k, "code");
        d.codeSystem = "2.16.840.1.113883.6.1";
        d.codeDisplay = str(k, "display");
      }
  if (d.code.empty()) {
    error = "the Composition has no LOINC type";
    return false;
  }
  d.title = str(c, "title");
  d.effectiveTime = hl7Time(str(c, "date"));
  for (const auto& a : c.value("author", Json::array())) {
    std::string member = a.contains("identifier") && a["identifier"].is_object() ? str(a["identifier"], "value") : "";
    if (member.rfind("rpps:", 0) == 0) d.authorId = {"1.2.250.1.71.4.2.1", "8" + member.substr(5)};
  }
  d.custodianName = custodianName;
  for (const auto& x : c.value("extension", Json::array()))
    if (str(x, "url") == "https://douleur77.fr/fhir/StructureDefinition/report-text") d.bodyText = str(x, "valueString");
  d.structured = true;
  auto add = [&](const Json& code, const Json& holder, const std::string& time) {
    auto codings = code.find("coding");
    if (codings == code.end() || !codings->is_array() || codings->empty() || !(*codings)[0].is_object()) return;
    const Json* coding = &(*codings)[0];
    Document::Result r;
    std::string system = str(*coding, "system");
    r.code = str(*coding, "code");
    // CDA names code systems by OID (or UUID): LOINC's, an urn:oid's, else a UUID made from the
    // system's URL (kept as codeSystemName).
    if (system == "http://loinc.org") r.codeSystem = "2.16.840.1.113883.6.1";
    else if (system.rfind("urn:oid:", 0) == 0) r.codeSystem = system.substr(8);
    else {
      r.codeSystem = uuidFrom(system);
      r.codeSystemName = system;
    }
    r.display = str(*coding, "display");
    r.time = time;
    if (auto q = holder.find("valueQuantity"); q != holder.end() && q->is_object() && q->contains("value")) {
      r.value = (*q)["value"].dump();
      r.unit = str(*q, "code").empty() ? str(*q, "unit") : str(*q, "code");
    } else if (auto v = holder.find("valueInteger"); v != holder.end() && v->is_number()) {
      r.value = v->dump();
    } else {
      return;
    }
    d.results.push_back(std::move(r));
  };
  for (const Json* o : observations) {
    std::string status = str(*o, "status");
    if (status == "entered-in-error" || status == "cancelled") continue;
    std::string time = hl7Time(str(*o, "effectiveDateTime"));
    if (o->contains("code")) add((*o)["code"], *o, time);
    for (const auto& comp : o->value("component", Json::array()))
      if (comp.is_object() && comp.contains("code")) add(comp["code"], comp, time);
  }
  return true;
}

std::string rppsOf(const Identifier& id) {
  if (id.root == "1.2.250.1.71.4.2.1" && id.extension.size() == 12 && id.extension[0] == '8') return id.extension.substr(1);
  return "";
}

bool read(std::string_view xmlText, Schema* schema, const Limits& limits, Document& doc, std::vector<Issue>& issues) {
  doc = Document{};
  if (xmlText.size() > limits.maxBytes) {
    issues.push_back({"", "the document has " + std::to_string(xmlText.size()) + " bytes, more than the " + std::to_string(limits.maxBytes) + " accepted"});
    return false;
  }
  if (xml::containsNoCase(xmlText, "<!DOCTYPE")) {
    issues.push_back({"", "the document has a DOCTYPE: DOCTYPE declarations (and the entities they declare) are refused"});
    return false;
  }
  if (auto e = xml::encodingProblem(xmlText); !e.empty()) {
    issues.push_back({"", e});
    return false;
  }
  if (auto e = xml::start(); !e.empty()) {
    issues.push_back({"", e});
    return false;
  }
  Handler handler(limits.maxDepth, issues);
  {
    std::unique_lock<std::mutex> lock;
    if (schema) lock = std::unique_lock<std::mutex>(schema->impl().parse);
    try {
      std::unique_ptr<xc::SAX2XMLReader> reader(
          schema ? xc::XMLReaderFactory::createXMLReader(xc::XMLPlatformUtils::fgMemoryManager, schema->impl().pool)
                 : xc::XMLReaderFactory::createXMLReader());
      xml::configureSecure(*reader, schema != nullptr);
      if (schema) reader->setFeature(xc::XMLUni::fgXercesUseCachedGrammarInParse, true);
      reader->setContentHandler(&handler);
      reader->setErrorHandler(&handler);
      reader->setLexicalHandler(&handler);
      reader->setEntityResolver(&handler);
      xc::MemBufInputSource source(reinterpret_cast<const XMLByte*>(xmlText.data()), xmlText.size(), "document", false);
      reader->parse(source);
    } catch (const Stop&) {
    } catch (const xc::XMLException& e) {
      issues.push_back({"", "not readable XML: " + xml::utf8(e.getMessage())});
      return false;
    } catch (...) {
      issues.push_back({"", "not readable XML"});
      return false;
    }
  }
  if (handler.failed) return false;
  // A self-presenting CI-SIS document carries its ClinicalDocument in data:Contenu, inside the
  // xsl:stylesheet that displays it.
  const Element* root = &handler.root;
  if ((root->name == "stylesheet" || root->name == "transform") && root->ns == kXslt) {
    const Element* inside = nullptr;
    for (const auto& c : root->children)
      if (c.name == "Contenu" && c.ns == kCisis)
        for (const auto& d : c.children)
          if (d.name == "ClinicalDocument" && d.ns == kHl7 && !inside) inside = &d;
    if (!inside) {
      issues.push_back({"/", "a self-presenting document (xsl:" + root->name + ") without a ClinicalDocument in its data:Contenu (urn:asip-sante:ci-sis)"});
      return false;
    }
    root = inside;
  }
  const Element& r = *root;
  if (r.name != "ClinicalDocument" || r.ns != kHl7) {
    issues.push_back({"/", "the root element is not ClinicalDocument in the urn:hl7-org:v3 namespace"});
    return false;
  }
  for (const Element* t : r.all("templateId")) doc.templateIds.push_back(t->attr("root"));
  doc.id = idOf(r.child("id"));
  if (const Element* c = r.child("code")) {
    doc.code = c->attr("code");
    doc.codeSystem = c->attr("codeSystem");
    doc.codeDisplay = c->attr("displayName");
  }
  if (const Element* t = r.child("title")) doc.title = trimmed(t->text);
  if (const Element* t = r.child("effectiveTime")) doc.effectiveTime = t->attr("value");
  const Element* role = r.at("recordTarget/patientRole");
  if (role) {
    for (const Element* id : role->all("id")) doc.patientIds.push_back(idOf(id));
    if (const Element* p = role->child("patient")) {
      for (const Element* name : p->all("name")) {
        for (const Element* f : name->all("family")) {
          std::string q = f->attr("qualifier");
          std::string v = trimmed(f->text);
          if (q.find("BR") != std::string::npos) {
            if (doc.birthFamily.empty()) doc.birthFamily = v;
          } else if (doc.usualFamily.empty()) {
            doc.usualFamily = v;
          }
        }
        if (doc.given.empty())
          for (const Element* g : name->all("given"))
            if (auto v = trimmed(g->text); !v.empty()) doc.given.push_back(v);
      }
      if (const Element* g = p->child("administrativeGenderCode")) doc.gender = g->attr("code");
      if (const Element* b = p->child("birthTime")) doc.birthTime = b->attr("value");
      if (const Element* a = p->at("birthplace/place/addr")) {
        if (const Element* c = a->child("county")) doc.birthPlaceCode = trimmed(c->text);
        if (const Element* c = a->child("city")) doc.birthPlaceCity = trimmed(c->text);
      }
    }
  }
  if (const Element* a = r.at("author/assignedAuthor")) {
    doc.authorId = idOf(a->child("id"));
    if (const Element* n = a->at("assignedPerson/name")) {
      if (const Element* f = n->child("family")) doc.authorFamily = trimmed(f->text);
      if (const Element* g = n->child("given")) doc.authorGiven = trimmed(g->text);
    }
  }
  if (const Element* o = r.at("custodian/assignedCustodian/representedCustodianOrganization")) {
    doc.custodianId = idOf(o->child("id"));
    if (const Element* n = o->child("name")) doc.custodianName = trimmed(n->text);
  }
  if (const Element* body = r.at("component/nonXMLBody/text")) {
    doc.bodyMediaType = body->attr("mediaType");
    if (body->attr("representation") == "B64") {
      for (char ch : body->text)
        if (ch != ' ' && ch != '\n' && ch != '\r' && ch != '\t') doc.bodyBase64 += ch;
      std::string decoded;
      if (!base64::decode(doc.bodyBase64, decoded)) {
        issues.push_back({"ClinicalDocument/component/nonXMLBody/text", "the Base64 content does not decode"});
        return false;
      }
    } else {
      doc.bodyText = trimmed(body->text);
    }
  } else if (const Element* sb = r.at("component/structuredBody")) {
    doc.structured = true;
    sections(*sb, doc.bodyText, doc.results);
  }
  std::size_t before = issues.size();
  if (doc.id.root.empty()) issues.push_back({"ClinicalDocument/id", "the document has no id"});
  if (doc.code.empty()) issues.push_back({"ClinicalDocument/code", "the document has no type (code)"});
  if (doc.effectiveTime.empty()) issues.push_back({"ClinicalDocument/effectiveTime", "the document has no date (effectiveTime)"});
  if (!role || doc.patientIds.empty()) issues.push_back({"ClinicalDocument/recordTarget/patientRole/id", "the document names no patient id"});
  return issues.size() == before;
}

void toBundle(const Document& d, std::string_view xmlText, Json& bundle) {
  if (!bundle.is_object()) bundle = {{"resourceType", "Bundle"}, {"type", "transaction"}, {"entry", Json::array()}};
  auto& entries = bundle["entry"];
  auto url = [&](std::size_t n) {
    char b[64];
    std::snprintf(b, sizeof b, "urn:uuid:00000000-0000-4000-a000-%012zu", n);
    return std::string(b);
  };
  Json patient = {{"resourceType", "Patient"}};
  Json ids = Json::array();
  for (const auto& id : d.patientIds) {
    if (id.root.empty() || id.extension.empty()) continue;
    Json i = {{"system", "urn:oid:" + id.root}, {"value", id.extension}};
    if (id.root == "1.2.250.1.213.1.4.8" || id.root == "1.2.250.1.213.1.4.10" || id.root == "1.2.250.1.213.1.4.11") {
      i["use"] = "official";
      i["type"] = {{"coding", Json::array({{{"system", "https://hl7.fr/ig/fhir/core/CodeSystem/fr-core-cs-v2-0203"}, {"code", "INS-NIR"}}})}};
    } else if (id.root == "1.2.250.1.213.1.4.9") {
      i["use"] = "temp";
      i["type"] = {{"coding", Json::array({{{"system", "https://hl7.fr/ig/fhir/core/CodeSystem/fr-core-cs-v2-0203"}, {"code", "INS-NIA"}}})}};
    }
    ids.push_back(i);
  }
  if (!ids.empty()) patient["identifier"] = ids;
  Json names = Json::array();
  if (!d.birthFamily.empty()) names.push_back({{"use", "official"}, {"family", d.birthFamily}, {"given", d.given}});
  if (!d.usualFamily.empty()) names.push_back({{"use", "usual"}, {"family", d.usualFamily}, {"given", d.given}});
  if (!names.empty()) patient["name"] = names;
  if (d.gender == "M") patient["gender"] = "male";
  else if (d.gender == "F") patient["gender"] = "female";
  else if (d.gender == "UN") patient["gender"] = "unknown";
  if (auto b = fhirTime(d.birthTime); b.size() >= 10) patient["birthDate"] = b.substr(0, 10);
  // The birthplace: its code only when it has the form of an INSEE commune code.
  fhir::fr::setBirthPlace(patient, fhir::fr::isInseeCommuneCode(d.birthPlaceCode) ? d.birthPlaceCode : "", d.birthPlaceCity);
  std::string patientUrl = url(entries.size() + 1);
  entries.push_back({{"fullUrl", patientUrl}, {"resource", patient}, {"request", {{"method", "POST"}, {"url", "Patient"}}}});
  Json doc = {{"resourceType", "DocumentReference"}, {"status", "current"}};
  // II -> Identifier as HL7's CDA-to-FHIR guidance does: the root as the system and the extension
  // as the value, or the root alone as a URI.
  std::string root = (d.id.root.find('-') != std::string::npos ? "urn:uuid:" : "urn:oid:") + d.id.root;
  doc["masterIdentifier"] = d.id.extension.empty() ? Json{{"system", "urn:ietf:rfc:3986"}, {"value", root}}
                                                   : Json{{"system", root}, {"value", d.id.extension}};
  Json coding = {{"code", d.code}};
  coding["system"] = d.codeSystem == "2.16.840.1.113883.6.1" ? "http://loinc.org" : "urn:oid:" + d.codeSystem;
  if (!d.codeDisplay.empty()) coding["display"] = d.codeDisplay;
  doc["type"] = {{"coding", Json::array({coding})}};
  if (!d.title.empty()) doc["description"] = d.title;
  doc["subject"] = {{"reference", patientUrl}};
  std::string when = fhirTime(d.effectiveTime);
  if (when.find('T') != std::string::npos) doc["date"] = when;
  else if (!when.empty()) doc["context"] = {{"period", {{"start", when}}}};
  if (auto rpps = rppsOf(d.authorId); !rpps.empty()) {
    Json author = {{"identifier", {{"system", "https://rpps.esante.gouv.fr"}, {"value", rpps}}}};
    std::string name = d.authorGiven + (d.authorGiven.empty() ? "" : " ") + d.authorFamily;
    if (!name.empty()) author["display"] = name;
    doc["author"] = Json::array({author});
  }
  if (!d.custodianId.root.empty()) {
    Json c = {{"identifier", {{"system", "urn:oid:" + d.custodianId.root}, {"value", d.custodianId.extension}}}};
    if (!d.custodianName.empty()) c["display"] = d.custodianName;
    doc["custodian"] = c;
  }
  Json content = Json::array({{{"attachment", {{"contentType", "text/xml"}, {"data", base64::encode(xmlText)}, {"title", d.title}}},
                               {"format", {{"system", "urn:oid:1.3.6.1.4.1.19376.1.2.3"}, {"code", "urn:ihe:iti:xds-sd:text:2008"}}}}});
  if (d.bodyMediaType == "application/pdf" && !d.bodyBase64.empty())
    content.push_back({{"attachment", {{"contentType", "application/pdf"}, {"data", d.bodyBase64}}}});
  doc["content"] = content;
  // Level 3: each result an Observation of the patient, derived from the document (and found
  // again through it: the document's identifier with the result's position).
  std::string docKey = doc["masterIdentifier"]["system"].get<std::string>() + "|" + doc["masterIdentifier"]["value"].get<std::string>();
  for (std::size_t k = 0; k < d.results.size(); ++k) {
    const auto& r = d.results[k];
    Json coding = {{"code", r.code}};
    coding["system"] = r.codeSystem == "2.16.840.1.113883.6.1" ? std::string("http://loinc.org")
                       : !r.codeSystemName.empty()          ? r.codeSystemName
                                                             : "urn:oid:" + r.codeSystem;
    if (!r.display.empty()) coding["display"] = r.display;
    Json o = {{"resourceType", "Observation"}, {"status", "final"}, {"code", {{"coding", Json::array({coding})}}}, {"subject", {{"reference", patientUrl}}}};
    Json value = Json::parse(r.value, nullptr, false);
    if (value.is_number()) {
      Json q = {{"value", value}};
      if (!r.unit.empty() && r.unit != "1") q["unit"] = r.unit, q["system"] = "http://unitsofmeasure.org", q["code"] = r.unit;
      o["valueQuantity"] = q;
    } else {
      o["valueString"] = r.value;
    }
    if (auto t = fhirTime(r.time); !t.empty()) o["effectiveDateTime"] = t;
    o["derivedFrom"] = Json::array({{{"reference", url(entries.size() + 1 + d.results.size() - k)}}});
    std::string entryId = docKey + "#" + std::to_string(k + 1);
    o["identifier"] = Json::array({{{"system", "https://douleur77.fr/fhir/sid/cda-entry"}, {"value", entryId}}});
    entries.push_back({{"fullUrl", url(entries.size() + 1)},
                       {"resource", o},
                       {"request", {{"method", "POST"}, {"url", "Observation"}, {"ifNoneExist", "identifier=https://douleur77.fr/fhir/sid/cda-entry|" + entryId}}}});
  }
  // The same document sent again (with other bytes) is not stored twice.
  std::string ifNoneExist = "identifier=" + doc["masterIdentifier"]["system"].get<std::string>() + "|" + doc["masterIdentifier"]["value"].get<std::string>();
  entries.push_back({{"fullUrl", url(entries.size() + 1)},
                     {"resource", doc},
                     {"request", {{"method", "POST"}, {"url", "DocumentReference"}, {"ifNoneExist", ifNoneExist}}}});
}

}  // namespace passerelle::cda
