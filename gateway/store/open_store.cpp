// openStore: the store implementation named by the URL's scheme.
#include "gateway/store/pg_resource_store.h"
#include "gateway/store/resource_store.h"
#include "gateway/store/sqlite_resource_store.h"

namespace passerelle::store {

std::string redactedUrl(const std::string& url) {
  // scheme://user:password@host...
  auto scheme = url.find("://");
  if (scheme == std::string::npos) return url;
  auto at = url.find('@', scheme + 3);
  auto colon = url.find(':', scheme + 3);
  if (at == std::string::npos || colon == std::string::npos || colon > at) return url;
  return url.substr(0, colon + 1) + "***" + url.substr(at);
}

Result<std::unique_ptr<ResourceStore>> openStore(const std::string& url, const StoreOptions& options) {
  if (url.rfind("sqlite:", 0) == 0) {
    std::string path = url.substr(7);
    if (path.empty()) return makeError(ErrorCode::kInvalid, "storage.url 'sqlite:' needs a file path");
    return openSqliteStore(path, options);
  }
  // libpq's two URI schemes.
  if (url.rfind("postgresql://", 0) == 0 || url.rfind("postgres://", 0) == 0) return openPgStore(url, options);
  return makeError(ErrorCode::kInvalid, "storage.url '" + redactedUrl(url) +
                                            "': unsupported scheme (supported: sqlite:PATH, postgresql://USER@HOST:PORT/DATABASE)");
}

}  // namespace passerelle::store
