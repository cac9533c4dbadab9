// Wiring of store, FHIR service and HTTP front from the configuration.
#include "gateway/app/gateway.h"

#include "gateway/common/log.h"
#include "gateway/fhir/fhir_service.h"
#include "gateway/http/dev_certificate.h"
#include "gateway/http/http_server.h"
#include "gateway/network/network_service.h"
#include "gateway/search/reindex.h"
#include "gateway/store/resource_store.h"
#include "mappings/fhir/validator.h"
#include "mappings/network/rules/calendar.h"

#include <condition_variable>
#include <fstream>
#include <mutex>
#include <nlohmann/json.hpp>
#include <sstream>
#include <thread>

namespace passerelle::app {

struct Gateway::State {
  config::Config config;
  std::unique_ptr<store::ResourceStore> store;
  std::unique_ptr<fhir::FhirService> fhir;
  std::unique_ptr<network::NetworkService> network;
  std::unique_ptr<http::Server> server;
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
  g->s_->fhir = std::make_unique<fhir::FhirService>(*g->s_->store, fo);
  auto no = networkOptions(config);
  if (!no.ok()) return no.error();
  no.value().json = fo.json;
  g->s_->network = std::make_unique<network::NetworkService>(*g->s_->store, *g->s_->fhir, no.value());

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
  if (int every = static_cast<int>(config.getInt("network.sweep_interval_seconds")); every > 0) {
    State* st = g->s_.get();
    st->sweeper = std::thread([st, ns, every] {
      std::unique_lock<std::mutex> lock(st->sweepMutex);
      while (!st->sweepStop) {
        lock.unlock();
        auto r = ns->sweep("");
        if (r.status >= 300) log::warn("network.sweep", {{"status", std::to_string(r.status)}, {"body", r.body}});
        else log::info("network.sweep", {{"result", r.body}});
        lock.lock();
        st->sweepWake.wait_for(lock, std::chrono::seconds(every), [st] { return st->sweepStop; });
      }
    });
  }
  auto started = g->s_->server->start(ho);
  if (!started.ok()) return started.error();
  return g;
}

int Gateway::httpPort() const { return s_->server ? s_->server->httpPort() : 0; }
int Gateway::httpsPort() const { return s_->server ? s_->server->httpsPort() : 0; }

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
  if (s_->server) s_->server->stop(static_cast<int>(s_->config.getInt("server.drain_seconds")));
  if (s_->store) s_->store->close();
}

}  // namespace passerelle::app
