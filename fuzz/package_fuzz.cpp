// Fuzz target: what a recipient opens — the ZIP reader and the CMS opener on any bytes. A refusal
// says why; an archive read whole zips again to an archive that reads to the same entries.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "connectors/secureupload/secure_package.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace passerelle::secureupload;
  std::string_view bytes(reinterpret_cast<const char*>(data), size);
  std::vector<Entry> entries;
  std::string error;
  if (unzip(bytes, entries, error, std::size_t{1} << 24)) {
    std::string again;
    if (!zip(entries, again, error)) {
      // Only names zip refuses and unzip took would explain it: both use validEntryName.
      for (const auto& e : entries) {
        std::string why;
        if (!validEntryName(e.name, why)) __builtin_trap();
      }
    } else {
      std::vector<Entry> back;
      if (!unzip(again, back, error) || back.size() != entries.size()) __builtin_trap();
      for (std::size_t i = 0; i < back.size(); ++i)
        if (back[i].name != entries[i].name || back[i].bytes != entries[i].bytes) __builtin_trap();
    }
  } else if (error.empty()) {
    __builtin_trap();
  }
  std::string content, signer;
  error.clear();
  if (!open(bytes, Credentials{}, {}, content, signer, error) && error.empty()) __builtin_trap();
  return 0;
}
