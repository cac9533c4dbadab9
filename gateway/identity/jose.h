// Internal to the identity library: the JOSE and OpenSSL primitives its parts share (base64url,
// SHA-256, PEM keys, ES256/RS256 signatures in their JWS form) and the key files' safe writing.
// Thread-safe: no state; a loaded key may be used by many threads at once.
#pragma once

#include "mappings/common/sha256.h"

#include <openssl/evp.h>
#include <openssl/x509.h>

#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "gateway/common/status.h"

namespace passerelle::identity::jose {

template <class T, void (*F)(T*)>
struct Deleter {
  void operator()(T* p) const { F(p); }
};
using PKey = std::unique_ptr<EVP_PKEY, Deleter<EVP_PKEY, EVP_PKEY_free>>;
using Cert = std::unique_ptr<X509, Deleter<X509, X509_free>>;

enum class Alg { kNone, kES256, kRS256 };

const char* algName(Alg alg);
Alg algFromName(std::string_view name);  // kNone for anything but ES256 and RS256

// Unpadded base64url (RFC 7515). decode refuses padding, other characters and non-canonical
// trailing bits, so that one text has one meaning.
std::string base64UrlEncode(std::string_view bytes);
std::optional<std::string> base64UrlDecode(std::string_view text);

std::string toHex(const unsigned char* bytes, std::size_t size);
using ::passerelle::sha256Hex;
std::string randomHex(std::size_t bytes);

// The algorithm a key signs with: ES256 for EC P-256, RS256 for RSA of 2048 bits or more; kNone
// (with the reason in `why`) otherwise.
Alg algForKey(EVP_PKEY* key, std::string* why = nullptr);

// The DER of a key's SubjectPublicKeyInfo ("" on failure).
std::string publicKeyDer(EVP_PKEY* key);

// PEM files. A public key file may hold a SubjectPublicKeyInfo or a certificate.
Result<PKey> loadPublicKeyPem(const std::string& path);
Result<PKey> publicKeyFromPem(const std::string& text, const std::string& path);  // `path` for errors
Result<PKey> loadPrivateKeyPem(const std::string& path);
Result<Cert> loadCertificatePem(const std::string& path);
std::string privateKeyPem(EVP_PKEY* key);  // PKCS#8
std::string publicKeyPem(EVP_PKEY* key);   // SubjectPublicKeyInfo
std::string certificatePem(X509* cert);

// The JWS signature of `input`: raw R||S (64 bytes) for ES256, PKCS#1 v1.5 for RS256.
Result<std::string> sign(EVP_PKEY* key, Alg alg, std::string_view input);
bool verify(EVP_PKEY* key, Alg alg, std::string_view input, std::string_view signature);

// Files: the whole content, or nullopt when it cannot be read.
std::optional<std::string> readFile(const std::string& path);
// Writes `content` to a temporary file beside `path` (mode `mode`), flushes it and renames it onto
// `path`, so readers see the old file or the whole new one.
Result<void> writeFileAtomic(const std::string& path, const std::string& content, unsigned mode);
// Creates `dir` (and its parents) and gives it mode 0700.
Result<void> makePrivateDir(const std::string& dir);

// An exclusive advisory lock on `<dir>/.lock` (flock): serialises creators across threads and
// processes. ok() is false when the lock file cannot be opened.
class DirLock {
 public:
  explicit DirLock(const std::string& dir);
  ~DirLock();
  DirLock(const DirLock&) = delete;
  DirLock& operator=(const DirLock&) = delete;
  bool ok() const { return fd_ >= 0; }

 private:
  int fd_ = -1;
};

}  // namespace passerelle::identity::jose
