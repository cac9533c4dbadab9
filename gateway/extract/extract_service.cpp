// Evaluation extracts (see extract_service.h).
#include "gateway/extract/extract_service.h"

#include "gateway/extract/indicators.h"
#include "gateway/extract/cohort_spill.h"

#include <fcntl.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <simdjson.h>
#include <thread>
#include <condition_variable>
#include <sstream>

#include "connectors/filedrop/file_drop.h"
#include "connectors/http/rest_client.h"
#include "connectors/secureupload/secure_package.h"
#include "connectors/sftp/sftp_upload.h"
#include "gateway/audit/audit_log.h"
#include "gateway/common/log.h"
#include "gateway/fhir/access_guard.h"
#include "gateway/fhir/fhir_service.h"
#include "gateway/http/dev_certificate.h"
#include "gateway/http/http_server.h"
#include "gateway/identity/identity.h"
#include "gateway/store/resource_store.h"
#include "mappings/common/base64.h"
#include "mappings/extract/baseline.h"
#include "mappings/extract/csv.h"
#include "mappings/extract/disclosure.h"
#include "mappings/extract/pseudonym.h"
#include "mappings/extract/report.h"
#include "mappings/fhir/fhir_time.h"
#include "mappings/fhir/french_identity.h"

namespace passerelle::extract {

namespace fs = std::filesystem;
using Json = nlohmann::json;

namespace {

constexpr const char* kSd = "https://douleur77.fr/fhir/StructureDefinition/";
// How long a gateway holds a period's extract it claimed: longer than any run (a national cohort's
// takes minutes); past it, a run that never finished (its gateway crashed) is taken by another.
constexpr std::int64_t kExtractClaimMs = 6 * 3600 * 1000;
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


using fhir::nowMs;

// The same readers over simdjson's DOM, for the types read in bulk.
namespace fast {
std::string_view str(simdjson::dom::element e, const char* key) {
  std::string_view v;
  return e[key].get(v) == simdjson::SUCCESS ? v : std::string_view();
}
std::string_view str(simdjson::simdjson_result<simdjson::dom::element> r, const char* key) {
  simdjson::dom::element e;
  return r.get(e) == simdjson::SUCCESS ? str(e, key) : std::string_view();
}
std::string_view ref(simdjson::dom::element e, const char* key) { return str(e[key], "reference"); }
std::string codeIn(simdjson::dom::element cc, const std::string& system) {
  simdjson::dom::array codings;
  if (cc["coding"].get(codings) != simdjson::SUCCESS) return "";
  for (simdjson::dom::element c : codings)
    if (str(c, "system") == system) return std::string(str(c, "code"));
  return "";
}
std::optional<simdjson::dom::element> extension(simdjson::dom::element r, const std::string& url) {
  simdjson::dom::array list;
  if (r["extension"].get(list) != simdjson::SUCCESS) return std::nullopt;
  for (simdjson::dom::element e : list)
    if (str(e, "url") == url) return e;
  return std::nullopt;
}
}  // namespace fast

const std::string kVas = "http://loinc.org|72514-3";

// The indicator named in the patient rows for a measure's code: the code itself in lower case
// ("sick-leave-days", "dallas-daily-activities"), "vas" for the pain intensity, the group's
// linkId for a questionnaire's score.
std::string rowIndicator(const std::string& code) {
  if (code == kVas) return "vas";
  if (code == "http://loinc.org|77565-0") return "bpi-interference";
  std::string name = code.substr(code.find_last_of("|#") + 1);
  std::transform(name.begin(), name.end(), name.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return name;
}

// The report's French names of the stratifiers and of their values.
const std::map<std::string, std::string>& reportLabels() {
  static const std::map<std::string, std::string> labels = {
      {"pathology", "Pathologie"}, {"pathology=low-back-pain", "lombalgie"}, {"pathology=migraine", "migraine, céphalée"},
      {"pathology=cancer", "cancer"}, {"pathology=unknown", "non renseignée"}, {"semester", "Semestre depuis l'inclusion"},
      {"phase", "Période"}, {"phase=before", "6 mois avant l'inclusion"}, {"period", "Semestre"}, {"sex", "Sexe"},
      {"sex=female", "femmes"}, {"sex=male", "hommes"}, {"sex=other", "autre"}, {"sex=unknown", "non renseigné"},
      {"reason", "Motif"}, {"category", "Catégorie"}, {"fee", "Forfait"}, {"milestone", "Échéance"}, {"risk", "Niveau de risque"},
      {"risk=low", "faible"}, {"risk=moderate", "modéré"}, {"risk=high", "élevé"}, {"pathway", "Parcours"}};
  return labels;
}

// The source named in the rows for a measure's meta.source.
std::string sourceOf(const std::string& metaSource) {
  if (metaSource == "https://douleur77.fr/fhir/source/caisse") return "caisse";
  if (metaSource.empty() || metaSource == "https://douleur77.fr/fhir/source/report") return "CIED/CSB report";
  return metaSource;
}

// Hands pages of resource texts to `each` on a thread of its own, in order, one page at a time: the
// next page is read from the store and through the gate while this one is parsed (two cores).
class PageWorker {
 public:
  explicit PageWorker(const std::function<void(std::string_view)>& each) : each_(each), thread_([this] { run(); }) {}
  ~PageWorker() { finish(); }
  PageWorker(const PageWorker&) = delete;
  PageWorker& operator=(const PageWorker&) = delete;

  // Waits for the previous page to be taken; `page` comes back empty (its memory reused).
  void put(std::vector<std::string>& page) {
    std::unique_lock<std::mutex> lock(mutex_);
    wake_.wait(lock, [&] { return !full_; });
    page_.swap(page);
    page.clear();
    full_ = true;
    wake_.notify_all();
  }
  // Returns once every page put has been handled.
  void finish() {
    if (!thread_.joinable()) return;
    {
      std::unique_lock<std::mutex> lock(mutex_);
      wake_.wait(lock, [&] { return !full_; });
      done_ = true;
      wake_.notify_all();
    }
    thread_.join();
  }

 private:
  void run() {
    std::vector<std::string> mine;
    while (true) {
      {
        std::unique_lock<std::mutex> lock(mutex_);
        wake_.wait(lock, [&] { return full_ || done_; });
        if (!full_) return;
        mine.swap(page_);
        full_ = false;
        wake_.notify_all();
      }
      for (const auto& body : mine) each_(body);
      mine.clear();
    }
  }
  const std::function<void(std::string_view)>& each_;
  std::mutex mutex_;
  std::condition_variable wake_;
  std::vector<std::string> page_;
  bool full_ = false, done_ = false;
  std::thread thread_;  // last: starts once the members above exist
};

// A file of the package, as written: where, its size, lines and SHA-256.
struct Written {
  std::string name;
  fs::path path;
  std::uint64_t bytes = 0, lines = 0;
  std::string sha256;
};

// A file written in pieces (mode 0600), its size, lines and SHA-256 taken on the way.
class FileOut {
 public:
  FileOut() = default;
  FileOut(const FileOut&) = delete;
  FileOut& operator=(const FileOut&) = delete;
  ~FileOut() {
    if (fd_ >= 0) ::close(fd_);
    if (ctx_) EVP_MD_CTX_free(ctx_);
  }
  bool open(const fs::path& path, std::string& error) {
    path_ = path;
    fd_ = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    ctx_ = EVP_MD_CTX_new();
    if (fd_ < 0 || !ctx_ || EVP_DigestInit_ex(ctx_, EVP_sha256(), nullptr) != 1) {
      error = path.string() + ": " + (fd_ < 0 ? std::strerror(errno) : "no SHA-256");
      return false;
    }
    return true;
  }
  bool write(std::string_view bytes) {
    if (fd_ < 0) return fail("not open");
    EVP_DigestUpdate(ctx_, bytes.data(), bytes.size());
    bytes_ += bytes.size();
    lines_ += static_cast<std::uint64_t>(std::count(bytes.begin(), bytes.end(), '\n'));
    while (!bytes.empty()) {
      ssize_t n = ::write(fd_, bytes.data(), bytes.size());
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return fail(std::strerror(errno));
      bytes.remove_prefix(static_cast<std::size_t>(n));
    }
    return true;
  }
  bool close() {
    if (fd_ < 0) return fail("not open");
    bool ok = ::close(fd_) == 0;
    fd_ = -1;
    unsigned char digest[EVP_MAX_MD_SIZE];
    unsigned int length = 0;
    EVP_DigestFinal_ex(ctx_, digest, &length);
    static const char* kHex = "0123456789abcdef";
    for (unsigned int i = 0; i < length; ++i) (sha256_ += kHex[digest[i] >> 4]) += kHex[digest[i] & 15];
    return ok || fail(std::strerror(errno));
  }
  Written result(const std::string& name) const { return {name, path_, bytes_, lines_, sha256_}; }
  const std::string& error() const { return error_; }

 private:
  bool fail(const std::string& why) {
    error_ = path_.string() + ": " + why;
    return false;
  }
  fs::path path_;
  int fd_ = -1;
  EVP_MD_CTX* ctx_ = nullptr;
  std::uint64_t bytes_ = 0, lines_ = 0;
  std::string sha256_, error_;
};

// The cohort as an extract holds it (cohort_spill.h): fixed-size records, texts interned.
std::uint64_t refHash(std::string_view reference) {
  std::uint64_t h = std::hash<std::string_view>{}(reference);
  return h ? h : 1;  // 0 is "no reference"
}

struct PatientRecord {
  std::int32_t inclusion = 0, birth = 0, episodeEnd = 0;  // packDate()
  std::uint32_t gp = Interned::kNone, pathology = Interned::kNone, sex = Interned::kNone, status = Interned::kNone;  // in Dossier::texts
  bool evaluable = false, consent = false;
  std::uint8_t insLength = 0;
  char ins[21] = {};
};

struct EncounterRecord {  // a CIED or CSB
  std::uint64_t ref = 0;  // refHash("Encounter/<id>")
  double minutes = -1;
  std::int32_t date = 0, semester = -1;
  std::uint32_t type = 0;  // 0 CIED, 1 CSB
  std::uint32_t unused = 0;
};

struct ValueRecord {
  std::uint64_t encounter = 0;  // refHash of the reference, 0 for none
  double value = 0;
  std::int32_t start = 0, end = 0;
  std::uint32_t code = Interned::kNone, unit = Interned::kNone, source = Interned::kNone, unused = 0;
};

struct Dossier {
  Interned ids;  // the enrolled patients' ids: a patient's number
  std::vector<PatientRecord> patients;
  Interned texts;  // codes, units, sources, references, statuses
  std::unique_ptr<Spill> encounters, values;
  Cohort rest;  // what is not per patient: events, members, fees, OPERA and its milestone encounters
  fs::path work;  // the working files, removed with the dossier

  ~Dossier() {
    encounters.reset();
    values.reset();
    std::error_code ec;
    if (!work.empty()) fs::remove_all(work, ec);
  }

  // The patient `n` as the computations take it.
  void patient(std::uint32_t n, Cohort::Patient& p) const {
    const PatientRecord& r = patients[n];
    p.id.assign(ids.text(n));
    p.ins.assign(r.ins, r.insLength);
    p.birthDate = unpackDate(r.birth);
    p.sex.assign(texts.text(r.sex));
    p.pathology.assign(texts.text(r.pathology));
    p.inclusion = unpackDate(r.inclusion);
    p.episodeStatus.assign(texts.text(r.status));
    p.episodeEnd = unpackDate(r.episodeEnd);
    p.gp.assign(texts.text(r.gp));
    p.evaluable = r.evaluable;
    p.consent = r.consent;
  }
};

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

Result<std::vector<Recipient>> loadRecipients(const std::string& file, const std::vector<std::string>& knownRoles) {
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
    for (const auto& k : j[i].value("schedule", Json::array())) {
      if (!k.is_string() || (k != "annual" && k != "interim")) return makeError(ErrorCode::kInvalid, where + ": schedule lists \"annual\" and/or \"interim\"");
      r.schedule.push_back(k.get<std::string>());
    }
    if (!error.empty()) return makeError(ErrorCode::kInvalid, error);
    if (!ids.insert(r.id).second) return makeError(ErrorCode::kInvalid, where + ": the id " + r.id + " is used twice");
    if (!knownRoles.empty() && std::find(knownRoles.begin(), knownRoles.end(), r.role) == knownRoles.end()) {
      std::string list;
      for (const auto& k : knownRoles) list += (list.empty() ? "" : ", ") + k;
      return makeError(ErrorCode::kInvalid, where + ": the role \"" + r.role + "\" is not a role of the access policy (" + list + ")");
    }
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
      r.transfer.user = str(*t, "user");
      r.transfer.privateKey = str(*t, "privateKey");
      r.transfer.hostKeySha256 = str(*t, "hostKeySha256");
      r.transfer.knownHosts = str(*t, "knownHosts");
      beside(r.transfer.privateKey);
      beside(r.transfer.knownHosts);
      if (r.transfer.url.rfind("sftp://", 0) == 0) {
        if (r.transfer.user.empty() || r.transfer.privateKey.empty())
          return makeError(ErrorCode::kInvalid, where + ": an SFTP transfer needs the \"user\" and the gateway's \"privateKey\"");
        if (r.transfer.hostKeySha256.empty() && r.transfer.knownHosts.empty())
          return makeError(ErrorCode::kInvalid, where + ": an SFTP transfer needs the server's host key (\"hostKeySha256\" or \"knownHosts\")");
        if (r.transfer.url.back() != '/') return makeError(ErrorCode::kInvalid, where + ": transfer.url is the folder the packages go to, ending with '/'");
      } else if (r.transfer.url.rfind("https://", 0) != 0) {
        return makeError(ErrorCode::kInvalid, where + ": transfer.url must be an https:// or sftp:// URL");
      } else if (r.transfer.clientCertificate.empty() || r.transfer.clientKey.empty()) {
        return makeError(ErrorCode::kInvalid, where + ": a transfer needs the gateway's client certificate and key (mutual TLS)");
      }
    }
    out.push_back(std::move(r));
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
  identity::Principal job, baselineJob;
  // the sender of transfers
  std::thread sender;
  std::mutex senderMutex;
  std::condition_variable senderWake;
  bool stopping = false;
  std::uint64_t wakes = 0;
  std::thread scheduler;
  // what a running extract is doing (GET /admin/v1/extracts/progress)
  mutable std::mutex progressMutex;
  Json progress = {{"running", false}};

  void setProgress(const std::string& phase, std::int64_t more) {
    std::lock_guard<std::mutex> lock(progressMutex);
    if (phase.empty()) {
      progress = {{"running", false}};
      return;
    }
    if (!progress.value("running", false)) progress = {{"running", true}, {"startedMs", nowMs()}, {"resources", 0}};
    progress["phase"] = phase;
    progress["resources"] = progress.value("resources", std::int64_t{0}) + more;
    progress["elapsedMs"] = nowMs() - progress.value("startedMs", std::int64_t{0});
  }

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
      // One attempt: over SFTP (resumed where an interrupted attempt stopped) or an HTTPS PUT.
      int status = 0;
      bool sent = false;
      std::string error, answer, where = to.transfer.url + (to.transfer.url.back() == '/' ? "" : "/") + d.focus + ".p7m";
      Json receipt = {{"extract", d.focus}, {"recipient", to.id}, {"url", where}, {"packageSha256", secureupload::sha256Hex(package)}};
      if (to.transfer.url.rfind("sftp://", 0) == 0) {
        sftp::Options o;
        o.url = to.transfer.url;
        o.user = to.transfer.user;
        o.privateKey = to.transfer.privateKey;
        o.hostKeySha256 = to.transfer.hostKeySha256;
        o.knownHosts = to.transfer.knownHosts;
        auto u = sftp::upload(o, d.focus + ".p7m", package);
        sent = u.ok;
        error = u.error;
        receipt["remotePath"] = u.remotePath;
        receipt["resumedFrom"] = u.resumedFrom;
        receipt["bytesSent"] = u.bytesSent;
        receipt["alreadyDelivered"] = u.alreadyDelivered;
      } else {
        http_client::Options o;
        o.baseUrl = to.transfer.url;
        o.clientCertificate = to.transfer.clientCertificate;
        o.clientKey = to.transfer.clientKey;
        o.caFile = to.transfer.caFile;
        o.timeoutMs = 30 * 60 * 1000;
        http_client::RestClient client(o);
        auto r = client.put("/" + d.focus + ".p7m", package, "application/pkcs7-mime");
        status = r.status;
        sent = r.status >= 200 && r.status < 300;
        error = r.status ? "HTTP " + std::to_string(r.status) + ": " + r.body.substr(0, 300) : r.error;
        receipt["status"] = r.status;
        answer = r.body.substr(0, 4096);
        receipt["answer"] = answer;
      }
      if (sent) {
        receipt["receivedMs"] = nowMs();
        if (!writePrivate(dir / "receipt.json", receipt.dump(2), error)) log::warn("extract.receipt", {{"extract", d.focus}, {"error", error}});
        d.status = "sent";
        d.doneMs = nowMs();
        d.lastError.clear();
        outcome = "granted";
        detail = "sent to " + where + (status ? " (HTTP " + std::to_string(status) + ")" : "") +
                 (receipt.value("resumedFrom", 0) > 0 ? " resumed from byte " + std::to_string(receipt.value("resumedFrom", 0)) : "");
      } else {
        d.lastError = error;
        bool refused = status >= 400 && status < 500 && status != 408 && status != 429;
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
        std::int64_t claimedAt = nowMs();
        auto due = store->claimDeliveries(destination, claimedAt, 4, store::kDeliveryLeaseMs);
        if (!due.ok()) {
          waitMs = 1000;
          continue;
        }
        for (auto& d : due.value()) {
          if (nowMs() - claimedAt > store::kDeliveryLeaseMs / 2) {  // claim again (renews the rest)
            waitMs = 0;
            break;
          }
          if (!deliver(to, d)) waitMs = 1000;
        }
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
  // The gateway's extract job as the caller of a read, `why` for the audit record.
  http::Caller jobCaller(const std::string& why) const {
    http::Caller caller;
    caller.connector = &job;
    caller.channel = "job:extract";
    caller.detail = why;
    return caller;
  }

  // Every current resource of `type`, read from the store page by page in id order (no search and
  // no Bundle: a page costs the same wherever it is), each page through the gate like a request: the
  // job's access decision on each resource, an audit record naming the patients read.
  Result<void> scanJson(const std::string& type, const std::string& why, const std::function<void(const Json&)>& each) {
    return scanRaw(type, why, [&](std::string_view body) {
      Json j = Json::parse(body, nullptr, false);
      if (j.is_object()) each(j);
    });
  }

  // The same, each resource as its stored JSON text (for the types read with simdjson).
  Result<void> scanRaw(const std::string& type, const std::string& why, const std::function<void(std::string_view)>& each) {
    constexpr int kPage = 2000;
    std::string after;
    std::int64_t started = nowMs(), read = 0;
    PageWorker worker(each);
    std::vector<std::string> bodies;
    while (true) {
      // Each page has its own time limit, not the one of the request that asked for the extract.
      store::SearchLimit limit(std::chrono::steady_clock::now() + std::chrono::seconds(120), [] { return false; });
      http::Caller caller = jobCaller(why);
      fhir::FhirRequest req;
      req.method = "GET";
      req.path = "/" + type;
      std::size_t n = 0;
      std::string last;
      auto serve = [&](fhir::FhirRequest& q) -> fhir::FhirResponse {
        if (q.guard)
          if (auto a = q.guard->allowType(type, fhir::Interaction::kSearch); !a.ok()) return fhir::errorResponse(a.error());
        auto page = store->scan(type, after, kPage);
        if (!page.ok()) return fhir::errorResponse(page.error());
        std::vector<bool> allowed(page->size(), true);
        if (q.guard) {
          auto r = q.guard->readable(page.value());
          if (!r.ok()) return fhir::errorResponse(r.error());
          allowed = std::move(r.value());
        }
        for (std::size_t i = 0; i < page->size(); ++i) {
          if (!allowed[i]) continue;
          store::ResourceVersion& v = (*page)[i];
          if (q.guard) q.guard->touched(v);
          bodies.push_back(std::move(v.body));
        }
        n = page->size();
        if (n) last = page->back().id;
        fhir::FhirResponse ok;
        ok.status = 200;
        return ok;
      };
      auto r = gate ? gate->handle(caller, req, "fhir", serve) : serve(req);
      if (r.status != 200) return makeError(ErrorCode::kUnavailable, type + " could not be read (" + std::to_string(r.status) + "): " + r.body.substr(0, 300));
      worker.put(bodies);
      setProgress("reading " + type, static_cast<std::int64_t>(n));
      read += static_cast<std::int64_t>(n);
      if (static_cast<int>(n) < kPage) {
        worker.finish();
        log::info("extract.read", {{"type", type}, {"resources", std::to_string(read)}, {"ms", std::to_string(nowMs() - started)}});
        return {};
      }
      after = last;
    }
  }

  // ---- the cohort ----
  using Patient = Cohort::Patient;
  using Value = Cohort::Value;

  bool wants(const std::string& computation) const {
    return std::any_of(indicators.begin(), indicators.end(), [&](const Indicator& i) { return i.compute == computation; });
  }

  // Everything the indicators, the rows and the fees are computed from, read through the gate: the
  // enrolled patients as records, their encounters and measures spilled to bucket files by patient
  // (cohort_spill.h), the rest (events, members, fees, OPERA) in `c.rest`.
  Result<void> readCohort(const std::string& why, bool withFees, Dossier& c, std::vector<Json>& roles) {
    struct ConditionRecord {
      std::uint64_t ref;
      std::uint32_t pathology, code;
      bool operator<(const ConditionRecord& o) const { return ref < o.ref; }
    };
    std::vector<ConditionRecord> conditionsRead;
    auto conditionOf = [&](std::string_view ref) -> const ConditionRecord* {
      ConditionRecord key{refHash(ref), 0, 0};
      auto it = std::lower_bound(conditionsRead.begin(), conditionsRead.end(), key);
      return it != conditionsRead.end() && it->ref == key.ref ? &*it : nullptr;
    };
    simdjson::dom::parser parser;  // reused: the types with a resource or more per patient are read with simdjson
    using simdjson::dom::element;
    using simdjson::dom::array;
    constexpr auto ok = simdjson::SUCCESS;
    auto conditions = scanRaw("Condition", why, [&](std::string_view body) {
      element x;
      if (parser.parse(body.data(), body.size()).get(x) != ok) return;
      element code, first;
      if (x["code"].get(code) != ok) return;
      ConditionRecord r{refHash("Condition/" + std::string(fast::str(x, "id"))), Interned::kNone, Interned::kNone};
      if (auto p = fast::codeIn(code, std::string(kCs) + "pathology"); !p.empty()) r.pathology = c.texts.add(p);
      if (code["coding"].at(0).get(first) == ok) r.code = c.texts.add(fast::str(first, "code"));
      conditionsRead.push_back(r);
    });
    if (!conditions.ok()) return conditions.error();
    std::sort(conditionsRead.begin(), conditionsRead.end());
    auto episodes = scanRaw("EpisodeOfCare", why, [&](std::string_view body) {
      element e;
      if (parser.parse(body.data(), body.size()).get(e) != ok) return;
      std::string_view patient = fast::ref(e, "patient");
      if (patient.substr(0, 8) != "Patient/") return;
      std::string_view id = patient.substr(8);
      std::string programme;
      array types, diagnoses;
      if (e["type"].get(types) == ok)
        for (element t : types)
          if (programme.empty()) programme = fast::codeIn(t, std::string(kCs) + "d77-programme");
      bool diagnosed = e["diagnosis"].get(diagnoses) == ok;
      if (programme == "OPERA") {
        auto& o = c.rest.opera[std::string(id)];
        o.id = std::string(id);
        o.enrolment = day(std::string(fast::str(e["period"], "start")));
        if (auto x = fast::extension(e, std::string(kSd) + "opera-region")) o.region = std::string(fast::str(*x, "valueCode"));
        if (diagnosed)
          for (element d : diagnoses)
            if (const ConditionRecord* r = conditionOf(fast::ref(d, "condition")); r && r->code != Interned::kNone) o.pathology = c.texts.text(r->code);
        return;
      }
      if (programme != "D77") return;
      std::uint32_t n = c.ids.add(id);
      if (n == c.patients.size()) c.patients.emplace_back();
      PatientRecord& p = c.patients[n];
      p.inclusion = packDate(fast::str(e["period"], "start"));
      p.status = c.texts.add(fast::str(e, "status"));
      p.episodeEnd = packDate(fast::str(e["period"], "end"));
      p.gp = c.texts.add(fast::ref(e, "careManager"));
      if (auto x = fast::extension(e, std::string(kSd) + "evaluable")) {
        bool evaluable = false;
        if ((*x)["valueBoolean"].get(evaluable) == ok) p.evaluable = evaluable;
      }
      if (diagnosed)
        for (element d : diagnoses)
          if (const ConditionRecord* r = conditionOf(fast::ref(d, "condition")); r && r->pathology != Interned::kNone) p.pathology = r->pathology;
    });
    if (!episodes.ok()) return episodes.error();
    std::vector<ConditionRecord>().swap(conditionsRead);
    auto patients = scanRaw("Patient", why, [&](std::string_view body) {
      element r;
      if (parser.parse(body.data(), body.size()).get(r) != ok) return;
      std::uint32_t n = c.ids.find(fast::str(r, "id"));
      if (n == Interned::kNone) return;
      PatientRecord& p = c.patients[n];
      p.birth = packDate(fast::str(r, "birthDate"));
      p.sex = c.texts.add(fast::str(r, "gender"));
      array ids;
      if (r["identifier"].get(ids) == ok)
        for (element x : ids)
          if (fhir::fr::isInsSystem(std::string(fast::str(x, "system"))) && p.insLength == 0) {
            std::string_view ins = fast::str(x, "value");
            p.insLength = static_cast<std::uint8_t>(std::min(ins.size(), sizeof p.ins));
            std::memcpy(p.ins, ins.data(), p.insLength);
          }
    });
    if (!patients.ok()) return patients.error();
    auto consents = scanRaw("Consent", why, [&](std::string_view body) {
      element x;
      if (parser.parse(body.data(), body.size()).get(x) != ok || fast::str(x, "status") != "active") return;
      std::string_view patient = fast::ref(x, "patient");
      if (patient.substr(0, 8) != "Patient/") return;
      if (std::uint32_t n = c.ids.find(patient.substr(8)); n != Interned::kNone) c.patients[n].consent = true;
    });
    if (!consents.ok()) return consents.error();
    // The encounters and measures of the enrolled patients, to bucket files by patient number.
    std::error_code ec;
    fs::create_directories(c.work, ec);
    fs::permissions(c.work, fs::perms::owner_all, ec);
    auto count = static_cast<std::uint32_t>(c.patients.size());
    constexpr std::uint32_t kPerBucket = 16384;
    c.encounters = std::make_unique<Spill>(c.work / "encounters", sizeof(EncounterRecord), count, kPerBucket);
    c.values = std::make_unique<Spill>(c.work / "values", sizeof(ValueRecord), count, kPerBucket);
    auto patientOf = [&](std::string_view reference) {
      return reference.substr(0, 8) == "Patient/" ? c.ids.find(reference.substr(8)) : Interned::kNone;
    };
    bool spilled = true;
    auto encounters = scanRaw("Encounter", why, [&](std::string_view body) {
      simdjson::dom::element e;
      if (parser.parse(body.data(), body.size()).get(e) != simdjson::SUCCESS) return;
      simdjson::dom::element type;
      bool typed = e["type"].at(0).get(type) == simdjson::SUCCESS;
      std::string kind = typed ? fast::codeIn(type, std::string(kCs) + "d77-enc") : "";
      std::string_view subject = fast::ref(e, "subject");
      if (auto m = fast::extension(e, std::string(kSd) + "opera-milestone")) {
        // OPERA's evaluations: few, kept as they are for the milestones' table.
        Cohort::Encounter x;
        x.milestone = std::string(fast::str(*m, "valueCode"));
        x.type = typed ? fast::codeIn(type, std::string(kCs) + "opera-activity") : "";
        x.patient = std::string(subject.substr(std::min<std::size_t>(8, subject.size())));
        x.date = day(std::string(fast::str(e["period"], "start")));
        c.rest.encounters["Encounter/" + std::string(fast::str(e, "id"))] = x;
        return;
      }
      if (kind != "CIED" && kind != "CSB") return;
      std::uint32_t n = patientOf(subject);
      if (n == Interned::kNone) return;
      EncounterRecord x;
      x.ref = refHash("Encounter/" + std::string(fast::str(e, "id")));
      x.type = kind == "CIED" ? 0 : 1;
      x.date = packDate(fast::str(e["period"], "start"));
      double minutes;
      if (e["length"]["value"].get_double().get(minutes) == simdjson::SUCCESS) x.minutes = minutes;
      if (kind == "CSB")
        if (auto sem = fast::extension(e, std::string(kSd) + "csb-semester")) {
          int64_t m;
          if ((*sem)["valueInteger"].get_int64().get(m) == simdjson::SUCCESS) x.semester = static_cast<std::int32_t>(m);
        }
      spilled &= c.encounters->add(n, &x);
    });
    if (!encounters.ok()) return encounters.error();
    // The measures: the codes the indicators name, and the utilisation counts of the rows.
    std::set<std::string> codes = {"http://loinc.org|72514-3"};
    for (const char* u : {"SICK-LEAVE-DAYS", "HOSP-DAYS", "GP-CONSULT", "SPEC-CONSULT", "IMAGING", "PHYSIO-ACTS"}) codes.insert(std::string(kCs) + "d77-ind|" + u);
    for (const auto& d : indicators)
      if (!d.code.empty()) codes.insert(d.code);
    Interned wanted;
    for (const auto& code : codes) wanted.add(code);
    std::string key;
    auto observations = scanRaw("Observation", why, [&](std::string_view body) {
      simdjson::dom::element o;
      if (parser.parse(body.data(), body.size()).get(o) != simdjson::SUCCESS) return;
      std::string_view status = fast::str(o, "status");
      if (status == "entered-in-error" || status == "cancelled") return;
      std::uint32_t n = patientOf(fast::ref(o, "subject"));
      if (n == Interned::kNone) return;
      // Only what an indicator or a row reads: the codes are checked before anything is copied.
      std::uint32_t found[4];
      int keys = 0;
      simdjson::dom::array codings;
      if (o["code"]["coding"].get(codings) == simdjson::SUCCESS)
        for (simdjson::dom::element coding : codings) {
          key.assign(fast::str(coding, "system")).append("|").append(fast::str(coding, "code"));
          if (keys < 4 && wanted.find(key) != Interned::kNone) found[keys++] = c.texts.add(key);
        }
      if (!keys) return;
      ValueRecord v;
      std::string_view encounter = fast::ref(o, "encounter");
      v.encounter = encounter.empty() ? 0 : refHash(encounter);
      v.start = v.end = packDate(fast::str(o, "effectiveDateTime"));
      simdjson::dom::element period;
      if (o["effectivePeriod"].get(period) == simdjson::SUCCESS) {
        v.start = packDate(fast::str(period, "start"));
        v.end = packDate(fast::str(period, "end"));
      }
      v.source = c.texts.add(fast::str(o["meta"], "source"));
      auto quantity = [&](simdjson::dom::element holder, ValueRecord& x) {
        simdjson::dom::element q;
        if (holder["valueQuantity"].get(q) != simdjson::SUCCESS || q["value"].get_double().get(x.value) != simdjson::SUCCESS) return false;
        x.unit = c.texts.add(fast::str(q, "code").empty() ? fast::str(q, "unit") : fast::str(q, "code"));
        return true;
      };
      for (int k = 0; k < keys; ++k) {
        ValueRecord x = v;
        x.code = found[k];
        if (quantity(o, x)) spilled &= c.values->add(n, &x);
        simdjson::dom::array components;
        if (o["component"].get(components) != simdjson::SUCCESS) continue;
        for (simdjson::dom::element comp : components) {
          simdjson::dom::element first;
          if (comp["code"]["coding"].at(0).get(first) != simdjson::SUCCESS) continue;
          ValueRecord y = v;
          y.code = c.texts.add(std::string(c.texts.text(found[k])) + "#" + std::string(fast::str(first, "system")) + "|" + std::string(fast::str(first, "code")));
          if (quantity(comp, y)) spilled &= c.values->add(n, &y);
        }
      }
    });
    if (!observations.ok()) return observations.error();
    // Scores from questionnaires: the mean of the answers of each indicator's group (one read for
    // every questionnaire indicator).
    std::vector<const Indicator*> scored;
    for (const auto& d : indicators)
      if (!d.questionnaire.empty()) scored.push_back(&d);
    if (!scored.empty()) {
      auto responses = scanJson("QuestionnaireResponse", why, [&](const Json& q) {
        if (str(q, "status") != "completed" && str(q, "status") != "amended") return;
        std::uint32_t n = patientOf(refOf(q, "subject"));
        if (n == Interned::kNone) return;
        for (const Indicator* d : scored) {
          if (str(q, "questionnaire") != d->questionnaire) continue;
          double sum = 0;
          int answers = 0;
          std::function<void(const Json&, bool)> walk = [&](const Json& items, bool inside) {
            for (const auto& it : items) {
              bool in = inside || str(it, "linkId") == d->item;
              for (const auto& a : it.value("answer", Json::array()))
                for (const char* k : {"valueDecimal", "valueInteger"})
                  if (in && a.contains(k) && a[k].is_number()) {
                    sum += a[k].get<double>();
                    ++answers;
                  }
              if (it.contains("item") && it["item"].is_array()) walk(it["item"], in);
            }
          };
          walk(q.value("item", Json::array()), false);
          if (!answers) continue;
          ValueRecord v;
          v.code = c.texts.add("questionnaire:" + d->questionnaire + "#" + d->item);
          v.start = v.end = packDate(str(q, "authored"));
          std::string encounter = refOf(q, "encounter");
          v.encounter = encounter.empty() ? 0 : refHash(encounter);
          v.value = sum / answers;
          spilled &= c.values->add(n, &v);
        }
      });
      if (!responses.ok()) return responses.error();
    }
    if (!spilled || !c.encounters->finish() || !c.values->finish())
      return makeError(ErrorCode::kUnavailable, "the extract's working files cannot be written: " + c.encounters->error() + c.values->error());
    auto tasks = scanJson("Task", why, [&](const Json& t) {
      std::string code = codeIn(t.value("code", Json::object()), std::string(kCs) + "network-event");
      Cohort::Event e;
      e.kind = code == "network-exit" ? "exit" : code == "admission-refusal" ? "refusal" : "";
      if (e.kind.empty()) return;
      e.date = day(str(t.value("executionPeriod", Json::object()), "start"));
      e.reason = codeIn(t.value("reasonCode", Json::object()), std::string(kCs) + (e.kind == "exit" ? "exit-reason" : "refusal-reason"));
      c.rest.events.push_back(e);
    });
    if (!tasks.ok()) return tasks.error();
    auto roleRead = scanJson("PractitionerRole", why, [&](const Json& r) {
      Cohort::Member m;
      m.active = !(r.contains("active") && r["active"].is_boolean() && !r["active"].get<bool>());
      const Json period = r.value("period", Json::object());
      m.start = day(str(period, "start"));
      m.end = day(str(period, "end"));
      for (const auto& code : r.value("code", Json::array()))
        if (m.category.empty()) m.category = codeIn(code, std::string(kCs) + "network-role");
      m.who = refOf(r, "practitioner").empty() ? str(r, "id") : refOf(r, "practitioner");
      c.rest.members.push_back(m);
      roles.push_back(r);
    });
    if (!roleRead.ok()) return roleRead.error();
    if (withFees || wants("expenses")) {
      auto items = scanJson("ChargeItem", why, [&](const Json& x) {
        if (str(x, "status") == "entered-in-error") return;
        Cohort::Fee f;
        f.code = codeIn(x.value("code", Json::object()), std::string(kCs) + "d77-fee");
        if (f.code.empty()) return;
        f.date = day(str(x, "occurrenceDateTime"));
        for (const auto& p : x.value("performer", Json::array()))
          if (f.actor.empty()) f.actor = refOf(p, "actor");
        f.patient = refOf(x, "subject");
        if (auto po = x.find("priceOverride"); po != x.end() && po->is_object() && (*po)["value"].is_number()) f.amount = (*po)["value"].get<double>();
        if (const Json* k = extension(x, std::string(kSd) + "fee-key-letter")) f.keyLetter = str(*k, "valueString");
        if (const Json* k = extension(x, std::string(kSd) + "fee-coefficient"); k && (*k)["valueDecimal"].is_number())
          f.coefficient = (*k)["valueDecimal"].get<double>();
        c.rest.fees.push_back(f);
      });
      if (!items.ok()) return items.error();
    }
    if (wants("opera-evaluations") && !c.rest.opera.empty()) {
      auto risks = scanJson("RiskAssessment", why, [&](const Json& r) {
        std::string subject = refOf(r, "subject");
        auto it = c.rest.opera.find(subject.substr(std::min<std::size_t>(8, subject.size())));
        if (it == c.rest.opera.end() || str(r, "status") == "entered-in-error") return;
        std::string date = str(r, "occurrenceDateTime");
        const Json predictions = r.value("prediction", Json::array());
        if (predictions.empty() || date < it->second.riskDate) return;
        it->second.risk = codeIn(predictions[0].value("qualitativeRisk", Json::object()), "http://terminology.hl7.org/CodeSystem/risk-probability");
        it->second.riskDate = date;
      });
      if (!risks.ok()) return risks.error();
      auto plans = scanJson("CarePlan", why, [&](const Json& p) {
        std::string subject = refOf(p, "subject");
        auto it = c.rest.opera.find(subject.substr(std::min<std::size_t>(8, subject.size())));
        if (it == c.rest.opera.end()) return;
        for (const auto& canonical : p.value("instantiatesCanonical", Json::array()))
          if (canonical.is_string()) it->second.pathway = canonical.get<std::string>().substr(canonical.get<std::string>().rfind('/') + 1);
      });
      if (!plans.ok()) return plans.error();
    }
    return {};
  }

  Result<nlohmann::json> run(const Recipient& to, const std::string& from, const std::string& until, const std::string& kind,
                             const identity::Principal* by) {
    std::string why = "extract for " + to.id + " (" + from + " to " + until + ")";
    std::string created = fhir::formatInstant(nowMs());
    std::string base = created.substr(0, 19) + "-" + to.id;
    std::replace(base.begin(), base.end(), ':', '-');
    std::string id = base;
    for (int n = 2; fs::exists(fs::path(options.dataDir) / "extracts" / id); ++n) id = base + "-" + std::to_string(n);
    Dossier cohort;
    cohort.work = fs::path(options.dataDir) / "extracts" / (".work-" + id);
    std::vector<Json> roles;  // few: kept whole for the fee statement
    auto read = readCohort(why, to.fees(), cohort, roles);
    if (!read.ok()) return read.error();
    setProgress("computing", 0);
    std::int64_t phaseStarted = nowMs();
    auto phaseDone = [&](const char* phase) {
      log::info("extract.phase", {{"extract", id}, {"phase", phase}, {"ms", std::to_string(nowMs() - phaseStarted)}});
      phaseStarted = nowMs();
    };
    bool finalEvaluation = kind == "final";
    std::optional<std::pair<int, std::string>> key;  // the pseudonyms' key, for rows
    if (to.rows()) {
      auto k = currentKey(to.domain, true);
      if (!k.ok()) return k.error();
      key = k.value();
    }

    // ---- each patient once: the indicators' sums and the pseudonymised rows ----
    std::vector<Written> written;
    FileOut rowsFile;
    std::string error;
    if (key && !rowsFile.open(cohort.work / "patients.csv", error)) return makeError(ErrorCode::kInternal, error);
    CsvWriter rows({"pseudo_id", "pathology", "age_band", "sex", "inclusion_semester", "period_start", "period_end", "phase", "indicator", "value",
                    "unit", "source"});
    std::int64_t withoutIns = 0, withoutConsent = 0;
    std::vector<std::uint32_t> rowPatients;  // the patients (numbers) whose rows the package holds
    std::vector<std::string> fields;
    // What a row says of a code or a source, worked out once per text.
    struct CodeText {
      bool known = false, utilisation = false, vas = false;
      std::string indicator, source;
    };
    std::vector<CodeText> codeTexts(cohort.texts.size());
    auto codeText = [&](std::uint32_t t) -> const CodeText& {
      static const CodeText none;
      if (t >= codeTexts.size()) return none;
      CodeText& c = codeTexts[t];
      if (!c.known) {
        std::string text(cohort.texts.text(t));
        c.known = true;
        c.utilisation = text.rfind(std::string(kCs) + "d77-ind|", 0) == 0;
        c.vas = text == kVas;
        c.indicator = rowIndicator(text);
        c.source = sourceOf(text);
      }
      return c;
    };
    std::vector<std::pair<std::uint32_t, std::uint32_t>> valueTexts;  // code, source of each value
    Computation computation(indicators, from, until, finalEvaluation);
    Cohort::Patient p;
    std::vector<Cohort::Encounter> encounters;
    std::vector<Value> values;
    std::vector<char> encounterRecords, valueRecords;
    std::vector<std::uint32_t> encounterOrder, valueOrder;
    for (std::size_t b = 0; b < cohort.values->buckets(); ++b) {
      if (!cohort.encounters->read(b, encounterRecords, encounterOrder) || !cohort.values->read(b, valueRecords, valueOrder))
        return makeError(ErrorCode::kUnavailable, "the extract's working files cannot be read: " + cohort.encounters->error() + cohort.values->error());
      auto first = static_cast<std::uint32_t>(b) * cohort.values->perBucket();
      for (std::uint32_t i = 0; i + 1 < valueOrder.size(); ++i) {
        cohort.patient(first + i, p);
        encounters.resize(encounterOrder[i + 1] - encounterOrder[i]);
        for (std::size_t k = 0; k < encounters.size(); ++k) {
          EncounterRecord r;
          std::memcpy(&r, encounterRecords.data() + (encounterOrder[i] + k) * sizeof r, sizeof r);
          Cohort::Encounter& e = encounters[k];
          e.type = r.type == 0 ? "CIED" : "CSB";
          e.date = unpackDate(r.date);
          e.minutes = r.minutes;
          e.semester = r.semester;
          e.ref = std::to_string(r.ref);
        }
        values.resize(valueOrder[i + 1] - valueOrder[i]);
        valueTexts.resize(values.size());
        for (std::size_t k = 0; k < values.size(); ++k) {
          ValueRecord r;
          std::memcpy(&r, valueRecords.data() + (valueOrder[i] + k) * sizeof r, sizeof r);
          valueTexts[k] = {r.code, r.source};
          Value& v = values[k];
          v.code.assign(cohort.texts.text(r.code));
          v.start = unpackDate(r.start);
          v.end = unpackDate(r.end);
          v.encounter = r.encounter ? std::to_string(r.encounter) : std::string();
          v.unit.assign(cohort.texts.text(r.unit));
          v.source.assign(cohort.texts.text(r.source));
          v.value = r.value;
        }
        computation.patient(p, encounters, values);
        if (!key || p.inclusion.empty() || p.inclusion > until || (finalEvaluation && !p.evaluable)) continue;
        if (!p.consent) {
          ++withoutConsent;
          continue;
        }
        if (p.ins.empty()) {
          ++withoutIns;
          continue;
        }
        std::string pseudo = pseudonym(p.ins, key->second), band = ageBand(p.birthDate, p.inclusion), sem = calendarSemester(p.inclusion);
        std::string sex = p.sex == "male" || p.sex == "female" ? p.sex : "unknown";
        fields.resize(12);
        fields[0] = pseudo;
        fields[1] = p.pathology;
        fields[2] = band;
        fields[3] = sex;
        fields[4] = sem;
        auto row = [&](const std::string& start, const std::string& end, const std::string& phase, const std::string& indicator, const std::string& value,
                       const std::string& unit, const std::string& source) {
          fields[5] = monthOf(start);
          fields[6] = monthOf(end);
          fields[7] = phase;
          fields[8] = indicator;
          fields[9] = value;
          fields[10] = unit;
          fields[11] = source;
          rows.row(fields);
        };
        row(p.inclusion, p.inclusion, "inclusion", "evaluable", p.evaluable ? "1" : "0", "{boolean}", "network DB");
        for (std::size_t k = 0; k < values.size(); ++k) {
          const Value& v = values[k];
          std::string end = v.end.empty() ? v.start : v.end;
          const CodeText& code = codeText(valueTexts[k].first);
          bool baseline = code.utilisation && end <= p.inclusion;
          if (!baseline && !within(end, from, until) && !within(v.start, from, until)) continue;
          row(v.start, end, baseline ? "before" : "after", code.indicator, decimal(v.value), code.vas ? "{score}" : v.unit, codeText(valueTexts[k].second).source);
        }
        rowPatients.push_back(first + i);
        if (rows.text().size() >= (1u << 20)) {
          if (!rowsFile.write(rows.text())) return makeError(ErrorCode::kInternal, rowsFile.error());
          rows.clear();
        }
      }
      setProgress("computing", static_cast<std::int64_t>(valueOrder.size() - 1));
    }
    if (key && (!rowsFile.write(rows.text()) || !rowsFile.close())) return makeError(ErrorCode::kInternal, rowsFile.error());
    phaseDone("patients");
    Computed computed = computation.finish(cohort.rest, to.k);
    const Disclosure& disclosure = computed.disclosure;

    // ---- the files ----
    CsvWriter aggregates({"indicator", "stratum", "value", "unit", "n", "status"});
    ReportInput report;  // the same cells as indicators.csv, drawn
    std::map<std::string, std::vector<std::string>> dimensionsOf;  // indicator -> its stratifiers' dimensions
    Json groups = Json::array();
    std::int64_t masked = 0;
    for (const auto& d : indicators) {
      Json group = {{"code", {{"coding", Json::array({{{"system", std::string(kCs) + "d77-indicator"}, {"code", d.id}}})}, {"text", d.title}}}};
      std::vector<std::pair<std::string, Json>> strata;  // by set of dimensions, in first-seen order
      report.indicators.push_back({d.id, d.title, d.definition, d.unit, d.kind, d.chart, d.chartX, d.chartSeries, {}});
      auto add = [&](const std::string& stratum, const std::string& value, const std::string& n, bool hidden) {
        bool empty = !hidden && value.empty();  // a mean over nobody: nothing to hide, nothing to give
        std::string status = hidden ? "masked" : empty ? "empty" : "published";
        aggregates.row({d.id, stratum, hidden ? "" : value, d.unit, hidden ? "" : n, status});
        report.indicators.back().cells.push_back({stratum, hidden ? "" : value, hidden ? "" : n, status});
        masked += hidden;
        // The stratum's dimensions: one stratifier per set of them ("pathology", "pathology|semester"),
        // a single one as the stratum's value, several as its components; "*" is the group itself.
        Json s = Json::object();
        std::string dims;
        if (stratum != "*") {
          Json components = Json::array();
          for (const auto& part : splitBars(stratum)) {
            std::size_t eq = part.find('=');
            components.push_back({{"code", {{"text", part.substr(0, eq)}}}, {"value", {{"text", eq == std::string::npos ? "" : part.substr(eq + 1)}}}});
            dims += (dims.empty() ? "" : "|") + part.substr(0, eq);
          }
          if (components.size() == 1) s["value"] = components[0]["value"];
          else s["component"] = components;
        }
        Json& target = stratum == "*" ? group : s;
        if (hidden || empty)
          target["extension"] = Json::array({{{"url", "http://hl7.org/fhir/StructureDefinition/data-absent-reason"}, {"valueCode", hidden ? "masked" : "not-applicable"}}});
        else if (d.kind != "count") target["measureScore"] = {{"value", std::stod(value)}, {"unit", d.unit}};
        else target["population"] = Json::array({{{"code", {{"text", "numerator"}}}, {"count", std::stoll(value)}}});
        if (stratum == "*") return;
        auto it = std::find_if(strata.begin(), strata.end(), [&](const auto& x) { return x.first == dims; });
        if (it == strata.end()) {
          strata.push_back({dims, Json::array()});
          it = strata.end() - 1;
        }
        it->second.push_back(s);
      };
      if (d.kind == "mean" || d.kind == "sum") {
        for (const auto& [stratum, m] : computed.statistics[d.id]) {
          const auto* c = disclosure.find(m.cell);
          bool hidden = !c || c->masked;
          add(stratum, m.n ? decimal(d.kind == "mean" ? m.sum / static_cast<double>(m.n) : m.sum) : "", std::to_string(m.n), hidden);
        }
      } else if (!d.suppress || computed.unmasked.count(d.id)) {
        for (const auto& [stratum, n] : computed.unmasked[d.id]) add(stratum, std::to_string(n), std::to_string(n), false);
      } else {
        for (const auto& c : disclosure.cells()) {
          if (c.id != d.id && c.id.rfind(d.id + "|", 0) != 0) continue;
          std::string stratum = c.id == d.id ? "*" : c.id.substr(d.id.size() + 1);
          add(stratum, std::to_string(c.count), std::to_string(c.count), c.masked);
        }
      }
      Json stratifiers = Json::array();
      for (auto& [dims, list] : strata) {
        Json codes = Json::array();
        for (const auto& dim : splitBars(dims)) codes.push_back({{"text", dim}});
        stratifiers.push_back({{"code", codes}, {"stratum", std::move(list)}});
        dimensionsOf[d.id].push_back(dims);
      }
      if (!stratifiers.empty()) group["stratifier"] = std::move(stratifiers);
      groups.push_back(group);
    }
    Json measure = {{"resourceType", "Measure"},
                    {"url", "https://douleur77.fr/fhir/Measure/d77-evaluation"},
                    {"status", "active"},
                    {"title", "Évaluation du réseau Douleur 77"},
                    {"scoring", {{"coding", Json::array({{{"system", "http://terminology.hl7.org/CodeSystem/measure-scoring"}, {"code", "continuous-variable"}}})}}},
                    {"group", Json::array()}};
    for (const auto& d : indicators) {
      Json g = {{"code", {{"coding", Json::array({{{"system", std::string(kCs) + "d77-indicator"}, {"code", d.id}}})}, {"text", d.title}}},
                {"description", d.definition + " Population: " + d.population + ". Numerator: " + d.numerator + ". Source: " + d.source +
                                    (d.reference.empty() ? "" : ". " + d.reference) + "."}};
      for (const auto& dims : dimensionsOf[d.id]) {
        Json components = Json::array();
        for (const auto& dim : splitBars(dims))
          components.push_back({{"code", {{"text", dim}}}, {"criteria", {{"language", "text/plain"}, {"expression", dim},
                                                                         {"description", "the stratifier " + dim + " of the network's extracts"}}}});
        g["stratifier"].push_back(components.size() == 1 ? Json{{"code", components[0]["code"]}} : Json{{"component", components}});
      }
      measure["group"].push_back(g);
    }
    Json measureReport = {{"resourceType", "MeasureReport"},
                   {"status", "complete"},
                   {"type", "summary"},
                   {"measure", "https://douleur77.fr/fhir/Measure/d77-evaluation"},
                   {"date", created},
                   {"period", {{"start", from}, {"end", until}}},
                   {"group", groups}};

    report.title = "Évaluation du réseau Douleur 77";
    report.recipient = to.name.empty() ? to.id : to.name;
    report.periodStart = from;
    report.periodEnd = until;
    report.created = created;
    report.generator = options.generator;
    report.k = to.k;
    report.labels = reportLabels();
    // ---- the files, written to the working folder, then archived and sealed from there ----
    auto keep = [&](const std::string& name, const std::string& bytes) {
      FileOut f;
      if (!f.open(cohort.work / name, error) || !f.write(bytes) || !f.close()) return false;
      written.push_back(f.result(name));
      return true;
    };
    if (!keep("indicators.csv", aggregates.text()) || !keep("measure.json", measure.dump(2)) || !keep("measure-report.json", measureReport.dump(2)) ||
        !keep("report.html", renderHtml(report)))
      return makeError(ErrorCode::kInternal, error);
    Json manifest = {{"id", id},
                     {"generator", options.generator},
                     {"created", created},
                     {"recipient", {{"id", to.id}, {"name", to.name}, {"role", to.role}}},
                     {"period", {{"start", from}, {"end", until}}},
                     {"kind", kind},
                     {"population", finalEvaluation ? "evaluable patients (final evaluation, Art. 12)" : "every enrolled patient"},
                     {"k", to.k},
                     {"maskedCells", masked},
                     {"files", Json::array()}};
    if (key) {
      written.push_back(rowsFile.result("patients.csv"));
      manifest["pseudonym"] = {{"algorithm", "HMAC-SHA-256 of the INS (15 characters, upper case)"}, {"domain", to.domain}, {"keyVersion", key->first}};
      manifest["patientsWithoutIns"] = withoutIns;
      manifest["patientsWithoutActiveConsent"] = withoutConsent;
    }
    if (to.fees()) {
      auto statement = fees(from, until, why, cohort, roles);
      if (!statement.ok()) return statement.error();
      if (!keep("fees.csv", statement->first) || !keep("payments.csv", statement->second)) return makeError(ErrorCode::kInternal, error);
    }
    for (const auto& f : written) {
      Json entry = {{"name", f.name}, {"bytes", f.bytes}, {"sha256", f.sha256}};
      if (f.name.size() > 4 && f.name.substr(f.name.size() - 4) == ".csv") entry["rows"] = f.lines ? f.lines - 1 : 0;
      manifest["files"].push_back(entry);
    }
    if (!keep("manifest.json", manifest.dump(2))) return makeError(ErrorCode::kInternal, error);

    // ---- sealed for the recipient ----
    setProgress("sealing", 0);
    std::vector<secureupload::FileEntry> entries;
    for (const auto& f : written) entries.push_back({f.name, f.path.string()});
    fs::path archive = cohort.work / "extract.zip";
    phaseDone("files");
    if (!secureupload::zipFiles(entries, archive.string(), error)) return makeError(ErrorCode::kInternal, "the archive cannot be made: " + error);
    phaseDone("archive");
    auto signer = signerCredentials();
    if (!signer.ok()) return signer.error();
    auto recipientPem = recipientCertificate(to);
    if (!recipientPem.ok()) return recipientPem.error();
    fs::path dir = fs::path(options.dataDir) / "extracts" / id;
    std::error_code ec;
    fs::create_directories(dir, ec);
    fs::permissions(fs::path(options.dataDir) / "extracts", fs::perms::owner_all, ec);
    fs::path sealing = cohort.work / "extract.p7m";
    std::string packageSha256;
    if (!secureupload::sealFile(archive.string(), *signer, {*recipientPem}, nowMs() / 1000, sealing.string(), packageSha256, error)) {
      fs::remove_all(dir, ec);
      return makeError(ErrorCode::kInvalid, "the extract for " + to.id + " is not sealed (nothing written): " + error);
    }
    phaseDone("seal");
    fs::rename(sealing, dir / "extract.p7m", ec);
    manifest["package"] = (dir / "extract.p7m").string();
    manifest["packageSha256"] = packageSha256;
    if (ec || !writePrivate(dir / "manifest.json", manifest.dump(2), error))
      return makeError(ErrorCode::kInternal, ec ? (dir / "extract.p7m").string() + ": " + ec.message() : error);

    // ---- audited ----
    // Every patient whose rows the package holds is named, in records of at most kAuditPart
    // patients (a national cohort in one record would exceed what one audit record may hold).
    if (audit) {
      constexpr std::size_t kAuditPart = 50000;
      std::size_t parts = std::max<std::size_t>(1, (rowPatients.size() + kAuditPart - 1) / kAuditPart);
      Json detail = {{"extract", id}, {"recipient", to.id}, {"role", to.role}, {"k", to.k}, {"maskedCells", masked}, {"package", manifest["packageSha256"]}};
      if (manifest.contains("pseudonym")) detail["keyVersion"] = manifest["pseudonym"]["keyVersion"];
      for (const auto& f : manifest["files"]) detail["rows"][f["name"].get<std::string>()] = f.value("rows", 0);
      for (std::size_t part = 0; part < parts; ++part) {
        audit::Record r = record("extract", by);
        r.method = "EXTRACT";
        r.path = "/admin/v1/extracts";
        r.resourceType = "MeasureReport";
        for (std::size_t k = part * kAuditPart; k < std::min(rowPatients.size(), (part + 1) * kAuditPart); ++k)
          r.patients.emplace_back(cohort.ids.text(rowPatients[k]));
        if (parts > 1) {
          detail["part"] = part + 1;
          detail["parts"] = parts;
        }
        r.detail = detail.dump();
        auto a = audit->append(std::move(r));
        if (!a.ok()) return makeError(ErrorCode::kUnavailable, "the extract's audit record cannot be written: " + a.error().message);
      }
    }
    log::info("extract.written", {{"extract", id}, {"recipient", to.id}, {"patients", std::to_string(rowPatients.size())}, {"masked", std::to_string(masked)}});
    return manifest;
  }

  // The fee statement (one line per professional, year and fee) and the payment file (one line per
  // professional and year): the fee rows (ChargeItem) of the period as the network wrote them, and
  // the shared-dossier fee of each GP correspondent per calendar year, for the first patients
  // enrolled with them that year up to the tariff's maximum, at the version in force at the year's end.
  Result<std::pair<std::string, std::string>> fees(const std::string& from, const std::string& until, const std::string& why,
                                                   const Dossier& cohort, const std::vector<Json>& roles) {
    std::map<std::string, std::string> memberOf;  // "Practitioner/x" -> "rpps:N"
    std::map<std::string, std::string> categoryOf;
    auto practitioners = scanJson("Practitioner", why, [&](const Json& p) {
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
    for (const auto& f : cohort.rest.fees) {
      if (!within(f.date, from, until)) continue;
      std::string who = memberOf.count(f.actor) ? memberOf[f.actor] : f.actor;
      Line& l = lines[{who, f.date.substr(0, 4), f.code}];
      ++l.count;
      l.amount += f.amount;
      l.unit = f.amount;
      l.patients.insert(f.patient);
      l.category = categoryOf.count(f.actor) ? categoryOf[f.actor] : "";
      if (!f.keyLetter.empty()) l.keyLetter = f.keyLetter;
      if (f.coefficient) l.coefficient = f.coefficient;
      l.source = "fee rows of the network (ChargeItem)";
    }
    // The shared-dossier fee: GP correspondents (EpisodeOfCare.careManager), per calendar year, for
    // the first patients enrolled with each (only those are kept).
    const Json& dossier = tariffs.value("dossierFee", Json::object());
    int maxPatients = dossier.value("maxPatients", 10);
    std::map<std::pair<std::string, std::string>, std::vector<std::pair<std::string, std::string>>> enrolled;  // (gp, year) -> (inclusion, patient)
    Cohort::Patient p;
    for (std::uint32_t n = 0; n < cohort.patients.size(); ++n) {
      const PatientRecord& r = cohort.patients[n];
      if (r.gp == Interned::kNone || cohort.texts.text(r.gp).empty() || r.inclusion == 0) continue;
      cohort.patient(n, p);
      if (p.episodeStatus == "entered-in-error" || p.episodeStatus == "cancelled") continue;
      for (int y = std::stoi(from.substr(0, 4)); y <= std::stoi(until.substr(0, 4)); ++y) {
        std::string ys = std::to_string(y);
        if (p.inclusion > ys + "-12-31" || (!p.episodeEnd.empty() && p.episodeEnd < ys + "-01-01")) continue;
        auto& list = enrolled[{memberOf.count(p.gp) ? memberOf[p.gp] : p.gp, ys}];
        list.push_back({p.inclusion, "Patient/" + p.id});
        if (list.size() >= static_cast<std::size_t>(std::max(1, maxPatients)) * 4) {
          std::sort(list.begin(), list.end());
          list.resize(static_cast<std::size_t>(std::max(1, maxPatients)));
        }
      }
    }
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

  // ---- the caisse's baseline ----
  // Links each row to a patient through the pseudonyms of the recipient's domain and writes them,
  // all or nothing, as utilisation Observations (meta.source: the caisse) through the gate.
  Result<Json> importBaseline(const Recipient& from, const std::string& text, const identity::Principal* by) {
    std::vector<BaselineRow> rows;
    std::vector<std::string> errors;
    // Refused whole: the message lists the lines at fault; the OperationOutcome has an issue for each,
    // located at its line.
    auto refuse = [&](const std::string& why) {
      std::string message = "the baseline file of " + from.id + " is refused, nothing was imported: " + why;
      Json issues = Json::array({{{"severity", "error"}, {"code", "invalid"}, {"diagnostics", message}}});
      for (const auto& e : errors) {
        message += "\n" + e;
        Json issue = {{"severity", "error"}, {"code", "invalid"}, {"diagnostics", e}};
        if (e.rfind("line ", 0) == 0) issue["location"] = Json::array({e.substr(0, e.find(':'))});
        issues.push_back(issue);
      }
      Error error = makeError(ErrorCode::kInvalid, message);
      error.outcome = Json{{"resourceType", "OperationOutcome"}, {"issue", issues}}.dump();
      return error;
    };
    if (!parseBaseline(text, rows, errors)) return refuse(std::to_string(errors.size()) + " problem(s)");
    // The pseudonyms of the network's patients under each key version the file uses.
    auto all = keys();
    if (!all.ok()) return all.error();
    std::set<int> versions;
    for (const auto& r : rows) versions.insert(r.keyVersion);
    std::map<int, std::string> keyOf;
    const Json list = all->value(from.domain, Json::array());
    for (int v : versions) {
      for (const auto& k : list)
        if (v == 0 ? &k == &list.back() : k.value("version", 0) == v) {
          std::string key;
          if (base64::decode(str(k, "key"), key)) keyOf[v] = key;
        }
      if (!keyOf.count(v))
        return refuse(v ? "the key version " + std::to_string(v) + " of the domain " + from.domain + " does not exist"
                        : "the domain " + from.domain + " has no key yet (an extract for it creates one)");
    }
    std::string why = "baseline import from " + from.id;
    Cohort cohort;
    std::map<std::string, std::string> insOf;
    auto episodes = scanJson("EpisodeOfCare", why, [&](const Json& e) {
      bool d77 = false;
      for (const auto& t : e.value("type", Json::array())) d77 |= codeIn(t, std::string(kCs) + "d77-programme") == "D77";
      std::string patient = refOf(e, "patient");
      if (!d77) return;
      if (patient.rfind("Patient/", 0) == 0) cohort.patients[patient.substr(8)].inclusion = day(str(e.value("period", Json::object()), "start"));
    });
    if (!episodes.ok()) return episodes.error();
    auto patients = scanJson("Patient", why, [&](const Json& r) {
      if (!cohort.patients.count(str(r, "id"))) return;
      for (const auto& id : r.value("identifier", Json::array()))
        if (fhir::fr::isInsSystem(str(id, "system")) && !insOf.count(str(r, "id"))) insOf[str(r, "id")] = str(id, "value");
    });
    if (!patients.ok()) return patients.error();
    std::map<std::pair<int, std::string>, std::string> patientOf;  // (key version, pseudonym) -> patient id
    for (const auto& [id, ins] : insOf)
      for (const auto& [v, key] : keyOf) patientOf[{v, pseudonym(ins, key)}] = id;
    for (const auto& r : rows) {
      auto p = patientOf.find({r.keyVersion, r.pseudonym});
      if (p == patientOf.end()) {
        if (errors.size() < 20) errors.push_back("line " + std::to_string(r.line) + ": the pseudonym is not one of the network's patients under this key");
        continue;
      }
      const std::string& inclusion = cohort.patients[p->second].inclusion;
      if (inclusion.empty() || r.end > inclusion || r.start < monthsBefore(inclusion, 6).substr(0, 8) + "01")
        if (errors.size() < 20) errors.push_back("line " + std::to_string(r.line) + ": the period is not within the 6 months before the patient's inclusion");
    }
    if (!errors.empty()) return refuse(std::to_string(errors.size()) + " row(s) cannot be linked");

    Json bundle = {{"resourceType", "Bundle"}, {"type", "transaction"}, {"entry", Json::array()}};
    std::set<std::string> linked;
    for (const auto& r : rows) {
      const std::string& patient = patientOf[{r.keyVersion, r.pseudonym}];
      linked.insert(patient);
      // One Observation per patient, indicator and period: a file sent again replaces its values.
      std::string key = secureupload::sha256Hex(patient + "|" + r.indicator + "|" + r.start + "|" + r.end).substr(0, 40);
      Json o = {{"resourceType", "Observation"},
                {"meta", {{"source", "https://douleur77.fr/fhir/source/caisse"}}},
                {"identifier", Json::array({{{"system", "https://douleur77.fr/fhir/sid/caisse-baseline"}, {"value", key}}})},
                {"status", "final"},
                {"code", {{"coding", Json::array({{{"system", std::string(kCs) + "d77-ind"}, {"code", r.indicator}}})}}},
                {"subject", {{"reference", "Patient/" + patient}}},
                {"effectivePeriod", {{"start", r.start}, {"end", r.end}}},
                {"valueQuantity", {{"value", r.value}, {"unit", r.unit}, {"system", "http://unitsofmeasure.org"}, {"code", r.unit}}}};
      bundle["entry"].push_back({{"resource", o},
                                 {"request", {{"method", "PUT"}, {"url", "Observation?identifier=https://douleur77.fr/fhir/sid/caisse-baseline|" + key}}}});
    }
    http::Caller caller;
    caller.connector = &baselineJob;
    caller.channel = "job:baseline";
    caller.detail = why;
    caller.patients = &linked;
    fhir::FhirRequest req;
    req.method = "POST";
    req.path = "/";
    req.contentType = "application/fhir+json";
    req.body = bundle.dump();
    fhir::FhirService* f = fhir;
    auto r = gate ? gate->handle(caller, req, "fhir", [f](fhir::FhirRequest& q) { return f->handle(q); }) : fhir->handle(req);
    if (r.status != 200) return makeError(ErrorCode::kUnavailable, "the baseline was not stored (" + std::to_string(r.status) + "): " + r.body.substr(0, 500));
    Json out = {{"recipient", from.id}, {"rows", rows.size()}, {"patients", linked.size()}, {"keyVersions", Json::array()}};
    for (const auto& [v, k] : keyOf) out["keyVersions"].push_back(v ? v : list.back().value("version", 0));
    if (audit) {
      audit::Record a = record("baseline-import", by);
      a.method = "POST";
      a.path = "/admin/v1/extracts/baselines/" + from.id;
      a.resourceType = "Observation";
      a.patients.assign(linked.begin(), linked.end());
      a.detail = out.dump();
      auto w = audit->append(a);
      if (!w.ok()) log::error("extract.baseline_audit", {{"recipient", from.id}, {"error", w.error().message}});
    }
    log::info("extract.baseline", {{"recipient", from.id}, {"rows", std::to_string(rows.size())}, {"patients", std::to_string(linked.size())}});
    return out;
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
  auto recipients = loadRecipients(options.recipientsFile, options.roles);
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
  m.baselineJob = m.job;
  m.baselineJob.scopes = {"system/Patient.rs", "system/EpisodeOfCare.rs", "system/Observation.cruds"};
  m.baselineJob.tokenId = "gateway:baseline";
  m.store = &store;
  if (std::any_of(m.recipients.begin(), m.recipients.end(), [](const Recipient& r) { return !r.transfer.url.empty(); }))
    m.sender = std::thread([&m] { m.sendLoop(); });
  if (!m.options.experimentStart.empty() && m.options.scheduleIntervalSeconds > 0) {
    ExtractService* self = s.get();
    m.scheduler = std::thread([self, &m] {
      std::int64_t waitMs = std::min<std::int64_t>(60, m.options.scheduleIntervalSeconds) * 1000;
      while (true) {
        {
          std::unique_lock<std::mutex> lock(m.senderMutex);
          if (m.senderWake.wait_for(lock, std::chrono::milliseconds(waitMs), [&] { return m.stopping; })) return;
        }
        auto done = self->runDue(nullptr);
        if (!done.ok()) log::error("extract.schedule", {{"error", done.error().message}});
        waitMs = m.options.scheduleIntervalSeconds * 1000;
      }
    });
  }
  return s;
}

void ExtractService::stop() {
  {
    std::lock_guard<std::mutex> lock(impl_->senderMutex);
    impl_->stopping = true;
  }
  impl_->senderWake.notify_all();
  if (impl_->sender.joinable()) impl_->sender.join();
  if (impl_->scheduler.joinable()) impl_->scheduler.join();
}

namespace {

// The day before `date` (YYYY-MM-DD).
std::string dayBefore(const std::string& date) {
  namespace c = std::chrono;
  c::year_month_day d{c::year{std::stoi(date.substr(0, 4))}, c::month{static_cast<unsigned>(std::stoi(date.substr(5, 2)))},
                      c::day{static_cast<unsigned>(std::stoi(date.substr(8, 2)))}};
  c::year_month_day before{c::sys_days{d} - c::days{1}};
  char b[32];
  std::snprintf(b, sizeof b, "%04d-%02u-%02u", static_cast<int>(before.year()), static_cast<unsigned>(before.month()), static_cast<unsigned>(before.day()));
  return b;
}

}  // namespace

Result<nlohmann::json> ExtractService::runDue(const identity::Principal* by) {
  const Options& o = impl_->options;
  Json out = Json::array();
  if (o.experimentStart.size() != 10) return out;
  std::string today = o.today.empty() ? fhir::formatInstant(nowMs()).substr(0, 10) : o.today;
  auto written = list();
  if (!written.ok()) return written.error();
  auto exists = [&](const std::string& recipient, const std::string& kind, const std::string& from, const std::string& to) {
    for (const auto& m : written.value())
      if (str(m.value("recipient", Json::object()), "id") == recipient && str(m, "kind") == kind && str(m.value("period", Json::object()), "start") == from &&
          str(m.value("period", Json::object()), "end") == to)
        return true;
    return false;
  };
  for (const auto& r : impl_->recipients) {
    std::vector<std::tuple<std::string, std::string, std::string>> due;  // (kind, from, to)
    for (const auto& kind : r.schedule) {
      if (kind == "annual") {
        for (int y = std::stoi(o.experimentStart.substr(0, 4)); y < std::stoi(today.substr(0, 4)); ++y) {
          std::string from = std::max(o.experimentStart, std::to_string(y) + "-01-01"), to = std::to_string(y) + "-12-31";
          due.emplace_back(kind, from, to);
        }
      } else {
        std::string end = dayBefore(monthsBefore(o.experimentStart, -18));
        if (end < today) due.emplace_back(kind, o.experimentStart, end);
      }
    }
    for (const auto& [kind, from, to] : due) {
      if (exists(r.id, kind, from, to)) continue;
      // Gateways sharing a database make each period's extract once: the one that claims it.
      std::string job = "extract:" + r.id + ":" + kind + ":" + from + ":" + to;
      auto claimed = impl_->store->claimJob(job, nowMs(), kExtractClaimMs);
      if (!claimed.ok()) return claimed.error();
      if (!claimed.value()) {
        log::info("extract.claimed_elsewhere", {{"recipient", r.id}, {"kind", kind}, {"from", from}, {"to", to}});
        continue;
      }
      auto m = run(r.id, from, to, by, kind);
      (void)impl_->store->finishJob(job, m.ok());
      if (!m.ok()) return makeError(m.error().code, "the " + kind + " extract for " + r.id + " (" + from + " to " + to + "): " + m.error().message);
      Json done = m.value();
      if (!r.transfer.url.empty()) {
        auto q = send(str(done, "id"), by);
        if (!q.ok()) return q.error();
        done["transfer"] = q.value();
      }
      log::info("extract.scheduled", {{"recipient", r.id}, {"kind", kind}, {"from", from}, {"to", to}});
      out.push_back(done);
    }
  }
  return out;
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

Result<nlohmann::json> ExtractService::run(const std::string& recipient, const std::string& from, const std::string& to, const identity::Principal* by,
                                           const std::string& kind) {
  std::lock_guard<std::mutex> lock(impl_->mutex);
  if (std::find(extractKinds().begin(), extractKinds().end(), kind) == extractKinds().end())
    return makeError(ErrorCode::kInvalid, "the kind of extract must be one of on-demand, annual, interim, final (not " + kind + ")");
  const Recipient* r = nullptr;
  for (const auto& x : impl_->recipients)
    if (x.id == recipient) r = &x;
  if (!r) return makeError(ErrorCode::kNotFound, "no extract recipient " + recipient + " (see extract.recipients)");
  auto isDate = [](const std::string& d) { return d.size() == 10 && d[4] == '-' && d[7] == '-'; };
  if (!isDate(from) || !isDate(to) || from > to) return makeError(ErrorCode::kInvalid, "the period must be two dates YYYY-MM-DD, the first not after the second");
  impl_->setProgress("starting", 0);
  auto m = impl_->run(*r, from, to, kind, by);
  impl_->setProgress("", 0);
  return m;
}

const std::vector<std::string>& extractKinds() {
  static const std::vector<std::string> kinds = {"on-demand", "annual", "interim", "final"};
  return kinds;
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

Result<nlohmann::json> ExtractService::importBaseline(const std::string& recipient, const std::string& text, const identity::Principal* by) {
  std::lock_guard<std::mutex> lock(impl_->mutex);
  const Recipient* r = impl_->recipient(recipient);
  if (!r) return makeError(ErrorCode::kNotFound, "no extract recipient " + recipient + " (see extract.recipients)");
  if (!r->rows()) return makeError(ErrorCode::kInvalid, "the recipient " + recipient + " receives no pseudonymised rows: it cannot send a baseline");
  return impl_->importBaseline(*r, text, by);
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
  if (method == "POST" && path == "/extracts/scheduled") {
    auto d = runDue(by);
    if (!d.ok()) return fhir::errorResponse(d.error());
    return answer(200, Json{{"extracts", d.value()}});
  }
  if (method == "GET" && path == "/extracts/progress") {
    std::lock_guard<std::mutex> lock(impl_->progressMutex);
    return answer(200, impl_->progress);
  }
  if (method == "POST" && path == "/extracts") {
    Json b = Json::parse(body.empty() ? "{}" : body, nullptr, false);
    if (!b.is_object()) return fhir::errorResponse(makeError(ErrorCode::kInvalid, "a JSON object is expected"));
    auto m = run(str(b, "recipient"), str(b, "from"), str(b, "to"), by, str(b, "kind").empty() ? "on-demand" : str(b, "kind"));
    if (!m.ok()) return fhir::errorResponse(m.error());
    return answer(200, m.value());
  }
  if (method == "POST" && path.size() > 15 && path.rfind("/extracts/", 0) == 0 && path.substr(path.size() - 5) == "/send") {
    auto q = send(path.substr(10, path.size() - 15), by);
    if (!q.ok()) return fhir::errorResponse(q.error());
    return answer(202, q.value());
  }
  const std::string baselines = "/extracts/baselines/";
  if (method == "POST" && path.rfind(baselines, 0) == 0 && path.size() > baselines.size()) {
    auto b = importBaseline(path.substr(baselines.size()), body, by);
    if (!b.ok()) return fhir::errorResponse(b.error());
    return answer(200, b.value());
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
