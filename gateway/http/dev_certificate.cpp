// Development certificate generation with OpenSSL.
#include "gateway/http/dev_certificate.h"

#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <sys/stat.h>

#include <cstdio>
#include <filesystem>
#include <memory>

namespace passerelle::http {
namespace {

template <class T, void (*F)(T*)>
struct Deleter {
  void operator()(T* p) const { F(p); }
};
using PKey = std::unique_ptr<EVP_PKEY, Deleter<EVP_PKEY, EVP_PKEY_free>>;
using Cert = std::unique_ptr<X509, Deleter<X509, X509_free>>;

bool addExtension(X509* cert, int nid, const char* value) {
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, cert, cert, nullptr, nullptr, 0);
  X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &ctx, nid, value);
  if (!ext) return false;
  bool ok = X509_add_ext(cert, ext, -1) == 1;
  X509_EXTENSION_free(ext);
  return ok;
}

}  // namespace

Result<void> ensureDevCertificate(const std::string& certPath, const std::string& keyPath) {
  return ensureDevCertificate(certPath, keyPath, DevCertificateUse{"localhost", "", "serverAuth"});
}

Result<void> ensureDevCertificate(const std::string& certPath, const std::string& keyPath, const DevCertificateUse& use) {
  namespace fs = std::filesystem;
  if (fs::exists(certPath) && fs::exists(keyPath)) return {};
  std::error_code ec;
  for (const auto& p : {certPath, keyPath}) {
    auto parent = fs::path(p).parent_path();
    if (!parent.empty()) fs::create_directories(parent, ec);
    if (ec) return makeError(ErrorCode::kInternal, "cannot create '" + parent.string() + "': " + ec.message());
  }
  PKey key(EVP_EC_gen("P-256"));
  if (!key) return makeError(ErrorCode::kInternal, "cannot generate an EC key");
  Cert cert(X509_new());
  X509_set_version(cert.get(), 2);
  unsigned char serial[16];
  RAND_bytes(serial, sizeof serial);
  serial[0] &= 0x7F;
  BIGNUM* bn = BN_bin2bn(serial, sizeof serial, nullptr);
  BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(cert.get()));
  BN_free(bn);
  X509_gmtime_adj(X509_getm_notBefore(cert.get()), -3600);
  X509_gmtime_adj(X509_getm_notAfter(cert.get()), 365L * 24 * 3600);
  X509_set_pubkey(cert.get(), key.get());
  X509_NAME* name = X509_get_subject_name(cert.get());
  X509_NAME_add_entry_by_txt(name, "O", MBSTRING_ASC, reinterpret_cast<const unsigned char*>("Passerelle development"), -1, -1, 0);
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8, reinterpret_cast<const unsigned char*>(use.commonName.c_str()), -1, -1, 0);
  X509_set_issuer_name(cert.get(), name);
  bool server = use.commonName == "localhost";
  if ((server && !addExtension(cert.get(), NID_subject_alt_name, "DNS:localhost,IP:127.0.0.1,IP:::1")) ||
      !addExtension(cert.get(), NID_basic_constraints, "critical,CA:FALSE") ||
      (!use.keyUsage.empty() && !addExtension(cert.get(), NID_key_usage, use.keyUsage.c_str())) ||
      (!use.extendedKeyUsage.empty() && !addExtension(cert.get(), NID_ext_key_usage, use.extendedKeyUsage.c_str())))
    return makeError(ErrorCode::kInternal, "cannot add certificate extensions");
  if (X509_sign(cert.get(), key.get(), EVP_sha256()) == 0) return makeError(ErrorCode::kInternal, "cannot sign the certificate");

  mode_t old = umask(077);
  FILE* kf = std::fopen(keyPath.c_str(), "w");
  umask(old);
  if (!kf) return makeError(ErrorCode::kInternal, "cannot write '" + keyPath + "'");
  bool ok = PEM_write_PrivateKey(kf, key.get(), nullptr, nullptr, 0, nullptr, nullptr) == 1;
  std::fclose(kf);
  chmod(keyPath.c_str(), 0600);
  FILE* cf = std::fopen(certPath.c_str(), "w");
  if (!cf) return makeError(ErrorCode::kInternal, "cannot write '" + certPath + "'");
  ok = ok && PEM_write_X509(cf, cert.get()) == 1;
  std::fclose(cf);
  if (!ok) return makeError(ErrorCode::kInternal, "cannot write the development certificate");
  return {};
}

}  // namespace passerelle::http
