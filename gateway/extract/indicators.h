// The indicators of the evaluation extracts: their declarations (conf/extracts/indicators.json) and
// their computation over a cohort already read from the dossier.
//
// An indicator is declared as data: what it counts (definition, population, numerator, unit,
// source), how it is computed ("compute": one of computations() below, with its parameters: the
// Observation code, the component, the questionnaire and its item, the encounter type), how it is
// stratified and how the report draws it. The computation fills one Disclosure (every count cell of
// the extract, tables of one quantity sharing their cells, so that suppression sees them together)
// and, for means and sums, the statistic each count cell decides the publication of.
//
// Semesters since inclusion: 0 is the inclusion (the CIED), n the n-th semester review (CSB) or,
// for a measure not linked to a CSB, round(months since inclusion / 6). Utilisation phases: "before"
// for a period that ends on or before the inclusion (the caisse's baseline: the 6 months before),
// "S<n>" for a period starting in the n-th semester after it. Where the caisse sent a patient's
// values for a phase (meta.source https://douleur77.fr/fhir/source/caisse), they replace the ones
// the consultation reports recorded for it.
// Stateless and thread-safe (compute() works on its arguments only).
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "gateway/common/status.h"
#include "mappings/extract/disclosure.h"

namespace passerelle::extract {

struct Indicator {
  std::string id, title, definition, population, numerator, unit, source, reference;
  std::vector<std::string> stratifiers;
  std::string kind;     // count | mean | sum
  std::string compute;  // admitted, exits, refusals, professionals, duration, score, utilisation, avoided, opera-evaluations, expenses
  bool suppress = true;
  bool evaluableOnly = false;  // only the patients of the final evaluation (Art. 12), in every extract
  // Parameters of the computation.
  std::string code;           // "system|code" of the Observation (score, utilisation, avoided)
  std::string component;      // "system|code" of the Observation's component holding the value (score)
  std::string questionnaire;  // the Questionnaire's canonical URL (score from QuestionnaireResponse)
  std::string item;           // the linkId of the group whose answers are averaged (score)
  std::string encounter;      // CIED | CSB (duration)
  // How the report draws it: line | bars | table, with the stratifiers on the x axis and as series.
  std::string chart = "table", chartX, chartSeries;
};

// The computations an indicator may name.
const std::vector<std::string>& computations();

// The indicators of `file`; errors name the indicator and the field.
Result<std::vector<Indicator>> loadIndicators(const std::string& file);

// What the extract was read from: the network's patients (D77 enrolments), their encounters and
// measures, the network's events, members, fees, and OPERA's patients and evaluations.
struct Cohort {
  struct Patient {
    std::string id, ins, birthDate, sex, pathology, inclusion, episodeStatus, episodeEnd, gp;  // gp: the careManager reference
    bool evaluable = false, consent = false;
  };
  struct Encounter {
    std::string patient, type, date, milestone;  // type: CIED | CSB | an OPERA activity; milestone: M6.. of OPERA's evaluations
    double minutes = -1;
    int semester = -1;
    std::string ref;  // "Encounter/<id>" (what a Value's encounter names)
  };
  struct Value {
    std::string patient, code, start, end, encounter, unit, source;  // code: "system|code" (or "...#component" for a component)
    double value = 0;
  };
  struct Event {  // an exit or an admission refusal
    std::string kind, reason, date;
  };
  struct Member {
    std::string who, category, start, end;
    bool active = true;
  };
  struct Fee {
    std::string code, date, category, actor, patient, keyLetter;
    double amount = 0, coefficient = 0;
  };
  struct OperaPatient {
    std::string id, pathology, region, enrolment, risk, riskDate, pathway;
  };
  std::map<std::string, Patient> patients;       // by Patient id
  std::map<std::string, Encounter> encounters;   // by "Encounter/<id>"
  std::vector<Value> values;
  std::vector<Event> events;
  std::vector<Member> members;
  std::vector<Fee> fees;
  std::map<std::string, OperaPatient> opera;     // by Patient id
};

// The day of a date or dateTime (its first 10 characters); whether it falls in [from, to]; its
// calendar semester ("2026-S1", "2026-S2"; "" when it has no month).
std::string day(const std::string& dateTime);
bool within(const std::string& date, const std::string& from, const std::string& to);
std::string calendarSemester(const std::string& date);
// The parts of a text separated by '|' ("pathology|semester", a stratum "pathology=x|semester=1").
std::vector<std::string> splitBars(const std::string& text);

// The semester since `inclusion` of `date` (both YYYY-MM-DD): round(months / 6), -1 before it or
// when a date cannot be read.
int semesterSince(const std::string& inclusion, const std::string& date);
// The utilisation phase of a period [start, end] for a patient included on `inclusion`: "before",
// "S<n>", or "" when it cannot be placed.
std::string phaseOf(const std::string& inclusion, const std::string& start, const std::string& end);

struct Computed {
  Disclosure disclosure;
  struct Statistic {
    std::string cell;  // the count cell deciding publication
    double sum = 0;
    std::int64_t n = 0;
  };
  std::map<std::string, std::vector<std::pair<std::string, Statistic>>> statistics;    // indicator -> (stratum, statistic), for means and sums
  std::map<std::string, std::vector<std::pair<std::string, std::int64_t>>> unmasked;  // indicator -> (stratum, count), not suppressed
  std::vector<std::string> pathologies;
};

// The computation fed one patient at a time, so that a cohort need not be held whole: patient()
// for each enrolled patient (each once, in any order) with its encounters (CIED, CSB) and values,
// then finish() with what is not per patient (events, members, fees, OPERA's patients and their
// milestone encounters; its patients and values are not read).
class Computation {
 public:
  Computation(const std::vector<Indicator>& indicators, const std::string& from, const std::string& until, bool evaluableOnly);
  ~Computation();
  Computation(const Computation&) = delete;
  Computation& operator=(const Computation&) = delete;
  void patient(const Cohort::Patient& p, const std::vector<Cohort::Encounter>& encounters, const std::vector<Cohort::Value>& values);
  Computed finish(const Cohort& rest, int k);

 private:
  struct State;
  std::unique_ptr<State> s_;
};

// Computes `indicators` over `cohort` for the period [from, until] (YYYY-MM-DD) and applies the
// suppression with `k`. `evaluableOnly`: the final evaluation (only evaluable patients, Art. 12).
Computed compute(const Cohort& cohort, const std::vector<Indicator>& indicators, const std::string& from, const std::string& until, bool evaluableOnly,
                 int k);

}  // namespace passerelle::extract
