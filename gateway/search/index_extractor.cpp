// Extraction of search index rows.
#include "gateway/search/index_extractor.h"

#include <nlohmann/json.hpp>

#include <cmath>
#include <functional>
#include <limits>

#include "gateway/search/text_fold.h"
#include "mappings/fhir/fhir_time.h"
#include "mappings/fhir/resource_types.h"

namespace passerelle::search {
namespace {

using fhir::isResourceType;
using fhir::isValidId;
using fhir::parseDateRange;
using Json = nlohmann::ordered_json;

std::string str(const Json& j, const char* key) {
  auto it = j.find(key);
  if (it == j.end()) return {};
  if (it->is_string()) return it->get<std::string>();
  if (it->is_boolean()) return it->get<bool>() ? "true" : "false";
  if (it->is_number()) return it->dump();
  return {};
}

bool num(const Json& j, const char* key, double& out) {
  auto it = j.find(key);
  if (it == j.end() || !it->is_number()) return false;
  out = it->get<double>();
  return std::isfinite(out);
}

// Calls `f` with every value reached by `steps` from `node` (arrays flattened at each step).
void walk(const Json& node, const std::vector<Step>& steps, std::size_t i, const std::function<void(const Json&)>& f) {
  if (node.is_array()) {
    for (const auto& e : node) walk(e, steps, i, f);
    return;
  }
  if (i == steps.size()) {
    f(node);
    return;
  }
  if (!node.is_object()) return;
  auto it = node.find(steps[i].key);
  if (it == node.end()) return;
  const Step& s = steps[i];
  auto next = [&](const Json& child) {
    if (!s.whereKey.empty()) {
      if (!child.is_object()) return;
      auto w = child.find(s.whereKey);
      if (w == child.end() || !w->is_string() || w->get<std::string>() != s.whereValue) return;
    }
    walk(child, steps, i + 1, f);
  };
  if (it->is_array())
    for (const auto& e : *it) next(e);
  else
    next(*it);
}

bool isQuantityType(const std::string& t) {
  return t == "Quantity" || t == "Age" || t == "Duration" || t == "Distance" || t == "Count" ||
         t == "SimpleQuantity" || t == "MoneyQuantity";
}

class Extractor {
 public:
  Extractor(store::IndexRows& rows, const std::string& baseUrl) : rows_(rows), base_(baseUrl) {}

  void param(const ParamDef& p, const Json& resource) {
    if (p.kind == ParamKind::kComposite) {
      composite(p, resource);
      return;
    }
    if (p.exists) {
      bool present = false;
      for (const auto& path : p.paths)
        walk(resource, path.steps, 0, [&](const Json& v) {
          if (!(v.is_boolean() && !v.get<bool>())) present = true;
        });
      rows_.tokens.push_back({p.key, "", present ? "true" : "false"});
      return;
    }
    for (const auto& path : p.paths)
      walk(resource, path.steps, 0, [&](const Json& v) { value(p.key, p.kind, path, v); });
  }

  void value(const std::string& key, ParamKind kind, const Path& path, const Json& v) {
    const std::string& t = path.valueType;
    switch (kind) {
      case ParamKind::kToken: token(key, t, v); return;
      case ParamKind::kString: string(key, t, v); return;
      case ParamKind::kDate: date(key, t, v); return;
      case ParamKind::kReference: reference(key, t, path, v); return;
      case ParamKind::kQuantity:
      case ParamKind::kNumber: number(key, t, v); return;
      case ParamKind::kUri:
        if (v.is_string()) rows_.tokens.push_back({key, "", v.get<std::string>()});
        return;
      case ParamKind::kComposite: return;
    }
  }

 private:
  void text(const std::string& key, const std::string& s) {
    if (!s.empty()) rows_.strings.push_back({key + ":text", foldText(s), s});
  }

  void coding(const std::string& key, const Json& c) {
    if (!c.is_object()) return;
    std::string code = str(c, "code");
    if (!code.empty()) rows_.tokens.push_back({key, str(c, "system"), code});
    text(key, str(c, "display"));
  }

  void token(const std::string& key, const std::string& t, const Json& v) {
    if (t == "Coding") {
      coding(key, v);
    } else if (t == "CodeableConcept") {
      if (!v.is_object()) return;
      if (auto cs = v.find("coding"); cs != v.end() && cs->is_array())
        for (const auto& c : *cs) coding(key, c);
      text(key, str(v, "text"));
    } else if (t == "Identifier") {
      if (!v.is_object()) return;
      std::string value = str(v, "value");
      if (!value.empty()) rows_.tokens.push_back({key, str(v, "system"), value});
      if (auto type = v.find("type"); type != v.end() && type->is_object()) {
        text(key, str(*type, "text"));
        if (auto cs = type->find("coding"); cs != type->end() && cs->is_array() && !value.empty())
          for (const auto& c : *cs)
            if (c.is_object() && !str(c, "code").empty())
              rows_.tokens.push_back({key + ":of-type", str(c, "system"), str(c, "code") + "|" + value});
      }
    } else if (t == "ContactPoint") {
      if (!v.is_object()) return;
      std::string value = str(v, "value");
      if (!value.empty()) rows_.tokens.push_back({key, str(v, "system"), value});
    } else if (t == "Reference") {
      // Tokens on a reference (rare): its identifier.
      if (auto id = v.find("identifier"); id != v.end()) token(key, "Identifier", *id);
    } else if (v.is_string() || v.is_boolean()) {
      std::string s = v.is_string() ? v.get<std::string>() : (v.get<bool>() ? "true" : "false");
      if (!s.empty()) rows_.tokens.push_back({key, "", s});
    }
  }

  void addString(const std::string& key, const std::string& s) {
    if (!s.empty()) rows_.strings.push_back({key, foldText(s), s});
  }

  void stringMembers(const std::string& key, const Json& v, std::initializer_list<const char*> members) {
    if (!v.is_object()) return;
    for (const char* m : members) {
      auto it = v.find(m);
      if (it == v.end()) continue;
      if (it->is_array()) {
        for (const auto& e : *it)
          if (e.is_string()) addString(key, e.get<std::string>());
      } else if (it->is_string()) {
        addString(key, it->get<std::string>());
      }
    }
  }

  void string(const std::string& key, const std::string& t, const Json& v) {
    if (t == "HumanName") {
      stringMembers(key, v, {"family", "given", "prefix", "suffix", "text"});
    } else if (t == "Address") {
      stringMembers(key, v, {"line", "city", "district", "state", "postalCode", "country", "text"});
    } else if (v.is_string()) {
      addString(key, v.get<std::string>());
    }
  }

  static bool range(const Json& v, std::int64_t& lo, std::int64_t& hi) {
    return v.is_string() && parseDateRange(v.get<std::string>(), lo, hi);
  }

  void date(const std::string& key, const std::string& t, const Json& v) {
    std::int64_t lo, hi;
    if (t == "Period") {
      if (!v.is_object()) return;
      std::int64_t a = std::numeric_limits<std::int64_t>::min(), b = std::numeric_limits<std::int64_t>::max();
      bool any = false;
      if (auto s = v.find("start"); s != v.end() && range(*s, lo, hi)) {
        a = lo;
        any = true;
      }
      if (auto e = v.find("end"); e != v.end() && range(*e, lo, hi)) {
        b = hi;
        any = true;
      }
      if (any) rows_.dates.push_back({key, a, b});
    } else if (t == "Timing") {
      if (!v.is_object()) return;
      if (auto ev = v.find("event"); ev != v.end() && ev->is_array())
        for (const auto& e : *ev)
          if (range(e, lo, hi)) rows_.dates.push_back({key, lo, hi});
      if (auto rep = v.find("repeat"); rep != v.end() && rep->is_object())
        if (auto bp = rep->find("boundsPeriod"); bp != rep->end()) date(key, "Period", *bp);
    } else if (range(v, lo, hi)) {
      rows_.dates.push_back({key, lo, hi});
    }
  }

  void reference(const std::string& key, const std::string& t, const Path& path, const Json& v) {
    if (t == "Reference") {
      if (!v.is_object()) return;
      std::string ref = str(v, "reference");
      if (!ref.empty() && ref[0] != '#') {
        std::string type, id;
        splitReference(ref, base_, type, id);
        bool allowed = path.resolve.empty();
        for (const auto& r : path.resolve) allowed = allowed || r == type;
        if (allowed) rows_.references.push_back({key, type, id});
      }
      if (auto ident = v.find("identifier"); ident != v.end() && ident->is_object()) {
        std::string value = str(*ident, "value");
        if (!value.empty()) rows_.tokens.push_back({key + ":identifier", str(*ident, "system"), value});
      }
    } else if (v.is_string()) {  // canonical, uri
      std::string url = v.get<std::string>();
      if (auto bar = url.find('|'); bar != std::string::npos) {
        // A versioned canonical is found with its version and without.
        rows_.references.push_back({key, "", url});
        url.resize(bar);
      }
      if (url.empty()) return;
      std::string type, id;
      splitReference(url, base_, type, id);
      rows_.references.push_back({key, type, id});
    }
  }

  void quantity(const std::string& key, const Json& q, double lo, double hi) {
    std::string system = str(q, "system"), code = str(q, "code"), unit = str(q, "unit");
    rows_.numbers.push_back({key, lo, hi, system, code});
    // The unit text matches `value||unit` (no system) only.
    if (!unit.empty() && unit != code) rows_.numbers.push_back({key, lo, hi, "", unit});
  }

  void number(const std::string& key, const std::string& t, const Json& v) {
    double x;
    if (v.is_number()) {
      x = v.get<double>();
      if (std::isfinite(x)) rows_.numbers.push_back({key, x, x, "", ""});
    } else if (isQuantityType(t)) {
      if (v.is_object() && num(v, "value", x)) quantity(key, v, x, x);
    } else if (t == "Money") {
      if (v.is_object() && num(v, "value", x))
        rows_.numbers.push_back({key, x, x, "urn:iso:std:iso:4217", str(v, "currency")});
    } else if (t == "Range") {
      if (!v.is_object()) return;
      double lo = -std::numeric_limits<double>::max(), hi = std::numeric_limits<double>::max();
      const Json* unitFrom = nullptr;
      if (auto l = v.find("low"); l != v.end() && l->is_object() && num(*l, "value", x)) {
        lo = x;
        unitFrom = &*l;
      }
      if (auto h = v.find("high"); h != v.end() && h->is_object() && num(*h, "value", x)) {
        hi = x;
        if (!unitFrom) unitFrom = &*h;
      }
      if (unitFrom) quantity(key, *unitFrom, lo, hi);
    } else if (t == "SampledData") {
      if (v.is_object())
        if (auto o = v.find("origin"); o != v.end() && o->is_object() && num(*o, "value", x)) quantity(key, *o, x, x);
    }
  }

  // A composite: for each base element, every pairing of the first component's tokens with the
  // second component's values.
  void composite(const ParamDef& p, const Json& resource) {
    if (p.components.size() != 2) return;
    for (const auto& base : p.paths) {
      walk(resource, base.steps, 0, [&](const Json& element) {
        store::IndexRows a, b;
        Extractor ea(a, base_), eb(b, base_);
        for (const auto& path : p.components[0].paths)
          walk(element, path.steps, 0, [&](const Json& v) { ea.value("1", p.components[0].kind, path, v); });
        for (const auto& path : p.components[1].paths)
          walk(element, path.steps, 0, [&](const Json& v) { eb.value("2", p.components[1].kind, path, v); });
        for (const auto& t1 : a.tokens) {
          if (t1.param != "1") continue;
          for (const auto& t2 : b.tokens)
            if (t2.param == "2") rows_.composites.push_back({p.key, t1.system, t1.value, t2.system, t2.value, 0, 0});
          for (const auto& s2 : b.strings)
            if (s2.param == "2") rows_.composites.push_back({p.key, t1.system, t1.value, "", s2.norm, 0, 0});
          for (const auto& n2 : b.numbers) rows_.composites.push_back({p.key, t1.system, t1.value, n2.system, n2.code, n2.lo, n2.hi});
          for (const auto& d2 : b.dates)
            rows_.composites.push_back({p.key, t1.system, t1.value, "", "", static_cast<double>(d2.lo), static_cast<double>(d2.hi)});
          for (const auto& r2 : b.references)
            rows_.composites.push_back(
                {p.key, t1.system, t1.value, "", r2.targetType.empty() ? r2.targetId : r2.targetType + "/" + r2.targetId, 0, 0});
        }
      });
    }
  }

  store::IndexRows& rows_;
  const std::string& base_;
};

}  // namespace

using fhir::isResourceType;
using fhir::isValidId;

void splitReference(const std::string& ref, const std::string& baseUrl, std::string& type, std::string& id) {
  std::string rel = ref;
  if (!baseUrl.empty() && rel.size() > baseUrl.size() + 1 && rel.compare(0, baseUrl.size(), baseUrl) == 0 &&
      rel[baseUrl.size()] == '/')
    rel = rel.substr(baseUrl.size() + 1);
  if (auto h = rel.find("/_history/"); h != std::string::npos) rel.resize(h);
  auto slash = rel.find('/');
  if (slash != std::string::npos && rel.find('/', slash + 1) == std::string::npos && rel.find(':') == std::string::npos) {
    std::string t = rel.substr(0, slash), i = rel.substr(slash + 1);
    if (isResourceType(t) && isValidId(i)) {
      type = t;
      id = i;
      return;
    }
  }
  type.clear();
  id = ref;
}

store::IndexRows extractParams(const SearchDefinitions& defs, const std::string& type, const nlohmann::ordered_json& resource,
                               const std::vector<std::string>& codes, const std::string& baseUrl) {
  store::IndexRows rows;
  Extractor ex(rows, baseUrl);
  for (const auto& code : codes)
    if (const ParamDef* p = defs.find(type, code)) ex.param(*p, resource);
  return rows;
}

store::IndexRows extractIndex(const SearchDefinitions& defs, const std::string& type, const nlohmann::ordered_json& resource,
                              const std::string& baseUrl) {
  store::IndexRows rows;
  Extractor ex(rows, baseUrl);
  for (const ParamDef* p : defs.forType(type)) {
    // _id and _lastUpdated are columns of the resource, not index rows.
    if (p->code == "_id" || p->code == "_lastUpdated" || p->sharesRows) continue;
    ex.param(*p, resource);
  }
  return rows;
}

}  // namespace passerelle::search
