// The GP software connector (see gp_connector.h).
#include "gateway/exchange/gp_connector.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <random>
#include <thread>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>

#include "gateway/audit/audit_log.h"
#include "gateway/common/log.h"
#include "gateway/exchange/lookups.h"
#include "gateway/fhir/search_params.h"
#include "mappings/common/base64.h"
#include "mappings/common/utf8.h"
#include "mappings/fhir/french_identity.h"
#include "mappings/fhir/json_reader.h"
#include "mappings/hprim/fhir_mapping.h"
#include "mappings/hprim/hprim.h"

namespace passerelle::exchange {
namespace {

using Json = nlohmann::ordered_json;
namespace fs = std::filesystem;



std::string str(const Json& j, const char* key) {
  auto it = j.find(key);
  return it != j.end() && it->is_string() ? it->get<std::string>() : std::string();
}


Result<GpInstallation> parseInstallation(const Json& j, const std::string& file, const std::string& dataDir) {
  auto bad = [&](const std::string& what) { return makeError(ErrorCode::kInvalid, file + ": " + what); };
  if (!j.is_object()) return bad("not a JSON object");
  static const std::set<std::string> known = {"id", "name", "practitioner", "account", "folder", "import", "export", "description"};
  for (const auto& [k, v] : j.items())
    if (!known.count(k)) return bad("unknown member '" + k + "'");
  GpInstallation g;
  try {
    g.id = j.at("id").get<std::string>();
    g.name = j.value("name", g.id);
    g.rpps = j.at("practitioner").at("rpps").get<std::string>();
    g.account = j.value("account", g.id);
    g.folder = j.value("folder", "gp/" + g.id);
    const Json in = j.value("import", Json::object());
    g.maxBytes = in.value("maxBytes", g.maxBytes);
    g.stableForMs = in.value("stableForMs", g.stableForMs);
    g.pollMs = in.value("pollMs", g.pollMs);
    g.workers = in.value("workers", g.workers);
    const Json out = j.value("export", Json::object());
    g.exportFormat = out.value("format", g.exportFormat);
    g.encoding = out.value("encoding", g.encoding);
    g.sender = out.value("sender", g.sender);
    g.recipient = out.value("recipient", g.rpps);
    const Json retry = out.value("retry", Json::object());
    g.maxAttempts = retry.value("maxAttempts", g.maxAttempts);
    g.initialDelayMs = retry.value("initialDelayMs", g.initialDelayMs);
    g.maxDelayMs = retry.value("maxDelayMs", g.maxDelayMs);
  } catch (const Json::exception& ex) {
    return bad(std::string("a member has the wrong type or is missing: ") + ex.what());
  }
  if (g.id.empty() || g.id.find_first_of(" /:") != std::string::npos) return bad("id must be a non-empty word");
  if (g.rpps.size() != 11 || g.rpps.find_first_not_of("0123456789") != std::string::npos)
    return bad("practitioner.rpps must be the GP's 11-digit RPPS number");
  hprim::Encoding e;
  if (!hprim::parseEncoding(g.encoding, e)) return bad("export.encoding must be ISO-8859-1 or UTF-8");
  if (g.exportFormat != "hprim-net" && g.exportFormat != "cda") return bad("export.format must be hprim-net or cda");
  if (g.stableForMs < 0 || g.pollMs < 50 || g.maxBytes < 1 || g.workers < 1 || g.workers > 64)
    return bad("import: stableForMs >= 0, pollMs >= 50, maxBytes >= 1, workers from 1 to 64");
  if (g.maxAttempts < 1 || g.initialDelayMs < 1 || g.maxDelayMs < g.initialDelayMs)
    return bad("export.retry: maxAttempts >= 1 and 1 <= initialDelayMs <= maxDelayMs");
  if (fs::path(g.folder).is_relative()) g.folder = (fs::path(dataDir) / g.folder).string();
  return g;
}

// Base letters of the accented Latin letters French names use.
char baseLetter(std::uint32_t cp) {
  static const char* kFrom00C0 = "AAAAAAACEEEEIIIIDNOOOOOxOUUUUYTsaaaaaaaceeeeiiiidnooooo/ouuuuyty";
  if (cp >= 0xC0 && cp <= 0xFF) return kFrom00C0[cp - 0xC0];
  return 0;
}

}  // namespace

std::string identityForm(const std::string& name) {
  std::string out;
  std::uint32_t cp;
  bool space = true;
  for (std::size_t i = 0; i < name.size();) {
    std::size_t n = utf8::decode(name, i, cp);
    if (!n) {
      ++i;
      continue;
    }
    i += n;
    std::string piece;
    if (cp == 0x152 || cp == 0x153) piece = "OE";
    else if (cp == 0xC6 || cp == 0xE6) piece = "AE";
    else if (cp < 0x80) piece = std::string(1, static_cast<char>(std::toupper(static_cast<int>(cp))));
    else if (char b = baseLetter(cp); b) piece = std::string(1, static_cast<char>(std::toupper(static_cast<unsigned char>(b))));
    else utf8::append(piece, cp);
    if (piece == "-" || piece == "'" || piece == " " || piece == "\t" || cp == 0x2019) {
      if (!space) out += ' ';
      space = true;
      continue;
    }
    out += piece;
    space = false;
  }
  while (!out.empty() && out.back() == ' ') out.pop_back();
  return out;
}

Result<std::vector<GpInstallation>> loadGpInstallations(const std::string& dir, const std::string& dataDir) {
  std::vector<GpInstallation> out;
  std::error_code ec;
  if (dir.empty() || !fs::is_directory(dir, ec)) return out;
  std::vector<fs::path> files;
  for (const auto& e : fs::directory_iterator(dir, ec))
    if (e.path().extension() == ".json") files.push_back(e.path());
  std::sort(files.begin(), files.end());
  std::set<std::string> ids;
  for (const auto& f : files) {
    std::ifstream in(f);
    std::stringstream ss;
    ss << in.rdbuf();
    Json j = Json::parse(ss.str(), nullptr, false);
    if (j.is_discarded()) return makeError(ErrorCode::kInvalid, f.string() + ": not JSON");
    auto g = parseInstallation(j, f.string(), dataDir);
    if (!g.ok()) return g.error();
    if (!ids.insert(g->id).second) return makeError(ErrorCode::kInvalid, f.string() + ": id '" + g->id + "' is used twice");
    out.push_back(std::move(g.value()));
  }
  return out;
}

struct GpConnector::Impl {
  store::ResourceStore& store;
  fhir::FhirService& fhir;
  http::Gate* gate;
  access::AccessControl* access = nullptr;
  audit::AuditLog* audit = nullptr;
  std::shared_ptr<cda::Schema> cdaSchema;
  std::vector<GpInstallation> installations;
  std::vector<identity::Principal> principals;
  std::vector<std::unique_ptr<filedrop::Watcher>> watchers;
  std::vector<std::thread> exporters;
  std::mutex mutex;
  std::condition_variable cv;
  bool stopping = false;
  std::uint64_t wakes = 0;
  // Writer thread only: each installation's GP as PractitionerRole references.
  std::map<std::size_t, std::set<std::string>> roles;

  Impl(store::ResourceStore& s, fhir::FhirService& f, http::Gate* g) : store(s), fhir(f), gate(g) {}

  const GpInstallation* installation(const std::string& id, std::size_t* index = nullptr) const {
    for (std::size_t i = 0; i < installations.size(); ++i)
      if (installations[i].id == id) {
        if (index) *index = i;
        return &installations[i];
      }
    return nullptr;
  }

  // ---- identity ----------------------------------------------------------------------------

  std::vector<std::string> searchIds(const std::string& type, const fhir::Params& query, int count) {
    return findIds(store, type, query, count);
  }

  std::optional<Json> readRef(const std::string& ref) {
    auto body = currentBody(store, ref);
    if (!body) return std::nullopt;
    Json j = Json::parse(*body, nullptr, false);
    if (j.is_discarded()) return std::nullopt;
    return j;
  }

  std::optional<Json> readPatient(const std::string& id) { return readRef("Patient/" + id); }

  struct Traits {
    std::vector<std::string> families;  // identity forms
    std::string firstGiven, birthDate, gender, birthPlace;  // birthPlace: INSEE code of the commune
  };

  static Traits traitsOf(const Json& p) {
    Traits t;
    for (const auto& n : p.value("name", Json::array())) {
      if (!n.is_object()) continue;
      if (auto f = identityForm(str(n, "family")); !f.empty()) t.families.push_back(f);
      if (t.firstGiven.empty())
        if (auto g = n.find("given"); g != n.end() && g->is_array() && !g->empty() && (*g)[0].is_string())
          t.firstGiven = identityForm((*g)[0].get<std::string>());
    }
    t.birthDate = str(p, "birthDate");
    t.gender = str(p, "gender");
    if (t.gender == "unknown") t.gender.clear();
    t.birthPlace = fhir::fr::birthPlaceCode(p);
    return t;
  }

  // Whether `known`'s traits agree with what the file says (only what it says is compared).
  static std::string disagreement(const Traits& file, const Traits& known) {
    if (!file.birthDate.empty() && file.birthDate != known.birthDate) return "the birth date differs";
    if (!file.families.empty()) {
      bool any = false;
      for (const auto& f : file.families)
        if (std::find(known.families.begin(), known.families.end(), f) != known.families.end()) any = true;
      if (!any) return "the family name differs";
    }
    if (!file.firstGiven.empty() && file.firstGiven != known.firstGiven) return "the first name differs";
    if (!file.gender.empty() && !known.gender.empty() && file.gender != known.gender) return "the sex differs";
    if (!file.birthPlace.empty() && !known.birthPlace.empty() && file.birthPlace != known.birthPlace) return "the birthplace differs";
    return "";
  }

  // The network patient a file's Patient names: "Patient/<id>", or "" with `why` (for review).
  std::string identify(const Json& p, std::string& why) {
    Traits file = traitsOf(p);
    for (const auto& id : p.value("identifier", Json::array())) {
      std::string system = str(id, "system"), value = str(id, "value");
      if (value.empty() || !fhir::fr::isInsSystem(system)) continue;
      auto found = searchIds("Patient", {{"identifier", system + "|" + value}}, 2);
      if (found.size() != 1) {
        why = found.empty() ? "no network patient has the INS " + value : "several network patients have the INS " + value;
        return "";
      }
      auto known = readPatient(found[0]);
      if (!known) {
        why = "the patient with the INS " + value + " cannot be read";
        return "";
      }
      if (auto d = disagreement(file, traitsOf(*known)); !d.empty()) {
        why = "the INS " + value + " is Patient/" + found[0] + "'s but " + d + ": identity to check";
        return "";
      }
      return "Patient/" + found[0];
    }
    // No INS: the strict traits, all of them.
    if (file.families.empty() || file.firstGiven.empty() || file.birthDate.empty()) {
      why = "no INS, and the strict traits are incomplete (family name, first name and birth date are all needed)";
      return "";
    }
    std::set<std::string> candidates;
    for (const auto& n : p.value("name", Json::array())) {
      std::string family = str(n, "family");
      if (family.empty()) continue;
      for (const auto& id : searchIds("Patient", {{"birthdate", file.birthDate}, {"family", family}}, 20)) candidates.insert(id);
    }
    std::vector<std::string> matching;
    for (const auto& id : candidates) {
      auto known = readPatient(id);
      if (known && disagreement(file, traitsOf(*known)).empty()) matching.push_back(id);
    }
    if (matching.size() == 1) return "Patient/" + matching[0];
    why = matching.empty() ? "no network patient has these traits (name, first name, birth date" + std::string(file.gender.empty() ? "" : ", sex") +
                                 (file.birthPlace.empty() ? "" : ", birthplace " + file.birthPlace) + ")"
                           : std::to_string(matching.size()) + " network patients share these traits";
    return "";
  }


  // ---- export ------------------------------------------------------------------------------

  static std::string refOf(const Json& j, const char* key) {
    auto it = j.find(key);
    return it != j.end() && it->is_object() ? str(*it, "reference") : std::string();
  }

  static bool hasCode(const Json& cc, const std::string& system, const std::string& code) {
    if (!cc.is_object()) return false;
    for (const auto& c : cc.value("coding", Json::array()))
      if (str(c, "system") == system && str(c, "code") == code) return true;
    return false;
  }

  template <typename Search>
  std::vector<store::ResourceVersion> searchWith(Search&& run, const std::string& type, const fhir::Params& query, int count) {
    fhir::SearchLimits limits;
    auto ps = fhir::parseSearch(type, query, limits, true);
    if (!ps.ok()) return {};
    ps->query.count = count;
    ps->query.total = store::SearchQuery::Total::kNone;
    auto page = run(ps->query);
    if (!page.ok()) return {};
    return std::move(page->items);
  }

  // Whether a DocumentReference is a report answering a referral (a hospital's or a specialist's:
  // linked to the ServiceRequest, current, with content). What a GP's software sent is never
  // linked so, and is not sent back.
  static bool isReferralReport(const Json& d) {
    if (str(d, "status") != "current") return false;
    bool linked = false;
    if (auto ctx = d.find("context"); ctx != d.end() && ctx->is_object())
      for (const auto& r : ctx->value("related", Json::array()))
        if (r.is_object() && str(r, "reference").rfind("ServiceRequest/", 0) == 0) linked = true;
    if (!linked) return false;
    for (const auto& c : d.value("content", Json::array()))
      if (c.is_object() && c.contains("attachment") && !str(c["attachment"], "data").empty()) return true;
    return false;
  }

  // In the writer's unit: a final consult note (CIED, CSB) or a report answering a referral queues
  // its export to the installation of the patient's GP correspondent.
  Result<void> route(store::WriteTxn& t, const store::ResourceVersion& v) {
    if (v.deleted || installations.empty() || (v.type != "Composition" && v.type != "DocumentReference")) return {};
    Json c = Json::parse(v.body, nullptr, false);
    if (c.is_discarded()) return {};
    if (v.type == "Composition") {
      if (!hasCode(c.value("type", Json::object()), "http://loinc.org", "11488-4")) return {};
      std::string status = str(c, "status");
      if (status != "final" && status != "amended") return {};
    } else if (!isReferralReport(c)) {
      return {};
    }
    std::string patient = refOf(c, "subject");
    if (patient.rfind("Patient/", 0) != 0) return {};
    auto inTxn = [&t](const store::SearchQuery& q) { return t.search(q); };
    std::set<std::string> managers;
    for (const auto& e : searchWith(inTxn, "EpisodeOfCare", {{"patient", patient}}, 20)) {
      Json ep = Json::parse(e.body, nullptr, false);
      if (!ep.is_discarded() && str(ep, "status") != "cancelled" && str(ep, "status") != "entered-in-error")
        managers.insert(refOf(ep, "careManager"));
    }
    for (std::size_t i = 0; i < installations.size(); ++i) {
      auto& mine = roles[i];
      if (mine.empty()) {
        // The GP as the network's member (PractitionerRole) or as the professional (Practitioner).
        for (const auto& r : searchWith(inTxn, "PractitionerRole", {{"identifier", "https://douleur77.fr/fhir/sid/member|rpps:" + installations[i].rpps}}, 10))
          mine.insert("PractitionerRole/" + r.id);
        for (const auto& r : searchWith(inTxn, "Practitioner", {{"identifier", "https://rpps.esante.gouv.fr|" + installations[i].rpps}}, 10))
          mine.insert("Practitioner/" + r.id);
      }
      bool theirs = false;
      for (const auto& m : managers)
        if (mine.count(m)) theirs = true;
      if (!theirs) continue;
      store::Delivery d;
      d.destination = "gp:" + installations[i].id;
      d.orderKey = patient;
      d.kind = installations[i].exportFormat == "cda" ? "CDA" : "HPRIM-NET";
      d.focus = v.type + "/" + v.id + "/_history/" + std::to_string(v.version);
      auto r = t.enqueue(d);
      if (!r.ok()) return r;
    }
    return {};
  }

  std::int64_t backoff(const GpInstallation& g, int attempts) {
    static thread_local std::mt19937 rng(std::random_device{}());
    double base = g.initialDelayMs;
    for (int i = 1; i < attempts && base < g.maxDelayMs; ++i) base *= 2;
    base = std::min<double>(base, g.maxDelayMs);
    std::uniform_real_distribution<double> jitter(0.5, 1.0);
    return static_cast<std::int64_t>(base * jitter(rng));
  }



  // A report answering a referral, as the installation takes it: for CDA, the CDA the hospital
  // sent, as it sent it (or its PDF when it sent a PDF); for HPRIM Net, the report's text (a CDA's
  // body text, or a plain text) with the PDF, when there is one (attached, or a CDA's level 1
  // body), written beside it and named in the text. `files` in the order to write them.
  bool renderReport(const GpInstallation& g, const Json& report, const Json& patient, const std::string& base,
                    std::vector<std::pair<std::string, std::string>>& files, std::string& error) {
    std::string cdaXml, pdf, text;
    for (const auto& c : report.value("content", Json::array())) {
      if (!c.is_object() || !c.contains("attachment") || !c["attachment"].is_object()) continue;
      std::string type = str(c["attachment"], "contentType"), bytes;
      if (!base64::decode(str(c["attachment"], "data"), bytes)) continue;
      if ((type.rfind("text/xml", 0) == 0 || type.rfind("application/xml", 0) == 0) && cdaXml.empty()) cdaXml = std::move(bytes);
      else if (type.rfind("application/pdf", 0) == 0 && pdf.empty()) pdf = std::move(bytes);
      else if (type.rfind("text/plain", 0) == 0 && text.empty()) text = std::move(bytes);
    }
    if (g.exportFormat == "cda") {
      if (!cdaXml.empty()) files.emplace_back(base + ".xml", cdaXml);
      else if (!pdf.empty()) files.emplace_back(base + ".pdf", pdf);
      else error = "the report carries neither a CDA nor a PDF to write for CDA software";
      return error.empty();
    }
    std::string title = str(report, "description");
    if (!cdaXml.empty()) {
      cda::Document doc;
      std::vector<cda::Issue> issues;
      if (!cda::read(cdaXml, nullptr, cda::Limits{}, doc, issues)) {
        error = "the report's CDA cannot be read: " + (issues.empty() ? std::string() : issues[0].where + " " + issues[0].message);
        return false;
      }
      if (title.empty()) title = doc.title;
      if (!doc.bodyText.empty()) text = doc.bodyText;
      else if (doc.bodyMediaType == "application/pdf" && pdf.empty() && !base64::decode(doc.bodyBase64, pdf)) pdf.clear();
    }
    if (title.empty())
      if (auto t = report.find("type"); t != report.end() && t->is_object()) {
        title = str(*t, "text");
        for (const auto& c : t->value("coding", Json::array()))
          if (title.empty()) title = str(c, "display");
      }
    if (!pdf.empty()) {
      files.emplace_back(base + ".pdf", pdf);
      text += std::string(text.empty() ? "" : "\n\n") + "Compte rendu joint au format PDF : " + base + ".pdf";
    }
    if (text.empty()) {
      error = "the report carries no text and no PDF to write for HPRIM software";
      return false;
    }
    Json carried = report;
    carried["description"] = title.empty() ? "Compte rendu" : title;
    carried["content"] = Json::array({{{"attachment", {{"contentType", "text/plain; charset=utf-8"}, {"data", base64::encode(text)}}}}});
    Json bundle = {{"resourceType", "Bundle"}, {"type", "collection"}, {"entry", Json::array({{{"resource", patient}}, {{"resource", carried}}})}};
    hprim::NetDocument doc;
    if (!hprim::netFromFhir(nlohmann::json(bundle), hprim::NetExport{g.sender, g.recipient}, doc, error)) {
      error = "cannot be written as HPRIM Net: " + error;
      return false;
    }
    hprim::Encoding enc = hprim::Encoding::kLatin1;
    hprim::parseEncoding(g.encoding, enc);
    files.emplace_back(base + ".hpr", hprim::writeNet({doc}, enc));
    return true;
  }

  // One delivery: checked, rendered, written. Its new state and, when it has one, its audit record
  // are committed together. False when the store is unavailable (the exporter pauses).
  bool deliver(std::size_t gi, store::Delivery d) {
    const GpInstallation& g = installations[gi];
    auto h = d.focus.find("/_history/");
    std::string type = d.focus.substr(0, d.focus.find('/'));
    std::string id = d.focus.substr(type.size() + 1, h - type.size() - 1);
    auto v = store.vread(type, id, std::atoll(d.focus.c_str() + h + 10));
    if (!v.ok()) return false;
    std::string patient, outcome = "error", detail;
    auto finish = [&](const std::string& status, const std::string& why) {
      d.status = status;
      d.lastError = why;
      d.doneMs = nowMs();
    };
    if (!v->has_value()) {
      finish("dead", "the report it carries is gone");
    } else {
      Json report = Json::parse((*v)->body, nullptr, false);
      patient = refOf(report, "subject");
      bool allowed = true;
      if (access) {
        // Checked again now, as the GP: nothing of a patient who withdrew leaves, queued or not.
        auto guard = access->guardFor(principals[gi], access::patientsOf((*v)->type, (*v)->id, (*v)->body));
        if (!guard.ok()) return false;
        auto ok = (*guard)->readable({**v});
        if (!ok.ok()) return false;
        // The GP may still read what they wrote after a withdrawal; nothing leaves without an active consent.
        auto consent = (*guard)->consentOf(patient.rfind("Patient/", 0) == 0 ? patient.substr(8) : patient);
        if (!consent.ok()) return false;
        allowed = ok->front() && *consent == access::Consent::kActive;
      }
      std::string base = "d77-" + type + "-" + id + "-v" + std::to_string((*v)->version);
      std::vector<std::pair<std::string, std::string>> files;  // written in this order, the last one the document
      if (!allowed) {
        finish("cancelled", "not written: Dr " + g.rpps + " may no longer read this patient's reports (consent withdrawn, expired or absent)");
        outcome = "denied";
      } else if (type == "DocumentReference") {
        std::string error;
        auto p = readRef(patient);
        if (!p) return false;
        if (!renderReport(g, report, *p, base, files, error)) finish("dead", error);
      } else {
        if (d.payload.empty()) {
          Json bundle = {{"resourceType", "Bundle"}, {"type", "collection"}, {"entry", Json::array()}};
          if (auto p = readRef(patient)) bundle["entry"].push_back({{"resource", *p}});
          bundle["entry"].push_back({{"resource", report}});
          std::string encounter = refOf(report, "encounter");
          if (!encounter.empty()) {
            auto reader = [this](const store::SearchQuery& q) { return store.search(q); };
            for (const auto& o : searchWith(reader, "Observation", {{"encounter", encounter}}, 100)) {
              Json ob = Json::parse(o.body, nullptr, false);
              if (!ob.is_discarded()) bundle["entry"].push_back({{"resource", ob}});
            }
          }
          std::string error;
          if (g.exportFormat == "cda") {
            // A CI-SIS CDA, checked against the schema when one is configured (and read back).
            cda::Document doc;
            if (!cda::fromFhir(nlohmann::json(bundle), g.sender, doc, error)) {
              finish("dead", "cannot be written as CDA: " + error);
            } else {
              std::string xml = cda::write(doc);
              cda::Document back;
              std::vector<cda::Issue> issues;
              if (cdaSchema && !cda::read(xml, cdaSchema.get(), cda::Limits{}, back, issues))
                finish("dead", "the CDA written breaks the schema: " + (issues.empty() ? std::string() : issues[0].where + " " + issues[0].message));
              else
                d.payload = std::move(xml);
            }
          } else {
            hprim::NetDocument doc;
            hprim::NetExport opts{g.sender, g.recipient};
            if (!hprim::netFromFhir(nlohmann::json(bundle), opts, doc, error)) {
              finish("dead", "cannot be written as HPRIM Net: " + error);
            } else {
              hprim::Encoding enc = hprim::Encoding::kLatin1;
              hprim::parseEncoding(g.encoding, enc);
              d.payload = hprim::writeNet({doc}, enc);
            }
          }
        }
        if (d.status == "queued") files.emplace_back(base + (g.exportFormat == "cda" ? ".xml" : ".hpr"), d.payload);
      }
      if (allowed && d.status == "queued") {
        ++d.attempts;
        std::string error, names;
        bool written = true;
        for (const auto& [name, bytes] : files) {
          written = filedrop::writeAtomically(filedrop::Folders::under(g.folder).outbox, name, bytes, error);
          if (!written) break;
          names += (names.empty() ? "" : ", ") + name;
        }
        if (written) {
          finish("sent", "");
          outcome = "granted";
          detail = "written as " + names;
        } else if (d.attempts >= g.maxAttempts) {
          finish("dead", error);
          log::error("gp.export_dead", {{"installation", g.id}, {"delivery", std::to_string(d.id)}, {"error", error}});
        } else {
          d.lastError = error;
          d.nextTryMs = nowMs() + backoff(g, d.attempts);
          log::warn("gp.export_retry", {{"installation", g.id}, {"delivery", std::to_string(d.id)}, {"error", error}});
        }
      }
    }
    if (d.status == "dead") log::error("gp.export_dead", {{"installation", g.id}, {"delivery", std::to_string(d.id)}, {"error", d.lastError}});
    bool audited = d.status == "sent" || d.status == "cancelled";
    auto w = store.write([&](store::WriteTxn& t) -> Result<void> {
      auto u = t.updateDelivery(d);
      if (!u.ok() || !audited || !gate) return u;
      audit::Record r = record(g, "export", outcome, d.status, patient, d.kind + " delivery " + std::to_string(d.id) + ": " +
                                                                           (detail.empty() ? d.lastError : detail));
      r.method = "FILE";
      r.resourceType = type;
      r.resources.push_back(type + "/" + id);
      return t.attachAudit(audit::encodeRecord(r));
    });
    if (!w.ok()) {
      log::error("gp.export_save_failed", {{"installation", g.id}, {"delivery", std::to_string(d.id)}, {"error", w.error().message}});
      return false;
    }
    return true;
  }

  void exportLoop(std::size_t gi) {
    const std::string destination = "gp:" + installations[gi].id;
    std::uint64_t seen = 0;
    while (true) {
      {
        std::lock_guard<std::mutex> lock(mutex);
        if (stopping) return;
        seen = wakes;
      }
      bool paused = false;
      std::int64_t claimedAt = nowMs();
      auto due = store.claimDeliveries(destination, claimedAt, 32, store::kDeliveryLeaseMs);
      if (!due.ok()) paused = true;
      else
        for (auto& d : due.value()) {
          if (nowMs() - claimedAt > store::kDeliveryLeaseMs / 2) break;  // claim again (renews the rest)
          if (!deliver(gi, d)) {
            paused = true;
            break;
          }
        }
      std::int64_t waitMs = paused ? 1000 : 60000;
      if (!paused && due.ok() && !due->empty()) waitMs = 0;
      if (!paused) {
        auto next = store.nextDeliveryTime(destination);
        if (next.ok() && next->has_value()) waitMs = std::min<std::int64_t>(waitMs, std::max<std::int64_t>(0, **next - nowMs()));
      }
      std::unique_lock<std::mutex> lock(mutex);
      cv.wait_for(lock, std::chrono::milliseconds(waitMs), [&] { return stopping || wakes != seen; });
      if (stopping) return;
    }
  }

  // ---- the transaction -----------------------------------------------------------------------

  // The Bundle as a transaction without its Patient entries, the references to them replaced by
  // the network patients found (`patients`: the Patient entries' fullUrl or local reference ->
  // "Patient/<id>"). False with `error` when an entry is not usable.
  static bool asTransaction(Json bundle, const std::map<std::string, std::string>& patients, Json& out, std::string& error) {
    std::string type = str(bundle, "type");
    Json entries = Json::array();
    for (auto& e : bundle.value("entry", Json::array())) {
      if (!e.is_object() || !e.contains("resource") || !e["resource"].is_object()) {
        error = "an entry without a resource";
        return false;
      }
      std::string rt = str(e["resource"], "resourceType");
      if (rt == "Patient") continue;
      if (type == "document" || type == "collection" || !e.contains("request")) e["request"] = {{"method", "POST"}, {"url", rt}};
      entries.push_back(std::move(e));
    }
    if (entries.empty()) {
      error = "nothing to import besides the patient";
      return false;
    }
    std::string text = Json{{"resourceType", "Bundle"}, {"type", type == "batch" ? "batch" : "transaction"}, {"entry", entries}}.dump();
    for (const auto& [from, to] : patients) {
      std::string a = "\"" + from + "\"", b = "\"" + to + "\"";
      for (std::size_t at = 0; (at = text.find(a, at)) != std::string::npos; at += b.size()) text.replace(at, a.size(), b);
    }
    out = Json::parse(text);
    return true;
  }

  // ---- audit and the inbox -----------------------------------------------------------------

  audit::Record record(const GpInstallation& g, const std::string& action, const std::string& outcome, const std::string& reason,
                       const std::string& patient, const std::string& detail) {
    audit::Record r;
    r.kind = "connector";
    r.action = action;
    r.outcome = outcome;
    r.reason = reason;
    r.subject = r.account = g.account;
    r.role = "gp";
    r.practitioner = "rpps:" + g.rpps;
    r.tokenId = "gp-software:" + g.id;
    r.purpose = "TREAT";
    r.method = "FILE";
    r.path = "file:" + g.id;
    if (!patient.empty()) {
      r.patients.push_back(patient.substr(patient.find('/') + 1));
      r.resources.push_back(patient);
    }
    r.detail = detail;
    return r;
  }

  // Keeps `row` (refused or held) with its audit record, in one commit.
  bool keep(store::InboxMessage& row, const audit::Record& rec) {
    auto w = store.write([&](store::WriteTxn& t) -> Result<void> {
      auto p = t.putInbox(row);
      if (!p.ok()) return p;
      if (gate) return t.attachAudit(audit::encodeRecord(rec));
      return {};
    });
    if (!w.ok() && w.error().code != ErrorCode::kConflict) {
      log::error("gp.inbox_failed", {{"installation", row.partner}, {"file", row.controlId}, {"error", w.error().message}});
      return false;
    }
    return true;
  }

  GpImportResult quarantine(const GpInstallation& g, store::InboxMessage& row, const std::string& why, const std::string& patient = "") {
    row.status = "rejected";
    row.ackCode = "quarantine";
    row.detail = why;
    row.patient = patient;
    GpImportResult r;
    if (!keep(row, record(g, "import", "error", "quarantined", patient, row.type + " " + row.controlId + ": " + why))) {
      r.decision = filedrop::Decision::retryLater("the message store is unavailable");
      r.status = "retry";
      return r;
    }
    r.decision = filedrop::Decision::quarantine(why);
    r.status = "rejected";
    r.inboxId = row.id;
    log::warn("gp.quarantined", {{"installation", g.id}, {"type", row.type}, {"reason", why}});
    return r;
  }

  GpImportResult hold(const GpInstallation& g, store::InboxMessage& row, const std::string& why) {
    row.status = "review";
    row.ackCode = "review";
    row.detail = why;
    GpImportResult r;
    if (!keep(row, record(g, "import", "granted", "held-for-review", "", row.type + " " + row.controlId + ": " + why))) {
      r.decision = filedrop::Decision::retryLater("the message store is unavailable");
      r.status = "retry";
      return r;
    }
    r.decision = filedrop::Decision::stored("held for review: " + why);
    r.status = "review";
    r.inboxId = row.id;
    log::info("gp.review", {{"installation", g.id}, {"type", row.type}, {"reason", why}});
    return r;
  }

  // Runs the transaction as the installation's GP, the inbox row in its commit.
  fhir::FhirResponse applyAs(std::size_t gi, const Json& bundle, store::InboxMessage& row, const std::string& detail,
                             const std::set<std::string>& patients) {
    fhir::FhirRequest req = transactionKeeping(bundle.dump(), row);
    if (!gate) return fhir.handle(req);
    http::Caller c;
    c.connector = &principals[gi];
    c.channel = "file:" + installations[gi].id;
    c.detail = detail;
    c.patients = &patients;  // the access facts of these patients only (not all the GP's)
    return gate->handle(c, req, "fhir", [this](fhir::FhirRequest& r) { return fhir.handle(r); });
  }

  // What a file carries: a transaction Bundle (with its Patient entries) and a type, or an error.
  struct Read {
    Json bundle;
    std::string type, error;
  };

  Read readFile(const std::string& bytes, const GpInstallation& g) {
    Read r;
    auto first = bytes.find_first_not_of(" \t\r\n");
    if (bytes.compare(0, 3, "\xEF\xBB\xBF") == 0) first = bytes.find_first_not_of(" \t\r\n", 3);
    if (first == std::string::npos) {
      r.type = "EMPTY";
      r.error = "the file is empty";
      return r;
    }
    if (bytes[first] == '{' || bytes[first] == '[') {
      r.type = "FHIR";
      fhir::JsonError err;
      Json j;
      if (!fhir::parseJson(std::string_view(bytes).substr(first), fhir::JsonLimits{}, j, err)) {
        r.error = "not valid JSON at " + err.path + ": " + err.message;
        return r;
      }
      if (j.is_object() && j.contains("documentType")) {
        r.type = "NETWORK";
        r.error = "a network document: it goes to /network/v1/" + str(j, "documentType") + " (files take FHIR Bundles and HPRIM)";
        return r;
      }
      std::string bt = str(j, "type");
      if (str(j, "resourceType") != "Bundle" || (bt != "transaction" && bt != "batch" && bt != "document" && bt != "collection")) {
        r.error = "a FHIR Bundle of type transaction, batch, document or collection is expected";
        return r;
      }
      r.type = "FHIR-" + bt;
      r.bundle = std::move(j);
      return r;
    }
    if (bytes[first] == '<') {
      r.type = "CDA";
      if (!cdaSchema) {
        r.error = "a CDA document: CDA files are validated against the CDA schema before import, and none is configured (cda.schema)";
        return r;
      }
      cda::Document doc;
      std::vector<cda::Issue> issues;
      cda::Limits limits;
      limits.maxBytes = g.maxBytes;
      if (!cda::read(bytes, cdaSchema.get(), limits, doc, issues)) {
        for (const auto& i : issues) r.error += (r.error.empty() ? "" : "; ") + (i.where.empty() ? "" : i.where + ": ") + i.message;
        return r;
      }
      nlohmann::json b;
      cda::toBundle(doc, bytes, b);
      r.bundle = Json(b);  // between the two JSON flavours without text
      return r;
    }
    std::vector<hprim::Issue> issues;
    nlohmann::json b;
    auto flavour = hprim::detect(bytes);
    bool ok = false;
    if (flavour == hprim::Flavour::kSante) {
      r.type = "HPRIM-SANTE";
      hprim::SanteMessage m;
      ok = hprim::readSante(bytes, m, issues);
      if (ok) hprim::santeToBundle(m, b, issues);
    } else if (flavour == hprim::Flavour::kNet) {
      r.type = "HPRIM-NET";
      hprim::NetFile f;
      ok = hprim::readNet(bytes, f, issues);
      if (ok)
        for (const auto& d : f.documents) hprim::netToBundle(d, b, issues);
    } else {
      r.type = "UNKNOWN";
      r.error = "neither HPRIM (Net: ****FIN****; Santé: a first line H|...) nor a FHIR Bundle (JSON)";
      return r;
    }
    if (!ok) {
      for (const auto& i : issues)
        if (i.error) r.error += (r.error.empty() ? "" : "; ") + i.where + ": " + i.message;
      return r;
    }
    r.bundle = Json(b);  // between the two JSON flavours without text
    return r;
  }

  GpImportResult importFile(std::size_t gi, const filedrop::DroppedFile& file, const std::string& forcedPatient = "",
                            store::InboxMessage* held = nullptr) {
    const GpInstallation& g = installations[gi];
    store::InboxMessage row;
    if (held) {
      row = *held;
    } else {
      row.channel = "file";
      row.partner = g.id;
      row.controlId = "sha256:" + file.sha256;
      row.message = file.bytes;
      row.receivedMs = nowMs();
      row.ack = "";
      row.type = "?";
      // A file taken in before (the same content) is not imported twice.
      auto seen = store.findInbox(g.id, row.controlId);
      if (!seen.ok()) return {filedrop::Decision::retryLater(seen.error().message), "retry", "", 0};
      if (seen->has_value() && ((*seen)->status == "processed" || (*seen)->status == "review"))
        return {filedrop::Decision::stored("already taken in (inbox " + std::to_string((*seen)->id) + ")"), "duplicate", (*seen)->patient,
                (*seen)->id};
    }
    Read read;
    try {
      read = readFile(held ? held->message : file.bytes, g);
    } catch (const std::exception& e) {
      // A reader or mapping that cannot cope is the file's fault, never a reason to offer it again.
      read.error = std::string("the file cannot be mapped: ") + e.what();
    }
    row.type = read.type;
    if (!read.error.empty()) return quarantine(g, row, read.error);
    // The patients: every Patient entry identified (or the one a reviewer chose).
    std::map<std::string, std::string> patients;
    std::string patient;
    std::vector<const Json*> patientEntries;
    if (read.bundle.contains("entry") && read.bundle["entry"].is_array())
      for (const auto& e : read.bundle["entry"])
        if (e.is_object() && e.contains("resource") && str(e["resource"], "resourceType") == "Patient") patientEntries.push_back(&e);
    if (patientEntries.empty()) return quarantine(g, row, "the file names no patient (no Patient in the Bundle)");
    if (!forcedPatient.empty() && patientEntries.size() != 1)
      return {filedrop::Decision::quarantine("several patients"), "conflict", "", row.id};
    for (const Json* e : patientEntries) {
      std::string why, found = forcedPatient.empty() ? identify((*e)["resource"], why) : forcedPatient;
      if (found.empty()) return hold(g, row, why);
      if (!patient.empty() && patient != found) patient += ",";
      if (patient.find(found) == std::string::npos) patient += found;
      if (auto full = str(*e, "fullUrl"); !full.empty()) patients[full] = found;
      if (auto id = str((*e)["resource"], "id"); !id.empty()) patients["Patient/" + id] = found;
    }
    Json tx;
    std::string error;
    if (!asTransaction(read.bundle, patients, tx, error)) return quarantine(g, row, error, patient.find(',') == std::string::npos ? patient : "");
    row.status = "processed";
    row.ackCode = "done";
    row.patient = patient.find(',') == std::string::npos ? patient : "";
    row.detail = held ? row.detail : "";
    std::set<std::string> ids;
    for (const auto& [from, to] : patients) ids.insert(to.substr(8));
    auto r = applyAs(gi, tx, row, row.type + " " + (file.name.empty() ? row.controlId : file.name), ids);
    GpImportResult out;
    out.patient = row.patient;
    if (r.status < 300) {
      out.decision = filedrop::Decision::stored("imported into " + (patient.empty() ? std::string("the dossier") : patient));
      out.status = "processed";
      out.inboxId = row.id;
      log::info("gp.imported", {{"installation", g.id}, {"type", row.type}, {"patient", patient}});
      return out;
    }
    if (r.status == 409 && !held) {
      auto seen = store.findInbox(g.id, row.controlId);
      if (seen.ok() && seen->has_value() && (*seen)->status == "processed")
        return {filedrop::Decision::stored("already taken in"), "duplicate", (*seen)->patient, (*seen)->id};
    }
    if (r.status >= 500) return {filedrop::Decision::retryLater("not stored (" + std::to_string(r.status) + "): " + outcomeText(r.body)), "retry", "", 0};
    std::string why = (r.status == 403 ? "refused by the access policy for Dr " + g.rpps + " (" : "not imported (") + std::to_string(r.status) +
                      "): " + outcomeText(r.body);
    if (held) return {filedrop::Decision::quarantine(why), "rejected", row.patient, row.id};
    return quarantine(g, row, why, row.patient);
  }
};

GpConnector::GpConnector() = default;
GpConnector::~GpConnector() { stop(); }

Result<std::unique_ptr<GpConnector>> GpConnector::start(store::ResourceStore& store, fhir::FhirService& fhir, http::Gate* gate,
                                                       access::AccessControl* access, audit::AuditLog* audit,
                                                       std::vector<GpInstallation> installations, bool watch, bool send,
                                                       std::shared_ptr<cda::Schema> cdaSchema) {
  std::unique_ptr<GpConnector> c(new GpConnector());
  c->impl_ = std::make_unique<Impl>(store, fhir, gate);
  Impl& m = *c->impl_;
  m.access = access;
  m.audit = audit;
  m.cdaSchema = std::move(cdaSchema);
  m.installations = std::move(installations);
  for (const auto& g : m.installations) {
    identity::Principal who;
    who.subject = who.account = g.account;
    who.role = "gp";
    who.practitioner = "rpps:" + g.rpps;
    who.purpose = "TREAT";
    who.scopes = {"user/*.cruds"};
    who.tokenId = "gp-software:" + g.id;
    m.principals.push_back(who);
  }
  for (std::size_t i = 0; i < m.installations.size(); ++i) {
    const GpInstallation& g = m.installations[i];
    filedrop::WatchOptions wo;
    wo.stableFor = std::chrono::milliseconds(g.stableForMs);
    wo.pollEvery = std::chrono::milliseconds(g.pollMs);
    wo.maxBytes = g.maxBytes;
    wo.workers = static_cast<std::size_t>(g.workers);
    Impl* impl = &m;
    std::string id = g.id;
    auto w = std::make_unique<filedrop::Watcher>(
        filedrop::Folders::under(g.folder), wo,
        [impl, i](const filedrop::DroppedFile& f) { return impl->importFile(i, f).decision; },
        [id](const std::string& file, const std::string& event, const std::string& detail) {
          bool trouble = event != "done" && event != "skipped" && event != "quarantined";
          (trouble ? log::warn : log::info)("gp.file", {{"installation", id}, {"file", file}, {"event", event}, {"detail", detail}});
        });
    std::string error;
    if (!filedrop::Folders::under(g.folder).create(error)) return makeError(ErrorCode::kInvalid, "gp installation " + g.id + ": " + error);
    if (watch && !w->start(error)) return makeError(ErrorCode::kInvalid, "gp installation " + g.id + ": " + error);
    m.watchers.push_back(std::move(w));
  }
  if (send)
    for (std::size_t i = 0; i < m.installations.size(); ++i) m.exporters.emplace_back([impl = &m, i] { impl->exportLoop(i); });
  return c;
}

Result<void> GpConnector::route(store::WriteTxn& txn, const store::ResourceVersion& v) { return impl_->route(txn, v); }

void GpConnector::wake() {
  {
    std::lock_guard<std::mutex> lock(impl_->mutex);
    ++impl_->wakes;
  }
  impl_->cv.notify_all();
}

GpImportResult GpConnector::importFile(const std::string& id, const filedrop::DroppedFile& file) {
  std::size_t gi = 0;
  if (!impl_->installation(id, &gi)) return {filedrop::Decision::quarantine("no installation " + id), "rejected", "", 0};
  return impl_->importFile(gi, file);
}

namespace {

fhir::FhirResponse jsonAnswer(int status, const Json& body) {
  fhir::FhirResponse r;
  r.status = status;
  r.body = body.dump();
  r.headers.push_back({"Content-Type", "application/json"});
  return r;
}

// The file of inbox `id` held for review: kNotFound when there is none, kConflict once decided.
Result<store::InboxMessage> heldForReview(store::ResourceStore& store, std::int64_t id) {
  auto row = store.inboxMessage(id);
  if (!row.ok()) return row.error();
  if (!row->has_value() || (*row)->channel != "file") return makeError(ErrorCode::kNotFound, "no file received as inbox " + std::to_string(id));
  if ((*row)->status != "review")
    return makeError(ErrorCode::kConflict, "inbox " + std::to_string(id) + " is " + (*row)->status + ", not held for review");
  return std::move(**row);
}

}  // namespace

fhir::FhirResponse GpConnector::attach(std::int64_t inboxId, const std::string& patient, const identity::Principal* by) {
  auto row = heldForReview(impl_->store, inboxId);
  if (!row.ok()) return fhir::errorResponse(row.error());
  store::InboxMessage held = std::move(row.value());
  std::size_t gi = 0;
  if (!impl_->installation(held.partner, &gi))
    return fhir::errorResponse(makeError(ErrorCode::kNotFound, "the installation " + held.partner + " is no longer configured"));
  if (patient.rfind("Patient/", 0) != 0 || !impl_->readPatient(patient.substr(8)))
    return fhir::errorResponse(makeError(ErrorCode::kInvalid, "'" + patient + "' is not a network patient (Patient/<id>)"));
  std::string who = by ? by->subject : "the gateway";
  held.detail = "attached to " + patient + " by " + who + " (was: " + held.detail + ")";
  filedrop::DroppedFile f;
  f.name = "inbox " + std::to_string(inboxId);
  auto r = impl_->importFile(gi, f, patient, &held);
  if (r.status == "conflict")
    return fhir::errorResponse(makeError(ErrorCode::kConflict, "the file names several patients: it cannot be attached to one"));
  if (r.status != "processed")
    return fhir::errorResponse(makeError(r.status == "retry" ? ErrorCode::kUnavailable : ErrorCode::kInvalid, r.decision.reason));
  return jsonAnswer(200, {{"inbox", inboxId}, {"status", "processed"}, {"patient", patient}});
}

fhir::FhirResponse GpConnector::reject(std::int64_t inboxId, const std::string& reason, const identity::Principal* by) {
  auto row = heldForReview(impl_->store, inboxId);
  if (!row.ok()) return fhir::errorResponse(row.error());
  store::InboxMessage held = std::move(row.value());
  std::string who = by ? by->subject : "the gateway";
  held.status = "rejected";
  held.ackCode = "rejected";
  held.detail = "rejected by " + who + ": " + (reason.empty() ? std::string("no reason given") : reason) + " (was: " + held.detail + ")";
  const GpInstallation* g = impl_->installation(held.partner);
  auto w = impl_->store.write([&](store::WriteTxn& t) -> Result<void> {
    auto u = t.updateInbox(held);
    if (!u.ok() || !impl_->gate || !g) return u;
    return t.attachAudit(audit::encodeRecord(impl_->record(*g, "review", "granted", "rejected", "", held.detail)));
  });
  if (!w.ok()) return fhir::errorResponse(w.error());
  return jsonAnswer(200, {{"inbox", inboxId}, {"status", "rejected"}});
}

const std::vector<GpInstallation>& GpConnector::installations() const { return impl_->installations; }

void GpConnector::scanNow() {
  for (auto& w : impl_->watchers) w->scanOnce();
}

void GpConnector::stop() {
  if (!impl_) return;
  for (auto& w : impl_->watchers) w->stop();
  {
    std::lock_guard<std::mutex> lock(impl_->mutex);
    impl_->stopping = true;
  }
  impl_->cv.notify_all();
  for (auto& t : impl_->exporters)
    if (t.joinable()) t.join();
  impl_->exporters.clear();
}

}  // namespace passerelle::exchange
