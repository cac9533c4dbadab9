// Snapshot generation (http://hl7.org/fhir/R4/profiling.html#snapshot) for StructureDefinitions
// given as differentials only: the base definition's snapshot is copied and each differential element
// is applied to the element it names (by id, else by path and the slice last seen on it): its
// cardinality, types, fixed[x] and pattern[x], binding and slicing replace the base's. Slices start
// as a copy of the sliced element and its children; the children of a data type (or of the element a
// contentReference names) are unrolled from the type's own snapshot when the differential constrains
// inside it; a choice constrained by a type-specific name (valueString) is the choice narrowed to
// that type. Re-slices are left out, as the compiler leaves them out of snapshots.
#pragma once

#include <functional>
#include <string>
#include <unordered_map>

#include <nlohmann/json_fwd.hpp>

namespace passerelle::fhir::profiles {

// The snapshot elements (a JSON array) of the StructureDefinition with this canonical (a base
// definition, a data type as http://hl7.org/fhir/StructureDefinition/<code>, a type profile), or
// null with `error` saying why.
using SnapshotLookup = std::function<const nlohmann::json*(const std::string& canonical, std::string& error)>;

// Generates the snapshot elements of `sd` from its baseDefinition and differential into `elements`.
// False, with `error`, when the base is not known or the differential names an element the base
// does not have.
bool generateSnapshot(const nlohmann::json& sd, const SnapshotLookup& lookup, nlohmann::json& elements,
                      std::string& error);

// The id of an element that has none (older definitions): its path under the last id seen for its
// parent's path (which names the slice it is in), with its own slice name.
std::string elementIdFromPath(const std::string& path, const std::string& sliceName,
                              const std::unordered_map<std::string, std::string>& lastIdForPath);

}  // namespace passerelle::fhir::profiles
