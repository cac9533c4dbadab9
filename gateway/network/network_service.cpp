// The network's document API: parse (JSON or XML), check the schema and the rules, derive, map,
// apply the effects on what is stored, then one FHIR transaction (see network_service.h).
#include "gateway/network/network_service.h"

#include <ctime>
#include <mutex>
#include <set>
#include <nlohmann/json.hpp>

#include "gateway/common/log.h"
#include "gateway/fhir/search_params.h"
#include "mappings/fhir/markdown.h"
#include "mappings/common/sha256.h"
#include "mappings/fhir/json_reader.h"
#include "mappings/network/documents/document_schemas.h"
#include "mappings/network/documents/xml_form.h"
#include "mappings/network/mapping_engine.h"
#include "mappings/network/rules/calendar.h"

namespace passerelle::network {

namespace {

constexpr const char* kSd = "https://douleur77.fr/fhir/StructureDefinition/";
constexpr const char* kCs = "https://douleur77.fr/fhir/CodeSystem/";
constexpr const char* kRuleSystem = "https://douleur77.fr/fhir/CodeSystem/network-rule";

std::string sd(const char* name) { return std::string(kSd) + name; }
std::string cs(const char* name) { return std::string(kCs) + name; }

fhir::FhirResponse jsonResponse(int status, const Json& body) {
  fhir::FhirResponse r;
  r.status = status;
  r.body = body.dump();
  r.headers.emplace_back("Content-Type", "application/json; charset=utf-8");
  return r;
}

// An OperationOutcome whose issues name the document path and, for rule refusals, the reason code.
struct Outcome {
  Json issues = Json::array();
  void add(const std::string& severity, const std::string& type, const std::string& path, const std::string& message,
           const std::string& reason = "") {
    Json i = {{"severity", severity}, {"code", type}};
    if (!reason.empty()) i["details"] = {{"coding", Json::array({{{"system", kRuleSystem}, {"code", reason}}})}, {"text", reason}};
    i["diagnostics"] = message;
    if (!path.empty()) i["expression"] = Json::array({path});
    issues.push_back(std::move(i));
  }
  bool empty() const { return issues.empty(); }
  Json json() const { return {{"resourceType", "OperationOutcome"}, {"issue", issues}}; }
  fhir::FhirResponse response(int status) const {
    fhir::FhirResponse r;
    r.status = status;
    r.body = json().dump();
    r.headers.emplace_back("Content-Type", "application/fhir+json; charset=utf-8");
    return r;
  }
};

fhir::FhirResponse problem(int status, const std::string& type, const std::string& message, const std::string& path = "") {
  Outcome o;
  o.add("error", type, path, message);
  return o.response(status);
}

const Json* member(const Json& j, const char* key) {
  if (!j.is_object()) return nullptr;
  auto it = j.find(key);
  return it == j.end() ? nullptr : &*it;
}

std::string str(const Json& j, const char* key) {
  const Json* m = member(j, key);
  return m && m->is_string() ? m->get<std::string>() : "";
}

// The value of the extension with `url`, or nullptr.
const Json* extensionValue(const Json& res, const std::string& url, const char* valueKey) {
  const Json* ext = member(res, "extension");
  if (!ext || !ext->is_array()) return nullptr;
  for (const auto& e : *ext)
    if (str(e, "url") == url) return member(e, valueKey);
  return nullptr;
}

void setExtension(Json& res, const std::string& url, const char* valueKey, const Json& value) {
  Json& ext = res["extension"];
  if (!ext.is_array()) ext = Json::array();
  for (auto& e : ext)
    if (str(e, "url") == url) {
      e[valueKey] = value;
      return;
    }
  ext.push_back({{"url", url}, {valueKey, value}});
}

// The code of the first coding of `system` in a CodeableConcept (or array of them).
std::string codeIn(const Json* cc, const std::string& system) {
  if (!cc) return "";
  if (cc->is_array()) {
    for (const auto& c : *cc)
      if (auto v = codeIn(&c, system); !v.empty()) return v;
    return "";
  }
  if (const Json* codings = member(*cc, "coding"); codings && codings->is_array())
    for (const auto& c : *codings)
      if (str(c, "system") == system) return str(c, "code");
  return "";
}

std::string xmlEscape(const std::string& s) {
  std::string out;
  for (char c : s) {
    switch (c) {
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '&': out += "&amp;"; break;
      default: out += c;
    }
  }
  return out;
}

std::string todayUtc() {
  std::time_t t = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[16];
  std::strftime(buf, sizeof buf, "%Y-%m-%d", &tm);
  return buf;
}

}  // namespace

// What the gateway knows about a patient beyond the rules' PatientState: the stored resources
// the effects change.
struct PatientFacts {
  std::string id;  // Patient id
  std::optional<Json> episode, operaEpisode, goal;
  std::vector<Json> consents;  // active Consents (treatment and privacy)
  std::string ciedEncounter;
};

namespace {

// The first store failure met by the lookups of the request (or sweep) this thread is handling: an
// answer built on lookups that failed would say "unknown patient" or "nothing found" where the truth
// is that the store could not be read; it answers 503 instead.
thread_local std::optional<Error> tlLookupFailure;

}  // namespace

struct NetworkService::Impl {
  store::ResourceStore& store;
  fhir::FhirService& fhirService;
  NetworkOptions o;

  Impl(store::ResourceStore& s, fhir::FhirService& f, NetworkOptions opt) : store(s), fhirService(f), o(std::move(opt)) {}

  std::string today() const { return o.today.empty() ? todayUtc() : o.today; }

  static void lookupFailed(const Error& e) {
    if (tlLookupFailure) return;
    log::error("network.lookup_failed", {{"error", e.message}});
    tlLookupFailure = e;
  }
  // The answer to give when a lookup failed, if one did.
  static std::optional<fhir::FhirResponse> failedLookups() {
    if (!tlLookupFailure) return std::nullopt;
    Error e = *tlLookupFailure;
    if (errorInfo(e.code).httpStatus < 500) e.code = ErrorCode::kUnavailable;
    return fhir::errorResponse(e);
  }

  // ---- reading the store ----
  std::vector<Json> find(const std::string& type, const fhir::Params& params, int count = 100) {
    fhir::Params p = params;
    p.emplace_back("_count", std::to_string(count));
    fhir::SearchLimits limits;
    auto parsed = fhir::parseSearch(type, p, limits, true);
    std::vector<Json> out;
    if (!parsed.ok()) {
      log::warn("network.search", {{"type", type}, {"error", parsed.error().message}});
      return out;
    }
    auto page = store.search(parsed.value().query);
    if (!page.ok()) {
      lookupFailed(page.error());
      return out;
    }
    for (const auto& v : page.value().items)
      if (auto j = asJson(v)) out.push_back(std::move(*j));
    return out;
  }

  // A stored version as JSON, with its id and versionId (for If-Match on the way back).
  static std::optional<Json> asJson(const store::ResourceVersion& v) {
    Json j = Json::parse(v.body, nullptr, false);
    if (j.is_discarded()) return std::nullopt;
    j["id"] = v.id;
    if (!j.contains("meta")) j["meta"] = Json::object();
    j["meta"]["versionId"] = std::to_string(v.version);
    return j;
  }

  std::optional<Json> read(const std::string& reference) {
    auto slash = reference.find('/');
    if (slash == std::string::npos) return std::nullopt;
    auto r = store.read(reference.substr(0, slash), reference.substr(slash + 1));
    if (!r.ok()) lookupFailed(r.error());
    if (!r.ok() || !r.value() || r.value()->deleted) return std::nullopt;
    return asJson(*r.value());
  }

  // The patient's resources of the types the rules read (episodes of care of every programme,
  // consents, encounters of every kind, goals): one search per type, filtered here, rather than one
  // per question the rules ask. (A single search across the types would not be driven by an index:
  // the store drives only searches of one type.)
  std::vector<Json> patientResources(const std::string& patientRef) {
    std::vector<Json> out;
    for (const auto& [type, param] : {std::pair<const char*, const char*>{"EpisodeOfCare", "patient"}, {"Consent", "patient"},
                                      {"Encounter", "subject"}, {"Goal", "subject"}})
      for (auto& r : find(type, {{param, patientRef}}, 1000)) out.push_back(std::move(r));
    return out;
  }

  // "Type?identifier=system|value" -> the resources it matches.
  std::vector<Json> findConditional(const std::string& conditional) {
    auto q = conditional.find('?');
    if (q == std::string::npos) return {};
    return find(conditional.substr(0, q), fhir::parseQueryString(conditional.substr(q + 1)), 2);
  }

  // The rules' key ("rpps:N", "finess:N", "nir:N") of a stored reference, from the target's identifiers.
  std::string keyOf(const std::string& reference) {
    auto target = read(reference);
    if (!target) return "";
    std::string kind;
    Json ref;
    return MappingSet::parseConditionalReference(MappingSet::conditionalReferenceOf(*target), kind, ref) ? refKey(ref) : "";
  }

  // ---- the rule context ----
  void addProfessional(RuleContext& ctx, const Json& ref) {
    std::string key = refKey(ref);
    if (key.empty() || ctx.professionals.count(key)) return;
    ProfessionalState st;
    auto roles = findConditional(MappingSet::conditionalReference("professional", ref));
    if (roles.size() == 1) {
      const Json& role = roles[0];
      st.known = true;
      st.category = codeIn(member(role, "code"), cs("network-role"));
      if (const Json* l = extensionValue(role, sd("network-level"), "valueInteger")) st.level = l->get<int>();
      if (const Json* m = extensionValue(role, sd("membership-status"), "valueCode")) st.membershipStatus = m->get<std::string>();
      if (const Json* r = extensionValue(role, sd("opera-region"), "valueCode")) st.region = r->get<std::string>();
      std::string organization = str(role.value("organization", Json::object()), "reference");
      if (organization.rfind("Organization/", 0) == 0) st.structureKey = keyOf(organization);
      std::string practitioner = str(role.value("practitioner", Json::object()), "reference");
      if (auto p = read(practitioner))
        for (const auto& q : p->value("qualification", Json::array()))
          if (auto t = codeIn(member(q, "code"), cs("training")); !t.empty()) st.trainings.push_back(t);
    }
    ctx.professionals[key] = st;
  }

  void addStructure(RuleContext& ctx, const Json& ref) {
    std::string key = refKey(ref);
    if (key.empty() || ctx.structures.count(key)) return;
    StructureState st;
    auto orgs = findConditional(MappingSet::conditionalReference("structure", ref));
    if (orgs.size() == 1) {
      st.known = true;
      if (const Json* l = extensionValue(orgs[0], sd("network-level"), "valueInteger")) st.level = l->get<int>();
      if (const Json* d = extensionValue(orgs[0], sd("referral-delay-days"), "valueInteger")) st.referralDelayDays = d->get<int>();
    }
    ctx.structures[key] = st;
  }

  // Fills the patient's state and facts; returns false when the patient is unknown.
  bool addPatient(RuleContext& ctx, const Json& ref, PatientFacts& facts, const Json& doc) {
    std::string key = refKey(ref);
    if (key.empty()) return false;
    PatientState& st = ctx.patients[key];
    auto patients = findConditional(MappingSet::conditionalReference("patient", ref));
    if (patients.size() != 1) return false;
    st.known = true;
    facts.id = patients[0]["id"].get<std::string>();
    std::string pref = "Patient/" + facts.id;
    std::vector<Json> episodes, operaEpisodes, consents, ciedEncounters, csbEncounters, goals;
    for (auto& r : patientResources(pref)) {
      std::string type = str(r, "resourceType");
      if (type == "EpisodeOfCare") {
        std::string programme = codeIn(member(r, "type"), cs("d77-programme"));
        if (programme == "D77") episodes.push_back(std::move(r));
        else if (programme == "OPERA" && str(r, "status") == "active") operaEpisodes.push_back(std::move(r));
      } else if (type == "Consent") {
        consents.push_back(std::move(r));
      } else if (type == "Encounter") {
        std::string k = codeIn(member(r, "type"), cs("d77-enc"));
        if (k == "CIED") ciedEncounters.push_back(std::move(r));
        else if (k == "CSB") csbEncounters.push_back(std::move(r));
      } else if (type == "Goal" && str(r, "lifecycleStatus") == "active") {
        goals.push_back(std::move(r));
      }
    }
    // network enrolment
    for (auto& e : episodes) {
      std::string status = str(e, "status");
      if (!facts.episode || status == "active") facts.episode = e;
    }
    if (facts.episode) {
      const Json& e = *facts.episode;
      std::string status = str(e, "status");
      std::string exit = extensionValue(e, sd("exit-reason"), "valueCode") ? extensionValue(e, sd("exit-reason"), "valueCode")->get<std::string>() : "";
      st.enrolment = status == "active" ? "active" : exit == "patient-withdrawal" ? "withdrawn" : exit == "exclusion" ? "excluded"
                     : status == "cancelled" ? "refused" : "ended";
      st.inclusionDate = str(e.value("period", Json::object()), "start");
      st.gpKey = keyOf(str(e.value("careManager", Json::object()), "reference"));
      const Json& diag = e.value("diagnosis", Json::array());
      if (!diag.empty())
        if (auto c = read(str(diag[0].value("condition", Json::object()), "reference")))
          st.pathology = codeIn(member(*c, "code"), cs("pathology"));
    }
    for (auto& e : operaEpisodes) {
      st.operaEnrolled = true;
      facts.operaEpisode = e;
    }
    // consent (treatment scope gives the state)
    for (auto& c : consents) {
      std::string scope = codeIn(member(c, "scope"), "http://terminology.hl7.org/CodeSystem/consentscope");
      std::string status = str(c, "status");
      if (status == "active") facts.consents.push_back(c);
      if (scope != "treatment") continue;
      const Json* state = extensionValue(c, sd("consent-state"), "valueCode");
      std::string s = status == "active" ? "active" : status == "draft" ? "draft" : state ? state->get<std::string>() : "withdrawn";
      if (st.consent.empty() || s == "active") {
        st.consent = s;
        st.consentEnd = str(c.value("provision", Json::object()).value("period", Json::object()), "end");
        if (const Json* n = extensionValue(c, sd("consent-renewal-count"), "valueInteger")) st.consentRenewals = n->get<int>();
      }
    }
    // consultations
    std::string kind = str(doc, "documentType");
    if (kind == "cied" || kind == "csb") {
      for (auto& enc : ciedEncounters) {
        st.hasCied = true;
        facts.ciedEncounter = "Encounter/" + enc["id"].get<std::string>();
      }
      if (!facts.ciedEncounter.empty())
        for (auto& obs : find("Observation", {{"encounter", facts.ciedEncounter}, {"code", "http://loinc.org|72514-3"}})) {
          const Json* quantity = member(obs, "valueQuantity");  // not obs.value(...): a temporary
          if (const Json* v = quantity ? member(*quantity, "value") : nullptr; v && v->is_number()) st.ciedVas = v->get<double>();
        }
      for (auto& enc : csbEncounters)
        if (const Json* s = extensionValue(enc, sd("csb-semester"), "valueInteger")) st.csbSemesters.push_back(s->get<int>());
      for (auto& g : goals)
        if (!facts.goal) facts.goal = g;
    }
    if (kind == "liaison-sheet") {
      std::string sheet = str(doc, "sheetId");
      for (auto& c : find("Composition", {{"identifier", "https://douleur77.fr/fhir/sid/liaison-sheet|" + sheet}})) {
        std::string phase;
        for (const auto& s : c.value("section", Json::array())) {
          std::string code = codeIn(member(s, "code"), cs("liaison-phase"));
          if (code == "end") phase = "end";
          else if (code == "start" && phase.empty()) phase = "start";
          if (code == "start")
            if (const Json* start = extensionValue(s, sd("liaison-start"), "extension"); start && start->is_array())
              for (const auto& x : *start)
                if (str(x, "url") == "date") st.liaisonStartDates[sheet] = str(x, "valueDate");
        }
        st.liaisonSheets[sheet] = phase.empty() ? "start" : phase;
        const Json& authors = c.value("author", Json::array());
        if (!authors.empty()) st.liaisonAuthors[sheet] = keyOf(str(authors[0], "reference"));
      }
    }
    if (kind == "referral" || kind == "referral-update") {
      std::string id = str(doc, "referralId");
      for (auto& t : find("Task", {{"identifier", "https://douleur77.fr/fhir/sid/referral-task|" + id}})) {
        ReferralState rs;
        rs.status = str(t, "status") == "in-progress" ? "seen" : str(t, "status") == "completed" ? "report-returned" : str(t, "status");
        std::string owner = str(t.value("owner", Json::object()), "reference");
        rs.toKey = keyOf(owner);
        st.referrals[id] = rs;
      }
    }
    return true;
  }

  // Walks the document for references and fills the context. Patient facts are kept per key.
  void gather(const std::string& kind, const Json& doc, RuleContext& ctx, std::map<std::string, PatientFacts>& facts) {
    ctx.today = today();
    std::function<void(const Json&, const std::string&)> walk = [&](const Json& j, const std::string& name) {
      if (j.is_object()) {
        bool isProfessionalRef = (j.contains("rpps") || j.contains("adeli")) && !j.contains("family");
        if (isProfessionalRef && name != "professional") addProfessional(ctx, j);
        if (name == "professional" && kind != "professional") addProfessional(ctx, j);
        if (j.contains("finess") && name != "structure") addStructure(ctx, j);
        if (name == "structure" && kind != "structure") addStructure(ctx, j);
        bool isPatientRef = j.contains("nir") || j.contains("nia") || j.contains("networkId");
        if (isPatientRef && (name == "patient" || name == "patients")) {
          std::string key = refKey(j);
          if (!facts.count(key)) addPatient(ctx, j, facts[key], doc);
        }
        for (const auto& [k, v] : j.items()) walk(v, k);
      } else if (j.is_array()) {
        for (const auto& v : j) walk(v, name);
      }
    };
    walk(doc, "");
  }

  // ---- submitting ----
  fhir::FhirResponse submit(const std::string& kind, const fhir::FhirRequest& req) {
    const auto& schemas = DocumentSchemas::instance();
    const auto& mappings = MappingSet::builtIn();
    if (!schemas.hasKind(kind) || !mappings.has(kind))
      return problem(404, "not-found", "'" + kind + "' is not a network document kind (GET /network/v1/kinds lists them)");
    Json doc;
    std::string ct = req.contentType;
    for (auto& c : ct) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    Outcome outcome;
    if (ct.find("xml") != std::string::npos) {
      if (req.body.size() > o.maxXmlBytes)
        return problem(413, "too-costly", "the XML document is larger than " + std::to_string(o.maxXmlBytes) + " bytes");
      std::vector<DocumentIssue> issues;
      if (!xmlToJson(kind, req.body, doc, issues)) {
        for (const auto& i : issues) outcome.add("error", "structure", i.path, i.message);
        if (outcome.empty()) outcome.add("error", "structure", "", "the XML document could not be read");
        return outcome.response(400);
      }
    } else if (ct.empty() || ct.find("json") != std::string::npos) {
      fhir::JsonError err;
      fhir::Json parsed;
      if (!fhir::parseJson(req.body, o.json, parsed, err)) return problem(400, "structure", err.message, err.path);
      doc = std::move(parsed);
    } else {
      return problem(415, "not-supported", "send the document as application/json or application/xml");
    }
    if (!doc.is_object()) return problem(400, "structure", "a network document is a JSON object");
    if (str(doc, "documentType") != kind)
      return problem(422, "invariant", "documentType is '" + str(doc, "documentType") + "' but the document was sent to /" + kind,
                     "documentType");
    for (const auto& i : schemas.validate(kind, doc)) outcome.add("error", "structure", i.path, i.message);
    if (!outcome.empty()) return outcome.response(422);
    if (o.authorizeSubmit) {
      auto refusal = o.authorizeSubmit(req, kind, [&doc](const std::string& field) {
        auto it = doc.find(field);
        return it == doc.end() ? std::string() : refKey(*it);
      });
      if (refusal) return *refusal;
    }

    // The same document again changes nothing; another document under a used identifier is refused.
    std::string documentId = str(doc, "documentId");
    std::string hash = sha256Hex(nlohmann::json(doc).dump());
    for (auto& list : find("List", {{"identifier", std::string(kDocumentSystem) + "|" + documentId}}, 2)) {
      const Json* h = extensionValue(list, sd("document-sha256"), "valueString");
      if (h && h->get<std::string>() == hash) {
        Outcome same;
        same.add("information", "informational", "", "document " + documentId + " was already received (List/" +
                 list["id"].get<std::string>() + "): nothing changed");
        auto r = same.response(200);
        r.headers.emplace_back("Location", "List/" + list["id"].get<std::string>());
        return r;
      }
      return problem(409, "conflict", "documentId " + documentId + " is already used by another document", "documentId");
    }

    RuleContext ctx;
    std::map<std::string, PatientFacts> facts;
    gather(kind, doc, ctx, facts);
    if (auto failed = failedLookups()) return *failed;
    auto problems = checkRules(kind, doc, ctx, o.rules);
    std::vector<Problem> warnings;
    for (const auto& p : problems) {
      if (p.warning) warnings.push_back(p);
      else outcome.add("error", "business-rule", p.path, p.message, p.code);
    }
    if (!outcome.empty()) {
      std::string codes;
      for (const auto& p : problems)
        if (!p.warning) codes += (codes.empty() ? "" : ",") + p.code;
      log::info("network.refused", {{"kind", kind}, {"documentId", documentId}, {"reasons", codes}});
      if (kind == "inclusion") recordRefusal(doc, problems);
      return outcome.response(422);
    }
    Json derived = deriveValues(kind, doc, ctx, o.rules);
    std::vector<Json> extra;  // effect entries, appended to the transaction
    effects(kind, doc, ctx, facts, derived, warnings, extra);

    std::vector<MappingIssue> mapIssues;
    auto entries = mappings.toEntries(kind, doc, derived, mapIssues);
    for (const auto& i : mapIssues) outcome.add("error", "processing", i.path, i.message);
    if (!outcome.empty()) return outcome.response(422);
    if (kind == "opera-activity") enrichPatientFiles(doc, facts, entries, extra);

    Json bundle = {{"resourceType", "Bundle"}, {"type", "transaction"}, {"entry", Json::array()}};
    for (auto& e : entries) {
      if (e.merge) mergeStored(e);
      Json& res = *e.resource;
      if (res.value("resourceType", "") == "List") {
        setExtension(res, sd("document-sha256"), "valueString", hash);
        // the warnings are recorded with the document they were raised on
        for (const auto& p : warnings) {
          res["extension"].push_back({{"url", sd("rule-warning")}, {"valueCoding", {{"system", kRuleSystem}, {"code", p.code}}}});
          res["note"].push_back(
              {{"text", fhir::markdownFromText(p.code + (p.path.empty() ? "" : " (" + p.path + ")") + ": " + p.message)}});
        }
      }
      Json request = {{"method", e.method}, {"url", e.url}};
      if (!e.ifNoneExist.empty()) request["ifNoneExist"] = e.ifNoneExist;
      bundle["entry"].push_back({{"fullUrl", e.fullUrl}, {"resource", std::move(res)}, {"request", std::move(request)}});
    }
    for (auto& x : extra) bundle["entry"].push_back(std::move(x));
    if (auto failed = failedLookups()) return *failed;

    fhir::FhirRequest tx;
    tx.method = "POST";
    tx.path = "";
    tx.body = bundle.dump();
    tx.contentType = "application/fhir+json";
    tx.baseUrl = req.baseUrl;
    // The document's audit record is committed with what it writes (the answer is the transaction's).
    tx.auditRecord = req.auditRecord;
    tx.auditAttached = req.auditAttached;
    tx.alsoInUnit = req.alsoInUnit;
    fhir::FhirResponse r = fhirService.handle(tx);
    if (r.status >= 300) {
      log::warn("network.store", {{"kind", kind}, {"documentId", documentId}, {"status", std::to_string(r.status)}});
      return r;
    }
    if (!warnings.empty()) {
      Json resp = Json::parse(r.body, nullptr, false);
      Outcome w;
      for (const auto& p : warnings) w.add("warning", "business-rule", p.path, p.message, p.code);
      if (resp.is_object() && resp.contains("entry") && !resp["entry"].empty()) {
        // the List (the document's index) is the last mapped entry
        resp["entry"][entries.size() - 1]["response"]["outcome"] = w.json();
        r.body = resp.dump();
      }
    }
    return r;
  }

  // OPERA: the patient file (the Composition made at enrolment) is enriched at every contact or
  // session: each patient's Encounter joins its follow-up section, a new version of the file.
  void enrichPatientFiles(const Json& doc, std::map<std::string, PatientFacts>& facts, const std::vector<MappedEntry>& entries,
                          std::vector<Json>& extra) {
    const Json& patients = doc.value("patients", Json::array());
    for (const auto& e : entries) {
      if (e.rule != "encounter" || e.index >= patients.size()) continue;
      auto it = facts.find(refKey(patients[e.index]));
      if (it == facts.end() || it->second.id.empty()) continue;
      auto files = find("Composition", {{"subject", "Patient/" + it->second.id}, {"type", cs("d77-doc") + "|OPERA-PATIENT-FILE"}}, 2);
      if (files.size() != 1) continue;
      Json file = files[0];
      Json& sections = file["section"];
      if (!sections.is_array()) sections = Json::array();
      Json* followUp = nullptr;
      for (auto& s : sections)
        if (codeIn(member(s, "code"), cs("opera-file-section")) == "follow-up") followUp = &s;
      if (!followUp) {
        sections.push_back({{"title", "Suivi"},
                            {"code", {{"coding", Json::array({{{"system", cs("opera-file-section")}, {"code", "follow-up"}, {"display", "Suivi"}}})}}}});
        followUp = &sections.back();
      }
      (*followUp)["entry"].push_back({{"reference", e.fullUrl}});
      if (!str(doc, "date").empty()) file["date"] = str(doc, "date");
      extra.push_back(updateEntry(file));
    }
  }

  // A refused inclusion is counted (Art. 11: refusals with their reasons) without keeping the
  // patient's identity: a Basic record with the reasons, the date, the GP and the pathology.
  void recordRefusal(const Json& doc, const std::vector<Problem>& problems) {
    Json basic = {{"resourceType", "Basic"},
                  {"code", {{"coding", Json::array({{{"system", cs("network-event")}, {"code", "admission-refusal"}}})}}},
                  {"created", str(doc, "inclusionDate")}};
    basic["identifier"] = Json::array({{{"system", "https://douleur77.fr/fhir/sid/admission-refusal"}, {"value", str(doc, "documentId")}}});
    for (const auto& p : problems)
      if (!p.warning) basic["extension"].push_back({{"url", sd("refusal-reason")}, {"valueCode", p.code}});
    basic["extension"].push_back({{"url", sd("pathology")}, {"valueCode", str(doc, "pathology")}});
    std::string gp = MappingSet::conditionalReference("professional", doc.value("gp", Json::object()));
    auto roles = findConditional(gp);
    if (roles.size() == 1) basic["author"] = {{"reference", "PractitionerRole/" + roles[0]["id"].get<std::string>()}};
    fhir::FhirRequest r;
    r.method = "POST";
    r.path = "/Basic";
    r.body = basic.dump();
    r.contentType = "application/fhir+json";
    r.ifNoneExist = "identifier=https://douleur77.fr/fhir/sid/admission-refusal|" + str(doc, "documentId");
    auto out = fhirService.handle(r);
    if (out.status >= 300) log::warn("network.refusal", {{"status", std::to_string(out.status)}, {"body", out.body}});
  }

  // A `merge` entry keeps the stored resource's `keep` elements that the new one does not replace
  // (a liaison sheet's start section when its end comes).
  void mergeStored(MappedEntry& e) {
    auto q = e.url.find('?');
    if (q == std::string::npos) return;
    auto stored = find(e.url.substr(0, q), fhir::parseQueryString(e.url.substr(q + 1)), 2);
    if (stored.size() != 1) return;
    Json& res = *e.resource;
    for (const auto& name : e.keep) {
      const Json* old = member(stored[0], name.c_str());
      if (!old || !old->is_array()) continue;
      Json& now = res[name];
      if (!now.is_array()) now = Json::array();
      Json merged = Json::array();
      for (const auto& x : *old) {
        bool replaced = false;
        for (const auto& y : now) replaced = replaced || (x.value("code", Json()) == y.value("code", Json()) && x.value("title", Json()) == y.value("title", Json()));
        if (!replaced) merged.push_back(x);
      }
      for (const auto& y : now) merged.push_back(y);
      now = std::move(merged);
    }
  }

  // An update of a stored resource inside the transaction, guarded by its version.
  static Json updateEntry(const Json& res) {
    std::string type = str(res, "resourceType"), id = str(res, "id");
    std::string version = res.value("meta", Json::object()).value("versionId", "");
    Json body = res;
    if (body.contains("meta")) body["meta"].erase("versionId");
    Json request = {{"method", "PUT"}, {"url", type + "/" + id}};
    if (!version.empty()) request["ifMatch"] = "W/\"" + version + "\"";
    return {{"resource", std::move(body)}, {"request", std::move(request)}};
  }

  static Json createEntry(Json res, const std::string& system, const std::string& value) {
    res["identifier"] = Json::array({{{"system", system}, {"value", value}}});
    std::string escaped;  // search syntax: | , $ and \ are escaped; the query is percent-encoded
    for (char c : value) {
      if (c == '|' || c == ',' || c == '$' || c == '\\') escaped += "%5C";
      if (c == '|') escaped += "%7C";
      else if (c == '%' || c == '&' || c == '#' || c == '+' || c == ' ') {
        static const char* hex = "0123456789ABCDEF";
        escaped += '%';
        escaped += hex[static_cast<unsigned char>(c) >> 4];
        escaped += hex[c & 15];
      } else escaped += c;
    }
    Json request = {{"method", "POST"}, {"url", str(res, "resourceType")},
                    {"ifNoneExist", "identifier=" + system + "|" + escaped}};
    return {{"resource", std::move(res)}, {"request", std::move(request)}};
  }

  // ---- effects on what is stored, and the values only the gateway can derive ----
  void effects(const std::string& kind, const Json& doc, const RuleContext& ctx, std::map<std::string, PatientFacts>& facts,
               Json& derived, std::vector<Problem>& warnings, std::vector<Json>& extra);
  Json feeItem(const std::string& code, double amount, const std::string& patientId, const std::string& performerKey,
               const std::string& date, const std::string& identifier, const std::string& keyLetter, double coefficient);
  int experimentYear(const std::string& date) const;

  // ---- reading back ----
  fhir::FhirResponse dossier(const std::string& id, const fhir::FhirRequest& req);
  std::string conditionalFor(const std::string& reference, std::map<std::string, std::string>& cache);
};

int NetworkService::Impl::experimentYear(const std::string& date) const {
  auto start = parseDate(o.fees.agreementDate), d = parseDate(date);
  if (!start || !d || *d < *start) return 0;
  return wholeYearsBetween(*start, *d) + 1;
}

Json NetworkService::Impl::feeItem(const std::string& code, double amount, const std::string& patientId,
                                   const std::string& performerKey, const std::string& date, const std::string& identifier,
                                   const std::string& keyLetter, double coefficient) {
  Json item = {{"resourceType", "ChargeItem"},
               {"status", "billable"},
               {"code", {{"coding", Json::array({{{"system", cs("d77-fee")}, {"code", code}}})}}},
               {"subject", {{"reference", "Patient/" + patientId}}},
               {"occurrenceDateTime", date},
               {"priceOverride", {{"value", amount}, {"currency", "EUR"}}}};
  if (!keyLetter.empty()) {
    setExtension(item, sd("fee-key-letter"), "valueString", keyLetter);
    setExtension(item, sd("fee-coefficient"), "valueDecimal", coefficient);
  }
  setExtension(item, sd("fee-status"), "valueCode", "accrued");
  auto colon = performerKey.find(':');
  if (colon != std::string::npos) {
    Json ref = Json::object();
    ref[performerKey.substr(0, colon)] = performerKey.substr(colon + 1);
    item["performer"] = Json::array({{{"actor", {{"reference", MappingSet::conditionalReference("professional", ref)}}}}});
  }
  return createEntry(std::move(item), "https://douleur77.fr/fhir/sid/fee", identifier);
}

void NetworkService::Impl::effects(const std::string& kind, const Json& doc, const RuleContext& ctx,
                                   std::map<std::string, PatientFacts>& facts, Json& derived,
                                   std::vector<Problem>& warnings, std::vector<Json>& extra) {
  const Json& patientRef = doc.value("patient", Json::object());
  std::string pkey = refKey(patientRef);
  PatientFacts* pf = facts.count(pkey) ? &facts[pkey] : nullptr;
  std::string date = str(doc, "date");

  if (kind == "professional") {
    derived["active"] = doc.value("membership", Json::object()).value("status", "") == "active";
    return;
  }
  if (kind == "opera-enrolment") {
    // The personalised pathway as the CarePlan's activities: the pathway's activities, then the
    // evaluations at their milestones.
    std::string risk = doc.value("risk", Json::object()).value("level", "");
    derived["planDefinition"] = "https://douleur77.fr/fhir/PlanDefinition/OPERA-" + str(doc, "pathology") + "-" + risk;
    auto activity = [&](const std::string& code) {
      return Json{{"coding", Json::array({{{"system", cs("opera-activity")}, {"code", code}}})}};
    };
    Json activities = Json::array();
    for (const auto& a : derived.value("pathway", Json::array()))
      if (a.is_string()) activities.push_back({{"detail", {{"code", activity(a.get<std::string>())}, {"status", "not-started"}}}});
    for (const auto& e : derived.value("evaluations", Json::array()))
      activities.push_back({{"detail", {{"code", activity("evaluation")}, {"status", "scheduled"},
                                        {"scheduledString", str(e, "milestone") + " " + str(e, "due")}}}});
    if (!activities.empty()) derived["carePlanActivities"] = std::move(activities);
    return;
  }

  if (kind == "cied" || kind == "csb") {
    derived["plannedMinutes"] = kind == "cied" ? o.plannedCiedMinutes : o.plannedCsbMinutes;
    if (pf && pf->episode) derived["episode"] = {{"reference", "EpisodeOfCare/" + (*pf->episode)["id"].get<std::string>()}};
    std::string text = doc.value("report", Json::object()).value("text", "");
    derived["reportXhtml"] = "<div xmlns=\"http://www.w3.org/1999/xhtml\"><p>" + xmlEscape(text) + "</p></div>";
    if (derived.contains("baselineVas") && derived["baselineVas"].is_number())
      derived["goalTarget"] = derived["baselineVas"].get<double>() * (100.0 - o.rules.goalReductionPercent) / 100.0;
    std::string gpKey = refKey(doc.value("gp", Json::object()));
    if (!pf) return;
    if (kind == "cied") {
      extra.push_back(feeItem("CIED-3C", o.fees.ciedCoefficient * o.fees.cValue, pf->id, gpKey, date,
                              "CIED/" + pf->id, "C", o.fees.ciedCoefficient));
      return;
    }
    // CSB: the goal at the first review, then the fee within the year's cap
    if (derived.contains("goalAchieved") && pf->goal) {
      Json goal = *pf->goal;
      bool achieved = derived["goalAchieved"].get<bool>();
      goal["achievementStatus"] = {{"coding", Json::array({{{"system", "http://terminology.hl7.org/CodeSystem/goal-achievement"},
                                                            {"code", achieved ? "achieved" : "not-achieved"}}})}};
      goal["lifecycleStatus"] = "completed";
      goal["statusDate"] = date;
      extra.push_back(updateEntry(goal));
      if (!achieved) {
        Json task = {{"resourceType", "Task"}, {"status", "requested"}, {"intent", "order"},
                     {"code", {{"coding", Json::array({{{"system", cs("network-event")}, {"code", "referral-prompt"}}})}}},
                     {"description", "Pain not reduced by " + std::to_string(static_cast<int>(o.rules.goalReductionPercent)) +
                                         " % at 6 months: refer the patient (the coordinating doctor can help)."},
                     {"for", {{"reference", "Patient/" + pf->id}}},
                     {"authoredOn", date},
                     {"focus", {{"reference", "Goal/" + goal["id"].get<std::string>()}}},
                     {"owner", {{"reference", MappingSet::conditionalReference("professional", doc["gp"])}}}};
        extra.push_back(createEntry(std::move(task), "https://douleur77.fr/fhir/sid/referral-prompt", str(doc, "documentId")));
      }
    }
    int year = experimentYear(date);
    int cap = year <= 1 ? o.fees.csbCapYear1 : o.fees.csbCapLaterYears;
    auto existing = find("ChargeItem", {{"subject", "Patient/" + pf->id}, {"code", cs("d77-fee") + "|CSB-1.5C"}}, 1000);
    int sameYear = 0;
    for (const auto& c : existing)
      if (experimentYear(str(c, "occurrenceDateTime")) == year) ++sameYear;
    if (sameYear < cap)
      extra.push_back(feeItem("CSB-1.5C", o.fees.csbCoefficient * o.fees.cValue, pf->id, gpKey, date,
                              "CSB/" + pf->id + "/year" + std::to_string(year) + "/" + std::to_string(sameYear + 1), "C",
                              o.fees.csbCoefficient));
    else
      warnings.push_back({"csb-fee-cap", "date", "no CSB fee accrues: experiment year " + std::to_string(year) + " allows " +
                                                     std::to_string(cap) + " per patient", true});
    return;
  }
  // A consent's term never runs past the agreement's end (decree: the experiment lasts its term).
  if ((kind == "consent" || kind == "consent-renewal") && derived.contains("consentEnd")) {
    auto start = parseDate(o.fees.agreementDate);
    auto end = derived["consentEnd"].is_string() ? parseDate(derived["consentEnd"].get<std::string>()) : std::nullopt;
    if (start && end) {
      Date agreementEnd = addMonths(*start, 12 * o.fees.agreementYears);
      if (agreementEnd < *end) {
        derived["consentEnd"] = formatDate(agreementEnd);
        warnings.push_back({"consent-capped-at-agreement-end", kind == "consent" ? "signatureDate" : "renewalDate",
                            "the consent's term is cut to the agreement's end, " + formatDate(agreementEnd), true});
      }
    }
  }
  if (!pf) return;
  std::string pid = pf->id;
  auto activeConsent = [&]() -> const Json* {
    for (const auto& c : pf->consents)
      if (codeIn(member(c, "scope"), "http://terminology.hl7.org/CodeSystem/consentscope") == "treatment") return &c;
    return nullptr;
  };
  if (kind == "consent-renewal") {
    if (const Json* c = activeConsent()) derived["consent"] = {{"reference", "Consent/" + (*c)["id"].get<std::string>()}};
    for (auto c : pf->consents) {
      c["provision"]["period"]["end"] = derived.value("consentEnd", "");
      setExtension(c, sd("consent-renewal-count"), "valueInteger", derived.value("renewalCount", 1));
      extra.push_back(updateEntry(c));
    }
  } else if (kind == "consent-withdrawal" || (kind == "exit" && str(doc, "type") == "exit")) {
    std::string when = kind == "exit" ? date : str(doc, "withdrawalDate");
    std::string reason = kind == "exit" ? str(doc, "reason") : "patient-withdrawal";
    if (const Json* c = activeConsent()) derived["consent"] = {{"reference", "Consent/" + (*c)["id"].get<std::string>()}};
    if (reason == "patient-withdrawal" || reason == "exclusion")
      for (auto c : pf->consents) {
        c["status"] = "inactive";
        c["provision"]["period"]["end"] = when;
        setExtension(c, sd("consent-state"), "valueCode", reason == "exclusion" ? "excluded" : "withdrawn");
        extra.push_back(updateEntry(c));
      }
    if (pf->episode && str(*pf->episode, "status") == "active") {
      Json e = *pf->episode;
      derived["episode"] = {{"reference", "EpisodeOfCare/" + e["id"].get<std::string>()}};
      e["status"] = "finished";
      e["period"]["end"] = when;
      Json& hist = e["statusHistory"];
      if (!hist.is_array()) hist = Json::array();
      for (auto& h : hist)
        if (str(h, "status") == "active" && !h["period"].contains("end")) h["period"]["end"] = when;
      hist.push_back({{"status", "finished"}, {"period", {{"start", when}}}});
      setExtension(e, sd("exit-reason"), "valueCode", reason);
      extra.push_back(updateEntry(e));
    }
  } else if (kind == "exit") {
    if (pf->episode) derived["episode"] = {{"reference", "EpisodeOfCare/" + (*pf->episode)["id"].get<std::string>()}};
  } else if (kind == "liaison-sheet") {
    std::string authorKey = refKey(doc.value("author", Json::object()));
    std::string category = ctx.professionals.count(authorKey) ? ctx.professionals.at(authorKey).category : "";
    derived["sheetType"] = category == "nurse" ? "FICHE-LIAISON-IDE" : "FICHE-LIAISON-MK";
    if (str(doc, "phase") == "end") {
      std::string end = doc.value("end", Json::object()).value("date", "");
      std::string code = category == "nurse" ? "LIAISON-IDE" : "LIAISON-MK";
      extra.push_back(feeItem(code, o.fees.liaisonFee, pid, authorKey, end,
                              code + "/" + authorKey + "/" + pid + "/" + end.substr(0, 4), "", 0));
    }
  } else if (kind == "referral-update") {
    std::string id = str(doc, "referralId");
    auto tasks = find("Task", {{"identifier", "https://douleur77.fr/fhir/sid/referral-task|" + id}}, 2);
    if (tasks.size() == 1) {
      Json t = tasks[0];
      derived["referralTask"] = {{"reference", "Task/" + t["id"].get<std::string>()}};
      std::string s = str(doc, "status");
      t["status"] = s == "accepted" ? "accepted" : s == "rejected" ? "rejected" : s == "seen" ? "in-progress" : "completed";
      t["businessStatus"] = {{"coding", Json::array({{{"system", cs("referral-status")}, {"code", s}}})}};
      t["lastModified"] = str(doc, "date");
      extra.push_back(updateEntry(t));
    }
  }
}

NetworkService::NetworkService(store::ResourceStore& store, fhir::FhirService& fhir, NetworkOptions options)
    : impl_(std::make_unique<Impl>(store, fhir, std::move(options))) {}
NetworkService::~NetworkService() = default;

fhir::FhirResponse NetworkService::handle(const fhir::FhirRequest& request) {
  tlLookupFailure.reset();
  try {
    std::string path = request.path;
    if (!path.empty() && path[0] == '/') path = path.substr(1);
    std::vector<std::string> seg;
    for (std::size_t i = 0; i <= path.size();) {
      std::size_t j = path.find('/', i);
      if (j == std::string::npos) j = path.size();
      if (j > i) seg.push_back(path.substr(i, j - i));
      i = j + 1;
    }
    if (seg.empty()) return problem(404, "not-found", "GET /network/v1/kinds lists the document kinds");
    if (seg.size() == 1 && seg[0] == "kinds") {
      if (request.method != "GET") return problem(405, "not-supported", "GET only");
      Json kinds = Json::array();
      for (const auto& k : MappingSet::builtIn().kinds())
        kinds.push_back({{"kind", k}, {"mappingVersion", MappingSet::builtIn().version(k)}, {"schema", "/network/v1/schemas/" + k},
                         {"xsd", "/network/v1/schemas/" + k + ".xsd"}});
      return jsonResponse(200, {{"kinds", kinds}});
    }
    if (seg.size() == 2 && seg[0] == "schemas") {
      if (request.method != "GET") return problem(405, "not-supported", "GET only");
      std::string name = seg[1];
      bool xsd = name.size() > 4 && name.compare(name.size() - 4, 4, ".xsd") == 0;
      if (xsd) name.resize(name.size() - 4);
      const auto& schemas = DocumentSchemas::instance();
      if (!schemas.hasKind(name)) return problem(404, "not-found", "no schema for '" + name + "'");
      fhir::FhirResponse r;
      r.body = std::string(xsd ? schemas.xsdText(name) : schemas.schemaText(name));
      r.headers.emplace_back("Content-Type", xsd ? "application/xml; charset=utf-8" : "application/schema+json; charset=utf-8");
      return r;
    }
    if (seg.size() == 3 && seg[0] == "patients" && seg[2] == "dossier") {
      if (request.method != "GET") return problem(405, "not-supported", "GET only");
      return impl_->dossier(seg[1], request);
    }
    if (seg.size() == 1 && seg[0] == "$sweep") {
      if (request.method != "POST") return problem(405, "not-supported", "POST only");
      std::string day;
      for (const auto& [k, v] : request.query)
        if (k == "date") day = v;
      if (impl_->o.authorizeSweep)
        if (auto refusal = impl_->o.authorizeSweep(request)) return *refusal;
      return sweep(day, &request);
    }
    if (seg.size() == 1) {
      if (request.method != "POST") return problem(405, "not-supported", "documents are sent with POST");
      return impl_->submit(seg[0], request);
    }
    return problem(404, "not-found", "nothing is served at /network/v1/" + path);
  } catch (const std::exception& e) {
    log::error("network.unexpected", {{"error", e.what()}});
    return problem(500, "exception", "the document could not be processed");
  }
}

// The conditional form ("Patient?identifier=...") of a stored reference, from the target's identifiers.
std::string NetworkService::Impl::conditionalFor(const std::string& reference, std::map<std::string, std::string>& cache) {
  if (reference.find('?') != std::string::npos || reference.rfind("urn:", 0) == 0) return reference;
  auto it = cache.find(reference);
  if (it != cache.end()) return it->second;
  std::string out = reference;
  if (auto res = read(reference))
    if (std::string c = MappingSet::conditionalReferenceOf(*res); !c.empty()) out = c;
  cache[reference] = out;
  return out;
}

fhir::FhirResponse NetworkService::Impl::dossier(const std::string& id, const fhir::FhirRequest& req) {
  std::optional<Json> patient = read("Patient/" + id);
  if (!patient) {
    auto byNetworkId = find("Patient", {{"identifier", "https://douleur77.fr/fhir/sid/patient|" + id}}, 2);
    if (byNetworkId.size() == 1) patient = byNetworkId[0];
  }
  if (auto failed = failedLookups()) return *failed;
  std::string pid = patient ? (*patient)["id"].get<std::string>() : std::string();
  // A patient the caller may not see is answered as an unknown one.
  if (patient && o.authorizeDossier)
    if (auto refusal = o.authorizeDossier(req, pid)) {
      if (refusal->status != 404) return *refusal;
      patient.reset();
    }
  if (!patient) return problem(404, "not-found", "no patient '" + id + "' (give the Patient id or the network id)");
  std::string pref = "Patient/" + pid;
  std::map<std::string, std::string> cache;
  std::string ref = conditionalFor(pref, cache);
  std::string kindKey;
  Json patientRef;
  MappingSet::parseConditionalReference(ref, kindKey, patientRef);

  // the documents, oldest first, with the resources they name
  auto lists = find("List", {{"subject", pref}, {"_sort", "_lastUpdated"}}, 1000);
  Json documents = Json::array();
  Outcome problems;
  std::map<std::string, std::optional<Json>> resources;
  for (const auto& list : lists) {
    std::vector<MappingIssue> issues;
    Json doc = MappingSet::builtIn().fromList(
        list,
        [&](const std::string& r) -> const Json* {
          auto it = resources.find(r);
          if (it == resources.end()) it = resources.emplace(r, read(r)).first;
          return it->second ? &*it->second : nullptr;
        },
        [&](const std::string& r) { return conditionalFor(r, cache); }, issues);
    for (const auto& i : issues)
      problems.add("warning", "processing", "List/" + list["id"].get<std::string>() + " " + i.path, i.message);
    if (doc.is_object()) documents.push_back(DocumentSchemas::instance().inSchemaOrder(str(doc, "documentType"), doc));
  }
  // the current state, as the network sees it
  RuleContext ctx;
  PatientFacts facts;
  Json probe = {{"documentType", "dossier"}};
  addPatient(ctx, patientRef, facts, probe);
  const PatientState& st = ctx.patients[refKey(patientRef)];
  Json status = Json::object();
  status["enrolment"] = st.enrolment.empty() ? "none" : st.enrolment;
  if (!st.inclusionDate.empty()) status["inclusionDate"] = st.inclusionDate;
  if (!st.pathology.empty()) status["pathology"] = st.pathology;
  if (facts.episode) {
    if (const Json* l = extensionValue(*facts.episode, sd("care-level"), "valueInteger")) status["careLevel"] = *l;
    if (const Json* e = extensionValue(*facts.episode, sd("evaluable"), "valueBoolean")) status["evaluable"] = *e;
    if (const Json* x = extensionValue(*facts.episode, sd("exit-reason"), "valueCode")) status["exitReason"] = *x;
  }
  status["consent"] = st.consent.empty() ? "none" : st.consent;
  if (!st.consentEnd.empty()) status["consentEnd"] = st.consentEnd;
  status["consentRenewals"] = st.consentRenewals;
  status["operaEnrolled"] = st.operaEnrolled;
  Json out = {{"dossierType", "network-dossier"}, {"schemaVersion", "1.0"}, {"patient", patientRef}, {"status", status},
              {"documents", documents}};
  if (!problems.empty()) out["issues"] = problems.json();
  if (auto failed = failedLookups()) return *failed;
  return jsonResponse(200, out);
}

fhir::FhirResponse NetworkService::sweep(const std::string& day) { return sweep(day, nullptr); }

fhir::FhirResponse NetworkService::sweep(const std::string& day, const fhir::FhirRequest* via) {
  Impl& m = *impl_;
  tlLookupFailure.reset();
  std::string today = day.empty() ? m.today() : day;
  if (!parseDate(today)) return problem(400, "value", "date must be YYYY-MM-DD", "date");
  Json bundle = {{"resourceType", "Bundle"}, {"type", "transaction"}, {"entry", Json::array()}};
  int expired = 0, overdue = 0;
  for (auto& c : m.find("Consent", {{"status", "active"}}, 1000)) {
    std::string end = str(c.value("provision", Json::object()).value("period", Json::object()), "end");
    if (end.empty() || end >= today) continue;
    ++expired;
    c["status"] = "inactive";
    setExtension(c, sd("consent-state"), "valueCode", "expired");
    bundle["entry"].push_back(Impl::updateEntry(c));
    if (codeIn(member(c, "scope"), "http://terminology.hl7.org/CodeSystem/consentscope") != "treatment") continue;
    Json task = {{"resourceType", "Task"}, {"status", "requested"}, {"intent", "order"},
                 {"code", {{"coding", Json::array({{{"system", cs("network-event")}, {"code", "consent-renewal-due"}}})}}},
                 {"description", "The patient's consent expired on " + end + ": renew it with the patient."},
                 {"for", c.value("patient", Json::object())},
                 {"authoredOn", today},
                 {"focus", {{"reference", "Consent/" + c["id"].get<std::string>()}}}};
    const Json& performers = c.value("performer", Json::array());
    for (const auto& p : performers)
      if (str(p, "reference").rfind("PractitionerRole/", 0) == 0) task["owner"] = p;
    bundle["entry"].push_back(Impl::createEntry(std::move(task), "https://douleur77.fr/fhir/sid/consent-renewal-due",
                                                c["id"].get<std::string>() + "/" + end));
  }
  // Referrals past their due date without acceptance: marked, and the coordinators and the
  // referring GP are told (a Communication listed for them).
  std::vector<std::string> coordinators;
  for (auto& r : m.find("PractitionerRole", {{"role", cs("network-role") + "|coordinator"}}, 100))
    coordinators.push_back("PractitionerRole/" + r.value("id", ""));
  for (const char* status : {"requested", "received"}) {
    for (auto& t : m.find("Task", {{"status", status}, {"identifier", "https://douleur77.fr/fhir/sid/referral-task|"}}, 1000)) {
      std::string due = str(t.value("restriction", Json::object()).value("period", Json::object()), "end");
      if (due.empty() || due >= today || codeIn(member(t, "businessStatus"), cs("referral-status")) == "overdue") continue;
      ++overdue;
      t["businessStatus"] = {{"coding", Json::array({{{"system", cs("referral-status")}, {"code", "overdue"}}})}};
      bundle["entry"].push_back(Impl::updateEntry(t));
      std::string referralId;
      for (const auto& id : t.value("identifier", Json::array()))
        if (str(id, "system") == "https://douleur77.fr/fhir/sid/referral-task") referralId = str(id, "value");
      Json alert = {{"resourceType", "Communication"},
                    {"status", "completed"},
                    {"category", Json::array({{{"coding", Json::array({{{"system", cs("d77-notification")}, {"code", "referral-overdue"}}})}}})},
                    {"priority", "urgent"},
                    {"subject", t.value("for", Json::object())},
                    {"about", Json::array({{{"reference", "Task/" + t["id"].get<std::string>()}}})},
                    {"sent", today},
                    {"recipient", Json::array()},
                    {"payload", Json::array({{{"contentString", "Referral " + referralId + " is past its due date (" + due +
                                                                     ") without being accepted: contact the recipient or refer elsewhere."}}})}};
      for (const auto& c : coordinators) alert["recipient"].push_back({{"reference", c}});
      if (t.contains("requester")) alert["recipient"].push_back(t["requester"]);
      bundle["entry"].push_back(Impl::createEntry(std::move(alert), "https://douleur77.fr/fhir/sid/referral-overdue", referralId + "/" + due));
    }
  }
  // CSB due every csbIntervalMonths after inclusion: a Task for the GP when a semester passed unreported
  int csbDue = 0;
  auto asOf = parseDate(today);
  for (auto& e : m.find("EpisodeOfCare", {{"status", "active"}, {"type", cs("d77-programme") + "|D77"}}, 1000)) {
    auto start = parseDate(str(e.value("period", Json::object()), "start"));
    std::string patient = str(e.value("patient", Json::object()), "reference");
    if (!start || patient.empty()) continue;
    int interval = std::max(1, m.o.rules.csbIntervalMonths);
    int due = std::min(6, wholeMonthsBetween(*start, *asOf) / interval);
    if (due < 1) continue;
    std::set<int> done;
    for (auto& enc : m.find("Encounter", {{"subject", patient}, {"type", cs("d77-enc") + "|CSB"}}, 1000))
      if (const Json* n = extensionValue(enc, sd("csb-semester"), "valueInteger")) done.insert(n->get<int>());
    for (int n = 1; n <= due; ++n) {
      if (done.count(n)) continue;
      ++csbDue;
      Json task = {{"resourceType", "Task"}, {"status", "requested"}, {"intent", "order"},
                   {"code", {{"coding", Json::array({{{"system", cs("network-event")}, {"code", "csb-due"}}})}}},
                   {"description", "Review consultation (CSB) of semester " + std::to_string(n) + " due since " +
                                       formatDate(addMonths(*start, n * interval))},
                   {"for", {{"reference", patient}}},
                   {"authoredOn", today},
                   {"focus", {{"reference", "EpisodeOfCare/" + e["id"].get<std::string>()}}}};
      if (e.contains("careManager")) task["owner"] = e["careManager"];
      bundle["entry"].push_back(Impl::createEntry(std::move(task), "https://douleur77.fr/fhir/sid/csb-due",
                                                  e["id"].get<std::string>() + "/" + std::to_string(n)));
    }
  }
  if (auto failed = Impl::failedLookups()) return *failed;
  if (!bundle["entry"].empty()) {
    fhir::FhirRequest tx;
    tx.method = "POST";
    tx.body = bundle.dump();
    tx.contentType = "application/fhir+json";
    if (via) {
      // Decided and audited as the caller (a system account, or the gateway's scheduled job).
      tx.guard = via->guard;
      tx.principal = via->principal;
      tx.auditRecord = via->auditRecord;
      tx.auditAttached = via->auditAttached;
    }
    auto r = m.fhirService.handle(tx);
    if (r.status >= 300) return r;
  }
  return jsonResponse(200, {{"date", today}, {"expiredConsents", expired}, {"overdueReferrals", overdue}, {"csbDue", csbDue}});
}

}  // namespace passerelle::network
