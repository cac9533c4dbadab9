// The conformance resources profiles are checked against: StructureDefinitions (with snapshots, or
// differentials whose snapshot is generated: snapshot_generator.h), ValueSets and CodeSystems read
// from JSON files, folders, Bundles of them (such as a package's expansions) or text. Canonical
// references may carry a version ("url|2.2.0"); without one the last loaded version is used. Every
// load recompiles the StructureDefinitions (compiled_profile.h) and the expansions of the value sets
// they bind to; a definition that does not compile is kept with its error, so that asking for it says
// why it cannot be used. The base specification's definitions (core_definitions.h) are read only when
// a snapshot generation needs a base or a data type, or when a core extension url is asked for.
// Loading is not thread-safe; once loaded, the registry may be shared by threads (core extension
// definitions compiled on first use are added under a lock).
#pragma once

#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "mappings/fhir/profiles/compiled_profile.h"

namespace passerelle::fhir::profiles {

class ProfileRegistry {
 public:
  ProfileRegistry();
  ~ProfileRegistry();
  ProfileRegistry(const ProfileRegistry&) = delete;
  ProfileRegistry& operator=(const ProfileRegistry&) = delete;

  // Loads a file (.json or .json.gz) or every such file of a folder and its subfolders (sorted by
  // name). Resources other than StructureDefinition, ValueSet, CodeSystem and Bundle are ignored,
  // as are files that are not FHIR resources when a folder is read. False, with `error` naming the
  // file, when the path cannot be read or a file is not valid JSON.
  bool loadPath(const std::string& path, std::string& error);
  // Loads the resource (or Bundle of resources) in `json`; `source` names it in errors.
  bool loadText(std::string_view json, const std::string& source, std::string& error);
  // Loads several (source, text) at once (one compilation at the end).
  bool loadTexts(const std::vector<std::pair<std::string, std::string_view>>& files, std::string& error);

  // The compiled profile for a canonical ("url" or "url|version"); null when none is known. A
  // profile whose definition did not compile is returned with its `error` set. A core extension
  // definition (http://hl7.org/fhir/StructureDefinition/<name>) is known without being loaded; the
  // base resource and data type definitions are not returned (the base validator checks them).
  const Profile* find(std::string_view canonical) const;
  // The local expansion of a value set; null when the value set is not known.
  const Expansion* expansion(std::string_view canonical) const;

  // Canonical URLs (url|version) of every StructureDefinition, in load order.
  std::vector<std::string> profileUrls() const;
  std::size_t structureDefinitionCount() const;
  std::size_t valueSetCount() const;
  std::size_t codeSystemCount() const;

  // Canonical helpers: "url|version" -> ("url", "version").
  static std::pair<std::string_view, std::string_view> splitCanonical(std::string_view canonical);

  struct Impl;

 private:
  bool add(const nlohmann::json& resource, const std::string& source, std::string& error);
  void rebuild();
  std::unique_ptr<Impl> impl_;
};

}  // namespace passerelle::fhir::profiles
