// CDA R2 reading and mapping (see cda.h).
#include "mappings/cda/cda.h"

#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <xercesc/framework/LocalFileInputSource.hpp>
#include <xercesc/framework/MemBufInputSource.hpp>
#include <xercesc/framework/XMLGrammarPoolImpl.hpp>
#include <xercesc/sax/Locator.hpp>
#include <xercesc/sax2/Attributes.hpp>
#include <xercesc/sax2/XMLReaderFactory.hpp>
#include <xercesc/validators/common/Grammar.hpp>

#include "mappings/common/base64.h"
#include "mappings/xml/secure_xml.h"

namespace passerelle::cda {

namespace xc = XERCES_CPP_NAMESPACE;
using Json = nlohmann::json;

constexpr const char* kHl7 = "urn:hl7-org:v3";

struct Schema::Impl {
  xc::XMLGrammarPool* pool = nullptr;
  std::mutex parse;  // one parse per grammar at a time (xerces compiles patterns lazily in it)
  ~Impl() { delete pool; }
};

Schema::Schema() : impl_(std::make_unique<Impl>()) {}
Schema::~Schema() = default;

std::shared_ptr<Schema> Schema::load(const std::string& path, std::string& error) {
  error = xml::start();
  if (!error.empty()) return nullptr;
  std::shared_ptr<Schema> s(new Schema());
  s->impl_->pool = new xc::XMLGrammarPoolImpl(xc::XMLPlatformUtils::fgMemoryManager);
  xml::LoadErrors handler;
  try {
    std::unique_ptr<xc::SAX2XMLReader> reader(xc::XMLReaderFactory::createXMLReader(xc::XMLPlatformUtils::fgMemoryManager, s->impl_->pool));
    // The schema is the operator's local file: its includes and imports are read next to it.
    xml::configureSecure(*reader, true);
    reader->setFeature(xc::XMLUni::fgXercesDisableDefaultEntityResolution, false);
    reader->setErrorHandler(&handler);
    XMLCh* p = xc::XMLString::transcode(path.c_str());
    xc::LocalFileInputSource source(p);
    xc::XMLString::release(&p);
    if (!reader->loadGrammar(source, xc::Grammar::SchemaGrammarType, true) && handler.text.empty()) handler.text = "no grammar";
  } catch (const xc::XMLException& e) {
    handler.text += xml::utf8(e.getMessage());
  } catch (...) {
    handler.text += "unexpected failure";
  }
  if (!handler.text.empty()) {
    error = "the CDA schema " + path + " cannot be loaded: " + handler.text;
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

void sections(const Element& e, std::string& out) {
  for (const Element* comp : e.all("component")) {
    const Element* s = comp->child("section");
    if (!s) continue;
    if (const Element* t = s->child("title")) {
      std::string title = trimmed(t->text);
      if (!title.empty()) out += (out.empty() ? "" : "\n") + title + "\n";
    }
    if (const Element* t = s->child("text")) textOf(*t, out);
    sections(*s, out);
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
  const Element& r = handler.root;
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
    sections(*sb, doc.bodyText);
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
  std::string patientUrl = url(entries.size() + 1);
  entries.push_back({{"fullUrl", patientUrl}, {"resource", patient}, {"request", {{"method", "POST"}, {"url", "Patient"}}}});
  Json doc = {{"resourceType", "DocumentReference"}, {"status", "current"}};
  doc["masterIdentifier"] = {{"system", "urn:ietf:rfc:3986"},
                             {"value", d.id.extension.empty() ? "urn:oid:" + d.id.root : "urn:oid:" + d.id.root + "/" + d.id.extension}};
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
  entries.push_back({{"fullUrl", url(entries.size() + 1)}, {"resource", doc}, {"request", {{"method", "POST"}, {"url", "DocumentReference"}}}});
}

}  // namespace passerelle::cda
