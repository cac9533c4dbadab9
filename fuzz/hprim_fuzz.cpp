// Fuzz target: the HPRIM Net and HPRIM Santé readers on any bytes. A read that fails says why
// (an error); a Net file read whole writes back to a file that reads to the same documents and
// results; the mappings to FHIR always give a Bundle that serialises as JSON, and a Bundle made
// from a Net document maps back to a document.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "mappings/hprim/fhir_mapping.h"
#include "mappings/hprim/hprim.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace passerelle::hprim;
  std::string_view bytes(reinterpret_cast<const char*>(data), size);
  auto hasError = [](const std::vector<Issue>& issues) {
    for (const auto& i : issues)
      if (i.error) return true;
    return false;
  };
  (void)detect(bytes);
  {
    NetFile f;
    std::vector<Issue> issues;
    bool ok = readNet(bytes, f, issues);
    if (!ok && !hasError(issues)) __builtin_trap();
    if (ok) {
      for (Encoding e : {Encoding::kUtf8, Encoding::kLatin1}) {
        std::string written = writeNet(f.documents, e);
        NetFile back;
        std::vector<Issue> again;
        if (!readNet(written, back, again) && e == Encoding::kUtf8) __builtin_trap();
        if (e == Encoding::kUtf8) {
          if (back.documents.size() != f.documents.size()) __builtin_trap();
          for (std::size_t k = 0; k < f.documents.size(); ++k)
            if (back.documents[k].results.size() != f.documents[k].results.size()) __builtin_trap();
        }
      }
      nlohmann::json bundle;
      for (const auto& d : f.documents) netToBundle(d, bundle, issues);
      (void)bundle.dump();
      NetDocument d;
      std::string error;
      (void)netFromFhir(bundle, {}, d, error);
    }
  }
  {
    SanteMessage m;
    std::vector<Issue> issues;
    bool ok = readSante(bytes, m, issues);
    if (!ok && !hasError(issues)) __builtin_trap();
    if (ok) {
      nlohmann::json bundle;
      santeToBundle(m, bundle, issues);
      (void)bundle.dump();
    }
  }
  return 0;
}
