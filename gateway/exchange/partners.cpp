// Loading conf/partners/*.json.
#include "gateway/exchange/partners.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

namespace passerelle::exchange {
namespace {

using Json = nlohmann::json;

Result<Partner> parsePartner(const Json& j, const std::string& file) {
  auto bad = [&](const std::string& what) { return makeError(ErrorCode::kInvalid, file + ": " + what); };
  if (!j.is_object()) return bad("not a JSON object");
  static const std::set<std::string> known = {"id", "name", "finess", "rpps", "account", "role", "scopes", "inbound", "outbound", "retry", "description"};
  for (const auto& [k, v] : j.items())
    if (!known.count(k)) return bad("unknown member '" + k + "'");
  Partner p;
  try {
    p.id = j.at("id").get<std::string>();
    p.name = j.value("name", p.id);
    p.finess = j.value("finess", "");
    p.rpps = j.value("rpps", "");
    p.account = j.value("account", p.id);
    p.role = j.value("role", p.role);
    if (j.contains("scopes")) p.scopes = j["scopes"].get<std::vector<std::string>>();
    const Json in = j.value("inbound", Json::object());
    p.certificateSubject = in.value("certificateSubject", "");
    p.certificateFingerprint = in.value("certificateFingerprint", "");
    p.sendingApplication = in.value("sendingApplication", "");
    p.sendingFacility = in.value("sendingFacility", "");
    const Json out = j.value("outbound", Json::object());
    p.protocol = out.value("protocol", out.empty() ? "none" : "mllp");
    p.host = out.value("host", "");
    p.port = out.value("port", 0);
    p.baseUrl = out.value("baseUrl", "");
    p.tokenEnv = out.value("tokenEnv", "");
    p.pollSeconds = out.value("pollSeconds", p.pollSeconds);
    p.receivingApplication = out.value("receivingApplication", "");
    p.receivingFacility = out.value("receivingFacility", p.finess);
    std::string ack = out.value("ackMode", "original");
    if (ack != "original" && ack != "enhanced") return bad("outbound.ackMode must be original or enhanced");
    p.enhancedAck = ack == "enhanced";
    p.connectTimeoutMs = out.value("connectTimeoutMs", p.connectTimeoutMs);
    p.answerTimeoutMs = out.value("answerTimeoutMs", p.answerTimeoutMs);
    p.connections = out.value("connections", p.connections);
    if (out.contains("tls")) {
      const Json& t = out["tls"];
      mllp::TlsSettings s;
      s.certificate = t.value("certificate", "");
      s.privateKey = t.value("privateKey", "");
      s.caFile = t.value("caFile", "");
      s.serverName = t.value("serverName", "");
      p.tls = s;
    }
    const Json r = j.value("retry", Json::object());
    p.retry.maxAttempts = r.value("maxAttempts", p.retry.maxAttempts);
    p.retry.initialDelayMs = r.value("initialDelayMs", p.retry.initialDelayMs);
    p.retry.maxDelayMs = r.value("maxDelayMs", p.retry.maxDelayMs);
  } catch (const Json::exception& ex) {
    return bad(std::string("a member has the wrong type or is missing: ") + ex.what());
  }
  if (p.id.empty() || p.id.find_first_of(" /:") != std::string::npos) return bad("id must be a non-empty word");
  if (p.finess.empty() == p.rpps.empty()) return bad("exactly one of finess or rpps names the partner");
  if (p.protocol != "mllp" && p.protocol != "none" && p.protocol != "fhir") return bad("outbound.protocol must be mllp, fhir or none");
  if (p.protocol == "mllp" && (p.host.empty() || p.port <= 0 || p.port > 65535)) return bad("outbound needs host and port for mllp");
  if (p.protocol == "fhir" && p.baseUrl.rfind("http://", 0) != 0 && p.baseUrl.rfind("https://", 0) != 0)
    return bad("outbound needs baseUrl (http:// or https://) for fhir");
  if (p.protocol == "fhir" && p.pollSeconds < 1) return bad("outbound.pollSeconds must be at least 1");
  if (p.connections < 1 || p.connections > 64) return bad("outbound.connections must be from 1 to 64");
  if (p.retry.maxAttempts < 1 || p.retry.initialDelayMs < 1 || p.retry.maxDelayMs < p.retry.initialDelayMs)
    return bad("retry: maxAttempts >= 1 and 1 <= initialDelayMs <= maxDelayMs");
  return p;
}

}  // namespace

Result<std::vector<Partner>> loadPartners(const std::string& dir) {
  std::vector<Partner> out;
  std::error_code ec;
  if (dir.empty() || !std::filesystem::is_directory(dir, ec)) return out;
  std::vector<std::filesystem::path> files;
  for (const auto& e : std::filesystem::directory_iterator(dir, ec))
    if (e.path().extension() == ".json") files.push_back(e.path());
  std::sort(files.begin(), files.end());
  std::set<std::string> ids;
  for (const auto& f : files) {
    std::ifstream in(f);
    std::stringstream text;
    text << in.rdbuf();
    Json j = Json::parse(text.str(), nullptr, false);
    if (j.is_discarded()) return makeError(ErrorCode::kInvalid, f.string() + ": not JSON");
    auto p = parsePartner(j, f.string());
    if (!p.ok()) return p.error();
    if (!ids.insert(p->id).second) return makeError(ErrorCode::kInvalid, f.string() + ": the id " + p->id + " is used twice");
    out.push_back(std::move(p.value()));
  }
  return out;
}

}  // namespace passerelle::exchange
