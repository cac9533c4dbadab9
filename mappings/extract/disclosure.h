// Disclosure control of the aggregates of an extract: small cells and secondary suppression.
//
// An extract publishes counts (and sums) in cells, some of which are totals of others: a table's
// margins, and the same margin shared by two tables of one extract. Each cell has an id naming the
// quantity it counts (a measure and the values of its dimensions); two tables that count the same
// quantity use the same id, so the relations between all the tables of an extract form one system.
//
// Primary suppression masks the cells whose count is between 1 and k-1 (k at least 5). Secondary
// suppression then masks more cells until no masked cell is determined by the published ones: a
// masked cell is determined when the linear system of the relations (each total equal to the sum of
// its parts), with the published values known, has the same value for it in every solution. Each
// round masks one complement, chosen among the unmasked cells of the relations of the determined
// cells: a cell that is not a total before a total, a non-zero count before a zero, the smallest
// count first. This is a heuristic: it keeps masked cells hidden, not the fewest cells masked.
// Thread-safety: none inside one Disclosure; distinct objects are independent.
#pragma once

#include <cstdint>
#include <string>
#include <unordered_map>
#include <vector>

namespace passerelle::extract {

// The smallest k accepted.
constexpr int kMinimumK = 5;

class Disclosure {
 public:
  struct Cell {
    std::string id;
    std::int64_t count = 0;  // what decides primary suppression (persons counted)
    bool total = false;      // the total of some relation
    bool masked = false;
    bool primary = false;    // masked for its own count (else: masked as a complement)
  };

  // The cell `id` (created with `count` when new). Returns its index.
  int cell(const std::string& id, std::int64_t count);
  // `total` is the sum of `parts` (indices from cell()).
  void relation(int total, std::vector<int> parts);

  // A table of `measure` over two dimensions, with its margins: cells
  // "<measure>|<dimA>=<a>|<dimB>=<b>", the margins "<measure>|<dimA>=<a>", "<measure>|<dimB>=<b>"
  // and the grand total "<measure>", with their relations. counts[i][j] for rows a[i], columns b[j].
  void table(const std::string& measure, const std::string& dimA, const std::vector<std::string>& a, const std::string& dimB,
             const std::vector<std::string>& b, const std::vector<std::vector<std::int64_t>>& counts);
  // A one-dimension table with its total.
  void table(const std::string& measure, const std::string& dim, const std::vector<std::string>& values, const std::vector<std::int64_t>& counts);

  // Applies primary and secondary suppression with `k`. False (nothing masked) when k < kMinimumK.
  bool suppress(int k);

  // The indices of the masked cells that the published cells determine (empty after suppress()).
  std::vector<int> determined() const;

  const std::vector<Cell>& cells() const { return cells_; }
  const Cell* find(const std::string& id) const;
  const std::vector<std::pair<int, std::vector<int>>>& relations() const { return relations_; }

 private:
  std::vector<Cell> cells_;
  std::unordered_map<std::string, int> index_;
  std::vector<std::pair<int, std::vector<int>>> relations_;
  std::vector<std::vector<int>> relationsOf_;  // per cell, the relations it appears in
};

}  // namespace passerelle::extract
