// ResourceStore on SQLite: Poco::Data opens and owns the connections; hot statements are
// prepared once per connection on the native handle and reused. WAL with synchronous=FULL;
// one writer thread groups the units of work of concurrent requests into one commit (one fsync),
// each unit inside its own savepoint; readers use a pool of connections.
#pragma once

#include <memory>
#include <string>

#include "gateway/store/resource_store.h"

namespace passerelle::store {

Result<std::unique_ptr<ResourceStore>> openSqliteStore(const std::string& path, const StoreOptions& options);

}  // namespace passerelle::store
