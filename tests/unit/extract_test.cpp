// Evaluation extracts: pseudonyms checked against the openssl command as an independent HMAC,
// coarsened dates, the CSV, and disclosure control checked by an independent solver: for random
// linked tables, no published cell between 1 and k-1 and no masked cell that the published tables
// determine (the rank of the system over a prime field, with and without that cell's column).
#include <gtest/gtest.h>

#include <cstdio>
#include <map>
#include <random>
#include <set>

#include "mappings/extract/csv.h"
#include "mappings/extract/disclosure.h"
#include "mappings/extract/pseudonym.h"

namespace passerelle::extract {
namespace {

std::string run(const std::string& command) {
  std::string out;
  FILE* p = popen(command.c_str(), "r");
  if (!p) return out;
  char buf[256];
  while (std::fgets(buf, sizeof buf, p)) out += buf;
  pclose(p);
  return out;
}

TEST(Pseudonym, IsTheHmacSha256OfTheInsAsOpensslComputesIt) {
  const std::string key = "cle-du-service-medical-77";
  std::string ours = pseudonym("1 85 05 75 123 456 73", key);
  ASSERT_EQ(ours.size(), 64u);
  std::string theirs = run("printf 185057512345673 | openssl dgst -sha256 -hmac '" + key + "'");
  EXPECT_NE(theirs.find(ours), std::string::npos) << theirs;
  // Stable under one key, unrelated under another key or another domain's key.
  EXPECT_EQ(pseudonym("185057512345673", key), ours);
  EXPECT_NE(pseudonym("185057512345673", key + "-v2"), ours);
  EXPECT_NE(pseudonym("185057512345674", key), ours);
  EXPECT_EQ(pseudonym("2A0101234567891", key), pseudonym("2a0101234567891", key));
}

TEST(Pseudonym, DatesAreCoarsened) {
  EXPECT_EQ(ageBand("1985-05-14", "2026-05-13"), "35-44");
  EXPECT_EQ(ageBand("1985-05-14", "2010-05-14"), "25-34");
  EXPECT_EQ(ageBand("1985-05-14", "2010-05-13"), "18-24");
  EXPECT_EQ(ageBand("1960-01-01", "2026-01-01"), "65+");
  EXPECT_EQ(ageBand("2010-01-01", "2026-01-01"), "<18");
  EXPECT_EQ(ageBand("1985-13-14", "2026-01-01"), "");
  EXPECT_EQ(monthOf("2026-03-02T10:15:00+01:00"), "2026-03");
  EXPECT_EQ(monthOf("2026"), "");
}

TEST(Csv, QuotesWhatNeedsItAndReadsBack) {
  CsvWriter w({"a", "b", "c"});
  EXPECT_TRUE(w.row({"1", "x;y", "il a dit \"non\""}));
  EXPECT_FALSE(w.row({"too", "few"}));
  EXPECT_EQ(w.rows(), 1u);
  EXPECT_EQ(w.text(), "a;b;c\n1;\"x;y\";\"il a dit \"\"non\"\"\"\n");
  std::vector<std::string> f;
  ASSERT_TRUE(splitCsvLine("1;\"x;y\";\"il a dit \"\"non\"\"\"", f));
  EXPECT_EQ(f, (std::vector<std::string>{"1", "x;y", "il a dit \"non\""}));
  EXPECT_FALSE(splitCsvLine("1;\"open", f));
  EXPECT_EQ(decimal(7.50), "7.5");
  EXPECT_EQ(decimal(2.0 / 3.0, 3), "0.667");
  EXPECT_EQ(decimal(-0.001), "0");
}

// ---- an independent check of the published tables -------------------------------------------

// Rank over the field of integers modulo a large prime (the coefficients are small integers).
constexpr std::int64_t kPrime = 2305843009213693951LL;  // 2^61 - 1

std::int64_t mulMod(std::int64_t a, std::int64_t b) { return static_cast<std::int64_t>((static_cast<__int128>(a) * b) % kPrime); }
std::int64_t powMod(std::int64_t a, std::int64_t e) {
  std::int64_t r = 1;
  for (a %= kPrime; e; e >>= 1, a = mulMod(a, a))
    if (e & 1) r = mulMod(r, a);
  return r;
}

int rank(std::vector<std::vector<std::int64_t>> m) {
  int r = 0;
  std::size_t cols = m.empty() ? 0 : m[0].size();
  for (std::size_t c = 0; c < cols && r < static_cast<int>(m.size()); ++c) {
    int p = -1;
    for (std::size_t i = r; i < m.size(); ++i)
      if (m[i][c] % kPrime != 0) {
        p = static_cast<int>(i);
        break;
      }
    if (p < 0) continue;
    std::swap(m[r], m[p]);
    std::int64_t inv = powMod((m[r][c] % kPrime + kPrime) % kPrime, kPrime - 2);
    for (auto& x : m[r]) x = mulMod((x % kPrime + kPrime) % kPrime, inv);
    for (std::size_t i = 0; i < m.size(); ++i) {
      if (static_cast<int>(i) == r || m[i][c] % kPrime == 0) continue;
      std::int64_t f = (m[i][c] % kPrime + kPrime) % kPrime;
      for (std::size_t k = 0; k < cols; ++k) m[i][k] = ((m[i][k] - mulMod(f, m[r][k])) % kPrime + kPrime) % kPrime;
    }
    ++r;
  }
  return r;
}

// What an attacker holds: the published tables (by cell id, masked or not) and their relations,
// written here from the tables' shape rather than taken from the engine.
struct Published {
  std::map<std::string, std::int64_t> value;  // published cells
  std::set<std::string> masked;
  std::vector<std::pair<std::string, std::vector<std::string>>> sums;
};

// The masked cells the published tables determine: x is determined when removing its column lowers
// the rank of the system over the masked cells.
std::vector<std::string> recoverable(const Published& p) {
  std::vector<std::string> unknown(p.masked.begin(), p.masked.end());
  std::map<std::string, std::size_t> col;
  for (std::size_t i = 0; i < unknown.size(); ++i) col[unknown[i]] = i;
  std::vector<std::vector<std::int64_t>> a;
  for (const auto& [total, parts] : p.sums) {
    std::vector<std::int64_t> row(unknown.size(), 0);
    if (col.count(total)) row[col[total]] -= 1;
    for (const auto& x : parts)
      if (col.count(x)) row[col[x]] += 1;
    a.push_back(row);
  }
  int full = rank(a);
  std::vector<std::string> out;
  for (std::size_t v = 0; v < unknown.size(); ++v) {
    auto b = a;
    for (auto& row : b) row.erase(row.begin() + static_cast<long>(v));
    if (rank(b) < full) out.push_back(unknown[v]);
  }
  return out;
}

void addTable(Published& p, const std::string& measure, const std::string& dA, const std::vector<std::string>& a, const std::string& dB,
              const std::vector<std::string>& b) {
  auto inner = [&](const std::string& x, const std::string& y) {
    return dA < dB ? measure + "|" + dA + "=" + x + "|" + dB + "=" + y : measure + "|" + dB + "=" + y + "|" + dA + "=" + x;
  };
  std::vector<std::string> rows, cols;
  for (const auto& x : a) {
    std::vector<std::string> parts;
    for (const auto& y : b) parts.push_back(inner(x, y));
    rows.push_back(measure + "|" + dA + "=" + x);
    p.sums.push_back({rows.back(), parts});
  }
  for (const auto& y : b) {
    std::vector<std::string> parts;
    for (const auto& x : a) parts.push_back(inner(x, y));
    cols.push_back(measure + "|" + dB + "=" + y);
    p.sums.push_back({cols.back(), parts});
  }
  p.sums.push_back({measure, rows});
  p.sums.push_back({measure, cols});
}

TEST(Disclosure, ASmallCellIsMaskedWithComplementsThatKeepItHidden) {
  Disclosure d;
  d.table("admitted", "pathology", {"cancer", "low-back-pain"}, "sex", {"female", "male"}, {{3, 40}, {25, 31}});
  ASSERT_TRUE(d.suppress(10));
  EXPECT_TRUE(d.find("admitted|pathology=cancer|sex=female")->masked);
  EXPECT_TRUE(d.find("admitted|pathology=cancer|sex=female")->primary);
  int masked = 0;
  for (const auto& c : d.cells()) masked += c.masked;
  EXPECT_EQ(masked, 4);  // the small cell, one more in its row and column, and the one closing the square
  EXPECT_TRUE(d.determined().empty());
  EXPECT_FALSE(d.find("admitted")->masked);
}

TEST(Disclosure, KBelowFiveIsRefused) {
  Disclosure d;
  d.table("admitted", "pathology", {"cancer", "migraine"}, {3, 40});
  EXPECT_FALSE(d.suppress(4));
  for (const auto& c : d.cells()) EXPECT_FALSE(c.masked);
  EXPECT_TRUE(d.suppress(5));
}

TEST(Disclosure, RandomLinkedTablesPublishNoSmallCellAndNoRecoverableOne) {
  std::mt19937 rng(20261206);
  int totalMasked = 0, tablesChecked = 0;
  for (int round = 0; round < 60; ++round) {
    int k = 5 + static_cast<int>(rng() % 8);
    std::vector<std::string> pathologies = {"cancer", "low-back-pain", "migraine"};
    std::vector<std::string> semesters, sexes = {"female", "male"}, bands = {"18-24", "25-34", "35-44", "45-54", "55-64"};
    int ns = 2 + static_cast<int>(rng() % 5);
    for (int s = 1; s <= ns; ++s) semesters.push_back(std::to_string(s));
    auto draw = [&](std::size_t n, std::size_t m) {
      std::vector<std::vector<std::int64_t>> c(n, std::vector<std::int64_t>(m));
      for (auto& row : c)
        for (auto& x : row) x = (rng() % 4 == 0) ? static_cast<std::int64_t>(rng() % k) : static_cast<std::int64_t>(rng() % 60);
      return c;
    };
    // Two tables of one measure share the pathology margin and the grand total; a third of another
    // measure stands alone.
    auto t1 = draw(pathologies.size(), semesters.size());
    auto t3 = draw(pathologies.size(), bands.size());
    // The second table must agree with the first on the pathology margin: split each row total.
    std::vector<std::vector<std::int64_t>> t2(pathologies.size(), std::vector<std::int64_t>(2));
    for (std::size_t i = 0; i < pathologies.size(); ++i) {
      std::int64_t sum = 0;
      for (auto x : t1[i]) sum += x;
      t2[i][0] = sum ? static_cast<std::int64_t>(rng() % (sum + 1)) : 0;
      t2[i][1] = sum - t2[i][0];
    }
    Disclosure d;
    d.table("admitted", "pathology", pathologies, "semester", semesters, t1);
    d.table("admitted", "pathology", pathologies, "sex", sexes, t2);
    d.table("exits", "pathology", pathologies, "age", bands, t3);
    ASSERT_TRUE(d.suppress(k));
    Published p;
    for (const auto& c : d.cells()) {
      if (c.masked) p.masked.insert(c.id);
      else p.value[c.id] = c.count;
      if (!c.masked) EXPECT_FALSE(c.count >= 1 && c.count < k) << c.id << " = " << c.count << " published with k = " << k;
      totalMasked += c.masked;
    }
    addTable(p, "admitted", "pathology", pathologies, "semester", semesters);
    addTable(p, "admitted", "pathology", pathologies, "sex", sexes);
    addTable(p, "exits", "pathology", pathologies, "age", bands);
    auto exposed = recoverable(p);
    EXPECT_TRUE(exposed.empty()) << "round " << round << ": " << exposed.size() << " masked cell(s) recoverable, first " << exposed[0];
    tablesChecked += 3;
  }
  EXPECT_GT(totalMasked, 100);  // the rounds did exercise the suppression
  std::cout << "[ disclosure ] " << tablesChecked << " tables, " << totalMasked << " cells masked, none recoverable\n";
}

}  // namespace
}  // namespace passerelle::extract
