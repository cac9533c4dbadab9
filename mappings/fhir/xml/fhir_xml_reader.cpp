// FHIR XML to JSON in one SAX2 pass, writing the JSON text as the elements arrive: each open
// element is a frame that knows its type (from the validation tables) and the one member it is
// writing. A primitive's id and extensions (JSON's "_name" sibling) are written into a side buffer
// of the owning frame and appended when the member closes, with nulls where an item has none.
// The narrative div is serialized back to XHTML text. One reader per thread, reused.
#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <memory>
#include <xercesc/framework/MemBufInputSource.hpp>
#include <xercesc/sax/Locator.hpp>
#include <xercesc/sax2/Attributes.hpp>
#include <xercesc/util/OutOfMemoryException.hpp>

#include "mappings/fhir/validation/validation_tables.h"
#include "mappings/fhir/xml/fhir_xml.h"
#include "mappings/xml/secure_xml.h"

namespace passerelle::fhir {

namespace {

namespace xc = XERCES_CPP_NAMESPACE;
namespace sx = ::passerelle::xml;
using validation::ElementDef;
using validation::Prim;
using validation::TypeDef;
using validation::ValidationTables;

constexpr XMLCh kFhirNs[] = u"http://hl7.org/fhir";
constexpr XMLCh kXhtmlNs[] = u"http://www.w3.org/1999/xhtml";
constexpr std::size_t kMaxIssues = 200;

// Thrown from the handler to stop the parse; caught in fhirXmlToJson.
struct Stop {};

bool equals(const XMLCh* a, const XMLCh* b) { return xc::XMLString::equals(a, b); }

bool equalsAscii(const XMLCh* s, std::string_view a) {
  for (char c : a) {
    if (*s != static_cast<XMLCh>(static_cast<unsigned char>(c))) return false;
    ++s;
  }
  return *s == 0;
}

bool isXmlSpace(XMLCh c) { return c == u' ' || c == u'\t' || c == u'\r' || c == u'\n'; }

// Appends UTF-16 text as the inside of a JSON string literal.
void appendJsonChars(std::string& out, const XMLCh* s, std::size_t n) {
  for (std::size_t i = 0; i < n; ++i) {
    XMLCh c = s[i];
    if (c >= 0x20 && c < 0x80 && c != u'"' && c != u'\\') {
      // A run of plain ASCII, copied at once.
      std::size_t j = i + 1;
      while (j < n && s[j] >= 0x20 && s[j] < 0x80 && s[j] != u'"' && s[j] != u'\\') ++j;
      std::size_t at = out.size();
      out.resize(at + (j - i));
      for (std::size_t k = i; k < j; ++k) out[at + k - i] = static_cast<char>(s[k]);
      i = j - 1;
      continue;
    }
    if (c < 0x80) {
      switch (c) {
        case u'"': out += "\\\""; break;
        case u'\\': out += "\\\\"; break;
        case u'\n': out += "\\n"; break;
        case u'\r': out += "\\r"; break;
        case u'\t': out += "\\t"; break;
        default: {
          char buf[8];
          std::snprintf(buf, sizeof buf, "\\u%04x", static_cast<unsigned>(c));
          out += buf;
        }
      }
      continue;
    }
    std::size_t j = i;
    while (j < n && s[j] >= 0x80) ++j;
    sx::appendUtf8(out, s + i, j - i);
    i = j - 1;
  }
}

void appendJsonUtf8(std::string& out, std::string_view s) {
  for (char ch : s) {
    auto c = static_cast<unsigned char>(ch);
    if (c == '"') out += "\\\"";
    else if (c == '\\') out += "\\\\";
    else if (c == '\n') out += "\\n";
    else if (c == '\r') out += "\\r";
    else if (c == '\t') out += "\\t";
    else if (c < 0x20) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\u%04x", static_cast<unsigned>(c));
      out += buf;
    } else out += ch;
  }
}

// Escapes text for XHTML content (or, with `attribute`, a double-quoted attribute value).
void appendXhtmlChars(std::string& out, const XMLCh* s, std::size_t n, bool attribute) {
  std::size_t start = 0;
  auto flush = [&](std::size_t end) {
    if (end > start) sx::appendUtf8(out, s + start, end - start);
    start = end + 1;
  };
  for (std::size_t i = 0; i < n; ++i) {
    const char* rep = nullptr;
    switch (s[i]) {
      case u'&': rep = "&amp;"; break;
      case u'<': rep = "&lt;"; break;
      case u'>': rep = "&gt;"; break;
      case u'"': rep = attribute ? "&quot;" : nullptr; break;
      case u'\r': rep = "&#13;"; break;
      case u'\t': rep = attribute ? "&#9;" : nullptr; break;
      case u'\n': rep = attribute ? "&#10;" : nullptr; break;
      default: break;
    }
    if (rep) {
      flush(i);
      out += rep;
    }
  }
  flush(n);
}

// FHIR integer: -?(0|[1-9][0-9]*), at most 10 digits (the validator checks the 32-bit range).
bool isIntegerText(std::string_view s) {
  std::size_t i = s.size() && s[0] == '-' ? 1 : 0;
  std::size_t digits = s.size() - i;
  if (digits == 0 || digits > 10) return false;
  if (s[i] == '0' && digits > 1) return false;
  for (; i < s.size(); ++i)
    if (s[i] < '0' || s[i] > '9') return false;
  return true;
}

// FHIR decimal, which is also JSON's number grammar, and finite as a double.
bool isDecimalText(std::string_view s) {
  std::size_t i = 0, n = s.size();
  auto digits = [&] {
    std::size_t b = i;
    while (i < n && s[i] >= '0' && s[i] <= '9') ++i;
    return i - b;
  };
  if (i < n && s[i] == '-') ++i;
  std::size_t intStart = i;
  std::size_t d = digits();
  if (d == 0 || (d > 1 && s[intStart] == '0')) return false;
  if (i < n && s[i] == '.') {
    ++i;
    if (digits() == 0) return false;
  }
  if (i < n && (s[i] == 'e' || s[i] == 'E')) {
    ++i;
    if (i < n && (s[i] == '+' || s[i] == '-')) ++i;
    if (digits() == 0) return false;
  }
  if (i != n || n > 400) return false;
  return std::isfinite(std::strtod(std::string(s).c_str(), nullptr));
}

// Whether "<!DOCTYPE" (in any case) occurs in the text.
bool hasDoctype(std::string_view xml) {
  for (std::size_t at = xml.find("<!"); at != std::string_view::npos; at = xml.find("<!", at + 2))
    if (sx::containsNoCase(xml.substr(at, 9), "<!DOCTYPE")) return true;
  return false;
}

class Handler : public xc::DefaultHandler {
 public:
  explicit Handler(const ValidationTables& tables) : tables_(tables) {}

  // Ready for one document.
  void reset(std::string& json, std::vector<Issue>& issues, int maxDepth) {
    out_ = &json;
    issues_ = &issues;
    maxDepth_ = maxDepth;
    frames_.clear();
    frames_.reserve(static_cast<std::size_t>(maxDepth) + 2);
    if (unders_.size() < static_cast<std::size_t>(maxDepth) + 2) unders_.resize(static_cast<std::size_t>(maxDepth) + 2);
    xhtmlNames_.clear();
    seen_.clear();
    skip_ = 0;
    failed = false;
    done = false;
    locator_ = nullptr;
  }

  bool failed = false;
  bool done = false;

  void setDocumentLocator(const xc::Locator* const l) override { locator_ = l; }

  void startElement(const XMLCh* const uri, const XMLCh* const localname, const XMLCh* const qname,
                    const xc::Attributes& attrs) override {
    if (static_cast<int>(frames_.size()) + skip_ >= maxDepth_) {
      fatal("structure", "Elements are nested deeper than " + std::to_string(maxDepth_) + " levels");
    }
    if (skip_ > 0) {
      ++skip_;
      return;
    }
    if (frames_.empty()) {
      startRoot(uri, localname, attrs);
      return;
    }
    Frame& parent = frames_.back();
    switch (parent.kind) {
      case Kind::Xhtml: startXhtml(uri, localname, qname, attrs); return;
      case Kind::Holder: startContained(uri, localname, attrs); return;
      default: startMember(uri, localname, attrs); return;
    }
  }

  void endElement(const XMLCh* const, const XMLCh* const, const XMLCh* const) override {
    if (skip_ > 0) {
      --skip_;
      return;
    }
    if (frames_.empty()) return;
    const std::size_t at = frames_.size() - 1;
    Frame& f = frames_[at];
    switch (f.kind) {
      case Kind::Resource:
      case Kind::Complex:
        closeMember(at);
        f.out->push_back('}');
        break;
      case Kind::Primitive:
        closeMember(at);
        if (f.opened) f.out->push_back('}');
        if (!f.hasValue && !f.opened)
          report("structure", "The element " + std::string(f.def->name) +
                                  " has no value attribute and no extension: a primitive element needs at least one");
        break;
      case Kind::Holder:
        if (!f.hasChild) report("structure", "The element " + f.def->name + " must contain a resource");
        break;
      case Kind::Xhtml: {
        const std::string& name = xhtmlNames_[f.xhtmlName];
        if (pendingOpen_) div_ += "/>";
        else {
          div_ += "</";
          div_ += name;
          div_ += '>';
        }
        pendingOpen_ = false;
        if (f.xhtmlName == 0) {
          f.out->push_back('"');
          appendJsonUtf8(*f.out, div_);
          f.out->push_back('"');
        }
        xhtmlNames_.pop_back();
        break;
      }
    }
    seen_.resize(f.seenBase);
    frames_.pop_back();
    if (frames_.empty()) done = true;
  }

  void characters(const XMLCh* const chars, const XMLSize_t length) override {
    if (skip_ > 0 || frames_.empty()) return;
    Frame& f = frames_.back();
    if (f.kind == Kind::Xhtml) {
      if (pendingOpen_) {
        div_ += '>';
        pendingOpen_ = false;
      }
      appendXhtmlChars(div_, chars, length, false);
      return;
    }
    std::size_t i = 0;
    while (i < length && isXmlSpace(chars[i])) ++i;
    if (i == length || f.textReported) return;
    f.textReported = true;
    std::string text;
    sx::appendUtf8(text, chars + i, std::min<std::size_t>(length - i, 40));
    report("structure", "Text ('" + text + "') is not allowed here: FHIR XML has no mixed content outside the "
                        "narrative div; a primitive's value goes in its value attribute");
  }

  void ignorableWhitespace(const XMLCh* const, const XMLSize_t) override {}

  void comment(const XMLCh* const chars, const XMLSize_t length) override {
    if (skip_ > 0 || frames_.empty() || frames_.back().kind != Kind::Xhtml) return;
    if (pendingOpen_) {
      div_ += '>';
      pendingOpen_ = false;
    }
    div_ += "<!--";
    sx::appendUtf8(div_, chars, length);
    div_ += "-->";
  }

  void startDTD(const XMLCh* const, const XMLCh* const, const XMLCh* const) override {
    fatal("security", "The document has a DOCTYPE: DOCTYPE declarations (and the entities they declare) are refused");
  }

  void startEntity(const XMLCh* const name) override {
    fatal("security", "The entity '" + sx::utf8(name) + "' is refused: only XML's own entities and character references are allowed");
  }

  xc::InputSource* resolveEntity(const XMLCh* const, const XMLCh* const) override {
    // Nothing is ever fetched: an empty document stands for any external entity.
    static const XMLByte kNothing[] = {0};
    return new xc::MemBufInputSource(kNothing, 0, "refused-external-entity", false);
  }

  void warning(const xc::SAXParseException&) override {}
  void error(const xc::SAXParseException& e) override { parseProblem(e); }
  void fatalError(const xc::SAXParseException& e) override {
    parseProblem(e);
    throw Stop{};
  }

  // An issue without a line (the parse failed outside the handler).
  void add(std::string severity, std::string code, std::string message) {
    failed = true;
    issues_->push_back({std::move(severity), std::move(code), std::move(message), path()});
  }

 private:
  enum class Kind : std::uint8_t { Resource, Complex, Primitive, Holder, Xhtml };

  struct Frame {
    Kind kind = Kind::Complex;
    const TypeDef* type = nullptr;    // the type of the members (a primitive's: Element)
    const ElementDef* def = nullptr;  // this element's definition; null for a resource
    std::string* out = nullptr;       // where this element's JSON goes
    int field = -1;                   // the member being written (element index), -1 none
    int last = -1;                    // the highest element index met, for the order
    int count = 0;                    // items of the member so far
    int underItems = 0;               // items represented in the member's "_name" buffer
    int jsonDepth = 0;
    int index = -1;                   // this element's index in its parent's member, -1 single
    std::size_t xhtmlName = 0;        // Xhtml: its name in xhtmlNames_
    std::size_t seenBase = 0;         // its members met so far are seen_[seenBase...]
    bool first = true;                // no JSON member written yet
    bool mainOpen = false;            // the member's key (and '[') are written
    bool underAny = false;            // some item has an id or extensions
    bool opened = false;              // Primitive: its "_name" object is open
    bool hasValue = false;            // Primitive: has a value attribute
    bool hasChild = false;            // Holder: has its resource
    bool textReported = false;
  };

  std::string path() const {
    std::string p;
    for (const Frame& f : frames_) {
      std::string_view name;
      if (f.kind == Kind::Xhtml && f.xhtmlName != 0) continue;  // inside the div: the div names it
      if (f.def) name = f.def->name;
      else if (f.kind == Kind::Resource && (&f == &frames_.front())) name = f.type->name;
      else continue;  // a resource inside contained, entry.resource, ...: its holder names it
      if (!p.empty()) p += '.';
      p += name;
      if (f.index >= 0) {
        p += '[';
        p += std::to_string(f.index);
        p += ']';
      }
    }
    return p;
  }

  std::string where() const {
    if (!locator_) return "";
    return " (line " + std::to_string(locator_->getLineNumber()) + ", column " +
           std::to_string(locator_->getColumnNumber()) + ")";
  }

  void report(std::string_view code, std::string message, std::string_view severity = "error") {
    if (severity == "error" || severity == "fatal") failed = true;
    if (issues_->size() >= kMaxIssues) {
      issues_->push_back({"error", "too-costly", "Too many issues: the rest are not reported", path()});
      failed = true;
      throw Stop{};
    }
    issues_->push_back({std::string(severity), std::string(code), message + where(), path()});
  }

  [[noreturn]] void fatal(std::string_view code, std::string message) {
    report(code, std::move(message), "fatal");
    throw Stop{};
  }

  void parseProblem(const xc::SAXParseException& e) {
    std::string message = sx::utf8(e.getMessage());
    std::string text = "The XML is not well-formed: " + message + " (line " + std::to_string(e.getLineNumber()) +
                       ", column " + std::to_string(e.getColumnNumber()) + ")";
    if (sx::containsNoCase(message, "entity"))
      text += "; only XML's own entities (&amp; &lt; &gt; &quot; &apos;) and character references are allowed";
    failed = true;
    if (issues_->size() < kMaxIssues) issues_->push_back({"fatal", "structure", std::move(text), path()});
  }

  void name(const XMLCh* localname) {
    name_.clear();
    sx::appendUtf8(name_, localname, xc::XMLString::stringLen(localname));
  }

  // Reports an element in the wrong namespace (true) or not.
  bool wrongNamespace(const XMLCh* uri, const XMLCh* expected, bool skipIt) {
    if (equals(uri, expected)) return false;
    std::string ns = sx::utf8(uri);
    report("structure", "The element " + name_ + (ns.empty() ? " has no namespace" : " is in the namespace '" + ns + "'") + ": it must be in " +
                            sx::utf8(expected) + (equals(expected, kXhtmlNs) ? " (the narrative div is XHTML)" : ""));
    if (skipIt) skip_ = 1;
    return true;
  }

  void writeKey(Frame& f, std::string_view key, bool underscore = false) {
    std::string& out = *f.out;
    if (!f.first) out += ',';
    f.first = false;
    out += underscore ? "\"_" : "\"";
    out += key;
    out += "\":";
  }

  void pushFrame(Frame f) {
    if (f.jsonDepth > maxDepth_)
      fatal("structure", "Objects and arrays would be nested deeper than " + std::to_string(maxDepth_) + " in JSON");
    f.seenBase = seen_.size();
    frames_.push_back(f);
  }

  void startRoot(const XMLCh* uri, const XMLCh* localname, const xc::Attributes& attrs) {
    name(localname);
    if (!equals(uri, kFhirNs)) {
      std::string ns = sx::utf8(uri);
      fatal("structure", "The root element " + name_ + (ns.empty() ? " has no namespace" : " is in the namespace '" + ns + "'") +
                             ": a FHIR resource in XML is in the namespace http://hl7.org/fhir");
    }
    int t = tables_.resourceType(name_);
    if (t < 0) fatal("structure", "Unknown resource type '" + name_ + "'");
    checkNoAttributes(attrs);
    Frame f;
    f.kind = Kind::Resource;
    f.type = &tables_.type(t);
    f.out = out_;
    f.jsonDepth = 1;
    *out_ += "{\"resourceType\":\"";
    *out_ += f.type->name;
    *out_ += '"';
    f.first = false;
    pushFrame(f);
  }

  void startContained(const XMLCh* uri, const XMLCh* localname, const xc::Attributes& attrs) {
    Frame& holder = frames_.back();
    name(localname);
    if (wrongNamespace(uri, kFhirNs, true)) return;
    int t = tables_.resourceType(name_);
    if (t < 0) {
      report("structure", "Unknown resource type '" + name_ + "' in " + holder.def->name);
      skip_ = 1;
      return;
    }
    if (holder.hasChild) {
      report("structure", "The element " + holder.def->name + " holds one resource only ('" + name_ + "' is one more)");
      skip_ = 1;
      return;
    }
    holder.hasChild = true;
    checkNoAttributes(attrs);
    Frame f;
    f.kind = Kind::Resource;
    f.type = &tables_.type(t);
    f.out = holder.out;
    f.jsonDepth = holder.jsonDepth + 1;
    *f.out += "{\"resourceType\":\"";
    *f.out += f.type->name;
    *f.out += '"';
    f.first = false;
    pushFrame(f);
  }

  // A resource element carries no attribute but namespace declarations (and xsi:...).
  void checkNoAttributes(const xc::Attributes& attrs) {
    for (XMLSize_t i = 0; i < attrs.getLength(); ++i) {
      const XMLCh* ns = attrs.getURI(i);
      if (ns != nullptr && *ns != 0) continue;
      report("structure", "Unrecognized attribute '" + sx::utf8(attrs.getLocalName(i)) + "' on the resource " + name_);
    }
  }

  // Opens the "_name" object of the primitive at `at` in its parent's side buffer.
  void openUnder(std::size_t at) {
    Frame& f = frames_[at];
    Frame& parent = frames_[at - 1];
    std::string& u = unders_[at - 1];
    if (f.def->many()) {
      int k = parent.count - 1;
      for (; parent.underItems < k; ++parent.underItems) {
        if (parent.underItems) u += ',';
        u += "null";
      }
      if (parent.underItems) u += ',';
      parent.underItems = k + 1;
    }
    u += '{';
    parent.underAny = true;
    f.opened = true;
  }

  void closeMember(std::size_t at) {
    Frame& f = frames_[at];
    if (f.field < 0) return;
    const ElementDef& ed = f.type->elements[static_cast<std::size_t>(f.field)];
    if (f.mainOpen && ed.many()) f.out->push_back(']');
    if (f.underAny) {
      std::string& u = unders_[at];
      writeKey(f, ed.name, true);
      if (ed.many()) {
        for (; f.underItems < f.count; ++f.underItems) u += ",null";
        f.out->push_back('[');
        *f.out += u;
        f.out->push_back(']');
      } else {
        *f.out += u;
      }
    }
    f.field = -1;
  }

  void startMember(const XMLCh* uri, const XMLCh* localname, const xc::Attributes& attrs) {
    const std::size_t at = frames_.size() - 1;
    name(localname);
    Frame* p = &frames_[at];
    int e = p->type->find(name_);
    const ElementDef* ed = e >= 0 ? &p->type->elements[static_cast<std::size_t>(e)] : nullptr;
    // Element.id and Extension.url are attributes in XML; Resource.id is an element.
    bool attributeOnly = ed && ((p->kind != Kind::Resource && ed->name == "id") ||
                                (p->type == &tables_.type(tables_.extensionType) && ed->name == "url"));
    if (!ed || attributeOnly) {
      if (!equals(uri, kFhirNs) && !(ed == nullptr && name_ == "div" && equals(uri, kXhtmlNs)))
        report("structure", "The element " + name_ + " is in the namespace '" + sx::utf8(uri) + "' and unknown in " +
                                p->type->name);
      else
        report("structure", "Unrecognized element '" + name_ + "' in " + p->type->name +
                                (attributeOnly ? " (" + name_ + " is an attribute here)" : ""));
      skip_ = 1;
      return;
    }
    if (wrongNamespace(uri, ed->prim == Prim::Xhtml ? kXhtmlNs : kFhirNs, true)) return;
    if (e != p->field && e <= p->last) {
      // The element was met already: its items would not be one JSON array.
      bool met = false;
      for (std::size_t i = p->seenBase; i < seen_.size() && !met; ++i) met = seen_[i] == e;
      if (met) {
        report("structure", "The element " + name_ + " appears again after other elements in " + p->type->name +
                                ": the items of a repeating element must follow each other");
        skip_ = 1;
        return;
      }
    }
    if (e < p->last) {
      // Out of the definition's order: the XML schema refuses it, the JSON has no order: a warning.
      report("structure", "The element " + name_ + " is out of order: in " + p->type->name + " it comes before " +
                              p->type->elements[static_cast<std::size_t>(p->last)].name,
             "warning");
    }
    if (e == p->field && !ed->many()) {
      report("structure", "The element " + name_ + " appears more than once in " + p->type->name + " (at most one is allowed)");
      skip_ = 1;
      return;
    }
    if (p->kind == Kind::Primitive && !p->opened) {
      openUnder(at);
      p = &frames_[at];
    }
    if (e != p->field) {
      closeMember(at);
      p->field = e;
      p->last = std::max(p->last, e);
      seen_.push_back(static_cast<std::int16_t>(e));
      p->count = 0;
      p->underItems = 0;
      p->underAny = false;
      p->mainOpen = false;
      unders_[at].clear();
      if (ed->prim == Prim::None || ed->many()) {
        writeKey(*p, ed->name);
        if (ed->many()) p->out->push_back('[');
        p->mainOpen = true;
      }
    }
    Frame& parent = *p;
    ++parent.count;
    if (ed->many() && parent.count > 1) parent.out->push_back(',');
    Frame f;
    f.def = ed;
    f.index = ed->many() ? parent.count - 1 : -1;
    f.jsonDepth = parent.jsonDepth + (ed->many() ? 1 : 0);

    if (ed->prim == Prim::Xhtml) {
      writeKey(parent, ed->name);
      f.kind = Kind::Xhtml;
      f.out = parent.out;
      f.xhtmlName = 0;
      xhtmlNames_.clear();
      xhtmlNames_.emplace_back("div");
      div_.clear();
      div_ += "<div xmlns=\"http://www.w3.org/1999/xhtml\"";
      xhtmlAttributes(attrs);
      pendingOpen_ = true;
      pushFrame(f);
      return;
    }
    if (ed->prim != Prim::None) {
      startPrimitive(at, *ed, attrs, f);
      return;
    }
    if (ed->isResource) {
      f.kind = Kind::Holder;
      f.out = parent.out;
      for (XMLSize_t i = 0; i < attrs.getLength(); ++i) {
        const XMLCh* ns = attrs.getURI(i);
        if (ns == nullptr || *ns == 0)
          report("structure", "Unrecognized attribute '" + sx::utf8(attrs.getLocalName(i)) + "' on " + ed->name);
      }
      pushFrame(f);
      return;
    }
    f.kind = Kind::Complex;
    f.type = &tables_.type(ed->type);
    f.out = parent.out;
    f.jsonDepth += 1;
    f.out->push_back('{');
    pushFrame(f);
    Frame& self = frames_.back();
    bool isExtension = ed->type == tables_.extensionType;
    for (XMLSize_t i = 0; i < attrs.getLength(); ++i) {
      const XMLCh* ns = attrs.getURI(i);
      if (ns != nullptr && *ns != 0) continue;
      const XMLCh* an = attrs.getLocalName(i);
      if (equalsAscii(an, "id") || (isExtension && equalsAscii(an, "url"))) {
        writeKey(self, equalsAscii(an, "id") ? "id" : "url");
        const XMLCh* v = attrs.getValue(i);
        self.out->push_back('"');
        appendJsonChars(*self.out, v, xc::XMLString::stringLen(v));
        self.out->push_back('"');
      } else {
        report("structure", "Unrecognized attribute '" + sx::utf8(an) + "' on " + ed->name +
                                (equalsAscii(an, "value") ? " (a complex element has no value)" : ""));
      }
    }
  }

  void startPrimitive(std::size_t parentAt, const ElementDef& ed, const xc::Attributes& attrs, Frame f) {
    Frame& parent = frames_[parentAt];
    const XMLCh* value = nullptr;
    const XMLCh* id = nullptr;
    for (XMLSize_t i = 0; i < attrs.getLength(); ++i) {
      const XMLCh* ns = attrs.getURI(i);
      if (ns != nullptr && *ns != 0) continue;
      const XMLCh* an = attrs.getLocalName(i);
      if (equalsAscii(an, "value")) value = attrs.getValue(i);
      else if (equalsAscii(an, "id")) id = attrs.getValue(i);
      else report("structure", "Unrecognized attribute '" + sx::utf8(an) + "' on " + ed.name);
    }
    if (value) {
      if (!ed.many()) writeKey(parent, ed.name);
      writeValue(*parent.out, ed, value);
    } else if (ed.many()) {
      *parent.out += "null";
    }
    f.kind = Kind::Primitive;
    f.type = &tables_.type(tables_.elementType);
    f.out = &unders_[parentAt];
    f.hasValue = value != nullptr;
    f.jsonDepth += 1;
    pushFrame(f);
    if (id) {
      const std::size_t at = frames_.size() - 1;
      openUnder(at);
      Frame& self = frames_[at];
      writeKey(self, "id");
      self.out->push_back('"');
      appendJsonChars(*self.out, id, xc::XMLString::stringLen(id));
      self.out->push_back('"');
    }
  }

  void writeValue(std::string& out, const ElementDef& ed, const XMLCh* value) {
    std::size_t n = xc::XMLString::stringLen(value);
    switch (ed.prim) {
      case Prim::Boolean:
        if (equalsAscii(value, "true") || equalsAscii(value, "false")) {
          sx::appendUtf8(out, value, n);
          return;
        }
        break;
      case Prim::Integer:
      case Prim::PositiveInt:
      case Prim::UnsignedInt:
      case Prim::Decimal: {
        value_.clear();
        sx::appendUtf8(value_, value, n);
        if (ed.prim == Prim::Decimal ? isDecimalText(value_) : isIntegerText(value_)) {
          out += value_;
          return;
        }
        break;
      }
      default:
        out.push_back('"');
        appendJsonChars(out, value, n);
        out.push_back('"');
        return;
    }
    // A value with no JSON form of its type: reported here, written as a string so the text stays JSON.
    std::string text = sx::utf8(value);
    Frame here;  // for the path of the issue only
    here.def = &ed;
    here.index = ed.many() ? frames_.back().count - 1 : -1;
    frames_.push_back(here);
    report("value", "The value '" + text.substr(0, 80) + "' is not a valid " + std::string(validation::primName(ed.prim)));
    frames_.pop_back();
    out.push_back('"');
    appendJsonUtf8(out, text);
    out.push_back('"');
  }

  void xhtmlAttributes(const xc::Attributes& attrs) {
    for (XMLSize_t i = 0; i < attrs.getLength(); ++i) {
      const XMLCh* q = attrs.getQName(i);
      div_ += ' ';
      sx::appendUtf8(div_, q, xc::XMLString::stringLen(q));
      div_ += "=\"";
      const XMLCh* v = attrs.getValue(i);
      appendXhtmlChars(div_, v, xc::XMLString::stringLen(v), true);
      div_ += '"';
    }
  }

  void startXhtml(const XMLCh* uri, const XMLCh* localname, const XMLCh*, const xc::Attributes& attrs) {
    name(localname);
    if (wrongNamespace(uri, kXhtmlNs, true)) return;
    if (pendingOpen_) div_ += '>';
    div_ += '<';
    div_ += name_;
    xhtmlAttributes(attrs);
    pendingOpen_ = true;
    Frame f = frames_.back();
    f.xhtmlName = xhtmlNames_.size();
    f.textReported = false;
    xhtmlNames_.push_back(name_);
    frames_.push_back(f);
  }

  const ValidationTables& tables_;
  std::string* out_ = nullptr;
  std::vector<Issue>* issues_ = nullptr;
  int maxDepth_ = 64;
  std::vector<Frame> frames_;
  std::vector<std::string> unders_;  // by frame index: the "_name" items of its current member
  std::vector<std::string> xhtmlNames_;
  std::vector<std::int16_t> seen_;   // the members met, by frame (see Frame::seenBase)
  std::string name_, value_, div_;
  bool pendingOpen_ = false;  // an XHTML start tag waits for its '>' (or '/>')
  int skip_ = 0;              // > 0: inside an element reported and skipped
  const xc::Locator* locator_ = nullptr;
};

// The reader of this thread (made again after a parse that stopped half-way).
struct ThreadReader {
  std::unique_ptr<xc::SAX2XMLReader> reader;
  std::unique_ptr<Handler> handler;

  void make() {
    reader = sx::newWellFormednessReader();
    reader->setContentHandler(handler.get());
    reader->setErrorHandler(handler.get());
    reader->setLexicalHandler(handler.get());
    reader->setEntityResolver(handler.get());
  }
};

}  // namespace

bool fhirXmlToJson(std::string_view xml, std::string& json, std::vector<Issue>& issues, const XmlLimits& limits) {
  json.clear();
  const std::size_t before = issues.size();
  auto refuse = [&](const char* code, std::string message) {
    issues.push_back({"fatal", code, std::move(message), ""});
    return false;
  };
  if (xml.size() > limits.maxBytes)
    return refuse("too-costly", "The document has " + std::to_string(xml.size()) + " bytes, more than the " +
                                    std::to_string(limits.maxBytes) + " accepted");
  if (std::string problem = sx::encodingProblem(xml); !problem.empty()) {
    problem[0] = static_cast<char>(std::toupper(static_cast<unsigned char>(problem[0])));
    return refuse("structure", problem);
  }
  if (hasDoctype(xml))
    return refuse("security", "The document has a DOCTYPE: DOCTYPE declarations (and the entities they declare) are refused");
  if (const std::string& e = sx::start(); !e.empty()) return refuse("exception", e);

  thread_local ThreadReader tr;
  bool clean = false;
  try {
    if (!tr.handler) tr.handler = std::make_unique<Handler>(validation::ValidationTables::embedded());
    if (!tr.reader) tr.make();
    tr.handler->reset(json, issues, limits.maxDepth);
    xc::MemBufInputSource source(reinterpret_cast<const XMLByte*>(xml.data()), xml.size(), "document", false);
    source.setEncoding(xc::XMLUni::fgUTF8EncodingString);
    try {
      tr.reader->parse(source);
      clean = true;
    } catch (const Stop&) {
      // the handler has said why
    }
    if (!tr.handler->failed && !tr.handler->done) tr.handler->add("fatal", "structure", "The document has no resource");
  } catch (const xc::SAXParseException& e) {
    issues.push_back({"fatal", "structure", "The XML is not well-formed: " + sx::utf8(e.getMessage()) + " (line " +
                                                std::to_string(e.getLineNumber()) + ", column " +
                                                std::to_string(e.getColumnNumber()) + ")", ""});
  } catch (const xc::OutOfMemoryException&) {
    issues.push_back({"fatal", "too-costly", "The XML cannot be read: out of memory", ""});
  } catch (const xc::XMLException& e) {
    std::string m = sx::utf8(e.getMessage());
    issues.push_back({"fatal", "structure",
                      "The XML cannot be read: " + m +
                          (sx::containsNoCase(m, "utf") ? " (the document must be UTF-8)" : ""), ""});
  } catch (const std::bad_alloc&) {
    throw;
  } catch (const std::exception& e) {
    issues.push_back({"fatal", "exception", std::string("The XML cannot be read: ") + e.what(), ""});
  } catch (...) {
    issues.push_back({"fatal", "exception", "The XML cannot be read", ""});
  }
  if (!clean) tr.reader.reset();  // a parse stopped half-way: the next one starts from a fresh reader
  bool ok = true;
  for (std::size_t i = before; i < issues.size(); ++i)
    if (issues[i].severity == "error" || issues[i].severity == "fatal") ok = false;
  if (tr.handler && tr.handler->failed) ok = false;
  if (!ok && issues.size() == before) issues.push_back({"fatal", "structure", "The XML cannot be read", ""});
  return ok;
}

bool isXmlMediaType(std::string_view mediaType) {
  std::string_view m = mediaType.substr(0, mediaType.find(';'));
  while (!m.empty() && (m.front() == ' ' || m.front() == '\t')) m.remove_prefix(1);
  while (!m.empty() && (m.back() == ' ' || m.back() == '\t')) m.remove_suffix(1);
  std::string lower(m);
  for (char& c : lower) c = sx::lower(c);
  return lower == "application/fhir+xml" || lower == "application/xml" || lower == "text/xml" ||
         lower == "application/xml+fhir";
}

bool looksLikeXml(std::string_view text) {
  if (text.substr(0, 3) == "\xEF\xBB\xBF") text.remove_prefix(3);
  std::size_t i = text.find_first_not_of(" \t\r\n");
  return i != std::string_view::npos && text[i] == '<';
}

}  // namespace passerelle::fhir
