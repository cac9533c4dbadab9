// Fuzz target: the FHIR R4 validator must never crash, hang or throw, whatever the bytes.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "mappings/fhir/validator.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  auto result = passerelle::fhir::Validator::instance().validate(text);
  (void)result.hasErrors();
  // The expected type path as well.
  (void)passerelle::fhir::Validator::instance().validate(text, "Bundle");
  return 0;
}
