// Secure package (see secure_package.h). The archive is written with Poco::Zip and read by a strict
// reader of its own over zlib: Poco 1.11's ZipArchive reads past its buffers on crafted headers, so
// it never sees bytes from elsewhere. CMS with OpenSSL 3; every OpenSSL object is owned by a
// unique_ptr.
#include "connectors/secureupload/secure_package.h"

#include <Poco/DateTime.h>
#include <Poco/Exception.h>
#include <Poco/MemoryStream.h>
#include <Poco/Path.h>
#include <Poco/Zip/Compress.h>
#include <openssl/asn1.h>
#include <openssl/bio.h>
#include <openssl/cms.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <zlib.h>

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <climits>
#include <ctime>
#include <memory>
#include <set>
#include <sstream>

namespace passerelle::secureupload {

namespace {

// ---------------------------------------------------------------------------------------------
// Names

bool validUtf8(std::string_view s);

// A name as it may appear in an error, quoted: control characters, quotes and (when the name is not
// UTF-8) bytes past 0x7F escaped, long names cut.
std::string shown(std::string_view name) {
  static const char* kHex = "0123456789abcdef";
  const bool utf8 = validUtf8(name);
  std::size_t cut = std::min<std::size_t>(name.size(), 200);
  while (utf8 && cut < name.size() && (static_cast<unsigned char>(name[cut]) & 0xC0) == 0x80) --cut;
  std::string s;
  for (std::size_t i = 0; i < cut; ++i) {
    auto c = static_cast<unsigned char>(name[i]);
    if (c < 0x20 || c == 0x7F || c == '\'' || (c >= 0x80 && !utf8)) {
      s += "\\x";
      s += kHex[c >> 4];
      s += kHex[c & 15];
    } else {
      s += static_cast<char>(c);
    }
  }
  if (cut < name.size()) s += "...";
  return "'" + s + "'";
}

bool validUtf8(std::string_view s) {
  std::size_t i = 0;
  while (i < s.size()) {
    auto c = static_cast<unsigned char>(s[i]);
    std::size_t n;
    std::uint32_t cp;
    if (c < 0x80) {
      ++i;
      continue;
    } else if ((c & 0xE0) == 0xC0) {
      n = 1;
      cp = c & 0x1F;
    } else if ((c & 0xF0) == 0xE0) {
      n = 2;
      cp = c & 0x0F;
    } else if ((c & 0xF8) == 0xF0) {
      n = 3;
      cp = c & 0x07;
    } else {
      return false;
    }
    if (i + n >= s.size()) return false;
    for (std::size_t k = 1; k <= n; ++k) {
      auto d = static_cast<unsigned char>(s[i + k]);
      if ((d & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (d & 0x3F);
    }
    // Overlong forms, surrogates and code points past U+10FFFF are not UTF-8.
    if ((n == 1 && cp < 0x80) || (n == 2 && cp < 0x800) || (n == 3 && cp < 0x10000) || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
      return false;
    i += n + 1;
  }
  return true;
}

std::vector<std::string_view> segments(std::string_view name) {
  std::vector<std::string_view> parts;
  std::size_t start = 0;
  for (;;) {
    std::size_t slash = name.find('/', start);
    if (slash == std::string_view::npos) {
      parts.push_back(name.substr(start));
      return parts;
    }
    parts.push_back(name.substr(start, slash - start));
    start = slash + 1;
  }
}

using NameSet = std::set<std::string, std::less<>>;

// True, with `error`, when a file of `files` is also a folder on the way to `name` ("a" and "a/b").
bool folderIsAFile(const NameSet& files, const std::string& name, std::string& error) {
  for (std::size_t slash = name.find('/'); slash != std::string::npos; slash = name.find('/', slash + 1)) {
    if (files.count(std::string_view(name).substr(0, slash))) {
      error = "entry " + shown(name) + " needs " + shown(name.substr(0, slash)) + " to be a folder, but it is a file";
      return true;
    }
  }
  return false;
}

// ---------------------------------------------------------------------------------------------
// ZIP reading: the central directory is the authority, every local header is checked against it.

constexpr std::uint32_t kLocalHeader = 0x04034b50, kCentralHeader = 0x02014b50, kEndOfCentral = 0x06054b50, kDataDescriptor = 0x08074b50;
constexpr std::size_t kLocalSize = 30, kCentralSize = 46, kEndSize = 22;

std::uint16_t u16(std::string_view b, std::size_t at) {
  return static_cast<std::uint16_t>(static_cast<unsigned char>(b[at]) | static_cast<unsigned char>(b[at + 1]) << 8);
}
std::uint32_t u32(std::string_view b, std::size_t at) { return u16(b, at) | static_cast<std::uint32_t>(u16(b, at + 2)) << 16; }

struct Record {
  std::string name;  // without the trailing '/' of a folder
  bool folder = false;
  std::uint16_t flags = 0, method = 0;
  std::uint32_t crc = 0, compressedSize = 0, size = 0;
  std::uint64_t headerAt = 0, dataAt = 0, endsAt = 0;  // local header, data, end of data (and descriptor)
};

// The central directory's records (names checked, nothing inflated yet), in archive order.
bool readDirectory(std::string_view zip, std::vector<Record>& records, std::string& error) {
  if (zip.size() < kEndSize) {
    error = "not a ZIP archive: " + std::to_string(zip.size()) + " bytes, too short for its end record";
    return false;
  }
  // The end record: the last one whose comment reaches exactly the end of the archive.
  std::size_t end = std::string_view::npos;
  std::size_t lowest = zip.size() > kEndSize + 0xFFFF ? zip.size() - kEndSize - 0xFFFF : 0;
  for (std::size_t at = zip.size() - kEndSize + 1; at-- > lowest;) {
    if (u32(zip, at) == kEndOfCentral && at + kEndSize + u16(zip, at + 20) == zip.size()) {
      end = at;
      break;
    }
  }
  if (end == std::string_view::npos) {
    error = "not a ZIP archive: no end of central directory record";
    return false;
  }
  std::uint16_t disk = u16(zip, end + 4), directoryDisk = u16(zip, end + 6), onDisk = u16(zip, end + 8), count = u16(zip, end + 10);
  std::uint32_t directorySize = u32(zip, end + 12), directoryAt = u32(zip, end + 16);
  if (count == 0xFFFF || directorySize == 0xFFFFFFFF || directoryAt == 0xFFFFFFFF) {
    error = "ZIP64 archives are not read";
    return false;
  }
  if (disk != 0 || directoryDisk != 0 || onDisk != count) {
    error = "multi-part ZIP archives are not read";
    return false;
  }
  if (static_cast<std::uint64_t>(directoryAt) + directorySize != end) {
    error = "damaged ZIP archive: the central directory is not where the end record says";
    return false;
  }
  std::size_t at = directoryAt;
  NameSet files, folders;
  for (std::uint32_t i = 0; i < count; ++i) {
    if (at + kCentralSize > end || u32(zip, at) != kCentralHeader) {
      error = "damaged ZIP archive: central directory record " + std::to_string(i + 1) + " of " + std::to_string(count) + " is missing";
      return false;
    }
    Record r;
    r.flags = u16(zip, at + 8);
    r.method = u16(zip, at + 10);
    r.crc = u32(zip, at + 16);
    r.compressedSize = u32(zip, at + 20);
    r.size = u32(zip, at + 24);
    std::size_t nameLength = u16(zip, at + 28), extraLength = u16(zip, at + 30), commentLength = u16(zip, at + 32);
    std::uint16_t startDisk = u16(zip, at + 34);
    r.headerAt = u32(zip, at + 42);
    if (at + kCentralSize + nameLength + extraLength + commentLength > end) {
      error = "damaged ZIP archive: central directory record " + std::to_string(i + 1) + " runs past the directory";
      return false;
    }
    std::string_view name = zip.substr(at + kCentralSize, nameLength);
    at += kCentralSize + nameLength + extraLength + commentLength;

    r.folder = !name.empty() && name.back() == '/';
    std::string_view bare = r.folder ? name.substr(0, name.size() - 1) : name;
    std::string why;
    if (!validEntryName(bare, why)) {
      error = "entry name " + shown(name) + " refused: " + why;
      return false;
    }
    r.name = std::string(bare);
    if (r.flags & 0x0041) {
      error = "entry " + shown(name) + " is encrypted";
      return false;
    }
    if (r.size == 0xFFFFFFFF || r.compressedSize == 0xFFFFFFFF || r.headerAt == 0xFFFFFFFF) {
      error = "entry " + shown(name) + " needs ZIP64, which is not read";
      return false;
    }
    if (startDisk != 0) {
      error = "multi-part ZIP archives are not read";
      return false;
    }
    if (r.method != 0 && r.method != 8) {
      error = "entry " + shown(name) + " uses compression method " + std::to_string(r.method) + " (only stored and deflate are read)";
      return false;
    }
    if (r.folder && r.size != 0) {
      error = "entry " + shown(name) + " is a folder with content";
      return false;
    }
    if (r.method == 0 && r.compressedSize != r.size) {
      error = "damaged ZIP archive: stored entry " + shown(name) + " has two different sizes";
      return false;
    }
    if (files.count(r.name) || folders.count(r.name)) {
      error = "entry name " + shown(r.name) + " appears twice";
      return false;
    }
    (r.folder ? folders : files).insert(r.name);
    records.push_back(std::move(r));
  }
  if (at != end) {
    error = "damaged ZIP archive: the central directory is longer than its records";
    return false;
  }
  for (const Record& r : records)
    if (folderIsAFile(files, r.name, error)) return false;
  // Local headers: where the central directory says, naming the same entry the same way.
  for (Record& r : records) {
    std::size_t h = static_cast<std::size_t>(r.headerAt);
    if (h + kLocalSize > directoryAt || u32(zip, h) != kLocalHeader) {
      error = "damaged ZIP archive: no local header for entry " + shown(r.name);
      return false;
    }
    std::uint16_t localFlags = u16(zip, h + 6), localMethod = u16(zip, h + 8);
    std::size_t nameLength = u16(zip, h + 26), extraLength = u16(zip, h + 28);
    r.dataAt = h + kLocalSize + nameLength + extraLength;
    r.endsAt = r.dataAt + r.compressedSize;
    const std::string expected = r.folder ? r.name + "/" : r.name;
    if (h + kLocalSize + nameLength > directoryAt || zip.substr(h + kLocalSize, nameLength) != expected || localMethod != r.method ||
        (localFlags & 0x0041)) {
      error = "damaged ZIP archive: the local header of entry " + shown(r.name) + " does not match the central directory";
      return false;
    }
    if (r.flags & 0x0008) {  // sizes and CRC in a data descriptor after the data (the central directory has them too)
      std::uint64_t d = r.endsAt;
      r.endsAt += (d + 4 <= directoryAt && u32(zip, static_cast<std::size_t>(d)) == kDataDescriptor) ? 16 : 12;
    }
    if (r.endsAt > directoryAt) {
      error = "damaged ZIP archive: entry " + shown(r.name) + " runs past the central directory";
      return false;
    }
  }
  std::sort(records.begin(), records.end(), [](const Record& a, const Record& b) { return a.headerAt < b.headerAt; });
  for (std::size_t i = 1; i < records.size(); ++i) {
    if (records[i].headerAt < records[i - 1].endsAt) {
      error = "entries " + shown(records[i - 1].name) + " and " + shown(records[i].name) + " overlap (a zip bomb?)";
      return false;
    }
  }
  return true;
}

bool inflateEntry(std::string_view data, const Record& r, std::string& out, std::string& error) {
  z_stream zs{};
  if (inflateInit2(&zs, -MAX_WBITS) != Z_OK) {
    error = "cannot start inflating entry " + shown(r.name);
    return false;
  }
  std::unique_ptr<z_stream, int (*)(z_stream*)> guard(&zs, inflateEnd);
  zs.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(data.data()));
  zs.avail_in = static_cast<uInt>(data.size());
  // Deflate cannot expand beyond about 1032:1; no memory is reserved for a declared size beyond that.
  out.reserve(static_cast<std::size_t>(std::min<std::uint64_t>(r.size, std::uint64_t{data.size()} * 1032 + 1024)));
  char chunk[64 * 1024];
  for (;;) {
    zs.next_out = reinterpret_cast<Bytef*>(chunk);
    zs.avail_out = sizeof chunk;
    int rc = inflate(&zs, Z_NO_FLUSH);
    std::size_t produced = sizeof chunk - zs.avail_out;
    if (out.size() + produced > r.size) {
      error = "entry " + shown(r.name) + " inflates to more than its declared " + std::to_string(r.size) + " bytes (a zip bomb?)";
      return false;
    }
    out.append(chunk, produced);
    if (rc == Z_STREAM_END) break;
    if (rc == Z_OK) continue;
    if (rc == Z_BUF_ERROR && zs.avail_in == 0) {
      error = "entry " + shown(r.name) + " is truncated (its deflate data ends early)";
    } else {
      error = "entry " + shown(r.name) + " is not valid deflate data" + (zs.msg ? std::string(": ") + zs.msg : std::string());
    }
    return false;
  }
  if (zs.avail_in != 0) {
    error = "damaged ZIP archive: entry " + shown(r.name) + " has bytes after its deflate data";
    return false;
  }
  return true;
}

// ---------------------------------------------------------------------------------------------
// OpenSSL

template <auto Free>
struct Deleter {
  template <class T>
  void operator()(T* p) const {
    Free(p);
  }
};
using Bio = std::unique_ptr<BIO, Deleter<BIO_free_all>>;
using Certificate = std::unique_ptr<X509, Deleter<X509_free>>;
using Key = std::unique_ptr<EVP_PKEY, Deleter<EVP_PKEY_free>>;
using Cms = std::unique_ptr<CMS_ContentInfo, Deleter<CMS_ContentInfo_free>>;
using Store = std::unique_ptr<X509_STORE, Deleter<X509_STORE_free>>;
using Time = std::unique_ptr<ASN1_TIME, Deleter<ASN1_TIME_free>>;
struct StackDeleter {
  void operator()(STACK_OF(X509) * s) const { sk_X509_pop_free(s, X509_free); }
};
using CertificateStack = std::unique_ptr<STACK_OF(X509), StackDeleter>;

// OpenSSL's error queue of this thread as text ("" when empty), emptied.
std::string opensslErrors() {
  std::string text;
  const char* data = nullptr;
  int flags = 0;
  while (unsigned long e = ERR_get_error_all(nullptr, nullptr, nullptr, &data, &flags)) {
    char buffer[256];
    ERR_error_string_n(e, buffer, sizeof buffer);
    if (!text.empty()) text += "; ";
    text += buffer;
    if ((flags & ERR_TXT_STRING) && data && *data) text += std::string(" (") + data + ")";
  }
  return text;
}

// `message`, with OpenSSL's errors appended when there are some.
std::string withOpenssl(std::string message) {
  std::string details = opensslErrors();
  if (!details.empty()) message += " (OpenSSL: " + details + ")";
  return message;
}

// Never asks for a passphrase: a protected key fails to load instead of waiting on a terminal.
int noPassphrase(char*, int, int, void*) { return -1; }

Bio memoryBio(std::string_view bytes) {
  if (bytes.size() > static_cast<std::size_t>(INT_MAX)) return nullptr;
  return Bio(BIO_new_mem_buf(bytes.empty() ? "" : bytes.data(), static_cast<int>(bytes.size())));
}

std::string_view bioBytes(BIO* bio) {
  char* data = nullptr;
  long length = BIO_get_mem_data(bio, &data);
  return length > 0 && data ? std::string_view(data, static_cast<std::size_t>(length)) : std::string_view{};
}

// Every certificate of a PEM text, in order (empty when there is none or one is unreadable).
std::vector<Certificate> readCertificates(std::string_view pem) {
  ERR_clear_error();  // what is left in the queue below is about this text
  std::vector<Certificate> certificates;
  Bio bio = memoryBio(pem);
  if (!bio) return certificates;
  while (X509* x = PEM_read_bio_X509(bio.get(), nullptr, noPassphrase, nullptr)) certificates.emplace_back(x);
  unsigned long last = ERR_peek_last_error();
  if (ERR_GET_LIB(last) == ERR_LIB_PEM && ERR_GET_REASON(last) == PEM_R_NO_START_LINE && !certificates.empty()) {
    ERR_clear_error();  // the end of the text after the last certificate
  } else if (last != 0) {
    certificates.clear();
  }
  return certificates;
}

Key readKey(std::string_view pem) {
  Bio bio = memoryBio(pem);
  return Key(bio ? PEM_read_bio_PrivateKey(bio.get(), nullptr, noPassphrase, nullptr) : nullptr);
}

std::string subjectOf(const X509* x) {
  Bio bio(BIO_new(BIO_s_mem()));
  if (!bio || X509_NAME_print_ex(bio.get(), X509_get_subject_name(x), 0, XN_FLAG_RFC2253 & ~ASN1_STRFLGS_ESC_MSB) < 0) return "?";
  std::string_view text = bioBytes(bio.get());
  return text.empty() ? "(empty subject)" : std::string(text);
}

std::string timeText(const ASN1_TIME* t) {
  std::tm tm{};
  if (!ASN1_TIME_to_tm(t, &tm)) return "(an unreadable date)";
  char buffer[32];
  std::strftime(buffer, sizeof buffer, "%Y-%m-%d %H:%M:%S UTC", &tm);
  return buffer;
}

std::string keyUsageText(std::uint32_t usage) {
  static const std::pair<std::uint32_t, const char*> kNames[] = {{KU_DIGITAL_SIGNATURE, "digitalSignature"},
                                                                 {KU_NON_REPUDIATION, "nonRepudiation"},
                                                                 {KU_KEY_ENCIPHERMENT, "keyEncipherment"},
                                                                 {KU_DATA_ENCIPHERMENT, "dataEncipherment"},
                                                                 {KU_KEY_AGREEMENT, "keyAgreement"},
                                                                 {KU_KEY_CERT_SIGN, "keyCertSign"},
                                                                 {KU_CRL_SIGN, "cRLSign"},
                                                                 {KU_ENCIPHER_ONLY, "encipherOnly"},
                                                                 {KU_DECIPHER_ONLY, "decipherOnly"}};
  std::string text;
  for (const auto& [bit, name] : kNames) {
    if (!(usage & bit)) continue;
    if (!text.empty()) text += ", ";
    text += name;
  }
  return text.empty() ? "none" : text;
}

// `role` certificate valid at `now`, its extensions readable.
bool checkValidity(const X509* x, const std::string& role, std::int64_t now, std::string& error) {
  const std::string subject = subjectOf(x);
  if (X509_get_extension_flags(const_cast<X509*>(x)) & EXFLAG_INVALID) {
    error = withOpenssl("the " + role + " certificate '" + subject + "' has unreadable extensions");
    return false;
  }
  const ASN1_TIME* notBefore = X509_get0_notBefore(x);
  const ASN1_TIME* notAfter = X509_get0_notAfter(x);
  int before = ASN1_TIME_cmp_time_t(notBefore, static_cast<time_t>(now));
  int after = ASN1_TIME_cmp_time_t(notAfter, static_cast<time_t>(now));
  if (before == -2 || after == -2) {
    error = withOpenssl("the " + role + " certificate '" + subject + "' has unreadable validity dates");
    return false;
  }
  if (before > 0) {
    error = "the " + role + " certificate '" + subject + "' is not valid before " + timeText(notBefore);
    return false;
  }
  if (after < 0) {
    error = "the " + role + " certificate '" + subject + "' expired on " + timeText(notAfter);
    return false;
  }
  return true;
}

// A signer's certificate: keyUsage, when present, allowing signatures.
bool checkSigningUsage(X509* x, std::string& error) {
  if ((X509_get_extension_flags(x) & EXFLAG_KUSAGE) && !(X509_get_key_usage(x) & (KU_DIGITAL_SIGNATURE | KU_NON_REPUDIATION))) {
    error = "the signer certificate '" + subjectOf(x) + "' does not allow signing (its keyUsage is " + keyUsageText(X509_get_key_usage(x)) +
            ")";
    return false;
  }
  return true;
}

bool checkRecipientCertificate(X509* x, std::int64_t now, std::string& error) {
  if (!checkValidity(x, "recipient", now, error)) return false;
  const std::string subject = subjectOf(x);
  EVP_PKEY* key = X509_get0_pubkey(x);
  if (!key) {
    error = withOpenssl("the recipient certificate '" + subject + "' has an unreadable public key");
    return false;
  }
  bool hasUsage = X509_get_extension_flags(x) & EXFLAG_KUSAGE;
  std::uint32_t usage = X509_get_key_usage(x);
  switch (EVP_PKEY_get_base_id(key)) {
    case EVP_PKEY_RSA:
      if (EVP_PKEY_get_bits(key) < 2048) {
        error = "the recipient certificate '" + subject + "' has an RSA key of " + std::to_string(EVP_PKEY_get_bits(key)) +
                " bits, too weak to encrypt to (2048 at least)";
        return false;
      }
      if (hasUsage && !(usage & KU_KEY_ENCIPHERMENT)) {
        error = "the recipient certificate '" + subject + "' does not allow key encipherment (its keyUsage is " + keyUsageText(usage) +
                "), so nothing can be encrypted for it";
        return false;
      }
      return true;
    case EVP_PKEY_EC:
      if (hasUsage && !(usage & KU_KEY_AGREEMENT)) {
        error = "the recipient certificate '" + subject + "' does not allow key agreement (its keyUsage is " + keyUsageText(usage) +
                "), so nothing can be encrypted for it";
        return false;
      }
      return true;
    default:
      const char* type = OBJ_nid2sn(EVP_PKEY_get_base_id(key));
      error = "the recipient certificate '" + subject + "' has a key of type " + (type ? type : "unknown") +
              "; only RSA and EC keys can be encrypted to";
      return false;
  }
}

bool derOf(CMS_ContentInfo* cms, std::string& out) {
  int length = i2d_CMS_ContentInfo(cms, nullptr);
  if (length <= 0) return false;
  out.resize(static_cast<std::size_t>(length));
  auto* p = reinterpret_cast<unsigned char*>(out.data());
  return i2d_CMS_ContentInfo(cms, &p) == length;
}

Cms parseDer(std::string_view der, std::size_t& unread) {
  unread = der.size();
  if (der.size() > static_cast<std::size_t>(LONG_MAX)) return nullptr;
  const auto* p = reinterpret_cast<const unsigned char*>(der.data());
  Cms cms(d2i_CMS_ContentInfo(nullptr, &p, static_cast<long>(der.size())));
  if (cms) unread = der.size() - static_cast<std::size_t>(p - reinterpret_cast<const unsigned char*>(der.data()));
  return cms;
}

std::string typeName(const CMS_ContentInfo* cms) {
  int nid = OBJ_obj2nid(CMS_get0_type(cms));
  return nid == NID_undef ? "of an unknown type" : OBJ_nid2ln(nid);
}

// Whether one of the RecipientInfos names this certificate.
bool addressedTo(CMS_ContentInfo* cms, X509* certificate) {
  STACK_OF(CMS_RecipientInfo)* infos = CMS_get0_RecipientInfos(cms);
  for (int i = 0; i < sk_CMS_RecipientInfo_num(infos); ++i) {
    CMS_RecipientInfo* ri = sk_CMS_RecipientInfo_value(infos, i);
    if (CMS_RecipientInfo_type(ri) == CMS_RECIPINFO_TRANS) {
      if (CMS_RecipientInfo_ktri_cert_cmp(ri, certificate) == 0) return true;
    } else if (CMS_RecipientInfo_type(ri) == CMS_RECIPINFO_AGREE) {
      STACK_OF(CMS_RecipientEncryptedKey)* keys = CMS_RecipientInfo_kari_get0_reks(ri);
      for (int k = 0; k < sk_CMS_RecipientEncryptedKey_num(keys); ++k)
        if (CMS_RecipientEncryptedKey_cert_cmp(sk_CMS_RecipientEncryptedKey_value(keys, k), certificate) == 0) return true;
    }
  }
  return false;
}

// A certificate and the private key that goes with it.
bool loadCredentials(const Credentials& credentials, const std::string& role, std::vector<Certificate>& certificates, Key& key,
                     std::string& error) {
  certificates = readCertificates(credentials.certificatePem);
  if (certificates.empty()) {
    error = withOpenssl("the " + role + " certificate cannot be read as PEM");
    return false;
  }
  key = readKey(credentials.privateKeyPem);
  if (!key) {
    error =
        withOpenssl("the private key of '" + subjectOf(certificates[0].get()) + "' cannot be read (PEM, not protected by a passphrase)");
    return false;
  }
  if (X509_check_private_key(certificates[0].get(), key.get()) != 1) {
    error = withOpenssl("the private key given does not belong to the " + role + " certificate '" + subjectOf(certificates[0].get()) + "'");
    return false;
  }
  return true;
}

bool hasReason(unsigned long e, int lib, int reason) { return ERR_GET_LIB(e) == lib && ERR_GET_REASON(e) == reason; }

}  // namespace

// -----------------------------------------------------------------------------------------------
// Archive

bool validEntryName(std::string_view name, std::string& why) {
  if (name.empty()) {
    why = "empty name";
    return false;
  }
  if (name.size() > 1024) {
    why = "longer than 1024 bytes";
    return false;
  }
  if (!validUtf8(name)) {
    why = "not UTF-8";
    return false;
  }
  for (char c : name) {
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7F) {
      why = "control character";
      return false;
    }
    if (c == '\\') {
      why = "backslash (only '/' separates folders)";
      return false;
    }
    if (c == ':') {
      why = "':' (drive letter or alternate stream)";
      return false;
    }
  }
  if (name.front() == '/') {
    why = "absolute path";
    return false;
  }
  for (std::string_view segment : segments(name)) {
    if (segment.empty()) {
      why = "empty path segment";
      return false;
    }
    if (segment == "." || segment == "..") {
      why = "'" + std::string(segment) + "' path segment";
      return false;
    }
    if (segment.size() > 255) {
      why = "path segment longer than 255 bytes";
      return false;
    }
  }
  return true;
}

namespace {

// The names and sizes of an archive's entries, checked before anything is written.
bool checkEntries(const std::vector<std::pair<std::string, std::uint64_t>>& entries, std::string& error) {
  if (entries.size() >= 0xFFFF) {
    error = std::to_string(entries.size()) + " entries: ZIP64 would be needed (65534 at most)";
    return false;
  }
  NameSet names;
  for (const auto& [name, size] : entries) {
    std::string why;
    if (!validEntryName(name, why)) {
      error = "entry name " + shown(name) + " refused: " + why;
      return false;
    }
    if (!names.insert(name).second) {
      error = "entry name " + shown(name) + " appears twice";
      return false;
    }
    if (size >= 0xFFFFFFFFu) {
      error = "entry " + shown(name) + " has 4 GiB or more: ZIP64 would be needed";
      return false;
    }
  }
  for (const auto& e : entries)
    if (folderIsAFile(names, e.first, error)) return false;
  return true;
}

// An entry added to `compress` from `in`: its path built segment by segment (Poco::Path's parser
// would give meaning to a leading '~'), dated 1980-01-01 00:00.
void addEntry(Poco::Zip::Compress& compress, const std::string& name, std::istream& in, Poco::Zip::ZipCommon::CompressionLevel level) {
  std::vector<std::string_view> parts = segments(name);
  Poco::Path path(false);
  for (std::size_t i = 0; i + 1 < parts.size(); ++i) path.pushDirectory(std::string(parts[i]));
  path.setFileName(std::string(parts.back()));
  compress.addFile(in, Poco::DateTime(1980, 1, 1), path, Poco::Zip::ZipCommon::CM_DEFLATE, level);
}

// Whether the archive lists exactly `names`, in that order.
bool listsEntries(std::string_view archive, const std::vector<std::string>& names, std::string& error) {
  std::vector<Record> records;
  std::string why;
  bool same = readDirectory(archive, records, why);
  if (same) {
    std::vector<std::string> written;
    for (const Record& r : records)
      if (!r.folder) written.push_back(r.name);
    same = written == names;
  }
  if (!same) error = "the archive written does not list the entries given" + (why.empty() ? std::string() : ": " + why);
  return same;
}

}  // namespace

bool zip(const std::vector<Entry>& entries, std::string& out, std::string& error) {
  out.clear();
  std::vector<std::pair<std::string, std::uint64_t>> checked;
  std::vector<std::string> names;
  for (const Entry& e : entries) {
    checked.emplace_back(e.name, e.bytes.size());
    names.push_back(e.name);
  }
  if (!checkEntries(checked, error)) return false;
  try {
    std::ostringstream archive(std::ios::out | std::ios::binary);
    Poco::Zip::Compress compress(archive, true);
    for (const Entry& e : entries) {
      Poco::MemoryInputStream in(e.bytes.data(), static_cast<std::streamsize>(e.bytes.size()));
      addEntry(compress, e.name, in, Poco::Zip::ZipCommon::CL_MAXIMUM);
    }
    compress.close();
    if (!archive) {
      error = "cannot write the archive";
      return false;
    }
    out = std::move(archive).str();
  } catch (const Poco::Exception& e) {
    error = "cannot write the archive: " + e.displayText();
    return false;
  } catch (const std::exception& e) {
    error = std::string("cannot write the archive: ") + e.what();
    return false;
  }
  if (out.size() >= 0xFFFFFFFFu) {
    out.clear();
    error = "the archive comes to 4 GiB or more: ZIP64 would be needed";
    return false;
  }
  // What was written is what was asked for: the same names, in the same order.
  if (!listsEntries(out, names, error)) {
    out.clear();
    return false;
  }
  return true;
}

bool zipFiles(const std::vector<FileEntry>& entries, const std::string& outPath, std::string& error) {
  std::vector<std::pair<std::string, std::uint64_t>> checked;
  std::vector<std::string> names;
  for (const FileEntry& e : entries) {
    std::error_code ec;
    std::uint64_t size = std::filesystem::file_size(e.path, ec);
    if (ec) {
      error = "entry " + shown(e.name) + ": " + e.path + ": " + ec.message();
      return false;
    }
    checked.emplace_back(e.name, size);
    names.push_back(e.name);
  }
  if (!checkEntries(checked, error)) return false;
  auto fail = [&](const std::string& why) {
    error = "cannot write the archive " + outPath + ": " + why;
    std::error_code ec;
    std::filesystem::remove(outPath, ec);
    return false;
  };
  try {
    std::ofstream archive(outPath, std::ios::out | std::ios::binary | std::ios::trunc);
    if (!archive) return fail("cannot create it");
    std::filesystem::permissions(outPath, std::filesystem::perms::owner_read | std::filesystem::perms::owner_write);
    Poco::Zip::Compress compress(archive, true);
    for (std::size_t i = 0; i < entries.size(); ++i) {
      std::ifstream in(entries[i].path, std::ios::in | std::ios::binary);
      if (!in) return fail(entries[i].path + " cannot be read");
      // Large entries (a cohort's rows) deflated at the fastest level: several times quicker, a few
      // per cent larger.
      addEntry(compress, entries[i].name, in, checked[i].second > (4u << 20) ? Poco::Zip::ZipCommon::CL_SUPERFAST : Poco::Zip::ZipCommon::CL_MAXIMUM);
    }
    compress.close();
    archive.close();
    if (!archive) return fail("write error");
  } catch (const Poco::Exception& e) {
    return fail(e.displayText());
  } catch (const std::exception& e) {
    return fail(e.what());
  }
  // What was written is what was asked for (read through a read-only map of the file).
  int fd = ::open(outPath.c_str(), O_RDONLY | O_CLOEXEC);
  struct stat st {};
  if (fd < 0 || ::fstat(fd, &st) != 0) {
    if (fd >= 0) ::close(fd);
    return fail("cannot be read back");
  }
  if (static_cast<std::uint64_t>(st.st_size) >= 0xFFFFFFFFu) {
    ::close(fd);
    return fail("it comes to 4 GiB or more: ZIP64 would be needed");
  }
  void* map = st.st_size ? ::mmap(nullptr, static_cast<std::size_t>(st.st_size), PROT_READ, MAP_PRIVATE, fd, 0) : MAP_FAILED;
  ::close(fd);
  if (map == MAP_FAILED) return fail("cannot be read back");
  bool same = listsEntries(std::string_view(static_cast<const char*>(map), static_cast<std::size_t>(st.st_size)), names, error);
  ::munmap(map, static_cast<std::size_t>(st.st_size));
  if (!same) {
    std::string why = error;
    return fail(why);
  }
  return true;
}

bool unzip(std::string_view archive, std::vector<Entry>& out, std::string& error, std::size_t maxTotal) {
  out.clear();
  std::vector<Record> records;
  if (!readDirectory(archive, records, error)) return false;
  std::uint64_t declared = 0;
  for (const Record& r : records) declared += r.size;
  if (declared > maxTotal) {
    error = "the archive's entries come to " + std::to_string(declared) + " bytes, more than the limit of " + std::to_string(maxTotal);
    return false;
  }
  std::vector<Entry> entries;
  for (const Record& r : records) {
    if (r.folder) continue;
    std::string_view data = archive.substr(static_cast<std::size_t>(r.dataAt), r.compressedSize);
    Entry e{r.name, {}};
    if (r.method == 0) {
      e.bytes.assign(data);
    } else if (!inflateEntry(data, r, e.bytes, error)) {
      return false;
    }
    if (e.bytes.size() != r.size) {
      error =
          "entry " + shown(r.name) + " has " + std::to_string(e.bytes.size()) + " bytes, not the " + std::to_string(r.size) + " declared";
      return false;
    }
    uLong crc = crc32_z(0L, Z_NULL, 0);
    crc = crc32_z(crc, reinterpret_cast<const Bytef*>(e.bytes.data()), e.bytes.size());
    if (crc != r.crc) {
      error = "entry " + shown(r.name) + " is damaged (its CRC-32 does not match)";
      return false;
    }
    entries.push_back(std::move(e));
  }
  out = std::move(entries);
  return true;
}

// -----------------------------------------------------------------------------------------------
// CMS

bool checkRecipient(std::string_view certificatePem, std::int64_t nowSeconds, std::string& error) {
  ERR_clear_error();
  std::vector<Certificate> certificates = readCertificates(certificatePem);
  if (certificates.empty()) {
    error = withOpenssl("the recipient certificate cannot be read as PEM");
    return false;
  }
  bool ok = checkRecipientCertificate(certificates[0].get(), nowSeconds, error);
  ERR_clear_error();
  return ok;
}

namespace {

// The SignedData (SHA-256, the signer's certificate and the issuers given included, the signing
// time `nowSeconds`) and the EnvelopedData for every recipient (AES-256-CBC, the content key under
// RSA-OAEP with SHA-256 or ECDH), ready for their content; `flags` adds CMS_STREAM for streaming.
bool preparePackage(const Credentials& signer, const std::vector<std::string>& recipientCertificatesPem, std::int64_t nowSeconds, unsigned flags,
                    Cms& signedData, Cms& enveloped, std::string& signerSubject, std::string& error) {
  ERR_clear_error();
  if (recipientCertificatesPem.empty()) {
    error = "no recipient certificate given";
    return false;
  }
  std::vector<Certificate> recipients;
  for (std::size_t i = 0; i < recipientCertificatesPem.size(); ++i) {
    std::vector<Certificate> read = readCertificates(recipientCertificatesPem[i]);
    if (read.empty()) {
      error = withOpenssl("recipient certificate " + std::to_string(i + 1) + " cannot be read as PEM");
      return false;
    }
    if (!checkRecipientCertificate(read[0].get(), nowSeconds, error)) return false;
    recipients.push_back(std::move(read[0]));
  }
  std::vector<Certificate> signerCertificates;
  Key signerKey;
  if (!loadCredentials(signer, "signer", signerCertificates, signerKey, error)) return false;
  X509* signerCertificate = signerCertificates[0].get();
  if (!checkValidity(signerCertificate, "signer", nowSeconds, error) || !checkSigningUsage(signerCertificate, error)) return false;
  signerSubject = subjectOf(signerCertificate);
  signedData.reset(CMS_sign(nullptr, nullptr, nullptr, nullptr, CMS_BINARY | CMS_PARTIAL | flags));
  CMS_SignerInfo* signerInfo =
      signedData ? CMS_add1_signer(signedData.get(), signerCertificate, signerKey.get(), EVP_sha256(), CMS_BINARY) : nullptr;
  if (!signerInfo) {
    error = withOpenssl("cannot prepare the signature of '" + signerSubject + "'");
    return false;
  }
  for (std::size_t i = 1; i < signerCertificates.size(); ++i) {
    if (!CMS_add1_cert(signedData.get(), signerCertificates[i].get())) {
      error = withOpenssl("cannot include the certificate '" + subjectOf(signerCertificates[i].get()) + "' in the signature");
      return false;
    }
  }
  Time signingTime(ASN1_TIME_set(nullptr, static_cast<time_t>(nowSeconds)));
  if (!signingTime ||
      !CMS_signed_add1_attr_by_NID(signerInfo, NID_pkcs9_signingTime, ASN1_STRING_type(signingTime.get()), signingTime.get(), -1)) {
    error = withOpenssl("cannot write the signing time");
    return false;
  }
  enveloped.reset(CMS_encrypt(nullptr, nullptr, EVP_aes_256_cbc(), CMS_BINARY | CMS_PARTIAL | flags));
  if (!enveloped) {
    error = withOpenssl("cannot prepare the encryption");
    return false;
  }
  for (const Certificate& recipient : recipients) {
    const std::string subject = subjectOf(recipient.get());
    CMS_RecipientInfo* ri = CMS_add1_recipient_cert(enveloped.get(), recipient.get(), CMS_KEY_PARAM);
    EVP_PKEY_CTX* ctx = ri ? CMS_RecipientInfo_get0_pkey_ctx(ri) : nullptr;
    bool ok = ctx != nullptr;
    if (ok && EVP_PKEY_get_base_id(X509_get0_pubkey(recipient.get())) == EVP_PKEY_RSA) {
      ok = EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_OAEP_PADDING) > 0 && EVP_PKEY_CTX_set_rsa_oaep_md(ctx, EVP_sha256()) > 0 &&
           EVP_PKEY_CTX_set_rsa_mgf1_md(ctx, EVP_sha256()) > 0;
    } else if (ok) {
      ok = EVP_PKEY_CTX_set_ecdh_kdf_md(ctx, EVP_sha256()) > 0;
    }
    if (!ok) {
      error = withOpenssl("cannot encrypt for the recipient certificate '" + subject + "'");
      return false;
    }
  }
  return true;
}

}  // namespace

bool seal(std::string_view content, const Credentials& signer, const std::vector<std::string>& recipientCertificatesPem,
          std::int64_t nowSeconds, std::string& outDer, std::string& error) {
  outDer.clear();
  if (content.size() > static_cast<std::size_t>(INT_MAX) / 2) {
    error = "the content has " + std::to_string(content.size()) + " bytes, more than can be sealed at once (1 GiB)";
    return false;
  }
  Cms signedData, enveloped;
  std::string signerSubject;
  if (!preparePackage(signer, recipientCertificatesPem, nowSeconds, 0, signedData, enveloped, signerSubject, error)) return false;
  Bio contentBio = memoryBio(content);
  std::string signedDer;
  if (!contentBio || !CMS_final(signedData.get(), contentBio.get(), nullptr, CMS_BINARY) || !derOf(signedData.get(), signedDer)) {
    error = withOpenssl("cannot sign the content as '" + signerSubject + "'");
    return false;
  }
  Bio signedBio = memoryBio(signedDer);
  std::string der;
  if (!signedBio || !CMS_final(enveloped.get(), signedBio.get(), nullptr, CMS_BINARY) || !derOf(enveloped.get(), der)) {
    error = withOpenssl("cannot encrypt the signed content");
    return false;
  }
  outDer = std::move(der);
  return true;
}

bool sealFile(const std::string& contentPath, const Credentials& signer, const std::vector<std::string>& recipientCertificatesPem,
              std::int64_t nowSeconds, const std::string& outPath, std::string& sha256, std::string& error) {
  sha256.clear();
  Cms signedData, enveloped;
  std::string signerSubject;
  if (!preparePackage(signer, recipientCertificatesPem, nowSeconds, CMS_STREAM, signedData, enveloped, signerSubject, error)) return false;
  auto fail = [&](const std::string& why) {
    error = withOpenssl(why);
    std::error_code ec;
    std::filesystem::remove(outPath, ec);
    return false;
  };
  std::ifstream in(contentPath, std::ios::in | std::ios::binary);
  if (!in) return fail(contentPath + " cannot be read");
  // out <- SHA-256 <- EnvelopedData (BER, streamed) <- SignedData (BER, streamed) <- the content.
  int fd = ::open(outPath.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return fail("cannot create " + outPath);
  BIO* file = BIO_new_fd(fd, BIO_CLOSE);
  BIO* digest = BIO_new(BIO_f_md());
  if (!file || !digest || !BIO_set_md(digest, EVP_sha256())) {
    if (file) BIO_free(file);
    else ::close(fd);
    if (digest) BIO_free(digest);
    return fail("cannot write " + outPath);
  }
  BIO_push(digest, file);
  Bio chain(digest);  // freed whole at the end, whatever happens
  BIO* encrypting = BIO_new_CMS(digest, enveloped.get());
  if (!encrypting) return fail("cannot start the encryption");
  chain.release();
  chain.reset(encrypting);
  BIO* signing = BIO_new_CMS(encrypting, signedData.get());
  if (!signing) return fail("cannot start the signature as '" + signerSubject + "'");
  chain.release();
  chain.reset(signing);
  std::vector<char> buffer(1 << 20);
  while (in) {
    in.read(buffer.data(), static_cast<std::streamsize>(buffer.size()));
    std::streamsize n = in.gcount();
    if (n > 0 && BIO_write(signing, buffer.data(), static_cast<int>(n)) != n) return fail("cannot sign and encrypt " + contentPath);
  }
  if (in.bad()) return fail(contentPath + " cannot be read");
  if (BIO_flush(signing) != 1) return fail("cannot finish the signed and encrypted package");
  unsigned char md[EVP_MAX_MD_SIZE];
  int length = BIO_gets(digest, reinterpret_cast<char*>(md), sizeof md);
  if (length <= 0) return fail("cannot take the package's SHA-256");
  static const char* kHex = "0123456789abcdef";
  for (int i = 0; i < length; ++i) (sha256 += kHex[md[i] >> 4]) += kHex[md[i] & 15];
  chain.reset();
  return true;
}

bool open(std::string_view der, const Credentials& recipient, const std::vector<std::string>& trustedSignerCertificatesPem,
          std::string& content, std::string& signerSubject, std::string& error) {
  content.clear();
  signerSubject.clear();
  ERR_clear_error();
  std::size_t unread = 0;
  Cms enveloped = parseDer(der, unread);
  if (!enveloped) {
    error = withOpenssl("the package is not CMS (DER)");
    return false;
  }
  if (unread != 0) {
    error = "the package goes on for " + std::to_string(unread) + " bytes after its CMS structure";
    return false;
  }
  int type = OBJ_obj2nid(CMS_get0_type(enveloped.get()));
  if (type != NID_pkcs7_enveloped && type != NID_id_smime_ct_authEnvelopedData) {
    error = "the package is CMS " + typeName(enveloped.get()) + ", not encrypted (enveloped) data";
    return false;
  }
  std::vector<Certificate> recipientCertificates;
  Key recipientKey;
  if (!loadCredentials(recipient, "recipient", recipientCertificates, recipientKey, error)) return false;
  X509* recipientCertificate = recipientCertificates[0].get();
  const std::string recipientSubject = subjectOf(recipientCertificate);
  if (!addressedTo(enveloped.get(), recipientCertificate)) {
    error = "the package is not encrypted for '" + recipientSubject + "'";
    return false;
  }
  Bio decrypted(BIO_new(BIO_s_mem()));
  if (!decrypted || !CMS_decrypt(enveloped.get(), recipientKey.get(), recipientCertificate, nullptr, decrypted.get(), CMS_BINARY)) {
    error = withOpenssl("the package cannot be decrypted with the key of '" + recipientSubject + "' (damaged?)");
    return false;
  }
  Cms signedData = parseDer(bioBytes(decrypted.get()), unread);
  if (!signedData || unread != 0 || OBJ_obj2nid(CMS_get0_type(signedData.get())) != NID_pkcs7_signed) {
    std::string what = signedData ? "CMS " + typeName(signedData.get()) : std::string("not CMS");
    ERR_clear_error();
    error = "the decrypted package is " + what + ", not signed data (damaged?)";
    return false;
  }
  STACK_OF(CMS_SignerInfo)* signerInfos = CMS_get0_SignerInfos(signedData.get());
  if (sk_CMS_SignerInfo_num(signerInfos) != 1) {
    error = "the package has " + std::to_string(std::max(0, sk_CMS_SignerInfo_num(signerInfos))) + " signatures; exactly one is expected";
    return false;
  }
  CMS_SignerInfo* signerInfo = sk_CMS_SignerInfo_value(signerInfos, 0);

  // The trusted certificates: the only signers accepted, and the trust anchors.
  CertificateStack trusted(sk_X509_new_null());
  Store store(X509_STORE_new());
  if (!trusted || !store) {
    error = withOpenssl("out of memory");
    return false;
  }
  for (std::size_t i = 0; i < trustedSignerCertificatesPem.size(); ++i) {
    std::vector<Certificate> read = readCertificates(trustedSignerCertificatesPem[i]);
    if (read.empty()) {
      error = withOpenssl("trusted signer certificate " + std::to_string(i + 1) + " cannot be read as PEM");
      return false;
    }
    for (Certificate& c : read) {
      if (!X509_STORE_add_cert(store.get(), c.get())) {
        error = withOpenssl("cannot trust the certificate '" + subjectOf(c.get()) + "'");
        return false;
      }
      if (!sk_X509_push(trusted.get(), c.get())) {
        error = withOpenssl("out of memory");
        return false;
      }
      c.release();
    }
  }
  if (sk_X509_num(trusted.get()) == 0) {
    error = "no trusted signer certificate given";
    return false;
  }
  X509* signer = nullptr;
  for (int i = 0; i < sk_X509_num(trusted.get()) && !signer; ++i)
    if (CMS_SignerInfo_cert_cmp(signerInfo, sk_X509_value(trusted.get(), i)) == 0) signer = sk_X509_value(trusted.get(), i);
  if (!signer) {
    CertificateStack included(CMS_get1_certs(signedData.get()));
    for (int i = 0; included && i < sk_X509_num(included.get()); ++i) {
      if (CMS_SignerInfo_cert_cmp(signerInfo, sk_X509_value(included.get(), i)) == 0) {
        error = "the package is signed by '" + subjectOf(sk_X509_value(included.get(), i)) + "', which is not among the trusted signers";
        return false;
      }
    }
    error = "the package is signed by a certificate that is not among the trusted signers";
    return false;
  }
  const std::string subject = subjectOf(signer);
  if (!checkSigningUsage(signer, error)) return false;
  // A trusted certificate anchors a chain even when it is not self-signed; the extended key usage is
  // not checked (the signer is one of the certificates given).
  X509_STORE_set_flags(store.get(), X509_V_FLAG_PARTIAL_CHAIN);
  X509_STORE_set_purpose(store.get(), X509_PURPOSE_ANY);
  Bio verified(BIO_new(BIO_s_mem()));
  if (!verified || !CMS_verify(signedData.get(), trusted.get(), store.get(), nullptr, verified.get(), CMS_BINARY | CMS_NOINTERN)) {
    unsigned long e = ERR_peek_last_error();
    if (hasReason(e, ERR_LIB_CMS, CMS_R_CERTIFICATE_VERIFY_ERROR)) {
      error = withOpenssl("the certificate of the signer '" + subject + "' does not verify against the trusted certificates");
    } else if (hasReason(e, ERR_LIB_CMS, CMS_R_VERIFICATION_FAILURE) || hasReason(e, ERR_LIB_CMS, CMS_R_CONTENT_VERIFY_ERROR)) {
      error = withOpenssl("the signature of '" + subject + "' does not match the content (altered or damaged)");
    } else if (hasReason(e, ERR_LIB_CMS, CMS_R_NO_CONTENT)) {
      error = withOpenssl("the package's signed data by '" + subject + "' carries no content");
    } else {
      error = withOpenssl("the signature of '" + subject + "' cannot be verified");
    }
    return false;
  }
  content = std::string(bioBytes(verified.get()));
  signerSubject = subject;
  return true;
}

}  // namespace passerelle::secureupload
