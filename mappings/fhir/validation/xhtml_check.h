// Checks the XHTML of Narrative.div: a well-formed <div> in the XHTML namespace (txt-1), only
// basic formatting (no script, iframe, form, object, embed, ... and no event attributes such as
// onclick, no javascript: links), only XML's predefined and numeric entities, and some
// non-whitespace content (txt-2). Stateless and thread-safe; linear in the text, no recursion.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace passerelle::fhir::validation {

struct XhtmlProblem {
  std::string invariant;  // "txt-1", "txt-2" or "" for well-formedness
  std::string message;
};

// Appends the problems found in `div` to `out`.
void checkNarrativeXhtml(std::string_view div, std::vector<XhtmlProblem>& out);

}  // namespace passerelle::fhir::validation
