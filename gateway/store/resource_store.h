// The FHIR resource store: every version of every resource, a token index, and writes grouped
// into shared commits. Handlers see this interface only, never SQL.
// Thread-safety: all methods may be called from any thread concurrently.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "gateway/common/status.h"

namespace passerelle::store {

struct ResourceVersion {
  std::string type;
  std::string id;
  std::int64_t version = 0;
  std::int64_t lastUpdatedMs = 0;
  bool deleted = false;
  std::string method;  // the interaction that made this version: POST, PUT or DELETE
  std::string body;    // the stored JSON text; empty for a deletion
  std::int64_t seq = 0;  // global order of versions
};

// One index row kept with the current version of a resource (e.g. identifier system|value).
struct TokenEntry {
  std::string param;
  std::string system;  // empty when the data has none
  std::string value;
};

// A time range [lo, hi) on lastUpdated; `negate` selects what is outside it.
struct TimeRange {
  std::int64_t lo = INT64_MIN;
  std::int64_t hi = INT64_MAX;
  bool negate = false;
};

// A token condition: both fields optional (system "" with hasSystem means "no system").
struct TokenMatch {
  std::string param;
  bool hasSystem = false;
  std::string system;
  bool hasValue = false;
  std::string value;
};

// Conditions are ANDed across the outer vectors and ORed inside the inner ones.
struct SearchQuery {
  std::string type;  // empty: every type
  std::vector<std::vector<std::string>> ids;
  std::vector<std::vector<TimeRange>> lastUpdated;
  std::vector<std::vector<TokenMatch>> tokens;
  int count = 50;
  int offset = 0;
  bool wantTotal = true;
  bool wantItems = true;
};

struct SearchPage {
  std::int64_t total = -1;  // -1 when not asked for
  std::vector<ResourceVersion> items;
};

struct HistoryQuery {
  std::string type;  // empty: the whole system
  std::string id;    // empty: every resource of the type
  std::optional<std::int64_t> sinceMs;
  std::optional<std::int64_t> beforeSeq;  // paging cursor: only versions older than this
  int count = 50;
};

struct HistoryPage {
  std::vector<ResourceVersion> items;  // newest first
  std::optional<std::int64_t> nextCursor;
};

// The view of one write unit of work. Reads see the unit's own writes.
class WriteTxn {
 public:
  virtual ~WriteTxn() = default;
  // The latest version (possibly a deletion), or nullopt when the resource never existed.
  virtual Result<std::optional<ResourceVersion>> current(const std::string& type, const std::string& id) = 0;
  // The same without the body (type, id, version, deleted, lastUpdatedMs, seq): what a write
  // needs to check and number the next version.
  virtual Result<std::optional<ResourceVersion>> currentHead(const std::string& type, const std::string& id) = 0;
  virtual Result<SearchPage> search(const SearchQuery& query) = 0;
  // Appends `v` (v.version must be the current version + 1; a clash is kConflict) and replaces
  // the resource's index rows with `tokens` (ignored for a deletion, which drops them).
  // v.lastUpdatedMs, when 0, is set to nowMs(); v.seq is set.
  virtual Result<void> put(ResourceVersion& v, const std::vector<TokenEntry>& tokens) = 0;
  // The timestamp to give versions written in this unit (never goes backwards).
  virtual std::int64_t nowMs() = 0;
  // Runs `work` so that an error from it undoes its own writes only (a nested savepoint).
  virtual Result<void> atomically(const std::function<Result<void>()>& work) = 0;
};

struct StoreStats {
  std::uint64_t commits = 0;
  std::uint64_t units = 0;        // units of work committed (requests)
  std::uint64_t unitsFailed = 0;  // units rolled back
  std::uint64_t walFrames = 0;    // pages appended to the write-ahead log (SQLite)
};

class ResourceStore {
 public:
  virtual ~ResourceStore() = default;
  virtual Result<std::optional<ResourceVersion>> read(const std::string& type, const std::string& id) = 0;
  virtual Result<std::optional<ResourceVersion>> vread(const std::string& type, const std::string& id,
                                                      std::int64_t version) = 0;
  virtual Result<SearchPage> search(const SearchQuery& query) = 0;
  virtual Result<HistoryPage> history(const HistoryQuery& query) = 0;
  // Runs `work` in one database transaction, possibly grouped with concurrent units into one
  // commit; an error from `work` rolls back that unit alone. Returns once the commit is durable.
  virtual Result<void> write(const std::function<Result<void>(WriteTxn&)>& work) = 0;
  // Refuses new writes, finishes queued ones and closes the database.
  virtual void close() = 0;
  virtual StoreStats stats() const = 0;
};

struct StoreOptions {
  // Most units of work grouped into one commit.
  int maxGroup = 256;
  // Reader connections kept open (readers beyond this wait).
  int readers = 16;
  // How long the writer waits for more units before starting a commit (0: not at all).
  int commitDelayMicros = 0;
};

// Opens the store at `url` (`sqlite:PATH`; the folder is created) and applies the numbered
// migrations it has not seen yet. Errors name the URL and the failing step.
Result<std::unique_ptr<ResourceStore>> openStore(const std::string& url, const StoreOptions& options);

}  // namespace passerelle::store
