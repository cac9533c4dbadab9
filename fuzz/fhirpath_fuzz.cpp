// Fuzz target: FHIRPath must never crash, hang or throw, whatever the expression and the resource.
// The input is an expression, a line feed, then the JSON of a resource (without a line feed, the
// expression is evaluated on a fixed Patient).
#include <simdjson.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "mappings/fhir/fhirpath/fhirpath.h"
#include "mappings/fhir/validation/dom_access.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  std::string_view expression = text, json = R"({"resourceType":"Patient","id":"p","active":true,
    "name":[{"family":"Durand","given":["Ana","Marie"]}],"birthDate":"1974-12-25",
    "_birthDate":{"extension":[{"url":"http://x/y","valueDateTime":"1974-12-25T14:35:45-05:00"}]}})";
  if (auto cut = text.find('\n'); cut != std::string_view::npos) {
    expression = text.substr(0, cut);
    json = text.substr(cut + 1);
  }
  std::string error;
  auto compiled = passerelle::fhir::fhirpath::Expression::compile(expression, error);
  if (!compiled) return 0;
  simdjson::dom::element root;
  if (passerelle::fhir::validation::parseDocument(json, root) != simdjson::SUCCESS) return 0;
  passerelle::fhir::fhirpath::Collection out;
  if (compiled->evaluate(root, root, out, error))
    for (const auto& v : out) (void)passerelle::fhir::fhirpath::toText(v);
  bool holds = false;
  (void)compiled->holds(root, root, holds, error);
  return 0;
}
