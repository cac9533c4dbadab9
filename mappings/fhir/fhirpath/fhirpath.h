// FHIRPath (N1, http://hl7.org/fhirpath/N1) over FHIR R4 JSON parsed with simdjson's DOM: enough
// of the language for the invariants of StructureDefinitions and the context expressions of
// extensions. Element types come from the validator's tables (choice elements such as value[x] are
// found by their base name, resources inside resources are typed by their resourceType).
// An Expression is compiled once and is immutable: it may be evaluated by several threads at once.
// Beyond N1: the FHIR functions extension(), hasValue(), getValue(), resolve() (contained resources
// and Bundle entries only), htmlChecks() (true: the base validator checks the narrative),
// conformsTo() (base types checked, other profiles assumed met), memberOf() (empty: no
// terminology), and FHIRPath 2.0's sort(), lowBoundary(), highBoundary(), precision(),
// comparable(), matchesFull(), trim(), split(), join(), encode(), decode(), escape(), unescape(),
// type() (name and namespace). Lenient where R4's own invariants need it: as() on several items
// filters them like ofType(); a choice element may also be named by its JSON name (valueQuantity).
// Not done: unit conversion beyond a few UCUM units of mass, length, volume and time (products of
// quantities only within one of those dimensions); static type checking (an unknown element name
// is an error at evaluation, only when no FHIR type has it); %rootResource distinct from
// %resource for contained resources; a primitive focus with its "_name" extensions (evaluate()
// takes the JSON value alone: such a primitive is reached from its parent).
#pragma once

#include <simdjson.h>

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace passerelle::fhir::fhirpath {

// The System types of FHIRPath; Object is a FHIR complex value (a JSON object).
enum class Kind : std::uint8_t { Empty, Boolean, Integer, Decimal, String, Date, DateTime, Time, Quantity, Object };

// One item of a collection: a node of the JSON (a FHIR element: an object, or a primitive with its
// value converted to the System type that FHIR maps it to) or a value computed by the expression.
struct Value {
  Kind kind = Kind::Empty;
  bool isNode = false;
  bool hasExt = false;   // a node primitive with a "_name" object (ext)
  bool hasJson = false;  // a node primitive with a JSON value (false: extensions only)
  bool boolean = false;
  std::int16_t scale = 0;       // Decimal and Quantity: digits after the point (-1: not computed yet)
  std::int32_t typeIndex = -1;  // complex, backbone or resource type in the validation tables
  std::int64_t integer = 0;
  long double decimal = 0;      // Decimal, Quantity value
  std::string_view fhirType;    // node: FHIR type name ("string", "HumanName", "Patient"); else empty
  simdjson::dom::element node;  // node: the JSON value
  simdjson::dom::element ext;   // node primitive: its "_name" object
  std::string_view view;        // node: String, Date, DateTime, Time text (in the DOM)
  std::string text;             // computed: String, Date, DateTime, Time text (without '@'); Quantity unit

  std::string_view str() const { return isNode ? view : std::string_view(text); }
  bool isPrimitive() const { return kind != Kind::Object && kind != Kind::Empty; }
};

using Collection = std::vector<Value>;

// Whether an invariant's result breaks it: only a single false does (an empty result passes, as
// R4 writes invariants on elements that may be absent: `probability is decimal implies ...`).
inline bool breaksInvariant(const Collection& result) {
  return result.size() == 1 && result[0].kind == Kind::Boolean && !result[0].boolean;
}

// The text FHIRPath's toString() gives for a value ("" for objects).
std::string toText(const Value& v);

struct Node;

class Expression {
 public:
  // Compiles `text`; nullptr, with `error` set, on a syntax error, a function this engine does not
  // know or given the wrong number of arguments, or an invalid literal regular expression.
  static std::shared_ptr<const Expression> compile(std::string_view text, std::string& error);

  // Evaluates against `focus` (%context and the first $this), with `resource` as %resource and
  // %rootResource. `focusType` names the FHIR type of a focus that is not a resource ("Extension",
  // "HumanName", "Observation.component"): it lets choice elements (value[x]) be found on it.
  // Returns false, with `error` set, on an evaluation error (several items where one is needed, an
  // element no FHIR type has, operands of the wrong types...). `out` may point into the DOM: it is
  // valid while the parsed document is.
  bool evaluate(simdjson::dom::element focus, simdjson::dom::element resource, Collection& out, std::string& error,
                std::string_view focusType = {}) const;

  // Evaluates an invariant: `result` is true when the expression gives {true}, or a single item
  // of another type (singleton evaluation of collections,
  // http://hl7.org/fhirpath/N1/#singleton-evaluation-of-collections). An empty result does not
  // satisfy it: ElementDefinition.constraint is a "condition that must evaluate to true"
  // (http://hl7.org/fhir/R4/elementdefinition-definitions.html#ElementDefinition.constraint), and
  // invariants written with exists() guards give a Boolean either way. One R4 expression does not:
  // ref-1 is empty on a Reference without a reference (display only), which the caller may want
  // to accept (R5 guards it with reference.exists() implies ...). Returns false, with `error`, on
  // an evaluation error, or when the result has several items.
  bool holds(simdjson::dom::element focus, simdjson::dom::element resource, bool& result, std::string& error,
             std::string_view focusType = {}) const;

  const std::string& text() const { return text_; }

  ~Expression();
  Expression(const Expression&) = delete;
  Expression& operator=(const Expression&) = delete;

 private:
  Expression() = default;
  static std::shared_ptr<const Expression> compileUnguarded(std::string_view text, std::string& error);
  std::string text_;
  std::unique_ptr<Node> root_;
};

}  // namespace passerelle::fhir::fhirpath
