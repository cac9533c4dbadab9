// HL7 v2 ER7 parsing, access, escaping and writing (see message.h).
#include "mappings/hl7v2/message.h"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cstring>
#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#include "mappings/common/charset.h"
#include "mappings/common/utf8.h"

namespace passerelle::hl7v2 {

namespace {

bool isSegmentEnd(char c) { return c == '\r' || c == '\n'; }

using charset::validUtf8;

std::string singleBytesToUtf8(std::string_view s, Charset c) { return charset::singleBytesToUtf8(s, c == Charset::kLatin9); }

std::string utf8ToSingleBytes(std::string_view s, Charset c) { return charset::utf8ToSingleBytes(s, c == Charset::kLatin9); }

// The character set MSH-18 names (its first repetition); nullopt when not one of ours.
std::optional<Charset> charsetOf(std::string_view v) {
  while (!v.empty() && v.back() == ' ') v.remove_suffix(1);
  if (v.empty() || v == "ASCII") return Charset::kAscii;
  if (v == "UNICODE UTF-8" || v == "UNICODE" || v == "UTF-8") return Charset::kUtf8;
  if (v == "8859/1") return Charset::kLatin1;
  if (v == "8859/15") return Charset::kLatin9;
  return std::nullopt;
}

std::string_view part(std::string_view s, char sep, int n) {
  // The n-th (1-based) piece of s split by sep (a plain loop: the pieces are short).
  const char* p = s.data();
  const char* end = p + s.size();
  for (int i = 1; i < n; ++i) {
    while (p < end && *p != sep) ++p;
    if (p == end) return {};
    ++p;
  }
  const char* q = p;
  while (q < end && *q != sep) ++q;
  return std::string_view(p, static_cast<std::size_t>(q - p));
}

int pieces(std::string_view s, char sep) {
  if (s.empty()) return 0;
  return static_cast<int>(std::count(s.begin(), s.end(), sep)) + 1;
}

Issue issue(const char* severity, std::string location, std::string code, std::string message, int segment = 0,
            std::string segmentId = {}, int field = 0) {
  Issue i;
  i.severity = severity;
  i.location = std::move(location);
  i.code = std::move(code);
  i.message = std::move(message);
  i.segment = segment;
  i.segmentId = std::move(segmentId);
  i.field = field;
  return i;
}

}  // namespace

std::string_view charsetName(Charset c) {
  switch (c) {
    case Charset::kAscii: return "";
    case Charset::kUtf8: return "UNICODE UTF-8";
    case Charset::kLatin1: return "8859/1";
    case Charset::kLatin9: return "8859/15";
  }
  return "";
}

// The refusal of delimiters that are not single bytes, kept out of line: the hot path of parse()
// stays small enough for the compiler to keep its loops tight (inlined here, it cost a third of the
// parse rate).
[[gnu::noinline, gnu::cold]] static void multiByteDelimiters(std::string_view enc, std::vector<Issue>& issues) {
  issues.push_back(issue("error", "MSH-2", "102",
                         "MSH-1 and MSH-2 must be single-byte (ASCII) characters; MSH-2 is '" + std::string(enc) +
                             "' (a multi-byte character such as '\xcb\x9c' (U+02DC) where '~' is meant?)",
                         1, "MSH", 2));
}

std::optional<Message> Message::parse(std::string_view bytes, std::vector<Issue>& issues) {
  Message m;
  if (!m.read(bytes, issues)) return std::nullopt;
  return m;
}

bool Message::read(std::string_view bytes, std::vector<Issue>& issues) {
  Message& m = *this;
  segments_.clear();
  fields_.clear();
  text_.clear();
  d_ = Delimiters{};
  charset_ = Charset::kAscii;
  if (bytes.size() >= 3 && std::memcmp(bytes.data(), "\xEF\xBB\xBF", 3) == 0) bytes.remove_prefix(3);
  while (!bytes.empty() && (isSegmentEnd(bytes.front()) || bytes.front() == ' ' || bytes.front() == '\t')) bytes.remove_prefix(1);
  if (bytes.size() < 8 || bytes.substr(0, 3) != "MSH") {
    issues.push_back(issue("error", "MSH", "100", "the message does not start with an MSH segment"));
    return false;
  }
  m.d_.field = bytes[3];
  std::size_t encEnd = bytes.find(m.d_.field, 4);
  std::size_t lineEnd = 0;
  while (lineEnd < bytes.size() && !isSegmentEnd(bytes[lineEnd])) ++lineEnd;
  if (lineEnd == bytes.size()) lineEnd = std::string_view::npos;
  if (encEnd == std::string_view::npos || (lineEnd != std::string_view::npos && encEnd > lineEnd)) encEnd = std::min(lineEnd, bytes.size());
  std::string_view enc = bytes.substr(4, encEnd - 4);
  // Delimiters are single characters of one byte: a multi-byte character there (an editor's "˜",
  // U+02DC, for "~") would be read as two delimiters and split every value wrongly.
  if (static_cast<unsigned char>(m.d_.field) >= 0x80 ||
      std::any_of(enc.begin(), enc.end(), [](char c) { return static_cast<unsigned char>(c) >= 0x80; })) {
    multiByteDelimiters(enc, issues);
    return false;
  }
  auto badDelimiter = [&](char c) { return std::isalnum(static_cast<unsigned char>(c)) || c == ' ' || isSegmentEnd(c); };
  if (badDelimiter(m.d_.field) || enc.size() < 4 || enc.size() > 5) {
    issues.push_back(issue("error", "MSH-2", "102",
                           "MSH-1 and MSH-2 must declare the field separator and four (or five) encoding characters", 1, "MSH", 2));
    return false;
  }
  m.d_.component = enc[0];
  m.d_.repetition = enc[1];
  m.d_.escape = enc[2];
  m.d_.subcomponent = enc[3];
  m.d_.truncation = enc.size() == 5 ? enc[4] : 0;
  std::string distinct{m.d_.field};
  for (char c : enc) {
    if (badDelimiter(c) || distinct.find(c) != std::string::npos) {
      issues.push_back(issue("error", "MSH-2", "102", std::string("the encoding characters '") + std::string(enc) +
                                                          "' are not distinct non-alphanumeric characters", 1, "MSH", 2));
      return false;
    }
    distinct += c;
  }

  // The character set, from MSH-18 (the header is ASCII in every character set we read).
  std::string_view msh = bytes.substr(0, lineEnd == std::string_view::npos ? bytes.size() : lineEnd);
  std::string_view cs = part(part(msh, m.d_.field, 18), m.d_.repetition, 1);
  auto charset = charsetOf(cs);
  if (!charset) {
    issues.push_back(issue("warning", "MSH-18", "102", "character set '" + std::string(cs) +
                                                           "' is not read here (UTF-8, 8859/1, 8859/15): taken as UTF-8 where valid, else 8859/1",
                           1, "MSH", 18));
  }
  m.charset_ = charset.value_or(Charset::kUtf8);
  if (m.charset_ == Charset::kLatin1 || m.charset_ == Charset::kLatin9) {
    m.text_ = singleBytesToUtf8(bytes, m.charset_);
  } else if (!validUtf8(bytes)) {
    issues.push_back(issue("warning", "MSH-18", "102",
                           "the message is not valid UTF-8 although MSH-18 says '" + std::string(cs) + "': read as 8859/1", 1, "MSH", 18));
    m.text_ = singleBytesToUtf8(bytes, Charset::kLatin1);
    m.charset_ = Charset::kLatin1;
  } else {
    m.text_.assign(bytes.data(), bytes.size());
  }

  m.index(issues);
  return true;
}

namespace {

// Whether `t` holds an LF or two CRs in a row (a blank line): most messages hold neither.
bool segmentEndsNeedWork(const std::string& t) {
  const char* p = t.data();
  std::size_t n = t.size(), i = 0;
#if defined(__SSE2__)
  const __m128i vlf = _mm_set1_epi8('\n'), vcr = _mm_set1_epi8('\r');
  for (; i + 17 <= n; i += 16) {
    __m128i a = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p + i));
    __m128i b = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p + i + 1));
    __m128i bad = _mm_or_si128(_mm_cmpeq_epi8(a, vlf), _mm_and_si128(_mm_cmpeq_epi8(a, vcr), _mm_cmpeq_epi8(b, vcr)));
    if (_mm_movemask_epi8(bad)) return true;
  }
#endif
  for (; i < n; ++i)
    if (p[i] == '\n' || (p[i] == '\r' && i + 1 < n && p[i + 1] == '\r')) return true;
  return false;
}

// Every segment of `t` ended by exactly one '\r': LF and CRLF ends become '\r', blank lines go.
void normaliseSegmentEnds(std::string& t) {
  if (!segmentEndsNeedWork(t)) {
    if (!t.empty() && t.back() != '\r') t += '\r';
    return;
  }
  std::size_t out = 0;
  bool lineStart = true;
  for (std::size_t i = 0; i < t.size(); ++i) {
    char c = t[i];
    if (isSegmentEnd(c)) {
      if (!lineStart) t[out++] = '\r';
      lineStart = true;
    } else {
      t[out++] = c;
      lineStart = false;
    }
  }
  t.resize(out);
  if (!t.empty() && t.back() != '\r') t += '\r';
}

bool segmentNameChar(char c) { return (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'); }

[[gnu::noinline, gnu::cold]] void badSegmentName(std::string_view name, std::size_t segment, std::vector<Issue>& issues) {
  issues.push_back(issue("warning", "segment " + std::to_string(segment), "100",
                         "'" + std::string(name.substr(0, 20)) + "' is not a segment name (three upper-case letters or digits)",
                         static_cast<int>(segment), std::string(name.substr(0, 3))));
}

}  // namespace

// Locates segments and fields in text_ (segments ended by '\r'): one pass, sixteen bytes at a
// time where SSE2 is there, stopping only at field separators and segment ends.
void Message::index(std::vector<Issue>& issues) {
  normaliseSegmentEnds(text_);
  segments_.clear();
  fields_.clear();
  fields_.reserve(text_.size() / 6 + 8);
  const char* base = text_.data();
  const auto n = static_cast<std::uint32_t>(text_.size());
  const char fs = d_.field;
  SegmentSpan seg;
  bool named = false;
  std::uint32_t fieldStart = 0;
  auto special = [&](std::uint32_t p) __attribute__((always_inline)) {
    if (base[p] == fs) {
      if (!named) {
        named = true;
        seg.nameEnd = p;
        if (segments_.empty()) fields_.push_back({p, p + 1});  // MSH-1: the separator itself
      } else {
        fields_.push_back({fieldStart, p});
      }
      fieldStart = p + 1;
      return;
    }
    // '\r': the segment ends.
    if (named) fields_.push_back({fieldStart, p});
    else seg.nameEnd = p;
    seg.end = p;
    seg.fieldCount = static_cast<std::uint32_t>(fields_.size()) - seg.firstField;
    std::string_view name(base + seg.begin, seg.nameEnd - seg.begin);
    if (name.size() != 3 || !segmentNameChar(name[0]) || !segmentNameChar(name[1]) || !segmentNameChar(name[2]))
      badSegmentName(name, segments_.size() + 1, issues);
    segments_.push_back(seg);
    seg = SegmentSpan{};
    seg.begin = seg.nameEnd = p + 1;
    seg.firstField = static_cast<std::uint32_t>(fields_.size());
    named = false;
  };
  std::uint32_t i = 0;
#if defined(__SSE2__)
  const __m128i vfs = _mm_set1_epi8(fs), vcr = _mm_set1_epi8('\r');
  for (; i + 16 <= n; i += 16) {
    __m128i block = _mm_loadu_si128(reinterpret_cast<const __m128i*>(base + i));
    auto mask = static_cast<unsigned>(_mm_movemask_epi8(_mm_or_si128(_mm_cmpeq_epi8(block, vfs), _mm_cmpeq_epi8(block, vcr))));
    while (mask) {
      special(i + static_cast<std::uint32_t>(__builtin_ctz(mask)));
      mask &= mask - 1;
    }
  }
#endif
  for (; i < n; ++i)
    if (base[i] == fs || base[i] == '\r') special(i);
}

std::string_view Message::segmentName(std::size_t seg) const {
  if (seg >= segments_.size()) return {};
  return std::string_view(text_.data() + segments_[seg].begin, segments_[seg].nameEnd - segments_[seg].begin);
}

std::string_view Message::segmentText(std::size_t seg) const {
  if (seg >= segments_.size()) return {};
  return std::string_view(text_.data() + segments_[seg].begin, segments_[seg].end - segments_[seg].begin);
}

std::optional<std::size_t> Message::find(std::string_view name, std::size_t from) const {
  if (name.size() == 3) {  // every standard segment: three bytes compared without a call
    for (std::size_t i = from; i < segments_.size(); ++i) {
      const SegmentSpan& s = segments_[i];
      const char* p = text_.data() + s.begin;
      if (s.nameEnd - s.begin == 3 && p[0] == name[0] && p[1] == name[1] && p[2] == name[2]) return i;
    }
    return std::nullopt;
  }
  for (std::size_t i = from; i < segments_.size(); ++i) {
    const SegmentSpan& s = segments_[i];
    if (s.nameEnd - s.begin == name.size() && std::equal(name.begin(), name.end(), text_.data() + s.begin)) return i;
  }
  return std::nullopt;
}

int Message::fieldCount(std::size_t seg) const { return seg < segments_.size() ? static_cast<int>(segments_[seg].fieldCount) : 0; }

Message::Span Message::fieldSpan(std::size_t seg, int field) const {
  if (seg >= segments_.size() || field < 1 || static_cast<std::uint32_t>(field) > segments_[seg].fieldCount) return {};
  return fields_[segments_[seg].firstField + static_cast<std::uint32_t>(field) - 1];
}

std::string_view Message::raw(std::size_t seg, int field, int rep, int comp, int sub) const {
  Span s = fieldSpan(seg, field);
  std::string_view v(text_.data() + s.begin, s.end - s.begin);
  if (seg == 0 && field <= 2) return (rep <= 1 && comp <= 1 && sub <= 1) ? v : std::string_view();  // MSH-1, MSH-2: not split
  if (rep > 0) v = part(v, d_.repetition, rep);
  if (comp > 0) v = part(v, d_.component, comp);
  if (sub > 0) v = part(v, d_.subcomponent, sub);
  return v;
}

int Message::repetitions(std::size_t seg, int field) const {
  if (seg == 0 && field <= 2) return fieldSpan(seg, field).end > fieldSpan(seg, field).begin ? 1 : 0;
  return pieces(raw(seg, field, 0, 0, 0), d_.repetition);
}

int Message::components(std::size_t seg, int field, int rep) const { return pieces(raw(seg, field, rep, 0, 0), d_.component); }

int Message::subcomponents(std::size_t seg, int field, int rep, int comp) const {
  return pieces(raw(seg, field, rep, comp, 0), d_.subcomponent);
}

std::string Message::value(std::size_t seg, int field, int rep, int comp, int sub) const {
  if (seg == 0 && field <= 2) return std::string(raw(seg, field, rep, comp, sub));
  return unescape(raw(seg, field, rep, comp, sub), d_);
}

std::string Message::get(std::string_view path) const {
  // SEG[n]-F(r).C.S
  if (path.size() < 5) return {};
  std::string_view name = path.substr(0, 3);
  std::size_t at = 3;
  int occurrence = 1, field = 0, rep = 1, comp = 0, sub = 0;
  auto number = [&](int& out) {
    std::size_t start = at;
    while (at < path.size() && std::isdigit(static_cast<unsigned char>(path[at]))) ++at;
    return at > start && std::from_chars(path.data() + start, path.data() + at, out).ec == std::errc();
  };
  if (at < path.size() && path[at] == '[') {
    ++at;
    if (!number(occurrence) || at >= path.size() || path[at] != ']') return {};
    ++at;
  }
  if (at >= path.size() || path[at] != '-') return {};
  ++at;
  if (!number(field)) return {};
  if (at < path.size() && path[at] == '(') {
    ++at;
    if (!number(rep) || at >= path.size() || path[at] != ')') return {};
    ++at;
  }
  if (at < path.size() && path[at] == '.') {
    ++at;
    if (!number(comp)) return {};
  }
  if (at < path.size() && path[at] == '.') {
    ++at;
    if (!number(sub)) return {};
  }
  if (at != path.size() || occurrence < 1 || rep < 1) return {};
  std::optional<std::size_t> seg;
  for (int k = 0, from = 0; k < occurrence; ++k) {
    seg = find(name, static_cast<std::size_t>(from));
    if (!seg) return {};
    from = static_cast<int>(*seg) + 1;
  }
  return value(*seg, field, rep, comp, sub);
}

std::string Message::encode(std::string_view terminator) const {
  std::string out;
  out.reserve(text_.size() + segments_.size() * terminator.size());
  for (std::size_t i = 0; i < segments_.size(); ++i) {
    out.append(segmentText(i));
    out.append(terminator);
  }
  return out;
}

std::string Message::encodeInCharset(std::string_view terminator) const {
  std::string utf8 = encode(terminator);
  if (charset_ == Charset::kLatin1 || charset_ == Charset::kLatin9) return utf8ToSingleBytes(utf8, charset_);
  return utf8;
}

std::string escape(std::string_view text, const Delimiters& d) {
  std::string out;
  out.reserve(text.size() + 8);
  for (std::size_t i = 0; i < text.size(); ++i) {
    char c = text[i];
    if (c == d.escape) out.append({d.escape, 'E', d.escape});
    else if (c == d.field) out.append({d.escape, 'F', d.escape});
    else if (c == d.component) out.append({d.escape, 'S', d.escape});
    else if (c == d.subcomponent) out.append({d.escape, 'T', d.escape});
    else if (c == d.repetition) out.append({d.escape, 'R', d.escape});
    else if (d.truncation && c == d.truncation) out.append({d.escape, 'P', d.escape});
    else if (c == '\r' && i + 1 < text.size() && text[i + 1] == '\n') continue;  // CRLF: one line break
    else if (c == '\n' || c == '\r') out.append({d.escape, '.', 'b', 'r', d.escape});
    else out += c;
  }
  return out;
}

std::string unescape(std::string_view raw, const Delimiters& d) {
  if (std::find(raw.begin(), raw.end(), d.escape) == raw.end()) return std::string(raw);
  std::string out;
  out.reserve(raw.size());
  for (std::size_t i = 0; i < raw.size(); ++i) {
    char c = raw[i];
    std::size_t close = c == d.escape ? raw.find(d.escape, i + 1) : std::string_view::npos;
    if (close == std::string_view::npos || close == i + 1) {
      out += c;  // not an escape sequence: kept as written
      continue;
    }
    std::string_view seq = raw.substr(i + 1, close - i - 1);
    bool known = true;
    if (seq == "F") out += d.field;
    else if (seq == "S") out += d.component;
    else if (seq == "T") out += d.subcomponent;
    else if (seq == "R") out += d.repetition;
    else if (seq == "E") out += d.escape;
    else if (seq == "P" && d.truncation) out += d.truncation;
    else if (seq == ".br") out += '\n';
    else if (seq.substr(0, 3) == ".sp") {
      int n = 1;
      std::string_view arg = seq.substr(3);
      while (!arg.empty() && (arg.front() == ' ' || arg.front() == '+')) arg.remove_prefix(1);
      if (!arg.empty()) std::from_chars(arg.data(), arg.data() + arg.size(), n);
      out.append(static_cast<std::size_t>(std::clamp(n, 1, 100)), '\n');
    } else if (seq == "H" || seq == "N" || seq == ".fi" || seq == ".nf" || seq.substr(0, 3) == ".in" || seq.substr(0, 3) == ".ti" ||
               seq.substr(0, 3) == ".sk" || seq == ".ce") {
      // formatting without a plain-text equivalent
    } else if (seq.size() >= 3 && seq[0] == 'X' && seq.size() % 2 == 1 &&
               std::all_of(seq.begin() + 1, seq.end(), [](char h) { return std::isxdigit(static_cast<unsigned char>(h)); })) {
      std::string bytes;
      for (std::size_t k = 1; k + 1 < seq.size(); k += 2) {
        unsigned v = 0;
        std::from_chars(seq.data() + k, seq.data() + k + 2, v, 16);
        bytes += static_cast<char>(v);
      }
      out += validUtf8(bytes) ? bytes : singleBytesToUtf8(bytes, Charset::kLatin1);
    } else {
      known = false;
    }
    if (!known) {
      out.append(raw.substr(i, close - i + 1));  // \Cxxyy\, \Mxxyyzz\, \Zxxx\ and the unknown: kept
    }
    i = close;
  }
  return out;
}

MessageBuilder& MessageBuilder::segment(std::string_view name) {
  segments_.push_back(Segment{std::string(name), {}});
  return *this;
}

MessageBuilder& MessageBuilder::set(int field, std::string_view value, int rep, int comp, int sub) {
  if (segments_.empty() || field < 1 || rep < 1 || comp < 1 || sub < 1) return *this;
  Segment& s = segments_.back();
  if (s.name == "MSH" && field <= 2) return *this;
  if (static_cast<int>(s.fields.size()) < field) s.fields.resize(static_cast<std::size_t>(field));
  Field& f = s.fields[static_cast<std::size_t>(field) - 1];
  f.rawText = false;
  if (static_cast<int>(f.reps.size()) < rep) f.reps.resize(static_cast<std::size_t>(rep));
  auto& comps = f.reps[static_cast<std::size_t>(rep) - 1];
  if (static_cast<int>(comps.size()) < comp) comps.resize(static_cast<std::size_t>(comp));
  auto& subs = comps[static_cast<std::size_t>(comp) - 1];
  if (static_cast<int>(subs.size()) < sub) subs.resize(static_cast<std::size_t>(sub));
  subs[static_cast<std::size_t>(sub) - 1] = std::string(value);
  return *this;
}

MessageBuilder& MessageBuilder::setRaw(int field, std::string_view raw) {
  if (segments_.empty() || field < 1) return *this;
  Segment& s = segments_.back();
  if (s.name == "MSH" && field <= 2) return *this;
  if (static_cast<int>(s.fields.size()) < field) s.fields.resize(static_cast<std::size_t>(field));
  Field& f = s.fields[static_cast<std::size_t>(field) - 1];
  f.rawText = true;
  f.raw = std::string(raw);
  f.reps.clear();
  return *this;
}

std::string MessageBuilder::encode(std::string_view terminator) const {
  std::string out;
  for (const auto& s : segments_) {
    out += s.name;
    std::size_t first = 0;
    if (s.name == "MSH") {
      out += d_.field;
      out += d_.component;
      out += d_.repetition;
      out += d_.escape;
      out += d_.subcomponent;
      if (d_.truncation) out += d_.truncation;
      first = 2;
    }
    // Trailing empty fields are left out.
    std::size_t last = s.fields.size();
    auto empty = [](const Field& f) {
      if (f.rawText) return f.raw.empty();
      for (const auto& r : f.reps)
        for (const auto& c : r)
          for (const auto& x : c)
            if (!x.empty()) return false;
      return true;
    };
    while (last > first && empty(s.fields[last - 1])) --last;
    for (std::size_t i = first; i < last; ++i) {
      out += d_.field;
      const Field& f = s.fields[i];
      if (f.rawText) {
        out += f.raw;
        continue;
      }
      for (std::size_t r = 0; r < f.reps.size(); ++r) {
        if (r) out += d_.repetition;
        const auto& comps = f.reps[r];
        std::size_t lastComp = comps.size();
        while (lastComp > 1 && std::all_of(comps[lastComp - 1].begin(), comps[lastComp - 1].end(), [](const std::string& x) { return x.empty(); }))
          --lastComp;
        for (std::size_t c = 0; c < lastComp; ++c) {
          if (c) out += d_.component;
          const auto& subs = comps[c];
          std::size_t lastSub = subs.size();
          while (lastSub > 1 && subs[lastSub - 1].empty()) --lastSub;
          for (std::size_t k = 0; k < lastSub; ++k) {
            if (k) out += d_.subcomponent;
            out += escape(subs[k], d_);
          }
        }
      }
    }
    out.append(terminator);
  }
  return out;
}

}  // namespace passerelle::hl7v2
