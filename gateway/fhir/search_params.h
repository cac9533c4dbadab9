// Turns FHIR search and history parameters into store queries. Supported here: _id,
// _lastUpdated (every prefix but ap), identifier (token forms system|value, |value, system|,
// value), _count, _offset, _total, _summary=count. Unknown parameters are ignored (lenient) or
// refused (strict, from Prefer: handling=strict). Stateless.
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
  int maxValues = 1000;  // most comma-separated values in one parameter
};

struct ParsedSearch {
  store::SearchQuery query;
  Params applied;  // the parameters that were used, for the self link
  bool summaryCount = false;
};

Result<ParsedSearch> parseSearch(const std::string& type, const Params& params, const SearchLimits& limits, bool strict);

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
