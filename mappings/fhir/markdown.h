// Plain text in FHIR markdown elements (Annotation.text and the like) and back. Markdown in FHIR
// is GitHub-flavoured without raw HTML: text put there unescaped could read as a tag or an entity
// (and be refused by the validator). Header-only, for the mappings that write such elements.
#pragma once

#include <cctype>
#include <string>
#include <string_view>

namespace passerelle::fhir {

// Plain text as markdown that reads the same: a backslash before '\', '<' and '&'.
inline std::string markdownFromText(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (char c : text) {
    if (c == '\\' || c == '<' || c == '&') out += '\\';
    out += c;
  }
  return out;
}

// Markdown read back as plain text: a backslash before ASCII punctuation is dropped.
inline std::string textFromMarkdown(std::string_view md) {
  std::string out;
  out.reserve(md.size());
  for (std::size_t i = 0; i < md.size(); ++i) {
    if (md[i] == '\\' && i + 1 < md.size() && std::ispunct(static_cast<unsigned char>(md[i + 1]))) ++i;
    out += md[i];
  }
  return out;
}

}  // namespace passerelle::fhir
