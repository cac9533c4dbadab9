// Loading of conformance resources (read with nlohmann: this is start-up work) and their
// compilation: snapshot elements become a tree of Nodes found by element id, type profiles and
// target profiles are resolved against the registry, and each binding gets the expansion of its
// value set from the compose (concepts, whole CodeSystems present here, other value sets) or from
// an expansion given as data.
#include "mappings/fhir/profiles/profile_registry.h"

#include <zlib.h>

#include <algorithm>
#include <cctype>
#include <filesystem>
#include <fstream>
#include <functional>
#include <mutex>
#include <nlohmann/json.hpp>
#include <sstream>
#include <unordered_map>
#include <unordered_set>

#include "mappings/fhir/fhirpath/fhirpath.h"
#include "mappings/fhir/profiles/core_definitions.h"
#include "mappings/fhir/profiles/snapshot_generator.h"
#include "mappings/fhir/resource_types.h"
#include "mappings/fhir/validation/validation_tables.h"

namespace passerelle::fhir::profiles {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

constexpr std::string_view kCoreSd = "http://hl7.org/fhir/StructureDefinition/";
constexpr std::string_view kCoreVs = "http://hl7.org/fhir/ValueSet/";

std::string str(const json& j, const char* key) {
  auto it = j.find(key);
  return it != j.end() && it->is_string() ? it->get<std::string>() : std::string();
}

Value toValue(const json& j) {
  Value v;
  switch (j.type()) {
    case json::value_t::boolean: v.kind = Value::Kind::Bool; v.boolean = j.get<bool>(); break;
    case json::value_t::number_integer:
    case json::value_t::number_unsigned:
    case json::value_t::number_float: v.kind = Value::Kind::Number; v.number = j.get<double>(); break;
    case json::value_t::string: v.kind = Value::Kind::String; v.text = j.get<std::string>(); break;
    case json::value_t::object:
      v.kind = Value::Kind::Object;
      for (const auto& [k, m] : j.items()) v.members.push_back({k, toValue(m)});
      break;
    case json::value_t::array:
      v.kind = Value::Kind::Array;
      for (const auto& m : j) v.items.push_back(toValue(m));
      break;
    default: break;
  }
  return v;
}

bool readFile(const fs::path& path, std::string& out) {
  if (path.extension() == ".gz") {
    gzFile f = gzopen(path.string().c_str(), "rb");
    if (!f) return false;
    char buf[65536];
    int n;
    while ((n = gzread(f, buf, sizeof buf)) > 0) out.append(buf, static_cast<std::size_t>(n));
    int err = 0;
    gzerror(f, &err);
    gzclose(f);
    return n == 0 && err == Z_OK;
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) return false;
  std::stringstream ss;
  ss << in.rdbuf();
  out = ss.str();
  return true;
}

bool isJsonFile(const fs::path& p) {
  std::string name = p.filename().string();
  auto ends = [&](std::string_view s) { return name.size() >= s.size() && name.compare(name.size() - s.size(), s.size(), s) == 0; };
  return ends(".json") || ends(".json.gz");
}

// The segments of a discriminator path: names, $this, resolve(), ofType(X), extension('url').
std::vector<std::string> splitPath(std::string_view path) {
  std::vector<std::string> out;
  std::size_t start = 0;
  int depth = 0;
  bool quote = false;
  for (std::size_t i = 0; i < path.size(); ++i) {
    char c = path[i];
    if (c == '\'') quote = !quote;
    else if (!quote && c == '(') ++depth;
    else if (!quote && c == ')') --depth;
    else if (!quote && depth == 0 && c == '.') {
      out.emplace_back(path.substr(start, i - start));
      start = i + 1;
    }
  }
  out.emplace_back(path.substr(start));
  return out;
}

// One version of a canonical resource: its index in the registry's list of its kind.
struct Versioned {
  std::string version;
  std::size_t index;
};

}  // namespace

std::string Value::json() const {
  switch (kind) {
    case Kind::Null: return "null";
    case Kind::Bool: return boolean ? "true" : "false";
    case Kind::Number: {
      nlohmann::json j = number;
      return j.dump();
    }
    case Kind::String: return nlohmann::json(text).dump();
    case Kind::Object: {
      std::string out = "{";
      for (std::size_t i = 0; i < members.size(); ++i) {
        if (i) out += ',';
        out += nlohmann::json(members[i].first).dump() + ':' + members[i].second.json();
      }
      return out + "}";
    }
    case Kind::Array: {
      std::string out = "[";
      for (std::size_t i = 0; i < items.size(); ++i) out += (i ? "," : "") + items[i].json();
      return out + "]";
    }
  }
  return "null";
}

bool Expansion::contains(std::string_view system, std::string_view code) const {
  std::string key;
  key.reserve(system.size() + code.size() + 1);
  key.append(system).append(1, '|').append(code);
  return pairs.count(key) > 0;
}

struct ProfileRegistry::Impl {
  std::vector<json> structureDefinitions, valueSets, codeSystems;
  std::vector<std::string> sdSources;
  // Looked up by a string_view (a url cut from a canonical) without a copy.
  struct UrlHash {
    using is_transparent = void;
    std::size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
  };
  using UrlIndex = std::unordered_map<std::string, std::vector<Versioned>, UrlHash, std::equal_to<>>;
  UrlIndex sdByUrl, vsByUrl, csByUrl;
  std::vector<std::unique_ptr<Profile>> profiles;  // parallel to structureDefinitions
  std::unordered_map<std::string, std::unique_ptr<Expansion>> expansions;  // by canonical as referenced
  // Snapshots generated from differentials, parallel to structureDefinitions (state 0: not tried,
  // 1: being generated, 2: done, with the elements or the error).
  std::vector<json> generated;
  std::vector<std::string> generationErrors;
  std::vector<int> generationState;
  // The base specification's definitions (core_definitions.h), parsed on first use.
  std::mutex coreJsonMutex;
  std::unordered_map<std::string, std::unique_ptr<json>> coreJson;
  // Core extension definitions compiled on first use, also while validating (hence the lock), with
  // the expansions of their bindings apart from the loaded profiles'.
  std::recursive_mutex coreProfileMutex;
  std::unordered_map<std::string, std::unique_ptr<Profile>> coreProfiles;
  std::unordered_map<std::string, std::unique_ptr<Expansion>> coreExpansions;
  std::unordered_map<std::string, std::unique_ptr<Expansion>>* expansionCache = &expansions;

  static const Versioned* pick(const UrlIndex& index, std::string_view canonical) {
    auto [url, version] = splitCanonical(canonical);
    auto it = index.find(url);
    if (it == index.end() || it->second.empty()) return nullptr;
    if (version.empty()) return &it->second.back();
    for (auto v = it->second.rbegin(); v != it->second.rend(); ++v)
      if (v->version == version) return &*v;
    // A resource that states no version answers any version asked for.
    for (auto v = it->second.rbegin(); v != it->second.rend(); ++v)
      if (v->version.empty()) return &*v;
    return nullptr;
  }

  const json* codeSystem(std::string_view canonical) const {
    const Versioned* v = pick(csByUrl, canonical);
    return v ? &codeSystems[v->index] : nullptr;
  }
  const json* valueSet(std::string_view canonical) const {
    const Versioned* v = pick(vsByUrl, canonical);
    return v ? &valueSets[v->index] : nullptr;
  }
  int profileIndex(std::string_view canonical) const {
    const Versioned* v = pick(sdByUrl, canonical);
    return v ? static_cast<int>(v->index) : -1;
  }

  const Expansion* expand(const std::string& canonical, int depth);
  std::unique_ptr<Profile> compile(const json& sd, const json* generatedElements) const;
  void resolve(Profile& p);

  const json* coreStructure(std::string_view url);
  const Profile* coreExtension(std::string_view canonical);
  const json* snapshotElements(const std::string& canonical, std::string& error, int depth);
  const json* generatedSnapshot(std::size_t index, std::string& error, int depth);
};

namespace {

void addConcepts(const json& concepts, const std::string& system, Expansion& e) {
  for (const auto& c : concepts) {
    std::string code = str(c, "code");
    if (!code.empty()) {
      e.pairs.insert(system + "|" + code);
      e.codes.insert(code);
    }
    if (auto nested = c.find("concept"); nested != c.end() && nested->is_array()) addConcepts(*nested, system, e);
  }
}

void addContains(const json& contains, Expansion& e) {
  for (const auto& c : contains) {
    std::string code = str(c, "code");
    if (!code.empty() && !c.value("abstract", false)) {
      e.pairs.insert(str(c, "system") + "|" + code);
      e.codes.insert(code);
    }
    if (auto nested = c.find("contains"); nested != c.end() && nested->is_array()) addContains(*nested, e);
  }
}

std::size_t countContains(const json& contains) {
  std::size_t n = 0;
  for (const auto& c : contains) {
    ++n;
    if (auto nested = c.find("contains"); nested != c.end() && nested->is_array()) n += countContains(*nested);
  }
  return n;
}

}  // namespace

const Expansion* ProfileRegistry::Impl::expand(const std::string& canonical, int depth) {
  auto& expansions = *expansionCache;
  if (auto it = expansions.find(canonical); it != expansions.end()) return it->second.get();
  auto e = std::make_unique<Expansion>();
  e->url = canonical;
  Expansion* out = e.get();
  expansions.emplace(canonical, std::move(e));  // placeholder first: a value set that includes itself stops here
  const json* vs = valueSet(canonical);
  if (!vs) {
    // The base specification's required value sets are in the base validator's tables.
    auto [url, version] = splitCanonical(canonical);
    if (url.substr(0, kCoreVs.size()) == kCoreVs) {
      for (const auto& bvs : validation::ValidationTables::embedded().valueSets()) {
        if (bvs.url != url) continue;
        for (const auto& code : bvs.codes) {
          out->codes.insert(code);
          for (const auto& system : bvs.systems) out->pairs.insert(system + "|" + code);
        }
        out->complete = true;
        return out;
      }
    }
    expansions.erase(canonical);
    return nullptr;
  }
  std::string reason;
  bool complete = depth < 8;
  if (!complete) reason = "value sets include each other too deeply";
  auto compose = vs->find("compose");
  if (complete && (compose == vs->end() || !compose->is_object())) {
    complete = false;
    reason = "it has no compose";
  }
  if (complete) {
    for (const auto& inc : compose->value("include", json::array())) {
      std::string system = str(inc, "system");
      if (inc.contains("filter")) {
        complete = false;
        reason = "an include of " + system + " uses a filter";
        break;
      }
      if (inc.contains("valueSet")) {
        if (!system.empty()) {
          complete = false;
          reason = "an include combines a system and value sets";
          break;
        }
        for (const auto& ref : inc["valueSet"]) {
          const Expansion* sub = ref.is_string() ? expand(ref.get<std::string>(), depth + 1) : nullptr;
          if (!sub || !sub->complete) {
            complete = false;
            reason = "the included value set " + (ref.is_string() ? ref.get<std::string>() : std::string("?")) +
                     " cannot be expanded here";
            break;
          }
          out->pairs.insert(sub->pairs.begin(), sub->pairs.end());
          out->codes.insert(sub->codes.begin(), sub->codes.end());
        }
        if (!complete) break;
        continue;
      }
      if (auto concepts = inc.find("concept"); concepts != inc.end() && concepts->is_array()) {
        addConcepts(*concepts, system, *out);
        continue;
      }
      std::string version = str(inc, "version");
      const json* cs = codeSystem(version.empty() ? system : system + "|" + version);
      if (!cs || str(*cs, "content") != "complete") {
        complete = false;
        reason = cs ? "the CodeSystem " + system + " is not given complete" : "the CodeSystem " + system + " is not known here";
        break;
      }
      addConcepts(cs->value("concept", json::array()), system, *out);
    }
  }
  if (complete) {
    for (const auto& exc : compose->value("exclude", json::array())) {
      auto concepts = exc.find("concept");
      if (concepts == exc.end() || exc.contains("filter") || exc.contains("valueSet")) {
        complete = false;
        reason = "an exclude is not a list of concepts";
        break;
      }
      std::string system = str(exc, "system");
      for (const auto& c : *concepts) {
        std::string code = str(c, "code");
        out->pairs.erase(system + "|" + code);
        bool elsewhere = false;
        for (const auto& p : out->pairs)
          if (p.size() > code.size() && p.compare(p.size() - code.size(), code.size(), code) == 0 &&
              p[p.size() - code.size() - 1] == '|')
            elsewhere = true;
        if (!elsewhere) out->codes.erase(code);
      }
    }
  }
  if (!complete) {
    // An expansion given as data (a package's expansions) stands in when it is whole.
    auto exp = vs->find("expansion");
    if (exp != vs->end() && exp->is_object() && exp->contains("contains")) {
      std::size_t have = countContains((*exp)["contains"]);
      std::size_t total = exp->value("total", have);
      out->pairs.clear();
      out->codes.clear();
      addContains((*exp)["contains"], *out);
      if (total <= have) {
        complete = true;
      } else {
        reason = "its expansion lists " + std::to_string(have) + " of " + std::to_string(total) + " codes";
      }
    }
  }
  out->complete = complete;
  out->incompleteReason = complete ? std::string() : reason;
  return out;
}

std::unique_ptr<Profile> ProfileRegistry::Impl::compile(const json& sd, const json* generatedElements) const {
  auto p = std::make_unique<Profile>();
  p->url = str(sd, "url");
  p->version = str(sd, "version");
  p->name = str(sd, "name");
  p->type = str(sd, "type");
  p->resource = str(sd, "kind") == "resource";
  p->extension = p->type == "Extension";
  for (const auto& c : sd.value("context", json::array())) {
    if (!c.is_object()) continue;
    p->contexts.emplace_back(str(c, "type"), str(c, "expression"));
    std::string why;
    p->contextExpressions.push_back(p->contexts.back().first == "fhirpath"
                                        ? fhirpath::Expression::compile(p->contexts.back().second, why)
                                        : nullptr);
  }
  for (const auto& c : sd.value("contextInvariant", json::array())) {
    if (!c.is_string()) continue;
    std::string why;
    p->contextInvariants.emplace_back(c.get<std::string>(), fhirpath::Expression::compile(c.get<std::string>(), why));
  }
  auto fail = [&](std::string why) {
    p->nodes.clear();
    p->error = std::move(why);
    return std::move(p);
  };
  if (p->url.empty()) return fail("it has no url");
  if (p->type.empty()) return fail("it has no type");
  auto snapshot = sd.find("snapshot");
  bool hasSnapshot = snapshot != sd.end() && snapshot->is_object() && snapshot->contains("element") &&
                     (*snapshot)["element"].is_array() && !(*snapshot)["element"].empty();
  if (!hasSnapshot && !generatedElements) return fail("it has no snapshot");
  const json& elements = hasSnapshot ? (*snapshot)["element"] : *generatedElements;
  // The constraints the definition adds, not those of the base specification (the base validator
  // checks those): a source other than a base type's or resource's definition (a core profile such
  // as vitalsigns counts as added), or, without a source, one its differential states.
  std::unordered_set<std::string> differentialKeys;
  if (auto d = sd.find("differential"); d != sd.end() && d->is_object())
    for (const auto& el : d->value("element", json::array()))
      if (el.is_object())
        for (const auto& c : el.value("constraint", json::array()))
          if (c.is_object()) differentialKeys.insert(str(c, "key"));
  const auto& baseTables = validation::ValidationTables::embedded();
  auto added = [&](const std::string& key, const std::string& source) {
    if (source.empty()) return differentialKeys.count(key) > 0;
    std::string_view url = splitCanonical(source).first;
    if (url.substr(0, kCoreSd.size()) != kCoreSd) return true;
    std::string_view name = url.substr(kCoreSd.size());
    return baseTables.typeIndex(name) < 0 && baseTables.resourceType(name) < 0 && name != "Element" && name != "BackboneElement" &&
           name != "Resource" && name != "DomainResource";
  };
  std::unordered_map<std::string, std::int32_t> byId;
  std::unordered_map<std::string, std::string> lastIdForPath;
  std::vector<std::pair<std::int32_t, std::string>> contentRefs;
  p->nodes.reserve(elements.size());
  for (const auto& el : elements) {
    if (!el.is_object()) return fail("a snapshot element is not an object");
    Node n;
    n.path = str(el, "path");
    if (n.path.empty()) return fail("a snapshot element has no path");
    n.sliceName = str(el, "sliceName");
    n.id = str(el, "id");
    auto dot = n.path.rfind('.');
    n.name = dot == std::string::npos ? n.path : n.path.substr(dot + 1);
    // Older snapshots have no ids: rebuilt from the path and the last slice seen on it.
    if (n.id.empty()) n.id = elementIdFromPath(n.path, n.sliceName, lastIdForPath);
    lastIdForPath[n.path] = n.id;
    // Re-slices (slice names with '/') and their elements are left out.
    if (n.id.find('/') != std::string::npos && n.id.find(':') != std::string::npos &&
        n.id.find('/') > n.id.find(':'))
      continue;
    n.choice = n.name.size() > 3 && n.name.compare(n.name.size() - 3, 3, "[x]") == 0;
    n.isExtension = n.name == "extension" || n.name == "modifierExtension";
    if (auto m = el.find("min"); m != el.end() && m->is_number_integer()) n.min = m->get<std::int32_t>();
    std::string max = str(el, "max");
    if (max.empty() || max == "*") n.max = -1;
    else {
      try {
        n.max = std::stoi(max);
      } catch (...) {
        return fail("element " + n.id + " has max '" + max + "'");
      }
    }
    if (auto b = el.find("base"); b != el.end() && b->is_object()) {
      auto bmin = b->find("min");
      std::string bmax = str(*b, "max");
      if (bmin != b->end() && bmin->is_number_integer() && !bmax.empty()) {
        n.baseKnown = true;
        n.baseMin = bmin->get<std::int32_t>();
        n.baseMax = bmax == "*" ? -1 : std::atoi(bmax.c_str());
      }
    }
    for (const auto& c : el.value("constraint", json::array())) {
      if (!c.is_object()) continue;
      Constraint k;
      k.key = str(c, "key");
      k.expression = str(c, "expression");
      if (k.expression.empty() || !added(k.key, str(c, "source"))) continue;
      k.severity = str(c, "severity") == "error" ? "error" : "warning";
      k.human = str(c, "human");
      k.compiled = fhirpath::Expression::compile(k.expression, k.compileError);
      n.constraints.push_back(std::move(k));
    }
    for (const auto& t : el.value("type", json::array())) {
      TypeRef tr;
      tr.code = str(t, "code");
      // The fhirpath system types of id, extension.url and the like are strings.
      if (tr.code.rfind("http://hl7.org/fhirpath/System.", 0) == 0) tr.code = "string";
      tr.isReference = tr.code == "Reference";
      tr.isExtension = tr.code == "Extension";
      auto list = [&](const char* key, std::vector<std::string>& out) {
        auto it = t.find(key);
        if (it == t.end()) return;
        if (it->is_string()) out.push_back(it->get<std::string>());
        else if (it->is_array())
          for (const auto& x : *it)
            if (x.is_string()) out.push_back(x.get<std::string>());
      };
      list("profile", tr.profiles);
      std::vector<std::string> targets;
      list("targetProfile", targets);
      tr.targetTypes = targets;  // canonical for now; resolve() turns them into resource types
      n.types.push_back(std::move(tr));
    }
    for (const auto& [k, v] : el.items()) {
      if (k.rfind("fixed", 0) == 0 && k.size() > 5 && std::isupper(static_cast<unsigned char>(k[5])))
        n.fixed = std::make_unique<Value>(toValue(v));
      else if (k.rfind("pattern", 0) == 0 && k.size() > 7 && std::isupper(static_cast<unsigned char>(k[7])))
        n.pattern = std::make_unique<Value>(toValue(v));
      else if (k.rfind("minValue", 0) == 0 && k.size() > 8 && std::isupper(static_cast<unsigned char>(k[8]))) {
        n.minValue = std::make_unique<Value>(toValue(v));
        n.minType = k.substr(8);
      } else if (k.rfind("maxValue", 0) == 0 && k.size() > 8 && std::isupper(static_cast<unsigned char>(k[8]))) {
        n.maxValue = std::make_unique<Value>(toValue(v));
        n.maxType = k.substr(8);
      }
    }
    if (auto b = el.find("binding"); b != el.end() && b->is_object()) {
      std::string s = str(*b, "strength");
      n.strength = s == "required"     ? Strength::Required
                   : s == "extensible" ? Strength::Extensible
                   : s == "preferred"  ? Strength::Preferred
                   : s == "example"    ? Strength::Example
                                       : Strength::None;
      n.valueSet = str(*b, "valueSet");
      if (n.valueSet.empty()) n.valueSet = str(*b, "valueSetUri");
      if (n.valueSet.empty() && b->contains("valueSetReference")) n.valueSet = str((*b)["valueSetReference"], "reference");
    }
    if (auto s = el.find("slicing"); s != el.end() && s->is_object()) {
      n.sliced = true;
      n.ordered = s->value("ordered", false);
      std::string rules = str(*s, "rules");
      n.rules = rules == "closed" ? Node::Rules::Closed : rules == "openAtEnd" ? Node::Rules::OpenAtEnd : Node::Rules::Open;
      for (const auto& d : s->value("discriminator", json::array())) {
        Discriminator disc;
        std::string type = str(d, "type");
        disc.path = str(d, "path");
        disc.segments = splitPath(disc.path);
        if (type == "value") disc.kind = Discriminator::Kind::Value;
        else if (type == "pattern") disc.kind = Discriminator::Kind::Pattern;
        else if (type == "type") disc.kind = Discriminator::Kind::Type;
        else if (type == "exists") disc.kind = Discriminator::Kind::Exists;
        else if (type == "profile") disc.kind = Discriminator::Kind::Profile;
        else return fail("element " + n.id + " has a discriminator of unknown type '" + type + "'");
        n.discriminators.push_back(std::move(disc));
      }
    }
    std::string contentRef = str(el, "contentReference");
    auto index = static_cast<std::int32_t>(p->nodes.size());
    if (!contentRef.empty()) contentRefs.emplace_back(index, contentRef.substr(contentRef.find('#') + 1));
    // The parent is the longest id prefix, cut at a dot, that is an element already seen.
    if (index > 0) {
      std::string_view id = n.id;
      std::int32_t parent = -1;
      for (auto cut = id.rfind('.'); cut != std::string_view::npos && cut > 0; cut = id.rfind('.', cut - 1)) {
        auto it = byId.find(std::string(id.substr(0, cut)));
        if (it != byId.end()) {
          parent = it->second;
          break;
        }
      }
      if (parent < 0) return fail("element " + n.id + " is not inside the snapshot's root " + p->nodes[0].id);
      n.parent = parent;
      std::int32_t owner = -1;
      if (!n.sliceName.empty()) {
        auto it = byId.find(p->nodes[static_cast<std::size_t>(parent)].id + "." + n.name);
        if (it != byId.end()) owner = it->second;
      }
      if (owner >= 0) p->nodes[static_cast<std::size_t>(owner)].slices.push_back(index);
      else p->nodes[static_cast<std::size_t>(parent)].children.push_back(index);
    }
    byId.emplace(n.id, index);
    p->nodes.push_back(std::move(n));
  }
  for (const auto& [index, target] : contentRefs) {
    auto it = byId.find(target);
    if (it != byId.end()) p->nodes[static_cast<std::size_t>(index)].contentReference = it->second;
  }
  const auto& tables = validation::ValidationTables::embedded();
  for (auto& n : p->nodes) {
    n.tableType = tables.typeIndex(n.path);  // a backbone element is a type of its own in the tables
    n.tableTypeName = "BackboneElement";
    if (n.tableType < 0 && n.types.size() == 1) {
      n.tableType = tables.typeIndex(n.types[0].code);
      n.tableTypeName = n.types[0].code;
    }
  }
  // Slices without a slicing entry: extensions are sliced by url, choices by type.
  for (auto& n : p->nodes) {
    if (n.slices.empty() || !n.discriminators.empty()) continue;
    n.sliced = true;
    if (n.name == "extension" || n.name == "modifierExtension")
      n.discriminators.push_back({Discriminator::Kind::Value, "url", {"url"}});
    else if (n.choice)
      n.discriminators.push_back({Discriminator::Kind::Type, "$this", {"$this"}});
  }
  return p;
}

namespace {

// Whether a reference's target types allow less than the base specification's (which the base
// validator checks): a reference left as in the base does not make its element count.
bool narrowsTargets(const Profile& p, const Node& n, const TypeRef& t) {
  if (n.parent < 0 || n.choice || !n.sliceName.empty()) return true;
  const auto& tables = validation::ValidationTables::embedded();
  int owner = p.nodes[static_cast<std::size_t>(n.parent)].tableType;
  if (owner < 0) return true;
  const auto& type = tables.type(owner);
  int e = type.find(n.name);
  if (e < 0 || type.elements[static_cast<std::size_t>(e)].targets.empty()) return true;
  for (int r : type.elements[static_cast<std::size_t>(e)].targets)
    if (std::find(t.targetTypes.begin(), t.targetTypes.end(), tables.type(r).name) == t.targetTypes.end()) return true;
  return false;
}

// Whether a choice allows fewer types than the base specification's (which the base validator
// checks): a choice left with all its types does not make its element count.
bool narrowsChoice(const Profile& p, const Node& n) {
  if (n.parent < 0 || !n.sliceName.empty()) return true;
  int owner = p.nodes[static_cast<std::size_t>(n.parent)].tableType;
  if (owner < 0) return true;
  std::string_view base = n.jsonName();
  std::size_t rows = 0;
  for (const auto& e : validation::ValidationTables::embedded().type(owner).elements)
    if (e.choiceBase == base) ++rows;
  return rows == 0 || n.types.size() < rows;
}

}  // namespace

void ProfileRegistry::Impl::resolve(Profile& p) {
  for (auto& n : p.nodes) {
    for (auto& t : n.types) {
      t.resolved.clear();
      for (const auto& prof : t.profiles) {
        int i = profileIndex(prof);
        t.resolved.push_back(i >= 0 ? (profiles[static_cast<std::size_t>(i)]->error.empty()
                                           ? profiles[static_cast<std::size_t>(i)].get()
                                           : nullptr)
                                    : coreExtension(prof));
      }
      std::vector<std::string> canonicals = std::move(t.targetTypes);
      t.targetTypes.clear();
      t.anyTarget = canonicals.empty();
      for (const auto& c : canonicals) {
        std::string_view url = splitCanonical(c).first;
        std::string type;
        if (url.substr(0, kCoreSd.size()) == kCoreSd && isResourceType(url.substr(kCoreSd.size())))
          type = std::string(url.substr(kCoreSd.size()));
        else if (int i = profileIndex(c); i >= 0)
          type = str(structureDefinitions[static_cast<std::size_t>(i)], "type");
        if (type.empty() || type == "Resource" || type == "DomainResource") t.anyTarget = true;
        else t.targetTypes.push_back(type);
      }
    }
    if (!n.valueSet.empty() && (n.strength == Strength::Required || n.strength == Strength::Extensible)) {
      n.expansion = expand(n.valueSet, 0);
      n.baseValueSet = splitCanonical(n.valueSet).first.substr(0, kCoreVs.size()) == kCoreVs && !valueSet(n.valueSet);
    }
  }
  // What each element constrains beyond the base, children first (they follow their parent).
  for (std::size_t i = p.nodes.size(); i-- > 0;) {
    Node& n = p.nodes[i];
    // What the element's values need beyond being counted (which its parent does).
    bool values = i == 0 || n.fixed || n.pattern || n.minValue || n.maxValue || n.sliced || !n.slices.empty() ||
                  !n.sliceName.empty() || (n.choice && narrowsChoice(p, n)) || n.contentReference >= 0 ||
                  !n.baseKnown ||
                  ((n.strength == Strength::Required || n.strength == Strength::Extensible) && !n.baseValueSet) ||
                  !n.constraints.empty();
    for (const auto& t : n.types) values = values || !t.profiles.empty() || (!t.anyTarget && narrowsTargets(p, n, t));
    for (std::int32_t c : n.children) {
      const Node& child = p.nodes[static_cast<std::size_t>(c)];
      // The extensions met anywhere are checked against their definitions (by url): an extension
      // element makes its parent count only when it says more than that, with slices, a closed
      // slicing or a narrowed cardinality (the base snapshots slice every one by url, openly).
      if (child.name != "extension" && child.name != "modifierExtension")
        values = values || child.constrains;
      else
        values = values || !child.slices.empty() || (child.sliced && child.rules == Node::Rules::Closed) ||
                 child.min > child.baseMin || (child.max >= 0 && (child.baseMax < 0 || child.max < child.baseMax));
    }
    for (std::int32_t s : n.slices) values = values || p.nodes[static_cast<std::size_t>(s)].constrains;
    // A binding is checked on the values even when its value set is the base's, but for a required
    // one on codes, which the base validator checks.
    bool primitive = !n.types.empty() && std::all_of(n.types.begin(), n.types.end(), [](const TypeRef& t) {
      return !t.code.empty() && std::islower(static_cast<unsigned char>(t.code[0]));
    });
    bool binding = (n.strength == Strength::Required && !(n.baseValueSet && primitive)) ||
                   n.strength == Strength::Extensible;
    n.checksValues = values || binding;
    n.constrains = values || n.min > n.baseMin || (n.max >= 0 && (n.baseMax < 0 || n.max < n.baseMax));
    n.constrainedChildren.clear();
    for (std::int32_t c : n.children) {
      const Node& child = p.nodes[static_cast<std::size_t>(c)];
      if (child.constrains)
        n.constrainedChildren.push_back(
            {c, child.min, child.sliced, child.choice,
             std::string(child.jsonName())});
    }
  }
  findSliceTargets(p);
}

ProfileRegistry::ProfileRegistry() : impl_(std::make_unique<Impl>()) {}
ProfileRegistry::~ProfileRegistry() = default;

std::pair<std::string_view, std::string_view> ProfileRegistry::splitCanonical(std::string_view canonical) {
  auto bar = canonical.find('|');
  if (bar == std::string_view::npos) return {canonical, {}};
  return {canonical.substr(0, bar), canonical.substr(bar + 1)};
}

bool ProfileRegistry::add(const json& r, const std::string& source, std::string& error) {
  std::string type = str(r, "resourceType");
  if (type == "Bundle") {
    bool ok = true;
    for (const auto& e : r.value("entry", json::array()))
      if (e.is_object() && e.contains("resource") && !add(e["resource"], source, error)) ok = false;
    return ok;
  }
  if (type != "StructureDefinition" && type != "ValueSet" && type != "CodeSystem") return true;
  std::string url = str(r, "url"), version = str(r, "version");
  if (url.empty()) {
    error = source + ": a " + type + " without url";
    return false;
  }
  auto& list = type == "StructureDefinition" ? impl_->structureDefinitions
               : type == "ValueSet"          ? impl_->valueSets
                                             : impl_->codeSystems;
  auto& index = type == "StructureDefinition" ? impl_->sdByUrl : type == "ValueSet" ? impl_->vsByUrl : impl_->csByUrl;
  auto& versions = index[url];
  for (auto& v : versions) {
    if (v.version != version) continue;
    // The same resource again: a value set's expansion given apart is merged into its definition.
    json& existing = list[v.index];
    if (type == "ValueSet" && r.contains("expansion") && !existing.contains("expansion"))
      existing["expansion"] = r["expansion"];
    else if (type == "ValueSet" && !r.contains("expansion") && existing.contains("expansion") && !existing.contains("compose")) {
      json merged = r;
      merged["expansion"] = existing["expansion"];
      existing = std::move(merged);
    } else if (!(type == "ValueSet" && r.contains("expansion") && !r.contains("compose"))) {
      existing = r;
      if (type == "StructureDefinition") impl_->sdSources[v.index] = source;
    }
    return true;
  }
  versions.push_back({version, list.size()});
  list.push_back(r);
  if (type == "StructureDefinition") impl_->sdSources.push_back(source);
  return true;
}

const json* ProfileRegistry::Impl::coreStructure(std::string_view url) {
  std::lock_guard<std::mutex> lock(coreJsonMutex);
  std::string key(url);
  if (auto it = coreJson.find(key); it != coreJson.end()) return it->second.get();
  std::unique_ptr<json> parsed;
  std::string_view text = coreDefinitionJson(url);
  if (!text.empty()) {
    json j = json::parse(text, nullptr, false);
    if (j.is_object()) parsed = std::make_unique<json>(std::move(j));
  }
  return coreJson.emplace(std::move(key), std::move(parsed)).first->second.get();
}

const Profile* ProfileRegistry::Impl::coreExtension(std::string_view canonical) {
  std::string_view url = splitCanonical(canonical).first;
  if (url.substr(0, kCoreSd.size()) != kCoreSd) return nullptr;
  std::lock_guard<std::recursive_mutex> lock(coreProfileMutex);
  std::string key(url);
  if (auto it = coreProfiles.find(key); it != coreProfiles.end()) return it->second.get();
  coreProfiles.emplace(key, nullptr);  // a definition that names itself stops here
  if (coreDefinitionJson(url, true).empty()) return nullptr;
  const json* sd = coreStructure(url);
  if (!sd || str(*sd, "type") != "Extension" || str(*sd, "derivation") != "constraint") return nullptr;
  std::unique_ptr<Profile> p = compile(*sd, nullptr);
  if (!p->error.empty()) return nullptr;
  auto* saved = expansionCache;
  expansionCache = &coreExpansions;
  resolve(*p);
  expansionCache = saved;
  return (coreProfiles[key] = std::move(p)).get();
}

const json* ProfileRegistry::Impl::snapshotElements(const std::string& canonical, std::string& error, int depth) {
  if (int i = profileIndex(canonical); i >= 0) {
    const json& sd = structureDefinitions[static_cast<std::size_t>(i)];
    auto snapshot = sd.find("snapshot");
    if (snapshot != sd.end() && snapshot->is_object() && snapshot->contains("element") &&
        (*snapshot)["element"].is_array() && !(*snapshot)["element"].empty())
      return &(*snapshot)["element"];
    return generatedSnapshot(static_cast<std::size_t>(i), error, depth + 1);
  }
  const json* core = coreStructure(splitCanonical(canonical).first);
  if (!core) {
    error = canonical + " is not known";
    return nullptr;
  }
  return &(*core)["snapshot"]["element"];
}

const json* ProfileRegistry::Impl::generatedSnapshot(std::size_t index, std::string& error, int depth) {
  if (generationState[index] == 2) {
    error = generationErrors[index];
    return error.empty() ? &generated[index] : nullptr;
  }
  if (generationState[index] == 1 || depth > 16) {
    error = "its base definitions derive from each other in a circle";
    return nullptr;
  }
  generationState[index] = 1;
  const json& sd = structureDefinitions[index];
  std::string why;
  SnapshotLookup lookup = [&](const std::string& canonical, std::string& e) {
    return snapshotElements(canonical, e, depth);
  };
  if (!generateSnapshot(sd, lookup, generated[index], why)) generationErrors[index] = why.empty() ? "?" : why;
  generationState[index] = 2;
  error = generationErrors[index];
  return error.empty() ? &generated[index] : nullptr;
}

void ProfileRegistry::rebuild() {
  impl_->expansions.clear();
  impl_->profiles.clear();
  {
    std::lock_guard<std::recursive_mutex> lock(impl_->coreProfileMutex);
    impl_->coreProfiles.clear();
    impl_->coreExpansions.clear();
  }
  std::size_t count = impl_->structureDefinitions.size();
  impl_->generated.assign(count, json());
  impl_->generationErrors.assign(count, std::string());
  impl_->generationState.assign(count, 0);
  for (std::size_t i = 0; i < count; ++i) {
    const json& sd = impl_->structureDefinitions[i];
    auto snapshot = sd.find("snapshot");
    bool hasSnapshot = snapshot != sd.end() && snapshot->is_object() && snapshot->contains("element") &&
                       (*snapshot)["element"].is_array() && !(*snapshot)["element"].empty();
    if (!hasSnapshot && sd.contains("differential")) {
      std::string why;
      const json* elements = impl_->generatedSnapshot(i, why, 0);
      if (!elements) {
        auto p = std::make_unique<Profile>();
        p->url = str(sd, "url");
        p->version = str(sd, "version");
        p->name = str(sd, "name");
        p->type = str(sd, "type");
        p->error = "its snapshot cannot be generated from its differential: " + why;
        impl_->profiles.push_back(std::move(p));
      } else {
        impl_->profiles.push_back(impl_->compile(sd, elements));
      }
    } else {
      impl_->profiles.push_back(impl_->compile(sd, nullptr));
    }
    if (!impl_->profiles.back()->error.empty())
      impl_->profiles.back()->error = "StructureDefinition " + impl_->profiles.back()->canonical() + " (" +
                                      impl_->sdSources[i] + ") cannot be used: " + impl_->profiles.back()->error;
  }
  for (auto& p : impl_->profiles)
    if (p->error.empty()) impl_->resolve(*p);
}

bool ProfileRegistry::loadText(std::string_view text, const std::string& source, std::string& error) {
  json r = json::parse(text, nullptr, false);
  if (r.is_discarded() || !r.is_object()) {
    error = source + ": not a JSON object";
    return false;
  }
  bool ok = add(r, source, error);
  rebuild();
  return ok;
}

bool ProfileRegistry::loadTexts(const std::vector<std::pair<std::string, std::string_view>>& files,
                                std::string& error) {
  bool ok = true;
  for (const auto& [source, text] : files) {
    json r = json::parse(text, nullptr, false);
    std::string e;
    if (r.is_discarded() || !r.is_object()) e = source + ": not a JSON object";
    else add(r, source, e);
    if (!e.empty() && ok) {
      error = e;
      ok = false;
    }
  }
  rebuild();
  return ok;
}

bool ProfileRegistry::loadPath(const std::string& path, std::string& error) {
  std::error_code ec;
  std::vector<fs::path> files;
  bool folder = fs::is_directory(path, ec);
  if (folder) {
    for (auto it = fs::recursive_directory_iterator(path, ec); !ec && it != fs::recursive_directory_iterator();
         it.increment(ec))
      if (it->is_regular_file() && isJsonFile(it->path())) files.push_back(it->path());
    std::sort(files.begin(), files.end());
  } else if (fs::is_regular_file(path, ec)) {
    files.emplace_back(path);
  } else {
    error = path + ": no such file or folder";
    return false;
  }
  bool ok = true;
  for (const auto& f : files) {
    std::string text;
    if (!readFile(f, text)) {
      if (ok) error = f.string() + ": cannot be read";
      ok = false;
      continue;
    }
    json r = json::parse(text, nullptr, false);
    if (r.is_discarded() || !r.is_object()) {
      if (folder && f.filename() != "package.json") {
        if (ok) error = f.string() + ": not valid JSON";
        ok = false;
      }
      continue;
    }
    std::string e;
    if (!add(r, f.string(), e)) {
      if (ok) error = e;
      ok = false;
    }
  }
  rebuild();
  return ok;
}

const Profile* ProfileRegistry::find(std::string_view canonical) const {
  int i = impl_->profileIndex(canonical);
  if (i >= 0) return impl_->profiles[static_cast<std::size_t>(i)].get();
  // The base specification's extension definitions are known without being loaded.
  return impl_->coreExtension(canonical);
}

const Expansion* ProfileRegistry::expansion(std::string_view canonical) const {
  auto it = impl_->expansions.find(std::string(canonical));
  if (it != impl_->expansions.end()) return it->second.get();
  // Not bound by any profile: expanded on request would mutate a shared registry; look it up only.
  return nullptr;
}

std::vector<std::string> ProfileRegistry::profileUrls() const {
  std::vector<std::string> out;
  for (const auto& sd : impl_->structureDefinitions) {
    std::string v = str(sd, "version");
    out.push_back(v.empty() ? str(sd, "url") : str(sd, "url") + "|" + v);
  }
  return out;
}

std::size_t ProfileRegistry::structureDefinitionCount() const { return impl_->structureDefinitions.size(); }
std::size_t ProfileRegistry::valueSetCount() const { return impl_->valueSets.size(); }
std::size_t ProfileRegistry::codeSystemCount() const { return impl_->codeSystems.size(); }

}  // namespace passerelle::fhir::profiles
