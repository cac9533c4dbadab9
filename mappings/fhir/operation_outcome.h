// Builds OperationOutcome resources (as JSON text) from lists of issues.
#pragma once

#include <string>
#include <vector>

namespace passerelle::fhir {

struct Issue {
  std::string severity = "error";  // fatal | error | warning | information
  std::string code = "invalid";    // http://hl7.org/fhir/issue-type
  std::string diagnostics;         // a human-readable message
  std::string expression;          // FHIRPath of the element at fault, when known
};

std::string operationOutcome(const std::vector<Issue>& issues);
std::string operationOutcome(const Issue& issue);

}  // namespace passerelle::fhir
