// The FHIR resource store: every version of every resource, a token index, and writes grouped
// into shared commits. Handlers see this interface only, never SQL.
// Thread-safety: all methods may be called from any thread concurrently.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
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
  std::int64_t rid = 0;  // the resource's row (stable across versions); set by reads and search
};

// Search index rows kept with the current version of a resource. `param` names the search
// parameter ("Observation.code", "Resource._tag", "Patient.name:text"...); the store keys rows by
// a hash of it. Values are already normalised by the caller (strings folded, dates as ranges).
struct TokenRow {  // token and uri parameters
  std::string param;
  std::string system;  // empty when the data has none
  std::string value;
};
struct StringRow {
  std::string param;
  std::string norm;   // lower case, accents removed
  std::string exact;  // as written
};
struct DateRow {  // the instants covered, [lo, hi) in ms since the epoch
  std::string param;
  std::int64_t lo = INT64_MIN;
  std::int64_t hi = INT64_MAX;
};
struct NumberRow {  // number and quantity parameters: [lo, hi] (a point when lo == hi)
  std::string param;
  double lo = 0;
  double hi = 0;
  std::string system;  // quantities: unit system; empty for numbers
  std::string code;    // quantities: unit code (or unit text)
};
struct ReferenceRow {
  std::string param;
  std::string targetType;  // empty for an absolute URL outside this server
  std::string targetId;    // the id, or the absolute URL / canonical
};
struct CompositeRow {  // two components, the first a token
  std::string param;
  std::string system1, value1;
  std::string system2, value2;  // token / string (folded) / reference ("Type/id") / quantity unit
  double lo = 0, hi = 0;        // quantity [lo, hi] or date [lo, hi) in ms
};
// The key under which the rows of a parameter name are stored (a 31-bit hash of the name).
std::int64_t indexParamKey(std::string_view name);

struct IndexRows {
  std::vector<TokenRow> tokens;
  std::vector<StringRow> strings;
  std::vector<DateRow> dates;
  std::vector<NumberRow> numbers;
  std::vector<ReferenceRow> references;
  std::vector<CompositeRow> composites;
  std::size_t size() const {
    return tokens.size() + strings.size() + dates.size() + numbers.size() + references.size() + composites.size();
  }
};

// One search condition. A resource matches when it has an index row of `param` satisfying it
// (or, with `negate`, when it has none). Values are bound as parameters, never spliced into SQL.
struct Condition {
  enum class Kind {
    kToken,      // system/value; kPrefix on value for uri :below; kAnyOf for uri :above
    kString,     // kPrefix (norm), kExact (exact), kContains (norm)
    kDate,       // op against [lo, hi)
    kNumber,     // op against [lo, hi], optional system/code (quantities)
    kReference,  // targetType (optional) / targetId
    kComposite,  // system1/value1 and the second component (value2 or op on lo/hi)
    kMissing,    // missing = true/false on `param` in `table`
    kId,         // res_id = value
    kLastUpdated,
    kChain,      // `param` references a `targetType` resource matching all `inner` groups
    kHas,        // a `hasType` resource whose `param` references this one matches `inner`
    kType,       // res_type = value (system-level _type)
  };
  enum class Match { kEq, kPrefix, kContains, kAnyOf };
  // Comparisons for dates and numbers, with the FHIR meaning (see the search engine).
  enum class Op { kEq, kNe, kGt, kLt, kGe, kLe, kSa, kEb, kAp };
  enum class Table { kToken, kString, kDate, kNumber, kReference, kComposite };

  Kind kind = Kind::kToken;
  std::string param;
  bool negate = false;
  Match match = Match::kEq;
  std::optional<std::string> system, value;  // token, string, reference target id, id, type
  std::vector<std::string> anyOf;            // uri :above: any of these values
  std::optional<std::string> targetType;     // reference / chain / has
  Op op = Op::kEq;
  double lo = 0, hi = 0;  // number search range [lo, hi) (eq), or the value (other ops)
  std::int64_t dlo = 0, dhi = 0;  // date search range [dlo, dhi)
  bool compareSecond = false;  // composite: the second component is compared with op/lo/hi
  std::optional<std::string> system2, value2;
  Table table = Table::kToken;  // kMissing, and the component kind for composites
  std::string hasType;          // kHas: the referring type
  std::vector<std::vector<Condition>> inner;  // kChain / kHas: AND of OR groups on the other resource
  // Further conditions the same index row must meet (for parameters with one value per
  // resource, birthdate=ge1960&birthdate=lt1961 becomes one range over one row).
  std::vector<Condition> sameRow;
};

struct SortKey {
  std::string param;  // "_id", "_lastUpdated" or an index param
  Condition::Table table = Condition::Table::kToken;
  bool descending = false;
};

// Conditions are ANDed across the outer vector and ORed inside the inner ones.
struct SearchQuery {
  std::string type;  // empty: every type
  std::vector<std::vector<Condition>> where;
  std::vector<SortKey> sort;  // empty: creation order
  int count = 50;
  int offset = 0;
  std::string cursor;     // opaque, from a previous page's SearchPage::next/previous
  bool backwards = false;  // `cursor` is a previous-page cursor
  enum class Total { kNone, kBounded, kAccurate } total = Total::kBounded;
  bool wantItems = true;
};

struct SearchPage {
  std::int64_t total = -1;  // -1 when not counted (or beyond the bound)
  std::vector<ResourceVersion> items;
  std::string next;      // cursors for the following / preceding page, empty when none
  std::string previous;
};

// References between resources, for _include and _revinclude.
struct IncludeQuery {
  bool reverse = false;           // false: what `rids` reference; true: what references `targets`
  std::vector<std::int64_t> rids;  // forward: the referring resources
  std::vector<std::pair<std::string, std::string>> targets;  // reverse: (type, id) referenced
  std::vector<std::string> params;  // reference parameters to follow; empty with forward = all
  std::string targetType;          // forward: only targets of this type (empty: any)
  int limit = 1000;
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

// A write's audit record (the audit trail's text of it), committed with the write.
struct OutboxRecord {
  std::int64_t id = 0;  // its row in the store: increasing in commit order
  std::string record;
};

// The connectors' message store (see migration 0004): a message received, kept with the
// acknowledgement it got.
struct InboxMessage {
  std::int64_t id = 0;
  std::string channel;    // "mllp", "file"...
  std::string partner;    // the sending partner's account
  std::string controlId;  // MSH-10 or a document's identifier; unique per partner
  std::string type;       // "ADT^A01"...
  std::int64_t receivedMs = 0;
  std::string status;     // processed | error | rejected | review
  std::string ackCode;    // AA AE AR (CA CE CR)
  std::string patient;    // "Patient/<id>" when known
  std::string detail;     // what went wrong, for review
  std::string message;    // the bytes received
  std::string ack;        // the acknowledgement sent
};

// A message to send to one destination, from the outbox.
struct Delivery {
  std::int64_t id = 0;
  std::string destination;  // the partner
  std::string orderKey;     // one destination's deliveries with the same key leave in id order
  std::string kind;         // "REF^I12", "fhir-transaction"...
  std::string focus;        // "ServiceRequest/12/_history/1": what it carries
  std::string payload;      // the message once rendered (empty before the first attempt)
  std::string status = "queued";  // queued | sent | dead | cancelled
  int attempts = 0;
  std::int64_t createdMs = 0, nextTryMs = 0, doneMs = 0;
  std::string lastError;
};

// How long a sender holds the deliveries it claims (ResourceStore::claimDeliveries) before another
// gateway on the database may take them over: well above the time to send one.
inline constexpr std::int64_t kDeliveryLeaseMs = 120000;

struct DeliveryFilter {
  std::string destination;  // empty: any
  std::string status;       // empty: any
  std::int64_t beforeId = 0;  // paging: only older ones (0: from the newest)
  int limit = 100;
};

struct DeliveryCounts {
  std::string destination;
  std::int64_t queued = 0, sent = 0, dead = 0, cancelled = 0;
  std::int64_t oldestQueuedMs = 0;  // created time of the oldest queued one (0: none)
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
  virtual Result<std::vector<ResourceVersion>> include(const IncludeQuery& query) = 0;
  // Appends `v` (v.version must be the current version + 1; a clash is kConflict) and replaces
  // the resource's index rows with `rows` (ignored for a deletion, which drops them).
  // v.lastUpdatedMs, when 0, is set to nowMs(); v.seq and v.rid are set.
  virtual Result<void> put(ResourceVersion& v, const IndexRows& rows) = 0;
  // The timestamp to give versions written in this unit (never goes backwards).
  virtual std::int64_t nowMs() = 0;
  // Runs `work` so that an error from it undoes its own writes only (a nested savepoint).
  virtual Result<void> atomically(const std::function<Result<void>()>& work) = 0;
  // Commits `record` (an audit record) with this unit: durable with its writes, or not at all.
  // Once committed it goes to the audit sink (ResourceStore::setAuditSink).
  virtual Result<void> attachAudit(std::string record) = 0;
  // The message store, in this unit: a received message (kConflict when one with the partner's
  // control id was already taken in: processed or kept for review; refused ones may repeat), a new
  // delivery (id and times set), a delivery's new state.
  virtual Result<void> putInbox(InboxMessage& m) = 0;
  // A received message's new state (status, ack code, patient, detail; by id): a review decided.
  virtual Result<void> updateInbox(const InboxMessage& m) = 0;
  virtual Result<void> enqueue(Delivery& d) = 0;
  virtual Result<void> updateDelivery(const Delivery& d) = 0;
  virtual Result<std::optional<Delivery>> delivery(std::int64_t id) = 0;
  // A message or delivery copied from another store as it is: its id and every field kept (no
  // time set, no sender woken). Later ones are numbered after the highest id copied.
  virtual Result<void> copyInbox(const InboxMessage& m) = 0;
  virtual Result<void> copyDelivery(const Delivery& d) = 0;
};

// What a database holds, for `passerelle db status` and the checks of `db copy`.
struct TypeCount {
  std::string type;
  std::int64_t current = 0;   // resources whose latest version is not a deletion
  std::int64_t deleted = 0;   // resources whose latest version is a deletion
  std::int64_t versions = 0;  // every version, deletions included
};
struct StoreStatus {
  std::string backend;     // "sqlite" or "postgresql"
  int schemaVersion = 0;   // the newest migration applied (0: none, an empty database)
  int knownVersion = 0;    // the newest migration compiled in
  std::vector<TypeCount> types;  // in type order; empty until migration 1 is applied
  std::int64_t current = 0, deleted = 0, versions = 0;  // the sums over types
  std::int64_t inbox = 0, deliveries = 0;  // the message store's rows (0 before migration 4)
  bool pending() const { return schemaVersion < knownVersion; }
};

struct StoreStats {
  std::uint64_t commits = 0;
  // Changes to the data as far as this gateway knows: its own commits, plus the commits of the
  // other gateways on the same database as they are announced (PostgreSQL: LISTEN/NOTIFY), plus one
  // whenever announcements may have been missed (the listening connection was lost). What is
  // cached from the data is stale once this moves.
  std::uint64_t changes = 0;
  std::uint64_t units = 0;        // units of work committed (requests)
  std::uint64_t unitsFailed = 0;  // units rolled back
  std::uint64_t walFrames = 0;    // pages appended to the write-ahead log (SQLite)
  std::uint64_t failures = 0;     // database errors (not conflicts): each answered as unavailable
  std::uint64_t searchesPastDeadline = 0;  // searches stopped at their deadline
  std::uint64_t searchesAbandoned = 0;     // searches stopped because their client went away
};

// Limits on the reads (searches, includes, histories) that the calling thread makes while it
// lives, one per request: a deadline, and a check, made now and then, that the client still waits
// for the answer. A read past them stops with kTimeout. Reads made inside write units (conditional
// writes, transaction entries) run on the writer and are not limited.
class SearchLimit {
 public:
  SearchLimit(std::chrono::steady_clock::time_point deadline, std::function<bool()> clientGone);
  ~SearchLimit();
  SearchLimit(const SearchLimit&) = delete;
  SearchLimit& operator=(const SearchLimit&) = delete;

  struct State;

 private:
  State* previous_;
  std::unique_ptr<State> state_;
};

class ResourceStore {
 public:
  virtual ~ResourceStore() = default;
  virtual Result<std::optional<ResourceVersion>> read(const std::string& type, const std::string& id) = 0;
  virtual Result<std::optional<ResourceVersion>> vread(const std::string& type, const std::string& id,
                                                      std::int64_t version) = 0;
  virtual Result<SearchPage> search(const SearchQuery& query) = 0;
  virtual Result<HistoryPage> history(const HistoryQuery& query) = 0;
  virtual Result<std::vector<ResourceVersion>> include(const IncludeQuery& query) = 0;
  // The current, not deleted resources of `type` whose id sorts after `afterId` ("" for the
  // first), in id order, at most `limit`: a whole type read page by page at a cost that does not
  // grow with the page's position (bulk reads; no access control here: callers pass each page to
  // their guard).
  virtual Result<std::vector<ResourceVersion>> scan(const std::string& type, const std::string& afterId, int limit) = 0;
  // Every version of every resource, deletions included, page by page: those with a seq above
  // `afterSeq` in seq order (the order they were written in), at most `limit`.
  virtual Result<std::vector<ResourceVersion>> scanVersions(std::int64_t afterSeq, int limit) = 0;
  // The same in (type, id, version) order, byte-wise, after the given key ("", "", 0 for the first).
  virtual Result<std::vector<ResourceVersion>> scanVersionsByKey(const std::string& afterType, const std::string& afterId,
                                                                 std::int64_t afterVersion, int limit) = 0;
  // The schema version and what the database holds (see StoreStatus). Works on a database whose
  // migrations are pending (opened with StoreOptions::migrate false): what it cannot count yet is 0.
  virtual Result<StoreStatus> status() = 0;
  // Rebuilds every current resource's index rows with `index` (body -> rows), in batches of
  // `batch` resources per commit; returns the number of resources indexed.
  virtual Result<std::int64_t> reindex(const std::function<Result<IndexRows>(const ResourceVersion&)>& index,
                                       int batch = 500) = 0;
  // A value kept in the database (e.g. the fingerprint of the search definitions indexed).
  virtual Result<std::string> getMeta(const std::string& key) = 0;
  virtual Result<void> setMeta(const std::string& key, const std::string& value) = 0;
  // Every kept value, in key order.
  virtual Result<std::vector<std::pair<std::string, std::string>>> listMeta() = 0;
  // Runs `work` in one database transaction, possibly grouped with concurrent units into one
  // commit; an error from `work` rolls back that unit alone. Returns once the commit is durable.
  virtual Result<void> write(const std::function<Result<void>(WriteTxn&)>& work) = 0;
  // Receives, on the writer thread right after each commit, the audit records that commit made
  // durable, in commit order. Set before the first write that attaches one.
  virtual void setAuditSink(std::function<void(std::vector<OutboxRecord>&&)> sink) = 0;
  // The audit records committed and not yet released (after a crash, some may not be in the trail).
  virtual Result<std::vector<OutboxRecord>> pendingAuditRecords() = 0;
  // The audit trail holds every record up to `id`: they are deleted with a later commit.
  virtual void releaseAuditRecords(std::int64_t id) = 0;
  // Called inside the unit after each version is written (set once, before the first write):
  // what the connectors route (a delivery per destination) is enqueued in the same commit.
  virtual void setWriteObserver(std::function<Result<void>(WriteTxn&, const ResourceVersion&)> observer) = 0;
  // Called right after a commit that enqueued deliveries (to wake the senders).
  virtual void setDeliveryListener(std::function<void()> listener) = 0;
  // The message store's reads. findInbox: the message of that control id taken in, else its latest refusal.
  virtual Result<std::optional<InboxMessage>> findInbox(const std::string& partner, const std::string& controlId) = 0;
  virtual Result<std::vector<InboxMessage>> listInbox(const std::string& status, int limit) = 0;
  virtual Result<std::optional<InboxMessage>> inboxMessage(std::int64_t id) = 0;
  // Claims the deliveries of `destination` ready to go at `nowMs` for this gateway until
  // nowMs + leaseMs: per order key, the oldest queued one, if its time has come and no other
  // gateway on the database holds it (its lease has run out: that gateway stopped or crashed).
  // In id order, at most `limit`. Saving a delivery (updateDelivery) ends its lease; a sender
  // that is still sending a claimed batch when half its lease has gone claims again (which
  // renews its own leases) rather than send on a lease another gateway may take.
  virtual Result<std::vector<Delivery>> claimDeliveries(const std::string& destination, std::int64_t nowMs, int limit,
                                                        std::int64_t leaseMs) = 0;
  // When the next queued delivery of `destination` falls due (nullopt: none queued).
  virtual Result<std::optional<std::int64_t>> nextDeliveryTime(const std::string& destination) = 0;
  virtual Result<std::vector<Delivery>> listDeliveries(const DeliveryFilter& filter) = 0;
  virtual Result<std::vector<DeliveryCounts>> deliveryCounts() = 0;
  // Every received message / delivery with an id above `afterId`, in id order, at most `limit`.
  virtual Result<std::vector<InboxMessage>> scanInbox(std::int64_t afterId, int limit) = 0;
  virtual Result<std::vector<Delivery>> scanDeliveries(std::int64_t afterId, int limit) = 0;
  // Scheduled work done by one gateway for all those on the database. Whether this gateway takes
  // `job` now: true when no gateway has claimed it, or the last claim is older than `leaseMs` and
  // the job was not finished for good. Atomic across gateways: of several asking at once, one gets
  // true. A periodic job claims its run with its period as the lease; a one-time job (a period's
  // extract) claims it for as long as a run may take, then finishes it.
  virtual Result<bool> claimJob(const std::string& job, std::int64_t nowMs, std::int64_t leaseMs) = 0;
  // After a claimed run: `done` marks the job finished for good (never claimed again); otherwise
  // the claim is dropped so that the next asking gateway takes it (the run failed).
  virtual Result<void> finishJob(const std::string& job, bool done) = 0;
  // The name this gateway's store goes by on the database (leases, claims): unique per process.
  virtual const std::string& instance() const = 0;
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
  // Whether opening applies the migrations the database has not seen yet. False opens it as it
  // is, to report on it (`passerelle db status`) or read it without changing it: the tables of a
  // pending migration are then missing, and so are the readers and writers that need them. A
  // SQLite file that does not exist is then an error rather than a new database.
  bool migrate = true;
};

// Opens the store at `url` (`sqlite:PATH`, the folder created; or
// `postgresql://USER[:PASSWORD]@HOST:PORT/DATABASE`, the database existing) and applies the
// numbered migrations it has not seen yet (unless options.migrate is false). Errors name the URL
// (without its password) and the failing step.
Result<std::unique_ptr<ResourceStore>> openStore(const std::string& url, const StoreOptions& options);

// A storage URL with its password, if any, replaced by "***" (for messages and logs).
std::string redactedUrl(const std::string& url);

}  // namespace passerelle::store
