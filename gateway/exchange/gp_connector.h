// The GP software connector: files the GP's software drops into its installation's inbox come into
// the network's dossier, as that GP, through the same access decisions and audit records as a
// request; what cannot be read is quarantined with its reason; what names a patient the gateway
// cannot identify with certainty waits in a review queue.
//   import: HPRIM Net, HPRIM Santé, FHIR Bundles (transaction, batch, document, collection), CDA R2
//     validated against the configured schema (cda.schema; without one CDA files are refused).
//   identity: an INS names the patient when exactly one network patient has it and the traits the
//     file gives (birth date, names, sex) agree; without an INS, the strict traits must all be
//     there (family name, first name, birth date) and match exactly one network patient (family
//     name against any of the patient's names, first given name, birth date, sex when both know
//     it; compared without case, accents, hyphens or apostrophes). Anything else is held for
//     review: never attached by guess. The network keeps its own identity records: an imported
//     Patient is only used to find the patient, never written.
//   durable: a file is moved to done/ only once what it carries (or the file itself, held for
//     review or refused) is in the message store; a file seen before (same content) is not
//     imported twice.
//   export: a CIED or CSB report (a final Composition of type 11488-4) written for a patient whose
//     GP correspondent (the EpisodeOfCare's care manager) has an installation queues a delivery in
//     the same commit; a sender per installation checks again, as that GP, that the report may
//     be read (consent: a withdrawn patient's queued report is cancelled with the reason and never
//     written), renders it as HPRIM Net (the report's text, its scores as RES lines) and writes it
//     atomically into outbox/, with retries and dead letters; each one written or cancelled is an
//     audit record naming the patient.
// Thread-safe.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "connectors/filedrop/file_drop.h"
#include "gateway/access/access_control.h"
#include "gateway/audit/audit_log.h"
#include "gateway/common/status.h"
#include "gateway/fhir/fhir_service.h"
#include "gateway/http/http_server.h"
#include "gateway/identity/principal.h"
#include "gateway/store/resource_store.h"
#include "mappings/cda/cda.h"

namespace passerelle::exchange {

// One GP's software installation (conf/gp/*.json).
struct GpInstallation {
  std::string id;        // "gp-martin"
  std::string name;
  std::string rpps;      // the GP it imports as
  std::string account;   // its account in the audit trail
  std::string folder;    // root of inbox/, outbox/, done/, quarantine/
  std::size_t maxBytes = 32u << 20;
  int stableForMs = 1000;
  int pollMs = 2000;
  int workers = 4;       // files imported at once (their commits grouped)
  // Exports (what the network writes for this GP): HPRIM Net in this encoding, these header lines.
  std::string exportFormat = "hprim-net";
  std::string encoding = "ISO-8859-1";
  std::string sender = "D77 Réseau Douleur 77";
  std::string recipient;
  int maxAttempts = 10, initialDelayMs = 1000, maxDelayMs = 300000;  // export retries
};

// Reads every *.json of `dir` (sorted). A relative `folder` is taken under `dataDir`. A missing
// folder gives no installations; a file that is not one is an error naming it and the member.
Result<std::vector<GpInstallation>> loadGpInstallations(const std::string& dir, const std::string& dataDir);

struct GpImportResult {
  filedrop::Decision decision;
  std::string status;   // processed | review | rejected | duplicate | retry
  std::string patient;  // Patient/<id> when attached
  std::int64_t inboxId = 0;
};

class GpConnector {
 public:
  // `gate` may be null (access control off): imports then go straight to the FHIR service, and
  // `access` and `audit` are null too. `watch`: watch the inboxes; `send`: run the exporters.
  static Result<std::unique_ptr<GpConnector>> start(store::ResourceStore& store, fhir::FhirService& fhir, http::Gate* gate,
                                                   access::AccessControl* access, audit::AuditLog* audit,
                                                   std::vector<GpInstallation> installations, bool watch, bool send,
                                                   std::shared_ptr<cda::Schema> cdaSchema = nullptr);
  ~GpConnector();
  // One file of installation `id` (what the watcher calls).
  GpImportResult importFile(const std::string& id, const filedrop::DroppedFile& file);
  // The review queue: a held file attached to `patient` ("Patient/<id>") and imported as its GP,
  // or refused. `by` names who decided (audited with the decision). 404 when no such held file,
  // 409 when it is not held for review.
  fhir::FhirResponse attach(std::int64_t inboxId, const std::string& patient, const identity::Principal* by);
  fhir::FhirResponse reject(std::int64_t inboxId, const std::string& reason, const identity::Principal* by);
  const std::vector<GpInstallation>& installations() const;
  // In the writer's unit (the store's write observer): a report for an installation's patient
  // queues its export.
  Result<void> route(store::WriteTxn& txn, const store::ResourceVersion& v);
  // Wakes the exporters (a delivery was queued or released for retry).
  void wake();
  // One scan of every installation's inbox now (tests, and `passerelle` at start-up).
  void scanNow();
  void stop();

  struct Impl;

 private:
  GpConnector();
  std::unique_ptr<Impl> impl_;
};

// Names compared for identity: upper case, without accents, hyphens, apostrophes or repeated spaces.
std::string identityForm(const std::string& name);

}  // namespace passerelle::exchange
