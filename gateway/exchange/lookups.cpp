// The connectors' lookups (see lookups.h).
#include "gateway/exchange/lookups.h"

#include "gateway/fhir/search_params.h"

namespace passerelle::exchange {

std::vector<std::string> findIds(store::ResourceStore& store, const std::string& type, const fhir::Params& query, int count) {
  fhir::SearchLimits limits;
  auto ps = fhir::parseSearch(type, query, limits, true);
  std::vector<std::string> out;
  if (!ps.ok()) return out;
  ps->query.count = count;
  ps->query.total = store::SearchQuery::Total::kNone;
  auto page = store.search(ps->query);
  if (!page.ok()) return out;
  for (const auto& v : page->items) out.push_back(v.id);
  return out;
}

std::optional<std::string> currentBody(store::ResourceStore& store, const std::string& ref) {
  auto slash = ref.find('/');
  if (slash == std::string::npos) return std::nullopt;
  auto v = store.read(ref.substr(0, slash), ref.substr(slash + 1));
  if (!v.ok() || !v->has_value() || (*v)->deleted) return std::nullopt;
  return (*v)->body;
}

}  // namespace passerelle::exchange
