// Issuing bearer tokens for development and tests: a compact JWS signed ES256 or RS256 with a PEM
// private key, the development key by default.
#include <ctime>
#include <nlohmann/json.hpp>

#include "gateway/identity/identity.h"
#include "gateway/identity/jose.h"

namespace passerelle::identity {

Result<std::string> signToken(const std::string& privateKeyPemPath, const std::string& kid, const IssueOptions& options) {
  if (kid.empty()) return makeError(ErrorCode::kInvalid, "a token needs a key id");
  if (options.ttlSeconds <= 0) return makeError(ErrorCode::kInvalid, "a token's lifetime must be positive");
  auto key = jose::loadPrivateKeyPem(privateKeyPemPath);
  if (!key.ok()) return key.error();
  std::string why;
  jose::Alg alg = jose::algForKey(key->get(), &why);
  if (alg == jose::Alg::kNone) return makeError(ErrorCode::kInvalid, "'" + privateKeyPemPath + "': " + why);

  const std::int64_t now = options.nowSeconds != 0 ? options.nowSeconds : static_cast<std::int64_t>(std::time(nullptr));
  nlohmann::ordered_json header = {{"alg", jose::algName(alg)}, {"typ", "JWT"}, {"kid", kid}};
  nlohmann::ordered_json claims;
  claims["iss"] = options.issuer;
  claims["aud"] = options.audience;
  claims["sub"] = options.subject;
  claims["role"] = options.role;
  if (!options.practitioner.empty()) claims["practitioner"] = options.practitioner;
  if (!options.patient.empty()) claims["patient"] = options.patient;
  if (!options.purpose.empty()) claims["purpose"] = options.purpose;
  std::string scope;
  for (const auto& s : options.scopes) {
    if (s.empty()) continue;
    if (!scope.empty()) scope += ' ';
    scope += s;
  }
  if (!scope.empty()) claims["scope"] = scope;
  claims["iat"] = now;
  claims["nbf"] = now;
  claims["exp"] = now + options.ttlSeconds;
  std::string jti = options.jti.empty() ? jose::randomHex(16) : options.jti;
  if (jti.empty()) return makeError(ErrorCode::kInternal, "no randomness for a token id");
  claims["jti"] = jti;

  std::string input = jose::base64UrlEncode(header.dump()) + "." + jose::base64UrlEncode(claims.dump());
  auto signature = jose::sign(key->get(), alg, input);
  if (!signature.ok()) return signature.error();
  return input + "." + jose::base64UrlEncode(signature.value());
}

Result<std::string> issueDevToken(const std::string& dataDir, const IssueOptions& options) {
  auto kid = ensureDevSigningKey(dataDir);
  if (!kid.ok()) return kid.error();
  return signToken(devSigningKeyPath(dataDir), kid.value(), options);
}

}  // namespace passerelle::identity
