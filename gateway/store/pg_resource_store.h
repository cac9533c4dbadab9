// ResourceStore on PostgreSQL (libpq): the same schema, migrations and behaviour as on SQLite, on a
// database server rather than a file. One writer connection groups the units of work of concurrent
// requests into one transaction (one commit, each unit inside its own savepoint); readers use a
// pool of connections that reconnect when the server went away. One gateway process writes to a
// database: audit record ids follow the commit order of this process's writer only.
#pragma once

#include <memory>
#include <string>

#include "gateway/store/resource_store.h"

namespace passerelle::store {

// `url`: postgresql://user[:password]@host:port/database (any libpq connection URI).
Result<std::unique_ptr<ResourceStore>> openPgStore(const std::string& url, const StoreOptions& options);

}  // namespace passerelle::store
