// JOSE primitives over OpenSSL: base64url, digests, PEM keys, JWS signatures, key files.
#include "gateway/identity/jose.h"

#include <fcntl.h>
#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/buffer.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>

namespace passerelle::identity::jose {
namespace {

using Bio = std::unique_ptr<BIO, Deleter<BIO, BIO_free_all>>;
using MdCtx = std::unique_ptr<EVP_MD_CTX, Deleter<EVP_MD_CTX, EVP_MD_CTX_free>>;
using EcSig = std::unique_ptr<ECDSA_SIG, Deleter<ECDSA_SIG, ECDSA_SIG_free>>;

constexpr std::size_t kMaxKeyFileBytes = 1 << 20;
constexpr std::size_t kEs256Half = 32;

const char kAlphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

int sextet(char c) {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == '-') return 62;
  if (c == '_') return 63;
  return -1;
}

// Passphrase callback that never asks (the default one would prompt on the terminal).
int noPassphrase(char*, int, int, void*) { return 0; }

std::string bioText(BIO* bio) {
  BUF_MEM* mem = nullptr;
  BIO_get_mem_ptr(bio, &mem);
  return mem ? std::string(mem->data, mem->length) : std::string();
}

Bio memoryOf(const std::string& text) { return Bio(BIO_new_mem_buf(text.data(), static_cast<int>(text.size()))); }

}  // namespace

const char* algName(Alg alg) {
  switch (alg) {
    case Alg::kES256: return "ES256";
    case Alg::kRS256: return "RS256";
    case Alg::kNone: break;
  }
  return "none";
}

Alg algFromName(std::string_view name) {
  if (name == "ES256") return Alg::kES256;
  if (name == "RS256") return Alg::kRS256;
  return Alg::kNone;
}

std::string base64UrlEncode(std::string_view bytes) {
  std::string out;
  out.reserve((bytes.size() * 4 + 2) / 3);
  std::size_t i = 0;
  for (; i + 3 <= bytes.size(); i += 3) {
    unsigned v = (static_cast<unsigned char>(bytes[i]) << 16) | (static_cast<unsigned char>(bytes[i + 1]) << 8) |
                 static_cast<unsigned char>(bytes[i + 2]);
    out += kAlphabet[(v >> 18) & 63];
    out += kAlphabet[(v >> 12) & 63];
    out += kAlphabet[(v >> 6) & 63];
    out += kAlphabet[v & 63];
  }
  std::size_t rest = bytes.size() - i;
  if (rest == 1) {
    unsigned v = static_cast<unsigned char>(bytes[i]) << 16;
    out += kAlphabet[(v >> 18) & 63];
    out += kAlphabet[(v >> 12) & 63];
  } else if (rest == 2) {
    unsigned v = (static_cast<unsigned char>(bytes[i]) << 16) | (static_cast<unsigned char>(bytes[i + 1]) << 8);
    out += kAlphabet[(v >> 18) & 63];
    out += kAlphabet[(v >> 12) & 63];
    out += kAlphabet[(v >> 6) & 63];
  }
  return out;
}

std::optional<std::string> base64UrlDecode(std::string_view text) {
  if (text.size() % 4 == 1) return std::nullopt;
  std::string out;
  out.reserve(text.size() * 3 / 4);
  unsigned acc = 0;
  int bits = 0;
  for (char c : text) {
    int v = sextet(c);
    if (v < 0) return std::nullopt;
    acc = (acc << 6) | static_cast<unsigned>(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out += static_cast<char>((acc >> bits) & 0xFF);
    }
  }
  // The bits left over must be zero: another text with the same bytes would be the same token.
  if (bits > 0 && (acc & ((1u << bits) - 1)) != 0) return std::nullopt;
  return out;
}

std::string toHex(const unsigned char* bytes, std::size_t size) {
  static const char kDigits[] = "0123456789abcdef";
  std::string out;
  out.reserve(size * 2);
  for (std::size_t i = 0; i < size; ++i) {
    out += kDigits[bytes[i] >> 4];
    out += kDigits[bytes[i] & 15];
  }
  return out;
}

std::string randomHex(std::size_t bytes) {
  std::string buf(bytes, '\0');
  if (RAND_bytes(reinterpret_cast<unsigned char*>(buf.data()), static_cast<int>(bytes)) != 1) {
    ERR_clear_error();
    return {};
  }
  return toHex(reinterpret_cast<const unsigned char*>(buf.data()), bytes);
}

Alg algForKey(EVP_PKEY* key, std::string* why) {
  auto refuse = [&](const char* reason) {
    if (why) *why = reason;
    return Alg::kNone;
  };
  if (!key) return refuse("no key");
  switch (EVP_PKEY_get_base_id(key)) {
    case EVP_PKEY_EC: {
      char group[64] = {0};
      std::size_t len = 0;
      if (EVP_PKEY_get_group_name(key, group, sizeof group, &len) != 1) {
        ERR_clear_error();
        return refuse("EC key without a named curve");
      }
      std::string name(group, len);
      if (name != "prime256v1" && name != "P-256" && name != "secp256r1") return refuse("EC key not on P-256");
      return Alg::kES256;
    }
    case EVP_PKEY_RSA:
      if (EVP_PKEY_get_bits(key) < 2048) return refuse("RSA key shorter than 2048 bits");
      return Alg::kRS256;
    default:
      return refuse("neither an EC P-256 nor an RSA key");
  }
}

std::string publicKeyDer(EVP_PKEY* key) {
  unsigned char* der = nullptr;
  int len = i2d_PUBKEY(key, &der);
  if (len <= 0) {
    ERR_clear_error();
    return {};
  }
  std::string out(reinterpret_cast<char*>(der), static_cast<std::size_t>(len));
  OPENSSL_free(der);
  return out;
}

Result<PKey> loadPublicKeyPem(const std::string& path) {
  auto text = readFile(path);
  if (!text) return makeError(ErrorCode::kInternal, "cannot read '" + path + "'");
  return publicKeyFromPem(*text, path);
}

Result<PKey> publicKeyFromPem(const std::string& text, const std::string& path) {
  Bio bio = memoryOf(text);
  PKey key(PEM_read_bio_PUBKEY(bio.get(), nullptr, noPassphrase, nullptr));
  if (!key) {
    ERR_clear_error();
    Bio again = memoryOf(text);
    Cert cert(PEM_read_bio_X509(again.get(), nullptr, noPassphrase, nullptr));
    if (cert) key.reset(X509_get_pubkey(cert.get()));
  }
  ERR_clear_error();
  if (!key) return makeError(ErrorCode::kInvalid, "'" + path + "' holds no PEM public key nor certificate");
  return key;
}

Result<PKey> loadPrivateKeyPem(const std::string& path) {
  auto text = readFile(path);
  if (!text) return makeError(ErrorCode::kInternal, "cannot read '" + path + "'");
  Bio bio = memoryOf(*text);
  PKey key(PEM_read_bio_PrivateKey(bio.get(), nullptr, noPassphrase, nullptr));
  ERR_clear_error();
  if (!key) return makeError(ErrorCode::kInvalid, "'" + path + "' holds no unencrypted PEM private key");
  return key;
}

Result<Cert> loadCertificatePem(const std::string& path) {
  auto text = readFile(path);
  if (!text) return makeError(ErrorCode::kInternal, "cannot read '" + path + "'");
  Bio bio = memoryOf(*text);
  Cert cert(PEM_read_bio_X509(bio.get(), nullptr, noPassphrase, nullptr));
  ERR_clear_error();
  if (!cert) return makeError(ErrorCode::kInvalid, "'" + path + "' holds no PEM certificate");
  return cert;
}

std::string privateKeyPem(EVP_PKEY* key) {
  Bio bio(BIO_new(BIO_s_mem()));
  if (!bio || PEM_write_bio_PKCS8PrivateKey(bio.get(), key, nullptr, nullptr, 0, nullptr, nullptr) != 1) {
    ERR_clear_error();
    return {};
  }
  return bioText(bio.get());
}

std::string publicKeyPem(EVP_PKEY* key) {
  Bio bio(BIO_new(BIO_s_mem()));
  if (!bio || PEM_write_bio_PUBKEY(bio.get(), key) != 1) {
    ERR_clear_error();
    return {};
  }
  return bioText(bio.get());
}

std::string certificatePem(X509* cert) {
  Bio bio(BIO_new(BIO_s_mem()));
  if (!bio || PEM_write_bio_X509(bio.get(), cert) != 1) {
    ERR_clear_error();
    return {};
  }
  return bioText(bio.get());
}

Result<std::string> sign(EVP_PKEY* key, Alg alg, std::string_view input) {
  if (alg == Alg::kNone || algForKey(key) != alg) return makeError(ErrorCode::kInvalid, "the key cannot sign this algorithm");
  MdCtx ctx(EVP_MD_CTX_new());
  std::size_t len = 0;
  if (!ctx || EVP_DigestSignInit(ctx.get(), nullptr, EVP_sha256(), nullptr, key) != 1 ||
      EVP_DigestSign(ctx.get(), nullptr, &len, reinterpret_cast<const unsigned char*>(input.data()), input.size()) != 1) {
    ERR_clear_error();
    return makeError(ErrorCode::kInternal, "signing failed");
  }
  std::string sig(len, '\0');
  if (EVP_DigestSign(ctx.get(), reinterpret_cast<unsigned char*>(sig.data()), &len,
                     reinterpret_cast<const unsigned char*>(input.data()), input.size()) != 1) {
    ERR_clear_error();
    return makeError(ErrorCode::kInternal, "signing failed");
  }
  sig.resize(len);
  if (alg == Alg::kRS256) return sig;
  // OpenSSL gives ECDSA signatures as DER; JWS wants R and S as two 32-byte big-endian numbers.
  const unsigned char* p = reinterpret_cast<const unsigned char*>(sig.data());
  EcSig ecSig(d2i_ECDSA_SIG(nullptr, &p, static_cast<long>(sig.size())));
  if (!ecSig) {
    ERR_clear_error();
    return makeError(ErrorCode::kInternal, "signing failed");
  }
  const BIGNUM* r = nullptr;
  const BIGNUM* s = nullptr;
  ECDSA_SIG_get0(ecSig.get(), &r, &s);
  std::string raw(2 * kEs256Half, '\0');
  auto* out = reinterpret_cast<unsigned char*>(raw.data());
  if (BN_bn2binpad(r, out, kEs256Half) != static_cast<int>(kEs256Half) ||
      BN_bn2binpad(s, out + kEs256Half, kEs256Half) != static_cast<int>(kEs256Half)) {
    ERR_clear_error();
    return makeError(ErrorCode::kInternal, "signing failed");
  }
  return raw;
}

bool verify(EVP_PKEY* key, Alg alg, std::string_view input, std::string_view signature) {
  if (alg == Alg::kNone || algForKey(key) != alg) return false;
  std::string der;
  if (alg == Alg::kES256) {
    if (signature.size() != 2 * kEs256Half) return false;
    const auto* raw = reinterpret_cast<const unsigned char*>(signature.data());
    EcSig ecSig(ECDSA_SIG_new());
    BIGNUM* r = BN_bin2bn(raw, kEs256Half, nullptr);
    BIGNUM* s = BN_bin2bn(raw + kEs256Half, kEs256Half, nullptr);
    if (!ecSig || !r || !s || ECDSA_SIG_set0(ecSig.get(), r, s) != 1) {
      BN_free(r);
      BN_free(s);
      ERR_clear_error();
      return false;
    }
    unsigned char* buf = nullptr;
    int len = i2d_ECDSA_SIG(ecSig.get(), &buf);
    if (len <= 0) {
      ERR_clear_error();
      return false;
    }
    der.assign(reinterpret_cast<char*>(buf), static_cast<std::size_t>(len));
    OPENSSL_free(buf);
    signature = der;
  } else if (signature.size() != static_cast<std::size_t>(EVP_PKEY_get_size(key))) {
    return false;
  }
  MdCtx ctx(EVP_MD_CTX_new());
  bool ok = ctx && EVP_DigestVerifyInit(ctx.get(), nullptr, EVP_sha256(), nullptr, key) == 1 &&
            EVP_DigestVerify(ctx.get(), reinterpret_cast<const unsigned char*>(signature.data()), signature.size(),
                             reinterpret_cast<const unsigned char*>(input.data()), input.size()) == 1;
  ERR_clear_error();
  return ok;
}

std::optional<std::string> readFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return std::nullopt;
  std::string out;
  char buf[8192];
  while (in.read(buf, sizeof buf) || in.gcount() > 0) {
    out.append(buf, static_cast<std::size_t>(in.gcount()));
    if (out.size() > kMaxKeyFileBytes) return std::nullopt;
  }
  return out;
}

Result<void> writeFileAtomic(const std::string& path, const std::string& content, unsigned mode) {
  std::string tmp = path + ".tmp." + std::to_string(::getpid()) + "." + randomHex(4);
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
  if (fd < 0) return makeError(ErrorCode::kInternal, "cannot write '" + path + "': " + std::strerror(errno));
  bool ok = ::fchmod(fd, mode) == 0;
  for (std::size_t done = 0; ok && done < content.size();) {
    ssize_t n = ::write(fd, content.data() + done, content.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) ok = false;
    else done += static_cast<std::size_t>(n);
  }
  int err = errno;
  ok = ok && ::fsync(fd) == 0;
  if (!ok) err = errno;
  ::close(fd);
  if (ok && ::rename(tmp.c_str(), path.c_str()) != 0) {
    ok = false;
    err = errno;
  }
  if (!ok) {
    ::unlink(tmp.c_str());
    return makeError(ErrorCode::kInternal, "cannot write '" + path + "': " + std::strerror(err));
  }
  return {};
}

Result<void> makePrivateDir(const std::string& dir) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) return makeError(ErrorCode::kInternal, "cannot create '" + dir + "': " + ec.message());
  if (::chmod(dir.c_str(), 0700) != 0)
    return makeError(ErrorCode::kInternal, "cannot restrict '" + dir + "': " + std::strerror(errno));
  return {};
}

DirLock::DirLock(const std::string& dir) {
  fd_ = ::open((dir + "/.lock").c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (fd_ < 0) return;
  while (::flock(fd_, LOCK_EX) != 0) {
    if (errno != EINTR) {
      ::close(fd_);
      fd_ = -1;
      return;
    }
  }
}

DirLock::~DirLock() {
  if (fd_ >= 0) {
    ::flock(fd_, LOCK_UN);
    ::close(fd_);
  }
}

}  // namespace passerelle::identity::jose
