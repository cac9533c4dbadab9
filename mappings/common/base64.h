// Base64 (RFC 4648): encoding, and strict decoding (padding required, line breaks allowed, a
// canonical last group), shared by the HL7 v2 and HPRIM mappings. Header only.
// Thread-safety: plain functions.
#pragma once

#include <string>
#include <string_view>

namespace passerelle::base64 {

inline std::string encode(std::string_view bytes) {
  static const char* abc = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  out.reserve((bytes.size() + 2) / 3 * 4);
  std::size_t i = 0;
  for (; i + 2 < bytes.size(); i += 3) {
    unsigned v = (static_cast<unsigned char>(bytes[i]) << 16) | (static_cast<unsigned char>(bytes[i + 1]) << 8) | static_cast<unsigned char>(bytes[i + 2]);
    out += abc[v >> 18];
    out += abc[(v >> 12) & 63];
    out += abc[(v >> 6) & 63];
    out += abc[v & 63];
  }
  if (i < bytes.size()) {
    unsigned v = static_cast<unsigned char>(bytes[i]) << 16;
    if (i + 1 < bytes.size()) v |= static_cast<unsigned char>(bytes[i + 1]) << 8;
    out += abc[v >> 18];
    out += abc[(v >> 12) & 63];
    out += i + 1 < bytes.size() ? abc[(v >> 6) & 63] : '=';
    out += '=';
  }
  return out;
}

inline bool decode(std::string_view text, std::string& out) {
  out.clear();
  out.reserve(text.size() * 3 / 4);
  unsigned int acc = 0;
  int bits = 0, pad = 0;
  std::size_t chars = 0;
  for (char ch : text) {
    unsigned char c = static_cast<unsigned char>(ch);
    if (c == '\r' || c == '\n') continue;
    int v;
    if (c >= 'A' && c <= 'Z') v = c - 'A';
    else if (c >= 'a' && c <= 'z') v = c - 'a' + 26;
    else if (c >= '0' && c <= '9') v = c - '0' + 52;
    else if (c == '+') v = 62;
    else if (c == '/') v = 63;
    else if (c == '=') {
      ++pad;
      ++chars;
      if (pad > 2) return false;
      continue;
    } else {
      return false;
    }
    if (pad > 0) return false;  // data after padding
    ++chars;
    acc = (acc << 6) | static_cast<unsigned int>(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out += static_cast<char>((acc >> bits) & 0xff);
    }
  }
  if (chars == 0 || chars % 4 != 0) return false;
  // The bits left over must be zero (a canonical encoding).
  return (acc & ((1u << bits) - 1)) == 0;
}

}  // namespace passerelle::base64
