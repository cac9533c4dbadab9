// Derives the search index rows of a resource from the search parameter definitions: each
// parameter's paths are followed through the JSON and the values reached are turned into rows
// by parameter kind and FHIR type (a CodeableConcept gives a token per coding and a text row,
// a Period a date range, a Reference its target...). Stateless and thread-safe.
#pragma once

#include <nlohmann/json_fwd.hpp>

#include <string>
#include <vector>

#include "gateway/search/search_definitions.h"
#include "gateway/store/resource_store.h"

namespace passerelle::search {

// `resource` is the resource's JSON; absolute references that start with `baseUrl` + "/" are
// indexed as local ones.
store::IndexRows extractIndex(const SearchDefinitions& defs, const std::string& type, const nlohmann::ordered_json& resource,
                              const std::string& baseUrl);

// The rows of the parameters `codes` of `type` only (e.g. the Patient compartment's references).
store::IndexRows extractParams(const SearchDefinitions& defs, const std::string& type, const nlohmann::ordered_json& resource,
                               const std::vector<std::string>& codes, const std::string& baseUrl);

// Splits a reference ("Patient/1", "http://x/fhir/Patient/1/_history/2", "urn:uuid:...") into the
// target type and id stored in the index; the type is empty for references that are not to a
// resource on this server (the id is then the whole URL).
void splitReference(const std::string& ref, const std::string& baseUrl, std::string& type, std::string& id);

}  // namespace passerelle::search
