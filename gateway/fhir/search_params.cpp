// Parsing of search and history parameters.
#include "gateway/fhir/search_params.h"

#include <Poco/URI.h>

#include <cmath>
#include <map>
#include <limits>

#include "gateway/search/index_extractor.h"
#include "gateway/search/search_definitions.h"
#include "gateway/search/text_fold.h"
#include "mappings/fhir/fhir_time.h"
#include "mappings/fhir/resource_types.h"

namespace passerelle::fhir {
namespace {

Error bad(const std::string& param, const std::string& message) {
  return makeError(ErrorCode::kInvalid, "search parameter '" + param + "': " + message);
}

bool parseCount(const std::string& v, int& out) {
  if (v.empty() || v.size() > 9) return false;
  int r = 0;
  for (char c : v) {
    if (c < '0' || c > '9') return false;
    r = r * 10 + (c - '0');
  }
  out = r;
  return true;
}

bool isControl(const std::string& name) {
  return name == "_format" || name == "_pretty";
}

using store::Condition;
using search::ParamDef;
using search::ParamKind;
using search::SearchDefinitions;

Condition::Table tableFor(ParamKind k) {
  switch (k) {
    case ParamKind::kToken:
    case ParamKind::kUri: return Condition::Table::kToken;
    case ParamKind::kString: return Condition::Table::kString;
    case ParamKind::kDate: return Condition::Table::kDate;
    case ParamKind::kNumber:
    case ParamKind::kQuantity: return Condition::Table::kNumber;
    case ParamKind::kReference: return Condition::Table::kReference;
    case ParamKind::kComposite: return Condition::Table::kComposite;
  }
  return Condition::Table::kToken;
}

// The comparison prefix of a date, number or quantity value ("ge2025" -> kGe, "2025").
Result<Condition::Op> splitPrefix(const std::string& param, std::string& value) {
  static const std::pair<const char*, Condition::Op> prefixes[] = {
      {"eq", Condition::Op::kEq}, {"ne", Condition::Op::kNe}, {"gt", Condition::Op::kGt}, {"lt", Condition::Op::kLt},
      {"ge", Condition::Op::kGe}, {"le", Condition::Op::kLe}, {"sa", Condition::Op::kSa}, {"eb", Condition::Op::kEb},
      {"ap", Condition::Op::kAp}};
  if (value.size() >= 2 && std::isalpha(static_cast<unsigned char>(value[0])) && std::isalpha(static_cast<unsigned char>(value[1]))) {
    std::string p = value.substr(0, 2);
    for (const auto& [name, op] : prefixes)
      if (p == name) {
        value = value.substr(2);
        return op;
      }
    return bad(param, "unknown prefix '" + p + "' (expected eq, ne, gt, lt, ge, le, sa, eb or ap)");
  }
  return Condition::Op::kEq;
}

Result<void> dateValue(const std::string& param, const std::string& raw, Condition& c) {
  std::string v = raw;
  auto op = splitPrefix(param, v);
  if (!op.ok()) return op.error();
  std::int64_t lo, hi;
  if (!parseDateRange(v, lo, hi)) return bad(param, "'" + raw + "' is not a FHIR date, dateTime or instant");
  c.op = *op;
  c.dlo = lo;
  c.dhi = hi;
  if (c.op == Condition::Op::kAp) {
    // Approximately: the range widened by 10 % of its distance from now, at least a day.
    std::int64_t now = nowMs();
    std::int64_t gap = std::max<std::int64_t>(std::llabs(now - lo) / 10, 86400000);
    c.dlo = lo - gap;
    c.dhi = hi + gap;
  }
  return {};
}

// A FHIR decimal: its value and the half-width of its precision (100 -> 0.5, 1.50 -> 0.005).
bool parseDecimal(const std::string& s, double& value, double& half) {
  if (s.empty() || s.size() > 64) return false;
  std::size_t i = 0;
  if (s[i] == '-' || s[i] == '+') ++i;
  std::size_t digits = 0, decimals = 0;
  bool point = false;
  for (; i < s.size() && (std::isdigit(static_cast<unsigned char>(s[i])) || s[i] == '.'); ++i) {
    if (s[i] == '.') {
      if (point) return false;
      point = true;
    } else {
      ++digits;
      if (point) ++decimals;
    }
  }
  if (digits == 0) return false;
  int exponent = 0;
  if (i < s.size() && (s[i] == 'e' || s[i] == 'E')) {
    std::string e = s.substr(i + 1);
    if (e.empty() || e.size() > 4) return false;
    std::size_t used = 0;
    try {
      exponent = std::stoi(e, &used);
    } catch (...) {
      return false;
    }
    if (used != e.size()) return false;
    i = s.size();
  }
  if (i != s.size()) return false;
  try {
    value = std::stod(s);
  } catch (...) {
    return false;
  }
  if (!std::isfinite(value)) return false;
  half = 0.5 * std::pow(10.0, exponent - static_cast<int>(decimals));
  return true;
}

Result<void> numberValue(const std::string& param, const std::string& raw, Condition& c) {
  std::string v = raw;
  auto op = splitPrefix(param, v);
  if (!op.ok()) return op.error();
  double x, half;
  if (!parseDecimal(v, x, half)) return bad(param, "'" + raw + "' is not a number");
  c.op = *op;
  if (c.op == Condition::Op::kEq || c.op == Condition::Op::kNe) {
    c.lo = x - half;
    c.hi = x + half;
  } else if (c.op == Condition::Op::kAp) {
    double w = std::max(std::fabs(x) * 0.1, half);
    c.lo = x - w;
    c.hi = x + w;
  } else {
    c.lo = x;
    c.hi = x;
  }
  return {};
}

// Splits on `sep` not preceded by a backslash, keeping the escapes (for a second split).
std::vector<std::string> splitRaw(const std::string& s, char sep) {
  std::vector<std::string> out(1);
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '\\' && i + 1 < s.size()) {
      out.back() += s[i];
      out.back() += s[++i];
    } else if (s[i] == sep) {
      out.emplace_back();
    } else {
      out.back() += s[i];
    }
  }
  return out;
}

std::string unescape(const std::string& s) {
  std::string out;
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '\\' && i + 1 < s.size()) ++i;
    out += s[i];
  }
  return out;
}

// "system|code", "|code", "system|", "code" (`raw` still holds its \| \, \$ \\ escapes).
Result<void> tokenValue(const std::string& param, const std::string& raw, std::optional<std::string>& system,
                        std::optional<std::string>& value) {
  auto parts = splitRaw(raw, '|');
  for (auto& p : parts) p = unescape(p);
  if (parts.size() == 1) {
    if (parts[0].empty()) return bad(param, "empty value");
    value = parts[0];
  } else if (parts.size() == 2) {
    system = parts[0];
    if (!parts[1].empty()) value = parts[1];
    else if (parts[0].empty()) return bad(param, "'|' alone is not a token");
  } else {
    return bad(param, "'" + raw + "' has more than one unescaped '|'");
  }
  return {};
}

Result<void> quantityValue(const std::string& param, const std::string& raw, Condition& c, std::optional<std::string>& system,
                           std::optional<std::string>& code) {
  auto parts = splitRaw(raw, '|');
  for (auto& p : parts) p = unescape(p);
  if (parts.size() != 1 && parts.size() != 3) return bad(param, "'" + raw + "' is not [prefix]number|system|code");
  auto r = numberValue(param, parts[0], c);
  if (!r.ok()) return r;
  if (parts.size() == 3) {
    if (!parts[1].empty()) system = parts[1];
    if (!parts[2].empty()) code = parts[2];
  }
  return {};
}

struct Parser {
  const SearchDefinitions& defs;
  const SearchLimits& limits;
  std::string baseUrl;

  // The conditions (ORed) for `type`'s parameter `def` with `modifier` and the comma-separated `value`.
  Result<std::vector<Condition>> conditions(const std::string& name, const ParamDef* def, const std::string& modifier,
                                            const std::string& value) {
    auto values = splitRaw(value, ',');
    if (static_cast<int>(values.size()) > limits.maxValues)
      return bad(name, std::to_string(values.size()) + " values, more than the " + std::to_string(limits.maxValues) + " accepted");
    std::vector<Condition> group;
    for (const auto& raw : values) {
      // `raw` keeps its escapes for the types whose values have parts (token, quantity,
      // composite); `v` is the plain value.
      const std::string v = unescape(raw);
      if (raw.empty()) return bad(name, "empty value");
      Condition c;
      c.param = def ? def->key : name;
      if (modifier == "missing") {
        if (v != "true" && v != "false") return bad(name, ":missing takes true or false");
        if (def && (def->code == "_id" || def->code == "_lastUpdated")) {
          // Every resource has both: missing=true matches nothing.
          c.kind = Condition::Kind::kId;
          c.value = "";
          c.negate = v == "false";
          group.push_back(std::move(c));
          continue;
        }
        c.kind = Condition::Kind::kMissing;
        c.table = tableFor(def->kind);
        c.value = v;
        group.push_back(std::move(c));
        continue;
      }
      if (def->code == "_id") {
        if (!modifier.empty() && modifier != "not") return bad(name, "the modifier ':" + modifier + "' does not apply to _id");
        if (!isValidId(v)) return bad(name, "'" + v + "' is not a valid id");
        c.kind = Condition::Kind::kId;
        c.value = v;
        c.negate = modifier == "not";
        group.push_back(std::move(c));
        continue;
      }
      if (def->code == "_lastUpdated") {
        if (!modifier.empty()) return bad(name, "the modifier ':" + modifier + "' does not apply to dates");
        c.kind = Condition::Kind::kLastUpdated;
        auto r = dateValue(name, v, c);
        if (!r.ok()) return r.error();
        group.push_back(std::move(c));
        continue;
      }
      switch (def->kind) {
        case ParamKind::kToken: {
          c.kind = Condition::Kind::kToken;
          if (modifier == "text") {
            c.kind = Condition::Kind::kString;
            c.param = def->key + ":text";
            c.match = Condition::Match::kPrefix;
            c.value = search::foldText(v);
          } else if (modifier == "of-type") {
            auto parts = splitRaw(raw, '|');
            for (auto& p : parts) p = unescape(p);
            if (parts.size() != 3 || parts[1].empty() || parts[2].empty())
              return bad(name, ":of-type takes system|code|value");
            c.param = def->key + ":of-type";
            c.system = parts[0];
            c.value = parts[1] + "|" + parts[2];
          } else if (modifier.empty() || modifier == "not") {
            auto r = tokenValue(name, raw, c.system, c.value);
            if (!r.ok()) return r.error();
            c.negate = modifier == "not";
          } else {
            return bad(name, "the modifier ':" + modifier + "' is not supported for token parameters");
          }
          break;
        }
        case ParamKind::kUri: {
          c.kind = Condition::Kind::kToken;
          if (modifier.empty()) {
            c.value = v;
          } else if (modifier == "below") {
            c.value = v;
            c.match = Condition::Match::kPrefix;
          } else if (modifier == "above") {
            // Every ancestor of the URL, itself included.
            c.match = Condition::Match::kAnyOf;
            std::string cur = v;
            for (;;) {
              c.anyOf.push_back(cur);
              auto slash = cur.rfind('/');
              if (slash == std::string::npos || slash < cur.find("//") + 2 || slash + 1 == 0) break;
              cur.resize(slash);
              if (cur.size() < 8) break;
            }
          } else if (modifier == "not") {
            c.value = v;
            c.negate = true;
          } else {
            return bad(name, "the modifier ':" + modifier + "' is not supported for uri parameters");
          }
          break;
        }
        case ParamKind::kString: {
          c.kind = Condition::Kind::kString;
          if (modifier.empty()) {
            c.match = Condition::Match::kPrefix;
            c.value = search::foldText(v);
          } else if (modifier == "exact") {
            c.match = Condition::Match::kEq;
            c.value = v;
            c.value2 = search::foldText(v);
          } else if (modifier == "contains") {
            c.match = Condition::Match::kContains;
            c.value = search::foldText(v);
          } else {
            return bad(name, "the modifier ':" + modifier + "' is not supported for string parameters");
          }
          break;
        }
        case ParamKind::kDate: {
          if (!modifier.empty()) return bad(name, "the modifier ':" + modifier + "' does not apply to dates");
          c.kind = Condition::Kind::kDate;
          auto r = dateValue(name, v, c);
          if (!r.ok()) return r.error();
          break;
        }
        case ParamKind::kNumber: {
          if (!modifier.empty()) return bad(name, "the modifier ':" + modifier + "' does not apply to numbers");
          c.kind = Condition::Kind::kNumber;
          auto r = numberValue(name, v, c);
          if (!r.ok()) return r.error();
          break;
        }
        case ParamKind::kQuantity: {
          if (!modifier.empty()) return bad(name, "the modifier ':" + modifier + "' does not apply to quantities");
          c.kind = Condition::Kind::kNumber;
          auto r = quantityValue(name, raw, c, c.system, c.value);
          if (!r.ok()) return r.error();
          break;
        }
        case ParamKind::kReference: {
          c.kind = Condition::Kind::kReference;
          if (modifier == "identifier") {
            c.kind = Condition::Kind::kToken;
            c.param = def->key + ":identifier";
            auto r = tokenValue(name, raw, c.system, c.value);
            if (!r.ok()) return r.error();
            break;
          }
          const std::string& ref = v;  // a canonical may carry its version: url|1.0
          std::string t, id;
          search::splitReference(ref, baseUrl, t, id);
          if (t.empty() && ref.find('/') == std::string::npos && ref.find(':') == std::string::npos) {
            if (!isValidId(ref)) return bad(name, "'" + ref + "' is not a valid id");
            id = ref;  // an id alone: any target type
          }
          if (!modifier.empty()) {
            if (!isResourceType(modifier)) return bad(name, "':" + modifier + "' is not a modifier of reference parameters nor a resource type");
            if (!def->targets.empty() && std::find(def->targets.begin(), def->targets.end(), modifier) == def->targets.end())
              return bad(name, "'" + def->code + "' does not refer to " + modifier);
            if (!t.empty() && t != modifier) return bad(name, "'" + v + "' is not a " + modifier + " reference");
            t = modifier;
          }
          if (!t.empty()) c.targetType = t;
          c.value = id;
          break;
        }
        case ParamKind::kComposite: {
          if (!modifier.empty()) return bad(name, "the modifier ':" + modifier + "' does not apply to composites");
          auto halves = splitRaw(raw, '$');
          if (halves.size() != 2 || def->components.size() != 2) return bad(name, "'" + v + "' is not a composite value (first$second)");
          c.kind = Condition::Kind::kComposite;
          auto r = tokenValue(name, halves[0], c.system, c.value);
          if (!r.ok()) return r.error();
          const std::string& second = halves[1];
          if (second.empty()) return bad(name, "empty second component");
          switch (def->components[1].kind) {
            case ParamKind::kToken:
            case ParamKind::kUri: {
              auto r2 = tokenValue(name, second, c.system2, c.value2);
              if (!r2.ok()) return r2.error();
              break;
            }
            case ParamKind::kString:
              c.value2 = search::foldText(unescape(second));
              c.match = Condition::Match::kPrefix;
              break;
            case ParamKind::kReference: {
              std::string t, id;
              search::splitReference(unescape(second), baseUrl, t, id);
              c.value2 = t.empty() ? id : t + "/" + id;
              break;
            }
            case ParamKind::kDate: {
              c.compareSecond = true;
              c.table = Condition::Table::kDate;
              auto r2 = dateValue(name, unescape(second), c);
              if (!r2.ok()) return r2.error();
              break;
            }
            case ParamKind::kQuantity:
            case ParamKind::kNumber: {
              c.compareSecond = true;
              c.table = Condition::Table::kNumber;
              auto r2 = quantityValue(name, second, c, c.system2, c.value2);
              if (!r2.ok()) return r2.error();
              break;
            }
            default:
              return bad(name, "this composite is not supported");
          }
          break;
        }
      }
      group.push_back(std::move(c));
    }
    return group;
  }

  // One search parameter (possibly chained or _has) -> one OR group.
  Result<std::vector<Condition>> parameter(const std::string& type, const std::string& rawName, const std::string& value,
                                           bool& known) {
    known = true;
    if (rawName.rfind("_has:", 0) == 0) return has(type, rawName, value);
    std::string head = rawName, rest;
    if (auto dot = rawName.find('.'); dot != std::string::npos) {
      head = rawName.substr(0, dot);
      rest = rawName.substr(dot + 1);
    }
    std::string name = head, modifier;
    if (auto colon = head.find(':'); colon != std::string::npos) {
      name = head.substr(0, colon);
      modifier = head.substr(colon + 1);
    }
    const ParamDef* def = defs.find(type.empty() ? "Resource" : type, name);
    if (!def) {
      known = false;
      return std::vector<Condition>();
    }
    if (!rest.empty()) return chain(type, rawName, *def, modifier, rest, value);
    return conditions(rawName, def, modifier, value);
  }

  Result<std::vector<Condition>> chain(const std::string& type, const std::string& rawName, const ParamDef& ref,
                                       const std::string& modifier, const std::string& rest, const std::string& value) {
    if (ref.kind != ParamKind::kReference) return bad(rawName, "'" + ref.code + "' is not a reference parameter: it cannot be chained");
    if (rest.find('.') != std::string::npos) return bad(rawName, "only one level of chaining is supported");
    std::vector<std::string> targets;
    if (!modifier.empty()) {
      if (!isResourceType(modifier)) return bad(rawName, "'" + modifier + "' is not a resource type");
      if (!ref.targets.empty() && std::find(ref.targets.begin(), ref.targets.end(), modifier) == ref.targets.end())
        return bad(rawName, "'" + ref.code + "' does not refer to " + modifier);
      targets.push_back(modifier);
    } else {
      targets = ref.targets;
    }
    std::string name = rest, mod;
    if (auto colon = rest.find(':'); colon != std::string::npos) {
      name = rest.substr(0, colon);
      mod = rest.substr(colon + 1);
    }
    std::vector<Condition> group;
    for (const auto& t : targets) {
      const ParamDef* inner = defs.find(t, name);
      if (!inner) continue;
      if (!isResourceType(t)) continue;
      auto g = conditions(rest, inner, mod, value);
      if (!g.ok()) return g.error();
      Condition c;
      c.kind = Condition::Kind::kChain;
      c.param = ref.key;
      c.targetType = t;
      c.inner.push_back(std::move(g.value()));
      group.push_back(std::move(c));
    }
    if (group.empty())
      return bad(rawName, "no type that '" + ref.code + "' of " + type + " refers to has a search parameter '" + name + "'");
    return group;
  }

  // _has:Observation:patient:code=1234
  Result<std::vector<Condition>> has(const std::string& type, const std::string& rawName, const std::string& value) {
    auto parts = splitEscaped(rawName, ':');
    if (parts.size() < 4) return bad(rawName, "expected _has:Type:reference:parameter");
    const std::string& other = parts[1];
    if (!isResourceType(other)) return bad(rawName, "'" + other + "' is not a resource type");
    if (type.empty()) return bad(rawName, "_has needs a resource type in the URL");
    const ParamDef* ref = defs.find(other, parts[2]);
    if (!ref || ref->kind != ParamKind::kReference) return bad(rawName, "'" + parts[2] + "' is not a reference parameter of " + other);
    if (!ref->targets.empty() && std::find(ref->targets.begin(), ref->targets.end(), type) == ref->targets.end())
      return bad(rawName, other + "." + parts[2] + " does not refer to " + type);
    if (parts[3] == "_has" || parts[3].find('.') != std::string::npos) return bad(rawName, "_has supports one level");
    const ParamDef* inner = defs.find(other, parts[3]);
    if (!inner) return bad(rawName, "'" + parts[3] + "' is not a search parameter of " + other);
    std::string mod = parts.size() > 4 ? parts[4] : "";
    auto g = conditions(rawName, inner, mod, value);
    if (!g.ok()) return g.error();
    Condition c;
    c.kind = Condition::Kind::kHas;
    c.param = ref->key;
    c.hasType = other;
    c.inner.push_back(std::move(g.value()));
    return std::vector<Condition>{std::move(c)};
  }

  Result<void> sort(const std::string& type, const std::string& value, store::SearchQuery& q) {
    for (const auto& raw : splitEscaped(value, ',')) {
      store::SortKey k;
      std::string name = raw;
      if (!name.empty() && name[0] == '-') {
        k.descending = true;
        name = name.substr(1);
      }
      if (name.empty()) return bad("_sort", "empty sort key");
      const ParamDef* def = defs.find(type.empty() ? "Resource" : type, name);
      if (!def) return bad("_sort", "'" + name + "' is not a search parameter" + (type.empty() ? "" : " of " + type));
      k.param = (name == "_id" || name == "_lastUpdated") ? name : def->key;
      k.table = tableFor(def->kind);
      q.sort.push_back(std::move(k));
    }
    if (q.sort.size() > 8) return bad("_sort", "at most 8 sort keys");
    return {};
  }

  Result<void> include(const std::string& type, const std::string& name, const std::string& modifier,
                       const std::string& value, std::vector<IncludeSpec>& out) {
    IncludeSpec spec;
    spec.reverse = name == "_revinclude";
    if (!modifier.empty()) {
      if (modifier != "iterate" && modifier != "recurse") return bad(name, "the modifier ':" + modifier + "' is not supported");
      spec.iterate = true;
    }
    if (value == "*") {
      if (spec.reverse) return bad(name, "'*' is accepted for _include only");
      spec.sourceType = type;
      spec.param = "*";
      out.push_back(std::move(spec));
      return {};
    }
    auto parts = splitEscaped(value, ':');
    if (parts.size() < 2 || parts.size() > 3) return bad(name, "expected Type:parameter[:targetType]");
    if (!isResourceType(parts[0])) return bad(name, "'" + parts[0] + "' is not a resource type");
    spec.sourceType = parts[0];
    if (parts[1] == "*") {
      spec.param = "*";
    } else {
      const ParamDef* def = defs.find(parts[0], parts[1]);
      if (!def || def->kind != ParamKind::kReference) return bad(name, "'" + parts[1] + "' is not a reference parameter of " + parts[0]);
      spec.param = parts[1];
    }
    if (parts.size() == 3) {
      if (!isResourceType(parts[2])) return bad(name, "'" + parts[2] + "' is not a resource type");
      spec.targetType = parts[2];
    }
    if (!spec.reverse && !spec.iterate && !type.empty() && spec.sourceType != type)
      return bad(name, "'" + value + "' does not start from " + type + " (add :iterate to follow included resources)");
    out.push_back(std::move(spec));
    return {};
  }
};

// birthdate=ge1960&birthdate=lt1961 on a parameter with one value per resource: both bounds
// apply to the same index row, which one index range finds (instead of two large sets).
void mergeSingleValuedRanges(const std::string& type, store::SearchQuery& q) {
  if (type.empty()) return;
  std::map<std::string, std::size_t> first;
  std::vector<bool> drop(q.where.size(), false);
  for (std::size_t i = 0; i < q.where.size(); ++i) {
    auto& g = q.where[i];
    if (g.size() != 1 || g[0].kind != Condition::Kind::kDate || g[0].negate || g[0].op == Condition::Op::kNe) continue;
    const std::string& key = g[0].param;
    const ParamDef* def = nullptr;
    if (auto dot = key.find('.'); dot != std::string::npos) def = SearchDefinitions::r4().find(type, key.substr(dot + 1));
    if (!def || !def->single || def->key != key) continue;
    auto [it, fresh] = first.emplace(key, i);
    if (fresh) continue;
    q.where[it->second][0].sameRow.push_back(std::move(g[0]));
    drop[i] = true;
  }
  std::vector<std::vector<Condition>> kept;
  for (std::size_t i = 0; i < q.where.size(); ++i)
    if (!drop[i]) kept.push_back(std::move(q.where[i]));
  q.where = std::move(kept);
}

}  // namespace

std::vector<std::string> splitEscaped(const std::string& s, char sep) {
  std::vector<std::string> out(1);
  for (std::size_t i = 0; i < s.size(); ++i) {
    char c = s[i];
    if (c == '\\' && i + 1 < s.size()) {
      out.back() += s[++i];
    } else if (c == sep) {
      out.emplace_back();
    } else {
      out.back() += c;
    }
  }
  return out;
}

Params parseQueryString(const std::string& query) {
  Params out;
  std::size_t start = 0;
  while (start <= query.size()) {
    std::size_t amp = query.find('&', start);
    std::string part = query.substr(start, amp == std::string::npos ? std::string::npos : amp - start);
    if (!part.empty()) {
      std::size_t eq = part.find('=');
      std::string k = part.substr(0, eq), v = eq == std::string::npos ? "" : part.substr(eq + 1);
      for (auto* s : {&k, &v})
        for (auto& c : *s)
          if (c == '+') c = ' ';
      std::string dk, dv;
      try {
        Poco::URI::decode(k, dk);
        Poco::URI::decode(v, dv);
      } catch (...) {
        dk = k;
        dv = v;
      }
      out.emplace_back(std::move(dk), std::move(dv));
    }
    if (amp == std::string::npos) break;
    start = amp + 1;
  }
  return out;
}

std::string encodeQuery(const Params& params) {
  std::string out;
  for (const auto& [k, v] : params) {
    if (!out.empty()) out += '&';
    std::string ek, ev;
    Poco::URI::encode(k, "&=+#%?", ek);
    Poco::URI::encode(v, "&=+#%?", ev);
    out += ek + "=" + ev;
  }
  return out;
}

Result<ParsedSearch> parseSearch(const std::string& type, const Params& params, const SearchLimits& limits, bool strict,
                                 const std::string& baseUrl) {
  ParsedSearch ps;
  auto& q = ps.query;
  q.type = type;
  q.count = limits.defaultCount;
  Parser parser{SearchDefinitions::r4(), limits, baseUrl};
  int conditions = 0;
  for (const auto& [rawName, value] : params) {
    std::string name = rawName, modifier;
    if (auto colon = rawName.find(':'); colon != std::string::npos && rawName.rfind("_has:", 0) != 0) {
      name = rawName.substr(0, colon);
      modifier = rawName.substr(colon + 1);
    }
    if (isControl(name)) continue;
    if (name == "_count") {
      int c;
      if (!parseCount(value, c)) return bad(name, "'" + value + "' is not a non-negative integer");
      q.count = std::min(c, limits.maxCount);
      ps.applied.emplace_back(name, std::to_string(q.count));
      continue;
    }
    if (name == "_offset") {
      int o;
      if (!parseCount(value, o)) return bad(name, "'" + value + "' is not a non-negative integer");
      q.offset = o;
      continue;  // put back by the paging links
    }
    if (name == "_cursor") {
      // n<cursor> for the next page, p<cursor> for the previous one.
      if (value.size() < 2 || (value[0] != 'n' && value[0] != 'p')) return bad(name, "not a paging cursor");
      q.cursor = value.substr(1);
      q.backwards = value[0] == 'p';
      continue;
    }
    if (name == "_total") {
      if (value == "none") q.total = store::SearchQuery::Total::kNone;
      else if (value == "estimate") q.total = store::SearchQuery::Total::kBounded;
      else if (value == "accurate") q.total = store::SearchQuery::Total::kAccurate;
      else return bad(name, "expected none, estimate or accurate");
      ps.applied.emplace_back(name, value);
      continue;
    }
    if (name == "_summary") {
      if (value == "count") ps.summary = Summary::kCount;
      else if (value == "true") ps.summary = Summary::kTrue;
      else if (value == "text") ps.summary = Summary::kText;
      else if (value == "data") ps.summary = Summary::kData;
      else if (value == "false") ps.summary = Summary::kFalse;
      else return bad(name, "expected true, text, data, count or false");
      if (ps.summary == Summary::kCount) {
        q.wantItems = false;
        q.total = store::SearchQuery::Total::kAccurate;
      }
      ps.applied.emplace_back(name, value);
      continue;
    }
    if (name == "_elements") {
      for (const auto& e : splitEscaped(value, ',')) {
        if (e.empty()) continue;
        if (e.find_first_not_of("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_") != std::string::npos)
          return bad(name, "'" + e + "' is not an element name");
        ps.elements.push_back(e);
      }
      ps.applied.emplace_back(name, value);
      continue;
    }
    if (name == "_sort") {
      auto r = parser.sort(type, value, q);
      if (!r.ok()) return r.error();
      ps.applied.emplace_back(name, value);
      continue;
    }
    if (name == "_include" || name == "_revinclude") {
      auto r = parser.include(type, name, modifier, value, ps.includes);
      if (!r.ok()) return r.error();
      ps.applied.emplace_back(rawName, value);
      continue;
    }
    if (name == "_type" && type.empty()) {
      std::vector<store::Condition> group;
      for (const auto& t : splitEscaped(value, ',')) {
        if (!isResourceType(t)) return bad(name, "'" + t + "' is not a resource type");
        store::Condition c;
        c.kind = store::Condition::Kind::kType;
        c.value = t;
        group.push_back(std::move(c));
      }
      q.where.push_back(std::move(group));
      ps.applied.emplace_back(name, value);
      continue;
    }
    if (name == "_contained" || name == "_containedType" || name == "_text" || name == "_content" || name == "_list" ||
        name == "_query" || name == "_filter") {
      if (strict) return bad(name, "not supported");
      continue;
    }
    bool known = true;
    auto group = parser.parameter(type, rawName, value, known);
    if (!group.ok()) return group.error();
    if (!known) {
      if (strict) return bad(rawName, "not a search parameter" + std::string(type.empty() ? " across all types" : " of " + type));
      continue;
    }
    if (++conditions > limits.maxConditions)
      return bad(rawName, "more than " + std::to_string(limits.maxConditions) + " search parameters");
    bool allNegated = group->size() > 1;
    for (const auto& c : *group) allNegated = allNegated && c.negate;
    if (allNegated) {
      // code:not=a,b is "neither a nor b": each value its own AND group.
      for (auto& c : *group) q.where.push_back({std::move(c)});
    } else {
      q.where.push_back(std::move(group.value()));
    }
    ps.applied.emplace_back(rawName, value);
  }
  mergeSingleValuedRanges(type, q);
  return ps;
}

Result<ParsedHistory> parseHistory(const Params& params, const SearchLimits& limits, bool strict) {
  ParsedHistory ph;
  ph.query.count = limits.defaultCount;
  for (const auto& [name, value] : params) {
    if (isControl(name)) continue;
    if (name == "_count") {
      int c;
      if (!parseCount(value, c) || c == 0) return bad(name, "'" + value + "' is not a positive integer");
      ph.query.count = std::min(c, limits.maxCount);
      ph.applied.emplace_back(name, std::to_string(ph.query.count));
    } else if (name == "_since") {
      std::int64_t lo, hi;
      if (!parseDateRange(value, lo, hi)) return bad(name, "'" + value + "' is not a FHIR instant");
      ph.query.sinceMs = lo;
      ph.applied.emplace_back(name, value);
    } else if (name == "_cursor") {
      std::int64_t c = 0;
      for (char ch : value) {
        if (ch < '0' || ch > '9' || c > INT64_MAX / 10 - 10) return bad(name, "not a paging cursor");
        c = c * 10 + (ch - '0');
      }
      if (value.empty()) return bad(name, "not a paging cursor");
      ph.query.beforeSeq = c;
    } else if (strict) {
      return bad(name, "not supported for history");
    }
  }
  return ph;
}

}  // namespace passerelle::fhir
