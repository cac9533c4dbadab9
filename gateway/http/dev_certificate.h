// Makes a self-signed development certificate (EC P-256, for localhost and 127.0.0.1, valid one
// year) when none exists yet. The key file is written with mode 0600. Not for production.
#pragma once

#include <string>

#include "gateway/common/status.h"

namespace passerelle::http {

// Writes `certPath` and `keyPath` unless both already exist.
Result<void> ensureDevCertificate(const std::string& certPath, const std::string& keyPath);

// The same for another use: `commonName`, the extensions given in OpenSSL's configuration syntax
// (empty: left out), no subject alternative name.
struct DevCertificateUse {
  std::string commonName;
  std::string keyUsage;          // e.g. "critical,digitalSignature,nonRepudiation"
  std::string extendedKeyUsage;  // e.g. "emailProtection"
};
Result<void> ensureDevCertificate(const std::string& certPath, const std::string& keyPath, const DevCertificateUse& use);

}  // namespace passerelle::http
