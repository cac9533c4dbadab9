// Byte-level walking of validated JSON text.
#include "mappings/fhir/json_text.h"

#include "mappings/common/utf8.h"

#include <cstdio>
#include <nlohmann/json.hpp>

namespace passerelle::fhir {
namespace {

bool isWs(char c) { return c == ' ' || c == '\n' || c == '\r' || c == '\t'; }

std::size_t skipWs(std::string_view t, std::size_t p) {
  while (p < t.size() && isWs(t[p])) ++p;
  return p;
}

// p at the opening quote; returns one past the closing quote.
std::size_t skipString(std::string_view t, std::size_t p) {
  ++p;
  while (p < t.size()) {
    char c = t[p];
    if (c == '\\') { p += 2; continue; }
    ++p;
    if (c == '"') break;
  }
  return p < t.size() ? p : t.size();
}

// p at the first byte of a value; returns one past its last byte.
std::size_t skipValue(std::string_view t, std::size_t p) {
  if (p >= t.size()) return p;
  char c = t[p];
  if (c == '"') return skipString(t, p);
  if (c == '{' || c == '[') {
    int depth = 0;
    while (p < t.size()) {
      char d = t[p];
      if (d == '"') { p = skipString(t, p); continue; }
      if (d == '{' || d == '[') ++depth;
      else if (d == '}' || d == ']') {
        if (--depth == 0) return p + 1;
      }
      ++p;
    }
    return p;
  }
  while (p < t.size() && !isWs(t[p]) && t[p] != ',' && t[p] != '}' && t[p] != ']') ++p;
  return p;
}

std::string unescape(std::string_view quoted) {
  if (quoted.find('\\') == std::string_view::npos) return std::string(quoted.substr(1, quoted.size() - 2));
  try {
    return nlohmann::json::parse(quoted).get<std::string>();
  } catch (...) {
    return std::string(quoted.substr(1, quoted.size() - 2));
  }
}

void compactInto(std::string_view t, std::size_t p, std::size_t end, std::string& out, const ReferenceRewriter& rw) {
  // Tracks whether the last string written was a member key "reference", so the next string
  // value may be rewritten.
  bool afterReferenceKey = false;
  bool lastWasKeyCandidate = false;
  std::string_view lastString;
  while (p < end) {
    char c = t[p];
    if (isWs(c)) { ++p; continue; }
    if (c == '"') {
      std::size_t q = skipString(t, p);
      std::string_view s = t.substr(p, q - p);
      if (afterReferenceKey && rw) {
        afterReferenceKey = false;
        std::string value = unescape(s);
        if (const std::string* repl = rw(value)) {
          appendJsonString(out, *repl);
          p = q;
          lastWasKeyCandidate = false;
          continue;
        }
      }
      afterReferenceKey = false;
      out.append(s);
      lastString = s;
      lastWasKeyCandidate = true;
      p = q;
      continue;
    }
    if (c == ':') {
      afterReferenceKey = lastWasKeyCandidate && lastString == "\"reference\"";
    } else {
      afterReferenceKey = false;
    }
    lastWasKeyCandidate = false;
    out += c;
    ++p;
  }
}

}  // namespace

Span wholeValue(std::string_view text) {
  std::size_t b = skipWs(text, 0);
  if (b + 3 <= text.size() && static_cast<unsigned char>(text[b]) == 0xEF &&
      static_cast<unsigned char>(text[b + 1]) == 0xBB && static_cast<unsigned char>(text[b + 2]) == 0xBF)
    b = skipWs(text, b + 3);
  return Span{b, skipValue(text, b)};
}

std::vector<Member> objectMembers(std::string_view t, Span obj) {
  std::vector<Member> out;
  if (obj.begin >= obj.end || t[obj.begin] != '{') return out;
  std::size_t p = skipWs(t, obj.begin + 1);
  while (p < obj.end && t[p] == '"') {
    Member m;
    std::size_t kq = skipString(t, p);
    m.keySpan = Span{p, kq};
    m.key = unescape(t.substr(p, kq - p));
    p = skipWs(t, kq);
    if (p < obj.end && t[p] == ':') p = skipWs(t, p + 1);
    std::size_t ve = skipValue(t, p);
    m.value = Span{p, ve};
    out.push_back(std::move(m));
    p = skipWs(t, ve);
    if (p < obj.end && t[p] == ',') p = skipWs(t, p + 1);
    else break;
  }
  return out;
}

std::vector<Span> arrayElements(std::string_view t, Span arr) {
  std::vector<Span> out;
  if (arr.begin >= arr.end || t[arr.begin] != '[') return out;
  std::size_t p = skipWs(t, arr.begin + 1);
  while (p < arr.end && t[p] != ']') {
    std::size_t ve = skipValue(t, p);
    out.push_back(Span{p, ve});
    p = skipWs(t, ve);
    if (p < arr.end && t[p] == ',') p = skipWs(t, p + 1);
    else break;
  }
  return out;
}

Span findMember(std::string_view t, Span obj, std::string_view key) {
  for (auto& m : objectMembers(t, obj))
    if (m.key == key) return m.value;
  return Span{};
}

void writeCompact(std::string_view text, Span span, std::string& out, const ReferenceRewriter& rewrite) {
  compactInto(text, span.begin, span.end, out, rewrite);
}

void writeResource(std::string_view text, Span span, std::string_view id, std::string_view metaJson,
                   std::string& out, const ReferenceRewriter& rewrite) {
  out += '{';
  bool first = true;
  auto sep = [&] { if (!first) out += ','; first = false; };
  auto writeIdMeta = [&] {
    if (!id.empty()) { sep(); out += "\"id\":"; appendJsonString(out, id); }
    if (!metaJson.empty()) { sep(); out += "\"meta\":"; out.append(metaJson); }
  };
  auto members = objectMembers(text, span);
  bool hasResourceType = false;
  for (auto& m : members) hasResourceType |= m.key == "resourceType";
  if (!hasResourceType) writeIdMeta();
  for (auto& m : members) {
    if (m.key == "id" || m.key == "meta") continue;
    sep();
    out.append(text.substr(m.keySpan.begin, m.keySpan.end - m.keySpan.begin));
    out += ':';
    compactInto(text, m.value.begin, m.value.end, out, rewrite);
    if (m.key == "resourceType") writeIdMeta();
  }
  out += '}';
}

std::string sanitizeUtf8(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  std::size_t i = 0;
  while (i < s.size()) {
    std::uint32_t cp = 0;
    if (std::size_t len = utf8::decode(s, i, cp)) {
      out.append(s.substr(i, len));
      i += len;
    } else {
      out += "\xEF\xBF\xBD";
      ++i;
    }
  }
  return out;
}

void appendJsonString(std::string& out, std::string_view s) {
  out += '"';
  for (char c : s) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      case '\b': out += "\\b"; break;
      case '\f': out += "\\f"; break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof buf, "\\u%04x", static_cast<unsigned>(c));
          out += buf;
        } else {
          out += c;
        }
    }
  }
  out += '"';
}

}  // namespace passerelle::fhir
