// Paths into JSON documents and FHIR resources, as the mapping definitions write them:
// `name[0].given[*]`, `extension[url=https://x/y].valueBoolean`, `item[linkId=a,*].answer[0]`.
// A step is a member name with at most one selector: [n] an index, [*] "each" (bound to the
// iteration index of the rule), [k=v] the first element whose member k equals v, [k=v,*] the
// i-th of those. Values may contain dots and slashes; `]` ends a selector.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json_fwd.hpp>

namespace passerelle::network {

using Json = nlohmann::ordered_json;

struct PathStep {
  std::string name;
  enum class Sel { kNone, kIndex, kEach, kMatch, kMatchEach } sel = Sel::kNone;
  std::size_t index = 0;
  std::string key, value;  // for kMatch / kMatchEach
};

struct ElementPath {
  std::vector<PathStep> steps;
  std::string text;
  bool hasEach() const;
};

// Parses a path; returns nullopt (with `error`) when it is malformed.
std::optional<ElementPath> parseElementPath(std::string_view text, std::string& error);

// The element at `path` with [*] bound to `each`, or nullptr when any step is missing.
const Json* getAt(const Json& root, const ElementPath& path, std::size_t each = 0);

// Writes `value` at `path`, creating objects, arrays and matched elements ({k: v}) on the way.
void setAt(Json& root, const ElementPath& path, const Json& value, std::size_t each = 0);

// How many elements the [*] step of `path` ranges over in `root` (0 when absent).
std::size_t countEach(const Json& root, const ElementPath& path);

}  // namespace passerelle::network
