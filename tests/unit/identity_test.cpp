// Identity: development keys, bearer token verification (and the attacks it must refuse), key
// rotation, certificate accounts, the development client PKI and `passerelle token`. Tokens for the
// refusals are built here with OpenSSL directly, independently of the library's signer.
#include <gtest/gtest.h>
#include <openssl/bio.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <thread>

#include "gateway/common/log.h"
#include "gateway/identity/identity.h"
#include "gateway/identity/token_command.h"
#include "tests/support/test_gateway.h"

using namespace passerelle;
using namespace passerelle::identity;
using Json = nlohmann::json;
namespace fs = std::filesystem;

namespace {

constexpr std::int64_t kNow = 1760000000;
constexpr const char* kIssuer = "https://auth.douleur77.test";
constexpr const char* kAudience = "passerelle";

struct PKeyFree {
  void operator()(EVP_PKEY* p) const { EVP_PKEY_free(p); }
};
using PKey = std::unique_ptr<EVP_PKEY, PKeyFree>;
struct X509Free {
  void operator()(X509* p) const { X509_free(p); }
};
using Cert = std::unique_ptr<X509, X509Free>;

std::string readText(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void writeText(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary);
  out << text;
}

std::string hex(const unsigned char* p, std::size_t n) {
  std::string out;
  char buf[3];
  for (std::size_t i = 0; i < n; ++i) {
    std::snprintf(buf, sizeof buf, "%02x", p[i]);
    out += buf;
  }
  return out;
}

std::string sha256Hex(const std::string& bytes) {
  unsigned char md[32];
  unsigned int len = 0;
  EVP_Digest(bytes.data(), bytes.size(), md, &len, EVP_sha256(), nullptr);
  return hex(md, len);
}

// base64url without padding, through OpenSSL's plain base64.
std::string b64(const std::string& bytes) {
  std::string out(4 * ((bytes.size() + 2) / 3) + 1, '\0');
  int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()), reinterpret_cast<const unsigned char*>(bytes.data()),
                          static_cast<int>(bytes.size()));
  out.resize(static_cast<std::size_t>(n));
  while (!out.empty() && out.back() == '=') out.pop_back();
  for (char& c : out) c = c == '+' ? '-' : c == '/' ? '_' : c;
  return out;
}

std::string unb64(std::string text) {
  for (char& c : text) c = c == '-' ? '+' : c == '_' ? '/' : c;
  std::size_t pad = (4 - text.size() % 4) % 4;
  text.append(pad, '=');
  std::string out(text.size(), '\0');
  int n = EVP_DecodeBlock(reinterpret_cast<unsigned char*>(out.data()), reinterpret_cast<const unsigned char*>(text.data()),
                          static_cast<int>(text.size()));
  out.resize(static_cast<std::size_t>(n) - pad);
  return out;
}

std::vector<std::string> parts(const std::string& token) {
  std::vector<std::string> out;
  std::stringstream ss(token);
  std::string p;
  while (std::getline(ss, p, '.')) out.push_back(p);
  return out;
}

PKey loadPrivate(const std::string& path) {
  FILE* f = std::fopen(path.c_str(), "r");
  if (!f) return nullptr;
  PKey k(PEM_read_PrivateKey(f, nullptr, nullptr, nullptr));
  std::fclose(f);
  return k;
}

Cert loadCert(const std::string& path) {
  FILE* f = std::fopen(path.c_str(), "r");
  if (!f) return nullptr;
  Cert c(PEM_read_X509(f, nullptr, nullptr, nullptr));
  std::fclose(f);
  return c;
}

std::string publicPem(EVP_PKEY* key) {
  BIO* bio = BIO_new(BIO_s_mem());
  PEM_write_bio_PUBKEY(bio, key);
  char* data = nullptr;
  long n = BIO_get_mem_data(bio, &data);
  std::string out(data, static_cast<std::size_t>(n));
  BIO_free(bio);
  return out;
}

void writePrivate(const std::string& path, EVP_PKEY* key) {
  FILE* f = std::fopen(path.c_str(), "w");
  ASSERT_NE(f, nullptr);
  PEM_write_PrivateKey(f, key, nullptr, nullptr, 0, nullptr, nullptr);
  std::fclose(f);
}

// The JWS signature of `input` with `key`: R||S for EC keys, PKCS#1 v1.5 for RSA.
std::string signRaw(EVP_PKEY* key, const std::string& input) {
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  std::size_t len = 0;
  EVP_DigestSignInit(ctx, nullptr, EVP_sha256(), nullptr, key);
  EVP_DigestSign(ctx, nullptr, &len, reinterpret_cast<const unsigned char*>(input.data()), input.size());
  std::string sig(len, '\0');
  EVP_DigestSign(ctx, reinterpret_cast<unsigned char*>(sig.data()), &len, reinterpret_cast<const unsigned char*>(input.data()),
                 input.size());
  sig.resize(len);
  EVP_MD_CTX_free(ctx);
  if (EVP_PKEY_get_base_id(key) != EVP_PKEY_EC) return sig;
  const unsigned char* p = reinterpret_cast<const unsigned char*>(sig.data());
  ECDSA_SIG* es = d2i_ECDSA_SIG(nullptr, &p, static_cast<long>(sig.size()));
  unsigned char raw[64];
  BN_bn2binpad(ECDSA_SIG_get0_r(es), raw, 32);
  BN_bn2binpad(ECDSA_SIG_get0_s(es), raw + 32, 32);
  ECDSA_SIG_free(es);
  return std::string(reinterpret_cast<char*>(raw), 64);
}

// Verifies an ES256 JWS signature independently of the library (R||S back to DER).
bool verifyEs256(EVP_PKEY* key, const std::string& input, const std::string& raw) {
  if (raw.size() != 64) return false;
  ECDSA_SIG* es = ECDSA_SIG_new();
  const auto* r = reinterpret_cast<const unsigned char*>(raw.data());
  ECDSA_SIG_set0(es, BN_bin2bn(r, 32, nullptr), BN_bin2bn(r + 32, 32, nullptr));
  unsigned char* der = nullptr;
  int n = i2d_ECDSA_SIG(es, &der);
  ECDSA_SIG_free(es);
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  bool ok = EVP_DigestVerifyInit(ctx, nullptr, EVP_sha256(), nullptr, key) == 1 &&
            EVP_DigestVerify(ctx, der, static_cast<std::size_t>(n), reinterpret_cast<const unsigned char*>(input.data()),
                             input.size()) == 1;
  EVP_MD_CTX_free(ctx);
  OPENSSL_free(der);
  return ok;
}

std::string jws(const Json& header, const Json& claims, EVP_PKEY* key) {
  std::string input = b64(header.dump()) + "." + b64(claims.dump());
  return input + "." + b64(key ? signRaw(key, input) : std::string());
}

std::string hs256(const Json& header, const Json& claims, const std::string& secret) {
  std::string input = b64(header.dump()) + "." + b64(claims.dump());
  unsigned char mac[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  HMAC(EVP_sha256(), secret.data(), static_cast<int>(secret.size()), reinterpret_cast<const unsigned char*>(input.data()),
       input.size(), mac, &len);
  return input + "." + b64(std::string(reinterpret_cast<char*>(mac), len));
}

Json validClaims() {
  return {{"iss", kIssuer}, {"aud", kAudience},        {"sub", "rpps:10101234567"}, {"role", "gp"},
          {"iat", kNow},    {"nbf", kNow},             {"exp", kNow + 600},         {"jti", "t-1"},
          {"scope", "user/*.rs"}, {"practitioner", "rpps:10101234567"}};
}

// Replaces the character at `pos` of `s` by another base64url character.
std::string flip(std::string s, std::size_t pos) {
  s[pos] = s[pos] == 'A' ? 'B' : 'A';
  return s;
}

class IdentityTest : public ::testing::Test {
 protected:
  void SetUp() override {
    log::setLevel(log::Level::kError);  // key rotation logs every key it loads or drops
    dataDir_ = tmp_.path() + "/data";
    keysDir_ = tmp_.path() + "/keys";
    fs::create_directories(dataDir_);
    fs::create_directories(keysDir_);
    auto kid = ensureDevSigningKey(dataDir_);
    ASSERT_TRUE(kid.ok()) << kid.error().message;
    devKid_ = kid.value();
    devKey_ = loadPrivate(devSigningKeyPath(dataDir_));
    ASSERT_TRUE(devKey_);
  }

  TrustOptions trust() const {
    TrustOptions o;
    o.issuer = kIssuer;
    o.audience = kAudience;
    o.keysDir = keysDir_;
    o.dataDir = dataDir_;
    return o;
  }

  std::unique_ptr<TokenVerifier> verifier(TrustOptions o) {
    auto v = TokenVerifier::create(o);
    EXPECT_TRUE(v.ok()) << v.error().message;
    return v.ok() ? std::move(v.value()) : nullptr;
  }

  IssueOptions issue() const {
    IssueOptions o;
    o.subject = "rpps:10101234567";
    o.role = "gp";
    o.practitioner = "rpps:10101234567";
    o.purpose = "TREAT";
    o.scopes = {"user/Observation.rs", "user/Patient.r"};
    o.issuer = kIssuer;
    o.audience = kAudience;
    o.nowSeconds = kNow;
    o.ttlSeconds = 900;
    return o;
  }

  // A header naming the development key.
  Json devHeader(const char* alg = "ES256") const { return {{"alg", alg}, {"typ", "JWT"}, {"kid", devKid_}}; }

  // Adds an RSA key to keysDir as <kid>.pem; its private key goes to <tmp>/<kid>.key.
  std::string addRsaKey(const std::string& kid, unsigned bits = 2048) {
    PKey k(EVP_RSA_gen(bits));
    std::string priv = tmp_.path() + "/" + kid + ".key";
    writePrivate(priv, k.get());
    writeText(keysDir_ + "/" + kid + ".pem", publicPem(k.get()));
    return priv;
  }

  // Expects `token` refused as unauthorized with `reason` in the message.
  void expectRefused(const TokenVerifier& v, const std::string& token, const std::string& reason) {
    auto r = v.verify(token, kNow);
    ASSERT_FALSE(r.ok()) << "accepted: " << reason;
    EXPECT_EQ(r.error().code, ErrorCode::kUnauthorized);
    EXPECT_NE(r.error().message.find(reason), std::string::npos) << "got '" << r.error().message << "', wanted '" << reason << "'";
    EXPECT_EQ(r.error().message.find("BEGIN"), std::string::npos);
  }

  passerelle::testing::TempDir tmp_;
  std::string dataDir_, keysDir_, devKid_;
  PKey devKey_;
};

// ---------------------------------------------------------------------------------------------
// Development signing key

TEST_F(IdentityTest, DevSigningKeyIsCreatedOnceWithPrivateModesAndItsKidFollowsThePublicKey) {
  struct stat st {};
  ASSERT_EQ(stat(devSigningKeyPath(dataDir_).c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  ASSERT_EQ(stat((dataDir_ + "/auth").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0700u);
  EXPECT_EQ(readText(devSigningKeyPath(dataDir_)).rfind("-----BEGIN PRIVATE KEY-----", 0), 0u);
  std::string pub = readText(devSigningPublicKeyPath(dataDir_));
  EXPECT_EQ(pub.rfind("-----BEGIN PUBLIC KEY-----", 0), 0u);
  EXPECT_EQ(pub, publicPem(devKey_.get()));
  EXPECT_EQ(EVP_PKEY_get_base_id(devKey_.get()), EVP_PKEY_EC);

  unsigned char* der = nullptr;
  int n = i2d_PUBKEY(devKey_.get(), &der);
  std::string spki(reinterpret_cast<char*>(der), static_cast<std::size_t>(n));
  OPENSSL_free(der);
  EXPECT_EQ(devKid_, "dev-" + sha256Hex(spki).substr(0, 16));

  std::string before = readText(devSigningKeyPath(dataDir_));
  auto again = ensureDevSigningKey(dataDir_);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again.value(), devKid_);
  EXPECT_EQ(readText(devSigningKeyPath(dataDir_)), before);
  // The public key is written again when it went missing.
  fs::remove(devSigningPublicKeyPath(dataDir_));
  ASSERT_TRUE(ensureDevSigningKey(dataDir_).ok());
  EXPECT_EQ(readText(devSigningPublicKeyPath(dataDir_)), pub);
}

TEST_F(IdentityTest, ConcurrentCreatorsOfTheDevSigningKeyAllGetTheSameKey) {
  std::string fresh = tmp_.path() + "/fresh";
  std::vector<std::string> kids(8);
  std::vector<std::thread> threads;
  for (std::size_t i = 0; i < kids.size(); ++i)
    threads.emplace_back([&, i] {
      auto k = ensureDevSigningKey(fresh);
      kids[i] = k.ok() ? k.value() : "error: " + k.error().message;
    });
  for (auto& t : threads) t.join();
  for (const auto& k : kids) EXPECT_EQ(k, kids[0]);
  EXPECT_EQ(kids[0].rfind("dev-", 0), 0u);
  EXPECT_EQ(kids[0].size(), 20u);
  for (const auto& e : fs::directory_iterator(fresh + "/auth"))
    EXPECT_EQ(e.path().string().find(".tmp."), std::string::npos) << e.path();
}

TEST_F(IdentityTest, ProcessesStartingAtOnceShareOneDevSigningKey) {
  std::string fresh = tmp_.path() + "/shared";
  std::vector<pid_t> children;
  for (int i = 0; i < 4; ++i) {
    pid_t pid = fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      auto k = ensureDevSigningKey(fresh);
      std::ofstream(tmp_.path() + "/kid." + std::to_string(i)) << (k.ok() ? k.value() : "error");
      _exit(k.ok() ? 0 : 1);
    }
    children.push_back(pid);
  }
  for (pid_t pid : children) {
    int status = 0;
    ASSERT_EQ(waitpid(pid, &status, 0), pid);
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  }
  auto kid = ensureDevSigningKey(fresh);
  ASSERT_TRUE(kid.ok());
  for (int i = 0; i < 4; ++i) EXPECT_EQ(readText(tmp_.path() + "/kid." + std::to_string(i)), kid.value());
}

TEST_F(IdentityTest, DevSigningKeyNeedsADataFolder) {
  auto k = ensureDevSigningKey("");
  ASSERT_FALSE(k.ok());
}

// ---------------------------------------------------------------------------------------------
// Verification: what is accepted

TEST_F(IdentityTest, DevTokenRoundTripsToThePrincipal) {
  auto v = verifier(trust());
  ASSERT_TRUE(v);
  auto o = issue();
  o.jti = "token-42";
  auto token = issueDevToken(dataDir_, o);
  ASSERT_TRUE(token.ok()) << token.error().message;
  auto p = v->verify(token.value(), kNow + 10);
  ASSERT_TRUE(p.ok()) << p.error().message;
  EXPECT_EQ(p->subject, "rpps:10101234567");
  EXPECT_EQ(p->role, "gp");
  EXPECT_EQ(p->practitioner, "rpps:10101234567");
  EXPECT_EQ(p->patient, "");
  EXPECT_EQ(p->purpose, "TREAT");
  EXPECT_EQ(p->scopes, (std::vector<std::string>{"user/Observation.rs", "user/Patient.r"}));
  EXPECT_EQ(p->tokenId, "token-42");
  EXPECT_EQ(p->issuer, kIssuer);
  EXPECT_EQ(p->account, "");
  EXPECT_EQ(p->expiresAt, kNow + 900);

  auto pt = issue();
  pt.subject = "pat-1";
  pt.role = "patient";
  pt.practitioner.clear();
  pt.patient = "pat-1";
  pt.purpose.clear();
  pt.scopes = {"patient/*.rs"};
  auto patientToken = issueDevToken(dataDir_, pt);
  ASSERT_TRUE(patientToken.ok());
  auto pp = v->verify(patientToken.value(), kNow);
  ASSERT_TRUE(pp.ok()) << pp.error().message;
  EXPECT_EQ(pp->patient, "pat-1");
  EXPECT_EQ(pp->practitioner, "");
  EXPECT_EQ(pp->purpose, "");
  EXPECT_EQ(pp->tokenId.size(), 32u);  // 128 random bits in hex
  EXPECT_NE(pp->tokenId, p->tokenId);
}

TEST_F(IdentityTest, DevTokenHeaderAndClaimsAreStandardAndTheSignatureIsRawRAndS) {
  auto token = issueDevToken(dataDir_, issue());
  ASSERT_TRUE(token.ok());
  auto p = parts(token.value());
  ASSERT_EQ(p.size(), 3u);
  Json header = Json::parse(unb64(p[0]));
  EXPECT_EQ(header["alg"], "ES256");
  EXPECT_EQ(header["kid"], devKid_);
  EXPECT_EQ(header["typ"], "JWT");
  Json claims = Json::parse(unb64(p[1]));
  EXPECT_EQ(claims["iat"], kNow);
  EXPECT_EQ(claims["nbf"], kNow);
  EXPECT_EQ(claims["exp"], kNow + 900);
  EXPECT_EQ(claims["aud"], kAudience);
  EXPECT_EQ(claims["scope"], "user/Observation.rs user/Patient.r");
  std::string sig = unb64(p[2]);
  EXPECT_EQ(sig.size(), 64u);
  EXPECT_TRUE(verifyEs256(devKey_.get(), p[0] + "." + p[1], sig));
}

TEST_F(IdentityTest, TokenWithoutJtiGetsAnIdFromItsText) {
  auto v = verifier(trust());
  Json c = validClaims();
  c.erase("jti");
  std::string token = jws(devHeader(), c, devKey_.get());
  auto p = v->verify(token, kNow);
  ASSERT_TRUE(p.ok()) << p.error().message;
  EXPECT_EQ(p->tokenId, "sha256:" + sha256Hex(token).substr(0, 32));
}

TEST_F(IdentityTest, Rs256FromAKeyInKeysDirAndEs256FromACertificateVerify) {
  std::string rsaPrivate = addRsaKey("partner-rsa-2026");
  std::string certKey = tmp_.path() + "/cert.key", cert = tmp_.path() + "/cert.crt";
  ASSERT_TRUE(issueDevClientCertificate(tmp_.path() + "/pki", "idp-signer", cert, certKey).ok());
  fs::copy_file(cert, keysDir_ + "/idp-cert.pem");

  auto v = verifier(trust());
  ASSERT_TRUE(v);
  EXPECT_EQ(v->keyIds(), (std::vector<std::string>{devKid_, "idp-cert", "partner-rsa-2026"}));

  auto rs = signToken(rsaPrivate, "partner-rsa-2026", issue());
  ASSERT_TRUE(rs.ok()) << rs.error().message;
  EXPECT_EQ(Json::parse(unb64(parts(rs.value())[0]))["alg"], "RS256");
  auto p = v->verify(rs.value(), kNow);
  ASSERT_TRUE(p.ok()) << p.error().message;
  EXPECT_EQ(p->role, "gp");

  auto es = signToken(certKey, "idp-cert", issue());
  ASSERT_TRUE(es.ok()) << es.error().message;
  EXPECT_TRUE(v->verify(es.value(), kNow).ok());
  // The library's RS256 tokens also verify against an independent signature check of ours.
  PKey rsa = loadPrivate(rsaPrivate);
  auto q = parts(rs.value());
  EXPECT_EQ(signRaw(rsa.get(), q[0] + "." + q[1]), unb64(q[2]));  // PKCS#1 v1.5 is deterministic

  // And tokens signed here, outside the library, verify with it.
  EXPECT_TRUE(v->verify(jws({{"alg", "RS256"}, {"kid", "partner-rsa-2026"}}, validClaims(), rsa.get()), kNow).ok());
  EXPECT_TRUE(v->verify(jws(devHeader(), validClaims(), devKey_.get()), kNow).ok());
}

TEST_F(IdentityTest, TimesAreCheckedWithTheClockSkew) {
  auto v = verifier(trust());
  Json c = validClaims();
  c["exp"] = kNow - 30;  // expired, but within the 60 s skew
  EXPECT_TRUE(v->verify(jws(devHeader(), c, devKey_.get()), kNow).ok());
  c["exp"] = kNow - 60;
  expectRefused(*v, jws(devHeader(), c, devKey_.get()), "token expired");
  c = validClaims();
  c["nbf"] = kNow + 50;
  EXPECT_TRUE(v->verify(jws(devHeader(), c, devKey_.get()), kNow).ok());
  c["exp"] = 1.7600006e9;  // NumericDate may be fractional
  EXPECT_TRUE(v->verify(jws(devHeader(), c, devKey_.get()), kNow).ok());
  c["exp"] = "tomorrow";
  expectRefused(*v, jws(devHeader(), c, devKey_.get()), "invalid expiry");
}

TEST_F(IdentityTest, AudienceMayBeAnArray) {
  auto v = verifier(trust());
  Json c = validClaims();
  c["aud"] = Json::array({"other", kAudience});
  EXPECT_TRUE(v->verify(jws(devHeader(), c, devKey_.get()), kNow).ok());
  c["aud"] = Json::array({"other", "another"});
  expectRefused(*v, jws(devHeader(), c, devKey_.get()), "wrong audience");
}

// ---------------------------------------------------------------------------------------------
// Verification: what is refused

TEST_F(IdentityTest, ExpiredAndNotYetValidTokensAreRefused) {
  auto v = verifier(trust());
  auto o = issue();
  o.nowSeconds = kNow - 7200;
  o.ttlSeconds = 3600;
  expectRefused(*v, issueDevToken(dataDir_, o).value(), "token expired");
  o.nowSeconds = kNow + 600;
  expectRefused(*v, issueDevToken(dataDir_, o).value(), "token not yet valid");
  Json c = validClaims();
  c.erase("nbf");
  c["iat"] = kNow + 600;
  c["exp"] = kNow + 1200;
  expectRefused(*v, jws(devHeader(), c, devKey_.get()), "issued in the future");
  c = validClaims();
  c.erase("exp");
  expectRefused(*v, jws(devHeader(), c, devKey_.get()), "missing expiry");
}

TEST_F(IdentityTest, WrongIssuerOrAudienceIsRefused) {
  auto v = verifier(trust());
  auto o = issue();
  o.issuer = "https://evil.test";
  expectRefused(*v, issueDevToken(dataDir_, o).value(), "wrong issuer");
  o = issue();
  o.audience = "another-gateway";
  expectRefused(*v, issueDevToken(dataDir_, o).value(), "wrong audience");
  Json c = validClaims();
  c.erase("aud");
  expectRefused(*v, jws(devHeader(), c, devKey_.get()), "wrong audience");
  c = validClaims();
  c.erase("iss");
  expectRefused(*v, jws(devHeader(), c, devKey_.get()), "wrong issuer");
}

TEST_F(IdentityTest, MissingOrBadIdentityClaimsAreRefused) {
  auto v = verifier(trust());
  Json c = validClaims();
  c.erase("sub");
  expectRefused(*v, jws(devHeader(), c, devKey_.get()), "missing subject");
  c = validClaims();
  c["sub"] = "";
  expectRefused(*v, jws(devHeader(), c, devKey_.get()), "missing subject");
  c = validClaims();
  c.erase("role");
  expectRefused(*v, jws(devHeader(), c, devKey_.get()), "missing role");
  c = validClaims();
  c["role"] = Json::array({"gp"});
  expectRefused(*v, jws(devHeader(), c, devKey_.get()), "missing role");
  for (const char* bad : {"rpps:123", "rpps:1010123456X", "10101234567", "adeli:12345678", "siret:12345678901"}) {
    c = validClaims();
    c["practitioner"] = bad;
    expectRefused(*v, jws(devHeader(), c, devKey_.get()), "invalid practitioner");
  }
  c = validClaims();
  c["practitioner"] = "adeli:2A1234567";
  EXPECT_TRUE(v->verify(jws(devHeader(), c, devKey_.get()), kNow).ok());
  for (const char* bad : {"../Patient/1", "a b", ""}) {
    c = validClaims();
    c["patient"] = bad;
    expectRefused(*v, jws(devHeader(), c, devKey_.get()), "invalid patient");
  }
  c = validClaims();
  c["patient"] = std::string(65, 'a');
  expectRefused(*v, jws(devHeader(), c, devKey_.get()), "invalid patient");
  c = validClaims();
  c["scope"] = Json::array({"user/*.rs"});
  expectRefused(*v, jws(devHeader(), c, devKey_.get()), "invalid scope");
  c = validClaims();
  c["purpose"] = "TREAT; DROP";
  expectRefused(*v, jws(devHeader(), c, devKey_.get()), "invalid purpose");
}

TEST_F(IdentityTest, HeaderWithoutKidOrWithAnUnknownKidIsRefused) {
  auto v = verifier(trust());
  expectRefused(*v, jws({{"alg", "ES256"}}, validClaims(), devKey_.get()), "missing key id");
  expectRefused(*v, jws({{"alg", "ES256"}, {"kid", 7}}, validClaims(), devKey_.get()), "missing key id");
  expectRefused(*v, jws({{"alg", "ES256"}, {"kid", "dev-0000000000000000"}}, validClaims(), devKey_.get()), "unknown key id");
  expectRefused(*v, jws({{"alg", "ES256"}, {"kid", "../auth/dev-signing.pub"}}, validClaims(), devKey_.get()), "unknown key id");
}

TEST_F(IdentityTest, TamperedPayloadOrSignatureIsRefused) {
  auto v = verifier(trust());
  std::string token = issueDevToken(dataDir_, issue()).value();
  auto p = parts(token);
  ASSERT_TRUE(v->verify(token, kNow).ok());
  // One character of the payload changed.
  std::string tampered = p[0] + "." + flip(p[1], p[1].size() / 2) + "." + p[2];
  expectRefused(*v, tampered, "bad signature");
  // A payload of our choosing with the original signature: a role upgrade.
  Json claims = Json::parse(unb64(p[1]));
  claims["role"] = "admin";
  expectRefused(*v, p[0] + "." + b64(claims.dump()) + "." + p[2], "bad signature");
  // One character of the signature changed.
  expectRefused(*v, p[0] + "." + p[1] + "." + flip(p[2], 10), "bad signature");
  // The signature in DER rather than R||S.
  std::string raw = unb64(p[2]);
  ECDSA_SIG* es = ECDSA_SIG_new();
  ECDSA_SIG_set0(es, BN_bin2bn(reinterpret_cast<const unsigned char*>(raw.data()), 32, nullptr),
                 BN_bin2bn(reinterpret_cast<const unsigned char*>(raw.data()) + 32, 32, nullptr));
  unsigned char* der = nullptr;
  int n = i2d_ECDSA_SIG(es, &der);
  std::string derSig(reinterpret_cast<char*>(der), static_cast<std::size_t>(n));
  OPENSSL_free(der);
  ECDSA_SIG_free(es);
  expectRefused(*v, p[0] + "." + p[1] + "." + b64(derSig), "bad signature");
  // No signature at all.
  expectRefused(*v, p[0] + "." + p[1] + ".", "bad signature");
}

TEST_F(IdentityTest, AlgorithmsOtherThanEs256AndRs256AreRefused) {
  auto v = verifier(trust());
  // alg none, with and without a kid.
  expectRefused(*v, jws({{"alg", "none"}, {"kid", devKid_}}, validClaims(), nullptr), "unsupported algorithm");
  expectRefused(*v, jws({{"alg", "none"}}, validClaims(), nullptr), "unsupported algorithm");
  expectRefused(*v, jws({{"alg", "NONE"}, {"kid", devKid_}}, validClaims(), nullptr), "unsupported algorithm");
  expectRefused(*v, jws({{"kid", devKid_}}, validClaims(), nullptr), "missing algorithm");
  // HS256 with the public key as the HMAC secret: the classic key confusion.
  std::string pub = readText(devSigningPublicKeyPath(dataDir_));
  expectRefused(*v, hs256({{"alg", "HS256"}, {"kid", devKid_}}, validClaims(), pub), "unsupported algorithm");
  expectRefused(*v, hs256({{"alg", "HS256"}, {"kid", devKid_}}, validClaims(), ""), "unsupported algorithm");
  // ES384, PS256: not ours.
  expectRefused(*v, jws({{"alg", "ES384"}, {"kid", devKid_}}, validClaims(), devKey_.get()), "unsupported algorithm");
  expectRefused(*v, jws({{"alg", "PS256"}, {"kid", devKid_}}, validClaims(), devKey_.get()), "unsupported algorithm");
  // An extension we would have to understand.
  expectRefused(*v, jws({{"alg", "ES256"}, {"kid", devKid_}, {"crit", {"exp"}}, {"exp", 1}}, validClaims(), devKey_.get()),
                "critical");
}

TEST_F(IdentityTest, AlgorithmMustMatchTheKeyType) {
  std::string rsaPrivate = addRsaKey("rsa-1");
  auto v = verifier(trust());
  PKey rsa = loadPrivate(rsaPrivate);
  // RS256 named for the EC key: refused whatever the signature.
  expectRefused(*v, jws(devHeader("RS256"), validClaims(), rsa.get()), "algorithm does not match the key");
  expectRefused(*v, jws(devHeader("RS256"), validClaims(), devKey_.get()), "algorithm does not match the key");
  // ES256 named for the RSA key.
  expectRefused(*v, jws({{"alg", "ES256"}, {"kid", "rsa-1"}}, validClaims(), devKey_.get()), "algorithm does not match the key");
  // HS256 with the RSA public key as secret.
  expectRefused(*v, hs256({{"alg", "HS256"}, {"kid", "rsa-1"}}, validClaims(), readText(keysDir_ + "/rsa-1.pem")),
                "unsupported algorithm");
  // A token signed by a key we do not trust, naming a kid we do.
  PKey foreign(EVP_EC_gen("P-256"));
  expectRefused(*v, jws(devHeader(), validClaims(), foreign.get()), "bad signature");
  std::string foreignPath = tmp_.path() + "/foreign.key";
  writePrivate(foreignPath, foreign.get());
  auto forged = signToken(foreignPath, devKid_, issue());
  ASSERT_TRUE(forged.ok());
  expectRefused(*v, forged.value(), "bad signature");
}

TEST_F(IdentityTest, LifetimeAboveTheMaximumIsRefused) {
  auto o = trust();
  o.maxTokenSeconds = 3600;
  auto v = verifier(o);
  auto i = issue();
  i.ttlSeconds = 3601;
  expectRefused(*v, issueDevToken(dataDir_, i).value(), "lifetime too long");
  i.ttlSeconds = 3600;
  EXPECT_TRUE(v->verify(issueDevToken(dataDir_, i).value(), kNow).ok());
  // Without iat, the lifetime counts from now.
  Json c = validClaims();
  c.erase("iat");
  c["exp"] = kNow + 4000;
  expectRefused(*v, jws(devHeader(), c, devKey_.get()), "lifetime too long");
  c["exp"] = kNow + 3000;
  EXPECT_TRUE(v->verify(jws(devHeader(), c, devKey_.get()), kNow).ok());
}

TEST_F(IdentityTest, MalformedTokensAreRefused) {
  auto v = verifier(trust());
  std::string good = issueDevToken(dataDir_, issue()).value();
  auto p = parts(good);
  expectRefused(*v, "", "missing token");
  expectRefused(*v, p[0] + "." + p[1], "malformed token");
  expectRefused(*v, good + ".", "malformed token");
  expectRefused(*v, good + "." + p[2], "malformed token");
  expectRefused(*v, "...", "malformed token");
  expectRefused(*v, "Bearer " + good, "malformed token");
  expectRefused(*v, p[0] + "=." + p[1] + "." + p[2], "malformed token");       // padding
  expectRefused(*v, "e+J." + p[1] + "." + p[2], "malformed token");            // plain base64
  expectRefused(*v, "a." + p[1] + "." + p[2], "malformed token");              // impossible length
  expectRefused(*v, b64("not json") + "." + p[1] + "." + p[2], "malformed token header");
  expectRefused(*v, b64("[1,2]") + "." + p[1] + "." + p[2], "malformed token header");
  expectRefused(*v, std::string(20000, 'a') + "." + p[1] + "." + p[2], "token too large");
  std::string nul = good;
  nul.insert(nul.size() / 2, 1, '\0');
  expectRefused(*v, nul, "malformed token");
  // Non-canonical base64url: 64 bytes take 86 characters, the last one with 4 unused bits; setting
  // one of them keeps the bytes but is another text.
  const std::string alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
  std::string sig = p[2];
  ASSERT_EQ(sig.size(), 86u);
  sig.back() = alphabet[alphabet.find(sig.back()) | 1];
  expectRefused(*v, p[0] + "." + p[1] + "." + sig, "malformed token");
  // A payload that is not an object, or repeats a claim, signed with the trusted key.
  std::string input = p[0] + "." + b64("[]");
  expectRefused(*v, input + "." + b64(signRaw(devKey_.get(), input)), "malformed token claims");
  std::string dup = R"({"iss":"https://evil.test","iss":")" + std::string(kIssuer) +
                    R"(","aud":"passerelle","sub":"x","role":"gp","exp":1760000600})";
  input = p[0] + "." + b64(dup);
  expectRefused(*v, input + "." + b64(signRaw(devKey_.get(), input)), "malformed token claims");
  std::string deep = std::string(500, '[') + std::string(500, ']');
  input = p[0] + "." + b64(R"({"iss":"x","deep":)" + deep + "}");
  expectRefused(*v, input + "." + b64(signRaw(devKey_.get(), input)), "malformed token claims");
}

// ---------------------------------------------------------------------------------------------
// Keys: loading errors and rotation

TEST_F(IdentityTest, CreateNamesTheBadKeyFile) {
  writeText(keysDir_ + "/broken.pem", "-----BEGIN PUBLIC KEY-----\nnot base64\n-----END PUBLIC KEY-----\n");
  auto v = TokenVerifier::create(trust());
  ASSERT_FALSE(v.ok());
  EXPECT_NE(v.error().message.find("broken.pem"), std::string::npos) << v.error().message;
  fs::remove(keysDir_ + "/broken.pem");

  addRsaKey("short-rsa", 1024);
  v = TokenVerifier::create(trust());
  ASSERT_FALSE(v.ok());
  EXPECT_NE(v.error().message.find("short-rsa.pem"), std::string::npos) << v.error().message;
  EXPECT_NE(v.error().message.find("2048"), std::string::npos) << v.error().message;
  fs::remove(keysDir_ + "/short-rsa.pem");

  PKey p384(EVP_EC_gen("P-384"));
  writeText(keysDir_ + "/p384.pem", publicPem(p384.get()));
  v = TokenVerifier::create(trust());
  ASSERT_FALSE(v.ok());
  EXPECT_NE(v.error().message.find("p384.pem"), std::string::npos) << v.error().message;
  fs::remove(keysDir_ + "/p384.pem");

  auto o = trust();
  o.keysDir = tmp_.path() + "/no-such-folder";
  v = TokenVerifier::create(o);
  ASSERT_FALSE(v.ok());
  EXPECT_NE(v.error().message.find("no-such-folder"), std::string::npos);

  writeText(keysDir_ + "/README.txt", "not a key; ignored");
  EXPECT_TRUE(TokenVerifier::create(trust()).ok());
}

TEST_F(IdentityTest, WithoutTrustDevKeyOnlyKeysDirIsTrusted) {
  auto o = trust();
  o.trustDevKey = false;
  auto v = verifier(o);
  EXPECT_TRUE(v->keyIds().empty());
  expectRefused(*v, issueDevToken(dataDir_, issue()).value(), "unknown key id");
}

TEST_F(IdentityTest, KeyAddedToKeysDirIsTrustedAndARemovedOneStopsVerifying) {
  auto o = trust();
  o.rescanSeconds = 0;
  auto v = verifier(o);
  ASSERT_EQ(v->keyIds(), std::vector<std::string>{devKid_});

  std::string priv2026 = addRsaKey("idp-2026");
  auto t2026 = signToken(priv2026, "idp-2026", issue());
  ASSERT_TRUE(t2026.ok());
  auto p = v->verify(t2026.value(), kNow);
  ASSERT_TRUE(p.ok()) << p.error().message;
  EXPECT_EQ(v->keyIds(), (std::vector<std::string>{devKid_, "idp-2026"}));

  // The next key arrives; then the old one is removed.
  std::string priv2027 = addRsaKey("idp-2027");
  auto t2027 = signToken(priv2027, "idp-2027", issue());
  ASSERT_TRUE(v->verify(t2027.value(), kNow).ok());
  fs::remove(keysDir_ + "/idp-2026.pem");
  expectRefused(*v, t2026.value(), "unknown key id");
  EXPECT_TRUE(v->verify(t2027.value(), kNow).ok());
  EXPECT_TRUE(v->verify(issueDevToken(dataDir_, issue()).value(), kNow).ok());

  // A file half-written or broken does not stop the others.
  writeText(keysDir_ + "/idp-2028.pem", "-----BEGIN PUBLIC KEY-----\nMFkw");
  EXPECT_TRUE(v->verify(t2027.value(), kNow).ok());
  expectRefused(*v, jws({{"alg", "RS256"}, {"kid", "idp-2028"}}, validClaims(), loadPrivate(priv2027).get()), "unknown key id");

  // A key replaced under the same kid: the new content is the one trusted.
  std::string replaced = addRsaKey("idp-2027");
  expectRefused(*v, t2027.value(), "bad signature");
  EXPECT_TRUE(v->verify(signToken(replaced, "idp-2027", issue()).value(), kNow).ok());
}

TEST_F(IdentityTest, KeysDirIsNotRescannedMoreOftenThanTheInterval) {
  auto o = trust();
  o.rescanSeconds = 3600;
  auto v = verifier(o);
  std::string priv = addRsaKey("late");
  expectRefused(*v, signToken(priv, "late", issue()).value(), "unknown key id");
  EXPECT_EQ(v->keyIds(), std::vector<std::string>{devKid_});
}

TEST_F(IdentityTest, ConcurrentVerificationsFromEightThreads) {
  std::string rsaPrivate = addRsaKey("rsa-a");
  auto o = trust();
  o.rescanSeconds = 0;  // every call may rescan: the scans race with the verifications
  auto v = verifier(o);
  std::string es = issueDevToken(dataDir_, issue()).value();
  std::string rs = signToken(rsaPrivate, "rsa-a", issue()).value();
  auto pe = parts(es);
  std::string bad = pe[0] + "." + pe[1] + "." + flip(pe[2], 5);
  std::atomic<int> failures{0}, verified{0};
  std::atomic<bool> stop{false};
  std::thread rotator([&] {
    // Keys come and go in the folder meanwhile; rsa-a stays.
    for (int i = 0; !stop; ++i) {
      std::string path = keysDir_ + "/churn.pem";
      if (i % 2 == 0) fs::copy_file(keysDir_ + "/rsa-a.pem", path, fs::copy_options::overwrite_existing);
      else fs::remove(path);
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
  });
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t)
    threads.emplace_back([&, t] {
      for (int i = 0; i < 150; ++i) {
        auto a = v->verify((i + t) % 2 ? es : rs, kNow);
        if (!a.ok() || a->role != "gp") ++failures;
        else ++verified;
        auto b = v->verify(bad, kNow);
        if (b.ok() || b.error().message != "bad signature") ++failures;
      }
    });
  for (auto& t : threads) t.join();
  stop = true;
  rotator.join();
  EXPECT_EQ(failures.load(), 0);
  EXPECT_EQ(verified.load(), 8 * 150);
}

// ---------------------------------------------------------------------------------------------
// Issuing

TEST_F(IdentityTest, SignTokenRefusesUnusableKeys) {
  EXPECT_FALSE(signToken(tmp_.path() + "/missing.key", "k", issue()).ok());
  writeText(tmp_.path() + "/public.pem", readText(devSigningPublicKeyPath(dataDir_)));
  EXPECT_FALSE(signToken(tmp_.path() + "/public.pem", "k", issue()).ok());
  PKey shortRsa(EVP_RSA_gen(1024));
  writePrivate(tmp_.path() + "/short.key", shortRsa.get());
  EXPECT_FALSE(signToken(tmp_.path() + "/short.key", "k", issue()).ok());
  EXPECT_FALSE(signToken(devSigningKeyPath(dataDir_), "", issue()).ok());
  auto o = issue();
  o.ttlSeconds = 0;
  EXPECT_FALSE(signToken(devSigningKeyPath(dataDir_), devKid_, o).ok());
}

TEST(IdentityShapesTest, PractitionerAndPatientIds) {
  EXPECT_TRUE(isPractitionerId("rpps:10101234567"));
  EXPECT_TRUE(isPractitionerId("adeli:771234567"));
  EXPECT_TRUE(isPractitionerId("adeli:2B1234567"));
  EXPECT_FALSE(isPractitionerId("rpps:1010123456"));
  EXPECT_FALSE(isPractitionerId("rpps:101012345678"));
  EXPECT_FALSE(isPractitionerId("RPPS:10101234567"));
  EXPECT_FALSE(isPractitionerId("adeli:7712345"));
  EXPECT_FALSE(isPractitionerId("adeli:77123456A"));
  EXPECT_TRUE(isFhirId("pat-1.2"));
  EXPECT_FALSE(isFhirId("pat_1"));
  EXPECT_FALSE(isFhirId(""));
}

// ---------------------------------------------------------------------------------------------
// Certificate accounts

std::string repoRoot() { return fs::path(__FILE__).parent_path().parent_path().parent_path().string(); }

const char* kFingerprint = "3f0a8c1e5b7d9f2a4c6e8b0d1f3a5c7e9b1d3f5a7c9e1b3d5f7a9c1e3b5d7f9a";

TEST(CertificateAccountsTest, TheExampleFileLoads) {
  auto a = loadAccounts(repoRoot() + "/conf/access/accounts.json");
  ASSERT_TRUE(a.ok()) << a.error().message;
  ASSERT_EQ(a->size(), 2u);
  EXPECT_EQ((*a)[0].name, "gp-software-connector");
  EXPECT_EQ((*a)[0].role, "connector");
  EXPECT_EQ((*a)[0].scopes, std::vector<std::string>{"system/*.cruds"});
  EXPECT_EQ((*a)[0].purpose, "TREAT");
  EXPECT_EQ((*a)[1].name, "caisse-transfer");
  EXPECT_EQ((*a)[1].purpose, "HPAYMT");
  EXPECT_TRUE((*a)[1].fingerprint.empty());
}

TEST(CertificateAccountsTest, MissingFileGivesNoAccounts) {
  passerelle::testing::TempDir dir;
  auto a = loadAccounts(dir.path() + "/accounts.json");
  ASSERT_TRUE(a.ok());
  EXPECT_TRUE(a->empty());
}

TEST(CertificateAccountsTest, BadFilesAreRefusedNamingTheEntry) {
  passerelle::testing::TempDir dir;
  std::string path = dir.path() + "/accounts.json";
  auto refused = [&](const std::string& text, const std::string& expected) {
    writeText(path, text);
    auto a = loadAccounts(path);
    ASSERT_FALSE(a.ok()) << text;
    EXPECT_NE(a.error().message.find(expected), std::string::npos) << a.error().message;
    EXPECT_NE(a.error().message.find(path), std::string::npos) << a.error().message;
  };
  refused("{\"accounts\": [", "not valid JSON");
  refused("[]", "expected an object");
  refused(R"({"version":"2.0","accounts":[]})", "version");
  refused(R"({"accounts":[{"name":"a","role":"system","subject":"CN=a"},{"name":"b","subject":"CN=b"}]})",
          "accounts[1] (\"b\"): no \"role\"");
  refused(R"({"accounts":[{"role":"system","subject":"CN=a"}]})", "accounts[0]: no \"name\"");
  refused(R"({"accounts":[{"name":"c","role":"system"}]})", "accounts[0] (\"c\"): neither \"subject\" nor \"fingerprint\"");
  refused(R"({"accounts":[{"name":"c","role":"system","fingerprint":"abc"}]})", "accounts[0] (\"c\"): \"fingerprint\"");
  refused(R"({"accounts":[{"name":"c","role":"system","subject":"CN=c","fingerprnt":"x"}]})", "unknown member \"fingerprnt\"");
  refused(R"({"accounts":[{"name":"c","role":"system","subject":"CN=c","scopes":"system/*.r"}]})", "\"scopes\"");
  refused(R"({"accounts":[{"name":"c","role":"system","subject":"CN=c"},{"name":"c","role":"system","subject":"CN=d"}]})",
          "accounts[1] (\"c\"): a second account");
  refused(R"({"accounts":[{"name":"c","role":"system","subject":"no dn"}]})", "distinguished name");
}

TEST(CertificateAccountsTest, CertificatesMatchByFingerprintThenBySubject) {
  std::vector<CertificateAccount> accounts = {
      {"pinned", "CN=gp-software-connector,O=Douleur 77 (development)", kFingerprint, "connector", "TREAT", {"system/*.cruds"}},
      {"gp-software-connector", "CN=gp-software-connector,O=Douleur 77 (development)", "", "connector", "TREAT", {"system/*.cruds"}},
      {"by-cn", "CN=lab-results", "", "system", "", {"system/Observation.c"}},
  };
  // The pinned certificate, its fingerprint written with colons and in upper case.
  std::string colons;
  for (std::size_t i = 0; i < 64; i += 2) {
    if (i) colons += ':';
    colons.append(kFingerprint + i, 2);
  }
  for (char& c : colons) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  auto p = principalForCertificate(accounts, "CN=someone-else", colons);
  ASSERT_TRUE(p);
  EXPECT_EQ(p->account, "pinned");
  EXPECT_EQ(p->subject, "pinned");
  EXPECT_EQ(p->tokenId, std::string("cert:") + kFingerprint);

  std::string other(64, 'b');
  for (const char* dn : {"CN=gp-software-connector,O=Douleur 77 (development)", "cn = GP-Software-Connector , o = douleur 77 (development)",
                         "O=Douleur 77 (development),CN=gp-software-connector", "/O=Douleur 77 (development)/CN=gp-software-connector",
                         "commonName=gp-software-connector, organizationName=Douleur 77 (development)"}) {
    auto q = principalForCertificate(accounts, dn, other);
    ASSERT_TRUE(q) << dn;
    EXPECT_EQ(q->account, "gp-software-connector") << dn;
    EXPECT_EQ(q->role, "connector");
    EXPECT_EQ(q->purpose, "TREAT");
    EXPECT_EQ(q->scopes, std::vector<std::string>{"system/*.cruds"});
    EXPECT_EQ(q->tokenId, "cert:" + other);
    EXPECT_EQ(q->expiresAt, 0);
    EXPECT_EQ(q->issuer, "");
  }
  // The CN-only account matches any organisation; the full-DN one does not match a part of it.
  auto r = principalForCertificate(accounts, "CN=lab-results,O=Hôpital,C=FR", other);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->account, "by-cn");
  EXPECT_FALSE(principalForCertificate(accounts, "CN=gp-software-connector", other));
  EXPECT_FALSE(principalForCertificate(accounts, "CN=gp-software-connector,O=Other", other));
  EXPECT_FALSE(principalForCertificate(accounts, "CN=gp-software-connector,O=Douleur 77 (development),OU=x", other));
  EXPECT_FALSE(principalForCertificate(accounts, "CN=lab-results-2", other));
  EXPECT_FALSE(principalForCertificate(accounts, "CN=lab-results,CN=other", other));
  EXPECT_FALSE(principalForCertificate(accounts, "CN=gp-software-connector,O=Douleur 77 (development)", "not-a-fingerprint"));
  EXPECT_FALSE(principalForCertificate({}, "CN=lab-results", other));
}

// ---------------------------------------------------------------------------------------------
// Development client PKI

TEST(DevClientPkiTest, CaAndClientCertificateVerifyAndTheFingerprintIsTheDerSha256) {
  passerelle::testing::TempDir dir;
  std::string pki = dir.path() + "/pki";
  ASSERT_TRUE(ensureDevClientPki(pki).ok());
  struct stat st {};
  ASSERT_EQ(stat((pki + "/ca.key").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  std::string caPem = readText(pki + "/ca.crt");
  ASSERT_TRUE(ensureDevClientPki(pki).ok());
  EXPECT_EQ(readText(pki + "/ca.crt"), caPem);  // created once

  std::string cert = dir.path() + "/out/gp-software-connector.crt", key = dir.path() + "/out/gp-software-connector.key";
  auto r = issueDevClientCertificate(pki, "gp-software-connector", cert, key);
  ASSERT_TRUE(r.ok()) << r.error().message;
  ASSERT_EQ(stat(key.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);

  Cert ca = loadCert(pki + "/ca.crt"), client = loadCert(cert);
  ASSERT_TRUE(ca && client);
  EXPECT_EQ(X509_check_ca(ca.get()), 1);
  EXPECT_EQ(X509_verify(client.get(), X509_get0_pubkey(ca.get())), 1);
  EXPECT_EQ(X509_check_issued(ca.get(), client.get()), X509_V_OK);
  EXPECT_TRUE(X509_get_extended_key_usage(client.get()) & XKU_SSL_CLIENT);
  EXPECT_FALSE(X509_get_extended_key_usage(client.get()) & XKU_SSL_SERVER);
  EXPECT_EQ(X509_check_ca(client.get()), 0);
  PKey clientKey = loadPrivate(key);
  ASSERT_TRUE(clientKey);
  EXPECT_EQ(X509_check_private_key(client.get(), clientKey.get()), 1);
  int days = 0, secs = 0;
  ASSERT_EQ(ASN1_TIME_diff(&days, &secs, X509_get0_notBefore(client.get()), X509_get0_notAfter(client.get())), 1);
  EXPECT_GE(days, 365);
  EXPECT_LE(days, 366);

  // As `openssl x509 -fingerprint -sha256` computes it: SHA-256 over the DER.
  unsigned char* der = nullptr;
  int n = i2d_X509(client.get(), &der);
  std::string derText(reinterpret_cast<char*>(der), static_cast<std::size_t>(n));
  OPENSSL_free(der);
  std::string fingerprint = certificateFingerprint(cert);
  EXPECT_EQ(fingerprint, sha256Hex(derText));
  EXPECT_EQ(fingerprint.size(), 64u);
  EXPECT_EQ(certificateFingerprint(dir.path() + "/none.crt"), "");

  std::string subject = certificateSubject(cert);
  EXPECT_EQ(subject, "CN=gp-software-connector,O=Douleur 77 (development)");
  // The example accounts file recognises it by subject.
  auto accounts = loadAccounts(repoRoot() + "/conf/access/accounts.json");
  ASSERT_TRUE(accounts.ok());
  auto p = principalForCertificate(accounts.value(), subject, fingerprint);
  ASSERT_TRUE(p);
  EXPECT_EQ(p->account, "gp-software-connector");
  EXPECT_EQ(p->tokenId, "cert:" + fingerprint);

  // Another client certificate from the same CA differs.
  std::string cert2 = dir.path() + "/out/caisse-transfer.crt";
  ASSERT_TRUE(issueDevClientCertificate(pki, "caisse-transfer", cert2, dir.path() + "/out/caisse-transfer.key").ok());
  EXPECT_NE(certificateFingerprint(cert2), fingerprint);
  EXPECT_EQ(readText(pki + "/ca.crt"), caPem);

  EXPECT_FALSE(issueDevClientCertificate(pki, "../escape", dir.path() + "/x.crt", dir.path() + "/x.key").ok());
  EXPECT_FALSE(issueDevClientCertificate(pki, "", dir.path() + "/x.crt", dir.path() + "/x.key").ok());
  EXPECT_FALSE(fs::exists(dir.path() + "/x.crt"));
}

// ---------------------------------------------------------------------------------------------
// passerelle token

struct CommandResult {
  int status;
  std::string out, err;
};

CommandResult runToken(std::vector<std::string> args) {
  args.insert(args.begin(), {"passerelle", "token"});
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  ::testing::internal::CaptureStdout();
  ::testing::internal::CaptureStderr();
  int status = tokenCommand(static_cast<int>(args.size()), argv.data());
  CommandResult r;
  r.status = status;
  r.out = ::testing::internal::GetCapturedStdout();
  r.err = ::testing::internal::GetCapturedStderr();
  return r;
}

TEST(TokenCommandTest, IssuesADevTokenTheVerifierAccepts) {
  passerelle::testing::TempDir dir;
  auto r = runToken({"issue", "--role", "gp", "--practitioner", "rpps:10101234567", "--purpose", "TREAT", "--scope",
                     "user/Observation.rs patient/Observation.r", "--scope=user/Patient.r", "--config", "/dev/null", "--set",
                     "data.dir=" + dir.path(), "--set", "auth.issuer=https://idp.test"});
  ASSERT_EQ(r.status, 0) << r.err;
  ASSERT_FALSE(r.out.empty());
  EXPECT_EQ(r.out.back(), '\n');
  std::string token = r.out.substr(0, r.out.size() - 1);

  TrustOptions o;
  o.issuer = "https://idp.test";
  o.audience = "passerelle";  // the default auth.audience
  o.dataDir = dir.path();
  auto v = TokenVerifier::create(o);
  ASSERT_TRUE(v.ok()) << v.error().message;
  auto p = v.value()->verify(token, std::time(nullptr));
  ASSERT_TRUE(p.ok()) << p.error().message;
  EXPECT_EQ(p->subject, "rpps:10101234567");
  EXPECT_EQ(p->practitioner, "rpps:10101234567");
  EXPECT_EQ(p->purpose, "TREAT");
  EXPECT_EQ(p->scopes, (std::vector<std::string>{"user/Observation.rs", "patient/Observation.r", "user/Patient.r"}));
  EXPECT_LE(p->expiresAt, std::time(nullptr) + 3600);
  EXPECT_GT(p->expiresAt, std::time(nullptr) + 3500);

  auto patient = runToken({"issue", "--role", "patient", "--patient", "pat-7", "--ttl", "60", "--config", "/dev/null", "--set",
                           "data.dir=" + dir.path(), "--set", "auth.issuer=https://idp.test"});
  ASSERT_EQ(patient.status, 0) << patient.err;
  auto pp = v.value()->verify(patient.out.substr(0, patient.out.size() - 1), std::time(nullptr));
  ASSERT_TRUE(pp.ok()) << pp.error().message;
  EXPECT_EQ(pp->subject, "pat-7");
  EXPECT_EQ(pp->patient, "pat-7");
  EXPECT_EQ(pp->scopes, std::vector<std::string>{"patient/*.rs"});
  EXPECT_LE(pp->expiresAt, std::time(nullptr) + 60);

  auto system = runToken({"issue", "--role", "auditor", "--config", "/dev/null", "--set", "data.dir=" + dir.path(), "--set",
                          "auth.issuer=https://idp.test"});
  ASSERT_EQ(system.status, 0) << system.err;
  auto ps = v.value()->verify(system.out.substr(0, system.out.size() - 1), std::time(nullptr));
  ASSERT_TRUE(ps.ok());
  EXPECT_EQ(ps->subject, "auditor");
  EXPECT_EQ(ps->scopes, std::vector<std::string>{"user/*.cruds"});
}

TEST(TokenCommandTest, UsageErrorsAndProductionAreRefused) {
  passerelle::testing::TempDir dir;
  std::string dataDir = "data.dir=" + dir.path();
  auto help = runToken({"issue", "--help"});
  EXPECT_EQ(help.status, 0);
  EXPECT_NE(help.out.find("Usage: passerelle token issue"), std::string::npos);
  EXPECT_EQ(runToken({"--help"}).status, 0);
  EXPECT_EQ(runToken({}).status, 2);
  EXPECT_EQ(runToken({"mint"}).status, 2);

  auto noRole = runToken({"issue", "--config", "/dev/null", "--set", dataDir});
  EXPECT_EQ(noRole.status, 2);
  EXPECT_NE(noRole.err.find("--role"), std::string::npos);
  EXPECT_NE(noRole.err.find("Usage:"), std::string::npos);
  EXPECT_TRUE(noRole.out.empty());
  for (const char* ttl : {"0", "-5", "abc", "1h", "99999999999999"}) {
    auto r = runToken({"issue", "--role", "gp", "--ttl", ttl, "--config", "/dev/null", "--set", dataDir});
    EXPECT_EQ(r.status, 2) << ttl;
    EXPECT_NE(r.err.find("Usage:"), std::string::npos) << ttl;
  }
  auto longer = runToken({"issue", "--role", "gp", "--ttl", "90000", "--config", "/dev/null", "--set", dataDir});
  EXPECT_EQ(longer.status, 2);
  EXPECT_NE(longer.err.find("auth.max_token_seconds"), std::string::npos);
  EXPECT_EQ(runToken({"issue", "--role", "gp", "--practitioner", "rpps:10101234567", "--patient", "p1", "--config",
                      "/dev/null", "--set", dataDir})
                .status,
            2);
  EXPECT_EQ(runToken({"issue", "--role", "gp", "--practitioner", "rpps:1", "--config", "/dev/null", "--set", dataDir}).status, 2);
  EXPECT_EQ(runToken({"issue", "--role", "gp", "--frobnicate", "--config", "/dev/null"}).status, 2);
  EXPECT_EQ(runToken({"issue", "--role"}).status, 2);
  EXPECT_EQ(runToken({"issue", "--role", "gp", "--config", "/dev/null", "--set", "auth.clock_skew_seconds=9999"}).status, 2);

  auto prod = runToken({"issue", "--role", "gp", "--config", "/dev/null", "--set", dataDir, "--set", "deployment=production"});
  EXPECT_EQ(prod.status, 1);
  EXPECT_NE(prod.err.find("token issue uses the development key and is refused when deployment=production"), std::string::npos)
      << prod.err;
  EXPECT_TRUE(prod.out.empty());
  EXPECT_FALSE(fs::exists(dir.path() + "/auth"));
  auto prodCert = runToken({"client-cert", "--name", "x", "--out", dir.path() + "/c", "--config", "/dev/null", "--set", dataDir,
                            "--set", "deployment=production"});
  EXPECT_EQ(prodCert.status, 1);
  EXPECT_NE(prodCert.err.find("deployment=production"), std::string::npos);
  EXPECT_FALSE(fs::exists(dir.path() + "/c"));
}

TEST(TokenCommandTest, ClientCertWritesTheCertificateAndPrintsItsFingerprint) {
  passerelle::testing::TempDir dir;
  std::string out = dir.path() + "/certs";
  auto r = runToken({"client-cert", "--name", "gp-software-connector", "--out", out, "--config", "/dev/null", "--set",
                     "data.dir=" + dir.path()});
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(r.out, certificateFingerprint(out + "/gp-software-connector.crt") + "\n");
  EXPECT_EQ(r.out.size(), 65u);
  EXPECT_TRUE(fs::exists(out + "/gp-software-connector.key"));
  EXPECT_TRUE(fs::exists(dir.path() + "/auth/client-pki/ca.crt"));
  Cert ca = loadCert(dir.path() + "/auth/client-pki/ca.crt"), client = loadCert(out + "/gp-software-connector.crt");
  ASSERT_TRUE(ca && client);
  EXPECT_EQ(X509_verify(client.get(), X509_get0_pubkey(ca.get())), 1);
  EXPECT_EQ(runToken({"client-cert", "--out", out, "--config", "/dev/null"}).status, 2);
  EXPECT_EQ(runToken({"client-cert", "--name", "x", "--config", "/dev/null"}).status, 2);
}

}  // namespace
