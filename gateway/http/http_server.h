// The HTTP and HTTPS front: Poco HTTPServer listeners (TLS 1.2+ through NetSSL) that route
// /fhir to the FHIR service, and serve /healthz and /metrics. Bodies over the configured limit
// are refused with 413 before they are read.
// start() and stop() are called from one thread; requests are served on the server's pool.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <set>
#include <string>

#include "gateway/common/status.h"
#include "gateway/fhir/fhir_service.h"

namespace passerelle::http {

struct ServerOptions {
  bool httpEnabled = true;
  std::string httpHost = "127.0.0.1";
  int httpPort = 0;
  bool httpsEnabled = false;
  std::string httpsHost = "127.0.0.1";
  int httpsPort = 0;
  std::string certificatePath;  // PEM; required when httpsEnabled
  std::string privateKeyPath;
  std::size_t maxBodyBytes = 10 * 1024 * 1024;
  int threads = 64;
  int queue = 256;
  int keepAliveSeconds = 15;
  std::string baseUrl;  // public FHIR base; empty: from the request's Host
  std::string clientCaPath;  // PEM CAs for client certificates (mutual TLS); empty: none asked for
  int searchTimeoutMs = 10000;  // each request's reads stop at this deadline (store::SearchLimit)
};

// What the front knows of the caller before anything is decided.
struct Caller {
  std::string authorization;           // the Authorization header
  std::string certificateSubject;      // the verified client certificate's subject ("" without one)
  std::string certificateFingerprint;  // its SHA-256, hex lower case
  std::string sourceAddress;           // ip:port
  std::string breakGlass;              // the X-Break-Glass header: the emergency's reason
  // Set by the gateway's own connectors and jobs, which established who the peer is (a partner's
  // verified certificate or configured sender) or act for the gateway: the principal to decide
  // with, the channel ("mllp:avicenne", "job:sweep") and a line for the audit record.
  const identity::Principal* connector = nullptr;
  std::string channel;
  std::string detail;
  // Set by a connector whose message concerns these patients (ids) only: the access facts are then
  // looked up for them alone, now, instead of every patient the principal is related to.
  const std::set<std::string>* patients = nullptr;
};

// Every request but /healthz and GET /fhir/metadata goes through the gate: it establishes the
// caller's identity, gives the request its access guard, runs it, and audits it before the answer
// is sent. `area`: "fhir", a mount prefix ("/network/v1") or "metrics".
class Gate {
 public:
  virtual ~Gate() = default;
  using Serve = std::function<fhir::FhirResponse(fhir::FhirRequest&)>;
  virtual fhir::FhirResponse handle(const Caller& caller, fhir::FhirRequest& request, const std::string& area,
                                    const Serve& serve) = 0;
};

// Counters exported at /metrics (Prometheus text format).
struct Metrics {
  std::atomic<std::uint64_t> requests{0};
  std::atomic<std::uint64_t> status2xx{0}, status3xx{0}, status4xx{0}, status5xx{0};
  std::atomic<std::uint64_t> bodyTooLarge{0};
  std::atomic<std::uint64_t> microsTotal{0};
  std::atomic<std::uint64_t> unavailable{0};  // answers 503 or 507 (the store, the audit trail, a deadline)
};

class Server {
 public:
  Server(fhir::FhirService& fhir, store::ResourceStore& store);
  ~Server();
  // Serves every path below `prefix` ("/network/v1") with `handler` (request path relative to the
  // prefix, body within the limit). Call before start().
  using Handler = std::function<fhir::FhirResponse(const fhir::FhirRequest&)>;
  void mount(const std::string& prefix, Handler handler);
  // The gate every request passes (null: none, every request is served as it comes). Call before start().
  void setGate(Gate* gate);
  // More /metrics lines (Prometheus text), produced at each scrape. Call before start().
  void setExtraMetrics(std::function<std::string()> text);
  Result<void> start(const ServerOptions& options);
  int httpPort() const;   // the bound port (0 when disabled)
  int httpsPort() const;  // the bound port (0 when disabled)
  // Stops accepting, lets in-flight requests finish, closes idle connections.
  void stop(int drainSeconds);
  const Metrics& metrics() const;

 private:
  struct State;
  std::unique_ptr<State> s_;
};

}  // namespace passerelle::http
