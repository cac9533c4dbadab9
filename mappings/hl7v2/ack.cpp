// HL7 v2 acknowledgements (see ack.h).
#include "mappings/hl7v2/ack.h"

#include <cstdlib>

namespace passerelle::hl7v2 {

namespace {

// Table 0357 (message error condition codes).
const char* errorText(const std::string& code) {
  static const std::pair<const char*, const char*> kTable[] = {
      {"0", "Message accepted"},          {"100", "Segment sequence error"},   {"101", "Required field missing"},
      {"102", "Data type error"},         {"103", "Table value not found"},    {"200", "Unsupported message type"},
      {"201", "Unsupported event code"},  {"202", "Unsupported processing id"}, {"203", "Unsupported version id"},
      {"204", "Unknown key identifier"},  {"205", "Duplicate key identifier"}, {"206", "Application record locked"},
      {"207", "Application internal error"}};
  for (const auto& [c, t] : kTable)
    if (code == c) return t;
  return "Application internal error";
}

// The field `n` of an unparsed first line split by its third character ("MSH|..."), or "".
std::string headerField(std::string_view header, int n) {
  if (header.size() < 4 || header.substr(0, 3) != "MSH") return {};
  char fs = header[3];
  if (n == 1) return std::string(1, fs);
  std::size_t start = 3;  // the separator before MSH-2
  for (int i = 2; i < n; ++i) {
    std::size_t at = header.find(fs, start + 1);
    if (at == std::string_view::npos) return {};
    start = at;
  }
  std::size_t end = header.find_first_of(std::string{fs, '\r', '\n'}, start + 1);
  return std::string(header.substr(start + 1, end == std::string_view::npos ? std::string_view::npos : end - start - 1));
}

// 2.5 and later carry the error's place in ERR-2; earlier versions in ERR-1.
bool modernErr(const std::string& version) {
  int major = std::atoi(version.c_str());
  auto dot = version.find('.');
  int minor = dot == std::string::npos ? 0 : std::atoi(version.c_str() + dot + 1);
  return major > 2 || (major == 2 && minor >= 5);
}

}  // namespace

bool enhancedMode(const Message& received) { return !received.get("MSH-15").empty() || !received.get("MSH-16").empty(); }

bool wantsAck(const Message& received, AckResult result, bool commit) {
  if (!enhancedMode(received)) return !commit;
  std::string condition = received.get(commit ? "MSH-15" : "MSH-16");
  if (condition == "NE") return false;
  if (condition == "ER") return result != AckResult::kAccept;
  if (condition == "SU") return result == AckResult::kAccept;
  return true;  // AL, or not given
}

std::string buildAck(const Message* received, std::string_view rawHeader, AckResult result, bool commit,
                     const std::vector<Issue>& issues, const AckOptions& options) {
  Delimiters d = received ? received->delimiters() : Delimiters{};
  auto raw = [&](int field, int comp = 0) -> std::string {
    if (received) return std::string(received->raw(0, field, 1, comp, 0));
    std::string v = headerField(rawHeader, field);
    if (comp > 0) {
      std::size_t start = 0;
      for (int i = 1; i < comp && start != std::string::npos; ++i) {
        start = v.find('^', start);
        if (start != std::string::npos) ++start;
      }
      if (start == std::string::npos) return {};
      return v.substr(start, v.find('^', start) - start);
    }
    return v;
  };
  std::string version = raw(12, 1);
  if (version.empty()) version = "2.5";
  MessageBuilder b(d);
  b.segment("MSH");
  if (!options.sendingApplication.empty()) b.set(3, options.sendingApplication);
  else b.setRaw(3, raw(5));
  if (!options.sendingFacility.empty()) b.set(4, options.sendingFacility);
  else b.setRaw(4, raw(6));
  b.setRaw(5, raw(3));
  b.setRaw(6, raw(4));
  b.set(7, options.timestamp);
  b.set(9, "ACK").set(9, raw(9, 2), 1, 2).set(9, "ACK", 1, 3);
  b.set(10, options.controlId);
  std::string processing = raw(11, 1);
  b.set(11, processing.empty() ? "P" : processing);
  b.set(12, version);
  b.setRaw(17, raw(17));
  b.setRaw(18, raw(18));
  const char* codes = commit ? "C" : "A";
  std::string msa = std::string(1, codes[0]) + (result == AckResult::kAccept ? "A" : result == AckResult::kError ? "E" : "R");
  b.segment("MSA").set(1, msa).setRaw(2, raw(10));
  bool modern = modernErr(version);
  for (const auto& i : issues) {
    b.segment("ERR");
    std::string segment = i.segmentId.empty() ? "MSH" : i.segmentId;
    std::string sequence = i.segment > 0 ? std::to_string(i.segment) : "1";
    if (modern) {
      b.set(2, segment).set(2, sequence, 1, 2);
      if (i.field > 0) b.set(2, std::to_string(i.field), 1, 3).set(2, "1", 1, 4);
      if (i.component > 0) b.set(2, std::to_string(i.component), 1, 5);
      b.set(3, i.code).set(3, errorText(i.code), 1, 2).set(3, "HL70357", 1, 3);
      b.set(4, i.severity == "error" ? "E" : i.severity == "warning" ? "W" : "I");
      b.set(8, i.message);
    } else {
      b.set(1, segment).set(1, sequence, 1, 2);
      if (i.field > 0) b.set(1, std::to_string(i.field), 1, 3);
      b.set(1, i.code, 1, 4, 1).set(1, errorText(i.code), 1, 4, 2).set(1, "HL70357", 1, 4, 3);
    }
  }
  return b.encode();
}

}  // namespace passerelle::hl7v2
