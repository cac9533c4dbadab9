// Fuzz target: the CDA reader on any bytes (without a schema: the reader's own checks and the XML
// hardening). A refusal says why; a document read maps to a Bundle that serialises as JSON.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include <nlohmann/json.hpp>

#include "mappings/cda/cda.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace passerelle::cda;
  std::string_view xml(reinterpret_cast<const char*>(data), size);
  Document d;
  std::vector<Issue> issues;
  if (!read(xml, nullptr, Limits{}, d, issues)) {
    if (issues.empty()) __builtin_trap();
    return 0;
  }
  nlohmann::json bundle;
  toBundle(d, xml, bundle);
  (void)bundle.dump();
  return 0;
}
