// The single-byte character sets partners still send (ISO 8859-1, ISO 8859-15) to and from UTF-8,
// and a fast UTF-8 check: shared by the HL7 v2 and HPRIM readers and writers. Header only, no
// dependencies. Thread-safety: plain functions.
#pragma once

#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>
#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#include "mappings/common/utf8.h"

namespace passerelle::charset {

// ISO 8859-15 differs from ISO 8859-1 at eight positions.
inline std::uint32_t latin9CodePoint(unsigned char b) {
  switch (b) {
    case 0xA4: return 0x20AC;  // €
    case 0xA6: return 0x0160;  // Š
    case 0xA8: return 0x0161;  // š
    case 0xB4: return 0x017D;  // Ž
    case 0xB8: return 0x017E;  // ž
    case 0xBC: return 0x0152;  // Œ
    case 0xBD: return 0x0153;  // œ
    case 0xBE: return 0x0178;  // Ÿ
    default: return b;
  }
}

// True when `s` is well-formed UTF-8 (ASCII runs checked sixteen or eight bytes at a time).
inline bool validUtf8(std::string_view s) {
  std::uint32_t cp;
  for (std::size_t i = 0; i < s.size();) {
#if defined(__SSE2__)
    if (i + 16 <= s.size() && _mm_movemask_epi8(_mm_loadu_si128(reinterpret_cast<const __m128i*>(s.data() + i))) == 0) {
      i += 16;
      continue;
    }
#endif
    if (i + 8 <= s.size()) {
      std::uint64_t w;
      std::memcpy(&w, s.data() + i, 8);
      if ((w & 0x8080808080808080ULL) == 0) {
        i += 8;
        continue;
      }
    }
    std::size_t n = utf8::decode(s, i, cp);
    if (!n) return false;
    i += n;
  }
  return true;
}

// Single bytes (ISO 8859-1, or 8859-15 when `latin9`) to UTF-8.
inline std::string singleBytesToUtf8(std::string_view s, bool latin9) {
  std::string out;
  out.reserve(s.size() + s.size() / 8);
  for (char ch : s) {
    auto b = static_cast<unsigned char>(ch);
    utf8::append(out, latin9 ? latin9CodePoint(b) : b);
  }
  return out;
}

// UTF-8 to single bytes; what the set cannot hold (and malformed bytes) becomes '?', counted in
// `*lost` when given.
inline std::string utf8ToSingleBytes(std::string_view s, bool latin9, std::size_t* lost = nullptr) {
  std::string out;
  out.reserve(s.size());
  std::uint32_t cp;
  for (std::size_t i = 0; i < s.size();) {
    std::size_t n = utf8::decode(s, i, cp);
    if (!n) {
      out += '?';
      if (lost) ++*lost;
      ++i;
      continue;
    }
    i += n;
    int byte = -1;
    if (latin9) {
      for (int b = 0xA0; b <= 0xBF && byte < 0; ++b)
        if (latin9CodePoint(static_cast<unsigned char>(b)) == cp && cp > 0xFF) byte = b;
      if (byte < 0 && cp <= 0xFF && latin9CodePoint(static_cast<unsigned char>(cp)) == cp) byte = static_cast<int>(cp);
    } else if (cp <= 0xFF) {
      byte = static_cast<int>(cp);
    }
    if (byte < 0 && lost) ++*lost;
    out += byte < 0 ? '?' : static_cast<char>(byte);
  }
  return out;
}

}  // namespace passerelle::charset
