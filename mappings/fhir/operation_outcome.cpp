// OperationOutcome JSON text.
#include "mappings/fhir/operation_outcome.h"

#include "mappings/fhir/json_text.h"

namespace passerelle::fhir {

std::string operationOutcome(const std::vector<Issue>& issues) {
  std::string out = "{\"resourceType\":\"OperationOutcome\",\"issue\":[";
  bool first = true;
  for (const Issue& i : issues) {
    if (!first) out += ',';
    first = false;
    out += "{\"severity\":";
    appendJsonString(out, i.severity);
    out += ",\"code\":";
    appendJsonString(out, i.code);
    if (!i.diagnostics.empty()) {
      out += ",\"diagnostics\":";
      appendJsonString(out, sanitizeUtf8(i.diagnostics));
    }
    if (!i.expression.empty()) {
      out += ",\"expression\":[";
      appendJsonString(out, sanitizeUtf8(i.expression));
      out += ']';
    }
    out += '}';
  }
  out += "]}";
  return out;
}

std::string operationOutcome(const Issue& issue) { return operationOutcome(std::vector<Issue>{issue}); }

}  // namespace passerelle::fhir
