// FHIR JSON to XML: the JSON is read once into a flat tape of nodes (each with its byte span, so
// numbers keep their text), then each object is written in the order of its type's definition,
// primitives as value attributes joined with their "_name" siblings (id attribute, extensions),
// Element.id and Extension.url as attributes, resources by their type name inside their holder,
// the narrative div as it is (it is XHTML already, checked well-formed first).
#include <algorithm>
#include <cctype>
#include <string>

#include "mappings/common/utf8.h"
#include "mappings/fhir/validation/validation_tables.h"
#include "mappings/fhir/validation/xhtml_check.h"
#include "mappings/fhir/xml/fhir_xml.h"

namespace passerelle::fhir {

namespace {

using validation::ElementDef;
using validation::Prim;
using validation::TypeDef;
using validation::ValidationTables;

constexpr int kMaxDepth = 64;
constexpr std::size_t kMaxIssues = 200;

struct Node {
  enum Kind : std::uint8_t { Object, Array, String, Number, True, False, Null };
  Kind kind = Null;
  bool escaped = false;     // String: holds backslash escapes
  std::uint32_t begin = 0;  // String: inside the quotes; Number: its text
  std::uint32_t len = 0;
  std::uint32_t end = 0;    // index one past the last node of this value
  std::uint32_t count = 0;  // Object: members (a key node then its value); Array: items
};

// Reads JSON text into a tape of nodes; refuses what is not JSON and nesting deeper than 64.
class Tape {
 public:
  Tape(std::string_view text, std::vector<Node>& nodes) : t_(text), nodes_(nodes) { nodes_.clear(); }

  bool read(std::string& error) {
    if (t_.size() >= 0xFFFFFFF0u) {
      error = "the JSON is too large";
      return false;
    }
    skipWs();
    if (!value(0)) {
      error = error_;
      return false;
    }
    skipWs();
    if (p_ != t_.size()) {
      error = "unexpected text after the JSON value at offset " + std::to_string(p_);
      return false;
    }
    return true;
  }

 private:
  bool fail(std::string message) {
    if (error_.empty()) error_ = std::move(message) + " at offset " + std::to_string(p_);
    return false;
  }
  void skipWs() {
    while (p_ < t_.size() && (t_[p_] == ' ' || t_[p_] == '\n' || t_[p_] == '\r' || t_[p_] == '\t')) ++p_;
  }
  bool string() {
    Node n;
    n.kind = Node::String;
    ++p_;
    n.begin = static_cast<std::uint32_t>(p_);
    while (true) {
      if (p_ >= t_.size()) return fail("unterminated string");
      char c = t_[p_];
      if (c == '"') break;
      if (static_cast<unsigned char>(c) < 0x20) return fail("control character in a string");
      if (c == '\\') {
        n.escaped = true;
        if (++p_ >= t_.size()) return fail("unterminated string");
        char e = t_[p_];
        if (e == 'u') {
          for (int k = 1; k <= 4; ++k)
            if (p_ + k >= t_.size() || !std::isxdigit(static_cast<unsigned char>(t_[p_ + k]))) return fail("bad \\u escape");
          p_ += 4;
        } else if (std::string_view("\"\\/bfnrt").find(e) == std::string_view::npos) {
          return fail("bad escape");
        }
      }
      ++p_;
    }
    n.len = static_cast<std::uint32_t>(p_ - n.begin);
    ++p_;
    n.end = static_cast<std::uint32_t>(nodes_.size() + 1);
    nodes_.push_back(n);
    return true;
  }
  bool number() {
    std::size_t b = p_;
    if (p_ < t_.size() && t_[p_] == '-') ++p_;
    std::size_t d = p_;
    while (p_ < t_.size() && std::isdigit(static_cast<unsigned char>(t_[p_]))) ++p_;
    if (p_ == d || (p_ - d > 1 && t_[d] == '0')) return fail("bad number");
    if (p_ < t_.size() && t_[p_] == '.') {
      std::size_t f = ++p_;
      while (p_ < t_.size() && std::isdigit(static_cast<unsigned char>(t_[p_]))) ++p_;
      if (p_ == f) return fail("bad number");
    }
    if (p_ < t_.size() && (t_[p_] == 'e' || t_[p_] == 'E')) {
      ++p_;
      if (p_ < t_.size() && (t_[p_] == '+' || t_[p_] == '-')) ++p_;
      std::size_t x = p_;
      while (p_ < t_.size() && std::isdigit(static_cast<unsigned char>(t_[p_]))) ++p_;
      if (p_ == x) return fail("bad number");
    }
    Node n;
    n.kind = Node::Number;
    n.begin = static_cast<std::uint32_t>(b);
    n.len = static_cast<std::uint32_t>(p_ - b);
    n.end = static_cast<std::uint32_t>(nodes_.size() + 1);
    nodes_.push_back(n);
    return true;
  }
  bool literal(std::string_view word, Node::Kind kind) {
    if (t_.substr(p_, word.size()) != word) return fail("unexpected character");
    p_ += word.size();
    Node n;
    n.kind = kind;
    n.end = static_cast<std::uint32_t>(nodes_.size() + 1);
    nodes_.push_back(n);
    return true;
  }
  bool value(int depth) {
    if (p_ >= t_.size()) return fail("unexpected end of the JSON");
    char c = t_[p_];
    if (c == '"') return string();
    if (c == '-' || (c >= '0' && c <= '9')) return number();
    if (c == 't') return literal("true", Node::True);
    if (c == 'f') return literal("false", Node::False);
    if (c == 'n') return literal("null", Node::Null);
    if (c != '{' && c != '[') return fail("unexpected character");
    if (depth >= kMaxDepth) return fail("objects and arrays nested deeper than " + std::to_string(kMaxDepth));
    bool object = c == '{';
    std::size_t at = nodes_.size();
    Node n;
    n.kind = object ? Node::Object : Node::Array;
    nodes_.push_back(n);
    ++p_;
    skipWs();
    std::uint32_t count = 0;
    if (p_ < t_.size() && t_[p_] == (object ? '}' : ']')) {
      ++p_;
    } else {
      while (true) {
        if (object) {
          if (p_ >= t_.size() || t_[p_] != '"') return fail("a member name was expected");
          if (!string()) return false;
          skipWs();
          if (p_ >= t_.size() || t_[p_] != ':') return fail("':' was expected");
          ++p_;
          skipWs();
        }
        if (!value(depth + 1)) return false;
        ++count;
        skipWs();
        if (p_ < t_.size() && t_[p_] == ',') {
          ++p_;
          skipWs();
          continue;
        }
        if (p_ < t_.size() && t_[p_] == (object ? '}' : ']')) {
          ++p_;
          break;
        }
        return fail(object ? "',' or '}' was expected" : "',' or ']' was expected");
      }
    }
    nodes_[at].count = count;
    nodes_[at].end = static_cast<std::uint32_t>(nodes_.size());
    return true;
  }

  std::string_view t_;
  std::vector<Node>& nodes_;
  std::size_t p_ = 0;
  std::string error_;
};

class Writer {
 public:
  Writer(std::string_view text, const std::vector<Node>& nodes, std::string& out, std::vector<Issue>& issues,
         const XmlWriteOptions& options)
      : tables_(ValidationTables::embedded()), t_(text), nodes_(nodes), out_(out), issues_(issues), options_(options) {}

  bool failed = false;

  void resource(std::uint32_t at, bool root) {
    const Node& n = nodes_[at];
    if (n.kind != Node::Object) {
      report("structure", "A resource must be a JSON object");
      return;
    }
    std::uint32_t rt = member(at, "resourceType");
    if (rt == 0 || nodes_[rt].kind != Node::String) {
      report("structure", "Unable to find resourceType property");
      return;
    }
    std::string type = text(rt);
    int t = tables_.resourceType(type);
    if (t < 0) {
      report("structure", "Unknown resource type '" + type + "'");
      return;
    }
    if (root) path_.push_back({tables_.type(t).name, -1});
    element(tables_.type(t).name, at, t, true, root);
    if (root) path_.pop_back();
  }

 private:
  struct Member {
    std::int32_t element;
    bool underscore;
    std::uint32_t value;
  };
  struct Piece {
    std::string_view name;
    std::int32_t index;
  };

  void report(std::string_view code, std::string message) {
    failed = true;
    if (issues_.size() >= kMaxIssues) return;
    std::string p;
    for (const Piece& piece : path_) {
      if (!p.empty()) p += '.';
      p += piece.name;
      if (piece.index >= 0) p += "[" + std::to_string(piece.index) + "]";
    }
    issues_.push_back({"error", std::string(code), std::move(message), std::move(p)});
  }

  // The value of member `key` of the object at `at`, or 0.
  std::uint32_t member(std::uint32_t at, std::string_view key) const {
    std::uint32_t i = at + 1;
    for (std::uint32_t k = 0; k < nodes_[at].count; ++k) {
      const Node& keyNode = nodes_[i];
      if (!keyNode.escaped && t_.substr(keyNode.begin, keyNode.len) == key) return i + 1;
      i = nodes_[i + 1].end;
    }
    return 0;
  }

  // A member name: its text when it has no escape, else its unescaped copy in key_.
  std::string_view keyText(std::uint32_t at) {
    const Node& n = nodes_[at];
    if (!n.escaped) return t_.substr(n.begin, n.len);
    key_ = text(at);
    return key_;
  }

  // The unescaped text of a string node.
  std::string text(std::uint32_t at) const {
    const Node& n = nodes_[at];
    std::string_view raw = t_.substr(n.begin, n.len);
    if (!n.escaped) return std::string(raw);
    std::string s;
    s.reserve(raw.size());
    for (std::size_t i = 0; i < raw.size(); ++i) {
      char c = raw[i];
      if (c != '\\') {
        s += c;
        continue;
      }
      char e = raw[++i];
      switch (e) {
        case 'b': s += '\b'; break;
        case 'f': s += '\f'; break;
        case 'n': s += '\n'; break;
        case 'r': s += '\r'; break;
        case 't': s += '\t'; break;
        case 'u': {
          auto hex = [&](std::size_t at) { return static_cast<std::uint32_t>(std::stoul(std::string(raw.substr(at, 4)), nullptr, 16)); };
          std::uint32_t cp = hex(i + 1);
          i += 4;
          if (cp >= 0xD800 && cp <= 0xDBFF && i + 6 < raw.size() && raw[i + 1] == '\\' && raw[i + 2] == 'u') {
            std::uint32_t lo = hex(i + 3);
            if (lo >= 0xDC00 && lo <= 0xDFFF) {
              cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
              i += 6;
            }
          }
          if (cp >= 0xD800 && cp <= 0xDFFF) cp = 0xFFFD;
          utf8::append(s, cp);
          break;
        }
        default: s += e; break;
      }
    }
    return s;
  }

  // Appends text escaped for XML (an attribute value when `attribute`); refuses what XML 1.0 cannot
  // carry (control characters, bytes that are not UTF-8).
  void escaped(std::string_view s, bool attribute) {
    std::size_t start = 0;
    bool reported = false;
    auto flush = [&](std::size_t end, std::size_t next) {
      out_.append(s.data() + start, end - start);
      start = next;
    };
    for (std::size_t i = 0; i < s.size();) {
      auto c = static_cast<unsigned char>(s[i]);
      const char* rep = nullptr;
      if (c >= 0x80) {
        std::uint32_t cp;
        std::size_t n = utf8::decode(s, i, cp);
        if (n == 0 || cp == 0xFFFE || cp == 0xFFFF) {
          if (!reported) report("structure", "The text is not valid UTF-8 (or holds a character XML cannot carry)");
          reported = true;
          flush(i, i + (n ? n : 1));
          i += n ? n : 1;
          continue;
        }
        i += n;
        continue;
      }
      switch (c) {
        case '&': rep = "&amp;"; break;
        case '<': rep = "&lt;"; break;
        case '>': rep = "&gt;"; break;
        case '"': rep = attribute ? "&quot;" : nullptr; break;
        case '\t': rep = attribute ? "&#9;" : nullptr; break;
        case '\n': rep = attribute ? "&#10;" : nullptr; break;
        case '\r': rep = "&#13;"; break;
        default:
          if (c < 0x20) {
            if (!reported) report("structure", "The text holds a control character (U+00" + std::string(1, "0123456789ABCDEF"[c >> 4]) +
                                                   std::string(1, "0123456789ABCDEF"[c & 15]) + ") that XML cannot carry");
            reported = true;
            flush(i, i + 1);
          }
          break;
      }
      if (rep) {
        flush(i, i + 1);
        out_ += rep;
      }
      ++i;
    }
    flush(s.size(), s.size());
  }

  void indent() {
    if (!options_.pretty) return;
    if (!out_.empty()) out_ += '\n';
    out_.append(static_cast<std::size_t>(level_) * 2, ' ');
  }

  void attribute(std::string_view name, std::uint32_t value) {
    const Node& n = nodes_[value];
    if (n.kind != Node::String) {
      report("structure", "The property " + std::string(name) + " must be a JSON String");
      return;
    }
    out_ += ' ';
    out_ += name;
    out_ += "=\"";
    if (n.escaped) escaped(text(value), true);
    else escaped(t_.substr(n.begin, n.len), true);
    out_ += '"';
  }

  // Writes the object at `at` of type `typeIndex` as the element `name`.
  void element(std::string_view name, std::uint32_t at, int typeIndex, bool isResource, bool root) {
    const TypeDef& type = tables_.type(typeIndex);
    const std::size_t base = members_.size();
    std::uint32_t idAttr = 0, urlAttr = 0;
    const bool isExtension = typeIndex == tables_.extensionType;
    std::uint32_t i = at + 1;
    for (std::uint32_t k = 0; k < nodes_[at].count; ++k) {
      std::uint32_t keyAt = i, value = i + 1;
      i = nodes_[value].end;
      std::string_view key = keyText(keyAt);
      if (isResource && key == "resourceType") continue;
      bool underscore = key.size() > 1 && key[0] == '_';
      std::string_view bare = underscore ? key.substr(1) : key;
      int e = type.find(bare);
      if (e < 0 || (underscore && type.elements[static_cast<std::size_t>(e)].prim == Prim::None)) {
        report("structure", "Unrecognized property '" + std::string(key) + "'");
        continue;
      }
      if (!isResource && !underscore && bare == "id") {
        idAttr = value;
        continue;
      }
      if (isExtension && !underscore && bare == "url") {
        urlAttr = value;
        continue;
      }
      members_.push_back({e, underscore, value});
    }
    std::sort(members_.begin() + static_cast<std::ptrdiff_t>(base), members_.end(), [](const Member& a, const Member& b) {
      return a.element != b.element ? a.element < b.element : a.underscore < b.underscore;
    });
    indent();
    out_ += '<';
    out_ += name;
    if (root) out_ += " xmlns=\"http://hl7.org/fhir\"";
    if (idAttr) attribute("id", idAttr);
    if (urlAttr) attribute("url", urlAttr);
    const std::size_t end = members_.size();
    if (base == end) {
      out_ += "/>";
      members_.resize(base);
      return;
    }
    out_ += '>';
    ++level_;
    for (std::size_t m = base; m < end;) {
      Member main = members_[m];
      std::uint32_t value = 0, under = 0;
      if (!main.underscore) {
        value = main.value;
        ++m;
      }
      if (m < end && members_[m].element == main.element && members_[m].underscore) {
        under = members_[m].value;
        ++m;
      }
      field(type.elements[static_cast<std::size_t>(main.element)], value, under);
    }
    --level_;
    indent();
    out_ += "</";
    out_ += name;
    out_ += '>';
    members_.resize(base);
  }

  void field(const ElementDef& ed, std::uint32_t value, std::uint32_t under) {
    path_.push_back({ed.name, -1});
    auto items = [&](std::uint32_t at, std::vector<std::uint32_t>& list) {
      list.clear();
      if (at == 0) return;
      const Node& n = nodes_[at];
      if (ed.many()) {
        if (n.kind != Node::Array) {
          report("structure", "The property " + ed.name + " must be a JSON Array");
          list.push_back(at);
          return;
        }
        for (std::uint32_t i = at + 1; i < n.end; i = nodes_[i].end) list.push_back(i);
      } else {
        if (n.kind == Node::Array) {
          report("structure", "The property " + ed.name + " must not be a JSON Array (it has at most one value)");
          return;
        }
        list.push_back(at);
      }
    };
    std::vector<std::uint32_t> values, unders;
    items(value, values);
    items(under, unders);
    std::size_t n = std::max(values.size(), unders.size());
    for (std::size_t k = 0; k < n; ++k) {
      if (ed.many()) path_.back().index = static_cast<std::int32_t>(k);
      std::uint32_t v = k < values.size() ? values[k] : 0;
      std::uint32_t u = k < unders.size() ? unders[k] : 0;
      if (v && nodes_[v].kind == Node::Null) v = 0;
      if (u && nodes_[u].kind == Node::Null) u = 0;
      if (ed.prim == Prim::Xhtml) {
        if (v) div(v);
      } else if (ed.prim != Prim::None) {
        primitive(ed, v, u);
      } else if (!v) {
        continue;
      } else if (nodes_[v].kind != Node::Object) {
        report("structure", "The property " + ed.name + " must be a JSON Object");
      } else if (ed.isResource) {
        indent();
        out_ += '<';
        out_ += ed.name;
        out_ += '>';
        ++level_;
        resource(v, false);
        --level_;
        indent();
        out_ += "</";
        out_ += ed.name;
        out_ += '>';
      } else {
        element(ed.name, v, ed.type, false, false);
      }
    }
    path_.pop_back();
  }

  void primitive(const ElementDef& ed, std::uint32_t v, std::uint32_t u) {
    if (!v && !u) return;
    std::uint32_t id = 0, extensions = 0;
    if (u) {
      const Node& un = nodes_[u];
      if (un.kind != Node::Object) {
        report("structure", "The primitive extension _" + ed.name + " must be a JSON Object");
        u = 0;
      } else {
        std::uint32_t i = u + 1;
        for (std::uint32_t k = 0; k < un.count; ++k) {
          std::string key = text(i);
          if (key == "id") id = i + 1;
          else if (key == "extension") extensions = i + 1;
          else report("structure", "Unrecognized property '" + key + "' in _" + ed.name);
          i = nodes_[i + 1].end;
        }
      }
    }
    indent();
    out_ += '<';
    out_ += ed.name;
    if (id) attribute("id", id);
    if (v) {
      const Node& n = nodes_[v];
      out_ += " value=\"";
      switch (n.kind) {
        case Node::String:
          if (n.escaped) escaped(text(v), true);
          else escaped(t_.substr(n.begin, n.len), true);
          break;
        case Node::Number: out_.append(t_.substr(n.begin, n.len)); break;
        case Node::True: out_ += "true"; break;
        case Node::False: out_ += "false"; break;
        default: report("structure", "The property " + ed.name + " must be a primitive value, not an object or array"); break;
      }
      out_ += '"';
    }
    if (!extensions) {
      out_ += "/>";
      return;
    }
    out_ += '>';
    ++level_;
    const ElementDef* ext = nullptr;
    const TypeDef& element = tables_.type(tables_.elementType);
    if (int e = element.find("extension"); e >= 0) ext = &element.elements[static_cast<std::size_t>(e)];
    if (ext) field(*ext, extensions, 0);
    --level_;
    indent();
    out_ += "</";
    out_ += ed.name;
    out_ += '>';
  }

  void div(std::uint32_t v) {
    if (nodes_[v].kind != Node::String) {
      report("structure", "The property div must be a JSON String");
      return;
    }
    std::string xhtml = text(v);
    problems_.clear();
    validation::checkNarrativeXhtml(xhtml, problems_);
    for (const auto& p : problems_)
      if (p.invariant.empty()) {
        report("invalid", "The narrative div cannot be written as XML: " + p.message);
        return;
      }
    // The div is XHTML already; it declares its namespace, or is given it.
    std::size_t tagEnd = xhtml.find('>');
    std::string_view startTag = std::string_view(xhtml).substr(0, tagEnd);
    indent();
    if (xhtml.compare(0, 4, "<div") == 0 && startTag.find("xmlns=") == std::string_view::npos) {
      out_ += "<div xmlns=\"http://www.w3.org/1999/xhtml\"";
      out_.append(xhtml, 4, std::string::npos);
    } else {
      out_ += xhtml;
    }
  }

  const ValidationTables& tables_;
  std::string_view t_;
  const std::vector<Node>& nodes_;
  std::string& out_;
  std::vector<Issue>& issues_;
  XmlWriteOptions options_;
  std::vector<Member> members_;
  std::vector<Piece> path_;
  std::vector<validation::XhtmlProblem> problems_;
  std::string key_;
  int level_ = 0;
};

}  // namespace

bool fhirJsonToXml(std::string_view json, std::string& xml, std::vector<Issue>& issues, const XmlWriteOptions& options) {
  xml.clear();
  thread_local std::vector<Node> nodes;
  std::string error;
  Tape tape(json, nodes);
  if (!tape.read(error)) {
    issues.push_back({"fatal", "structure", "Error parsing JSON: " + error, ""});
    return false;
  }
  if (options.declaration) xml += "<?xml version=\"1.0\" encoding=\"UTF-8\"?>";
  Writer writer(json, nodes, xml, issues, options);
  writer.resource(0, true);
  if (options.pretty) xml += '\n';
  if (nodes.capacity() > (1u << 20)) std::vector<Node>().swap(nodes);  // do not keep a huge tape
  return !writer.failed;
}

}  // namespace passerelle::fhir
