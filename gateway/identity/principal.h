// Who is asking: the identity a request carries once its bearer token or client certificate has
// been verified. Plain values; the access policy decides what it may do.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace passerelle::identity {

struct Principal {
  std::string subject;       // the token's `sub`, or the configured account of a certificate
  std::string role;          // a role of the policy table (conf/access/policy.json), e.g. "gp"
  std::string practitioner;  // professional identifier as the network writes it: "rpps:10003" or "adeli:75..." (empty otherwise)
  std::string patient;       // the Patient id, for the role "patient" (empty otherwise)
  std::string purpose;       // purpose of use (v3 PurposeOfUse code: TREAT, ETREAT, HPAYMT, HOPERAT, COC, PATRQT...)
  std::vector<std::string> scopes;  // SMART v2 scopes as granted ("user/Observation.rs", "patient/*.r", "system/*.cruds")
  std::string tokenId;       // the token's `jti`, or "cert:" + the certificate's SHA-256 fingerprint
  std::string issuer;        // `iss` (empty for a certificate)
  std::string account;       // the configured account a client certificate maps to (empty for a token)
  std::int64_t expiresAt = 0;  // seconds since the epoch (0: no expiry, certificates)
};

}  // namespace passerelle::identity
