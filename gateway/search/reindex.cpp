// Rebuilding the search indexes.
#include "gateway/search/reindex.h"

#include <nlohmann/json.hpp>

#include "gateway/common/log.h"
#include "gateway/search/index_extractor.h"
#include "gateway/search/search_definitions.h"

namespace passerelle::search {

namespace {
constexpr const char* kFingerprintKey = "search.fingerprint";
}

Result<ReindexResult> reindexIfNeeded(store::ResourceStore& store, const std::string& baseUrl, bool force) {
  const auto& defs = SearchDefinitions::r4();
  ReindexResult out;
  out.fingerprint = defs.fingerprint();
  auto have = store.getMeta(kFingerprintKey);
  if (!have.ok()) return have.error();
  if (!force && *have == out.fingerprint) return out;
  log::info("search.reindex_started", {{"was", have->empty() ? "none" : *have}, {"now", out.fingerprint}});
  auto n = store.reindex([&](const store::ResourceVersion& v) -> Result<store::IndexRows> {
    try {
      auto json = nlohmann::ordered_json::parse(v.body);
      return extractIndex(defs, v.type, json, baseUrl);
    } catch (const std::exception& ex) {
      return makeError(ErrorCode::kInternal, std::string("stored body is not JSON: ") + ex.what());
    }
  });
  if (!n.ok()) return n.error();
  auto set = store.setMeta(kFingerprintKey, out.fingerprint);
  if (!set.ok()) return set.error();
  out.ran = true;
  out.resources = *n;
  log::info("search.reindex_done", {{"resources", std::to_string(*n)}});
  return out;
}

}  // namespace passerelle::search
