// The connectors' lookups (see lookups.h).
#include "gateway/exchange/lookups.h"

#include <chrono>
#include <nlohmann/json.hpp>

#include "gateway/fhir/search_params.h"

namespace passerelle::exchange {

namespace {

// The search for `type` matching `query`: no total, at most `count` (0: the query's _count).
Result<store::SearchQuery> idQuery(const std::string& type, const fhir::Params& query, int count) {
  fhir::SearchLimits limits;
  auto ps = fhir::parseSearch(type, query, limits, true);
  if (!ps.ok()) return ps.error();
  if (count > 0) ps->query.count = count;
  ps->query.total = store::SearchQuery::Total::kNone;
  return std::move(ps->query);
}

std::vector<std::string> ids(const store::SearchPage& page) {
  std::vector<std::string> out;
  for (const auto& v : page.items) out.push_back(v.id);
  return out;
}

}  // namespace

std::vector<std::string> findIds(store::ResourceStore& store, const std::string& type, const fhir::Params& query, int count) {
  auto q = idQuery(type, query, count);
  if (!q.ok()) return {};
  auto page = store.search(*q);
  return page.ok() ? ids(*page) : std::vector<std::string>{};
}

std::vector<std::string> findBodies(store::ResourceStore& store, const std::string& type, const fhir::Params& query, int count) {
  bool counted = false;
  for (const auto& [name, value] : query) counted = counted || name == "_count";
  auto q = idQuery(type, query, counted ? 0 : count);
  std::vector<std::string> out;
  if (!q.ok()) return out;
  auto page = store.search(*q);
  if (!page.ok()) return out;
  for (auto& v : page->items)
    if (!v.deleted) out.push_back(std::move(v.body));
  return out;
}

Result<std::vector<std::string>> findIds(store::WriteTxn& txn, const std::string& type, const fhir::Params& query, int count) {
  auto q = idQuery(type, query, count);
  if (!q.ok()) return q.error();
  auto page = txn.search(*q);
  if (!page.ok()) return page.error();
  return ids(*page);
}

std::optional<std::string> currentBody(store::ResourceStore& store, const std::string& ref) {
  auto slash = ref.find('/');
  if (slash == std::string::npos) return std::nullopt;
  auto v = store.read(ref.substr(0, slash), ref.substr(slash + 1));
  if (!v.ok() || !v->has_value() || (*v)->deleted) return std::nullopt;
  return (*v)->body;
}

fhir::FhirRequest transactionKeeping(std::string body, store::InboxMessage& row) {
  fhir::FhirRequest req;
  req.method = "POST";
  req.path = "";
  req.contentType = "application/fhir+json";
  req.body = std::move(body);
  req.alsoInUnit = [&row](store::WriteTxn& t, int status) -> Result<void> {
    if (status >= 300) return {};
    return row.id ? t.updateInbox(row) : t.putInbox(row);
  };
  return req;
}

std::int64_t nowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

std::string outcomeText(const std::string& body) {
  auto j = nlohmann::json::parse(body, nullptr, false);
  std::string out;
  if (j.is_object() && j.contains("issue") && j["issue"].is_array())
    for (const auto& i : j["issue"]) {
      if (!i.is_object()) continue;
      std::string d;
      if (auto t = i.find("details"); t != i.end() && t->is_object() && t->contains("text") && (*t)["text"].is_string())
        d = (*t)["text"].get<std::string>();
      if (d.empty() && i.contains("diagnostics") && i["diagnostics"].is_string()) d = i["diagnostics"].get<std::string>();
      if (auto e = i.find("expression"); e != i.end() && e->is_array() && !e->empty() && (*e)[0].is_string())
        d = (*e)[0].get<std::string>() + ": " + d;
      if (d.empty()) continue;
      if (!out.empty()) out += "; ";
      out += d;
    }
  return out.empty() ? body.substr(0, 300) : out;
}

}  // namespace passerelle::exchange
