// HL7 v2 messages (versions 2.3 to 2.8), read and written in their ER7 ("pipe and hat") encoding.
// Knows the encoding, not what messages mean: no Poco, no xerces-c, no curl, no FHIR.
//
// Parsing makes one pass over the bytes: an optional UTF-8 byte-order mark is dropped, segments may
// end with CR, LF or CRLF, the delimiters are those MSH-1 and MSH-2 declare, and text in the
// character set MSH-18 names (ASCII, UTF-8, ISO 8859-1, ISO 8859-15) is held as UTF-8. Fields are
// located at parse time; repetitions, components and sub-components are split when they are read,
// and values are unescaped (\F\ \S\ \T\ \R\ \E\, \Xhh..\, the formatting escapes) when asked for.
// Every segment is kept, Z-segments included, in order. encode() gives the message back as parsed
// (its segments joined by the terminator asked for).
//
// Positions are 1-based as in the standard: PID-3 is field 3 of PID; MSH-1 is the field separator
// itself and MSH-2 the encoding characters.
//
// Thread-safety: a Message is a value; const methods may be called from several threads at once.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace passerelle::hl7v2 {

struct Delimiters {
  char field = '|';
  char component = '^';
  char repetition = '~';
  char escape = '\\';
  char subcomponent = '&';
  char truncation = 0;  // HL7 2.7+ (MSH-2's fifth character); 0 when not declared
};

// A problem in a message, with where it is ("MSH-9", "PID-7.1", "segment 4") and the HL7 error
// code an acknowledgement carries for it (ERR-3, table 0357: 100 segment sequence error, 101
// required field missing, 102 data type error, 200 unsupported message type, 203 unsupported
// version, 207 application internal error).
struct Issue {
  std::string severity;  // "error" | "warning"
  std::string location;  // segment-field path, or "segment N"
  int segment = 0;       // 1-based segment index (0: the message as a whole)
  std::string segmentId;
  int field = 0, component = 0;
  std::string code = "207";
  std::string message;
};

// Character sets of MSH-18 this library reads and writes.
enum class Charset { kAscii, kUtf8, kLatin1, kLatin9 };

class Message {
 public:
  // Parses `bytes`. Returns nothing (with an error issue) when no usable MSH segment starts the
  // message; otherwise the message, with warnings (an unknown character set, invalid UTF-8...).
  static std::optional<Message> parse(std::string_view bytes, std::vector<Issue>& issues);
  // The same into this message, reusing its buffers (a reader of many messages keeps one Message).
  // False (the message left empty) where parse() returns nothing.
  bool read(std::string_view bytes, std::vector<Issue>& issues);

  const Delimiters& delimiters() const { return d_; }
  Charset charset() const { return charset_; }

  std::size_t segmentCount() const { return segments_.size(); }
  std::string_view segmentName(std::size_t seg) const;  // seg: 0-based
  // The whole segment's text (escaped, without its terminator).
  std::string_view segmentText(std::size_t seg) const;
  // The first segment named `name` at or after `from` (0-based), if any.
  std::optional<std::size_t> find(std::string_view name, std::size_t from = 0) const;
  // The highest field number present in segment `seg` (0 for a segment with no field).
  int fieldCount(std::size_t seg) const;

  // The escaped text of a field, one of its repetitions (1-based), a component of that repetition
  // (0: the whole repetition) and a sub-component of it (0: the whole component). Empty when absent.
  std::string_view raw(std::size_t seg, int field, int rep = 1, int comp = 0, int sub = 0) const;
  int repetitions(std::size_t seg, int field) const;
  int components(std::size_t seg, int field, int rep = 1) const;
  int subcomponents(std::size_t seg, int field, int rep, int comp) const;
  // The unescaped text (formatting escapes turned into line breaks or dropped).
  std::string value(std::size_t seg, int field, int rep = 1, int comp = 1, int sub = 1) const;

  // A value by its path, the first occurrence of the segment: "MSH-9.1", "PID-3(2).4.2" (the
  // second repetition of PID-3, component 4, sub-component 2), "OBX[3]-5" (the third OBX).
  // Empty when absent or malformed.
  std::string get(std::string_view path) const;

  // The message as parsed, segments joined (and ended) by `terminator`, in UTF-8.
  std::string encode(std::string_view terminator = "\r") const;
  // The same in the character set MSH-18 declares (ISO 8859-1 or -15 as single bytes).
  std::string encodeInCharset(std::string_view terminator = "\r") const;

 private:
  struct SegmentSpan {
    std::uint32_t begin = 0, end = 0;  // in text_
    std::uint32_t nameEnd = 0;         // end of the segment's name (its first field separator)
    std::uint32_t firstField = 0;      // index in fields_ of its field 1
    std::uint32_t fieldCount = 0;
  };
  struct Span {
    std::uint32_t begin = 0, end = 0;
  };
  Span fieldSpan(std::size_t seg, int field) const;
  void index(std::vector<Issue>& issues);

  std::string text_;  // UTF-8, segments ended by '\r'
  Delimiters d_;
  Charset charset_ = Charset::kAscii;
  std::vector<SegmentSpan> segments_;
  std::vector<Span> fields_;
};

// Escapes `text` for a field value with the delimiters `d` (\F\ \S\ \T\ \R\ \E\, and line breaks as \.br\).
std::string escape(std::string_view text, const Delimiters& d);
// Unescapes an escaped value: the delimiter escapes, \Xhh..\ (bytes, taken as UTF-8 when they
// form it, else as ISO 8859-1), \.br\ and \.sp\ as line breaks, the other formatting escapes
// (\H\ \N\ \.in\ \.ti\ \.sk\ \.ce\ \.fi\ \.nf\) dropped; unknown ones kept as written.
std::string unescape(std::string_view raw, const Delimiters& d);

// The value of MSH-18 for a character set ("UNICODE UTF-8", "8859/1", "8859/15"; "" for ASCII).
std::string_view charsetName(Charset c);

// Builds a message segment by segment: values are escaped when the message is encoded.
class MessageBuilder {
 public:
  explicit MessageBuilder(Delimiters d = {}) : d_(d) {}
  // Starts a new segment; the following set() calls fill it.
  MessageBuilder& segment(std::string_view name);
  // Sets field[rep].comp.sub of the current segment (1-based; comp/sub 1 for a plain field) to
  // the unescaped `value`. MSH-1 and MSH-2 are written from the delimiters and cannot be set.
  MessageBuilder& set(int field, std::string_view value, int rep = 1, int comp = 1, int sub = 1);
  // Sets a field to text that is already escaped (copied from another message).
  MessageBuilder& setRaw(int field, std::string_view raw);
  std::string encode(std::string_view terminator = "\r") const;

 private:
  struct Field {
    bool rawText = false;
    std::string raw;
    std::vector<std::vector<std::vector<std::string>>> reps;  // rep -> comp -> sub
  };
  struct Segment {
    std::string name;
    std::vector<Field> fields;  // index 0 is field 1
  };
  Delimiters d_;
  std::vector<Segment> segments_;
};

}  // namespace passerelle::hl7v2
