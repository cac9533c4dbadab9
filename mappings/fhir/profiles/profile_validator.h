// Validates FHIR R4 JSON against profiles (StructureDefinitions of a ProfileRegistry), as a pass of
// its own beside the base validation (mappings/fhir/validator.h), whose rules it does not repeat:
// cardinalities narrowed by the snapshot (slices included), fixed[x] and pattern[x] values, slicing
// (discriminators value, pattern, type, exists and profile; closed, ordered and openAtEnd rules; slice
// cardinalities), required and extensible bindings to value sets expanded locally, extensions
// checked against their definitions (value[x] type, cardinality, context, nested extensions), the
// types allowed for choices and the target types of references, and the invariants the profile
// adds (its constraints that are not the base specification's, evaluated with FHIRPath). Every
// problem is an Issue with its FHIRPath location; an extensible binding not met is a warning, a
// value set that cannot be expanded here an information issue.
// Thread-safe: one instance over an immutable registry may be shared (each thread reuses its own
// parser).
#pragma once

#include <simdjson.h>

#include <string_view>
#include <vector>

#include "mappings/fhir/operation_outcome.h"
#include "mappings/fhir/profiles/profile_registry.h"
#include "mappings/fhir/validator.h"

namespace passerelle::fhir::profiles {

class ProfileValidator {
 public:
  // `policy.refuseUnknownExtensions` makes an extension without a known definition an error
  // (mappings/fhir/validator.h); the rest of the policy is the base validator's.
  explicit ProfileValidator(const ProfileRegistry& registry, ValidationPolicy policy = {})
      : registry_(registry), policy_(std::move(policy)) {}

  enum class Outcome {
    Checked,   // the resource was checked (issues, if any, were appended)
    Unknown,   // no StructureDefinition of that canonical is loaded
    Unusable,  // the StructureDefinition is loaded but could not be compiled (no snapshot...)
  };

  // Validates one JSON resource against the profile `canonical` ("url" or "url|version"). An unknown
  // or unusable profile appends an error issue saying so; invalid JSON appends a fatal issue. The
  // base definitions (http://hl7.org/fhir/StructureDefinition/<Type>) are known without being loaded:
  // only the resource type and the extensions with known definitions (their value, sub-extensions
  // and context) are checked here, the base validator does the rest.
  Outcome validate(std::string_view json, std::string_view canonical, std::vector<Issue>& issues) const;
  // The same on a parsed resource; `location` replaces the resource type at the start of the
  // issues' locations ("Bundle.entry[2].resource"), empty for a resource of its own.
  // `extensions`: false when the caller knows the document has no extension at all
  // (mayContainExtensions() of its text): the parts of the resource the profile does not constrain
  // beyond the base specification are then not searched for extensions to check.
  Outcome validate(simdjson::dom::element resource, std::string_view canonical, std::string_view location,
                   std::vector<Issue>& issues, bool extensions = true) const;

  // Validates the resource against each profile of its meta.profile. A profile that is not known
  // gives an issue of severity `unknownSeverity` (a validator need not know every profile: warning
  // by default). Returns how many profiles were checked; when none is, the extensions with known
  // definitions are still checked, as the base definition of the resource allows them.
  int validateDeclared(std::string_view json, std::vector<Issue>& issues,
                       std::string_view unknownSeverity = "warning") const;
  int validateDeclared(simdjson::dom::element resource, std::string_view location, std::vector<Issue>& issues,
                       std::string_view unknownSeverity = "warning", bool extensions = true) const;

  // False only when the JSON text cannot hold a member named extension or modifierExtension: no
  // `xtension"` in it, and no \u escape that could spell one.
  static bool mayContainExtensions(std::string_view json);

  // The base validation (with this validator's policy) and this pass on one parse of `json`: against
  // `canonical`, or, when it is empty, the profiles of the resource's meta.profile as
  // validateDeclared does.
  ValidationResult validateWithBase(std::string_view json, std::string_view canonical = {},
                                    std::string_view expectedType = {}) const;

  const ProfileRegistry& registry() const { return registry_; }

  // Issues beyond this many are dropped (one last issue says so).
  static constexpr std::size_t kMaxIssues = 500;

 private:
  const ProfileRegistry& registry_;
  ValidationPolicy policy_;
};

}  // namespace passerelle::fhir::profiles
