// Validator: parses with simdjson (one reusable parser per thread) and hands the DOM to a
// ResourceWalker; a parse failure is re-read by parseJson only to name the offset of the fault.
#include "mappings/fhir/validator.h"

#include <simdjson.h>

#include <cctype>

#include <nlohmann/json.hpp>

#include "mappings/fhir/json_reader.h"
#include "mappings/fhir/validation/dom_access.h"
#include "mappings/fhir/validation/resource_walker.h"
#include "mappings/fhir/validation/validation_tables.h"

namespace passerelle::fhir {

namespace {

std::string parseErrorMessage(std::string_view json, simdjson::error_code code) {
  switch (code) {
    case simdjson::DEPTH_ERROR:
      return "Error parsing JSON: objects and arrays are nested deeper than " + std::to_string(Validator::kMaxDepth);
    case simdjson::UTF8_ERROR: return "Error parsing JSON: the text is not valid UTF-8";
    case simdjson::EMPTY: return "Error parsing JSON: the document is empty";
    default: break;
  }
  // parseJson knows where the fault is; ask it (this is the slow path, for invalid input only).
  Json ignored;
  JsonError err;
  if (!parseJson(json, JsonLimits{Validator::kMaxDepth}, ignored, err)) return "Error parsing JSON: " + err.message;
  return std::string("Error parsing JSON: ") + simdjson::error_message(code);
}

}  // namespace

bool ValidationResult::hasErrors() const {
  for (const Issue& i : issues)
    if (i.severity == "error" || i.severity == "fatal") return true;
  return false;
}

const Validator& Validator::instance() {
  static const Validator validator(validation::ValidationTables::embedded());
  return validator;
}

bool ValidationPolicy::acceptsUnknownExtension(std::string_view url) const {
  if (!refuseUnknownExtensions) return true;
  for (const std::string& domain : allowedExtensionDomains)
    if (!domain.empty() && url.substr(0, domain.size()) == domain) return true;
  return false;
}

bool ValidationPolicy::isExampleUrl(std::string_view uri) {
  auto scheme = uri.find("://");
  if (scheme == std::string_view::npos) return false;
  std::string_view host = uri.substr(scheme + 3);
  host = host.substr(0, host.find_first_of("/?#"));
  if (auto at = host.rfind('@'); at != std::string_view::npos) host.remove_prefix(at + 1);
  host = host.substr(0, host.find(':'));
  std::string lower(host);
  for (char& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  if (!lower.empty() && lower.back() == '.') lower.pop_back();
  for (std::string_view reserved : {"example.org", "example.com", "example.net"}) {
    if (lower == reserved) return true;
    if (lower.size() > reserved.size() && lower.compare(lower.size() - reserved.size(), reserved.size(), reserved) == 0 &&
        lower[lower.size() - reserved.size() - 1] == '.')
      return true;
  }
  return false;
}

ValidationResult Validator::validate(std::string_view json, std::string_view expectedType,
                                     const ValidationPolicy* policy) const {
  ValidationResult result;
  // RFC 8259 lets a parser ignore a UTF-8 byte order mark; editors on some systems write one.
  json = validation::withoutBom(json);
  try {
    simdjson::dom::element root;
    auto error = validation::parseDocument(json, root);
    if (error) {
      result.issues.push_back({"fatal", "structure", parseErrorMessage(json, error), ""});
      return result;
    }
    validateParsed(root, expectedType, policy, result.issues);
  } catch (const std::exception& ex) {
    result.issues.push_back({"fatal", "exception", std::string("Validation failed: ") + ex.what(), ""});
  } catch (...) {
    result.issues.push_back({"fatal", "exception", "Validation failed", ""});
  }
  return result;
}

void Validator::validateParsed(const simdjson::dom::element& root, std::string_view expectedType,
                               const ValidationPolicy* policy, std::vector<Issue>& issues, bool* extensionSeen) const {
  validation::ResourceWalker walker(tables_, issues, policy);
  walker.validateDocument(root, expectedType);
  if (extensionSeen) *extensionSeen = walker.extensionSeen();
}

}  // namespace passerelle::fhir
