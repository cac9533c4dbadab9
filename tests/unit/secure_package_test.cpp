// Secure package tests: ZIP round trips and refusals, CMS seal/open round trips, and the openssl
// command-line tool as the independent judge both ways (it opens what seal makes, open opens what it
// makes). Every key and certificate is made here at run time with the OpenSSL C API.
#include "connectors/secureupload/secure_package.h"

#include <gtest/gtest.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <fstream>
#include <memory>
#include <random>
#include <sstream>

#include "tests/support/test_gateway.h"

namespace {

namespace su = passerelle::secureupload;
using passerelle::testing::TempDir;

// -----------------------------------------------------------------------------------------------
// Files and commands

void writeBytes(const std::string& path, std::string_view bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  ASSERT_TRUE(out.good()) << path;
}

std::string readBytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

struct Command {
  int status = -1;
  std::string output;  // standard output and error together
};

Command run(const std::string& command, const std::string& dir) {
  const std::string log = dir + "/command.log";
  Command r;
  r.status = std::system((command + " >" + log + " 2>&1 </dev/null").c_str());
  r.output = command + "\n" + readBytes(log);
  return r;
}

bool have(const char* tool) { return std::system((std::string("command -v ") + tool + " >/dev/null 2>&1").c_str()) == 0; }

std::string randomBytes(std::size_t n, unsigned seed) {
  std::mt19937 gen(seed);
  std::string s(n, '\0');
  for (char& c : s) c = static_cast<char>(gen() & 0xFF);
  return s;
}

// -----------------------------------------------------------------------------------------------
// Keys and certificates

using KeyPtr = std::unique_ptr<EVP_PKEY, decltype(&EVP_PKEY_free)>;
using CertPtr = std::unique_ptr<X509, decltype(&X509_free)>;

struct Identity {
  KeyPtr key{nullptr, EVP_PKEY_free};
  CertPtr certificate{nullptr, X509_free};
  std::string certificatePem, keyPem, subject;
  su::Credentials credentials() const { return {certificatePem, keyPem}; }
};

struct Spec {
  std::string commonName;
  bool ec = false;
  int rsaBits = 2048;
  long notBefore = -3600;          // seconds from now
  long notAfter = 30L * 86400;     // seconds from now
  std::string keyUsage{};          // X509V3 configuration text, "" for no keyUsage extension
  std::string extendedKeyUsage{};  // idem
  bool ca = false;
  const Identity* issuer = nullptr;  // self-signed when null
};

std::string pemOf(X509* x) {
  std::unique_ptr<BIO, decltype(&BIO_free)> bio(BIO_new(BIO_s_mem()), BIO_free);
  PEM_write_bio_X509(bio.get(), x);
  char* data = nullptr;
  long n = BIO_get_mem_data(bio.get(), &data);
  return std::string(data, static_cast<std::size_t>(n));
}

std::string pemOf(EVP_PKEY* key, const char* passphrase = nullptr) {
  std::unique_ptr<BIO, decltype(&BIO_free)> bio(BIO_new(BIO_s_mem()), BIO_free);
  if (passphrase) {
    PEM_write_bio_PKCS8PrivateKey(bio.get(), key, EVP_aes_256_cbc(), passphrase, static_cast<int>(std::strlen(passphrase)), nullptr,
                                  nullptr);
  } else {
    PEM_write_bio_PrivateKey(bio.get(), key, nullptr, nullptr, 0, nullptr, nullptr);
  }
  char* data = nullptr;
  long n = BIO_get_mem_data(bio.get(), &data);
  return std::string(data, static_cast<std::size_t>(n));
}

Identity makeIdentity(const Spec& spec) {
  static long serial = 1000;
  Identity id;
  id.key.reset(spec.ec ? EVP_EC_gen("P-256") : EVP_RSA_gen(static_cast<unsigned>(spec.rsaBits)));
  id.certificate.reset(X509_new());
  X509* x = id.certificate.get();
  if (!id.key || !x) throw std::runtime_error("key generation failed");
  X509_set_version(x, 2);
  ASN1_INTEGER_set(X509_get_serialNumber(x), ++serial);
  X509_gmtime_adj(X509_getm_notBefore(x), spec.notBefore);
  X509_gmtime_adj(X509_getm_notAfter(x), spec.notAfter);
  X509_NAME* name = X509_get_subject_name(x);
  auto addName = [&](const char* field, const std::string& value) {
    X509_NAME_add_entry_by_txt(name, field, MBSTRING_UTF8, reinterpret_cast<const unsigned char*>(value.c_str()), -1, -1, 0);
  };
  addName("C", "FR");
  addName("O", "Passerelle test");
  addName("CN", spec.commonName);
  X509_set_issuer_name(x, spec.issuer ? X509_get_subject_name(spec.issuer->certificate.get()) : name);
  X509_set_pubkey(x, id.key.get());
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, spec.issuer ? spec.issuer->certificate.get() : x, x, nullptr, nullptr, 0);
  auto addExtension = [&](int nid, const std::string& value) {
    if (value.empty()) return;
    X509_EXTENSION* e = X509V3_EXT_conf_nid(nullptr, &ctx, nid, value.c_str());
    if (!e) throw std::runtime_error("bad extension " + value);
    X509_add_ext(x, e, -1);
    X509_EXTENSION_free(e);
  };
  addExtension(NID_basic_constraints, spec.ca ? "critical,CA:TRUE" : "");
  addExtension(NID_key_usage, spec.keyUsage);
  addExtension(NID_ext_key_usage, spec.extendedKeyUsage);
  addExtension(NID_subject_key_identifier, "hash");
  if (!X509_sign(x, spec.issuer ? spec.issuer->key.get() : id.key.get(), EVP_sha256())) throw std::runtime_error("signing failed");
  id.certificatePem = pemOf(x);
  id.keyPem = pemOf(id.key.get());
  id.subject = "CN=" + spec.commonName + ",O=Passerelle test,C=FR";
  return id;
}

// The identities every test shares (RSA key generation takes a moment).
struct Pki {
  Identity signer = makeIdentity({.commonName = "Réseau Douleur 77 signer", .keyUsage = "critical,digitalSignature,nonRepudiation"});
  Identity otherSigner = makeIdentity({.commonName = "Someone else", .keyUsage = "critical,digitalSignature"});
  Identity caisse = makeIdentity({.commonName = "Caisse RSA", .keyUsage = "critical,keyEncipherment"});
  Identity caisseEc = makeIdentity({.commonName = "Caisse EC", .ec = true, .keyUsage = "critical,keyAgreement"});
  Identity bystander = makeIdentity({.commonName = "Bystander"});
  static const Pki& get() {
    static const Pki pki;
    return pki;
  }
};

std::int64_t now() { return static_cast<std::int64_t>(std::time(nullptr)); }

// -----------------------------------------------------------------------------------------------
// ZIP

std::vector<su::Entry> sampleEntries() {
  std::string big = randomBytes(5u << 20, 7);
  for (std::size_t i = 0; i < big.size(); i += 3) big[i] = 'x';  // partly compressible
  return {{"extract/patients.csv", "id;birth;sex\r\n1;1970-01-01;F\r\n2;1980-02-02;M\r\n"},
          {"empty.csv", ""},
          {"extract/big.bin", big},
          {"MeasureReport.json", R"({"resourceType":"MeasureReport","status":"complete"})"},
          {"données/résumé.csv", "é;à\n"},
          {"manifest.json", R"({"files":3})"}};
}

// `archive` with every occurrence of `from` replaced by `to` (same length): a name changed in both
// headers, the CRC still right.
std::string renamed(std::string archive, const std::string& from, const std::string& to) {
  EXPECT_EQ(from.size(), to.size());
  for (std::size_t at = archive.find(from); at != std::string::npos; at = archive.find(from, at + 1)) archive.replace(at, from.size(), to);
  return archive;
}

void putU32(std::string& b, std::size_t at, std::uint32_t v) {
  for (int i = 0; i < 4; ++i) b[at + i] = static_cast<char>((v >> (8 * i)) & 0xFF);
}

TEST(SecurePackageZip, RoundTripKeepsNamesOrderAndBytes) {
  const std::vector<su::Entry> entries = sampleEntries();
  std::string archive, error;
  ASSERT_TRUE(su::zip(entries, archive, error)) << error;
  EXPECT_LT(archive.size(), entries[2].bytes.size()) << "the big entry is deflated";
  std::vector<su::Entry> back;
  ASSERT_TRUE(su::unzip(archive, back, error)) << error;
  ASSERT_EQ(back.size(), entries.size());
  for (std::size_t i = 0; i < entries.size(); ++i) {
    EXPECT_EQ(back[i].name, entries[i].name);
    EXPECT_EQ(back[i].bytes.size(), entries[i].bytes.size()) << entries[i].name;
    EXPECT_TRUE(back[i].bytes == entries[i].bytes) << entries[i].name;
  }
  std::string again;
  ASSERT_TRUE(su::zip(entries, again, error)) << error;
  EXPECT_EQ(su::sha256Hex(again), su::sha256Hex(archive)) << "the same entries give the same archive";
}

TEST(SecurePackageZip, EmptyArchive) {
  std::string archive, error;
  ASSERT_TRUE(su::zip({}, archive, error)) << error;
  std::vector<su::Entry> back{{"stale", "x"}};
  ASSERT_TRUE(su::unzip(archive, back, error)) << error;
  EXPECT_TRUE(back.empty());
}

TEST(SecurePackageZip, PythonReadsOursAndWeReadPythons) {
  if (!have("python3")) GTEST_SKIP() << "python3 is not installed";
  TempDir dir;
  std::string archive, error;
  ASSERT_TRUE(su::zip(sampleEntries(), archive, error)) << error;
  writeBytes(dir.path() + "/ours.zip", archive);
  // Python's zipfile checks every CRC (testzip) and lists the files with their sizes.
  const std::string script = dir.path() + "/check.py";
  writeBytes(script,
             "import sys, zipfile\n"
             "z = zipfile.ZipFile(sys.argv[1])\n"
             "assert z.testzip() is None\n"
             "listing = ';'.join(sorted('%s=%d' % (i.filename, i.file_size) for i in z.infolist() if not i.is_dir()))\n"
             "open(sys.argv[3], 'wb').write(listing.encode('utf-8'))\n"
             "w = zipfile.ZipFile(sys.argv[2], 'w')\n"
             "w.writestr('folder/', b'')\n"
             "w.writestr(zipfile.ZipInfo('folder/stored.txt'), b'plain' * 10)\n"
             "w.writestr('folder/deflated.csv', b'a;b\\n' * 10000, compress_type=zipfile.ZIP_DEFLATED)\n"
             "w.close()\n");
  Command r =
      run("python3 " + script + " " + dir.path() + "/ours.zip " + dir.path() + "/theirs.zip " + dir.path() + "/list.txt", dir.path());
  ASSERT_EQ(r.status, 0) << r.output;
  std::vector<std::string> files;
  for (const su::Entry& e : sampleEntries()) files.push_back(e.name + "=" + std::to_string(e.bytes.size()));
  std::sort(files.begin(), files.end());
  std::string expected;
  for (const std::string& f : files) expected += (expected.empty() ? "" : ";") + f;
  EXPECT_EQ(readBytes(dir.path() + "/list.txt"), expected);

  std::vector<su::Entry> theirs;
  ASSERT_TRUE(su::unzip(readBytes(dir.path() + "/theirs.zip"), theirs, error)) << error;
  ASSERT_EQ(theirs.size(), 2u) << "the folder entry is skipped";
  EXPECT_EQ(theirs[0].name, "folder/stored.txt");
  EXPECT_EQ(theirs[0].bytes.size(), 50u);
  EXPECT_EQ(theirs[1].name, "folder/deflated.csv");
  EXPECT_EQ(theirs[1].bytes.size(), 40000u);
}

TEST(SecurePackageZip, ZipRefusesUnsafeOrRepeatedNames) {
  std::string archive, error;
  for (const char* bad : {"../x", "/etc/passwd", "a\\b", "a/../../x", "./a", "a//b", "a/", "", "C:x", "a\x01"}) {
    EXPECT_FALSE(su::zip({{bad, "data"}}, archive, error)) << bad;
    EXPECT_NE(error.find("refused"), std::string::npos) << error;
    EXPECT_TRUE(archive.empty());
  }
  EXPECT_FALSE(su::zip({{"a", ""}, {"b", ""}, {"a", ""}}, archive, error));
  EXPECT_NE(error.find("'a' appears twice"), std::string::npos) << error;
  EXPECT_FALSE(su::zip({{std::string("caf\xC3", 4), ""}}, archive, error)) << "not UTF-8";
  EXPECT_FALSE(su::zip({{"a", "file"}, {"a/b", "in a folder named like the file"}}, archive, error));
  EXPECT_NE(error.find("needs 'a' to be a folder"), std::string::npos) << error;
}

TEST(SecurePackageZip, UnzipRefusesUnsafeNames) {
  std::string good, error;
  ASSERT_TRUE(su::zip({{"QQQQ", "payload"}, {"RRRR", "other"}}, good, error)) << error;
  struct Case {
    const char* name;
    const char* why;
  };
  for (const Case& c : {Case{"../x", "'..' path segment"}, Case{"/abs", "absolute path"}, Case{"a\\bc", "backslash"},
                        Case{"a/..", "'..' path segment"}, Case{"C:/x", "':'"}, Case{"a//b", "empty path segment"}}) {
    std::vector<su::Entry> out{{"stale", "x"}};
    EXPECT_FALSE(su::unzip(renamed(good, "QQQQ", c.name), out, error)) << c.name;
    EXPECT_NE(error.find(c.why), std::string::npos) << c.name << ": " << error;
    EXPECT_TRUE(out.empty());
  }
  std::vector<su::Entry> out;
  EXPECT_FALSE(su::unzip(renamed(good, "RRRR", "QQQQ"), out, error));
  EXPECT_NE(error.find("'QQQQ' appears twice"), std::string::npos) << error;
  EXPECT_FALSE(su::unzip(renamed(good, "RRRR", std::string("R\x01RR", 4)), out, error));
  EXPECT_NE(error.find("control character"), std::string::npos) << error;
  // A name that is a file and the folder of another entry.
  std::string nested;
  ASSERT_TRUE(su::zip({{"QQQQ", "file"}, {"RRRR/x", "other"}}, nested, error)) << error;
  EXPECT_FALSE(su::unzip(renamed(nested, "RRRR", "QQQQ"), out, error));
  EXPECT_NE(error.find("needs 'QQQQ' to be a folder"), std::string::npos) << error;
}

TEST(SecurePackageZip, UnzipEnforcesTheSizeCapBeforeInflating) {
  std::string archive, error;
  const std::string zeros(5u << 20, '\0');  // deflates to a few kilobytes
  ASSERT_TRUE(su::zip({{"a.bin", zeros}, {"b.bin", "tail"}}, archive, error)) << error;
  ASSERT_LT(archive.size(), 64u << 10);
  std::vector<su::Entry> out;
  EXPECT_FALSE(su::unzip(archive, out, error, 1u << 20));
  EXPECT_NE(error.find("more than the limit of 1048576"), std::string::npos) << error;
  EXPECT_FALSE(su::unzip(archive, out, error, zeros.size() + 3));
  ASSERT_TRUE(su::unzip(archive, out, error, zeros.size() + 4)) << error;
  EXPECT_EQ(out[0].bytes.size(), zeros.size());

  // Headers that understate the size (a zip bomb hiding): inflating stops at the declared size.
  std::string lying = archive;
  const std::size_t central = lying.find(std::string("PK\x01\x02", 4));
  ASSERT_NE(central, std::string::npos);
  putU32(lying, 22, 1000);            // local header, uncompressed size of a.bin
  putU32(lying, central + 24, 1000);  // central directory, idem
  EXPECT_FALSE(su::unzip(lying, out, error, 1u << 20));
  EXPECT_NE(error.find("inflates to more than its declared 1000 bytes"), std::string::npos) << error;
}

TEST(SecurePackageZip, UnzipSurvivesGarbageTruncationAndFlips) {
  std::string archive, error;
  ASSERT_TRUE(su::zip({{"a.csv", "one;two\n1;2\n"}, {"b/c.json", "{\"k\":[1,2,3]}"}, {"d", ""}}, archive, error)) << error;
  std::vector<su::Entry> reference;
  ASSERT_TRUE(su::unzip(archive, reference, error)) << error;
  std::vector<su::Entry> out;
  EXPECT_FALSE(su::unzip("", out, error));
  EXPECT_NE(error.find("not a ZIP archive"), std::string::npos) << error;
  EXPECT_FALSE(su::unzip(randomBytes(100000, 3), out, error));
  for (std::size_t n = 0; n < archive.size(); ++n) EXPECT_FALSE(su::unzip(archive.substr(0, n), out, error)) << "truncated at " << n;
  // Every single-byte change is refused or changes nothing that matters (a date, a version field).
  int refused = 0;
  for (std::size_t i = 0; i < archive.size(); ++i) {
    std::string changed = archive;
    changed[i] = static_cast<char>(changed[i] ^ 0x5A);
    if (!su::unzip(changed, out, error)) {
      ++refused;
      EXPECT_FALSE(error.empty());
      continue;
    }
    ASSERT_EQ(out.size(), reference.size()) << "byte " << i;
    for (std::size_t k = 0; k < out.size(); ++k) {
      EXPECT_EQ(out[k].name, reference[k].name) << "byte " << i;
      EXPECT_EQ(out[k].bytes, reference[k].bytes) << "byte " << i;
    }
  }
  EXPECT_GT(refused, static_cast<int>(archive.size() / 2));
}

// -----------------------------------------------------------------------------------------------
// Recipient checks

TEST(SecurePackageRecipient, AcceptsEncryptionCertificates) {
  const Pki& pki = Pki::get();
  std::string error;
  EXPECT_TRUE(su::checkRecipient(pki.caisse.certificatePem, now(), error)) << error;
  EXPECT_TRUE(su::checkRecipient(pki.caisseEc.certificatePem, now(), error)) << error;
  EXPECT_TRUE(su::checkRecipient(pki.bystander.certificatePem, now(), error)) << "no keyUsage: " << error;
  Identity tlsClient =
      makeIdentity({.commonName = "Client auth only", .keyUsage = "digitalSignature,keyEncipherment", .extendedKeyUsage = "clientAuth"});
  EXPECT_TRUE(su::checkRecipient(tlsClient.certificatePem, now(), error)) << "the extendedKeyUsage is not checked: " << error;
}

TEST(SecurePackageRecipient, RefusesExpiredNotYetValidAndSignatureOnly) {
  const Pki& pki = Pki::get();
  std::string error;
  Identity expired = makeIdentity({.commonName = "Expired caisse", .notBefore = -10L * 86400, .notAfter = -86400});
  EXPECT_FALSE(su::checkRecipient(expired.certificatePem, now(), error));
  EXPECT_NE(error.find("'" + expired.subject + "' expired on 20"), std::string::npos) << error;
  EXPECT_FALSE(su::checkRecipient(pki.caisse.certificatePem, now() + 40L * 86400, error)) << "expired by then";
  EXPECT_NE(error.find("expired on"), std::string::npos) << error;
  EXPECT_FALSE(su::checkRecipient(pki.caisse.certificatePem, now() - 2L * 86400, error)) << "not valid yet then";
  EXPECT_NE(error.find("'" + pki.caisse.subject + "' is not valid before 20"), std::string::npos) << error;

  Identity signOnly = makeIdentity({.commonName = "Signature only", .keyUsage = "critical,digitalSignature"});
  EXPECT_FALSE(su::checkRecipient(signOnly.certificatePem, now(), error));
  EXPECT_NE(error.find("'" + signOnly.subject + "' does not allow key encipherment (its keyUsage is digitalSignature)"), std::string::npos)
      << error;
  Identity ecSignOnly = makeIdentity({.commonName = "EC signature only", .ec = true, .keyUsage = "digitalSignature,keyEncipherment"});
  EXPECT_FALSE(su::checkRecipient(ecSignOnly.certificatePem, now(), error)) << "an EC key needs keyAgreement";
  EXPECT_NE(error.find("does not allow key agreement"), std::string::npos) << error;
  Identity weak = makeIdentity({.commonName = "Weak", .rsaBits = 1024});
  EXPECT_FALSE(su::checkRecipient(weak.certificatePem, now(), error));
  EXPECT_NE(error.find("1024 bits"), std::string::npos) << error;
  EXPECT_FALSE(su::checkRecipient("not a certificate", now(), error));
  EXPECT_NE(error.find("cannot be read as PEM"), std::string::npos) << error;
}

// -----------------------------------------------------------------------------------------------
// Seal and open

constexpr char kBinaryStart[] = "PK\x03\x04 binary\0content\r\nwith CRLF\nand LF\r";
const std::string kContent = std::string(kBinaryStart, sizeof kBinaryStart - 1) + randomBytes(100000, 11);

TEST(SecurePackageCms, SealThenOpenForEachRecipient) {
  const Pki& pki = Pki::get();
  std::string der, error;
  ASSERT_TRUE(su::seal(kContent, pki.signer.credentials(), {pki.caisse.certificatePem, pki.caisseEc.certificatePem}, now(), der, error))
      << error;
  for (const Identity* recipient : {&pki.caisse, &pki.caisseEc}) {
    std::string content, signer;
    ASSERT_TRUE(su::open(der, recipient->credentials(), {pki.signer.certificatePem}, content, signer, error)) << error;
    EXPECT_TRUE(content == kContent);
    EXPECT_EQ(signer, pki.signer.subject);
  }
  // Trusted certificates may come as one PEM bundle, the signer among others.
  std::string content, signer;
  EXPECT_TRUE(su::open(der, pki.caisse.credentials(), {pki.otherSigner.certificatePem + pki.signer.certificatePem}, content, signer, error))
      << error;
  std::string emptyDer;
  ASSERT_TRUE(su::seal("", pki.signer.credentials(), {pki.caisse.certificatePem}, now(), emptyDer, error)) << error;
  EXPECT_TRUE(su::open(emptyDer, pki.caisse.credentials(), {pki.signer.certificatePem}, content, signer, error)) << error;
  EXPECT_TRUE(content.empty());
}

TEST(SecurePackageCms, OpensslOpensWhatSealMakes) {
  if (!have("openssl")) GTEST_SKIP() << "the openssl tool is not installed";
  const Pki& pki = Pki::get();
  TempDir dir;
  const std::string d = dir.path();
  std::string der, error;
  ASSERT_TRUE(su::seal(kContent, pki.signer.credentials(), {pki.caisse.certificatePem, pki.caisseEc.certificatePem}, now(), der, error))
      << error;
  writeBytes(d + "/sealed.der", der);
  writeBytes(d + "/signer.pem", pki.signer.certificatePem);
  // The algorithms announced: AES-256-CBC, RSA-OAEP for the RSA recipient, ECDH for the EC one.
  Command printed = run("openssl cms -cmsout -print -inform DER -in " + d + "/sealed.der", d);
  ASSERT_EQ(printed.status, 0) << printed.output;
  EXPECT_NE(printed.output.find("aes-256-cbc"), std::string::npos);
  EXPECT_NE(printed.output.find("rsaesOaep"), std::string::npos);
  EXPECT_NE(printed.output.find("dhSinglePass-stdDH-sha256kdf-scheme"), std::string::npos) << printed.output;
  for (const Identity* recipient : {&pki.caisse, &pki.caisseEc}) {
    writeBytes(d + "/cert.pem", recipient->certificatePem);
    writeBytes(d + "/key.pem", recipient->keyPem);
    std::remove((d + "/signed.der").c_str());
    std::remove((d + "/content.bin").c_str());
    Command decrypt = run("openssl cms -decrypt -inform DER -in " + d + "/sealed.der -recip " + d + "/cert.pem -inkey " + d +
                              "/key.pem -out " + d + "/signed.der",
                          d);
    ASSERT_EQ(decrypt.status, 0) << decrypt.output;
    Command verify =
        run("openssl cms -verify -inform DER -in " + d + "/signed.der -CAfile " + d + "/signer.pem -out " + d + "/content.bin", d);
    ASSERT_EQ(verify.status, 0) << verify.output;
    EXPECT_NE(verify.output.find("Verification successful"), std::string::npos) << verify.output;
    EXPECT_TRUE(readBytes(d + "/content.bin") == kContent) << recipient->subject;
  }
  Command signedPrint = run("openssl cms -cmsout -print -inform DER -in " + d + "/signed.der", d);
  ASSERT_EQ(signedPrint.status, 0) << signedPrint.output;
  EXPECT_NE(signedPrint.output.find("sha256"), std::string::npos);
  EXPECT_NE(signedPrint.output.find("signingTime"), std::string::npos);
  EXPECT_NE(signedPrint.output.find("Passerelle test"), std::string::npos) << "the signer certificate is included";
}

TEST(SecurePackageCms, OpenReadsWhatOpensslSealsAndSeesAlteredContent) {
  if (!have("openssl")) GTEST_SKIP() << "the openssl tool is not installed";
  const Pki& pki = Pki::get();
  TempDir dir;
  const std::string d = dir.path();
  const std::string content = "MARKER-" + std::string("csv;line\r\n", 10) + std::string(1, '\0') + "end";
  writeBytes(d + "/content.bin", content);
  writeBytes(d + "/signer.pem", pki.signer.certificatePem);
  writeBytes(d + "/signer.key", pki.signer.keyPem);
  writeBytes(d + "/caisse.pem", pki.caisse.certificatePem);
  Command sign = run("openssl cms -sign -binary -nodetach -md sha256 -in " + d + "/content.bin -signer " + d + "/signer.pem -inkey " + d +
                         "/signer.key -outform DER -out " + d + "/signed.der",
                     d);
  ASSERT_EQ(sign.status, 0) << sign.output;
  const std::string encrypt =
      "openssl cms -encrypt -binary -aes-256-cbc -in " + d + "/signed.der -outform DER -out " + d + "/sealed.der " + d + "/caisse.pem";
  Command sealed = run(encrypt, d);
  ASSERT_EQ(sealed.status, 0) << sealed.output;
  std::string opened, signer, error;
  ASSERT_TRUE(su::open(readBytes(d + "/sealed.der"), pki.caisse.credentials(), {pki.signer.certificatePem}, opened, signer, error))
      << error;
  EXPECT_TRUE(opened == content);
  EXPECT_EQ(signer, pki.signer.subject);
  // AuthEnvelopedData (AES-256-GCM) opens too.
  Command gcm =
      run("openssl cms -encrypt -binary -aes-256-gcm -in " + d + "/signed.der -outform DER -out " + d + "/gcm.der " + d + "/caisse.pem", d);
  ASSERT_EQ(gcm.status, 0) << gcm.output;
  opened.clear();
  ASSERT_TRUE(su::open(readBytes(d + "/gcm.der"), pki.caisse.credentials(), {pki.signer.certificatePem}, opened, signer, error)) << error;
  EXPECT_TRUE(opened == content);
  // Signed but not encrypted, or encrypted but not signed: refused.
  EXPECT_FALSE(su::open(readBytes(d + "/signed.der"), pki.caisse.credentials(), {pki.signer.certificatePem}, opened, signer, error));
  EXPECT_EQ(error, "the package is CMS pkcs7-signedData, not encrypted (enveloped) data");
  Command unsignedRun = run(
      "openssl cms -encrypt -binary -aes-256-cbc -in " + d + "/content.bin -outform DER -out " + d + "/unsigned.der " + d + "/caisse.pem",
      d);
  ASSERT_EQ(unsignedRun.status, 0) << unsignedRun.output;
  EXPECT_FALSE(su::open(readBytes(d + "/unsigned.der"), pki.caisse.credentials(), {pki.signer.certificatePem}, opened, signer, error));
  EXPECT_NE(error.find("not signed data"), std::string::npos) << error;

  // The same, one byte of the signed content changed before encryption: the signature no longer holds.
  std::string signedDer = readBytes(d + "/signed.der");
  const std::size_t marker = signedDer.find("MARKER-");
  ASSERT_NE(marker, std::string::npos);
  signedDer[marker] = 'm';
  writeBytes(d + "/signed.der", signedDer);
  sealed = run(encrypt, d);
  ASSERT_EQ(sealed.status, 0) << sealed.output;
  EXPECT_FALSE(su::open(readBytes(d + "/sealed.der"), pki.caisse.credentials(), {pki.signer.certificatePem}, opened, signer, error));
  EXPECT_NE(error.find("does not match the content"), std::string::npos) << error;
  EXPECT_TRUE(opened.empty());
  EXPECT_TRUE(signer.empty());
}

TEST(SecurePackageCms, OpenRefusesWrongRecipientUntrustedSignerAndMismatchedKey) {
  const Pki& pki = Pki::get();
  std::string der, content, signer, error;
  ASSERT_TRUE(su::seal(kContent, pki.signer.credentials(), {pki.caisse.certificatePem}, now(), der, error)) << error;
  EXPECT_FALSE(su::open(der, pki.bystander.credentials(), {pki.signer.certificatePem}, content, signer, error));
  EXPECT_EQ(error, "the package is not encrypted for '" + pki.bystander.subject + "'");
  EXPECT_FALSE(su::open(der, pki.caisseEc.credentials(), {pki.signer.certificatePem}, content, signer, error));
  EXPECT_NE(error.find("not encrypted for"), std::string::npos) << error;

  EXPECT_FALSE(su::open(der, pki.caisse.credentials(), {pki.otherSigner.certificatePem}, content, signer, error));
  EXPECT_EQ(error, "the package is signed by '" + pki.signer.subject + "', which is not among the trusted signers");
  EXPECT_FALSE(su::open(der, pki.caisse.credentials(), {}, content, signer, error));
  EXPECT_NE(error.find("no trusted signer certificate"), std::string::npos) << error;

  su::Credentials mismatched{pki.caisse.certificatePem, pki.bystander.keyPem};
  EXPECT_FALSE(su::open(der, mismatched, {pki.signer.certificatePem}, content, signer, error));
  EXPECT_NE(error.find("does not belong to the recipient certificate '" + pki.caisse.subject + "'"), std::string::npos) << error;
  EXPECT_TRUE(content.empty());
  EXPECT_TRUE(signer.empty());
}

TEST(SecurePackageCms, NoSingleByteChangeOpensToOtherContent) {
  const Pki& pki = Pki::get();
  const std::string content = "small content, so that every byte of the package is tried";
  std::string der, error;
  ASSERT_TRUE(su::seal(content, pki.signer.credentials(), {pki.caisse.certificatePem}, now(), der, error)) << error;
  std::string opened, signer;
  {
    std::string changed = der;
    changed[changed.size() - 20] ^= 0x01;  // inside the encrypted content
    EXPECT_FALSE(su::open(changed, pki.caisse.credentials(), {pki.signer.certificatePem}, opened, signer, error));
    EXPECT_FALSE(error.empty());
  }
  int refused = 0;
  for (std::size_t i = 0; i < der.size(); ++i) {
    std::string changed = der;
    changed[i] = static_cast<char>(changed[i] ^ 0x20);
    if (!su::open(changed, pki.caisse.credentials(), {pki.signer.certificatePem}, opened, signer, error)) {
      ++refused;
      continue;
    }
    // Only bytes outside what is signed (the copy of the signer's certificate, ignored) may change unnoticed.
    EXPECT_EQ(opened, content) << "byte " << i;
    EXPECT_EQ(signer, pki.signer.subject) << "byte " << i;
  }
  EXPECT_GT(refused, static_cast<int>(der.size() / 2));
}

TEST(SecurePackageCms, OpenRefusesWhatIsNotASealedPackage) {
  const Pki& pki = Pki::get();
  std::string content, signer, error;
  for (const std::string& garbage : {std::string(), std::string("hello"), randomBytes(5000, 5), std::string("\x30\x82\xFF\xFF\x06", 5)}) {
    EXPECT_FALSE(su::open(garbage, pki.caisse.credentials(), {pki.signer.certificatePem}, content, signer, error));
    EXPECT_NE(error.find("not CMS"), std::string::npos) << error;
  }
  std::string der;
  ASSERT_TRUE(su::seal(kContent, pki.signer.credentials(), {pki.caisse.certificatePem}, now(), der, error)) << error;
  for (std::size_t n = 0; n < der.size(); n += 7) {
    EXPECT_FALSE(su::open(der.substr(0, n), pki.caisse.credentials(), {pki.signer.certificatePem}, content, signer, error)) << n;
  }
  EXPECT_FALSE(su::open(der + "x", pki.caisse.credentials(), {pki.signer.certificatePem}, content, signer, error));
  EXPECT_NE(error.find("for 1 bytes after its CMS structure"), std::string::npos) << error;
}

TEST(SecurePackageCms, SealProducesNothingWhenOneRecipientIsRefused) {
  const Pki& pki = Pki::get();
  Identity expired = makeIdentity({.commonName = "Expired caisse", .notBefore = -10L * 86400, .notAfter = -86400});
  Identity signOnly = makeIdentity({.commonName = "Signature only", .keyUsage = "critical,digitalSignature"});
  std::string der = "stale", error;
  EXPECT_FALSE(su::seal(kContent, pki.signer.credentials(), {pki.caisse.certificatePem, expired.certificatePem}, now(), der, error));
  EXPECT_TRUE(der.empty());
  EXPECT_NE(error.find("'" + expired.subject + "' expired on"), std::string::npos) << error;
  EXPECT_FALSE(su::seal(kContent, pki.signer.credentials(), {signOnly.certificatePem, pki.caisse.certificatePem}, now(), der, error));
  EXPECT_TRUE(der.empty());
  EXPECT_NE(error.find("'" + signOnly.subject + "' does not allow key encipherment"), std::string::npos) << error;
  EXPECT_FALSE(su::seal(kContent, pki.signer.credentials(), {pki.caisse.certificatePem, "garbage"}, now(), der, error));
  EXPECT_NE(error.find("recipient certificate 2 cannot be read"), std::string::npos) << error;
  EXPECT_FALSE(su::seal(kContent, pki.signer.credentials(), {}, now(), der, error));
  EXPECT_TRUE(der.empty());
}

TEST(SecurePackageCms, SealChecksTheSigner) {
  const Pki& pki = Pki::get();
  std::string der, error;
  Identity expired = makeIdentity({.commonName = "Expired signer", .notBefore = -10L * 86400, .notAfter = -86400});
  EXPECT_FALSE(su::seal(kContent, expired.credentials(), {pki.caisse.certificatePem}, now(), der, error));
  EXPECT_NE(error.find("the signer certificate '" + expired.subject + "' expired on"), std::string::npos) << error;
  EXPECT_FALSE(su::seal(kContent, pki.caisse.credentials(), {pki.caisse.certificatePem}, now(), der, error)) << "keyEncipherment only";
  EXPECT_NE(error.find("does not allow signing (its keyUsage is keyEncipherment)"), std::string::npos) << error;
  EXPECT_FALSE(su::seal(kContent, {pki.signer.certificatePem, pki.otherSigner.keyPem}, {pki.caisse.certificatePem}, now(), der, error));
  EXPECT_NE(error.find("does not belong to the signer certificate"), std::string::npos) << error;
  // A passphrase-protected key is refused at once, never asked for.
  su::Credentials locked{pki.signer.certificatePem, pemOf(pki.signer.key.get(), "secret")};
  EXPECT_FALSE(su::seal(kContent, locked, {pki.caisse.certificatePem}, now(), der, error));
  EXPECT_NE(error.find("cannot be read"), std::string::npos) << error;
  EXPECT_TRUE(der.empty());
}

TEST(SecurePackageCms, TrustedCertificatesAreThePinnedSigners) {
  const Pki& pki = Pki::get();
  Identity ca = makeIdentity({.commonName = "Test CA", .keyUsage = "critical,keyCertSign,cRLSign", .ca = true});
  Identity issued =
      makeIdentity({.commonName = "Issued signer", .keyUsage = "digitalSignature", .extendedKeyUsage = "clientAuth", .issuer = &ca});
  std::string der, content, signer, error;
  ASSERT_TRUE(
      su::seal(kContent, {issued.certificatePem + ca.certificatePem, issued.keyPem}, {pki.caisse.certificatePem}, now(), der, error))
      << error;
  // The issuer alone is not enough: the signer itself must be given.
  EXPECT_FALSE(su::open(der, pki.caisse.credentials(), {ca.certificatePem}, content, signer, error));
  EXPECT_NE(error.find("'" + issued.subject + "', which is not among the trusted signers"), std::string::npos) << error;
  // The signer alone (not self-signed) anchors itself; with its issuer, the whole chain verifies.
  EXPECT_TRUE(su::open(der, pki.caisse.credentials(), {issued.certificatePem}, content, signer, error)) << error;
  EXPECT_TRUE(su::open(der, pki.caisse.credentials(), {ca.certificatePem, issued.certificatePem}, content, signer, error)) << error;
  EXPECT_EQ(signer, issued.subject);
  EXPECT_TRUE(content == kContent);
}

TEST(SecurePackageCms, OpenRefusesAnExpiredSigner) {
  const Pki& pki = Pki::get();
  // Valid when it signed (an hour ago by its clock), expired now.
  Identity shortLived = makeIdentity({.commonName = "Short-lived signer", .notBefore = -7200, .notAfter = -60});
  std::string der, content, signer, error;
  ASSERT_TRUE(su::seal(kContent, shortLived.credentials(), {pki.caisse.certificatePem}, now() - 3600, der, error)) << error;
  EXPECT_FALSE(su::open(der, pki.caisse.credentials(), {shortLived.certificatePem}, content, signer, error));
  EXPECT_NE(error.find("'" + shortLived.subject + "' does not verify"), std::string::npos) << error;
  EXPECT_NE(error.find("expired"), std::string::npos) << error;
}

TEST(SecurePackage, Sha256Hex) {
  EXPECT_EQ(su::sha256Hex(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(su::sha256Hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

}  // namespace
