// Pseudonyms and coarsened dates (see pseudonym.h).
#include "mappings/extract/pseudonym.h"

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <cctype>

namespace passerelle::extract {

std::string normalisedIns(std::string_view ins) {
  std::string out;
  out.reserve(ins.size());
  for (char c : ins)
    if (c != ' ' && c != '\t' && c != '.' && c != '-') out += static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return out;
}

std::string pseudonym(std::string_view ins, std::string_view key) {
  std::string data = normalisedIns(ins);
  unsigned char mac[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  if (!HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()), reinterpret_cast<const unsigned char*>(data.data()), data.size(), mac, &len))
    return "";
  static const char* hex = "0123456789abcdef";
  std::string out;
  out.reserve(len * 2);
  for (unsigned int i = 0; i < len; ++i) {
    out += hex[mac[i] >> 4];
    out += hex[mac[i] & 15];
  }
  return out;
}

namespace {

bool readDate(std::string_view d, int& y, int& m, int& day) {
  if (d.size() < 10 || d[4] != '-' || d[7] != '-') return false;
  for (int i : {0, 1, 2, 3, 5, 6, 8, 9})
    if (!std::isdigit(static_cast<unsigned char>(d[i]))) return false;
  y = (d[0] - '0') * 1000 + (d[1] - '0') * 100 + (d[2] - '0') * 10 + (d[3] - '0');
  m = (d[5] - '0') * 10 + (d[6] - '0');
  day = (d[8] - '0') * 10 + (d[9] - '0');
  return m >= 1 && m <= 12 && day >= 1 && day <= 31;
}

}  // namespace

std::string ageBand(std::string_view birthDate, std::string_view at) {
  int by, bm, bd, ay, am, ad;
  if (!readDate(birthDate, by, bm, bd) || !readDate(at, ay, am, ad)) return "";
  int age = ay - by - ((am < bm || (am == bm && ad < bd)) ? 1 : 0);
  if (age < 0) return "";
  if (age < 18) return "<18";
  if (age < 25) return "18-24";
  if (age >= 65) return "65+";
  int lo = 25 + (age - 25) / 10 * 10;
  return std::to_string(lo) + "-" + std::to_string(lo + 9);
}

std::string monthOf(std::string_view date) {
  if (date.size() < 7 || date[4] != '-') return "";
  for (int i : {0, 1, 2, 3, 5, 6})
    if (!std::isdigit(static_cast<unsigned char>(date[i]))) return "";
  return std::string(date.substr(0, 7));
}

}  // namespace passerelle::extract
