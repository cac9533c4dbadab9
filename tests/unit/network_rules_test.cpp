// Unit tests of the network's rules (mappings/network/rules): calendar arithmetic, each rule's
// refusal and its accepted boundary, the derived values, the configuration reader and refKey.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>

#include "mappings/network/rules/calendar.h"
#include "mappings/network/rules/rules.h"

using namespace passerelle::network;

namespace {

constexpr const char* kGp = "rpps:10000000001";
constexpr const char* kOtherGp = "rpps:10000000007";
constexpr const char* kWithdrawnGp = "rpps:10000000009";
constexpr const char* kSpecialist = "rpps:10000000002";
constexpr const char* kCoordinator = "rpps:10000000003";
constexpr const char* kPainExpert = "rpps:10000000005";
constexpr const char* kOperaPro = "rpps:10000000006";
constexpr const char* kNurse = "adeli:750000001";
constexpr const char* kPhysio = "adeli:750000002";
constexpr const char* kLowBackPatient = "nir:185057800608436";
constexpr const char* kCancerPatient = "nir:298027500100152";
constexpr const char* kOperaPatient1 = "networkId:OP-000001";
constexpr const char* kOperaPatient2 = "networkId:OP-000002";

Date d(const char* text) { return *parseDate(text); }

ProfessionalState professional(std::string category, int level, std::string status = "active") {
  ProfessionalState p;
  p.known = true;
  p.category = std::move(category);
  p.level = level;
  p.membershipStatus = std::move(status);
  return p;
}

// What the store knows in most tests: one low-back-pain patient included on 2026-01-05 with an
// active consent and a CIED (VAS 8), one cancer patient without CIED, the network's professionals
// and two structures.
RuleContext context() {
  RuleContext ctx;
  ctx.today = "2026-06-15";
  ctx.professionals[kGp] = professional("gp", 1);
  ctx.professionals[kOtherGp] = professional("gp", 1);
  ctx.professionals[kWithdrawnGp] = professional("gp", 1, "withdrawn");
  ctx.professionals[kSpecialist] = professional("specialist", 2);
  ctx.professionals[kCoordinator] = professional("coordinator", 2);
  ctx.professionals[kPainExpert] = professional("pain-expert", 3);
  ctx.professionals[kNurse] = professional("nurse", 1);
  ctx.professionals[kPhysio] = professional("physiotherapist", 1);
  ProfessionalState opera = professional("opera-professional", 1);
  opera.region = "nord-pas-de-calais";
  opera.trainings = {"update", "etp"};
  ctx.professionals[kOperaPro] = opera;

  StructureState local;
  local.known = true;
  local.level = 2;
  local.referralDelayDays = 7;
  ctx.structures["finess:770000001"] = local;
  StructureState avicenne;
  avicenne.known = true;
  avicenne.level = 3;
  ctx.structures["finess:930000001"] = avicenne;

  PatientState p;
  p.known = true;
  p.enrolment = "active";
  p.pathology = "low-back-pain";
  p.gpKey = kGp;
  p.inclusionDate = "2026-01-05";
  p.consent = "active";
  p.consentEnd = "2027-01-05";
  p.hasCied = true;
  p.ciedVas = 8.0;
  p.referrals["R-1"] = ReferralState{"requested", kSpecialist};
  ctx.patients[kLowBackPatient] = p;
  ctx.patients["networkId:P77-000001"] = p;

  PatientState c = p;
  c.pathology = "cancer";
  c.hasCied = false;
  c.ciedVas.reset();
  c.referrals.clear();
  ctx.patients[kCancerPatient] = c;

  PatientState o;
  o.known = true;
  o.operaEnrolled = true;
  ctx.patients[kOperaPatient1] = o;
  ctx.patients[kOperaPatient2] = o;
  return ctx;
}

Json doc(const char* text) { return Json::parse(text); }

Json inclusion() {
  return doc(R"({
    "documentType": "inclusion", "schemaVersion": "1.0", "documentId": "inc-1",
    "inclusionDate": "2026-03-02", "gp": {"rpps": "10000000001"},
    "patient": {"nir": "160037800100122", "networkId": "P77-000002", "family": "Martin", "given": ["Paul"],
                "sex": "male", "birthDate": "1970-05-10"},
    "coverage": {"scheme": "regime-general", "caisse": "CPAM 77"},
    "pathology": "migraine", "painOnsetDate": "2025-09-15",
    "criteria": {"dailyPainOver3Months": {"met": true}, "resistantToStep1And2": {"met": true},
                 "activityImpact": {"met": true, "evidence": "sick leave"}}})");
}

Json consent() {
  return doc(R"({
    "documentType": "consent", "schemaVersion": "1.0", "documentId": "con-1",
    "patient": {"nir": "185057800608436"}, "gp": {"rpps": "10000000001"}, "signatureDate": "2026-01-05",
    "signatories": {"patient": true, "gp": true, "network": true},
    "engagements": ["E1", "E2", "E3"], "sharing": true})");
}

Json renewal() {
  return doc(R"({
    "documentType": "consent-renewal", "schemaVersion": "1.0", "documentId": "ren-1",
    "patient": {"nir": "185057800608436"}, "gp": {"rpps": "10000000001"}, "renewalDate": "2026-12-20"})");
}

Json withdrawal() {
  return doc(R"({
    "documentType": "consent-withdrawal", "schemaVersion": "1.0", "documentId": "wd-1",
    "patient": {"nir": "185057800608436"}, "recordedBy": {"rpps": "10000000001"}, "withdrawalDate": "2026-02-01"})");
}

// A CIED of the cancer patient (who has none yet).
Json cied() {
  return doc(R"({
    "documentType": "cied", "schemaVersion": "1.0", "documentId": "cied-1",
    "patient": {"nir": "298027500100152"}, "gp": {"rpps": "10000000001"}, "date": "2026-01-05",
    "durationMinutes": 62,
    "measures": {"vas": {"value": 8, "method": "vas"},
                 "bpi": {"severity": [7, 5, 6, 8], "interference": [6, 5, 7, 4, 3, 6, 5]}},
    "treatments": [{"atc": "N02AA01", "label": "morphine"}], "report": {"text": "Initial evaluation."}})");
}

// The first CSB of the low-back-pain patient (included 2026-01-05, CIED VAS 8).
Json csb() {
  return doc(R"({
    "documentType": "csb", "schemaVersion": "1.0", "documentId": "csb-1",
    "patient": {"nir": "185057800608436"}, "gp": {"rpps": "10000000001"}, "date": "2026-07-06",
    "durationMinutes": 30, "semester": 1,
    "measures": {"vas": {"value": 3.5, "method": "vas"},
                 "dallas": {"dailyActivities": 40, "workLeisure": 35, "anxietyDepression": 20, "socialInterest": 15}},
    "treatments": [], "report": {"text": "Review."}})");
}

Json liaisonStart() {
  return doc(R"({
    "documentType": "liaison-sheet", "schemaVersion": "1.0", "documentId": "ls-1",
    "sheetId": "LS-1", "patient": {"nir": "185057800608436"}, "author": {"adeli": "750000002"},
    "prescriber": {"rpps": "10000000001"}, "phase": "start",
    "start": {"date": "2026-02-01", "prescriptionDate": "2026-01-20", "objectives": "mobility", "vas": 7,
              "functionalStatus": "limited", "sessionsPlanned": 10}})");
}

Json liaisonEnd() {
  return doc(R"({
    "documentType": "liaison-sheet", "schemaVersion": "1.0", "documentId": "ls-2",
    "sheetId": "LS-1", "patient": {"nir": "185057800608436"}, "author": {"adeli": "750000002"},
    "prescriber": {"rpps": "10000000001"}, "phase": "end",
    "end": {"date": "2026-04-01", "sessionsDone": 10, "vas": 4, "outcome": "better", "callBackGp": false}})");
}

// The context with liaison sheet LS-1 started by the physiotherapist on 2026-02-01.
RuleContext contextWithStartedSheet() {
  RuleContext ctx = context();
  PatientState& p = ctx.patients[kLowBackPatient];
  p.liaisonSheets["LS-1"] = "start";
  p.liaisonAuthors["LS-1"] = kPhysio;
  p.liaisonStartDates["LS-1"] = "2026-02-01";
  return ctx;
}

Json referral() {
  return doc(R"({
    "documentType": "referral", "schemaVersion": "1.0", "documentId": "ref-2",
    "referralId": "R-2", "patient": {"nir": "185057800608436"}, "from": {"rpps": "10000000001"}, "fromLevel": 1,
    "to": {"professional": {"rpps": "10000000002"}}, "toLevel": 2, "reason": "no-50-percent-reduction",
    "assistedBy": {"rpps": "10000000003"}, "requestedDate": "2026-07-10"})");
}

Json referralUpdate(const char* status, const char* byRpps = "10000000002") {
  Json update = doc(R"({
    "documentType": "referral-update", "schemaVersion": "1.0", "documentId": "ru-1",
    "referralId": "R-1", "patient": {"nir": "185057800608436"}, "date": "2026-07-12"})");
  update["by"] = {{"rpps", byRpps}};
  update["status"] = status;
  return update;
}

Json exitDoc() {
  return doc(R"({
    "documentType": "exit", "schemaVersion": "1.0", "documentId": "exit-1",
    "patient": {"nir": "185057800608436"}, "recordedBy": {"rpps": "10000000001"}, "type": "exit",
    "date": "2026-06-01", "reason": "patient-withdrawal"})");
}

Json operaEnrolment() {
  return doc(R"({
    "documentType": "opera-enrolment", "schemaVersion": "1.0", "documentId": "op-1",
    "region": "nord-pas-de-calais",
    "patient": {"nir": "145066200100133", "networkId": "OP-000010", "family": "Dubois", "given": ["Jean"],
                "sex": "male", "birthDate": "1945-06-20"},
    "pathology": "copd", "enrolmentDate": "2009-01-15", "professional": {"rpps": "10000000006"},
    "risk": {"level": "high", "date": "2009-01-15", "assessor": {"rpps": "10000000006"}}})");
}

Json operaActivity(const char* activity, int patients) {
  Json a = doc(R"({"documentType": "opera-activity", "schemaVersion": "1.0", "documentId": "oa-1",
                   "date": "2009-02-01", "professional": {"rpps": "10000000006"}})");
  a["activity"] = activity;
  a["patients"] = Json::array();
  for (int i = 0; i < patients; ++i) a["patients"].push_back({{"networkId", i % 2 == 0 ? "OP-000001" : "OP-000002"}});
  return a;
}

Json professionalDoc(const char* signatureDate) {
  Json p = doc(R"({
    "documentType": "professional", "schemaVersion": "1.0", "documentId": "pro-1",
    "professional": {"rpps": "10000000001", "family": "Leroy", "given": ["Anne"], "category": "gp", "specialty": "SM54",
                     "level": 1},
    "membership": {"status": "active"}})");
  p["membership"]["signatureDate"] = signatureDate;
  return p;
}

std::vector<Problem> check(const std::string& kind, const Json& document, const RuleContext& ctx = context(),
                           const RuleConfig& config = RuleConfig{}) {
  return checkRules(kind, document, ctx, config);
}

Json derive(const std::string& kind, const Json& document, const RuleContext& ctx = context(),
            const RuleConfig& config = RuleConfig{}) {
  return deriveValues(kind, document, ctx, config);
}

std::vector<std::string> codes(const std::vector<Problem>& problems) {
  std::vector<std::string> out;
  for (const Problem& p : problems) out.push_back(p.code);
  return out;
}

// Exactly one problem, an error, with this code and path; returns its message.
std::string onlyError(const std::vector<Problem>& problems, const std::string& code, const std::string& path) {
  EXPECT_EQ(codes(problems), std::vector<std::string>{code});
  if (problems.size() != 1) return "";
  EXPECT_EQ(problems[0].path, path);
  EXPECT_FALSE(problems[0].warning);
  return problems[0].message;
}

#define EXPECT_ACCEPTED(problems) EXPECT_EQ(codes(problems), std::vector<std::string>{})

}  // namespace

// ---------------------------------------------------------------------------------------------
// Calendar

TEST(NetworkCalendarTest, ParsesAndFormatsDates) {
  EXPECT_EQ(formatDate(d("2026-03-02")), "2026-03-02");
  EXPECT_EQ(formatDate(Date{987, 1, 5}), "0987-01-05");
  EXPECT_TRUE(parseDate("2024-02-29"));
  EXPECT_TRUE(parseDate("2000-02-29"));
}

TEST(NetworkCalendarTest, RejectsImpossibleOrMalformedDates) {
  EXPECT_FALSE(parseDate("2026-02-29"));
  EXPECT_FALSE(parseDate("1900-02-29"));
  EXPECT_FALSE(parseDate("2026-04-31"));
  EXPECT_FALSE(parseDate("2026-13-01"));
  EXPECT_FALSE(parseDate("2026-00-10"));
  EXPECT_FALSE(parseDate("2026-1-01"));
  EXPECT_FALSE(parseDate("2026-01-01T00:00"));
  EXPECT_FALSE(parseDate("0000-01-01"));
  EXPECT_FALSE(parseDate(""));
}

TEST(NetworkCalendarTest, AddMonthsClampsToTheEndOfShortMonths) {
  EXPECT_EQ(addMonths(d("2026-01-31"), 1), d("2026-02-28"));
  EXPECT_EQ(addMonths(d("2024-01-31"), 1), d("2024-02-29"));
  EXPECT_EQ(addMonths(d("2024-02-29"), 12), d("2025-02-28"));
  EXPECT_EQ(addMonths(d("2026-08-31"), 1), d("2026-09-30"));
  EXPECT_EQ(addMonths(d("2026-11-30"), 3), d("2027-02-28"));
  EXPECT_EQ(addMonths(d("2026-03-31"), -1), d("2026-02-28"));
  EXPECT_EQ(addMonths(d("2026-01-15"), -1), d("2025-12-15"));
  EXPECT_EQ(addMonths(d("2026-01-15"), -13), d("2024-12-15"));
  EXPECT_EQ(addMonths(d("2026-01-15"), 0), d("2026-01-15"));
}

TEST(NetworkCalendarTest, AddDaysCrossesMonthsYearsAndLeapDays) {
  EXPECT_EQ(addDays(d("2026-12-25"), 15), d("2027-01-09"));
  EXPECT_EQ(addDays(d("2024-02-28"), 1), d("2024-02-29"));
  EXPECT_EQ(addDays(d("2023-02-28"), 1), d("2023-03-01"));
  EXPECT_EQ(addDays(d("2026-03-01"), -1), d("2026-02-28"));
  EXPECT_EQ(daysBetween(d("2024-01-01"), d("2025-01-01")), 366);
  EXPECT_EQ(daysBetween(d("2025-01-01"), d("2024-01-01")), -366);
}

TEST(NetworkCalendarTest, CountsWholeMonthsAndYears) {
  EXPECT_EQ(wholeMonthsBetween(d("2025-12-02"), d("2026-03-01")), 2);
  EXPECT_EQ(wholeMonthsBetween(d("2025-12-02"), d("2026-03-02")), 3);
  EXPECT_EQ(wholeMonthsBetween(d("2026-01-31"), d("2026-02-27")), 0);
  EXPECT_EQ(wholeMonthsBetween(d("2026-01-31"), d("2026-02-28")), 1);
  EXPECT_EQ(wholeMonthsBetween(d("2026-03-02"), d("2026-01-01")), 0);
  EXPECT_EQ(wholeYearsBetween(d("2001-12-19"), d("2004-12-18")), 2);
  EXPECT_EQ(wholeYearsBetween(d("2001-12-19"), d("2004-12-19")), 3);
}

TEST(NetworkCalendarTest, AgeIncreasesOnTheBirthday) {
  EXPECT_EQ(ageAt(d("1960-03-02"), d("2026-03-01")), 65);
  EXPECT_EQ(ageAt(d("1960-03-02"), d("2026-03-02")), 66);
  EXPECT_EQ(ageAt(d("2000-02-29"), d("2018-02-27")), 17);
  EXPECT_EQ(ageAt(d("2000-02-29"), d("2018-02-28")), 18);
  EXPECT_EQ(ageAt(d("2000-02-29"), d("2020-02-29")), 20);
}

// ---------------------------------------------------------------------------------------------
// Inclusion

TEST(NetworkRulesTest, AcceptsValidInclusion) { EXPECT_ACCEPTED(check("inclusion", inclusion())); }

TEST(NetworkRulesTest, RefusesInclusionOfA67YearOld) {
  Json in = inclusion();
  in["patient"]["birthDate"] = "1958-06-01";
  std::string message = onlyError(check("inclusion", in), "age", "patient.birthDate");
  EXPECT_EQ(message, "the patient is 67 at inclusion (2026-03-02); the network includes patients aged 18 to 65");
}

TEST(NetworkRulesTest, AcceptsInclusionAt65) {
  Json in = inclusion();
  in["patient"]["birthDate"] = "1960-03-03";  // 66 the next day
  EXPECT_ACCEPTED(check("inclusion", in));
}

TEST(NetworkRulesTest, RefusesInclusionAt66) {
  Json in = inclusion();
  in["patient"]["birthDate"] = "1960-03-02";
  onlyError(check("inclusion", in), "age", "patient.birthDate");
}

TEST(NetworkRulesTest, AcceptsInclusionOnThe18thBirthdayAndRefusesTheDayBefore) {
  Json in = inclusion();
  in["patient"]["birthDate"] = "2008-03-02";
  EXPECT_ACCEPTED(check("inclusion", in));
  in["patient"]["birthDate"] = "2008-03-03";
  onlyError(check("inclusion", in), "age", "patient.birthDate");
}

TEST(NetworkRulesTest, RefusesSchemeThatDoesNotAdhere) {
  Json in = inclusion();
  in["coverage"]["scheme"] = "msa";
  std::string message = onlyError(check("inclusion", in), "scheme-not-adhering", "coverage.scheme");
  EXPECT_NE(message.find("msa"), std::string::npos);
  RuleConfig config;
  config.adheringSchemes.push_back("msa");
  EXPECT_ACCEPTED(check("inclusion", in, context(), config));
}

TEST(NetworkRulesTest, RefusesPainOfExactlyThreeMonths) {
  Json in = inclusion();
  in["painOnsetDate"] = "2025-12-02";
  onlyError(check("inclusion", in), "duration", "painOnsetDate");
}

TEST(NetworkRulesTest, AcceptsPainOfThreeMonthsAndOneDay) {
  Json in = inclusion();
  in["painOnsetDate"] = "2025-12-01";
  EXPECT_ACCEPTED(check("inclusion", in));
}

TEST(NetworkRulesTest, RefusesPainOnsetAfterInclusion) {
  Json in = inclusion();
  in["painOnsetDate"] = "2026-03-03";
  onlyError(check("inclusion", in), "pain-onset-after-inclusion", "painOnsetDate");
}

TEST(NetworkRulesTest, RefusesEachUnmetInclusionCriterion) {
  Json in = inclusion();
  in["criteria"]["dailyPainOver3Months"]["met"] = false;
  onlyError(check("inclusion", in), "daily-pain", "criteria.dailyPainOver3Months.met");
  in = inclusion();
  in["criteria"]["resistantToStep1And2"]["met"] = false;
  onlyError(check("inclusion", in), "not-resistant", "criteria.resistantToStep1And2.met");
  in = inclusion();
  in["criteria"]["activityImpact"]["met"] = false;
  onlyError(check("inclusion", in), "no-impact", "criteria.activityImpact.met");
}

TEST(NetworkRulesTest, RefusesInclusionByAWithdrawnGp) {
  Json in = inclusion();
  in["gp"] = {{"rpps", "10000000009"}};
  std::string message = onlyError(check("inclusion", in), "gp-not-member", "gp");
  EXPECT_NE(message.find("withdrawn"), std::string::npos);
}

TEST(NetworkRulesTest, RefusesInclusionByAnUnknownGpOrANonGp) {
  Json in = inclusion();
  in["gp"] = {{"rpps", "19999999999"}};
  onlyError(check("inclusion", in), "gp-not-member", "gp");
  in["gp"] = {{"rpps", "10000000002"}};
  std::string message = onlyError(check("inclusion", in), "gp-not-member", "gp");
  EXPECT_NE(message.find("specialist"), std::string::npos);
}

TEST(NetworkRulesTest, RefusesInclusionOfAnIncludedPatient) {
  Json in = inclusion();
  in["patient"]["networkId"] = "P77-000001";
  onlyError(check("inclusion", in), "already-included", "patient");
  RuleContext ctx = context();
  ctx.patients["networkId:P77-000001"].enrolment = "ended";
  EXPECT_ACCEPTED(check("inclusion", in, ctx));
}

TEST(NetworkRulesTest, RefusesInclusionDatedInTheFuture) {
  Json in = inclusion();
  in["inclusionDate"] = "2026-06-16";
  onlyError(check("inclusion", in), "inclusion-in-future", "inclusionDate");
  in["inclusionDate"] = "2026-06-15";
  EXPECT_ACCEPTED(check("inclusion", in));
}

TEST(NetworkRulesTest, ReportsEveryInclusionProblem) {
  Json in = inclusion();
  in["patient"]["birthDate"] = "1950-01-01";
  in["coverage"]["scheme"] = "msa";
  in["criteria"]["resistantToStep1And2"]["met"] = false;
  in["gp"] = {{"rpps", "10000000009"}};
  EXPECT_EQ(codes(check("inclusion", in)),
            (std::vector<std::string>{"age", "scheme-not-adhering", "not-resistant", "gp-not-member"}));
}

TEST(NetworkRulesTest, ReportsADateThatDoesNotExist) {
  Json in = inclusion();
  in["painOnsetDate"] = "2025-02-30";
  onlyError(check("inclusion", in), "invalid-date", "painOnsetDate");
}

TEST(NetworkRulesTest, InclusionCodesCountAsExitRefusalReasons) {
  for (const char* code : {"age", "scheme-not-adhering", "duration", "not-resistant", "no-impact", "gp-not-member"})
    EXPECT_EQ(refusalReasonFor(code), code);
  EXPECT_EQ(refusalReasonFor("daily-pain"), "duration");
  EXPECT_EQ(refusalReasonFor("already-included"), "other");
}

TEST(NetworkRulesTest, PatientWithPainFor14MonthsIsNotEvaluable) {
  Json in = inclusion();
  in["painOnsetDate"] = "2025-01-02";
  Json derived = derive("inclusion", in);
  EXPECT_EQ(derived["evaluable"], false);
  EXPECT_EQ(derived["painMonths"], 14);
  EXPECT_ACCEPTED(check("inclusion", in));  // included, counted in activity
}

TEST(NetworkRulesTest, PatientWithPainFor8MonthsIsEvaluable) {
  Json in = inclusion();
  in["painOnsetDate"] = "2025-07-02";
  Json derived = derive("inclusion", in);
  EXPECT_EQ(derived.dump(), R"({"evaluable":true,"painMonths":8,"firstCsbDue":"2026-09-02"})");
}

TEST(NetworkRulesTest, EvaluableNeedsPainUnderOneYear) {
  Json in = inclusion();
  in["painOnsetDate"] = "2025-03-03";  // one day short of a year
  EXPECT_EQ(derive("inclusion", in)["evaluable"], true);
  in["painOnsetDate"] = "2025-03-02";  // exactly a year
  EXPECT_EQ(derive("inclusion", in)["evaluable"], false);
  in["painOnsetDate"] = "2025-12-02";  // exactly three months
  EXPECT_EQ(derive("inclusion", in)["evaluable"], false);
}

// ---------------------------------------------------------------------------------------------
// Consent

RuleContext contextWithoutConsent() {
  RuleContext ctx = context();
  ctx.patients[kLowBackPatient].consent = "";
  ctx.patients[kLowBackPatient].consentEnd = "";
  return ctx;
}

TEST(NetworkRulesTest, AcceptsConsentSignedByAllThree) { EXPECT_ACCEPTED(check("consent", consent(), contextWithoutConsent())); }

TEST(NetworkRulesTest, RefusesConsentOfAPatientNotIncluded) {
  RuleContext ctx = contextWithoutConsent();
  ctx.patients[kLowBackPatient].enrolment = "withdrawn";
  onlyError(check("consent", consent(), ctx), "not-included", "patient");
}

TEST(NetworkRulesTest, RefusesConsentOfAnUnknownPatient) {
  Json c = consent();
  c["patient"] = {{"nir", "199999999999999"}};
  onlyError(check("consent", c), "unknown-patient", "patient");
}

TEST(NetworkRulesTest, RefusesConsentWithAnotherGp) {
  Json c = consent();
  c["gp"] = {{"rpps", "10000000007"}};
  std::string message = onlyError(check("consent", c, contextWithoutConsent()), "not-gp-correspondent", "gp");
  EXPECT_NE(message.find(kGp), std::string::npos);
}

TEST(NetworkRulesTest, RefusesConsentWithAnUnknownOrWithdrawnGp) {
  Json c = consent();
  c["gp"] = {{"rpps", "19999999999"}};
  EXPECT_EQ(codes(check("consent", c, contextWithoutConsent())),
            (std::vector<std::string>{"unknown-professional", "not-gp-correspondent"}));
  RuleContext ctx = contextWithoutConsent();
  ctx.professionals[kGp].membershipStatus = "excluded";
  onlyError(check("consent", consent(), ctx), "professional-not-member", "gp");
}

TEST(NetworkRulesTest, RefusesConsentMissingASignature) {
  Json c = consent();
  c["signatories"]["network"] = false;
  c["signatories"]["patient"] = false;
  auto problems = check("consent", c, contextWithoutConsent());
  EXPECT_EQ(codes(problems), (std::vector<std::string>{"signatories", "signatories"}));
  EXPECT_EQ(problems[0].path, "signatories.patient");
  EXPECT_EQ(problems[1].path, "signatories.network");
}

TEST(NetworkRulesTest, RefusesConsentMissingAnEngagement) {
  Json c = consent();
  c["engagements"] = {"E1", "E3"};
  std::string message = onlyError(check("consent", c, contextWithoutConsent()), "engagements", "engagements");
  EXPECT_NE(message.find("E2"), std::string::npos);
}

TEST(NetworkRulesTest, RefusesASecondActiveConsent) { onlyError(check("consent", consent()), "consent-already-active", "patient"); }

TEST(NetworkRulesTest, AcceptsANewConsentAfterExpiry) {
  RuleContext ctx = context();
  ctx.patients[kLowBackPatient].consent = "expired";
  EXPECT_ACCEPTED(check("consent", consent(), ctx));
}

TEST(NetworkRulesTest, RefusesConsentSignedInTheFuture) {
  Json c = consent();
  c["signatureDate"] = "2026-06-16";
  onlyError(check("consent", c, contextWithoutConsent()), "signature-in-future", "signatureDate");
}

TEST(NetworkRulesTest, ConsentEndsOneTermAfterSignature) {
  Json c = consent();
  c["signatureDate"] = "2024-02-29";
  EXPECT_EQ(derive("consent", c).dump(), R"({"consentEnd":"2025-02-28"})");
}

// ---------------------------------------------------------------------------------------------
// Consent renewal and withdrawal

TEST(NetworkRulesTest, AcceptsFirstRenewalAndExtendsTheTerm) {
  EXPECT_ACCEPTED(check("consent-renewal", renewal()));
  EXPECT_EQ(derive("consent-renewal", renewal()).dump(), R"({"consentEnd":"2028-01-05","renewalCount":1})");
}

TEST(NetworkRulesTest, AcceptsEarlyRenewal) {
  Json r = renewal();
  r["renewalDate"] = "2026-02-01";
  EXPECT_ACCEPTED(check("consent-renewal", r));
}

TEST(NetworkRulesTest, AcceptsSecondRenewal) {
  RuleContext ctx = context();
  ctx.patients[kLowBackPatient].consentRenewals = 1;
  EXPECT_ACCEPTED(check("consent-renewal", renewal(), ctx));
  EXPECT_EQ(derive("consent-renewal", renewal(), ctx)["renewalCount"], 2);
}

TEST(NetworkRulesTest, RefusesThirdRenewal) {
  RuleContext ctx = context();
  ctx.patients[kLowBackPatient].consentRenewals = 2;
  std::string message = onlyError(check("consent-renewal", renewal(), ctx), "consent-renewals", "renewalDate");
  EXPECT_NE(message.find("at most 2"), std::string::npos);
}

TEST(NetworkRulesTest, RefusesRenewalAfterExpiry) {
  Json r = renewal();
  r["renewalDate"] = "2027-01-06";
  RuleContext ctx = context();
  ctx.today = "2027-02-01";
  onlyError(check("consent-renewal", r, ctx), "renewal-after-expiry", "renewalDate");
  r["renewalDate"] = "2027-01-05";
  EXPECT_ACCEPTED(check("consent-renewal", r, ctx));
}

TEST(NetworkRulesTest, RefusesRenewalWithoutAnActiveConsent) {
  RuleContext ctx = context();
  ctx.patients[kLowBackPatient].consent = "withdrawn";
  onlyError(check("consent-renewal", renewal(), ctx), "no-active-consent", "patient");
}

TEST(NetworkRulesTest, RefusesRenewalByAnotherGp) {
  Json r = renewal();
  r["gp"] = {{"rpps", "10000000007"}};
  onlyError(check("consent-renewal", r), "not-gp-correspondent", "gp");
}

TEST(NetworkRulesTest, AcceptsWithdrawalAtAnyTime) { EXPECT_ACCEPTED(check("consent-withdrawal", withdrawal())); }

TEST(NetworkRulesTest, RefusesWithdrawalWithoutAnActiveConsent) {
  RuleContext ctx = context();
  ctx.patients[kLowBackPatient].consent = "withdrawn";
  onlyError(check("consent-withdrawal", withdrawal(), ctx), "no-active-consent", "patient");
}

// ---------------------------------------------------------------------------------------------
// CIED and CSB

TEST(NetworkRulesTest, AcceptsCiedAndDerivesTheGoal) {
  EXPECT_ACCEPTED(check("cied", cied()));
  EXPECT_EQ(derive("cied", cied()).dump(), R"({"goalDue":"2026-07-05","baselineVas":8})");
}

TEST(NetworkRulesTest, RefusesASecondCied) {
  Json c = cied();
  c["patient"] = {{"nir", "185057800608436"}};
  c["measures"].erase("bpi");
  c["measures"]["dallas"] = {{"dailyActivities", 40}, {"workLeisure", 35}, {"anxietyDepression", 20}, {"socialInterest", 15}};
  onlyError(check("cied", c), "cied-exists", "");
}

TEST(NetworkRulesTest, RefusesCiedWithoutThePathologyScale) {
  Json c = cied();
  c["measures"].erase("bpi");
  std::string message = onlyError(check("cied", c), "missing-scale", "measures.bpi");
  EXPECT_NE(message.find("cancer"), std::string::npos);
}

TEST(NetworkRulesTest, RefusesCiedBeforeInclusion) {
  Json c = cied();
  c["date"] = "2026-01-04";
  onlyError(check("cied", c), "date-before-inclusion", "date");
}

TEST(NetworkRulesTest, RefusesCiedWithoutActiveConsentOrInclusion) {
  RuleContext ctx = context();
  ctx.patients[kCancerPatient].consent = "draft";
  onlyError(check("cied", cied(), ctx), "consent-not-active", "patient");
  ctx.patients[kCancerPatient].consent = "active";
  ctx.patients[kCancerPatient].enrolment = "excluded";
  onlyError(check("cied", cied(), ctx), "not-included", "patient");
}

TEST(NetworkRulesTest, RefusesCiedByAnotherGp) {
  Json c = cied();
  c["gp"] = {{"rpps", "10000000007"}};
  onlyError(check("cied", c), "not-gp-correspondent", "gp");
}

TEST(NetworkRulesTest, AcceptsCsb) { EXPECT_ACCEPTED(check("csb", csb())); }

TEST(NetworkRulesTest, CsbGoalAchievedFrom8To3Point5) {
  EXPECT_EQ(derive("csb", csb()).dump(),
            R"({"baselineVas":8.0,"reductionPercent":56.3,"goalAchieved":true,"referralPrompt":false,"nextCsbDue":"2027-01-05"})");
}

TEST(NetworkRulesTest, CsbGoalAchievedAtExactly50Percent) {
  Json c = csb();
  c["measures"]["vas"]["value"] = 4;
  Json derived = derive("csb", c);
  EXPECT_EQ(derived["reductionPercent"], 50.0);
  EXPECT_EQ(derived["goalAchieved"], true);
}

TEST(NetworkRulesTest, CsbGoalMissedPromptsAReferral) {
  Json c = csb();
  c["measures"]["vas"]["value"] = 5;
  Json derived = derive("csb", c);
  EXPECT_EQ(derived["reductionPercent"], 37.5);
  EXPECT_EQ(derived["goalAchieved"], false);
  EXPECT_EQ(derived["referralPrompt"], true);
}

TEST(NetworkRulesTest, LaterCsbHasNoGoalCheck) {
  Json c = csb();
  c["semester"] = 2;
  c["date"] = "2027-01-05";
  Json derived = derive("csb", c);
  EXPECT_FALSE(derived.contains("goalAchieved"));
  EXPECT_EQ(derived["nextCsbDue"], "2027-07-05");
}

TEST(NetworkRulesTest, CsbWithoutBaselineHasNoReduction) {
  RuleContext ctx = context();
  ctx.patients[kLowBackPatient].ciedVas = 0.0;
  Json derived = derive("csb", csb(), ctx);
  EXPECT_FALSE(derived.contains("reductionPercent"));
  EXPECT_FALSE(derived.contains("goalAchieved"));
  ctx.patients[kLowBackPatient].ciedVas.reset();
  EXPECT_FALSE(derive("csb", csb(), ctx).contains("baselineVas"));
}

TEST(NetworkRulesTest, RefusesCsbBeforeTheCied) {
  RuleContext ctx = context();
  ctx.patients[kLowBackPatient].hasCied = false;
  onlyError(check("csb", csb(), ctx), "no-cied", "");
}

TEST(NetworkRulesTest, RefusesASemesterAlreadyReported) {
  RuleContext ctx = context();
  ctx.patients[kLowBackPatient].csbSemesters = {1};
  onlyError(check("csb", csb(), ctx), "csb-semester-exists", "semester");
}

TEST(NetworkRulesTest, RefusesCsbWithoutTheDallasScale) {
  Json c = csb();
  c["measures"].erase("dallas");
  onlyError(check("csb", c), "missing-scale", "measures.dallas");
}

TEST(NetworkRulesTest, WarnsOfACsbMoreThanAMonthEarly) {
  Json c = csb();
  c["date"] = "2026-06-04";  // due 2026-07-05, margin from 2026-06-05
  auto problems = check("csb", c);
  ASSERT_EQ(codes(problems), std::vector<std::string>{"csb-too-early"});
  EXPECT_TRUE(problems[0].warning);
  c["date"] = "2026-06-05";
  EXPECT_ACCEPTED(check("csb", c));
}

// ---------------------------------------------------------------------------------------------
// Liaison sheets

TEST(NetworkRulesTest, AcceptsPhysiotherapistLiaisonForLowBackPain) { EXPECT_ACCEPTED(check("liaison-sheet", liaisonStart())); }

TEST(NetworkRulesTest, RefusesNurseLiaisonForLowBackPain) {
  Json l = liaisonStart();
  l["author"] = {{"adeli", "750000001"}};
  std::string message = onlyError(check("liaison-sheet", l), "liaison-pathology", "author");
  EXPECT_EQ(message, "a nurse keeps liaison sheets for cancer patients only; the patient's pathology is low-back-pain");
}

TEST(NetworkRulesTest, AcceptsNurseLiaisonForCancerAndRefusesPhysiotherapist) {
  Json l = liaisonStart();
  l["patient"] = {{"nir", "298027500100152"}};
  l["author"] = {{"adeli", "750000001"}};
  EXPECT_ACCEPTED(check("liaison-sheet", l));
  l["author"] = {{"adeli", "750000002"}};
  onlyError(check("liaison-sheet", l), "liaison-pathology", "author");
}

TEST(NetworkRulesTest, RefusesLiaisonByAGp) {
  Json l = liaisonStart();
  l["author"] = {{"rpps", "10000000007"}};
  onlyError(check("liaison-sheet", l), "liaison-author-category", "author");
}

TEST(NetworkRulesTest, RefusesLiaisonPrescribedByAnotherGp) {
  Json l = liaisonStart();
  l["prescriber"] = {{"rpps", "10000000007"}};
  onlyError(check("liaison-sheet", l), "prescriber-not-gp-correspondent", "prescriber");
}

TEST(NetworkRulesTest, RefusesLiaisonWithoutActiveConsent) {
  RuleContext ctx = context();
  ctx.patients[kLowBackPatient].consent = "withdrawn";
  onlyError(check("liaison-sheet", liaisonStart(), ctx), "consent-not-active", "patient");
}

TEST(NetworkRulesTest, RefusesStartingASheetTwice) {
  onlyError(check("liaison-sheet", liaisonStart(), contextWithStartedSheet()), "liaison-exists", "sheetId");
}

TEST(NetworkRulesTest, AcceptsEndOfAStartedSheet) {
  EXPECT_ACCEPTED(check("liaison-sheet", liaisonEnd(), contextWithStartedSheet()));
}

TEST(NetworkRulesTest, RefusesEndOfASheetNeverStarted) {
  onlyError(check("liaison-sheet", liaisonEnd()), "liaison-not-started", "sheetId");
}

TEST(NetworkRulesTest, RefusesEndingASheetTwice) {
  RuleContext ctx = contextWithStartedSheet();
  ctx.patients[kLowBackPatient].liaisonSheets["LS-1"] = "end";
  onlyError(check("liaison-sheet", liaisonEnd(), ctx), "liaison-ended", "sheetId");
}

TEST(NetworkRulesTest, RefusesEndBySomeoneElseThanTheStartAuthor) {
  RuleContext ctx = contextWithStartedSheet();
  ctx.professionals["adeli:750000003"] = professional("physiotherapist", 1);
  Json l = liaisonEnd();
  l["author"] = {{"adeli", "750000003"}};
  onlyError(check("liaison-sheet", l, ctx), "liaison-other-author", "author");
}

TEST(NetworkRulesTest, RefusesEndBeforeStart) {
  Json l = liaisonEnd();
  l["end"]["date"] = "2026-01-31";
  onlyError(check("liaison-sheet", l, contextWithStartedSheet()), "end-before-start", "end.date");
  RuleContext ctx = contextWithStartedSheet();
  ctx.patients[kLowBackPatient].liaisonStartDates.clear();  // unknown start date: not checked
  EXPECT_ACCEPTED(check("liaison-sheet", l, ctx));
}

// ---------------------------------------------------------------------------------------------
// Referrals

TEST(NetworkRulesTest, AcceptsReferralToASpecialistDueIn15Days) {
  EXPECT_ACCEPTED(check("referral", referral()));
  EXPECT_EQ(derive("referral", referral()).dump(), R"({"dueDate":"2026-07-25"})");
}

TEST(NetworkRulesTest, ReferralToAStructureIsDueAfterItsDelay) {
  Json r = referral();
  r["to"] = {{"structure", {{"finess", "770000001"}}}};
  EXPECT_ACCEPTED(check("referral", r));
  EXPECT_EQ(derive("referral", r)["dueDate"], "2026-07-17");
  r["to"] = {{"structure", {{"finess", "930000001"}}}};
  r["toLevel"] = 3;
  EXPECT_ACCEPTED(check("referral", r));
  EXPECT_EQ(derive("referral", r)["dueDate"], "2026-07-25");  // structureReferralDays
}

TEST(NetworkRulesTest, RefusesReferralToAnUnknownStructure) {
  Json r = referral();
  r["to"] = {{"structure", {{"finess", "770099999"}}}};
  onlyError(check("referral", r), "unknown-structure", "to.structure");
}

TEST(NetworkRulesTest, RefusesReferralBetweenLevelsNotAllowed) {
  Json r = referral();
  r["from"] = {{"rpps", "10000000002"}};
  r["fromLevel"] = 2;
  onlyError(check("referral", r), "referral-levels", "toLevel");  // 2 to 2
  r["to"] = {{"professional", {{"rpps", "10000000005"}}}};
  r["toLevel"] = 3;
  EXPECT_ACCEPTED(check("referral", r));  // 2 to 3
}

TEST(NetworkRulesTest, AcceptsLevel1To1OnlyToANurseOrPhysiotherapist) {
  Json r = referral();
  r["to"] = {{"professional", {{"adeli", "750000002"}}}};
  r["toLevel"] = 1;
  r["reason"] = "paramedical-care";
  EXPECT_ACCEPTED(check("referral", r));
  r["to"] = {{"professional", {{"rpps", "10000000007"}}}};
  onlyError(check("referral", r), "referral-levels", "toLevel");
}

TEST(NetworkRulesTest, RefusesToLevelOtherThanTheRecipientsLevel) {
  Json r = referral();
  r["toLevel"] = 3;
  std::string message = onlyError(check("referral", r), "referral-levels", "toLevel");
  EXPECT_NE(message.find("level 2"), std::string::npos);
}

TEST(NetworkRulesTest, RefusesLevel1ReferralNotFromTheGpCorrespondent) {
  Json r = referral();
  r["from"] = {{"rpps", "10000000007"}};
  onlyError(check("referral", r), "referral-from", "from");
}

TEST(NetworkRulesTest, RefusesLevel2ReferralFromALevel1Professional) {
  Json r = referral();
  r["fromLevel"] = 2;
  r["to"] = {{"structure", {{"finess", "930000001"}}}};
  r["toLevel"] = 3;
  onlyError(check("referral", r), "referral-from", "from");
}

TEST(NetworkRulesTest, RefusesAnAssistantWhoIsNotACoordinator) {
  Json r = referral();
  r["assistedBy"] = {{"rpps", "10000000007"}};
  onlyError(check("referral", r), "assistant-not-coordinator", "assistedBy");
  r.erase("assistedBy");
  EXPECT_ACCEPTED(check("referral", r));
}

TEST(NetworkRulesTest, RefusesAReferralIdAlreadyUsed) {
  Json r = referral();
  r["referralId"] = "R-1";
  onlyError(check("referral", r), "referral-exists", "referralId");
}

TEST(NetworkRulesTest, RefusesReferralWithoutActiveConsent) {
  RuleContext ctx = context();
  ctx.patients[kLowBackPatient].consent = "expired";
  onlyError(check("referral", referral(), ctx), "consent-not-active", "patient");
}

TEST(NetworkRulesTest, RefusesReferralToAWithdrawnSpecialist) {
  RuleContext ctx = context();
  ctx.professionals[kSpecialist].membershipStatus = "withdrawn";
  onlyError(check("referral", referral(), ctx), "professional-not-member", "to.professional");
}

TEST(NetworkRulesTest, AcceptsTheRecipientsAnswer) {
  EXPECT_ACCEPTED(check("referral-update", referralUpdate("accepted")));
  EXPECT_ACCEPTED(check("referral-update", referralUpdate("rejected")));
}

TEST(NetworkRulesTest, RefusesUpdateOfAnUnknownReferral) {
  Json u = referralUpdate("accepted");
  u["referralId"] = "R-9";
  onlyError(check("referral-update", u), "unknown-referral", "referralId");
}

TEST(NetworkRulesTest, RefusesUpdateBySomeoneOtherThanTheRecipient) {
  onlyError(check("referral-update", referralUpdate("accepted", "10000000001")), "referral-not-recipient", "by");
}

TEST(NetworkRulesTest, FollowsTheReferralStates) {
  onlyError(check("referral-update", referralUpdate("seen")), "referral-transition", "status");
  RuleContext ctx = context();
  ctx.patients[kLowBackPatient].referrals["R-1"].status = "accepted";
  EXPECT_ACCEPTED(check("referral-update", referralUpdate("seen"), ctx));
  EXPECT_ACCEPTED(check("referral-update", referralUpdate("report-returned"), ctx));
  onlyError(check("referral-update", referralUpdate("accepted"), ctx), "referral-transition", "status");
  ctx.patients[kLowBackPatient].referrals["R-1"].status = "seen";
  EXPECT_ACCEPTED(check("referral-update", referralUpdate("report-returned"), ctx));
  ctx.patients[kLowBackPatient].referrals["R-1"].status = "rejected";
  onlyError(check("referral-update", referralUpdate("seen"), ctx), "referral-transition", "status");
  ctx.patients[kLowBackPatient].referrals["R-1"].status = "report-returned";
  onlyError(check("referral-update", referralUpdate("report-returned"), ctx), "referral-transition", "status");
}

// ---------------------------------------------------------------------------------------------
// Exit

TEST(NetworkRulesTest, AcceptsExitOfAnIncludedPatient) { EXPECT_ACCEPTED(check("exit", exitDoc())); }

TEST(NetworkRulesTest, RefusesExitOfAPatientNotIncluded) {
  RuleContext ctx = context();
  ctx.patients[kLowBackPatient].enrolment = "withdrawn";
  onlyError(check("exit", exitDoc(), ctx), "not-included", "patient");
}

TEST(NetworkRulesTest, AcceptsRefusalOfACandidateUnknownToTheStore) {
  Json e = exitDoc();
  e["type"] = "refusal";
  e["reason"] = "age";
  e["patient"] = {{"nir", "199999999999999"}};
  EXPECT_ACCEPTED(check("exit", e));
}

TEST(NetworkRulesTest, RefusesRefusalOfAnIncludedPatient) {
  Json e = exitDoc();
  e["type"] = "refusal";
  e["reason"] = "age";
  onlyError(check("exit", e), "already-included", "patient");
}

// ---------------------------------------------------------------------------------------------
// OPERA

TEST(NetworkRulesTest, AcceptsOperaEnrolment) { EXPECT_ACCEPTED(check("opera-enrolment", operaEnrolment())); }

TEST(NetworkRulesTest, HighRiskOperaPathwayHasInformationEtpTelephoneAndFourEvaluations) {
  EXPECT_EQ(derive("opera-enrolment", operaEnrolment()).dump(),
            R"({"pathway":["information","etp","telephone"],"evaluations":[)"
            R"({"milestone":"M6","due":"2009-07-15"},{"milestone":"M12","due":"2010-01-15"},)"
            R"({"milestone":"M24","due":"2011-01-15"},{"milestone":"M36","due":"2012-01-15"}]})");
  Json low = operaEnrolment();
  low["risk"]["level"] = "low";
  EXPECT_EQ(derive("opera-enrolment", low)["pathway"].dump(), R"(["information"])");
}

TEST(NetworkRulesTest, RefusesOperaEnrolmentTwice) {
  Json e = operaEnrolment();
  e["patient"]["networkId"] = "OP-000001";
  onlyError(check("opera-enrolment", e), "opera-already-enrolled", "patient");
}

TEST(NetworkRulesTest, RefusesOperaEnrolmentByANonOperaProfessional) {
  Json e = operaEnrolment();
  e["professional"] = {{"rpps", "10000000001"}};
  onlyError(check("opera-enrolment", e), "professional-not-opera", "professional");
}

TEST(NetworkRulesTest, RefusesOperaEnrolmentOutsideTheProfessionalsRegion) {
  Json e = operaEnrolment();
  e["region"] = "est";
  onlyError(check("opera-enrolment", e), "region-mismatch", "region");
  RuleContext ctx = context();
  ctx.professionals[kOperaPro].region = "";
  EXPECT_ACCEPTED(check("opera-enrolment", e, ctx));
}

TEST(NetworkRulesTest, AcceptsCollectiveSessionWith8Patients) {
  EXPECT_ACCEPTED(check("opera-activity", operaActivity("etp-collective", 8)));
}

TEST(NetworkRulesTest, RefusesCollectiveSessionWithOnePatient) {
  onlyError(check("opera-activity", operaActivity("etp-collective", 1)), "collective-needs-patients", "patients");
}

TEST(NetworkRulesTest, RefusesIndividualActivityWithTwoPatients) {
  onlyError(check("opera-activity", operaActivity("information", 2)), "single-patient", "patients");
}

TEST(NetworkRulesTest, RefusesEvaluationWithoutMilestone) {
  Json a = operaActivity("evaluation", 1);
  onlyError(check("opera-activity", a), "missing-milestone", "milestone");
  a["milestone"] = "M6";
  EXPECT_ACCEPTED(check("opera-activity", a));
}

TEST(NetworkRulesTest, RefusesActivityForAPatientNotEnrolledInOpera) {
  Json a = operaActivity("etp-collective", 2);
  a["patients"][1] = {{"nir", "185057800608436"}};
  onlyError(check("opera-activity", a), "opera-not-enrolled", "patients[1]");
  a["patients"][1] = {{"nir", "199999999999999"}};
  onlyError(check("opera-activity", a), "unknown-patient", "patients[1]");
}

TEST(NetworkRulesTest, UntrainedTelephoneActivityIsOnlyAWarning) {
  auto problems = check("opera-activity", operaActivity("telephone", 1));
  ASSERT_EQ(codes(problems), std::vector<std::string>{"untrained-activity"});
  EXPECT_TRUE(problems[0].warning);
  EXPECT_EQ(problems[0].path, "professional");
  EXPECT_NE(problems[0].message.find("telephone-follow-up"), std::string::npos);
  RuleContext ctx = context();
  ctx.professionals[kOperaPro].trainings.push_back("telephone-follow-up");
  EXPECT_ACCEPTED(check("opera-activity", operaActivity("telephone", 1), ctx));
}

// ---------------------------------------------------------------------------------------------
// Professionals, unknown references, unknown kinds

TEST(NetworkRulesTest, RefusesMembershipSignedInTheFuture) {
  onlyError(check("professional", professionalDoc("2026-06-16")), "membership-signature-in-future", "membership.signatureDate");
  EXPECT_ACCEPTED(check("professional", professionalDoc("2026-06-15")));
  EXPECT_EQ(derive("professional", professionalDoc("2026-06-15")).dump(), "{}");
}

TEST(NetworkRulesTest, ReportsEveryUnknownReference) {
  Json r = referral();
  r["patient"] = {{"nir", "199999999999999"}};
  r["from"] = {{"rpps", "19999999999"}};
  r["to"] = {{"structure", {{"finess", "770099999"}}}};
  auto problems = check("referral", r);
  EXPECT_EQ(codes(problems), (std::vector<std::string>{"unknown-patient", "unknown-professional", "unknown-structure"}));
  EXPECT_EQ(problems[1].path, "from");
}

TEST(NetworkRulesTest, ReportsAnUnknownKind) {
  EXPECT_EQ(codes(check("invoice", Json::object())), std::vector<std::string>{"unknown-kind"});
  EXPECT_ACCEPTED(check("structure", Json::object()));
}

// ---------------------------------------------------------------------------------------------
// refKey

TEST(NetworkRulesTest, KeysReferencesByTheirIdentifier) {
  EXPECT_EQ(refKey(doc(R"({"rpps":"1"})")), "rpps:1");
  EXPECT_EQ(refKey(doc(R"({"adeli":"750000001"})")), "adeli:750000001");
  EXPECT_EQ(refKey(doc(R"({"finess":"2A0000001"})")), "finess:2A0000001");
  EXPECT_EQ(refKey(doc(R"({"nir":"185057800608436"})")), "nir:185057800608436");
  EXPECT_EQ(refKey(doc(R"({"nia":"185057800608436"})")), "nia:185057800608436");
  EXPECT_EQ(refKey(doc(R"({"networkId":"P77-000001"})")), "networkId:P77-000001");
}

TEST(NetworkRulesTest, KeysAnIdentityByNirThenNiaThenNetworkId) {
  EXPECT_EQ(refKey(doc(R"({"networkId":"P77-000001","nir":"185057800608436","family":"X"})")), "nir:185057800608436");
  EXPECT_EQ(refKey(doc(R"({"networkId":"P77-000001","nia":"185057800608436"})")), "nia:185057800608436");
  EXPECT_EQ(refKey(doc(R"({"networkId":"P77-000001","family":"X"})")), "networkId:P77-000001");
}

TEST(NetworkRulesTest, KeysNothingElse) {
  EXPECT_EQ(refKey(doc(R"({"siret":"1"})")), "");
  EXPECT_EQ(refKey(doc(R"({"rpps":1})")), "");
  EXPECT_EQ(refKey(doc(R"("rpps:1")")), "");
  EXPECT_EQ(refKey(doc("null")), "");
}

// ---------------------------------------------------------------------------------------------
// Configuration

TEST(NetworkRuleConfigTest, ReadsEveryMember) {
  Json json = doc(R"({
    "minAge": 16, "maxAge": 70, "adheringSchemes": ["regime-general", "msa"], "minPainMonths": 6,
    "evaluableMaxMonths": 18, "consentTermMonths": 24, "maxConsentRenewals": 1, "csbIntervalMonths": 3,
    "goalReductionPercent": 30.5, "specialistReferralDays": 10, "structureReferralDays": 20,
    "liaisonPathology": {"nurse": "cancer"}, "requiredScale": {"migraine": "qvm"},
    "operaPathway": {"low": ["information"], "high": ["information", "telephone"]},
    "operaMilestones": [3, 6], "operaTraining": {"telephone": "telephone-follow-up"}})");
  RuleConfig config;
  std::string error;
  ASSERT_TRUE(parseRuleConfig(json, config, error)) << error;
  EXPECT_EQ(config.minAge, 16);
  EXPECT_EQ(config.maxAge, 70);
  EXPECT_EQ(config.adheringSchemes, (std::vector<std::string>{"regime-general", "msa"}));
  EXPECT_EQ(config.minPainMonths, 6);
  EXPECT_EQ(config.evaluableMaxMonths, 18);
  EXPECT_EQ(config.consentTermMonths, 24);
  EXPECT_EQ(config.maxConsentRenewals, 1);
  EXPECT_EQ(config.csbIntervalMonths, 3);
  EXPECT_DOUBLE_EQ(config.goalReductionPercent, 30.5);
  EXPECT_EQ(config.specialistReferralDays, 10);
  EXPECT_EQ(config.structureReferralDays, 20);
  EXPECT_EQ(config.liaisonPathology, (std::map<std::string, std::string>{{"nurse", "cancer"}}));
  EXPECT_EQ(config.requiredScale, (std::map<std::string, std::string>{{"migraine", "qvm"}}));
  EXPECT_EQ(config.operaPathway.size(), 2u);
  EXPECT_EQ(config.operaPathway["high"], (std::vector<std::string>{"information", "telephone"}));
  EXPECT_EQ(config.operaMilestones, (std::vector<int>{3, 6}));
  EXPECT_EQ(config.operaTraining, (std::map<std::string, std::string>{{"telephone", "telephone-follow-up"}}));
}

TEST(NetworkRuleConfigTest, AbsentMembersKeepTheirValueAndNotesAreIgnored) {
  RuleConfig config;
  std::string error;
  ASSERT_TRUE(parseRuleConfig(doc(R"({"_note": "local override", "maxAge": 66})"), config, error)) << error;
  EXPECT_EQ(config.maxAge, 66);
  EXPECT_EQ(config.minAge, 18);
  EXPECT_EQ(config.operaMilestones, (std::vector<int>{6, 12, 24, 36}));
}

TEST(NetworkRuleConfigTest, RejectsUnknownMembersAndWrongTypesWithoutChangingAnything) {
  RuleConfig config;
  std::string error;
  EXPECT_FALSE(parseRuleConfig(doc(R"({"maxAge": 70, "maxAges": 70})"), config, error));
  EXPECT_NE(error.find("maxAges"), std::string::npos);
  EXPECT_EQ(config.maxAge, 65);
  EXPECT_FALSE(parseRuleConfig(doc(R"({"minAge": "18"})"), config, error));
  EXPECT_NE(error.find("minAge"), std::string::npos);
  EXPECT_FALSE(parseRuleConfig(doc(R"({"operaMilestones": [6, "M12"]})"), config, error));
  EXPECT_NE(error.find("operaMilestones[1]"), std::string::npos);
  EXPECT_FALSE(parseRuleConfig(doc(R"({"operaPathway": {"high": "telephone"}})"), config, error));
  EXPECT_FALSE(parseRuleConfig(doc(R"({"goalReductionPercent": 150})"), config, error));
  EXPECT_FALSE(parseRuleConfig(doc(R"({"minAge": 70})"), config, error));
  EXPECT_NE(error.find("maxAge"), std::string::npos);
  EXPECT_FALSE(parseRuleConfig(doc("[]"), config, error));
  EXPECT_EQ(config.minAge, 18);
}

TEST(NetworkRuleConfigTest, ShippedConfigurationHoldsTheDefaults) {
  std::filesystem::path file = std::filesystem::path(__FILE__).parent_path() / "../../conf/network/rules.json";
  std::ifstream in(file);
  if (!in) GTEST_SKIP() << "no " << file;
  Json json = Json::parse(in, nullptr, false);
  ASSERT_FALSE(json.is_discarded());
  RuleConfig config;
  config.minAge = 0;
  config.operaMilestones.clear();
  std::string error;
  ASSERT_TRUE(parseRuleConfig(json, config, error)) << error;
  RuleConfig defaults;
  EXPECT_EQ(config.minAge, defaults.minAge);
  EXPECT_EQ(config.maxAge, defaults.maxAge);
  EXPECT_EQ(config.adheringSchemes, defaults.adheringSchemes);
  EXPECT_EQ(config.minPainMonths, defaults.minPainMonths);
  EXPECT_EQ(config.evaluableMaxMonths, defaults.evaluableMaxMonths);
  EXPECT_EQ(config.consentTermMonths, defaults.consentTermMonths);
  EXPECT_EQ(config.maxConsentRenewals, defaults.maxConsentRenewals);
  EXPECT_EQ(config.csbIntervalMonths, defaults.csbIntervalMonths);
  EXPECT_EQ(config.goalReductionPercent, defaults.goalReductionPercent);
  EXPECT_EQ(config.specialistReferralDays, defaults.specialistReferralDays);
  EXPECT_EQ(config.structureReferralDays, defaults.structureReferralDays);
  EXPECT_EQ(config.liaisonPathology, defaults.liaisonPathology);
  EXPECT_EQ(config.requiredScale, defaults.requiredScale);
  EXPECT_EQ(config.operaPathway, defaults.operaPathway);
  EXPECT_EQ(config.operaMilestones, defaults.operaMilestones);
  EXPECT_EQ(config.operaTraining, defaults.operaTraining);
  EXPECT_EQ(json.size(), 16u) << "every member is in the shipped file";
}

namespace passerelle::network {
namespace {

TEST(NetworkRulesStructureTest, AProfessionalOfTheRecipientStructureMayAnswerAReferral) {
  RuleContext ctx;
  ctx.today = "2026-11-23";
  ProfessionalState pro;
  pro.known = true;
  pro.category = "pain-expert";
  pro.level = 3;
  pro.membershipStatus = "active";
  pro.structureKey = "finess:930110036";
  ctx.professionals["rpps:10000000001"] = pro;
  ProfessionalState other = pro;
  other.structureKey = "finess:750000000";
  ctx.professionals["rpps:10000000002"] = other;
  PatientState p;
  p.known = true;
  p.enrolment = "active";
  p.consent = "active";
  p.referrals["REF-1"] = ReferralState{"requested", "finess:930110036"};
  ctx.patients["nir:185057512345673"] = p;
  Json doc = {{"documentType", "referral-update"}, {"schemaVersion", "1.0"}, {"documentId", "U1"}, {"referralId", "REF-1"},
              {"patient", {{"nir", "185057512345673"}}}, {"by", {{"rpps", "10000000001"}}}, {"status", "accepted"},
              {"date", "2026-11-20"}};
  auto codes = [&](const Json& d) {
    std::vector<std::string> out;
    for (const auto& p : checkRules("referral-update", d, ctx, RuleConfig{})) out.push_back(p.code);
    return out;
  };
  EXPECT_TRUE(codes(doc).empty());
  doc["by"] = {{"rpps", "10000000002"}};
  EXPECT_EQ(codes(doc), std::vector<std::string>{"referral-not-recipient"});
}

}  // namespace
}  // namespace passerelle::network
