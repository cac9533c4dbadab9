// Care relationships and consent states from the store, and the per-request guard.
#include "gateway/access/access_control.h"

#include <algorithm>
#include <ctime>
#include <nlohmann/json.hpp>

#include "gateway/fhir/search_params.h"
#include "gateway/search/index_extractor.h"
#include "gateway/search/search_definitions.h"

namespace passerelle::access {

using store::Condition;
using Groups = std::vector<std::vector<Condition>>;
using Json = nlohmann::json;

namespace {

constexpr const char* kProgrammeD77 = "https://douleur77.fr/fhir/CodeSystem/d77-programme|D77";
constexpr const char* kConsentState = "https://douleur77.fr/fhir/StructureDefinition/consent-state";
constexpr const char* kExitReason = "https://douleur77.fr/fhir/StructureDefinition/exit-reason";
constexpr int kBatch = 400;  // patients per batched lookup

std::string join(const std::vector<std::string>& v, const std::string& prefix = "") {
  std::string out;
  for (const auto& s : v) {
    if (!out.empty()) out += ',';
    out += prefix + s;
  }
  return out;
}

std::string dateMinusDays(const std::string& today, int days) {
  std::time_t t = std::time(nullptr);
  if (today.size() == 10) {
    std::tm tm{};
    tm.tm_year = std::stoi(today.substr(0, 4)) - 1900;
    tm.tm_mon = std::stoi(today.substr(5, 2)) - 1;
    tm.tm_mday = std::stoi(today.substr(8, 2));
    t = timegm(&tm);
  }
  t -= static_cast<std::time_t>(days) * 86400;
  std::tm out{};
  gmtime_r(&t, &out);
  char buf[16];
  std::strftime(buf, sizeof buf, "%Y-%m-%d", &out);
  return buf;
}

std::string todayOf(const std::string& today) { return today.empty() ? dateMinusDays("", 0) : today; }

// The id of a "Patient/x" (or ".../Patient/x") reference, or "".
std::string patientIdOf(std::string_view ref) {
  auto at = ref.rfind("Patient/");
  if (at == std::string_view::npos || (at > 0 && ref[at - 1] != '/')) return "";
  std::string_view rest = ref.substr(at + 8);
  auto end = rest.find('/');
  return std::string(rest.substr(0, end));
}

const Json* extension(const Json& r, const char* url) {
  auto ex = r.find("extension");
  if (ex == r.end() || !ex->is_array()) return nullptr;
  for (const auto& e : *ex)
    if (e.value("url", "") == url) return &e;
  return nullptr;
}

fhir::SearchLimits wideLimits() {
  fhir::SearchLimits l;
  l.maxValues = 1 << 20;
  l.maxCount = 1000;
  l.defaultCount = 1000;
  return l;
}

// Runs `type?params` to the end (every page) and calls fn on each match's body.
// `firstPageOf`: read at most that many matches (0: all of them).
Result<void> forEach(store::ResourceStore& store, const std::string& type, const fhir::Params& params,
                     const std::function<void(const Json&)>& fn, int firstPageOf = 0) {
  auto ps = fhir::parseSearch(type, params, wideLimits(), true);
  if (!ps.ok()) return ps.error();
  store::SearchQuery q = ps->query;
  q.count = firstPageOf > 0 ? firstPageOf : 1000;
  q.total = store::SearchQuery::Total::kNone;
  for (;;) {
    auto page = store.search(q);
    if (!page.ok()) return page.error();
    for (const auto& v : page->items) {
      Json j = Json::parse(v.body, nullptr, false);
      if (!j.is_discarded()) fn(j);
    }
    if (page->next.empty() || firstPageOf > 0) break;
    q.cursor = page->next;
    q.backwards = false;
  }
  return {};
}

Condition nothing() {
  Condition c;
  c.kind = Condition::Kind::kId;
  c.param = "_id";
  c.value = std::string();
  return c;
}

// The OR group `param` in values (one parameter of `type`, values already comma-joined).
Result<std::vector<Condition>> orGroup(const std::string& type, const std::string& param, const std::string& values) {
  auto ps = fhir::parseSearch(type, {{param, values}}, wideLimits(), true);
  if (!ps.ok()) return ps.error();
  if (ps->query.where.size() != 1) return makeError(ErrorCode::kInternal, "access: " + type + "." + param + " is not one condition group");
  return std::move(ps->query.where.front());
}

}  // namespace

struct Facts {
  // The read constraint of each type, made once per caller and kept with the facts it comes from
  // (dropped with them at the next commit); not used under break-glass, which widens it.
  mutable std::mutex mutex;
  mutable std::unordered_map<std::string, Groups> constraints;
  std::vector<std::string> myRefs;  // "PractitionerRole/x", "Practitioner/y", "Organization/z"
  std::map<std::string, std::set<std::string>> relations;  // patient id -> relationship names
  std::map<std::string, Consent> consent;                   // patient id -> state
  Consent stateOf(const std::string& p) const {
    auto it = consent.find(p);
    return it == consent.end() ? Consent::kNone : it->second;
  }
};

std::set<std::string> patientsOf(const std::string& type, const std::string& id, std::string_view body) {
  std::set<std::string> out;
  if (type == "Patient" && !id.empty()) out.insert(id);
  static constexpr std::string_view kKey = "\"reference\"";
  std::size_t at = 0;
  while ((at = body.find(kKey, at)) != std::string_view::npos) {
    at += kKey.size();
    while (at < body.size() && (body[at] == ' ' || body[at] == ':')) ++at;
    if (at >= body.size() || body[at] != '"') continue;
    auto end = body.find('"', at + 1);
    if (end == std::string_view::npos) break;
    std::string p = patientIdOf(body.substr(at + 1, end - at - 1));
    if (!p.empty()) out.insert(p);
    at = end;
  }
  return out;
}

AccessControl::AccessControl(store::ResourceStore& store, Policy policy) : store_(store), policy_(std::move(policy)) {}
AccessControl::~AccessControl() = default;

Result<std::unique_ptr<RequestGuard>> AccessControl::guard(const identity::Principal& principal, const std::string& breakGlassReason) {
  const Role* role = policy_.role(principal.role);
  if (!role) return makeError(ErrorCode::kForbidden, "access denied: the role '" + principal.role + "' is not in the access policy");
  if (!principal.purpose.empty() && std::find(role->purposes.begin(), role->purposes.end(), principal.purpose) == role->purposes.end() &&
      !(principal.purpose == "ETREAT" && role->breakGlass))
    return makeError(ErrorCode::kForbidden, "access denied: the purpose of use '" + principal.purpose + "' is not one of the role " + role->name + "'s");
  if (!breakGlassReason.empty() && !role->breakGlass)
    return makeError(ErrorCode::kForbidden, "access denied: the role " + role->name + " has no emergency (break-glass) access");
  return std::make_unique<RequestGuard>(*this, principal, *role, breakGlassReason);
}

Result<std::unique_ptr<RequestGuard>> AccessControl::guardFor(const identity::Principal& principal, const std::set<std::string>& patients,
                                                              const std::map<std::string, std::string>& established) {
  auto g = guard(principal, "");
  if (!g.ok()) return g.error();
  (*g)->only_ = patients;
  (*g)->established_ = established;
  return g;
}

Result<std::shared_ptr<const Facts>> AccessControl::facts(const identity::Principal& principal, const Role& role) {
  std::string key = role.name + "|" + principal.practitioner + "|" + principal.patient;
  std::uint64_t gen = store_.stats().changes;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (gen != generation_) {
      cache_.clear();
      generation_ = gen;
    }
    auto it = cache_.find(key);
    if (it != cache_.end()) return it->second;
  }
  auto f = compute(principal, role);
  if (!f.ok()) return f.error();
  std::shared_ptr<const Facts> shared = std::move(f.value());
  std::lock_guard<std::mutex> lock(mutex_);
  if (cache_.size() > 10000) cache_.clear();
  if (generation_ == gen) cache_[key] = shared;
  return shared;
}

Result<std::shared_ptr<const Facts>> AccessControl::enrolledFacts() {
  identity::Principal none;
  Role enrolled;
  enrolled.name = "#enrolled";
  Grant g;
  g.relationship = "enrolled";
  enrolled.grants.push_back(g);
  return facts(none, enrolled);
}

Result<std::shared_ptr<Facts>> AccessControl::compute(const identity::Principal& principal, const Role& role,
                                                      const std::set<std::string>* only,
                                                      const std::map<std::string, std::string>* established) {
  std::string onlyRefs;
  if (only) {
    for (const auto& p : *only) onlyRefs += (onlyRefs.empty() ? "Patient/" : ",Patient/") + p;
    if (onlyRefs.empty()) onlyRefs = "Patient/-";  // no patient: no relationship
  }
  auto f = std::make_shared<Facts>();
  // Who the caller is in the store.
  const std::string& pr = principal.practitioner;
  auto colon = pr.find(':');
  if (colon != std::string::npos) {
    std::string kind = pr.substr(0, colon), value = pr.substr(colon + 1);
    auto collect = [&](const std::string& type, const std::string& ident) -> Result<void> {
      return forEach(store_, type, {{"identifier", ident}}, [&](const Json& r) { f->myRefs.push_back(type + "/" + r.value("id", "")); });
    };
    Result<void> r;
    if (kind == "rpps" || kind == "adeli") {
      r = collect("PractitionerRole", "https://douleur77.fr/fhir/sid/member|" + pr);
      if (r.ok()) r = collect("Practitioner", std::string(kind == "rpps" ? "https://rpps.esante.gouv.fr|" : "https://adeli.esante.gouv.fr|") + value);
    } else if (kind == "finess") {
      r = collect("Organization", "https://finess.esante.gouv.fr|" + value);
    }
    if (!r.ok()) return r.error();
  }
  // The patients the caller is related to, relationship by relationship.
  std::set<std::string> needed;
  for (const auto& g : role.grants) needed.insert(g.relationship);
  std::string minus90 = dateMinusDays(today_, 90);
  std::set<std::string> known;  // relationships given by the caller: not searched for
  if (established)
    for (const auto& [patient, name] : *established) {
      if (only && !only->count(patient)) continue;
      f->relations[patient].insert(name);
      known.insert(name);
    }
  for (const auto& name : needed) {
    if (name == "any" || known.count(name)) continue;
    if (name == "self") {
      if (!principal.patient.empty() && (!only || only->count(principal.patient))) f->relations[principal.patient].insert("self");
      continue;
    }
    auto rel = policy_.relationships().find(name);
    if (rel == policy_.relationships().end()) continue;
    for (const auto& q : rel->second) {
      std::string search = q.search;
      bool needsMe = search.find("{me}") != std::string::npos;
      if (needsMe && f->myRefs.empty()) continue;
      for (std::size_t at; (at = search.find("{me}")) != std::string::npos;) search.replace(at, 4, join(f->myRefs));
      for (std::size_t at; (at = search.find("{today-90d}")) != std::string::npos;) search.replace(at, 11, minus90);
      auto qm = search.find('?');
      auto params = fhir::parseQueryString(search.substr(qm + 1));
      // The patients first: they are the selective condition (a partner may hold thousands of referrals).
      if (only) params.insert(params.begin(), {"patient", onlyRefs});
      auto r = forEach(store_, search.substr(0, qm), params, [&](const Json& res) {
        auto el = res.find(q.patient);
        if (el == res.end()) return;
        auto add = [&](const Json& ref) {
          if (!ref.is_object()) return;
          std::string p = patientIdOf(ref.value("reference", ""));
          if (!p.empty()) f->relations[p].insert(name);
        };
        if (el->is_array())
          for (const auto& x : *el) add(x);
        else
          add(*el);
      }, only && only->size() == 1 ? 1 : 0);  // one patient: one match tells the relationship
      if (!r.ok()) return r.error();
    }
  }
  // Their consent states: the treatment Consent, and exclusion from the network's episode.
  std::vector<std::string> ids;
  for (const auto& [p, _] : f->relations) ids.push_back(p);
  std::string today = todayOf(today_);
  for (std::size_t from = 0; from < ids.size(); from += kBatch) {
    std::vector<std::string> slice(ids.begin() + static_cast<long>(from), ids.begin() + static_cast<long>(std::min(ids.size(), from + kBatch)));
    std::string refs = join(slice, "Patient/");
    std::map<std::string, int> rank;  // A 4, D 3, W/E/X 2 (latest wins among them)
    auto r = forEach(store_, "Consent", {{"patient", refs}}, [&](const Json& c) {
      const Json& scope = c.value("scope", Json::object());
      bool treatment = false;
      for (const auto& cd : scope.value("coding", Json::array()))
        if (cd.value("code", "") == "treatment") treatment = true;
      if (!treatment) return;
      std::string p = patientIdOf(c.value("patient", Json::object()).value("reference", ""));
      if (p.empty()) return;
      std::string status = c.value("status", "");
      Consent s = Consent::kWithdrawn;
      int rk = 2;
      if (status == "active") {
        std::string end = c.value("provision", Json::object()).value("period", Json::object()).value("end", "");
        if (!end.empty() && end.substr(0, 10) < today) s = Consent::kExpired;
        else {
          s = Consent::kActive;
          rk = 4;
        }
      } else if (status == "draft" || status == "proposed") {
        s = Consent::kDraft;
        rk = 3;
      } else if (const Json* st = extension(c, kConsentState)) {
        std::string v = st->value("valueCode", "");
        s = v == "expired" ? Consent::kExpired : v == "excluded" ? Consent::kExcluded : Consent::kWithdrawn;
      }
      if (rk >= rank[p]) {
        rank[p] = rk;
        f->consent[p] = s;
      }
    });
    if (!r.ok()) return r.error();
    r = forEach(store_, "EpisodeOfCare", {{"patient", refs}, {"type", kProgrammeD77}}, [&](const Json& e) {
      const Json* ex = extension(e, kExitReason);
      if (!ex || ex->value("valueCode", "") != "exclusion") return;
      std::string p = patientIdOf(e.value("patient", Json::object()).value("reference", ""));
      if (!p.empty()) f->consent[p] = Consent::kExcluded;
    });
    if (!r.ok()) return r.error();
  }
  return f;
}

// --- the guard of one request ---------------------------------------------------------------------

RequestGuard::RequestGuard(AccessControl& ac, const identity::Principal& principal, const Role& role, std::string breakGlassReason)
    : ac_(ac), principal_(principal), role_(role), scopes_(parseScopes(principal.scopes)), breakGlass_(std::move(breakGlassReason)) {}

// A type is read per patient unless the role is given it whole (aggregates such as MeasureReport).
bool RequestGuard::patientBound(const std::string& type, bool write) const {
  return ac_.policy().inCompartment(type) && !ac_.policy().decideOther(role_, type, write).permit;
}

bool RequestGuard::unrestricted() const {
  for (const auto& g : role_.grants)
    if (g.relationship == "any") return true;
  return false;
}

Error RequestGuard::denied(const std::string& reason, const std::string& message) {
  reason_ = reason;
  return makeError(ErrorCode::kForbidden, "access denied: " + message);
}

Result<Consent> RequestGuard::consentOf(const std::string& patientId) {
  auto l = loadFacts();
  if (!l.ok()) return l.error();
  return facts_->stateOf(patientId);
}

Result<void> RequestGuard::loadFacts() {
  if (facts_) return {};
  if (only_) {
    auto f = ac_.compute(principal_, role_, &*only_, &established_);
    if (!f.ok()) return f.error();
    facts_ = std::move(f.value());
    return {};
  }
  auto f = ac_.facts(principal_, role_);
  if (!f.ok()) return f.error();
  facts_ = std::move(f.value());
  if (!breakGlass_.empty() && role_.breakGlass) {
    auto e = ac_.enrolledFacts();
    if (!e.ok()) return e.error();
    enrolled_ = std::move(e.value());
  }
  return {};
}

namespace {
char letter(fhir::Interaction i) {
  switch (i) {
    case fhir::Interaction::kRead:
    case fhir::Interaction::kVread: return 'r';
    case fhir::Interaction::kSearch:
    case fhir::Interaction::kHistory: return 's';
    case fhir::Interaction::kCreate: return 'c';
    case fhir::Interaction::kUpdate: return 'u';
    case fhir::Interaction::kDelete: return 'd';
  }
  return 'r';
}
const char* verb(fhir::Interaction i) {
  switch (i) {
    case fhir::Interaction::kRead: return "read";
    case fhir::Interaction::kVread: return "read versions of";
    case fhir::Interaction::kSearch: return "search";
    case fhir::Interaction::kHistory: return "read the history of";
    case fhir::Interaction::kCreate: return "create";
    case fhir::Interaction::kUpdate: return "update";
    case fhir::Interaction::kDelete: return "delete";
  }
  return "use";
}
}  // namespace

Result<void> RequestGuard::allowType(const std::string& type, fhir::Interaction interaction) {
  std::string what = type.empty() ? "every type" : type;
  if (!scopeAllows(scopes_, type.empty() ? "*" : type, letter(interaction)))
    return denied("scope", "the token's scopes do not allow to " + std::string(verb(interaction)) + " " + what);
  bool write = interaction == fhir::Interaction::kCreate || interaction == fhir::Interaction::kUpdate ||
               interaction == fhir::Interaction::kDelete;
  if (unrestricted()) return {};
  if (type.empty()) return denied("type-not-allowed", "searches and histories across every type are for system accounts");
  if (interaction == fhir::Interaction::kHistory) {
    // A type's history would show versions of resources outside the caller's patients.
    return denied("type-not-allowed", "the role " + role_.name + " may not read the history of every " + type);
  }
  if (!patientBound(type, write) ? !ac_.policy().decideOther(role_, type, write).permit : !ac_.policy().mayEver(role_, type, write))
    return denied("type-not-allowed", "the role " + role_.name + " may not " + verb(interaction) + " " + type);
  // Writes are checked inside the store's write unit: what the caller is related to is read now.
  if (write && patientBound(type, true)) return loadFacts();
  return {};
}

Result<Groups> RequestGuard::readConstraint(const std::string& type) {
  if (unrestricted()) return Groups{};
  auto it = constraints_.find(type);
  if (it != constraints_.end()) return it->second;
  auto c = constraintFor(type);
  if (!c.ok()) return c.error();
  constraints_[type] = c.value();
  return c;
}

Result<void> RequestGuard::constrain(store::SearchQuery& query) {
  auto top = readConstraint(query.type);
  if (!top.ok()) return top.error();
  auto r = constrainInner(query.where);
  if (!r.ok()) return r;
  for (auto& g : *top) query.where.push_back(std::move(g));
  return {};
}

Result<void> RequestGuard::constrainInner(Groups& where) {
  for (auto& group : where)
    for (auto& c : group) {
      if (c.kind != Condition::Kind::kChain && c.kind != Condition::Kind::kHas) continue;
      auto r = constrainInner(c.inner);
      if (!r.ok()) return r;
      auto k = readConstraint(c.kind == Condition::Kind::kChain ? c.targetType.value_or("") : c.hasType);
      if (!k.ok()) {
        if (k.error().code != ErrorCode::kForbidden) return k.error();
        c.inner.push_back({nothing()});  // a type the caller may not read matches nothing
        continue;
      }
      for (auto& g : *k) c.inner.push_back(g);
    }
  return {};
}

Result<Groups> RequestGuard::constraintFor(const std::string& type) {
  const Policy& policy = ac_.policy();
  Groups where;
  auto addFilter = [&](const std::string& filter) -> Result<void> {
    if (filter.empty()) return {};
    auto ps = fhir::parseSearch(type, fhir::parseQueryString(filter), wideLimits(), true);
    if (!ps.ok()) return makeError(ErrorCode::kInternal, "access policy filter '" + filter + "' on " + type + ": " + ps.error().message);
    for (auto& g : ps->query.where) where.push_back(std::move(g));
    return {};
  };
  if (!patientBound(type, false)) {
    Decision d = policy.decideOther(role_, type, false);
    if (!d.permit) return denied(d.reason, "the role " + role_.name + " may not read " + type);
    auto f = addFilter(d.filter);
    if (!f.ok()) return f.error();
    return where;
  }
  auto lf = loadFacts();
  if (!lf.ok()) return lf.error();
  if (!enrolled_) {
    std::lock_guard<std::mutex> lock(facts_->mutex);
    auto it = facts_->constraints.find(type);
    if (it != facts_->constraints.end()) {
      for (const auto& g : it->second) where.push_back(g);
      return where;
    }
  }
  std::vector<std::string> allowed;
  std::string filter;
  bool unfiltered = false, any = false;
  auto consider = [&](const Decision& d) {
    if (!d.permit) return false;
    if (d.filter.empty()) unfiltered = true;
    else if (filter.empty()) filter = d.filter;
    any = true;
    return true;
  };
  for (const auto& [p, rels] : facts_->relations)
    if (consider(policy.decidePatient(role_, type, false, rels, facts_->stateOf(p), false))) allowed.push_back(p);
  if (enrolled_) {
    std::set<std::string> have(allowed.begin(), allowed.end());
    for (const auto& [p, rels] : enrolled_->relations) {
      if (have.count(p)) continue;
      auto mine = facts_->relations.find(p);
      std::set<std::string> r = mine == facts_->relations.end() ? std::set<std::string>() : mine->second;
      if (consider(policy.decidePatient(role_, type, false, r, enrolled_->stateOf(p), true))) allowed.push_back(p);
    }
  }
  std::vector<Condition> group;
  if (!allowed.empty()) {
    if (type == "Patient") {
      auto g = orGroup(type, "_id", join(allowed));
      if (!g.ok()) return g.error();
      group = std::move(g.value());
    } else {
      for (const auto& param : policy.compartmentParams(type)) {
        auto g = orGroup(type, param, join(allowed, "Patient/"));
        if (!g.ok()) return g.error();
        for (auto& c : *g) group.push_back(std::move(c));
      }
    }
  }
  if (role_.ownEntries && !facts_->myRefs.empty())
    for (const auto& param : policy.ownEntryParams(type)) {
      auto g = orGroup(type, param, join(facts_->myRefs));
      if (!g.ok()) return g.error();
      for (auto& c : *g) group.push_back(std::move(c));
      unfiltered = unfiltered || !any;
    }
  if (group.empty()) group.push_back(nothing());
  where.push_back(std::move(group));
  auto f = addFilter(unfiltered ? "" : filter);
  if (!f.ok()) return f.error();
  if (!enrolled_) {
    std::lock_guard<std::mutex> lock(facts_->mutex);
    facts_->constraints.emplace(type, where);
  }
  return where;
}

// A read by id of one of the caller's patients is decided from what is cached for the caller (its
// relationships and the patients' consent states) and from the resource's own compartment
// references: no search. A decision that needs the policy's search filter, an emergency access or
// an answer "no" (the search decides those, so that both ways agree exactly) goes to the search.
Result<bool> RequestGuard::readableFromFacts(const store::ResourceVersion& v) {
  if (v.deleted || !breakGlass_.empty()) return false;
  const Policy& policy = ac_.policy();
  if (!patientBound(v.type, false)) {
    Decision d = policy.decideOther(role_, v.type, false);
    return d.permit && d.filter.empty();
  }
  auto lf = loadFacts();
  if (!lf.ok()) return lf.error();
  std::vector<std::string> patients;
  if (v.type == "Patient") {
    patients.push_back(v.id);
  } else {
    nlohmann::ordered_json body = nlohmann::ordered_json::parse(v.body, nullptr, false);
    if (body.is_discarded()) return false;
    auto rows = search::extractParams(search::SearchDefinitions::r4(), v.type, body, policy.compartmentParams(v.type), "");
    for (const auto& r : rows.references)
      if (r.targetType == "Patient") patients.push_back(r.targetId);
  }
  for (const auto& p : patients) {
    auto it = facts_->relations.find(p);
    if (it == facts_->relations.end()) continue;
    Decision d = policy.decidePatient(role_, v.type, false, it->second, facts_->stateOf(p), false);
    if (d.permit && d.filter.empty()) return true;
  }
  return false;
}

Result<std::vector<bool>> RequestGuard::readable(const std::vector<store::ResourceVersion>& found) {
  std::vector<bool> ok(found.size(), true);
  if (unrestricted()) return ok;
  std::map<std::string, std::vector<std::size_t>> byType;
  for (std::size_t i = 0; i < found.size(); ++i) {
    auto quick = readableFromFacts(found[i]);
    if (!quick.ok()) return quick.error();
    if (!quick.value()) byType[found[i].type].push_back(i);
  }
  for (const auto& [type, idx] : byType) {
    auto c = readConstraint(type);
    if (!c.ok()) {
      if (c.error().code != ErrorCode::kForbidden) return c.error();
      for (auto i : idx) ok[i] = false;
      continue;
    }
    if (c->empty()) continue;
    std::vector<std::string> ids;
    for (auto i : idx) ids.push_back(found[i].id);
    auto g = orGroup(type, "_id", join(ids));
    if (!g.ok()) return g.error();
    store::SearchQuery q;
    q.type = type;
    q.where.push_back(std::move(g.value()));
    for (const auto& grp : *c) q.where.push_back(grp);
    q.count = static_cast<int>(ids.size()) + 1;
    q.total = store::SearchQuery::Total::kNone;
    auto page = ac_.store().search(q);
    if (!page.ok()) return page.error();
    std::set<std::string> visible;
    for (const auto& v : page->items) visible.insert(v.id);
    for (auto i : idx) ok[i] = visible.count(found[i].id) > 0 && !found[i].deleted;
  }
  return ok;
}

Result<void> RequestGuard::allowWrite(const std::string& type, const std::string& id, std::string_view body,
                                      const store::ResourceVersion* old, bool deleting) {
  fhir::Interaction i = deleting ? fhir::Interaction::kDelete : old && !old->deleted ? fhir::Interaction::kUpdate : fhir::Interaction::kCreate;
  if (!scopeAllows(scopes_, type, letter(i)))
    return denied("scope", "the token's scopes do not allow to " + std::string(verb(i)) + " " + type);
  if (unrestricted()) return {};
  const Policy& policy = ac_.policy();
  if (!patientBound(type, true)) {
    Decision d = policy.decideOther(role_, type, true);
    if (!d.permit) return denied(d.reason, "the role " + role_.name + " may not write " + type);
    return {};
  }
  std::set<std::string> patients = patientsOf(type, id, body);
  if (old && !old->deleted)
    for (const auto& p : patientsOf(old->type, old->id, old->body)) patients.insert(p);
  if (type == "Patient" && (!old || old->deleted) && role_.createPatients) return {};
  if (patients.empty()) return denied("no-patient", "a " + type + " the role " + role_.name + " writes must name its patient");
  auto lf = loadFacts();
  if (!lf.ok()) return lf.error();
  for (const auto& p : patients) {
    std::set<std::string> rels;
    Consent state = Consent::kNone;
    if (created_.count(p)) {
      for (const auto& g : role_.grants) rels.insert(g.relationship);
    } else {
      auto it = facts_->relations.find(p);
      if (it != facts_->relations.end()) rels = it->second;
      state = facts_->stateOf(p);
    }
    Decision d = policy.decidePatient(role_, type, true, rels, state, false);
    if (!d.permit) return denied(d.reason, "the role " + role_.name + " may not write this " + type + " (" + d.reason + ")");
  }
  return {};
}

void RequestGuard::touched(const store::ResourceVersion& v) {
  if (resources_.size() < 200) resources_.push_back(v.type + "/" + v.id);
  for (auto& p : patientsOf(v.type, v.id, v.body)) patients_.insert(std::move(p));
}

std::set<std::string> RequestGuard::breakGlassPatients() const {
  std::set<std::string> out;
  if (!enrolled_ || !facts_) return out;
  for (const auto& p : patients_) {
    auto it = facts_->relations.find(p);
    bool regular = false;
    if (it != facts_->relations.end())
      for (const auto& g : role_.grants)
        if (it->second.count(g.relationship) && g.consent.count(facts_->stateOf(p))) regular = true;
    if (!regular) out.insert(p);
  }
  return out;
}


}  // namespace passerelle::access
