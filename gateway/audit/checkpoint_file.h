// Signed checkpoints of the audit chain and the keys that sign them. Internal to the audit library.
//
// The checkpoint folder holds checkpoints.jsonl: one JSON object per line, appended and fsynced,
// numbered 1, 2, 3... A "checkpoint" names the last record covered (seq and hash); an "anchor",
// written by a purge before it deletes, names the first remaining record and the hash it chains
// from. Each line carries an ECDSA P-256 / SHA-256 signature (base64, DER) over canonicalText().
// audit-public-keys.pem lists the public key of every signing key used (rotation appends).
// Thread-safety: SigningKey and PublicKeys are immutable once loaded; the file functions do not
// lock (one process writes, as AuditLog's lock file ensures).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "gateway/common/status.h"

typedef struct evp_pkey_st EVP_PKEY;

namespace passerelle::audit::internal {

inline constexpr const char* kCheckpointFile = "checkpoints.jsonl";
inline constexpr const char* kPublicKeysFile = "audit-public-keys.pem";
inline constexpr const char* kDevKeyFile = "audit-signing-key.pem";
inline constexpr const char* kLockFile = "audit.lock";

struct Checkpoint {
  std::int64_t n = 0;        // 1, 2, 3... in file order
  std::string type;          // "checkpoint" | "anchor"
  std::int64_t seq = 0;      // checkpoint: the last record covered; anchor: the first remaining record
  std::string hash;          // checkpoint: that record's hash; anchor: the hash the first remaining record chains from
  std::int64_t timeMs = 0;   // when it was written
  std::int64_t records = 0;  // checkpoint: records in the log then; anchor: records removed
  std::int64_t cutoffMs = 0; // anchor: the purge's cutoff (0 for a checkpoint)
  std::string keyId;         // 16 hex digits of the SHA-256 of the signing key's public key (DER)
  std::string signature;     // base64
  bool isAnchor() const { return type == "anchor"; }
};

// The exact text that is signed: a fixed header and one "name=value" line per field.
std::string canonicalText(const Checkpoint& c);
// One JSON line (without the newline).
std::string toLine(const Checkpoint& c);
// Parses one line; on failure returns false with `why`.
bool parseLine(std::string_view line, Checkpoint& out, std::string& why);

struct PkeyFree {
  void operator()(EVP_PKEY* p) const;
};
using PkeyPtr = std::unique_ptr<EVP_PKEY, PkeyFree>;

std::string keyIdOf(EVP_PKEY* key);

class SigningKey {
 public:
  // An EC P-256 private key from a PEM file, or from PEM text when `pathOrPem` starts with "-----BEGIN".
  static Result<std::unique_ptr<SigningKey>> load(const std::string& pathOrPem);
  // The key at `path`, generated (EC P-256, mode 0600) when the file does not exist.
  static Result<std::unique_ptr<SigningKey>> loadOrGenerate(const std::string& path);

  // Base64 of the DER ECDSA signature of SHA-256(text).
  Result<std::string> sign(std::string_view text) const;
  const std::string& keyId() const { return keyId_; }
  const std::string& publicKeyPem() const { return publicPem_; }

 private:
  explicit SigningKey(PkeyPtr key);
  PkeyPtr key_;
  std::string keyId_;
  std::string publicPem_;
};

class PublicKeys {
 public:
  // Every PEM public key (or certificate-less private key's public half) in the file.
  static Result<PublicKeys> load(const std::string& path);
  bool has(const std::string& keyId) const;
  // Whether `signatureB64` is a valid signature of `text` by the key `keyId`.
  bool verify(std::string_view text, const std::string& signatureB64, const std::string& keyId) const;
  std::string keyIds() const;  // comma-separated, for messages

 private:
  struct Key {
    std::string id;
    std::shared_ptr<EVP_PKEY> key;
  };
  std::vector<Key> keys_;
};

// Reads checkpoints.jsonl in `dir`; a missing file is an empty list. A line that cannot be parsed
// is an error naming its line number (checkpoints are read before anything is trusted).
Result<std::vector<Checkpoint>> readCheckpoints(const std::string& dir);
// Appends `c` as one line and fsyncs the file (and the folder when the file is new).
Result<void> appendCheckpoint(const std::string& dir, const Checkpoint& c);
// Cuts an incomplete last line (a crash during a write) from checkpoints.jsonl.
Result<void> repairCheckpointFile(const std::string& dir);
// Adds `publicPem` to audit-public-keys.pem in `dir` unless a key with `keyId` is there.
Result<void> ensurePublicKey(const std::string& dir, const std::string& publicPem, const std::string& keyId);

// Creates `dir` (and its parents) when missing.
Result<void> makeDirs(const std::string& dir);

}  // namespace passerelle::audit::internal
