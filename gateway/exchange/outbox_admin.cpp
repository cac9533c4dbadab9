// The message store's admin API and command line.
#include "gateway/exchange/outbox_admin.h"

#include "connectors/http/rest_client.h"

#include <nlohmann/json.hpp>

#include <chrono>
#include <iostream>

#include "gateway/config/config.h"

extern char** environ;

namespace passerelle::exchange {
namespace {

using Json = nlohmann::json;

std::int64_t nowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

Json deliveryJson(const store::Delivery& d) {
  Json j = {{"id", d.id},           {"destination", d.destination}, {"orderKey", d.orderKey}, {"kind", d.kind},
            {"focus", d.focus},     {"status", d.status},           {"attempts", d.attempts}, {"createdMs", d.createdMs},
            {"nextTryMs", d.nextTryMs}};
  if (d.doneMs) j["doneMs"] = d.doneMs;
  if (!d.lastError.empty()) j["lastError"] = d.lastError;
  return j;
}

Json inboxJson(const store::InboxMessage& m, bool withMessage) {
  Json j = {{"id", m.id},         {"channel", m.channel}, {"partner", m.partner}, {"controlId", m.controlId},
            {"type", m.type},     {"status", m.status},   {"ackCode", m.ackCode}, {"receivedMs", m.receivedMs}};
  if (!m.patient.empty()) j["patient"] = m.patient;
  if (!m.detail.empty()) j["detail"] = m.detail;
  if (withMessage) {
    // As text, the segments on lines (HL7 v2 is UTF-8 once read; bytes that are not stay escaped by the JSON writer).
    std::string text = m.message;
    for (char& c : text)
      if (c == '\r') c = '\n';
    j["message"] = text;
  }
  return j;
}

fhir::FhirResponse json(int status, const Json& body) {
  fhir::FhirResponse r;
  r.status = status;
  r.body = body.dump(-1, ' ', false, Json::error_handler_t::replace);
  r.headers.emplace_back("Content-Type", "application/json");
  return r;
}

fhir::FhirResponse problem(int status, const std::string& code, const std::string& text) {
  return json(status, {{"resourceType", "OperationOutcome"},
                       {"issue", Json::array({{{"severity", "error"}, {"code", code}, {"diagnostics", text}}})}});
}

std::string param(const fhir::FhirRequest& r, const std::string& name) {
  for (const auto& [k, v] : r.query)
    if (k == name) return v;
  return {};
}

}  // namespace

Result<store::Delivery> retryDelivery(store::ResourceStore& store, std::int64_t id) {
  store::Delivery out;
  auto w = store.write([&](store::WriteTxn& t) -> Result<void> {
    auto d = t.delivery(id);
    if (!d.ok()) return d.error();
    if (!d->has_value()) return makeError(ErrorCode::kNotFound, "no delivery " + std::to_string(id));
    store::Delivery x = **d;
    if (x.status != "dead" && x.status != "cancelled")
      return makeError(ErrorCode::kConflict, "delivery " + std::to_string(id) + " is " + x.status + ": only dead or cancelled ones are retried");
    x.status = "queued";
    x.attempts = 0;
    x.nextTryMs = nowMs();
    x.doneMs = 0;
    x.lastError = "retried by an operator after: " + x.lastError;
    out = x;
    return t.updateDelivery(x);
  });
  if (!w.ok()) return w.error();
  return out;
}

fhir::FhirResponse adminRequest(store::ResourceStore& store, const fhir::FhirRequest& req) {
  std::string path = req.path;
  int count = 100;
  if (auto c = param(req, "_count"); !c.empty()) count = std::max(1, std::min(1000, std::atoi(c.c_str())));
  if (path == "/outbox" || path == "/outbox/dead-letters") {
    if (req.method != "GET") return problem(405, "not-supported", "GET lists the deliveries");
    store::DeliveryFilter f;
    f.destination = param(req, "destination");
    f.status = path == "/outbox" ? param(req, "status") : "dead";
    f.beforeId = std::atoll(param(req, "before").c_str());
    f.limit = count;
    auto list = store.listDeliveries(f);
    if (!list.ok()) return problem(503, "transient", list.error().message);
    auto counts = store.deliveryCounts();
    if (!counts.ok()) return problem(503, "transient", counts.error().message);
    Json out = {{"deliveries", Json::array()}, {"destinations", Json::array()}};
    for (const auto& d : list.value()) out["deliveries"].push_back(deliveryJson(d));
    for (const auto& c : counts.value())
      out["destinations"].push_back({{"destination", c.destination}, {"queued", c.queued}, {"sent", c.sent}, {"dead", c.dead},
                                     {"cancelled", c.cancelled}, {"oldestQueuedMs", c.oldestQueuedMs}});
    return json(200, out);
  }
  if (path.rfind("/outbox/", 0) == 0 && path.size() > 14 && path.compare(path.size() - 6, 6, "/retry") == 0) {
    if (req.method != "POST") return problem(405, "not-supported", "POST /outbox/{id}/retry");
    std::int64_t id = std::atoll(path.substr(8, path.size() - 14).c_str());
    auto r = retryDelivery(store, id);
    if (!r.ok()) {
      int status = r.error().code == ErrorCode::kNotFound ? 404 : r.error().code == ErrorCode::kConflict ? 409 : 503;
      return problem(status, status == 404 ? "not-found" : status == 409 ? "conflict" : "transient", r.error().message);
    }
    return json(200, deliveryJson(r.value()));
  }
  if (path == "/inbox") {
    if (req.method != "GET") return problem(405, "not-supported", "GET lists the received messages");
    auto list = store.listInbox(param(req, "status"), count);
    if (!list.ok()) return problem(503, "transient", list.error().message);
    bool withMessage = param(req, "message") == "true";
    Json out = {{"messages", Json::array()}};
    for (const auto& m : list.value()) out["messages"].push_back(inboxJson(m, withMessage));
    return json(200, out);
  }
  return problem(404, "not-found", "admin: GET /outbox, /outbox/dead-letters, /inbox; POST /outbox/{id}/retry");
}

namespace {

int storeCommand(int argc, char** argv, const char* name, const std::string& usage,
                 const std::function<int(store::ResourceStore&, const std::vector<std::string>&)>& run) {
  std::vector<std::string> args, sets;
  std::string configFile;
  for (int i = 2; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--help" || a == "-h") {
      std::cout << usage;
      return 0;
    }
    if (a == "--config" && i + 1 < argc) configFile = argv[++i];
    else if (a == "--set" && i + 1 < argc) sets.push_back(argv[++i]);
    else if (a.rfind("--", 0) == 0 && a.find('=') != std::string::npos && a.rfind("--set=", 0) == 0) sets.push_back(a.substr(6));
    else if (a.rfind("--", 0) == 0 && a.find('=') == std::string::npos) args.push_back(a);
    else args.push_back(a);
  }
  if (args.empty()) {
    std::cerr << usage;
    return 2;
  }
  auto cfg = config::Config::load(configFile, sets, environ);
  if (!cfg.ok()) {
    std::cerr << "passerelle " << name << ": configuration error: " << cfg.error().message << "\n";
    return 2;
  }
  auto st = store::openStore(cfg->get("storage.url"), store::StoreOptions{});
  if (!st.ok()) {
    std::cerr << "passerelle " << name << ": storage.url: " << st.error().message << "\n";
    return 1;
  }
  int rc = run(*st.value(), args);
  st.value()->close();
  return rc;
}

}  // namespace

int outboxCommand(int argc, char** argv) {
  static const std::string usage =
      "Usage: passerelle outbox list [--destination ID] [--status queued|sent|dead|cancelled] [--count N]\n"
      "       passerelle outbox dead-letters [--destination ID]\n"
      "       passerelle outbox retry ID\n"
      "       (each with [--config FILE] [--set key=value ...])\n\n"
      "  list          the deliveries, newest first, as JSON lines, then the counts per destination\n"
      "  dead-letters  the deliveries given up after their tries (or refused by the partner)\n"
      "  retry ID      queues a dead or cancelled delivery again (a running gateway sends it within a second)\n";
  return storeCommand(argc, argv, "outbox", usage, [](store::ResourceStore& s, const std::vector<std::string>& a) {
    const std::string& sub = a[0];
    if (sub == "retry") {
      if (a.size() != 2) {
        std::cerr << "passerelle outbox retry: give the delivery's id\n";
        return 2;
      }
      auto r = retryDelivery(s, std::atoll(a[1].c_str()));
      if (!r.ok()) {
        std::cerr << "passerelle outbox retry: " << r.error().message << "\n";
        return 1;
      }
      std::cout << deliveryJson(r.value()).dump() << "\n";
      return 0;
    }
    if (sub != "list" && sub != "dead-letters") {
      std::cerr << "passerelle outbox: unknown subcommand '" << sub << "' (see --help)\n";
      return 2;
    }
    store::DeliveryFilter f;
    f.status = sub == "dead-letters" ? "dead" : "";
    for (std::size_t i = 1; i + 1 < a.size(); i += 2) {
      if (a[i] == "--destination") f.destination = a[i + 1];
      else if (a[i] == "--status") f.status = a[i + 1];
      else if (a[i] == "--count") f.limit = std::atoi(a[i + 1].c_str());
      else {
        std::cerr << "passerelle outbox: unexpected argument '" << a[i] << "'\n";
        return 2;
      }
    }
    auto list = s.listDeliveries(f);
    auto counts = s.deliveryCounts();
    if (!list.ok() || !counts.ok()) {
      std::cerr << "passerelle outbox: " << (list.ok() ? counts.error().message : list.error().message) << "\n";
      return 1;
    }
    for (const auto& d : list.value()) std::cout << deliveryJson(d).dump() << "\n";
    for (const auto& c : counts.value())
      std::cout << "# " << c.destination << ": queued " << c.queued << ", sent " << c.sent << ", dead " << c.dead << ", cancelled "
                << c.cancelled << "\n";
    return 0;
  });
}

namespace {

// `passerelle inbox attach|reject`: a review decision, made by the running gateway (its admin API)
// so that the file is imported through the same access decisions and audit as any import.
int reviewCommand(int argc, char** argv) {
  std::vector<std::string> args, sets;
  std::string configFile, url, token, reason;
  for (int i = 2; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--config" && i + 1 < argc) configFile = argv[++i];
    else if (a == "--set" && i + 1 < argc) sets.push_back(argv[++i]);
    else if (a == "--url" && i + 1 < argc) url = argv[++i];
    else if (a == "--token" && i + 1 < argc) token = argv[++i];
    else if (a == "--reason" && i + 1 < argc) reason = argv[++i];
    else if (a.rfind("--", 0) == 0) {
      std::cerr << "passerelle inbox: unexpected option '" << a << "'\n";
      return 2;
    } else args.push_back(a);
  }
  bool attach = args[0] == "attach";
  if (args.size() != (attach ? 3u : 2u) || std::atoll(args[1].c_str()) <= 0) {
    std::cerr << "passerelle inbox: " << (attach ? "attach ID Patient/<id>" : "reject ID [--reason TEXT]") << " expected\n";
    return 2;
  }
  http_client::Options o;
  if (!adminClientOptions("passerelle inbox", configFile, sets, url, token, o)) return 2;
  http_client::RestClient client(o);
  Json body = attach ? Json{{"patient", args[2]}} : Json{{"reason", reason}};
  auto r = client.post("/inbox/" + args[1] + "/" + args[0], body.dump(), "application/json");
  if (r.status == 0) {
    std::cerr << "passerelle inbox: " << o.baseUrl << ": " << r.error << "\n";
    return 1;
  }
  (r.status == 200 ? std::cout : std::cerr) << r.body << "\n";
  return r.status == 200 ? 0 : 1;
}

}  // namespace

bool adminClientOptions(const std::string& command, const std::string& configFile, const std::vector<std::string>& sets, std::string url,
                        std::string token, http_client::Options& out) {
  if (token.empty())
    if (const char* t = std::getenv("PASSERELLE_TOKEN")) token = t;
  if (token.empty()) {
    std::cerr << command << ": a system account's token is needed (--token, or PASSERELLE_TOKEN)\n";
    return false;
  }
  if (url.empty()) {
    auto cfg = config::Config::load(configFile, sets, environ);
    if (!cfg.ok()) {
      std::cerr << command << ": configuration error: " << cfg.error().message << "\n";
      return false;
    }
    url = "http://" + cfg->get("http.host") + ":" + std::to_string(cfg->getInt("http.port"));
  }
  while (!url.empty() && url.back() == '/') url.pop_back();
  out.baseUrl = url + "/admin/v1";
  out.bearerToken = token;
  return true;
}

int inboxCommand(int argc, char** argv) {
  static const std::string usage =
      "Usage: passerelle inbox list [--status processed|error|rejected|review] [--count N] [--message]\n"
      "       passerelle inbox attach ID Patient/<id> [--url URL] [--token T]\n"
      "       passerelle inbox reject ID [--reason TEXT] [--url URL] [--token T]\n"
      "       (with [--config FILE] [--set key=value ...])\n\n"
      "  list    the messages and files received, newest first, as JSON lines (--message: with their text)\n"
      "  attach  a GP file held for review (status review): import it for this network patient, as its GP\n"
      "  reject  a GP file held for review: refuse it, with the reason\n"
      "attach and reject are decided by the running gateway (--url, default http://http.host:http.port),\n"
      "with a system account's token (--token or PASSERELLE_TOKEN; `passerelle token issue --role system`).\n";
  if (argc > 2 && (std::string(argv[2]) == "attach" || std::string(argv[2]) == "reject")) return reviewCommand(argc, argv);
  return storeCommand(argc, argv, "inbox", usage, [](store::ResourceStore& s, const std::vector<std::string>& a) {
    if (a[0] != "list") {
      std::cerr << "passerelle inbox: unknown subcommand '" << a[0] << "' (see --help)\n";
      return 2;
    }
    std::string status;
    int count = 100;
    bool withMessage = false;
    for (std::size_t i = 1; i < a.size(); ++i) {
      if (a[i] == "--status" && i + 1 < a.size()) status = a[++i];
      else if (a[i] == "--count" && i + 1 < a.size()) count = std::atoi(a[++i].c_str());
      else if (a[i] == "--message") withMessage = true;
      else {
        std::cerr << "passerelle inbox: unexpected argument '" << a[i] << "'\n";
        return 2;
      }
    }
    auto list = s.listInbox(status, count);
    if (!list.ok()) {
      std::cerr << "passerelle inbox: " << list.error().message << "\n";
      return 1;
    }
    for (const auto& m : list.value()) std::cout << inboxJson(m, withMessage).dump(-1, ' ', false, Json::error_handler_t::replace) << "\n";
    return 0;
  });
}

}  // namespace passerelle::exchange
