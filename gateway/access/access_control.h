// Access control over the store: who the caller is to each patient (care relationships and the
// patient's consent, read from the FHIR resources the network writes), turned into decisions and
// search constraints for the FHIR service (fhir::AccessGuard), one guard per request.
// What a caller is related to is cached per caller and dropped at every change to the store (its own
// commits and, on a shared PostgreSQL database, those of the other gateways as announced), so a
// withdrawn consent or a closed referral applies from the next request.
// Thread-safe: guards for many requests are made and used at once.
#pragma once

#include <map>
#include <memory>
#include <optional>
#include <mutex>
#include <set>
#include <string>
#include <unordered_map>
#include <vector>

#include "gateway/access/policy.h"
#include "gateway/fhir/access_guard.h"
#include "gateway/identity/principal.h"
#include "gateway/store/resource_store.h"

namespace passerelle::access {

struct Facts;  // what one caller is related to (defined in the .cpp)

class RequestGuard;

class AccessControl {
 public:
  AccessControl(store::ResourceStore& store, Policy policy);
  ~AccessControl();
  // The guard for one request. kForbidden when the role is unknown or the purpose is not one of
  // the role's. `breakGlassReason`: the emergency declared by the request (empty: none).
  Result<std::unique_ptr<RequestGuard>> guard(const identity::Principal& principal, const std::string& breakGlassReason);
  // A guard deciding about these patients only: its facts (relationships, consents) are looked up
  // for them alone, now, without the cache. For the connectors, which check one message at a time
  // (a partner related to many patients would otherwise have all of them looked up per message).
  // `established`: relationships the caller already holds for a patient and need not be searched
  // for (patient id -> relationship name), e.g. the connector sending a referral to the partner the
  // referral names as its performer (the "referred" relationship).
  Result<std::unique_ptr<RequestGuard>> guardFor(const identity::Principal& principal, const std::set<std::string>& patients,
                                                 const std::map<std::string, std::string>& established = {});
  const Policy& policy() const { return policy_; }
  // The date used by relationship searches ({today-90d}); empty: today (UTC).
  void setToday(const std::string& today) { today_ = today; }

  // Internal: the caller's facts (cached).
  Result<std::shared_ptr<const Facts>> facts(const identity::Principal& principal, const Role& role);
  Result<std::shared_ptr<const Facts>> enrolledFacts();  // every enrolled patient (break-glass)
  store::ResourceStore& store() { return store_; }

 private:
  // `only`: the patients to look at (null: every one the caller is related to).
  Result<std::shared_ptr<Facts>> compute(const identity::Principal& principal, const Role& role,
                                         const std::set<std::string>* only = nullptr,
                                         const std::map<std::string, std::string>* established = nullptr);
  friend class RequestGuard;
  store::ResourceStore& store_;
  Policy policy_;
  std::string today_;
  std::mutex mutex_;
  std::uint64_t generation_ = UINT64_MAX;
  std::unordered_map<std::string, std::shared_ptr<const Facts>> cache_;
};

class RequestGuard : public fhir::AccessGuard {
 public:
  RequestGuard(AccessControl& ac, const identity::Principal& principal, const Role& role, std::string breakGlassReason);
  Result<void> allowType(const std::string& type, fhir::Interaction interaction) override;
  Result<std::vector<std::vector<store::Condition>>> readConstraint(const std::string& type) override;
  Result<void> constrain(store::SearchQuery& query) override;
  Result<std::vector<bool>> readable(const std::vector<store::ResourceVersion>& found) override;
  Result<void> allowWrite(const std::string& type, const std::string& id, std::string_view body, const store::ResourceVersion* old,
                          bool deleting) override;
  void createdPatient(const std::string& id) override { created_.insert(id); }
  void touched(const store::ResourceVersion& v) override;

  // For the audit record and the break-glass notification.
  const std::vector<std::string>& resources() const { return resources_; }
  const std::set<std::string>& patients() const { return patients_; }
  // Patients shown only because of the emergency access.
  std::set<std::string> breakGlassPatients() const;
  const std::string& breakGlassReason() const { return breakGlass_; }
  const std::string& lastReason() const { return reason_; }  // the last refusal's reason code
  const Role& role() const { return role_; }
  bool unrestricted() const;
  bool patientBound(const std::string& type, bool write) const;
  // The patient's consent state as the policy sees it (for a guard made with guardFor: one of
  // its patients). The exporters require an active consent: nothing of a patient who withdrew leaves.
  Result<Consent> consentOf(const std::string& patientId);

 private:
  Result<void> loadFacts();
  // Whether the cached facts show `v` readable without a search (false: they do not tell).
  Result<bool> readableFromFacts(const store::ResourceVersion& v);
  Result<std::vector<std::vector<store::Condition>>> constraintFor(const std::string& type);
  Result<void> constrainInner(std::vector<std::vector<store::Condition>>& where);
  Error denied(const std::string& reason, const std::string& message);

  AccessControl& ac_;
  const identity::Principal& principal_;
  const Role& role_;
  std::vector<Scope> scopes_;
  std::string breakGlass_;
  std::shared_ptr<const Facts> facts_;
  std::shared_ptr<const Facts> enrolled_;  // break-glass only
  std::optional<std::set<std::string>> only_;  // guardFor: the patients its facts cover
  std::map<std::string, std::string> established_;  // guardFor: relationships known without a search
  friend class AccessControl;
  std::set<std::string> created_;
  std::vector<std::string> resources_;
  std::set<std::string> patients_;
  std::string reason_;
  std::unordered_map<std::string, std::vector<std::vector<store::Condition>>> constraints_;  // per type, this request
};

// "Patient/x" references in a resource's JSON text (the patients it concerns), and the Patient's own id.
std::set<std::string> patientsOf(const std::string& type, const std::string& id, std::string_view body);

}  // namespace passerelle::access
