// Fuzz target: limited JSON parsing, then the text walkers on what parsed (they assume valid JSON).
#include <cstddef>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

#include "mappings/fhir/json_reader.h"
#include "mappings/fhir/json_text.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace passerelle::fhir;
  std::string_view text(reinterpret_cast<const char*>(data), size);
  Json j;
  JsonError err;
  if (!parseJson(text, JsonLimits{}, j, err)) return 0;
  Span whole = wholeValue(text);
  std::string out;
  writeCompact(text, whole, out);
  // Compacting keeps the value: it parses back equal.
  Json back;
  if (!parseJson(out, JsonLimits{}, back, err) || back != j) __builtin_trap();
  if (j.is_object()) {
    out.clear();
    writeResource(text, whole, "fuzz-id", "{\"versionId\":\"1\"}", out);
    if (!parseJson(out, JsonLimits{}, back, err)) __builtin_trap();
    for (const auto& m : objectMembers(text, whole)) (void)arrayElements(text, m.value);
  }
  (void)sanitizeUtf8(text);
  return 0;
}
