// Poco HTTPServer wiring and the request front.
#include "gateway/http/http_server.h"

#include <Poco/Net/Context.h>
#include <Poco/Net/HTTPRequestHandler.h>
#include <Poco/Net/HTTPRequestHandlerFactory.h>
#include <Poco/Net/HTTPServer.h>
#include <Poco/Net/HTTPServerParams.h>
#include <Poco/Net/HTTPServerRequest.h>
#include <Poco/Net/HTTPServerResponse.h>
#include <Poco/Net/NetSSL.h>
#include <Poco/Net/SecureServerSocket.h>
#include <Poco/Net/SecureStreamSocket.h>
#include <Poco/Net/HTTPServerRequestImpl.h>
#include <Poco/Net/X509Certificate.h>
#include <openssl/evp.h>
#include <openssl/x509.h>
#include <Poco/Net/ServerSocket.h>
#include <Poco/ThreadPool.h>

#include <poll.h>

#include <chrono>
#include <istream>
#include <thread>

#include "gateway/common/log.h"

namespace passerelle::http {
namespace {

using Poco::Net::HTTPResponse;
using Poco::Net::HTTPServerRequest;
using Poco::Net::HTTPServerResponse;

struct FrontContext {
  fhir::FhirService* fhir;
  store::ResourceStore* store;
  const ServerOptions* options;
  Metrics* metrics;
  const std::vector<std::pair<std::string, Server::Handler>>* mounts;
  Gate* gate;
  const std::function<std::string()>* extraMetrics;
};

bool safeHost(const std::string& h) {
  if (h.empty() || h.size() > 255) return false;
  for (char c : h)
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '-' || c == ':' || c == '[' || c == ']'))
      return false;
  return true;
}

void send(HTTPServerResponse& resp, int status, const std::string& body, const std::string& contentType) {
  resp.setStatusAndReason(static_cast<HTTPResponse::HTTPStatus>(status));
  if (body.empty()) {
    resp.setContentLength(0);
    resp.send();
    return;
  }
  resp.setContentType(contentType);
  resp.setContentLength(static_cast<std::streamsize>(body.size()));
  resp.sendBuffer(body.data(), body.size());
}

void sendOutcome(HTTPServerResponse& resp, ErrorCode code, const std::string& message) {
  fhir::FhirResponse r = fhir::errorResponse(makeError(code, message));
  send(resp, r.status, r.body, "application/fhir+json; charset=utf-8");
}

class FrontHandler : public Poco::Net::HTTPRequestHandler {
 public:
  FrontHandler(const FrontContext& ctx, bool secure) : ctx_(ctx), secure_(secure) {}

  void handleRequest(HTTPServerRequest& req, HTTPServerResponse& resp) override {
    auto started = std::chrono::steady_clock::now();
    // Every read of this request stops at its deadline, or once its client has gone.
    int fd = static_cast<Poco::Net::HTTPServerRequestImpl&>(req).socket().impl()->sockfd();
    store::SearchLimit limit(started + std::chrono::milliseconds(ctx_.options->searchTimeoutMs), [fd] {
      pollfd p{fd, POLLRDHUP, 0};
      return ::poll(&p, 1, 0) > 0 && (p.revents & (POLLRDHUP | POLLHUP | POLLERR)) != 0;
    });
    try {
      route(req, resp);
    } catch (const std::exception& ex) {
      log::error("http.unexpected", {{"uri", req.getURI()}, {"error", ex.what()}});
      if (!resp.sent()) sendOutcome(resp, ErrorCode::kInternal, "the request could not be completed");
    }
    auto us = std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - started).count();
    Metrics& m = *ctx_.metrics;
    m.requests.fetch_add(1, std::memory_order_relaxed);
    m.microsTotal.fetch_add(static_cast<std::uint64_t>(us), std::memory_order_relaxed);
    int s = resp.getStatus();
    (s < 300 ? m.status2xx : s < 400 ? m.status3xx : s < 500 ? m.status4xx : m.status5xx).fetch_add(1, std::memory_order_relaxed);
    if (s == 503 || s == 507) m.unavailable.fetch_add(1, std::memory_order_relaxed);
    if (log::enabled(log::Level::kDebug))
      log::debug("http.request", {{"method", req.getMethod()}, {"uri", req.getURI()}, {"status", std::to_string(s)},
                                  {"us", std::to_string(us)}});
  }

 private:
  void route(HTTPServerRequest& req, HTTPServerResponse& resp) {
    const std::string& uri = req.getURI();
    std::size_t qm = uri.find('?');
    std::string path = uri.substr(0, qm);
    std::string query = qm == std::string::npos ? "" : uri.substr(qm + 1);
    if (path == "/fhir" || path.rfind("/fhir/", 0) == 0) return fhirRequest(req, resp, path, query);
    for (const auto& [prefix, handler] : *ctx_.mounts)
      if (path == prefix || path.rfind(prefix + "/", 0) == 0)
        return mounted(req, resp, handler, prefix, path.substr(prefix.size()), query);
    if (path == "/healthz") {
      if (req.getMethod() != "GET" && req.getMethod() != "HEAD") return sendOutcome(resp, ErrorCode::kMethodNotAllowed, "GET only");
      return send(resp, 200, "{\"status\":\"ok\"}", "application/json");
    }
    if (path == "/metrics") {
      if (req.getMethod() != "GET") return sendOutcome(resp, ErrorCode::kMethodNotAllowed, "GET only");
      fhir::FhirRequest fr;
      if (!readRequest(req, resp, path, query, fr)) return;
      return answer(resp, gated(req, fr, "metrics", [this](fhir::FhirRequest&) {
        fhir::FhirResponse r;
        r.body = metricsText();
        r.headers.emplace_back("Content-Type", "text/plain; version=0.0.4");
        return r;
      }));
    }
    sendOutcome(resp, ErrorCode::kNotFound, "nothing is served at '" + path + "' (the FHIR API is at /fhir)");
  }

  // Reads the body within the limit; false (and the answer sent) when it is over.
  bool readBody(HTTPServerRequest& req, HTTPServerResponse& resp, std::string& body) {
    std::size_t limit = ctx_.options->maxBodyBytes;
    if (req.hasContentLength() && req.getContentLength64() > static_cast<Poco::Int64>(limit)) {
      tooLarge(resp, limit);
      return false;
    }
    std::istream& in = req.stream();
    if (req.hasContentLength()) body.reserve(static_cast<std::size_t>(req.getContentLength64()));
    char buf[16384];
    while (in) {
      in.read(buf, sizeof buf);
      std::streamsize n = in.gcount();
      if (n <= 0) break;
      if (body.size() + static_cast<std::size_t>(n) > limit) {
        tooLarge(resp, limit);
        return false;
      }
      body.append(buf, static_cast<std::size_t>(n));
    }
    return true;
  }

  void tooLarge(HTTPServerResponse& resp, std::size_t limit) {
    ctx_.metrics->bodyTooLarge.fetch_add(1, std::memory_order_relaxed);
    resp.setKeepAlive(false);  // the rest of the body is not read
    sendOutcome(resp, ErrorCode::kTooLarge, "the request body is larger than " + std::to_string(limit) + " bytes");
  }

  void mounted(HTTPServerRequest& req, HTTPServerResponse& resp, const Server::Handler& handler, const std::string& prefix,
               const std::string& path, const std::string& query) {
    fhir::FhirRequest fr;
    if (!readRequest(req, resp, path, query, fr)) return;
    answer(resp, gated(req, fr, prefix, [&handler](fhir::FhirRequest& r) { return handler(r); }));
  }

  // What the connection and headers say about the caller.
  Caller caller(HTTPServerRequest& req) {
    Caller c;
    c.authorization = req.get("Authorization", "");
    c.breakGlass = req.get("X-Break-Glass", "");
    c.sourceAddress = req.clientAddress().toString();
    if (secure_) {
      try {
        auto& impl = static_cast<Poco::Net::HTTPServerRequestImpl&>(req);
        Poco::Net::SecureStreamSocket ss(impl.socket());
        if (ss.havePeerCertificate()) {
          Poco::Net::X509Certificate cert = ss.peerCertificate();
          c.certificateSubject = cert.subjectName();
          unsigned char md[EVP_MAX_MD_SIZE];
          unsigned int n = 0;
          if (X509_digest(const_cast<X509*>(cert.certificate()), EVP_sha256(), md, &n) == 1) {
            static const char* hex = "0123456789abcdef";
            for (unsigned int i = 0; i < n; ++i) {
              c.certificateFingerprint += hex[md[i] >> 4];
              c.certificateFingerprint += hex[md[i] & 15];
            }
          }
        }
      } catch (const std::exception&) {
        // no certificate: the caller must present a token
      }
    }
    return c;
  }

  fhir::FhirResponse gated(HTTPServerRequest& req, fhir::FhirRequest& fr, const std::string& area, const Gate::Serve& serve) {
    if (!ctx_.gate) return serve(fr);
    return ctx_.gate->handle(caller(req), fr, area, serve);
  }

  // Fills `fr` from the request (body within the limit); false when the answer was already sent.
  bool readRequest(HTTPServerRequest& req, HTTPServerResponse& resp, const std::string& path, const std::string& query,
                   fhir::FhirRequest& fr) {
    fr.method = req.getMethod();
    fr.path = path;
    fr.query = fhir::parseQueryString(query);
    if (fr.method == "POST" || fr.method == "PUT" || fr.method == "PATCH") {
      if (!readBody(req, resp, fr.body)) return false;
    }
    fr.contentType = req.get("Content-Type", "");
    fr.accept = req.get("Accept", "");
    fr.ifMatch = req.get("If-Match", "");
    fr.ifNoneExist = req.get("If-None-Exist", "");
    fr.prefer = req.get("Prefer", "");
    if (!ctx_.options->baseUrl.empty()) {
      fr.baseUrl = ctx_.options->baseUrl;
    } else {
      std::string host = req.getHost();
      if (!safeHost(host)) host = req.serverAddress().toString();
      fr.baseUrl = std::string(secure_ ? "https://" : "http://") + host + "/fhir";
    }
    return true;
  }

  void fhirRequest(HTTPServerRequest& req, HTTPServerResponse& resp, const std::string& path, const std::string& query) {
    fhir::FhirRequest fr;
    if (!readRequest(req, resp, path.substr(5), query, fr)) return;
    // The CapabilityStatement is public; everything else goes through the gate.
    if ((fr.path == "/metadata" || fr.path == "/metadata/") && fr.method == "GET") return answer(resp, ctx_.fhir->handle(fr));
    // FHIR XML: the body is read (into JSON) by the FHIR service, once the gate has let the caller
    // in: an anonymous body is never parsed, and a body refused is an audited request like any other.
    // Every answer, the gate's refusals included, goes out in the format asked for.
    auto format = fhir::responseFormat(fr);
    fhir::FhirResponse out = gated(req, fr, "fhir", [this](fhir::FhirRequest& r) { return ctx_.fhir->handle(r); });
    if (format.ok() && *format == fhir::WireFormat::kXml) fhir::answerAsXml(out);
    answer(resp, out);
  }

  void answer(HTTPServerResponse& resp, const fhir::FhirResponse& out) {
    std::string contentType = "application/fhir+json; charset=utf-8";
    for (auto& [k, v] : out.headers) {
      if (k == "Content-Type") contentType = v;
      else resp.set(k, v);
    }
    send(resp, out.status, out.body, contentType);
  }

  std::string metricsText() {
    const Metrics& m = *ctx_.metrics;
    auto st = ctx_.store->stats();
    std::string out;
    auto line = [&](const char* name, const char* help, const char* type, const std::string& labels, std::uint64_t v) {
      out += "# HELP ";
      out += name;
      out += ' ';
      out += help;
      out += "\n# TYPE ";
      out += name;
      out += ' ';
      out += type;
      out += '\n';
      out += name + labels + " " + std::to_string(v) + "\n";
    };
    line("passerelle_http_requests_total", "HTTP requests served.", "counter", "", m.requests.load());
    out += "passerelle_http_responses_total{class=\"2xx\"} " + std::to_string(m.status2xx.load()) + "\n";
    out += "passerelle_http_responses_total{class=\"3xx\"} " + std::to_string(m.status3xx.load()) + "\n";
    out += "passerelle_http_responses_total{class=\"4xx\"} " + std::to_string(m.status4xx.load()) + "\n";
    out += "passerelle_http_responses_total{class=\"5xx\"} " + std::to_string(m.status5xx.load()) + "\n";
    line("passerelle_http_request_seconds_sum", "Time spent serving requests.", "counter", "", 0);
    out.resize(out.size() - 2);
    out += std::to_string(static_cast<double>(m.microsTotal.load()) / 1e6) + "\n";
    line("passerelle_http_body_too_large_total", "Requests refused for their body size.", "counter", "", m.bodyTooLarge.load());
    line("passerelle_store_commits_total", "Database commits (each may group several requests).", "counter", "", st.commits);
    line("passerelle_store_units_total", "Write units committed.", "counter", "", st.units);
    line("passerelle_store_units_failed_total", "Write units rolled back.", "counter", "", st.unitsFailed);
    line("passerelle_store_wal_frames_total", "Pages appended to the write-ahead log.", "counter", "", st.walFrames);
    line("passerelle_store_failures_total", "Database errors (answered 503, or 507 when the disk is full).", "counter", "",
         st.failures);
    line("passerelle_http_unavailable_total", "Answers 503 or 507: the store, the audit trail or a deadline failed them.",
         "counter", "", m.unavailable.load());
    line("passerelle_search_stopped_total", "Reads stopped before their end.", "counter", "{reason=\"deadline\"}",
         st.searchesPastDeadline);
    out += "passerelle_search_stopped_total{reason=\"client-gone\"} " + std::to_string(st.searchesAbandoned) + "\n";
    if (*ctx_.extraMetrics) out += (*ctx_.extraMetrics)();
    return out;
  }

  const FrontContext& ctx_;
  bool secure_;
};

class Factory : public Poco::Net::HTTPRequestHandlerFactory {
 public:
  Factory(const FrontContext& ctx, bool secure) : ctx_(ctx), secure_(secure) {}
  Poco::Net::HTTPRequestHandler* createRequestHandler(const HTTPServerRequest&) override {
    return new FrontHandler(ctx_, secure_);
  }

 private:
  const FrontContext& ctx_;
  bool secure_;
};

}  // namespace

struct Server::State {
  fhir::FhirService& fhir;
  store::ResourceStore& store;
  ServerOptions options;
  Metrics metrics;
  FrontContext ctx;
  std::unique_ptr<Poco::ThreadPool> pool;
  std::unique_ptr<Poco::Net::HTTPServer> http;
  std::unique_ptr<Poco::Net::HTTPServer> https;
  int httpPort = 0;
  int httpsPort = 0;
  bool stopped = false;
  std::vector<std::pair<std::string, Handler>> mounts;
  Gate* gate = nullptr;
  std::function<std::string()> extraMetrics;
};

Server::Server(fhir::FhirService& fhir, store::ResourceStore& store)
    : s_(new State{fhir, store, {}, {}, {}, nullptr, nullptr, nullptr, 0, 0, false, {}, nullptr, {}}) {}

Server::~Server() { stop(0); }

void Server::mount(const std::string& prefix, Handler handler) { s_->mounts.emplace_back(prefix, std::move(handler)); }
void Server::setGate(Gate* gate) { s_->gate = gate; }
void Server::setExtraMetrics(std::function<std::string()> text) { s_->extraMetrics = std::move(text); }

Result<void> Server::start(const ServerOptions& options) {
  s_->options = options;
  s_->ctx = FrontContext{&s_->fhir, &s_->store, &s_->options, &s_->metrics, &s_->mounts, s_->gate, &s_->extraMetrics};
  int listeners = (options.httpEnabled ? 1 : 0) + (options.httpsEnabled ? 1 : 0);
  if (listeners == 0) return makeError(ErrorCode::kInvalid, "http.enabled and https.enabled are both false: nothing to serve");
  s_->pool = std::make_unique<Poco::ThreadPool>(2, options.threads * listeners, 60);
  auto params = [&]() {
    Poco::AutoPtr<Poco::Net::HTTPServerParams> p = new Poco::Net::HTTPServerParams;
    p->setMaxThreads(options.threads);
    p->setMaxQueued(options.queue);
    p->setKeepAlive(true);
    p->setMaxKeepAliveRequests(0);
    p->setKeepAliveTimeout(Poco::Timespan(options.keepAliveSeconds, 0));
    p->setTimeout(Poco::Timespan(60, 0));
    p->setServerName("Passerelle");
    return p;
  };
  try {
    if (options.httpEnabled) {
      Poco::Net::ServerSocket sock(Poco::Net::SocketAddress(options.httpHost, static_cast<Poco::UInt16>(options.httpPort)), 256);
      s_->httpPort = sock.address().port();
      s_->http = std::make_unique<Poco::Net::HTTPServer>(new Factory(s_->ctx, false), *s_->pool, sock, params());
      s_->http->start();
    }
  } catch (const std::exception& ex) {
    return makeError(ErrorCode::kInvalid, "http.port " + std::to_string(options.httpPort) + " on " + options.httpHost +
                                              ": cannot listen: " + ex.what());
  }
  try {
    if (options.httpsEnabled) {
      Poco::Net::initializeSSL();
      Poco::Net::Context::Ptr ctx = new Poco::Net::Context(
          Poco::Net::Context::TLS_SERVER_USE, options.privateKeyPath, options.certificatePath, options.clientCaPath,
          // With client CAs, a client certificate is asked for and verified when presented (mutual TLS for
          // connectors); callers without one authenticate with a bearer token.
          options.clientCaPath.empty() ? Poco::Net::Context::VERIFY_NONE : Poco::Net::Context::VERIFY_RELAXED, 9, false,
          "ECDHE+AESGCM:ECDHE+CHACHA20:DHE+AESGCM:!aNULL:!eNULL:!MD5:!RC4:!3DES");
      ctx->requireMinimumProtocol(Poco::Net::Context::PROTO_TLSV1_2);
      ctx->enableSessionCache(true, "passerelle");
      Poco::Net::SecureServerSocket sock(
          Poco::Net::SocketAddress(options.httpsHost, static_cast<Poco::UInt16>(options.httpsPort)), 256, ctx);
      s_->httpsPort = sock.address().port();
      s_->https = std::make_unique<Poco::Net::HTTPServer>(new Factory(s_->ctx, true), *s_->pool, sock, params());
      s_->https->start();
    }
  } catch (const std::exception& ex) {
    stop(0);
    return makeError(ErrorCode::kInvalid, "https (port " + std::to_string(options.httpsPort) + ", certificate '" +
                                              options.certificatePath + "'): " + ex.what());
  }
  return {};
}

int Server::httpPort() const { return s_->httpPort; }
int Server::httpsPort() const { return s_->httpsPort; }
const Metrics& Server::metrics() const { return s_->metrics; }

void Server::stop(int drainSeconds) {
  if (s_->stopped || (!s_->http && !s_->https)) return;
  s_->stopped = true;
  // stopAll(false) closes idle connections at once and waits for each in-flight request.
  for (auto* srv : {s_->http.get(), s_->https.get()}) {
    if (srv) srv->stopAll(false);
  }
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(drainSeconds);
  for (auto* srv : {s_->http.get(), s_->https.get()}) {
    while (srv && srv->currentConnections() > 0 && std::chrono::steady_clock::now() < deadline)
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  bool idle = true;
  for (auto* srv : {s_->http.get(), s_->https.get()})
    if (srv && srv->currentConnections() > 0) idle = false;
  if (!idle) {
    log::warn("http.drain_timeout", {{"seconds", std::to_string(drainSeconds)}});
    return;  // leave the servers to the process exit rather than block
  }
  if (s_->pool) s_->pool->joinAll();
  s_->http.reset();
  s_->https.reset();
}

}  // namespace passerelle::http
