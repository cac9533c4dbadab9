// Test HTTP client over Poco.
#include "tests/support/http_client.h"

#include <Poco/Net/Context.h>
#include <Poco/Net/HTTPClientSession.h>
#include <Poco/Net/HTTPRequest.h>
#include <Poco/Net/HTTPResponse.h>
#include <Poco/Net/HTTPSClientSession.h>
#include <Poco/Net/NetSSL.h>
#include <Poco/StreamCopier.h>

#include <algorithm>
#include <sstream>

namespace passerelle::testing {

nlohmann::json HttpResult::json() const { return nlohmann::json::parse(body); }

std::string HttpResult::header(const std::string& name) const {
  std::string n = name;
  std::transform(n.begin(), n.end(), n.begin(), ::tolower);
  auto it = headers.find(n);
  return it == headers.end() ? "" : it->second;
}

struct HttpClient::Impl {
  std::unique_ptr<Poco::Net::HTTPClientSession> session;
  int port = 0;
  std::string caFile;
};

namespace {
std::string& defaultBearer() {
  static std::string token;
  return token;
}
}  // namespace

void HttpClient::setDefaultBearer(const std::string& token) { defaultBearer() = token; }

void HttpClient::setClientCertificate(const std::string& certPath, const std::string& keyPath) {
  Poco::Net::initializeSSL();
  Poco::Net::Context::Ptr ctx = new Poco::Net::Context(
      Poco::Net::Context::TLS_CLIENT_USE, keyPath, certPath, impl_->caFile,
      impl_->caFile.empty() ? Poco::Net::Context::VERIFY_NONE : Poco::Net::Context::VERIFY_RELAXED, 9, false);
  impl_->session = std::make_unique<Poco::Net::HTTPSClientSession>("127.0.0.1", static_cast<Poco::UInt16>(impl_->port), ctx);
  impl_->session->setKeepAlive(true);
  impl_->session->setTimeout(Poco::Timespan(30, 0));
}

HttpClient::HttpClient(int port, bool https, const std::string& caFile) : impl_(new Impl), bearer_(defaultBearer()) {
  impl_->port = port;
  impl_->caFile = caFile;
  if (https) {
    Poco::Net::initializeSSL();
    Poco::Net::Context::Ptr ctx = new Poco::Net::Context(
        Poco::Net::Context::TLS_CLIENT_USE, "", "", caFile,
        caFile.empty() ? Poco::Net::Context::VERIFY_NONE : Poco::Net::Context::VERIFY_RELAXED, 9, false);
    impl_->session = std::make_unique<Poco::Net::HTTPSClientSession>("127.0.0.1", static_cast<Poco::UInt16>(port), ctx);
  } else {
    impl_->session = std::make_unique<Poco::Net::HTTPClientSession>("127.0.0.1", static_cast<Poco::UInt16>(port));
  }
  impl_->session->setKeepAlive(true);
  impl_->session->setTimeout(Poco::Timespan(30, 0));
}

HttpClient::~HttpClient() = default;

HttpResult HttpClient::request(const std::string& method, const std::string& path, const std::string& body,
                               const std::vector<std::pair<std::string, std::string>>& headers) {
  Poco::Net::HTTPRequest req(method, path, Poco::Net::HTTPMessage::HTTP_1_1);
  if (!bearer_.empty()) req.set("Authorization", "Bearer " + bearer_);
  for (const auto& [k, v] : headers) req.set(k, v);
  if (!body.empty() || method == "POST" || method == "PUT") req.setContentLength(static_cast<std::streamsize>(body.size()));
  std::ostream& os = impl_->session->sendRequest(req);
  os << body;
  Poco::Net::HTTPResponse resp;
  std::istream& is = impl_->session->receiveResponse(resp);
  HttpResult r;
  r.status = resp.getStatus();
  std::ostringstream ss;
  Poco::StreamCopier::copyStream(is, ss);
  r.body = ss.str();
  for (const auto& [k, v] : resp) {
    std::string n = k;
    std::transform(n.begin(), n.end(), n.begin(), ::tolower);
    r.headers[n] = v;
  }
  return r;
}

HttpResult HttpClient::send(const std::string& method, const std::string& path, const std::string& body,
                            std::vector<std::pair<std::string, std::string>> headers) {
  headers.emplace_back("Content-Type", "application/fhir+json");
  return request(method, path, body, headers);
}

}  // namespace passerelle::testing
