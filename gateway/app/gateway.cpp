// Wiring of store, FHIR service and HTTP front from the configuration.
#include "gateway/app/gateway.h"

#include "gateway/access/access_control.h"
#include "gateway/audit/audit_log.h"
#include "gateway/common/log.h"
#include "gateway/exchange/gp_connector.h"
#include "gateway/extract/extract_service.h"
#include "gateway/exchange/hospital_connector.h"
#include "gateway/exchange/outbox_admin.h"
#include "gateway/gate/gate.h"
#include "gateway/identity/identity.h"
#include "gateway/fhir/fhir_service.h"
#include "gateway/http/dev_certificate.h"
#include "gateway/http/http_server.h"
#include "gateway/network/network_service.h"
#include "gateway/search/reindex.h"
#include "gateway/store/resource_store.h"
#include "mappings/fhir/profiles/packages.h"
#include "mappings/fhir/profiles/profile_validator.h"
#include "mappings/fhir/validator.h"
#include "mappings/network/rules/calendar.h"

#include <condition_variable>
#include <fstream>
#include <mutex>
#include <nlohmann/json.hpp>
#include <sstream>
#include <filesystem>
#include <thread>

namespace passerelle::app {

struct Gateway::State {
  config::Config config;
  std::unique_ptr<store::ResourceStore> store;
  // FR Core, the network package and fhir.profile_packages (before fhir: the service points to them)
  std::unique_ptr<fhir::profiles::ProfileRegistry> profiles;
  std::unique_ptr<fhir::profiles::ProfileValidator> profileValidator;
  std::unique_ptr<fhir::FhirService> fhir;
  std::unique_ptr<network::NetworkService> network;
  std::unique_ptr<identity::TokenVerifier> verifier;
  std::unique_ptr<access::AccessControl> access;
  std::unique_ptr<audit::AuditLog> audit;
  std::unique_ptr<gate::AccessGate> gate;
  std::unique_ptr<http::Server> server;
  std::unique_ptr<exchange::HospitalConnector> hospitals;
  std::unique_ptr<exchange::GpConnector> gps;
  std::unique_ptr<extract::ExtractService> extracts;
  bool stopped = false;
  // the network's daily work (expired consents, overdue referrals), on its own thread
  std::thread sweeper;
  std::mutex sweepMutex;
  std::condition_variable sweepWake;
  bool sweepStop = false;
};

Gateway::Gateway() : s_(std::make_unique<State>()) {}

Gateway::~Gateway() { stop(); }

void configureLogging(const config::Config& config) {
  log::Level level = log::Level::kInfo;
  log::parseLevel(config.get("log.level"), level);
  log::setLevel(level);
  log::setJson(config.get("log.format") == "json");
}

Result<network::NetworkOptions> networkOptions(const config::Config& config) {
  network::NetworkOptions no;
  std::string rulesFile = config.get("network.rules_file");
  if (!rulesFile.empty()) {
    std::ifstream in(rulesFile);
    if (in) {
      std::stringstream text;
      text << in.rdbuf();
      nlohmann::ordered_json j = nlohmann::ordered_json::parse(text.str(), nullptr, false);
      std::string error;
      if (j.is_discarded()) return makeError(ErrorCode::kInvalid, "network.rules_file " + rulesFile + ": not JSON");
      if (!network::parseRuleConfig(j, no.rules, error))
        return makeError(ErrorCode::kInvalid, "network.rules_file " + rulesFile + ": " + error);
    } else if (config.source("network.rules_file") != "default") {
      return makeError(ErrorCode::kInvalid, "network.rules_file " + rulesFile + " cannot be read");
    }
  }
  no.today = config.get("network.today");
  no.fees.agreementDate = config.get("network.agreement_date");
  no.fees.agreementYears = static_cast<int>(config.getInt("network.agreement_years"));
  if (!no.today.empty() && !network::parseDate(no.today))
    return makeError(ErrorCode::kInvalid, "network.today must be YYYY-MM-DD");
  if (!network::parseDate(no.fees.agreementDate))
    return makeError(ErrorCode::kInvalid, "network.agreement_date must be YYYY-MM-DD");
  try {
    no.fees.cValue = std::stod(config.get("network.c_value_eur"));
  } catch (const std::exception&) {
    return makeError(ErrorCode::kInvalid, "network.c_value_eur must be a number");
  }
  return no;
}

// Identity, policy and audit trail: the gate every request passes.
Result<void> startGate(const config::Config& config, Gateway::State& st, const std::string& baseUrl) {
  bool production = config.get("deployment") == "production";
  gate::GateOptions go;
  go.enabled = config.getBool("access.enabled");
  go.fhirBaseUrl = baseUrl;
  if (!go.enabled) {
    if (production) return makeError(ErrorCode::kInvalid, "access.enabled=false is refused when deployment=production");
    log::warn("access.disabled", {{"note", "no identity, no access policy, no audit trail: for benchmark baselines only"}});
    st.gate = std::make_unique<gate::AccessGate>(go, nullptr, std::vector<identity::CertificateAccount>{}, nullptr, nullptr, *st.fhir);
    return {};
  }
  identity::TrustOptions to;
  to.issuer = config.get("auth.issuer");
  to.audience = config.get("auth.audience");
  to.keysDir = config.get("auth.keys_dir");
  to.dataDir = config.get("data.dir");
  to.trustDevKey = config.getBool("auth.trust_dev_key");
  to.clockSkewSeconds = static_cast<int>(config.getInt("auth.clock_skew_seconds"));
  to.maxTokenSeconds = static_cast<int>(config.getInt("auth.max_token_seconds"));
  if (production && to.trustDevKey)
    return makeError(ErrorCode::kInvalid, "auth.trust_dev_key must be false when deployment=production (trust keys in auth.keys_dir)");
  auto verifier = identity::TokenVerifier::create(to);
  if (!verifier.ok()) return makeError(verifier.error().code, "auth: " + verifier.error().message);
  st.verifier = std::move(verifier.value());
  auto accounts = identity::loadAccounts(config.get("auth.accounts_file"));
  if (!accounts.ok()) return makeError(accounts.error().code, "auth.accounts_file: " + accounts.error().message);
  auto policy = access::Policy::load(config.get("access.policy_file"));
  if (!policy.ok()) return makeError(policy.error().code, "access.policy_file: " + policy.error().message);
  st.access = std::make_unique<access::AccessControl>(*st.store, std::move(policy.value()));
  st.access->setToday(config.get("network.today"));
  audit::Options ao;
  ao.url = config.get("audit.url");
  if (ao.url.empty()) ao.url = "sqlite:" + config.get("data.dir") + "/audit.db";
  // A write's record is chained once by its origin, its row in the store's outbox: gateways that
  // share a trail in PostgreSQL share their store there too, or two stores' rows would take one
  // origin and one of the records would not be chained.
  auto isPostgres = [](const std::string& url) { return url.rfind("postgresql://", 0) == 0 || url.rfind("postgres://", 0) == 0; };
  if (isPostgres(ao.url) && !isPostgres(config.get("storage.url")))
    return makeError(ErrorCode::kInvalid, "audit.url on PostgreSQL needs storage.url on PostgreSQL too (the store shared by "
                                          "the gateways that share the audit trail)");
  ao.checkpointDir = config.get("audit.checkpoint_dir");
  if (ao.checkpointDir.empty()) ao.checkpointDir = config.get("data.dir") + "/audit-checkpoints";
  ao.signingKey = config.get("audit.signing_key");
  ao.checkpointRecords = config.getInt("audit.checkpoint_records");
  ao.checkpointSeconds = static_cast<int>(config.getInt("audit.checkpoint_seconds"));
  ao.production = production;
  auto log = audit::AuditLog::open(ao);
  if (!log.ok()) return makeError(log.error().code, "audit: " + log.error().message);
  st.audit = std::move(log.value());
  // Writes commit their audit record in the store (one fsync for both); the trail chains them from
  // there, takes those a crash left behind, and lets the store delete what it holds.
  store::ResourceStore* store = st.store.get();
  audit::AuditLog* trail = st.audit.get();
  st.audit->onCommittedChained([store](std::int64_t id) { store->releaseAuditRecords(id); });
  st.store->setAuditSink([trail](std::vector<store::OutboxRecord>&& records) {
    std::vector<audit::AuditLog::Committed> c;
    c.reserve(records.size());
    for (auto& r : records) c.push_back({r.id, std::move(r.record)});
    trail->appendCommitted(std::move(c));
  });
  auto pending = st.store->pendingAuditRecords();
  if (!pending.ok()) return makeError(pending.error().code, "audit: the store's pending records: " + pending.error().message);
  std::vector<audit::AuditLog::Committed> adopt;
  for (auto& r : pending.value()) adopt.push_back({r.id, std::move(r.record)});
  if (auto a = st.audit->adoptCommitted(std::move(adopt)); !a.ok()) return makeError(a.error().code, "audit: " + a.error().message);
  st.gate = std::make_unique<gate::AccessGate>(go, st.verifier.get(), std::move(accounts.value()), st.access.get(), st.audit.get(),
                                               *st.fhir);
  return {};
}

// Who may use the network's document API, from the policy's networkApi table.
void networkAccess(access::AccessControl& ac, network::NetworkOptions& no) {
  using Refusal = network::NetworkOptions::Refusal;
  const access::NetworkApiRules& net = ac.policy().networkApi();
  auto refuse = [](const std::string& why) { return Refusal(fhir::errorResponse(makeError(ErrorCode::kForbidden, "access denied: " + why))); };
  no.authorizeSubmit = [&net, refuse](const fhir::FhirRequest& req, const std::string& kind,
                                      const std::function<std::string(const std::string&)>& fieldKey) -> Refusal {
    if (!req.principal) return std::nullopt;
    const identity::Principal& p = *req.principal;
    if (net.onBehalf.count(p.role)) return std::nullopt;
    auto rule = net.submit.find(kind);
    if (rule == net.submit.end() || !rule->second.roles.count(p.role))
      return refuse("the role " + p.role + " may not send " + kind + " documents");
    if (rule->second.author.empty()) return std::nullopt;
    std::string fields;
    for (const auto& f : rule->second.author) {
      if (!p.practitioner.empty() && fieldKey(f) == p.practitioner) return std::nullopt;
      fields += (fields.empty() ? "" : " or ") + f;
    }
    return refuse("the document's " + fields + " must be the caller (" + (p.practitioner.empty() ? "no professional identifier in the token" : p.practitioner) + ")");
  };
  no.authorizeDossier = [&net, refuse](const fhir::FhirRequest& req, const std::string& patientId) -> Refusal {
    if (!req.principal || !req.guard) return std::nullopt;
    if (!net.onBehalf.count(req.principal->role) && !net.dossier.count(req.principal->role))
      return refuse("the role " + req.principal->role + " may not read a patient's dossier");
    store::ResourceVersion v;
    v.type = "Patient";
    v.id = patientId;
    auto ok = req.guard->readable({v});
    if (!ok.ok()) return Refusal(fhir::errorResponse(ok.error()));
    if (!ok->front()) return Refusal(fhir::errorResponse(makeError(ErrorCode::kNotFound, "no such patient")));
    req.guard->touched(v);
    return std::nullopt;
  };
  no.authorizeSweep = [&net, refuse](const fhir::FhirRequest& req) -> Refusal {
    if (!req.principal || net.onBehalf.count(req.principal->role) || net.sweep.count(req.principal->role)) return std::nullopt;
    return refuse("the daily sweep is run by the gateway or a system account");
  };
}

// The hospital exchange: partners, the MLLP listener (mllp.port >= 0), the outbox senders.
Result<void> startHospitalConnector(const config::Config& config, Gateway::State& st) {
  auto partners = exchange::loadPartners(config.get("partners.dir"));
  if (!partners.ok()) return makeError(partners.error().code, "partners.dir: " + partners.error().message);
  exchange::ConnectorOptions co;
  co.production = config.get("deployment") == "production";
  co.listen = config.getInt("mllp.port") >= 0;
  co.host = config.get("mllp.host");
  co.port = static_cast<int>(std::max<std::int64_t>(0, config.getInt("mllp.port")));
  co.maxFrameBytes = static_cast<std::size_t>(config.getInt("mllp.max_frame_bytes"));
  co.idleTimeoutSeconds = static_cast<int>(config.getInt("mllp.idle_timeout_seconds"));
  co.maxConnections = static_cast<int>(config.getInt("mllp.max_connections"));
  co.send = config.getBool("outbox.enabled");
  if (!config.get("mllp.tls_certificate").empty()) {
    mllp::TlsSettings t;
    t.certificate = config.get("mllp.tls_certificate");
    t.privateKey = config.get("mllp.tls_private_key");
    t.caFile = config.get("mllp.client_ca");
    t.requirePeerCertificate = !t.caFile.empty();
    co.tls = t;
  }
  if (partners->empty() && !co.listen) return {};
  auto hc = exchange::HospitalConnector::start(*st.store, *st.fhir, st.gate.get(), st.access.get(), st.audit.get(),
                                               std::move(partners.value()), co);
  if (!hc.ok()) return hc.error();
  st.hospitals = std::move(hc.value());
  if (co.listen) log::info("mllp.listening", {{"host", co.host}, {"port", std::to_string(st.hospitals->mllpPort())},
                                              {"tls", co.tls ? "yes" : "no"}});
  return {};
}

// The GP software exchange: one watched folder per installation of conf/gp/.
Result<void> startGpConnector(const config::Config& config, Gateway::State& st) {
  auto installations = exchange::loadGpInstallations(config.get("gp.dir"), config.get("data.dir"));
  if (!installations.ok()) return makeError(installations.error().code, "gp.dir: " + installations.error().message);
  if (installations->empty()) return {};
  std::shared_ptr<cda::Schema> schema;
  if (std::string path = config.get("cda.schema"); !path.empty()) {
    std::string error;
    schema = cda::Schema::load(path, error, config.get("cda.schema_components"));
    if (!schema) return makeError(ErrorCode::kInvalid, "cda.schema: " + error);
  }
  auto gc = exchange::GpConnector::start(*st.store, *st.fhir, st.gate.get(), st.access.get(), st.audit.get(), std::move(installations.value()),
                                         config.getBool("gp.watch"), config.getBool("outbox.enabled"), std::move(schema));
  if (!gc.ok()) return gc.error();
  st.gps = std::move(gc.value());
  for (const auto& g : st.gps->installations())
    log::info("gp.watching", {{"installation", g.id}, {"folder", g.folder}});
  return {};
}

Result<std::unique_ptr<Gateway>> Gateway::start(const config::Config& config) {
  std::unique_ptr<Gateway> g(new Gateway());
  g->s_->config = config;
  store::StoreOptions so;
  so.readers = static_cast<int>(config.getInt("store.readers"));
  so.maxGroup = static_cast<int>(config.getInt("store.max_group"));
  so.commitDelayMicros = static_cast<int>(config.getInt("store.commit_delay_us"));
  auto st = store::openStore(config.get("storage.url"), so);
  if (!st.ok()) return makeError(st.error().code, "storage.url: " + st.error().message);
  g->s_->store = std::move(st.value());
  // Index rows made under other search definitions (or none, after a migration) are rebuilt
  // before the first request.
  std::string baseUrl = config.get("fhir.base_url");
  while (!baseUrl.empty() && baseUrl.back() == '/') baseUrl.pop_back();
  auto ri = search::reindexIfNeeded(*g->s_->store, baseUrl, false);
  if (!ri.ok()) return makeError(ri.error().code, "search index: " + ri.error().message);

  fhir::FhirServiceOptions fo;
  fo.json.maxDepth = static_cast<int>(config.getInt("limits.json_depth"));
  fo.search.defaultCount = static_cast<int>(config.getInt("fhir.default_count"));
  fo.search.maxCount = static_cast<int>(config.getInt("fhir.max_count"));
  fo.maxBundleEntries = static_cast<int>(config.getInt("fhir.max_bundle_entries"));
  fhir::Validator::instance();  // load the validation tables before the first request
  {
    std::vector<std::string> extra;
    std::stringstream list(config.get("fhir.profile_packages"));
    for (std::string dir; std::getline(list, dir, ',');) {
      dir.erase(0, dir.find_first_not_of(" \t"));
      dir.erase(dir.find_last_not_of(" \t") + 1);
      if (!dir.empty()) extra.push_back(dir);
    }
    g->s_->profiles = std::make_unique<fhir::profiles::ProfileRegistry>();
    std::string error;
    if (!fhir::profiles::loadPackages(*g->s_->profiles, fhir::profiles::findFrCore(config.get("fhir.fr_core")), extra, error))
      return makeError(ErrorCode::kInvalid, "fhir.profile_packages: " + error);
    fo.policy.refuseExampleUrls = config.getBool("fhir.refuse_example_urls");
    fo.policy.refuseUnknownExtensions = config.get("fhir.unknown_extensions") == "refuse";
    std::stringstream domains(config.get("fhir.allowed_extension_domains"));
    for (std::string d; std::getline(domains, d, ',');) {
      d.erase(0, d.find_first_not_of(" \t"));
      d.erase(d.find_last_not_of(" \t") + 1);
      if (!d.empty()) fo.policy.allowedExtensionDomains.push_back(d);
    }
    g->s_->profileValidator = std::make_unique<fhir::profiles::ProfileValidator>(*g->s_->profiles, fo.policy);
    fo.profiles = g->s_->profileValidator.get();
    fo.validateProfiles = config.getBool("fhir.validate_profiles");
  }
  g->s_->fhir = std::make_unique<fhir::FhirService>(*g->s_->store, fo);
  std::string publicBase = config.get("fhir.base_url");
  while (!publicBase.empty() && publicBase.back() == '/') publicBase.pop_back();
  auto gs = startGate(config, *g->s_, publicBase);
  if (!gs.ok()) return gs.error();
  auto no = networkOptions(config);
  if (!no.ok()) return no.error();
  no.value().json = fo.json;
  if (g->s_->access) networkAccess(*g->s_->access, no.value());
  g->s_->network = std::make_unique<network::NetworkService>(*g->s_->store, *g->s_->fhir, no.value());
  // Before anything writes concurrently (the sweeper, the listeners): it routes writes to the outbox.
  auto hc = startHospitalConnector(config, *g->s_);
  if (!hc.ok()) return hc.error();
  auto gc = startGpConnector(config, *g->s_);
  if (!gc.ok()) return gc.error();
  // Both connectors route what is written to their outboxes, in the writer's unit.
  if (g->s_->hospitals && g->s_->gps) {
    exchange::HospitalConnector* h = g->s_->hospitals.get();
    exchange::GpConnector* gp = g->s_->gps.get();
    g->s_->store->setWriteObserver([h, gp](store::WriteTxn& t, const store::ResourceVersion& v) -> Result<void> {
      auto r = h->route(t, v);
      if (!r.ok()) return r;
      return gp->route(t, v);
    });
    g->s_->store->setDeliveryListener([h, gp] {
      h->wake();
      gp->wake();
    });
  } else if (exchange::GpConnector* gp = g->s_->gps.get()) {
    g->s_->store->setWriteObserver([gp](store::WriteTxn& t, const store::ResourceVersion& v) { return gp->route(t, v); });
    g->s_->store->setDeliveryListener([gp] { gp->wake(); });
  }

  http::ServerOptions ho;
  ho.httpEnabled = config.getBool("http.enabled");
  ho.httpHost = config.get("http.host");
  ho.httpPort = static_cast<int>(config.getInt("http.port"));
  ho.httpsEnabled = config.getBool("https.enabled");
  ho.httpsHost = config.get("https.host");
  ho.httpsPort = static_cast<int>(config.getInt("https.port"));
  ho.certificatePath = config.get("https.certificate");
  ho.privateKeyPath = config.get("https.private_key");
  if (ho.httpsEnabled && ho.certificatePath.empty()) {
    ho.certificatePath = config.get("data.dir") + "/tls/dev-server.crt";
    ho.privateKeyPath = config.get("data.dir") + "/tls/dev-server.key";
    auto dc = http::ensureDevCertificate(ho.certificatePath, ho.privateKeyPath);
    if (!dc.ok()) return makeError(dc.error().code, "https.certificate (development): " + dc.error().message);
    log::warn("https.dev_certificate", {{"certificate", ho.certificatePath},
                                        {"note", "self-signed, for development only; set https.certificate in production"}});
  }
  ho.maxBodyBytes = static_cast<std::size_t>(config.getInt("limits.body_bytes"));
  ho.threads = static_cast<int>(config.getInt("server.threads"));
  ho.queue = static_cast<int>(config.getInt("server.queue"));
  ho.keepAliveSeconds = static_cast<int>(config.getInt("server.keepalive_seconds"));
  ho.baseUrl = config.get("fhir.base_url");
  while (!ho.baseUrl.empty() && ho.baseUrl.back() == '/') ho.baseUrl.pop_back();
  g->s_->server = std::make_unique<http::Server>(*g->s_->fhir, *g->s_->store);
  network::NetworkService* ns = g->s_->network.get();
  g->s_->server->mount("/network/v1", [ns](const fhir::FhirRequest& r) { return ns->handle(r); });
  // Evaluation extracts (conf/extracts/): computed through the gate as the gateway's job.
  if (std::string recipients = config.get("extract.recipients"); !recipients.empty() && std::filesystem::exists(recipients)) {
    extract::ExtractService::Options eo;
    eo.dataDir = config.get("data.dir");
    eo.recipientsFile = recipients;
    eo.indicatorsFile = config.get("extract.indicators");
    eo.tariffsFile = config.get("extract.tariffs");
    eo.signingCertificate = config.get("extract.signing_certificate");
    eo.signingKey = config.get("extract.signing_key");
    eo.experimentStart = config.get("extract.experiment_start");
    eo.today = config.get("network.today");
    eo.scheduleIntervalSeconds = config.getInt("extract.schedule_interval_seconds");
    if (g->s_->access)
      for (const auto& [name, role] : g->s_->access->policy().roles()) eo.roles.push_back(name);
    eo.production = config.get("deployment") == "production";
    eo.generator = "passerelle " PASSERELLE_VERSION_TEXT;
    auto es = extract::ExtractService::start(eo, g->s_->gate.get(), *g->s_->fhir, g->s_->audit.get(), *g->s_->store);
    if (!es.ok()) return makeError(es.error().code, "extract: " + es.error().message);
    g->s_->extracts = std::move(es.value());
  }
  // The message store's admin API: system accounts only (through the gate, audited).
  store::ResourceStore* storePtr = g->s_->store.get();
  exchange::GpConnector* gps = g->s_->gps.get();
  extract::ExtractService* extracts = g->s_->extracts.get();
  g->s_->server->mount("/admin/v1", [storePtr, gps, extracts](const fhir::FhirRequest& r) {
    if (r.principal && r.principal->role != "system")
      return fhir::errorResponse(makeError(ErrorCode::kForbidden, "access denied: the message store is administered by system accounts"));
    if (r.path == "/extracts" || r.path.rfind("/extracts/", 0) == 0) {
      if (!extracts) return fhir::errorResponse(makeError(ErrorCode::kNotFound, "no extract recipients are configured (extract.recipients)"));
      return extracts->handle(r.method, r.path, r.body, r.principal);
    }
    // The review queue of the GP files: POST /inbox/{id}/attach {"patient": "Patient/x"} or /reject {"reason": "..."}.
    if (r.method == "POST" && r.path.rfind("/inbox/", 0) == 0) {
      auto slash = r.path.find('/', 7);
      std::string action = slash == std::string::npos ? "" : r.path.substr(slash + 1);
      std::int64_t id = std::atoll(r.path.substr(7, slash == std::string::npos ? std::string::npos : slash - 7).c_str());
      if ((action == "attach" || action == "reject") && id > 0) {
        if (!gps) return fhir::errorResponse(makeError(ErrorCode::kNotFound, "no GP installation is configured (gp.dir)"));
        nlohmann::json body = nlohmann::json::parse(r.body.empty() ? "{}" : r.body, nullptr, false);
        if (!body.is_object()) return fhir::errorResponse(makeError(ErrorCode::kInvalid, "a JSON object is expected"));
        if (action == "attach") return gps->attach(id, body.value("patient", ""), r.principal);
        return gps->reject(id, body.value("reason", ""), r.principal);
      }
    }
    return exchange::adminRequest(*storePtr, r);
  });
  if (int every = static_cast<int>(config.getInt("network.sweep_interval_seconds")); every > 0) {
    State* st = g->s_.get();
    store::ResourceStore* sweepStore = g->s_->store.get();
    st->sweeper = std::thread([st, ns, every, sweepStore] {
      // The daily work runs as the gateway's system account through the gate: the same access
      // decisions and an audit record naming the patients it changed.
      identity::Principal job;
      job.subject = job.account = "passerelle";
      job.role = "system";
      job.purpose = "HOPERAT";
      job.scopes = {"system/*.cruds"};
      job.tokenId = "gateway";
      std::unique_lock<std::mutex> lock(st->sweepMutex);
      while (!st->sweepStop) {
        lock.unlock();
        // Gateways sharing a database sweep once per period between them: the one that claims it.
        std::int64_t now = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch()).count();
        auto claimed = sweepStore->claimJob("network.sweep", now, static_cast<std::int64_t>(every) * 900);
        if (!claimed.ok()) log::warn("network.sweep", {{"error", claimed.error().message}});
        if (claimed.ok() && claimed.value()) {
          http::Caller caller;
          caller.connector = &job;
          caller.channel = "job:sweep";
          fhir::FhirRequest req;
          req.method = "POST";
          req.path = "/$sweep";
          auto r = st->gate->handle(caller, req, "/network/v1", [ns](fhir::FhirRequest& q) { return ns->handle(q); });
          if (r.status >= 300) log::warn("network.sweep", {{"status", std::to_string(r.status)}, {"body", r.body}});
          else log::info("network.sweep", {{"result", r.body}});
        }
        lock.lock();
        st->sweepWake.wait_for(lock, std::chrono::seconds(every), [st] { return st->sweepStop; });
      }
    });
  }
  g->s_->server->setGate(g->s_->gate.get());
  ho.clientCaPath = config.get("https.client_ca");
  ho.searchTimeoutMs = static_cast<int>(config.getInt("search.timeout_ms"));
  if (audit::AuditLog* trail = g->s_->audit.get()) {
    exchange::HospitalConnector* hospitals = g->s_->hospitals.get();
    g->s_->server->setExtraMetrics([trail, hospitals] {
      return "# HELP passerelle_audit_failures_total Audit records that could not be written (their requests were refused).\n"
             "# TYPE passerelle_audit_failures_total counter\npasserelle_audit_failures_total " +
             std::to_string(trail->failures()) + "\n" + (hospitals ? hospitals->metrics() : std::string());
    });
  }
  auto started = g->s_->server->start(ho);
  if (!started.ok()) return started.error();
  return g;
}

int Gateway::httpPort() const { return s_->server ? s_->server->httpPort() : 0; }
int Gateway::httpsPort() const { return s_->server ? s_->server->httpsPort() : 0; }
int Gateway::mllpPort() const { return s_->hospitals ? s_->hospitals->mllpPort() : 0; }

void Gateway::stop() {
  if (s_->stopped) return;
  s_->stopped = true;
  if (s_->sweeper.joinable()) {
    {
      std::lock_guard<std::mutex> lock(s_->sweepMutex);
      s_->sweepStop = true;
    }
    s_->sweepWake.notify_all();
    s_->sweeper.join();
  }
  if (s_->gps) s_->gps->stop();
  if (s_->hospitals) s_->hospitals->stop();
  if (s_->extracts) s_->extracts->stop();
  if (s_->server) s_->server->stop(static_cast<int>(s_->config.getInt("server.drain_seconds")));
  if (s_->audit) s_->audit->close();
  if (s_->store) s_->store->close();
}

}  // namespace passerelle::app
