// FHIR R4 XML (http://hl7.org/fhir/R4/xml.html) to and from FHIR R4 JSON, driven by the
// validator's type tables (element order, repetition, primitive JSON representation, resources
// inside resources). The XML is read with xerces-c SAX2 under the project's hardening: no DOCTYPE,
// no entity but XML's own, nothing fetched, UTF-8 only, a size and a nesting cap; every problem
// becomes an Issue with its FHIRPath location (and the line and column of the XML).
// Thread-safe: each thread keeps its own reader. Never throws except bad_alloc.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

#include "mappings/fhir/operation_outcome.h"

namespace passerelle::fhir {

constexpr const char* kFhirXmlNamespace = "http://hl7.org/fhir";
constexpr const char* kXhtmlNamespace = "http://www.w3.org/1999/xhtml";

struct XmlLimits {
  std::size_t maxBytes = 64u << 20;  // larger documents are refused before parsing
  int maxDepth = 64;                 // elements nested deeper than this are refused (as the JSON path)
};

// Reads one resource in FHIR XML and writes the equivalent FHIR JSON text into `json` (cleared
// first): decimals keep their exact text, the narrative div becomes its XHTML text. Returns true
// when `json` holds the resource; `issues` may then hold warnings. Returns false when any issue is
// an error (`json` is then unspecified): not well-formed XML, a DOCTYPE or entity, an encoding
// other than UTF-8, a namespace other than http://hl7.org/fhir (the div: XHTML's), an unknown
// element or attribute, text outside the div, a primitive without value nor extension, elements
// out of the definition's order, a value that has no JSON form of its type, too deep, too large.
// What the JSON validator checks (formats, cardinality, codes) is left to it.
bool fhirXmlToJson(std::string_view xml, std::string& json, std::vector<Issue>& issues, const XmlLimits& limits = {});

struct XmlWriteOptions {
  bool pretty = false;        // one element per line, indented by two spaces
  bool declaration = false;   // start with <?xml version="1.0" encoding="UTF-8"?>
};

// Writes the FHIR XML form of the JSON resource `json` into `xml` (cleared first). Returns false,
// with the issues, when the JSON is not a resource the tables know (not JSON, unknown
// resourceType, unknown property, a shape the element cannot have, a div that is not well-formed
// XHTML, a character XML cannot carry); `xml` is then unspecified.
bool fhirJsonToXml(std::string_view json, std::string& xml, std::vector<Issue>& issues, const XmlWriteOptions& options = {});

// Whether a media type (a Content-Type or an Accept entry, parameters allowed) names FHIR XML:
// application/fhir+xml, application/xml, text/xml, application/xml+fhir.
bool isXmlMediaType(std::string_view mediaType);

// Whether `text` looks like XML: its first byte past a UTF-8 BOM and white space is '<'.
bool looksLikeXml(std::string_view text);

}  // namespace passerelle::fhir
