// The network's rules (decree of 19 Dec 2001, management convention, OPERA plan), checked on each
// document before anything is stored, and the values they derive (evaluable flag, consent term,
// referral due date, goal outcome, OPERA pathway). Pure functions: the caller gathers what the
// store knows into a RuleContext. What the source documents leave open is in RuleConfig, read
// from conf/network/rules.json. Thread-safe (no state).
#pragma once

#include <map>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

namespace passerelle::network {

using Json = nlohmann::ordered_json;

// One refusal (or warning) with a stable reason code, the document path ("patient.birthDate",
// "measures.vas.value", "" for the whole document) and a sentence for people.
struct Problem {
  std::string code;     // e.g. "age", "scheme-not-adhering", "gp-not-member", "consent-renewals"
  std::string path;
  std::string message;
  bool warning = false;  // warnings are reported and recorded, they do not refuse the document
};

struct RuleConfig {
  int minAge = 18, maxAge = 65;                     // at inclusion, inclusive
  std::vector<std::string> adheringSchemes = {"regime-general"};
  int minPainMonths = 3;                            // near-daily pain for more than this
  int evaluableMaxMonths = 12;                      // evaluable: pain < this at inclusion
  int consentTermMonths = 12;                       // minimum term of a consent, one renewal adds it
  int maxConsentRenewals = 2;
  int csbIntervalMonths = 6;
  double goalReductionPercent = 50.0;               // at the first CSB (6 months)
  int specialistReferralDays = 15;
  int structureReferralDays = 15;                   // default when a structure has no referralDelayDays
  // pathology allowed for a liaison sheet, by author category
  std::map<std::string, std::string> liaisonPathology = {{"physiotherapist", "low-back-pain"}, {"nurse", "cancer"}};
  // the scale each pathology requires at CIED/CSB besides the VAS
  std::map<std::string, std::string> requiredScale = {{"low-back-pain", "dallas"}, {"migraine", "qvm"}, {"cancer", "bpi"}};
  // OPERA: activities of the pathway by risk level, and the evaluation milestones in months
  std::map<std::string, std::vector<std::string>> operaPathway = {
      {"low", {"information"}},
      {"medium", {"information", "etp"}},
      {"high", {"information", "etp", "telephone"}}};
  std::vector<int> operaMilestones = {6, 12, 24, 36};
  // OPERA activity -> training the professional must have had (warning when missing)
  std::map<std::string, std::string> operaTraining = {{"telephone", "telephone-follow-up"},
                                                      {"etp-individual", "etp"}, {"etp-collective", "etp"},
                                                      {"home-diagnosis", "home-diagnosis"}};
};

// Reads conf/network/rules.json (every member optional; unknown members are an error).
bool parseRuleConfig(const Json& json, RuleConfig& out, std::string& error);

struct ProfessionalState {
  bool known = false;
  std::string category;          // gp, specialist, nurse, physiotherapist, coordinator, pain-expert, opera-professional
  int level = 0;
  std::string membershipStatus;  // active, withdrawn, excluded
  std::vector<std::string> trainings;  // training kinds attended
  std::string region;            // OPERA region (nord-pas-de-calais, sud-est, est), "" when none
  std::string structureKey;      // "finess:N" of the structure the professional works for, "" when none
};

struct StructureState {
  bool known = false;
  int level = 0;
  std::optional<int> referralDelayDays;
};

struct ReferralState {
  std::string status;  // requested, accepted, rejected, seen, report-returned
  std::string toKey;   // "rpps:..." / "adeli:..." / "finess:..."
};

struct PatientState {
  bool known = false;               // a Patient with this identifier exists
  std::string enrolment;            // "", active, withdrawn, excluded, ended (EpisodeOfCare of D77)
  std::string pathology;            // low-back-pain, migraine, cancer
  std::string gpKey;                // "rpps:..." or "adeli:..." of the GP correspondent
  std::string inclusionDate;
  std::string consent;              // "", draft, active, withdrawn, expired, excluded
  std::string consentEnd;           // YYYY-MM-DD, end of the current term
  int consentRenewals = 0;
  bool hasCied = false;
  std::optional<double> ciedVas;
  std::vector<int> csbSemesters;    // semesters already reported
  std::map<std::string, std::string> liaisonSheets;  // sheetId -> phase reached (start, end)
  std::map<std::string, std::string> liaisonAuthors; // sheetId -> author key
  std::map<std::string, std::string> liaisonStartDates;  // sheetId -> start date (optional: end-before-start)
  std::map<std::string, ReferralState> referrals;    // referralId -> state
  bool operaEnrolled = false;
};

// What the store knows about everything the document names, keyed as in PatientState:
// professionals by "rpps:N" / "adeli:N", structures by "finess:N", patients by "nir:N" /
// "nia:N" / "networkId:N".
struct RuleContext {
  std::string today;  // YYYY-MM-DD
  std::map<std::string, ProfessionalState> professionals;
  std::map<std::string, StructureState> structures;
  std::map<std::string, PatientState> patients;
};

// The key a reference object ({"rpps": ...}, {"nir": ...}, {"finess": ...}) is known by.
std::string refKey(const Json& ref);

// Checks `doc` (already valid against its JSON Schema) against the rules of its kind. Returns every
// problem found (errors and warnings).
std::vector<Problem> checkRules(const std::string& kind, const Json& doc, const RuleContext& ctx,
                                const RuleConfig& config);

// The refusal reason of an `exit` document of type refusal (age, scheme-not-adhering, duration,
// not-resistant, no-impact, gp-not-member, other) that an inclusion problem code counts under:
// "daily-pain" counts as "duration", codes with no reason of their own as "other".
std::string refusalReasonFor(const std::string& code);

// The values the rules derive for a valid document, as an object the mappings read under
// "derived" (e.g. {"evaluable": true, "consentEnd": "2027-11-23", "dueDate": "...",
// "goalAchieved": false, "pathway": [...], "evaluations": [...]}).
Json deriveValues(const std::string& kind, const Json& doc, const RuleContext& ctx, const RuleConfig& config);

}  // namespace passerelle::network
