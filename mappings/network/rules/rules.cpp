// The network's rules on each kind of document, the values they derive, and the reading of
// conf/network/rules.json (see rules.h; conf/network/README.md gives the source of each setting).
#include "mappings/network/rules/rules.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <functional>
#include <set>
#include <utility>

#include <nlohmann/json.hpp>

#include "mappings/network/rules/calendar.h"

namespace passerelle::network {
namespace {

// ---------------------------------------------------------------------------------------------
// Reading documents without exceptions (the document is schema-valid, but a rule never throws).

const Json* member(const Json& j, const std::string& key) {
  if (!j.is_object()) return nullptr;
  auto it = j.find(key);
  return it == j.end() ? nullptr : &*it;
}

// A dotted path without array indexes: "patient.birthDate", "to.professional".
const Json* find(const Json& j, const std::string& path) {
  const Json* node = &j;
  size_t start = 0;
  while (node) {
    size_t dot = path.find('.', start);
    node = member(*node, path.substr(start, dot == std::string::npos ? std::string::npos : dot - start));
    if (dot == std::string::npos) break;
    start = dot + 1;
  }
  return node;
}

std::string text(const Json& j, const std::string& path) {
  const Json* node = find(j, path);
  return node && node->is_string() ? node->get<std::string>() : std::string();
}

std::optional<bool> flag(const Json& j, const std::string& path) {
  const Json* node = find(j, path);
  if (!node || !node->is_boolean()) return std::nullopt;
  return node->get<bool>();
}

std::optional<double> number(const Json& j, const std::string& path) {
  const Json* node = find(j, path);
  if (!node || !node->is_number()) return std::nullopt;
  return node->get<double>();
}

std::optional<int> integer(const Json& j, const std::string& path) {
  const Json* node = find(j, path);
  if (!node || !node->is_number_integer()) return std::nullopt;
  return node->get<int>();
}

// "8", "3.5", "56.3": at most the digits a double needs, no trailing zeros.
std::string formatNumber(double value) {
  char buffer[32];
  std::snprintf(buffer, sizeof buffer, "%.10g", value);
  return buffer;
}

double roundToTenth(double value) { return std::round(value * 10.0) / 10.0; }

std::string joinList(const std::vector<std::string>& items, const std::string& last = "and") {
  std::string out;
  for (size_t i = 0; i < items.size(); ++i) {
    if (i > 0) out += i + 1 == items.size() ? " " + last + " " : ", ";
    out += items[i];
  }
  return out;
}

template <typename Map>
std::vector<std::string> keysOf(const Map& map) {
  std::vector<std::string> keys;
  for (const auto& [key, value] : map) keys.push_back(key);
  return keys;
}

// "a specialist", "an opera-professional".
std::string aOrAn(const std::string& word) {
  if (word.empty()) return "(no category)";
  return (std::string("aeiou").find(word[0]) == std::string::npos ? "a " : "an ") + word;
}

bool contains(const std::vector<std::string>& list, const std::string& value) {
  return std::find(list.begin(), list.end(), value) != list.end();
}

// Every key an Identity is known by (nir, nia, networkId), in order of preference.
std::vector<std::string> identityKeys(const Json& identity) {
  std::vector<std::string> keys;
  for (const char* name : {"nir", "nia", "networkId"}) {
    std::string value = text(identity, name);
    if (!value.empty()) keys.push_back(std::string(name) + ":" + value);
  }
  return keys;
}

// ---------------------------------------------------------------------------------------------
// The checker: the document, what the store knows, and the problems found so far.

class Checker {
 public:
  Checker(const Json& doc, const RuleContext& ctx, const RuleConfig& config)
      : doc(doc), ctx(ctx), config(config), today(parseDate(ctx.today)) {}

  void error(std::string code, std::string path, std::string message) {
    problems.push_back(Problem{std::move(code), std::move(path), std::move(message), false});
  }
  void warning(std::string code, std::string path, std::string message) {
    problems.push_back(Problem{std::move(code), std::move(path), std::move(message), true});
  }

  // The date at `path`, or nothing (and an `invalid-date` problem when present but not a date).
  std::optional<Date> date(const std::string& path) {
    const Json* node = find(doc, path);
    if (!node) return std::nullopt;
    std::optional<Date> value = node->is_string() ? parseDate(node->get<std::string>()) : std::nullopt;
    if (!value) error("invalid-date", path, path + " is not a calendar date (YYYY-MM-DD): " + node->dump());
    return value;
  }

  // The patient named by the PatientRef at `path`; `unknown-patient` when the store lacks it.
  const PatientState* patientAt(const std::string& path) {
    const Json* ref = find(doc, path);
    if (!ref) return nullptr;
    std::string key = refKey(*ref);
    auto it = ctx.patients.find(key);
    if (it == ctx.patients.end() || !it->second.known) {
      error("unknown-patient", path, "the patient " + shown(key) + " is not known to the network");
      return nullptr;
    }
    return &it->second;
  }

  // The professional named by the ProfessionalRef at `path` (nullptr when absent or unknown);
  // `unknown-professional`, and `professional-not-member` when `mustBeMember` and the membership
  // is not active.
  const ProfessionalState* professionalAt(const std::string& path, bool mustBeMember) {
    const Json* ref = find(doc, path);
    if (!ref) return nullptr;
    std::string key = refKey(*ref);
    auto it = ctx.professionals.find(key);
    if (it == ctx.professionals.end() || !it->second.known) {
      error("unknown-professional", path, "the professional " + shown(key) + " is not known to the network");
      return nullptr;
    }
    if (mustBeMember && it->second.membershipStatus != "active")
      error("professional-not-member", path,
            "the professional " + key + " is not an active member of the network (membership " +
                shown(it->second.membershipStatus) + ")");
    return &it->second;
  }

  const StructureState* structureAt(const std::string& path) {
    const Json* ref = find(doc, path);
    if (!ref) return nullptr;
    std::string key = refKey(*ref);
    auto it = ctx.structures.find(key);
    if (it == ctx.structures.end() || !it->second.known) {
      error("unknown-structure", path, "the structure " + shown(key) + " is not known to the network");
      return nullptr;
    }
    return &it->second;
  }

  // The store's date `value` (e.g. the inclusion date), nothing when empty or malformed.
  static std::optional<Date> stored(const std::string& value) { return parseDate(value); }

  static std::string shown(const std::string& value) { return value.empty() ? "(none)" : value; }

  // The shared checks of the documents written about an included patient.
  void requireIncluded(const PatientState& patient) {
    if (patient.enrolment != "active")
      error("not-included", "patient",
            patient.enrolment.empty() ? "the patient is not included in the network"
                                      : "the patient's enrolment is " + patient.enrolment + ", not active");
  }
  void requireActiveConsent(const PatientState& patient, const std::string& code) {
    if (patient.consent != "active")
      error(code, "patient",
            patient.consent.empty() ? "the patient has no signed consent"
                                    : "the patient's consent is " + patient.consent + ", not active");
  }
  void requireGpCorrespondent(const PatientState& patient, const std::string& path, const std::string& code) {
    const Json* ref = find(doc, path);
    if (!ref) return;
    std::string key = refKey(*ref);
    if (key == patient.gpKey) return;
    error(code, path,
          patient.gpKey.empty()
              ? key + " is not the patient's GP correspondent (the patient has none on record)"
              : key + " is not the patient's GP correspondent (" + patient.gpKey + ")");
  }

  const Json& doc;
  const RuleContext& ctx;
  const RuleConfig& config;
  std::optional<Date> today;
  std::vector<Problem> problems;
};

// ---------------------------------------------------------------------------------------------
// The rules, one function per kind.

void checkInclusion(Checker& c) {
  const RuleConfig& cfg = c.config;
  auto inclusion = c.date("inclusionDate");
  auto birth = c.date("patient.birthDate");
  auto onset = c.date("painOnsetDate");

  if (inclusion && c.today && *inclusion > *c.today)
    c.error("inclusion-in-future", "inclusionDate",
            "the inclusion date " + formatDate(*inclusion) + " is after today (" + c.ctx.today + ")");

  if (inclusion && birth) {
    int age = ageAt(*birth, *inclusion);
    if (*birth > *inclusion || age < cfg.minAge || age > cfg.maxAge)
      c.error("age", "patient.birthDate",
              "the patient is " + std::to_string(age) + " at inclusion (" + formatDate(*inclusion) +
                  "); the network includes patients aged " + std::to_string(cfg.minAge) + " to " +
                  std::to_string(cfg.maxAge));
  }

  std::string scheme = text(c.doc, "coverage.scheme");
  if (!scheme.empty() && !contains(cfg.adheringSchemes, scheme))
    c.error("scheme-not-adhering", "coverage.scheme",
            "the patient's scheme " + scheme + " does not adhere to the network (adhering: " +
                joinList(cfg.adheringSchemes) + ")");

  if (inclusion && onset) {
    if (*onset > *inclusion) {
      c.error("pain-onset-after-inclusion", "painOnsetDate",
              "the pain onset date " + formatDate(*onset) + " is after the inclusion date " + formatDate(*inclusion));
    } else if (*inclusion <= addMonths(*onset, cfg.minPainMonths)) {
      c.error("duration", "painOnsetDate",
              "the pain began on " + formatDate(*onset) + ", " + std::to_string(wholeMonthsBetween(*onset, *inclusion)) +
                  " whole months before the inclusion (" + formatDate(*inclusion) +
                  "); the network requires pain for more than " + std::to_string(cfg.minPainMonths) + " months");
    }
  }

  struct Criterion {
    const char* name;
    const char* code;
    std::string message;
  };
  const Criterion criteria[] = {
      {"dailyPainOver3Months", "daily-pain",
       "the pain is not near-daily for more than " + std::to_string(cfg.minPainMonths) + " months"},
      {"resistantToStep1And2", "not-resistant", "the pain is not resistant to WHO step I and II analgesics"},
      {"activityImpact", "no-impact", "the pain has no impact on the patient's activities"},
  };
  for (const Criterion& criterion : criteria) {
    std::string path = std::string("criteria.") + criterion.name + ".met";
    if (flag(c.doc, path) == false) c.error(criterion.code, path, criterion.message + " (criterion " + criterion.name + ")");
  }

  if (const Json* gp = member(c.doc, "gp")) {
    std::string key = refKey(*gp);
    auto it = c.ctx.professionals.find(key);
    if (it == c.ctx.professionals.end() || !it->second.known)
      c.error("gp-not-member", "gp", "the GP " + Checker::shown(key) + " is not known to the network");
    else if (it->second.category != "gp")
      c.error("gp-not-member", "gp",
              key + " is " + aOrAn(it->second.category) + ", not a GP; only a GP can be the GP correspondent");
    else if (it->second.membershipStatus != "active")
      c.error("gp-not-member", "gp",
              "the GP " + key + " is not an active member of the network (membership " +
                  Checker::shown(it->second.membershipStatus) + ")");
  }

  if (const Json* patient = member(c.doc, "patient")) {
    for (const std::string& key : identityKeys(*patient)) {
      auto it = c.ctx.patients.find(key);
      if (it != c.ctx.patients.end() && it->second.known && it->second.enrolment == "active") {
        c.error("already-included", "patient", "the patient " + key + " is already included in the network");
        break;
      }
    }
  }
}

void checkConsent(Checker& c) {
  const PatientState* patient = c.patientAt("patient");
  c.professionalAt("gp", true);
  if (patient) {
    c.requireIncluded(*patient);
    c.requireGpCorrespondent(*patient, "gp", "not-gp-correspondent");
    if (patient->consent == "active")
      c.error("consent-already-active", "patient",
              "the patient already has an active consent" +
                  (patient->consentEnd.empty() ? std::string() : " (until " + patient->consentEnd + ")") +
                  "; renew it instead");
  }
  const std::pair<const char*, const char*> signatories[] = {
      {"patient", "the patient"}, {"gp", "the GP correspondent"}, {"network", "Douleur 77"}};
  for (const auto& [name, who] : signatories) {
    std::string path = std::string("signatories.") + name;
    if (flag(c.doc, path) == false)
      c.error("signatories", path,
              std::string("the consent is not signed by ") + who +
                  "; the patient, the GP correspondent and Douleur 77 must all sign");
  }
  std::vector<std::string> missing;
  const Json* engagements = member(c.doc, "engagements");
  for (const char* engagement : {"E1", "E2", "E3"}) {
    bool present = false;
    if (engagements && engagements->is_array())
      for (const Json& e : *engagements) present = present || (e.is_string() && e.get<std::string>() == engagement);
    if (!present) missing.push_back(engagement);
  }
  if (!missing.empty())
    c.error("engagements", "engagements",
            "the consent lacks engagement" + std::string(missing.size() > 1 ? "s " : " ") + joinList(missing) +
                "; E1, E2 and E3 are all required");
  auto signature = c.date("signatureDate");
  if (signature && c.today && *signature > *c.today)
    c.error("signature-in-future", "signatureDate",
            "the signature date " + formatDate(*signature) + " is after today (" + c.ctx.today + ")");
}

void checkConsentRenewal(Checker& c) {
  const PatientState* patient = c.patientAt("patient");
  c.professionalAt("gp", true);
  auto renewal = c.date("renewalDate");
  if (!patient) return;
  c.requireActiveConsent(*patient, "no-active-consent");
  if (patient->consentRenewals >= c.config.maxConsentRenewals)
    c.error("consent-renewals", "renewalDate",
            "the consent has already been renewed " + std::to_string(patient->consentRenewals) +
                " times; it may be renewed at most " + std::to_string(c.config.maxConsentRenewals) + " times");
  c.requireGpCorrespondent(*patient, "gp", "not-gp-correspondent");
  auto end = Checker::stored(patient->consentEnd);
  if (renewal && end && *renewal > *end)
    c.error("renewal-after-expiry", "renewalDate",
            "the renewal date " + formatDate(*renewal) + " is after the end of the consent (" + patient->consentEnd + ")");
}

void checkConsentWithdrawal(Checker& c) {
  const PatientState* patient = c.patientAt("patient");
  c.professionalAt("recordedBy", true);
  c.date("withdrawalDate");
  if (patient) c.requireActiveConsent(*patient, "no-active-consent");
}

// cied and csb.
void checkConsultation(Checker& c, bool csb) {
  const PatientState* patient = c.patientAt("patient");
  c.professionalAt("gp", true);
  auto date = c.date("date");
  if (!patient) return;
  c.requireIncluded(*patient);
  c.requireActiveConsent(*patient, "consent-not-active");
  c.requireGpCorrespondent(*patient, "gp", "not-gp-correspondent");

  if (!csb && patient->hasCied)
    c.error("cied-exists", "", "the patient already has an initial evaluation consultation (one per patient)");
  if (csb && !patient->hasCied)
    c.error("no-cied", "", "the patient has no initial evaluation consultation yet; it precedes every review consultation");

  auto scale = c.config.requiredScale.find(patient->pathology);
  if (scale != c.config.requiredScale.end() && !scale->second.empty() && !find(c.doc, "measures." + scale->second))
    c.error("missing-scale", "measures." + scale->second,
            "the " + scale->second + " scale is required for " + patient->pathology + " patients");

  auto inclusion = Checker::stored(patient->inclusionDate);
  if (date && inclusion && *date < *inclusion)
    c.error("date-before-inclusion", "date",
            "the consultation date " + formatDate(*date) + " is before the inclusion date " + patient->inclusionDate);

  if (!csb) return;
  auto semester = integer(c.doc, "semester");
  if (!semester) return;
  if (std::find(patient->csbSemesters.begin(), patient->csbSemesters.end(), *semester) != patient->csbSemesters.end())
    c.error("csb-semester-exists", "semester",
            "the review consultation of semester " + std::to_string(*semester) + " is already reported");
  if (date && inclusion) {
    Date earliest = addMonths(*inclusion, *semester * c.config.csbIntervalMonths - 1);
    if (*date < earliest)
      c.warning("csb-too-early", "date",
                "the review consultation of semester " + std::to_string(*semester) + " on " + formatDate(*date) +
                    " is early: it is due on " + formatDate(addMonths(*inclusion, *semester * c.config.csbIntervalMonths)) +
                    " and may be held from " + formatDate(earliest));
  }
}

void checkLiaisonSheet(Checker& c) {
  const PatientState* patient = c.patientAt("patient");
  const ProfessionalState* author = c.professionalAt("author", true);
  c.professionalAt("prescriber", false);
  const std::string sheetId = text(c.doc, "sheetId");
  const std::string phase = text(c.doc, "phase");
  std::string authorKey;
  if (const Json* ref = member(c.doc, "author")) authorKey = refKey(*ref);

  if (author) {
    auto allowed = c.config.liaisonPathology.find(author->category);
    if (allowed == c.config.liaisonPathology.end())
      c.error("liaison-author-category", "author",
              authorKey + " is " + aOrAn(author->category) + "; liaison sheets are kept by a " +
                  joinList(keysOf(c.config.liaisonPathology), "or"));
    else if (patient && patient->pathology != allowed->second)
      c.error("liaison-pathology", "author",
              aOrAn(author->category) + " keeps liaison sheets for " + allowed->second +
                  " patients only; the patient's pathology is " + Checker::shown(patient->pathology));
  }
  std::optional<Date> phaseDate;
  if (phase == "start" || phase == "end") phaseDate = c.date(phase + ".date");
  if (!patient) return;
  c.requireActiveConsent(*patient, "consent-not-active");
  c.requireGpCorrespondent(*patient, "prescriber", "prescriber-not-gp-correspondent");

  auto reached = patient->liaisonSheets.find(sheetId);
  if (phase == "start") {
    if (reached != patient->liaisonSheets.end())
      c.error("liaison-exists", "sheetId", "the liaison sheet " + sheetId + " is already started");
  } else if (phase == "end") {
    if (reached == patient->liaisonSheets.end()) {
      c.error("liaison-not-started", "sheetId", "the liaison sheet " + sheetId + " has no start phase");
      return;
    }
    if (reached->second == "end") c.error("liaison-ended", "sheetId", "the liaison sheet " + sheetId + " is already ended");
    auto startAuthor = patient->liaisonAuthors.find(sheetId);
    if (startAuthor != patient->liaisonAuthors.end() && !authorKey.empty() && startAuthor->second != authorKey)
      c.error("liaison-other-author", "author",
              "the liaison sheet " + sheetId + " was started by " + startAuthor->second + "; only they can end it, not " + authorKey);
    auto startDate = patient->liaisonStartDates.find(sheetId);
    if (startDate != patient->liaisonStartDates.end()) {
      auto start = Checker::stored(startDate->second);
      if (start && phaseDate && *phaseDate < *start)
        c.error("end-before-start", "end.date",
                "the end date " + formatDate(*phaseDate) + " is before the start of the sheet (" + startDate->second + ")");
    }
  }
}

void checkReferral(Checker& c) {
  const PatientState* patient = c.patientAt("patient");
  const ProfessionalState* from = c.professionalAt("from", true);
  const ProfessionalState* toProfessional = c.professionalAt("to.professional", true);
  const StructureState* toStructure = c.structureAt("to.structure");
  const ProfessionalState* assistant = c.professionalAt("assistedBy", false);
  c.date("requestedDate");
  const std::string referralId = text(c.doc, "referralId");
  auto fromLevel = integer(c.doc, "fromLevel");
  auto toLevel = integer(c.doc, "toLevel");
  std::string fromKey = member(c.doc, "from") ? refKey(c.doc["from"]) : std::string();

  if (patient) {
    c.requireActiveConsent(*patient, "consent-not-active");
    if (patient->referrals.count(referralId))
      c.error("referral-exists", "referralId", "the referral " + referralId + " already exists");
  }

  if (fromLevel && toLevel) {
    const int f = *fromLevel, t = *toLevel;
    bool allowed = (f == 1 && (t == 2 || t == 3)) || (f == 2 && t == 3);
    bool toParamedical = toProfessional && (toProfessional->category == "nurse" || toProfessional->category == "physiotherapist");
    if (f == 1 && t == 1) {
      // Only to a nurse or physiotherapist; an unknown recipient is already reported.
      allowed = toParamedical || (find(c.doc, "to.professional") && !toProfessional);
    }
    if (!allowed)
      c.error("referral-levels", "toLevel",
              "a referral from level " + std::to_string(f) + " to level " + std::to_string(t) +
                  " is not allowed (allowed: 1 to 2, 1 to 3, 2 to 3, and 1 to 1 to a nurse or physiotherapist)");
    std::optional<int> recipientLevel;
    std::string recipient;
    if (toProfessional) {
      recipientLevel = toProfessional->level;
      recipient = refKey(c.doc["to"]["professional"]);
    } else if (toStructure) {
      recipientLevel = toStructure->level;
      recipient = refKey(c.doc["to"]["structure"]);
    }
    if (recipientLevel && *recipientLevel != t)
      c.error("referral-levels", "toLevel",
              "toLevel is " + std::to_string(t) + " but the recipient " + recipient + " is at level " +
                  std::to_string(*recipientLevel));

    if (f == 1 && patient && fromKey != patient->gpKey)
      c.error("referral-from", "from",
              "from level 1 only the patient's GP correspondent (" + Checker::shown(patient->gpKey) +
                  ") refers; " + fromKey + " is not");
    else if (f == 2 && from && from->level != 2)
      c.error("referral-from", "from", fromKey + " is at level " + std::to_string(from->level) + ", not at level 2");
  }

  if (assistant && assistant->category != "coordinator")
    c.error("assistant-not-coordinator", "assistedBy",
            refKey(c.doc["assistedBy"]) + " is " + aOrAn(assistant->category) +
                "; only a coordinating doctor assists a referral");
}

void checkReferralUpdate(Checker& c) {
  const PatientState* patient = c.patientAt("patient");
  c.professionalAt("by", true);
  c.date("date");
  if (!patient) return;
  const std::string referralId = text(c.doc, "referralId");
  auto it = patient->referrals.find(referralId);
  if (it == patient->referrals.end()) {
    c.error("unknown-referral", "referralId", "the patient has no referral " + referralId);
    return;
  }
  const ReferralState& referral = it->second;
  std::string byKey = member(c.doc, "by") ? refKey(c.doc["by"]) : std::string();
  // the recipient answers: the professional named, or a professional of the structure named
  auto byState = c.ctx.professionals.find(byKey);
  bool ofStructure = byState != c.ctx.professionals.end() && !byState->second.structureKey.empty() &&
                     byState->second.structureKey == referral.toKey;
  if (byKey != referral.toKey && !ofStructure)
    c.error("referral-not-recipient", "by",
            "only the recipient of referral " + referralId + " (" + Checker::shown(referral.toKey) +
                ") records its progress, not " + byKey);

  static const std::map<std::string, std::vector<std::string>> kNext = {
      {"requested", {"accepted", "rejected"}},
      {"accepted", {"seen", "report-returned"}},
      {"seen", {"report-returned"}},
  };
  const std::string status = text(c.doc, "status");
  auto next = kNext.find(referral.status);
  if (next == kNext.end())
    c.error("referral-transition", "status",
            "the referral " + referralId + " is " + Checker::shown(referral.status) + "; no state follows it, so it cannot become " + status);
  else if (!contains(next->second, status))
    c.error("referral-transition", "status",
            "the referral " + referralId + " is " + referral.status + "; it cannot become " + status +
                " (only " + joinList(next->second, "or") + ")");
}

void checkExit(Checker& c) {
  const std::string type = text(c.doc, "type");
  c.professionalAt("recordedBy", true);
  c.date("date");
  if (type == "refusal") {
    // A refused candidate need not be in the store: only an included patient is refused.
    const Json* ref = member(c.doc, "patient");
    auto it = ref ? c.ctx.patients.find(refKey(*ref)) : c.ctx.patients.end();
    if (it != c.ctx.patients.end() && it->second.known && it->second.enrolment == "active")
      c.error("already-included", "patient",
              "the patient " + it->first + " is included in the network; an admission cannot be refused");
    return;
  }
  const PatientState* patient = c.patientAt("patient");
  if (patient) c.requireIncluded(*patient);
}

void checkOperaEnrolment(Checker& c) {
  if (const Json* patient = member(c.doc, "patient")) {
    for (const std::string& key : identityKeys(*patient)) {
      auto it = c.ctx.patients.find(key);
      if (it != c.ctx.patients.end() && it->second.known && it->second.operaEnrolled) {
        c.error("opera-already-enrolled", "patient", "the patient " + key + " is already enrolled in OPERA");
        break;
      }
    }
  }
  c.date("enrolmentDate");
  c.date("risk.date");
  const ProfessionalState* professional = c.professionalAt("professional", true);
  c.professionalAt("risk.assessor", false);
  if (!professional) return;
  std::string key = refKey(c.doc["professional"]);
  if (professional->category != "opera-professional")
    c.error("professional-not-opera", "professional",
            key + " is " + aOrAn(professional->category) + ", not an OPERA professional");
  std::string region = text(c.doc, "region");
  if (!professional->region.empty() && professional->region != region)
    c.error("region-mismatch", "region",
            "the professional " + key + " works in region " + professional->region + ", not " + region);
}

void checkOperaActivity(Checker& c) {
  const ProfessionalState* professional = c.professionalAt("professional", true);
  c.date("date");
  const std::string activity = text(c.doc, "activity");
  std::string key = member(c.doc, "professional") ? refKey(c.doc["professional"]) : std::string();
  if (professional && professional->category != "opera-professional")
    c.error("professional-not-opera", "professional",
            key + " is " + aOrAn(professional->category) + ", not an OPERA professional");

  size_t count = 0;
  if (const Json* patients = member(c.doc, "patients"); patients && patients->is_array()) {
    count = patients->size();
    for (size_t i = 0; i < count; ++i) {
      std::string path = "patients[" + std::to_string(i) + "]";
      std::string patientKey = refKey((*patients)[i]);
      auto it = c.ctx.patients.find(patientKey);
      if (it == c.ctx.patients.end() || !it->second.known)
        c.error("unknown-patient", path, "the patient " + Checker::shown(patientKey) + " is not known to the network");
      else if (!it->second.operaEnrolled)
        c.error("opera-not-enrolled", path, "the patient " + patientKey + " is not enrolled in OPERA");
    }
  }
  if (activity == "etp-collective" && count < 2)
    c.error("collective-needs-patients", "patients",
            "a collective education session needs at least 2 patients, not " + std::to_string(count));
  else if (activity != "etp-collective" && count > 1)
    c.error("single-patient", "patients",
            "the " + activity + " activity concerns one patient, not " + std::to_string(count) +
                " (only etp-collective sessions have several)");
  if (activity == "evaluation" && !member(c.doc, "milestone"))
    c.error("missing-milestone", "milestone", "an evaluation names its milestone (M6, M12, M24 or M36)");

  auto training = c.config.operaTraining.find(activity);
  if (professional && training != c.config.operaTraining.end() && !contains(professional->trainings, training->second))
    c.warning("untrained-activity", "professional",
              "the professional " + key + " has not attended the " + training->second + " training that " + activity +
                  " activities call for");
}

void checkProfessional(Checker& c) {
  auto signature = c.date("membership.signatureDate");
  if (signature && c.today && *signature > *c.today)
    c.error("membership-signature-in-future", "membership.signatureDate",
            "the membership signature date " + formatDate(*signature) + " is after today (" + c.ctx.today + ")");
}

// ---------------------------------------------------------------------------------------------
// Reading the configuration.

class ConfigReader {
 public:
  explicit ConfigReader(std::string& error) : error_(error) {}

  bool integer(const Json& value, const std::string& name, int& out, int min, int max) {
    if (!value.is_number_integer() || value.get<long long>() < min || value.get<long long>() > max)
      return fail(name + " must be an integer from " + std::to_string(min) + " to " + std::to_string(max) + ", not " + value.dump());
    out = value.get<int>();
    return true;
  }
  bool number(const Json& value, const std::string& name, double& out, double min, double max) {
    if (!value.is_number() || value.get<double>() < min || value.get<double>() > max)
      return fail(name + " must be a number from " + formatNumber(min) + " to " + formatNumber(max) + ", not " + value.dump());
    out = value.get<double>();
    return true;
  }
  bool word(const Json& value, const std::string& name, std::string& out) {
    if (!value.is_string() || value.get<std::string>().empty())
      return fail(name + " must be a non-empty string, not " + value.dump());
    out = value.get<std::string>();
    return true;
  }
  bool words(const Json& value, const std::string& name, std::vector<std::string>& out) {
    if (!value.is_array()) return fail(name + " must be an array of strings, not " + value.dump());
    std::vector<std::string> list;
    for (size_t i = 0; i < value.size(); ++i) {
      std::string item;
      if (!word(value[i], name + "[" + std::to_string(i) + "]", item)) return false;
      list.push_back(std::move(item));
    }
    out = std::move(list);
    return true;
  }
  bool integers(const Json& value, const std::string& name, std::vector<int>& out, int min, int max) {
    if (!value.is_array()) return fail(name + " must be an array of integers, not " + value.dump());
    std::vector<int> list;
    for (size_t i = 0; i < value.size(); ++i) {
      int item = 0;
      if (!integer(value[i], name + "[" + std::to_string(i) + "]", item, min, max)) return false;
      list.push_back(item);
    }
    out = std::move(list);
    return true;
  }
  bool wordMap(const Json& value, const std::string& name, std::map<std::string, std::string>& out) {
    if (!value.is_object()) return fail(name + " must be an object of strings, not " + value.dump());
    std::map<std::string, std::string> map;
    for (const auto& [key, item] : value.items())
      if (!word(item, name + "." + key, map[key])) return false;
    out = std::move(map);
    return true;
  }
  bool listMap(const Json& value, const std::string& name, std::map<std::string, std::vector<std::string>>& out) {
    if (!value.is_object()) return fail(name + " must be an object of arrays of strings, not " + value.dump());
    std::map<std::string, std::vector<std::string>> map;
    for (const auto& [key, item] : value.items())
      if (!words(item, name + "." + key, map[key])) return false;
    out = std::move(map);
    return true;
  }
  bool fail(const std::string& message) {
    error_ = "rules configuration: " + message;
    return false;
  }

 private:
  std::string& error_;
};

}  // namespace

bool parseRuleConfig(const Json& json, RuleConfig& out, std::string& error) {
  ConfigReader r(error);
  if (!json.is_object()) return r.fail("the configuration must be a JSON object, not " + json.dump());
  RuleConfig c = out;
  constexpr int kYears = 150, kMonths = 1200, kDays = 3650;
  using Reader = std::function<bool(const Json&)>;
  const std::map<std::string, Reader> readers = {
      {"minAge", [&](const Json& v) { return r.integer(v, "minAge", c.minAge, 0, kYears); }},
      {"maxAge", [&](const Json& v) { return r.integer(v, "maxAge", c.maxAge, 0, kYears); }},
      {"adheringSchemes", [&](const Json& v) { return r.words(v, "adheringSchemes", c.adheringSchemes); }},
      {"minPainMonths", [&](const Json& v) { return r.integer(v, "minPainMonths", c.minPainMonths, 0, kMonths); }},
      {"evaluableMaxMonths", [&](const Json& v) { return r.integer(v, "evaluableMaxMonths", c.evaluableMaxMonths, 1, kMonths); }},
      {"consentTermMonths", [&](const Json& v) { return r.integer(v, "consentTermMonths", c.consentTermMonths, 1, kMonths); }},
      {"maxConsentRenewals", [&](const Json& v) { return r.integer(v, "maxConsentRenewals", c.maxConsentRenewals, 0, 100); }},
      {"csbIntervalMonths", [&](const Json& v) { return r.integer(v, "csbIntervalMonths", c.csbIntervalMonths, 1, kMonths); }},
      {"goalReductionPercent", [&](const Json& v) { return r.number(v, "goalReductionPercent", c.goalReductionPercent, 0.0, 100.0); }},
      {"specialistReferralDays", [&](const Json& v) { return r.integer(v, "specialistReferralDays", c.specialistReferralDays, 0, kDays); }},
      {"structureReferralDays", [&](const Json& v) { return r.integer(v, "structureReferralDays", c.structureReferralDays, 0, kDays); }},
      {"liaisonPathology", [&](const Json& v) { return r.wordMap(v, "liaisonPathology", c.liaisonPathology); }},
      {"requiredScale", [&](const Json& v) { return r.wordMap(v, "requiredScale", c.requiredScale); }},
      {"operaPathway", [&](const Json& v) { return r.listMap(v, "operaPathway", c.operaPathway); }},
      {"operaMilestones", [&](const Json& v) { return r.integers(v, "operaMilestones", c.operaMilestones, 1, kMonths); }},
      {"operaTraining", [&](const Json& v) { return r.wordMap(v, "operaTraining", c.operaTraining); }},
  };
  for (const auto& [name, value] : json.items()) {
    if (!name.empty() && name[0] == '_') continue;  // notes
    auto reader = readers.find(name);
    if (reader == readers.end())
      return r.fail("unknown member \"" + name + "\" (known: " + joinList(keysOf(readers)) + ")");
    if (!reader->second(value)) return false;
  }
  if (c.minAge > c.maxAge)
    return r.fail("minAge (" + std::to_string(c.minAge) + ") is greater than maxAge (" + std::to_string(c.maxAge) + ")");
  if (c.minPainMonths >= c.evaluableMaxMonths)
    return r.fail("minPainMonths (" + std::to_string(c.minPainMonths) + ") must be less than evaluableMaxMonths (" +
                  std::to_string(c.evaluableMaxMonths) + ")");
  out = std::move(c);
  error.clear();
  return true;
}

std::string refKey(const Json& ref) {
  if (!ref.is_object()) return "";
  for (const char* name : {"rpps", "adeli", "finess", "nir", "nia", "networkId"}) {
    auto it = ref.find(name);
    if (it != ref.end() && it->is_string() && !it->get<std::string>().empty())
      return std::string(name) + ":" + it->get<std::string>();
  }
  return "";
}

std::string refusalReasonFor(const std::string& code) {
  static const std::set<std::string> kSame = {"age", "scheme-not-adhering", "duration", "not-resistant",
                                              "no-impact", "gp-not-member", "pathology"};
  if (kSame.count(code)) return code;
  if (code == "daily-pain") return "duration";
  return "other";
}

std::vector<Problem> checkRules(const std::string& kind, const Json& doc, const RuleContext& ctx,
                                const RuleConfig& config) {
  Checker c(doc, ctx, config);
  if (kind == "inclusion") checkInclusion(c);
  else if (kind == "consent") checkConsent(c);
  else if (kind == "consent-renewal") checkConsentRenewal(c);
  else if (kind == "consent-withdrawal") checkConsentWithdrawal(c);
  else if (kind == "cied") checkConsultation(c, false);
  else if (kind == "csb") checkConsultation(c, true);
  else if (kind == "liaison-sheet") checkLiaisonSheet(c);
  else if (kind == "referral") checkReferral(c);
  else if (kind == "referral-update") checkReferralUpdate(c);
  else if (kind == "exit") checkExit(c);
  else if (kind == "opera-enrolment") checkOperaEnrolment(c);
  else if (kind == "opera-activity") checkOperaActivity(c);
  else if (kind == "professional") checkProfessional(c);
  else if (kind == "structure") {
  } else {
    c.error("unknown-kind", "", "there are no rules for documents of kind \"" + kind + "\"");
  }
  return std::move(c.problems);
}

Json deriveValues(const std::string& kind, const Json& doc, const RuleContext& ctx, const RuleConfig& config) {
  Json out = Json::object();
  auto docDate = [&](const std::string& path) { return parseDate(text(doc, path)); };
  const PatientState* patient = nullptr;
  if (const Json* ref = member(doc, "patient")) {
    auto it = ctx.patients.find(refKey(*ref));
    if (it != ctx.patients.end() && it->second.known) patient = &it->second;
  }

  if (kind == "inclusion") {
    auto inclusion = docDate("inclusionDate");
    auto onset = docDate("painOnsetDate");
    if (inclusion && onset) {
      out["evaluable"] = *inclusion > addMonths(*onset, config.minPainMonths) &&
                         *inclusion < addMonths(*onset, config.evaluableMaxMonths);
      out["painMonths"] = wholeMonthsBetween(*onset, *inclusion);
    }
    if (inclusion) out["firstCsbDue"] = formatDate(addMonths(*inclusion, config.csbIntervalMonths));
  } else if (kind == "consent") {
    if (auto signature = docDate("signatureDate"))
      out["consentEnd"] = formatDate(addMonths(*signature, config.consentTermMonths));
  } else if (kind == "consent-renewal") {
    if (patient) {
      if (auto end = parseDate(patient->consentEnd))
        out["consentEnd"] = formatDate(addMonths(*end, config.consentTermMonths));
      out["renewalCount"] = patient->consentRenewals + 1;
    }
  } else if (kind == "cied") {
    if (auto date = docDate("date")) out["goalDue"] = formatDate(addMonths(*date, config.csbIntervalMonths));
    if (const Json* vas = find(doc, "measures.vas.value"); vas && vas->is_number()) out["baselineVas"] = *vas;
  } else if (kind == "csb") {
    auto vas = number(doc, "measures.vas.value");
    auto semester = integer(doc, "semester");
    std::optional<double> baseline = patient ? patient->ciedVas : std::nullopt;
    if (baseline) out["baselineVas"] = *baseline;
    std::optional<double> reduction;
    if (baseline && *baseline > 0 && vas) {
      reduction = 100.0 * (*baseline - *vas) / *baseline;
      out["reductionPercent"] = roundToTenth(*reduction);
    }
    if (semester == 1 && reduction) {
      bool achieved = *reduction >= config.goalReductionPercent;
      out["goalAchieved"] = achieved;
      out["referralPrompt"] = !achieved;
    }
    if (semester && patient)
      if (auto inclusion = parseDate(patient->inclusionDate))
        out["nextCsbDue"] = formatDate(addMonths(*inclusion, (*semester + 1) * config.csbIntervalMonths));
  } else if (kind == "referral") {
    if (auto requested = docDate("requestedDate")) {
      std::optional<int> days;
      if (find(doc, "to.professional")) {
        days = config.specialistReferralDays;
      } else if (const Json* structure = find(doc, "to.structure")) {
        days = config.structureReferralDays;
        auto it = ctx.structures.find(refKey(*structure));
        if (it != ctx.structures.end() && it->second.known && it->second.referralDelayDays)
          days = *it->second.referralDelayDays;
      }
      if (days) out["dueDate"] = formatDate(addDays(*requested, *days));
    }
  } else if (kind == "opera-enrolment") {
    auto pathway = config.operaPathway.find(text(doc, "risk.level"));
    out["pathway"] = pathway == config.operaPathway.end() ? Json::array() : Json(pathway->second);
    Json evaluations = Json::array();
    auto enrolment = docDate("enrolmentDate");
    for (int months : config.operaMilestones) {
      Json evaluation = {{"milestone", "M" + std::to_string(months)}};
      if (enrolment) evaluation["due"] = formatDate(addMonths(*enrolment, months));
      evaluations.push_back(std::move(evaluation));
    }
    out["evaluations"] = std::move(evaluations);
  }
  return out;
}

}  // namespace passerelle::network
