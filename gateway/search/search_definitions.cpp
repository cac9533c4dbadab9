// Loading of the generated search parameter table.
#include "gateway/search/search_definitions.h"

#include <nlohmann/json.hpp>

#include <cctype>
#include <stdexcept>

namespace passerelle::search {
namespace {

// Bump when the index rows derived from the same table change (forces a reindex).
constexpr const char* kExtractorVersion = "3";

bool samePaths(const std::vector<Path>& a, const std::vector<Path>& b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    if (a[i].valueType != b[i].valueType || a[i].resolve != b[i].resolve || a[i].steps.size() != b[i].steps.size()) return false;
    for (std::size_t j = 0; j < a[i].steps.size(); ++j) {
      const Step &x = a[i].steps[j], &y = b[i].steps[j];
      if (x.key != y.key || x.whereKey != y.whereKey || x.whereValue != y.whereValue || x.many != y.many) return false;
    }
  }
  return true;
}

ParamKind parseKind(const std::string& s) {
  if (s == "token") return ParamKind::kToken;
  if (s == "string") return ParamKind::kString;
  if (s == "date") return ParamKind::kDate;
  if (s == "reference") return ParamKind::kReference;
  if (s == "quantity") return ParamKind::kQuantity;
  if (s == "number") return ParamKind::kNumber;
  if (s == "uri") return ParamKind::kUri;
  if (s == "composite") return ParamKind::kComposite;
  throw std::runtime_error("unknown search parameter type '" + s + "'");
}

std::vector<Path> parsePaths(const nlohmann::json& arr) {
  std::vector<Path> out;
  for (const auto& p : arr) {
    Path path;
    for (const auto& s : p.at("steps")) {
      Step step;
      step.key = s.at("key").get<std::string>();
      step.many = s.value("many", false);
      if (auto w = s.find("where"); w != s.end() && w->is_object() && !w->empty()) {
        step.whereKey = w->begin().key();
        step.whereValue = w->begin().value().get<std::string>();
      }
      path.steps.push_back(std::move(step));
    }
    path.valueType = p.value("valueType", "");
    if (auto r = p.find("resolve"); r != p.end())
      for (const auto& t : *r) path.resolve.push_back(t.get<std::string>());
    out.push_back(std::move(path));
  }
  return out;
}

// At most one value per resource: no repeating step, no Timing, and several paths only when they
// are the types of one choice element (effectiveDateTime | effectivePeriod ...).
bool singleValued(const std::vector<Path>& paths) {
  if (paths.empty()) return false;
  for (const auto& p : paths) {
    if (p.steps.empty() || p.valueType == "Timing") return false;
    for (const auto& s : p.steps)
      if (s.many) return false;
  }
  if (paths.size() == 1) return true;
  const auto& first = paths[0].steps;
  std::size_t stem = 0;  // the choice's name: the common lower-case prefix of the last keys
  while (stem < first.back().key.size() && !std::isupper(static_cast<unsigned char>(first.back().key[stem]))) ++stem;
  if (stem == 0 || stem == first.back().key.size()) return false;
  for (const auto& p : paths) {
    const auto& st = p.steps;
    if (st.size() != first.size()) return false;
    for (std::size_t i = 0; i + 1 < st.size(); ++i)
      if (st[i].key != first[i].key || st[i].whereKey != first[i].whereKey || st[i].whereValue != first[i].whereValue) return false;
    const std::string& k = st.back().key;
    if (k.size() <= stem || k.compare(0, stem, first.back().key, 0, stem) != 0 || !std::isupper(static_cast<unsigned char>(k[stem])))
      return false;
  }
  return true;
}

std::string fnvHex(std::string_view text) {
  std::uint64_t h = 1469598103934665603ULL;
  for (unsigned char c : text) {
    h ^= c;
    h *= 1099511628211ULL;
  }
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(h));
  return buf;
}

}  // namespace

const char* kindName(ParamKind k) {
  switch (k) {
    case ParamKind::kToken: return "token";
    case ParamKind::kString: return "string";
    case ParamKind::kDate: return "date";
    case ParamKind::kReference: return "reference";
    case ParamKind::kQuantity: return "quantity";
    case ParamKind::kNumber: return "number";
    case ParamKind::kUri: return "uri";
    case ParamKind::kComposite: return "composite";
  }
  return "token";
}

std::unique_ptr<SearchDefinitions> SearchDefinitions::parse(std::string_view json) {
  auto doc = nlohmann::json::parse(json);
  auto defs = std::make_unique<SearchDefinitions>();
  for (const auto& p : doc.at("params")) {
    ParamDef d;
    d.type = p.at("type").get<std::string>();
    d.code = p.at("code").get<std::string>();
    d.url = p.value("url", "");
    d.kind = parseKind(p.at("kind").get<std::string>());
    d.paths = parsePaths(p.value("paths", nlohmann::json::array()));
    if (auto t = p.find("targets"); t != p.end())
      for (const auto& x : *t) d.targets.push_back(x.get<std::string>());
    if (auto c = p.find("components"); c != p.end())
      for (const auto& x : *c) {
        Component comp;
        comp.code = x.value("code", "");
        comp.kind = parseKind(x.at("kind").get<std::string>());
        comp.paths = parsePaths(x.value("paths", nlohmann::json::array()));
        d.components.push_back(std::move(comp));
      }
    d.exists = p.value("exists", false);
    if (auto ps = p.find("paths"); ps != p.end())
      for (const auto& x : *ps) d.exists = d.exists || x.value("exists", false);
    d.key = d.type + "." + d.code;
    d.single = singleValued(d.paths);
    auto& slot = defs->params_[d.type];
    std::string code = d.code;
    slot.emplace(std::move(code), std::move(d));
  }
  if (auto s = doc.find("summary"); s != doc.end())
    for (auto it = s->begin(); it != s->end(); ++it) defs->summary_[it.key()] = it.value().get<std::vector<std::string>>();
  if (auto s = doc.find("mandatory"); s != doc.end())
    for (auto it = s->begin(); it != s->end(); ++it) defs->mandatory_[it.key()] = it.value().get<std::vector<std::string>>();
  // Parameters of one type that extract the same values share one set of rows.
  for (auto& [type, params] : defs->params_) {
    std::vector<ParamDef*> seen;
    for (auto& [code, d] : params) {
      if (d.kind == ParamKind::kComposite || d.paths.empty()) continue;
      for (ParamDef* other : seen)
        if (other->kind == d.kind && other->exists == d.exists && other->targets == d.targets && samePaths(other->paths, d.paths)) {
          d.key = other->key;
          d.sharesRows = true;
          break;
        }
      if (!d.sharesRows) seen.push_back(&d);
    }
  }
  defs->fingerprint_ = fnvHex(json) + "-" + kExtractorVersion;
  defs->combined_["Resource"] = defs->combine("Resource");
  for (const auto& [type, params] : defs->params_) defs->combined_[type] = defs->combine(type);
  return defs;
}

const SearchDefinitions& SearchDefinitions::r4() {
  static const std::unique_ptr<SearchDefinitions> defs = parse(embeddedSearchTable());
  return *defs;
}

const ParamDef* SearchDefinitions::find(const std::string& type, const std::string& code) const {
  if (auto t = params_.find(type); t != params_.end())
    if (auto p = t->second.find(code); p != t->second.end()) return &p->second;
  if (auto t = params_.find("Resource"); t != params_.end())
    if (auto p = t->second.find(code); p != t->second.end()) return &p->second;
  return nullptr;
}

const std::vector<const ParamDef*>& SearchDefinitions::forType(const std::string& type) const {
  auto it = combined_.find(type);
  return it != combined_.end() ? it->second : combined_.at("Resource");
}

std::vector<const ParamDef*> SearchDefinitions::combine(const std::string& type) const {
  std::map<std::string, const ParamDef*> all;
  if (auto t = params_.find("Resource"); t != params_.end())
    for (const auto& [code, d] : t->second) all[code] = &d;
  if (auto t = params_.find(type); t != params_.end())
    for (const auto& [code, d] : t->second) all[code] = &d;
  std::vector<const ParamDef*> out;
  for (const auto& [code, d] : all) out.push_back(d);
  return out;
}

const std::vector<std::string>& SearchDefinitions::mandatory(const std::string& type) const {
  static const std::vector<std::string> none;
  auto it = mandatory_.find(type);
  return it == mandatory_.end() ? none : it->second;
}

const std::vector<std::string>& SearchDefinitions::summary(const std::string& type) const {
  static const std::vector<std::string> none;
  auto it = summary_.find(type);
  return it == summary_.end() ? none : it->second;
}

}  // namespace passerelle::search
