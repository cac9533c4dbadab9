// Identity, guard and audit around each request.
#include "gateway/gate/gate.h"

#include <chrono>
#include <mutex>
#include <nlohmann/json.hpp>
#include <unordered_map>

#include "gateway/common/log.h"
#include "gateway/fhir/search_params.h"

namespace passerelle::gate {
namespace {

using Json = nlohmann::json;

std::int64_t nowMillis() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

std::int64_t nowSeconds() {
  return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

std::vector<std::string> segments(const std::string& path) {
  std::vector<std::string> out;
  std::size_t start = 0;
  while (start <= path.size()) {
    auto slash = path.find('/', start);
    std::string s = path.substr(start, slash == std::string::npos ? std::string::npos : slash - start);
    if (!s.empty()) out.push_back(s);
    if (slash == std::string::npos) break;
    start = slash + 1;
  }
  return out;
}

fhir::FhirResponse outcome(int status, const char* code, const std::string& text) {
  fhir::FhirResponse r;
  r.status = status;
  Json oo = {{"resourceType", "OperationOutcome"},
             {"issue", Json::array({{{"severity", "error"}, {"code", code}, {"diagnostics", text}}})}};
  r.body = oo.dump();
  r.headers.emplace_back("Content-Type", "application/fhir+json; charset=utf-8");
  return r;
}

std::string quoteFree(std::string s) {
  for (char& c : s)
    if (c == '"' || c == '\\' || static_cast<unsigned char>(c) < 0x20) c = ' ';
  return s;
}

// Verified tokens, kept until they expire (verifying a signature costs more than the request).
class TokenCache {
 public:
  std::optional<identity::Principal> get(const std::string& token, std::int64_t now) {
    std::lock_guard<std::mutex> lock(m_);
    auto it = map_.find(token);
    if (it == map_.end()) return std::nullopt;
    if (it->second.expiresAt <= now) {
      map_.erase(it);
      return std::nullopt;
    }
    return it->second;
  }
  void put(const std::string& token, const identity::Principal& p) {
    std::lock_guard<std::mutex> lock(m_);
    if (map_.size() >= 50000) map_.clear();
    map_[token] = p;
  }

 private:
  std::mutex m_;
  std::unordered_map<std::string, identity::Principal> map_;
};

}  // namespace

std::string actionOf(const std::string& area, const std::string& method, const std::string& path, const std::string& body) {
  if (area == "metrics") return "read";
  if (area != "fhir") return method == "GET" ? "read" : "submit";
  auto seg = segments(path);
  if (!seg.empty() && seg.back()[0] == '$') return "operation";
  if (method == "GET") {
    if (seg.empty()) return "search";
    if (seg.back() == "_history") return "history";
    if (seg.size() == 4 && seg[2] == "_history") return "vread";
    if (seg.size() == 2) return "read";
    return "search";
  }
  if (method == "POST") {
    // The Bundle's type, in JSON ("type":"transaction") or XML (<type value="transaction"/>).
    if (seg.empty())
      return body.find("\"transaction\"") != std::string::npos || body.find("'transaction'") != std::string::npos
                 ? "transaction"
                 : "batch";
    if (seg.back() == "_search") return "search";
    return "create";
  }
  if (method == "PUT") return "update";
  if (method == "PATCH") return "patch";
  if (method == "DELETE") return "delete";
  return "operation";
}

struct AccessGate::Impl {
  GateOptions options;
  identity::TokenVerifier* verifier;
  std::vector<identity::CertificateAccount> accounts;
  access::AccessControl* access;
  audit::AuditLog* audit;
  fhir::FhirService& fhir;
  TokenCache tokens;

  // Who is calling: a bearer token first, else a client certificate mapped to an account.
  Result<identity::Principal> authenticate(const http::Caller& caller) {
    if (caller.connector) return *caller.connector;
    const std::string& h = caller.authorization;
    if (!h.empty()) {
      if (h.size() < 8 || (h.compare(0, 7, "Bearer ") != 0 && h.compare(0, 7, "bearer ") != 0))
        return makeError(ErrorCode::kUnauthorized, "the Authorization header must be 'Bearer <token>'");
      std::string token = h.substr(7);
      std::int64_t now = nowSeconds();
      if (auto p = tokens.get(token, now)) return *p;
      if (!verifier) return makeError(ErrorCode::kUnauthorized, "bearer tokens are not accepted here");
      auto p = verifier->verify(token, now);
      if (!p.ok()) return p.error();
      tokens.put(token, p.value());
      return p;
    }
    if (!caller.certificateFingerprint.empty()) {
      auto p = identity::principalForCertificate(accounts, caller.certificateSubject, caller.certificateFingerprint);
      if (p) return *p;
      return makeError(ErrorCode::kUnauthorized, "the client certificate is not mapped to an account");
    }
    return makeError(ErrorCode::kUnauthorized, "authentication required: send 'Authorization: Bearer <token>'");
  }

  audit::Record recordOf(const identity::Principal* p, const http::Caller& caller, const fhir::FhirRequest& req,
                         const std::string& area) {
    audit::Record r;
    r.kind = !caller.channel.empty() ? "connector" : area == "fhir" ? "rest" : area == "metrics" ? "admin" : "network";
    r.detail = caller.channel.empty() ? caller.detail : caller.channel + (caller.detail.empty() ? "" : ": " + caller.detail);
    r.action = actionOf(area, req.method, req.path, req.body);
    r.sourceAddress = caller.sourceAddress;
    r.method = req.method;
    r.path = (area == "fhir" ? "/fhir" : area == "metrics" ? "" : area) + req.path;
    r.query = fhir::encodeQuery(req.query);
    auto seg = segments(req.path);
    if (area == "fhir" && !seg.empty() && seg[0][0] != '_' && seg[0][0] != '$') r.resourceType = seg[0];
    if (p) {
      r.subject = p->subject;
      r.role = p->role;
      r.practitioner = p->practitioner;
      r.account = p->account;
      r.tokenId = p->tokenId;
      r.purpose = p->purpose;
    }
    return r;
  }

  // Fail closed: the answer goes out only once its record is durable. `committed`: a write's record
  // already went into the write's own commit (then a 2xx needs nothing more).
  fhir::FhirResponse finish(audit::Record& rec, fhir::FhirResponse resp, bool committed = false) {
    if (committed && resp.status < 300) return resp;
    rec.status = resp.status;
    if (rec.outcome.empty())
      rec.outcome = resp.status == 401 || resp.status == 403 ? "denied" : resp.status >= 500 ? "error" : resp.status >= 400 ? "error" : "granted";
    std::string path = rec.path;
    auto a = audit->append(std::move(rec));
    if (!a.ok()) {
      log::error("audit.append_failed", {{"error", a.error().message}, {"path", path}});
      return outcome(503, "transient", "the audit trail could not be written: the request is refused");
    }
    return resp;
  }

  fhir::FhirResponse handle(const http::Caller& caller, fhir::FhirRequest& req, const std::string& area, const Serve& serve) {
    if (!options.enabled) return serve(req);
    auto who = authenticate(caller);
    if (!who.ok()) {
      audit::Record rec = recordOf(nullptr, caller, req, area);
      rec.kind = "auth";
      rec.reason = who.error().message;
      fhir::FhirResponse r = outcome(401, "login", who.error().message);
      std::string challenge = "Bearer realm=\"passerelle\"";
      if (!caller.authorization.empty())
        challenge += ", error=\"invalid_token\", error_description=\"" + quoteFree(who.error().message) + "\"";
      r.headers.emplace_back("WWW-Authenticate", challenge);
      return finish(rec, std::move(r));
    }
    identity::Principal principal = std::move(who.value());
    if (!caller.breakGlass.empty()) principal.purpose = "ETREAT";
    audit::Record rec = recordOf(&principal, caller, req, area);
    rec.breakGlassReason = caller.breakGlass;
    auto g = caller.connector && caller.patients ? access->guardFor(principal, *caller.patients) : access->guard(principal, caller.breakGlass);
    if (!g.ok()) {
      rec.reason = "role-or-purpose";
      return finish(rec, outcome(403, "forbidden", g.error().message));
    }
    access::RequestGuard& guard = *g.value();
    if (principal.purpose.empty()) principal.purpose = guard.role().purposes.front();
    rec.purpose = principal.purpose;
    req.guard = &guard;
    req.principal = &principal;
    // A write's record is committed with the write: one fsync for both, and never one without the
    // other. (Break-glass requests notify after serving: their record is appended below.)
    bool committed = false;
    if (caller.breakGlass.empty()) {
      req.auditAttached = &committed;
      req.auditRecord = [&rec, &guard](int status) {
        audit::Record r = rec;
        r.status = status;
        r.outcome = "granted";
        r.timeMs = nowMillis();
        r.resources = guard.resources();
        r.patients.assign(guard.patients().begin(), guard.patients().end());
        return audit::encodeRecord(r);
      };
    }
    fhir::FhirResponse resp;
    if (area == "fhir" && req.path.rfind("/AuditEvent", 0) == 0) {
      resp = auditEvents(principal, guard, req, rec);
    } else if (area == "metrics" && !guard.unrestricted() && !guard.role().readAudit) {
      rec.reason = "type-not-allowed";
      resp = outcome(403, "forbidden", "access denied: metrics are for system accounts and auditors");
    } else {
      resp = serve(req);
    }
    rec.resources = guard.resources();
    rec.patients.assign(guard.patients().begin(), guard.patients().end());
    if (resp.status == 403 && rec.reason.empty()) rec.reason = guard.lastReason();
    if (!caller.breakGlass.empty()) {
      rec.kind = "break-glass";
      auto bg = guard.breakGlassPatients();
      if (!bg.empty()) rec.detail = notifyBreakGlass(principal, caller.breakGlass, bg);
    }
    return finish(rec, std::move(resp), committed);
  }

  // The GP correspondent and the coordinators learn of each emergency access (a Communication each).
  std::string notifyBreakGlass(const identity::Principal& p, const std::string& reason, const std::set<std::string>& patients) {
    std::vector<std::string> coordinators;
    {
      fhir::FhirRequest q;
      q.method = "GET";
      q.path = "/PractitionerRole";
      q.query = {{"role", "https://douleur77.fr/fhir/CodeSystem/network-role|coordinator"}, {"_elements", "id"}, {"_count", "100"}};
      auto r = fhir.handle(q);
      Json b = Json::parse(r.body, nullptr, false);
      if (!b.is_discarded())
        for (const auto& e : b.value("entry", Json::array())) coordinators.push_back("PractitionerRole/" + e["resource"].value("id", ""));
    }
    Json bundle = {{"resourceType", "Bundle"}, {"type", "transaction"}, {"entry", Json::array()}};
    std::string sent;
    for (const auto& patient : patients) {
      std::vector<std::string> to = coordinators;
      fhir::FhirRequest q;
      q.method = "GET";
      q.path = "/EpisodeOfCare";
      q.query = {{"patient", "Patient/" + patient}, {"type", "https://douleur77.fr/fhir/CodeSystem/d77-programme|D77"}};
      Json b = Json::parse(fhir.handle(q).body, nullptr, false);
      if (!b.is_discarded())
        for (const auto& e : b.value("entry", Json::array()))
          if (auto cm = e["resource"].value("careManager", Json::object()).value("reference", ""); !cm.empty()) to.push_back(cm);
      Json c = {{"resourceType", "Communication"},
                {"status", "completed"},
                {"category", Json::array({{{"coding", Json::array({{{"system", "https://douleur77.fr/fhir/CodeSystem/d77-notification"},
                                                                    {"code", "break-glass"}}})}}})},
                {"priority", "urgent"},
                {"subject", {{"reference", "Patient/" + patient}}},
                {"sent", ""},
                {"recipient", Json::array()},
                {"payload", Json::array({{{"contentString", "Emergency (break-glass) access by " +
                                                                  (p.practitioner.empty() ? p.subject : p.practitioner) + " (" + p.role +
                                                                  "): " + reason}}})}};
      c.erase("sent");
      for (const auto& r : to) c["recipient"].push_back({{"reference", r}});
      bundle["entry"].push_back({{"resource", c}, {"request", {{"method", "POST"}, {"url", "Communication"}}}});
      sent += (sent.empty() ? "" : " ") + patient + "->" + std::to_string(to.size());
    }
    fhir::FhirRequest w;
    w.method = "POST";
    w.path = "";
    w.contentType = "application/fhir+json";
    w.body = bundle.dump();
    auto r = fhir.handle(w);
    if (r.status >= 300) log::error("access.break_glass_notify", {{"status", std::to_string(r.status)}, {"body", r.body}});
    return "notified " + sent;
  }

  // GET /fhir/AuditEvent[/seq] from the audit trail.
  fhir::FhirResponse auditEvents(const identity::Principal& p, access::RequestGuard& guard, const fhir::FhirRequest& req,
                                 audit::Record& rec) {
    rec.resourceType = "AuditEvent";
    if (req.method != "GET") return outcome(405, "not-supported", "the audit trail is written by the gateway only: GET it");
    bool all = guard.role().readAudit;
    if (!all && !guard.role().readOwnAudit) {
      rec.reason = "type-not-allowed";
      return outcome(403, "forbidden", "access denied: the role " + guard.role().name + " may not read the audit trail");
    }
    auto seg = segments(req.path);
    if (seg.size() > 2) return outcome(404, "not-found", "no FHIR endpoint at '" + req.path + "'");
    if (seg.size() == 2) {
      std::int64_t seq = 0;
      try {
        seq = std::stoll(seg[1]);
      } catch (const std::exception&) {
      }
      auto r = seq > 0 ? audit->get(seq) : Result<std::optional<audit::Record>>(std::optional<audit::Record>());
      if (!r.ok()) return outcome(503, "transient", r.error().message);
      bool mine = r->has_value() && (all || std::find((*r)->patients.begin(), (*r)->patients.end(), p.patient) != (*r)->patients.end());
      if (!mine) return outcome(404, "not-found", "AuditEvent/" + seg[1] + " is not known");
      fhir::FhirResponse out;
      out.body = audit::toAuditEventJson(**r, options.fhirBaseUrl);
      out.headers.emplace_back("Content-Type", "application/fhir+json; charset=utf-8");
      return out;
    }
    audit::AuditLog::Query q;
    for (const auto& [k, v] : req.query) {
      if (k == "patient" || k == "entity") q.patient = v.rfind("Patient/", 0) == 0 ? v.substr(8) : v;
      else if (k == "agent" || k == "who") q.subject = v;
      else if (k == "subtype" || k == "action") q.action = v;
      else if (k == "_count") q.count = std::max(1, std::min(1000, std::atoi(v.c_str())));
      else if (k == "_cursor") q.beforeSeq = std::atoll(v.c_str());
      else if (k == "date") {
        std::string d = v.size() > 2 && std::isalpha(static_cast<unsigned char>(v[0])) ? v.substr(2) : v;
        std::int64_t ms = 0;
        std::tm tm{};
        if (d.size() >= 10 && strptime(d.substr(0, 10).c_str(), "%Y-%m-%d", &tm)) ms = static_cast<std::int64_t>(timegm(&tm)) * 1000;
        if (v.rfind("ge", 0) == 0 || v.rfind("gt", 0) == 0) q.sinceMs = ms;
        else if (v.rfind("lt", 0) == 0 || v.rfind("le", 0) == 0) q.untilMs = ms + (v[1] == 'e' ? 86400000 : 0);
        else {
          q.sinceMs = ms;
          q.untilMs = ms + 86400000;
        }
      }
    }
    if (!all) {
      if (!q.patient.empty() && q.patient != p.patient) {
        rec.reason = "no-care-relationship";
        return outcome(403, "forbidden", "access denied: a patient reads the access log of their own data only");
      }
      q.patient = p.patient;
    }
    if (!q.patient.empty()) rec.patients.push_back(q.patient);
    auto rs = audit->query(q);
    if (!rs.ok()) return outcome(503, "transient", rs.error().message);
    std::string out = "{\"resourceType\":\"Bundle\",\"type\":\"searchset\",\"link\":[";
    Json self = {{"relation", "self"}, {"url", options.fhirBaseUrl + "/AuditEvent?" + fhir::encodeQuery(req.query)}};
    out += self.dump();
    if (static_cast<int>(rs->size()) == q.count && !rs->empty()) {
      fhir::Params next;
      for (const auto& kv : req.query)
        if (kv.first != "_cursor") next.push_back(kv);
      next.emplace_back("_cursor", std::to_string(rs->back().seq));
      out += "," + Json({{"relation", "next"}, {"url", options.fhirBaseUrl + "/AuditEvent?" + fhir::encodeQuery(next)}}).dump();
    }
    out += "],\"entry\":[";
    bool first = true;
    for (const auto& r : *rs) {
      if (!first) out += ',';
      first = false;
      out += "{\"fullUrl\":" + Json(options.fhirBaseUrl + "/AuditEvent/" + std::to_string(r.seq)).dump() +
             ",\"resource\":" + audit::toAuditEventJson(r, options.fhirBaseUrl) + ",\"search\":{\"mode\":\"match\"}}";
    }
    out += "]}";
    fhir::FhirResponse resp;
    resp.body = std::move(out);
    resp.headers.emplace_back("Content-Type", "application/fhir+json; charset=utf-8");
    return resp;
  }
};

AccessGate::AccessGate(GateOptions options, identity::TokenVerifier* verifier, std::vector<identity::CertificateAccount> accounts,
                       access::AccessControl* access, audit::AuditLog* audit, fhir::FhirService& fhir)
    : impl_(new Impl{std::move(options), verifier, std::move(accounts), access, audit, fhir, {}}) {}

AccessGate::~AccessGate() = default;

fhir::FhirResponse AccessGate::handle(const http::Caller& caller, fhir::FhirRequest& request, const std::string& area,
                                      const Serve& serve) {
  return impl_->handle(caller, request, area, serve);
}

}  // namespace passerelle::gate
