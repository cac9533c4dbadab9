// Turns FHIR search and history parameters into store queries. Search parameters are those of
// the generated definitions (gateway/search), with their types' modifiers and prefixes, chaining
// one level, _has, _sort, _include/_revinclude (:iterate), _summary, _elements, _total, _count
// and paging cursors. Unknown parameters are ignored (lenient) or refused (strict, from
// Prefer: handling=strict). Stateless.
#pragma once

#include <optional>
#include <string>

#include "gateway/common/status.h"
#include "gateway/fhir/fhir_request.h"
#include "gateway/store/resource_store.h"

namespace passerelle::fhir {

struct SearchLimits {
  int defaultCount = 50;
  int maxCount = 1000;
  int maxValues = 1000;     // most comma-separated values in one parameter
  int maxConditions = 64;   // most search parameters in one query
  int maxIncluded = 1000;   // most resources added by _include and _revinclude
};

struct IncludeSpec {
  bool reverse = false;  // _revinclude
  bool iterate = false;  // :iterate (applied once more to what was included)
  std::string sourceType;  // the type holding the reference
  std::string param;       // its reference parameter code, or "*" (every one)
  std::string targetType;  // optional restriction on the target type
};

enum class Summary { kNone, kTrue, kText, kData, kCount, kFalse };

struct ParsedSearch {
  store::SearchQuery query;
  Params applied;  // the parameters that were used, for the self link
  Summary summary = Summary::kNone;
  std::vector<std::string> elements;  // _elements
  std::vector<IncludeSpec> includes;
  bool summaryCount() const { return summary == Summary::kCount; }
};

// `baseUrl` turns absolute references to this server into local ones.
Result<ParsedSearch> parseSearch(const std::string& type, const Params& params, const SearchLimits& limits, bool strict,
                                 const std::string& baseUrl = "");

struct ParsedHistory {
  store::HistoryQuery query;
  Params applied;
};

Result<ParsedHistory> parseHistory(const Params& params, const SearchLimits& limits, bool strict);

// Splits on `sep` not preceded by a backslash, and removes the escaping backslashes.
std::vector<std::string> splitEscaped(const std::string& s, char sep);

// application/x-www-form-urlencoded or a URL query: "a=1&b=%20x" -> decoded pairs.
Params parseQueryString(const std::string& query);
std::string encodeQuery(const Params& params);

}  // namespace passerelle::fhir
