// A small blocking HTTP(S) client for tests, over Poco (keep-alive session per client).
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace passerelle::testing {

struct HttpResult {
  int status = 0;
  std::string body;
  std::map<std::string, std::string> headers;  // names lower-cased
  nlohmann::json json() const;                 // body parsed (throws when not JSON)
  std::string header(const std::string& name) const;
};

class HttpClient {
 public:
  // https: verifies the server against `caFile` when given, else accepts any certificate.
  HttpClient(int port, bool https = false, const std::string& caFile = "");
  ~HttpClient();
  // The bearer token sent with every request (unless the request sets Authorization itself).
  // New clients start with the default one: TestGateway sets a system account's token, so suites
  // about other things pass the gate as that account. "" sends none.
  void setBearer(const std::string& token) { bearer_ = token; }
  static void setDefaultBearer(const std::string& token);
  // A client certificate and key (PEM files) for mutual TLS; before the first request.
  void setClientCertificate(const std::string& certPath, const std::string& keyPath);
  HttpResult request(const std::string& method, const std::string& path, const std::string& body = "",
                     const std::vector<std::pair<std::string, std::string>>& headers = {});
  HttpResult get(const std::string& path) { return request("GET", path); }
  // A FHIR write with Content-Type application/fhir+json.
  HttpResult send(const std::string& method, const std::string& path, const std::string& body,
                  std::vector<std::pair<std::string, std::string>> headers = {});

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
  std::string bearer_;
};

}  // namespace passerelle::testing
