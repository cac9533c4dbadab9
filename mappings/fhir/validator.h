// Validates FHIR R4 JSON against the base specification (all R4 resource and data types), from
// tables generated out of the official definitions and embedded in the binary: JSON shape, unknown
// elements, primitive formats, cardinality, choice types, required codes, references and the base
// invariants. Every problem becomes an Issue with its FHIRPath location; all are reported.
// Thread-safe: one immutable instance shared by all threads (each thread reuses its own parser).
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "mappings/fhir/operation_outcome.h"

namespace simdjson::dom {
class element;
}

namespace passerelle::fhir {

namespace validation {
class ValidationTables;
}

// What a deployment may refuse beyond the specification's rules; everything here is off by default,
// as R4 asks of a receiver.
struct ValidationPolicy {
  // uri, url and canonical values on the domains RFC 2606 reserves for documentation (example.org,
  // example.com, example.net and their subdomains): examples' data, which an exchange between care
  // providers does not carry (fhir.refuse_example_urls).
  bool refuseExampleUrls = false;
  // Extensions whose definition is not known. R4 says "applications should not reject resources
  // merely because they contain extensions" (extensibility.html): accepted unless this is set
  // (fhir.unknown_extensions=refuse), and then still accepted when their url starts with one of
  // allowedExtensionDomains (fhir.allowed_extension_domains).
  bool refuseUnknownExtensions = false;
  std::vector<std::string> allowedExtensionDomains;

  // Whether an extension of url `url`, whose definition is not known, is accepted.
  bool acceptsUnknownExtension(std::string_view url) const;
  // Whether `uri` is on a domain reserved for documentation (RFC 2606).
  static bool isExampleUrl(std::string_view uri);
};

struct ValidationResult {
  std::vector<Issue> issues;
  // Whether any issue has severity error or fatal.
  bool hasErrors() const;
};

class Validator {
 public:
  // The validator over the embedded R4 tables (loaded on first call; thread-safe).
  static const Validator& instance();

  // Validates one JSON resource. When `expectedType` is not empty the resourceType must be that
  // type. Invalid JSON, nesting deeper than 64, duplicate keys and invalid UTF-8 are reported as
  // issues too. Never throws.
  // `policy`, when given, adds the refusals it asks for.
  ValidationResult validate(std::string_view json, std::string_view expectedType = {},
                            const ValidationPolicy* policy = nullptr) const;

  // The same on a document parsed by validation::parseDocument (mappings/fhir/validation/dom_access.h),
  // so that another pass (profiles) shares the parse; issues are appended to `issues`.
  // `extensionSeen`, when given, says whether an element extension or modifierExtension was met
  // (every member was walked when no error was reported).
  void validateParsed(const simdjson::dom::element& root, std::string_view expectedType, const ValidationPolicy* policy,
                      std::vector<Issue>& issues, bool* extensionSeen = nullptr) const;

  // Maximum nesting of objects and arrays accepted (as JsonLimits::maxDepth).
  static constexpr int kMaxDepth = 64;

  explicit Validator(const validation::ValidationTables& tables) : tables_(tables) {}

 private:
  const validation::ValidationTables& tables_;
};

}  // namespace passerelle::fhir
