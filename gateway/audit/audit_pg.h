// The audit trail in a PostgreSQL database shared by several gateway processes. Internal to the
// audit library; libpq stays in the store library's connection.
//
// The tables are those of the SQLite database (audit_db.h) with PostgreSQL types, text compared
// byte by byte (COLLATE "C"), the record's text as bytea, and two more things:
//   audit_record.origin: the record's origin ("outbox:<id>"), NULL when it has none, unique, so
//     that a row of the store's outbox is chained once whichever process adopts it;
//   audit_head(id = 1, seq, hash, time_ms): the chain's last record. Each group of appends locks
//     it (FOR UPDATE), chains from it, inserts, moves it and commits: writers in any number of
//     processes serialise there and the chain stays one.
// A trail copied from another database (copyTrail()) keeps in audit_meta 'copied_seq', the last
// record copied: the origins of the records up to it name rows of the other store's outbox, not of
// this one, so their origin column is NULL (their text keeps the origin, as hashed).
// Thread-safety: one PgAuditDb holds a writer connection, used under the log's state mutex, and a
// reader connection, used under its read mutex.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <variant>
#include <vector>

#include "gateway/audit/audit_log.h"
#include "gateway/audit/audit_walk.h"
#include "gateway/common/status.h"

namespace passerelle::store::pg {
class Connection;
}

namespace passerelle::audit::internal {

// The audit_meta key of the last record copied from another trail.
inline constexpr const char* kCopiedSeq = "copied_seq";

// Whether an audit URL names a PostgreSQL database (postgresql:// or postgres://).
bool isPostgresUrl(const std::string& url);

// The last record of the chain (seq 0 and the genesis hash when nothing was ever appended).
struct ChainHead {
  std::int64_t seq = 0;
  std::string hash;
  std::int64_t timeMs = 0;
};

// The prefix a purge removes.
struct PurgeRange {
  std::int64_t fromSeq = 0, upToSeq = 0;
  std::string upToHash;
};

using QueryBind = std::variant<std::int64_t, std::string>;

class PgAuditDb {
 public:
  // Connects (a writer and a reader connection) and creates the tables when missing, under an
  // advisory lock so that gateways starting together do not race.
  static Result<std::unique_ptr<PgAuditDb>> open(const std::string& url);
  ~PgAuditDb();
  PgAuditDb(const PgAuditDb&) = delete;
  PgAuditDb& operator=(const PgAuditDb&) = delete;

  // Writer. Begins a transaction (on a new connection when the last one was lost) and locks the
  // head row until commit() or rollback().
  Result<ChainHead> lockHead();
  // Of `origins`, those the chain already has (within lockHead's transaction).
  Result<std::set<std::string>> chainedOrigins(const std::vector<std::string>& origins);
  // Inserts the chained records (texts[i] is records[i]'s canonical text) with their patient rows
  // and moves the head to `head` (within lockHead's transaction).
  Result<void> insert(const std::vector<const Record*>& records, const std::vector<std::string>& texts,
                      const ChainHead& head);
  Result<void> commit();
  void rollback();
  // Within lockHead's transaction: the records older than `cutoffMs` (a prefix), if any; then,
  // once `beforeDelete` succeeded (the purge anchor is signed), deletes them and keeps where the
  // chain continues in audit_meta.
  Result<std::optional<PurgeRange>> purgeBefore(std::int64_t cutoffMs,
                                                const std::function<Result<void>(const PurgeRange&)>& beforeDelete);

  // Writer, outside a transaction.
  Result<ChainHead> head();
  // The records and the patient rows the tables hold.
  Result<std::pair<std::int64_t, std::int64_t>> counts();
  // Sets these keys of audit_meta (within lockHead's transaction).
  Result<void> putMeta(const std::vector<std::pair<std::string, std::string>>& values);
  // The first record kept (0 when there is none).
  Result<std::int64_t> firstSeq();
  // The hash of record `seq` ("" when there is no such record).
  Result<std::string> hashAt(std::int64_t seq);

  // Reader: runs a query of records (columns record, prev_hash, hash; '?' placeholders).
  Result<std::vector<Record>> records(const std::string& sql, const std::vector<QueryBind>& binds);

 private:
  PgAuditDb() = default;
  // The head row, locked (FOR UPDATE) or not.
  Result<ChainHead> readHead(bool lock);
  std::unique_ptr<store::pg::Connection> writer_, reader_;
};

// The records and patient rows of the audit database at `url` in order, in pages, within one
// read-only snapshot (for verify()). nullptr with `error` when it cannot be read.
std::unique_ptr<WalkSource> openPgWalk(const std::string& url, std::string& error);

}  // namespace passerelle::audit::internal
