// Checks the XHTML of Narrative.div: a well-formed <div> in the XHTML namespace (txt-1), only the
// basic formatting elements and attributes txt-1 allows (HTML 4.0 chapters 7 to 12: text, lists,
// tables, links, images, style attributes; no script, form, object, event attribute or javascript:
// link), only XML's predefined and numeric entities, and some non-whitespace content (txt-2).
// Stateless and thread-safe; linear in the text, no recursion.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace passerelle::fhir::validation {

struct XhtmlProblem {
  std::string invariant;  // "txt-1", "txt-2" or "" for well-formedness
  std::string message;
};

// The anchors a narrative defines (id and name attributes) and the internal links it makes
// (href and src values "#..."), as views into the checked text.
struct XhtmlRefs {
  std::vector<std::string_view> anchors;
  std::vector<std::string_view> links;  // without the '#'
};

// Appends the problems found in `div` to `out`, and its anchors and internal links to `refs`.
void checkNarrativeXhtml(std::string_view div, std::vector<XhtmlProblem>& out, XhtmlRefs* refs = nullptr);

}  // namespace passerelle::fhir::validation
