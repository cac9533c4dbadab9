// Reads the XML form with a xerces-c SAX2 parser (per call) against the kind's XSD, compiled once into
// a locked grammar pool shared by all parsers, then builds the JSON form guided by the kind's schema.
#include "mappings/network/documents/xml_form.h"

#include "mappings/common/utf8.h"
#include "mappings/xml/secure_xml.h"

#include <charconv>
#include <cstdint>
#include <map>
#include <mutex>
#include <memory>
#include <nlohmann/json.hpp>
#include <xercesc/framework/MemBufInputSource.hpp>
#include <xercesc/framework/XMLGrammarPool.hpp>
#include <xercesc/framework/XMLGrammarPoolImpl.hpp>
#include <xercesc/sax/SAXParseException.hpp>
#include <xercesc/sax2/Attributes.hpp>
#include <xercesc/sax2/DefaultHandler.hpp>
#include <xercesc/sax2/SAX2XMLReader.hpp>
#include <xercesc/sax2/XMLReaderFactory.hpp>
#include <xercesc/util/OutOfMemoryException.hpp>
#include <xercesc/util/PlatformUtils.hpp>
#include <xercesc/util/SecurityManager.hpp>
#include <xercesc/util/XMLException.hpp>
#include <xercesc/util/XMLUni.hpp>
#include <xercesc/validators/common/Grammar.hpp>

namespace passerelle::network {
namespace {

namespace xc = XERCES_CPP_NAMESPACE;

constexpr int kMaxDepth = 32;           // the documents nest far less; deeper input is refused
constexpr std::size_t kMaxIssues = 50;  // xerces errors kept per document

std::string join(const std::string& path, std::string_view member) {
  return path.empty() ? std::string(member) : path + "." + std::string(member);
}

std::string_view trim(std::string_view s) {
  auto b = s.find_first_not_of(" \t\r\n");
  if (b == std::string_view::npos) return {};
  auto e = s.find_last_not_of(" \t\r\n");
  return s.substr(b, e - b + 1);
}

// Thrown from the handlers to stop a parse; caught in xmlToJson.
struct StopParse {};

using xml::appendUtf8;
using xml::containsNoCase;
using xml::encodingProblem;
using xml::LoadErrors;
using xml::utf8;

// One locked (read-only, shareable between threads) grammar pool per kind: every XSD has the same
// target namespace, and a pool holds one grammar per namespace.
struct Grammars {
  std::string startError;
  std::map<std::string, xc::XMLGrammarPool*, std::less<>> pools;  // live for the whole process
  // xerces-c compiles a grammar's patterns lazily, inside the shared grammar, on first use: two
  // parses with one grammar at once can corrupt it (RangeToken::doCreateMap asserts). One parse per
  // grammar at a time.
  std::map<std::string, std::unique_ptr<std::mutex>, std::less<>> locks;
  std::map<std::string, std::string, std::less<>> errors;
};

const Grammars& grammars() {
  static const Grammars* const g = [] {
    auto* out = new Grammars();
    out->startError = xml::start();
    if (!out->startError.empty()) return out;
    const DocumentSchemas& schemas = DocumentSchemas::instance();
    for (const std::string& kind : schemas.kinds()) {
      std::string_view xsd = schemas.xsdText(kind);
      auto* pool = new xc::XMLGrammarPoolImpl(xc::XMLPlatformUtils::fgMemoryManager);
      LoadErrors handler;
      try {
        std::unique_ptr<xc::SAX2XMLReader> reader(
            xc::XMLReaderFactory::createXMLReader(xc::XMLPlatformUtils::fgMemoryManager, pool));
        xml::configureSecure(*reader, true);
        reader->setErrorHandler(&handler);
        std::string id = "xsd/" + kind + ".xsd";
        xc::MemBufInputSource source(reinterpret_cast<const XMLByte*>(xsd.data()), xsd.size(), id.c_str(), false);
        xc::Grammar* grammar = reader->loadGrammar(source, xc::Grammar::SchemaGrammarType, true);
        if (grammar == nullptr && handler.text.empty()) handler.text = "no grammar";
      } catch (const xc::XMLException& e) {
        handler.text += utf8(e.getMessage());
      } catch (...) {
        handler.text += "unexpected failure";
      }
      if (xsd.empty()) handler.text = "the XSD is not embedded";
      if (!handler.text.empty()) {
        out->errors[kind] = "the XSD of '" + kind + "' cannot be loaded: " + handler.text;
        delete pool;
        continue;
      }
      pool->lockPool();
      out->pools[kind] = pool;
      out->locks[kind] = std::make_unique<std::mutex>();
    }
    return out;
  }();
  return *g;
}

// A parsed element: its local name and text; the XSD check has already run when it is read.
struct Node {
  std::string name;
  std::string text;
  std::vector<Node> children;
};

class DocumentHandler : public xc::DefaultHandler {
 public:
  DocumentHandler(const ValueShape* root, std::string rootName, std::vector<DocumentIssue>& issues)
      : rootShape_(root), rootName_(std::move(rootName)), issues_(issues) {}

  Node root;
  bool failed = false;

  void startElement(const XMLCh* const, const XMLCh* const localname, const XMLCh* const,
                    const xc::Attributes&) override {
    std::string name = utf8(localname);
    if (frames_.empty()) {
      frames_.push_back({&root, name == rootName_ ? rootShape_ : nullptr, "", {}});
      root.name = std::move(name);
      return;
    }
    if (static_cast<int>(frames_.size()) >= kMaxDepth) {
      add("", "elements are nested deeper than " + std::to_string(kMaxDepth) + " levels");
      throw StopParse{};
    }
    Frame& parent = frames_.back();
    const ValueShape::Member* m = parent.shape != nullptr ? parent.shape->member(name) : nullptr;
    std::string path = join(parent.path, name);
    const ValueShape* shape = m != nullptr ? m->shape : nullptr;
    if (shape != nullptr && shape->kind == ValueShape::Kind::kArray) {
      path += "[" + std::to_string(parent.counts[name]++) + "]";
      shape = shape->items;
    }
    parent.node->children.push_back(Node{name, {}, {}});
    frames_.push_back({&parent.node->children.back(), shape, std::move(path), {}});
  }

  void endElement(const XMLCh* const, const XMLCh* const, const XMLCh* const) override {
    if (!frames_.empty()) frames_.pop_back();
  }

  void characters(const XMLCh* const chars, const XMLSize_t length) override {
    if (!frames_.empty()) appendUtf8(frames_.back().node->text, chars, length);
  }

  void startDTD(const XMLCh* const, const XMLCh* const, const XMLCh* const) override {
    add("", "DOCTYPE declarations are refused");
    throw StopParse{};
  }

  xc::InputSource* resolveEntity(const XMLCh* const, const XMLCh* const) override {
    // Nothing is ever fetched: an empty document stands for any external entity.
    static const XMLByte kNothing[] = {0};
    return new xc::MemBufInputSource(kNothing, 0, "refused-external-entity", false);
  }

  void warning(const xc::SAXParseException&) override {}
  void error(const xc::SAXParseException& e) override { note(e); }
  void fatalError(const xc::SAXParseException& e) override { note(e); }

 private:
  struct Frame {
    Node* node;
    const ValueShape* shape;
    std::string path;
    std::map<std::string, int> counts;  // array members seen so far, for their index
  };

  void note(const xc::SAXParseException& e) {
    std::string where = "line " + std::to_string(e.getLineNumber()) + ", column " + std::to_string(e.getColumnNumber());
    add(frames_.empty() ? "" : frames_.back().path, where + ": " + utf8(e.getMessage()));
  }
  void add(std::string path, std::string message) {
    failed = true;
    if (issues_.size() < kMaxIssues) issues_.push_back({std::move(path), std::move(message)});
  }

  const ValueShape* rootShape_;
  std::string rootName_;
  std::vector<DocumentIssue>& issues_;
  std::vector<Frame> frames_;
};

// --- XML -> JSON ----------------------------------------------------------------------------

bool toScalar(const std::string& raw, const ValueShape& shape, const std::string& path, Json& out,
              std::vector<DocumentIssue>& issues) {
  std::string_view text = trim(raw);
  switch (shape.kind) {
    case ValueShape::Kind::kString:
      if (shape.base64) {
        std::string compact;
        for (char c : raw)
          if (c != ' ' && c != '\t' && c != '\r' && c != '\n') compact += c;
        out = std::move(compact);
      } else {
        out = shape.date ? std::string(text) : raw;
      }
      return true;
    case ValueShape::Kind::kBoolean:
      if (text == "true" || text == "1") {
        out = true;
        return true;
      }
      if (text == "false" || text == "0") {
        out = false;
        return true;
      }
      break;
    case ValueShape::Kind::kInteger:
    case ValueShape::Kind::kNumber: {
      if (!text.empty() && text.front() == '+') text.remove_prefix(1);
      bool decimal = text.find('.') != std::string_view::npos;
      if (!decimal) {
        std::int64_t i = 0;
        auto r = std::from_chars(text.data(), text.data() + text.size(), i);
        if (r.ec == std::errc() && r.ptr == text.data() + text.size() && !text.empty()) {
          out = i;
          return true;
        }
      }
      if (shape.kind == ValueShape::Kind::kNumber || !decimal) {
        double d = 0;
        auto r = std::from_chars(text.data(), text.data() + text.size(), d);
        if (r.ec == std::errc() && r.ptr == text.data() + text.size() && !text.empty()) {
          out = d;
          return true;
        }
      }
      break;
    }
    default: break;
  }
  issues.push_back({path, "'" + std::string(text.substr(0, 60)) + "' cannot be read as " +
                              (shape.kind == ValueShape::Kind::kBoolean ? "a boolean" : "a number")});
  return false;
}

bool toJson(const Node& node, const ValueShape& shape, const std::string& path, Json& out,
            std::vector<DocumentIssue>& issues);

bool toObject(const Node& node, const ValueShape& shape, const std::string& path, Json& out,
              std::vector<DocumentIssue>& issues) {
  out = Json::object();
  bool ok = true;
  for (const Node& child : node.children) {
    if (shape.member(child.name) == nullptr) {
      issues.push_back({join(path, child.name), "element '" + child.name + "' is not part of the document"});
      ok = false;
    }
  }
  for (const ValueShape::Member& m : shape.members) {
    std::vector<const Node*> found;
    for (const Node& child : node.children)
      if (child.name == m.name) found.push_back(&child);
    std::string memberPath = join(path, m.name);
    if (m.shape->kind == ValueShape::Kind::kArray) {
      if (found.empty() && !m.required) continue;
      Json array = Json::array();
      for (std::size_t i = 0; i < found.size(); ++i) {
        Json item;
        ok = toJson(*found[i], *m.shape->items, memberPath + "[" + std::to_string(i) + "]", item, issues) && ok;
        array.push_back(std::move(item));
      }
      out[m.name] = std::move(array);
    } else if (!found.empty()) {
      if (found.size() > 1) {
        issues.push_back({memberPath, "element '" + m.name + "' appears more than once"});
        ok = false;
      }
      Json value;
      ok = toJson(*found.front(), *m.shape, memberPath, value, issues) && ok;
      out[m.name] = std::move(value);
    }
  }
  return ok;
}

bool toJson(const Node& node, const ValueShape& shape, const std::string& path, Json& out,
            std::vector<DocumentIssue>& issues) {
  if (shape.kind == ValueShape::Kind::kObject) return toObject(node, shape, path, out, issues);
  if (shape.kind == ValueShape::Kind::kArray) {
    issues.push_back({path, "nested arrays have no XML form"});
    return false;
  }
  return toScalar(node.text, shape, path, out, issues);
}

// --- JSON -> XML ----------------------------------------------------------------------------

void appendEscaped(std::string& out, std::string_view s) {
  for (char c : s) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '\r': out += "&#13;"; break;
      case '\t':
      case '\n': out += c; break;
      default:
        if (static_cast<unsigned char>(c) < 0x20)
          out += "\xEF\xBF\xBD";
        else
          out += c;
    }
  }
}

void appendScalar(std::string& out, const Json& v) {
  if (v.is_string()) {
    appendEscaped(out, v.get_ref<const std::string&>());
  } else if (v.is_boolean()) {
    out += v.get<bool>() ? "true" : "false";
  } else if (v.is_number_float()) {
    char buf[400];
    auto r = std::to_chars(buf, buf + sizeof buf, v.get<double>(), std::chars_format::fixed);
    out.append(buf, r.ec == std::errc() ? r.ptr : buf);
  } else if (v.is_number()) {
    out += v.dump();
  } else {
    appendEscaped(out, v.dump());
  }
}

void writeObject(std::string& out, const Json& v, const ValueShape& shape, int depth);

void writeMember(std::string& out, const std::string& name, const Json& v, const ValueShape& shape, int depth) {
  out.append(static_cast<std::size_t>(depth) * 2, ' ');
  if (shape.kind == ValueShape::Kind::kObject && v.is_object()) {
    out += "<" + name + ">\n";
    writeObject(out, v, shape, depth + 1);
    out.append(static_cast<std::size_t>(depth) * 2, ' ');
    out += "</" + name + ">\n";
  } else {
    out += "<" + name + ">";
    appendScalar(out, v);
    out += "</" + name + ">\n";
  }
}

void writeObject(std::string& out, const Json& v, const ValueShape& shape, int depth) {
  for (const ValueShape::Member& m : shape.members) {
    auto it = v.find(m.name);
    if (it == v.end()) continue;
    if (m.shape->kind == ValueShape::Kind::kArray && it->is_array()) {
      for (const Json& item : *it) writeMember(out, m.name, item, *m.shape->items, depth);
    } else {
      writeMember(out, m.name, *it, *m.shape, depth);
    }
  }
}

}  // namespace

std::string rootElementName(std::string_view kind) {
  std::string out;
  bool upper = false;
  for (char c : kind) {
    if (c == '-') {
      upper = true;
    } else {
      out += upper && c >= 'a' && c <= 'z' ? static_cast<char>(c - 'a' + 'A') : c;
      upper = false;
    }
  }
  return out;
}

bool xmlToJson(std::string_view kind, std::string_view xml, Json& out, std::vector<DocumentIssue>& issues,
               const XmlLimits& limits) {
  const std::size_t before = issues.size();
  try {
    const DocumentSchemas& schemas = DocumentSchemas::instance();
    const ValueShape* shape = schemas.shape(kind);
    if (!schemas.hasKind(kind)) {
      issues.push_back({"", "unknown document kind '" + std::string(kind) + "'"});
      return false;
    }
    if (xml.size() > limits.maxBytes) {
      issues.push_back({"", "the document is " + std::to_string(xml.size()) + " bytes long, over the limit of " +
                                std::to_string(limits.maxBytes) + " bytes"});
      return false;
    }
    if (std::string problem = encodingProblem(xml); !problem.empty()) {
      issues.push_back({"", problem});
      return false;
    }
    if (containsNoCase(xml, "<!DOCTYPE")) {
      issues.push_back({"",
                        "the document has a DOCTYPE: DOCTYPE declarations (and the entities they declare) "
                        "are refused"});
      return false;
    }
    const Grammars& g = grammars();
    if (!g.startError.empty()) {
      issues.push_back({"", g.startError});
      return false;
    }
    auto pool = g.pools.find(kind);
    if (pool == g.pools.end() || shape == nullptr) {
      auto why = g.errors.find(kind);
      issues.push_back(
          {"", why != g.errors.end() ? why->second : "the schemas of '" + std::string(kind) + "' are not loaded"});
      return false;
    }

    DocumentHandler handler(shape, rootElementName(kind), issues);
    {
      std::lock_guard<std::mutex> oneParsePerGrammar(*g.locks.find(kind)->second);
      std::unique_ptr<xc::SAX2XMLReader> reader(
          xc::XMLReaderFactory::createXMLReader(xc::XMLPlatformUtils::fgMemoryManager, pool->second));
      xml::configureSecure(*reader, true);
      reader->setFeature(xc::XMLUni::fgXercesUseCachedGrammarInParse, true);
      reader->setFeature(xc::XMLUni::fgXercesCacheGrammarFromParse, false);
      xc::SecurityManager security;
      security.setEntityExpansionLimit(16);
      reader->setProperty(xc::XMLUni::fgXercesSecurityManager, &security);
      reader->setContentHandler(&handler);
      reader->setErrorHandler(&handler);
      reader->setLexicalHandler(&handler);
      reader->setEntityResolver(&handler);
      xc::MemBufInputSource source(reinterpret_cast<const XMLByte*>(xml.data()), xml.size(), "document", false);
      source.setEncoding(xc::XMLUni::fgUTF8EncodingString);
      try {
        reader->parse(source);
      } catch (const StopParse&) {
        // the handler has said why
      }
    }
    if (handler.failed || issues.size() > before) return false;
    if (handler.root.name.empty()) {
      issues.push_back({"", "the document has no root element"});
      return false;
    }
    Json result;
    if (!toJson(handler.root, *shape, "", result, issues)) return false;
    out = std::move(result);
    return true;
  } catch (const xc::SAXParseException& e) {
    issues.push_back({"", "line " + std::to_string(e.getLineNumber()) + ", column " +
                              std::to_string(e.getColumnNumber()) + ": " + utf8(e.getMessage())});
  } catch (const xc::XMLException& e) {
    issues.push_back({"", "the XML cannot be read: " + utf8(e.getMessage())});
  } catch (const xc::OutOfMemoryException&) {
    issues.push_back({"", "the XML cannot be read: out of memory"});
  } catch (const std::exception& e) {
    issues.push_back({"", std::string("the XML cannot be read: ") + e.what()});
  } catch (...) {
    issues.push_back({"", "the XML cannot be read"});
  }
  if (issues.size() == before) issues.push_back({"", "the XML cannot be read"});
  return false;
}

std::string jsonToXml(std::string_view kind, const Json& doc) {
  try {
    const ValueShape* shape = DocumentSchemas::instance().shape(kind);
    if (shape == nullptr || !doc.is_object()) return {};
    std::string root = rootElementName(kind);
    std::string out = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<" + root + " xmlns=\"" +
                      std::string(kDocumentNamespace) + "\">\n";
    writeObject(out, doc, *shape, 1);
    out += "</" + root + ">\n";
    return out;
  } catch (...) {
    return {};
  }
}

}  // namespace passerelle::network
