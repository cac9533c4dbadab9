// The indicators of the evaluation extracts (see indicators.h).
#include "gateway/extract/indicators.h"

#include <algorithm>
#include <fstream>
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

Computed compute(const Cohort& cohort, const std::vector<Indicator>& indicators, const std::string& from, const std::string& until, bool evaluableOnly,
                 int k) {
  Computed out;
  Disclosure& disclosure = out.disclosure;
  std::vector<std::string>& pathologies = out.pathologies;
  pathologies = {"low-back-pain", "migraine", "cancer"};
  bool unknown = false;
  for (const auto& [id, p] : cohort.patients) {
    if (p.pathology.empty()) unknown = true;
    else if (std::find(pathologies.begin(), pathologies.end(), p.pathology) == pathologies.end()) pathologies.push_back(p.pathology);
  }
  if (unknown) pathologies.push_back("unknown");
  auto pathologyOf = [&](const std::string& patient) {
    auto it = cohort.patients.find(patient);
    return it == cohort.patients.end() || it->second.pathology.empty() ? std::string("unknown") : it->second.pathology;
  };

  for (const auto& d : indicators) {
    bool onlyEvaluable = evaluableOnly || d.evaluableOnly;
    auto counted = [&](const std::string& patient) -> const Cohort::Patient* {
      auto it = cohort.patients.find(patient);
      if (it == cohort.patients.end()) return nullptr;
      if (onlyEvaluable && !it->second.evaluable) return nullptr;
      return &it->second;
    };
    auto& stats = out.statistics[d.id];

    if (d.compute == "admitted") {
      // pathology x sex, and the calendar semester of inclusion: one quantity, one total.
      std::vector<std::string> sexes = {"female", "male", "other", "unknown"};
      std::map<std::pair<std::string, std::string>, std::int64_t> bySex;
      std::map<std::string, std::int64_t> bySemester;
      for (const auto& [id, p] : cohort.patients) {
        if (!within(p.inclusion, from, until) || !counted(id)) continue;
        std::string sex = std::find(sexes.begin(), sexes.end(), p.sex) == sexes.end() ? "unknown" : p.sex;
        ++bySex[{pathologyOf(id), sex}];
        ++bySemester[calendarSemester(p.inclusion)];
      }
      table2(disclosure, d.id, "pathology", pathologies, "sex", sexes, bySex);
      table1(disclosure, d.id, "period", bySemester);
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
    } else if (d.compute == "duration") {
      std::map<std::string, std::int64_t> n;
      std::map<std::string, double> sum;
      for (const auto& [ref, e] : cohort.encounters) {
        if (e.type != d.encounter || e.minutes < 0 || !within(e.date, from, until) || !counted(e.patient)) continue;
        ++n[pathologyOf(e.patient)];
        sum[pathologyOf(e.patient)] += e.minutes;
      }
      byPathology(disclosure, d.id + "-n", pathologies, n, sum, stats);
    } else if (d.compute == "score") {
      // The mean of a measure by pathology and semester since inclusion.
      std::string key = valueKey(d);
      std::map<std::pair<std::string, std::string>, std::int64_t> n;
      std::map<std::pair<std::string, std::string>, double> sum;
      std::set<std::string> semesters;
      for (const auto& v : cohort.values) {
        if (v.code != key || !within(v.start, from, until)) continue;
        const Cohort::Patient* p = counted(v.patient);
        if (!p) continue;
        int s = -1;
        if (auto e = cohort.encounters.find(v.encounter); e != cohort.encounters.end() && (e->second.type == "CIED" || e->second.type == "CSB"))
          s = e->second.type == "CIED" ? 0 : e->second.semester;
        if (s < 0) s = semesterSince(p->inclusion, v.start);
        if (s < 0) continue;
        std::pair<std::string, std::string> cell{pathologyOf(v.patient), std::to_string(s)};
        ++n[cell];
        sum[cell] += v.value;
        semesters.insert(cell.second);
      }
      std::vector<std::string> order(semesters.begin(), semesters.end());
      if (order.empty()) order.push_back("0");
      naturalSort(order);
      std::string measure = d.id + "-n";
      table2(disclosure, measure, "pathology", pathologies, "semester", order, n);
      std::int64_t allN = 0;
      double allSum = 0;
      for (const auto& p : pathologies)
        for (const auto& s : order) {
          std::string stratum = "pathology=" + p + "|semester=" + s;
          stats.push_back({stratum, {measure + "|" + stratum, sum[{p, s}], n[{p, s}]}});
          allN += n[{p, s}];
          allSum += sum[{p, s}];
        }
      stats.push_back({"*", {measure, allSum, allN}});
    } else if (d.compute == "utilisation" || d.compute == "avoided") {
      // Per patient and phase: the sum of the periods' values (the baseline, then each semester).
      // Where the caisse sent values for a phase, they are the reference and replace what the
      // consultation reports recorded for it (the same months counted once).
      struct Sums {
        double caisse = 0, other = 0;
        bool fromCaisse = false;
      };
      std::map<std::string, std::map<std::string, Sums>> sums;  // patient -> phase -> sums
      for (const auto& v : cohort.values) {
        if (v.code != d.code) continue;
        const Cohort::Patient* p = counted(v.patient);
        if (!p || p->inclusion.empty() || day(p->inclusion) > until) continue;
        std::string phase = phaseOf(p->inclusion, v.start, v.end);
        if (phase.empty() || (phase != "before" && !within(v.start, from, until))) continue;
        Sums& x = sums[v.patient][phase];
        if (v.source == kCaisseSource) {
          x.caisse += v.value;
          x.fromCaisse = true;
        } else {
          x.other += v.value;
        }
      }
      std::map<std::string, std::map<std::string, double>> perPatient;  // patient -> phase -> sum
      for (const auto& [patient, byPhase] : sums)
        for (const auto& [phase, x] : byPhase) perPatient[patient][phase] = x.fromCaisse ? x.caisse : x.other;
      std::string measure = d.id + "-n";
      if (d.compute == "utilisation") {
        std::map<std::pair<std::string, std::string>, std::int64_t> n;
        std::map<std::pair<std::string, std::string>, double> sum;
        std::set<std::string> phases = {"before"};
        for (const auto& [patient, byPhase] : perPatient)
          for (const auto& [phase, total] : byPhase) {
            ++n[{pathologyOf(patient), phase}];
            sum[{pathologyOf(patient), phase}] += total;
            phases.insert(phase);
          }
        std::vector<std::string> order(phases.begin(), phases.end());
        phaseSort(order);
        table2(disclosure, measure, "pathology", pathologies, "phase", order, n);
        for (const auto& p : pathologies)
          for (const auto& ph : order) {
            std::string stratum = "pathology=" + p + "|phase=" + ph;
            stats.push_back({stratum, {measure + "|" + stratum, sum[{p, ph}], n[{p, ph}]}});
          }
        for (const auto& ph : order) {
          std::int64_t allN = 0;
          double allSum = 0;
          for (const auto& p : pathologies) {
            allN += n[{p, ph}];
            allSum += sum[{p, ph}];
          }
          stats.push_back({"phase=" + ph, {measure + "|phase=" + ph, allSum, allN}});
        }
      } else {
        // Avoided per semester: the baseline minus the mean of the semesters after, summed over the
        // patients who have both.
        std::map<std::string, std::int64_t> n;
        std::map<std::string, double> sum;
        for (const auto& [patient, byPhase] : perPatient) {
          auto before = byPhase.find("before");
          if (before == byPhase.end() || byPhase.size() < 2) continue;
          double after = 0;
          for (const auto& [phase, total] : byPhase)
            if (phase != "before") after += total;
          after /= static_cast<double>(byPhase.size() - 1);
          ++n[pathologyOf(patient)];
          sum[pathologyOf(patient)] += before->second - after;
        }
        byPathology(disclosure, measure, pathologies, n, sum, stats);
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
      for (const auto& x : milestones)
        if (std::find(m.begin(), m.end(), x) == m.end()) m.push_back(x);
      std::vector<std::string> r = {"low", "moderate", "high"};
      for (const auto& x : risks)
        if (std::find(r.begin(), r.end(), x) == r.end()) r.push_back(x);
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

}  // namespace passerelle::extract
