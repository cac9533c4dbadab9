// The hospital connector (see hospital_connector.h).
#include "gateway/exchange/hospital_connector.h"

#include <nlohmann/json.hpp>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <ctime>
#include <functional>
#include <future>
#include <map>
#include <mutex>
#include <random>
#include <thread>

#include "connectors/http/rest_client.h"
#include "gateway/common/log.h"
#include "mappings/fhir/markdown.h"
#include "gateway/fhir/search_params.h"
#include "gateway/exchange/lookups.h"
#include "gateway/identity/identity.h"
#include "mappings/hl7v2/ack.h"
#include "mappings/hl7v2/fhir_mapping.h"
#include "mappings/hl7v2/message.h"

namespace passerelle::exchange {
namespace {

using Json = nlohmann::json;
using hl7v2::AckResult;
using hl7v2::InboundFacts;
using hl7v2::Issue;

constexpr const char* kFiness = "https://finess.esante.gouv.fr";
constexpr const char* kRpps = "https://rpps.esante.gouv.fr";
constexpr const char* kEvent = "https://douleur77.fr/fhir/CodeSystem/network-event";
constexpr const char* kReferralStatus = "https://douleur77.fr/fhir/CodeSystem/referral-status";
constexpr const char* kReferralTaskSid = "https://douleur77.fr/fhir/sid/referral-task";


std::string utcStamp(const char* format) {
  std::time_t t = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[40];
  std::strftime(buf, sizeof buf, format, &tm);
  return buf;
}

std::string str(const Json& j, const char* key) {
  auto it = j.find(key);
  return it != j.end() && it->is_string() ? it->get<std::string>() : std::string();
}

std::string refOf(const Json& j, const char* key) { return str(j.value(key, Json::object()), "reference"); }

// The text of an OperationOutcome's first issue.

Issue appIssue(const std::string& seg, int field, const std::string& code, const std::string& text, int segIndex = 0) {
  Issue i;
  i.severity = "error";
  i.segmentId = seg;
  i.segment = segIndex;
  i.field = field;
  i.component = field > 0 ? 1 : 0;
  i.code = code;
  i.message = text;
  i.location = seg + (field > 0 ? "-" + std::to_string(field) : "");
  return i;
}

std::string issuesText(const std::vector<Issue>& issues) {
  std::string out;
  for (const auto& i : issues)
    if (i.severity == "error") out += (out.empty() ? "" : "; ") + (i.location.empty() ? "" : i.location + ": ") + i.message;
  return out;
}

// What processing a message came to.
struct Outcome {
  AckResult result = AckResult::kAccept;
  std::vector<Issue> issues;
  std::string status = "processed";  // inbox status
  std::string detail;
  std::string patient;
  bool close = false;  // no answer: the store or the trail could not take it (the sender retries)
};

}  // namespace

struct HospitalConnector::Impl {
  store::ResourceStore& store;
  fhir::FhirService& fhir;
  http::Gate* gate;
  access::AccessControl* access;
  audit::AuditLog* audit;
  std::vector<Partner> partners;
  ConnectorOptions o;
  std::vector<identity::Principal> principals;  // one per partner
  std::vector<identity::CertificateAccount> certificateAccounts;  // the partners' certificates
  identity::Principal system;
  std::unique_ptr<mllp::Listener> listener;
  std::vector<std::thread> senders;
  std::mutex mutex;
  std::condition_variable cv;
  bool stopping = false;
  std::uint64_t wakes = 0;
  std::atomic<std::uint64_t> received{0}, accepted{0}, errors{0}, rejected{0}, duplicates{0}, ackCounter{0};
  std::map<std::string, std::size_t> byFiness, byRpps;  // partner index
  std::map<std::string, std::string> orgKeys;           // writer thread: "Organization/x" -> finess (or "")
  std::mutex refsMutex;
  std::map<std::string, std::pair<std::string, std::int64_t>> refs;  // partner -> (its reference, when looked up)

  Impl(store::ResourceStore& s, fhir::FhirService& f, http::Gate* g, access::AccessControl* a, audit::AuditLog* t)
      : store(s), fhir(f), gate(g), access(a), audit(t) {}

  // ---- FHIR access -------------------------------------------------------------------------

  // A request as `who` through the gate (identity given, access decided, audited).
  fhir::FhirResponse as(const identity::Principal& who, const std::string& channel, const std::string& detail,
                        const std::string& address, fhir::FhirRequest& req) {
    if (!gate) return fhir.handle(req);
    http::Caller c;
    c.connector = &who;
    c.channel = channel;
    c.detail = detail;
    c.sourceAddress = address;
    return gate->handle(c, req, "fhir", [this](fhir::FhirRequest& r) { return fhir.handle(r); });
  }

  // The gateway's own lookups (unrestricted, not a disclosure), read from the store's search.
  std::vector<Json> find(const std::string& type, const fhir::Params& query) {
    std::vector<Json> out;
    for (const auto& body : findBodies(store, type, query)) {
      Json j = Json::parse(body, nullptr, false);
      if (!j.is_discarded()) out.push_back(std::move(j));
    }
    return out;
  }

  // The ids of the `type` resources matching `query` (at most `count`): the lookups made for every
  // message received.
  std::vector<std::string> findIds(const std::string& type, const fhir::Params& query, int count = 2) {
    return exchange::findIds(store, type, query, count);
  }

  std::optional<Json> read(const std::string& ref) {
    auto body = currentBody(store, ref);
    if (!body) return std::nullopt;
    Json j = Json::parse(*body, nullptr, false);
    if (j.is_discarded()) return std::nullopt;
    return j;
  }


  // The partner's structure (or professional) in the directory, kept a minute (each message needs it).
  std::string partnerRef(const Partner& p) {
    std::int64_t now = nowMs();
    {
      std::lock_guard<std::mutex> lock(refsMutex);
      auto it = refs.find(p.id);
      if (it != refs.end() && now - it->second.second < 60000) return it->second.first;
    }
    std::string ref = lookupPartnerRef(p);
    if (!ref.empty()) {
      std::lock_guard<std::mutex> lock(refsMutex);
      refs[p.id] = {ref, now};
    }
    return ref;
  }

  std::string lookupPartnerRef(const Partner& p) {
    if (!p.finess.empty()) {
      auto orgs = findIds("Organization", {{"identifier", std::string(kFiness) + "|" + p.finess}}, 1);
      return orgs.empty() ? std::string() : "Organization/" + orgs[0];
    }
    auto roles = findIds("Practitioner", {{"identifier", std::string(kRpps) + "|" + p.rpps}}, 1);
    return roles.empty() ? std::string() : "Practitioner/" + roles[0];
  }

  std::string findPatient(const hl7v2::PersonFacts& p) {
    std::string ins = p.ins();
    if (ins.empty()) return {};
    auto found = findIds("Patient", {{"identifier", p.insSystem() + "|" + ins}});
    return found.size() == 1 ? "Patient/" + found[0] : std::string();
  }

  // The referral Tasks of `patient` owned by the partner, still open.
  std::vector<Json> openReferrals(const std::string& patient, const std::string& owner) {
    auto tasks = find("Task", {{"patient", patient}, {"owner", owner}, {"status", "requested,received,accepted,in-progress"},
                               {"identifier", std::string(kReferralTaskSid) + "|"}});
    return tasks;
  }

  std::vector<std::string> coordinators() {
    std::vector<std::string> out;
    for (const auto& r : find("PractitionerRole", {{"role", "https://douleur77.fr/fhir/CodeSystem/network-role|coordinator"}, {"_count", "100"}}))
      out.push_back("PractitionerRole/" + str(r, "id"));
    return out;
  }

  // ---- inbound -----------------------------------------------------------------------------

  const Partner* identify(const mllp::Peer& peer, const hl7v2::Message* m) {
    if (!peer.certificateFingerprint.empty()) {
      // The same matching as the HTTPS front's accounts: fingerprint, or the subject's attributes
      // (order, case and spaces ignored).
      auto who = identity::principalForCertificate(certificateAccounts, peer.certificateSubject, peer.certificateFingerprint);
      if (!who) return nullptr;
      for (const auto& p : partners)
        if (p.id == who->account) return &p;
      return nullptr;
    }
    if (o.production || !m) return nullptr;  // production: certificates only (the listener requires them)
    std::string app = m->get("MSH-3.1"), fac = m->get("MSH-4.1");
    for (const auto& p : partners)
      if (!p.sendingFacility.empty() && p.sendingFacility == fac && (p.sendingApplication.empty() || p.sendingApplication == app)) return &p;
    return nullptr;
  }

  hl7v2::AckOptions ackOptions() {
    hl7v2::AckOptions a;
    a.sendingApplication = o.application;
    a.sendingFacility = o.facility;
    a.controlId = "ACK" + std::to_string(nowMs()) + "-" + std::to_string(++ackCounter);
    a.timestamp = utcStamp("%Y%m%d%H%M%S");
    return a;
  }

  std::string ackFor(const hl7v2::Message* m, std::string_view header, AckResult r, const std::vector<Issue>& issues) {
    bool enhanced = m && hl7v2::enhancedMode(*m);
    std::string text = hl7v2::buildAck(m, header, r, enhanced, issues, ackOptions());
    // The acknowledgement is UTF-8 text: only a message in a single-byte set needs it re-encoded.
    if (!m || m->charset() == hl7v2::Charset::kUtf8 || m->charset() == hl7v2::Charset::kAscii) return text;
    std::vector<Issue> ignored;
    auto parsed = hl7v2::Message::parse(text, ignored);
    return parsed ? parsed->encodeInCharset("\r") : text;
  }

  // The audit record of a message kept without a change to the dossier: who sent it, about which
  // patient, and what became of it.
  audit::Record receivedRecord(const Partner* p, const mllp::Peer& peer, const store::InboxMessage& row) {
    audit::Record r;
    r.kind = "connector";
    r.action = "receive";
    bool taken = row.status == "processed" || row.status == "review";
    r.outcome = taken ? "granted" : row.status == "rejected" ? "denied" : "error";
    if (!taken) r.reason = row.ackCode;
    if (p) {
      r.subject = r.account = p->account;
      r.role = p->role;
      r.practitioner = p->finess.empty() ? "rpps:" + p->rpps : "finess:" + p->finess;
    } else {
      r.subject = row.partner;
    }
    if (!peer.certificateFingerprint.empty()) r.tokenId = "certificate:" + peer.certificateFingerprint;
    r.purpose = "TREAT";
    r.method = "MLLP";
    r.path = "mllp:" + row.partner;
    r.sourceAddress = peer.address;
    if (row.patient.rfind("Patient/", 0) == 0) {
      r.resourceType = "Patient";
      r.resources = {row.patient};
      r.patients = {row.patient.substr(8)};
    }
    r.detail = row.type + " " + row.controlId + " " + row.ackCode + (row.detail.empty() ? "" : ": " + row.detail);
    return r;
  }

  // The row of a message refused (AR) or in error (AE, CR/CE in enhanced mode), with its reasons.
  void markRefused(store::InboxMessage& row, const hl7v2::Message* m, std::string_view header, AckResult r,
                   const std::vector<Issue>& issues, const std::string& status) {
    row.ack = ackFor(m, header, r, issues);
    row.ackCode = std::string(m && hl7v2::enhancedMode(*m) ? "C" : "A") + (r == AckResult::kReject ? "R" : "E");
    row.status = status;
    row.detail = issuesText(issues);
  }

  static void logRefused(const store::InboxMessage& row, const mllp::Peer& peer) {
    log::warn("mllp.refused", {{"partner", row.partner}, {"peer", peer.address}, {"type", row.type}, {"ack", row.ackCode}, {"detail", row.detail}});
  }

  struct Kept {
    std::optional<std::string> ack;  // the answer; nothing when the store failed (close: the sender retries)
    bool duplicate = false;          // the control id was taken in before: its stored answer
  };

  // Keeps a message that changes nothing in the dossier (refused, person information, for review)
  // with its audit record, in one commit. `inUnit`, when given, completes the row first inside the
  // write unit (lookups there run on the writer's connection, whose pages stay cached).
  Kept keep(store::InboxMessage& row, const Partner* p, const mllp::Peer& peer,
            const std::function<Result<void>(store::WriteTxn&)>& inUnit = {}) {
    auto w = store.write([&](store::WriteTxn& t) -> Result<void> {
      if (inUnit) {
        auto r = inUnit(t);
        if (!r.ok()) return r;
      }
      auto put = t.putInbox(row);
      if (!put.ok()) return put;
      if (gate) return t.attachAudit(audit::encodeRecord(receivedRecord(p, peer, row)));
      return {};
    });
    Kept out;
    if (w.ok()) {
      out.ack = row.ack;
      return out;
    }
    if (w.error().code == ErrorCode::kConflict) {
      auto seen = store.findInbox(row.partner, row.controlId);
      if (seen.ok() && seen->has_value()) {
        ++duplicates;
        out.ack = (*seen)->ack;
        out.duplicate = true;
        return out;
      }
    }
    log::error("mllp.inbox_failed", {{"partner", row.partner}, {"control_id", row.controlId}, {"error", w.error().message}});
    return out;
  }

  std::optional<std::string> receive(const mllp::Peer& peer, std::string_view bytes) {
    ++received;
    std::vector<Issue> issues;
    auto parsed = hl7v2::Message::parse(bytes, issues);
    std::string_view header = bytes.substr(0, std::min(bytes.find_first_of("\r\n"), bytes.size()));
    const hl7v2::Message* m = parsed ? &*parsed : nullptr;
    const Partner* partner = identify(peer, m);
    store::InboxMessage row;
    row.channel = "mllp";
    row.partner = partner ? partner->id : "(unknown)";
    row.message = std::string(bytes);
    row.controlId = m ? m->get("MSH-10") : std::string();
    row.type = m ? m->get("MSH-9.1") + "^" + m->get("MSH-9.2") : std::string("?");
    auto refuse = [&](AckResult r, const std::string& status) -> std::optional<std::string> {
      (r == AckResult::kReject ? rejected : errors)++;
      markRefused(row, m, header, r, issues, status);
      if (row.controlId.empty()) row.controlId = "unkeyed:" + std::to_string(nowMs()) + "-" + std::to_string(received.load());
      logRefused(row, peer);
      return keep(row, partner, peer).ack;
    };
    if (!m) return refuse(AckResult::kReject, "rejected");
    if (!partner) {
      issues.push_back(appIssue("MSH", 4, "207", peer.certificateFingerprint.empty()
                                                     ? "the sender (MSH-3/MSH-4) is not a configured partner"
                                                     : "the client certificate is not a configured partner's"));
      return refuse(AckResult::kReject, "rejected");
    }
    if (row.controlId.empty()) {
      issues.push_back(appIssue("MSH", 10, "101", "MSH-10 (the message control id) is empty"));
      return refuse(AckResult::kReject, "rejected");
    }
    InboundFacts facts = hl7v2::readInbound(*m, issues);
    bool unsupported = false, bad = false;
    for (const auto& i : issues)
      if (i.severity == "error") (i.code == "200" || i.code == "203" ? unsupported : bad) = true;
    bool person = !unsupported && !bad && facts.kind == InboundFacts::Kind::kAdt &&
                  (facts.event == "A28" || facts.event == "A31" || facts.event == "A40");
    if (person) return keepPerson(*partner, peer, *m, facts, row, issues, refuse);
    // A message sent again gets the same answer and is not processed twice. (A message refused
    // before is processed anew: its sender may have fixed what was wrong.)
    auto seen = store.findInbox(partner->id, row.controlId);
    if (!seen.ok()) return std::nullopt;
    if (seen->has_value() && ((*seen)->status == "processed" || (*seen)->status == "review")) {
      ++duplicates;
      return (*seen)->ack;
    }
    if (unsupported) return refuse(AckResult::kReject, "rejected");
    if (bad) return refuse(AckResult::kError, "error");
    std::size_t pi = static_cast<std::size_t>(partner - partners.data());
    Outcome out = process(*partner, principals[pi], peer, *m, facts, row);
    if (out.close) return std::nullopt;
    if (out.result != AckResult::kAccept) {
      issues.insert(issues.end(), out.issues.begin(), out.issues.end());
      row.patient = out.patient;
      return refuse(out.result, "error");
    }
    ++accepted;
    return row.ack;
  }

  // Person information (ADT A28, A31) changes nothing: the network keeps the identity its GP
  // recorded; a merge of identities (A40) is for a coordinator to review. Once the patient is found
  // by INS the message is kept. The lookup, the row and its audit record are one write unit, and a
  // repeated control id is found there too (the row's insert conflicts), so such a message costs
  // no read of its own before its commit.
  template <class Refuse>
  std::optional<std::string> keepPerson(const Partner& p, const mllp::Peer& peer, const hl7v2::Message& m, const InboundFacts& f,
                                        store::InboxMessage& row, std::vector<Issue>& issues, Refuse& refuse) {
    if (partnerRef(p).empty()) {
      issues.push_back(appIssue("MSH", 4, "207", "the partner's structure is not in the network's directory"));
      return refuse(AckResult::kError, "error");
    }
    if (f.hasPatient && f.patient.ins().empty()) {
      issues.push_back(appIssue("PID", 3, "204", "PID-3 carries no INS: the patient cannot be identified"));
      return refuse(AckResult::kError, "error");
    }
    bool merge = f.event == "A40";
    const std::string acceptAck = ackFor(&m, {}, AckResult::kAccept, {});
    const char* acceptedCode = hl7v2::enhancedMode(m) ? "CA" : "AA";
    std::string identifier = f.patient.insSystem() + "|" + f.patient.ins();
    bool unknown = false;
    Kept kept = keep(row, &p, peer, [&](store::WriteTxn& t) -> Result<void> {
      row.patient.clear();
      unknown = false;
      if (f.hasPatient) {
        auto found = exchange::findIds(t, "Patient", {{"identifier", identifier}}, 2);
        if (!found.ok()) return found.error();
        if (found->size() == 1) row.patient = "Patient/" + (*found)[0];
        unknown = found->size() != 1;
      }
      if (unknown) {
        std::vector<Issue> all = issues;
        all.push_back(appIssue("PID", 3, "204", "no network patient has this INS"));
        markRefused(row, &m, {}, AckResult::kError, all, "error");
        return {};
      }
      row.status = merge ? "review" : "processed";
      row.ack = acceptAck;
      row.ackCode = acceptedCode;
      row.detail = merge ? "a merge of patient identities: for a coordinator to review"
                         : "person information: the network keeps the identity its GP recorded (nothing changed)";
      return {};
    });
    if (!kept.ack || kept.duplicate) return kept.ack;
    if (unknown) {
      ++errors;
      logRefused(row, peer);
    } else {
      ++accepted;
    }
    return kept.ack;
  }

  // Applies the message; the inbox row goes into the same commit (its ack prepared as AA).
  Outcome process(const Partner& p, const identity::Principal& who, const mllp::Peer& peer, const hl7v2::Message& m,
                  const InboundFacts& f, store::InboxMessage& row) {
    Outcome out;
    std::vector<Issue> none;
    row.ack = ackFor(&m, {}, AckResult::kAccept, none);
    row.ackCode = hl7v2::enhancedMode(m) ? "CA" : "AA";
    row.status = "processed";
    std::string channel = "mllp:" + p.id;
    std::string detail = row.type + " " + row.controlId;
    auto fail = [&](const std::string& seg, int field, const std::string& code, const std::string& text) {
      out.result = AckResult::kError;
      out.issues.push_back(appIssue(seg, field, code, text));
      return out;
    };
    if (f.kind == InboundFacts::Kind::kReport && f.document.data.empty())
      return fail("OBX", 5, "101", "the message carries no document (an OBX of type ED with Base64 data, or TX/FT text)");
    std::string owner = partnerRef(p);
    if (owner.empty()) return fail("MSH", 4, "207", "the partner's structure is not in the network's directory");
    std::string patient;
    if (f.hasPatient) {
      patient = findPatient(f.patient);
      if (patient.empty())
        return fail("PID", 3, "204", f.patient.ins().empty() ? "PID-3 carries no INS: the patient cannot be identified"
                                                             : "no network patient has this INS");
    }
    out.patient = patient;
    row.patient = patient;
    Json bundle = {{"resourceType", "Bundle"}, {"type", "transaction"}, {"entry", Json::array()}};
    if (f.kind == InboundFacts::Kind::kReferralReply) {
      auto tasks = find("Task", {{"identifier", std::string(kReferralTaskSid) + "|" + f.referralId}});
      if (tasks.size() != 1) return fail("RF1", 6, "204", "no referral " + f.referralId + " is known");
      Json t = tasks[0];
      if (refOf(t, "owner") != owner) return fail("RF1", 6, "207", "the referral " + f.referralId + " is not addressed to " + p.name);
      if (!patient.empty() && refOf(t, "for") != patient) return fail("PID", 3, "207", "the patient is not the referral's");
      patient = refOf(t, "for");
      out.patient = row.patient = patient;
      std::string status = f.replyStatus == "expired" ? "rejected" : f.replyStatus;
      t["status"] = status;
      t["businessStatus"] = {{"coding", Json::array({{{"system", kReferralStatus}, {"code", f.replyStatus}}})}};
      t["lastModified"] = f.replyDate;
      std::string tid = str(t, "id");
      bundle["entry"].push_back({{"resource", t}, {"request", {{"method", "PUT"}, {"url", "Task/" + tid}}}});
      Json event = {{"resourceType", "Task"},
                    {"status", "completed"},
                    {"intent", "order"},
                    {"code", {{"coding", Json::array({{{"system", kEvent}, {"code", "referral-update"}}})}}},
                    {"groupIdentifier", {{"system", "https://douleur77.fr/fhir/sid/referral"}, {"value", f.referralId}}},
                    {"businessStatus", t["businessStatus"]},
                    {"for", {{"reference", patient}}},
                    {"focus", {{"reference", "Task/" + tid}}},
                    {"owner", {{"reference", owner}}},
                    {"authoredOn", f.replyDate}};
      if (!f.replyNote.empty()) event["note"] = Json::array({{{"text", fhir::markdownFromText(f.replyNote)}}});
      bundle["entry"].push_back({{"resource", event}, {"request", {{"method", "POST"}, {"url", "Task"}}}});
    } else {
      // A consultation or report from the hospital: it answers an open referral, or it is an E2 suspicion.
      std::vector<Json> open;
      if (f.kind == InboundFacts::Kind::kReport && !f.document.placerOrder.empty()) {
        auto byId = find("Task", {{"identifier", std::string(kReferralTaskSid) + "|" + f.document.placerOrder}});
        for (auto& t : byId)
          if (refOf(t, "owner") == owner && refOf(t, "for") == patient) open.push_back(t);
      }
      if (open.empty()) open = openReferrals(patient, owner);
      if (open.empty()) return e2Suspicion(p, patient, f, row, out);
      Json task = open.front();
      std::string taskId = str(task, "id");
      std::string request = refOf(task, "focus");
      if (f.kind == InboundFacts::Kind::kAdt) {
        Json e;
        hl7v2::encounterResource(f, e);
        e["subject"] = {{"reference", patient}};
        e["serviceProvider"] = {{"reference", owner}};
        if (!request.empty()) e["basedOn"] = Json::array({{{"reference", request}}});
        Json entry = {{"resource", e}, {"request", {{"method", "POST"}, {"url", "Encounter"}}}};
        if (!f.visitNumber.empty()) {
          std::string sys = "urn:passerelle:partner:" + p.id + ":visit";
          entry["resource"]["identifier"][0]["system"] = sys;
          entry["request"] = {{"method", "PUT"}, {"url", "Encounter?identifier=" + sys + "|" + f.visitNumber}};
        }
        bundle["entry"].push_back(entry);
        if (str(task, "status") == "accepted" && f.event != "A08") {
          task["status"] = "in-progress";
          task["businessStatus"] = {{"coding", Json::array({{{"system", kReferralStatus}, {"code", "seen"}}})}};
          bundle["entry"].push_back({{"resource", task}, {"request", {{"method", "PUT"}, {"url", "Task/" + taskId}}}});
        }
      } else {
        Json d;
        hl7v2::documentReferenceResource(f, d);
        d["subject"] = {{"reference", patient}};
        d["custodian"] = {{"reference", owner}};
        if (!f.document.authorRpps.empty()) {
          auto authors = find("Practitioner", {{"identifier", std::string(kRpps) + "|" + f.document.authorRpps}});
          d["author"] = Json::array({authors.empty() ? Json{{"identifier", {{"system", kRpps}, {"value", f.document.authorRpps}}}}
                                                     : Json{{"reference", "Practitioner/" + str(authors[0], "id")}}});
        }
        if (!request.empty()) d["context"] = {{"related", Json::array({{{"reference", request}}})}};
        std::string docUrl = "urn:uuid:" + uuidLike(row.controlId);
        Json entry = {{"fullUrl", docUrl}, {"resource", d}, {"request", {{"method", "POST"}, {"url", "DocumentReference"}}}};
        if (d.contains("masterIdentifier"))
          entry["request"]["ifNoneExist"] = "identifier=" + str(d["masterIdentifier"], "system") + "|" + str(d["masterIdentifier"], "value");
        if (f.replaces && !f.document.parentId.empty()) {
          std::string parent = f.document.parentId.find('.') != std::string::npos ? "urn:oid:" + f.document.parentId : f.document.parentId;
          auto old = find("DocumentReference", {{"identifier", "urn:ietf:rfc:3986|" + parent}});
          if (!old.empty()) {
            Json prev = old.front();
            prev["status"] = "superseded";
            entry["resource"]["relatesTo"] = Json::array({{{"code", "replaces"}, {"target", {{"reference", "DocumentReference/" + str(prev, "id")}}}}});
            bundle["entry"].push_back({{"resource", prev}, {"request", {{"method", "PUT"}, {"url", "DocumentReference/" + str(prev, "id")}}}});
          }
        }
        bundle["entry"].push_back(entry);
        task["status"] = "completed";
        task["businessStatus"] = {{"coding", Json::array({{{"system", kReferralStatus}, {"code", "report-returned"}}})}};
        task["output"] = Json::array({{{"type", {{"text", "report"}}}, {"valueReference", {{"reference", docUrl}}}}});
        bundle["entry"].push_back({{"resource", task}, {"request", {{"method", "PUT"}, {"url", "Task/" + taskId}}}});
      }
    }
    return apply(who, channel, detail, peer.address, bundle, row, out);
  }

  static std::string uuidLike(const std::string& seed) {
    std::uint64_t h1 = std::hash<std::string>{}(seed), h2 = std::hash<std::string>{}(seed + "#");
    char buf[40];
    std::snprintf(buf, sizeof buf, "%08x-%04x-4%03x-8%03x-%012llx", static_cast<unsigned>(h1 >> 32), static_cast<unsigned>((h1 >> 16) & 0xffff),
                  static_cast<unsigned>(h1 & 0xfff), static_cast<unsigned>((h2 >> 48) & 0xfff),
                  static_cast<unsigned long long>(h2 & 0xffffffffffffULL));
    return buf;
  }

  // Runs the transaction as `who`, with the inbox row in its commit.
  Outcome apply(const identity::Principal& who, const std::string& channel, const std::string& detail, const std::string& address,
                const Json& bundle, store::InboxMessage& row, Outcome& out) {
    fhir::FhirRequest req = transactionKeeping(bundle.dump(), row);
    auto r = as(who, channel, detail, address, req);
    if (r.status < 300) return out;
    if (r.status == 409) {
      // The same message, received twice at once: the first one's answer is the answer.
      auto seen = store.findInbox(row.partner, row.controlId);
      if (seen.ok() && seen->has_value()) {
        row.ack = (*seen)->ack;
        return out;
      }
    }
    if (r.status >= 500) {
      log::error("mllp.not_stored", {{"partner", row.partner}, {"control_id", row.controlId}, {"status", std::to_string(r.status)},
                                     {"error", outcomeText(r.body)}});
      out.close = true;
      return out;
    }
    out.result = AckResult::kError;
    out.issues.push_back(appIssue("MSH", 9, r.status == 403 ? "207" : "207", "not applied (" + std::to_string(r.status) + "): " + outcomeText(r.body)));
    return out;
  }

  // A hospital consultation or report without an open referral to that hospital: engagement E2 may
  // have been broken. The coordinators get a flagged Task to review; the message is kept for them.
  Outcome e2Suspicion(const Partner& p, const std::string& patient, const InboundFacts& f, store::InboxMessage& row, Outcome& out) {
    std::string when = f.kind == InboundFacts::Kind::kReport ? f.document.date : f.admitted;
    if (when.empty()) when = f.sentAt;
    Json task = {{"resourceType", "Task"},
                 {"status", "requested"},
                 {"intent", "proposal"},
                 {"priority", "routine"},
                 {"code", {{"coding", Json::array({{{"system", kEvent}, {"code", "e2-suspicion"},
                                                    {"display", "Consultation without a referral (engagement E2) to review"}}})}}},
                 {"businessStatus", {{"coding", Json::array({{{"system", kReferralStatus}, {"code", "flagged"}}})}}},
                 {"description", p.name + " sent " + f.type + "^" + f.event + " (" + row.controlId + ")" + (when.empty() ? "" : " of " + when) +
                                     " for a patient it holds no open referral for: review it with the GP (engagement E2); no exclusion follows automatically."},
                 {"identifier", Json::array({{{"system", "https://douleur77.fr/fhir/sid/e2-suspicion"}, {"value", p.id + "/" + row.controlId}}})},
                 {"for", {{"reference", patient}}},
                 {"authoredOn", utcStamp("%Y-%m-%d")}};
    auto coords = coordinators();
    if (!coords.empty()) {
      Json recipients = Json::array();
      for (const auto& c : coords) recipients.push_back({{"reference", c}});
      task["restriction"] = {{"recipient", recipients}};
    }
    row.status = "review";
    row.detail = "E2 suspicion: no open referral of this patient to " + p.name;
    Json bundle = {{"resourceType", "Bundle"}, {"type", "transaction"},
                   {"entry", Json::array({{{"resource", task}, {"request", {{"method", "POST"}, {"url", "Task"}}}}})}};
    return apply(system, "job:e2-review", "E2 suspicion from " + p.id + " " + row.type + " " + row.controlId, "", bundle, row, out);
  }

  // ---- outbound ----------------------------------------------------------------------------

  // In the writer's unit: a referral written for a partner's structure queues its delivery.
  Result<void> route(store::WriteTxn& txn, const store::ResourceVersion& v) {
    if (v.type != "ServiceRequest" || v.deleted) return {};
    Json sr = Json::parse(v.body, nullptr, false);
    if (sr.is_discarded()) return {};
    bool referral = false;
    for (const auto& c : sr.value("category", Json::array()))
      for (const auto& k : c.value("coding", Json::array()))
        if (str(k, "code") == "3457005") referral = true;
    if (!referral) return {};
    const Json& performers = sr.value("performer", Json::array());
    if (performers.empty()) return {};
    std::string ref = str(performers[0], "reference");
    std::string status = str(sr, "status");
    std::string event = status == "revoked" || status == "entered-in-error" ? "I14" : status == "active" ? (v.version == 1 ? "I12" : "I13") : "";
    if (event.empty()) return {};
    auto key = orgKeys.find(ref);
    if (key == orgKeys.end()) {
      std::string k;
      auto slash = ref.find('/');
      if (slash != std::string::npos) {
        auto cur = txn.current(ref.substr(0, slash), ref.substr(slash + 1));
        if (!cur.ok()) return cur.error();
        if (cur->has_value() && !(*cur)->deleted) {
          Json r = Json::parse((*cur)->body, nullptr, false);
          if (!r.is_discarded())
            for (const auto& id : r.value("identifier", Json::array())) {
              if (str(id, "system") == kFiness) k = "finess:" + str(id, "value");
              if (str(id, "system") == kRpps) k = "rpps:" + str(id, "value");
            }
        }
      }
      key = orgKeys.emplace(ref, k).first;
    }
    const Partner* partner = nullptr;
    if (key->second.rfind("finess:", 0) == 0) {
      auto it = byFiness.find(key->second.substr(7));
      if (it != byFiness.end()) partner = &partners[it->second];
    } else if (key->second.rfind("rpps:", 0) == 0) {
      auto it = byRpps.find(key->second.substr(5));
      if (it != byRpps.end()) partner = &partners[it->second];
    }
    if (!partner || partner->protocol == "none") return {};
    store::Delivery d;
    d.destination = partner->id;
    d.orderKey = refOf(sr, "subject");
    // A FHIR partner gets the referral's current state as one transaction (creation, change and
    // revocation alike: its entries are conditional updates).
    d.kind = partner->protocol == "fhir" ? "FHIR-TRANSACTION" : "REF^" + event;
    d.focus = v.type + "/" + v.id + "/_history/" + std::to_string(v.version);
    return txn.enqueue(d);
  }

  std::int64_t backoff(const Partner& p, int attempts) {
    static thread_local std::mt19937 rng(std::random_device{}());
    double base = p.retry.initialDelayMs;
    for (int i = 1; i < attempts && base < p.retry.maxDelayMs; ++i) base *= 2;
    base = std::min<double>(base, p.retry.maxDelayMs);
    std::uniform_real_distribution<double> jitter(0.5, 1.0);
    return static_cast<std::int64_t>(base * jitter(rng));
  }

  audit::Record sendRecord(const Partner& p, const store::Delivery& d, const std::string& patient, const std::string& outcome,
                           int status, const std::string& detail) {
    audit::Record r;
    r.kind = "connector";
    r.action = "send";
    r.outcome = outcome;
    r.status = status;
    r.subject = p.account;
    r.role = p.role;
    r.account = p.account;
    r.practitioner = p.finess.empty() ? "rpps:" + p.rpps : "finess:" + p.finess;
    r.purpose = "TREAT";
    r.method = "MLLP";
    r.path = "mllp:" + p.id;
    r.resourceType = "ServiceRequest";
    r.resources = {d.focus.substr(0, d.focus.find("/_history"))};
    if (patient.rfind("Patient/", 0) == 0) r.patients = {patient.substr(8)};
    r.detail = d.kind + " delivery " + std::to_string(d.id) + ": " + detail;
    return r;
  }

  // The resources a referral message carries, read as the gateway.
  bool render(const Partner& p, store::Delivery& d, const Json& sr, std::string& error) {
    std::vector<Json> held;
    held.reserve(16);
    held.push_back(sr);
    std::string patient = refOf(sr, "subject");
    if (auto pt = read(patient)) held.push_back(*pt);
    std::string requester = refOf(sr, "requester");
    if (requester.rfind("PractitionerRole/", 0) == 0)
      if (auto role = read(requester)) requester = refOf(*role, "practitioner");
    if (auto rq = read(requester)) {
      (*rq)["id"] = refOf(sr, "requester").substr(refOf(sr, "requester").find('/') + 1);
      (*rq)["resourceType"] = refOf(sr, "requester").substr(0, refOf(sr, "requester").find('/'));
      held.push_back(*rq);
    }
    const Json& performers = sr.value("performer", Json::array());
    if (!performers.empty())
      if (auto to = read(str(performers[0], "reference"))) held.push_back(*to);
    for (auto& c : find("Condition", {{"subject", patient}, {"_count", "10"}})) held.push_back(std::move(c));
    for (auto& ob : find("Observation", {{"subject", patient}, {"code", "http://loinc.org|72514-3"}, {"_sort", "-date"}, {"_count", "3"}}))
      held.push_back(std::move(ob));
    std::vector<const Json*> ptrs;
    for (const auto& h : held) ptrs.push_back(&h);
    hl7v2::ReferralOut r;
    if (!hl7v2::referralFromFhir(ptrs, r, error)) return false;
    r.event = d.kind.substr(4);
    r.controlId = "D77" + std::to_string(d.id);
    r.timestamp = utcStamp("%Y%m%d%H%M%S");
    r.sendingApplication = o.application;
    r.sendingFacility = o.facility;
    r.receivingApplication = p.receivingApplication;
    r.receivingFacility = p.receivingFacility;
    r.enhancedAck = p.enhancedAck;
    d.payload = hl7v2::buildReferral(r);
    return true;
  }

  // What became of one delivery: its new state and its audit record, saved with the others of its
  // batch in one commit.
  struct Done {
    store::Delivery d;
    std::string patient, outcome, detail;
    int status = 0;
    bool audit = false;
  };

  // A delivery read and written, ready for its consent check and to leave (or settled already).
  struct Prepared {
    enum class State { kSend, kSettled, kPause } state = State::kPause;
    store::Delivery d;
    store::ResourceVersion carried;  // the version of the referral it carries
    Json sr;                         // its JSON
    std::string patient;
    bool renderedNow = false;        // the message was written for this attempt (not kept from an earlier one)
    std::optional<Done> done;        // kSettled: its new state (gone, cannot be written)
  };

  // The first half of a delivery: what it carries read again and the message written (HL7 v2; a
  // FHIR partner's at sending). kPause when the store is unavailable. Consent is checked by send(),
  // right before the message leaves.
  Prepared prepare(const Partner& p, bool fhirPartner, store::Delivery d) {
    Prepared out;
    std::string path = d.focus;
    auto h = path.find("/_history/");
    std::string type = path.substr(0, path.find('/')), id = path.substr(path.find('/') + 1, h - path.find('/') - 1);
    std::int64_t version = h == std::string::npos ? 0 : std::atoll(path.c_str() + h + 10);
    auto v = store.vread(type, id, version);
    if (!v.ok()) return out;
    out.state = Prepared::State::kSettled;
    if (!v->has_value()) {
      out.done = deadLetter(d, "the resource it carries is gone");
      return out;
    }
    Json sr = Json::parse((*v)->body, nullptr, false);
    std::string patient = refOf(sr, "subject");
    if (!fhirPartner && d.payload.empty()) {
      std::string error;
      if (!render(p, d, sr, error)) {
        out.done = deadLetter(d, "cannot be written as HL7 v2: " + error);
        return out;
      }
      out.renderedNow = true;
    }
    out.state = Prepared::State::kSend;
    out.carried = std::move(**v);
    out.d = std::move(d);
    out.sr = std::move(sr);
    out.patient = std::move(patient);
    return out;
  }

  // The second half: the patient's consent checked again (nothing of a patient who withdrew leaves,
  // queued or not), then sent and the answer settled. Returns false to pause this partner (it is
  // down, or the store is unavailable).
  bool send(const Partner& p, std::size_t pi, mllp::Sender* sender, http_client::RestClient* rest, Prepared& x,
            std::optional<Done>& done) {
    store::Delivery& d = x.d;
    const std::string& patient = x.patient;
    if (access) {
      // The referral names this partner as its performer (the router checked it): the "referred"
      // relationship holds; what is decided now is the patient's consent.
      std::map<std::string, std::string> established;
      if (patient.rfind("Patient/", 0) == 0) established[patient.substr(8)] = "referred";
      const store::ResourceVersion& v = x.carried;
      auto g = access->guardFor(principals[pi], access::patientsOf(v.type, v.id, v.body), established);
      if (!g.ok()) return false;
      auto ok = (*g)->readable({v});
      if (!ok.ok()) return false;
      if (!ok->front()) {
        if (x.renderedNow) d.payload.clear();  // nothing of the patient kept that was written for nothing
        d.status = "cancelled";
        d.lastError = "not sent: the patient's consent does not allow sharing with " + p.name + " (withdrawn, expired or absent)";
        d.doneMs = nowMs();
        done = Done{d, patient, "denied", d.lastError, 403, true};
        return true;
      }
    }
    if (rest) return deliverFhir(p, *rest, d, x.sr, patient, done);
    ++d.attempts;
    auto sent = sender->exchange(d.payload);
    std::string code, text;
    if (sent.answered) {
      std::vector<Issue> ignored;
      auto ack = hl7v2::Message::parse(sent.answer, ignored);
      code = ack ? ack->get("MSA-1") : "";
      std::string about = ack ? ack->get("MSA-2") : "";
      if (ack && about != "D77" + std::to_string(d.id)) code.clear(), text = "an acknowledgement of another message (" + about + ")";
      else if (ack) text = ack->get("ERR-8").empty() ? ack->get("MSA-3") : ack->get("ERR-8");
      else text = "an answer that is not HL7 v2";
    } else {
      text = sent.error;
    }
    bool accepted = code == "AA" || code == "CA";
    settle(p, d, accepted, code == "AR" || code == "CR", accepted ? code + " from " + p.id : (code.empty() ? "" : code + ": ") + text,
           patient, accepted ? 200 : 0, !code.empty(), done);
    return sent.answered;  // a connection failure pauses the partner until the next try
  }

  static Done deadLetter(store::Delivery d, std::string why) {
    d.status = "dead";
    d.lastError = std::move(why);
    d.doneMs = nowMs();
    return Done{d, {}, {}, {}, 0, false};
  }

  // The outcome of one attempt: sent; a dead letter (refused by the partner, or out of tries); or
  // another try after a backoff with jitter. `what`: the partner's answer or the failure.
  void settle(const Partner& p, store::Delivery& d, bool accepted, bool refused, const std::string& what, const std::string& patient,
              int status, bool reachedThePartner, std::optional<Done>& done) {
    if (accepted) {
      d.status = "sent";
      d.doneMs = nowMs();
      d.lastError.clear();
      done = Done{d, patient, "granted", what, status, true};
      return;
    }
    d.lastError = what;
    if (refused || d.attempts >= p.retry.maxAttempts) {
      d.status = "dead";
      d.doneMs = nowMs();
      log::error("outbox.dead_letter", {{"partner", p.id}, {"delivery", std::to_string(d.id)}, {"error", d.lastError}});
    } else {
      d.nextTryMs = nowMs() + backoff(p, d.attempts);
      log::warn("outbox.retry", {{"partner", p.id}, {"delivery", std::to_string(d.id)}, {"attempt", std::to_string(d.attempts)},
                                 {"error", d.lastError}});
    }
    done = Done{d, patient, "error", d.lastError, status, reachedThePartner};
  }

  // The batch's new states and their audit records in one commit (the records go on to the trail
  // from there, as a request's do).
  void saveAll(const Partner& p, std::vector<Done>& batch) {
    if (batch.empty()) return;
    auto w = store.write([&](store::WriteTxn& t) -> Result<void> {
      for (const auto& x : batch) {
        auto r = t.updateDelivery(x.d);
        if (!r.ok()) return r;
        if (x.audit && audit) {
          auto a = t.attachAudit(audit::encodeRecord(sendRecord(p, x.d, x.patient, x.outcome, x.status, x.detail)));
          if (!a.ok()) return a;
        }
      }
      return {};
    });
    if (!w.ok()) {
      // Not recorded: those sent will be sent again (same control ids: the partner's duplicate check holds).
      log::error("outbox.save_failed", {{"partner", p.id}, {"deliveries", std::to_string(batch.size())}, {"error", w.error().message}});
    }
    batch.clear();
  }

  // ---- FHIR partners --------------------------------------------------------------------------

  static http_client::Options restOptions(const Partner& p) {
    http_client::Options o;
    o.baseUrl = p.baseUrl;
    if (!p.tokenEnv.empty())
      if (const char* t = std::getenv(p.tokenEnv.c_str())) o.bearerToken = t;
    if (p.tls) {
      o.clientCertificate = p.tls->certificate;
      o.clientKey = p.tls->privateKey;
      o.caFile = p.tls->caFile;
    }
    o.connectTimeoutMs = p.connectTimeoutMs;
    o.timeoutMs = p.answerTimeoutMs;
    return o;
  }

  // The referral as a FHIR transaction for the partner's server: the ServiceRequest, its Task, the
  // Patient, the requester, the structure, the patient's Conditions and latest pain scores. Each
  // entry is a conditional update on an identifier naming the resource here, so sending it again
  // (a retry, a change) updates rather than duplicates; references between entries use their
  // fullUrl, references to what is not sent are left as a display.
  bool renderFhir(store::Delivery& d, const Json& sr, std::string& error) {
    std::vector<Json> held;
    held.push_back(sr);
    std::string patient = refOf(sr, "subject");
    auto add = [&](const std::string& ref) {
      if (ref.empty()) return;
      for (const auto& h : held)
        if (str(h, "resourceType") + "/" + str(h, "id") == ref) return;
      if (auto r = read(ref)) held.push_back(std::move(*r));
    };
    add(patient);
    if (held.size() < 2) {
      error = "the patient " + patient + " cannot be read";
      return false;
    }
    std::string requester = refOf(sr, "requester");
    add(requester);
    if (requester.rfind("PractitionerRole/", 0) == 0)
      if (auto role = read(requester)) add(refOf(*role, "practitioner"));
    const Json& performers = sr.value("performer", Json::array());
    if (!performers.empty()) add(str(performers[0], "reference"));
    std::string referralId;
    for (const auto& id : sr.value("identifier", Json::array()))
      if (str(id, "system") == "https://douleur77.fr/fhir/sid/referral") referralId = str(id, "value");
    if (!referralId.empty())
      for (auto& t : find("Task", {{"identifier", std::string(kReferralTaskSid) + "|" + referralId}})) held.push_back(std::move(t));
    for (auto& c : find("Condition", {{"subject", patient}, {"_count", "10"}})) held.push_back(std::move(c));
    for (auto& ob : find("Observation", {{"subject", patient}, {"code", "http://loinc.org|72514-3"}, {"_sort", "-date"}, {"_count", "3"}}))
      held.push_back(std::move(ob));
    static const std::string kSource = "https://douleur77.fr/fhir/sid/source";
    std::map<std::string, std::string> urls;  // "Type/id" -> fullUrl
    for (const auto& h : held) {
      std::string ref = str(h, "resourceType") + "/" + str(h, "id");
      urls[ref] = "urn:uuid:" + uuidLike("passerelle:" + ref);
    }
    std::function<void(Json&)> rewrite = [&](Json& j) {
      if (j.is_object()) {
        auto r = j.find("reference");
        if (r != j.end() && r->is_string()) {
          auto u = urls.find(r->get<std::string>());
          if (u != urls.end()) {
            *r = u->second;
          } else if (r->get<std::string>().find("://") == std::string::npos && !j.contains("display")) {
            j["display"] = r->get<std::string>() + " (kept by Douleur 77)";
            j.erase("reference");
          } else if (r->get<std::string>().find("://") == std::string::npos) {
            j.erase("reference");
          }
        }
        for (auto& [k, v] : j.items()) rewrite(v);
      } else if (j.is_array()) {
        for (auto& v : j) rewrite(v);
      }
    };
    Json bundle = {{"resourceType", "Bundle"}, {"type", "transaction"}, {"entry", Json::array()}};
    for (auto h : held) {
      std::string type = str(h, "resourceType"), ref = type + "/" + str(h, "id");
      h.erase("id");
      h.erase("meta");
      h.erase("text");
      if (!h.contains("identifier") || !h["identifier"].is_array()) h["identifier"] = Json::array();
      h["identifier"].push_back({{"system", kSource}, {"value", ref}});
      rewrite(h);
      bundle["entry"].push_back({{"fullUrl", urls[ref]},
                                 {"resource", h},
                                 {"request", {{"method", "PUT"}, {"url", type + "?" + fhir::encodeQuery({{"identifier", kSource + "|" + ref}})}}}});
    }
    d.payload = bundle.dump();
    return true;
  }

  bool deliverFhir(const Partner& p, http_client::RestClient& rest, store::Delivery d, const Json& sr, const std::string& patient,
                   std::optional<Done>& done) {
    if (d.payload.empty()) {
      std::string error;
      if (!renderFhir(d, sr, error)) {
        done = deadLetter(d, "cannot be written as a FHIR transaction: " + error);
        return true;
      }
    }
    ++d.attempts;
    auto r = rest.post("", d.payload);
    bool accepted = r.status >= 200 && r.status < 300;
    bool refused = r.status >= 400 && r.status < 500 && r.status != 408 && r.status != 429;
    std::string what = accepted ? "HTTP " + std::to_string(r.status) + " from " + p.id
                                : r.status ? "HTTP " + std::to_string(r.status) + ": " + outcomeText(r.body) : r.error;
    settle(p, d, accepted, refused, what, patient, accepted ? 200 : static_cast<int>(r.status), r.status != 0, done);
    return r.status != 0;
  }

  // Follows, on the partner's server, the Tasks of the referrals sent to it: a new status is applied
  // here as the partner's answer; a completed Task's report (its output DocumentReference) is
  // fetched into the dossier. Runs through the gate as the partner's account.
  void pollOnce(std::size_t pi, http_client::RestClient& rest) {
    const Partner& p = partners[pi];
    std::string owner = partnerRef(p);
    if (owner.empty()) return;
    for (auto& local : find("Task", {{"owner", owner}, {"status", "requested,received,accepted,in-progress"},
                                     {"identifier", std::string(kReferralTaskSid) + "|"}, {"_count", "200"}})) {
      std::string referralId;
      for (const auto& id : local.value("identifier", Json::array()))
        if (str(id, "system") == kReferralTaskSid) referralId = str(id, "value");
      if (referralId.empty()) continue;
      auto r = rest.get("/Task?" + fhir::encodeQuery({{"identifier", std::string(kReferralTaskSid) + "|" + referralId}}));
      if (r.status != 200) {
        if (r.status == 0) return;  // the partner is down: next round
        continue;
      }
      Json b = Json::parse(r.body, nullptr, false);
      if (b.is_discarded() || b.value("entry", Json::array()).empty()) continue;
      Json remote = b["entry"][0].value("resource", Json::object());
      std::string status = str(remote, "status");
      if (status == str(local, "status") || (status != "accepted" && status != "rejected" && status != "in-progress" && status != "completed"))
        continue;
      std::string patient = refOf(local, "for"), request = refOf(local, "focus"), tid = str(local, "id");
      static const std::map<std::string, std::string> business = {
          {"accepted", "accepted"}, {"rejected", "rejected"}, {"in-progress", "seen"}, {"completed", "report-returned"}};
      Json bundle = {{"resourceType", "Bundle"}, {"type", "transaction"}, {"entry", Json::array()}};
      local["status"] = status;
      local["businessStatus"] = {{"coding", Json::array({{{"system", kReferralStatus}, {"code", business.at(status)}}})}};
      if (status == "completed") {
        for (const auto& out : remote.value("output", Json::array())) {
          std::string ref = str(out.value("valueReference", Json::object()), "reference");
          if (ref.rfind("DocumentReference/", 0) != 0 && ref.find("/DocumentReference/") == std::string::npos) continue;
          auto doc = rest.get(ref.find("://") == std::string::npos ? "/" + ref : ref);
          if (doc.status != 200) return;  // try again next round
          Json d = Json::parse(doc.body, nullptr, false);
          if (d.is_discarded() || str(d, "resourceType") != "DocumentReference") continue;
          d.erase("id");
          d.erase("meta");
          d["subject"] = {{"reference", patient}};
          d["custodian"] = {{"reference", owner}};
          d.erase("author");
          if (!request.empty()) d["context"] = {{"related", Json::array({{{"reference", request}}})}};
          std::string url = "urn:uuid:" + uuidLike(p.id + ":" + ref);
          Json entry = {{"fullUrl", url}, {"resource", d}, {"request", {{"method", "POST"}, {"url", "DocumentReference"}}}};
          if (d.contains("masterIdentifier"))
            entry["request"]["ifNoneExist"] = "identifier=" + str(d["masterIdentifier"], "system") + "|" + str(d["masterIdentifier"], "value");
          bundle["entry"].push_back(entry);
          local["output"] = Json::array({{{"type", {{"text", "report"}}}, {"valueReference", {{"reference", url}}}}});
          break;
        }
      }
      bundle["entry"].push_back({{"resource", local}, {"request", {{"method", "PUT"}, {"url", "Task/" + tid}}}});
      fhir::FhirRequest req;
      req.method = "POST";
      req.path = "";
      req.contentType = "application/fhir+json";
      req.body = bundle.dump();
      auto w = as(principals[pi], "fhir:" + p.id, "Task " + referralId + " " + status + " on the partner's server", p.baseUrl, req);
      if (w.status >= 300) log::warn("fhir.poll_not_applied", {{"partner", p.id}, {"referral", referralId}, {"status", std::to_string(w.status)},
                                                               {"error", outcomeText(w.body)}});
    }
  }

  void pollLoop(std::size_t pi) {
    const Partner& p = partners[pi];
    http_client::RestClient rest(restOptions(p));
    for (;;) {
      try {
        pollOnce(pi, rest);
      } catch (const std::exception& ex) {
        log::error("fhir.poll_failed", {{"partner", p.id}, {"error", ex.what()}});
      }
      std::unique_lock<std::mutex> lock(mutex);
      if (cv.wait_for(lock, std::chrono::seconds(p.pollSeconds), [&] { return stopping; })) return;
    }
  }

  // One of the partner's `connections` senders: it takes the patients whose order key falls to it
  // (so each patient's deliveries stay in order on one connection).
  void senderLoop(std::size_t pi, int lane = 0) {
    const Partner& p = partners[pi];
    int lanes = std::max(1, p.connections);
    std::unique_ptr<mllp::Sender> sender;
    std::unique_ptr<http_client::RestClient> rest;
    if (p.protocol == "fhir") {
      rest = std::make_unique<http_client::RestClient>(restOptions(p));
    } else {
      mllp::SenderOptions so;
      so.host = p.host;
      so.port = p.port;
      so.connectTimeoutMs = p.connectTimeoutMs;
      so.answerTimeoutMs = p.answerTimeoutMs;
      so.tls = p.tls;
      sender = std::make_unique<mllp::Sender>(so);
    }
    // While one delivery waits for its acknowledgement, the next one is read and written on a
    // helper thread: its consent check and sending stay one at a time, in order, on this one.
    auto prepareAsync = [&](store::Delivery d) {
      return std::async(std::launch::async, [this, &p, fhirPartner = rest != nullptr, d = std::move(d)]() mutable {
        std::int64_t id = d.id;
        try {
          return prepare(p, fhirPartner, std::move(d));
        } catch (const std::exception& ex) {
          log::error("outbox.failed", {{"partner", p.id}, {"delivery", std::to_string(id)}, {"error", ex.what()}});
          return Prepared{};
        }
      });
    };
    std::uint64_t seen = 0;
    for (;;) {
      {
        std::lock_guard<std::mutex> lock(mutex);
        if (stopping) return;
        seen = wakes;
      }
      std::int64_t claimedAt = nowMs();
      auto due = store.claimDeliveries(p.id, claimedAt, 256, store::kDeliveryLeaseMs);
      bool progressed = false;
      std::vector<Done> batch;
      std::vector<store::Delivery> mine;
      if (due.ok())
        for (auto& d : due.value())
          if (lanes <= 1 || static_cast<int>(std::hash<std::string>{}(d.orderKey) % static_cast<std::size_t>(lanes)) == lane)
            mine.push_back(std::move(d));
      std::future<Prepared> next;
      if (!mine.empty()) next = prepareAsync(std::move(mine[0]));
      for (std::size_t i = 0; i < mine.size(); ++i) {
        Prepared x = next.get();
        bool leaseHalfGone = nowMs() - claimedAt > store::kDeliveryLeaseMs / 2;  // claim again (renews the rest)
        bool stop = false;
        {
          std::lock_guard<std::mutex> lock(mutex);
          stop = stopping;
        }
        if (leaseHalfGone) progressed = true;
        if (leaseHalfGone || stop || x.state == Prepared::State::kPause) break;
        if (i + 1 < mine.size()) next = prepareAsync(std::move(mine[i + 1]));
        bool go = true;
        std::optional<Done> done = std::move(x.done);
        if (x.state == Prepared::State::kSend) {
          try {
            go = send(p, pi, sender.get(), rest.get(), x, done);
          } catch (const std::exception& ex) {
            log::error("outbox.failed", {{"partner", p.id}, {"delivery", std::to_string(x.d.id)}, {"error", ex.what()}});
            go = false;
          }
        }
        if (done) batch.push_back(std::move(*done));
        if (batch.size() >= 64) saveAll(p, batch);
        if (!go) break;
        progressed = true;
      }
      if (next.valid()) next.wait();  // prepared, not sent: taken again at the next claim
      saveAll(p, batch);
      {
        std::lock_guard<std::mutex> lock(mutex);
        if (stopping) return;
      }
      std::int64_t waitMs = 1000;
      if (progressed) continue;
      if (auto next = store.nextDeliveryTime(p.id); next.ok() && next->has_value())
        waitMs = std::clamp<std::int64_t>(**next - nowMs(), 5, 1000);
      std::unique_lock<std::mutex> lock(mutex);
      cv.wait_for(lock, std::chrono::milliseconds(waitMs), [&] { return stopping || wakes != seen; });
    }
  }
};

HospitalConnector::HospitalConnector() = default;
HospitalConnector::~HospitalConnector() { stop(); }

Result<std::unique_ptr<HospitalConnector>> HospitalConnector::start(store::ResourceStore& store, fhir::FhirService& fhir, http::Gate* gate,
                                                                   access::AccessControl* access, audit::AuditLog* audit,
                                                                   std::vector<Partner> partners, ConnectorOptions options) {
  std::unique_ptr<HospitalConnector> c(new HospitalConnector());
  c->impl_ = std::make_unique<Impl>(store, fhir, gate, access, audit);
  Impl& m = *c->impl_;
  m.partners = std::move(partners);
  m.o = std::move(options);
  for (std::size_t i = 0; i < m.partners.size(); ++i) {
    const Partner& p = m.partners[i];
    identity::Principal who;
    who.subject = p.account;
    who.account = p.account;
    who.role = p.role;
    who.practitioner = p.finess.empty() ? "rpps:" + p.rpps : "finess:" + p.finess;
    who.purpose = "TREAT";
    who.scopes = p.scopes;
    who.tokenId = "partner:" + p.id;
    m.principals.push_back(who);
    if (!p.certificateSubject.empty() || !p.certificateFingerprint.empty()) {
      identity::CertificateAccount a;
      a.name = p.id;
      a.subject = p.certificateSubject;
      a.fingerprint = p.certificateFingerprint;
      a.role = p.role;
      a.purpose = "TREAT";
      a.scopes = p.scopes;
      m.certificateAccounts.push_back(a);
    }
    if (!p.finess.empty()) m.byFiness[p.finess] = i;
    if (!p.rpps.empty()) m.byRpps[p.rpps] = i;
  }
  m.system.subject = "passerelle";
  m.system.account = "passerelle";
  m.system.role = "system";
  m.system.purpose = "HOPERAT";
  m.system.scopes = {"system/*.cruds"};
  m.system.tokenId = "gateway";
  Impl* impl = c->impl_.get();
  store.setWriteObserver([impl](store::WriteTxn& t, const store::ResourceVersion& v) { return impl->route(t, v); });
  store.setDeliveryListener([impl] {
    {
      std::lock_guard<std::mutex> lock(impl->mutex);
      ++impl->wakes;
    }
    impl->cv.notify_all();
  });
  if (m.o.listen) {
    if (m.o.production && (!m.o.tls || m.o.tls->caFile.empty()))
      return makeError(ErrorCode::kInvalid, "mllp: deployment=production requires TLS with client certificates (mllp.tls_certificate, mllp.client_ca)");
    mllp::ListenerOptions lo;
    lo.host = m.o.host;
    lo.port = m.o.port;
    lo.maxFrameBytes = m.o.maxFrameBytes;
    lo.idleTimeoutSeconds = m.o.idleTimeoutSeconds;
    lo.maxConnections = m.o.maxConnections;
    lo.tls = m.o.tls;
    if (lo.tls && m.o.production) lo.tls->requirePeerCertificate = true;
    std::string error;
    m.listener = mllp::Listener::start(
        lo, [c = c.get()](const mllp::Peer& peer, std::string_view msg) { return c->receive(peer, msg); },
        [](const mllp::Peer& peer, const std::string& event, const std::string& detail) {
          log::warn("mllp." + event, {{"peer", peer.address}, {"detail", detail}});
        },
        error);
    if (!m.listener) return makeError(ErrorCode::kInvalid, "mllp.port: " + error);
  }
  if (m.o.send)
    for (std::size_t i = 0; i < m.partners.size(); ++i)
      if (m.partners[i].protocol == "mllp" || m.partners[i].protocol == "fhir") {
        for (int lane = 0; lane < std::max(1, m.partners[i].connections); ++lane)
          m.senders.emplace_back([impl, i, lane] { impl->senderLoop(i, lane); });
        if (m.partners[i].protocol == "fhir") m.senders.emplace_back([impl, i] { impl->pollLoop(i); });
      }
  return c;
}

int HospitalConnector::mllpPort() const { return impl_ && impl_->listener ? impl_->listener->port() : 0; }

std::optional<std::string> HospitalConnector::receive(const mllp::Peer& peer, std::string_view message) {
  try {
    return impl_->receive(peer, message);
  } catch (const std::exception& ex) {
    // Nothing was acknowledged: the connection closes and the sender sends it again.
    log::error("mllp.failed", {{"peer", peer.address}, {"error", ex.what()}});
    return std::nullopt;
  }
}

Result<void> HospitalConnector::route(store::WriteTxn& txn, const store::ResourceVersion& v) { return impl_->route(txn, v); }

void HospitalConnector::wake() {
  {
    std::lock_guard<std::mutex> lock(impl_->mutex);
    ++impl_->wakes;
  }
  impl_->cv.notify_all();
}

ConnectorStats HospitalConnector::stats() const {
  ConnectorStats s;
  s.received = impl_->received;
  s.accepted = impl_->accepted;
  s.errors = impl_->errors;
  s.rejected = impl_->rejected;
  s.duplicates = impl_->duplicates;
  return s;
}

std::string HospitalConnector::metrics() const {
  std::string out =
      "# HELP passerelle_mllp_received_total HL7 v2 messages received over MLLP, by acknowledgement.\n"
      "# TYPE passerelle_mllp_received_total counter\n";
  ConnectorStats s = stats();
  out += "passerelle_mllp_received_total{result=\"accepted\"} " + std::to_string(s.accepted) + "\n";
  out += "passerelle_mllp_received_total{result=\"error\"} " + std::to_string(s.errors) + "\n";
  out += "passerelle_mllp_received_total{result=\"rejected\"} " + std::to_string(s.rejected) + "\n";
  out += "passerelle_mllp_received_total{result=\"duplicate\"} " + std::to_string(s.duplicates) + "\n";
  auto counts = impl_->store.deliveryCounts();
  if (!counts.ok()) return out;
  out += "# HELP passerelle_outbox_deliveries Deliveries in the outbox, by destination and state.\n"
         "# TYPE passerelle_outbox_deliveries gauge\n";
  std::string ages =
      "# HELP passerelle_outbox_oldest_queued_seconds Age of the oldest delivery waiting, by destination.\n"
      "# TYPE passerelle_outbox_oldest_queued_seconds gauge\n";
  std::int64_t now = nowMs();
  for (const auto& c : counts.value()) {
    std::string d = "destination=\"" + c.destination + "\"";
    out += "passerelle_outbox_deliveries{" + d + ",state=\"queued\"} " + std::to_string(c.queued) + "\n";
    out += "passerelle_outbox_deliveries{" + d + ",state=\"sent\"} " + std::to_string(c.sent) + "\n";
    out += "passerelle_outbox_deliveries{" + d + ",state=\"dead\"} " + std::to_string(c.dead) + "\n";
    out += "passerelle_outbox_deliveries{" + d + ",state=\"cancelled\"} " + std::to_string(c.cancelled) + "\n";
    ages += "passerelle_outbox_oldest_queued_seconds{" + d + "} " +
            std::to_string(c.oldestQueuedMs ? static_cast<double>(now - c.oldestQueuedMs) / 1000.0 : 0.0) + "\n";
  }
  return out + ages;
}

void HospitalConnector::stop() {
  if (!impl_) return;
  if (impl_->listener) impl_->listener->stop();
  {
    std::lock_guard<std::mutex> lock(impl_->mutex);
    impl_->stopping = true;
  }
  impl_->cv.notify_all();
  for (auto& t : impl_->senders)
    if (t.joinable()) t.join();
  impl_->senders.clear();
  impl_->store.setDeliveryListener(nullptr);
}

}  // namespace passerelle::exchange
