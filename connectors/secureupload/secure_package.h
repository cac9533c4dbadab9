// Secure package: named byte blobs packed in a ZIP archive, then signed and encrypted as CMS for the
// recipients' certificates, and the reverse. The transport level of what is sent to a partner that
// asks for signed and encrypted files (the caisse's evaluation extracts): it knows no FHIR and no
// extract semantics, only names and bytes.
//   zip / unzip   a ZIP archive (deflate) of named entries; unzip reads archives from anywhere and
//                 refuses unsafe names and oversized content (zip bombs) before it is inflated
//   seal          CMS SignedData (SHA-256, signer certificate included, binary content) wrapped in
//                 CMS EnvelopedData (AES-256-CBC; RSA-OAEP with SHA-256 for RSA recipients, ECDH for
//                 EC ones), DER, as `openssl cms -decrypt` then `openssl cms -verify` open it
//   open          the reverse: decrypt with the recipient's key, verify the one signature against the
//                 trusted signer certificates given (no system certificate store)
// Keys and certificates are PEM text; a private key protected by a passphrase is refused (never
// prompted for). No revocation check (no CRL, no OCSP).
// Thread-safety: free functions without shared state; any of them may run in several threads at once.
// Errors: each function returns false and says why in `error` (one sentence naming the certificate's
// subject where there is one, OpenSSL's own error text appended); outputs are then left empty.
#pragma once

#include "mappings/common/sha256.h"

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace passerelle::secureupload {

// One file of an archive: a relative path with '/' separators, and its content.
struct Entry {
  std::string name;
  std::string bytes;
};

inline constexpr std::size_t kDefaultMaxTotal = std::size_t{1} << 30;  // 1 GiB

// Whether `name` may name an entry (false with `why`): valid UTF-8, at most 1024 bytes, segments of
// at most 255 bytes separated by '/', none empty, "." or ".."; no leading '/', no backslash, no ':'
// (drive letters, alternate streams), no control character.
bool validEntryName(std::string_view name, std::string& why);

// The entries as a ZIP archive in `out`, deflated, their data in the order given (the central
// directory, what listing tools show, is sorted by name), every entry dated 1980-01-01 00:00 so that
// the same entries always give the same bytes (and the same SHA-256).
// Refuses invalid or repeated names, and what would need ZIP64 (an entry or the archive of 4 GiB or
// more, 65535 entries or more).
bool zip(const std::vector<Entry>& entries, std::string& out, std::string& error);

// The same, the entries read from files and the archive written to `outPath` (mode 0600), so that
// entries of several GiB in all need not be held in memory; large entries are deflated at the
// fastest level. Nothing is left at `outPath` on failure.
struct FileEntry {
  std::string name;  // in the archive
  std::string path;  // where its content is
};
bool zipFiles(const std::vector<FileEntry>& entries, const std::string& outPath, std::string& error);

// The files of a ZIP archive in `out`, in archive order (folder entries skipped). Refuses, before
// inflating anything: names that validEntryName refuses (so `../x`, `/x`, `a\b`), a name given twice
// or both as a file and as a folder, encryption, ZIP64, multi-part archives, methods other than
// stored and deflate, entries overlapping one another, and a total declared size above `maxTotal`.
// While inflating: an entry that inflates beyond its declared size, or whose CRC-32 does not match.
bool unzip(std::string_view archive, std::vector<Entry>& out, std::string& error, std::size_t maxTotal = kDefaultMaxTotal);

// A signer's or a recipient's certificate and private key, PEM. For a signer, certificates after the
// first one in `certificatePem` (its issuers) are included in the signed data.
struct Credentials {
  std::string certificatePem;
  std::string privateKeyPem;
};

// Whether the package can be encrypted for this certificate at `nowSeconds` (Unix time): readable PEM,
// valid at that time, an RSA key of at least 2048 bits or an EC key, and a keyUsage extension, when
// present, allowing keyEncipherment (RSA) or keyAgreement (EC). An extendedKeyUsage is not checked.
bool checkRecipient(std::string_view certificatePem, std::int64_t nowSeconds, std::string& error);

// `content` signed by `signer` (whose certificate must be valid at `nowSeconds`, the signing time
// written in the signature, with a keyUsage, if any, allowing digitalSignature or nonRepudiation)
// then encrypted for every recipient certificate, each checked with checkRecipient first: nothing is
// produced when one is refused. `outDer` is the CMS EnvelopedData, DER.
bool seal(std::string_view content, const Credentials& signer, const std::vector<std::string>& recipientCertificatesPem,
          std::int64_t nowSeconds, std::string& outDer, std::string& error);

// The same, streamed: the content read from `contentPath`, the package written to `outPath` (mode
// 0600) as BER with indefinite lengths (what `openssl cms` and open() read alike), its SHA-256 (hex)
// in `sha256`. Memory stays bounded whatever the size. Nothing is left at `outPath` on failure.
bool sealFile(const std::string& contentPath, const Credentials& signer, const std::vector<std::string>& recipientCertificatesPem,
              std::int64_t nowSeconds, const std::string& outPath, std::string& sha256, std::string& error);

// The content of a sealed package (CMS EnvelopedData or AuthEnvelopedData, DER, holding a SignedData),
// decrypted with `recipient`'s key and verified: exactly one signature, by one of the trusted signer
// certificates (each string may hold several PEM certificates; they are both the only accepted signers
// and the trust anchors, so a self-signed signer certificate given here verifies), valid now, over
// the content as it is. `signerSubject` is the signer's subject (RFC 2253). Fails, saying which: not
// CMS, not encrypted for this recipient, not decryptable, signature not matching the content, signer
// not trusted.
bool open(std::string_view der, const Credentials& recipient, const std::vector<std::string>& trustedSignerCertificatesPem,
          std::string& content, std::string& signerSubject, std::string& error);

// The SHA-256 of `bytes`, lower-case hex.
using ::passerelle::sha256Hex;

}  // namespace passerelle::secureupload
