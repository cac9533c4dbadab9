// Search on SQLite: the store's shared search SQL (search_sql.cpp) run on a SQLite connection,
// and the index rows written with each version.
#include "gateway/store/sqlite_connection.h"

namespace passerelle::store::sqlite {
namespace {

class StatementRow : public SqlRow {
 public:
  explicit StatementRow(const Connection::Statement& st) : st_(st) {}
  int columns() const override { return st_.columns(); }
  std::int64_t i64(int col) const override { return st_.i64(col); }
  double real(int col) const override { return st_.real(col); }
  std::string text(int col) const override { return st_.text(col); }

 private:
  const Connection::Statement& st_;
};

class Runner : public SqlRunner {
 public:
  explicit Runner(Connection& c) : c_(c) {}
  const Dialect& dialect() const override { return Dialect::sqlite(); }
  Result<void> query(const std::string& sql, const std::vector<SqlValue>& binds, const std::function<void(const SqlRow&)>& row,
                     const char* what) override {
    auto st = c_.prepare(sql);
    if (!st.ok()) return st.error();
    (*st)->bindAll(binds);
    StatementRow view(**st);
    for (;;) {
      int rc = (*st)->step();
      if (rc == SQLITE_DONE) return {};
      if (rc != SQLITE_ROW) return sqlError(c_.db(), rc, what);
      row(view);
    }
  }

 private:
  Connection& c_;
};

}  // namespace

ResourceVersion rowToVersion(const Connection::Statement& st) { return store::rowToVersion(StatementRow(st)); }

Result<SearchPage> runSearch(Connection& c, const SearchQuery& q) {
  Runner r(c);
  return store::runSearch(r, q);
}

Result<std::vector<ResourceVersion>> runInclude(Connection& c, const IncludeQuery& q) {
  Runner r(c);
  return store::runInclude(r, q);
}

namespace {

Result<void> stepDone(Connection& c, Connection::Statement& st, const char* what) {
  int rc = st.step();
  if (rc != SQLITE_DONE) return sqlError(c.db(), rc, what);
  return {};
}

}  // namespace

Result<void> clearIndex(Connection& c, std::int64_t rid) {
  for (const char* sql : {"DELETE FROM search_token WHERE rid = ?", "DELETE FROM search_string WHERE rid = ?",
                          "DELETE FROM search_date WHERE rid = ?", "DELETE FROM search_number WHERE rid = ?",
                          "DELETE FROM search_reference WHERE rid = ?", "DELETE FROM search_composite WHERE rid = ?"}) {
    auto st = c.prepare(sql);
    if (!st.ok()) return st.error();
    (*st)->bind(1, rid);
    auto r = stepDone(c, **st, "clear index");
    if (!r.ok()) return r;
  }
  return {};
}

// Inserts `rows` with `sql`; `bindRow` binds one row's values from parameter 1, the rid follows.
template <typename Row, typename BindRow>
Result<void> insertRows(Connection& c, const char* sql, const std::vector<Row>& rows, std::int64_t rid, int ridIndex,
                        BindRow bindRow) {
  if (rows.empty()) return {};
  auto st = c.prepare(sql);
  if (!st.ok()) return st.error();
  auto& s = **st;
  for (const auto& row : rows) {
    s.bind(1, indexParamKey(row.param));
    bindRow(s, row);
    s.bind(ridIndex, rid);
    auto r = stepDone(c, s, sql);
    if (!r.ok()) return r;
    s.reset();
  }
  return {};
}

Result<void> writeIndex(Connection& c, std::int64_t rid, const IndexRows& rows) {
  using St = Connection::Statement;
  Result<void> r = insertRows(c, "INSERT OR IGNORE INTO search_token (param, value, system, rid) VALUES (?, ?, ?, ?)",
                              rows.tokens, rid, 4, [](St& s, const TokenRow& t) {
                                s.bind(2, t.value);
                                s.bind(3, t.system);
                              });
  if (r.ok())
    r = insertRows(c, "INSERT OR IGNORE INTO search_string (param, norm, exact, rid) VALUES (?, ?, ?, ?)", rows.strings,
                   rid, 4, [](St& s, const StringRow& t) {
                     s.bind(2, t.norm);
                     s.bind(3, t.exact);
                   });
  if (r.ok())
    r = insertRows(c, "INSERT OR IGNORE INTO search_date (param, lo, hi, rid) VALUES (?, ?, ?, ?)", rows.dates, rid, 4,
                   [](St& s, const DateRow& t) {
                     s.bind(2, t.lo);
                     s.bind(3, t.hi);
                   });
  if (r.ok())
    r = insertRows(c, "INSERT OR IGNORE INTO search_number (param, lo, hi, system, code, rid) VALUES (?, ?, ?, ?, ?, ?)",
                   rows.numbers, rid, 6, [](St& s, const NumberRow& t) {
                     s.bind(2, t.lo);
                     s.bind(3, t.hi);
                     s.bind(4, t.system);
                     s.bind(5, t.code);
                   });
  if (r.ok())
    r = insertRows(c, "INSERT OR IGNORE INTO search_reference (param, target_id, target_type, rid) VALUES (?, ?, ?, ?)",
                   rows.references, rid, 4, [](St& s, const ReferenceRow& t) {
                     s.bind(2, t.targetId);
                     s.bind(3, t.targetType);
                   });
  if (r.ok())
    r = insertRows(c,
                   "INSERT OR IGNORE INTO search_composite (param, value1, system1, value2, system2, lo, hi, rid)"
                   " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                   rows.composites, rid, 8, [](St& s, const CompositeRow& t) {
                     s.bind(2, t.value1);
                     s.bind(3, t.system1);
                     s.bind(4, t.value2);
                     s.bind(5, t.system2);
                     s.bind(6, t.lo);
                     s.bind(7, t.hi);
                   });
  return r;
}

}  // namespace passerelle::store::sqlite
