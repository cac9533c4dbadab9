// The hospital connector: HL7 v2 over MLLP in both directions, wired to the store, the access gate
// and the audit trail.
//   in:  each message is parsed, checked, applied through the gate as its partner's account (the
//        same access decisions and audit records as a request), and kept in the inbox in the same
//        commit as its changes; the acknowledgement leaves only after that commit. A control id
//        seen before gets the stored acknowledgement again.
//   out: a referral (ServiceRequest) addressed to a partner's structure queues a delivery in the
//        commit that wrote it; one sender per partner renders it (REF^I12/I13/I14), checks again that
//        the partner may receive it (consent), sends it and records the answer, with retries and
//        dead letters.
// Thread-safe.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "connectors/mllp/mllp_transport.h"
#include "gateway/access/access_control.h"
#include "gateway/audit/audit_log.h"
#include "gateway/common/status.h"
#include "gateway/exchange/partners.h"
#include "gateway/fhir/fhir_service.h"
#include "gateway/http/http_server.h"
#include "gateway/store/resource_store.h"

namespace passerelle::exchange {

struct ConnectorOptions {
  bool listen = false;  // open the MLLP listener
  std::string host = "127.0.0.1";
  int port = 0;
  std::optional<mllp::TlsSettings> tls;  // required (with client certificates) in production
  bool production = false;
  std::size_t maxFrameBytes = 1 << 20;
  int idleTimeoutSeconds = 60;
  int maxConnections = 32;
  std::string application = "PASSERELLE", facility = "DOULEUR77";  // MSH-3/4 of what Passerelle writes
  bool send = true;  // run the senders
};

struct ConnectorStats {
  std::uint64_t received = 0, accepted = 0, errors = 0, rejected = 0, duplicates = 0;
};

class HospitalConnector {
 public:
  // `gate` may be null (access control off: benchmark baselines); then `access` and `audit` too.
  static Result<std::unique_ptr<HospitalConnector>> start(store::ResourceStore& store, fhir::FhirService& fhir, http::Gate* gate,
                                                         access::AccessControl* access, audit::AuditLog* audit,
                                                         std::vector<Partner> partners, ConnectorOptions options);
  ~HospitalConnector();
  int mllpPort() const;
  // One received message (what the listener calls): the acknowledgement to send back, or nothing
  // to close the connection.
  std::optional<std::string> receive(const mllp::Peer& peer, std::string_view message);
  // Wakes the senders (a delivery was queued or released for retry).
  void wake();
  // In the writer's unit (the store's write observer): a referral for a partner queues its delivery.
  Result<void> route(store::WriteTxn& txn, const store::ResourceVersion& v);
  ConnectorStats stats() const;
  // Prometheus text: the outbox per destination and the inbound counters.
  std::string metrics() const;
  void stop();

  struct Impl;

 private:
  HospitalConnector();
  std::unique_ptr<Impl> impl_;
};

}  // namespace passerelle::exchange
