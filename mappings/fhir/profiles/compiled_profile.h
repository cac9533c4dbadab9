// A StructureDefinition's snapshot compiled once into flat structures for the profile validator:
// one Node per snapshot element, children and slices as indexes, fixed[x] and pattern[x] values as
// small owned JSON trees, bindings resolved to local expansions. Immutable once built.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_set>
#include <utility>
#include <vector>

namespace passerelle::fhir::fhirpath {
class Expression;
}

namespace passerelle::fhir::profiles {

struct ValueMember;

// A JSON value held by a profile (fixed[x], pattern[x]). Its members are a vector of a type
// completed below (a pair holding Value itself would need Value complete, which clang checks).
struct Value {
  enum class Kind : std::uint8_t { Null, Bool, Number, String, Object, Array };
  Kind kind = Kind::Null;
  bool boolean = false;
  double number = 0;
  std::string text;                  // String
  std::vector<ValueMember> members;  // Object
  std::vector<Value> items;          // Array

  const Value* member(std::string_view name) const;
  // Compact JSON text, for messages.
  std::string json() const;
};

struct ValueMember {
  std::string first;
  Value second;
};

inline const Value* Value::member(std::string_view name) const {
  for (const auto& [k, v] : members)
    if (k == name) return &v;
  return nullptr;
}

// A set of strings looked up by a string_view without a copy.
struct TextHash {
  using is_transparent = void;
  std::size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
};
using TextSet = std::unordered_set<std::string, TextHash, std::equal_to<>>;

// The codes of a value set as far as it can be expanded from local data.
struct Expansion {
  std::string url;                        // canonical, with |version when the value set has one
  bool complete = false;                  // false: some part could not be expanded here
  std::string incompleteReason;           // why not, for the information issue
  TextSet pairs;  // "system|code"
  TextSet codes;  // the codes alone (for code elements)
  bool containsCode(std::string_view code) const { return codes.find(code) != codes.end(); }
  bool contains(std::string_view system, std::string_view code) const;
};

struct Profile;

enum class Strength : std::uint8_t { None, Example, Preferred, Extensible, Required };

struct TypeRef {
  std::string code;                      // "Identifier", "Reference", "string", "http://hl7.org/fhirpath/System.String"
  bool isReference = false, isExtension = false;  // code is "Reference", "Extension"
  std::vector<std::string> profiles;     // type.profile, canonical as written
  std::vector<const Profile*> resolved;  // the compiled profiles they name (null: not in the registry)
  std::vector<std::string> targetTypes;  // resource types allowed by type.targetProfile; empty: any
  bool anyTarget = true;                 // a target profile names Resource or is unknown
};

struct Discriminator {
  enum class Kind : std::uint8_t { Value, Pattern, Type, Exists, Profile };
  Kind kind = Kind::Value;
  std::string path;  // relative to the sliced element; "$this" for the element itself
  std::vector<std::string> segments;  // the path cut at its dots (names, $this, ofType(X), extension('url'))
};

// An invariant the definition adds (ElementDefinition.constraint), compiled: the base
// specification's own are the base validator's.
struct Constraint {
  std::string key;
  std::string severity;  // "error" or "warning"
  std::string human;     // the text to show, else the expression
  std::string expression;
  std::shared_ptr<const fhirpath::Expression> compiled;  // null: it did not compile (compileError)
  std::string compileError;
};

// What a slice's definition says at a discriminator's path: the element there, and the fixed or
// pattern value met on the way that covers the rest of the path.
struct SliceTarget {
  bool found = false;          // false: the path cannot be followed in the slice's definition
  std::int32_t node = -1;      // the element at the path, -1 when the definition does not go that far
  const Value* expected = nullptr;
  bool pattern = false;        // `expected` is a pattern (else a fixed value)
};

struct Node {
  std::string id;          // "Patient.identifier:INS-NIR.system"
  std::string path;        // "Patient.identifier.system"
  std::string name;        // last path segment: "system", "value[x]"
  std::string sliceName;   // for a slice entry
  bool choice = false;     // name ends with [x]
  bool isExtension = false;  // name is "extension" or "modifierExtension"
  // The element's type in the base validation tables (a backbone element's path, or its one type),
  // -1 for a primitive or several types; and that type's name for extension contexts.
  std::int32_t tableType = -1;
  std::string tableTypeName;
  std::int32_t min = 0;
  std::int32_t max = -1;   // -1 = *
  // The base definition's cardinality (ElementDefinition.base), when the snapshot says it.
  bool baseKnown = false;
  std::int32_t baseMin = 0, baseMax = -1;
  // Whether the element or something under it constrains more than the base specification: the
  // walk skips the rest (the base validator has checked it), but for the extensions in it.
  bool constrains = true;
  // Whether its values need more than to be counted (a cardinality narrowed is checked by the
  // parent): a walk without extensions to look for does not visit the values of the others.
  bool checksValues = true;
  std::vector<TypeRef> types;
  std::vector<Constraint> constraints;  // the definition's own invariants on this element
  std::unique_ptr<Value> fixed, pattern;
  // minValue[x] and maxValue[x], with their type ("Date", "Decimal", "Quantity"; a Duration on a
  // date is relative to now, as the later releases define it).
  std::unique_ptr<Value> minValue, maxValue;
  std::string minType, maxType;
  Strength strength = Strength::None;
  std::string valueSet;            // binding.valueSet as written
  const Expansion* expansion = nullptr;  // its local expansion (may be incomplete), null when unknown
  bool baseValueSet = false;       // a value set of the base specification (checked by the base validator on codes)
  // Slicing, on the slicing entry (the element without sliceName).
  bool sliced = false;
  bool ordered = false;
  enum class Rules : std::uint8_t { Open, Closed, OpenAtEnd } rules = Rules::Open;
  std::vector<Discriminator> discriminators;
  std::vector<std::int32_t> slices;    // slice entries, in snapshot order
  // Each slice's target for each discriminator, [slice * discriminators.size() + discriminator],
  // found once the profile is complete (findSliceTargets), not again for every element sorted.
  std::vector<SliceTarget> sliceTargets;
  std::vector<std::int32_t> children;  // child elements (slices excluded)
  // The children that constrain more than the base (`constrains`): all that a walk visits when the
  // instance holds no extension. With what tells an absent child needs nothing more, so that the
  // nodes left as in the base, or absent and optional, are not even read.
  struct ChildRef {
    std::int32_t node;
    std::int32_t min;
    bool sliced;
    bool choice;
    std::string name;  // without [x] for a choice (its JSON names start with it)
  };
  std::vector<ChildRef> constrainedChildren;
  std::int32_t parent = -1;
  std::int32_t contentReference = -1;  // the node whose children this one reuses (contentReference)
  std::string maxText() const { return max < 0 ? "*" : std::to_string(max); }
  // The name its values have in JSON, or begin with for a choice: "value" for "value[x]".
  std::string_view jsonName() const {
    return choice ? std::string_view(name).substr(0, name.size() - 3) : std::string_view(name);
  }
};

struct Profile {
  std::string url, version, name;
  std::string type;            // StructureDefinition.type: the resource or data type constrained
  bool resource = false;       // kind = resource
  bool extension = false;      // an extension definition
  std::vector<std::pair<std::string, std::string>> contexts;  // (type, expression) of an extension
  // The "fhirpath" contexts compiled (by index in contexts; null for the other types, or when the
  // expression does not compile), and contextInvariant (all must hold where the extension is).
  std::vector<std::shared_ptr<const fhirpath::Expression>> contextExpressions;
  std::vector<std::pair<std::string, std::shared_ptr<const fhirpath::Expression>>> contextInvariants;
  std::vector<Node> nodes;     // nodes[0] is the root element
  std::string error;           // not empty: the definition could not be compiled (why)
  std::string canonical() const { return version.empty() ? url : url + "|" + version; }
};

// Fills the sliceTargets of every sliced element of `p` (its nodes, slices and values complete).
void findSliceTargets(Profile& p);

}  // namespace passerelle::fhir::profiles
