// The extracts' indicators over a generated cohort (3,000 patients included over three years, with
// their consultations, pain scores, utilisation before and after inclusion, exits, fees and OPERA
// evaluations), each expected value computed here from how the cohort was generated, not by the
// gateway's grouping code; and the caisse's baseline file, read or refused line by line.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <map>
#include <set>

#include "gateway/extract/indicators.h"
#include "mappings/extract/baseline.h"

namespace passerelle::extract {
namespace {

const std::string kCs = "https://douleur77.fr/fhir/CodeSystem/";
const std::string kVas = "http://loinc.org|72514-3";
const std::string kSick = kCs + "d77-ind|SICK-LEAVE-DAYS";
const std::vector<std::string> kPathologies = {"low-back-pain", "migraine", "cancer"};

std::string date(int y, int m, int d) {
  char b[32];
  std::snprintf(b, sizeof b, "%04d-%02d-%02d", y, m, d);
  return b;
}

// Patient i: included on day 1..28 of month (i % 36) from January 2024, so 2024..2026; pathology
// i % 3; female when i % 5 < 2; evaluable when i % 4 != 0; a CIED lasting 50 + i % 20 minutes with
// VAS 4 + i % 5, then a CSB each semester while before 2027 (VAS going down by one each time, not
// below 0); 10 + i % 7 sick-leave days in the 6 months before inclusion, 2 + i % 3 per semester
// after; an exit for one patient in 10 (reason alternating).
struct Generated {
  Cohort cohort;
  struct Expected {
    std::string pathology, sex, inclusion;
    bool evaluable;
    double ciedMinutes;
    std::vector<std::pair<int, double>> vas;  // (semester, value, date below)
    std::vector<std::string> vasDates;
    double before;
    std::vector<std::pair<std::string, double>> after;  // (period start, days)
  };
  std::vector<Expected> patients;
};

Generated generate(int n) {
  Generated g;
  for (int i = 0; i < n; ++i) {
    int month = i % 36;
    int y = 2024 + month / 12, m = month % 12 + 1, d = 1 + i % 28;
    Generated::Expected e;
    e.pathology = kPathologies[static_cast<std::size_t>(i % 3)];
    e.sex = i % 5 < 2 ? "female" : "male";
    e.inclusion = date(y, m, d);
    e.evaluable = i % 4 != 0;
    e.ciedMinutes = 50 + i % 20;
    std::string id = "p" + std::to_string(i);
    Cohort::Patient p;
    p.id = id;
    p.ins = "1850577" + std::to_string(10000000 + i);
    p.sex = e.sex;
    p.pathology = e.pathology;
    p.inclusion = e.inclusion;
    p.evaluable = e.evaluable;
    p.consent = true;
    p.birthDate = "1980-01-01";
    g.cohort.patients[id] = p;
    // CIED and CSBs, each with a VAS.
    for (int s = 0;; ++s) {
      int mm = m - 1 + 6 * s;
      int yy = y + mm / 12;
      std::string when = date(yy, mm % 12 + 1, d);
      if (when >= "2027-01-01") break;
      std::string ref = "Encounter/" + id + "-" + std::to_string(s);
      Cohort::Encounter enc;
      enc.patient = id;
      enc.type = s == 0 ? "CIED" : "CSB";
      enc.date = when;
      enc.minutes = s == 0 ? e.ciedMinutes : 30;
      enc.semester = s == 0 ? -1 : s;
      g.cohort.encounters[ref] = enc;
      double vas = std::max(0, 4 + i % 5 - s);
      g.cohort.values.push_back({id, kVas, when, when, ref, "1", "", vas});
      e.vas.push_back({s, vas});
      e.vasDates.push_back(when);
      if (s > 0) {
        // The semester's sick leave, over the 6 months ending at this CSB.
        int sm = m - 1 + 6 * (s - 1);
        std::string start = date(y + sm / 12, sm % 12 + 1, d);
        double days = 2 + i % 3;
        g.cohort.values.push_back({id, kSick, start, when, "", "d", "", days});
        e.after.push_back({start, days});
      }
    }
    // The caisse's baseline: the 6 months before inclusion.
    int bm = m - 1 - 6;
    int by = y + (bm < 0 ? -1 : 0);
    bm = (bm + 12) % 12 + 1;
    e.before = 10 + i % 7;
    g.cohort.values.push_back({id, kSick, date(by, bm, 1), e.inclusion, "", "d", "https://douleur77.fr/fhir/source/caisse", e.before});
    if (i % 10 == 3) g.cohort.events.push_back({"exit", i % 20 == 3 ? "moved" : "deceased", date(y, m, d)});
    g.patients.push_back(e);
  }
  return g;
}

Indicator indicator(const std::string& id, const std::string& compute, const std::string& kind) {
  Indicator d;
  d.id = id;
  d.compute = compute;
  d.kind = kind;
  return d;
}

const Computed::Statistic* statistic(const Computed& c, const std::string& id, const std::string& stratum) {
  auto it = c.statistics.find(id);
  if (it == c.statistics.end()) return nullptr;
  for (const auto& [s, st] : it->second)
    if (s == stratum) return &st;
  return nullptr;
}

TEST(Indicators, EveryIndicatorOfAGeneratedCohortHasTheValueItsGenerationImplies) {
  const int n = 3000;
  Generated g = generate(n);
  std::vector<Indicator> list = {indicator("admitted", "admitted", "count"), indicator("exits", "exits", "count"),
                                 indicator("cied-duration", "duration", "mean"), indicator("vas", "score", "mean"),
                                 indicator("sick-leave", "utilisation", "mean"), indicator("sick-leave-avoided", "avoided", "sum")};
  list[2].encounter = "CIED";
  list[3].code = kVas;
  list[4].code = list[5].code = kSick;
  const std::string from = "2025-01-01", until = "2025-12-31";
  Computed c = compute(g.cohort, list, from, until, false, 10);

  // Patients admitted in 2025, by pathology and sex, and by semester.
  std::map<std::string, std::int64_t> admitted;
  std::int64_t admittedAll = 0, s1 = 0;
  for (const auto& e : g.patients)
    if (e.inclusion >= from && e.inclusion <= until) {
      ++admitted["admitted|pathology=" + e.pathology + "|sex=" + e.sex];
      ++admittedAll;
      s1 += e.inclusion < "2025-07-01";
    }
  ASSERT_EQ(admittedAll, 996);  // 12 months of the 36: 83 whole cycles of 36 patients
  for (const auto& [cell, count] : admitted) {
    const auto* x = c.disclosure.find(cell);
    ASSERT_NE(x, nullptr) << cell;
    EXPECT_EQ(x->count, count) << cell;
  }
  EXPECT_EQ(c.disclosure.find("admitted")->count, admittedAll);
  EXPECT_EQ(c.disclosure.find("admitted|period=2025-S1")->count, s1);

  // Exits of 2025 by reason.
  std::int64_t moved = 0, deceased = 0;
  for (int i = 0; i < n; ++i)
    if (i % 10 == 3 && g.patients[static_cast<std::size_t>(i)].inclusion >= from && g.patients[static_cast<std::size_t>(i)].inclusion <= until)
      (i % 20 == 3 ? moved : deceased)++;
  EXPECT_EQ(c.disclosure.find("exits|reason=moved")->count, moved);
  EXPECT_EQ(c.disclosure.find("exits|reason=deceased")->count, deceased);

  // Mean CIED duration and mean VAS by pathology and semester since inclusion, in 2025.
  for (const auto& p : kPathologies) {
    double minutes = 0, count = 0;
    std::map<int, std::pair<double, double>> vas;
    for (const auto& e : g.patients) {
      if (e.pathology != p) continue;
      if (e.inclusion >= from && e.inclusion <= until) {
        minutes += e.ciedMinutes;
        ++count;
      }
      for (std::size_t k = 0; k < e.vas.size(); ++k)
        if (e.vasDates[k] >= from && e.vasDates[k] <= until) {
          vas[e.vas[k].first].first += e.vas[k].second;
          ++vas[e.vas[k].first].second;
        }
    }
    const auto* d = statistic(c, "cied-duration", "pathology=" + p);
    ASSERT_NE(d, nullptr);
    EXPECT_EQ(d->n, static_cast<std::int64_t>(count));
    EXPECT_NEAR(d->sum / static_cast<double>(d->n), minutes / count, 1e-9) << p;
    for (const auto& [s, sn] : vas) {
      const auto* v = statistic(c, "vas", "pathology=" + p + "|semester=" + std::to_string(s));
      ASSERT_NE(v, nullptr) << p << " " << s;
      EXPECT_EQ(v->n, static_cast<std::int64_t>(sn.second)) << p << " " << s;
      EXPECT_NEAR(v->sum / static_cast<double>(v->n), sn.first / sn.second, 1e-9) << p << " " << s;
    }
  }

  // Sick leave: the baseline of the patients included by the end of 2025, the first semester after.
  for (const auto& p : kPathologies) {
    double before = 0, beforeN = 0, s1Sum = 0, s1N = 0, avoided = 0, avoidedN = 0;
    for (const auto& e : g.patients) {
      if (e.pathology != p || e.inclusion > until) continue;
      before += e.before;
      ++beforeN;
      double after = 0, afterN = 0;
      for (std::size_t k = 0; k < e.after.size(); ++k) {
        if (e.after[k].first < from || e.after[k].first > until) continue;
        after += e.after[k].second;
        ++afterN;
        if (k == 0) {
          s1Sum += e.after[k].second;
          ++s1N;
        }
      }
      if (afterN > 0) {
        avoided += e.before - after / afterN;
        ++avoidedN;
      }
    }
    const auto* b = statistic(c, "sick-leave", "pathology=" + p + "|phase=before");
    ASSERT_NE(b, nullptr);
    EXPECT_EQ(b->n, static_cast<std::int64_t>(beforeN));
    EXPECT_NEAR(b->sum, before, 1e-9);
    const auto* a = statistic(c, "sick-leave", "pathology=" + p + "|phase=S1");
    ASSERT_NE(a, nullptr);
    EXPECT_EQ(a->n, static_cast<std::int64_t>(s1N));
    EXPECT_NEAR(a->sum, s1Sum, 1e-9);
    const auto* v = statistic(c, "sick-leave-avoided", "pathology=" + p);
    ASSERT_NE(v, nullptr);
    EXPECT_EQ(v->n, static_cast<std::int64_t>(avoidedN));
    EXPECT_NEAR(v->sum, avoided, 1e-6) << p;
  }

  // Nothing published between 1 and k-1, nothing masked that the published cells determine.
  for (const auto& cell : c.disclosure.cells())
    if (!cell.masked) {
      EXPECT_TRUE(cell.count == 0 || cell.count >= 10) << cell.id << " " << cell.count;
    }
  EXPECT_TRUE(c.disclosure.determined().empty());
}

TEST(Indicators, TheFinalEvaluationCountsOnlyTheEvaluablePatients) {
  Generated g = generate(600);
  std::vector<Indicator> list = {indicator("admitted", "admitted", "count")};
  Computed activity = compute(g.cohort, list, "2024-01-01", "2026-12-31", false, 5);
  Computed final = compute(g.cohort, list, "2024-01-01", "2026-12-31", true, 5);
  std::int64_t evaluable = 0;
  for (const auto& e : g.patients) evaluable += e.evaluable;
  EXPECT_EQ(activity.disclosure.find("admitted")->count, 600);
  EXPECT_EQ(final.disclosure.find("admitted")->count, evaluable);
  EXPECT_EQ(evaluable, 450);
  // And an indicator declared for the final evaluation only, in an activity extract.
  list[0].evaluableOnly = true;
  EXPECT_EQ(compute(g.cohort, list, "2024-01-01", "2026-12-31", false, 5).disclosure.find("admitted")->count, evaluable);
}

TEST(Indicators, SmallCellsAreMaskedAndTheirComplementsToo) {
  Generated g = generate(300);
  // Three patients with cancer pain in a semester nobody else reached: a small cell.
  for (int i = 0; i < 3; ++i) {
    std::string ref = "Encounter/late-" + std::to_string(i);
    g.cohort.encounters[ref] = {"p2", "CSB", "2026-06-01", "", 30, 9, ref};
    g.cohort.values.push_back({"p2", kVas, "2026-06-01", "2026-06-01", ref, "1", "", 3});
  }
  Indicator vas = indicator("vas", "score", "mean");
  vas.code = kVas;
  Computed c = compute(g.cohort, {vas}, "2024-01-01", "2026-12-31", false, 10);
  const auto* small = c.disclosure.find("vas-n|pathology=cancer|semester=9");
  ASSERT_NE(small, nullptr);
  EXPECT_EQ(small->count, 3);
  EXPECT_TRUE(small->masked);
  EXPECT_TRUE(small->primary);
  // Its row margin would give it away: something else in that row or column is masked too.
  int complements = 0;
  for (const auto& cell : c.disclosure.cells()) complements += cell.masked && !cell.primary;
  EXPECT_GT(complements, 0);
  EXPECT_TRUE(c.disclosure.determined().empty());
}

TEST(Indicators, OperaEvaluationsByMilestoneRiskAndPathway) {
  Cohort c;
  std::map<std::pair<std::string, std::string>, int> expected;
  for (int i = 0; i < 120; ++i) {
    std::string id = "o" + std::to_string(i);
    std::string risk = i % 3 == 0 ? "low" : i % 3 == 1 ? "moderate" : "high";
    c.opera[id] = {id, "J44", "nord", "2025-01-01", risk, "2025-01-01", "OPERA-J44-" + risk};
    const char* milestones[] = {"M6", "M12", "M24", "M36"};
    for (int k = 0; k <= i % 4; ++k) {
      c.encounters["Encounter/" + id + milestones[k]] = {id, "evaluation", k < 2 ? "2025-07-01" : "2026-07-01", milestones[k], 45, -1, ""};
      ++expected[{milestones[k], risk}];
    }
    // The same milestone recorded twice counts the patient once.
    c.encounters["Encounter/" + id + "again"] = {id, "evaluation", "2025-07-02", "M6", 45, -1, ""};
  }
  Indicator d = indicator("opera", "opera-evaluations", "count");
  Computed out = compute(c, {d}, "2025-01-01", "2026-12-31", false, 5);
  for (const auto& [key, count] : expected) {
    const auto* cell = out.disclosure.find("opera|milestone=" + key.first + "|risk=" + key.second);
    ASSERT_NE(cell, nullptr) << key.first << key.second;
    EXPECT_EQ(cell->count, count) << key.first << " " << key.second;
    const auto* byPathway = out.disclosure.find("opera|milestone=" + key.first + "|pathway=OPERA-J44-" + key.second);
    ASSERT_NE(byPathway, nullptr);
    EXPECT_EQ(byPathway->count, count);
  }
  EXPECT_EQ(out.disclosure.find("opera|milestone=M6")->count, 120);
}

TEST(Indicators, ExpensesByNatureAreSummedWithTheirCountsDecidingPublication) {
  Cohort c;
  for (int i = 0; i < 40; ++i) c.fees.push_back({"CIED", "2025-03-01", "gp", "PractitionerRole/a", "Patient/x", "C", 69, 3});
  for (int i = 0; i < 2; ++i) c.fees.push_back({"LIAISON-NURSE", "2025-03-01", "nurse", "PractitionerRole/b", "Patient/y", "", 15.24, 0});
  c.fees.push_back({"CIED", "2024-12-31", "gp", "PractitionerRole/a", "Patient/x", "C", 69, 3});  // outside the period
  Indicator d = indicator("expenses", "expenses", "sum");
  Computed out = compute(c, {d}, "2025-01-01", "2025-12-31", false, 5);
  const auto* cied = statistic(out, "expenses", "fee=CIED");
  ASSERT_NE(cied, nullptr);
  EXPECT_EQ(cied->n, 40);
  EXPECT_NEAR(cied->sum, 40 * 69, 1e-9);
  EXPECT_TRUE(out.disclosure.find("expenses-n|fee=LIAISON-NURSE")->masked);
}

TEST(Indicators, SemestersAndPhasesSinceInclusion) {
  EXPECT_EQ(semesterSince("2025-03-15", "2025-03-15"), 0);
  EXPECT_EQ(semesterSince("2025-03-15", "2025-09-14"), 1);  // 5 whole months: the first CSB, a little early
  EXPECT_EQ(semesterSince("2025-03-15", "2025-05-14"), 0);
  EXPECT_EQ(semesterSince("2025-03-15", "2026-03-20"), 2);
  EXPECT_EQ(semesterSince("2025-03-15", "2025-01-01"), -1);
  EXPECT_EQ(phaseOf("2025-03-15", "2024-09-01", "2025-03-15"), "before");
  EXPECT_EQ(phaseOf("2025-03-15", "2025-03-15", "2025-09-14"), "S1");
  EXPECT_EQ(phaseOf("2025-03-15", "2025-09-15", "2026-03-14"), "S2");
  EXPECT_EQ(phaseOf("", "2025-09-15", "2026-03-14"), "");
}

// ---- the caisse's baseline file ----

std::string pseudo(char c) { return std::string(64, c); }

TEST(Baseline, AWellFormedFileIsReadWithItsMonthsAsDays) {
  std::string text = "\xEF\xBB\xBFpseudo_id;key_version;period_start;period_end;indicator;value;unit\r\n" + pseudo('a') +
                     ";2;2024-07;2024-12;SICK-LEAVE-DAYS;12;d\r\n" + pseudo('B') + ";;2024-02-29;2024-08-15;gp-consult;3.5;\r\n" + pseudo('c') +
                     ";1;2023-02;2023-02;DRUG-N02A;4;{box}\r\n";
  std::vector<BaselineRow> rows;
  std::vector<std::string> errors;
  ASSERT_TRUE(parseBaseline(text, rows, errors)) << (errors.empty() ? "" : errors[0]);
  ASSERT_EQ(rows.size(), 3u);
  EXPECT_EQ(rows[0].start, "2024-07-01");
  EXPECT_EQ(rows[0].end, "2024-12-31");
  EXPECT_EQ(rows[0].keyVersion, 2);
  EXPECT_EQ(rows[0].unit, "d");
  EXPECT_EQ(rows[1].pseudonym, pseudo('b'));
  EXPECT_EQ(rows[1].indicator, "GP-CONSULT");
  EXPECT_EQ(rows[1].keyVersion, 0);
  EXPECT_DOUBLE_EQ(rows[1].value, 3.5);
  EXPECT_EQ(rows[1].unit, "{count}");
  EXPECT_EQ(rows[2].end, "2023-02-28");
  EXPECT_EQ(rows[2].unit, "{box}");
  EXPECT_EQ(rows[2].line, 4);
}

TEST(Baseline, WrongColumnsAreNamed) {
  std::vector<BaselineRow> rows;
  std::vector<std::string> errors;
  EXPECT_FALSE(parseBaseline("pseudo_id;debut;period_end;indicator;value\n" + pseudo('a') + ";2024-01;2024-06;IMAGING;1\n", rows, errors));
  ASSERT_FALSE(errors.empty());
  EXPECT_NE(errors[0].find("unknown column \"debut\""), std::string::npos) << errors[0];
  bool missing = false;
  for (const auto& e : errors) missing |= e.find("\"period_start\" is missing") != std::string::npos;
  EXPECT_TRUE(missing);
  EXPECT_TRUE(rows.empty());
  EXPECT_FALSE(parseBaseline("pseudo_id;period_start;period_end;indicator;value;value\n", rows, errors));
  EXPECT_NE(errors[0].find("appears twice"), std::string::npos);
}

TEST(Baseline, ALatinOneFileIsRefusedAtItsFirstBadLine) {
  std::vector<BaselineRow> rows;
  std::vector<std::string> errors;
  std::string text = "pseudo_id;period_start;period_end;indicator;value;unit\n" + pseudo('a') + ";2024-01;2024-06;IMAGING;1;\n" + pseudo('a') +
                     ";2024-01;2024-06;IMAGING;1;s\xE9\x61nce\n";
  EXPECT_FALSE(parseBaseline(text, rows, errors));
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_EQ(errors[0].rfind("line 3: not UTF-8", 0), 0u) << errors[0];
}

TEST(Baseline, EveryBadLineIsReportedAndNothingIsKept) {
  std::string h = "pseudo_id;period_start;period_end;indicator;value\n";
  std::string text = h + pseudo('a') + ";2024-01;2024-06;IMAGING;1\n" +  // good
                     "abc;2024-01;2024-06;IMAGING;1\n" +                  // not a pseudonym
                     pseudo('a') + ";2024-13;2024-06;IMAGING;1\n" +       // month 13
                     pseudo('a') + ";2024-06;2024-01;IMAGING;1\n" +       // reversed
                     pseudo('a') + ";2024-01;2024-06;HAPPINESS;1\n" +     // unknown indicator
                     pseudo('a') + ";2024-01;2024-06;IMAGING;-1\n" +      // negative
                     pseudo('a') + ";2024-01;2024-06;IMAGING;1,5\n" +     // decimal comma
                     pseudo('a') + ";2024-01;2024-06;HOSP-DAYS;2;\n" +    // one field too many
                     pseudo('a') + ";2024-01;2024-06;IMAGING\n";          // one too few
  std::vector<BaselineRow> rows;
  std::vector<std::string> errors;
  EXPECT_FALSE(parseBaseline(text, rows, errors));
  EXPECT_TRUE(rows.empty());
  ASSERT_EQ(errors.size(), 8u);
  const char* expected[] = {"line 3: pseudo_id", "line 4: the period", "line 5: the period starts after", "line 6: unknown indicator",
                            "line 7: the value", "line 8: the value", "line 9: 6 fields", "line 10: 4 fields"};
  for (std::size_t i = 0; i < 8; ++i) EXPECT_EQ(errors[i].rfind(expected[i], 0), 0u) << errors[i];
  EXPECT_FALSE(parseBaseline(h + pseudo('a') + ";2024-01;2024-06;SICK-LEAVE-DAYS;2;\n", rows, errors));
  std::string days = h.substr(0, h.size() - 1) + ";unit\n" + pseudo('a') + ";2024-01;2024-06;SICK-LEAVE-DAYS;2;h\n";
  EXPECT_FALSE(parseBaseline(days, rows, errors));
  EXPECT_NE(errors[0].find("in \"d\""), std::string::npos);
  EXPECT_FALSE(parseBaseline("", rows, errors));
  EXPECT_FALSE(parseBaseline(h, rows, errors));
}

TEST(Baseline, ManyBadLinesAreCountedBeyondTheFirstTwenty) {
  std::string text = "pseudo_id;period_start;period_end;indicator;value\n";
  for (int i = 0; i < 50; ++i) text += "x;2024-01;2024-06;IMAGING;1\n";
  std::vector<BaselineRow> rows;
  std::vector<std::string> errors;
  EXPECT_FALSE(parseBaseline(text, rows, errors));
  ASSERT_EQ(errors.size(), 21u);
  EXPECT_EQ(errors.back(), "and 30 more line(s) in error");
}

TEST(Baseline, MonthsBefore) {
  EXPECT_EQ(monthsBefore("2025-03-15", 6), "2024-09-15");
  EXPECT_EQ(monthsBefore("2025-08-31", 6), "2025-02-28");
  EXPECT_EQ(monthsBefore("2024-08-31", 6), "2024-02-29");
  EXPECT_EQ(monthsBefore("2025-01-10", 1), "2024-12-10");
}

}  // namespace
}  // namespace passerelle::extract
