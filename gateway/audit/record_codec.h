// The canonical text of an audit record (what is stored in audit_record.record and hashed) and the
// chain hash. Internal to the audit library. Thread-safety: plain functions; a ChainHasher is used
// by one thread.
//
// The text is "PA1;" followed by every field in a fixed order, each as <decimal length>:<bytes>
// (integers as their decimal text), lists as <count>#<items>; a record with an origin starts with
// "PA2;" and has it as one more field at the end. Lengths make it unambiguous whatever
// the bytes; it is read back without copies.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "gateway/audit/audit_log.h"

typedef struct evp_md_st EVP_MD;
typedef struct evp_md_ctx_st EVP_MD_CTX;

namespace passerelle::audit::codec {

// The prevHash of the first record of a chain.
inline constexpr std::string_view kGenesisHash = "0000000000000000000000000000000000000000000000000000000000000000";
inline constexpr std::size_t kHashHex = 64;

// Appends the canonical text of `r` (seq and timeMs included; prevHash and hash excluded) to `out`.
void encode(const Record& r, std::string& out);

// A list inside a canonical text: `count` items starting at `items`.
struct ListView {
  std::string_view items;
  std::int64_t count = 0;
  // Iterates the items: returns false at the end (or on malformed text).
  class Iterator {
   public:
    explicit Iterator(const ListView& l) : rest_(l.items), left_(l.count) {}
    bool next(std::string_view& item);

   private:
    std::string_view rest_;
    std::int64_t left_;
  };
};

// A record read in place: the views point into the text given to decodeView.
struct RecordView {
  std::int64_t seq = 0, timeMs = 0, status = 0;
  std::string_view kind, action, outcome, reason, subject, role, practitioner, account, tokenId, purpose,
      sourceAddress, method, path, query, resourceType, breakGlassReason, detail, origin;
  ListView resources, patients;
};

// Reads a canonical text without allocating; false when it is not one.
bool decodeView(std::string_view text, RecordView& out);
// Reads a canonical text into a Record (prevHash and hash left empty).
bool decode(std::string_view text, Record& out);

// SHA-256(prevHash hex || canonical text), as 64 lower-case hex digits.
class ChainHasher {
 public:
  ChainHasher();
  ~ChainHasher();
  ChainHasher(const ChainHasher&) = delete;
  ChainHasher& operator=(const ChainHasher&) = delete;
  // Writes 64 hex digits to `out`; false only if the digest fails.
  bool hash(std::string_view prevHex, std::string_view text, char out[kHashHex]);
  std::string hash(std::string_view prevHex, std::string_view text);

 private:
  EVP_MD* md_;
  EVP_MD_CTX* ctx_;
};

// Lower-case hex of `n` bytes.
void toHex(const unsigned char* bytes, std::size_t n, char* out);
bool isHexHash(std::string_view s);

}  // namespace passerelle::audit::codec
