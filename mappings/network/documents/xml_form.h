// The XML form of the network's documents (namespace urn:douleur77:network:1, one XSD per kind):
// read into the JSON form after an XSD check, and written from a valid JSON document. Thread-safe.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

#include "mappings/network/documents/document_schemas.h"

namespace passerelle::network {

inline constexpr std::string_view kDocumentNamespace = "urn:douleur77:network:1";

struct XmlLimits {
  // Documents longer than this (in bytes) are refused before parsing.
  std::size_t maxBytes = std::size_t{1} << 20;
};

// Reads `xml`, a document of `kind` in its XML form, into `out` (its JSON form, members in schema
// order). Refuses, with an issue and without parsing: an unknown kind, a document over
// limits.maxBytes, an encoding other than UTF-8, and any DOCTYPE (so no entity is ever declared or
// resolved). Then checks the document against the kind's embedded XSD (schemaLocation hints are
// ignored; nothing is fetched); each problem is an issue whose message starts with "line L, column C"
// and whose path is the element's document path ("patient.given[1]"). Returns true when `out` holds
// the document; false with at least one issue otherwise. The JSON form still has to pass
// DocumentSchemas::validate: the conditions an XSD cannot express are checked there. Never throws.
bool xmlToJson(std::string_view kind, std::string_view xml, Json& out, std::vector<DocumentIssue>& issues,
               const XmlLimits& limits = {});

// Writes `doc`, a valid document of `kind`, in its XML form: XML declaration, the root element named
// after the kind in camelCase with the namespace, members in schema order, two-space indent, one
// trailing newline. Members the schema does not know are left out. Characters XML 1.0 cannot carry
// (control characters other than tab, newline and carriage return) are written as U+FFFD. Returns ""
// for an unknown kind. Never throws.
std::string jsonToXml(std::string_view kind, const Json& doc);

// The root element's name for a kind: "consent-renewal" -> "consentRenewal".
std::string rootElementName(std::string_view kind);

}  // namespace passerelle::network
