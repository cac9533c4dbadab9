// Package loading: the network package comes from the files embedded at build time.
#include "mappings/fhir/profiles/packages.h"

#include <unistd.h>

#include <filesystem>

#include "mappings/common/embedded_file.h"

namespace passerelle {
const std::vector<EmbeddedFile>& networkProfileFiles();
}

namespace passerelle::fhir::profiles {

namespace fs = std::filesystem;

bool loadNetworkPackage(ProfileRegistry& registry, std::string& error) {
  std::vector<std::pair<std::string, std::string_view>> files;
  for (const auto& f : networkProfileFiles()) files.emplace_back("network package: " + std::string(f.name), f.contents);
  return registry.loadTexts(files, error);
}

std::string findFrCore(const std::string& setting) {
  if (setting.empty()) return "";
  std::error_code ec;
  if (setting != "auto") return setting;
  std::vector<fs::path> candidates;
  char exe[4096];
  ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
  if (n > 0) candidates.push_back(fs::path(std::string(exe, static_cast<std::size_t>(n))).parent_path().parent_path() /
                                  "share" / "passerelle" / "fr-core");
  candidates.emplace_back("fr-core");
  candidates.emplace_back("../shared/corpora/fr-core");
  for (const auto& c : candidates)
    if (fs::is_directory(c / "definitions", ec)) return c.string();
  return "";
}

bool loadPackages(ProfileRegistry& registry, const std::string& frCoreDir, const std::vector<std::string>& extra,
                  std::string& error) {
  bool ok = true;
  auto note = [&](const std::string& e) {
    if (ok) error = e;
    ok = false;
  };
  std::string e;
  if (!frCoreDir.empty() && !registry.loadPath(frCoreDir, e)) note("FR Core: " + e);
  if (!loadNetworkPackage(registry, e)) note(e);
  for (const auto& dir : extra)
    if (!registry.loadPath(dir, e)) note(e);
  return ok;
}

}  // namespace passerelle::fhir::profiles
