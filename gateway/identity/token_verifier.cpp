// Bearer token verification: compact JWS (ES256 or RS256), the key chosen by `kid` among the
// trusted keys (keys_dir, rescanned for rotation, and the development key), then the claims.
#include <algorithm>
#include <cctype>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <limits>
#include <nlohmann/json.hpp>
#include <set>

#include "gateway/common/log.h"
#include "gateway/identity/identity.h"
#include "gateway/identity/jose.h"

namespace passerelle::identity {

struct TokenVerifier::Key {
  std::string kid;
  std::string path;  // the file it was read from
  std::string pem;   // its content, to see whether it changed
  jose::PKey pkey;
  jose::Alg alg = jose::Alg::kNone;
};

namespace {

namespace fs = std::filesystem;
using Json = nlohmann::json;

constexpr std::size_t kMaxTokenBytes = 16 * 1024;
constexpr std::size_t kMaxKidBytes = 256;
constexpr std::size_t kMaxJtiBytes = 256;
constexpr int kMaxJsonDepth = 16;

Error refuse(const char* reason) { return makeError(ErrorCode::kUnauthorized, reason); }

std::int64_t steadyMillis() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

// A JSON object, refusing duplicate member names (two readers could take different ones) and
// deep nesting. nullopt for anything else.
std::optional<Json> parseObject(const std::string& text) {
  std::vector<std::set<std::string>> seen;
  bool bad = false;
  auto callback = [&](int depth, Json::parse_event_t event, Json& parsed) {
    if (depth > kMaxJsonDepth) {
      bad = true;
      return false;
    }
    switch (event) {
      case Json::parse_event_t::object_start:
        seen.emplace_back();
        break;
      case Json::parse_event_t::key:
        if (!seen.empty() && parsed.is_string() && !seen.back().insert(parsed.get<std::string>()).second) bad = true;
        break;
      case Json::parse_event_t::object_end:
        if (!seen.empty()) seen.pop_back();
        break;
      default:
        break;
    }
    return true;
  };
  Json j = Json::parse(text, callback, false);
  if (bad || j.is_discarded() || !j.is_object()) return std::nullopt;
  return j;
}

enum class Claim { kAbsent, kBad, kOk };

// A NumericDate claim (seconds, possibly fractional) as whole seconds.
Claim numericClaim(const Json& claims, const char* name, std::int64_t& out) {
  auto it = claims.find(name);
  if (it == claims.end()) return Claim::kAbsent;
  if (it->is_number_unsigned()) {
    auto v = it->get<std::uint64_t>();
    if (v > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max() / 2)) return Claim::kBad;
    out = static_cast<std::int64_t>(v);
    return Claim::kOk;
  }
  if (it->is_number_integer()) {
    out = it->get<std::int64_t>();
    if (out < std::numeric_limits<std::int64_t>::min() / 2) return Claim::kBad;
    return Claim::kOk;
  }
  if (it->is_number_float()) {
    double v = it->get<double>();
    if (!std::isfinite(v) || std::fabs(v) > 1e15) return Claim::kBad;
    out = static_cast<std::int64_t>(std::floor(v));
    return Claim::kOk;
  }
  return Claim::kBad;
}

// A string claim: kAbsent, kBad (not a string or empty) or kOk.
Claim stringClaim(const Json& claims, const char* name, std::string& out) {
  auto it = claims.find(name);
  if (it == claims.end()) return Claim::kAbsent;
  if (!it->is_string()) return Claim::kBad;
  out = it->get<std::string>();
  return out.empty() ? Claim::kBad : Claim::kOk;
}

bool printableAscii(std::string_view s) {
  return std::all_of(s.begin(), s.end(), [](char c) { return c > 0x20 && c < 0x7F; });
}

// RFC 6749 scope-token: %x21 / %x23-5B / %x5D-7E.
bool isScopeToken(std::string_view s) {
  return !s.empty() && printableAscii(s) && s.find('"') == std::string_view::npos && s.find('\\') == std::string_view::npos;
}

bool isCode(std::string_view s) {
  return !s.empty() && s.size() <= 64 && std::all_of(s.begin(), s.end(), [](char c) {
           return std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.';
         });
}

bool audienceContains(const Json& claims, const std::string& audience) {
  auto it = claims.find("aud");
  if (it == claims.end()) return false;
  if (it->is_string()) return it->get<std::string>() == audience;
  if (!it->is_array()) return false;
  return std::any_of(it->begin(), it->end(), [&](const Json& a) { return a.is_string() && a.get<std::string>() == audience; });
}

// A public key file's content as a Key; the error says what is wrong with it.
Result<std::shared_ptr<TokenVerifier::Key>> parseKey(const std::string& path, std::string pem, std::string kid) {
  auto pkey = jose::publicKeyFromPem(pem, path);
  if (!pkey.ok()) return pkey.error();
  std::string why;
  jose::Alg alg = jose::algForKey(pkey->get(), &why);
  if (alg == jose::Alg::kNone) return makeError(ErrorCode::kInvalid, "'" + path + "': " + why);
  auto key = std::make_shared<TokenVerifier::Key>();
  key->kid = std::move(kid);
  key->path = path;
  key->pem = std::move(pem);
  key->pkey = std::move(pkey.value());
  key->alg = alg;
  return key;
}

Result<std::shared_ptr<TokenVerifier::Key>> loadKey(const std::string& path, std::string kid) {
  auto pem = jose::readFile(path);
  if (!pem) return makeError(ErrorCode::kInvalid, "cannot read '" + path + "'");
  return parseKey(path, std::move(*pem), std::move(kid));
}

}  // namespace

bool isPractitionerId(std::string_view value) {
  auto allDigits = [](std::string_view s) {
    return std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
  };
  if (value.rfind("rpps:", 0) == 0) {
    auto n = value.substr(5);
    return n.size() == 11 && allDigits(n);
  }
  if (value.rfind("adeli:", 0) == 0) {
    auto n = value.substr(6);
    if (n.size() != 9) return false;
    bool corsica = n[0] == '2' && (n[1] == 'A' || n[1] == 'B');
    return (corsica || allDigits(n.substr(0, 2))) && allDigits(n.substr(2));
  }
  return false;
}

bool isFhirId(std::string_view value) {
  return !value.empty() && value.size() <= 64 && std::all_of(value.begin(), value.end(), [](char c) {
           return std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '.';
         });
}

TokenVerifier::TokenVerifier(const TrustOptions& options) : options_(options) {}
TokenVerifier::~TokenVerifier() = default;

Result<std::unique_ptr<TokenVerifier>> TokenVerifier::create(const TrustOptions& options) {
  std::unique_ptr<TokenVerifier> v(new TokenVerifier(options));
  if (options.trustDevKey && !options.dataDir.empty()) {
    auto kid = ensureDevSigningKey(options.dataDir);
    if (!kid.ok()) return kid.error();
    auto key = loadKey(devSigningPublicKeyPath(options.dataDir), kid.value());
    if (!key.ok()) return key.error();
    v->devKey_ = std::move(key.value());
  }
  if (!options.keysDir.empty()) {
    std::error_code ec;
    if (!fs::is_directory(options.keysDir, ec))
      return makeError(ErrorCode::kInvalid, "the token keys folder '" + options.keysDir + "' is not a folder");
  }
  if (auto r = v->scan(true); !r.ok()) return r.error();
  v->lastScanMillis_ = steadyMillis();
  return v;
}

// Lists keysDir into a new key table; files whose content did not change keep their parsed key.
// At creation a bad file is an error; later it is logged and skipped (a file being copied in is
// picked up at the next scan), and a key whose file became unreadable keeps its previous content.
Result<void> TokenVerifier::scan(bool initial) const {
  std::map<std::string, std::shared_ptr<const Key>> previous;
  {
    std::shared_lock<std::shared_mutex> lock(keysMutex_);
    previous = keys_;
  }
  std::map<std::string, std::shared_ptr<const Key>> next;
  if (!options_.keysDir.empty()) {
    std::error_code ec;
    fs::directory_iterator it(options_.keysDir, ec), end;
    if (ec) {
      if (initial) return makeError(ErrorCode::kInvalid, "cannot list '" + options_.keysDir + "': " + ec.message());
      log::warn("identity.keys_unreadable", {{"dir", options_.keysDir}, {"reason", ec.message()}});
    }
    for (; !ec && it != end; it.increment(ec)) {
      const fs::path& p = it->path();
      if (p.extension() != ".pem" || p.filename().string().front() == '.') continue;
      std::error_code fileEc;
      if (!it->is_regular_file(fileEc)) continue;
      std::string kid = p.stem().string(), path = p.string();
      if (kid.empty() || kid.size() > kMaxKidBytes) continue;
      auto old = previous.find(kid);
      auto pem = jose::readFile(path);
      if (pem && old != previous.end() && old->second->path == path && old->second->pem == *pem) {
        next[kid] = old->second;
        continue;
      }
      auto key = pem ? parseKey(path, std::move(*pem), kid) : loadKey(path, kid);
      if (key.ok()) {
        if (!initial) log::info("identity.key_loaded", {{"kid", kid}, {"alg", jose::algName(key.value()->alg)}});
        next[kid] = std::move(key.value());
      } else if (initial) {
        return key.error();
      } else {
        log::warn("identity.key_skipped", {{"file", path}, {"reason", key.error().message}});
        if (old != previous.end() && old->second->path == path) next[kid] = old->second;
      }
    }
  }
  if (devKey_ && next.find(devKey_->kid) == next.end()) next[devKey_->kid] = devKey_;
  if (!initial) {
    for (const auto& [kid, key] : previous)
      if (next.find(kid) == next.end()) log::info("identity.key_removed", {{"kid", kid}});
  }
  std::unique_lock<std::shared_mutex> lock(keysMutex_);
  keys_ = std::move(next);
  return {};
}

std::shared_ptr<const TokenVerifier::Key> TokenVerifier::find(const std::string& kid) const {
  std::shared_lock<std::shared_mutex> lock(keysMutex_);
  auto it = keys_.find(kid);
  return it == keys_.end() ? nullptr : it->second;
}

// Lists keysDir again when the interval has passed. `wait`: block until a running scan ends (a
// token names an unknown kid); otherwise leave it to the thread already scanning.
void TokenVerifier::rescanIfDue(bool wait) const {
  if (options_.keysDir.empty()) return;
  const std::int64_t interval = std::max(0, options_.rescanSeconds) * std::int64_t{1000};
  if (steadyMillis() - lastScanMillis_.load(std::memory_order_relaxed) < interval) return;
  std::unique_lock<std::mutex> lock(scanMutex_, std::defer_lock);
  if (wait) {
    lock.lock();
  } else if (!lock.try_lock()) {
    return;
  }
  if (interval > 0 && steadyMillis() - lastScanMillis_.load(std::memory_order_relaxed) < interval) return;
  (void)scan(false);
  lastScanMillis_.store(steadyMillis(), std::memory_order_relaxed);
}

std::vector<std::string> TokenVerifier::keyIds() const {
  std::shared_lock<std::shared_mutex> lock(keysMutex_);
  std::vector<std::string> ids;
  for (const auto& entry : keys_) ids.push_back(entry.first);
  return ids;
}

Result<Principal> TokenVerifier::verify(std::string_view token, std::int64_t nowSeconds) const {
  if (token.empty()) return refuse("missing token");
  if (token.size() > kMaxTokenBytes) return refuse("token too large");
  auto dot1 = token.find('.');
  auto dot2 = dot1 == std::string_view::npos ? dot1 : token.find('.', dot1 + 1);
  if (dot2 == std::string_view::npos || token.find('.', dot2 + 1) != std::string_view::npos)
    return refuse("malformed token");
  auto headerText = jose::base64UrlDecode(token.substr(0, dot1));
  auto payloadText = jose::base64UrlDecode(token.substr(dot1 + 1, dot2 - dot1 - 1));
  auto signature = jose::base64UrlDecode(token.substr(dot2 + 1));
  if (!headerText || !payloadText || !signature) return refuse("malformed token");
  auto header = parseObject(*headerText);
  if (!header) return refuse("malformed token header");

  // The header: an algorithm we accept, no extension we would have to understand, a key id.
  auto alg = header->find("alg");
  if (alg == header->end() || !alg->is_string()) return refuse("missing algorithm");
  jose::Alg algorithm = jose::algFromName(alg->get<std::string>());
  if (algorithm == jose::Alg::kNone) return refuse("unsupported algorithm");
  if (header->contains("crit")) return refuse("unsupported critical header");
  std::string kid;
  if (stringClaim(*header, "kid", kid) != Claim::kOk || kid.size() > kMaxKidBytes) return refuse("missing key id");

  rescanIfDue(false);
  auto key = find(kid);
  if (!key) {
    rescanIfDue(true);
    key = find(kid);
  }
  if (!key) return refuse("unknown key id");
  if (key->alg != algorithm) return refuse("algorithm does not match the key");
  if (!jose::verify(key->pkey.get(), algorithm, token.substr(0, dot2), *signature)) return refuse("bad signature");

  // The claims, now that they are known to come from the key's holder.
  auto claims = parseObject(*payloadText);
  if (!claims) return refuse("malformed token claims");
  std::string iss;
  if (stringClaim(*claims, "iss", iss) != Claim::kOk || iss != options_.issuer) return refuse("wrong issuer");
  if (!audienceContains(*claims, options_.audience)) return refuse("wrong audience");
  const std::int64_t skew = std::max(0, options_.clockSkewSeconds);
  std::int64_t exp = 0, nbf = 0, iat = 0;
  switch (numericClaim(*claims, "exp", exp)) {
    case Claim::kAbsent: return refuse("missing expiry");
    case Claim::kBad: return refuse("invalid expiry");
    case Claim::kOk: break;
  }
  if (exp <= nowSeconds - skew) return refuse("token expired");
  Claim hasNbf = numericClaim(*claims, "nbf", nbf);
  if (hasNbf == Claim::kBad) return refuse("invalid not-before");
  if (hasNbf == Claim::kOk && nbf > nowSeconds + skew) return refuse("token not yet valid");
  Claim hasIat = numericClaim(*claims, "iat", iat);
  if (hasIat == Claim::kBad) return refuse("invalid issued-at");
  if (hasIat == Claim::kOk && iat > nowSeconds + skew) return refuse("token issued in the future");
  if (exp - (hasIat == Claim::kOk ? iat : nowSeconds) > options_.maxTokenSeconds) return refuse("token lifetime too long");

  Principal p;
  if (stringClaim(*claims, "sub", p.subject) != Claim::kOk) return refuse("missing subject");
  if (stringClaim(*claims, "role", p.role) != Claim::kOk) return refuse("missing role");
  if (!isCode(p.role)) return refuse("invalid role");
  switch (stringClaim(*claims, "practitioner", p.practitioner)) {
    case Claim::kBad: return refuse("invalid practitioner");
    case Claim::kOk:
      if (!isPractitionerId(p.practitioner)) return refuse("invalid practitioner");
      break;
    case Claim::kAbsent: break;
  }
  switch (stringClaim(*claims, "patient", p.patient)) {
    case Claim::kBad: return refuse("invalid patient");
    case Claim::kOk:
      if (!isFhirId(p.patient)) return refuse("invalid patient");
      break;
    case Claim::kAbsent: break;
  }
  switch (stringClaim(*claims, "purpose", p.purpose)) {
    case Claim::kBad: return refuse("invalid purpose");
    case Claim::kOk:
      if (!isCode(p.purpose)) return refuse("invalid purpose");
      break;
    case Claim::kAbsent: break;
  }
  if (auto scope = claims->find("scope"); scope != claims->end()) {
    if (!scope->is_string()) return refuse("invalid scope");
    const std::string& text = scope->get_ref<const std::string&>();
    for (std::size_t i = 0; i < text.size();) {
      auto end = text.find(' ', i);
      if (end == std::string::npos) end = text.size();
      if (end > i) {
        std::string_view one(text.data() + i, end - i);
        if (!isScopeToken(one)) return refuse("invalid scope");
        p.scopes.emplace_back(one);
      }
      i = end + 1;
    }
  }
  switch (stringClaim(*claims, "jti", p.tokenId)) {
    case Claim::kBad: return refuse("invalid token id");
    case Claim::kOk:
      if (p.tokenId.size() > kMaxJtiBytes || !printableAscii(p.tokenId)) return refuse("invalid token id");
      break;
    case Claim::kAbsent:
      p.tokenId = "sha256:" + jose::sha256Hex(token).substr(0, 32);
      break;
  }
  p.issuer = std::move(iss);
  p.expiresAt = exp;
  return p;
}

}  // namespace passerelle::identity
