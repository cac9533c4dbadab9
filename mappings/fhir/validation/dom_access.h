// What the validation passes (the base walk, the profile walk) share over a simdjson DOM: each
// thread's parser, parsing with a UTF-8 byte order mark ignored (RFC 8259 allows it), and typed
// access to an object's members. Included by .cpp files that link simdjson.
#pragma once

#include <simdjson.h>

#include "mappings/fhir/validation/validation_tables.h"

#include <string_view>

namespace passerelle::fhir::validation {

// This thread's reusable parser (64 KiB and depth 64 reserved up front; on failure parse()
// allocates again and reports the error).
inline simdjson::dom::parser& threadParser() {
  thread_local simdjson::dom::parser parser = [] {
    simdjson::dom::parser p;
    if (p.allocate(64 * 1024, 64) != simdjson::SUCCESS) {}  // depth 64: Validator::kMaxDepth; parse() retries
    return p;
  }();
  return parser;
}

// `json` without a leading UTF-8 byte order mark.
inline std::string_view withoutBom(std::string_view json) {
  if (json.substr(0, 3) == "\xEF\xBB\xBF") json.remove_prefix(3);
  return json;
}

// Parses `json` (byte order mark ignored) with this thread's parser.
inline simdjson::error_code parseDocument(std::string_view json, simdjson::dom::element& root) {
  json = withoutBom(json);
  return threadParser().parse(json.data(), json.size(), true).get(root);
}

inline bool stringOf(simdjson::dom::element v, std::string_view& out) {
  return v.get_string().get(out) == simdjson::SUCCESS;
}

// The member `key` of `obj` (the first, as at_key), read inline: the objects of a resource have a
// few members with short names, where a call into the library per comparison costs more than it reads.
inline bool member(simdjson::dom::object obj, std::string_view key, simdjson::dom::element& out) {
  for (auto field : obj) {
    if (sameName(field.key, key)) {
      out = field.value;
      return true;
    }
  }
  return false;
}

inline bool memberString(simdjson::dom::object obj, std::string_view key, std::string_view& out) {
  simdjson::dom::element v;
  return member(obj, key, v) && stringOf(v, out);
}

inline bool memberObject(simdjson::dom::object obj, std::string_view key, simdjson::dom::object& out) {
  simdjson::dom::element v;
  return member(obj, key, v) && v.get_object().get(out) == simdjson::SUCCESS;
}

inline bool memberArray(simdjson::dom::object obj, std::string_view key, simdjson::dom::array& out) {
  simdjson::dom::element v;
  return member(obj, key, v) && v.get_array().get(out) == simdjson::SUCCESS;
}

}  // namespace passerelle::fhir::validation
