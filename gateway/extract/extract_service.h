// Evaluation extracts for the caisse, the external evaluator and the network's partners.
//
// An extract is computed from the dossier for one recipient and one period: the indicators
// declared in conf/extracts/indicators.json (each with its definition, population, numerator,
// stratifiers, unit and source), as aggregates with small cells and their complements masked
// (k of the recipient, never below 5), and, for the recipients whose role may receive them (the
// caisse's medical service, the external evaluator), patient-level rows under a pseudonym
// (HMAC-SHA-256 of the INS with the key of the recipient's domain) with no name, NIR, address or
// exact date, for the patients whose consent is active; for the caisse's administrative agents, the
// fee statement per professional and year (the fee rows the network wrote, and the shared-dossier
// fee of conf/extracts/tariffs.json) and the payment file. It is written as CSV, a FHIR Measure and
// MeasureReport and a manifest (row counts, SHA-256 of each file, k, key version, period,
// generator), zipped, signed with the gateway's extract certificate and encrypted for the
// recipient's certificate (CMS), in data.dir/extracts/<id>/.
//
// Everything is read through the gate as the gateway's job "job:extract" (the same access
// decisions and audit records as a request, naming the patients read), and each extract, each
// transfer and each key rotation is an audit record of its own. A package is sent, when asked, from
// the durable outbox: PUT over HTTPS with mutual TLS to the recipient's endpoint, or uploaded by
// SFTP (an interrupted upload resumed by the next attempt), retried with backoff, the server's answer kept as the receipt (receipt.json beside the package). Keys live in data.dir/extract-keys.json (mode 0600),
// never in an extract or a log line.
// Thread-safety: run() calls are serialised.
#pragma once

#include <cstdint>
#include <memory>
#include <nlohmann/json_fwd.hpp>
#include <string>
#include <vector>

#include "gateway/common/status.h"
#include "gateway/extract/indicators.h"

namespace passerelle {
namespace audit {
class AuditLog;
}
namespace config {
class Config;
}
namespace fhir {
class FhirService;
struct FhirResponse;
}
namespace http {
class Gate;
}
namespace identity {
struct Principal;
}
namespace store {
class ResourceStore;
}

namespace extract {

struct Recipient {
  std::string id, name;
  std::string role;    // an access-policy role: caisse-medical, evaluator (rows and aggregates); others aggregates only
  std::string domain;  // the pseudonymisation key's domain
  int k = 10;
  std::string certificate;  // PEM file of the recipient's encryption certificate
  // Where packages are sent: an https:// URL the package is PUT under (<url>/<extract id>.p7m), with
  // mutual TLS (clientCertificate, clientKey, caFile); or an sftp://host:port/folder/ the package is
  // uploaded into, resumably (user, privateKey, and the server's hostKeySha256 or knownHosts).
  // Empty: packages are only written, not sent.
  struct Transfer {
    std::string url, clientCertificate, clientKey, caFile;
    std::string user, privateKey, hostKeySha256, knownHosts;
    int maxAttempts = 10, initialDelayMs = 5000, maxDelayMs = 600000;
  } transfer;
  std::vector<std::string> schedule;  // the scheduled kinds it receives: annual, interim
  bool rows() const { return role == "caisse-medical" || role == "evaluator"; }
  bool fees() const { return role == "caisse-agent"; }  // the fee statement and the payment file
};

// The recipients of `file` (a JSON array). Errors name the entry and the field. With `knownRoles`
// (the access policy's roles), a recipient's role must be one of them.
Result<std::vector<Recipient>> loadRecipients(const std::string& file, const std::vector<std::string>& knownRoles = {});

// The kinds of extract: on-demand, annual (the activity report), interim (at 18 months), final.
const std::vector<std::string>& extractKinds();

class ExtractService {
 public:
  struct Options {
    std::string dataDir;
    std::string recipientsFile, indicatorsFile, tariffsFile;
    std::string signingCertificate, signingKey;  // empty outside production: development ones in dataDir
    bool production = false;
    std::string generator;  // "passerelle <version>"
    // Scheduled extracts: from the experiment's first day, the annual report of each calendar year
    // once it is over and the interim report once its first 18 months are; checked every
    // scheduleIntervalSeconds (0: only when asked). `today`: a fixed date (tests, demos).
    std::string experimentStart, today;
    std::int64_t scheduleIntervalSeconds = 3600;
    std::vector<std::string> roles;  // the access policy's roles (empty: recipients' roles not checked)
  };
  // `store` keeps the transfers' durable outbox (destination "extract:<recipient>").
  static Result<std::unique_ptr<ExtractService>> start(Options options, http::Gate* gate, fhir::FhirService& fhir, audit::AuditLog* audit,
                                                        store::ResourceStore& store);
  ~ExtractService();
  // Stops the sender (what is queued stays queued).
  void stop();

  // Computes, writes and seals one extract; its manifest (with "id" and "package"). `kind`: one of
  // extractKinds(); "final" keeps only the evaluable patients (Art. 12) in every indicator and row.
  Result<nlohmann::json> run(const std::string& recipient, const std::string& from, const std::string& to, const identity::Principal* by,
                             const std::string& kind = "on-demand");
  // Runs the scheduled extracts that are due and not yet written (and queues their transfer when the
  // recipient has an endpoint); their manifests. The gateway calls it every
  // scheduleIntervalSeconds; POST /admin/v1/extracts/scheduled calls it now.
  Result<nlohmann::json> runDue(const identity::Principal* by);
  // The extracts written, newest first (their manifests).
  Result<nlohmann::json> list() const;
  // Queues the transfer of extract `id` to its recipient (durably; sent by the sender thread with
  // retries; each attempt's outcome on the delivery, the receipt beside the package, audited).
  Result<nlohmann::json> send(const std::string& id, const identity::Principal* by);
  // Imports the baseline file (mappings/extract/baseline.h) sent by `recipient` (the caisse's medical
  // service): each row linked to a patient through the pseudonyms of the recipient's domain, stored
  // as a utilisation Observation with the caisse as its source; all or nothing, audited.
  Result<nlohmann::json> importBaseline(const std::string& recipient, const std::string& text, const identity::Principal* by);
  // A new key version for `domain` (the older ones kept, to read earlier extracts' pseudonyms).
  Result<int> rotateKey(const std::string& domain, const identity::Principal* by);

  // The admin API below /admin/v1: GET /extracts, GET /extracts/progress, POST /extracts {recipient,
  // from, to, kind}, POST /extracts/baselines/{recipient} (the CSV as body),
  // POST /extracts/scheduled, POST /extracts/{id}/send, POST /extracts/keys/{domain}/rotate.
  fhir::FhirResponse handle(const std::string& method, const std::string& path, const std::string& body, const identity::Principal* by);

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
  ExtractService();
};

// `passerelle extract ...` (run, list, rotate-key ask the running gateway; open works offline).
int extractCommand(int argc, char** argv);

}  // namespace extract
}  // namespace passerelle
