// The network's exchange partners (conf/partners/*.json): who they are in the access policy, how
// their messages are recognised, and where and how deliveries to them go.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "connectors/mllp/mllp_transport.h"
#include "gateway/common/status.h"

namespace passerelle::exchange {

struct RetryPolicy {
  int maxAttempts = 8;
  int initialDelayMs = 1000;
  int maxDelayMs = 300000;
};

struct Partner {
  std::string id;      // "avicenne"
  std::string name;
  std::string finess;  // the structure's FINESS (geographic): referrals to it are routed here
  std::string rpps;    // or a professional's RPPS
  // Its account in the access policy: what its messages may read and write.
  std::string account, role = "hospital";
  std::vector<std::string> scopes = {"system/*.cruds"};
  // Inbound: how its messages are recognised. With TLS, by the client certificate (subject or
  // fingerprint); without (allowed outside production only), by MSH-3/MSH-4.
  std::string certificateSubject, certificateFingerprint;
  std::string sendingApplication, sendingFacility;
  // Outbound.
  std::string protocol = "mllp";  // mllp | fhir | none
  std::string host;  // mllp
  int port = 0;
  std::string baseUrl;   // fhir: the partner's FHIR base
  std::string tokenEnv;  // fhir: the environment variable holding its bearer token (never in the file)
  int pollSeconds = 60;  // fhir: how often its Tasks are looked at
  std::optional<mllp::TlsSettings> tls;
  std::string receivingApplication, receivingFacility;
  bool enhancedAck = false;
  int connectTimeoutMs = 5000, answerTimeoutMs = 30000;
  // Connections used at once to send (each patient's deliveries always on the same one, in order);
  // MLLP partners often accept one only.
  int connections = 1;
  RetryPolicy retry;
};

// Reads every *.json of `dir` (sorted by name). A missing folder gives no partners; a file that is
// not a partner is an error naming it and the member.
Result<std::vector<Partner>> loadPartners(const std::string& dir);

}  // namespace passerelle::exchange
