// HPRIM Net and HPRIM Santé reading, HPRIM Net writing (see hprim.h).
#include "mappings/hprim/hprim.h"

#include <algorithm>
#include <cctype>
#include <cstdint>

#include "mappings/common/charset.h"

namespace passerelle::hprim {

namespace {

constexpr std::string_view kLab = "****LAB****";
constexpr std::string_view kFin = "****FIN****";
constexpr std::string_view kFinFichier = "****FINFICHIER****";

// The bytes as UTF-8 text: a BOM dropped, valid UTF-8 kept, anything else read as ISO 8859-1.
std::string decode(std::string_view bytes, Encoding& found) {
  if (bytes.size() >= 3 && bytes.substr(0, 3) == "\xEF\xBB\xBF") bytes.remove_prefix(3);
  if (charset::validUtf8(bytes)) {
    found = Encoding::kUtf8;
    return std::string(bytes);
  }
  found = Encoding::kLatin1;
  return charset::singleBytesToUtf8(bytes, false);
}

// Lines ended by CRLF, CR or LF (a last line without an end counts).
std::vector<std::string_view> splitLines(std::string_view text) {
  std::vector<std::string_view> lines;
  std::size_t start = 0;
  for (std::size_t i = 0; i < text.size(); ++i) {
    if (text[i] != '\r' && text[i] != '\n') continue;
    lines.push_back(text.substr(start, i - start));
    if (text[i] == '\r' && i + 1 < text.size() && text[i + 1] == '\n') ++i;
    start = i + 1;
  }
  if (start < text.size()) lines.push_back(text.substr(start));
  return lines;
}

std::string_view trimRight(std::string_view s) {
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

std::string_view trim(std::string_view s) {
  s = trimRight(s);
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  return s;
}

bool isMarker(std::string_view line) {
  line = trim(line);
  return line == kLab || line == kFin || line == kFinFichier;
}

std::vector<std::string_view> splitOn(std::string_view s, char sep) {
  std::vector<std::string_view> out;
  std::size_t start = 0;
  for (std::size_t i = 0; i <= s.size(); ++i) {
    if (i == s.size() || s[i] == sep) {
      out.push_back(s.substr(start, i - start));
      start = i + 1;
    }
  }
  return out;
}

std::string lineRef(std::size_t n) { return "line " + std::to_string(n); }

bool leapYear(int y) { return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0; }

bool realDate(int y, int m, int d) {
  static constexpr int kDays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  if (y < 1800 || y > 2200 || m < 1 || m > 12 || d < 1) return false;
  return d <= kDays[m - 1] + (m == 2 && leapYear(y) ? 1 : 0);
}

bool digits(std::string_view s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
}

int number(std::string_view s) {
  int v = 0;
  for (char c : s) v = v * 10 + (c - '0');
  return v;
}

std::string isoDate(int y, int m, int d) {
  char b[11];
  b[0] = static_cast<char>('0' + y / 1000);
  b[1] = static_cast<char>('0' + y / 100 % 10);
  b[2] = static_cast<char>('0' + y / 10 % 10);
  b[3] = static_cast<char>('0' + y % 10);
  b[4] = '-';
  b[5] = static_cast<char>('0' + m / 10);
  b[6] = static_cast<char>('0' + m % 10);
  b[7] = '-';
  b[8] = static_cast<char>('0' + d / 10);
  b[9] = static_cast<char>('0' + d % 10);
  return std::string(b, 10);
}

// A numeric result as HPRIM writes it: digits with one '.' or ',' decimal mark, a sign, and
// optionally a leading comparator (<, >, <=, >=).
bool numericValue(std::string_view v) {
  v = trim(v);
  if (!v.empty() && (v[0] == '<' || v[0] == '>')) {
    v.remove_prefix(1);
    if (!v.empty() && v[0] == '=') v.remove_prefix(1);
    v = trim(v);
  }
  if (!v.empty() && (v[0] == '-' || v[0] == '+')) v.remove_prefix(1);
  bool digit = false, mark = false;
  for (char c : v) {
    if (c >= '0' && c <= '9') digit = true;
    else if ((c == '.' || c == ',') && !mark) mark = true;
    else return false;
  }
  return digit;
}

void readResLine(std::string_view line, std::size_t n, Result& r, std::vector<Issue>& issues) {
  auto f = splitOn(line, '|');
  auto at = [&](std::size_t i) { return i < f.size() ? std::string(trim(f[i])) : std::string(); };
  r.label = at(1);
  r.code = at(2);
  r.type = at(3);
  r.value = at(4);
  r.unit = at(5);
  r.low = at(6);
  r.high = at(7);
  r.flag = at(8);
  r.status = at(9);
  r.value2 = at(10);
  r.unit2 = at(11);
  r.low2 = at(12);
  r.high2 = at(13);
  std::string where = lineRef(n);
  if (r.label.empty() && r.code.empty())
    issues.push_back({true, where, "the RES line names its result neither by label (field 1) nor by code (field 2)"});
  if (r.type != "N" && r.type != "A" && r.type != "T" && !r.type.empty())
    issues.push_back({false, where + " field 3", "result type '" + r.type + "' is not N, A or T: read as text"});
  if (r.type == "N" && !r.value.empty() && !numericValue(r.value))
    issues.push_back({false, where + " field 4", "the result is declared numeric (N) but '" + r.value + "' is not a number: kept as text"});
  static constexpr std::string_view kFlags[] = {"", "L", "H", "LL", "HH", "N"};
  if (std::find(std::begin(kFlags), std::end(kFlags), r.flag) == std::end(kFlags))
    issues.push_back({false, where + " field 8", "abnormality flag '" + r.flag + "' is not L, H, LL, HH or N: left out"});
}

}  // namespace

const char* encodingName(Encoding e) { return e == Encoding::kLatin1 ? "ISO-8859-1" : "UTF-8"; }

bool parseEncoding(std::string_view name, Encoding& e) {
  std::string n;
  for (char c : name) n += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  if (n == "utf-8" || n == "utf8") {
    e = Encoding::kUtf8;
    return true;
  }
  if (n == "iso-8859-1" || n == "iso8859-1" || n == "8859-1" || n == "latin1" || n == "latin-1") {
    e = Encoding::kLatin1;
    return true;
  }
  return false;
}

std::string netDateToIso(std::string_view w) {
  w = trim(w);
  if (w.size() != 10 || w[2] != '/' || w[5] != '/') return "";
  auto d = w.substr(0, 2), m = w.substr(3, 2), y = w.substr(6, 4);
  if (!digits(d) || !digits(m) || !digits(y)) return "";
  if (!realDate(number(y), number(m), number(d))) return "";
  return isoDate(number(y), number(m), number(d));
}

std::string santeDateToIso(std::string_view w) {
  w = trim(w);
  if (w.size() < 8 || !digits(w.substr(0, 8))) return "";
  int y = number(w.substr(0, 4)), m = number(w.substr(4, 2)), d = number(w.substr(6, 2));
  if (!realDate(y, m, d)) return "";
  return isoDate(y, m, d);
}

std::string checkedNir(std::string_view written, std::string& why) {
  std::string s;
  for (char c : written)
    if (c != ' ' && c != '\t' && c != '.' && c != '-') s += static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  if (s.size() != 13 && s.size() != 15) {
    why = "a NIR has 13 characters and a 2-digit key; '" + std::string(written) + "' has " + std::to_string(s.size());
    return "";
  }
  std::string forKey = s.substr(0, 13);
  if (forKey.compare(5, 2, "2A") == 0) forKey.replace(5, 2, "19");
  else if (forKey.compare(5, 2, "2B") == 0) forKey.replace(5, 2, "18");
  if (!digits(forKey) || (s.size() == 15 && !digits(s.substr(13)))) {
    why = "a NIR holds digits only (2A or 2B for Corsica in positions 6-7)";
    return "";
  }
  if (s[0] != '1' && s[0] != '2' && s[0] != '3' && s[0] != '4' && s[0] != '7' && s[0] != '8') {
    why = "a NIR starts with 1, 2 (sex), 3, 4, 7 or 8";
    return "";
  }
  std::uint64_t n = 0;
  for (char c : forKey) n = n * 10 + static_cast<std::uint64_t>(c - '0');
  auto key = static_cast<int>(97 - n % 97);
  char k[3] = {static_cast<char>('0' + key / 10), static_cast<char>('0' + key % 10), 0};
  if (s.size() == 15 && s.compare(13, 2, k) != 0) {
    why = "the NIR's key is " + s.substr(13) + ", its number gives " + k;
    return "";
  }
  return s.substr(0, 13) + k;
}

Flavour detect(std::string_view bytes) {
  if (bytes.size() >= 3 && bytes.substr(0, 3) == "\xEF\xBB\xBF") bytes.remove_prefix(3);
  std::size_t i = 0;
  while (i < bytes.size() && (bytes[i] == '\r' || bytes[i] == '\n' || bytes[i] == ' ')) ++i;
  if (i + 2 < bytes.size() && bytes[i] == 'H' && !std::isalnum(static_cast<unsigned char>(bytes[i + 1])) &&
      bytes[i + 1] != ' ' && bytes[i + 1] != '\r' && bytes[i + 1] != '\n')
    return Flavour::kSante;
  if (bytes.find(kFin) != std::string_view::npos || bytes.find(kFinFichier) != std::string_view::npos ||
      bytes.find(kLab) != std::string_view::npos)
    return Flavour::kNet;
  // Without its markers (a truncated file): the header's dates on lines 7 or 10.
  auto lines = splitLines(bytes.substr(i, 4096));
  if (lines.size() >= 10 && (!netDateToIso(lines[6]).empty() || !netDateToIso(lines[9]).empty())) return Flavour::kNet;
  return Flavour::kUnknown;
}

bool readNet(std::string_view bytes, NetFile& file, std::vector<Issue>& issues) {
  file = NetFile{};
  std::string text = decode(bytes, file.encoding);
  auto lines = splitLines(text);
  std::size_t errorsBefore = static_cast<std::size_t>(
      std::count_if(issues.begin(), issues.end(), [](const Issue& i) { return i.error; }));
  std::size_t i = 0;
  while (i < lines.size()) {
    // Blank lines between documents.
    if (trim(lines[i]).empty() && !file.documents.empty()) {
      ++i;
      continue;
    }
    if (trim(lines[i]) == kFinFichier) {
      file.finFichier = true;
      for (std::size_t j = i + 1; j < lines.size(); ++j)
        if (!trim(lines[j]).empty()) {
          issues.push_back({false, lineRef(j + 1), "text after ****FINFICHIER**** is not read"});
          break;
        }
      break;
    }
    NetDocument d;
    d.firstLine = i + 1;
    std::size_t header = 0;
    while (header < 12 && i + header < lines.size() && !isMarker(lines[i + header])) ++header;
    if (header < 12) {
      issues.push_back({true, lineRef(i + header + 1),
                        "the document starting at line " + std::to_string(i + 1) + " has " + std::to_string(header) +
                            " header lines before " + (i + header < lines.size() ? "a ****...**** marker" : "the end of the file") +
                            "; HPRIM Net needs twelve"});
      return false;
    }
    std::string* fields[] = {&d.reference, &d.family, &d.given, &d.address1, &d.address2, &d.postcodeCity,
                             &d.birthDate, &d.nir, &d.requestNumber, &d.date, &d.sender, &d.recipient};
    for (std::size_t k = 0; k < 12; ++k) *fields[k] = std::string(trim(lines[i + k]));
    if (d.family.empty()) issues.push_back({true, lineRef(i + 2), "line 2 of the header (the patient's surname) is empty"});
    if (d.birthDate.empty())
      issues.push_back({false, lineRef(i + 7), "line 7 of the header (the birth date) is empty"});
    else if (netDateToIso(d.birthDate).empty())
      issues.push_back({true, lineRef(i + 7), "the birth date '" + d.birthDate + "' is not a date written DD/MM/YYYY"});
    if (!d.date.empty() && netDateToIso(d.date).empty())
      issues.push_back({false, lineRef(i + 10), "the date '" + d.date + "' is not a date written DD/MM/YYYY: left out"});
    if (!d.nir.empty()) {
      std::string why;
      if (checkedNir(d.nir, why).empty())
        issues.push_back({false, lineRef(i + 8), why + ": the social-security number is not used to find the patient"});
    }
    i += 12;
    std::vector<std::string_view> body;
    bool lab = false, closed = false;
    for (; i < lines.size(); ++i) {
      auto t = trim(lines[i]);
      if (t == kFin) {
        closed = true;
        ++i;
        break;
      }
      if (t == kFinFichier) {
        closed = true;  // the last document closed by the end of the file
        break;
      }
      if (t == kLab) {
        if (lab) issues.push_back({false, lineRef(i + 1), "a second ****LAB**** in one document"});
        lab = true;
        continue;
      }
      if (lab) {
        if (t.empty()) continue;
        if (t.substr(0, 4) != "RES|") {
          issues.push_back({false, lineRef(i + 1), "a line of the ****LAB**** section that is not a RES line is not read"});
          continue;
        }
        Result r;
        readResLine(t, i + 1, r, issues);
        d.results.push_back(std::move(r));
        continue;
      }
      if (t.substr(0, 4) == "RES|")
        issues.push_back({false, lineRef(i + 1), "a RES line outside the ****LAB**** section is kept as text"});
      body.push_back(trimRight(lines[i]));
    }
    if (!closed) {
      issues.push_back({true, lineRef(lines.size()),
                        "the document starting at line " + std::to_string(d.firstLine) +
                            " ends without ****FIN**** or ****FINFICHIER****: the file looks truncated"});
      return false;
    }
    while (!body.empty() && body.back().empty()) body.pop_back();
    std::size_t first = 0;
    while (first < body.size() && body[first].empty()) ++first;
    for (std::size_t k = first; k < body.size(); ++k) {
      if (k > first) d.text += '\n';
      d.text.append(body[k]);
    }
    file.documents.push_back(std::move(d));
  }
  if (file.documents.empty()) {
    issues.push_back({true, lineRef(1), "no HPRIM Net document in the file"});
    return false;
  }
  if (!file.finFichier) issues.push_back({false, lineRef(lines.size()), "the file does not end with ****FINFICHIER****"});
  auto errors = static_cast<std::size_t>(std::count_if(issues.begin(), issues.end(), [](const Issue& x) { return x.error; }));
  return errors == errorsBefore;
}

std::string writeNet(const std::vector<NetDocument>& docs, Encoding encoding, std::size_t* lost) {
  std::string out;
  // A value on one line (a line break becomes a space); in a RES field '|' becomes '/'.
  auto oneLine = [](std::string_view v, bool inField) {
    std::string s;
    for (std::size_t k = 0; k < v.size(); ++k) {
      char c = v[k];
      if (c == '\r' || c == '\n') {
        while (k + 1 < v.size() && (v[k + 1] == '\r' || v[k + 1] == '\n')) ++k;
        s += ' ';
      } else {
        s += inField && c == '|' ? '/' : c;
      }
    }
    return s;
  };
  for (const auto& d : docs) {
    for (const std::string* v : {&d.reference, &d.family, &d.given, &d.address1, &d.address2, &d.postcodeCity,
                                 &d.birthDate, &d.nir, &d.requestNumber, &d.date, &d.sender, &d.recipient}) {
      out += trimRight(oneLine(*v, false));
      out += "\r\n";
    }
    // A text line that would read as a marker is written with a leading '.'.
    for (auto line : splitLines(d.text)) {
      if (isMarker(line)) out += '.';
      out.append(trimRight(line));
      out += "\r\n";
    }
    if (!d.results.empty()) {
      out += kLab;
      out += "\r\n";
      for (const auto& r : d.results) {
        // Thirteen fields, the empty ones at the end left out.
        const std::string* values[] = {&r.label, &r.code, &r.type, &r.value, &r.unit, &r.low, &r.high, &r.flag, &r.status,
                                       &r.value2, &r.unit2, &r.low2, &r.high2};
        std::size_t used = 13;
        while (used > 0 && values[used - 1]->empty()) --used;
        out += "RES";
        for (std::size_t k = 0; k < used; ++k) {
          out += '|';
          out += oneLine(*values[k], true);
        }
        out += "|\r\n";
      }
    }
    out += kFin;
    out += "\r\n";
  }
  out += kFinFichier;
  out += "\r\n";
  if (encoding == Encoding::kLatin1) return charset::utf8ToSingleBytes(out, false, lost);
  return out;
}

namespace {

// One HPRIM Santé record split into fields, with its line for messages.
struct Record {
  std::string type;
  std::vector<std::string> fields;  // fields[0] is the record type
  std::size_t line = 0;
};

std::string where(const Record& r, std::size_t field) {
  return "line " + std::to_string(r.line) + " (" + r.type + ")" + (field ? " field " + std::to_string(field) : "");
}

}  // namespace

bool readSante(std::string_view bytes, SanteMessage& msg, std::vector<Issue>& issues) {
  msg = SanteMessage{};
  std::string text = decode(bytes, msg.encoding);
  auto lines = splitLines(text);
  std::size_t first = 0;
  while (first < lines.size() && trim(lines[first]).empty()) ++first;
  if (first == lines.size() || lines[first].size() < 3 || lines[first][0] != 'H') {
    issues.push_back({true, lineRef(first + 1), "HPRIM Santé starts with an H record"});
    return false;
  }
  auto h = lines[first];
  msg.field = h[1];
  if (static_cast<unsigned char>(msg.field) < 0x21 || static_cast<unsigned char>(msg.field) > 0x7E || std::isalnum(static_cast<unsigned char>(msg.field))) {
    issues.push_back({true, lineRef(first + 1) + " (H)", "the field separator after H is not a printable ASCII sign"});
    return false;
  }
  // The delimiters follow the field separator: component, repetition, escape, sub-component (the
  // order of HL7's MSH-2); the field ends at the next field separator.
  std::size_t end = h.find(msg.field, 2);
  auto delims = h.substr(2, end == std::string_view::npos ? std::string_view::npos : end - 2);
  std::string seen(1, msg.field);
  char* targets[] = {&msg.component, &msg.repetition, &msg.escape, &msg.subcomponent};
  if (delims.empty() || delims.size() > 4) {
    issues.push_back({true, lineRef(first + 1) + " (H) field 1",
                      "the H record declares its delimiters after the field separator (component, repetition, escape, "
                      "sub-component); found '" + std::string(delims) + "'"});
    return false;
  }
  for (std::size_t k = 0; k < 4; ++k) {
    if (k >= delims.size()) {
      *targets[k] = 0;
      continue;
    }
    char c = delims[k];
    auto u = static_cast<unsigned char>(c);
    if (u < 0x21 || u > 0x7E || std::isalnum(u) || seen.find(c) != std::string::npos) {
      issues.push_back({true, lineRef(first + 1) + " (H) field 1",
                        "a delimiter is a letter, a digit, a space, not ASCII or used twice (byte " + std::to_string(u) + ")"});
      return false;
    }
    seen += c;
    *targets[k] = c;
  }
  // Records, with A records appended to the one before.
  std::vector<Record> records;
  for (std::size_t n = first; n < lines.size(); ++n) {
    auto line = trimRight(lines[n]);
    if (line.empty()) continue;
    if (line.size() >= 2 && line[0] == 'A' && line[1] == msg.field) {
      if (records.empty()) continue;
      auto& prev = records.back();
      auto more = splitOn(line.substr(2), msg.field);
      prev.fields.back().append(more[0]);
      for (std::size_t k = 1; k < more.size(); ++k) prev.fields.emplace_back(more[k]);
      continue;
    }
    Record r;
    r.line = n + 1;
    if (n == first) {
      r.type = "H";
      r.fields.emplace_back("H");
      r.fields.emplace_back(delims);
      if (end != std::string_view::npos)
        for (auto f : splitOn(line.substr(end + 1), msg.field)) r.fields.emplace_back(f);
    } else {
      for (auto f : splitOn(line, msg.field)) r.fields.emplace_back(f);
      r.type = r.fields[0];
    }
    records.push_back(std::move(r));
  }
  // A field's components, unescaped.
  auto unescape = [&](std::string_view v) {
    std::string out;
    for (std::size_t k = 0; k < v.size(); ++k) {
      if (msg.escape && v[k] == msg.escape) {
        auto close = v.find(msg.escape, k + 1);
        if (close != std::string_view::npos && close == k + 2) {
          char e = v[k + 1];
          char put = e == 'F' ? msg.field : e == 'S' ? msg.component : e == 'R' ? msg.repetition
                   : e == 'E' ? msg.escape : e == 'T' ? msg.subcomponent : 0;
          if (put) {
            out += put;
            k = close;
            continue;
          }
        }
      }
      out += v[k];
    }
    return out;
  };
  auto component = [&](const Record& r, std::size_t f, std::size_t c) -> std::string {
    if (f >= r.fields.size()) return "";
    std::string_view v = r.fields[f];
    if (msg.repetition) v = v.substr(0, v.find(msg.repetition));
    auto parts = splitOn(v, msg.component);
    return c < parts.size() ? std::string(trim(unescape(parts[c]))) : std::string();
  };
  std::size_t errorsBefore = static_cast<std::size_t>(
      std::count_if(issues.begin(), issues.end(), [](const Issue& i) { return i.error; }));
  SantePatient* patient = nullptr;
  SantePatient::Request* request = nullptr;
  Result* result = nullptr;
  for (const auto& r : records) {
    if (msg.ended) {
      issues.push_back({false, where(r, 0), "records after the L record are not read"});
      break;
    }
    if (r.type == "H") {
      if (&r != &records.front()) {
        issues.push_back({true, where(r, 0), "a second H record before the L record"});
        break;
      }
      msg.fileName = component(r, 2, 0);
      msg.senderCode = component(r, 4, 0);
      msg.senderName = component(r, 4, 1);
      msg.type = component(r, 6, 0);
      msg.receiverCode = component(r, 9, 0);
      msg.receiverName = component(r, 9, 1);
      msg.processing = component(r, 11, 0);
      msg.version = component(r, 12, 0);
      msg.date = component(r, 13, 0);
      if (!msg.version.empty() && msg.version.rfind("H2.", 0) != 0)
        issues.push_back({false, where(r, 12), "version '" + msg.version + "' is not HPRIM Santé 2.x: read as 2.x"});
      if (!msg.date.empty() && santeDateToIso(msg.date).empty())
        issues.push_back({false, where(r, 13), "'" + msg.date + "' is not a date YYYYMMDD[HHMM[SS]]"});
    } else if (r.type == "P") {
      msg.patients.emplace_back();
      patient = &msg.patients.back();
      request = nullptr;
      result = nullptr;
      patient->seq = component(r, 1, 0);
      patient->requesterId = component(r, 2, 0);
      patient->labId = component(r, 3, 0);
      patient->family = component(r, 5, 0);
      patient->given = component(r, 5, 1);
      patient->birthName = component(r, 6, 0);
      patient->birthDate = component(r, 7, 0);
      patient->sex = component(r, 8, 0);
      patient->street = component(r, 10, 0);
      patient->city = component(r, 10, 2);
      patient->postcode = component(r, 10, 4);
      if (patient->family.empty()) issues.push_back({true, where(r, 5), "the patient's name is empty"});
      if (!patient->birthDate.empty() && santeDateToIso(patient->birthDate).empty())
        issues.push_back({true, where(r, 7), "the birth date '" + patient->birthDate + "' is not a date YYYYMMDD"});
      if (!patient->sex.empty() && patient->sex != "M" && patient->sex != "F" && patient->sex != "U")
        issues.push_back({false, where(r, 8), "sex '" + patient->sex + "' is not M, F or U: left out"});
    } else if (r.type == "OBR") {
      if (!patient) {
        issues.push_back({true, where(r, 0), "an OBR record before any P record"});
        continue;
      }
      patient->requests.emplace_back();
      request = &patient->requests.back();
      result = nullptr;
      request->placerId = component(r, 2, 0);
      request->fillerId = component(r, 3, 0);
      request->code = component(r, 4, 0);
      request->label = component(r, 4, 1);
      request->date = component(r, 7, 0);
      if (!request->date.empty() && santeDateToIso(request->date).empty())
        issues.push_back({false, where(r, 7), "'" + request->date + "' is not a date YYYYMMDD[HHMM]: left out"});
    } else if (r.type == "OBX") {
      if (!request) {
        issues.push_back({true, where(r, 0), "an OBX record before any OBR record of its patient"});
        continue;
      }
      request->results.emplace_back();
      result = &request->results.back();
      result->type = component(r, 2, 0);
      result->code = component(r, 3, 0);
      result->label = component(r, 3, 1);
      result->codeSystem = component(r, 3, 2);
      // OBX-5 may repeat (a text result on several lines).
      if (r.fields.size() > 5) {
        std::string_view v = r.fields[5];
        bool firstRep = true;
        for (auto rep : msg.repetition ? splitOn(v, msg.repetition) : std::vector<std::string_view>{v}) {
          if (!firstRep) result->value += '\n';
          firstRep = false;
          result->value += unescape(rep);
        }
        result->value = std::string(trim(result->value));
      }
      result->unit = component(r, 6, 0);
      std::string range = component(r, 7, 0);
      if (auto dash = range.find('-', 1); dash != std::string::npos) {
        result->low = std::string(trim(range.substr(0, dash)));
        result->high = std::string(trim(range.substr(dash + 1)));
      } else {
        result->low = range;
      }
      result->flag = component(r, 8, 0);
      result->status = component(r, 11, 0);
      result->date = component(r, 14, 0);
      if (result->code.empty() && result->label.empty())
        issues.push_back({true, where(r, 3), "the result names neither a code nor a label"});
      if (result->type == "NM" && !result->value.empty() && !numericValue(result->value))
        issues.push_back({false, where(r, 5), "the result is declared NM but '" + result->value + "' is not a number: kept as text"});
    } else if (r.type == "C") {
      std::string note = component(r, 3, 0);
      if (result) result->comments.push_back(note);
      else if (request) request->comments.push_back(note);
      else issues.push_back({false, where(r, 0), "a comment outside any request is not read"});
    } else if (r.type == "L") {
      msg.ended = true;
    } else {
      issues.push_back({false, where(r, 0), "record type '" + r.type + "' is not read"});
    }
  }
  if (!msg.ended) issues.push_back({true, lineRef(lines.size()), "no L record closes the message: the file looks truncated"});
  if (msg.patients.empty()) issues.push_back({true, lineRef(first + 1), "the message holds no P record"});
  auto errors = static_cast<std::size_t>(std::count_if(issues.begin(), issues.end(), [](const Issue& x) { return x.error; }));
  return errors == errorsBefore;
}

}  // namespace passerelle::hprim
