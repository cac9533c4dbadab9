// The numbered schema migrations, compiled in from gateway/store/migrations/<dialect>/NNNN_name.sql.
#pragma once

#include <vector>

namespace passerelle::store {

struct Migration {
  int version;
  const char* name;
  const char* sql;
};

const std::vector<Migration>& sqliteMigrations();      // in version order
const std::vector<Migration>& postgresqlMigrations();  // the same numbers and names

}  // namespace passerelle::store
