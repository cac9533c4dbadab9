// Parses untrusted JSON with limits: nesting depth, duplicate keys and invalid UTF-8 are refused
// with a message that names the byte offset or the member path. Stateless and thread-safe.
#pragma once

#include <nlohmann/json_fwd.hpp>
#include <string>
#include <string_view>

namespace passerelle::fhir {

using Json = nlohmann::ordered_json;

struct JsonLimits {
  int maxDepth = 64;  // objects and arrays nested deeper than this are refused
};

struct JsonError {
  std::string message;  // human-readable, names the offset or path
  std::string path;     // FHIRPath-like location when known ("Patient.name[0]"), else empty
};

// Parses `text` into `out`. Returns true on success; on failure fills `err` and leaves `out`
// unspecified. Never throws.
bool parseJson(std::string_view text, const JsonLimits& limits, Json& out, JsonError& err);

}  // namespace passerelle::fhir
