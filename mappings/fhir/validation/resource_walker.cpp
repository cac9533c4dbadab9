// The validation walk: one pass over each object collects its fields (element index, value), then
// each field is checked against its element definition, then the object's cardinalities and
// invariants. Paths are kept as a stack of pieces and only turned into text for an issue.
#include "mappings/fhir/validation/resource_walker.h"

#include <algorithm>
#include <charconv>
#include <unordered_map>

#include "mappings/fhir/fhir_time.h"
#include "mappings/fhir/validator.h"
#include "mappings/fhir/validation/dom_access.h"
#include "mappings/fhir/validation/path_text.h"
#include "mappings/fhir/validation/primitive_checks.h"
#include "mappings/fhir/validation/xhtml_check.h"
#include "mappings/fhir/fhirpath/fhirpath.h"

namespace passerelle::fhir::validation {

namespace {

using simdjson::dom::array;
using simdjson::dom::element;
using simdjson::dom::element_type;
using simdjson::dom::object;

std::string_view jsonKind(element_type t) {
  switch (t) {
    case element_type::ARRAY: return "an Array";
    case element_type::OBJECT: return "an Object";
    case element_type::INT64:
    case element_type::UINT64:
    case element_type::DOUBLE: return "a Number";
    case element_type::STRING: return "a String";
    case element_type::BOOL: return "a Boolean";
    case element_type::NULL_VALUE: return "null";
  }
  return "a value";
}

// "Type/id" at the end of a RESTful URL (".../Patient/23"), or empty views.
std::pair<std::string_view, std::string_view> restTail(std::string_view url) {
  std::size_t slash = url.rfind('/');
  if (slash == std::string_view::npos || slash == 0) return {};
  std::size_t before = url.rfind('/', slash - 1);
  std::size_t typeStart = before == std::string_view::npos ? 0 : before + 1;
  return {url.substr(typeStart, slash - typeStart), url.substr(slash + 1)};
}

bool startsWith(std::string_view s, std::string_view prefix) { return s.substr(0, prefix.size()) == prefix; }

std::string quoteText(std::string_view s) {
  constexpr std::size_t kMax = 80;
  if (s.size() <= kMax) return "'" + std::string(s) + "'";
  return "'" + std::string(s.substr(0, kMax)) + "...'";
}

// The (system, code) pairs of a CodeableConcept's codings.
void codings(object cc, std::vector<std::pair<std::string_view, std::string_view>>& out) {
  array list;
  if (!memberArray(cc, "coding", list)) return;
  for (element c : list) {
    object co;
    if (c.get_object().get(co) != simdjson::SUCCESS) continue;
    std::string_view system, code;
    memberString(co, "system", system);
    if (memberString(co, "code", code)) out.emplace_back(system, code);
  }
}

}  // namespace

ResourceWalker::ResourceWalker(const ValidationTables& tables, std::vector<Issue>& issues,
                               const ValidationPolicy* policy)
    : tables_(tables),
      issues_(issues),
      policy_(policy),
      periodType_(tables.typeIndex("Period")),
      extensionTypeDef_(tables.extensionType >= 0 ? &tables.type(tables.extensionType) : nullptr),
      codeableConceptTypeDef_(tables.codeableConceptType >= 0 ? &tables.type(tables.codeableConceptType) : nullptr) {
  // The thread's buffers from the walker before, their room kept (a walker made while another
  // walks on the same thread finds them taken, and makes its own).
  fields_.swap(spareFields());
  anchors_.swap(spareAnchors());
  fields_.clear();
  anchors_.clear();
  if (fields_.capacity() < 128) fields_.reserve(128);
}

ResourceWalker::~ResourceWalker() {
  fields_.clear();
  anchors_.clear();
  if (spareFields().capacity() < fields_.capacity()) fields_.swap(spareFields());
  if (spareAnchors().capacity() < anchors_.capacity()) anchors_.swap(spareAnchors());
}

std::vector<ResourceWalker::Field>& ResourceWalker::spareFields() {
  thread_local std::vector<Field> spare;
  return spare;
}

std::vector<std::string_view>& ResourceWalker::spareAnchors() {
  thread_local std::vector<std::string_view> spare;
  return spare;
}

std::string ResourceWalker::pathString() const {
  std::string out;
  for (std::size_t i = 0; i < path_.size(); ++i) appendPathPiece(out, path_[i].name, path_[i].index, path_[i].ofType);
  return out;
}

void ResourceWalker::report(std::string_view code, std::string message, std::string_view severity) {
  reportAt(pathString(), code, std::move(message), severity);
}

void ResourceWalker::reportAt(std::string path, std::string_view code, std::string message,
                              std::string_view severity) {
  if (issues_.size() >= kMaxIssues) {
    if (!truncated_) {
      truncated_ = true;
      issues_.push_back({"error", "too-costly", "Too many issues: the rest are not reported", std::move(path)});
    }
    return;
  }
  issues_.push_back({std::string(severity), std::string(code), std::move(message), std::move(path)});
}

void ResourceWalker::validateDocument(element root, std::string_view expectedType) {
  object obj;
  if (root.get_object().get(obj) != simdjson::SUCCESS) {
    issues_.push_back({"error", "structure",
                       "The JSON document must be an object (a FHIR resource), not " +
                           std::string(jsonKind(root.type())),
                       ""});
    return;
  }
  anchors_.clear();
  narrativeLinks_.clear();
  validateResource(obj, root, expectedType, false);
  checkNarrativeLinks();
}

void ResourceWalker::validateResource(object obj, element self, std::string_view expectedType, bool contained) {
  element rt;
  std::string_view typeName;
  bool rootLevel = path_.empty();
  if (!member(obj, "resourceType", rt)) {
    if (rootLevel) push(expectedType.empty() ? std::string_view("Resource") : expectedType);
    report("structure", "Unable to find resourceType property");
    if (rootLevel) pop();
    return;
  }
  if (!stringOf(rt, typeName)) {
    if (rootLevel) push("Resource");
    report("structure", "The property resourceType must be a JSON String, not " + std::string(jsonKind(rt.type())));
    if (rootLevel) pop();
    return;
  }
  int typeIndex = tables_.resourceType(typeName);
  if (rootLevel) push(typeName);
  if (typeIndex < 0) {
    report("structure", "Unknown resource type " + quoteText(typeName));
    if (rootLevel) pop();
    return;
  }
  if (!expectedType.empty() && expectedType != typeName)
    report("invalid", "The resource type " + quoteText(typeName) + " does not match the expected type " +
                          quoteText(expectedType));
  if (!contained) frames_.emplace_back();
  if (typeIndex == tables_.bundleType) {
    std::string_view bundleType;
    memberString(obj, "type", bundleType);
    bundles_.push_back({path_.size(), bundleType == "document" || bundleType == "message", {}});
  }
  resources_.push_back(self);
  walkObject(obj, self, typeIndex, nullptr, -1, true);
  resources_.pop_back();
  if (typeIndex == tables_.bundleType) {
    BundleFrame frame = std::move(bundles_.back());
    bundles_.pop_back();
    checkBundle(obj, frame);
  }
  if (typeIndex == tables_.observationType) checkObservation(obj);
  if (contained) checkContained(obj);
  if (!contained) {
    // dom-3: every contained resource is referenced from elsewhere in the resource (or refers to it).
    array list;
    if (memberArray(obj, "contained", list)) {
      const ResourceFrame& frame = frames_.back();
      std::int32_t i = 0;
      for (element c : list) {
        object co;
        std::string_view id;
        if (c.get_object().get(co) == simdjson::SUCCESS) {
          bool hasId = memberString(co, "id", id);
          bool referenced =
              std::find(frame.containerRefIn.begin(), frame.containerRefIn.end(), i) != frame.containerRefIn.end();
          for (std::string_view ref : frame.localRefs)
            if (hasId && ref.size() == id.size() + 1 && ref.substr(1) == id) referenced = true;
          if (!referenced) {
            push("contained", i);
            report("invariant",
                   "Constraint failed: dom-3: 'If the resource is contained in another resource, it SHALL be "
                   "referred to from elsewhere in the resource or SHALL refer to the containing resource' (" +
                       (hasId ? "contained resource " + quoteText(id) + " is not referenced"
                              : std::string("a contained resource without an id cannot be referenced")) + ")");
            pop();
          }
        }
        ++i;
      }
    }
    // A local reference "#id" names a contained resource of this resource.
    for (const auto& [id, where] : frames_.back().referenceUses) {
      bool found = false;
      if (memberArray(obj, "contained", list))
        for (element c : list) {
          object co;
          std::string_view cid;
          if (c.get_object().get(co) == simdjson::SUCCESS && memberString(co, "id", cid) && cid == id) found = true;
        }
      if (!found)
        reportAt(where, "invalid", "The local reference '#" + std::string(id) +
                                       "' does not resolve: no contained resource has the id " + quoteText(id));
    }
    frames_.pop_back();
  }
  if (rootLevel) pop();
}

void ResourceWalker::walkObject(object obj, element self, int typeIndex, const ElementDef* via,
                                int inheritedValueSet, bool resourceRoot) {
  const TypeDef& type = tables_.type(typeIndex);
  const std::size_t base = fields_.size();
  bool hasContent = false;
  bool halves = false;  // a primitive's "_name" half is among the members
  std::uint64_t seen[2][2] = {};  // [a "_name" half][element / 64]: the elements met (below 128)
  std::uint64_t choicesSeen = 0;  // the choice groups met (below 64)
  bool bounded = false;  // an element with a maximum above 1 (not *) is among the members
  bool extension = false;  // extension or modifierExtension is among the members
  int resourceTypeSeen = 0;
  for (auto [key, value] : obj) {
    if (resourceRoot && key == "resourceType") {
      if (++resourceTypeSeen > 1) report("structure", "Duplicate JSON property 'resourceType'");
      continue;
    }
    bool underscore = key.size() > 1 && key[0] == '_';
    int e = type.find(underscore ? key.substr(1) : key);
    if (key != "id") hasContent = true;  // ele-1 counts any child, even one reported as unknown
    if (e < 0 || (underscore && type.elements[e].prim == Prim::None)) {
      report("structure", "Unrecognized property " + quoteText(key));
      continue;
    }
    const ElementDef& ed = type.elements[e];
    bool duplicate = false;
    // The members before are searched only when one may be this element again, or another of its
    // choice: the elements and choice groups seen are bits (a search per member made objects of n
    // members cost n^2).
    bool mayRepeat = e >= 128 || ((seen[underscore][e >> 6] >> (e & 63)) & 1) != 0;
    bool mayConflict = ed.choice >= 0 && (ed.choice >= 64 || ((choicesSeen >> ed.choice) & 1) != 0);
    for (std::size_t i = base; (mayRepeat || mayConflict) && i < fields_.size(); ++i) {
      const Field& f = fields_[i];
      if (f.element == e && f.underscore == underscore) {
        report("structure", "Duplicate JSON property " + quoteText(key));
        duplicate = true;
        break;
      }
      if (ed.choice >= 0 && f.element != e && type.elements[f.element].choice == ed.choice) {
        report("structure", "Only one of the choices of " + ed.choiceBase + "[x] is allowed, but both " +
                                quoteText(type.elements[f.element].name) + " and " + quoteText(ed.name) + " are present");
        duplicate = true;
        break;
      }
    }
    if (duplicate) continue;
    if (e < 128) seen[underscore][e >> 6] |= std::uint64_t{1} << (e & 63);
    if (ed.choice >= 0 && ed.choice < 64) choicesSeen |= std::uint64_t{1} << ed.choice;
    halves = halves || underscore;
    bounded = bounded || ed.max > 1;
    extension = extension || ed.isExtensionList;
    fields_.push_back({static_cast<std::int16_t>(e), underscore, value});
  }
  const std::size_t end = fields_.size();
  extensionSeen_ = extensionSeen_ || extension;
  if (!hasContent && !resourceRoot)
    report("invariant", "Constraint failed: ele-1: 'All FHIR elements must have a @value or children'");

  // The members searched for a primitive's other half: none when no member is a "_name" half.
  for (std::size_t i = base; i < end; ++i) walkField(type, i, base, halves ? end : base, inheritedValueSet, resourceRoot);

  // Cardinality, from the bits of the elements and choice groups met (the members for the others).
  for (std::int16_t r : type.required) {
    bool present = false;
    if (r < 128) present = (((seen[0][r >> 6] | seen[1][r >> 6]) >> (r & 63)) & 1) != 0;
    for (std::size_t i = base; r >= 128 && i < end && !present; ++i) present = fields_[i].element == r;
    if (!present) {
      const ElementDef& ed = type.elements[r];
      report("required", type.name + "." + ed.name + ": minimum required = " + std::to_string(ed.min) +
                             ", but only found 0");
    }
  }
  for (std::int16_t c : type.requiredChoices) {
    bool present = false;
    if (c < 64) present = ((choicesSeen >> c) & 1) != 0;
    for (std::size_t i = base; c >= 64 && i < end && !present; ++i) present = type.elements[fields_[i].element].choice == c;
    if (!present)
      report("required", type.name + "." + type.choiceBases[c] + "[x]: minimum required = 1, but only found 0");
  }
  for (std::size_t i = base; bounded && i < end; ++i) {
    const Field& f = fields_[i];
    const ElementDef& ed = type.elements[f.element];
    array arr;
    if (ed.max > 1 && !f.underscore && f.value.get_array().get(arr) == simdjson::SUCCESS &&
        arr.size() > static_cast<std::size_t>(ed.max))
      report("structure", type.name + "." + ed.name + ": maximum allowed = " + std::to_string(ed.max) +
                              ", but found " + std::to_string(arr.size()));
  }

  // Type-specific rules.
  if (typeIndex == tables_.extensionType) checkExtension(base, end, type);
  if (typeIndex == tables_.referenceType) {
    std::string_view ref, declared;
    for (std::size_t i = base; i < end; ++i) {
      if (fields_[i].underscore) continue;
      const std::string& name = type.elements[fields_[i].element].name;
      if (name == "reference" && stringOf(fields_[i].value, ref)) {
        push("reference");
        checkReference(ref, via);
        pop();
      } else if (name == "type") {
        stringOf(fields_[i].value, declared);
      }
    }
    if (!declared.empty()) checkReferenceType(ref, declared, via);
  }
  if (typeIndex == tables_.codingType) checkCoding(obj, inheritedValueSet);
  if (typeIndex == periodType_) checkPeriod(obj);
  if (typeIndex == tables_.attachmentType) checkAttachment(obj);
  if (!type.invariants.empty()) checkInvariants(type, self, base, end);
  fields_.resize(base);
}

// The type's invariants that the tables carry (the ones not checked in C++ above), with FHIRPath: on
// the object itself, or on each value of the element they are on. Only a false result breaks one: R4's
// invariants test the type of elements that may be absent (ras-2: "probability is decimal implies
// (probability as decimal) <= 100"), where FHIRPath's 'is' on nothing gives nothing, and the
// invariant must then hold. An expression the engine cannot evaluate here says so, as information:
// it is the engine's limit, not the resource's fault.
void ResourceWalker::checkInvariants(const TypeDef& type, element self, std::size_t base, std::size_t end) {
  if (resources_.empty()) return;
  element resource = resources_.back();
  std::string error;
  fhirpath::Collection result;
  auto check = [&](const Invariant& inv, element focus, std::string_view focusType) {
    error.clear();
    result.clear();
    if (!inv.compiled->evaluate(focus, resource, result, error, focusType)) {
      report("informational", "Invariant " + inv.key + " could not be evaluated (" + error + "): not checked",
             "information");
      return;
    }
    if (fhirpath::breaksInvariant(result))
      report("invariant", "Constraint failed: " + inv.key + ": '" + (inv.human.empty() ? inv.expression : inv.human) + "'");
  };
  for (const Invariant& inv : type.invariants) {
    if (!inv.presenceTerms.empty()) {
      // Children tested for presence: the members walked say it (a primitive's "_name" half counts,
      // as FHIRPath sees the element through its extensions).
      bool holds = false;
      for (const auto& [name, mustExist] : inv.presenceTerms) {
        bool present = false;
        for (std::size_t i = base; i < end && !present; ++i) {
          const ElementDef& ed = type.elements[fields_[i].element];
          present = ed.name == name || ed.choiceBase == name;
        }
        if (present == mustExist) {
          holds = true;
          break;
        }
      }
      if (!holds)
        report("invariant", "Constraint failed: " + inv.key + ": '" + (inv.human.empty() ? inv.expression : inv.human) + "'");
      continue;
    }
    if (!inv.compiled) continue;
    if (inv.element.empty()) {
      check(inv, self, type.name);
      continue;
    }
    for (std::size_t i = base; i < end; ++i) {
      const Field& f = fields_[i];
      const ElementDef& ed = type.elements[f.element];
      if (f.underscore || (ed.name != inv.element && ed.choiceBase != inv.element)) continue;
      if (ed.choice >= 0) push(ed.choiceBase, -1, ed.typeName);
      else push(ed.name);
      array arr;
      if (f.value.get_array().get(arr) == simdjson::SUCCESS) {
        std::int32_t index = 0;
        for (element item : arr) {
          path_.back().index = index++;
          check(inv, item, ed.typeName);
        }
      } else {
        check(inv, f.value, ed.typeName);
      }
      pop();
    }
  }
}

void ResourceWalker::walkField(const TypeDef& type, std::size_t fieldIndex, std::size_t base, std::size_t end,
                               int inheritedValueSet, bool resourceRoot) {
  const Field f = fields_[fieldIndex];
  const ElementDef& ed = type.elements[f.element];
  // The sibling holding the other half of a primitive (value / _value).
  const Field* partner = nullptr;
  if (ed.prim != Prim::None)
    for (std::size_t i = base; i < end; ++i)
      if (fields_[i].element == f.element && fields_[i].underscore != f.underscore) partner = &fields_[i];
  array partnerArray;
  bool partnerIsArray = partner && partner->value.get_array().get(partnerArray) == simdjson::SUCCESS;

  if (ed.choice >= 0)
    push(ed.choiceBase, -1, ed.typeName);
  else
    push(ed.name);
  // The extensions of an extension are its parts, named by a url relative to it.
  bool savedSubExtension = subExtension_;
  subExtension_ = ed.isExtensionList && &type == extensionTypeDef_;
  int childValueSet = ed.type == tables_.codeableConceptType || ed.type == tables_.codingType ? ed.valueSet
                      : &type == codeableConceptTypeDef_ && ed.name == "coding"          ? inheritedValueSet
                                                                                           : -1;
  element_type kind = f.value.type();
  if (ed.many()) {
    array arr;
    if (f.value.get_array().get(arr) != simdjson::SUCCESS) {
      report("structure", "The property " + ed.name + " must be a JSON Array, not " + std::string(jsonKind(kind)));
    } else if (arr.size() == 0) {
      report("invalid", "Array cannot be empty - the property should not be present if it has no values");
    } else {
      if (f.underscore && partnerIsArray && partnerArray.size() != arr.size())
        report("structure", "The arrays " + ed.name + " and _" + ed.name + " must have the same length");
      std::int32_t index = 0;
      for (element item : arr) {
        path_.back().index = index;
        if (item.is_null()) {
          bool otherHalf = false;
          if (partnerIsArray) {
            element o;
            otherHalf = partnerArray.at(static_cast<std::size_t>(index)).get(o) == simdjson::SUCCESS && !o.is_null();
          }
          if (!otherHalf && !f.underscore) report("structure", "Null values are not allowed here");
          if (!otherHalf && f.underscore && !partnerIsArray) report("structure", "Null values are not allowed here");
        } else if (f.underscore) {
          object o;
          if (item.get_object().get(o) != simdjson::SUCCESS)
            report("structure", "The primitive extension must be a JSON Object, not " + std::string(jsonKind(item.type())));
          else
            walkObject(o, item, tables_.elementType, nullptr, -1, false);
        } else {
          checkValue(item, ed, childValueSet, false);
        }
        ++index;
      }
    }
  } else if (kind == element_type::ARRAY) {
    report("structure", "The property " + ed.name + " must not be a JSON Array (it has at most one value)");
  } else if (f.underscore) {
    object o;
    if (f.value.get_object().get(o) != simdjson::SUCCESS)
      report("structure", "The primitive extension must be a JSON Object, not " + std::string(jsonKind(kind)));
    else
      walkObject(o, f.value, tables_.elementType, nullptr, -1, false);
  } else if (resourceRoot && ed.isId) {
    checkPrimitive(f.value, ed, true);
    std::string_view id;
    if (stringOf(f.value, id)) anchors_.push_back(id);
  } else {
    checkValue(f.value, ed, childValueSet, false);
    std::string_view id;
    if (ed.isId && stringOf(f.value, id)) anchors_.push_back(id);
  }
  subExtension_ = savedSubExtension;
  pop();
}

void ResourceWalker::checkValue(element v, const ElementDef& e, int inheritedValueSet, bool) {
  if (e.prim != Prim::None) {
    checkPrimitive(v, e, false);
    return;
  }
  object o;
  if (v.get_object().get(o) != simdjson::SUCCESS) {
    report("structure", "The property " + e.name + " must be a JSON Object, not " + std::string(jsonKind(v.type())));
    return;
  }
  if (e.isResource) {
    bool isContained = e.name == "contained";
    if (isContained) {
      std::int32_t saved = containedIndex_;
      containedIndex_ = path_.back().index;
      validateResource(o, v, {}, true);
      containedIndex_ = saved;
    } else {
      std::int32_t saved = containedIndex_;
      containedIndex_ = -1;
      validateResource(o, v, {}, false);
      containedIndex_ = saved;
    }
    return;
  }
  walkObject(o, v, e.type, &e, inheritedValueSet, false);
}

void ResourceWalker::checkPrimitive(element v, const ElementDef& e, bool isResourceId) {
  element_type kind = v.type();
  switch (e.prim) {
    case Prim::Boolean:
      if (kind != element_type::BOOL)
        report("structure", "Error parsing JSON: the primitive value must be a boolean, not " +
                                std::string(jsonKind(kind)));
      return;
    case Prim::Integer:
    case Prim::PositiveInt:
    case Prim::UnsignedInt: {
      if (kind != element_type::INT64 && kind != element_type::UINT64) {
        if (kind == element_type::DOUBLE)
          report("value", "The value is not a valid " + std::string(primName(e.prim)) + " (not a whole number)");
        else
          report("structure", "Error parsing JSON: the primitive value must be a number, not " +
                                  std::string(jsonKind(kind)));
        return;
      }
      std::int64_t n = 0;
      if (kind == element_type::UINT64 || v.get_int64().get(n) != simdjson::SUCCESS) n = INT64_MAX;
      std::int64_t lo = e.prim == Prim::Integer ? INT32_MIN : e.prim == Prim::PositiveInt ? 1 : 0;
      if (n < lo || n > INT32_MAX)
        report("value", "The value " + std::to_string(n) + " is outside the range of " +
                            std::string(primName(e.prim)) + " (" + std::to_string(lo) + " to 2147483647)");
      return;
    }
    case Prim::Decimal:
      if (kind != element_type::INT64 && kind != element_type::UINT64 && kind != element_type::DOUBLE)
        report("structure", "Error parsing JSON: the primitive value must be a number, not " +
                                std::string(jsonKind(kind)));
      return;
    default: {
      std::string_view s;
      if (!stringOf(v, s)) {
        report("structure",
               "Error parsing JSON: the primitive value must be a string, not " + std::string(jsonKind(kind)));
        return;
      }
      checkString(s, e, isResourceId);
    }
  }
}

void ResourceWalker::checkString(std::string_view s, const ElementDef& e, bool isResourceId) {
  if (s.empty()) {
    report("value", "@value cannot be empty");
    return;
  }
  if (s.size() > kMaxStringBytes) {
    report("value", "value is longer than permitted maximum length of 1 MB (1048576 bytes)");
    return;
  }
  if (isResourceId) {
    if (s.size() > 64)
      report("value", "Invalid Resource id: Too long (" + std::to_string(s.size()) + " chars)");
    else if (!isFhirId(s))
      report("value", "Invalid Resource id: Invalid Characters (" + quoteText(s) + ")");
    return;
  }
  bool ok = true;
  std::string_view what;
  switch (e.prim) {
    case Prim::String:
    case Prim::Markdown:
      ok = isFhirString(s);
      what = "string (no control characters)";
      if (ok && onlyWhitespace(s)) {
        report("value", "@value cannot be made only of whitespace");
        return;
      }
      if (ok && e.prim == Prim::Markdown) checkMarkdown(s);
      break;
    case Prim::Code: ok = isFhirCode(s); what = "code"; break;
    case Prim::Id: ok = isFhirId(s); what = "id"; break;
    case Prim::Uri:
    case Prim::Url:
    case Prim::Canonical:
      ok = isFhirUri(s);
      what = primName(e.prim);
      if (ok && policy_ && policy_->refuseExampleUrls && ValidationPolicy::isExampleUrl(s))
        report("value", "The URL " + quoteText(s) +
                            " is on a domain reserved for documentation (RFC 2606): example data is refused here");
      if (ok && s[0] == '#' && !frames_.empty()) {
        if (s.size() == 1 && containedIndex_ >= 0)
          frames_.back().containerRefIn.push_back(containedIndex_);
        else
          frames_.back().localRefs.push_back(s);
      }
      break;
    case Prim::Oid: ok = isFhirOid(s); what = "oid"; break;
    case Prim::Uuid: ok = isFhirUuid(s); what = "uuid"; break;
    case Prim::Date: ok = isFhirDate(s); what = "date"; break;
    case Prim::DateTime: ok = isFhirDateTime(s); what = "dateTime"; break;
    case Prim::Instant: ok = isFhirInstant(s); what = "instant"; break;
    case Prim::Time: ok = isFhirTime(s); what = "time"; break;
    case Prim::Base64Binary: ok = isFhirBase64(s); what = "base64Binary"; break;
    case Prim::Xhtml: {
      std::vector<XhtmlProblem> problems;
      XhtmlRefs refs;
      checkNarrativeXhtml(s, problems, &refs);
      for (auto& p : problems)
        report(p.invariant.empty() ? "invalid" : "invariant",
               p.invariant.empty() ? std::move(p.message) : "Constraint failed: " + p.invariant + ": " + p.message);
      anchors_.insert(anchors_.end(), refs.anchors.begin(), refs.anchors.end());
      if (!refs.links.empty()) {
        std::string where = pathString();
        for (std::string_view link : refs.links) narrativeLinks_.push_back({link, where});
      }
      return;
    }
    default: break;
  }
  if (!ok) {
    if (e.prim == Prim::Date || e.prim == Prim::DateTime || e.prim == Prim::Instant || e.prim == Prim::Time)
      report("value", "Not a valid " + std::string(what) + " format: " + quoteText(s));
    else
      report("value", "The value " + quoteText(s) + " is not a valid " + std::string(what));
    return;
  }
  if (e.prim == Prim::Code && e.valueSet >= 0) {
    const ValueSet& vs = tables_.valueSet(e.valueSet);
    if (!vs.contains(s))
      report("code-invalid", "The value provided (" + quoteText(s) + ") is not in the value set " + vs.url +
                                 ", and a code is required from this value set");
  }
}

void ResourceWalker::checkReference(std::string_view ref, const ElementDef* via) {
  if (ref.empty()) return;  // reported as an empty string already
  if (ref[0] == '#') {
    if (!frames_.empty()) {
      if (ref.size() == 1 && containedIndex_ >= 0) {
        frames_.back().containerRefIn.push_back(containedIndex_);
      } else {
        frames_.back().localRefs.push_back(ref);
        if (ref.size() > 1) frames_.back().referenceUses.emplace_back(ref.substr(1), pathString());
      }
    }
    return;
  }
  if (!isFhirUri(ref)) return;  // the uri check already reported it
  if (!bundles_.empty()) {
    // Inside a Bundle's entry: kept to be resolved against the other entries once they are known.
    BundleFrame& bundle = bundles_.back();
    bool urn = startsWith(ref, "urn:");
    if (bundle.depth < path_.size() && path_[bundle.depth].name == "entry" &&
        (bundle.resolveAll || urn || ref.find("/_history/") != std::string_view::npos) &&
        (!urn || isFhirUuid(ref) || isFhirOid(ref)))
      bundle.refs.push_back({ref, path_[bundle.depth].index, via, pathString()});
  }
  std::string_view typeName;
  if (startsWith(ref, "urn:uuid:")) {
    if (!isFhirUuid(ref)) report("invalid", "The reference " + quoteText(ref) + " is not a valid urn:uuid: UUID");
    return;
  }
  if (startsWith(ref, "urn:oid:")) {
    if (!isFhirOid(ref)) report("invalid", "The reference " + quoteText(ref) + " is not a valid urn:oid: OID");
    return;
  }
  bool absolute = ref.find("://") != std::string_view::npos || startsWith(ref, "urn:");
  std::string_view path = ref;
  std::size_t q = path.find('?');
  if (q != std::string_view::npos && !absolute) {
    // Conditional reference (transactions): Type?criteria
    typeName = path.substr(0, q);
    if (tables_.resourceType(typeName) < 0) {
      report("invalid", "The reference " + quoteText(ref) + " is not a valid conditional reference (unknown type)");
      return;
    }
  } else {
    if (q != std::string_view::npos) path = path.substr(0, q);
    // [Type, id] or [Type, id, _history, vid] at the end of the '/'-separated segments: the last
    // four read from the end (last[0] is the last), and how many there are (counted up to five).
    std::string_view last[4];
    std::size_t n = 0;
    for (std::size_t end = path.size(); n < 5;) {
      std::size_t slash = end == 0 ? std::string_view::npos : path.rfind('/', end - 1);
      std::size_t from = slash == std::string_view::npos ? 0 : slash + 1;
      if (n < 4) last[n] = path.substr(from, end - from);
      ++n;
      if (slash == std::string_view::npos) break;
      end = slash;
    }
    std::string_view type, id;
    bool whole = false;  // the type is the first segment: a relative reference
    if (n >= 4 && last[1] == "_history") {
      type = last[3], id = last[2], whole = n == 4;
    } else if (n >= 2) {
      type = last[1], id = last[0], whole = n == 2;
    }
    bool shaped = !type.empty() && tables_.resourceType(type) >= 0 && isFhirId(id);
    if (!absolute && (!shaped || !whole)) {
      report("invalid", "The reference " + quoteText(ref) +
                            " is not valid: expected Type/id, Type/id/_history/version, an absolute URL, "
                            "#id of a contained resource or urn:uuid:");
      return;
    }
    if (!shaped) return;  // an absolute URL that is not a RESTful FHIR URL: nothing more to check
    typeName = type;
  }
  if (via && !via->targets.empty()) {
    int t = tables_.resourceType(typeName);
    if (std::find(via->targets.begin(), via->targets.end(), t) == via->targets.end()) {
      std::string allowed;
      for (int x : via->targets) {
        if (!allowed.empty()) allowed += ", ";
        allowed += tables_.type(x).name;
      }
      report("invalid", "The type " + quoteText(typeName) + " of the reference " + quoteText(ref) +
                            " is not a valid target for this element (allowed: " + allowed + ")");
    }
  }
}

// Reference.type: the type of the target (a resource type for the base definitions), which a
// RESTful reference's own type must agree with, and an allowed target of the element.
void ResourceWalker::checkReferenceType(std::string_view ref, std::string_view declared, const ElementDef* via) {
  int t = tables_.resourceType(declared);
  if (t < 0) return;  // a logical model's URL: nothing known to check against
  push("type");
  if (via != nullptr && !via->targets.empty() &&
      std::find(via->targets.begin(), via->targets.end(), t) == via->targets.end())
    report("invalid", "The reference's type " + quoteText(declared) + " is not a valid target for this element");
  if (!ref.empty() && ref[0] != '#' && !startsWith(ref, "urn:")) {
    std::string_view path = ref.substr(0, ref.find('?'));
    if (std::size_t h = path.find("/_history/"); h != std::string_view::npos) path = path.substr(0, h);
    bool conditional = path.size() != ref.size() && ref.find("://") == std::string_view::npos;
    std::string_view refType = conditional ? path : restTail(path).first;  // Type?criteria, or .../Type/id
    if (tables_.resourceType(refType) >= 0 && refType != declared)
      report("invalid", "The reference " + quoteText(ref) + " names a " + std::string(refType) +
                            " but its type says " + quoteText(declared));
  }
  pop();
}

void ResourceWalker::checkCoding(object coding, int valueSet) {
  std::string_view system, code;
  bool hasSystem = memberString(coding, "system", system);
  if (hasSystem && !system.empty() && system.find(':') == std::string_view::npos) {
    push("system");
    report("invalid", "Coding.system must be an absolute reference, not a local reference (" + quoteText(system) + ")");
    pop();
  }
  if (valueSet < 0 || !hasSystem || !memberString(coding, "code", code)) return;
  const ValueSet& vs = tables_.valueSet(valueSet);
  if (vs.hasSystem(system) && !vs.contains(code)) {
    push("code");
    report("code-invalid", "The code " + quoteText(code) + " of system " + std::string(system) +
                               " is not in the value set " + vs.url + ", and a code is required from this value set");
    pop();
  }
}

// per-1: 'start.hasValue().not() or end.hasValue().not() or (start <= end)'. FHIRPath compares
// dates and times of the same precision (seconds and milliseconds are one); at different precisions
// the result is known only when they differ at the coarser one, and an invariant that is not true
// (false or empty) is broken: 2023-06-21 against 2023-06-21T06:20:00Z breaks it.
void ResourceWalker::checkPeriod(object period) {
  std::string_view start, end;
  std::int64_t startLo = 0, startHi = 0, endLo = 0, endHi = 0;
  if (!memberString(period, "start", start) || !memberString(period, "end", end) ||
      !parseDateRange(start, startLo, startHi) || !parseDateRange(end, endLo, endHi))
    return;
  auto precision = [](std::string_view t) {
    std::size_t time = t.find('T');
    if (time == std::string_view::npos) return static_cast<int>(t.size());  // 4, 7 or 10
    std::string_view clock = t.substr(time + 1, 8);
    return clock.size() >= 8 && clock[5] == ':' ? 20 : 16;  // hh:mm:ss(.sss) or hh:mm
  };
  bool holds = precision(start) == precision(end) ? startLo <= endLo : startHi <= endLo;
  if (!holds)
    report("invariant", "Constraint failed: per-1: 'If present, start SHALL have a lower value than end' (start " +
                            quoteText(start) + ", end " + quoteText(end) + ")");
}

void ResourceWalker::checkAttachment(object attachment) {
  std::string_view data;
  element size;
  std::int64_t stated = 0;
  if (!memberString(attachment, "data", data) || !member(attachment, "size", size) ||
      size.get_int64().get(stated) != simdjson::SUCCESS || !isFhirBase64(data))
    return;
  std::int64_t chars = 0, padding = 0;
  for (char c : data) {
    if (c == ' ' || c == '\t' || c == '\r' || c == '\n') continue;
    ++chars;
    if (c == '=') ++padding;
  }
  std::int64_t actual = chars / 4 * 3 - padding;
  if (actual != stated) {
    push("size");
    report("structure", "Stated Attachment Size " + std::to_string(stated) + " does not match actual attachment size " +
                            std::to_string(actual));
    pop();
  }
}

void ResourceWalker::checkExtension(std::size_t base, std::size_t end, const TypeDef& type) {
  bool hasExtension = false, hasValue = false;
  for (std::size_t i = base; i < end; ++i) {
    const ElementDef& ed = type.elements[fields_[i].element];
    if (ed.name == "extension") hasExtension = true;
    if (ed.choice >= 0) hasValue = true;
    std::string_view url;
    // extensibility.html: the url of an extension is the absolute canonical URL of its definition;
    // only the parts of a complex extension have urls relative to it.
    if (ed.name == "url" && !fields_[i].underscore && !subExtension_ && stringOf(fields_[i].value, url) &&
        !url.empty() && url.find(':') == std::string_view::npos)
      report("invalid", "Extension.url must be an absolute URL (" + quoteText(url) +
                            " is relative, which only the parts of a complex extension may be)");
  }
  if (hasExtension == hasValue)
    report("invariant", "Constraint failed: ext-1: 'Must have either extensions or value[x], not both'");
}

void ResourceWalker::checkContained(object obj) {
  element v;
  if (member(obj, "contained", v))
    report("invariant", "Constraint failed: dom-2: 'If the resource is contained in another resource, it SHALL NOT "
                        "contain nested Resources'");
  object meta;
  if (memberObject(obj, "meta", meta)) {
    if (member(meta, "versionId", v) || member(meta, "lastUpdated", v))
      report("invariant", "Constraint failed: dom-4: 'If a resource is contained in another resource, it SHALL NOT "
                          "have a meta.versionId or a meta.lastUpdated'");
    if (member(meta, "security", v))
      report("invariant", "Constraint failed: dom-5: 'If a resource is contained in another resource, it SHALL NOT "
                          "have a security label'");
  }
}

void ResourceWalker::checkObservation(object obj) {
  bool hasValue = false;
  for (auto [key, value] : obj)
    if (startsWith(key, "value") && key.size() > 5 && key[5] >= 'A' && key[5] <= 'Z') hasValue = true;
  element v;
  if (hasValue && member(obj, "dataAbsentReason", v))
    report("invariant", "Constraint failed: obs-6: 'dataAbsentReason SHALL only be present if Observation.value[x] "
                        "is not present'");
  array components;
  if (!memberArray(obj, "component", components)) return;
  std::vector<std::pair<std::string_view, std::string_view>> own;
  object code;
  if (memberObject(obj, "code", code)) codings(code, own);
  std::int32_t i = 0;
  for (element c : components) {
    object co, cc;
    if (c.get_object().get(co) == simdjson::SUCCESS) {
      bool componentValue = false;
      for (auto [key, value] : co)
        if (startsWith(key, "value") && key.size() > 5 && key[5] >= 'A' && key[5] <= 'Z') componentValue = true;
      if (componentValue && member(co, "dataAbsentReason", v)) {
        push("component", i);
        report("invariant", "Constraint failed: obs-6: 'dataAbsentReason SHALL only be present if "
                            "Observation.value[x] is not present'");
        pop();
      }
      if (hasValue && memberObject(co, "code", cc)) {
        std::vector<std::pair<std::string_view, std::string_view>> theirs;
        codings(cc, theirs);
        for (const auto& x : theirs)
          if (std::find(own.begin(), own.end(), x) != own.end()) {
            report("invariant", "Constraint failed: obs-7: 'If Observation.code is the same as an "
                                "Observation.component.code then the value element associated with the code SHALL "
                                "NOT be present'");
            break;
          }
      }
    }
    ++i;
  }
}


void ResourceWalker::checkBundle(object obj, BundleFrame& frame) {
  std::string_view type;
  memberString(obj, "type", type);
  element v;
  if (member(obj, "total", v) && type != "searchset" && type != "history")
    report("invariant", "Constraint failed: bdl-1: 'total only when a search or history'");
  bool document = type == "document", message = type == "message";
  if (document) {
    object identifier;
    std::string_view s;
    if (!memberObject(obj, "identifier", identifier) || !memberString(identifier, "system", s) ||
        !memberString(identifier, "value", s))
      report("invariant", "Constraint failed: bdl-9: 'A document must have an identifier with a system and a value'");
    if (!member(obj, "timestamp", v))
      report("invariant", "Constraint failed: bdl-10: 'A document must have a date'");
  }
  array entries;
  bool hasEntries = memberArray(obj, "entry", entries);
  bool needRequest = type == "batch" || type == "transaction" || type == "history";
  bool needResponse = type == "batch-response" || type == "transaction-response" || type == "history";
  std::vector<std::pair<std::string_view, std::string_view>> seen;  // fullUrl, versionId
  std::int32_t i = 0;
  if (hasEntries) {
    for (element e : entries) {
      object entry;
      if (e.get_object().get(entry) != simdjson::SUCCESS) {
        ++i;
        continue;
      }
      push("entry", i);
      object resource;
      bool hasResource = memberObject(entry, "resource", resource);
      bool hasRequest = member(entry, "request", v), hasResponse = member(entry, "response", v);
      object search;
      if (memberObject(entry, "search", search)) {
        if (type != "searchset") {
          report("invariant", "Constraint failed: bdl-2: 'entry.search only when a search'");
        } else {
          std::string_view mode, rt;
          if (memberString(search, "mode", mode) && mode == "outcome" &&
              !(hasResource && memberString(resource, "resourceType", rt) && rt == "OperationOutcome")) {
            push("search");
            push("mode");
            report("invalid", "A searchset entry whose search mode is 'outcome' must carry an OperationOutcome");
            pop();
            pop();
          }
        }
      }
      if (hasRequest != needRequest)
        report("invariant", needRequest ? "Constraint failed: bdl-3: 'entry.request mandatory for batch/transaction/"
                                          "history' (this entry has no request)"
                                        : "Constraint failed: bdl-3: 'entry.request allowed only for batch/"
                                          "transaction/history'");
      if (hasResponse != needResponse)
        report("invariant", needResponse ? "Constraint failed: bdl-4: 'entry.response mandatory for batch-response/"
                                           "transaction-response/history' (this entry has no response)"
                                         : "Constraint failed: bdl-4: 'entry.response allowed only for "
                                           "batch-response/transaction-response/history'");
      if (!hasResource && !hasRequest && !hasResponse)
        report("invariant", "Constraint failed: bdl-5: 'must be a resource unless there's a request or response'");
      if (hasRequest && (type == "batch" || type == "transaction"))
        checkBundleEntryRequest(type, entry, hasResource, resource);
      std::string_view fullUrl, resourceType, id;
      if (memberString(entry, "fullUrl", fullUrl)) {
        if (fullUrl.find("/_history/") != std::string_view::npos)
          report("invariant", "Constraint failed: bdl-8: 'fullUrl cannot be a version specific reference'");
        push("fullUrl");
        if (fullUrl.find(':') == std::string_view::npos) {
          report("invalid", "The fullUrl " + quoteText(fullUrl) + " must be an absolute URL");
        } else if (startsWith(fullUrl, "urn:uuid:")) {
          if (!isFhirUuid(fullUrl)) report("invalid", "The fullUrl " + quoteText(fullUrl) + " is not a valid urn:uuid: UUID");
        } else if (startsWith(fullUrl, "urn:oid:")) {
          if (!isFhirOid(fullUrl)) report("invalid", "The fullUrl " + quoteText(fullUrl) + " is not a valid urn:oid: OID");
        } else if (hasResource && memberString(resource, "resourceType", resourceType)) {
          // The fullUrl SHALL NOT disagree with the resource: a RESTful URL ends with its type and id.
          bool hasId = memberString(resource, "id", id);
          auto [urlType, urlId] = restTail(fullUrl);
          bool restful = tables_.resourceType(urlType) >= 0 && isFhirId(urlId);
          if (restful && (urlType != resourceType || (hasId && urlId != id)))
            report("invalid", "The fullUrl " + quoteText(fullUrl) + " does not match the resource (" +
                                  std::string(resourceType) + (hasId ? "/" + std::string(id) : std::string(" without an id")) + ")");
          else if (!restful && hasId && fullUrl.find("/" + std::string(resourceType) + "/") != std::string_view::npos &&
                   !(urlType == resourceType && urlId == id))
            report("invalid", "The fullUrl " + quoteText(fullUrl) + " does not end with the resource's type and id (" +
                                  std::string(resourceType) + "/" + std::string(id) + ")");
        }
        pop();
        std::string_view versionId;
        object meta;
        if (hasResource && memberObject(resource, "meta", meta)) memberString(meta, "versionId", versionId);
        std::pair<std::string_view, std::string_view> key{fullUrl, versionId};
        if (std::find(seen.begin(), seen.end(), key) != seen.end())
          report("invariant", "Constraint failed: bdl-7: 'FullUrl must be unique in a bundle, or else entries with "
                              "the same fullUrl must have different meta.versionId' (" + quoteText(fullUrl) + ")");
        else if (seen.size() < 4096)
          seen.push_back(key);
      }
      if (i == 0 && (document || message)) {
        std::string_view first;
        bool hasType = hasResource && memberString(resource, "resourceType", first);
        if (document && (!hasType || first != "Composition"))
          report("invariant", "Constraint failed: bdl-11: 'A document must have a Composition as the first resource'");
        if (message && (!hasType || first != "MessageHeader"))
          report("invariant", "Constraint failed: bdl-12: 'A message must have a MessageHeader as the first resource'");
      }
      pop();
      ++i;
    }
    if (!frame.refs.empty()) resolveBundleReferences(entries, frame);
  }
  if (!hasEntries && (document || message))
    report("invariant", document ? "Constraint failed: bdl-11: 'A document must have a Composition as the first resource'"
                                 : "Constraint failed: bdl-12: 'A message must have a MessageHeader as the first resource'");
}

// What a batch or transaction entry carries (http.html#transaction): POST and PUT a resource of the
// type their url names (PUT Type/id: that id too), PATCH a Parameters or Binary, GET, HEAD and
// DELETE none.
void ResourceWalker::checkBundleEntryRequest(std::string_view bundleType, object entry, bool hasResource,
                                             object resource) {
  object request;
  std::string_view method, url, resourceType, id;
  if (!memberObject(entry, "request", request) || !memberString(request, "method", method) ||
      !memberString(request, "url", url))
    return;  // reported by the cardinalities
  if (hasResource) memberString(resource, "resourceType", resourceType);
  bool hasId = hasResource && memberString(resource, "id", id);
  push("request");
  if (method == "GET" || method == "HEAD" || method == "DELETE") {
    if (hasResource) {
      pop();
      push("resource");
      report("invalid", "A " + std::string(bundleType) + " entry with method " + std::string(method) +
                            " carries no resource");
      pop();
      push("request");
    }
  } else if (method == "POST" || method == "PUT" || method == "PATCH") {
    if (!hasResource) {
      report("invalid", "A " + std::string(bundleType) + " entry with method " + std::string(method) +
                            " must carry a resource");
    } else if (method == "PATCH") {
      if (resourceType != "Parameters" && resourceType != "Binary")
        report("invalid", "A PATCH entry carries a Parameters (FHIRPath patch) or a Binary, not a " +
                              std::string(resourceType));
    } else {
      std::string_view path = url.substr(0, url.find('?'));
      bool conditional = path.size() != url.size();
      std::size_t slash = path.find('/');
      std::string_view urlType = path.substr(0, slash);
      push("url");
      if (tables_.resourceType(urlType) < 0) {
        report("invalid", "The request url " + quoteText(url) + " does not start with a resource type");
      } else if (urlType != resourceType) {
        report("invalid", "The request url " + quoteText(url) + " names the type " + quoteText(urlType) +
                              " but the entry's resource is a " + std::string(resourceType));
      } else if (method == "POST" && slash != std::string_view::npos) {
        report("invalid", "A POST entry's url is the resource type alone, not " + quoteText(url));
      } else if (method == "PUT" && !conditional) {
        std::string_view urlId = slash == std::string_view::npos ? std::string_view() : path.substr(slash + 1);
        if (urlId.empty() || urlId.find('/') != std::string_view::npos)
          report("invalid", "A PUT entry's url is Type/id or Type?criteria, not " + quoteText(url));
        else if (hasId && urlId != id)
          report("invalid", "The request url " + quoteText(url) + " does not match the resource id " + quoteText(id));
      }
      pop();
    }
  }
  pop();
}

// Resolving references in Bundles (bundle.html#references): a version is taken off and compared
// with the entry's meta.versionId; urn:uuid:, urn:oid: and absolute references match a fullUrl;
// a relative reference is made absolute with the base of its own entry's RESTful fullUrl (or, when
// the entry has none, matches an entry of that type and id).
void ResourceWalker::resolveBundleReferences(array entries, BundleFrame& frame) {
  struct Target {
    std::string_view fullUrl, type, id, version;
  };
  std::vector<Target> targets;
  targets.reserve(entries.size());
  std::unordered_map<std::string_view, std::size_t> byUrl;
  std::unordered_map<std::string, std::size_t> byTypeId;
  for (element e : entries) {
    Target t;
    object entry, resource, meta;
    if (e.get_object().get(entry) == simdjson::SUCCESS) {
      memberString(entry, "fullUrl", t.fullUrl);
      if (memberObject(entry, "resource", resource)) {
        memberString(resource, "resourceType", t.type);
        memberString(resource, "id", t.id);
        if (memberObject(resource, "meta", meta)) memberString(meta, "versionId", t.version);
      }
    }
    if (!t.fullUrl.empty()) byUrl.emplace(t.fullUrl, targets.size());
    if (!t.type.empty() && !t.id.empty())
      byTypeId.emplace(std::string(t.type) + "/" + std::string(t.id), targets.size());
    targets.push_back(t);
  }
  std::string candidate;
  for (BundleReference& use : frame.refs) {
    std::string_view ref = use.ref;
    if (ref.find('?') != std::string_view::npos) continue;  // conditional: resolved by the server
    std::string_view version;
    if (std::size_t h = ref.find("/_history/"); h != std::string_view::npos) {
      version = ref.substr(h + 10);
      ref = ref.substr(0, h);
    }
    bool urn = startsWith(ref, "urn:");
    bool absolute = urn || ref.find("://") != std::string_view::npos;
    std::size_t found = SIZE_MAX;
    if (absolute) {
      if (auto it = byUrl.find(ref); it != byUrl.end()) found = it->second;
    } else if (use.entry >= 0 && static_cast<std::size_t>(use.entry) < targets.size()) {
      const Target& own = targets[static_cast<std::size_t>(use.entry)];
      auto [urlType, urlId] = restTail(own.fullUrl);
      bool restful = !startsWith(own.fullUrl, "urn:") && own.fullUrl.find("://") != std::string_view::npos &&
                     tables_.resourceType(urlType) >= 0;
      if (restful) {
        candidate.assign(own.fullUrl.substr(0, own.fullUrl.size() - urlType.size() - urlId.size() - 1));
        candidate.append(ref);
        if (auto it = byUrl.find(candidate); it != byUrl.end()) found = it->second;
      } else if (auto it = byTypeId.find(std::string(ref)); it != byTypeId.end()) {
        found = it->second;
      }
    }
    if (found == SIZE_MAX) {
      if (frame.resolveAll || urn)
        reportAt(std::move(use.path), "not-found",
                 "The reference " + quoteText(use.ref) + " does not resolve to an entry of the Bundle" +
                     (frame.resolveAll ? std::string(" (references in a document or a message resolve inside it)")
                                       : std::string(" (a urn: reference only resolves inside its Bundle)")));
      continue;
    }
    const Target& target = targets[found];
    if (!version.empty() && version != target.version) {
      reportAt(use.path, "invalid",
               "The versioned reference " + quoteText(use.ref) + " resolves to an entry whose version is " +
                   (target.version.empty() ? std::string("not stated") : quoteText(target.version)));
    }
    if (urn && use.via != nullptr && !use.via->targets.empty() && !target.type.empty()) {
      int t = tables_.resourceType(target.type);
      if (std::find(use.via->targets.begin(), use.via->targets.end(), t) == use.via->targets.end()) {
        std::string allowed;
        for (int x : use.via->targets) {
          if (!allowed.empty()) allowed += ", ";
          allowed += tables_.type(x).name;
        }
        reportAt(std::move(use.path), "invalid",
                 "The reference " + quoteText(use.ref) + " resolves to a " + std::string(target.type) +
                     ", which is not a valid target for this element (allowed: " + allowed + ")");
      }
    }
  }
}

// Markdown is GitHub-flavoured markdown without raw HTML (datatypes.html#markdown): a tag, an end
// tag, a comment or a declaration outside code spans is refused.
void ResourceWalker::checkMarkdown(std::string_view s) {
  std::size_t i = 0;
  while (i < s.size()) {
    char c = s[i];
    if (c == '`') {
      std::size_t run = s.find_first_not_of('`', i);
      if (run == std::string_view::npos) return;
      std::string fence(run - i, '`');
      std::size_t close = s.find(fence, run);
      if (close == std::string_view::npos) return;  // an unclosed code span: plain text from here
      i = close + fence.size();
      continue;
    }
    if (c == '\\' && i + 1 < s.size()) {
      i += 2;
      continue;
    }
    if (c == '<' && i + 1 < s.size()) {
      char n = s[i + 1];
      bool letter = (n >= 'a' && n <= 'z') || (n >= 'A' && n <= 'Z');
      bool endTag = n == '/' && i + 2 < s.size() &&
                    ((s[i + 2] >= 'a' && s[i + 2] <= 'z') || (s[i + 2] >= 'A' && s[i + 2] <= 'Z'));
      if (letter || endTag || n == '!' || n == '?') {
        // An autolink (<https://...>, <mailto:...>) is markdown, not HTML.
        std::size_t close = s.find('>', i);
        std::string_view inside = s.substr(i + 1, close == std::string_view::npos ? 0 : close - i - 1);
        bool autolink = letter && inside.find(':') != std::string_view::npos &&
                        inside.find_first_of(" \t\r\n<") == std::string_view::npos &&
                        inside.find(':') < inside.find('=');
        if (!autolink && (close != std::string_view::npos || n == '!')) {
          std::size_t len = std::min<std::size_t>(close == std::string_view::npos ? 4 : close - i + 1, 40);
          report("invalid", "The markdown carries raw HTML (" + quoteText(s.substr(i, len)) +
                                "), which markdown in FHIR does not allow");
          return;
        }
      }
    }
    ++i;
  }
}

// A narrative's "#..." links (a href, img src) name an id inside the resource or its Bundle: an
// element or resource id, or an id or name attribute of a narrative.
void ResourceWalker::checkNarrativeLinks() {
  if (narrativeLinks_.empty()) return;
  std::sort(anchors_.begin(), anchors_.end());
  for (NarrativeLink& link : narrativeLinks_)
    if (!std::binary_search(anchors_.begin(), anchors_.end(), link.target))
      reportAt(std::move(link.path), "invalid",
               "The narrative links to '#" + std::string(link.target) +
                   "', which is not the id of anything in the resource (or its Bundle)");
}

}  // namespace passerelle::fhir::validation
