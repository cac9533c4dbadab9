// The canonical text of an audit record and the chain hash (see record_codec.h).
#include "gateway/audit/record_codec.h"

#include <openssl/evp.h>

#include <cassert>
#include <charconv>
#include <cstdint>
#include <vector>

namespace passerelle::audit::codec {

namespace {

constexpr std::string_view kMagic = "PA1;";
// A record that waited somewhere before it was chained carries one more field at the end.
constexpr std::string_view kMagicWithOrigin = "PA2;";

void putStr(std::string& out, std::string_view s) {
  char buf[24];
  auto r = std::to_chars(buf, buf + sizeof buf, s.size());
  out.append(buf, r.ptr);
  out += ':';
  out.append(s);
}

void putInt(std::string& out, std::int64_t v) {
  char buf[24];
  auto r = std::to_chars(buf, buf + sizeof buf, v);
  putStr(out, std::string_view(buf, static_cast<std::size_t>(r.ptr - buf)));
}

void putList(std::string& out, const std::vector<std::string>& items) {
  char buf[24];
  auto r = std::to_chars(buf, buf + sizeof buf, items.size());
  out.append(buf, r.ptr);
  out += '#';
  for (const auto& s : items) putStr(out, s);
}

// Reads a canonical text front to back; any malformation clears ok_ and every later read fails.
class Reader {
 public:
  explicit Reader(std::string_view s) : s_(s) {}
  bool ok() const { return ok_; }
  bool atEnd() const { return s_.empty(); }

  // Reads the magic; `withOrigin` tells which one.
  bool magic(bool& withOrigin) {
    withOrigin = s_.substr(0, kMagicWithOrigin.size()) == kMagicWithOrigin;
    if (!withOrigin && s_.substr(0, kMagic.size()) != kMagic) return ok_ = false;
    s_.remove_prefix(kMagic.size());
    return true;
  }
  // A decimal count followed by `term` (no sign, no leading zeros).
  bool count(char term, std::int64_t& n) {
    if (!ok_) return false;
    std::size_t i = 0;
    n = 0;
    while (i < s_.size() && i < 12 && s_[i] >= '0' && s_[i] <= '9') n = n * 10 + (s_[i++] - '0');
    if (i == 0 || i >= s_.size() || s_[i] != term || (i > 1 && s_[0] == '0')) return ok_ = false;
    s_.remove_prefix(i + 1);
    return true;
  }
  std::string_view str() {
    std::int64_t n = 0;
    if (!count(':', n)) return {};
    if (static_cast<std::uint64_t>(n) > s_.size()) {
      ok_ = false;
      return {};
    }
    std::string_view v = s_.substr(0, static_cast<std::size_t>(n));
    s_.remove_prefix(static_cast<std::size_t>(n));
    return v;
  }
  std::int64_t integer() {
    std::string_view v = str();
    if (!ok_) return 0;
    std::int64_t x = 0;
    auto r = std::from_chars(v.data(), v.data() + v.size(), x);
    if (v.empty() || r.ec != std::errc() || r.ptr != v.data() + v.size()) ok_ = false;
    return x;
  }
  ListView list() {
    ListView l;
    if (!count('#', l.count)) return l;
    std::string_view start = s_;
    for (std::int64_t i = 0; i < l.count && ok_; ++i) str();
    if (ok_) l.items = start.substr(0, start.size() - s_.size());
    return l;
  }

 private:
  std::string_view s_;
  bool ok_ = true;
};

}  // namespace

void encode(const Record& r, std::string& out) {
  out.append(r.origin.empty() ? kMagic : kMagicWithOrigin);
  putInt(out, r.seq);
  putInt(out, r.timeMs);
  putStr(out, r.kind);
  putStr(out, r.action);
  putStr(out, r.outcome);
  putInt(out, r.status);
  putStr(out, r.reason);
  putStr(out, r.subject);
  putStr(out, r.role);
  putStr(out, r.practitioner);
  putStr(out, r.account);
  putStr(out, r.tokenId);
  putStr(out, r.purpose);
  putStr(out, r.sourceAddress);
  putStr(out, r.method);
  putStr(out, r.path);
  putStr(out, r.query);
  putStr(out, r.resourceType);
  putList(out, r.resources);
  putList(out, r.patients);
  putStr(out, r.breakGlassReason);
  putStr(out, r.detail);
  if (!r.origin.empty()) putStr(out, r.origin);
}

bool ListView::Iterator::next(std::string_view& item) {
  if (left_ <= 0) return false;
  std::size_t colon = rest_.find(':');
  if (colon == std::string_view::npos || colon == 0 || colon > 12) return false;
  std::size_t n = 0;
  auto r = std::from_chars(rest_.data(), rest_.data() + colon, n);
  if (r.ptr != rest_.data() + colon || n > rest_.size() - colon - 1) return false;
  item = rest_.substr(colon + 1, n);
  rest_.remove_prefix(colon + 1 + n);
  --left_;
  return true;
}

bool decodeView(std::string_view text, RecordView& v) {
  Reader in(text);
  bool withOrigin = false;
  if (!in.magic(withOrigin)) return false;
  v.seq = in.integer();
  v.timeMs = in.integer();
  v.kind = in.str();
  v.action = in.str();
  v.outcome = in.str();
  v.status = in.integer();
  v.reason = in.str();
  v.subject = in.str();
  v.role = in.str();
  v.practitioner = in.str();
  v.account = in.str();
  v.tokenId = in.str();
  v.purpose = in.str();
  v.sourceAddress = in.str();
  v.method = in.str();
  v.path = in.str();
  v.query = in.str();
  v.resourceType = in.str();
  v.resources = in.list();
  v.patients = in.list();
  v.breakGlassReason = in.str();
  v.detail = in.str();
  v.origin = withOrigin ? in.str() : std::string_view();
  if (withOrigin && v.origin.empty()) return false;
  return in.ok() && in.atEnd() && v.status >= INT32_MIN && v.status <= INT32_MAX;
}

bool decode(std::string_view text, Record& r) {
  RecordView v;
  if (!decodeView(text, v)) return false;
  r.seq = v.seq;
  r.timeMs = v.timeMs;
  r.kind = v.kind;
  r.action = v.action;
  r.outcome = v.outcome;
  r.status = static_cast<int>(v.status);
  r.reason = v.reason;
  r.subject = v.subject;
  r.role = v.role;
  r.practitioner = v.practitioner;
  r.account = v.account;
  r.tokenId = v.tokenId;
  r.purpose = v.purpose;
  r.sourceAddress = v.sourceAddress;
  r.method = v.method;
  r.path = v.path;
  r.query = v.query;
  r.resourceType = v.resourceType;
  r.resources.clear();
  r.patients.clear();
  std::string_view item;
  for (ListView::Iterator it(v.resources); it.next(item);) r.resources.emplace_back(item);
  for (ListView::Iterator it(v.patients); it.next(item);) r.patients.emplace_back(item);
  r.breakGlassReason = v.breakGlassReason;
  r.detail = v.detail;
  r.origin = v.origin;
  return true;
}

void toHex(const unsigned char* bytes, std::size_t n, char* out) {
  static const char kDigits[] = "0123456789abcdef";
  for (std::size_t i = 0; i < n; ++i) {
    out[2 * i] = kDigits[bytes[i] >> 4];
    out[2 * i + 1] = kDigits[bytes[i] & 15];
  }
}

bool isHexHash(std::string_view s) {
  if (s.size() != kHashHex) return false;
  for (char c : s)
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  return true;
}

ChainHasher::ChainHasher() : md_(EVP_MD_fetch(nullptr, "SHA256", nullptr)), ctx_(EVP_MD_CTX_new()) {
  assert(md_ && ctx_);
}

ChainHasher::~ChainHasher() {
  EVP_MD_CTX_free(ctx_);
  EVP_MD_free(md_);
}

bool ChainHasher::hash(std::string_view prevHex, std::string_view text, char out[kHashHex]) {
  unsigned char digest[32];
  unsigned int len = 0;
  if (EVP_DigestInit_ex(ctx_, md_, nullptr) != 1 || EVP_DigestUpdate(ctx_, prevHex.data(), prevHex.size()) != 1 ||
      EVP_DigestUpdate(ctx_, text.data(), text.size()) != 1 || EVP_DigestFinal_ex(ctx_, digest, &len) != 1 ||
      len != sizeof digest)
    return false;
  toHex(digest, sizeof digest, out);
  return true;
}

std::string ChainHasher::hash(std::string_view prevHex, std::string_view text) {
  char out[kHashHex];
  if (!hash(prevHex, text, out)) return {};
  return std::string(out, kHashHex);
}

}  // namespace passerelle::audit::codec
