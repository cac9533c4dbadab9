// The access policy as data: categories of resource types, care relationships found by FHIR
// searches, and per role the grants (relationship x consent state -> categories read and
// written), purposes, break-glass and non-patient access. Loaded once from
// conf/access/policy.json (see conf/access/README.md); decisions are pure functions of the
// table, the caller's role and scopes, and what the store says about the patient.
// Immutable after load: safe from any thread.
#pragma once

#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "gateway/common/status.h"

namespace passerelle::access {

// The patient's consent state (DOMAIN.md §4): active (incl. renewed), draft / not yet signed,
// withdrawn, expired, excluded, and none recorded yet.
enum class Consent { kActive, kDraft, kWithdrawn, kExpired, kExcluded, kNone };
char consentLetter(Consent c);  // A D W E X N
bool parseConsentLetter(char c, Consent& out);
const char* consentName(Consent c);  // "active", "draft", ...

struct Category {
  std::set<std::string> types;
  std::map<std::string, std::string> filters;  // type -> FHIR search restricting what is read of it
};

struct Grant {
  std::string relationship;  // a relationship of the table, "self" (the patient) or "any"
  std::set<Consent> consent;
  std::set<std::string> read, write;  // category names, or "*" (every type)
};

struct RelationshipQuery {
  std::string search;   // "EpisodeOfCare?care-manager={me}" ({me}: the caller's references; {today-90d})
  std::string patient;  // the element of the result that references the patient ("patient", "for", "subject")
};

struct Role {
  std::string name, label;
  std::vector<std::string> purposes;  // allowed purposes of use; the first is the default
  std::vector<Grant> grants;
  bool ownEntries = false;      // reads what the caller authored, whatever the patient's state
  bool createPatients = false;  // may create Patient resources (inclusion, registration)
  bool readAudit = false;       // reads every audit record
  bool readOwnAudit = false;    // reads the audit records of their own data (patients)
  std::optional<Grant> breakGlass;  // what an emergency access shows (relationship unused)
  std::set<std::string> read, write;  // categories of types outside the patient compartment
};

// The outcome of one decision: the reason is a short code shown in audit records and errors.
struct Decision {
  bool permit = false;
  std::string reason;  // "granted", "no-care-relationship", "consent-withdrawn", "category", "type-not-allowed"...
  std::string filter;  // for reads: a FHIR search (type's parameters) that what is read must also match
};

// The network document API (/network/v1): who sends which kind, and the document fields that must
// name the caller.
struct NetworkKindRule {
  std::set<std::string> roles;
  std::vector<std::string> author;  // top-level fields holding a professional; one must be the caller
};
struct NetworkApiRules {
  std::set<std::string> onBehalf;  // roles that send for others (every kind, no author check)
  std::map<std::string, NetworkKindRule> submit;
  std::set<std::string> dossier, sweep;
};

class Policy {
 public:
  // `compartment`: type -> search parameters linking it to its patient (the FHIR Patient compartment).
  static Result<Policy> parse(const nlohmann::ordered_json& doc, const std::map<std::string, std::vector<std::string>>& compartment);
  static Result<Policy> load(const std::string& path);  // with the embedded R4 Patient compartment; "": builtIn()
  static Result<Policy> builtIn();  // conf/access/policy.json as built into the binary
  // The R4 Patient compartment (embedded table generated from the official definition).
  static const std::map<std::string, std::vector<std::string>>& r4Compartment();

  const Role* role(const std::string& name) const;
  const std::map<std::string, Role>& roles() const { return roles_; }
  const std::map<std::string, Category>& categories() const { return categories_; }
  const std::map<std::string, std::vector<RelationshipQuery>>& relationships() const { return relationships_; }
  // Patient-compartment types and the parameters linking them to the patient.
  bool inCompartment(const std::string& type) const;
  const std::vector<std::string>& compartmentParams(const std::string& type) const;
  const std::vector<std::string>& ownEntryParams(const std::string& type) const;
  const NetworkApiRules& networkApi() const { return network_; }
  bool categoryHas(const std::string& category, const std::string& type) const;

  // A patient-compartment type, for one patient: relationships the caller has with them and
  // the patient's consent state. `breakGlass`: the request declared an emergency.
  Decision decidePatient(const Role& role, const std::string& type, bool write, const std::set<std::string>& relationships,
                         Consent consent, bool breakGlass) const;
  // A type outside the patient compartment.
  Decision decideOther(const Role& role, const std::string& type, bool write) const;
  // Could the role read (or write) `type` for some patient in some state? (type-level 403)
  bool mayEver(const Role& role, const std::string& type, bool write) const;

 private:
  std::map<std::string, Category> categories_;
  std::map<std::string, std::vector<RelationshipQuery>> relationships_;
  std::map<std::string, std::vector<std::string>> compartment_;
  std::map<std::string, std::vector<std::string>> ownEntries_;
  std::map<std::string, Role> roles_;
  NetworkApiRules network_;
};

// SMART v2 scopes ("patient/Observation.rs", "user/*.cruds", "system/*.r"; v1 "read"/"write"/"*" too).
struct Scope {
  char context = 'u';  // p(atient), u(ser), s(ystem)
  std::string type;    // resource type or "*"
  std::string perms;   // letters of "cruds"
};
std::vector<Scope> parseScopes(const std::vector<std::string>& scopes);
// Does some scope grant `perm` (c r u d s) on `type`?
bool scopeAllows(const std::vector<Scope>& scopes, const std::string& type, char perm);

}  // namespace passerelle::access
