// toAuditEventJson: an audit record as a FHIR R4 AuditEvent following IHE Basic Audit Log Patterns
// (BALP): REST interactions get the BALP type, subtype, action, agents (user, client, server),
// source and entities (patient, data, query); other kinds get the closest DICOM event type.
#include <openssl/evp.h>

#include <cstdio>
#include <ctime>
#include <nlohmann/json.hpp>

#include "gateway/audit/audit_log.h"

namespace passerelle::audit {

namespace {

using Json = nlohmann::ordered_json;

constexpr const char* kDcm = "http://dicom.nema.org/resources/ontology/DCM";
constexpr const char* kEventType = "http://terminology.hl7.org/CodeSystem/audit-event-type";
constexpr const char* kRestful = "http://hl7.org/fhir/restful-interaction";
constexpr const char* kBalp = "https://profiles.ihe.net/ITI/BALP/StructureDefinition/IHE.BasicAudit.";
constexpr const char* kParticipation = "http://terminology.hl7.org/CodeSystem/v3-ParticipationType";
constexpr const char* kActReason = "http://terminology.hl7.org/CodeSystem/v3-ActReason";
constexpr const char* kEntityType = "http://terminology.hl7.org/CodeSystem/audit-entity-type";
constexpr const char* kObjectRole = "http://terminology.hl7.org/CodeSystem/object-role";
constexpr const char* kSourceType = "http://terminology.hl7.org/CodeSystem/security-source-type";
constexpr const char* kRoleSystem = "https://douleur77.fr/fhir/CodeSystem/access-role";
constexpr const char* kRpps = "https://rpps.esante.gouv.fr";
constexpr const char* kAdeli = "https://adeli.esante.gouv.fr";

Json coding(const char* system, const std::string& code, const char* display = nullptr) {
  Json c;
  c["system"] = system;
  c["code"] = code;
  if (display) c["display"] = display;
  return c;
}

Json codeable(Json codingValue) {
  Json c;
  c["coding"] = Json::array({std::move(codingValue)});
  return c;
}

// A REST interaction: its restful-interaction code, AuditEvent.action and BALP profile (none when
// BALP does not describe it).
struct Interaction {
  const char* code = nullptr;
  char action = 'E';
  const char* profile = nullptr;
};

char actionLetter(const std::string& a) {
  if (a == "create" || a == "submit") return 'C';
  if (a == "read" || a == "vread" || a == "history" || a == "capabilities") return 'R';
  if (a == "update" || a == "patch") return 'U';
  if (a == "delete" || a == "purge") return 'D';
  return 'E';
}

Interaction interactionOf(const Record& r) {
  const std::string& a = r.action;
  if (a == "read") return {"read", 'R', "Read"};
  if (a == "vread") return {"vread", 'R', "Read"};
  if (a == "search") return {r.resourceType.empty() ? "search-system" : "search-type", 'E', "Query"};
  if (a == "history")
    return {!r.resources.empty() ? "history-instance" : !r.resourceType.empty() ? "history-type" : "history-system", 'R',
            nullptr};
  if (a == "create") return {"create", 'C', "Create"};
  if (a == "update") return {"update", 'U', "Update"};
  if (a == "patch") return {"patch", 'U', "Update"};
  if (a == "delete") return {"delete", 'D', "Delete"};
  if (a == "transaction" || a == "batch" || a == "operation") return {a == "transaction" ? "transaction" : a == "batch" ? "batch" : "operation", 'E', nullptr};
  if (a == "capabilities") return {"capabilities", 'R', nullptr};
  return {nullptr, actionLetter(a), nullptr};
}

std::string isoInstant(std::int64_t ms) {
  std::time_t s = static_cast<std::time_t>(ms / 1000);
  std::tm tm{};
  gmtime_r(&s, &tm);
  char buf[80];
  std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
                tm.tm_hour, tm.tm_min, tm.tm_sec, static_cast<int>(ms % 1000));
  return buf;
}

// "10.0.0.7:51234" -> "10.0.0.7"; "[::1]:443" -> "::1".
std::string hostOf(const std::string& address) {
  if (address.empty()) return {};
  if (address[0] == '[') {
    auto end = address.find(']');
    return address.substr(1, end == std::string::npos ? std::string::npos : end - 1);
  }
  auto colon = address.find(':');
  if (colon != std::string::npos && address.find(':', colon + 1) == std::string::npos) return address.substr(0, colon);
  return address;
}

std::string base64(const std::string& s) {
  std::string out(4 * ((s.size() + 2) / 3), '\0');
  int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()), reinterpret_cast<const unsigned char*>(s.data()),
                          static_cast<int>(s.size()));
  out.resize(n < 0 ? 0 : static_cast<std::size_t>(n));
  return out;
}

// The user's identity: a professional identifier, the Patient, the account or the token subject.
Json userWho(const Record& r, bool& subjectUsed) {
  Json who;
  subjectUsed = false;
  if (!r.practitioner.empty()) {
    auto colon = r.practitioner.find(':');
    std::string scheme = colon == std::string::npos ? "" : r.practitioner.substr(0, colon);
    Json id;
    if (scheme == "rpps") id["system"] = kRpps;
    if (scheme == "adeli") id["system"] = kAdeli;
    id["value"] = id.contains("system") ? r.practitioner.substr(colon + 1) : r.practitioner;
    who["identifier"] = id;
  } else if (r.subject.rfind("Patient/", 0) == 0) {
    who["reference"] = r.subject;
    subjectUsed = true;
  } else if (r.role == "patient" && r.patients.size() == 1) {
    who["reference"] = "Patient/" + r.patients[0];
  } else if (!r.account.empty()) {
    who["display"] = r.account;
  } else {
    who["identifier"] = Json{{"value", r.subject}};
    subjectUsed = true;
  }
  return who;
}

}  // namespace

std::string toAuditEventJson(const Record& r, const std::string& fhirBaseUrl) {
  const bool rest = r.kind == "rest";
  const Interaction in = rest ? interactionOf(r) : Interaction{nullptr, actionLetter(r.action), nullptr};
  const bool breakGlass = r.kind == "break-glass" || !r.breakGlassReason.empty();

  Json e;
  e["resourceType"] = "AuditEvent";
  e["id"] = std::to_string(r.seq);
  // BALP profiles describe successful interactions (their outcome is fixed to 0) with at least one
  // data entity; a single Patient makes it the Patient variant.
  if (rest && r.outcome == "granted" && in.profile) {
    std::string p = in.profile;
    bool needsData = p != "Query";
    if (!needsData || !r.resources.empty())
      e["meta"]["profile"] = Json::array({std::string(kBalp) + (r.patients.size() == 1 ? "Patient" : "") + p});
  }
  if (rest) e["type"] = coding(kEventType, "rest", "Restful Operation");
  else if (r.kind == "auth") e["type"] = coding(kDcm, "110114", "User Authentication");
  else if (r.kind == "purge") e["type"] = coding(kDcm, "110101", "Audit Log Used");
  else if (!r.patients.empty()) e["type"] = coding(kDcm, "110110", "Patient Record");
  else e["type"] = coding(kDcm, "110100", "Application Activity");
  if (in.code) e["subtype"] = Json::array({coding(kRestful, in.code, in.code)});
  else if (r.kind == "auth" && r.action == "login") e["subtype"] = Json::array({coding(kDcm, "110122", "Login")});
  else if (r.kind == "auth" && r.action == "logout") e["subtype"] = Json::array({coding(kDcm, "110123", "Logout")});
  e["action"] = std::string(1, in.action);
  e["recorded"] = isoInstant(r.timeMs);
  e["outcome"] = r.outcome == "granted" ? "0" : r.outcome == "denied" ? "4" : "8";
  if (!r.reason.empty()) e["outcomeDesc"] = r.reason;
  else if (r.outcome != "granted" && r.status) e["outcomeDesc"] = "HTTP " + std::to_string(r.status);

  Json purposes = Json::array();
  if (!r.purpose.empty()) purposes.push_back(codeable(coding(kActReason, r.purpose)));
  if (breakGlass) {
    Json btg = codeable(coding(kActReason, "BTG", "break the glass"));
    if (!r.breakGlassReason.empty()) btg["text"] = r.breakGlassReason;
    purposes.push_back(btg);
  }
  if (!purposes.empty()) e["purposeOfEvent"] = purposes;

  // Agents: the user (requestor), the client machine and this server. BALP names the side the data
  // flows to the Destination: the client for a read, the server otherwise.
  const bool toClient = in.action == 'R';
  Json agents = Json::array();
  if (!r.subject.empty() || !r.practitioner.empty() || !r.account.empty()) {
    Json user;
    const char* type = (in.action == 'C' || in.action == 'U') ? "AUT" : in.action == 'D' ? "CST" : "IRCP";
    const char* display = (in.action == 'C' || in.action == 'U') ? "author" : in.action == 'D' ? "custodian"
                                                                                                : "information recipient";
    user["type"] = codeable(coding(kParticipation, type, display));
    if (!r.role.empty()) user["role"] = Json::array({codeable(coding(kRoleSystem, r.role))});
    bool subjectUsed = false;
    user["who"] = userWho(r, subjectUsed);
    if (!subjectUsed && !r.subject.empty()) user["altId"] = r.subject;
    if (!r.account.empty()) user["name"] = r.account;
    user["requestor"] = true;
    if (!r.tokenId.empty()) user["policy"] = Json::array({r.tokenId});
    if (!r.purpose.empty()) user["purposeOfUse"] = Json::array({codeable(coding(kActReason, r.purpose))});
    agents.push_back(user);
  }
  if (!r.sourceAddress.empty()) {
    Json client;
    client["type"] = toClient ? codeable(coding(kDcm, "110152", "Destination Role ID"))
                              : codeable(coding(kDcm, "110153", "Source Role ID"));
    client["who"] = Json{{"display", r.sourceAddress}};
    client["requestor"] = false;
    client["network"] = Json{{"address", hostOf(r.sourceAddress)}, {"type", "2"}};
    agents.push_back(client);
  }
  {
    Json server;
    if (rest || !r.sourceAddress.empty())
      server["type"] = toClient ? codeable(coding(kDcm, "110153", "Source Role ID"))
                                : codeable(coding(kDcm, "110152", "Destination Role ID"));
    else
      server["type"] = codeable(coding(kDcm, "110150", "Application"));
    server["who"] = Json{{"display", "Passerelle"}};
    server["requestor"] = false;
    if (!fhirBaseUrl.empty()) server["network"] = Json{{"address", fhirBaseUrl}, {"type", "5"}};
    agents.push_back(server);
  }
  e["agent"] = agents;

  Json source;
  source["observer"] = Json{{"display", "Passerelle"}};
  source["type"] = Json::array({coding(kSourceType, "4", "Application Server")});
  e["source"] = source;

  Json entities = Json::array();
  bool firstPatient = true;
  for (const auto& patient : r.patients) {
    if (patient.empty()) continue;
    Json p;
    p["what"] = Json{{"reference", "Patient/" + patient}};
    p["type"] = coding(kEntityType, "1", "Person");
    p["role"] = coding(kObjectRole, "1", "Patient");
    if (firstPatient && !r.breakGlassReason.empty())
      p["detail"] = Json::array({Json{{"type", "break-glass-reason"}, {"valueString", r.breakGlassReason}}});
    firstPatient = false;
    entities.push_back(p);
  }
  for (const auto& res : r.resources) {
    if (res.empty()) continue;
    Json d;
    d["what"] = Json{{"reference", res}};
    d["type"] = coding(kEntityType, "2", "System Object");
    d["role"] = coding(kObjectRole, "4", "Domain Resource");
    entities.push_back(d);
  }
  if (r.action == "search" && (!r.query.empty() || !r.path.empty())) {
    Json q;
    q["type"] = coding(kEntityType, "2", "System Object");
    q["role"] = coding(kObjectRole, "24", "Query");
    q["query"] = base64(r.query.empty() ? r.path : r.query);
    entities.push_back(q);
  }
  if (!r.detail.empty()) {
    Json d;
    d["type"] = coding(kEntityType, "2", "System Object");
    d["description"] = r.detail;
    entities.push_back(d);
  }
  if (!entities.empty()) e["entity"] = entities;
  return e.dump();
}

}  // namespace passerelle::audit
