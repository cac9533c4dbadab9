// Signed checkpoints of the audit chain: the file, its lines, the signing and verifying keys (see
// checkpoint_file.h).
#include "gateway/audit/checkpoint_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/bio.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "gateway/audit/record_codec.h"

namespace passerelle::audit::internal {

namespace {

using Json = nlohmann::ordered_json;

std::string opensslError(const char* what) {
  unsigned long e = ERR_get_error();
  char buf[256] = "";
  if (e) ERR_error_string_n(e, buf, sizeof buf);
  ERR_clear_error();
  return std::string(what) + (e ? std::string(": ") + buf : std::string());
}

std::string sysError(const std::string& what, const std::string& path) {
  return what + " " + path + ": " + std::strerror(errno);
}

bool isHex(std::string_view s, std::size_t n) {
  if (s.size() != n) return false;
  for (char c : s)
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  return true;
}

std::string base64(const unsigned char* data, std::size_t n) {
  std::string out(4 * ((n + 2) / 3), '\0');
  int len = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()), data, static_cast<int>(n));
  out.resize(len < 0 ? 0 : static_cast<std::size_t>(len));
  return out;
}

bool unbase64(const std::string& in, std::string& out) {
  if (in.empty() || in.size() % 4 != 0) return false;
  out.assign(3 * in.size() / 4, '\0');
  int len = EVP_DecodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                            reinterpret_cast<const unsigned char*>(in.data()), static_cast<int>(in.size()));
  if (len < 0) return false;
  std::size_t pad = 0;
  if (in[in.size() - 1] == '=') ++pad;
  if (in[in.size() - 2] == '=') ++pad;
  out.resize(static_cast<std::size_t>(len) - pad);
  return true;
}

std::string pemOfPublic(EVP_PKEY* key) {
  BIO* bio = BIO_new(BIO_s_mem());
  std::string out;
  if (bio && PEM_write_bio_PUBKEY(bio, key) == 1) {
    char* p = nullptr;
    long n = BIO_get_mem_data(bio, &p);
    out.assign(p, static_cast<std::size_t>(n));
  }
  BIO_free(bio);
  return out;
}

bool isP256(EVP_PKEY* key) {
  if (!EVP_PKEY_is_a(key, "EC")) return false;
  char group[64] = "";
  std::size_t len = 0;
  if (EVP_PKEY_get_group_name(key, group, sizeof group, &len) != 1) return false;
  return std::string(group) == "prime256v1" || std::string(group) == "P-256";
}

Result<std::string> readFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return makeError(ErrorCode::kInternal, sysError("cannot read", path));
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

Result<void> writeAll(int fd, const std::string& data, const std::string& path) {
  std::size_t done = 0;
  while (done < data.size()) {
    ssize_t n = ::write(fd, data.data() + done, data.size() - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      return makeError(ErrorCode::kInternal, sysError("cannot write", path));
    }
    done += static_cast<std::size_t>(n);
  }
  return {};
}

Result<void> fsyncDir(const std::string& dir) {
  int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return makeError(ErrorCode::kInternal, sysError("cannot open folder", dir));
  int rc = ::fsync(fd);
  ::close(fd);
  if (rc != 0) return makeError(ErrorCode::kInternal, sysError("cannot sync folder", dir));
  return {};
}

// Writes a new file (refusing to replace one) with `mode`, fsynced, and syncs its folder.
Result<void> createFile(const std::string& path, const std::string& data, mode_t mode) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
  if (fd < 0) return makeError(ErrorCode::kInternal, sysError("cannot create", path));
  auto w = writeAll(fd, data, path);
  int rc = w.ok() ? ::fsync(fd) : 0;
  ::close(fd);
  if (!w.ok()) return w.error();
  if (rc != 0) return makeError(ErrorCode::kInternal, sysError("cannot sync", path));
  return fsyncDir(std::filesystem::path(path).parent_path().string());
}

std::string fileIn(const std::string& dir, const char* name) { return (std::filesystem::path(dir) / name).string(); }

}  // namespace

void PkeyFree::operator()(EVP_PKEY* p) const { EVP_PKEY_free(p); }

std::string keyIdOf(EVP_PKEY* key) {
  unsigned char* der = nullptr;
  int len = i2d_PUBKEY(key, &der);
  if (len <= 0) return {};
  unsigned char digest[32];
  unsigned int dlen = 0;
  EVP_Digest(der, static_cast<std::size_t>(len), digest, &dlen, EVP_sha256(), nullptr);
  OPENSSL_free(der);
  char hex[64];
  codec::toHex(digest, 32, hex);
  return std::string(hex, 16);
}

std::string canonicalText(const Checkpoint& c) {
  std::string t = "passerelle-audit-checkpoint/1\n";
  t += "n=" + std::to_string(c.n) + "\n";
  t += "type=" + c.type + "\n";
  t += "seq=" + std::to_string(c.seq) + "\n";
  t += "hash=" + c.hash + "\n";
  t += "timeMs=" + std::to_string(c.timeMs) + "\n";
  t += "records=" + std::to_string(c.records) + "\n";
  t += "cutoffMs=" + std::to_string(c.cutoffMs) + "\n";
  t += "keyId=" + c.keyId + "\n";
  return t;
}

std::string toLine(const Checkpoint& c) {
  Json j;
  j["n"] = c.n;
  j["type"] = c.type;
  j["seq"] = c.seq;
  j["hash"] = c.hash;
  j["timeMs"] = c.timeMs;
  j["records"] = c.records;
  if (c.isAnchor()) j["cutoffMs"] = c.cutoffMs;
  j["keyId"] = c.keyId;
  j["signature"] = c.signature;
  return j.dump();
}

bool parseLine(std::string_view line, Checkpoint& c, std::string& why) {
  Json j = Json::parse(line.begin(), line.end(), nullptr, false);
  if (j.is_discarded() || !j.is_object()) {
    why = "not JSON";
    return false;
  }
  auto integer = [&](const char* k, std::int64_t& out, bool required) {
    auto it = j.find(k);
    if (it == j.end()) return !required;
    if (!it->is_number_integer()) return false;
    out = it->get<std::int64_t>();
    return true;
  };
  auto text = [&](const char* k, std::string& out) {
    auto it = j.find(k);
    if (it == j.end() || !it->is_string()) return false;
    out = it->get<std::string>();
    return true;
  };
  c = Checkpoint{};
  if (!integer("n", c.n, true) || !text("type", c.type) || !integer("seq", c.seq, true) || !text("hash", c.hash) ||
      !integer("timeMs", c.timeMs, true) || !integer("records", c.records, true) ||
      !integer("cutoffMs", c.cutoffMs, false) || !text("keyId", c.keyId) || !text("signature", c.signature)) {
    why = "a member is missing or has the wrong type";
    return false;
  }
  for (auto it = j.begin(); it != j.end(); ++it) {
    static const char* const kKnown[] = {"n", "type", "seq", "hash", "timeMs", "records", "cutoffMs", "keyId", "signature"};
    bool known = false;
    for (const char* k : kKnown) known = known || it.key() == k;
    if (!known) {
      why = "unknown member '" + it.key() + "'";
      return false;
    }
  }
  if (c.type != "checkpoint" && c.type != "anchor") {
    why = "unknown type '" + c.type + "'";
    return false;
  }
  if (!isHex(c.hash, 64) || !isHex(c.keyId, 16) || c.n <= 0 || c.seq < 0) {
    why = "malformed hash, key id, number or seq";
    return false;
  }
  return true;
}

SigningKey::SigningKey(PkeyPtr key) : key_(std::move(key)), keyId_(keyIdOf(key_.get())), publicPem_(pemOfPublic(key_.get())) {}

Result<std::unique_ptr<SigningKey>> SigningKey::load(const std::string& pathOrPem) {
  std::string pem;
  if (pathOrPem.rfind("-----BEGIN", 0) == 0) {
    pem = pathOrPem;
  } else {
    auto f = readFile(pathOrPem);
    if (!f.ok()) return makeError(ErrorCode::kInvalid, "audit signing key: " + f.error().message);
    pem = std::move(f.value());
  }
  BIO* bio = BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size()));
  PkeyPtr key(bio ? PEM_read_bio_PrivateKey(bio, nullptr, nullptr, nullptr) : nullptr);
  BIO_free(bio);
  if (!key) return makeError(ErrorCode::kInvalid, opensslError("audit signing key: not a PEM private key"));
  if (!isP256(key.get())) return makeError(ErrorCode::kInvalid, "audit signing key: not an EC P-256 key");
  return std::unique_ptr<SigningKey>(new SigningKey(std::move(key)));
}

Result<std::unique_ptr<SigningKey>> SigningKey::loadOrGenerate(const std::string& path) {
  std::error_code ec;
  if (std::filesystem::exists(path, ec)) return load(path);
  PkeyPtr key(EVP_EC_gen("P-256"));
  if (!key) return makeError(ErrorCode::kInternal, opensslError("cannot generate the audit signing key"));
  BIO* bio = BIO_new(BIO_s_mem());
  std::string pem;
  if (bio && PEM_write_bio_PrivateKey(bio, key.get(), nullptr, nullptr, 0, nullptr, nullptr) == 1) {
    char* p = nullptr;
    long n = BIO_get_mem_data(bio, &p);
    pem.assign(p, static_cast<std::size_t>(n));
  }
  BIO_free(bio);
  if (pem.empty()) return makeError(ErrorCode::kInternal, opensslError("cannot write the audit signing key"));
  auto w = createFile(path, pem, 0600);
  if (!w.ok()) return w.error();
  return std::unique_ptr<SigningKey>(new SigningKey(std::move(key)));
}

Result<std::string> SigningKey::sign(std::string_view text) const {
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  std::size_t len = 0;
  std::string sig;
  bool ok = ctx && EVP_DigestSignInit(ctx, nullptr, EVP_sha256(), nullptr, key_.get()) == 1 &&
            EVP_DigestSign(ctx, nullptr, &len, reinterpret_cast<const unsigned char*>(text.data()), text.size()) == 1;
  if (ok) {
    sig.resize(len);
    ok = EVP_DigestSign(ctx, reinterpret_cast<unsigned char*>(sig.data()), &len,
                        reinterpret_cast<const unsigned char*>(text.data()), text.size()) == 1;
    sig.resize(len);
  }
  EVP_MD_CTX_free(ctx);
  if (!ok) return makeError(ErrorCode::kInternal, opensslError("cannot sign the audit checkpoint"));
  return base64(reinterpret_cast<const unsigned char*>(sig.data()), sig.size());
}

Result<PublicKeys> PublicKeys::load(const std::string& path) {
  auto f = readFile(path);
  if (!f.ok()) return makeError(ErrorCode::kInvalid, "audit public key: " + f.error().message);
  PublicKeys out;
  BIO* bio = BIO_new_mem_buf(f->data(), static_cast<int>(f->size()));
  while (bio) {
    EVP_PKEY* k = PEM_read_bio_PUBKEY(bio, nullptr, nullptr, nullptr);
    if (!k) break;
    if (isP256(k)) out.keys_.push_back({keyIdOf(k), std::shared_ptr<EVP_PKEY>(k, EVP_PKEY_free)});
    else EVP_PKEY_free(k);
  }
  BIO_free(bio);
  ERR_clear_error();  // the end of the file reads as an error
  if (out.keys_.empty()) return makeError(ErrorCode::kInvalid, "audit public key: no EC P-256 public key in " + path);
  return out;
}

bool PublicKeys::has(const std::string& keyId) const {
  for (const auto& k : keys_)
    if (k.id == keyId) return true;
  return false;
}

std::string PublicKeys::keyIds() const {
  std::string out;
  for (const auto& k : keys_) out += (out.empty() ? "" : ",") + k.id;
  return out;
}

bool PublicKeys::verify(std::string_view text, const std::string& signatureB64, const std::string& keyId) const {
  std::string sig;
  if (!unbase64(signatureB64, sig)) return false;
  for (const auto& k : keys_) {
    if (k.id != keyId) continue;
    EVP_MD_CTX* ctx = EVP_MD_CTX_new();
    bool ok = ctx && EVP_DigestVerifyInit(ctx, nullptr, EVP_sha256(), nullptr, k.key.get()) == 1 &&
              EVP_DigestVerify(ctx, reinterpret_cast<const unsigned char*>(sig.data()), sig.size(),
                               reinterpret_cast<const unsigned char*>(text.data()), text.size()) == 1;
    EVP_MD_CTX_free(ctx);
    ERR_clear_error();
    return ok;
  }
  return false;
}

Result<std::vector<Checkpoint>> readCheckpoints(const std::string& dir) {
  std::vector<Checkpoint> out;
  std::string path = fileIn(dir, kCheckpointFile);
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) return out;
  auto f = readFile(path);
  if (!f.ok()) return f.error();
  std::string_view rest = f.value();
  std::int64_t lineNo = 0;
  while (!rest.empty()) {
    ++lineNo;
    std::size_t nl = rest.find('\n');
    if (nl == std::string_view::npos)
      return makeError(ErrorCode::kInvalid, "checkpoint file: line " + std::to_string(lineNo) + " is incomplete");
    std::string_view line = rest.substr(0, nl);
    rest.remove_prefix(nl + 1);
    Checkpoint c;
    std::string why;
    if (!parseLine(line, c, why))
      return makeError(ErrorCode::kInvalid,
                       "checkpoint file: line " + std::to_string(lineNo) + " is not a checkpoint (" + why + ")");
    out.push_back(std::move(c));
  }
  return out;
}

Result<void> appendCheckpoint(const std::string& dir, const Checkpoint& c) {
  std::string path = fileIn(dir, kCheckpointFile);
  std::error_code ec;
  bool fresh = !std::filesystem::exists(path, ec);
  int fd = ::open(path.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) return makeError(ErrorCode::kInternal, sysError("cannot open", path));
  auto w = writeAll(fd, toLine(c) + "\n", path);
  int rc = w.ok() ? ::fsync(fd) : 0;
  ::close(fd);
  if (!w.ok()) return w.error();
  if (rc != 0) return makeError(ErrorCode::kInternal, sysError("cannot sync", path));
  if (fresh) return fsyncDir(dir);
  return {};
}

Result<void> repairCheckpointFile(const std::string& dir) {
  std::string path = fileIn(dir, kCheckpointFile);
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) return {};
  auto f = readFile(path);
  if (!f.ok()) return f.error();
  if (f->empty() || f->back() == '\n') return {};
  std::size_t keep = f->rfind('\n');
  keep = keep == std::string::npos ? 0 : keep + 1;
  if (::truncate(path.c_str(), static_cast<off_t>(keep)) != 0)
    return makeError(ErrorCode::kInternal, sysError("cannot repair", path));
  return {};
}

Result<void> ensurePublicKey(const std::string& dir, const std::string& publicPem, const std::string& keyId) {
  std::string path = fileIn(dir, kPublicKeysFile);
  std::error_code ec;
  if (std::filesystem::exists(path, ec)) {
    auto keys = PublicKeys::load(path);
    if (keys.ok() && keys->has(keyId)) return {};
    int fd = ::open(path.c_str(), O_WRONLY | O_APPEND | O_CLOEXEC);
    if (fd < 0) return makeError(ErrorCode::kInternal, sysError("cannot open", path));
    auto w = writeAll(fd, publicPem, path);
    int rc = w.ok() ? ::fsync(fd) : 0;
    ::close(fd);
    if (!w.ok()) return w.error();
    if (rc != 0) return makeError(ErrorCode::kInternal, sysError("cannot sync", path));
    return {};
  }
  return createFile(path, publicPem, 0644);
}

Result<void> makeDirs(const std::string& dir) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) return makeError(ErrorCode::kInternal, "cannot create folder " + dir + ": " + ec.message());
  if (!std::filesystem::is_directory(dir, ec)) return makeError(ErrorCode::kInternal, dir + " is not a folder");
  return {};
}

}  // namespace passerelle::audit::internal
