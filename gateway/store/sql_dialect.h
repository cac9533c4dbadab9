// What the SQL shared by the store's databases (the search builder's) needs to know about each
// one, and the small interface through which that SQL runs on either. Internal to the store
// library; the store implementations own their other statements.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <variant>
#include <vector>

#include "gateway/common/status.h"
#include "gateway/store/resource_store.h"

namespace passerelle::store {

// A value bound to a statement parameter.
using SqlValue = std::variant<std::int64_t, std::string, double>;

// The differences between SQLite and PostgreSQL in the SQL that both run. Shared SQL is written
// with '?' placeholders and portable syntax (COALESCE, subqueries in FROM named); only what
// follows differs.
struct Dialect {
  const char* name;
  // SQLite plans without statistics and is told which index a per-resource probe uses
  // ("INDEXED BY"); PostgreSQL has statistics and no hints.
  bool indexHints;
  // The literal of an always-true condition.
  const char* alwaysTrue;
  // Parameters are numbered ($1, $2...) rather than positional '?'.
  bool numberedParameters;

  static const Dialect& sqlite();
  static const Dialect& postgresql();

  // `sql` (written with '?') with the dialect's placeholders. Quoted literals and identifiers are
  // left alone.
  std::string placeholders(const std::string& sql) const;
};

// Scheduled work claimed by one gateway (ResourceStore::claimJob): binds the job, the time, the
// claiming gateway and the lease; returns a row when the claim was taken.
inline constexpr const char* kClaimJobSql =
    "INSERT INTO job_claim (name, started, owner, done) VALUES (?, ?, ?, 0) ON CONFLICT (name) DO UPDATE"
    " SET started = excluded.started, owner = excluded.owner"
    " WHERE job_claim.done = 0 AND job_claim.started <= excluded.started - ? RETURNING name";
// finishJob: binds the job (done), or the job and the gateway (dropped).
inline constexpr const char* kJobDoneSql = "UPDATE job_claim SET done = 1 WHERE name = ?";
inline constexpr const char* kJobDropSql = "DELETE FROM job_claim WHERE name = ? AND owner = ?";

// A name for this process's store on a shared database: host, process id and a random part (letters,
// digits, dots and dashes only).
std::string newInstanceName();

// One result row. Columns are numbered from 0.
class SqlRow {
 public:
  virtual ~SqlRow() = default;
  virtual int columns() const = 0;
  virtual std::int64_t i64(int col) const = 0;
  virtual double real(int col) const = 0;
  virtual std::string text(int col) const = 0;  // "" for NULL
};

// Runs shared SQL on one connection. Used by one thread at a time.
class SqlRunner {
 public:
  virtual ~SqlRunner() = default;
  virtual const Dialect& dialect() const = 0;
  // Runs `sql` (with '?' placeholders) with `binds`, calling `row` for each result row. Errors
  // are the store's (kConflict, kTimeout for a read stopped by its SearchLimit, kUnavailable...),
  // `what` naming the step.
  virtual Result<void> query(const std::string& sql, const std::vector<SqlValue>& binds,
                             const std::function<void(const SqlRow&)>& row, const char* what) = 0;
};

// The columns read for a ResourceVersion, from resource_version v (and a rid after them).
extern const char* const kVersionColumns;
ResourceVersion rowToVersion(const SqlRow& row);

// Search and includes (search_sql.cpp), over either database.
Result<SearchPage> runSearch(SqlRunner& runner, const SearchQuery& q);
Result<std::vector<ResourceVersion>> runInclude(SqlRunner& runner, const IncludeQuery& q);

// The calling thread's SearchLimit (search_limit.cpp), for databases that cannot call back
// during a query: whether a read should stop now (counted once per limit), and whether one is set.
bool readLimitReached();
bool readLimitActive();
// The kTimeout error of the read the thread's limit stopped.
Error readStoppedError();
// Counts a database failure (for /metrics).
void countDatabaseFailure();
// Reads stopped at their deadline, reads abandoned by their client, database failures.
void readLimitCounters(std::uint64_t& pastDeadline, std::uint64_t& abandoned, std::uint64_t& failures);

}  // namespace passerelle::store
