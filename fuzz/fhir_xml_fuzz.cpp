// Fuzz target: FHIR XML to JSON and JSON to XML must never crash, hang or throw, whatever the
// bytes; what the reader accepts is JSON the writer turns back into XML that reads again.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "mappings/fhir/validator.h"
#include "mappings/fhir/xml/fhir_xml.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  std::string json, xml, again;
  std::vector<passerelle::fhir::Issue> issues;
  if (passerelle::fhir::fhirXmlToJson(text, json, issues)) {
    (void)passerelle::fhir::Validator::instance().validate(json).hasErrors();
    if (passerelle::fhir::fhirJsonToXml(json, xml, issues)) {
      // The writer's XML is FHIR XML the reader takes back.
      if (!passerelle::fhir::fhirXmlToJson(xml, again, issues)) std::abort();
    }
  }
  // The same bytes as JSON, through the writer.
  (void)passerelle::fhir::fhirJsonToXml(text, xml, issues, {true, true});
  return 0;
}
