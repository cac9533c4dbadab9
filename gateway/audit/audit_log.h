// The audit trail: who did what to which patient's data, as append-only, hash-chained records in
// their own SQLite database, with signed checkpoints kept apart from it (a folder of their own), an
// offline verifier that detects any edit, insertion, deletion, reordering or truncation, a
// retention purge that keeps the chain verifiable, and the FHIR R4 AuditEvent (IHE BALP) view.
//
// Or in a PostgreSQL database (Options::url postgresql://...) shared by several gateway processes
// appending at once: the trail is still ONE chain. Each group of appends locks the chain's head
// row, chains its records from the last record whoever wrote it, inserts them and moves the head
// in one transaction; PostgreSQL's own log makes them durable (no journal, no indexer). Each
// process signs checkpoints of the shared chain into a checkpoint folder of its own; a record
// committed in the store's outbox is chained once whichever process adopts it (its origin is
// unique). A purge's anchor is in the folder of the process that purged: verify against that one.
//
// Thread-safety: AuditLog is safe to use from any number of threads; append() commits in groups
// (one writer thread chains the records queued meanwhile and makes them durable with one write and
// one fdatasync of the journal, or one PostgreSQL transaction); on SQLite an indexer thread copies
// them into the database in batches. verify() and toAuditEventJson() are free functions over plain
// values.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "gateway/common/status.h"

namespace passerelle::audit {

// One audited event. The fields are stored and hashed as given (after the normalisations that
// append() describes).
struct Record {
  std::int64_t seq = 0;     // set by append: 1, 2, 3... contiguous
  std::int64_t timeMs = 0;  // ms since the epoch; set by append when 0; never decreasing along the chain
  std::string kind;         // "rest" | "network" | "break-glass" | "purge" | "connector" | "auth" | "admin"
  std::string action;       // read | vread | search | history | create | update | delete | patch | transaction | batch | submit | operation | login | purge | verify | notify ...
  std::string outcome;      // "granted" | "denied" | "error"
  int status = 0;           // HTTP status answered (or 0)
  std::string reason;       // the policy's reason code for a decision (e.g. "no-care-relationship"), or the error
  std::string subject, role, practitioner, account, tokenId, purpose;  // who (from the verified identity)
  std::string sourceAddress;                                           // client IP:port
  std::string method, path, query;                                     // the request as received (query string raw)
  std::string resourceType;
  std::vector<std::string> resources;  // "Type/id" touched or returned (the caller caps the list)
  std::vector<std::string> patients;   // Patient ids concerned (stored sorted, without duplicates or empties)
  std::string breakGlassReason;
  std::string detail;            // free text or JSON for special records (purge counts, notification targets)
  // Where the record waited before it was chained: "outbox:<n>" for a write's record committed
  // with the write in the resource store (see appendCommitted); empty for the others.
  std::string origin;
  std::string prevHash, hash;    // hex SHA-256; set by append
};

struct Options {
  // sqlite:PATH (or a plain path) of the audit database; created when absent. Or
  // postgresql://... (postgres://...): a PostgreSQL database, which several gateways may share;
  // its tables are created when absent.
  std::string url;
  // Folder of the signed checkpoints (checkpoints.jsonl), the public keys (audit-public-keys.pem) and,
  // outside production, the generated development signing key. Keep it apart from the database
  // (another volume, another backup): it is what detects a rewritten or truncated database.
  // Required with PostgreSQL, one per gateway process.
  std::string checkpointDir;
  // PEM file (or inline PEM text) of the EC P-256 private key signing the checkpoints. Empty: a
  // development key generated in checkpointDir (refused in production).
  std::string signingKey;
  // A signed checkpoint at least every this many records and every this many seconds while
  // records arrive, and at close.
  std::int64_t checkpointRecords = 10000;
  int checkpointSeconds = 60;
  bool production = false;
  // Size of each journal segment file (the journal is a folder beside the database, "<database>.journal").
  // SQLite only, like the two test hooks below.
  std::size_t journalSegmentBytes = 8u << 20;
  // Tests: replace the journal's write and sync calls to inject failures (empty: the system's).
  std::function<long(int fd, const void* data, std::size_t n, long offset)> journalWrite;
  std::function<int(int fd)> journalSync;
};

// The largest record append() takes (its patients, detail and request together, about): below what
// the journal reads back as one frame after a crash (16 MiB).
inline constexpr std::size_t kMaxRecordBytes = 12u << 20;

class AuditLog {
 public:
  // Creates the database and its tables, the checkpoint folder and (outside production) a
  // development signing key (EC P-256, mode 0600) with its public key. In production a missing
  // signing key is an error. Refuses a database that is shorter than its last checkpoint or whose
  // record there has another hash (run `passerelle audit verify`), and a log already open in
  // another process (a lock file in checkpointDir).
  static Result<std::unique_ptr<AuditLog>> open(const Options& options);
  ~AuditLog();
  AuditLog(const AuditLog&) = delete;
  AuditLog& operator=(const AuditLog&) = delete;

  // Appends `record` and returns its seq once it is durable (in the journal, fdatasync'd; or
  // committed in PostgreSQL). Fail closed:
  // an error means the record is not in the log and the request it describes must fail.
  // Thread-safe; concurrent appends are committed together by one writer thread (group commit).
  // Sets seq, prevHash and hash; sets timeMs to now when 0 and raises it to the previous record's
  // time when earlier (the chain's time never decreases); sorts the patients and drops duplicates.
  Result<std::int64_t> append(Record record);

  // A record made durable elsewhere before it is chained: a write's record committed with the write
  // in the resource store, `id` being its row there (ids increase in commit order).
  struct Committed {
    std::int64_t id = 0;
    std::string record;  // encodeRecord() of it
  };
  // Chains `records` in order without waiting (each gets the origin "outbox:<id>"); once they are
  // durable in the journal, the callback given to onCommittedChained() learns the last id. Records
  // that cannot be written now are tried again (they are durable where they come from).
  void appendCommitted(std::vector<Committed> records);
  // At start, before any append: the records the store still holds. Those the chain already has
  // (a stop between their chaining and their release) are recognised by their origin and not
  // chained twice; the others are chained first. On PostgreSQL the check is made by the writer
  // under the head's lock, since other gateways may be chaining the same records.
  Result<void> adoptCommitted(std::vector<Committed> records);
  void onCommittedChained(std::function<void(std::int64_t id)> callback);

  struct Query {
    std::string patient;  // records concerning this Patient id (through an index)
    std::string subject;
    std::string action;
    std::int64_t sinceMs = 0, untilMs = 0;  // timeMs in [sinceMs, untilMs); 0: no bound
    std::int64_t beforeSeq = 0;             // paging: only seq < this; 0: none
    int count = 50;                         // 1..1000
  };
  // The matching records, newest first (the database first catches up with the journal; on
  // PostgreSQL, every gateway's records as committed).
  Result<std::vector<Record>> query(const Query& q) const;
  Result<std::optional<Record>> get(std::int64_t seq) const;

  struct PurgeResult {
    std::int64_t removed = 0;
    std::int64_t upToSeq = 0;  // the last removed seq (0: none)
  };
  // Removes the records older than cutoffMs (a prefix of the chain: times never decrease). First
  // writes a signed anchor checkpoint naming the first remaining seq and the hash it chains from,
  // then deletes the prefix in one transaction, then appends a record of kind "purge" (action
  // "purge", detail with the count, range and cutoff; who = `by`): the purge is itself audited.
  // On PostgreSQL the chain's head row stays locked from the search to the delete's commit: no
  // gateway appends meanwhile.
  Result<PurgeResult> purge(std::int64_t cutoffMs, const Record& by);

  // Writes a signed checkpoint of the last committed record now (nothing when it already has one);
  // on PostgreSQL, of the shared chain's last record, whichever process wrote it.
  Result<void> checkpoint();

  // Drains the queue, writes a final checkpoint and closes; later appends fail. Idempotent.
  void close();

  // The public key (PEM) of the signing key.
  std::string publicKeyPem() const;

  // The last committed seq (0: none yet); on PostgreSQL, the last this process committed or saw.
  std::int64_t lastSeq() const;
  // Appends that failed (each refused its request), and committed records waiting to be chained again.
  std::uint64_t failures() const;

 private:
  struct Impl;
  explicit AuditLog(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

struct VerifyReport {
  bool ok = false;
  std::int64_t records = 0;      // records checked
  std::int64_t checkpoints = 0;  // signed checkpoints (and purge anchors) checked
  std::int64_t firstBadSeq = 0;  // 0: none (or a problem not tied to a record)
  std::string problem;           // one line
  double seconds = 0;
};

// The text of `record` as appendCommitted() takes it (seq, hashes and origin are set by the chain).
std::string encodeRecord(const Record& record);

// Verifies the audit database at `url` (opened read-only; it can be a copy; on PostgreSQL, read in
// pages within one snapshot, `checkpointDir` then being required) against the signed
// checkpoints in `checkpointDir`, with the public key(s) in the PEM file `publicKeyPath` (empty:
// audit-public-keys.pem in checkpointDir; pass a copy kept elsewhere for a real assurance). One
// sequential scan: each record's hash is recomputed from its stored text and chained to the
// previous one, the seq must be contiguous, the columns read by queries (time, kind, action,
// outcome, subject, the patient index) must match the hashed text, every checkpoint must be
// correctly signed, and the record at each checkpoint's seq must have the hash it names.
VerifyReport verify(const std::string& url, const std::string& checkpointDir, const std::string& publicKeyPath);

struct CopyReport {
  std::int64_t records = 0;      // records copied (read from the source, counted on the target)
  std::int64_t patientRows = 0;  // rows of the patient index copied
  std::int64_t firstSeq = 0, lastSeq = 0;  // 0: the source holds no record
  std::string lastHash;          // of the chain's last record (after a purge that emptied it: the purged one)
};

// Refuses (kInvalid) an audit trail at `toUrl` that cannot take a copy: one that holds records or
// continues a chain already, or one that is not on PostgreSQL. Creates its tables when missing.
Result<void> checkCopyTarget(const std::string& toUrl);

// Copies the trail at `from.url` (SQLite or PostgreSQL) into the empty PostgreSQL trail at `toUrl`:
// every record with its seq, time, columns, canonical text and hashes unchanged, the patient index,
// and audit_meta (where the chain continues after a purge); the chain's head is set to the last
// record. A SQLite source is first opened and closed as AuditLog::open(from) does (its checkpoint
// folder, its signing key; refused while a gateway has it open): that copies the records still only
// in its journal into its database. The records are read in one snapshot and written in pages of
// 10,000, one transaction each. The records copied keep their origin in their text only: they name
// rows of the source store's outbox, which the target's store numbers anew. Then the target is
// recounted and its last seq and hash compared with the source's; an error says what differs. The
// chain itself is not checked here: run verify() on the target with the checkpoint folder.
// Not thread-safe; no gateway may write to either trail meanwhile.
Result<CopyReport> copyTrail(const Options& from, const std::string& toUrl);

// The record as a FHIR R4 AuditEvent following IHE Basic Audit Log Patterns (BALP). The BALP
// profile is claimed (meta.profile) for successful REST interactions only: BALP fixes the outcome
// to success, denials and errors are recorded the same way without claiming it.
// `fhirBaseUrl`: the gateway's public FHIR base (the server agent's network address; may be empty).
std::string toAuditEventJson(const Record& record, const std::string& fhirBaseUrl);

// `passerelle audit verify|purge ...` (argv[1] == "audit"). Returns the process exit code.
int auditCommand(int argc, char** argv);

}  // namespace passerelle::audit
