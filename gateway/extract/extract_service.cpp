// Evaluation extracts (see extract_service.h).
#include "gateway/extract/extract_service.h"

#include <fcntl.h>
#include <openssl/rand.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <set>
#include <thread>
#include <condition_variable>
#include <sstream>

#include "connectors/filedrop/file_drop.h"
#include "connectors/http/rest_client.h"
#include "connectors/secureupload/secure_package.h"
#include "gateway/audit/audit_log.h"
#include "gateway/common/log.h"
#include "gateway/fhir/fhir_service.h"
#include "gateway/fhir/search_params.h"
#include "gateway/http/dev_certificate.h"
#include "gateway/http/http_server.h"
#include "gateway/identity/identity.h"
#include "gateway/store/resource_store.h"
#include "mappings/common/base64.h"
#include "mappings/extract/csv.h"
#include "mappings/extract/disclosure.h"
#include "mappings/extract/pseudonym.h"
#include "mappings/fhir/fhir_time.h"
#include "mappings/fhir/french_identity.h"

namespace passerelle::extract {

namespace fs = std::filesystem;
using Json = nlohmann::json;

namespace {

constexpr const char* kSd = "https://douleur77.fr/fhir/StructureDefinition/";
constexpr const char* kCs = "https://douleur77.fr/fhir/CodeSystem/";

std::string str(const Json& j, const char* key) {
  if (!j.is_object()) return "";
  auto it = j.find(key);
  return it != j.end() && it->is_string() ? it->get<std::string>() : std::string();
}

std::string refOf(const Json& j, const char* key) {
  if (!j.is_object()) return "";
  auto it = j.find(key);
  return it != j.end() && it->is_object() ? str(*it, "reference") : std::string();
}

// The code of `cc` (a CodeableConcept) in `system`, or "".
std::string codeIn(const Json& cc, const std::string& system) {
  if (!cc.is_object()) return "";
  for (const auto& c : cc.value("coding", Json::array()))
    if (str(c, "system") == system) return str(c, "code");
  return "";
}

const Json* extension(const Json& r, const std::string& url) {
  if (!r.is_object()) return nullptr;
  auto list = r.find("extension");
  if (list == r.end() || !list->is_array()) return nullptr;
  for (const auto& e : *list)
    if (str(e, "url") == url) return &e;
  return nullptr;
}

std::string day(const std::string& dateTime) { return dateTime.substr(0, std::min<std::size_t>(10, dateTime.size())); }
bool within(const std::string& d, const std::string& from, const std::string& to) {
  std::string x = day(d);
  return !x.empty() && x >= from && x <= to;
}
std::string semesterOf(const std::string& date) {
  if (date.size() < 7) return "";
  return date.substr(0, 4) + (date.substr(5, 2) <= "06" ? "-S1" : "-S2");
}

using fhir::nowMs;

std::string readText(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Writes `bytes` to `path`, readable by the gateway's account only (atomically: see writeAtomically).
bool writePrivate(const fs::path& path, const std::string& bytes, std::string& error) {
  return filedrop::writeAtomically(path.parent_path(), path.filename().string(), bytes, error, 0600);
}

std::string field(const Json& j, const char* key, const std::string& where, std::string& error) {
  std::string v = str(j, key);
  if (v.empty() && error.empty()) error = where + ": \"" + key + "\" is missing";
  return v;
}

}  // namespace

// ---- configuration ----------------------------------------------------------------------------

Result<std::vector<Recipient>> loadRecipients(const std::string& file) {
  Json j = Json::parse(readText(file), nullptr, false);
  if (!j.is_array()) return makeError(ErrorCode::kInvalid, file + ": a JSON array of recipients is expected");
  std::vector<Recipient> out;
  std::set<std::string> ids;
  for (std::size_t i = 0; i < j.size(); ++i) {
    std::string where = file + " [" + std::to_string(i) + "]", error;
    Recipient r;
    r.id = field(j[i], "id", where, error);
    r.name = str(j[i], "name");
    r.role = field(j[i], "role", where, error);
    r.domain = str(j[i], "domain");
    r.k = j[i].value("k", 10);
    r.certificate = str(j[i], "certificate");
    if (!error.empty()) return makeError(ErrorCode::kInvalid, error);
    if (!ids.insert(r.id).second) return makeError(ErrorCode::kInvalid, where + ": the id " + r.id + " is used twice");
    if (r.k < kMinimumK) return makeError(ErrorCode::kInvalid, where + ": k is " + std::to_string(r.k) + ", below the minimum of " + std::to_string(kMinimumK));
    if (r.rows() && r.domain.empty()) return makeError(ErrorCode::kInvalid, where + ": a recipient of pseudonymised rows needs its key \"domain\"");
    auto beside = [&](std::string& path) {
      if (!path.empty() && fs::path(path).is_relative()) path = (fs::path(file).parent_path() / path).string();
    };
    beside(r.certificate);
    if (auto t = j[i].find("transfer"); t != j[i].end() && t->is_object()) {
      r.transfer.url = str(*t, "url");
      r.transfer.clientCertificate = str(*t, "clientCertificate");
      r.transfer.clientKey = str(*t, "clientKey");
      r.transfer.caFile = str(*t, "caFile");
      r.transfer.maxAttempts = t->value("maxAttempts", r.transfer.maxAttempts);
      r.transfer.initialDelayMs = t->value("initialDelayMs", r.transfer.initialDelayMs);
      r.transfer.maxDelayMs = t->value("maxDelayMs", r.transfer.maxDelayMs);
      beside(r.transfer.clientCertificate);
      beside(r.transfer.clientKey);
      beside(r.transfer.caFile);
      if (r.transfer.url.rfind("https://", 0) != 0) return makeError(ErrorCode::kInvalid, where + ": transfer.url must be an https:// URL");
      if (r.transfer.clientCertificate.empty() || r.transfer.clientKey.empty())
        return makeError(ErrorCode::kInvalid, where + ": a transfer needs the gateway's client certificate and key (mutual TLS)");
    }
    out.push_back(std::move(r));
  }
  return out;
}

const std::vector<std::string>& computedIndicators() {
  static const std::vector<std::string> ids = {"patients-admitted", "exits", "refusals", "professionals", "cied-duration", "csb-duration", "vas"};
  return ids;
}

Result<std::vector<Indicator>> loadIndicators(const std::string& file) {
  Json j = Json::parse(readText(file), nullptr, false);
  if (!j.is_object() || !j.contains("indicators") || !j["indicators"].is_array())
    return makeError(ErrorCode::kInvalid, file + ": an object with an \"indicators\" array is expected");
  std::vector<Indicator> out;
  for (const auto& x : j["indicators"]) {
    std::string error, where = file + " (" + str(x, "id") + ")";
    Indicator d;
    d.id = field(x, "id", file, error);
    d.title = field(x, "title", where, error);
    d.definition = field(x, "definition", where, error);
    d.population = field(x, "population", where, error);
    d.numerator = field(x, "numerator", where, error);
    d.unit = field(x, "unit", where, error);
    d.source = field(x, "source", where, error);
    d.reference = str(x, "reference");
    d.kind = x.value("kind", "count");
    d.suppress = x.value("suppress", true);
    for (const auto& s : x.value("stratifiers", Json::array()))
      if (s.is_string()) d.stratifiers.push_back(s);
    if (!error.empty()) return makeError(ErrorCode::kInvalid, error);
    const auto& known = computedIndicators();
    if (std::find(known.begin(), known.end(), d.id) == known.end())
      return makeError(ErrorCode::kInvalid, where + ": no computation for this indicator (known: patients-admitted, exits, refusals, professionals, "
                                                    "cied-duration, csb-duration, vas)");
    if (d.kind != "count" && d.kind != "mean") return makeError(ErrorCode::kInvalid, where + ": kind must be count or mean");
    out.push_back(std::move(d));
  }
  return out;
}

// ---- the service ------------------------------------------------------------------------------

struct ExtractService::Impl {
  Options options;
  http::Gate* gate = nullptr;
  fhir::FhirService* fhir = nullptr;
  audit::AuditLog* audit = nullptr;
  std::vector<Recipient> recipients;
  std::vector<Indicator> indicators;
  Json tariffs = Json::object();
  store::ResourceStore* store = nullptr;
  std::mutex mutex;
  identity::Principal job;
  // the sender of transfers
  std::thread sender;
  std::mutex senderMutex;
  std::condition_variable senderWake;
  bool stopping = false;
  std::uint64_t wakes = 0;

  const Recipient* recipient(const std::string& id) const {
    for (const auto& r : recipients)
      if (r.id == id) return &r;
    return nullptr;
  }

  audit::Record record(const std::string& action, const identity::Principal* by) const {
    audit::Record r;
    r.kind = "admin";
    r.action = action;
    r.outcome = "granted";
    r.status = 200;
    r.subject = by ? by->subject : "passerelle";
    r.role = by ? by->role : "system";
    r.account = by ? by->account : "passerelle";
    if (by) r.tokenId = by->tokenId;
    r.purpose = "PUBHLTH";
    return r;
  }

  // One transfer: the package PUT to the recipient's endpoint. Its new state, and the audit record
  // of a transfer made or given up, saved; false when the store is unavailable.
  bool deliver(const Recipient& to, store::Delivery d) {
    fs::path dir = fs::path(options.dataDir) / "extracts" / d.focus;
    std::string package = readText((dir / "extract.p7m").string());
    std::string outcome = "error", detail;
    ++d.attempts;
    if (package.empty()) {
      d.status = "dead";
      d.lastError = "the package " + (dir / "extract.p7m").string() + " is gone";
    } else {
      http_client::Options o;
      o.baseUrl = to.transfer.url;
      o.clientCertificate = to.transfer.clientCertificate;
      o.clientKey = to.transfer.clientKey;
      o.caFile = to.transfer.caFile;
      o.timeoutMs = 30 * 60 * 1000;
      http_client::RestClient client(o);
      auto r = client.put("/" + d.focus + ".p7m", package, "application/pkcs7-mime");
      std::string sha = secureupload::sha256Hex(package);
      if (r.status >= 200 && r.status < 300) {
        Json receipt = {{"extract", d.focus}, {"recipient", to.id}, {"url", to.transfer.url + "/" + d.focus + ".p7m"}, {"status", r.status},
                        {"receivedMs", nowMs()}, {"packageSha256", sha}, {"answer", r.body.substr(0, 4096)}};
        std::string error;
        if (!writePrivate(dir / "receipt.json", receipt.dump(2), error)) log::warn("extract.receipt", {{"extract", d.focus}, {"error", error}});
        d.status = "sent";
        d.doneMs = nowMs();
        d.lastError.clear();
        outcome = "granted";
        detail = "sent to " + to.transfer.url + " (HTTP " + std::to_string(r.status) + ")";
      } else {
        d.lastError = r.status ? "HTTP " + std::to_string(r.status) + ": " + r.body.substr(0, 300) : r.error;
        bool refused = r.status >= 400 && r.status < 500 && r.status != 408 && r.status != 429;
        if (refused || d.attempts >= to.transfer.maxAttempts) {
          d.status = "dead";
          d.doneMs = nowMs();
        } else {
          double delay = to.transfer.initialDelayMs;
          for (int i = 1; i < d.attempts && delay < to.transfer.maxDelayMs; ++i) delay *= 2;
          d.nextTryMs = nowMs() + static_cast<std::int64_t>(std::min<double>(delay, to.transfer.maxDelayMs));
        }
      }
    }
    if (d.status == "dead") detail = "given up after " + std::to_string(d.attempts) + " attempt(s): " + d.lastError;
    auto w = store->write([&](store::WriteTxn& t) -> Result<void> { return t.updateDelivery(d); });
    if (!w.ok()) return false;
    if (audit && (d.status == "sent" || d.status == "dead")) {
      audit::Record r = record("extract-transfer", nullptr);
      r.outcome = outcome;
      r.method = "PUT";
      r.path = to.transfer.url;
      r.detail = Json{{"extract", d.focus}, {"recipient", to.id}, {"delivery", d.id}, {"result", detail}}.dump();
      auto a = audit->append(r);
      if (!a.ok()) log::error("extract.transfer_audit", {{"extract", d.focus}, {"error", a.error().message}});
    }
    log::info("extract.transfer", {{"extract", d.focus}, {"recipient", to.id}, {"status", d.status}, {"error", d.lastError}});
    return true;
  }

  void sendLoop() {
    std::uint64_t seen = 0;
    while (true) {
      {
        std::lock_guard<std::mutex> lock(senderMutex);
        if (stopping) return;
        seen = wakes;
      }
      std::int64_t waitMs = 60000;
      for (const auto& to : recipients) {
        if (to.transfer.url.empty()) continue;
        std::string destination = "extract:" + to.id;
        auto due = store->dueDeliveries(destination, nowMs(), 4);
        if (!due.ok()) {
          waitMs = 1000;
          continue;
        }
        for (auto& d : due.value())
          if (!deliver(to, d)) waitMs = 1000;
        auto next = store->nextDeliveryTime(destination);
        if (next.ok() && next->has_value()) waitMs = std::min<std::int64_t>(waitMs, std::max<std::int64_t>(0, **next - nowMs()));
      }
      std::unique_lock<std::mutex> lock(senderMutex);
      senderWake.wait_for(lock, std::chrono::milliseconds(waitMs), [&] { return stopping || wakes != seen; });
      if (stopping) return;
    }
  }

  // ---- keys ----
  fs::path keyFile() const { return fs::path(options.dataDir) / "extract-keys.json"; }

  Result<Json> keys() {
    if (!fs::exists(keyFile())) return Json::object();
    Json j = Json::parse(readText(keyFile().string()), nullptr, false);
    if (!j.is_object()) return makeError(ErrorCode::kInternal, keyFile().string() + " cannot be read");
    return j;
  }

  Result<std::pair<int, std::string>> currentKey(const std::string& domain, bool create) {
    auto k = keys();
    if (!k.ok()) return k.error();
    Json& j = k.value();
    if (!j.contains(domain) || !j[domain].is_array() || j[domain].empty()) {
      if (!create) return makeError(ErrorCode::kNotFound, "no key for the domain " + domain);
      auto v = addKey(j, domain);
      if (!v.ok()) return v.error();
    }
    const Json& last = j[domain].back();
    std::string key;
    if (!base64::decode(str(last, "key"), key) || key.size() < 32) return makeError(ErrorCode::kInternal, "the key of " + domain + " is unreadable");
    return std::make_pair(last.value("version", 0), key);
  }

  Result<int> addKey(Json& j, const std::string& domain) {
    unsigned char bytes[32];
    if (RAND_bytes(bytes, sizeof bytes) != 1) return makeError(ErrorCode::kInternal, "no random bytes for a key");
    int version = j.contains(domain) && j[domain].is_array() && !j[domain].empty() ? j[domain].back().value("version", 0) + 1 : 1;
    j[domain].push_back({{"version", version},
                         {"key", base64::encode(std::string_view(reinterpret_cast<const char*>(bytes), sizeof bytes))},
                         {"createdMs", nowMs()}});
    std::string error;
    if (!writePrivate(keyFile(), j.dump(2), error)) return makeError(ErrorCode::kInternal, error);
    return version;
  }

  // ---- reading, through the gate ----
  // Every resource of a search, page by page, to `each` (nothing kept: the caller keeps what it
  // needs). Each page has its own time limit, not the one of the request that asked for the extract.
  Result<void> forEach(const std::string& type, fhir::Params query, const std::string& why, const std::function<void(const Json&)>& each) {
    query.emplace_back("_count", "1000");
    for (int page = 0; page < 1000000; ++page) {
      store::SearchLimit limit(std::chrono::steady_clock::now() + std::chrono::seconds(120), [] { return false; });
      http::Caller caller;
      caller.connector = &job;
      caller.channel = "job:extract";
      caller.detail = why;
      fhir::FhirRequest req;
      req.method = "GET";
      req.path = "/" + type;
      req.query = query;
      fhir::FhirService* f = fhir;
      auto r = gate ? gate->handle(caller, req, "/fhir", [f](fhir::FhirRequest& q) { return f->handle(q); }) : fhir->handle(req);
      if (r.status != 200) return makeError(ErrorCode::kUnavailable, type + " could not be read (" + std::to_string(r.status) + "): " + r.body.substr(0, 300));
      Json b = Json::parse(r.body, nullptr, false);
      if (!b.is_object()) return makeError(ErrorCode::kInternal, type + ": an unreadable search answer");
      if (auto entries = b.find("entry"); entries != b.end() && entries->is_array())
        for (const auto& e : *entries)
          if (e.contains("resource") && e["resource"].is_object() && str(e.value("search", Json::object()), "mode") != "include") each(e["resource"]);
      std::string next;
      for (const auto& l : b.value("link", Json::array()))
        if (str(l, "relation") == "next") next = str(l, "url");
      auto q = next.find('?');
      if (q == std::string::npos) return {};
      query = fhir::parseQueryString(next.substr(q + 1));
    }
    return {};
  }

  // ---- the cohort ----
  struct Patient {
    std::string id, ins, birthDate, sex, pathology, inclusion, episodeStatus, episodeEnd, gp;  // gp: the careManager reference
    bool evaluable = false, consent = false;
  };
  struct Encounter {
    std::string patient, type, date;
    double minutes = -1;
    int semester = 0;
  };
  struct Value {
    std::string patient, code, start, end, encounter, unit;
    double value = 0;
  };

  Result<nlohmann::json> run(const Recipient& to, const std::string& from, const std::string& until, const identity::Principal* by) {
    std::string why = "extract for " + to.id + " (" + from + " to " + until + ")";
    std::map<std::string, Patient> cohort;
    std::map<std::string, std::string> pathologyOf;
    auto conditions = forEach("Condition", {}, why, [&](const Json& c) {
      if (auto p = codeIn(c.value("code", Json::object()), std::string(kCs) + "pathology"); !p.empty()) pathologyOf["Condition/" + str(c, "id")] = p;
    });
    if (!conditions.ok()) return conditions.error();
    auto episodes = forEach("EpisodeOfCare", {{"type", std::string(kCs) + "d77-programme|D77"}}, why, [&](const Json& e) {
      std::string patient = refOf(e, "patient");
      if (patient.rfind("Patient/", 0) != 0) return;
      Patient& p = cohort[patient.substr(8)];
      p.id = patient.substr(8);
      p.inclusion = day(str(e.value("period", Json::object()), "start"));
      p.episodeStatus = str(e, "status");
      p.episodeEnd = day(str(e.value("period", Json::object()), "end"));
      p.gp = refOf(e, "careManager");
      if (const Json* x = extension(e, std::string(kSd) + "evaluable")) p.evaluable = x->value("valueBoolean", false);
      for (const auto& d : e.value("diagnosis", Json::array()))
        if (auto it = pathologyOf.find(refOf(d, "condition")); it != pathologyOf.end()) p.pathology = it->second;
    });
    if (!episodes.ok()) return episodes.error();
    pathologyOf.clear();
    auto patients = forEach("Patient", {}, why, [&](const Json& r) {
      auto it = cohort.find(str(r, "id"));
      if (it == cohort.end()) return;
      it->second.birthDate = str(r, "birthDate");
      it->second.sex = str(r, "gender");
      for (const auto& id : r.value("identifier", Json::array()))
        if (fhir::fr::isInsSystem(str(id, "system")) && it->second.ins.empty()) it->second.ins = str(id, "value");
    });
    if (!patients.ok()) return patients.error();
    auto consents = forEach("Consent", {{"status", "active"}}, why, [&](const Json& c) {
      std::string patient = refOf(c, "patient");
      if (patient.rfind("Patient/", 0) == 0)
        if (auto it = cohort.find(patient.substr(8)); it != cohort.end()) it->second.consent = true;
    });
    if (!consents.ok()) return consents.error();
    std::map<std::string, Encounter> encounters;
    auto encounterRows = forEach("Encounter", {}, why, [&](const Json& e) {
      Encounter x;
      auto types = e.find("type");
      x.type = codeIn(types != e.end() && types->is_array() && !types->empty() ? (*types)[0] : Json::object(), std::string(kCs) + "d77-enc");
      if (x.type != "CIED" && x.type != "CSB") return;
      x.patient = refOf(e, "subject").substr(std::min<std::size_t>(8, refOf(e, "subject").size()));
      x.date = day(str(e.value("period", Json::object()), "start"));
      if (auto l = e.find("length"); l != e.end() && l->is_object() && (*l)["value"].is_number()) x.minutes = (*l)["value"].get<double>();
      if (const Json* s = extension(e, std::string(kSd) + "csb-semester")) x.semester = s->value("valueInteger", 0);
      encounters["Encounter/" + str(e, "id")] = x;
    });
    if (!encounterRows.ok()) return encounterRows.error();
    std::vector<Value> values;
    auto observations = forEach("Observation", {{"code", "http://loinc.org|72514-3," + std::string(kCs) +
                                                             "d77-ind|SICK-LEAVE-DAYS,HOSP-DAYS,GP-CONSULT,SPEC-CONSULT,IMAGING,PHYSIO-ACTS"}},
                                why, [&](const Json& o) {
      if (str(o, "status") == "entered-in-error") return;
      Value v;
      v.code = codeIn(o.value("code", Json::object()), "http://loinc.org") == "72514-3" ? "vas" : codeIn(o.value("code", Json::object()), std::string(kCs) + "d77-ind");
      auto q = o.find("valueQuantity");
      if (v.code.empty() || q == o.end() || !q->is_object() || !(*q)["value"].is_number()) return;
      v.value = (*q)["value"].get<double>();
      v.unit = str(*q, "code").empty() ? str(*q, "unit") : str(*q, "code");
      std::string subject = refOf(o, "subject");
      if (subject.rfind("Patient/", 0) != 0) return;
      v.patient = subject.substr(8);
      v.encounter = refOf(o, "encounter");
      v.start = day(str(o, "effectiveDateTime"));
      v.end = v.start;
      if (auto p = o.find("effectivePeriod"); p != o.end() && p->is_object()) {
        v.start = day(str(*p, "start"));
        v.end = day(str(*p, "end"));
      }
      values.push_back(std::move(v));
    });
    if (!observations.ok()) return observations.error();
    std::vector<Json> tasks, roles;  // few: kept whole
    auto taskRead = forEach("Task", {{"code", std::string(kCs) + "network-event|network-exit,admission-refusal"}}, why, [&](const Json& x) { tasks.push_back(x); });
    if (!taskRead.ok()) return taskRead.error();
    auto roleRead = forEach("PractitionerRole", {}, why, [&](const Json& x) { roles.push_back(x); });
    if (!roleRead.ok()) return roleRead.error();

    // ---- the aggregates ----
    std::vector<std::string> pathologies = {"low-back-pain", "migraine", "cancer"};
    for (const auto& [id, p] : cohort)
      if (!p.pathology.empty() && std::find(pathologies.begin(), pathologies.end(), p.pathology) == pathologies.end()) pathologies.push_back(p.pathology);
    if (std::any_of(cohort.begin(), cohort.end(), [](const auto& x) { return x.second.pathology.empty(); })) pathologies.push_back("unknown");
    auto pathologyIndex = [&](const std::string& p) {
      return static_cast<std::size_t>(std::find(pathologies.begin(), pathologies.end(), p.empty() ? "unknown" : p) - pathologies.begin());
    };
    Disclosure disclosure;
    struct Mean {
      std::string cell;  // the count cell deciding publication
      double sum = 0;
      std::int64_t n = 0;
    };
    std::map<std::string, std::vector<std::pair<std::string, Mean>>> means;  // indicator -> (stratum, mean)
    std::map<std::string, std::vector<std::pair<std::string, std::int64_t>>> unsuppressed;
    auto want = [&](const std::string& id) {
      return std::any_of(indicators.begin(), indicators.end(), [&](const Indicator& i) { return i.id == id; });
    };
    if (want("patients-admitted")) {
      std::vector<std::string> sexes = {"female", "male", "other", "unknown"};
      std::vector<std::vector<std::int64_t>> counts(pathologies.size(), std::vector<std::int64_t>(sexes.size(), 0));
      for (const auto& [id, p] : cohort)
        if (within(p.inclusion, from, until)) {
          auto s = std::find(sexes.begin(), sexes.end(), p.sex.empty() ? "unknown" : p.sex) - sexes.begin();
          if (s < static_cast<long>(sexes.size())) ++counts[pathologyIndex(p.pathology)][static_cast<std::size_t>(s)];
        }
      disclosure.table("patients-admitted", "pathology", pathologies, "sex", sexes, counts);
    }
    for (const char* kind : {"exits", "refusals"}) {
      if (!want(kind)) continue;
      std::string code = std::string(kind) == "exits" ? "network-exit" : "admission-refusal";
      std::string reasons = std::string(kCs) + (std::string(kind) == "exits" ? "exit-reason" : "refusal-reason");
      std::map<std::string, std::int64_t> byReason;
      for (const auto& t : tasks) {
        if (codeIn(t.value("code", Json::object()), std::string(kCs) + "network-event") != code) continue;
        if (!within(str(t.value("executionPeriod", Json::object()), "start"), from, until)) continue;
        std::string reason = codeIn(t.value("reasonCode", Json::object()), reasons);
        ++byReason[reason.empty() ? "unknown" : reason];
      }
      std::vector<std::string> names;
      std::vector<std::int64_t> counts;
      for (const auto& [r, n] : byReason) {
        names.push_back(r);
        counts.push_back(n);
      }
      disclosure.table(kind, "reason", names, counts);
    }
    if (want("professionals")) {
      std::map<std::string, std::set<std::string>> byCategory;
      for (const auto& r : roles) {
        if (r.contains("active") && r["active"].is_boolean() && !r["active"].get<bool>()) continue;
        const Json period = r.value("period", Json::object());
        if (!str(period, "start").empty() && day(str(period, "start")) > until) continue;
        if (!str(period, "end").empty() && day(str(period, "end")) < from) continue;
        std::string category;
        for (const auto& c : r.value("code", Json::array()))
          if (category.empty()) category = codeIn(c, std::string(kCs) + "network-role");
        byCategory[category.empty() ? "unknown" : category].insert(refOf(r, "practitioner").empty() ? str(r, "id") : refOf(r, "practitioner"));
      }
      for (const auto& [c, who] : byCategory) unsuppressed["professionals"].emplace_back("category=" + c, static_cast<std::int64_t>(who.size()));
    }
    for (const char* kind : {"cied-duration", "csb-duration"}) {
      if (!want(kind)) continue;
      std::string type = std::string(kind) == "cied-duration" ? "CIED" : "CSB";
      std::vector<std::int64_t> n(pathologies.size(), 0);
      std::vector<double> sum(pathologies.size(), 0);
      for (const auto& [ref, e] : encounters) {
        if (e.type != type || e.minutes < 0 || !within(e.date, from, until)) continue;
        auto it = cohort.find(e.patient);
        std::size_t i = pathologyIndex(it == cohort.end() ? "" : it->second.pathology);
        if (i >= pathologies.size()) continue;
        ++n[i];
        sum[i] += e.minutes;
      }
      std::string measure = std::string(kind) + "-n";
      disclosure.table(measure, "pathology", pathologies, n);
      std::int64_t allN = 0;
      double allSum = 0;
      for (std::size_t i = 0; i < pathologies.size(); ++i) {
        means[kind].push_back({"pathology=" + pathologies[i], {measure + "|pathology=" + pathologies[i], sum[i], n[i]}});
        allN += n[i];
        allSum += sum[i];
      }
      means[kind].push_back({"*", {measure, allSum, allN}});
    }
    if (want("vas")) {
      // Pain (0-10) by pathology and semester since inclusion (0: the CIED, n: the n-th CSB).
      int maxSemester = 0;
      for (const auto& [ref, e] : encounters) maxSemester = std::max(maxSemester, e.type == "CSB" ? e.semester : 0);
      std::vector<std::string> semesters;
      for (int s = 0; s <= maxSemester; ++s) semesters.push_back(std::to_string(s));
      std::vector<std::vector<std::int64_t>> n(pathologies.size(), std::vector<std::int64_t>(semesters.size(), 0));
      std::vector<std::vector<double>> sum(pathologies.size(), std::vector<double>(semesters.size(), 0));
      for (const auto& v : values) {
        if (v.code != "vas" || !within(v.start, from, until)) continue;
        auto e = encounters.find(v.encounter);
        if (e == encounters.end()) continue;
        int s = e->second.type == "CIED" ? 0 : e->second.semester;
        auto it = cohort.find(v.patient);
        std::size_t i = pathologyIndex(it == cohort.end() ? "" : it->second.pathology);
        if (i >= pathologies.size() || s < 0 || s > maxSemester) continue;
        ++n[i][static_cast<std::size_t>(s)];
        sum[i][static_cast<std::size_t>(s)] += v.value;
      }
      disclosure.table("vas-n", "pathology", pathologies, "semester", semesters, n);
      for (std::size_t i = 0; i < pathologies.size(); ++i)
        for (std::size_t s = 0; s < semesters.size(); ++s)
          means["vas"].push_back({"pathology=" + pathologies[i] + "|semester=" + semesters[s],
                                  {"vas-n|pathology=" + pathologies[i] + "|semester=" + semesters[s], sum[i][s], n[i][s]}});
    }
    disclosure.suppress(to.k);

    // ---- the files ----
    CsvWriter aggregates({"indicator", "stratum", "value", "unit", "n", "status"});
    Json groups = Json::array();
    std::int64_t masked = 0;
    for (const auto& d : indicators) {
      Json group = {{"code", {{"coding", Json::array({{{"system", std::string(kCs) + "d77-indicator"}, {"code", d.id}}})}, {"text", d.title}}}};
      Json strata = Json::array();
      auto add = [&](const std::string& stratum, const std::string& value, const std::string& n, bool hidden) {
        bool empty = !hidden && value.empty();  // a mean over nobody: nothing to hide, nothing to give
        aggregates.row({d.id, stratum, hidden ? "" : value, d.unit, hidden ? "" : n, hidden ? "masked" : empty ? "empty" : "published"});
        masked += hidden;
        Json s = {{"value", {{"text", stratum}}}};
        if (hidden || empty)
          s["extension"] = Json::array({{{"url", "http://hl7.org/fhir/StructureDefinition/data-absent-reason"}, {"valueCode", hidden ? "masked" : "not-applicable"}}});
        else if (d.kind == "mean") s["measureScore"] = {{"value", std::stod(value)}, {"unit", d.unit}};
        else s["population"] = Json::array({{{"code", {{"text", "numerator"}}}, {"count", std::stoll(value)}}});
        if (stratum == "*") {
          if (s.contains("measureScore")) group["measureScore"] = s["measureScore"];
          if (s.contains("population")) group["population"] = s["population"];
        }
        strata.push_back(s);
      };
      if (d.kind == "mean") {
        for (const auto& [stratum, m] : means[d.id]) {
          const auto* c = disclosure.find(m.cell);
          bool hidden = !c || c->masked;
          add(stratum, m.n ? decimal(m.sum / static_cast<double>(m.n)) : "", std::to_string(m.n), hidden);
        }
      } else if (!d.suppress || unsuppressed.count(d.id)) {
        for (const auto& [stratum, n] : unsuppressed[d.id]) add(stratum, std::to_string(n), std::to_string(n), false);
      } else {
        for (const auto& c : disclosure.cells()) {
          if (c.id != d.id && c.id.rfind(d.id + "|", 0) != 0) continue;
          std::string stratum = c.id == d.id ? "*" : c.id.substr(d.id.size() + 1);
          add(stratum, std::to_string(c.count), std::to_string(c.count), c.masked);
        }
      }
      group["stratifier"] = Json::array({{{"code", Json::array({{{"text", d.stratifiers.empty() ? std::string("none") : d.stratifiers[0]}}})}, {"stratum", strata}}});
      groups.push_back(group);
    }
    std::string created = fhir::formatInstant(nowMs());
    std::string id = created.substr(0, 19) + "-" + to.id;
    std::replace(id.begin(), id.end(), ':', '-');
    Json measure = {{"resourceType", "Measure"},
                    {"url", "https://douleur77.fr/fhir/Measure/d77-evaluation"},
                    {"status", "active"},
                    {"title", "Évaluation du réseau Douleur 77"},
                    {"scoring", {{"coding", Json::array({{{"system", "http://terminology.hl7.org/CodeSystem/measure-scoring"}, {"code", "continuous-variable"}}})}}},
                    {"group", Json::array()}};
    for (const auto& d : indicators)
      measure["group"].push_back({{"code", {{"coding", Json::array({{{"system", std::string(kCs) + "d77-indicator"}, {"code", d.id}}})}, {"text", d.title}}},
                                  {"description", d.definition + " Population: " + d.population + ". Numerator: " + d.numerator + ". Source: " +
                                                      d.source + (d.reference.empty() ? "" : ". " + d.reference) + "."}});
    Json report = {{"resourceType", "MeasureReport"},
                   {"status", "complete"},
                   {"type", "summary"},
                   {"measure", "https://douleur77.fr/fhir/Measure/d77-evaluation"},
                   {"date", created},
                   {"period", {{"start", from}, {"end", until}}},
                   {"group", groups}};

    std::vector<secureupload::Entry> files = {{"indicators.csv", aggregates.text()}, {"measure.json", measure.dump(2)}, {"measure-report.json", report.dump(2)}};
    Json manifest = {{"id", id},
                     {"generator", options.generator},
                     {"created", created},
                     {"recipient", {{"id", to.id}, {"name", to.name}, {"role", to.role}}},
                     {"period", {{"start", from}, {"end", until}}},
                     {"k", to.k},
                     {"maskedCells", masked},
                     {"files", Json::array()}};
    std::vector<std::string> rowPatients;
    if (to.rows()) {
      auto key = currentKey(to.domain, true);
      if (!key.ok()) return key.error();
      CsvWriter rows({"pseudo_id", "pathology", "age_band", "sex", "inclusion_semester", "period_start", "period_end", "phase", "indicator", "value",
                      "unit", "source"});
      std::int64_t withoutIns = 0, withoutConsent = 0;
      std::map<std::string, std::vector<const Value*>> byPatient;
      for (const auto& v : values) byPatient[v.patient].push_back(&v);
      for (const auto& [pid, p] : cohort) {
        if (p.inclusion.empty() || p.inclusion > until) continue;
        if (!p.consent) {
          ++withoutConsent;
          continue;
        }
        if (p.ins.empty()) {
          ++withoutIns;
          continue;
        }
        std::string pseudo = pseudonym(p.ins, key->second), band = ageBand(p.birthDate, p.inclusion), sem = semesterOf(p.inclusion);
        std::string sex = p.sex == "male" || p.sex == "female" ? p.sex : "unknown";
        auto row = [&](const std::string& start, const std::string& end, const std::string& phase, const std::string& indicator, const std::string& value,
                       const std::string& unit, const std::string& source) {
          rows.row({pseudo, p.pathology, band, sex, sem, monthOf(start), monthOf(end), phase, indicator, value, unit, source});
        };
        row(p.inclusion, p.inclusion, "inclusion", "evaluable", p.evaluable ? "1" : "0", "{boolean}", "network DB");
        for (const Value* v : byPatient[pid]) {
          if (!within(v->end.empty() ? v->start : v->end, from, until) && !within(v->start, from, until)) continue;
          std::string phase = (v->end.empty() ? v->start : v->end) <= p.inclusion && v->code != "vas" ? "before" : "after";
          std::string indicator = v->code;
          std::transform(indicator.begin(), indicator.end(), indicator.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
          row(v->start, v->end.empty() ? v->start : v->end, phase, indicator, decimal(v->value), v->code == "vas" ? "{score}" : v->unit,
              "CIED/CSB report");
        }
        rowPatients.push_back(pid);
      }
      files.push_back({"patients.csv", rows.text()});
      manifest["pseudonym"] = {{"algorithm", "HMAC-SHA-256 of the INS (15 characters, upper case)"}, {"domain", to.domain}, {"keyVersion", key->first}};
      manifest["patientsWithoutIns"] = withoutIns;
      manifest["patientsWithoutActiveConsent"] = withoutConsent;
    }
    if (to.fees()) {
      auto statement = fees(from, until, why, cohort, roles);
      if (!statement.ok()) return statement.error();
      files.push_back({"fees.csv", statement->first});
      files.push_back({"payments.csv", statement->second});
    }
    for (const auto& f : files) {
      std::size_t lines = static_cast<std::size_t>(std::count(f.bytes.begin(), f.bytes.end(), '\n'));
      Json entry = {{"name", f.name}, {"bytes", f.bytes.size()}, {"sha256", secureupload::sha256Hex(f.bytes)}};
      if (f.name.size() > 4 && f.name.substr(f.name.size() - 4) == ".csv") entry["rows"] = lines ? lines - 1 : 0;
      manifest["files"].push_back(entry);
    }
    files.push_back({"manifest.json", manifest.dump(2)});

    // ---- sealed for the recipient ----
    std::string archive, sealed, error;
    if (!secureupload::zip(files, archive, error)) return makeError(ErrorCode::kInternal, "the archive cannot be made: " + error);
    auto signer = signerCredentials();
    if (!signer.ok()) return signer.error();
    auto recipientPem = recipientCertificate(to);
    if (!recipientPem.ok()) return recipientPem.error();
    if (!secureupload::seal(archive, *signer, {*recipientPem}, nowMs() / 1000, sealed, error))
      return makeError(ErrorCode::kInvalid, "the extract for " + to.id + " is not sealed (nothing written): " + error);
    fs::path dir = fs::path(options.dataDir) / "extracts" / id;
    std::error_code ec;
    fs::create_directories(dir, ec);
    fs::permissions(fs::path(options.dataDir) / "extracts", fs::perms::owner_all, ec);
    manifest["package"] = (dir / "extract.p7m").string();
    manifest["packageSha256"] = secureupload::sha256Hex(sealed);
    if (!writePrivate(dir / "extract.p7m", sealed, error) || !writePrivate(dir / "manifest.json", manifest.dump(2), error))
      return makeError(ErrorCode::kInternal, error);

    // ---- audited ----
    if (audit) {
      audit::Record r = record("extract", by);
      r.method = "EXTRACT";
      r.path = "/admin/v1/extracts";
      r.resourceType = "MeasureReport";
      r.patients = rowPatients;
      Json detail = {{"extract", id}, {"recipient", to.id}, {"role", to.role}, {"k", to.k}, {"maskedCells", masked}, {"package", manifest["packageSha256"]}};
      if (manifest.contains("pseudonym")) detail["keyVersion"] = manifest["pseudonym"]["keyVersion"];
      for (const auto& f : manifest["files"]) detail["rows"][f["name"].get<std::string>()] = f.value("rows", 0);
      r.detail = detail.dump();
      auto a = audit->append(r);
      if (!a.ok()) return makeError(ErrorCode::kUnavailable, "the extract's audit record cannot be written: " + a.error().message);
    }
    log::info("extract.written", {{"extract", id}, {"recipient", to.id}, {"patients", std::to_string(rowPatients.size())}, {"masked", std::to_string(masked)}});
    return manifest;
  }

  // The fee statement (one line per professional, year and fee) and the payment file (one line per
  // professional and year): the fee rows (ChargeItem) of the period as the network wrote them, and
  // the shared-dossier fee of each GP correspondent per calendar year, for the first patients
  // enrolled with them that year up to the tariff's maximum, at the version in force at the year's end.
  Result<std::pair<std::string, std::string>> fees(const std::string& from, const std::string& until, const std::string& why,
                                                   const std::map<std::string, Patient>& cohort, const std::vector<Json>& roles) {
    std::map<std::string, std::string> memberOf;  // "Practitioner/x" -> "rpps:N"
    std::map<std::string, std::string> categoryOf;
    auto practitioners = forEach("Practitioner", {}, why, [&](const Json& p) {
      for (const auto& id : p.value("identifier", Json::array()))
        if (str(id, "system") == "https://rpps.esante.gouv.fr") memberOf["Practitioner/" + str(p, "id")] = "rpps:" + str(id, "value");
        else if (str(id, "system") == "https://adeli.esante.gouv.fr" && !memberOf.count("Practitioner/" + str(p, "id")))
          memberOf["Practitioner/" + str(p, "id")] = "adeli:" + str(id, "value");
    });
    if (!practitioners.ok()) return practitioners.error();
    for (const auto& r : roles) {
      std::string who = refOf(r, "practitioner");
      for (const auto& c : r.value("code", Json::array()))
        if (auto code = codeIn(c, std::string(kCs) + "network-role"); !code.empty()) categoryOf[who] = code;
      if (auto m = memberOf.find(who); m != memberOf.end()) memberOf["PractitionerRole/" + str(r, "id")] = m->second;
    }
    struct Line {
      std::set<std::string> patients;
      int count = 0;
      double amount = 0, unit = 0, coefficient = 0;
      std::string keyLetter, category, source;
    };
    std::map<std::tuple<std::string, std::string, std::string>, Line> lines;  // (professional, year, fee)
    auto items = forEach("ChargeItem", {}, why, [&](const Json& c) {
      std::string date = day(str(c, "occurrenceDateTime"));
      if (!within(date, from, until) || str(c, "status") == "entered-in-error") return;
      std::string fee = codeIn(c.value("code", Json::object()), std::string(kCs) + "d77-fee");
      if (fee.empty()) return;
      std::string actor;
      for (const auto& p : c.value("performer", Json::array()))
        if (actor.empty()) actor = refOf(p, "actor");
      std::string who = memberOf.count(actor) ? memberOf[actor] : actor;
      double amount = 0;
      if (auto po = c.find("priceOverride"); po != c.end() && po->is_object() && (*po)["value"].is_number()) amount = (*po)["value"].get<double>();
      Line& l = lines[{who, date.substr(0, 4), fee}];
      ++l.count;
      l.amount += amount;
      l.unit = amount;
      l.patients.insert(refOf(c, "subject"));
      l.category = categoryOf.count(actor) ? categoryOf[actor] : "";
      if (const Json* k = extension(c, std::string(kSd) + "fee-key-letter")) l.keyLetter = str(*k, "valueString");
      if (const Json* k = extension(c, std::string(kSd) + "fee-coefficient"); k && (*k)["valueDecimal"].is_number())
        l.coefficient = (*k)["valueDecimal"].get<double>();
      l.source = "fee rows of the network (ChargeItem)";
    });
    if (!items.ok()) return items.error();
    // The shared-dossier fee: GP correspondents (EpisodeOfCare.careManager), per calendar year.
    std::map<std::pair<std::string, std::string>, std::vector<std::pair<std::string, std::string>>> enrolled;  // (gp, year) -> (inclusion, patient)
    for (const auto& [id, p] : cohort) {
      if (p.gp.empty() || p.inclusion.empty() || p.episodeStatus == "entered-in-error" || p.episodeStatus == "cancelled") continue;
      for (int y = std::stoi(from.substr(0, 4)); y <= std::stoi(until.substr(0, 4)); ++y) {
        std::string ys = std::to_string(y);
        if (p.inclusion > ys + "-12-31" || (!p.episodeEnd.empty() && p.episodeEnd < ys + "-01-01")) continue;
        enrolled[{memberOf.count(p.gp) ? memberOf[p.gp] : p.gp, ys}].push_back({p.inclusion, "Patient/" + id});
      }
    }
    const Json& dossier = tariffs.value("dossierFee", Json::object());
    int maxPatients = dossier.value("maxPatients", 10);
    for (auto& [key, list] : enrolled) {
      std::string yearEnd = key.second + "-12-31";
      const Json* version = nullptr;
      static const Json none = Json::array();
      auto versions = dossier.find("versions");
      for (const auto& v : versions != dossier.end() && versions->is_array() ? *versions : none)
        if (v.contains("validFrom") && v["validFrom"].is_string() && v["validFrom"].get<std::string>() <= yearEnd &&
            (!version || v["validFrom"].get<std::string>() >= (*version)["validFrom"].get<std::string>()))
          version = &v;
      if (!version || !(*version)["amount"].is_number()) continue;
      std::sort(list.begin(), list.end());
      Line& l = lines[{key.first, key.second, "DOSSIER"}];
      for (const auto& [start, patient] : list)
        if (static_cast<int>(l.patients.size()) < maxPatients) l.patients.insert(patient);
      l.count = static_cast<int>(l.patients.size());
      l.unit = (*version)["amount"].get<double>();
      l.amount = l.unit * l.count;
      l.category = "gp";
      l.source = str(*version, "source");
    }
    CsvWriter statement({"professional", "category", "year", "fee", "count", "patients", "key_letter", "coefficient", "unit_amount", "amount", "currency",
                         "source"});
    CsvWriter payments({"professional", "year", "amount", "currency", "lines"});
    std::map<std::pair<std::string, std::string>, std::pair<double, int>> totals;
    for (const auto& [key, l] : lines) {
      const auto& [who, year, fee] = key;
      statement.row({who, l.category, year, fee, std::to_string(l.count), std::to_string(l.patients.size()), l.keyLetter,
                     l.coefficient ? decimal(l.coefficient) : "", decimal(l.unit), decimal(l.amount), "EUR", l.source});
      auto& t = totals[{who, year}];
      t.first += l.amount;
      ++t.second;
    }
    for (const auto& [key, t] : totals) payments.row({key.first, key.second, decimal(t.first), "EUR", std::to_string(t.second)});
    return std::make_pair(statement.text(), payments.text());
  }

  Result<secureupload::Credentials> signerCredentials() {
    std::string cert = options.signingCertificate, key = options.signingKey;
    if (cert.empty()) {
      if (options.production) return makeError(ErrorCode::kInvalid, "extract.signing_certificate and extract.signing_key are required in production");
      cert = options.dataDir + "/extract-signing/signer.crt";
      key = options.dataDir + "/extract-signing/signer.key";
      std::error_code ec;
      fs::create_directories(options.dataDir + "/extract-signing", ec);
      auto d = http::ensureDevCertificate(cert, key, {"Passerelle extract signing (development)", "critical,digitalSignature,nonRepudiation", "emailProtection"});
      if (!d.ok()) return makeError(d.error().code, "extract signing (development): " + d.error().message);
    }
    return secureupload::Credentials{readText(cert), readText(key)};
  }

  Result<std::string> recipientCertificate(const Recipient& to) {
    if (!to.certificate.empty()) {
      std::string pem = readText(to.certificate);
      if (pem.empty()) return makeError(ErrorCode::kInvalid, "the certificate of " + to.id + " (" + to.certificate + ") cannot be read");
      return pem;
    }
    if (options.production) return makeError(ErrorCode::kInvalid, "the recipient " + to.id + " has no certificate: nothing can be sealed for it");
    // Outside production: a development recipient, so that `passerelle extract open` can be tried.
    std::string dir = options.dataDir + "/extract-demo-recipients";
    std::error_code ec;
    fs::create_directories(dir, ec);
    auto d = http::ensureDevCertificate(dir + "/" + to.id + ".crt", dir + "/" + to.id + ".key",
                                        {"Development recipient " + to.id, "critical,keyAgreement", "emailProtection"});
    if (!d.ok()) return makeError(d.error().code, "development recipient " + to.id + ": " + d.error().message);
    log::warn("extract.dev_recipient", {{"recipient", to.id}, {"certificate", dir + "/" + to.id + ".crt"},
                                        {"note", "development only: set the recipient's certificate in production"}});
    return readText(dir + "/" + to.id + ".crt");
  }
};

ExtractService::ExtractService() : impl_(std::make_unique<Impl>()) {}
ExtractService::~ExtractService() { stop(); }

Result<std::unique_ptr<ExtractService>> ExtractService::start(Options options, http::Gate* gate, fhir::FhirService& fhir, audit::AuditLog* audit,
                                                              store::ResourceStore& store) {
  auto recipients = loadRecipients(options.recipientsFile);
  if (!recipients.ok()) return recipients.error();
  auto indicators = loadIndicators(options.indicatorsFile);
  if (!indicators.ok()) return indicators.error();
  Json tariffs = Json::object();
  if (!options.tariffsFile.empty() && !fs::exists(options.tariffsFile)) {
    log::warn("extract.no_tariffs", {{"file", options.tariffsFile}, {"note", "fee statements without the shared-dossier fee"}});
  } else if (!options.tariffsFile.empty()) {
    tariffs = Json::parse(readText(options.tariffsFile), nullptr, false);
    if (!tariffs.is_object() || !tariffs.value("dossierFee", Json::object()).value("versions", Json()).is_array())
      return makeError(ErrorCode::kInvalid, options.tariffsFile + ": an object with dossierFee.versions is expected");
  }
  std::unique_ptr<ExtractService> s(new ExtractService());
  Impl& m = *s->impl_;
  m.options = std::move(options);
  m.gate = gate;
  m.fhir = &fhir;
  m.audit = audit;
  m.recipients = std::move(recipients.value());
  m.indicators = std::move(indicators.value());
  m.tariffs = std::move(tariffs);
  m.job.subject = m.job.account = "passerelle";
  m.job.role = "system";
  m.job.purpose = "PUBHLTH";  // the evaluation of the experiment (a purpose of the system role)
  m.job.scopes = {"system/*.rs"};
  m.job.tokenId = "gateway";
  m.store = &store;
  if (std::any_of(m.recipients.begin(), m.recipients.end(), [](const Recipient& r) { return !r.transfer.url.empty(); }))
    m.sender = std::thread([&m] { m.sendLoop(); });
  return s;
}

void ExtractService::stop() {
  {
    std::lock_guard<std::mutex> lock(impl_->senderMutex);
    impl_->stopping = true;
  }
  impl_->senderWake.notify_all();
  if (impl_->sender.joinable()) impl_->sender.join();
}

Result<nlohmann::json> ExtractService::send(const std::string& id, const identity::Principal* by) {
  fs::path dir = fs::path(impl_->options.dataDir) / "extracts" / id;
  if (id.empty() || id.find('/') != std::string::npos || id.find("..") != std::string::npos || !fs::exists(dir / "manifest.json"))
    return makeError(ErrorCode::kNotFound, "no extract " + id + " (see passerelle extract list)");
  Json manifest = Json::parse(readText((dir / "manifest.json").string()), nullptr, false);
  std::string recipientId = manifest.is_object() ? str(manifest.value("recipient", Json::object()), "id") : "";
  const Recipient* to = impl_->recipient(recipientId);
  if (!to) return makeError(ErrorCode::kNotFound, "the recipient " + recipientId + " of extract " + id + " is no longer configured");
  if (to->transfer.url.empty()) return makeError(ErrorCode::kInvalid, "the recipient " + to->id + " has no transfer endpoint (transfer.url)");
  store::Delivery d;
  d.destination = "extract:" + to->id;
  d.orderKey = to->id;
  d.kind = "CMS";
  d.focus = id;
  auto w = impl_->store->write([&](store::WriteTxn& t) -> Result<void> { return t.enqueue(d); });
  if (!w.ok()) return w.error();
  if (impl_->audit) {
    audit::Record r = impl_->record("extract-send", by);
    r.method = "POST";
    r.path = "/admin/v1/extracts/" + id + "/send";
    r.detail = Json{{"extract", id}, {"recipient", to->id}, {"delivery", d.id}}.dump();
    auto a = impl_->audit->append(r);
    if (!a.ok()) return makeError(ErrorCode::kUnavailable, "the transfer's audit record cannot be written: " + a.error().message);
  }
  {
    std::lock_guard<std::mutex> lock(impl_->senderMutex);
    ++impl_->wakes;
  }
  impl_->senderWake.notify_all();
  return Json{{"extract", id}, {"recipient", to->id}, {"delivery", d.id}, {"status", "queued"}};
}

Result<nlohmann::json> ExtractService::run(const std::string& recipient, const std::string& from, const std::string& to, const identity::Principal* by) {
  std::lock_guard<std::mutex> lock(impl_->mutex);
  const Recipient* r = nullptr;
  for (const auto& x : impl_->recipients)
    if (x.id == recipient) r = &x;
  if (!r) return makeError(ErrorCode::kNotFound, "no extract recipient " + recipient + " (see extract.recipients)");
  auto isDate = [](const std::string& d) { return d.size() == 10 && d[4] == '-' && d[7] == '-'; };
  if (!isDate(from) || !isDate(to) || from > to) return makeError(ErrorCode::kInvalid, "the period must be two dates YYYY-MM-DD, the first not after the second");
  return impl_->run(*r, from, to, by);
}

Result<nlohmann::json> ExtractService::list() const {
  Json out = Json::array();
  fs::path dir = fs::path(impl_->options.dataDir) / "extracts";
  std::error_code ec;
  std::vector<fs::path> found;
  for (const auto& e : fs::directory_iterator(dir, ec))
    if (fs::exists(e.path() / "manifest.json")) found.push_back(e.path());
  std::sort(found.rbegin(), found.rend());
  for (const auto& p : found) {
    Json m = Json::parse(readText((p / "manifest.json").string()), nullptr, false);
    if (m.is_object()) out.push_back(m);
  }
  return out;
}

Result<int> ExtractService::rotateKey(const std::string& domain, const identity::Principal* by) {
  std::lock_guard<std::mutex> lock(impl_->mutex);
  if (domain.empty()) return makeError(ErrorCode::kInvalid, "a key domain is needed");
  auto k = impl_->keys();
  if (!k.ok()) return k.error();
  auto v = impl_->addKey(k.value(), domain);
  if (!v.ok()) return v.error();
  if (impl_->audit) {
    audit::Record r = impl_->record("key-rotation", by);
    r.method = "POST";
    r.path = "/admin/v1/extracts/keys/" + domain + "/rotate";
    r.detail = Json{{"domain", domain}, {"keyVersion", *v}}.dump();
    auto a = impl_->audit->append(r);
    if (!a.ok()) return makeError(ErrorCode::kUnavailable, "the rotation's audit record cannot be written: " + a.error().message);
  }
  return v;
}

fhir::FhirResponse ExtractService::handle(const std::string& method, const std::string& path, const std::string& body, const identity::Principal* by) {
  auto answer = [](int status, const Json& j) {
    fhir::FhirResponse r;
    r.status = status;
    r.body = j.dump();
    r.headers.emplace_back("Content-Type", "application/json");
    return r;
  };
  if (method == "GET" && path == "/extracts") {
    auto l = list();
    if (!l.ok()) return fhir::errorResponse(l.error());
    return answer(200, Json{{"extracts", l.value()}});
  }
  if (method == "POST" && path == "/extracts") {
    Json b = Json::parse(body.empty() ? "{}" : body, nullptr, false);
    if (!b.is_object()) return fhir::errorResponse(makeError(ErrorCode::kInvalid, "a JSON object is expected"));
    auto m = run(str(b, "recipient"), str(b, "from"), str(b, "to"), by);
    if (!m.ok()) return fhir::errorResponse(m.error());
    return answer(200, m.value());
  }
  if (method == "POST" && path.size() > 15 && path.rfind("/extracts/", 0) == 0 && path.substr(path.size() - 5) == "/send") {
    auto q = send(path.substr(10, path.size() - 15), by);
    if (!q.ok()) return fhir::errorResponse(q.error());
    return answer(202, q.value());
  }
  const std::string keys = "/extracts/keys/";
  if (method == "POST" && path.rfind(keys, 0) == 0 && path.size() > keys.size() + 7 && path.substr(path.size() - 7) == "/rotate") {
    auto v = rotateKey(path.substr(keys.size(), path.size() - keys.size() - 7), by);
    if (!v.ok()) return fhir::errorResponse(v.error());
    return answer(200, Json{{"keyVersion", v.value()}});
  }
  return fhir::errorResponse(makeError(ErrorCode::kNotFound, "no such extract operation: " + method + " " + path));
}

}  // namespace passerelle::extract
