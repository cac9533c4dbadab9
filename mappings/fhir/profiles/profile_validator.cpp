// The profile walk: from the root element of a compiled snapshot, each element definition looks up
// its values in the instance (simdjson DOM), checks their count, then each value: fixed and pattern,
// binding, reference targets, then its own children, or, when the snapshot does not unroll them, the
// profile its type names (a data type profile, an extension definition). Values of a sliced element
// are sorted into slices by the discriminators first. Extensions outside any profile element are
// checked against their definition when the registry knows their url. Paths are kept as one string
// that grows and shrinks with the walk.
#include "mappings/fhir/profiles/profile_validator.h"

#include <algorithm>
#include <cctype>
#include <cstring>
#include <deque>
#include <span>
#include <unordered_set>

#include "mappings/fhir/fhir_time.h"
#include "mappings/fhir/fhirpath/fhirpath.h"
#include "mappings/fhir/resource_types.h"
#include "mappings/fhir/validation/dom_access.h"
#include "mappings/fhir/validation/path_text.h"
#include "mappings/fhir/validation/validation_tables.h"

namespace passerelle::fhir::profiles {

namespace {

using simdjson::dom::array;
using simdjson::dom::element;
using simdjson::dom::element_type;
using simdjson::dom::object;
using validation::member;
using validation::memberString;
using validation::stringOf;

constexpr std::string_view kCoreSd = "http://hl7.org/fhir/StructureDefinition/";
constexpr int kMaxDepth = 24;

// Calls fn(item, index) for each item of an array, or fn(value, -1) for a single value.
template <typename Fn>
void forEachItem(element value, Fn&& fn) {
  array arr;
  if (value.get_array().get(arr) == simdjson::SUCCESS) {
    std::int32_t i = 0;
    for (element e : arr) fn(e, i++);
  } else {
    fn(value, -1);
  }
}

bool isNumber(element v) {
  auto t = v.type();
  return t == element_type::INT64 || t == element_type::UINT64 || t == element_type::DOUBLE;
}

double numberOf(element v) {
  switch (v.type()) {
    case element_type::INT64: return static_cast<double>(int64_t(v));
    case element_type::UINT64: return static_cast<double>(uint64_t(v));
    default: return double(v);
  }
}

// fixed[x]: the instance is exactly the value.
bool equalsValue(const Value& f, element v) {
  switch (f.kind) {
    case Value::Kind::Null: return v.is_null();
    case Value::Kind::Bool: return v.is_bool() && bool(v) == f.boolean;
    case Value::Kind::Number: return isNumber(v) && numberOf(v) == f.number;
    case Value::Kind::String: {
      std::string_view s;
      return stringOf(v, s) && s == f.text;
    }
    case Value::Kind::Object: {
      object obj;
      if (v.get_object().get(obj) != simdjson::SUCCESS || obj.size() != f.members.size()) return false;
      for (const auto& [k, m] : f.members) {
        element e;
        if (!member(obj, k, e) || !equalsValue(m, e)) return false;
      }
      return true;
    }
    case Value::Kind::Array: {
      array arr;
      if (v.get_array().get(arr) != simdjson::SUCCESS || arr.size() != f.items.size()) return false;
      std::size_t i = 0;
      for (element e : arr)
        if (!equalsValue(f.items[i++], e)) return false;
      return true;
    }
  }
  return false;
}

// pattern[x]: every member of the pattern is in the instance with the same value, every element of
// a pattern array matches some element of the instance's array.
bool containsPattern(const Value& p, element v) {
  if (p.kind == Value::Kind::Object) {
    object obj;
    if (v.get_object().get(obj) != simdjson::SUCCESS) return false;
    for (const auto& [k, m] : p.members) {
      element e;
      if (!member(obj, k, e) || !containsPattern(m, e)) return false;
    }
    return true;
  }
  if (p.kind == Value::Kind::Array) {
    array arr;
    if (v.get_array().get(arr) != simdjson::SUCCESS) {
      // A single instance value against a one-element pattern array.
      return p.items.size() == 1 && containsPattern(p.items[0], v);
    }
    for (const Value& item : p.items) {
      bool found = false;
      for (element e : arr)
        if (containsPattern(item, e)) {
          found = true;
          break;
        }
      if (!found) return false;
    }
    return true;
  }
  return equalsValue(p, v);
}

std::string shortJson(const Value& v) {
  std::string s = v.json();
  if (s.size() > 200) s = s.substr(0, 200) + "...";
  return s;
}

// Type codes and the suffixes of choice names differ in the case of their first letter only.
bool sameType(std::string_view code, std::string_view suffix) {
  if (code.size() != suffix.size() || code.empty()) return false;
  if (std::toupper(static_cast<unsigned char>(code[0])) != std::toupper(static_cast<unsigned char>(suffix[0])))
    return false;
  return code.substr(1) == suffix.substr(1);
}

// The FHIR type a choice's JSON name ends with: valueString -> "string" (a primitive's name starts
// with a small letter), valueQuantity -> "Quantity". The base validator names them so in its issues'
// locations (value.ofType(string)), and FHIRPath resolves "string" as FHIR's, "String" as System's.
std::string_view choiceTypeOf(std::string_view suffix) {
  char name[32];
  if (suffix.empty() || suffix.size() > sizeof name) return suffix;
  std::memcpy(name, suffix.data(), suffix.size());
  name[0] = static_cast<char>(std::tolower(static_cast<unsigned char>(name[0])));
  validation::Prim prim = validation::primNamed(std::string_view(name, suffix.size()));
  return prim == validation::Prim::None ? suffix : validation::primName(prim);
}

bool isFunction(std::string_view seg, std::string_view name) {
  return seg.size() > name.size() + 1 && seg.substr(0, name.size()) == name && seg[name.size()] == '(';
}

// extension('url') -> url
std::string_view extensionArgument(std::string_view seg) {
  auto open = seg.find('\'');
  auto close = seg.rfind('\'');
  if (open == std::string_view::npos || close <= open) return {};
  return seg.substr(open + 1, close - open - 1);
}

// The resource type a literal reference points to, or empty.
std::string_view referenceType(std::string_view ref) {
  if (auto q = ref.find('?'); q != std::string_view::npos) return ref.substr(0, q);
  if (auto h = ref.find("/_history/"); h != std::string_view::npos) ref = ref.substr(0, h);
  auto last = ref.rfind('/');
  if (last == std::string_view::npos || last == 0) return {};
  auto prev = ref.rfind('/', last - 1);
  std::string_view type = prev == std::string_view::npos ? ref.substr(0, last) : ref.substr(prev + 1, last - prev - 1);
  return isResourceType(type) ? type : std::string_view();
}

// The node whose children describe `n`'s content (a contentReference's target when `n` has none).
const Node* shapeOfNode(const Profile& p, const Node& n) {
  if (n.children.empty() && n.contentReference >= 0) return &p.nodes[static_cast<std::size_t>(n.contentReference)];
  return &n;
}

const Node* childNamed(const Profile& p, const Node& n, std::string_view seg) {
  const Node* shape = shapeOfNode(p, n);
  for (std::int32_t ci : shape->children) {
    const Node& c = p.nodes[static_cast<std::size_t>(ci)];
    if (c.name == seg) return &c;
    if (c.choice) {
      std::string_view base = c.jsonName();
      if (seg == base) return &c;
      if (seg.size() > base.size() && seg.substr(0, base.size()) == base) {
        // valueQuantity: the type slice when there is one, else the choice
        for (std::int32_t si : c.slices) {
          const Node& s = p.nodes[static_cast<std::size_t>(si)];
          if (s.types.size() == 1 && sameType(s.types[0].code, seg.substr(base.size()))) return &s;
        }
        return &c;
      }
    }
  }
  return nullptr;
}

// What the definition says at a discriminator path, from `node` and segment k on: the element, and
// the fixed or pattern value that covers it. False when the path cannot be followed in the definition.
struct Target {
  const Node* node = nullptr;
  const Value* expected = nullptr;
  bool pattern = false;
};

bool definitionAt(const Profile& p, const Node* node, const std::vector<std::string>& segs, std::size_t k,
                  Target& out) {
  for (;; ++k) {
    if (node->fixed || node->pattern) {
      const Value* v = node->fixed ? node->fixed.get() : node->pattern.get();
      out.pattern = node->pattern != nullptr;
      for (std::size_t j = k; v && j < segs.size(); ++j) {
        if (segs[j] == "$this" || isFunction(segs[j], "ofType")) continue;
        if (v->kind == Value::Kind::Array) v = v->items.empty() ? nullptr : &v->items[0];
        v = v ? v->member(segs[j]) : nullptr;
      }
      out.node = node;
      out.expected = v;
      return true;
    }
    if (k == segs.size()) break;
    std::string_view seg = segs[k];
    if (seg == "$this" || isFunction(seg, "ofType")) continue;
    if (isFunction(seg, "extension")) {
      const Node* ext = childNamed(p, *node, "extension");
      const Node* found = nullptr;
      std::string_view url = extensionArgument(seg);
      if (ext)
        for (std::int32_t si : ext->slices) {
          const Node& sl = p.nodes[static_cast<std::size_t>(si)];
          for (const auto& t : sl.types)
            for (const auto& prof : t.profiles)
              if (ProfileRegistry::splitCanonical(prof).first == url) found = &sl;
          if (const Node* u = childNamed(p, sl, "url"); u && u->fixed && u->fixed->text == url) found = &sl;
        }
      if (!found) return false;
      node = found;
      continue;
    }
    const Node* next = childNamed(p, *node, seg);
    if (!next) {
      out.node = nullptr;
      return true;
    }
    // Through a sliced element (code.coding.code with coding sliced): the value a slice fixes, a
    // required slice first.
    if (!next->slices.empty() && k + 1 < segs.size()) {
      Target plain;
      definitionAt(p, next, segs, k + 1, plain);
      if (plain.expected) {
        out = plain;
        return true;
      }
      for (int pass = 0; pass < 2; ++pass)
        for (std::int32_t si : next->slices) {
          const Node& sl = p.nodes[static_cast<std::size_t>(si)];
          if ((pass == 0) != (sl.min >= 1)) continue;
          Target viaSlice;
          if (definitionAt(p, &sl, segs, k + 1, viaSlice) && viaSlice.expected) {
            out = viaSlice;
            return true;
          }
        }
      out = plain;
      return true;
    }
    node = next;
  }
  out.node = node;
  return true;
}

// Vectors reused by the walk's recursion, a level per nested use, kept by the thread: a walk
// nests a few levels deep and calls these many times per resource.
template <typename T>
class Scratch {
 public:
  Scratch() : pool_(pool()) {
    if (pool_.used == pool_.lists.size()) pool_.lists.emplace_back();
    list_ = &pool_.lists[pool_.used++];
    list_->clear();
  }
  ~Scratch() { --pool_.used; }
  Scratch(const Scratch&) = delete;
  Scratch& operator=(const Scratch&) = delete;
  std::vector<T>& operator*() { return *list_; }

 private:
  struct Pool {
    std::deque<std::vector<T>> lists;  // a deque: the lists in use stay where they are as it grows
    std::size_t used = 0;
  };
  static Pool& pool() {
    thread_local Pool p;
    return p;
  }
  Pool& pool_;
  std::vector<T>* list_;
};

class Walk {
 public:
  Walk(const ProfileRegistry& registry, const ValidationPolicy& policy, std::vector<Issue>& issues, object root,
       int depth = 0)
      : registry_(registry), policy_(policy), issues_(issues), root_(root), depth_(depth) {}

  std::string path;  // where the walked value is (its issues' paths start with it)
  // The document holds no extension (ProfileValidator::mayContainExtensions): what the profile
  // does not constrain is left to the base validator without a search for extensions.
  void assumeNoExtensions() { extensions_ = false; }
  // The resource walked, for FHIRPath (%resource); set by the entry points that have it.
  void setRoot(element resource) {
    rootElement_ = resource;
    hasRoot_ = true;
  }
  // The same root as `other` (a walk of a part of the same resource).
  void shareRoot(const Walk& other) {
    extensions_ = other.extensions_;
    rootElement_ = other.rootElement_;
    hasRoot_ = other.hasRoot_;
    resource_ = other.resource_;
    hasResource_ = other.hasResource_;
  }

  void checkResource(const Profile& p, element resource) { checkNode(p, p.nodes[0], resource, {}); }

  void checkNode(const Profile& p, const Node& n, element v, std::string_view choiceType);
  void checkNodeIn(const Profile& p, const Node& n, element v, std::string_view choiceType, const TypeRef* t);
  void checkRange(const Profile& p, const Node& n, element v);

  std::size_t errors() const {
    return static_cast<std::size_t>(std::count_if(issues_.begin(), issues_.end(), [](const Issue& i) {
      return i.severity == "error" || i.severity == "fatal";
    }));
  }

 private:
  struct Item {
    element value;
    std::int32_t index;          // position in the JSON array, -1 for a single value
    std::string_view choiceType; // for choice elements
    std::string_view key;        // the JSON name
  };

  void report(std::string_view severity, std::string_view code, std::string message, const Profile& p) {
    if (issues_.size() >= ProfileValidator::kMaxIssues) {
      if (!truncated_) {
        truncated_ = true;
        issues_.push_back({"error", "too-costly", "Too many issues: the rest are not reported", fullPath()});
      }
      return;
    }
    message += " (profile ";
    message += p.url;
    message += ')';
    issues_.push_back({std::string(severity), std::string(code), std::move(message), fullPath()});
  }

  // The path walked below `path`, written out only when an issue needs it: a piece per level, each
  // naming what outlives the walk (the document's keys, the profile's names).
  struct PathPiece {
    std::string_view name;
    std::int32_t index;
    std::string_view ofType;
  };
  std::size_t push(std::string_view name, std::int32_t index, std::string_view ofType = {}) {
    pieces_.push_back({name, index, ofType});
    return pieces_.size() - 1;
  }
  void pop(std::size_t mark) { pieces_.resize(mark); }
  std::string fullPath() const {
    std::string out = path;
    for (const PathPiece& piece : pieces_) validation::appendPathPiece(out, piece.name, piece.index, piece.ofType);
    return out;
  }

  const TypeRef* typeFor(const Node& n, std::string_view choiceType) const {
    if (!choiceType.empty()) {
      for (const auto& t : n.types)
        if (sameType(t.code, choiceType)) return &t;
      return nullptr;
    }
    return n.types.size() == 1 ? &n.types[0] : nullptr;
  }

  // An object's members, read once from the DOM per object walked (simdjson reads each key from
  // its tape again on every pass over the object).
  struct Member {
    std::string_view key;
    element value;
  };
  // The values of the child called `name` (a choice's name without [x]) among `members`; `count`
  // also counts a primitive given by its "_name" half only.
  void collectItems(std::string_view name, bool choice, const std::vector<Member>& members, std::vector<Item>& items,
                    std::size_t& count);
  void checkChildren(const Profile& p, const Node& n, object obj);
  void checkSlicing(const Profile& p, const Node& c, const std::vector<Item>& items);
  void checkConstraints(const Profile& p, const Node& n, element v, std::string_view focusType);
  // `values`: what the item holds at the discriminator's path (instanceAt), read once for all slices.
  bool discriminatorMatches(const Profile& p, const Node& s, const Discriminator& d, const SliceTarget& target,
                            std::span<const element> values, const Item& item);
  void instanceAt(element v, const std::vector<std::string>& segs, std::size_t k, std::vector<element>& out) const;
  void checkBinding(const Profile& p, const Node& n, element v, const TypeRef* t);
  void checkReference(const Profile& p, const TypeRef& t, object ref);
  void checkExtensionByUrl(const Profile& p, const Node& n, element v, object ext);
  void checkExtensionContext(const Profile& ext, const Profile& p, const Node& n);
  // `container`, when known, is the element the extension is on: "fhirpath" contexts are evaluated
  // on the resource to see whether they select it, and contextInvariant on it.
  void checkContext(const Profile& ext, std::string_view containerPath, std::string_view containerType,
                    bool resourceRoot, std::string_view parentExtension, bool pathPrefixEnough, const Profile& reportAs,
                    std::string_view typedPath = {}, const element* container = nullptr);
  bool contextAllows(const Profile& ext, std::string_view containerPath, std::string_view containerType,
                     bool resourceRoot, std::string_view parentExtension, bool pathPrefixEnough,
                     std::string_view typedPath, const element* container, std::string& list);
  void scanExtensions(element v, int depth);
  // An extension at the current path whose definition is not known: an error when the policy
  // refuses those.
  void unknownExtension(std::string_view url) {
    // A relative url names a part of a complex extension, judged with it.
    if (url.find(':') == std::string_view::npos || policy_.acceptsUnknownExtension(url)) return;
    if (issues_.size() >= ProfileValidator::kMaxIssues) return;
    issues_.push_back({"error", "structure",
                       "The extension " + std::string(url) +
                           " has no definition known here, and extensions without a known definition are refused",
                       fullPath()});
  }
  void scanPrimitiveExtensions(const Profile& p, const Node& n, object obj);
  void skipUnconstrained(const Profile& p, const Node& c, const std::vector<Item>& items);

 public:
  // Extensions of a resource checked without a profile of it: every extension whose definition is
  // known (loaded, or a core extension) against it, its context included, the containers' paths and
  // types taken from the base validation tables.
  void scanResourceExtensions(object resource, std::string_view type, int depth = 0);

 private:
  void scanTyped(object obj, int typeIndex, std::string_view typeName, const std::string& defPath,
                 bool resourceRoot, std::string_view parentExtension, int depth, const std::string& typedPath = {},
                 const element* self = nullptr);
  bool quietlyValid(const Profile& p, const Node& n, element v, std::string_view choiceType);

  const ProfileRegistry& registry_;
  const ValidationPolicy& policy_;
  std::vector<Issue>& issues_;
  object root_;
  element rootElement_;
  bool hasRoot_ = false;
  bool extensions_ = true;
  element resource_;  // the resource the node checked is in (%resource): the root, or an inner one
  bool hasResource_ = false;
  int depth_;
  bool truncated_ = false;
  Scratch<PathPiece> piecesScratch_;  // the thread's, reused from one walk to the next
  std::vector<PathPiece>& pieces_ = *piecesScratch_;
  std::unordered_set<std::string_view> reportedValueSets_;  // value sets already said not to be checked
};

namespace {

// A UCUM duration (a, mo, wk, d, h, min, s, ms) in milliseconds; negative when it is not one.
double durationMs(const Value& q) {
  const Value* value = q.member("value");
  const Value* code = q.member("code");
  if (code == nullptr) code = q.member("unit");
  if (value == nullptr || value->kind != Value::Kind::Number || code == nullptr) return -1;
  static const std::pair<std::string_view, double> units[] = {
      {"a", 365.25 * 86400e3}, {"mo", 30.4375 * 86400e3}, {"wk", 7 * 86400e3}, {"d", 86400e3},
      {"h", 3600e3},          {"min", 60e3},              {"s", 1e3},         {"ms", 1}};
  for (const auto& [unit, ms] : units)
    if (code->text == unit) return value->number * ms;
  return -1;
}

bool numberOf(element v, double& out) {
  std::int64_t i = 0;
  std::uint64_t u = 0;
  if (v.get_double().get(out) == simdjson::SUCCESS) return true;
  if (v.get_int64().get(i) == simdjson::SUCCESS) return out = static_cast<double>(i), true;
  if (v.get_uint64().get(u) == simdjson::SUCCESS) return out = static_cast<double>(u), true;
  return false;
}

}  // namespace

// minValue[x] and maxValue[x] (elementdefinition.html): dates and times compared as FHIRPath
// does (broken only when the whole value is past the bound), numbers, and the value of a Quantity
// in the bound's unit; a Duration bound on a date is relative to now.
void Walk::checkRange(const Profile& p, const Node& n, element v) {
  for (int side = 0; side < 2; ++side) {
    bool min = side == 0;
    const Value* bound = min ? n.minValue.get() : n.maxValue.get();
    if (bound == nullptr) continue;
    const std::string& type = min ? n.minType : n.maxType;
    bool broken = false;
    std::string_view text;
    double x = 0;
    if (v.get_string().get(text) == simdjson::SUCCESS) {
      std::int64_t lo = 0, hi = 0, boundLo = 0, boundHi = 0;
      if (type == "Time") {
        broken = bound->kind == Value::Kind::String && (min ? text < bound->text : text > bound->text);
      } else if (parseDateRange(text, lo, hi)) {
        if (type == "Duration" || type == "Quantity") {
          double ms = durationMs(*bound);
          if (ms < 0) continue;
          boundLo = boundHi = min ? nowMs() - static_cast<std::int64_t>(ms) : nowMs() + static_cast<std::int64_t>(ms);
        } else if (bound->kind != Value::Kind::String || !parseDateRange(bound->text, boundLo, boundHi)) {
          continue;
        }
        broken = min ? hi <= boundLo : lo >= boundHi;
      }
    } else if (numberOf(v, x)) {
      broken = bound->kind == Value::Kind::Number && (min ? x < bound->number : x > bound->number);
    } else {
      object q;
      element value;
      const Value* bv = bound->member("value");
      if (v.get_object().get(q) != simdjson::SUCCESS || bv == nullptr || bv->kind != Value::Kind::Number ||
          q.at_key("value").get(value) != simdjson::SUCCESS || !numberOf(value, x))
        continue;
      // Only in the bound's own unit: converting units is a terminology service's work.
      const Value* bc = bound->member("code");
      std::string_view code;
      element c;
      if (bc != nullptr && (q.at_key("code").get(c) != simdjson::SUCCESS || c.get_string().get(code) != simdjson::SUCCESS ||
                            code != bc->text))
        continue;
      broken = min ? x < bv->number : x > bv->number;
    }
    if (broken)
      report("error", "value",
             std::string("Value is ") + (min ? "below the minimum " : "above the maximum ") + shortJson(*bound) +
                 (type == "Duration" && (v.is_string()) ? (min ? " before now" : " after now") : "") + " (" + n.id + ")",
             p);
  }
}

void Walk::checkNode(const Profile& p, const Node& n, element v, std::string_view choiceType) {
  if (depth_ > kMaxDepth) return;
  const TypeRef* t = typeFor(n, choiceType);
  if (&n == &p.nodes[0] && p.resource) {
    // A resource profile's root: the resource FHIRPath's %resource names, for what is under it.
    element outer = resource_;
    bool hadOuter = hasResource_;
    resource_ = v;
    hasResource_ = true;
    checkNodeIn(p, n, v, choiceType, t);
    resource_ = outer;
    hasResource_ = hadOuter;
    return;
  }
  checkNodeIn(p, n, v, choiceType, t);
}

void Walk::checkConstraints(const Profile& p, const Node& n, element v, std::string_view focusType) {
  element resource = hasResource_ ? resource_ : hasRoot_ ? rootElement_ : v;
  fhirpath::Collection out;
  std::string error;
  for (const Constraint& k : n.constraints) {
    if (!k.compiled) {
      report("information", "informational",
             "Constraint " + k.key + " of " + n.id + " does not compile (" + k.compileError + "): not checked", p);
      continue;
    }
    out.clear();
    error.clear();
    if (!k.compiled->evaluate(v, resource, out, error, focusType)) {
      report("information", "informational", "Constraint " + k.key + " of " + n.id + " could not be evaluated (" + error + "): not checked", p);
      continue;
    }
    if (fhirpath::breaksInvariant(out))
      report(k.severity, "invariant",
             "Constraint failed: " + k.key + ": '" + (k.human.empty() ? k.expression : k.human) + "' (" + n.id + ")", p);
  }
}

void Walk::checkNodeIn(const Profile& p, const Node& n, element v, std::string_view choiceType, const TypeRef* t) {
  if (!n.constraints.empty()) {
    // The type FHIRPath finds the children by (a backbone element is named by its path).
    std::string_view focusType = &n == &p.nodes[0] ? std::string_view(p.type)
                                 : !choiceType.empty() ? choiceType
                                 : n.tableType >= 0 ? std::string_view(validation::ValidationTables::embedded().type(n.tableType).name)
                                 : t ? std::string_view(t->code) : std::string_view();
    checkConstraints(p, n, v, focusType);
  }
  if (n.fixed && !equalsValue(*n.fixed, v))
    report("error", "value", "Value must be exactly " + shortJson(*n.fixed) + " (fixed by " + n.id + ")", p);
  if (n.pattern && !containsPattern(*n.pattern, v))
    report("error", "value", "Value does not match the pattern " + shortJson(*n.pattern) + " required by " + n.id, p);
  if (n.minValue || n.maxValue) checkRange(p, n, v);
  if (!n.valueSet.empty() && (n.strength == Strength::Required || n.strength == Strength::Extensible))
    checkBinding(p, n, v, t);
  object obj;
  if (v.get_object().get(obj) != simdjson::SUCCESS) return;
  if (t && t->isReference && !t->anyTarget) checkReference(p, *t, obj);
  const Node* shape = shapeOfNode(p, n);
  if (!shape->children.empty()) {
    checkChildren(p, *shape, obj);
    return;
  }
  // Not unrolled in this snapshot: the profile the type names, else what the registry knows.
  if (t && !t->resolved.empty()) {
    const Profile* chosen = nullptr;
    std::string_view url;
    bool isExtension = t->isExtension && memberString(obj, "url", url);
    for (std::size_t i = 0; i < t->resolved.size() && !chosen; ++i) {
      const Profile* r = t->resolved[i];
      if (r && (!isExtension || r->url == url)) chosen = r;
    }
    if (!chosen && !isExtension)
      for (const Profile* r : t->resolved)
        if (r && !chosen) chosen = r;
    if (chosen && chosen->error.empty() && !chosen->nodes.empty()) {
      ++depth_;
      if (chosen->extension && t->isExtension) checkExtensionContext(*chosen, p, n);
      checkNode(*chosen, chosen->nodes[0], v, {});
      --depth_;
      return;
    }
  }
  if ((t && t->isExtension) || n.isExtension) {
    checkExtensionByUrl(p, n, v, obj);
    return;
  }
  scanExtensions(v, 0);
}

void Walk::collectItems(std::string_view name, bool choice, const std::vector<Member>& members,
                        std::vector<Item>& items, std::size_t& count) {
  auto add = [&](std::string_view key, element v, std::string_view choiceType) {
    array arr;
    if (v.get_array().get(arr) == simdjson::SUCCESS) {
      std::int32_t i = 0;
      for (element e : arr) items.push_back({e, i++, choiceType, key});
      count += arr.size();
    } else {
      items.push_back({v, -1, choiceType, key});
      ++count;
    }
  };
  if (choice) {
    std::string_view base = name;
    for (const Member& m : members) {
      std::string_view key = m.key;
      if (key.size() > base.size() && key.substr(0, base.size()) == base &&
          std::isupper(static_cast<unsigned char>(key[base.size()])))
        add(key, m.value, choiceTypeOf(key.substr(base.size())));
    }
    if (count == 0) {
      // A primitive choice given by its extensions only (_valueString) still counts.
      for (const Member& m : members) {
        std::string_view key = m.key;
        if (key.size() > base.size() + 1 && key[0] == '_' && key.substr(1, base.size()) == base &&
            std::isupper(static_cast<unsigned char>(key[base.size() + 1])))
          ++count;
      }
    }
    return;
  }
  for (const Member& m : members)
    if (validation::sameName(m.key, name)) {
      add(m.key, m.value, {});
      return;
    }
  for (const Member& m : members) {  // a primitive given by its extensions only (_birthDate) still counts
    std::string_view key = m.key;
    if (key.size() == name.size() + 1 && key[0] == '_' && key.substr(1) == name) {
      array arr;
      count += m.value.get_array().get(arr) == simdjson::SUCCESS ? arr.size() : 1;
      break;
    }
  }
}

// The extensions of a primitive's other half (_birthDate, _valueBoolean) among the children of `n`:
// checked against their definitions, their context being the primitive element of this profile
// (or, in an extension's definition, that extension). One pass over the object's members.
void Walk::scanPrimitiveExtensions(const Profile& p, const Node& n, object obj) {
  if (depth_ > kMaxDepth) return;
  std::string_view parentExtension = p.extension ? std::string_view(p.url) : std::string_view();
  for (auto [key, value] : obj) {
    if (key.size() < 2 || key[0] != '_') continue;
    std::string_view name = key.substr(1);
    const Node* found = nullptr;
    std::string typeName;
    for (std::int32_t ci : n.children) {
      const Node& c = p.nodes[static_cast<std::size_t>(ci)];
      if (c.choice) {
        std::string_view base = c.jsonName();
        if (name.size() > base.size() && name.substr(0, base.size()) == base &&
            std::isupper(static_cast<unsigned char>(name[base.size()]))) {
          found = &c;
          typeName = std::string(choiceTypeOf(name.substr(base.size())));
          break;
        }
      } else if (c.name == name) {
        found = &c;
        if (!c.types.empty()) typeName = c.types[0].code;
        break;
      }
    }
    if (found == nullptr) continue;
    const Node& c = *found;
    // The element's path from its data type too (Address.line), for contexts given that way.
    std::string typedPath;
    if (n.types.size() == 1 && !n.types[0].code.empty() && std::isupper(static_cast<unsigned char>(n.types[0].code[0])) &&
        n.types[0].code != "BackboneElement")
      typedPath = n.types[0].code + "." + c.name;
    std::string_view field = name;  // FHIRPath has no "_"; a structured binding cannot be captured by clang 14
    auto visit = [&](element v, std::int32_t index) {
      object o;
      if (v.get_object().get(o) != simdjson::SUCCESS) return;
      std::size_t mark = push(field, index);
      ++depth_;
      scanTyped(o, -1, typeName, c.path, false, parentExtension, 1, typedPath);
      --depth_;
      pop(mark);
    };
    forEachItem(value, visit);
  }
}

void Walk::checkChildren(const Profile& p, const Node& n, object obj) {
  Scratch<Item> scratch;
  std::vector<Item>& items = *scratch;
  if (extensions_) scanPrimitiveExtensions(p, n, obj);
  Scratch<Member> membersScratch;
  std::vector<Member>& members = *membersScratch;
  for (auto field : obj) members.push_back({field.key, field.value});
  // Without an extension in the instance, the children as in the base are left to the base
  // validator (it checks them), and are not visited. Most of a profile's children are absent from an
  // instance: an absent one that needs nothing is known to be from the members' names, before its
  // node is read.
  std::size_t listed = extensions_ ? n.children.size() : n.constrainedChildren.size();
  for (std::size_t li = 0; li < listed; ++li) {
    items.clear();
    std::size_t count = 0;
    std::int32_t ci;
    if (extensions_) {
      ci = n.children[li];
      const Node& c = p.nodes[static_cast<std::size_t>(ci)];
      collectItems(c.jsonName(), c.choice, members, items, count);
    } else {
      const Node::ChildRef& ref = n.constrainedChildren[li];
      ci = ref.node;
      collectItems(ref.name, ref.choice, members, items, count);
      if (count == 0 && ref.min <= 0 && !ref.sliced) continue;
    }
    const Node& c = p.nodes[static_cast<std::size_t>(ci)];
    if (count < static_cast<std::size_t>(std::max(c.min, 0)))
      report("error", "required",
             c.id + ": minimum required = " + std::to_string(c.min) + ", but only found " + std::to_string(count), p);
    if (c.max >= 0 && count > static_cast<std::size_t>(c.max)) {
      std::size_t mark = c.choice && !items.empty()
                             ? push(c.jsonName(), -1, items[0].choiceType)
                             : push(c.name, -1);
      report("error", "structure",
             c.max == 0 ? c.id + ": the profile does not allow this element (max = 0)"
                        : c.id + ": max allowed = " + c.maxText() + ", but found " + std::to_string(count),
             p);
      pop(mark);
    }
    if (items.empty()) {
      if (c.sliced) checkSlicing(p, c, items);  // required slices are missing too
      continue;
    }
    if (!c.constrains && !c.isExtension) {
      // Nothing here beyond the base specification, which the base validator has checked: only the
      // extensions inside are, against their definitions.
      skipUnconstrained(p, c, items);
      continue;
    }
    // The types a choice allows (the base allows more).
    if (c.choice && !c.types.empty()) {
      for (const Item& it : items) {
        if (typeFor(c, it.choiceType)) continue;
        std::string allowed;
        for (const auto& t : c.types) allowed += (allowed.empty() ? "" : ", ") + t.code;
        std::size_t mark = push(c.jsonName(), -1, it.choiceType);
        report("error", "structure",
               "The type " + std::string(it.choiceType) + " is not allowed for " + c.id + " (allowed: " + allowed + ")", p);
        pop(mark);
      }
    }
    if (c.sliced) {
      checkSlicing(p, c, items);
      continue;
    }
    if (!extensions_ && !c.checksValues) continue;  // counted above: nothing else to check in them
    for (const Item& it : items) {
      std::size_t mark = push(c.jsonName(), it.index, it.choiceType);  // no type but on a choice's values
      checkNode(p, c, it.value, it.choiceType);
      pop(mark);
    }
  }
}

void Walk::skipUnconstrained(const Profile& p, const Node& c, const std::vector<Item>& items) {
  int typeIndex = c.tableType;
  std::string_view typeName = c.tableTypeName;
  if (typeIndex < 0) return;  // a primitive: its other half was scanned with its parent
  std::string_view parentExtension = p.extension ? std::string_view(p.url) : std::string_view();
  for (const Item& it : items) {
    object o;
    if (it.value.get_object().get(o) != simdjson::SUCCESS) continue;
    std::size_t mark = push(c.name, it.index);
    ++depth_;
    scanTyped(o, typeIndex, typeName, c.path, false, parentExtension, 1, {}, &it.value);
    --depth_;
    pop(mark);
  }
}

void Walk::checkSlicing(const Profile& p, const Node& c, const std::vector<Item>& items) {
  Scratch<int> matchedScratch;
  Scratch<std::size_t> countsScratch;
  std::vector<int>& matched = *matchedScratch;
  std::vector<std::size_t>& counts = *countsScratch;
  matched.assign(items.size(), -1);
  counts.assign(c.slices.size(), 0);
  const std::size_t nd = c.discriminators.size();
  Scratch<element> valuesScratch;
  Scratch<std::size_t> endsScratch;
  std::vector<element>& values = *valuesScratch;
  std::vector<std::size_t>& ends = *endsScratch;
  // The slices' targets, found when the profile was resolved (findSliceTargets).
  const std::vector<SliceTarget>& targets = c.sliceTargets;
  for (std::size_t i = 0; i < items.size(); ++i) {
    // What the item holds at each discriminator's path, read once for all the slices.
    values.clear();
    ends.clear();
    for (const Discriminator& d : c.discriminators) {
      instanceAt(items[i].value, d.segments, 0, values);
      ends.push_back(values.size());
    }
    for (std::size_t s = 0; s < c.slices.size(); ++s) {
      const Node& slice = p.nodes[static_cast<std::size_t>(c.slices[s])];
      bool matches = true;
      if (nd == 0) {
        matches = quietlyValid(p, slice, items[i].value, items[i].choiceType);
      } else {
        for (std::size_t d = 0; d < nd && matches; ++d) {
          std::size_t from = d == 0 ? 0 : ends[d - 1];
          matches = discriminatorMatches(p, slice, c.discriminators[d], targets.at(s * nd + d),
                                         std::span<const element>(values.data() + from, ends[d] - from), items[i]);
        }
      }
      if (matches) {
        matched[i] = static_cast<int>(s);
        ++counts[s];
        break;
      }
    }
  }
  int last = -1;
  bool unmatchedSeen = false;
  for (std::size_t i = 0; i < items.size(); ++i) {
    const Item& it = items[i];
    std::size_t mark = push(c.jsonName(), it.index, it.choiceType);
    if (matched[i] >= 0) {
      const Node& s = p.nodes[static_cast<std::size_t>(c.slices[static_cast<std::size_t>(matched[i])])];
      if (c.ordered && matched[i] < last)
        report("error", "structure",
               "The element matches slice '" + s.sliceName + "', which comes before the slice of an earlier element: " +
                   c.id + " is sliced in order",
               p);
      if (c.rules == Node::Rules::OpenAtEnd && unmatchedSeen)
        report("error", "structure",
               "The element matches slice '" + s.sliceName + "' after an element that matches no slice: " + c.id +
                   " allows other elements at the end only",
               p);
      last = std::max(last, matched[i]);
      checkNode(p, s, it.value, it.choiceType);
    } else {
      unmatchedSeen = true;
      // A complex extension defines its sub-extensions: a relative url it does not define is wrong.
      std::string_view subUrl;
      object so;
      if (p.extension && c.parent == 0 && c.name == "extension" && !c.slices.empty() &&
          it.value.get_object().get(so) == simdjson::SUCCESS && memberString(so, "url", subUrl) &&
          subUrl.find(':') == std::string_view::npos)
        report("error", "structure",
               "Sub-extension url '" + std::string(subUrl) + "' is not defined by the extension " + p.url, p);
      if (c.rules == Node::Rules::Closed) {
        std::string names;
        for (std::int32_t si : c.slices) names += (names.empty() ? "" : ", ") + p.nodes[static_cast<std::size_t>(si)].sliceName;
        report("error", "structure",
               "The element matches none of the slices of " + c.id + " (" + names + "), and the slicing is closed", p);
      }
      checkNode(p, c, it.value, it.choiceType);
    }
    pop(mark);
  }
  for (std::size_t s = 0; s < c.slices.size(); ++s) {
    const Node& sl = p.nodes[static_cast<std::size_t>(c.slices[s])];
    if (counts[s] < static_cast<std::size_t>(std::max(sl.min, 0)))
      report("error", "required",
             "Slice '" + sl.sliceName + "' of " + c.id + ": minimum required = " + std::to_string(sl.min) +
                 ", but only found " + std::to_string(counts[s]),
             p);
    if (sl.max >= 0 && counts[s] > static_cast<std::size_t>(sl.max))
      report("error", "structure",
             "Slice '" + sl.sliceName + "' of " + c.id + ": max allowed = " + sl.maxText() + ", but found " +
                 std::to_string(counts[s]),
             p);
  }
}

bool Walk::quietlyValid(const Profile& p, const Node& n, element v, std::string_view choiceType) {
  std::vector<Issue> scratch;
  Walk sub(registry_, policy_, scratch, root_, depth_ + 1);
  sub.shareRoot(*this);
  sub.checkNode(p, n, v, choiceType);
  return sub.errors() == 0;
}

void Walk::instanceAt(element v, const std::vector<std::string>& segs, std::size_t k,
                      std::vector<element>& out) const {
  array arr;
  if (v.get_array().get(arr) == simdjson::SUCCESS) {
    for (element e : arr) instanceAt(e, segs, k, out);
    return;
  }
  if (k == segs.size()) {
    out.push_back(v);
    return;
  }
  std::string_view seg = segs[k];
  if (seg == "$this" || isFunction(seg, "ofType")) return instanceAt(v, segs, k + 1, out);
  if (isFunction(seg, "resolve")) {
    // Only contained resources resolve here.
    object ref;
    std::string_view target;
    if (v.get_object().get(ref) != simdjson::SUCCESS || !memberString(ref, "reference", target) ||
        target.empty() || target[0] != '#')
      return;
    element contained;
    array list;
    if (!member(root_, "contained", contained) || contained.get_array().get(list) != simdjson::SUCCESS) return;
    for (element r : list) {
      object ro;
      std::string_view id;
      if (r.get_object().get(ro) == simdjson::SUCCESS && memberString(ro, "id", id) && id == target.substr(1))
        instanceAt(r, segs, k + 1, out);
    }
    return;
  }
  object obj;
  if (v.get_object().get(obj) != simdjson::SUCCESS) return;
  if (isFunction(seg, "extension")) {
    std::string_view url = extensionArgument(seg);
    element exts;
    array list;
    if (!member(obj, "extension", exts) || exts.get_array().get(list) != simdjson::SUCCESS) return;
    for (element e : list) {
      object eo;
      std::string_view u;
      if (e.get_object().get(eo) == simdjson::SUCCESS && memberString(eo, "url", u) && u == url)
        instanceAt(e, segs, k + 1, out);
    }
    return;
  }
  element child;
  if (member(obj, seg, child)) return instanceAt(child, segs, k + 1, out);
  for (auto [key, value] : obj)  // a choice named by its base: value -> valueQuantity
    if (key.size() > seg.size() && key.substr(0, seg.size()) == seg &&
        std::isupper(static_cast<unsigned char>(key[seg.size()])))
      instanceAt(value, segs, k + 1, out);
}

bool Walk::discriminatorMatches(const Profile& p, const Node& s, const Discriminator& d, const SliceTarget& target,
                                std::span<const element> values, const Item& item) {
  const std::vector<std::string>& segs = d.segments;
  if (!target.found) return false;
  const Node* node = target.node >= 0 ? &p.nodes[static_cast<std::size_t>(target.node)] : nullptr;
  const Value* expected = target.expected;
  bool pattern = d.kind == Discriminator::Kind::Pattern || target.pattern;
  switch (d.kind) {
    case Discriminator::Kind::Value:
    case Discriminator::Kind::Pattern: {
      if (!expected && segs.size() == 1 && segs[0] == "url" && !s.types.empty() && !s.types[0].profiles.empty()) {
        // An extension slice names its definition: the url is that definition's.
        std::string_view url = ProfileRegistry::splitCanonical(s.types[0].profiles[0]).first;
        for (element v : values) {
          std::string_view u;
          if (stringOf(v, u) && u == url) return true;
        }
        return false;
      }
      if (expected) {
        for (element v : values)
          if (pattern ? containsPattern(*expected, v) : equalsValue(*expected, v)) return true;
        return false;
      }
      // A required binding to a value set known whole also discriminates.
      if (node && node->strength == Strength::Required && node->expansion && node->expansion->complete) {
        for (element v : values) {
          std::string_view code, system;
          object o;
          if (stringOf(v, code) && node->expansion->containsCode(code)) return true;
          if (v.get_object().get(o) == simdjson::SUCCESS) {
            element codings;
            array list;
            if (member(o, "coding", codings) && codings.get_array().get(list) == simdjson::SUCCESS) {
              for (element c : list) {
                object co;
                if (c.get_object().get(co) == simdjson::SUCCESS && memberString(co, "code", code)) {
                  memberString(co, "system", system);
                  if (node->expansion->contains(system, code)) return true;
                }
              }
            } else if (memberString(o, "code", code)) {
              memberString(o, "system", system);
              if (node->expansion->contains(system, code)) return true;
            }
          }
        }
      }
      return false;
    }
    case Discriminator::Kind::Exists: {
      if (!node) return false;
      if (node->min >= 1) return !values.empty();
      if (node->max == 0) return values.empty();
      return true;
    }
    case Discriminator::Kind::Type: {
      if (!node) return false;
      if (segs.size() == 1 && segs[0] == "$this" && !item.choiceType.empty()) {
        for (const auto& t : node->types)
          if (sameType(t.code, item.choiceType)) return true;
        return false;
      }
      for (element v : values) {
        object o;
        std::string_view rt;
        if (v.get_object().get(o) == simdjson::SUCCESS && memberString(o, "resourceType", rt)) {
          for (const auto& t : node->types) {
            if (t.code == rt) return true;
            for (const Profile* r : t.resolved)
              if (r && r->type == rt) return true;
          }
          return false;
        }
      }
      return !values.empty() && node->types.size() == 1;
    }
    case Discriminator::Kind::Profile: {
      if (!node) return false;
      for (element v : values) {
        object o;
        if (v.get_object().get(o) != simdjson::SUCCESS) continue;
        std::string_view url;
        bool resource = o["resourceType"].error() == simdjson::SUCCESS;
        if (!resource && memberString(o, "url", url)) {
          for (const auto& t : node->types)
            for (const auto& prof : t.profiles)
              if (ProfileRegistry::splitCanonical(prof).first == url) return true;
          continue;
        }
        for (const auto& t : node->types)
          for (const Profile* r : t.resolved)
            if (r && r->error.empty() && quietlyValid(*r, r->nodes[0], v, {})) return true;
      }
      return false;
    }
  }
  return false;
}

void Walk::checkBinding(const Profile& p, const Node& n, element v, const TypeRef* t) {
  bool required = n.strength == Strength::Required;
  std::string_view typeCode = t ? std::string_view(t->code) : std::string_view();
  // The base validator already checks codes against the base specification's required value sets.
  std::string_view s;
  bool isString = stringOf(v, s);
  if (n.baseValueSet && required && isString) return;
  const Expansion* e = n.expansion;
  if (!e || !e->complete) {
    if (reportedValueSets_.insert(n.valueSet).second)
      report("information", "informational",
             "The value set " + n.valueSet +
                 (e ? " cannot be expanded here (" + e->incompleteReason + ")" : std::string(" is not known here")) +
                 ": codes bound to it are not checked",
             p);
    return;
  }
  std::string found;
  bool ok = false, any = false;
  auto coding = [&](object co) {
    std::string_view system, code;
    if (!memberString(co, "code", code)) return;
    memberString(co, "system", system);
    any = true;
    if (found.empty()) found = (system.empty() ? "" : std::string(system) + "#") + std::string(code);
    if (!system.empty() ? e->contains(system, code) : e->containsCode(code)) ok = true;
  };
  object obj;
  if (isString) {
    any = true;
    found = std::string(s);
    ok = e->containsCode(s);
  } else if (v.get_object().get(obj) == simdjson::SUCCESS) {
    element codings;
    array list;
    if (member(obj, "coding", codings) && codings.get_array().get(list) == simdjson::SUCCESS) {
      for (element c : list) {
        object co;
        if (c.get_object().get(co) == simdjson::SUCCESS) coding(co);
      }
    } else {
      coding(obj);
    }
  } else {
    return;
  }
  if (!any) {
    if (required && typeCode == "CodeableConcept")
      report("error", "code-invalid", "No code provided, and a code from the value set " + n.valueSet + " is required", p);
    return;
  }
  if (ok) return;
  report(required ? "error" : "warning", "code-invalid",
         "The code " + found + " is not in the value set " + n.valueSet + " (" + (required ? "required" : "extensible") +
             " binding of " + n.id + ")",
         p);
}

void Walk::checkReference(const Profile& p, const TypeRef& t, object ref) {
  std::string_view target, type;
  if (!memberString(ref, "type", type)) {
    if (!memberString(ref, "reference", target) || target.empty()) return;
    if (target[0] == '#') {
      element contained;
      array list;
      if (!member(root_, "contained", contained) || contained.get_array().get(list) != simdjson::SUCCESS) return;
      for (element r : list) {
        object ro;
        std::string_view id, rt;
        if (r.get_object().get(ro) == simdjson::SUCCESS && memberString(ro, "id", id) && id == target.substr(1) &&
            memberString(ro, "resourceType", rt))
          type = rt;
      }
    } else if (target.substr(0, 4) != "urn:") {
      type = referenceType(target);
    }
  }
  if (type.empty()) return;
  for (const auto& allowed : t.targetTypes)
    if (allowed == type) return;
  std::string list;
  for (const auto& allowed : t.targetTypes) list += (list.empty() ? "" : ", ") + allowed;
  std::size_t mark = push("reference", -1);
  report("error", "structure",
         "The reference points to a " + std::string(type) + ", but the profile allows only " + list, p);
  pop(mark);
}

void Walk::checkExtensionContext(const Profile& ext, const Profile& p, const Node& n) {
  if (ext.contexts.empty() || n.parent < 0) return;
  const Node& container = p.nodes[static_cast<std::size_t>(n.parent)];
  std::string_view containerType;
  if (n.parent == 0) containerType = p.type;
  else if (container.types.size() == 1) containerType = container.types[0].code;
  std::string_view parentExtension = p.extension && n.parent == 0 ? std::string_view(p.url) : std::string_view();
  checkContext(ext, container.path, containerType, n.parent == 0 && p.resource, parentExtension, true, p);
}

void Walk::checkContext(const Profile& ext, std::string_view containerPath, std::string_view containerType,
                        bool resourceRoot, std::string_view parentExtension, bool pathPrefixEnough,
                        const Profile& reportAs, std::string_view typedPath, const element* container) {
  if (!ext.contexts.empty()) {
    std::string list;
    if (!contextAllows(ext, containerPath, containerType, resourceRoot, parentExtension, pathPrefixEnough, typedPath,
                       container, list)) {
      report("error", "structure",
             "The extension " + ext.url + " is not allowed on " + std::string(containerPath) + " (its contexts: " + list +
                 ")",
             reportAs);
      return;
    }
  }
  if (!container || !hasRoot_) return;
  // contextInvariant: FHIRPath on the element the extension is on, every one must hold.
  for (const auto& [text, compiled] : ext.contextInvariants) {
    bool holds = true;
    std::string error;
    if (!compiled || !compiled->holds(*container, rootElement_, holds, error, containerType)) continue;
    if (!holds)
      report("error", "structure",
             "The extension " + ext.url + " is not allowed on " + std::string(containerPath) +
                 ": its context invariant '" + text + "' does not hold there",
             reportAs);
  }
}

namespace {

// Whether two values of one parsed document are the same object: their first members' names are at
// the same place in the document (an empty object has no identity here).
bool sameObject(element a, element b) {
  object oa, ob;
  if (a.get_object().get(oa) != simdjson::SUCCESS || b.get_object().get(ob) != simdjson::SUCCESS) return false;
  auto ia = oa.begin(), ib = ob.begin();
  if (ia == oa.end() || ib == ob.end()) return false;
  return ia.key().data() == ib.key().data();
}

}  // namespace

bool Walk::contextAllows(const Profile& ext, std::string_view containerPath, std::string_view containerType,
                         bool resourceRoot, std::string_view parentExtension, bool pathPrefixEnough,
                         std::string_view typedPath, const element* container, std::string& list) {
  for (std::size_t ci = 0; ci < ext.contexts.size(); ++ci) {
    const std::string& type = ext.contexts[ci].first;
    std::string_view expression = ext.contexts[ci].second;
    list += (list.empty() ? "" : ", ");
    list += expression;
    if (type == "extension") {
      if (!parentExtension.empty() && ProfileRegistry::splitCanonical(expression).first == parentExtension) return true;
      continue;
    }
    if (type == "fhirpath") {
      const auto& compiled = ci < ext.contextExpressions.size() ? ext.contextExpressions[ci] : nullptr;
      if (compiled && container && hasRoot_) {
        // The extension may be on the elements the expression selects from the resource.
        fhirpath::Collection selected;
        std::string error;
        if (compiled->evaluate(rootElement_, rootElement_, selected, error)) {
          for (const auto& v : selected)
            if (v.isNode && sameObject(v.node, *container)) return true;
          continue;
        }
      }
      // Not evaluated (no element at hand): an expression that is a path is taken as an element
      // context; one with a condition holds where the path before its first function holds.
      auto open = expression.find('(');
      if (open != std::string_view::npos) {
        auto cut = expression.rfind('.', open);
        if (cut == std::string_view::npos) return true;
        if (containerPath == expression.substr(0, cut)) return true;
        continue;
      }
    }
    if (expression == "Element" || expression == "Base" || expression == containerPath ||
        (!typedPath.empty() && expression == typedPath) ||
        (!containerType.empty() && expression == containerType) ||
        (resourceRoot && (expression == "Resource" || expression == "DomainResource" ||
                          expression == "CanonicalResource" || expression == "MetadataResource")))
      return true;
    // DomainResource.text: the element of any resource.
    for (std::string_view abstract : {"Resource.", "DomainResource."}) {
      auto dot = containerPath.find('.');
      if (expression.substr(0, abstract.size()) == abstract && dot != std::string_view::npos &&
          isResourceType(containerPath.substr(0, dot)) &&
          expression.substr(abstract.size()) == containerPath.substr(dot + 1))
        return true;
    }
    // Where the container's type is not known, a context naming its path's resource is enough.
    if (pathPrefixEnough && (containerType.empty() || containerType == "BackboneElement")) {
      if (containerPath.substr(0, expression.size()) == expression) return true;
    }
  }
  return false;
}

void Walk::scanResourceExtensions(object resource, std::string_view type, int depth) {
  if (!extensions_) return;
  const auto& tables = validation::ValidationTables::embedded();
  scanTyped(resource, tables.resourceType(type), type, std::string(type), true, {}, depth, {},
            depth == 0 && hasRoot_ ? &rootElement_ : nullptr);
}

// `typedPath` is the container's path from its data type (HumanName.family), when it is inside one.
void Walk::scanTyped(object obj, int typeIndex, std::string_view typeName, const std::string& defPath,
                     bool resourceRoot, std::string_view parentExtension, int depth, const std::string& typedPath,
                     const element* self) {
  if (depth > 32 || depth_ > kMaxDepth) return;
  const auto& tables = validation::ValidationTables::embedded();
  const validation::TypeDef* def = typeIndex >= 0 ? &tables.type(typeIndex) : nullptr;
  for (auto [key, value] : obj) {
    if (key == "extension" || key == "modifierExtension") {
      array arr;
      if (value.get_array().get(arr) != simdjson::SUCCESS) continue;
      std::int32_t i = 0;
      for (element e : arr) {
        std::size_t mark = push(key, i++);
        object eo;
        std::string_view url;
        if (e.get_object().get(eo) == simdjson::SUCCESS && memberString(eo, "url", url)) {
          const Profile* ext = registry_.find(url);
          if (ext && ext->error.empty() && ext->extension && !ext->nodes.empty()) {
            ++depth_;
            checkContext(*ext, defPath, typeName, resourceRoot, parentExtension, false, *ext, typedPath, self);
            checkNode(*ext, ext->nodes[0], e, {});
            --depth_;
          } else {
            unknownExtension(url);
            scanTyped(eo, tables.extensionType, "Extension", defPath + "." + std::string(key), false, url, depth + 1, {}, &e);
          }
        }
        pop(mark);
      }
      continue;
    }
    bool underscore = !key.empty() && key[0] == '_';
    std::string_view name = underscore ? key.substr(1) : key;
    int ei = def ? def->find(name) : -1;
    if (ei < 0) continue;
    const validation::ElementDef& ed = def->elements[static_cast<std::size_t>(ei)];
    if (!underscore && !ed.isResource && ed.type < 0) continue;  // a primitive value: no extension in it
    std::string childName = ed.choiceBase.empty() ? ed.name : ed.choiceBase + "[x]";
    std::string childPath = defPath + "." + childName;
    std::string childTypedPath =
        def && def->kind == validation::TypeDef::Kind::Complex ? std::string(def->name) + "." + childName : std::string();
    std::string_view field = name;  // FHIRPath has no "_"; a structured binding cannot be captured by clang 14
    auto visit = [&](element v, std::int32_t index) {
      object o;
      if (v.get_object().get(o) != simdjson::SUCCESS) return;
      std::size_t mark = push(field, index);
      if (underscore) {
        scanTyped(o, -1, ed.typeName, childPath, false, {}, depth + 1, childTypedPath, &v);
      } else if (ed.isResource) {
        std::string_view rt;
        if (memberString(o, "resourceType", rt))
          scanTyped(o, tables.resourceType(rt), rt, std::string(rt), true, {}, depth + 1, {}, &v);
      } else if (ed.type >= 0) {
        std::string_view tn = ed.typeName.find('.') != std::string::npos ? std::string_view("BackboneElement")
                                                                        : std::string_view(ed.typeName);
        scanTyped(o, ed.type, tn, childPath, false, {}, depth + 1, childTypedPath, &v);
      }
      pop(mark);
    };
    forEachItem(value, visit);
  }
}

void Walk::checkExtensionByUrl(const Profile& p, const Node& n, element v, object ext) {
  std::string_view url;
  if (!memberString(ext, "url", url)) return;
  const Profile* def = registry_.find(url);
  if (!def || !def->error.empty() || !def->extension || def->nodes.empty()) {
    unknownExtension(url);
    scanExtensions(v, 0);  // not known here: its own extensions may be
    return;
  }
  ++depth_;
  checkExtensionContext(*def, p, n);
  checkNode(*def, def->nodes[0], v, {});
  --depth_;
}

void Walk::scanExtensions(element v, int depth) {
  if (!extensions_ || depth > 32) return;  // none in the document
  object obj;
  if (v.get_object().get(obj) != simdjson::SUCCESS) return;
  for (auto [key, value] : obj) {
    bool isExt = key == "extension" || key == "modifierExtension";
    array arr;
    if (value.get_array().get(arr) == simdjson::SUCCESS) {
      std::int32_t i = 0;
      for (element e : arr) {
        std::size_t mark = push(key, i++);
        object eo;
        std::string_view url;
        const Profile* def = nullptr;
        if (isExt && e.get_object().get(eo) == simdjson::SUCCESS && memberString(eo, "url", url))
          def = registry_.find(url);
        if (def && def->error.empty() && def->extension && !def->nodes.empty()) {
          ++depth_;
          checkNode(*def, def->nodes[0], e, {});
          --depth_;
        } else if (e.type() == element_type::OBJECT) {
          if (isExt && !url.empty()) unknownExtension(url);
          scanExtensions(e, depth + 1);
        }
        pop(mark);
      }
    } else if (value.type() == element_type::OBJECT) {
      std::size_t mark = push(key, -1);
      scanExtensions(value, depth + 1);
      pop(mark);
    }
  }
}

}  // namespace

bool ProfileValidator::mayContainExtensions(std::string_view json) {
  return json.find("xtension\"") != std::string_view::npos || json.find("\\u") != std::string_view::npos;
}

ProfileValidator::Outcome ProfileValidator::validate(std::string_view json, std::string_view canonical,
                                                     std::vector<Issue>& issues) const {
  simdjson::dom::element root;
  auto error = validation::parseDocument(json, root);
  if (error) {
    issues.push_back({"fatal", "structure", std::string("Error parsing JSON: ") + simdjson::error_message(error), ""});
    return Outcome::Checked;
  }
  return validate(root, canonical, {}, issues, mayContainExtensions(json));
}

ProfileValidator::Outcome ProfileValidator::validate(element resource, std::string_view canonical,
                                                     std::string_view location, std::vector<Issue>& issues,
                                                     bool extensions) const {
  object obj;
  std::string_view type;
  if (resource.get_object().get(obj) != simdjson::SUCCESS || !memberString(obj, "resourceType", type)) {
    issues.push_back({"error", "structure", "A resource (an object with a resourceType) is required", std::string(location)});
    return Outcome::Checked;
  }
  std::string where = location.empty() ? std::string(type) : std::string(location);
  const Profile* p = registry_.find(canonical);
  if (!p) {
    std::string_view url = ProfileRegistry::splitCanonical(canonical).first;
    if (url.substr(0, kCoreSd.size()) == kCoreSd && isResourceType(url.substr(kCoreSd.size()))) {
      if (url.substr(kCoreSd.size()) != type) {
        issues.push_back({"error", "invalid",
                          "The resource is a " + std::string(type) + ", but the profile " + std::string(canonical) +
                              " is the definition of " + std::string(url.substr(kCoreSd.size())),
                          where});
        return Outcome::Checked;
      }
      // The base validator checks the rest; the extensions with known definitions are checked here.
      Walk walk(registry_, policy_, issues, obj);
      walk.path = where;
      walk.setRoot(resource);
      if (!extensions) walk.assumeNoExtensions();
      walk.scanResourceExtensions(obj, type);
      return Outcome::Checked;
    }
    issues.push_back({"error", "not-found",
                      "Profile '" + std::string(canonical) + "' is not known: no StructureDefinition with this url" +
                          (ProfileRegistry::splitCanonical(canonical).second.empty() ? "" : " and version") +
                          " is loaded",
                      where});
    return Outcome::Unknown;
  }
  if (!p->error.empty()) {
    issues.push_back({"error", "not-supported", p->error, where});
    return Outcome::Unusable;
  }
  if (!p->resource || p->type != type) {
    issues.push_back({"error", "invalid",
                      "The resource is a " + std::string(type) + ", but the profile " + std::string(canonical) +
                          " constrains " + p->type,
                      where});
    return Outcome::Checked;
  }
  Walk walk(registry_, policy_, issues, obj);
  walk.path = where;
  walk.setRoot(resource);
  if (!extensions) walk.assumeNoExtensions();
  walk.checkResource(*p, resource);
  return Outcome::Checked;
}

// Each slice walked along each discriminator's path (a fixed or pattern value met on the way holds
// the rest).
void findSliceTargets(Profile& p) {
  for (Node& n : p.nodes) {
    n.sliceTargets.clear();
    for (std::int32_t si : n.slices)
      for (const Discriminator& d : n.discriminators) {
        Target t;
        SliceTarget st;
        st.found = definitionAt(p, &p.nodes[static_cast<std::size_t>(si)], d.segments, 0, t);
        st.node = t.node ? static_cast<std::int32_t>(t.node - p.nodes.data()) : -1;
        st.expected = t.expected;
        st.pattern = t.pattern;
        n.sliceTargets.push_back(st);
      }
  }
}

ValidationResult ProfileValidator::validateWithBase(std::string_view json, std::string_view canonical,
                                                    std::string_view expectedType) const {
  json = validation::withoutBom(json);
  simdjson::dom::element root;
  if (validation::parseDocument(json, root) != simdjson::SUCCESS)
    return Validator::instance().validate(json, expectedType, &policy_);  // says where the fault is
  ValidationResult result;
  try {
    bool extensionSeen = true;
    Validator::instance().validateParsed(root, expectedType, &policy_, result.issues, &extensionSeen);
    // The base walk met every member when it reported no error: whether it met an extension
    // answers without a search of the text.
    bool extensions = extensionSeen || (result.hasErrors() && mayContainExtensions(json));
    if (canonical.empty()) validateDeclared(root, {}, result.issues, "warning", extensions);
    else validate(root, canonical, {}, result.issues, extensions);
  } catch (const std::bad_alloc&) {
    throw;
  } catch (const std::exception& ex) {
    result.issues.push_back({"fatal", "exception", std::string("Validation failed: ") + ex.what(), ""});
  }
  return result;
}

int ProfileValidator::validateDeclared(std::string_view json, std::vector<Issue>& issues,
                                       std::string_view unknownSeverity) const {
  simdjson::dom::element root;
  auto error = validation::parseDocument(json, root);
  if (error) {
    issues.push_back({"fatal", "structure", std::string("Error parsing JSON: ") + simdjson::error_message(error), ""});
    return 0;
  }
  return validateDeclared(root, {}, issues, unknownSeverity, mayContainExtensions(json));
}

int ProfileValidator::validateDeclared(element resource, std::string_view location, std::vector<Issue>& issues,
                                       std::string_view unknownSeverity, bool extensions) const {
  object obj, meta;
  element m, profiles;
  array list;
  std::string_view type;
  if (resource.get_object().get(obj) != simdjson::SUCCESS || !memberString(obj, "resourceType", type)) return 0;
  std::string where = location.empty() ? std::string(type) : std::string(location);
  // Without a profile checked, the resource is still checked against the extension definitions known.
  auto baseOnly = [&] {
    Walk walk(registry_, policy_, issues, obj);
    walk.path = where;
    walk.setRoot(resource);
    if (!extensions) walk.assumeNoExtensions();
    walk.scanResourceExtensions(obj, type);
  };
  if (!member(obj, "meta", m) || m.get_object().get(meta) != simdjson::SUCCESS || !member(meta, "profile", profiles) ||
      profiles.get_array().get(list) != simdjson::SUCCESS) {
    baseOnly();
    return 0;
  }
  int checked = 0;
  std::int32_t i = 0;
  for (element e : list) {
    std::string_view canonical;
    if (!stringOf(e, canonical)) {
      ++i;
      continue;
    }
    std::vector<Issue> found;
    Outcome o = validate(resource, canonical, location, found, extensions);
    if (o == Outcome::Unknown) {
      issues.push_back({std::string(unknownSeverity), "not-found",
                        "Profile '" + std::string(canonical) + "' of meta.profile is not known here: not checked",
                        where + ".meta.profile[" + std::to_string(i) + "]"});
    } else {
      checked += o == Outcome::Checked;
      issues.insert(issues.end(), std::make_move_iterator(found.begin()), std::make_move_iterator(found.end()));
    }
    ++i;
  }
  if (checked == 0) baseOnly();
  return checked;
}

}  // namespace passerelle::fhir::profiles
