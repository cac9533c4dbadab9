// Folding of text for string search: lower case, accents removed.
#include "gateway/search/text_fold.h"

#include <Poco/Unicode.h>

#include <array>

#include "mappings/common/utf8.h"

namespace passerelle::search {
namespace {

// U+00C0..U+017F (Latin-1 Supplement letters and Latin Extended-A) without their accents, in
// lower case; "-" keeps the character (multiplication and division signs). Derived from the
// Unicode canonical decompositions.
constexpr const char* kLatin =
    "a a a a a a ae c e e e e i i i i d n o o o o o - o u u u u y th ss a a a a a a ae c e e e e i i i i d n o o o o o - o u u u u y th y a a a a a a c c c c c c c c d d d d e e e e e e e e e e g g g g g g g g h h h h i i i i i i i i i i ij ij j j k k k l l l l l l l l l l n n n n n n n n n o o o o o o oe oe r r r r r r s s s s s s s s t t t t t t u u u u u u u u u u u u w w y y y z z z z z z s";

const std::array<std::string, 0xC0>& latinTable() {
  static const std::array<std::string, 0xC0> table = [] {
    std::array<std::string, 0xC0> t;
    std::size_t i = 0;
    std::string cur;
    for (const char* p = kLatin;; ++p) {
      if (*p == ' ' || *p == 0) {
        t[i++] = cur == "-" ? std::string() : cur;
        cur.clear();
        if (*p == 0 || i == t.size()) break;
      } else {
        cur += *p;
      }
    }
    return t;
  }();
  return table;
}

}  // namespace

std::string foldText(std::string_view in) {
  std::string out;
  out.reserve(in.size());
  const auto& latin = latinTable();
  for (std::size_t i = 0; i < in.size();) {
    unsigned char b = static_cast<unsigned char>(in[i]);
    if (b < 0x80) {
      out += static_cast<char>(b >= 'A' && b <= 'Z' ? b + 32 : b);
      ++i;
      continue;
    }
    int len = b >= 0xF0 ? 4 : b >= 0xE0 ? 3 : b >= 0xC0 ? 2 : 1;
    if (len == 1 || i + len > in.size()) {  // not UTF-8: keep the byte
      out += static_cast<char>(b);
      ++i;
      continue;
    }
    std::uint32_t cp = len == 2 ? (b & 0x1F) : len == 3 ? (b & 0x0F) : (b & 0x07);
    for (int k = 1; k < len; ++k) cp = (cp << 6) | (static_cast<unsigned char>(in[i + k]) & 0x3F);
    i += len;
    // Combining diacritical marks (a decomposed accent) are dropped.
    if (cp >= 0x300 && cp <= 0x36F) continue;
    if (cp >= 0xC0 && cp < 0x180 && !latin[cp - 0xC0].empty()) {
      out += latin[cp - 0xC0];
      continue;
    }
    utf8::append(out, static_cast<std::uint32_t>(Poco::Unicode::toLower(static_cast<int>(cp))));
  }
  return out;
}

}  // namespace passerelle::search
