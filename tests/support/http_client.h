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
  HttpResult request(const std::string& method, const std::string& path, const std::string& body = "",
                     const std::vector<std::pair<std::string, std::string>>& headers = {});
  HttpResult get(const std::string& path) { return request("GET", path); }
  // A FHIR write with Content-Type application/fhir+json.
  HttpResult send(const std::string& method, const std::string& path, const std::string& body,
                  std::vector<std::pair<std::string, std::string>> headers = {});

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace passerelle::testing
