// Keeps the search indexes in step with the search definitions compiled in: the database records
// the fingerprint of the definitions its index rows came from; when it differs (a new table,
// a changed extractor, a migrated database), every current resource is indexed again.
#pragma once

#include <cstdint>
#include <string>

#include "gateway/common/status.h"
#include "gateway/store/resource_store.h"

namespace passerelle::search {

struct ReindexResult {
  bool ran = false;
  std::int64_t resources = 0;
  std::string fingerprint;
};

// Reindexes when the recorded fingerprint differs from the compiled one, or always with `force`.
// `baseUrl` (fhir.base_url) makes absolute references to this server local ones.
Result<ReindexResult> reindexIfNeeded(store::ResourceStore& store, const std::string& baseUrl, bool force);

}  // namespace passerelle::search
