// SHA-256 of bytes as 64 lower-case hexadecimal characters (OpenSSL's EVP digest); empty if OpenSSL
// fails. Header-only: its users link OpenSSL::Crypto. Thread-safe.
#pragma once

#include <openssl/err.h>
#include <openssl/evp.h>

#include <string>
#include <string_view>

namespace passerelle {

inline std::string sha256Hex(std::string_view bytes) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int length = 0;
  if (EVP_Digest(bytes.data(), bytes.size(), digest, &length, EVP_sha256(), nullptr) != 1) {
    ERR_clear_error();
    return {};
  }
  static const char* kHex = "0123456789abcdef";
  std::string hex;
  hex.reserve(length * 2);
  for (unsigned int i = 0; i < length; ++i) {
    hex += kHex[digest[i] >> 4];
    hex += kHex[digest[i] & 15];
  }
  return hex;
}

}  // namespace passerelle
