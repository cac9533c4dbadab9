// The REST client on libcurl (see rest_client.h).
#include "connectors/http/rest_client.h"

#include <curl/curl.h>

#include <algorithm>
#include <cctype>
#include <mutex>

namespace passerelle::http_client {
namespace {

std::once_flag curlOnce;

std::size_t onBody(char* data, std::size_t size, std::size_t n, void* user) {
  auto* r = static_cast<std::pair<Response*, std::size_t>*>(user);
  std::size_t bytes = size * n;
  if (r->first->body.size() + bytes > r->second) return 0;  // too large: the transfer fails
  r->first->body.append(data, bytes);
  return bytes;
}

std::size_t onHeader(char* data, std::size_t size, std::size_t n, void* user) {
  auto* r = static_cast<std::pair<Response*, std::size_t>*>(user);
  std::string line(data, size * n);
  auto colon = line.find(':');
  if (colon != std::string::npos) {
    std::string name = line.substr(0, colon);
    std::transform(name.begin(), name.end(), name.begin(), [](unsigned char c) { return std::tolower(c); });
    std::string value = line.substr(colon + 1);
    while (!value.empty() && (value.front() == ' ' || value.front() == '\t')) value.erase(0, 1);
    while (!value.empty() && (value.back() == '\r' || value.back() == '\n' || value.back() == ' ')) value.pop_back();
    if (name == "location" || name == "content-location") r->first->location = value;
    if (name == "content-type") r->first->contentType = value;
  }
  return size * n;
}

}  // namespace

struct RestClient::Impl {
  Options o;
  CURL* curl = nullptr;

  Response perform(const std::string& method, const std::string& path, const std::string* body, const std::string& contentType,
                   const std::string& accept) {
    Response out;
    if (!curl) {
      out.error = "libcurl could not be initialised";
      return out;
    }
    curl_easy_reset(curl);
    std::string url = path.rfind("http://", 0) == 0 || path.rfind("https://", 0) == 0 ? path : o.baseUrl + path;
    curl_easy_setopt(curl, CURLOPT_URL, url.c_str());
    curl_easy_setopt(curl, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT_MS, static_cast<long>(o.connectTimeoutMs));
    curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, static_cast<long>(o.timeoutMs));
    curl_easy_setopt(curl, CURLOPT_SSLVERSION, static_cast<long>(CURL_SSLVERSION_TLSv1_2));
    curl_easy_setopt(curl, CURLOPT_SSL_VERIFYPEER, 1L);
    curl_easy_setopt(curl, CURLOPT_SSL_VERIFYHOST, 2L);
    if (!o.caFile.empty()) curl_easy_setopt(curl, CURLOPT_CAINFO, o.caFile.c_str());
    if (!o.clientCertificate.empty()) curl_easy_setopt(curl, CURLOPT_SSLCERT, o.clientCertificate.c_str());
    if (!o.clientKey.empty()) curl_easy_setopt(curl, CURLOPT_SSLKEY, o.clientKey.c_str());
    std::pair<Response*, std::size_t> sink{&out, o.maxResponseBytes};
    curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, onBody);
    curl_easy_setopt(curl, CURLOPT_WRITEDATA, &sink);
    curl_easy_setopt(curl, CURLOPT_HEADERFUNCTION, onHeader);
    curl_easy_setopt(curl, CURLOPT_HEADERDATA, &sink);
    struct curl_slist* headers = nullptr;
    headers = curl_slist_append(headers, ("Accept: " + accept).c_str());
    if (body) headers = curl_slist_append(headers, ("Content-Type: " + contentType).c_str());
    if (!o.bearerToken.empty()) headers = curl_slist_append(headers, ("Authorization: Bearer " + o.bearerToken).c_str());
    headers = curl_slist_append(headers, "Expect:");
    curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
    if (method == "POST" || method == "PUT") {
      curl_easy_setopt(curl, CURLOPT_POST, 1L);
      if (method == "PUT") curl_easy_setopt(curl, CURLOPT_CUSTOMREQUEST, "PUT");
      curl_easy_setopt(curl, CURLOPT_POSTFIELDS, body->data());
      curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(body->size()));
    }
    CURLcode rc = curl_easy_perform(curl);
    curl_slist_free_all(headers);
    if (rc != CURLE_OK) {
      out.error = curl_easy_strerror(rc);
      out.status = 0;
      return out;
    }
    curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &out.status);
    return out;
  }
};

RestClient::RestClient(Options options) : impl_(std::make_unique<Impl>()) {
  std::call_once(curlOnce, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
  impl_->o = std::move(options);
  while (!impl_->o.baseUrl.empty() && impl_->o.baseUrl.back() == '/') impl_->o.baseUrl.pop_back();
  impl_->curl = curl_easy_init();
}

RestClient::~RestClient() {
  if (impl_->curl) curl_easy_cleanup(impl_->curl);
}

Response RestClient::get(const std::string& path, const std::string& accept) { return impl_->perform("GET", path, nullptr, "", accept); }

Response RestClient::post(const std::string& path, const std::string& body, const std::string& contentType) {
  return impl_->perform("POST", path, &body, contentType, "application/fhir+json");
}

Response RestClient::put(const std::string& path, const std::string& body, const std::string& contentType) {
  return impl_->perform("PUT", path, &body, contentType, "application/json");
}

}  // namespace passerelle::http_client
