// An HTTP client for a partner's REST API (a FHIR server), on libcurl: one connection kept alive,
// TLS 1.2+ with the server verified against the configured authorities and, for mutual TLS, a
// client certificate; a bearer token when the partner asks for one. Knows no FHIR semantics.
// Not thread-safe: one client per worker.
#pragma once

#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace passerelle::http_client {

struct Options {
  std::string baseUrl;             // e.g. https://fhir.partner.example/fhir (no trailing slash)
  std::string bearerToken;         // sent as Authorization: Bearer ... when not empty
  std::string clientCertificate;   // PEM, for mutual TLS
  std::string clientKey;           // PEM
  std::string caFile;              // PEM bundle verifying the server (empty: the system's)
  int connectTimeoutMs = 5000;
  int timeoutMs = 30000;
  std::size_t maxResponseBytes = 64u << 20;
};

struct Response {
  long status = 0;         // HTTP status; 0 when no answer came (see error)
  std::string body;
  std::string contentType;
  std::string location;    // the Location header, if any
  std::string error;       // transport failure (connection refused, TLS, timeout...)
};

class RestClient {
 public:
  explicit RestClient(Options options);
  ~RestClient();
  RestClient(const RestClient&) = delete;
  RestClient& operator=(const RestClient&) = delete;
  // `path` is appended to the base ("/Task?identifier=..."), or an absolute http(s) URL on the same
  // server.
  Response get(const std::string& path, const std::string& accept = "application/fhir+json");
  Response post(const std::string& path, const std::string& body, const std::string& contentType = "application/fhir+json");
  // The bytes of `body` as the resource at `path` (a file upload).
  Response put(const std::string& path, const std::string& body, const std::string& contentType);

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace passerelle::http_client
