// Identity: a bearer token (compact JWS signed ES256 or RS256, keys chosen by `kid`) or a client
// certificate (mapped to a configured account) becomes a Principal. Also the development key
// material: a signing key and tokens for tests and demos, a client CA and client certificates.
// Thread-safety: TokenVerifier::verify() may be called from any number of threads at once; the
// free functions may be called concurrently, also from several processes (files are created under
// a lock and moved into place by rename).
#pragma once

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <shared_mutex>
#include <string>
#include <string_view>
#include <vector>

#include "gateway/common/status.h"
#include "gateway/identity/principal.h"

namespace passerelle::identity {

// ---------------------------------------------------------------------------------------------
// Development signing key

// Creates once, under <dataDir>/auth (mode 0700), an EC P-256 pair: dev-signing.key (PKCS#8 PEM,
// mode 0600) and dev-signing.pub.pem (SubjectPublicKeyInfo PEM); loads it when it exists. Returns
// its key id: "dev-" + the first 16 hex digits of the SHA-256 of the public key's DER.
Result<std::string> ensureDevSigningKey(const std::string& dataDir);

// The development key files under a data folder.
std::string devSigningKeyPath(const std::string& dataDir);
std::string devSigningPublicKeyPath(const std::string& dataDir);

// ---------------------------------------------------------------------------------------------
// Bearer tokens

struct TrustOptions {
  std::string issuer;    // expected `iss`
  std::string audience;  // `aud` (a string or an array) must contain it
  // Folder of trusted public keys: every <kid>.pem, a SubjectPublicKeyInfo public key or a
  // certificate, EC P-256 (ES256) or RSA of 2048 bits or more (RS256). Empty: none.
  std::string keysDir;
  // With trustDevKey and a dataDir, the development key of that data folder (kid "dev-...") is
  // created if needed and trusted.
  std::string dataDir;
  bool trustDevKey = true;
  int clockSkewSeconds = 60;    // tolerance on exp, nbf and iat
  int maxTokenSeconds = 86400;  // longest accepted exp - iat (exp - now without iat)
  // keysDir is listed again at most this often: a token naming an unknown kid triggers it, and so
  // does any token once the interval has passed, so added keys are trusted and removed ones are
  // not, without a restart. 0: on every token (tests).
  int rescanSeconds = 5;
};

class TokenVerifier {
 public:
  // Loads the keys; a file that is not a usable public key stops it with an error naming the file.
  static Result<std::unique_ptr<TokenVerifier>> create(const TrustOptions& options);
  ~TokenVerifier();
  TokenVerifier(const TokenVerifier&) = delete;
  TokenVerifier& operator=(const TokenVerifier&) = delete;

  // A compact JWS to the Principal it asserts. Every failure is kUnauthorized with a short reason
  // that may be shown to the caller ("token expired", "unknown key id", "bad signature"...); it
  // never carries key material nor echoes the token.
  Result<Principal> verify(std::string_view token, std::int64_t nowSeconds) const;

  // The key ids trusted now, sorted.
  std::vector<std::string> keyIds() const;

  struct Key;  // a parsed public key and the file it came from

 private:
  explicit TokenVerifier(const TrustOptions& options);
  Result<void> scan(bool initial) const;
  std::shared_ptr<const Key> find(const std::string& kid) const;
  void rescanIfDue(bool wait) const;

  TrustOptions options_;
  std::shared_ptr<const Key> devKey_;
  mutable std::shared_mutex keysMutex_;  // guards keys_
  mutable std::map<std::string, std::shared_ptr<const Key>> keys_;
  mutable std::mutex scanMutex_;                  // one scan at a time
  mutable std::atomic<std::int64_t> lastScanMillis_{0};  // steady clock; written under scanMutex_
};

// ---------------------------------------------------------------------------------------------
// Issuing tokens (development and tests)

struct IssueOptions {
  std::string subject, role, practitioner, patient, purpose;
  std::vector<std::string> scopes;  // joined with spaces into `scope`
  std::int64_t ttlSeconds = 3600;
  std::string issuer, audience;
  std::int64_t nowSeconds = 0;  // 0: the current time
  std::string jti;              // empty: 128 random bits in hex
};

// Signs ES256 with the development key of `dataDir` (created if needed); the header carries its
// kid; iat, nbf, exp and jti are set.
Result<std::string> issueDevToken(const std::string& dataDir, const IssueOptions& options);

// The same with any PEM private key: EC P-256 signs ES256, RSA (2048 bits or more) RS256.
Result<std::string> signToken(const std::string& privateKeyPemPath, const std::string& kid, const IssueOptions& options);

// "rpps:" + 11 digits, or "adeli:" + 9 characters (digits; 2A or 2B may open it).
bool isPractitionerId(std::string_view value);
// A FHIR resource id: [A-Za-z0-9\-.]{1,64}.
bool isFhirId(std::string_view value);

// ---------------------------------------------------------------------------------------------
// Client certificates (mutual TLS for connectors and system accounts)

struct CertificateAccount {
  std::string name;
  std::string subject;      // a DN ("CN=x,O=y" or "/O=y/CN=x"), or only "CN=x" to match on the CN
  std::string fingerprint;  // SHA-256 of the certificate's DER, lower-case hex without colons
  std::string role, purpose;
  std::vector<std::string> scopes;
};

// Reads the accounts file ({"version":"1.0","accounts":[...]}, conf/access/accounts.json). A missing
// file gives no accounts; bad JSON, or an entry without name or role, or with neither subject nor
// fingerprint, or with an unknown member, is an error naming the entry.
Result<std::vector<CertificateAccount>> loadAccounts(const std::string& path);

// The account of a verified client certificate: the one whose fingerprint equals
// `sha256Fingerprint` (colons and case ignored); else one without a fingerprint whose subject
// equals `subjectDn` (attribute names and values compared case-insensitively, spaces around '=',
// ',' and '/' ignored, attribute order ignored, RFC 2253 or "/A=b/C=d" form), or whose subject is
// only "CN=x" and the certificate's CN is x. An account with a fingerprint never matches by
// subject. The Principal: subject and account = the account's name, its role, scopes and purpose,
// tokenId "cert:" + fingerprint, expiresAt 0. nullopt when no account matches, or when
// `sha256Fingerprint` is not 64 hex digits (it identifies the certificate in the audit trail).
std::optional<Principal> principalForCertificate(const std::vector<CertificateAccount>& accounts,
                                                 const std::string& subjectDn, const std::string& sha256Fingerprint);

// Creates once under `dir` a development client CA: ca.key (EC P-256, PKCS#8 PEM, mode 0600) and
// ca.crt (self-signed, 10 years). Not for production.
Result<void> ensureDevClientPki(const std::string& dir);

// Signs with the CA of `dir` (created if needed) a client certificate: EC P-256 key, subject
// "CN=<commonName>,O=Douleur 77 (development)", extendedKeyUsage clientAuth, valid one year.
// `commonName`: 1 to 64 of [A-Za-z0-9._-]. The key file gets mode 0600.
Result<void> issueDevClientCertificate(const std::string& dir, const std::string& commonName,
                                       const std::string& certPath, const std::string& keyPath);

// SHA-256 of a PEM certificate's DER, lower-case hex without colons; "" when it cannot be read.
std::string certificateFingerprint(const std::string& pemCertificatePath);
// The subject of a PEM certificate in RFC 2253 form ("CN=x,O=y"); "" when it cannot be read.
std::string certificateSubject(const std::string& pemCertificatePath);

}  // namespace passerelle::identity
