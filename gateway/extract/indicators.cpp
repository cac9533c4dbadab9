// The indicators of the evaluation extracts (see indicators.h).
#include "gateway/extract/indicators.h"

#include <algorithm>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

namespace passerelle::extract {

using Json = nlohmann::json;

namespace {

std::string str(const Json& j, const char* key) {
  if (!j.is_object()) return "";
  auto it = j.find(key);
  return it != j.end() && it->is_string() ? it->get<std::string>() : std::string();
}

std::string required(const Json& j, const char* key, const std::string& where, std::string& error) {
  std::string v = str(j, key);
  if (v.empty() && error.empty()) error = where + ": \"" + key + "\" is missing";
  return v;
}

const std::string kCaisseSource = "https://douleur77.fr/fhir/source/caisse";


bool readDate(const std::string& d, int& y, int& m, int& dd) {
  if (d.size() < 10 || d[4] != '-' || d[7] != '-') return false;
  try {
    y = std::stoi(d.substr(0, 4));
    m = std::stoi(d.substr(5, 2));
    dd = std::stoi(d.substr(8, 2));
  } catch (...) {
    return false;
  }
  return m >= 1 && m <= 12 && dd >= 1 && dd <= 31;
}

// Whole months from `a` to `b` (b's day before a's day: one month less); false when unreadable.
bool monthsBetween(const std::string& a, const std::string& b, int& months) {
  int y1, m1, d1, y2, m2, d2;
  if (!readDate(a, y1, m1, d1) || !readDate(b, y2, m2, d2)) return false;
  months = (y2 - y1) * 12 + (m2 - m1) - (d2 < d1 ? 1 : 0);
  return true;
}

// Sorted as numbers when all are, else as text.
void naturalSort(std::vector<std::string>& v) {
  bool numbers = std::all_of(v.begin(), v.end(), [](const std::string& s) {
    return !s.empty() && std::all_of(s.begin(), s.end(), [](unsigned char c) { return std::isdigit(c); });
  });
  if (numbers)
    std::sort(v.begin(), v.end(), [](const std::string& a, const std::string& b) { return std::stoll(a) < std::stoll(b); });
  else
    std::sort(v.begin(), v.end());
}

// Phases in their order: before, S1, S2, ...
void phaseSort(std::vector<std::string>& v) {
  std::sort(v.begin(), v.end(), [](const std::string& a, const std::string& b) {
    auto rank = [](const std::string& p) { return p == "before" ? -1 : p.size() > 1 ? std::atoi(p.c_str() + 1) : 0; };
    return rank(a) < rank(b);
  });
}

std::string valueKey(const Indicator& d) {
  if (!d.questionnaire.empty()) return "questionnaire:" + d.questionnaire + "#" + d.item;
  return d.component.empty() ? d.code : d.code + "#" + d.component;
}

// A two-dimension table from a map of (a, b) -> count, with every a and b present.
void table2(Disclosure& disclosure, const std::string& measure, const std::string& dimA, std::vector<std::string> a, const std::string& dimB,
            std::vector<std::string> b, const std::map<std::pair<std::string, std::string>, std::int64_t>& counts) {
  std::vector<std::vector<std::int64_t>> grid(a.size(), std::vector<std::int64_t>(b.size(), 0));
  for (std::size_t i = 0; i < a.size(); ++i)
    for (std::size_t j = 0; j < b.size(); ++j)
      if (auto it = counts.find({a[i], b[j]}); it != counts.end()) grid[i][j] = it->second;
  disclosure.table(measure, dimA, a, dimB, b, grid);
}

void table1(Disclosure& disclosure, const std::string& measure, const std::string& dim, const std::map<std::string, std::int64_t>& counts,
            std::vector<std::string> order = {}) {
  std::vector<std::string> names = order;
  for (const auto& [k, n] : counts)
    if (std::find(names.begin(), names.end(), k) == names.end()) names.push_back(k);
  std::vector<std::int64_t> values;
  for (const auto& k : names) values.push_back(counts.count(k) ? counts.at(k) : 0);
  disclosure.table(measure, dim, names, values);
}

// A statistic by pathology: its count table (with the total) and, per pathology and for all, the
// sum and count that the count cell decides the publication of.
void byPathology(Disclosure& disclosure, const std::string& measure, const std::vector<std::string>& pathologies, std::map<std::string, std::int64_t>& n,
                 std::map<std::string, double>& sum, std::vector<std::pair<std::string, Computed::Statistic>>& stats) {
  table1(disclosure, measure, "pathology", n, pathologies);
  std::int64_t allN = 0;
  double allSum = 0;
  for (const auto& p : pathologies) {
    stats.push_back({"pathology=" + p, {measure + "|pathology=" + p, sum[p], n[p]}});
    allN += n[p];
    allSum += sum[p];
  }
  stats.push_back({"*", {measure, allSum, allN}});
}

}  // namespace

std::string day(const std::string& d) { return d.substr(0, std::min<std::size_t>(10, d.size())); }

bool within(const std::string& d, const std::string& from, const std::string& to) {
  std::string x = day(d);
  return !x.empty() && x >= from && x <= to;
}

std::string calendarSemester(const std::string& date) {
  if (date.size() < 7) return "";
  return date.substr(0, 4) + (date.substr(5, 2) <= "06" ? "-S1" : "-S2");
}

std::vector<std::string> splitBars(const std::string& text) {
  std::vector<std::string> parts;
  for (std::size_t at = 0; at <= text.size();) {
    std::size_t bar = std::min(text.find('|', at), text.size());
    parts.push_back(text.substr(at, bar - at));
    at = bar + 1;
  }
  return parts;
}

const std::vector<std::string>& computations() {
  static const std::vector<std::string> all = {"admitted", "exits", "refusals", "professionals", "duration", "score",
                                               "utilisation", "avoided", "opera-evaluations", "expenses"};
  return all;
}

Result<std::vector<Indicator>> loadIndicators(const std::string& file) {
  std::ifstream in(file, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  Json j = Json::parse(ss.str(), nullptr, false);
  if (!j.is_object() || !j.contains("indicators") || !j["indicators"].is_array())
    return makeError(ErrorCode::kInvalid, file + ": an object with an \"indicators\" array is expected");
  std::vector<Indicator> out;
  std::set<std::string> ids;
  for (const auto& x : j["indicators"]) {
    std::string error, where = file + " (" + str(x, "id") + ")";
    Indicator d;
    d.id = required(x, "id", file, error);
    d.title = required(x, "title", where, error);
    d.definition = required(x, "definition", where, error);
    d.population = required(x, "population", where, error);
    d.numerator = required(x, "numerator", where, error);
    d.unit = required(x, "unit", where, error);
    d.source = required(x, "source", where, error);
    d.compute = required(x, "compute", where, error);
    d.reference = str(x, "reference");
    d.kind = x.value("kind", "count");
    d.suppress = x.value("suppress", true);
    d.evaluableOnly = x.value("evaluableOnly", false);
    d.code = str(x, "code");
    d.component = str(x, "component");
    d.questionnaire = str(x, "questionnaire");
    d.item = str(x, "item");
    d.encounter = str(x, "encounter");
    if (auto c = x.find("chart"); c != x.end() && c->is_object()) {
      d.chart = str(*c, "type").empty() ? "table" : str(*c, "type");
      d.chartX = str(*c, "x");
      d.chartSeries = str(*c, "series");
    }
    for (const auto& s : x.value("stratifiers", Json::array()))
      if (s.is_string()) d.stratifiers.push_back(s);
    if (!error.empty()) return makeError(ErrorCode::kInvalid, error);
    if (!ids.insert(d.id).second) return makeError(ErrorCode::kInvalid, where + ": the id is used twice");
    const auto& known = computations();
    if (std::find(known.begin(), known.end(), d.compute) == known.end()) {
      std::string list;
      for (const auto& k : known) list += (list.empty() ? "" : ", ") + k;
      return makeError(ErrorCode::kInvalid, where + ": no computation \"" + d.compute + "\" (known: " + list + ")");
    }
    if (d.kind != "count" && d.kind != "mean" && d.kind != "sum") return makeError(ErrorCode::kInvalid, where + ": kind must be count, mean or sum");
    bool needsCode = d.compute == "utilisation" || d.compute == "avoided" || (d.compute == "score" && d.questionnaire.empty());
    if (needsCode && d.code.find('|') == std::string::npos)
      return makeError(ErrorCode::kInvalid, where + ": \"code\" (system|code) is required by " + d.compute);
    if (d.compute == "score" && !d.questionnaire.empty() && d.item.empty())
      return makeError(ErrorCode::kInvalid, where + ": a score from a questionnaire needs its \"item\" (the group's linkId)");
    if (d.compute == "duration" && d.encounter != "CIED" && d.encounter != "CSB")
      return makeError(ErrorCode::kInvalid, where + ": \"encounter\" must be CIED or CSB");
    if (d.chart != "table" && d.chart != "line" && d.chart != "bars") return makeError(ErrorCode::kInvalid, where + ": chart.type must be line, bars or table");
    if (d.chart != "table" && d.chartX.empty()) return makeError(ErrorCode::kInvalid, where + ": a chart needs its x stratifier (chart.x)");
    out.push_back(std::move(d));
  }
  return out;
}

int semesterSince(const std::string& inclusion, const std::string& date) {
  int months = 0;
  if (!monthsBetween(day(inclusion), day(date), months) || months < 0) return -1;
  return (months + 3) / 6;
}

std::string phaseOf(const std::string& inclusion, const std::string& start, const std::string& end) {
  std::string s = day(start), e = day(end.empty() ? start : end), inc = day(inclusion);
  if (inc.empty() || s.empty()) return "";
  if (e <= inc) return "before";
  int months = 0;
  if (!monthsBetween(inc, s < inc ? inc : s, months)) return "";
  return "S" + std::to_string(months / 6 + 1);
}

// What the per-patient computations add up, for one indicator.
struct Computation::State {
  struct Sums {
    std::map<std::pair<std::string, std::string>, std::int64_t> n2;
    std::map<std::pair<std::string, std::string>, double> sum2;
    std::map<std::string, std::int64_t> n1;
    std::map<std::string, double> sum1;
    std::set<std::string> keys;  // the semesters (score) or phases (utilisation) seen
  };
  std::vector<Indicator> indicators;
  std::vector<std::string> keys;  // valueKey() of each indicator
  std::string from, until;
  bool evaluableOnly = false;
  std::vector<Sums> sums;                 // by indicator
  std::vector<std::string> pathologies = {"low-back-pain", "migraine", "cancer"};
  bool unknown = false;
  std::vector<const Cohort::Value*> byCode;  // a patient's values ordered by code (reused)
};

Computation::Computation(const std::vector<Indicator>& indicators, const std::string& from, const std::string& until, bool evaluableOnly)
    : s_(std::make_unique<State>()) {
  s_->indicators = indicators;
  for (const auto& d : indicators) s_->keys.push_back(valueKey(d));
  s_->from = from;
  s_->until = until;
  s_->evaluableOnly = evaluableOnly;
  s_->sums.resize(indicators.size());
  for (std::size_t i = 0; i < indicators.size(); ++i)
    if (indicators[i].compute == "utilisation") s_->sums[i].keys.insert("before");
}

Computation::~Computation() = default;

void Computation::patient(const Cohort::Patient& p, const std::vector<Cohort::Encounter>& encounters, const std::vector<Cohort::Value>& values) {
  State& s = *s_;
  if (p.pathology.empty()) s.unknown = true;
  else if (std::find(s.pathologies.begin(), s.pathologies.end(), p.pathology) == s.pathologies.end()) s.pathologies.push_back(p.pathology);
  const std::string pathology = p.pathology.empty() ? std::string("unknown") : p.pathology;
  const std::string& from = s.from;
  const std::string& until = s.until;
  // The values of one code, in the order given: each indicator reads its own code only.
  s.byCode.clear();
  for (const auto& v : values) s.byCode.push_back(&v);
  std::stable_sort(s.byCode.begin(), s.byCode.end(), [](const Cohort::Value* a, const Cohort::Value* b) { return a->code < b->code; });
  auto valuesOf = [&](const std::string& code) {
    auto lo = std::lower_bound(s.byCode.begin(), s.byCode.end(), code, [](const Cohort::Value* v, const std::string& c) { return v->code < c; });
    auto hi = lo;
    while (hi != s.byCode.end() && (*hi)->code == code) ++hi;
    return std::make_pair(lo, hi);
  };
  for (std::size_t i = 0; i < s.indicators.size(); ++i) {
    const Indicator& d = s.indicators[i];
    if ((s.evaluableOnly || d.evaluableOnly) && !p.evaluable) continue;
    State::Sums& x = s.sums[i];
    if (d.compute == "admitted") {
      // pathology x sex, and the calendar semester of inclusion: one quantity, one total.
      if (!within(p.inclusion, from, until)) continue;
      static const std::vector<std::string> sexes = {"female", "male", "other", "unknown"};
      std::string sex = std::find(sexes.begin(), sexes.end(), p.sex) == sexes.end() ? "unknown" : p.sex;
      ++x.n2[{pathology, sex}];
      ++x.n1[calendarSemester(p.inclusion)];
    } else if (d.compute == "duration") {
      for (const auto& e : encounters) {
        if (e.type != d.encounter || e.minutes < 0 || !within(e.date, from, until)) continue;
        ++x.n1[pathology];
        x.sum1[pathology] += e.minutes;
      }
    } else if (d.compute == "score") {
      // The mean of a measure by pathology and semester since inclusion.
      auto [first, last] = valuesOf(s.keys[i]);
      for (auto it = first; it != last; ++it) {
        const Cohort::Value& v = **it;
        if (!within(v.start, from, until)) continue;
        int semester = -1;
        if (!v.encounter.empty())
          for (const auto& e : encounters)
            if (e.ref == v.encounter && (e.type == "CIED" || e.type == "CSB")) semester = e.type == "CIED" ? 0 : e.semester;
        if (semester < 0) semester = semesterSince(p.inclusion, v.start);
        if (semester < 0) continue;
        std::pair<std::string, std::string> cell{pathology, std::to_string(semester)};
        ++x.n2[cell];
        x.sum2[cell] += v.value;
        x.keys.insert(cell.second);
      }
    } else if (d.compute == "utilisation" || d.compute == "avoided") {
      // Per phase: the sum of the periods' values (the baseline, then each semester). Where the
      // caisse sent values for a phase, they are the reference and replace what the consultation
      // reports recorded for it (the same months counted once).
      if (p.inclusion.empty() || day(p.inclusion) > until) continue;
      struct Phase {
        double caisse = 0, other = 0;
        bool fromCaisse = false;
      };
      std::map<std::string, Phase> phases;
      auto [first, last] = valuesOf(d.code);
      for (auto it = first; it != last; ++it) {
        const Cohort::Value& v = **it;
        std::string phase = phaseOf(p.inclusion, v.start, v.end);
        if (phase.empty() || (phase != "before" && !within(v.start, from, until))) continue;
        Phase& ph = phases[phase];
        if (v.source == kCaisseSource) {
          ph.caisse += v.value;
          ph.fromCaisse = true;
        } else {
          ph.other += v.value;
        }
      }
      if (phases.empty()) continue;
      if (d.compute == "utilisation") {
        for (const auto& [phase, ph] : phases) {
          ++x.n2[{pathology, phase}];
          x.sum2[{pathology, phase}] += ph.fromCaisse ? ph.caisse : ph.other;
          x.keys.insert(phase);
        }
      } else {
        // Avoided: the baseline minus the mean of the semesters after, for a patient who has both.
        auto before = phases.find("before");
        if (before == phases.end() || phases.size() < 2) continue;
        double after = 0;
        for (const auto& [phase, ph] : phases)
          if (phase != "before") after += ph.fromCaisse ? ph.caisse : ph.other;
        after /= static_cast<double>(phases.size() - 1);
        ++x.n1[pathology];
        x.sum1[pathology] += (before->second.fromCaisse ? before->second.caisse : before->second.other) - after;
      }
    }
  }
}

Computed Computation::finish(const Cohort& cohort, int k) {
  State& s = *s_;
  Computed out;
  Disclosure& disclosure = out.disclosure;
  out.pathologies = s.pathologies;
  if (s.unknown) out.pathologies.push_back("unknown");
  const std::vector<std::string>& pathologies = out.pathologies;
  const std::string& from = s.from;
  const std::string& until = s.until;
  for (std::size_t i = 0; i < s.indicators.size(); ++i) {
    const Indicator& d = s.indicators[i];
    State::Sums& x = s.sums[i];
    auto& stats = out.statistics[d.id];
    if (d.compute == "admitted") {
      table2(disclosure, d.id, "pathology", pathologies, "sex", {"female", "male", "other", "unknown"}, x.n2);
      table1(disclosure, d.id, "period", x.n1);
    } else if (d.compute == "exits" || d.compute == "refusals") {
      std::string kind = d.compute == "exits" ? "exit" : "refusal";
      std::map<std::string, std::int64_t> byReason, bySemester;
      for (const auto& e : cohort.events) {
        if (e.kind != kind || !within(e.date, from, until)) continue;
        ++byReason[e.reason.empty() ? "unknown" : e.reason];
        ++bySemester[calendarSemester(e.date)];
      }
      table1(disclosure, d.id, "reason", byReason);
      if (kind == "exit") table1(disclosure, d.id, "period", bySemester);
    } else if (d.compute == "professionals") {
      std::map<std::string, std::set<std::string>> byCategory;
      for (const auto& m : cohort.members) {
        if (!m.active) continue;
        if (!m.start.empty() && day(m.start) > until) continue;
        if (!m.end.empty() && day(m.end) < from) continue;
        byCategory[m.category.empty() ? "unknown" : m.category].insert(m.who);
      }
      for (const auto& [c, who] : byCategory) out.unmasked[d.id].emplace_back("category=" + c, static_cast<std::int64_t>(who.size()));
    } else if (d.compute == "duration" || d.compute == "avoided") {
      byPathology(disclosure, d.id + "-n", pathologies, x.n1, x.sum1, stats);
    } else if (d.compute == "score") {
      std::vector<std::string> order(x.keys.begin(), x.keys.end());
      if (order.empty()) order.push_back("0");
      naturalSort(order);
      std::string measure = d.id + "-n";
      table2(disclosure, measure, "pathology", pathologies, "semester", order, x.n2);
      std::int64_t allN = 0;
      double allSum = 0;
      for (const auto& p : pathologies)
        for (const auto& sem : order) {
          std::string stratum = "pathology=" + p + "|semester=" + sem;
          stats.push_back({stratum, {measure + "|" + stratum, x.sum2[{p, sem}], x.n2[{p, sem}]}});
          allN += x.n2[{p, sem}];
          allSum += x.sum2[{p, sem}];
        }
      stats.push_back({"*", {measure, allSum, allN}});
    } else if (d.compute == "utilisation") {
      std::vector<std::string> order(x.keys.begin(), x.keys.end());
      phaseSort(order);
      std::string measure = d.id + "-n";
      table2(disclosure, measure, "pathology", pathologies, "phase", order, x.n2);
      for (const auto& p : pathologies)
        for (const auto& ph : order) {
          std::string stratum = "pathology=" + p + "|phase=" + ph;
          stats.push_back({stratum, {measure + "|" + stratum, x.sum2[{p, ph}], x.n2[{p, ph}]}});
        }
      for (const auto& ph : order) {
        std::int64_t allN = 0;
        double allSum = 0;
        for (const auto& p : pathologies) {
          allN += x.n2[{p, ph}];
          allSum += x.sum2[{p, ph}];
        }
        stats.push_back({"phase=" + ph, {measure + "|phase=" + ph, allSum, allN}});
      }
    } else if (d.compute == "opera-evaluations") {
      // Patients evaluated at each milestone, by risk level and by pathway (one quantity: the
      // milestones' margins and the total are shared by both tables).
      std::set<std::pair<std::string, std::string>> seen;
      std::map<std::pair<std::string, std::string>, std::int64_t> byRisk, byPathway;
      std::set<std::string> milestones, risks, pathways;
      for (const auto& [ref, e] : cohort.encounters) {
        if (e.milestone.empty() || !within(e.date, from, until)) continue;
        auto o = cohort.opera.find(e.patient);
        if (o == cohort.opera.end() || !seen.insert({e.patient, e.milestone}).second) continue;
        std::string risk = o->second.risk.empty() ? "unknown" : o->second.risk, pathway = o->second.pathway.empty() ? "unknown" : o->second.pathway;
        ++byRisk[{e.milestone, risk}];
        ++byPathway[{e.milestone, pathway}];
        milestones.insert(e.milestone);
        risks.insert(risk);
        pathways.insert(pathway);
      }
      std::vector<std::string> m = {"M6", "M12", "M24", "M36"};
      for (const auto& y : milestones)
        if (std::find(m.begin(), m.end(), y) == m.end()) m.push_back(y);
      std::vector<std::string> r = {"low", "moderate", "high"};
      for (const auto& y : risks)
        if (std::find(r.begin(), r.end(), y) == r.end()) r.push_back(y);
      table2(disclosure, d.id, "milestone", m, "risk", r, byRisk);
      if (!pathways.empty()) table2(disclosure, d.id, "milestone", m, "pathway", std::vector<std::string>(pathways.begin(), pathways.end()), byPathway);
    } else if (d.compute == "expenses") {
      // The fees of the period by nature: the number of fee rows decides publication of their sum.
      std::map<std::string, std::int64_t> n;
      std::map<std::string, double> sum;
      for (const auto& f : cohort.fees) {
        if (!within(f.date, from, until)) continue;
        ++n[f.code];
        sum[f.code] += f.amount;
      }
      std::string measure = d.id + "-n";
      table1(disclosure, measure, "fee", n);
      std::int64_t allN = 0;
      double allSum = 0;
      for (const auto& [code, count] : n) {
        stats.push_back({"fee=" + code, {measure + "|fee=" + code, sum[code], count}});
        allN += count;
        allSum += sum[code];
      }
      stats.push_back({"*", {measure, allSum, allN}});
    }
  }
  disclosure.suppress(k);
  return out;
}

Computed compute(const Cohort& cohort, const std::vector<Indicator>& indicators, const std::string& from, const std::string& until, bool evaluableOnly,
                 int k) {
  // Each patient with its encounters and values, in the order the cohort holds them.
  std::map<std::string, std::vector<Cohort::Encounter>> encounters;
  std::map<std::string, std::vector<Cohort::Value>> values;
  for (const auto& [ref, e] : cohort.encounters) {
    Cohort::Encounter x = e;
    x.ref = ref;
    encounters[e.patient].push_back(std::move(x));
  }
  for (const auto& v : cohort.values) values[v.patient].push_back(v);
  Computation c(indicators, from, until, evaluableOnly);
  static const std::vector<Cohort::Encounter> noEncounters;
  static const std::vector<Cohort::Value> noValues;
  for (const auto& [id, p] : cohort.patients) {
    auto e = encounters.find(id);
    auto v = values.find(id);
    c.patient(p, e == encounters.end() ? noEncounters : e->second, v == values.end() ? noValues : v->second);
  }
  return c.finish(cohort, k);
}

}  // namespace passerelle::extract
