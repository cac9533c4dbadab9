// Disclosure control (see disclosure.h).
#include "mappings/extract/disclosure.h"

#include <algorithm>
#include <cmath>
#include <tuple>

namespace passerelle::extract {

int Disclosure::cell(const std::string& id, std::int64_t count) {
  auto it = index_.find(id);
  if (it != index_.end()) return it->second;
  int i = static_cast<int>(cells_.size());
  cells_.push_back({id, count});
  relationsOf_.emplace_back();
  index_.emplace(id, i);
  return i;
}

void Disclosure::relation(int total, std::vector<int> parts) {
  int r = static_cast<int>(relations_.size());
  cells_[total].total = true;
  relationsOf_[total].push_back(r);
  for (int p : parts) relationsOf_[p].push_back(r);
  relations_.emplace_back(total, std::move(parts));
}

void Disclosure::table(const std::string& measure, const std::string& dimA, const std::vector<std::string>& a, const std::string& dimB,
                       const std::vector<std::string>& b, const std::vector<std::vector<std::int64_t>>& counts) {
  auto name = [&](const std::string& x, const std::string& y) {
    // Dimensions in name order, so that two tables of the same measure name a cell alike.
    std::string first = dimA + "=" + x, second = dimB + "=" + y;
    if (dimB < dimA) std::swap(first, second);
    return measure + "|" + first + "|" + second;
  };
  std::vector<std::int64_t> rowSum(a.size(), 0), colSum(b.size(), 0);
  std::int64_t all = 0;
  for (std::size_t i = 0; i < a.size(); ++i)
    for (std::size_t j = 0; j < b.size(); ++j) {
      rowSum[i] += counts[i][j];
      colSum[j] += counts[i][j];
      all += counts[i][j];
    }
  std::vector<std::vector<int>> inner(a.size(), std::vector<int>(b.size()));
  for (std::size_t i = 0; i < a.size(); ++i)
    for (std::size_t j = 0; j < b.size(); ++j) inner[i][j] = cell(name(a[i], b[j]), counts[i][j]);
  std::vector<int> rows, cols;
  for (std::size_t i = 0; i < a.size(); ++i) rows.push_back(cell(measure + "|" + dimA + "=" + a[i], rowSum[i]));
  for (std::size_t j = 0; j < b.size(); ++j) cols.push_back(cell(measure + "|" + dimB + "=" + b[j], colSum[j]));
  int grand = cell(measure, all);
  for (std::size_t i = 0; i < a.size(); ++i) relation(rows[i], inner[i]);
  for (std::size_t j = 0; j < b.size(); ++j) {
    std::vector<int> column;
    for (std::size_t i = 0; i < a.size(); ++i) column.push_back(inner[i][j]);
    relation(cols[j], column);
  }
  relation(grand, rows);
  relation(grand, cols);
}

void Disclosure::table(const std::string& measure, const std::string& dim, const std::vector<std::string>& values,
                       const std::vector<std::int64_t>& counts) {
  std::vector<int> parts;
  std::int64_t all = 0;
  for (std::size_t i = 0; i < values.size(); ++i) {
    parts.push_back(cell(measure + "|" + dim + "=" + values[i], counts[i]));
    all += counts[i];
  }
  relation(cell(measure, all), parts);
}

const Disclosure::Cell* Disclosure::find(const std::string& id) const {
  auto it = index_.find(id);
  return it == index_.end() ? nullptr : &cells_[it->second];
}

std::vector<int> Disclosure::determined() const {
  // Unknowns: the masked cells. Each relation is a row: +1 for a masked part, -1 for a masked total
  // (the published cells go to the right-hand side, which does not matter for determinacy). In the
  // reduced row echelon form, a masked cell is determined when it is a pivot whose row has no other
  // non-zero coefficient (no free unknown moves it).
  std::vector<int> unknown;
  std::vector<int> column(cells_.size(), -1);
  for (std::size_t i = 0; i < cells_.size(); ++i)
    if (cells_[i].masked) {
      column[i] = static_cast<int>(unknown.size());
      unknown.push_back(static_cast<int>(i));
    }
  const std::size_t n = unknown.size();
  if (n == 0) return {};
  std::vector<std::vector<double>> m;
  for (const auto& [total, parts] : relations_) {
    std::vector<double> row(n, 0.0);
    bool any = false;
    if (column[total] >= 0) {
      row[column[total]] -= 1;
      any = true;
    }
    for (int p : parts)
      if (column[p] >= 0) {
        row[column[p]] += 1;
        any = true;
      }
    if (any) m.push_back(std::move(row));
  }
  constexpr double eps = 1e-9;
  std::vector<int> pivotRow(n, -1);
  std::size_t r = 0;
  for (std::size_t c = 0; c < n && r < m.size(); ++c) {
    std::size_t best = r;
    for (std::size_t i = r; i < m.size(); ++i)
      if (std::fabs(m[i][c]) > std::fabs(m[best][c])) best = i;
    if (std::fabs(m[best][c]) < eps) continue;
    std::swap(m[r], m[best]);
    double pv = m[r][c];
    for (double& x : m[r]) x /= pv;
    for (std::size_t i = 0; i < m.size(); ++i) {
      if (i == r || std::fabs(m[i][c]) < eps) continue;
      double f = m[i][c];
      for (std::size_t k = 0; k < n; ++k) m[i][k] -= f * m[r][k];
    }
    pivotRow[c] = static_cast<int>(r);
    ++r;
  }
  std::vector<int> out;
  for (std::size_t c = 0; c < n; ++c) {
    if (pivotRow[c] < 0) continue;
    const auto& row = m[pivotRow[c]];
    bool alone = true;
    for (std::size_t k = 0; k < n && alone; ++k)
      if (k != c && std::fabs(row[k]) > eps) alone = false;
    if (alone) out.push_back(unknown[c]);
  }
  return out;
}

bool Disclosure::suppress(int k) {
  if (k < kMinimumK) return false;
  for (auto& c : cells_) {
    c.primary = c.count >= 1 && c.count < k;
    c.masked = c.primary;
  }
  // Each round masks one complement: the best candidate among the unmasked cells of the relations
  // of every determined cell. At worst everything ends masked.
  for (std::size_t guard = 0; guard <= cells_.size(); ++guard) {
    std::vector<int> exposed = determined();
    if (exposed.empty()) return true;
    int chosen = -1;
    std::tuple<bool, bool, std::int64_t, int> bestKey{};
    for (int cellIndex : exposed) {
      for (int r : relationsOf_[cellIndex]) {
        const auto& [total, parts] = relations_[r];
        auto consider = [&](int c) {
          if (cells_[c].masked) return;
          auto key = std::make_tuple(cells_[c].total, cells_[c].count == 0, cells_[c].count, c);
          if (chosen < 0 || key < bestKey) {
            chosen = c;
            bestKey = key;
          }
        };
        consider(total);
        for (int p : parts) consider(p);
      }
    }
    if (chosen < 0) return true;  // nothing left to mask: every cell of its relations already is
    cells_[chosen].masked = true;
  }
  return true;
}

}  // namespace passerelle::extract
