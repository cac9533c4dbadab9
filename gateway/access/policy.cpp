// Loading the policy table and the pure decisions over it.
#include "gateway/access/policy.h"

#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "gateway/fhir/compartment.h"
#include "mappings/common/embedded_file.h"

namespace passerelle {
const std::vector<EmbeddedFile>& accessDataFiles();
}

namespace passerelle::access {
namespace {

using Json = nlohmann::ordered_json;

Error bad(const std::string& where, const std::string& what) {
  return makeError(ErrorCode::kInvalid, "access policy: " + where + ": " + what);
}

Result<std::set<std::string>> names(const Json& j, const std::string& where) {
  std::set<std::string> out;
  if (j.is_null()) return out;
  if (!j.is_array()) return bad(where, "must be an array of names");
  for (const auto& v : j) {
    if (!v.is_string()) return bad(where, "must be an array of names");
    out.insert(v.get<std::string>());
  }
  return out;
}

const std::vector<std::string> kNone;

}  // namespace

char consentLetter(Consent c) {
  switch (c) {
    case Consent::kActive: return 'A';
    case Consent::kDraft: return 'D';
    case Consent::kWithdrawn: return 'W';
    case Consent::kExpired: return 'E';
    case Consent::kExcluded: return 'X';
    case Consent::kNone: return 'N';
  }
  return 'N';
}

bool parseConsentLetter(char c, Consent& out) {
  switch (c) {
    case 'A': out = Consent::kActive; return true;
    case 'D': out = Consent::kDraft; return true;
    case 'W': out = Consent::kWithdrawn; return true;
    case 'E': out = Consent::kExpired; return true;
    case 'X': out = Consent::kExcluded; return true;
    case 'N': out = Consent::kNone; return true;
  }
  return false;
}

const char* consentName(Consent c) {
  switch (c) {
    case Consent::kActive: return "active";
    case Consent::kDraft: return "draft";
    case Consent::kWithdrawn: return "withdrawn";
    case Consent::kExpired: return "expired";
    case Consent::kExcluded: return "excluded";
    case Consent::kNone: return "none";
  }
  return "none";
}

const std::map<std::string, std::vector<std::string>>& Policy::r4Compartment() {
  static const std::map<std::string, std::vector<std::string>> table = [] {
    auto t = fhir::patientCompartment();
    t["Patient"].clear();  // a Patient is its own compartment (by id), not through Patient.link
    return t;
  }();
  return table;
}

Result<Policy> Policy::builtIn() {
  for (const auto& f : accessDataFiles()) {
    if (f.name != "conf/access/policy.json") continue;
    auto p = parse(Json::parse(f.contents), r4Compartment());
    if (!p.ok()) return makeError(ErrorCode::kInternal, p.error().message + " (built-in conf/access/policy.json)");
    return p;
  }
  return makeError(ErrorCode::kInternal, "access policy: the built-in table is missing");
}

Result<Policy> Policy::load(const std::string& path) {
  if (path.empty()) return builtIn();
  std::ifstream in(path);
  if (!in) return makeError(ErrorCode::kInvalid, "access policy: cannot read " + path);
  std::stringstream text;
  text << in.rdbuf();
  Json j = Json::parse(text.str(), nullptr, false);
  if (j.is_discarded()) return makeError(ErrorCode::kInvalid, "access policy: " + path + " is not JSON");
  auto p = parse(j, r4Compartment());
  if (!p.ok()) return makeError(ErrorCode::kInvalid, p.error().message + " (" + path + ")");
  return p;
}

Result<Policy> Policy::parse(const Json& doc, const std::map<std::string, std::vector<std::string>>& compartment) {
  Policy p;
  if (!doc.is_object()) return bad("document", "must be an object");
  p.compartment_ = compartment;
  if (auto s = doc.find("compartmentSupplement"); s != doc.end())
    for (auto& [type, params] : s->items()) {
      auto n = names(params, "compartmentSupplement." + type);
      if (!n.ok()) return n.error();
      auto& list = p.compartment_[type];
      for (const auto& x : *n) list.push_back(x);
    }
  auto cats = doc.find("categories");
  if (cats == doc.end() || !cats->is_object()) return bad("categories", "missing");
  for (auto& [name, c] : cats->items()) {
    Category cat;
    auto t = names(c.value("types", Json()), "categories." + name + ".types");
    if (!t.ok()) return t.error();
    cat.types = *t;
    if (auto f = c.find("filters"); f != c.end())
      for (auto& [type, q] : f->items()) {
        if (!q.is_string() || !cat.types.count(type)) return bad("categories." + name + ".filters." + type, "must be a search of a type of the category");
        cat.filters[type] = q.get<std::string>();
      }
    p.categories_[name] = std::move(cat);
  }
  if (auto rel = doc.find("relationships"); rel != doc.end())
    for (auto& [name, qs] : rel->items()) {
      if (name == "self" || name == "any") return bad("relationships." + name, "is built in");
      for (const auto& q : qs) {
        RelationshipQuery rq{q.value("search", ""), q.value("patient", "")};
        if (rq.search.find('?') == std::string::npos || rq.patient.empty())
          return bad("relationships." + name, "each entry needs a search (Type?params) and a patient element");
        p.relationships_[name].push_back(rq);
      }
    }
  if (auto own = doc.find("ownEntries"); own != doc.end())
    for (auto& [type, params] : own->items()) p.ownEntries_[type] = params.get<std::vector<std::string>>();
  auto checkCats = [&](const std::set<std::string>& cs, const std::string& where) -> Result<void> {
    for (const auto& c : cs)
      if (c != "*" && !p.categories_.count(c)) return bad(where, "unknown category '" + c + "'");
    return {};
  };
  auto grantOf = [&](const Json& g, const std::string& where) -> Result<Grant> {
    Grant gr;
    gr.relationship = g.value("relationship", "");
    if (gr.relationship.empty() && where.find("breakGlass") == std::string::npos) return bad(where, "needs a relationship");
    if (!gr.relationship.empty() && gr.relationship != "self" && gr.relationship != "any" && !p.relationships_.count(gr.relationship))
      return bad(where, "unknown relationship '" + gr.relationship + "'");
    for (const auto& c : g.value("consent", Json::array())) {
      Consent cs;
      std::string s = c.is_string() ? c.get<std::string>() : "";
      if (s.size() != 1 || !parseConsentLetter(s[0], cs)) return bad(where, "consent states are A, D, W, E, X or N");
      gr.consent.insert(cs);
    }
    auto r = names(g.value("read", Json()), where + ".read");
    auto w = names(g.value("write", Json()), where + ".write");
    if (!r.ok()) return r.error();
    if (!w.ok()) return w.error();
    gr.read = *r;
    gr.write = *w;
    auto c1 = checkCats(gr.read, where + ".read");
    if (!c1.ok()) return c1.error();
    auto c2 = checkCats(gr.write, where + ".write");
    if (!c2.ok()) return c2.error();
    return gr;
  };
  auto roles = doc.find("roles");
  if (roles == doc.end() || !roles->is_object()) return bad("roles", "missing");
  for (auto& [name, r] : roles->items()) {
    Role role;
    role.name = name;
    role.label = r.value("label", "");
    std::string where = "roles." + name;
    for (const auto& x : r.value("purposes", Json::array())) role.purposes.push_back(x.get<std::string>());
    if (role.purposes.empty()) return bad(where, "needs at least one purpose of use");
    for (std::size_t i = 0; i < r.value("grants", Json::array()).size(); ++i) {
      auto g = grantOf(r["grants"][i], where + ".grants[" + std::to_string(i) + "]");
      if (!g.ok()) return g.error();
      role.grants.push_back(std::move(g.value()));
    }
    role.ownEntries = r.value("ownEntries", false);
    role.createPatients = r.value("createPatients", false);
    role.readAudit = r.value("readAudit", false);
    role.readOwnAudit = r.value("readOwnAudit", false);
    if (auto bg = r.find("breakGlass"); bg != r.end()) {
      auto g = grantOf(*bg, where + ".breakGlass");
      if (!g.ok()) return g.error();
      role.breakGlass = std::move(g.value());
    }
    auto rd = names(r.value("read", Json()), where + ".read");
    auto wr = names(r.value("write", Json()), where + ".write");
    if (!rd.ok()) return rd.error();
    if (!wr.ok()) return wr.error();
    role.read = *rd;
    role.write = *wr;
    auto c1 = checkCats(role.read, where + ".read");
    if (!c1.ok()) return c1.error();
    auto c2 = checkCats(role.write, where + ".write");
    if (!c2.ok()) return c2.error();
    p.roles_[name] = std::move(role);
  }
  if (auto n = doc.find("networkApi"); n != doc.end()) {
    auto set = [&](const char* key, std::set<std::string>& out) -> Result<void> {
      auto v = names(n->value(key, Json()), std::string("networkApi.") + key);
      if (!v.ok()) return v.error();
      for (const auto& r : *v)
        if (!p.roles_.count(r)) return bad(std::string("networkApi.") + key, "unknown role '" + r + "'");
      out = *v;
      return {};
    };
    for (auto r : {set("onBehalf", p.network_.onBehalf), set("dossier", p.network_.dossier), set("sweep", p.network_.sweep)})
      if (!r.ok()) return r.error();
    const Json submit = n->value("submit", Json::object());
    for (auto& [kind, rule] : submit.items()) {
      NetworkKindRule k;
      auto roles = names(rule.value("roles", Json()), "networkApi.submit." + kind + ".roles");
      if (!roles.ok()) return roles.error();
      for (const auto& r : *roles)
        if (!p.roles_.count(r)) return bad("networkApi.submit." + kind, "unknown role '" + r + "'");
      k.roles = *roles;
      for (const auto& a : rule.value("author", Json::array())) k.author.push_back(a.get<std::string>());
      p.network_.submit[kind] = std::move(k);
    }
  }
  return p;
}

const Role* Policy::role(const std::string& name) const {
  auto it = roles_.find(name);
  return it == roles_.end() ? nullptr : &it->second;
}

bool Policy::inCompartment(const std::string& type) const { return type == "Patient" || compartment_.count(type) > 0; }

const std::vector<std::string>& Policy::compartmentParams(const std::string& type) const {
  auto it = compartment_.find(type);
  return it == compartment_.end() ? kNone : it->second;
}

const std::vector<std::string>& Policy::ownEntryParams(const std::string& type) const {
  auto it = ownEntries_.find(type);
  return it == ownEntries_.end() ? kNone : it->second;
}

bool Policy::categoryHas(const std::string& category, const std::string& type) const {
  if (category == "*") return true;
  auto it = categories_.find(category);
  return it != categories_.end() && it->second.types.count(type) > 0;
}

namespace {

// The filter of the categories of `list` that give `type`: empty when one of them gives it whole.
bool grantsType(const Policy& p, const std::set<std::string>& list, const std::string& type, std::string& filter) {
  bool found = false, unfiltered = false;
  std::string f;
  for (const auto& c : list) {
    if (!p.categoryHas(c, type)) continue;
    found = true;
    if (c == "*") {
      unfiltered = true;
      continue;
    }
    const auto& filters = p.categories().at(c).filters;
    auto it = filters.find(type);
    if (it == filters.end()) unfiltered = true;
    else if (f.empty()) f = it->second;
  }
  filter = unfiltered ? "" : f;
  return found;
}

}  // namespace

Decision Policy::decidePatient(const Role& role, const std::string& type, bool write, const std::set<std::string>& relationships,
                               Consent consent, bool breakGlass) const {
  Decision d;
  bool related = false, stateOk = false;
  std::string filter;
  bool anyFilterless = false, granted = false;
  std::string firstFilter;
  for (const auto& g : role.grants) {
    bool rel = g.relationship == "any" || relationships.count(g.relationship) > 0;
    if (!rel) continue;
    related = true;
    if (!g.consent.count(consent)) continue;
    stateOk = true;
    if (!grantsType(*this, write ? g.write : g.read, type, filter)) continue;
    granted = true;
    if (filter.empty()) anyFilterless = true;
    else if (firstFilter.empty()) firstFilter = filter;
  }
  if (granted) {
    d.permit = true;
    d.reason = "granted";
    d.filter = anyFilterless ? "" : firstFilter;
    return d;
  }
  if (breakGlass && !write && role.breakGlass && role.breakGlass->consent.count(consent) &&
      grantsType(*this, role.breakGlass->read, type, filter)) {
    d.permit = true;
    d.reason = "break-glass";
    d.filter = filter;
    return d;
  }
  d.reason = !related ? "no-care-relationship" : !stateOk ? std::string("consent-") + consentName(consent) : "category";
  return d;
}

Decision Policy::decideOther(const Role& role, const std::string& type, bool write) const {
  Decision d;
  std::string filter;
  if (grantsType(*this, write ? role.write : role.read, type, filter)) {
    d.permit = true;
    d.reason = "granted";
    d.filter = filter;
  } else {
    d.reason = "type-not-allowed";
  }
  return d;
}

bool Policy::mayEver(const Role& role, const std::string& type, bool write) const {
  std::string filter;
  if (!inCompartment(type)) return grantsType(*this, write ? role.write : role.read, type, filter);
  for (const auto& g : role.grants)
    if (grantsType(*this, write ? g.write : g.read, type, filter)) return true;
  if (!write && role.breakGlass && grantsType(*this, role.breakGlass->read, type, filter)) return true;
  if (!write && role.ownEntries && !ownEntryParams(type).empty()) return true;
  return false;
}

std::vector<Scope> parseScopes(const std::vector<std::string>& scopes) {
  std::vector<Scope> out;
  for (const auto& s : scopes) {
    auto slash = s.find('/');
    if (slash == std::string::npos) continue;  // openid, fhirUser, launch...: not about resources
    std::string ctx = s.substr(0, slash);
    Scope sc;
    if (ctx == "patient") sc.context = 'p';
    else if (ctx == "user") sc.context = 'u';
    else if (ctx == "system") sc.context = 's';
    else continue;
    std::string rest = s.substr(slash + 1);
    if (rest.find('?') != std::string::npos) continue;  // query-restricted scopes are not supported: not granted
    auto dot = rest.find('.');
    if (dot == std::string::npos) continue;
    sc.type = rest.substr(0, dot);
    std::string perm = rest.substr(dot + 1);
    if (perm == "read") sc.perms = "rs";
    else if (perm == "write") sc.perms = "cud";
    else if (perm == "*") sc.perms = "cruds";
    else {
      bool ok = !perm.empty();
      for (char c : perm)
        if (std::string("cruds").find(c) == std::string::npos) ok = false;
      if (!ok) continue;
      sc.perms = perm;
    }
    out.push_back(std::move(sc));
  }
  return out;
}

bool scopeAllows(const std::vector<Scope>& scopes, const std::string& type, char perm) {
  for (const auto& s : scopes)
    if ((s.type == "*" || s.type == type) && s.perms.find(perm) != std::string::npos) return true;
  return false;
}

}  // namespace passerelle::access
