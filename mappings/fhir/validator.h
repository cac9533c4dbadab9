// Validates FHIR R4 JSON against the base specification (all R4 resource and data types), from
// tables generated out of the official definitions and embedded in the binary: JSON shape, unknown
// elements, primitive formats, cardinality, choice types, required codes, references and the base
// invariants. Every problem becomes an Issue with its FHIRPath location; all are reported.
// Thread-safe: one immutable instance shared by all threads (each thread reuses its own parser).
#pragma once

#include <string_view>
#include <vector>

#include "mappings/fhir/operation_outcome.h"

namespace passerelle::fhir {

namespace validation {
class ValidationTables;
}

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
  ValidationResult validate(std::string_view json, std::string_view expectedType = {}) const;

  // Maximum nesting of objects and arrays accepted (as JsonLimits::maxDepth).
  static constexpr int kMaxDepth = 64;

  explicit Validator(const validation::ValidationTables& tables) : tables_(tables) {}

 private:
  const validation::ValidationTables& tables_;
};

}  // namespace passerelle::fhir
