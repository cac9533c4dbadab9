// A small XML scanner for narrative XHTML: tags, attributes, entities, comments; a stack of open
// element names checks nesting.
#include "mappings/fhir/validation/xhtml_check.h"

#include <algorithm>
#include <array>
#include <cctype>
#include <cstdint>
#include <cstring>

#include "mappings/fhir/validation/validation_tables.h"

namespace passerelle::fhir::validation {

namespace {

constexpr std::string_view kXhtmlNs = "http://www.w3.org/1999/xhtml";
// txt-1: the basic formatting of HTML 4.0 chapters 7 (div, span, headings, address), 9 (phrase
// elements, quotations, sub/sup, paragraphs, lines, pre; not 9.4, ins and del), 10 (lists), 11
// (tables), 12 (a), images (img, map, area) and the font-style elements narratives use (b, i, tt,
// big, small, hr), sorted. Everything else (script, style, form, object, iframe, ins, font, ...) is
// refused.
constexpr std::string_view kAllowed[] = {
    "a", "abbr", "acronym", "address", "area", "b", "bdo", "big", "blockquote", "br", "caption",
    "cite", "code", "col", "colgroup", "dd", "dfn", "div", "dl", "dt", "em", "h1", "h2", "h3", "h4",
    "h5", "h6", "hr", "i", "img", "kbd", "li", "map", "ol", "p", "pre", "q", "samp", "small", "span",
    "strong", "sub", "sup", "table", "tbody", "td", "tfoot", "th", "thead", "tr", "tt", "ul", "var"};
// The attributes of those elements (core, i18n, tables, links, images) and the style attribute
// (sorted, as the elements above).
constexpr std::string_view kAllowedAttributes[] = {
    "abbr", "accesskey", "align", "alt", "axis", "bgcolor", "border", "cellpadding", "cellspacing",
    "char", "charoff", "cite", "class", "colspan", "compact", "coords", "datetime", "dir", "frame",
    "headers", "height", "href", "hreflang", "hspace", "id", "ismap", "lang", "longdesc", "name",
    "nohref", "rel", "rev", "rowspan", "rules", "scope", "shape", "span", "src", "start", "style",
    "summary", "tabindex", "target", "title", "type", "usemap", "valign", "value", "vspace", "width",
    "xml:lang", "xml:space", "xmlns"};

// A list of names looked up by hash (a narrative has many tags, each with attributes): open
// addressing over nameHash, a quarter full at most.
class NameSet {
 public:
  template <std::size_t N>
  explicit NameSet(const std::string_view (&list)[N]) : list_(list) {
    static_assert(N * 4 <= kSlots, "the table is a quarter full at most");
    slots_.fill(-1);
    for (std::size_t i = 0; i < N; ++i) {
      std::uint32_t h = nameHash(list[i]) & (kSlots - 1);
      while (slots_[h] >= 0) h = (h + 1) & (kSlots - 1);
      slots_[h] = static_cast<std::int16_t>(i);
    }
  }
  bool contains(std::string_view name) const {
    for (std::uint32_t h = nameHash(name) & (kSlots - 1);; h = (h + 1) & (kSlots - 1)) {
      std::int16_t at = slots_[h];
      if (at < 0) return false;
      if (sameName(list_[at], name)) return true;
    }
  }

 private:
  static constexpr std::uint32_t kSlots = 256;
  const std::string_view* list_;
  std::array<std::int16_t, kSlots> slots_;
};

const NameSet& allowedElements() {
  static const NameSet set(kAllowed);
  return set;
}
const NameSet& allowedAttributes() {
  static const NameSet set(kAllowedAttributes);
  return set;
}

// The position of the next '<' or '&' from i (or the end): eight bytes at a time, a byte is one
// of them when its xor with it is zero.
std::size_t nextMarkup(std::string_view s, std::size_t i) {
  constexpr std::uint64_t kOnes = 0x0101010101010101ull, kHighs = 0x8080808080808080ull;
  for (; i + 8 <= s.size(); i += 8) {
    std::uint64_t w;
    std::memcpy(&w, s.data() + i, 8);
    std::uint64_t lt = w ^ (kOnes * '<'), amp = w ^ (kOnes * '&');
    if ((((lt - kOnes) & ~lt) | ((amp - kOnes) & ~amp)) & kHighs) break;
  }
  while (i < s.size() && s[i] != '<' && s[i] != '&') ++i;
  return i;
}

// ASCII only, without the C library's locale: XML names and HTML's are case-folded in ASCII.
bool isNameChar(char c) {
  auto u = static_cast<unsigned char>(c);
  return (u >= 'a' && u <= 'z') || (u >= 'A' && u <= 'Z') || (u >= '0' && u <= '9') || c == '-' || c == '_' ||
         c == ':' || c == '.' || u >= 0x80;
}
bool isSpace(char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; }

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out)
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  return out;
}

// Checks an entity starting at s[i] == '&'; returns the length consumed or 0 when invalid.
std::size_t entityLength(std::string_view s, std::size_t i, std::string& name) {
  std::size_t semi = s.find(';', i);
  if (semi == std::string_view::npos || semi - i > 12) return 0;
  name = std::string(s.substr(i, semi - i + 1));
  std::string_view body = s.substr(i + 1, semi - i - 1);
  if (body == "lt" || body == "gt" || body == "amp" || body == "quot" || body == "apos") return semi - i + 1;
  if (body.size() >= 2 && body[0] == '#') {
    bool hex = body[1] == 'x' || body[1] == 'X';
    std::string_view numerals = body.substr(hex ? 2 : 1);
    if (numerals.empty()) return 0;
    for (char c : numerals)
      if (!(hex ? std::isxdigit(static_cast<unsigned char>(c)) : std::isdigit(static_cast<unsigned char>(c))))
        return 0;
    return semi - i + 1;
  }
  return 0;
}

}  // namespace

void checkNarrativeXhtml(std::string_view s, std::vector<XhtmlProblem>& out, XhtmlRefs* refs) {
  // The open elements; the thread's list is reused (its strings keep their room), as every
  // resource's narrative is checked.
  thread_local std::vector<std::string> openNames;
  std::size_t depth = 0;
  struct OpenStack {
    std::vector<std::string>& names;
    std::size_t& depth;
    bool empty() const { return depth == 0; }
    const std::string& back() const { return names[depth - 1]; }
    void pop_back() { --depth; }
    void push_back(const std::string& name) {
      if (depth == names.size()) names.emplace_back();
      names[depth++].assign(name);
    }
  } open{openNames, depth};
  bool content = false, rootSeen = false, rootClosed = false;
  std::size_t i = 0;
  std::size_t reported = out.size();
  auto fail = [&](std::string invariant, std::string message) {
    if (out.size() - reported < 8) out.push_back({std::move(invariant), std::move(message)});
  };
  while (i < s.size()) {
    char c = s[i];
    if (c == '<') {
      if (s.compare(i, 4, "<!--") == 0) {
        std::size_t end = s.find("-->", i + 4);
        if (end == std::string_view::npos) return fail("", "The narrative XHTML has an unterminated comment");
        i = end + 3;
        continue;
      }
      if (s.compare(i, 2, "<?") == 0 || s.compare(i, 2, "<!") == 0) {
        return fail("txt-1", "The narrative XHTML must not contain processing instructions or declarations");
      }
      bool closing = i + 1 < s.size() && s[i + 1] == '/';
      std::size_t p = i + (closing ? 2 : 1);
      std::size_t start = p;
      while (p < s.size() && isNameChar(s[p])) ++p;
      if (p == start) return fail("", "The narrative XHTML is not well-formed: '<' does not start a tag");
      std::string name = lower(s.substr(start, p - start));
      if (std::size_t colon = name.find(':'); colon != std::string::npos) name = name.substr(colon + 1);
      if (closing) {
        while (p < s.size() && isSpace(s[p])) ++p;
        if (p >= s.size() || s[p] != '>') return fail("", "The narrative XHTML is not well-formed: bad end tag");
        if (open.empty() || open.back() != name)
          return fail("", "The narrative XHTML is not well-formed: unexpected </" + name + ">");
        open.pop_back();
        if (open.empty()) rootClosed = true;
        i = p + 1;
        continue;
      }
      if (rootClosed) return fail("", "The narrative XHTML has content after the closing </div>");
      if (!rootSeen) {
        rootSeen = true;
        if (name != "div") fail("txt-1", "The narrative XHTML must be a <div> element, not <" + name + ">");
      }
      if (!allowedElements().contains(name))
        fail("txt-1", "The narrative XHTML must not contain a <" + name + "> element (not basic formatting)");
      if (name == "img") content = true;
      bool hasNs = false;
      // attributes
      while (true) {
        while (p < s.size() && isSpace(s[p])) ++p;
        if (p >= s.size()) return fail("", "The narrative XHTML is not well-formed: unterminated tag <" + name + ">");
        if (s[p] == '>' || s.compare(p, 2, "/>") == 0) break;
        std::size_t an = p;
        while (p < s.size() && isNameChar(s[p])) ++p;
        if (p == an) return fail("", "The narrative XHTML is not well-formed in <" + name + ">");
        std::string attr = lower(s.substr(an, p - an));
        while (p < s.size() && isSpace(s[p])) ++p;
        if (p >= s.size() || s[p] != '=')
          return fail("", "The narrative XHTML is not well-formed: attribute " + attr + " has no value");
        ++p;
        while (p < s.size() && isSpace(s[p])) ++p;
        if (p >= s.size() || (s[p] != '"' && s[p] != '\''))
          return fail("", "The narrative XHTML is not well-formed: attribute " + attr + " is not quoted");
        char q = s[p];
        std::size_t vend = s.find(q, p + 1);
        if (vend == std::string_view::npos)
          return fail("", "The narrative XHTML is not well-formed: unterminated attribute " + attr);
        std::string_view value = s.substr(p + 1, vend - p - 1);
        p = vend + 1;
        if (attr.size() > 2 && attr.compare(0, 2, "on") == 0)
          fail("txt-1", "The narrative XHTML must not contain event attributes (" + attr + " on <" + name + ">)");
        else if (!allowedAttributes().contains(attr) && attr.compare(0, 6, "xmlns:") != 0)
          fail("txt-1", "The narrative XHTML must not contain the attribute " + attr + " (on <" + name + ">)");
        if (refs != nullptr) {
          if ((attr == "id" || (attr == "name" && name == "a")) && !value.empty()) refs->anchors.push_back(value);
          if ((attr == "href" || attr == "src") && value.size() > 1 && value[0] == '#')
            refs->links.push_back(value.substr(1));
        }
        if ((attr == "href" || attr == "src") &&
            lower(value.substr(0, std::min<std::size_t>(value.size(), 11))).find("javascript:") == 0)
          fail("txt-1", "The narrative XHTML must not contain javascript: links");
        if (attr == "xmlns") {
          hasNs = true;
          if (value != kXhtmlNs)
            fail("txt-1", "Wrong namespace on the XHTML ('" + std::string(value) + "', should be '" +
                              std::string(kXhtmlNs) + "')");
        }
      }
      if (open.empty() && !hasNs)
        fail("txt-1", "Wrong namespace on the XHTML ('null', should be '" + std::string(kXhtmlNs) + "')");
      if (s[p] == '>') {
        open.push_back(name);
        i = p + 1;
      } else {
        if (open.empty()) rootClosed = true;
        i = p + 2;
      }
      continue;
    }
    if (open.empty()) {
      if (!isSpace(c)) return fail("", "The narrative XHTML has text outside the <div> element");
      ++i;
      continue;
    }
    if (c == '&') {
      std::string entity;
      std::size_t n = entityLength(s, i, entity);
      if (n == 0) {
        fail("", "Invalid entity in the XHTML ('" + (entity.empty() ? std::string("&") : entity) + "')");
        ++i;
      } else {
        content = true;
        i += n;
      }
      continue;
    }
    if (!isSpace(c)) content = true;
    ++i;
    // The rest of the text up to the next tag or entity: read a byte at a time until a character
    // that is not a space is met, then a word at a time.
    for (; !content && i < s.size() && s[i] != '<' && s[i] != '&'; ++i) content = !isSpace(s[i]);
    i = nextMarkup(s, i);
  }
  if (!rootSeen) return fail("txt-1", "The narrative XHTML must be a <div> element");
  if (!open.empty()) return fail("", "The narrative XHTML is not well-formed: <" + open.back() + "> is not closed");
  if (!content) fail("txt-2", "The narrative SHALL have some non-whitespace content");
}

}  // namespace passerelle::fhir::validation
