// Evaluation of a compiled FHIRPath expression over simdjson DOM nodes. Navigation follows the
// validator's type tables: a name resolves to its element in the item's type, a choice element by
// its base name (value finds valueQuantity), a primitive carries its "_name" sibling for id and
// extension. Collections are vectors borrowed from a per-thread pool; a function's argument is
// evaluated per item only where the specification says so (where, select, all, exists, repeat,
// aggregate, sort's keys).
#include <algorithm>
#include <chrono>
#include <cmath>
#include <ctime>
#include <regex>
#include <unordered_set>

#include "mappings/common/base64.h"
#include "mappings/fhir/fhirpath/fhirpath_internal.h"
#include "mappings/fhir/validation/validation_tables.h"

namespace passerelle::fhir::fhirpath {

namespace {

using simdjson::dom::element;
using simdjson::dom::element_type;
using simdjson::dom::object;
using validation::ElementDef;
using validation::Prim;
using validation::TypeDef;
using validation::ValidationTables;

const ValidationTables& tables() { return ValidationTables::embeddedTypes(); }

// Every element name and choice base of every type: a name outside this set is a mistake in the
// expression (an error), a name merely absent from one item's type is not (descendants() mixes types).
const std::unordered_set<std::string_view>& knownNames() {
  static const std::unordered_set<std::string_view> names = [] {
    std::unordered_set<std::string_view> s;
    for (const TypeDef& t : tables().types()) {
      for (const ElementDef& e : t.elements) s.insert(e.name);
      for (const std::string& b : t.choiceBases) s.insert(b);
    }
    return s;
  }();
  return names;
}

Kind kindOf(Prim p) {
  switch (p) {
    case Prim::Boolean: return Kind::Boolean;
    case Prim::Integer:
    case Prim::PositiveInt:
    case Prim::UnsignedInt: return Kind::Integer;
    case Prim::Decimal: return Kind::Decimal;
    case Prim::Date: return Kind::Date;
    case Prim::DateTime:
    case Prim::Instant: return Kind::DateTime;
    case Prim::Time: return Kind::Time;
    case Prim::None: return Kind::Object;
    default: return Kind::String;
  }
}

// Reads a JSON scalar into `v`; its kind changes when the JSON is not of the expected one.
void readScalar(element j, Value& v) {
  switch (j.type()) {
    case element_type::BOOL:
      v.boolean = j.get_bool().value_unsafe();
      if (v.kind != Kind::Boolean) v.kind = Kind::Boolean;
      break;
    case element_type::INT64:
    case element_type::UINT64:
      if (v.kind == Kind::Decimal) {
        v.decimal = static_cast<long double>(j.get_double().value_unsafe());
        v.scale = 0;
      } else {
        v.kind = Kind::Integer;
        v.integer = j.type() == element_type::INT64 ? j.get_int64().value_unsafe()
                                                    : static_cast<std::int64_t>(j.get_uint64().value_unsafe());
      }
      break;
    case element_type::DOUBLE: {
      double d = j.get_double().value_unsafe();
      v.kind = Kind::Decimal;
      v.decimal = d;
      v.scale = -1;  // computed when needed: most comparisons do not
      break;
    }
    case element_type::STRING:
      v.view = j.get_string().value_unsafe();
      if (v.kind == Kind::Object || v.kind == Kind::Empty || v.kind == Kind::Boolean || v.kind == Kind::Integer ||
          v.kind == Kind::Decimal)
        v.kind = Kind::String;
      break;
    default: break;
  }
}

// A node for a JSON value of element `def` (null: unknown, typed from the JSON itself).
Value makeNode(element json, bool hasJson, element ext, bool hasExt, const ElementDef* def) {
  Value v;
  v.isNode = true;
  v.node = json;
  v.hasJson = hasJson;
  v.ext = ext;
  v.hasExt = hasExt;
  const ValidationTables& t = tables();
  if (def && def->prim != Prim::None) {
    v.kind = kindOf(def->prim);
    v.fhirType = def->typeName;
    if (hasJson) readScalar(json, v);
    return v;
  }
  if (hasJson && json.type() == element_type::OBJECT) {
    v.kind = Kind::Object;
    std::string_view rt;
    if ((!def || def->isResource) &&
        json.get_object().value_unsafe().at_key("resourceType").get_string().get(rt) == simdjson::SUCCESS) {
      v.typeIndex = t.resourceType(rt);
      if (v.typeIndex >= 0) v.fhirType = t.type(v.typeIndex).name;
    } else if (def) {
      v.typeIndex = def->type;
      v.fhirType = def->typeName;
      if (v.typeIndex >= 0 && t.type(v.typeIndex).kind == TypeDef::Kind::Backbone) v.fhirType = "BackboneElement";
    }
    return v;
  }
  if (hasJson) {
    v.kind = Kind::Object;
    readScalar(json, v);
    if (v.kind == Kind::Object) v.kind = Kind::Empty;
  } else {
    v.kind = Kind::String;  // extensions only: its type is unknown here
  }
  return v;
}

Value rootValue(element e, std::string_view typeName);

struct Ctx {
  element resource;
  const Value* thisItems = nullptr;  // the items unscoped names apply to
  std::size_t thisCount = 0;
  const Value* index = nullptr;       // $index
  const Collection* total = nullptr;  // $total
  const Value* context = nullptr;     // %context
  bool rootIsResource = false;        // %resource is the focus itself
  std::string* error = nullptr;
};

bool fail(const Ctx& c, std::string message) {
  if (c.error->empty()) *c.error = std::move(message);
  return false;
}

// Appends the node(s) of `name` in object `o` (def: its element; null when unknown).
void appendMember(object o, std::string_view name, const ElementDef* def, Collection& out) {
  element json, ext;
  bool hasJson = o.at_key(name).get(json) == simdjson::SUCCESS;
  bool hasExt = false;
  if (!def || def->prim != Prim::None) {
    char buf[128];
    if (name.size() + 1 < sizeof buf) {
      buf[0] = '_';
      std::copy(name.begin(), name.end(), buf + 1);
      hasExt = o.at_key(std::string_view(buf, name.size() + 1)).get(ext) == simdjson::SUCCESS;
    }
  }
  if (!hasJson && !hasExt) return;
  bool jsonArray = hasJson && json.type() == element_type::ARRAY;
  bool extArray = hasExt && ext.type() == element_type::ARRAY;
  if (!jsonArray && !extArray) {
    if (hasJson && json.is_null()) hasJson = false;
    if (hasExt && ext.is_null()) hasExt = false;
    if (hasJson || hasExt) out.push_back(makeNode(json, hasJson, ext, hasExt, def));
    return;
  }
  simdjson::dom::array ja, ea;
  std::size_t n = 0;
  if (jsonArray) {
    ja = json.get_array().value_unsafe();
    n = ja.size();
  }
  if (extArray) {
    ea = ext.get_array().value_unsafe();
    n = std::max(n, ea.size());
  }
  for (std::size_t i = 0; i < n; ++i) {
    element j, e;
    bool hj = jsonArray && ja.at(i).get(j) == simdjson::SUCCESS && !j.is_null();
    bool he = extArray && ea.at(i).get(e) == simdjson::SUCCESS && !e.is_null();
    if (hj || he) out.push_back(makeNode(j, hj, e, he, def));
  }
}

bool upperAt(std::string_view s, std::size_t i) { return i < s.size() && s[i] >= 'A' && s[i] <= 'Z'; }

// The children called `name` of one item.
// The member cache of a Node: type index (high 32 bits), how the name resolves (bits 16-17: 1 an
// element, 2 a choice) and the element (low 16 bits; for a choice the variant last found).
constexpr std::uint64_t kCacheElement = 1, kCacheChoice = 2, kNoElement = 0xFFFF;

std::uint64_t cacheEntry(int typeIndex, std::uint64_t how, std::uint64_t element) {
  return (static_cast<std::uint64_t>(static_cast<std::uint32_t>(typeIndex)) << 32) | (how << 16) | element;
}

bool navigate(const Value& item, const std::string& name, Collection& out, const Ctx& c,
              std::atomic<std::uint64_t>* cache = nullptr) {
  if (!item.isNode) {
    if (item.fhirType == "ClassInfo" && (name == "name" || name == "namespace")) {
      std::size_t bar = item.text.find('|');
      out.push_back(makeString(name == "name" ? item.text.substr(bar + 1) : item.text.substr(0, bar)));
    }
    return true;
  }
  const ValidationTables& t = tables();
  object o;
  int typeIndex = item.typeIndex;
  if (item.kind == Kind::Object) {
    if (item.node.get_object().get(o) != simdjson::SUCCESS) return true;
    // A type name as the first step of a path ("Patient.name") selects the items of that type.
    if (upperAt(name, 0) && !item.fhirType.empty() &&
        (item.fhirType == name || (item.typeIndex >= 0 && t.type(item.typeIndex).kind == TypeDef::Kind::Resource &&
                                   (name == "Resource" || name == "DomainResource")))) {
      out.push_back(item);
      return true;
    }
  } else {
    if (!item.hasExt || item.ext.get_object().get(o) != simdjson::SUCCESS) {
      if (name != "id" && name != "extension" && !knownNames().count(name) && !upperAt(name, 0))
        return fail(c, "unknown element '" + name + "'");
      return true;
    }
    typeIndex = t.elementType;
  }
  if (typeIndex < 0) {
    // Not typed by the tables: the JSON decides; a choice element is found by its prefix.
    std::size_t before = out.size();
    appendMember(o, name, nullptr, out);
    if (out.size() == before) {
      for (auto field : o) {
        std::string_view key = field.key;
        if (key.size() > name.size() && key.substr(0, name.size()) == name && upperAt(key, name.size())) {
          std::string_view typeName = key.substr(name.size());
          int ti = t.typeIndex(typeName);
          if (ti >= 0) {
            ElementDef def;
            def.typeName = std::string(typeName);
            def.type = ti;
            std::size_t from = out.size();
            appendMember(o, key, &def, out);
            for (std::size_t k = from; k < out.size(); ++k) out[k].fhirType = t.type(ti).name;
          } else {
            appendMember(o, key, nullptr, out);
          }
        }
      }
    }
    return true;
  }
  const TypeDef& td = t.type(typeIndex);
  if (cache) {
    std::uint64_t entry = cache->load(std::memory_order_relaxed);
    if (static_cast<std::int32_t>(entry >> 32) == typeIndex) {
      std::uint64_t how = (entry >> 16) & 3, index = entry & 0xFFFF;
      if (how == kCacheElement) {
        appendMember(o, name, &td.elements[index], out);
        return true;
      }
      // A choice: the variant seen last is the likely one (a valid instance has one variant).
      if (how == kCacheChoice && index != kNoElement) {
        std::size_t before = out.size();
        appendMember(o, td.elements[index].name, &td.elements[index], out);
        if (out.size() > before) return true;
      }
    }
  }
  int e = td.find(name);
  if (e >= 0) {
    appendMember(o, name, &td.elements[static_cast<std::size_t>(e)], out);
    if (cache)
      cache->store(cacheEntry(typeIndex, kCacheElement, static_cast<std::uint64_t>(e)), std::memory_order_relaxed);
    return true;
  }
  if (std::find(td.choiceBases.begin(), td.choiceBases.end(), name) != td.choiceBases.end()) {
    std::uint64_t found = kNoElement;
    for (auto field : o) {
      std::string_view key = field.key;
      if (key.size() > name.size() && key.substr(0, name.size()) == name && upperAt(key, name.size())) {
        int k = td.find(key);
        if (k >= 0 && td.elements[static_cast<std::size_t>(k)].choiceBase == name) {
          appendMember(o, key, &td.elements[static_cast<std::size_t>(k)], out);
          found = static_cast<std::uint64_t>(k);
        }
      }
    }
    if (cache) cache->store(cacheEntry(typeIndex, kCacheChoice, found), std::memory_order_relaxed);
    return true;
  }
  if (!knownNames().count(name) && !upperAt(name, 0)) return fail(c, "unknown element '" + name + "' on " + td.name);
  return true;
}

// Whether a type name is one this engine knows (FHIR or System).
bool systemType(std::string_view n, Kind& k) {
  static const std::pair<std::string_view, Kind> names[] = {{"Boolean", Kind::Boolean}, {"Integer", Kind::Integer},
                                                            {"Decimal", Kind::Decimal}, {"String", Kind::String},
                                                            {"Date", Kind::Date},       {"DateTime", Kind::DateTime},
                                                            {"Time", Kind::Time},       {"Quantity", Kind::Quantity}};
  for (const auto& p : names)
    if (p.first == n) {
      k = p.second;
      return true;
    }
  return false;
}

bool fhirPrimitive(std::string_view n) {
  static constexpr std::string_view prims[] = {
      "base64Binary", "boolean", "canonical",   "code",   "date", "dateTime",    "decimal", "id",  "instant", "integer",
      "markdown",     "oid",     "positiveInt", "string", "time", "unsignedInt", "uri",     "url", "uuid",    "xhtml"};
  for (std::string_view p : prims)
    if (p == n) return true;
  return false;
}

bool fhirTypeKnown(std::string_view n) {
  return fhirPrimitive(n) || tables().typeIndex(n) >= 0 || tables().resourceType(n) >= 0 || n == "Resource" ||
         n == "DomainResource" || n == "Element" || n == "BackboneElement" || n == "SimpleQuantity" ||
         n == "MoneyQuantity";
}

// FHIR type `have` is `want` or derives from it (the primitive specialisations and the abstract bases).
bool fhirDerives(std::string_view have, std::string_view want, const Value& v) {
  if (have == want) return true;
  if (want == "string") return have == "code" || have == "id" || have == "markdown";
  if (want == "uri") return have == "url" || have == "canonical" || have == "oid" || have == "uuid";
  if (want == "integer") return have == "positiveInt" || have == "unsignedInt";
  if (want == "dateTime") return false;
  if (want == "Quantity")
    return have == "Age" || have == "Duration" || have == "Distance" || have == "Count" || have == "SimpleQuantity" ||
           have == "MoneyQuantity";
  if (want == "Resource" || want == "DomainResource")
    return v.typeIndex >= 0 && tables().type(v.typeIndex).kind == TypeDef::Kind::Resource &&
           (want == "Resource" || (have != "Bundle" && have != "Parameters" && have != "Binary"));
  if (want == "Element")
    return v.isNode && (v.typeIndex < 0 || tables().type(v.typeIndex).kind != TypeDef::Kind::Resource);
  return false;
}

// `v is type` (exact: the type itself, for as() and ofType(); else its specialisations too); false in
// `ok` when the type is unknown.
bool isType(const Value& v, const TypeSpec& type, bool& ok, bool exact = false) {
  ok = true;
  if (type.ns == "System") return type.system && !v.isNode && v.kind == type.systemKind;
  if (!type.ns.empty() && type.ns != "FHIR") return ok = false;
  if (type.ns == "FHIR" && !type.fhir) return ok = false;
  if (!type.system && !type.fhir) return ok = false;
  if (v.isNode) {
    if (!type.fhir) return false;
    if (exact && fhirPrimitive(type.name)) return v.fhirType == type.name;
    return fhirDerives(v.fhirType, type.name, v);
  }
  return type.ns.empty() && type.system && v.kind == type.systemKind;
}

// Marks the names that start a path on the focus (not those inside function arguments, which are
// evaluated on other items).
void markPathRoots(Node& n) {
  if (n.op == Op::Member && !n.target) n.pathRoot = true;
  if (n.target) markPathRoots(*n.target);
  if (n.op != Op::Function)
    for (auto& a : n.args) markPathRoots(*a);
}

std::regex makeRegex(const std::string& pattern);
std::regex makeContainsRegex(const std::string& pattern);

// Compiles the literal patterns of the regular expression functions; false on an invalid one.
bool prepareRegexes(Node& n, std::string& error) {
  if (n.op == Op::Function && (n.fn == Fn::Matches || n.fn == Fn::MatchesFull || n.fn == Fn::ReplaceMatches) &&
      !n.args.empty() && n.args[0]->op == Op::Literal && n.args[0]->literal.kind == Kind::String &&
      !n.args[0]->literal.text.empty()) {
    try {
      const std::string& pattern = n.args[0]->literal.text;
      if (n.fn != Fn::Matches) n.regex = std::make_unique<const std::regex>(makeRegex(pattern));
      if (n.fn != Fn::MatchesFull) n.containsRegex = std::make_unique<const std::regex>(makeContainsRegex(pattern));
    } catch (const std::regex_error&) {
      error = n.name + "(): bad regular expression '" + n.args[0]->literal.text + "'";
      return false;
    }
  }
  if (n.target && !prepareRegexes(*n.target, error)) return false;
  for (auto& a : n.args)
    if (!prepareRegexes(*a, error)) return false;
  return true;
}

void resolveTypes(Node& n) {
  if (!n.type.name.empty()) {
    n.type.system = systemType(n.type.name, n.type.systemKind);
    n.type.fhir = fhirTypeKnown(n.type.name);
  }
  if (n.target) resolveTypes(*n.target);
  for (auto& a : n.args) resolveTypes(*a);
}

// '.' matching any character, line breaks included (FHIRPath regular expressions are single-line).
std::string dotAll(const std::string& re) {
  std::string out;
  bool inClass = false;
  for (std::size_t i = 0; i < re.size(); ++i) {
    char ch = re[i];
    if (ch == '\\' && i + 1 < re.size()) {
      out += ch;
      out += re[++i];
      continue;
    }
    if (ch == '[')
      inClass = true;
    else if (ch == ']')
      inClass = false;
    if (ch == '.' && !inClass)
      out += "[\\s\\S]";
    else
      out += ch;
  }
  return out;
}

// The patterns come from expressions that partners and profiles supply, and the strings from the
// data: a backtracking matcher takes exponential time on nested quantifiers ("(a*)*b", or the
// stacked quantifiers libstdc++ accepts where ECMAScript would refuse them). libstdc++'s polynomial
// mode runs its breadth-first (Thompson) executor instead, in time polynomial in the pattern and the
// string; it refuses back-references (a bad regular expression here).
std::regex makeRegex(const std::string& pattern) {
#if defined(__GLIBCXX__)
  return std::regex(dotAll(pattern), std::regex::ECMAScript | std::regex_constants::__polynomial);
#else
#error "the regular expression functions need libstdc++'s polynomial mode (or an engine without backtracking)"
#endif
}

// Whether a string contains a match of `pattern`, as one match of the whole string: a search tries
// each start position in turn, each run as long as the string (16 KiB and '[a-z]+@[a-z]+\.fr' on
// a string of letters: 8 s), while one run of the executor over "[\s\S]*(?:pattern)[\s\S]*"
// follows every start at once (2 ms). The pattern is compiled alone first: wrapped, an invalid one
// such as "a)(b" would become valid. Anchors and \b see the real string, so the answer is the
// search's.
std::regex makeContainsRegex(const std::string& pattern) {
  (void)makeRegex(pattern);
  return std::regex("[\\s\\S]*(?:" + dotAll(pattern) + ")[\\s\\S]*",
                    std::regex::ECMAScript | std::regex_constants::__polynomial);
}

// Longer strings are refused by the regular expression functions: std::regex recurses per character
// and the strings come from the data.
constexpr std::size_t kMaxRegexInput = 16 * 1024;

// The digits FHIRPath's precision() counts for a date, date-time or time of that precision.
int temporalDigits(int precision, bool time) {
  static const int dateDigits[] = {0, 4, 6, 8, 10, 12, 14, 17};
  static const int timeDigits[] = {0, 0, 0, 0, 2, 4, 6, 9};
  return time ? timeDigits[precision] : dateDigits[precision];
}

// lowBoundary()/highBoundary() (FHIRPath 2.0): the range a value of limited precision stands for.
bool boundary(const Value& v, bool high, std::optional<std::int64_t> digits, Collection& out) {
  if (v.kind == Kind::Integer || v.kind == Kind::Decimal || v.kind == Kind::Quantity) {
    int p = digits ? static_cast<int>(*digits) : 8;
    if (p < 0 || p > 31) return true;
    long double x = v.kind == Kind::Integer ? static_cast<long double>(v.integer) : v.decimal;
    long double half = 0.5L * std::pow(10.0L, -scaleOf(v));
    long double f = std::pow(10.0L, p);
    // For a positive value the high end rounds and the low end truncates; mirrored below zero.
    auto highOf = [&](long double a) { return std::round((a + half) * f + 1e-9L) / f; };
    auto lowOf = [&](long double a) { return std::trunc((a - half) * f + 1e-9L) / f; };
    long double r = x >= 0 ? (high ? highOf(x) : lowOf(x)) : (high ? -lowOf(-x) : -highOf(-x));
    if (v.kind == Kind::Quantity)
      out.push_back(makeQuantity(r, p, v.text));
    else
      out.push_back(makeDecimal(r, p));
    return true;
  }
  if (v.kind != Kind::Date && v.kind != Kind::DateTime && v.kind != Kind::Time) return true;
  bool time = v.kind == Kind::Time;
  DateTimeParts t;
  if (!parseDateTime(v.str(), time, t)) return true;
  int p = digits ? static_cast<int>(*digits) : (time ? 9 : v.kind == Kind::Date ? 8 : 17);
  int precision = 0;
  for (int k = time ? 4 : 1; k <= 7; ++k)
    if (temporalDigits(k, time) == p) precision = k;
  if (precision == 0) return true;
  if (t.precision == 4) t.precision = 5;  // an hour alone is not a FHIR time: hh:00
  static const int monthDays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  if (t.precision < 2) t.month = high ? 12 : 1;
  if (t.precision < 3) {
    int leap = (t.year % 4 == 0 && (t.year % 100 != 0 || t.year % 400 == 0)) ? 1 : 0;
    t.day = high ? monthDays[t.month - 1] + (t.month == 2 ? leap : 0) : 1;
  }
  if (t.precision < 4) t.hour = high ? 23 : 0;
  if (t.precision < 5) t.minute = high ? 59 : 0;
  if (t.precision < 6) t.second = high ? 59 : 0;
  if (t.precision < 7) t.millis = high ? 999 : 0;
  if (!time && precision >= 4 && !t.hasTz) {
    t.hasTz = true;
    t.tzMinutes = high ? -12 * 60 : 14 * 60;  // the widest offsets in use
  }
  t.precision = precision;
  out.push_back(makeTemporal(v.kind, formatDateTime(t, v.kind == Kind::Date, time)));
  return true;
}

std::string_view systemName(Kind k) {
  switch (k) {
    case Kind::Boolean: return "Boolean";
    case Kind::Integer: return "Integer";
    case Kind::Decimal: return "Decimal";
    case Kind::String: return "String";
    case Kind::Date: return "Date";
    case Kind::DateTime: return "DateTime";
    case Kind::Time: return "Time";
    case Kind::Quantity: return "Quantity";
    default: return "Any";
  }
}

class Evaluator;

// A collection borrowed from the evaluator's pool, returned (emptied, capacity kept) at scope exit:
// evaluating an invariant again on the same thread then allocates nothing.
class Temp {
 public:
  explicit Temp(Evaluator& ev);
  ~Temp();
  Temp(const Temp&) = delete;
  Temp& operator=(const Temp&) = delete;
  Collection& operator*() { return *c_; }
  Collection* operator->() { return c_; }

 private:
  Evaluator& ev_;
  Collection* c_;
};

// The pattern of a regular expression function (with `contains`, its makeContainsRegex form): the
// one compiled with the expression when it is a literal, else `local`, compiled now. Null, with the
// error set, when it is not a valid pattern.
const std::regex* regexFor(const Node& n, const std::string& pattern, std::regex& local, const Ctx& c,
                           bool contains = false) {
  if (const auto& compiled = contains ? n.containsRegex : n.regex) return compiled.get();
  try {
    local = contains ? makeContainsRegex(pattern) : makeRegex(pattern);
  } catch (const std::regex_error&) {
    fail(c, n.name + "(): bad regular expression");
    return nullptr;
  }
  return &local;
}

class Evaluator {
 public:
  bool eval(const Node& n, const Ctx& c, Collection& out);

  Collection* acquire() {
    if (used_ == pool_.size()) pool_.push_back(std::make_unique<Collection>());
    return pool_[used_++].get();
  }
  void release(Collection* c) {
    c->clear();
    --used_;
  }

 private:
  bool function(const Node& n, const Ctx& c, const Collection& input, Collection& out);
  bool binary(const Node& n, const Ctx& c, Collection& out);
  bool arithmetic(Op op, const Value& a, const Value& b, Collection& out, const Ctx& c);
  // Evaluates `n` with $this the one item `item` (and $index).
  bool evalOn(const Node& n, const Ctx& c, const Value& item, std::int64_t index, Collection& out) {
    Ctx inner = c;
    inner.thisItems = &item;
    inner.thisCount = 1;
    Value ix = makeInteger(index);
    inner.index = &ix;
    return eval(n, inner, out);
  }

  std::vector<std::unique_ptr<Collection>> pool_;
  std::size_t used_ = 0;
};

// The single item of a collection (null when empty); an error when there are several.
bool single(const Collection& col, const Value*& v, const Ctx& c, const char* what) {
  if (col.size() > 1)
    return fail(c,
                std::string(what) + ": a collection of " + std::to_string(col.size()) + " items where one is expected");
  v = col.empty() ? nullptr : &col[0];
  return true;
}

// A collection as a Boolean (singleton evaluation): nullopt when empty.
bool asBoolean(const Collection& col, std::optional<bool>& b, const Ctx& c, const char* what) {
  b.reset();
  if (col.empty()) return true;
  if (col.size() > 1) return fail(c, std::string(what) + ": a collection of several items where a Boolean is expected");
  if (col[0].kind == Kind::Boolean) {
    if (col[0].isNode && !col[0].hasJson) return true;
    b = col[0].boolean;
  } else {
    b = true;
  }
  return true;
}

bool contains(const Collection& col, const Value& v) {
  for (const Value& x : col) {
    auto e = itemsEqual(x, v);
    if (e && *e) return true;
  }
  return false;
}

// Whether two nodes are the same JSON value (same place in the DOM).
bool sameNode(const Value& a, const Value& b) {
  if (!a.isNode || !b.isNode) return false;
  if (a.hasJson != b.hasJson || a.hasExt != b.hasExt) return false;
  if (a.hasJson && a.node.get_object().error() == simdjson::SUCCESS && b.node.get_object().error() == simdjson::SUCCESS)
    return a.node.get_object().value_unsafe().begin() == b.node.get_object().value_unsafe().begin();
  return false;
}

bool distinctContains(const Collection& col, const Value& v, std::size_t from = 0) {
  for (std::size_t i = from; i < col.size(); ++i) {
    const Value& x = col[i];
    if (sameNode(x, v)) return true;
    auto e = itemsEqual(x, v);
    if (e && *e) return true;
  }
  return false;
}

// The string of a singleton input; errors when the item is not a String.
bool stringInput(const Collection& in, const Value*& v, const Ctx& c, const char* fn) {
  if (!single(in, v, c, fn)) return false;
  if (v && v->kind != Kind::String) return fail(c, std::string(fn) + "() applies to a String");
  if (v && v->isNode && !v->hasJson) v = nullptr;
  return true;
}

// Argument `i` of `n`, evaluated to at most one item, which must be of kind `want` (named `wantName`
// in the error); `use` reads it when there is one.
template <typename Use>
bool argOfKind(Evaluator& ev, const Node& n, std::size_t i, const Ctx& c, Kind want, const char* wantName, Use use) {
  Temp t(ev);
  Collection& r = *t;
  if (!ev.eval(*n.args[i], c, r)) return false;
  const Value* v;
  if (!single(r, v, c, "argument")) return false;
  if (!v) return true;
  if (v->kind != want) return fail(c, n.name + "(): argument " + std::to_string(i + 1) + " is not " + wantName);
  use(*v);
  return true;
}

bool argString(Evaluator& ev, const Node& n, std::size_t i, const Ctx& c, std::optional<std::string>& out) {
  out.reset();
  return argOfKind(ev, n, i, c, Kind::String, "a String", [&out](const Value& v) { out = std::string(v.str()); });
}

bool argInteger(Evaluator& ev, const Node& n, std::size_t i, const Ctx& c, std::optional<std::int64_t>& out) {
  out.reset();
  return argOfKind(ev, n, i, c, Kind::Integer, "an Integer", [&out](const Value& v) { out = v.integer; });
}

std::size_t utf8Length(std::string_view s) {
  std::size_t n = 0;
  for (unsigned char ch : s)
    if ((ch & 0xC0) != 0x80) ++n;
  return n;
}

// Children of a node, in document order: each member's node(s).
void children(const Value& item, Collection& out) {
  if (!item.isNode) return;
  object o;
  int typeIndex = item.typeIndex;
  if (item.kind != Kind::Object) {
    if (!item.hasExt || item.ext.get_object().get(o) != simdjson::SUCCESS) return;
    typeIndex = tables().elementType;
  } else if (item.node.get_object().get(o) != simdjson::SUCCESS) {
    return;
  }
  const TypeDef* td = typeIndex >= 0 ? &tables().type(typeIndex) : nullptr;
  for (auto field : o) {
    std::string_view key = field.key;
    if (key == "resourceType") continue;
    if (!key.empty() && key[0] == '_') {
      // Only when its value is absent (otherwise it came with its value).
      element ignored;
      if (o.at_key(key.substr(1)).get(ignored) == simdjson::SUCCESS) continue;
      key = key.substr(1);
    }
    const ElementDef* def = nullptr;
    if (td) {
      int e = td->find(key);
      if (e >= 0) def = &td->elements[static_cast<std::size_t>(e)];
    }
    appendMember(o, key, def, out);
  }
}

bool toIntegerValue(const Value& v, std::optional<std::int64_t>& out) {
  out.reset();
  switch (v.kind) {
    case Kind::Integer: out = v.integer; return true;
    case Kind::Boolean: out = v.boolean ? 1 : 0; return true;
    case Kind::String: {
      std::string_view s = v.str();
      std::size_t i = (!s.empty() && (s[0] == '+' || s[0] == '-')) ? 1 : 0;
      if (i == s.size()) return false;
      for (std::size_t k = i; k < s.size(); ++k)
        if (s[k] < '0' || s[k] > '9') return false;
      out = std::stoll(std::string(s));
      return true;
    }
    default: return false;
  }
}

bool toDecimalValue(const Value& v, Value& out) {
  switch (v.kind) {
    case Kind::Integer: out = makeDecimal(v.integer, 0); return true;
    case Kind::Decimal: out = makeDecimal(v.decimal, scaleOf(v)); return true;
    case Kind::Boolean: out = makeDecimal(v.boolean ? 1 : 0, 1); return true;
    case Kind::String: {
      long double d;
      int scale;
      if (!parseDecimal(v.str(), d, scale)) return false;
      out = makeDecimal(d, scale);
      return true;
    }
    default: return false;
  }
}

bool toBooleanValue(const Value& v, std::optional<bool>& out) {
  out.reset();
  switch (v.kind) {
    case Kind::Boolean: out = v.boolean; return true;
    case Kind::Integer:
      if (v.integer == 0 || v.integer == 1) out = v.integer == 1;
      return out.has_value();
    case Kind::Decimal:
      if (v.decimal == 0 || v.decimal == 1) out = v.decimal == 1;
      return out.has_value();
    case Kind::String: {
      std::string s(v.str());
      for (char& ch : s) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
      if (s == "true" || s == "t" || s == "yes" || s == "y" || s == "1" || s == "1.0") out = true;
      if (s == "false" || s == "f" || s == "no" || s == "n" || s == "0" || s == "0.0") out = false;
      return out.has_value();
    }
    default: return false;
  }
}

bool toQuantityValue(const Value& v, Value& out) {
  if (quantityOf(v, out)) return true;
  switch (v.kind) {
    case Kind::Integer: out = makeQuantity(v.integer, 0, "1"); return true;
    case Kind::Decimal: out = makeQuantity(v.decimal, scaleOf(v), "1"); return true;
    case Kind::Boolean: out = makeQuantity(v.boolean ? 1 : 0, 1, "1"); return true;
    case Kind::String: {
      std::string_view s = v.str();
      std::size_t sp = s.find(' ');
      long double d;
      int scale;
      if (!parseDecimal(s.substr(0, sp), d, scale)) return false;
      if (sp == std::string_view::npos) {
        out = makeQuantity(d, scale, "1");
        return true;
      }
      std::string_view unit = s.substr(sp + 1);
      while (!unit.empty() && unit[0] == ' ') unit.remove_prefix(1);
      if (unit.size() >= 2 && unit.front() == '\'' && unit.back() == '\'') {
        out = makeQuantity(d, scale, std::string(unit.substr(1, unit.size() - 2)));
        return true;
      }
      static constexpr std::string_view calendar[] = {
          "year", "years", "month",  "months",  "week",   "weeks",   "day",         "days",
          "hour", "hours", "minute", "minutes", "second", "seconds", "millisecond", "milliseconds"};
      for (std::string_view u : calendar)
        if (u == unit) {
          out = makeQuantity(d, scale, std::string(unit));
          return true;
        }
      return false;
    }
    default: return false;
  }
}

bool toTemporal(const Value& v, Kind want, Value& out) {
  if (v.kind == Kind::String || v.kind == Kind::Date || v.kind == Kind::DateTime || v.kind == Kind::Time) {
    DateTimeParts p;
    std::string_view s = v.str();
    if (want == Kind::Time) {
      if (v.kind != Kind::String && v.kind != Kind::Time) return false;
      if (!parseDateTime(s, true, p)) return false;
      out = makeTemporal(Kind::Time, std::string(s));
      return true;
    }
    if (v.kind == Kind::Time || !parseDateTime(s, false, p)) return false;
    if (want == Kind::Date) {
      if (p.precision > 3) p.precision = 3;
      out = makeTemporal(Kind::Date, formatDateTime(p, true, false));
    } else {
      out = makeTemporal(Kind::DateTime, std::string(s));
    }
    return true;
  }
  return false;
}

std::string resolveConstantUrl(const std::string& name) {
  if (name == "ucum") return "http://unitsofmeasure.org";
  if (name == "sct") return "http://snomed.info/sct";
  if (name == "loinc") return "http://loinc.org";
  if (name.rfind("vs-", 0) == 0) return "http://hl7.org/fhir/ValueSet/" + name.substr(3);
  if (name.rfind("ext-", 0) == 0) return "http://hl7.org/fhir/StructureDefinition/" + name.substr(4);
  return "";
}

// Date and time arithmetic with a calendar or UCUM time quantity (http://hl7.org/fhirpath/N1/#date-time-arithmetic).
bool addDuration(const Value& t, const Value& q, int sign, Value& out, const Ctx& c) {
  DateTimeParts p;
  bool time = t.kind == Kind::Time;
  if (!parseDateTime(t.str(), time, p)) return fail(c, "bad date");
  std::string_view u = q.text;
  long long amount = static_cast<long long>(std::trunc(q.decimal)) * sign;
  auto normalizeDay = [&p]() {
    static const int days[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    int leap = (p.year % 4 == 0 && (p.year % 100 != 0 || p.year % 400 == 0)) ? 1 : 0;
    int max = days[p.month - 1] + (p.month == 2 ? leap : 0);
    if (p.day > max) p.day = max;
  };
  if (u == "year" || u == "years") {
    p.year += static_cast<int>(amount);
    normalizeDay();
  } else if (u == "month" || u == "months") {
    long long m = p.year * 12LL + (p.month - 1) + amount;
    p.year = static_cast<int>(m / 12);
    p.month = static_cast<int>(m % 12) + 1;
    normalizeDay();
  } else {
    long long ms = 0;
    if (u == "week" || u == "weeks" || u == "wk")
      ms = amount * 7 * 86400000LL;
    else if (u == "day" || u == "days" || u == "d")
      ms = amount * 86400000LL;
    else if (u == "hour" || u == "hours" || u == "h")
      ms = amount * 3600000LL;
    else if (u == "minute" || u == "minutes" || u == "min")
      ms = amount * 60000LL;
    else if (u == "second" || u == "seconds" || u == "s")
      ms = amount * 1000LL;
    else if (u == "millisecond" || u == "milliseconds" || u == "ms")
      ms = amount;
    else
      return fail(c, "cannot add '" + std::string(u) + "' to a date");
    // Below the value's precision the amount is dropped (a Date plus hours stays the same day).
    if (time) {
      long long total = ((p.hour * 60LL + p.minute) * 60 + p.second) * 1000 + p.millis + ms;
      total %= 86400000LL;
      if (total < 0) total += 86400000LL;
      p.hour = static_cast<int>(total / 3600000);
      p.minute = static_cast<int>(total / 60000 % 60);
      p.second = static_cast<int>(total / 1000 % 60);
      p.millis = static_cast<int>(total % 1000);
    } else {
      if (t.kind == Kind::Date && std::llabs(ms) % 86400000LL != 0) ms = (ms / 86400000LL) * 86400000LL;
      long long days = daysFromCivil(p.year, p.month, p.day);
      long long total = days * 86400000LL + ((p.hour * 60LL + p.minute) * 60 + p.second) * 1000 + p.millis + ms;
      long long z = total >= 0 ? total / 86400000LL : (total - 86399999LL) / 86400000LL;
      long long rest = total - z * 86400000LL;
      civilFromDays(z, p.year, p.month, p.day);
      p.hour = static_cast<int>(rest / 3600000);
      p.minute = static_cast<int>(rest / 60000 % 60);
      p.second = static_cast<int>(rest / 1000 % 60);
      p.millis = static_cast<int>(rest % 1000);
    }
  }
  out = makeTemporal(t.kind, formatDateTime(p, t.kind == Kind::Date, time));
  return true;
}

bool Evaluator::arithmetic(Op op, const Value& a, const Value& b, Collection& out, const Ctx& c) {
  auto isNum = [](const Value& v) { return v.kind == Kind::Integer || v.kind == Kind::Decimal; };
  if ((a.kind == Kind::Date || a.kind == Kind::DateTime || a.kind == Kind::Time) && (op == Op::Add || op == Op::Sub)) {
    Value q;
    if (!quantityOf(b, q)) return fail(c, "a date can only be added a time quantity");
    Value r;
    if (!addDuration(a, q, op == Op::Add ? 1 : -1, r, c)) return false;
    out.push_back(std::move(r));
    return true;
  }
  if (a.kind == Kind::String && b.kind == Kind::String && op == Op::Add) {
    out.push_back(makeString(std::string(a.str()) + std::string(b.str())));
    return true;
  }
  Value qa, qb;
  if (quantityOf(a, qa) || quantityOf(b, qb)) {
    bool hasA = quantityOf(a, qa), hasB = quantityOf(b, qb);
    if (hasA && hasB && (op == Op::Add || op == Op::Sub)) {
      if (qa.text != qb.text) return true;  // different units: not converted here
      long double r = op == Op::Add ? qa.decimal + qb.decimal : qa.decimal - qb.decimal;
      out.push_back(makeQuantity(r, std::max(scaleOf(qa), scaleOf(qb)), qa.text));
      return true;
    }
    if (hasA && isNum(b) && (op == Op::Mul || op == Op::Div)) {
      long double x = b.kind == Kind::Integer ? b.integer : b.decimal;
      if (op == Op::Div && x == 0) return true;
      out.push_back(makeQuantity(op == Op::Mul ? qa.decimal * x : qa.decimal / x, scaleOf(qa), qa.text));
      return true;
    }
    if (hasA && hasB && (op == Op::Mul || op == Op::Div)) {
      // Same dimension: in its base unit, squared or cancelled (2.0 'cm' * 2.0 'm' = 0.04 'm2').
      long double x, y;
      std::string ua, ub;
      if (baseUnit(qa, x, ua) && baseUnit(qb, y, ub) && ua == ub) {
        if (op == Op::Div && y == 0) return true;
        out.push_back(makeQuantity(op == Op::Mul ? x * y : x / y, 8, op == Op::Mul ? ua + "2" : "1"));
        return true;
      }
      std::string unit = qa.text == "1"   ? qb.text
                         : qb.text == "1" ? qa.text
                                          : qa.text + (op == Op::Mul ? "." : "/") + qb.text;
      if (op == Op::Div && qb.decimal == 0) return true;
      if (op == Op::Div && qa.text == qb.text) unit = "1";
      out.push_back(makeQuantity(op == Op::Mul ? qa.decimal * qb.decimal : qa.decimal / qb.decimal, 8, unit));
      return true;
    }
    return fail(c, "operands of the wrong types");
  }
  if (!isNum(a) || !isNum(b)) return fail(c, "arithmetic on values that are not numbers");
  bool ints = a.kind == Kind::Integer && b.kind == Kind::Integer;
  long double x = a.kind == Kind::Integer ? a.integer : a.decimal;
  long double y = b.kind == Kind::Integer ? b.integer : b.decimal;
  int sa = scaleOf(a), sb = scaleOf(b);
  switch (op) {
    case Op::Add:
    case Op::Sub:
      if (ints)
        out.push_back(makeInteger(op == Op::Add ? a.integer + b.integer : a.integer - b.integer));
      else
        out.push_back(makeDecimal(op == Op::Add ? x + y : x - y, std::max(sa, sb)));
      return true;
    case Op::Mul:
      if (ints)
        out.push_back(makeInteger(a.integer * b.integer));
      else
        out.push_back(makeDecimal(x * y, std::min(sa + sb, 16)));
      return true;
    case Op::Div: {
      if (y == 0) return true;
      long double r = x / y;
      // Shortest scale up to 8 digits that represents the quotient.
      int scale = 0;
      long double f = 1;
      while (scale < 8 && std::fabs(std::round(r * f) - r * f) > 1e-9L * f) {
        ++scale;
        f *= 10;
      }
      out.push_back(makeDecimal(r, scale));
      return true;
    }
    case Op::IntDiv:
      if (y == 0) return true;
      out.push_back(makeInteger(static_cast<std::int64_t>(std::trunc(x / y))));
      return true;
    case Op::Mod:
      if (y == 0) return true;
      if (ints)
        out.push_back(makeInteger(a.integer % b.integer));
      else
        out.push_back(makeDecimal(std::fmod(x, y), std::max(sa, sb)));
      return true;
    default: return fail(c, "bad operator");
  }
}

bool Evaluator::binary(const Node& n, const Ctx& c, Collection& out) {
  Temp lt(*this), rt(*this);
  Collection& left = *lt;
  Collection& right = *rt;
  Op op = n.op;
  if (op == Op::And || op == Op::Or || op == Op::Xor || op == Op::Implies) {
    std::optional<bool> a, b;
    if (!eval(*n.args[0], c, left) || !asBoolean(left, a, c, "logical operand")) return false;
    // Short cuts where the right side cannot change the result.
    if ((op == Op::And && a == false) || (op == Op::Or && a == true) || (op == Op::Implies && a == false)) {
      out.push_back(makeBoolean(op != Op::And));
      return true;
    }
    if (!eval(*n.args[1], c, right) || !asBoolean(right, b, c, "logical operand")) return false;
    std::optional<bool> r;
    switch (op) {
      case Op::And:
        if (b == false)
          r = false;
        else if (a && b)
          r = true;
        break;
      case Op::Or:
        if (b == true)
          r = true;
        else if (a && b)
          r = false;
        break;
      case Op::Xor:
        if (a && b) r = *a != *b;
        break;
      default:  // implies: a is true or empty
        if (b == true)
          r = true;
        else if (a && b)
          r = false;
        break;
    }
    if (r) out.push_back(makeBoolean(*r));
    return true;
  }
  if (!eval(*n.args[0], c, left)) return false;
  if (op == Op::Is || op == Op::As) {
    const Value* v;
    if (!single(left, v, c, op == Op::Is ? "is" : "as")) return false;
    if (!v) return true;
    bool ok;
    bool is = isType(*v, n.type, ok, op == Op::As);
    if (!ok) return fail(c, "unknown type '" + n.type.name + "'");
    if (op == Op::Is)
      out.push_back(makeBoolean(is));
    else if (is)
      out.push_back(*v);
    return true;
  }
  if (!eval(*n.args[1], c, right)) return false;
  switch (op) {
    case Op::Union: {
      std::size_t from = out.size();
      for (Value& v : left)
        if (!distinctContains(out, v, from)) out.push_back(std::move(v));
      for (Value& v : right)
        if (!distinctContains(out, v, from)) out.push_back(std::move(v));
      return true;
    }
    case Op::Eq:
    case Op::Ne: {
      if (left.empty() || right.empty()) return true;
      if (left.size() != right.size()) {
        out.push_back(makeBoolean(op == Op::Ne));
        return true;
      }
      bool all = true;
      for (std::size_t i = 0; i < left.size(); ++i) {
        auto e = itemsEqual(left[i], right[i]);
        if (!e) return true;
        if (!*e) all = false;
      }
      out.push_back(makeBoolean(op == Op::Eq ? all : !all));
      return true;
    }
    case Op::Equiv:
    case Op::NotEquiv: {
      bool eq = left.size() == right.size();
      for (std::size_t i = 0; eq && i < left.size(); ++i) {
        bool found = false;
        for (const Value& r : right)
          if (itemsEquivalent(left[i], r)) {
            found = true;
            break;
          }
        eq = found;
      }
      out.push_back(makeBoolean(op == Op::Equiv ? eq : !eq));
      return true;
    }
    case Op::Lt:
    case Op::Gt:
    case Op::Le:
    case Op::Ge: {
      const Value *a, *b;
      if (!single(left, a, c, "comparison") || !single(right, b, c, "comparison")) return false;
      if (!a || !b) return true;
      bool ok;
      auto r = compareItems(*a, *b, ok);
      if (!ok) return fail(c, "cannot compare " + toText(*a) + " with " + toText(*b));
      if (!r) return true;
      bool res = op == Op::Lt ? *r < 0 : op == Op::Gt ? *r > 0 : op == Op::Le ? *r <= 0 : *r >= 0;
      out.push_back(makeBoolean(res));
      return true;
    }
    case Op::In:
    case Op::Contains: {
      const Collection& item = op == Op::In ? left : right;
      const Collection& col = op == Op::In ? right : left;
      const Value* v;
      if (!single(item, v, c, op == Op::In ? "in" : "contains")) return false;
      if (!v) return true;
      out.push_back(makeBoolean(contains(col, *v)));
      return true;
    }
    case Op::Concat: {
      const Value *a, *b;
      if (!single(left, a, c, "&") || !single(right, b, c, "&")) return false;
      std::string s;
      if (a) s += a->str();
      if (b) s += b->str();
      out.push_back(makeString(std::move(s)));
      return true;
    }
    default: {
      const Value *a, *b;
      if (!single(left, a, c, "arithmetic") || !single(right, b, c, "arithmetic")) return false;
      if (!a || !b) return true;
      return arithmetic(op, *a, *b, out, c);
    }
  }
}

bool Evaluator::eval(const Node& n, const Ctx& c, Collection& out) {
  switch (n.op) {
    case Op::Literal:
      if (n.literal.kind != Kind::Empty) out.push_back(n.literal);
      return true;
    case Op::This: out.insert(out.end(), c.thisItems, c.thisItems + c.thisCount); return true;
    case Op::Index:
      if (c.index) out.push_back(*c.index);
      return true;
    case Op::Total:
      if (c.total) out.insert(out.end(), c.total->begin(), c.total->end());
      return true;
    case Op::Constant: {
      if (n.name == "context") {
        out.push_back(*c.context);
        return true;
      }
      if (n.name == "resource" || n.name == "rootResource") {
        // Made when used: most invariants never name it.
        out.push_back(c.rootIsResource ? *c.context : rootValue(c.resource, {}));
        return true;
      }
      std::string url = resolveConstantUrl(n.name);
      if (url.empty()) return fail(c, "unknown constant %" + n.name);
      out.push_back(makeString(std::move(url)));
      return true;
    }
    case Op::Member: {
      if (!n.target) {
        for (std::size_t i = 0; i < c.thisCount; ++i) {
          const Value& item = c.thisItems[i];
          // A type name starting the expression must be the focus's type (N1 §Path selection).
          if (n.pathRoot && upperAt(n.name, 0) && item.isNode && !item.fhirType.empty() && item.fhirType != n.name &&
              (tables().resourceType(n.name) >= 0 || tables().typeIndex(n.name) >= 0) &&
              !fhirDerives(item.fhirType, n.name, item))
            return fail(c, "the expression applies to " + n.name + ", not to " + std::string(item.fhirType));
          if (!navigate(item, n.name, out, c, &n.memberCache)) return false;
        }
        return true;
      }
      Temp t(*this);
      Collection& input = *t;
      if (!eval(*n.target, c, input)) return false;
      for (const Value& v : input)
        if (!navigate(v, n.name, out, c, &n.memberCache)) return false;
      return true;
    }
    case Op::Function: {
      if (!n.target) {
        Temp t(*this);
        t->assign(c.thisItems, c.thisItems + c.thisCount);
        return function(n, c, *t, out);
      }
      Temp t(*this);
      Collection& input = *t;
      if (!eval(*n.target, c, input)) return false;
      return function(n, c, input, out);
    }
    case Op::Indexer: {
      Temp ct(*this), it(*this);
      Collection& col = *ct;
      Collection& ix = *it;
      if (!eval(*n.args[0], c, col) || !eval(*n.args[1], c, ix)) return false;
      const Value* i;
      if (!single(ix, i, c, "index")) return false;
      if (!i) return true;
      if (i->kind != Kind::Integer) return fail(c, "an index must be an Integer");
      if (i->integer >= 0 && static_cast<std::size_t>(i->integer) < col.size())
        out.push_back(std::move(col[static_cast<std::size_t>(i->integer)]));
      return true;
    }
    case Op::Negate:
    case Op::Plus: {
      Temp t(*this);
      Collection& in = *t;
      if (!eval(*n.args[0], c, in)) return false;
      const Value* v;
      if (!single(in, v, c, "unary minus")) return false;
      if (!v) return true;
      Value r;
      if (v->kind == Kind::Integer)
        r = makeInteger(v->integer);
      else if (v->kind == Kind::Decimal)
        r = makeDecimal(v->decimal, scaleOf(*v));
      else if (!quantityOf(*v, r))
        return fail(c, "unary minus applies to numbers and quantities");
      if (n.op == Op::Negate) {
        r.integer = -r.integer;
        r.decimal = r.decimal == 0 ? 0.0L : -r.decimal;  // no "-0"
      }
      out.push_back(std::move(r));
      return true;
    }
    default: return binary(n, c, out);
  }
}

bool Evaluator::function(const Node& n, const Ctx& c, const Collection& in, Collection& out) {
  auto arity = [&](std::size_t lo, std::size_t hi) {
    if (n.args.size() < lo || n.args.size() > hi) return fail(c, n.name + "(): wrong number of arguments");
    return true;
  };
  switch (n.fn) {
    case Fn::Empty:
      if (!arity(0, 0)) return false;
      out.push_back(makeBoolean(in.empty()));
      return true;
    case Fn::Exists:
    case Fn::Where:
    case Fn::All: {
      if (n.fn == Fn::All ? !arity(1, 1) : n.fn == Fn::Where ? !arity(1, 1) : !arity(0, 1)) return false;
      if (n.args.empty()) {
        out.push_back(makeBoolean(!in.empty()));
        return true;
      }
      bool any = false, all = true;
      Temp t(*this);
      Collection& r = *t;
      for (std::size_t i = 0; i < in.size(); ++i) {
        r.clear();
        if (!evalOn(*n.args[0], c, in[i], static_cast<std::int64_t>(i), r)) return false;
        std::optional<bool> b;
        if (!asBoolean(r, b, c, n.name.c_str())) return false;
        if (b == true) {
          any = true;
          if (n.fn == Fn::Where)
            out.push_back(in[i]);
          else if (n.fn == Fn::Exists)
            break;
        } else {
          all = false;
          if (n.fn == Fn::All) break;
        }
      }
      if (n.fn == Fn::Exists) out.push_back(makeBoolean(any));
      if (n.fn == Fn::All) out.push_back(makeBoolean(all));
      return true;
    }
    case Fn::AllTrue:
    case Fn::AnyTrue:
    case Fn::AllFalse:
    case Fn::AnyFalse: {
      bool want = n.fn == Fn::AllTrue || n.fn == Fn::AnyTrue;
      bool all = n.fn == Fn::AllTrue || n.fn == Fn::AllFalse;
      bool result = all;
      for (const Value& v : in) {
        if (v.kind != Kind::Boolean) return fail(c, n.name + "() applies to Booleans");
        if (all && v.boolean != want) result = false;
        if (!all && v.boolean == want) result = true;
      }
      out.push_back(makeBoolean(result));
      return true;
    }
    case Fn::SubsetOf:
    case Fn::SupersetOf: {
      if (!arity(1, 1)) return false;
      Collection other;
      if (!eval(*n.args[0], c, other)) return false;
      const Collection& sub = n.fn == Fn::SubsetOf ? in : other;
      const Collection& sup = n.fn == Fn::SubsetOf ? other : in;
      bool r = true;
      for (const Value& v : sub)
        if (!contains(sup, v)) r = false;
      out.push_back(makeBoolean(r));
      return true;
    }
    case Fn::Count: out.push_back(makeInteger(static_cast<std::int64_t>(in.size()))); return true;
    case Fn::Distinct: {
      std::size_t from = out.size();
      for (const Value& v : in)
        if (!distinctContains(out, v, from)) out.push_back(v);
      return true;
    }
    case Fn::IsDistinct: {
      Collection d;
      for (const Value& v : in)
        if (!distinctContains(d, v)) d.push_back(v);
      out.push_back(makeBoolean(d.size() == in.size()));
      return true;
    }
    case Fn::Select: {
      if (!arity(1, 1)) return false;
      for (std::size_t i = 0; i < in.size(); ++i)
        if (!evalOn(*n.args[0], c, in[i], static_cast<std::int64_t>(i), out)) return false;
      return true;
    }
    case Fn::Repeat: {
      if (!arity(1, 1)) return false;
      Collection frontier = in, next;
      std::size_t from = out.size();
      while (!frontier.empty()) {
        next.clear();
        for (std::size_t i = 0; i < frontier.size(); ++i)
          if (!evalOn(*n.args[0], c, frontier[i], static_cast<std::int64_t>(i), next)) return false;
        frontier.clear();
        for (Value& v : next)
          if (!distinctContains(out, v, from)) {
            out.push_back(v);
            frontier.push_back(std::move(v));
          }
      }
      return true;
    }
    case Fn::OfType:
    case Fn::Is:
    case Fn::As: {
      // as() on several items filters them as ofType() does: R4's own invariants rely on it
      // (dom-3: descendants().as(canonical)), though later FHIRPath makes it an error.
      if (n.fn == Fn::Is) {
        const Value* v;
        if (!single(in, v, c, n.name.c_str())) return false;
      }
      for (const Value& v : in) {
        bool ok;
        bool is = isType(v, n.type, ok, n.fn != Fn::Is);
        if (!ok) return fail(c, "unknown type '" + n.type.name + "'");
        if (n.fn == Fn::Is)
          out.push_back(makeBoolean(is));
        else if (is)
          out.push_back(v);
      }
      return true;
    }
    case Fn::Single: {
      const Value* v;
      if (!single(in, v, c, "single()")) return false;
      if (v) out.push_back(*v);
      return true;
    }
    case Fn::First:
      if (!in.empty()) out.push_back(in.front());
      return true;
    case Fn::Last:
      if (!in.empty()) out.push_back(in.back());
      return true;
    case Fn::Tail:
      if (in.size() > 1) out.insert(out.end(), in.begin() + 1, in.end());
      return true;
    case Fn::Skip:
    case Fn::Take: {
      if (!arity(1, 1)) return false;
      std::optional<std::int64_t> k;
      if (!argInteger(*this, n, 0, c, k)) return false;
      if (!k) return true;
      std::size_t cut = *k <= 0 ? 0 : std::min<std::size_t>(static_cast<std::size_t>(*k), in.size());
      if (n.fn == Fn::Skip)
        out.insert(out.end(), in.begin() + static_cast<std::ptrdiff_t>(cut), in.end());
      else
        out.insert(out.end(), in.begin(), in.begin() + static_cast<std::ptrdiff_t>(cut));
      return true;
    }
    case Fn::Intersect:
    case Fn::Exclude: {
      if (!arity(1, 1)) return false;
      Collection other;
      if (!eval(*n.args[0], c, other)) return false;
      std::size_t from = out.size();
      for (const Value& v : in) {
        bool inOther = contains(other, v);
        if (n.fn == Fn::Intersect ? (inOther && !distinctContains(out, v, from)) : !inOther) out.push_back(v);
      }
      return true;
    }
    case Fn::Union:
    case Fn::Combine: {
      if (!arity(1, 1)) return false;
      Collection other;
      if (!eval(*n.args[0], c, other)) return false;
      if (n.fn == Fn::Combine) {
        out.insert(out.end(), in.begin(), in.end());
        out.insert(out.end(), other.begin(), other.end());
        return true;
      }
      std::size_t from = out.size();
      for (const Value& v : in)
        if (!distinctContains(out, v, from)) out.push_back(v);
      for (const Value& v : other)
        if (!distinctContains(out, v, from)) out.push_back(v);
      return true;
    }
    case Fn::Iif: {
      if (!arity(2, 3)) return false;
      if (in.size() > 1) return fail(c, "iif() applies to at most one item");
      Ctx inner = c;
      if (n.target) {
        inner.thisItems = in.data();
        inner.thisCount = in.size();
      }
      Collection r;
      if (!eval(*n.args[0], inner, r)) return false;
      if (r.size() > 1 || (r.size() == 1 && r[0].kind != Kind::Boolean))
        return fail(c, "iif(): the criterion is not a Boolean");
      bool cond = r.size() == 1 && r[0].boolean;
      if (cond) return eval(*n.args[1], inner, out);
      if (n.args.size() == 3) return eval(*n.args[2], inner, out);
      return true;
    }
    case Fn::ToBoolean:
    case Fn::ConvertsToBoolean:
    case Fn::ToInteger:
    case Fn::ConvertsToInteger:
    case Fn::ToDecimal:
    case Fn::ConvertsToDecimal:
    case Fn::ToString:
    case Fn::ConvertsToString:
    case Fn::ToDate:
    case Fn::ConvertsToDate:
    case Fn::ToDateTime:
    case Fn::ConvertsToDateTime:
    case Fn::ToTime:
    case Fn::ConvertsToTime:
    case Fn::ToQuantity:
    case Fn::ConvertsToQuantity: {
      const Value* v;
      if (!single(in, v, c, n.name.c_str())) return false;
      if (!v || (v->isNode && v->kind != Kind::Object && !v->hasJson)) return true;
      bool converts = false;
      Value r;
      switch (n.fn) {
        case Fn::ToBoolean:
        case Fn::ConvertsToBoolean: {
          std::optional<bool> b;
          converts = toBooleanValue(*v, b);
          if (converts) r = makeBoolean(*b);
          break;
        }
        case Fn::ToInteger:
        case Fn::ConvertsToInteger: {
          std::optional<std::int64_t> i;
          converts = toIntegerValue(*v, i);
          if (converts) r = makeInteger(*i);
          break;
        }
        case Fn::ToDecimal:
        case Fn::ConvertsToDecimal: converts = toDecimalValue(*v, r); break;
        case Fn::ToString:
        case Fn::ConvertsToString:
          converts = v->kind != Kind::Object || quantityOf(*v, r);
          if (converts) r = makeString(toText(*v));
          break;
        case Fn::ToDate:
        case Fn::ConvertsToDate: converts = toTemporal(*v, Kind::Date, r); break;
        case Fn::ToDateTime:
        case Fn::ConvertsToDateTime: converts = toTemporal(*v, Kind::DateTime, r); break;
        case Fn::ToTime:
        case Fn::ConvertsToTime: converts = toTemporal(*v, Kind::Time, r); break;
        default: {
          converts = toQuantityValue(*v, r);
          if (converts && !n.args.empty()) {
            std::optional<std::string> unit;
            if (!argString(*this, n, 0, c, unit)) return false;
            // Only to the same unit: conversions between units are not done here.
            if (unit && *unit != r.text) converts = false;
          }
        }
      }
      bool convertsFn = n.fn == Fn::ConvertsToBoolean || n.fn == Fn::ConvertsToInteger ||
                        n.fn == Fn::ConvertsToDecimal || n.fn == Fn::ConvertsToString || n.fn == Fn::ConvertsToDate ||
                        n.fn == Fn::ConvertsToDateTime || n.fn == Fn::ConvertsToTime || n.fn == Fn::ConvertsToQuantity;
      if (convertsFn)
        out.push_back(makeBoolean(converts));
      else if (converts)
        out.push_back(std::move(r));
      return true;
    }
    case Fn::IndexOf:
    case Fn::StartsWith:
    case Fn::EndsWith:
    case Fn::ContainsStr:
    case Fn::Matches:
    case Fn::Split: {
      if (!arity(1, 1)) return false;
      const Value* v;
      if (!stringInput(in, v, c, n.name.c_str())) return false;
      std::optional<std::string> arg;
      if (!argString(*this, n, 0, c, arg)) return false;
      if (!v || !arg) return true;
      std::string_view s = v->str();
      switch (n.fn) {
        case Fn::IndexOf: {
          std::size_t p = s.find(*arg);
          out.push_back(
              makeInteger(p == std::string_view::npos ? -1 : static_cast<std::int64_t>(utf8Length(s.substr(0, p)))));
          break;
        }
        case Fn::StartsWith: out.push_back(makeBoolean(s.substr(0, arg->size()) == *arg)); break;
        case Fn::EndsWith:
          out.push_back(makeBoolean(s.size() >= arg->size() && s.substr(s.size() - arg->size()) == *arg));
          break;
        case Fn::ContainsStr: out.push_back(makeBoolean(s.find(*arg) != std::string_view::npos)); break;
        case Fn::Matches: {
          std::regex local;
          const std::regex* re = regexFor(n, *arg, local, c, true);
          if (!re) return false;
          if (s.size() > kMaxRegexInput) return fail(c, "matches(): string too long");
          out.push_back(makeBoolean(std::regex_match(s.begin(), s.end(), *re)));
          break;
        }
        default: {
          std::size_t from = 0;
          for (;;) {
            std::size_t p = arg->empty() ? std::string_view::npos : s.find(*arg, from);
            out.push_back(makeString(std::string(s.substr(from, p == std::string_view::npos ? p : p - from))));
            if (p == std::string_view::npos) break;
            from = p + arg->size();
          }
        }
      }
      return true;
    }
    case Fn::Substring: {
      if (!arity(1, 2)) return false;
      const Value* v;
      if (!stringInput(in, v, c, "substring")) return false;
      std::optional<std::int64_t> start, length;
      if (!argInteger(*this, n, 0, c, start)) return false;
      if (n.args.size() > 1 && !argInteger(*this, n, 1, c, length)) return false;
      if (!v || !start) return true;
      std::string_view s = v->str();
      if (*start < 0 || static_cast<std::size_t>(*start) >= s.size()) return true;
      std::size_t len = length ? static_cast<std::size_t>(std::max<std::int64_t>(0, *length)) : std::string_view::npos;
      out.push_back(makeString(std::string(s.substr(static_cast<std::size_t>(*start), len))));
      return true;
    }
    case Fn::Upper:
    case Fn::Lower:
    case Fn::Length:
    case Fn::ToChars:
    case Fn::Trim: {
      const Value* v;
      if (!stringInput(in, v, c, n.name.c_str())) return false;
      if (!v) return true;
      std::string s(v->str());
      if (n.fn == Fn::Length) {
        out.push_back(makeInteger(static_cast<std::int64_t>(utf8Length(s))));
      } else if (n.fn == Fn::ToChars) {
        for (std::size_t i = 0; i < s.size();) {
          std::size_t j = i + 1;
          while (j < s.size() && (static_cast<unsigned char>(s[j]) & 0xC0) == 0x80) ++j;
          out.push_back(makeString(s.substr(i, j - i)));
          i = j;
        }
      } else if (n.fn == Fn::Trim) {
        std::size_t b = s.find_first_not_of(" \t\r\n");
        std::size_t e = s.find_last_not_of(" \t\r\n");
        out.push_back(makeString(b == std::string::npos ? "" : s.substr(b, e - b + 1)));
      } else {
        for (char& ch : s)
          ch = static_cast<char>(n.fn == Fn::Upper ? std::toupper(static_cast<unsigned char>(ch))
                                                   : std::tolower(static_cast<unsigned char>(ch)));
        out.push_back(makeString(std::move(s)));
      }
      return true;
    }
    case Fn::Replace:
    case Fn::ReplaceMatches: {
      if (!arity(2, 2)) return false;
      const Value* v;
      if (!stringInput(in, v, c, n.name.c_str())) return false;
      std::optional<std::string> pattern, with;
      if (!argString(*this, n, 0, c, pattern) || !argString(*this, n, 1, c, with)) return false;
      if (!v || !pattern || !with) return true;
      std::string s(v->str());
      if (n.fn == Fn::ReplaceMatches) {
        if (pattern->empty()) {
          out.push_back(makeString(std::move(s)));
          return true;
        }
        std::regex local, contains;
        const std::regex* anywhere = regexFor(n, *pattern, contains, c, true);
        if (!anywhere) return false;
        if (s.size() > kMaxRegexInput) return fail(c, "replaceMatches(): string too long");
        if (!std::regex_match(s, *anywhere)) {
          // No match anywhere (found in one run): nothing to replace.
          out.push_back(makeString(std::move(s)));
          return true;
        }
        // Each search of the replacement starts over from its position: with matches in the string,
        // the time grows with the square of its length.
        const std::regex* re = regexFor(n, *pattern, local, c);
        if (!re) return false;
        out.push_back(makeString(std::regex_replace(s, *re, *with)));
        return true;
      }
      std::string r;
      if (pattern->empty()) {
        r = *with;
        for (char ch : s) {
          r += ch;
          r += *with;
        }
      } else {
        std::size_t from = 0;
        for (;;) {
          std::size_t p = s.find(*pattern, from);
          if (p == std::string::npos) break;
          r.append(s, from, p - from);
          r += *with;
          from = p + pattern->size();
        }
        r.append(s, from, std::string::npos);
      }
      out.push_back(makeString(std::move(r)));
      return true;
    }
    case Fn::Join: {
      std::optional<std::string> sep;
      if (!n.args.empty() && !argString(*this, n, 0, c, sep)) return false;
      std::string r;
      for (std::size_t i = 0; i < in.size(); ++i) {
        if (i) r += sep.value_or("");
        r += in[i].str();
      }
      out.push_back(makeString(std::move(r)));
      return true;
    }
    case Fn::Abs:
    case Fn::Ceiling:
    case Fn::Exp:
    case Fn::Floor:
    case Fn::Ln:
    case Fn::Log:
    case Fn::Power:
    case Fn::Round:
    case Fn::Sqrt:
    case Fn::Truncate: {
      const Value* v;
      if (!single(in, v, c, n.name.c_str())) return false;
      if (!v) return true;
      Value q;
      if (n.fn == Fn::Abs && quantityOf(*v, q)) {
        q.decimal = std::fabs(q.decimal);
        out.push_back(std::move(q));
        return true;
      }
      if (v->kind != Kind::Integer && v->kind != Kind::Decimal) return fail(c, n.name + "() applies to numbers");
      long double x = v->kind == Kind::Integer ? v->integer : v->decimal;
      long double arg = 0;
      if (n.fn == Fn::Log || n.fn == Fn::Power || (n.fn == Fn::Round && !n.args.empty())) {
        Collection r;
        if (n.args.size() != 1 || !eval(*n.args[0], c, r))
          return n.args.size() == 1 ? false : fail(c, n.name + "(): one argument");
        const Value* a;
        if (!single(r, a, c, "argument")) return false;
        if (!a) return true;
        if (a->kind != Kind::Integer && a->kind != Kind::Decimal)
          return fail(c, n.name + "(): the argument is not a number");
        arg = a->kind == Kind::Integer ? a->integer : a->decimal;
        if (n.fn == Fn::Power && v->kind == Kind::Integer && a->kind == Kind::Integer && a->integer >= 0) {
          out.push_back(makeInteger(static_cast<std::int64_t>(std::llround(std::pow(x, arg)))));
          return true;
        }
      }
      auto decimal = [&out](long double d) {
        if (std::isnan(d) || std::isinf(d)) return;
        int scale = 0;
        long double f = 1;
        while (scale < 8 && std::fabs(std::round(d * f) - d * f) > 1e-9L * f) {
          ++scale;
          f *= 10;
        }
        out.push_back(makeDecimal(d, scale));
      };
      switch (n.fn) {
        case Fn::Abs:
          if (v->kind == Kind::Integer)
            out.push_back(makeInteger(std::llabs(v->integer)));
          else
            out.push_back(makeDecimal(std::fabs(x), scaleOf(*v)));
          break;
        case Fn::Ceiling: out.push_back(makeInteger(static_cast<std::int64_t>(std::ceil(x)))); break;
        case Fn::Floor: out.push_back(makeInteger(static_cast<std::int64_t>(std::floor(x)))); break;
        case Fn::Truncate: out.push_back(makeInteger(static_cast<std::int64_t>(std::trunc(x)))); break;
        case Fn::Exp: decimal(std::exp(x)); break;
        case Fn::Ln: decimal(std::log(x)); break;
        case Fn::Log: decimal(std::log(x) / std::log(arg)); break;
        case Fn::Power: decimal(std::pow(x, arg)); break;
        case Fn::Sqrt:
          if (x >= 0) decimal(std::sqrt(x));
          break;
        default: {  // round
          int digits = static_cast<int>(arg);
          if (digits < 0) return fail(c, "round(): negative precision");
          long double f = std::pow(10.0L, digits);
          out.push_back(makeDecimal(std::round(x * f) / f, digits));
        }
      }
      return true;
    }
    case Fn::Children:
      for (const Value& v : in) children(v, out);
      return true;
    case Fn::Descendants: {
      Collection level(in), next;
      while (!level.empty()) {
        next.clear();
        for (const Value& v : level) children(v, next);
        out.insert(out.end(), next.begin(), next.end());
        level.swap(next);
      }
      return true;
    }
    case Fn::Trace: out.insert(out.end(), in.begin(), in.end()); return true;
    case Fn::Now:
    case Fn::Today:
    case Fn::TimeOfDay: {
      auto now = std::chrono::system_clock::now();
      std::time_t t = std::chrono::system_clock::to_time_t(now);
      std::tm tm{};
      gmtime_r(&t, &tm);
      DateTimeParts p;
      p.year = tm.tm_year + 1900;
      p.month = tm.tm_mon + 1;
      p.day = tm.tm_mday;
      p.hour = tm.tm_hour;
      p.minute = tm.tm_min;
      p.second = tm.tm_sec;
      p.millis = static_cast<int>(
          std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count() % 1000);
      p.hasTz = true;
      if (n.fn == Fn::Today) {
        p.precision = 3;
        out.push_back(makeTemporal(Kind::Date, formatDateTime(p, true, false)));
      } else {
        p.precision = 7;
        bool time = n.fn == Fn::TimeOfDay;
        out.push_back(makeTemporal(time ? Kind::Time : Kind::DateTime, formatDateTime(p, false, time)));
      }
      return true;
    }
    case Fn::Not: {
      std::optional<bool> b;
      if (!asBoolean(in, b, c, "not()")) return false;
      if (b) out.push_back(makeBoolean(!*b));
      return true;
    }
    case Fn::Extension: {
      if (!arity(1, 1)) return false;
      std::optional<std::string> url;
      if (!argString(*this, n, 0, c, url)) return false;
      if (!url) return true;
      Collection exts;
      for (const Value& v : in)
        if (!navigate(v, "extension", exts, c)) return false;
      for (Value& e : exts) {
        std::string_view u;
        if (e.node.get_object().error() == simdjson::SUCCESS &&
            e.node.get_object().value_unsafe().at_key("url").get_string().get(u) == simdjson::SUCCESS && u == *url)
          out.push_back(std::move(e));
      }
      return true;
    }
    case Fn::HasValue:
      out.push_back(makeBoolean(in.size() == 1 && in[0].isNode && in[0].kind != Kind::Object && in[0].hasJson));
      return true;
    case Fn::GetValue:
      if (in.size() == 1 && in[0].isNode && in[0].kind != Kind::Object && in[0].hasJson) {
        Value v = in[0];
        if (v.kind == Kind::String || v.kind == Kind::Date || v.kind == Kind::DateTime || v.kind == Kind::Time)
          v.text = std::string(v.view);
        v.isNode = false;
        v.fhirType = {};
        out.push_back(std::move(v));
      }
      return true;
    case Fn::Resolve: {
      // Local references only: "#id" to a contained resource, and entries of a Bundle by fullUrl
      // or by "Type/id".
      for (const Value& v : in) {
        std::string_view ref;
        if (v.kind == Kind::String) {
          ref = v.str();
        } else if (v.kind == Kind::Object && v.isNode) {
          if (v.node.get_object().value_unsafe().at_key("reference").get_string().get(ref) != simdjson::SUCCESS)
            continue;
        } else {
          continue;
        }
        object root;
        if (c.resource.get_object().get(root) != simdjson::SUCCESS) continue;
        if (!ref.empty() && ref[0] == '#') {
          simdjson::dom::array contained;
          if (root.at_key("contained").get_array().get(contained) != simdjson::SUCCESS) continue;
          for (element r : contained) {
            std::string_view id;
            if (r.get_object().value_unsafe().at_key("id").get_string().get(id) == simdjson::SUCCESS &&
                id == ref.substr(1))
              out.push_back(makeNode(r, true, r, false, nullptr));
          }
          continue;
        }
        simdjson::dom::array entries;
        if (root.at_key("entry").get_array().get(entries) != simdjson::SUCCESS) continue;
        for (element e : entries) {
          object eo;
          element r;
          if (e.get_object().get(eo) != simdjson::SUCCESS || eo.at_key("resource").get(r) != simdjson::SUCCESS)
            continue;
          std::string_view fullUrl, type, id;
          if (eo.at_key("fullUrl").get_string().get(fullUrl) != simdjson::SUCCESS) fullUrl = {};
          if (r.get_object().value_unsafe().at_key("resourceType").get_string().get(type) != simdjson::SUCCESS)
            type = {};
          if (r.get_object().value_unsafe().at_key("id").get_string().get(id) != simdjson::SUCCESS) id = {};
          bool match =
              fullUrl == ref ||
              (!type.empty() && ref.size() == type.size() + 1 + id.size() && ref.substr(0, type.size()) == type &&
               ref[type.size()] == '/' && ref.substr(type.size() + 1) == id) ||
              (ref.size() > type.size() + id.size() + 1 && fullUrl.size() >= ref.size() &&
               fullUrl.substr(fullUrl.size() - ref.size()) == ref);
          if (match) out.push_back(makeNode(r, true, r, false, nullptr));
        }
      }
      return true;
    }
    case Fn::HtmlChecks:
      // The narrative's XHTML is checked by the base validator (validation/xhtml_check.h).
      out.push_back(makeBoolean(true));
      return true;
    case Fn::ConformsTo: {
      // Base definitions are checked by type; other profiles are not known here and are assumed
      // to be checked by the profile validator, so they count as met.
      if (!arity(1, 1)) return false;
      std::optional<std::string> url;
      if (!argString(*this, n, 0, c, url)) return false;
      if (!url) return true;
      static constexpr std::string_view base = "http://hl7.org/fhir/StructureDefinition/";
      if (url->find("/StructureDefinition/") == std::string::npos)
        return fail(c, "conformsTo(): not a profile url: " + *url);
      for (const Value& v : in) {
        if (url->rfind(base, 0) == 0) {
          std::string type = url->substr(base.size());
          if (fhirTypeKnown(type)) {
            out.push_back(makeBoolean(fhirDerives(v.fhirType, type, v)));
            continue;
          }
        }
        out.push_back(makeBoolean(true));
      }
      return true;
    }
    case Fn::MemberOf:
      // Terminology is not available to expressions: unknown.
      return true;
    case Fn::Aggregate: {
      if (!arity(1, 2)) return false;
      Collection total;
      if (n.args.size() == 2 && !eval(*n.args[1], c, total)) return false;
      for (std::size_t i = 0; i < in.size(); ++i) {
        Ctx inner = c;
        inner.total = &total;
        Collection next;
        if (!evalOn(*n.args[0], inner, in[i], static_cast<std::int64_t>(i), next)) return false;
        total.swap(next);
      }
      out.insert(out.end(), total.begin(), total.end());
      return true;
    }
    case Fn::Type:
      // A ClassInfo: navigated to its name and namespace only.
      for (const Value& v : in) {
        Value t;
        t.kind = Kind::Object;
        t.fhirType = "ClassInfo";
        t.text = v.isNode ? "FHIR|" + std::string(v.fhirType) : "System|" + std::string(systemName(v.kind));
        out.push_back(std::move(t));
      }
      return true;
    case Fn::Sort: {
      // Each argument is a key; a key written -expr sorts descending.
      std::vector<const Node*> keys;
      std::vector<bool> descending;
      for (const auto& a : n.args) {
        const Node* k = a.get();
        bool desc = k->op == Op::Negate;
        keys.push_back(desc ? k->args[0].get() : k);
        descending.push_back(desc);
      }
      std::vector<Collection> values(in.size() * std::max<std::size_t>(1, keys.size()));
      for (std::size_t i = 0; i < in.size(); ++i) {
        if (keys.empty()) {
          values[i].push_back(in[i]);
          continue;
        }
        for (std::size_t k = 0; k < keys.size(); ++k) {
          Collection& kv = values[i * keys.size() + k];
          if (!evalOn(*keys[k], c, in[i], static_cast<std::int64_t>(i), kv)) return false;
          if (kv.size() > 1) return fail(c, "sort(): a key gives several items");
        }
      }
      std::vector<std::size_t> order(in.size());
      for (std::size_t i = 0; i < order.size(); ++i) order[i] = i;
      bool comparable = true;
      std::size_t width = std::max<std::size_t>(1, keys.size());
      std::stable_sort(order.begin(), order.end(), [&](std::size_t x, std::size_t y) {
        for (std::size_t k = 0; k < width; ++k) {
          const Collection& a = values[x * width + k];
          const Collection& b = values[y * width + k];
          bool desc = !keys.empty() && descending[k];
          if (a.empty() || b.empty()) {
            if (a.empty() == b.empty()) continue;
            return a.empty();  // no key: first, whatever the direction
          }
          bool ok;
          auto r = compareItems(a[0], b[0], ok);
          if (!ok) comparable = false;
          if (!r || *r == 0) continue;
          return desc ? *r > 0 : *r < 0;
        }
        return false;
      });
      if (!comparable) return fail(c, "sort(): keys that cannot be compared");
      for (std::size_t i : order) out.push_back(in[i]);
      return true;
    }
    case Fn::Precision: {
      const Value* v;
      if (!single(in, v, c, "precision()")) return false;
      if (!v) return true;
      if (v->kind == Kind::Decimal || v->kind == Kind::Integer) {
        out.push_back(makeInteger(scaleOf(*v)));
      } else if (v->kind == Kind::Date || v->kind == Kind::DateTime || v->kind == Kind::Time) {
        DateTimeParts p;
        if (parseDateTime(v->str(), v->kind == Kind::Time, p))
          out.push_back(makeInteger(temporalDigits(p.precision, v->kind == Kind::Time)));
      }
      return true;
    }
    case Fn::LowBoundary:
    case Fn::HighBoundary: {
      if (!arity(0, 1)) return false;
      const Value* v;
      if (!single(in, v, c, n.name.c_str())) return false;
      std::optional<std::int64_t> digits;
      if (!n.args.empty() && !argInteger(*this, n, 0, c, digits)) return false;
      if (!v) return true;
      Value q;
      if (v->kind == Kind::Object && quantityOf(*v, q)) return boundary(q, n.fn == Fn::HighBoundary, digits, out);
      return boundary(*v, n.fn == Fn::HighBoundary, digits, out);
    }
    case Fn::Encode:
    case Fn::Decode:
    case Fn::Escape:
    case Fn::Unescape: {
      if (!arity(1, 1)) return false;
      const Value* v;
      if (!stringInput(in, v, c, n.name.c_str())) return false;
      std::optional<std::string> format;
      if (!argString(*this, n, 0, c, format)) return false;
      if (!v || !format) return true;
      std::string_view s = v->str();
      std::string r;
      if (n.fn == Fn::Encode) {
        if (*format == "base64" || *format == "urlbase64") {
          r = base64::encode(s);
          if (*format == "urlbase64")
            for (char& ch : r) ch = ch == '+' ? '-' : ch == '/' ? '_' : ch;
        } else if (*format == "hex") {
          static const char* hex = "0123456789abcdef";
          for (unsigned char ch : s) {
            r += hex[ch >> 4];
            r += hex[ch & 15];
          }
        } else {
          return true;
        }
      } else if (n.fn == Fn::Decode) {
        if (*format == "base64" || *format == "urlbase64") {
          std::string text(s);
          if (*format == "urlbase64")
            for (char& ch : text) ch = ch == '-' ? '+' : ch == '_' ? '/' : ch;
          if (!base64::decode(text, r)) return true;
        } else if (*format == "hex") {
          if (s.size() % 2) return true;
          for (std::size_t i = 0; i < s.size(); i += 2)
            r += static_cast<char>(std::stoi(std::string(s.substr(i, 2)), nullptr, 16));
        } else {
          return true;
        }
      } else if (*format == "html") {
        static const std::pair<char, std::string_view> entities[] = {
            {'&', "&amp;"}, {'<', "&lt;"}, {'>', "&gt;"}, {'"', "&quot;"}, {'\'', "&#39;"}};
        if (n.fn == Fn::Escape) {
          for (char ch : s) {
            bool done = false;
            for (const auto& e : entities)
              if (e.first == ch) {
                r += e.second;
                done = true;
              }
            if (!done) r += ch;
          }
        } else {
          for (std::size_t i = 0; i < s.size(); ++i) {
            bool done = false;
            for (const auto& e : entities)
              if (s.substr(i, e.second.size()) == e.second) {
                r += e.first;
                i += e.second.size() - 1;
                done = true;
                break;
              }
            if (!done) r += s[i];
          }
        }
      } else if (*format == "json") {
        if (n.fn == Fn::Escape) {
          for (char ch : s) {
            if (ch == '"' || ch == '\\') r += '\\';
            if (ch == '\n')
              r += "\\n";
            else if (ch == '\t')
              r += "\\t";
            else if (ch == '\r')
              r += "\\r";
            else
              r += ch;
          }
        } else {
          for (std::size_t i = 0; i < s.size(); ++i) {
            if (s[i] == '\\' && i + 1 < s.size()) {
              char e = s[++i];
              r += e == 'n' ? '\n' : e == 't' ? '\t' : e == 'r' ? '\r' : e;
            } else {
              r += s[i];
            }
          }
        }
      } else {
        return true;
      }
      out.push_back(makeString(std::move(r)));
      return true;
    }
    case Fn::Comparable: {
      if (!arity(1, 1)) return false;
      const Value* v;
      if (!single(in, v, c, "comparable()")) return false;
      Temp t(*this);
      if (!eval(*n.args[0], c, *t)) return false;
      const Value* w;
      if (!single(*t, w, c, "comparable()")) return false;
      Value qa, qb;
      if (!v || !w) return true;
      if (!quantityOf(*v, qa) || !quantityOf(*w, qb)) return fail(c, "comparable() applies to quantities");
      out.push_back(makeBoolean(unitsComparable(qa, qb)));
      return true;
    }
    case Fn::MatchesFull: {
      if (!arity(1, 1)) return false;
      const Value* v;
      if (!stringInput(in, v, c, "matchesFull")) return false;
      std::optional<std::string> re;
      if (!argString(*this, n, 0, c, re)) return false;
      if (!v || !re) return true;
      std::regex local;
      const std::regex* rx = regexFor(n, *re, local, c);
      if (!rx) return false;
      std::string_view s = v->str();
      if (s.size() > kMaxRegexInput) return fail(c, "matchesFull(): string too long");
      out.push_back(makeBoolean(std::regex_match(s.begin(), s.end(), *rx)));
      return true;
    }
    case Fn::None: break;
  }
  return fail(c, n.name + "() is not supported");
}

Temp::Temp(Evaluator& ev) : ev_(ev), c_(ev.acquire()) {}
Temp::~Temp() { ev_.release(c_); }

Value rootValue(element e, std::string_view typeName) {
  // A primitive focus of a FHIR type ("string", "date"): read as an element of that type is (FHIR's
  // string, not System's), as a child found through its definition would be.
  Prim prim = typeName.empty() || e.type() == element_type::OBJECT || e.type() == element_type::ARRAY
                  ? Prim::None
                  : validation::primNamed(typeName);
  if (prim != Prim::None) {
    Value v;
    v.isNode = true;
    v.node = e;
    v.hasJson = true;
    v.ext = e;
    v.kind = kindOf(prim);
    v.fhirType = validation::primName(prim);
    readScalar(e, v);
    return v;
  }
  Value v = makeNode(e, true, e, false, nullptr);
  if (v.kind == Kind::Object && v.typeIndex < 0 && !typeName.empty()) {
    // Callers evaluate many invariants on elements of one type in a row: remember the last name.
    thread_local std::string lastName;
    thread_local int lastIndex = -1;
    if (typeName != lastName) {
      lastName = std::string(typeName);
      lastIndex = tables().typeIndex(typeName);
    }
    v.typeIndex = lastIndex;
    if (v.typeIndex >= 0) v.fhirType = tables().type(v.typeIndex).name;
  }
  return v;
}

}  // namespace

Expression::~Expression() = default;

std::shared_ptr<const Expression> Expression::compile(std::string_view text, std::string& error) {
  try {
    return compileUnguarded(text, error);
  } catch (const std::bad_alloc&) {
    throw;
  } catch (const std::exception& ex) {  // a number or an escape out of range, say
    error = std::string("the expression cannot be read: ") + ex.what();
    return nullptr;
  }
}

std::shared_ptr<const Expression> Expression::compileUnguarded(std::string_view text, std::string& error) {
  auto root = parse(text, error);
  if (!root) return nullptr;
  resolveTypes(*root);
  markPathRoots(*root);
  if (!prepareRegexes(*root, error)) return nullptr;
  std::shared_ptr<Expression> e(new Expression());
  e->text_ = std::string(text);
  e->root_ = std::move(root);
  return e;
}

bool Expression::evaluate(simdjson::dom::element focus, simdjson::dom::element resource, Collection& out,
                          std::string& error, std::string_view focusType) const {
  out.clear();
  error.clear();
  Value focusValue = rootValue(focus, focusType);
  bool sameRoot = focusType.empty() && focus.type() == resource.type() && focus.type() == element_type::OBJECT &&
                  focus.get_object().value_unsafe().begin() == resource.get_object().value_unsafe().begin();
  Ctx c;
  c.resource = resource;
  c.thisItems = &focusValue;
  c.thisCount = 1;
  c.context = &focusValue;
  c.rootIsResource = sameRoot;
  c.error = &error;
  thread_local Evaluator ev;
  bool ok = false;
  try {
    ok = ev.eval(*root_, c, out);
  } catch (const std::bad_alloc&) {
    throw;
  } catch (const std::exception& ex) {  // a conversion out of range ('99999999999999999999'.toInteger())
    error = std::string("evaluation failed: ") + ex.what();
  }
  if (!ok) {
    if (error.empty()) error = "evaluation error";
    out.clear();
    return false;
  }
  return true;
}

bool Expression::holds(simdjson::dom::element focus, simdjson::dom::element resource, bool& result, std::string& error,
                       std::string_view focusType) const {
  thread_local Collection out;
  result = false;
  if (!evaluate(focus, resource, out, error, focusType)) return false;
  if (out.size() > 1) {
    error = "the invariant gives " + std::to_string(out.size()) + " items";
    return false;
  }
  result = out.size() == 1 && (out[0].kind != Kind::Boolean || out[0].boolean);
  return true;
}

}  // namespace passerelle::fhir::fhirpath
