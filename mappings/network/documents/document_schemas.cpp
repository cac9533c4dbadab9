// Compiles the embedded JSON Schemas with valijson once, and turns valijson's results into one issue
// per failing member, with a dotted path and a sentence that names the expected value.
#include "mappings/network/documents/document_schemas.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <deque>
#include <map>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <valijson/adapters/nlohmann_json_adapter.hpp>
#include <valijson/schema.hpp>
#include <valijson/schema_parser.hpp>
#include <valijson/validation_results.hpp>
#include <valijson/validator.hpp>

#include "mappings/common/embedded_file.h"

namespace passerelle {
// schemas/network/*.schema.json and xsd/*.xsd (cmake: passerelle_embed_files).
const std::vector<EmbeddedFile>& networkDocumentFiles();
}  // namespace passerelle

namespace passerelle::network {
namespace {

using PlainJson = nlohmann::json;  // what valijson's adapter reads

constexpr std::string_view kCommonFile = "common.schema.json";
constexpr std::string_view kKinds[] = {
    "professional",  "structure", "inclusion",       "consent", "consent-renewal", "consent-withdrawal", "cied", "csb",
    "liaison-sheet", "referral",  "referral-update", "exit",    "opera-enrolment", "opera-activity"};
constexpr std::size_t kMaxIssues = 100;

std::string_view embedded(std::string_view name) {
  for (const EmbeddedFile& f : networkDocumentFiles())
    if (f.name == name) return f.contents;
  return {};
}

// Two keywords are checked here after valijson (checkExtras) rather than by it: "format" (valijson
// applies it to any value, throws on non-empty objects and compiles a regular expression per call) and
// "multipleOf" (valijson compares the remainder with the machine epsilon: 7.5 is no multiple of 0.1).
void dropKeywordsCheckedHere(PlainJson& node) {
  if (node.is_object()) {
    auto f = node.find("format");
    if (f != node.end() && f->is_string()) node.erase(f);
    auto m = node.find("multipleOf");
    if (m != node.end() && m->is_number()) node.erase(m);
    for (auto& [k, v] : node.items()) dropKeywordsCheckedHere(v);
  } else if (node.is_array()) {
    for (auto& v : node) dropKeywordsCheckedHere(v);
  }
}

// Whether `value` is a whole multiple of `step`, with a tolerance for binary fractions (0.1).
bool isMultipleOf(double value, double step) {
  if (!(step > 0) || !std::isfinite(value)) return false;
  double q = value / step;
  return std::fabs(q - std::round(q)) <= 1e-9 * std::max(1.0, std::fabs(q));
}

// The message for a number that is no multiple of `step`: "at most 1 decimal" for 0.1.
std::string multipleMessage(const std::string& value, double step, const std::string& stepText) {
  for (int k = 1; k <= 6; ++k)
    if (std::fabs(step - std::pow(10.0, -k)) < 1e-12)
      return value + " has too many decimals (at most " + std::to_string(k) + ")";
  return value + " is not a multiple of " + stepText;
}

bool startsWith(std::string_view s, std::string_view prefix) { return s.substr(0, prefix.size()) == prefix; }

std::string join(const std::string& path, std::string_view member) {
  return path.empty() ? std::string(member) : path + "." + std::string(member);
}

bool atOrBelow(const std::string& issuePath, const std::string& path) {
  if (path.empty()) return true;
  if (!startsWith(issuePath, path)) return false;
  return issuePath.size() == path.size() || issuePath[path.size()] == '.' || issuePath[path.size()] == '[';
}

// The text between the first pair of single quotes in a valijson message.
std::string quoted(const std::string& s) {
  auto a = s.find('\'');
  if (a == std::string::npos) return {};
  auto b = s.find('\'', a + 1);
  return b == std::string::npos ? std::string() : s.substr(a + 1, b - a - 1);
}

// The first unsigned number in a valijson message ("no more than 1 elements").
std::string firstNumber(const std::string& s) {
  auto a = s.find_first_of("0123456789");
  if (a == std::string::npos) return {};
  auto b = s.find_first_not_of("0123456789", a);
  return s.substr(a, b == std::string::npos ? std::string::npos : b - a);
}

std::string shortJson(const PlainJson* v) {
  if (v == nullptr) return "the value";
  std::string text = v->dump(-1, ' ', false, PlainJson::error_handler_t::replace);
  if (text.size() > 60) text = text.substr(0, 57) + "...";
  return text;
}

std::string numberText(const Json& n) {
  if (n.is_number_float()) {
    double d = n.get<double>();
    char buf[64];
    auto r = std::to_chars(buf, buf + sizeof buf, d);
    return std::string(buf, r.ptr);
  }
  return n.dump();
}

std::string listOf(const Json& values) {
  std::string out;
  for (const auto& v : values) {
    if (!out.empty()) out += ", ";
    out += v.is_string() ? v.get<std::string>() : v.dump();
  }
  return out;
}

std::string quotedNames(const std::vector<std::string>& names) {
  std::string out;
  for (std::size_t i = 0; i < names.size(); ++i) {
    if (i > 0) out += i + 1 == names.size() ? " or " : ", ";
    out += "'" + names[i] + "'";
  }
  return out;
}

const char* kindName(ValueShape::Kind k) {
  switch (k) {
    case ValueShape::Kind::kObject: return "an object";
    case ValueShape::Kind::kArray: return "an array";
    case ValueShape::Kind::kString: return "a string";
    case ValueShape::Kind::kInteger: return "an integer";
    case ValueShape::Kind::kNumber: return "a number";
    case ValueShape::Kind::kBoolean: return "true or false";
  }
  return "a value";
}

const char* jsonTypeName(const PlainJson* v) {
  if (v == nullptr) return "nothing";
  switch (v->type()) {
    case PlainJson::value_t::object: return "an object";
    case PlainJson::value_t::array: return "an array";
    case PlainJson::value_t::string: return "a string";
    case PlainJson::value_t::boolean: return "a boolean";
    case PlainJson::value_t::number_float: return "a number with decimals";
    case PlainJson::value_t::number_integer:
    case PlainJson::value_t::number_unsigned: return "an integer";
    case PlainJson::value_t::null: return "null";
    default: return "another type";
  }
}

// The members each alternative of a oneOf/anyOf requires, when every alternative is {required: [x]}.
std::vector<std::string> alternativeMembers(const Json* schema, const char* keyword) {
  std::vector<std::string> names;
  if (schema == nullptr || !schema->contains(keyword)) return names;
  for (const auto& alt : schema->at(keyword)) {
    if (!alt.is_object() || alt.size() != 1 || !alt.contains("required") || alt.at("required").size() != 1) return {};
    names.push_back(alt.at("required").at(0).get<std::string>());
  }
  return names;
}

bool isCalendarDate(std::string_view s, bool& wellFormed) {
  wellFormed = s.size() == 10 && s[4] == '-' && s[7] == '-';
  for (std::size_t i : {0, 1, 2, 3, 5, 6, 8, 9})
    if (wellFormed && (s[i] < '0' || s[i] > '9')) wellFormed = false;
  if (!wellFormed) return false;
  int y = std::stoi(std::string(s.substr(0, 4))), m = std::stoi(std::string(s.substr(5, 2))),
      d = std::stoi(std::string(s.substr(8, 2)));
  static constexpr int kDays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  if (m < 1 || m > 12 || d < 1) return false;
  bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
  return d <= kDays[m - 1] + (m == 2 && leap ? 1 : 0);
}

bool isBase64(std::string_view s) {
  if (s.size() % 4 != 0) return false;
  std::size_t pad = 0;
  for (std::size_t i = 0; i < s.size(); ++i) {
    char c = s[i];
    bool alpha = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '+' || c == '/';
    if (c == '=') {
      ++pad;
    } else if (!alpha || pad > 0) {
      return false;
    }
  }
  return pad <= 2;
}

struct KindEntry {
  std::string_view schemaText;
  std::string_view xsdText;
  Json schema;
  std::unique_ptr<valijson::Schema> compiled;
  const ValueShape* root = nullptr;
  std::string loadError;
};

// A place in the document found from valijson's context ["<root>", "[patient]", "[given]", "[0]"].
struct Place {
  std::string path;
  const ValueShape* shape = nullptr;
  const PlainJson* value = nullptr;
};

}  // namespace

const ValueShape::Member* ValueShape::member(std::string_view name) const {
  for (const Member& m : members)
    if (m.name == name) return &m;
  return nullptr;
}

struct DocumentSchemas::Impl {
  Json common;
  PlainJson commonPlain;
  std::deque<ValueShape> shapes;
  std::map<std::string, const ValueShape*, std::less<>> shapeCache;  // "file#Name" -> shape
  std::map<std::string, KindEntry, std::less<>> kinds;

  void load();
  void loadKind(std::string_view kind, KindEntry& e);
  const ValueShape* build(const Json& node, const Json& doc, std::string_view docName, int depth);
  Place locate(const std::vector<std::string>& context, const ValueShape* root, const PlainJson& doc) const;
  void translate(const valijson::ValidationResults& results, const ValueShape* root, const PlainJson& doc,
                 std::vector<DocumentIssue>& issues) const;
  void checkExtras(const Json& v, const ValueShape* s, const std::string& path,
                   std::vector<DocumentIssue>& issues) const;
};

void DocumentSchemas::Impl::load() {
  std::string_view commonText = embedded(kCommonFile);
  std::string commonError;
  try {
    common = Json::parse(commonText);
    commonPlain = PlainJson::parse(commonText);
    dropKeywordsCheckedHere(commonPlain);
  } catch (const std::exception& ex) {
    commonError = std::string("common.schema.json cannot be read: ") + ex.what();
  }
  for (std::string_view kind : kKinds) {
    KindEntry& e = kinds[std::string(kind)];
    e.schemaText = embedded(std::string(kind) + ".schema.json");
    e.xsdText = embedded("xsd/" + std::string(kind) + ".xsd");
    if (!commonError.empty()) {
      e.loadError = commonError;
      continue;
    }
    try {
      loadKind(kind, e);
    } catch (const std::exception& ex) {
      e.loadError = "the schema of '" + std::string(kind) + "' cannot be loaded: " + ex.what();
      e.compiled.reset();
      e.root = nullptr;
    }
  }
}

void DocumentSchemas::Impl::loadKind(std::string_view kind, KindEntry& e) {
  if (e.schemaText.empty()) throw std::runtime_error("it is not embedded");
  e.schema = Json::parse(e.schemaText);
  PlainJson plain = PlainJson::parse(e.schemaText);
  dropKeywordsCheckedHere(plain);

  e.compiled = std::make_unique<valijson::Schema>();
  valijson::SchemaParser parser(valijson::SchemaParser::kDraft7);
  valijson::adapters::NlohmannJsonAdapter adapter(plain);
  const PlainJson* commonDoc = &commonPlain;
  auto fetch = [commonDoc](const std::string& uri) -> const PlainJson* {
    std::string_view u(uri);
    if (u == kCommonFile || (u.size() > kCommonFile.size() &&
                             u.substr(u.size() - kCommonFile.size() - 1) == "/" + std::string(kCommonFile)))
      return new PlainJson(*commonDoc);
    return nullptr;  // no other document may be referenced (and nothing is fetched from the network)
  };
  auto release = [](const PlainJson* doc) { delete doc; };
  parser.populateSchema(adapter, *e.compiled, fetch, release);

  std::string file = std::string(kind) + ".schema.json";
  e.root = build(e.schema, e.schema, file, 0);
  if (e.root->kind != ValueShape::Kind::kObject) throw std::runtime_error("the document is not an object");
}

const ValueShape* DocumentSchemas::Impl::build(const Json& node, const Json& doc, std::string_view docName, int depth) {
  if (depth > 32) throw std::runtime_error("schema nested too deep (or a $ref cycle)");
  const Json* n = &node;
  const Json* d = &doc;
  std::string file(docName), key;
  for (int hops = 0; n->is_object() && n->contains("$ref"); ++hops) {
    if (hops > 8) throw std::runtime_error("$ref chain too long");
    std::string ref = n->at("$ref").get<std::string>();
    auto hash = ref.find('#');
    std::string target = hash == std::string::npos ? ref : ref.substr(0, hash);
    std::string pointer = hash == std::string::npos ? std::string() : ref.substr(hash + 1);
    if (!target.empty()) {
      if (target != kCommonFile) throw std::runtime_error("unsupported $ref " + ref);
      file = target;
      d = &common;
    }
    if (!startsWith(pointer, "/definitions/")) throw std::runtime_error("unsupported $ref " + ref);
    std::string name = pointer.substr(13);
    key = file + "#" + name;
    if (auto it = shapeCache.find(key); it != shapeCache.end()) return it->second;
    n = &d->at("definitions").at(name);
  }
  ValueShape& s = shapes.emplace_back();
  if (!key.empty()) shapeCache[key] = &s;
  s.schema = n;
  std::string type = n->is_object() ? n->value("type", "") : "";
  if (type == "object") {
    s.kind = ValueShape::Kind::kObject;
    std::vector<std::string> required;
    if (n->contains("required")) required = n->at("required").get<std::vector<std::string>>();
    if (n->contains("properties")) {
      for (const auto& [name, sub] : n->at("properties").items()) {
        bool req = std::find(required.begin(), required.end(), name) != required.end();
        s.members.push_back({name, build(sub, *d, file, depth + 1), req});
      }
    }
  } else if (type == "array") {
    s.kind = ValueShape::Kind::kArray;
    s.items = build(n->at("items"), *d, file, depth + 1);
  } else if (type == "integer") {
    s.kind = ValueShape::Kind::kInteger;
  } else if (type == "number") {
    s.kind = ValueShape::Kind::kNumber;
  } else if (type == "boolean") {
    s.kind = ValueShape::Kind::kBoolean;
  } else if (type == "string") {
    s.kind = ValueShape::Kind::kString;
    s.date = n->value("format", "") == "date";
    s.base64 = n->value("contentEncoding", "") == "base64";
  } else {
    throw std::runtime_error("a schema without a supported type: " + n->dump());
  }
  return &s;
}

Place DocumentSchemas::Impl::locate(const std::vector<std::string>& context, const ValueShape* root,
                                    const PlainJson& doc) const {
  Place p{"", root, &doc};
  for (std::size_t i = 1; i < context.size(); ++i) {
    std::string step = context[i];
    if (step.size() >= 2 && step.front() == '[' && step.back() == ']') step = step.substr(1, step.size() - 2);
    bool inArray = (p.value != nullptr && p.value->is_array()) ||
                   (p.value == nullptr && p.shape != nullptr && p.shape->kind == ValueShape::Kind::kArray);
    if (inArray) {
      std::size_t index = 0;
      std::from_chars(step.data(), step.data() + step.size(), index);
      p.path += "[" + step + "]";
      p.value = (p.value != nullptr && index < p.value->size()) ? &(*p.value)[index] : nullptr;
      p.shape = p.shape != nullptr ? p.shape->items : nullptr;
    } else {
      p.path = join(p.path, step);
      const PlainJson* next = nullptr;
      if (p.value != nullptr && p.value->is_object()) {
        auto it = p.value->find(step);
        if (it != p.value->end()) next = &*it;
      }
      p.value = next;
      const ValueShape::Member* m = p.shape != nullptr ? p.shape->member(step) : nullptr;
      p.shape = m != nullptr ? m->shape : nullptr;
    }
  }
  return p;
}

void DocumentSchemas::Impl::translate(const valijson::ValidationResults& results, const ValueShape* root,
                                      const PlainJson& doc, std::vector<DocumentIssue>& issues) const {
  auto add = [&](const std::string& path, std::string message) {
    for (const DocumentIssue& i : issues)
      if (i.path == path && i.message == message) return;
    if (issues.size() < kMaxIssues) issues.push_back({path, std::move(message)});
  };
  auto covered = [&](const std::string& path) {
    return std::any_of(issues.begin(), issues.end(), [&](const DocumentIssue& i) { return atOrBelow(i.path, path); });
  };
  std::vector<std::string> wrongType;  // paths whose value has the wrong type
  for (const auto& err : results) {
    Place at = locate(err.context, root, doc);
    const std::string& d = err.description;
    const Json* schema = at.shape != nullptr ? at.shape->schema : nullptr;
    auto constraint = [&](const char* key) -> const Json* {
      return schema != nullptr && schema->contains(key) ? &schema->at(key) : nullptr;
    };
    std::string value = shortJson(at.value);

    if (startsWith(d, "Missing required property '")) {
      std::string name = quoted(d);
      add(join(at.path, name), "required member '" + name + "' is missing");
    } else if (startsWith(d, "Object contains a property that could not be validated")) {
      bool listed = false;
      if (at.value != nullptr && at.value->is_object() && at.shape != nullptr) {
        for (const auto& [k, v] : at.value->items()) {
          if (at.shape->member(k) == nullptr) {
            add(join(at.path, k), "member '" + k + "' is not allowed here");
            listed = true;
          }
        }
      }
      if (!listed) add(join(at.path, quoted(d)), "member '" + quoted(d) + "' is not allowed here");
    } else if (d == "Value type not permitted by 'type' constraint.") {
      wrongType.push_back(at.path);
      add(at.path, std::string("must be ") + (at.shape ? kindName(at.shape->kind) : "of another type") + ", not " +
                       jsonTypeName(at.value));
    } else if (d == "Failed to match against any enum values.") {
      const Json* values = constraint("enum");
      bool declared = false;
      if (values != nullptr && at.value != nullptr)
        for (const auto& v : *values) declared = declared || PlainJson(v) == *at.value;
      if (values != nullptr && !declared)
        add(at.path, value + " is not one of: " + listOf(*values));
      else
        add(at.path, value + " is not allowed here: the allowed values depend on the document's other members");
    } else if (d == "Failed to match expected value set by 'const' constraint.") {
      const Json* c = constraint("const");
      add(at.path, c != nullptr ? "must be " + c->dump() + ", not " + value : value + " is not the expected value");
    } else if (d == "Failed to match regex specified by 'pattern' constraint.") {
      const Json* pattern = constraint("pattern");
      std::string what = pattern != nullptr ? "the pattern " + pattern->get<std::string>() : "the expected pattern";
      if (schema != nullptr && schema->contains("description"))
        what += " (" + schema->at("description").get<std::string>() + ")";
      add(at.path, value + " does not match " + what);
    } else if (startsWith(d, "Expected number less than or equal to") || startsWith(d, "Expected number less than")) {
      const Json* max = constraint("maximum");
      add(at.path, value + " is above the maximum" + (max != nullptr ? " " + numberText(*max) : ""));
    } else if (startsWith(d, "Expected number greater than or equal to") ||
               startsWith(d, "Expected number greater than")) {
      const Json* min = constraint("minimum");
      add(at.path, value + " is below the minimum" + (min != nullptr ? " " + numberText(*min) : ""));
    } else if (startsWith(d, "Value should be a multiple of")) {
      const Json* step = constraint("multipleOf");
      add(at.path, step != nullptr ? multipleMessage(value, step->get<double>(), numberText(*step))
                                   : value + " is not a multiple of " + firstNumber(d));
    } else if (startsWith(d, "String should be no more than")) {
      add(at.path, "is too long: at most " + firstNumber(d) + " characters");
    } else if (startsWith(d, "String should be no fewer than")) {
      add(at.path, "is too short: at least " + firstNumber(d) + " characters");
    } else if (startsWith(d, "Array should contain no more than")) {
      add(at.path, "has too many items: at most " + firstNumber(d));
    } else if (startsWith(d, "Array should contain no fewer than")) {
      add(at.path, "has too few items: at least " + firstNumber(d));
    } else if (startsWith(d, "Object should have no fewer than") || startsWith(d, "Object should have no more than")) {
      std::vector<std::string> names;
      if (at.shape != nullptr)
        for (const auto& m : at.shape->members) names.push_back(m.name);
      bool fewer = startsWith(d, "Object should have no fewer than");
      if (firstNumber(d) == "1" && !names.empty())
        add(at.path, fewer ? "needs one of " + quotedNames(names) : "must hold only one of " + quotedNames(names));
      else
        add(at.path, fewer ? "has too few members: at least " + firstNumber(d)
                           : "has too many members: at most " + firstNumber(d));
    } else if (startsWith(d, "Elements at indexes #")) {
      std::string rest = d.substr(21);
      std::string first = firstNumber(rest);
      std::string second = firstNumber(rest.substr(rest.find('#') + 1));
      add(at.path, "items [" + first + "] and [" + second + "] are the same: each value may appear once");
    } else if (startsWith(d, "Failed to validate against any schemas allowed by anyOf") ||
               startsWith(d, "Failed to validate against any child schemas allowed by oneOf")) {
      if (at.value != nullptr && !at.value->is_object() && covered(at.path)) continue;  // a type issue says it
      bool oneOf = d.find("oneOf") != std::string::npos;
      std::vector<std::string> names = alternativeMembers(schema, oneOf ? "oneOf" : "anyOf");
      if (!names.empty()) {
        // The alternatives' own "required member is missing" issues say less than this one.
        issues.erase(std::remove_if(issues.begin(), issues.end(),
                                    [&](const DocumentIssue& i) {
                                      return std::any_of(names.begin(), names.end(), [&](const std::string& n) {
                                        return i.path == join(at.path, n) && startsWith(i.message, "required member");
                                      });
                                    }),
                     issues.end());
        add(at.path, (oneOf ? "needs exactly one of " : "needs one of ") + quotedNames(names));
      } else if (!covered(at.path)) {
        add(at.path, "matches none of the allowed alternatives");
      }
    } else if (startsWith(d, "Failed to validate against exactly one child schema")) {
      if (at.value != nullptr && !at.value->is_object()) continue;  // alternatives of members: the type issue says it
      std::vector<std::string> names = alternativeMembers(schema, "oneOf");
      add(at.path,
          names.empty() ? "matches more than one of the alternatives" : "must hold only one of " + quotedNames(names));
    } else if (startsWith(d, "Failed to validate against schema associated with property name '")) {
      std::string member = join(at.path, quoted(d));
      // A property that fails without a more precise issue is one the conditions forbid (false schema).
      if (!covered(member)) add(member, "member '" + quoted(d) + "' is not allowed given the document's other members");
    } else if (startsWith(d, "Failed to validate item #") || startsWith(d, "Cannot validate item #") ||
               startsWith(d, "Failed to validate against a conditional schema") ||
               startsWith(d, "Failed to validate against additional properties schema") ||
               startsWith(d, "Failed to validate against schema associated with pattern") ||
               startsWith(d, "Failed to validate against dependent schema") ||
               startsWith(d, "Failed to validate against child schema")) {
      if (!covered(at.path)) add(at.path, "does not meet the schema's conditions");
    } else {
      add(at.path, d);
    }
  }
  // Where the value has the wrong type, the other constraints' issues (enum, pattern...) only repeat it.
  issues.erase(std::remove_if(issues.begin(), issues.end(),
                              [&](const DocumentIssue& i) {
                                return std::find(wrongType.begin(), wrongType.end(), i.path) != wrongType.end() &&
                                       !startsWith(i.message, "must be ");
                              }),
               issues.end());
}

void DocumentSchemas::Impl::checkExtras(const Json& v, const ValueShape* s, const std::string& path,
                                        std::vector<DocumentIssue>& issues) const {
  if (s == nullptr || issues.size() >= kMaxIssues) return;
  if (v.is_object() && s->kind == ValueShape::Kind::kObject) {
    for (const auto& [k, child] : v.items())
      if (const ValueShape::Member* m = s->member(k)) checkExtras(child, m->shape, join(path, k), issues);
  } else if (v.is_array() && s->kind == ValueShape::Kind::kArray) {
    for (std::size_t i = 0; i < v.size(); ++i)
      checkExtras(v[i], s->items, path + "[" + std::to_string(i) + "]", issues);
  } else if (v.is_number() && s->schema != nullptr && s->schema->contains("multipleOf")) {
    const Json& step = s->schema->at("multipleOf");
    if (step.is_number() && !isMultipleOf(v.get<double>(), step.get<double>()))
      issues.push_back({path, multipleMessage(numberText(v), step.get<double>(), numberText(step))});
  } else if (v.is_string()) {
    const std::string& text = v.get_ref<const std::string&>();
    bool wellFormed = false;
    if (s->date && !isCalendarDate(text, wellFormed) && wellFormed)
      issues.push_back({path, "\"" + text + "\" is not a calendar date"});
    if (s->base64 && !isBase64(text))
      issues.push_back({path, "is not base64 (A-Z a-z 0-9 + /, padded with = to a multiple of 4 characters)"});
    // FHIR strings may not be blank, and a blank text says nothing: at least one visible character
    if (!text.empty() && text.find_first_not_of(" \t\r\n") == std::string::npos)
      issues.push_back({path, "holds only spaces or line breaks: leave the member out or write something"});
  }
}

DocumentSchemas::DocumentSchemas() : impl_(std::make_unique<Impl>()) {
  try {
    impl_->load();
  } catch (const std::exception&) {
    // load() records its failures per kind; anything else leaves kinds without a compiled schema.
  }
}

DocumentSchemas::~DocumentSchemas() = default;

const DocumentSchemas& DocumentSchemas::instance() {
  static const DocumentSchemas schemas;
  return schemas;
}

std::vector<std::string> DocumentSchemas::kinds() const {
  return std::vector<std::string>(std::begin(kKinds), std::end(kKinds));
}

bool DocumentSchemas::hasKind(std::string_view kind) const {
  return std::find(std::begin(kKinds), std::end(kKinds), kind) != std::end(kKinds);
}

std::vector<DocumentIssue> DocumentSchemas::validate(std::string_view kind, const Json& doc) const {
  std::vector<DocumentIssue> issues;
  try {
    auto it = impl_->kinds.find(kind);
    if (it == impl_->kinds.end()) {
      issues.push_back({"", "unknown document kind '" + std::string(kind) + "'"});
      return issues;
    }
    const KindEntry& e = it->second;
    if (!e.compiled || e.root == nullptr) {
      issues.push_back(
          {"", e.loadError.empty() ? "the schema of '" + std::string(kind) + "' is not loaded" : e.loadError});
      return issues;
    }
    const PlainJson plain = doc;
    valijson::adapters::NlohmannJsonAdapter adapter(plain);
    valijson::ValidationResults results;
    // A Validator caches the compiled regular expressions of the patterns: one per thread.
    thread_local valijson::Validator validator(valijson::Validator::kStrongTypes);
    if (!validator.validate(*e.compiled, adapter, &results)) impl_->translate(results, e.root, plain, issues);
    impl_->checkExtras(doc, e.root, "", issues);
    if (issues.empty() && results.numErrors() > 0) issues.push_back({"", "the document does not match its schema"});
  } catch (const std::exception& ex) {
    issues.push_back({"", std::string("the document could not be checked: ") + ex.what()});
  }
  return issues;
}

std::string_view DocumentSchemas::schemaText(std::string_view kind) const {
  if (kind == "common") return embedded(kCommonFile);
  auto it = impl_->kinds.find(kind);
  return it == impl_->kinds.end() ? std::string_view() : it->second.schemaText;
}

std::string_view DocumentSchemas::xsdText(std::string_view kind) const {
  auto it = impl_->kinds.find(kind);
  return it == impl_->kinds.end() ? std::string_view() : it->second.xsdText;
}

const ValueShape* DocumentSchemas::shape(std::string_view kind) const {
  auto it = impl_->kinds.find(kind);
  return it == impl_->kinds.end() ? nullptr : it->second.root;
}

namespace {

Json orderLike(const ValueShape* shape, const Json& value) {
  if (!shape) return value;
  if (value.is_object() && shape->kind == ValueShape::Kind::kObject) {
    Json out = Json::object();
    for (const auto& m : shape->members)
      if (auto it = value.find(m.name); it != value.end()) out[m.name] = orderLike(m.shape, *it);
    for (const auto& [k, v] : value.items())
      if (!out.contains(k)) out[k] = v;
    return out;
  }
  if (value.is_array() && shape->kind == ValueShape::Kind::kArray) {
    Json out = Json::array();
    for (const auto& v : value) out.push_back(orderLike(shape->items, v));
    return out;
  }
  return value;
}

}  // namespace

Json DocumentSchemas::inSchemaOrder(std::string_view kind, const Json& doc) const { return orderLike(shape(kind), doc); }

}  // namespace passerelle::network
