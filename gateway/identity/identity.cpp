// Development key material: the token signing key, the client CA and its client certificates,
// and the reading of certificates (fingerprint, subject). Files are created under a folder lock,
// written to a temporary file and renamed into place; private keys get mode 0600.
#include "gateway/identity/identity.h"

#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/buffer.h>
#include <openssl/err.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>
#include <sys/stat.h>

#include <cctype>
#include <filesystem>

#include "gateway/identity/jose.h"

namespace passerelle::identity {
namespace {

namespace fs = std::filesystem;
using jose::Cert;
using jose::PKey;

constexpr const char* kDevOrganisation = "Douleur 77 (development)";
constexpr long kDay = 24 * 3600;

Result<PKey> generateP256() {
  PKey key(EVP_EC_gen("P-256"));
  if (!key) {
    ERR_clear_error();
    return makeError(ErrorCode::kInternal, "cannot generate an EC P-256 key");
  }
  return key;
}

bool addExtension(X509* issuer, X509* cert, int nid, const char* value) {
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, issuer, cert, nullptr, nullptr, 0);
  X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &ctx, nid, value);
  bool ok = ext && X509_add_ext(cert, ext, -1) == 1;
  X509_EXTENSION_free(ext);
  if (!ok) ERR_clear_error();
  return ok;
}

bool addNameEntry(X509_NAME* name, const char* field, const std::string& value) {
  return X509_NAME_add_entry_by_txt(name, field, MBSTRING_UTF8, reinterpret_cast<const unsigned char*>(value.c_str()),
                                    -1, -1, 0) == 1;
}

// A certificate without extensions: version 3, a random positive serial, valid from an hour ago.
Result<Cert> newCertificate(EVP_PKEY* subjectKey, const std::string& commonName, long days) {
  Cert cert(X509_new());
  if (!cert) return makeError(ErrorCode::kInternal, "cannot create a certificate");
  unsigned char serial[16];
  if (RAND_bytes(serial, sizeof serial) != 1) return makeError(ErrorCode::kInternal, "no randomness for a serial");
  serial[0] &= 0x7F;
  serial[0] |= 0x01;
  BIGNUM* bn = BN_bin2bn(serial, sizeof serial, nullptr);
  bool ok = bn && BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(cert.get())) != nullptr;
  BN_free(bn);
  X509_NAME* name = X509_get_subject_name(cert.get());
  ok = ok && X509_set_version(cert.get(), 2) == 1 && X509_gmtime_adj(X509_getm_notBefore(cert.get()), -3600) &&
       X509_gmtime_adj(X509_getm_notAfter(cert.get()), days * kDay) && X509_set_pubkey(cert.get(), subjectKey) == 1 &&
       addNameEntry(name, "O", kDevOrganisation) && addNameEntry(name, "CN", commonName);
  if (!ok) {
    ERR_clear_error();
    return makeError(ErrorCode::kInternal, "cannot fill the certificate");
  }
  return cert;
}

Result<void> signCertificate(X509* cert, EVP_PKEY* issuerKey) {
  if (X509_sign(cert, issuerKey, EVP_sha256()) <= 0) {
    ERR_clear_error();
    return makeError(ErrorCode::kInternal, "cannot sign the certificate");
  }
  return {};
}

bool validCommonName(const std::string& name) {
  if (name.empty() || name.size() > 64) return false;
  for (char c : name)
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '.' && c != '_' && c != '-') return false;
  return true;
}

bool exists(const std::string& path) {
  std::error_code ec;
  return fs::exists(path, ec);
}

}  // namespace

std::string devSigningKeyPath(const std::string& dataDir) { return dataDir + "/auth/dev-signing.key"; }
std::string devSigningPublicKeyPath(const std::string& dataDir) { return dataDir + "/auth/dev-signing.pub.pem"; }

Result<std::string> ensureDevSigningKey(const std::string& dataDir) {
  if (dataDir.empty()) return makeError(ErrorCode::kInvalid, "no data folder for the development signing key");
  std::string dir = dataDir + "/auth";
  if (auto r = jose::makePrivateDir(dir); !r.ok()) return r.error();
  jose::DirLock lock(dir);
  if (!lock.ok()) return makeError(ErrorCode::kInternal, "cannot lock '" + dir + "'");
  std::string keyPath = devSigningKeyPath(dataDir), pubPath = devSigningPublicKeyPath(dataDir);
  PKey key;
  if (exists(keyPath)) {
    auto loaded = jose::loadPrivateKeyPem(keyPath);
    if (!loaded.ok()) return loaded.error();
    if (jose::algForKey(loaded->get()) != jose::Alg::kES256)
      return makeError(ErrorCode::kInvalid, "'" + keyPath + "' is not an EC P-256 key");
    key = std::move(loaded.value());
    ::chmod(keyPath.c_str(), 0600);
  } else {
    auto made = generateP256();
    if (!made.ok()) return made.error();
    key = std::move(made.value());
    std::string pem = jose::privateKeyPem(key.get());
    if (pem.empty()) return makeError(ErrorCode::kInternal, "cannot encode the development signing key");
    if (auto w = jose::writeFileAtomic(keyPath, pem, 0600); !w.ok()) return w.error();
  }
  std::string pubPem = jose::publicKeyPem(key.get());
  std::string der = jose::publicKeyDer(key.get());
  if (pubPem.empty() || der.empty()) return makeError(ErrorCode::kInternal, "cannot encode the development public key");
  if (jose::readFile(pubPath) != pubPem) {
    if (auto w = jose::writeFileAtomic(pubPath, pubPem, 0644); !w.ok()) return w.error();
  }
  return "dev-" + jose::sha256Hex(der).substr(0, 16);
}

Result<void> ensureDevClientPki(const std::string& dir) {
  if (dir.empty()) return makeError(ErrorCode::kInvalid, "no folder for the development client CA");
  if (auto r = jose::makePrivateDir(dir); !r.ok()) return r;
  jose::DirLock lock(dir);
  if (!lock.ok()) return makeError(ErrorCode::kInternal, "cannot lock '" + dir + "'");
  std::string keyPath = dir + "/ca.key", certPath = dir + "/ca.crt";
  if (exists(keyPath) && exists(certPath)) return {};
  auto key = generateP256();
  if (!key.ok()) return key.error();
  auto cert = newCertificate(key->get(), "Passerelle development client CA", 10 * 365);
  if (!cert.ok()) return cert.error();
  X509* c = cert->get();
  if (X509_set_issuer_name(c, X509_get_subject_name(c)) != 1 ||
      !addExtension(c, c, NID_basic_constraints, "critical,CA:TRUE,pathlen:0") ||
      !addExtension(c, c, NID_key_usage, "critical,keyCertSign,cRLSign") ||
      !addExtension(c, c, NID_subject_key_identifier, "hash"))
    return makeError(ErrorCode::kInternal, "cannot add the CA certificate's extensions");
  if (auto s = signCertificate(c, key->get()); !s.ok()) return s;
  std::string keyPem = jose::privateKeyPem(key->get()), certPem = jose::certificatePem(c);
  if (keyPem.empty() || certPem.empty()) return makeError(ErrorCode::kInternal, "cannot encode the development CA");
  if (auto w = jose::writeFileAtomic(keyPath, keyPem, 0600); !w.ok()) return w;
  return jose::writeFileAtomic(certPath, certPem, 0644);
}

Result<void> issueDevClientCertificate(const std::string& dir, const std::string& commonName,
                                       const std::string& certPath, const std::string& keyPath) {
  if (!validCommonName(commonName))
    return makeError(ErrorCode::kInvalid, "a client name is 1 to 64 letters, digits, '.', '_' or '-'");
  if (auto r = ensureDevClientPki(dir); !r.ok()) return r;
  auto caKey = jose::loadPrivateKeyPem(dir + "/ca.key");
  if (!caKey.ok()) return caKey.error();
  auto caCert = jose::loadCertificatePem(dir + "/ca.crt");
  if (!caCert.ok()) return caCert.error();
  auto key = generateP256();
  if (!key.ok()) return key.error();
  auto cert = newCertificate(key->get(), commonName, 365);
  if (!cert.ok()) return cert.error();
  X509* c = cert->get();
  if (X509_set_issuer_name(c, X509_get_subject_name(caCert->get())) != 1 ||
      !addExtension(caCert->get(), c, NID_basic_constraints, "critical,CA:FALSE") ||
      !addExtension(caCert->get(), c, NID_key_usage, "critical,digitalSignature") ||
      !addExtension(caCert->get(), c, NID_ext_key_usage, "clientAuth") ||
      !addExtension(caCert->get(), c, NID_subject_key_identifier, "hash") ||
      !addExtension(caCert->get(), c, NID_authority_key_identifier, "keyid:always"))
    return makeError(ErrorCode::kInternal, "cannot add the client certificate's extensions");
  if (auto s = signCertificate(c, caKey->get()); !s.ok()) return s;
  std::string keyPem = jose::privateKeyPem(key->get()), certPem = jose::certificatePem(c);
  if (keyPem.empty() || certPem.empty()) return makeError(ErrorCode::kInternal, "cannot encode the client certificate");
  for (const auto& p : {certPath, keyPath}) {
    auto parent = fs::path(p).parent_path();
    std::error_code ec;
    if (!parent.empty()) fs::create_directories(parent, ec);
    if (ec) return makeError(ErrorCode::kInternal, "cannot create '" + parent.string() + "': " + ec.message());
  }
  if (auto w = jose::writeFileAtomic(keyPath, keyPem, 0600); !w.ok()) return w;
  return jose::writeFileAtomic(certPath, certPem, 0644);
}

std::string certificateFingerprint(const std::string& pemCertificatePath) {
  auto cert = jose::loadCertificatePem(pemCertificatePath);
  if (!cert.ok()) return {};
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  if (X509_digest(cert->get(), EVP_sha256(), md, &len) != 1) {
    ERR_clear_error();
    return {};
  }
  return jose::toHex(md, len);
}

std::string certificateSubject(const std::string& pemCertificatePath) {
  auto cert = jose::loadCertificatePem(pemCertificatePath);
  if (!cert.ok()) return {};
  using Bio = std::unique_ptr<BIO, jose::Deleter<BIO, BIO_free_all>>;
  Bio bio(BIO_new(BIO_s_mem()));
  if (!bio || X509_NAME_print_ex(bio.get(), X509_get_subject_name(cert->get()), 0, XN_FLAG_RFC2253) < 0) {
    ERR_clear_error();
    return {};
  }
  BUF_MEM* mem = nullptr;
  BIO_get_mem_ptr(bio.get(), &mem);
  return mem ? std::string(mem->data, mem->length) : std::string();
}

}  // namespace passerelle::identity
