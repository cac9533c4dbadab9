// The packages Passerelle validates profiles against, in load order: FR Core (the French national
// IG, read from its folder when one is given or found), the network's own package (built into the
// binary from schemas/fhir-profiles/network), then any extra folders.
#pragma once

#include <string>
#include <vector>

#include "mappings/fhir/profiles/profile_registry.h"

namespace passerelle::fhir::profiles {

// Canonical base of the network package's profiles: <base>/network-patient, network-consent,
// network-service-request, network-task, network-pain-score and the extensions they slice.
inline constexpr const char* kNetworkProfileBase = "https://douleur77.fr/fhir/StructureDefinition/";

// Loads the built-in network package.
bool loadNetworkPackage(ProfileRegistry& registry, std::string& error);

// The FR Core folder for `setting`: empty = none; "auto" = the first of share/passerelle/fr-core
// beside the executable's folder, ./fr-core and ../shared/corpora/fr-core that has definitions/;
// anything else is the folder itself. Returns "" when none is found.
std::string findFrCore(const std::string& setting);

// FR Core (when `frCoreDir` is not empty), the network package, then `extra` folders or files.
// False, with `error`, when one of them cannot be loaded (the others still are).
bool loadPackages(ProfileRegistry& registry, const std::string& frCoreDir, const std::vector<std::string>& extra,
                  std::string& error);

}  // namespace passerelle::fhir::profiles
