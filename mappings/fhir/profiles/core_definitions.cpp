// Links schemas/fhir-r4/core/*.ndjson.gz into the binary with the assembler's .incbin (paths from
// CMake: PASSERELLE_CORE_TYPES, PASSERELLE_CORE_RESOURCES, PASSERELLE_CORE_EXTENSIONS) and reads
// them on demand: a file is inflated once, then its lines are indexed by the url each starts with.
#include "mappings/fhir/profiles/core_definitions.h"

#include <zlib.h>

#include <cctype>
#include <mutex>
#include <string>
#include <unordered_map>

#include "mappings/fhir/resource_types.h"

#if !defined(PASSERELLE_CORE_TYPES) || !defined(PASSERELLE_CORE_RESOURCES) || !defined(PASSERELLE_CORE_EXTENSIONS)
#error "PASSERELLE_CORE_TYPES, PASSERELLE_CORE_RESOURCES and PASSERELLE_CORE_EXTENSIONS must name schemas/fhir-r4/core"
#endif

#define PASSERELLE_INCBIN(name, path)                \
  __asm__(".section .rodata\n"                       \
          ".global " #name "_start\n"                \
          ".global " #name "_end\n"                  \
          ".balign 16\n" #name "_start:\n"           \
          ".incbin \"" path "\"\n" #name "_end:\n"   \
          ".byte 0\n"                                \
          ".previous\n");                            \
  extern "C" const char name##_start[];              \
  extern "C" const char name##_end[];

PASSERELLE_INCBIN(passerelle_fhir_core_types, PASSERELLE_CORE_TYPES)
PASSERELLE_INCBIN(passerelle_fhir_core_resources, PASSERELLE_CORE_RESOURCES)
PASSERELLE_INCBIN(passerelle_fhir_core_extensions, PASSERELLE_CORE_EXTENSIONS)

// Used so that the preprocessed text (what ccache hashes) changes with the files' content.
#ifdef PASSERELLE_CORE_MD5
[[maybe_unused]] static const char kCoreMd5[] = PASSERELLE_CORE_MD5;
#endif

namespace passerelle::fhir::profiles {

namespace {

constexpr std::string_view kCoreSd = "http://hl7.org/fhir/StructureDefinition/";

struct CoreFile {
  const char* start;
  const char* end;
  std::once_flag once;
  std::string text;                                              // inflated
  std::unordered_map<std::string_view, std::string_view> byUrl;  // into text

  void load() {
    z_stream z{};
    if (inflateInit2(&z, 16 + MAX_WBITS) != Z_OK) return;
    z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(start));
    z.avail_in = static_cast<uInt>(end - start);
    char buf[65536];
    int rc;
    do {
      z.next_out = reinterpret_cast<Bytef*>(buf);
      z.avail_out = sizeof buf;
      rc = inflate(&z, Z_NO_FLUSH);
      text.append(buf, sizeof buf - z.avail_out);
    } while (rc == Z_OK);
    inflateEnd(&z);
    if (rc != Z_STREAM_END) {
      text.clear();
      return;
    }
    // Each line starts with {"url":"...".
    constexpr std::string_view kHead = "{\"url\":\"";
    std::string_view all = text;
    for (std::size_t pos = 0; pos < all.size();) {
      std::size_t eol = all.find('\n', pos);
      if (eol == std::string_view::npos) eol = all.size();
      std::string_view line = all.substr(pos, eol - pos);
      if (line.substr(0, kHead.size()) == kHead) {
        std::size_t close = line.find('"', kHead.size());
        if (close != std::string_view::npos) byUrl.emplace(line.substr(kHead.size(), close - kHead.size()), line);
      }
      pos = eol + 1;
    }
  }

  std::string_view find(std::string_view url) {
    std::call_once(once, [this] { load(); });
    auto it = byUrl.find(url);
    return it == byUrl.end() ? std::string_view() : it->second;
  }
};

CoreFile& coreFile(int which) {
  static CoreFile files[3] = {
      {passerelle_fhir_core_types_start, passerelle_fhir_core_types_end, {}, {}, {}},
      {passerelle_fhir_core_resources_start, passerelle_fhir_core_resources_end, {}, {}, {}},
      {passerelle_fhir_core_extensions_start, passerelle_fhir_core_extensions_end, {}, {}, {}},
  };
  return files[which];
}

}  // namespace

std::string_view coreDefinitionJson(std::string_view url, bool extensionsOnly) {
  if (url.substr(0, kCoreSd.size()) != kCoreSd) return {};
  if (extensionsOnly) return coreFile(2).find(url);
  std::string_view name = url.substr(kCoreSd.size());
  if (name.empty()) return {};
  // The file its name suggests first (resources, extensions with a dash, data types), then the others.
  int first = isResourceType(name) || name == "Resource" || name == "DomainResource" ? 1
              : name.find('-') != std::string_view::npos                          ? 2
                                                                                    : 0;
  for (int k = 0; k < 3; ++k) {
    std::string_view found = coreFile((first + k) % 3).find(url);
    if (!found.empty()) return found;
  }
  return {};
}

}  // namespace passerelle::fhir::profiles
