// Works on the text of JSON that has already been parsed and checked (parseJson): finds members
// and elements by byte span and writes values back compacted, so that stored resources keep the
// exact digits of their decimals (1.50 stays 1.50) and the client's member order.
// Stateless and thread-safe. Behaviour on text that is not valid JSON is unspecified but bounded.
#pragma once

#include <cstddef>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

namespace passerelle::fhir {

struct Span {
  std::size_t begin = 0;
  std::size_t end = 0;  // one past the last byte
};

struct Member {
  std::string key;  // unescaped
  Span keySpan;     // including the quotes
  Span value;
};

// The span of the top-level value (surrounding whitespace excluded).
Span wholeValue(std::string_view text);
std::vector<Member> objectMembers(std::string_view text, Span object);
std::vector<Span> arrayElements(std::string_view text, Span array);
// The value of member `key` in `object`, or an empty span (begin == end) when absent.
Span findMember(std::string_view text, Span object, std::string_view key);

// Called for each string value of a member named "reference"; returns the replacement
// (unescaped) or nullptr to keep the original.
using ReferenceRewriter = std::function<const std::string*(const std::string& reference)>;

// Appends the value at `span` without insignificant white space.
void writeCompact(std::string_view text, Span span, std::string& out, const ReferenceRewriter& rewrite = {});

// Appends the resource object at `span` compacted, with its top-level "id" and "meta" members
// replaced by the given ones, placed right after "resourceType".
void writeResource(std::string_view text, Span span, std::string_view id, std::string_view metaJson,
                   std::string& out, const ReferenceRewriter& rewrite = {});

// `s` with every byte sequence that is not valid UTF-8 replaced by U+FFFD, for messages that
// quote untrusted input.
std::string sanitizeUtf8(std::string_view s);

// Appends `s` as a JSON string literal (with quotes).
void appendJsonString(std::string& out, std::string_view s);

}  // namespace passerelle::fhir
