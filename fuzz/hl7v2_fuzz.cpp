// Fuzz target: the HL7 v2 reader on any bytes; what it reads must write back to text it reads the
// same way, every position must be readable, and escaping must give back what it escaped. Then the
// mapping to FHIR: the Bundle it writes must be JSON (whatever the message says).
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "mappings/hl7v2/fhir_mapping.h"
#include "mappings/hl7v2/message.h"

namespace {

// Line breaks as escaping gives them back (\.br\ reads as one LF).
std::string lineBreaks(std::string_view s) {
  std::string out;
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '\r') {
      if (i + 1 < s.size() && s[i + 1] == '\n') continue;
      out += '\n';
    } else {
      out += s[i];
    }
  }
  return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace passerelle::hl7v2;
  std::string_view bytes(reinterpret_cast<const char*>(data), size);
  std::vector<Issue> issues;
  auto m = Message::parse(bytes, issues);
  if (!m) {
    if (issues.empty() || issues.front().severity != "error") __builtin_trap();
    return 0;
  }
  // Written back in its character set, it reads the same.
  std::string text = m->encodeInCharset("\r");
  std::vector<Issue> again;
  auto back = Message::parse(text, again);
  if (!back || back->segmentCount() != m->segmentCount() || back->encode("\r") != m->encode("\r")) __builtin_trap();
  const Delimiters& d = m->delimiters();
  std::size_t reads = 0;
  for (std::size_t s = 0; s < m->segmentCount() && reads < 3000; ++s) {
    (void)m->segmentName(s);
    for (int f = 1; f <= m->fieldCount(s) + 1 && reads < 3000; ++f) {
      int reps = m->repetitions(s, f);
      for (int r = 1; r <= reps + 1; ++r) {
        int comps = m->components(s, f, r);
        for (int c = 1; c <= comps + 1; ++c) {
          int subs = m->subcomponents(s, f, r, c);
          for (int k = 1; k <= subs + 1; ++k, ++reads) {
            std::string v = m->value(s, f, r, c, k);
            if (s == 0 && f <= 2) continue;
            // Escaped and read back, a value is itself (line breaks as \.br\ gives them).
            if (unescape(escape(v, d), d) != lineBreaks(v)) __builtin_trap();
          }
        }
      }
    }
  }
  // A value set through the builder reads back (ASCII: other bytes may not be UTF-8).
  std::string sample(bytes.substr(0, 64));
  bool ascii = true;
  for (char c : sample) ascii = ascii && static_cast<unsigned char>(c) < 0x80;
  if (ascii) {
    MessageBuilder b(d);
    b.segment("MSH").set(3, "F").set(9, "ACK");
    b.segment("NTE").set(3, sample);
    std::vector<Issue> built;
    auto nte = Message::parse(b.encode(), built);
    if (!nte || nte->get("NTE-3.1.1") != lineBreaks(sample)) __builtin_trap();
  }
  (void)m->get("PID-3(2).4.2");
  (void)m->get("OBX[2]-5");
  // The FHIR Bundle of whatever was read is well-formed JSON (escapes, controls, odd bytes).
  for (OtherTypes others : {OtherTypes::kRefuse, OtherTypes::kReadSegments}) {
    std::vector<Issue> mapping;
    InboundFacts facts = readInbound(*m, mapping, others);
    std::string bundle;
    toBundleJson(facts, bundle);
    if (nlohmann::json::parse(bundle, nullptr, false).is_discarded()) __builtin_trap();
  }
  return 0;
}
