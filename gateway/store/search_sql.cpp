// Search over the index tables of the store, in SQL that SQLite and PostgreSQL both run (the
// differences are in Dialect).
//
// A query is planned as: one AND group drives (it yields the candidate rows through an index),
// the other groups are checked per candidate with EXISTS probes on the (rid, param) indexes.
// The driver is the group with the fewest rows, counted up to a bound, so that a rare code or
// one patient's reference is found without scanning the type. Every value is bound.
//
// Paging is by keyset: a page ends with a cursor holding the sort keys of its last row (and of
// its first, for the previous page), so pages stay right while resources are added or removed.
#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>
#include <map>
#include <random>

#include <unistd.h>

#include "gateway/store/sql_dialect.h"

namespace passerelle::store {

std::int64_t indexParamKey(std::string_view name) {
  // FNV-1a, folded to 31 bits: stored in 4 bytes, stable across builds and databases.
  std::uint64_t h = 1469598103934665603ULL;
  for (unsigned char ch : name) {
    h ^= ch;
    h *= 1099511628211ULL;
  }
  return static_cast<std::int64_t>((h ^ (h >> 31)) & 0x7fffffffULL);
}

const Dialect& Dialect::sqlite() {
  static const Dialect d{"sqlite", true, "1", false};
  return d;
}

const Dialect& Dialect::postgresql() {
  static const Dialect d{"postgresql", false, "TRUE", true};
  return d;
}

std::string newInstanceName() {
  char host[256] = {0};
  if (gethostname(host, sizeof host - 1) != 0) std::snprintf(host, sizeof host, "gateway");
  std::random_device rd;
  char tail[32];
  std::snprintf(tail, sizeof tail, "-%ld-%06x", static_cast<long>(getpid()), rd() & 0xffffffu);
  std::string name(host);
  for (char& ch : name)  // a name that SQL text may hold as it is (NOTIFY's payload)
    if (!std::isalnum(static_cast<unsigned char>(ch)) && ch != '.' && ch != '-') ch = '-';
  return name + tail;
}

std::string Dialect::placeholders(const std::string& sql) const {
  if (!numberedParameters) return sql;
  std::string out;
  out.reserve(sql.size() + 16);
  int n = 0;
  char quote = 0;  // inside '...' or "..."
  for (char ch : sql) {
    if (quote) {
      if (ch == quote) quote = 0;
      out += ch;
    } else if (ch == '\'' || ch == '"') {
      quote = ch;
      out += ch;
    } else if (ch == '?') {
      out += '$';
      out += std::to_string(++n);
    } else {
      out += ch;
    }
  }
  return out;
}

const char* const kVersionColumns = "v.seq, v.res_type, v.res_id, v.version, v.last_updated, v.method, v.deleted, v.body";

ResourceVersion rowToVersion(const SqlRow& st) {
  ResourceVersion r;
  r.seq = st.i64(0);
  r.type = st.text(1);
  r.id = st.text(2);
  r.version = st.i64(3);
  r.lastUpdatedMs = st.i64(4);
  r.method = st.text(5);
  r.deleted = st.i64(6) != 0;
  r.body = st.text(7);
  if (st.columns() > 8) r.rid = st.i64(8);
  return r;
}

namespace {

using Table = Condition::Table;
using Kind = Condition::Kind;
using Op = Condition::Op;

constexpr int kEstimateBound = 2000;
constexpr int kMaxDepth = 3;

// SQL text with its bound values, in placeholder order.
struct Sql {
  std::string text;
  std::vector<SqlValue> binds;
  Sql& operator<<(const char* s) {
    text += s;
    return *this;
  }
  Sql& operator<<(const std::string& s) {
    text += s;
    return *this;
  }
  Sql& operator<<(const Sql& o) {
    text += o.text;
    binds.insert(binds.end(), o.binds.begin(), o.binds.end());
    return *this;
  }
  Sql& bind(SqlValue b) {
    text += '?';
    binds.push_back(std::move(b));
    return *this;
  }
};

const char* tableName(Table t) {
  switch (t) {
    case Table::kToken: return "search_token";
    case Table::kString: return "search_string";
    case Table::kDate: return "search_date";
    case Table::kNumber: return "search_number";
    case Table::kReference: return "search_reference";
    case Table::kComposite: return "search_composite";
  }
  return "search_token";
}

bool onIndexTable(const Condition& c) {
  switch (c.kind) {
    case Kind::kToken:
    case Kind::kString:
    case Kind::kDate:
    case Kind::kNumber:
    case Kind::kReference:
    case Kind::kComposite: return true;
    default: return false;
  }
}

// The table with its (rid, param) index forced where the dialect takes hints: probes for one
// resource must not wander onto a value index (without statistics SQLite may prefer a range on
// (param, hi) and read every row of the parameter for each candidate).
std::string byRid(const Dialect& d, Table t, const std::string& alias) {
  std::string n = tableName(t);
  return d.indexHints ? n + " " + alias + " INDEXED BY " + n + "_rid" : n + " " + alias;
}

Table tableOf(const Condition& c) {
  switch (c.kind) {
    case Kind::kToken: return Table::kToken;
    case Kind::kString: return Table::kString;
    case Kind::kDate: return Table::kDate;
    case Kind::kNumber: return Table::kNumber;
    case Kind::kReference: return Table::kReference;
    case Kind::kComposite: return Table::kComposite;
    default: return c.table;
  }
}

Error invalid(const std::string& m) { return makeError(ErrorCode::kInvalid, m); }

// `text >= prefix AND text < prefix + U+10FFFF`: a prefix match that uses the index.
void prefixRange(Sql& s, const std::string& col, const std::string& prefix) {
  s << "(" << col << " >= ";
  s.bind(prefix);
  s << " AND " << col << " < ";
  s.bind(prefix + "\xF4\x8F\xBF\xBF");
  s << ")";
}

std::string likeEscape(const std::string& v) {
  std::string out;
  for (char ch : v) {
    if (ch == '%' || ch == '_' || ch == '\\') out += '\\';
    out += ch;
  }
  return out;
}

// `col op value`, the value bound.
void compare(Sql& s, const std::string& col, const char* op, SqlValue value) {
  s << col << op;
  s.bind(std::move(value));
}

// A date comparison, with the FHIR meaning, between a row's [lo, hi) and the search's [plo, phi).
void dateOp(Sql& s, const std::string& lo, const std::string& hi, Op op, std::int64_t plo, std::int64_t phi) {
  switch (op) {
    case Op::kEq:
    case Op::kNe:
      s << (op == Op::kNe ? "NOT (" : "(") << lo << " >= ";
      s.bind(plo);
      s << " AND " << hi << " <= ";
      s.bind(phi);
      s << ")";
      return;
    case Op::kGt: compare(s, hi, " > ", phi); return;
    case Op::kLt: compare(s, lo, " < ", plo); return;
    case Op::kGe:  // gt or eq
      s << "(" << hi << " > ";
      s.bind(plo);
      s << " AND (" << hi << " > ";
      s.bind(phi);
      s << " OR " << lo << " >= ";
      s.bind(plo);
      s << "))";
      return;
    case Op::kLe:  // lt or eq
      s << "(" << lo << " < ";
      s.bind(phi);
      s << " AND (" << lo << " < ";
      s.bind(plo);
      s << " OR " << hi << " <= ";
      s.bind(phi);
      s << "))";
      return;
    case Op::kSa: compare(s, lo, " >= ", phi); return;
    case Op::kEb: compare(s, hi, " <= ", plo); return;
    case Op::kAp:  // overlaps the (already widened) search range
      s << "(" << lo << " < ";
      s.bind(phi);
      s << " AND " << hi << " > ";
      s.bind(plo);
      s << ")";
      return;
  }
}

// A number comparison between a row's [lo, hi] and the search value (eq/ne/ap: range [plo, phi)).
void numberOp(Sql& s, const std::string& lo, const std::string& hi, Op op, double plo, double phi) {
  switch (op) {
    case Op::kEq:
    case Op::kNe:
      s << (op == Op::kNe ? "NOT (" : "(") << lo << " >= ";
      s.bind(plo);
      s << " AND " << hi << " < ";
      s.bind(phi);
      s << ")";
      return;
    case Op::kAp:  // overlaps the approximate range
      s << "(" << lo << " < ";
      s.bind(phi);
      s << " AND " << hi << " >= ";
      s.bind(plo);
      s << ")";
      return;
    case Op::kGt: compare(s, hi, " > ", plo); return;
    case Op::kLt: compare(s, lo, " < ", plo); return;
    case Op::kGe: compare(s, hi, " >= ", plo); return;
    case Op::kLe: compare(s, lo, " <= ", plo); return;
    case Op::kSa: compare(s, lo, " > ", plo); return;
    case Op::kEb: compare(s, hi, " < ", plo); return;
  }
}

void rowValues(Sql& s, const Condition& c, const std::string& t);

// The condition on one index row `t` (its param and values), without the row's owner.
void rowPredicate(Sql& s, const Condition& c, const std::string& t) {
  rowValues(s, c, t);
  for (const auto& more : c.sameRow) {
    s << " AND ";
    rowValues(s, more, t);
  }
}

void rowValues(Sql& s, const Condition& c, const std::string& t) {
  s << t << ".param = ";
  s.bind(indexParamKey(c.param));
  switch (c.kind) {
    case Kind::kToken:
      if (c.match == Condition::Match::kAnyOf) {
        s << " AND " << t << ".value IN (";
        for (std::size_t i = 0; i < c.anyOf.size(); ++i) {
          if (i) s << ",";
          s.bind(c.anyOf[i]);
        }
        if (c.anyOf.empty()) s << "NULL";
        s << ")";
      } else if (c.value) {
        s << " AND ";
        if (c.match == Condition::Match::kPrefix) {
          prefixRange(s, t + ".value", *c.value);
        } else {
          s << t << ".value = ";
          s.bind(*c.value);
        }
      }
      if (c.system) {
        s << " AND " << t << ".system = ";
        s.bind(*c.system);
      }
      return;
    case Kind::kString:
      s << " AND ";
      if (c.match == Condition::Match::kEq) {
        s << t << ".norm = ";
        s.bind(c.value2.value_or(""));
        s << " AND " << t << ".exact = ";
        s.bind(c.value.value_or(""));
      } else if (c.match == Condition::Match::kContains) {
        s << t << ".norm LIKE ";
        s.bind("%" + likeEscape(c.value.value_or("")) + "%");
        s << " ESCAPE '\\'";
      } else {
        prefixRange(s, t + ".norm", c.value.value_or(""));
      }
      return;
    case Kind::kDate:
      s << " AND ";
      dateOp(s, t + ".lo", t + ".hi", c.op, c.dlo, c.dhi);
      return;
    case Kind::kNumber:
      s << " AND ";
      numberOp(s, t + ".lo", t + ".hi", c.op, c.lo, c.hi);
      if (c.system) {
        s << " AND " << t << ".system = ";
        s.bind(*c.system);
      }
      if (c.value) {
        s << " AND " << t << ".code = ";
        s.bind(*c.value);
      }
      return;
    case Kind::kReference:
      if (c.value) {
        s << " AND " << t << ".target_id = ";
        s.bind(*c.value);
      }
      if (c.targetType) {
        s << " AND " << t << ".target_type = ";
        s.bind(*c.targetType);
      }
      return;
    case Kind::kComposite:
      if (c.value) {
        s << " AND " << t << ".value1 = ";
        s.bind(*c.value);
      }
      if (c.system) {
        s << " AND " << t << ".system1 = ";
        s.bind(*c.system);
      }
      if (c.value2) {
        s << " AND ";
        if (c.match == Condition::Match::kPrefix) {
          prefixRange(s, t + ".value2", *c.value2);
        } else {
          s << t << ".value2 = ";
          s.bind(*c.value2);
        }
      }
      if (c.system2) {
        s << " AND " << t << ".system2 = ";
        s.bind(*c.system2);
      }
      if (c.compareSecond) {
        s << " AND ";
        if (c.table == Table::kDate)
          dateOp(s, t + ".lo", t + ".hi", c.op, c.dlo, c.dhi);
        else
          numberOp(s, t + ".lo", t + ".hi", c.op, c.lo, c.hi);
      }
      return;
    default:
      return;
  }
}

class Planner {
 public:
  explicit Planner(SqlRunner& runner) : runner_(runner), dialect_(runner.dialect()) {}

  // A boolean expression: resource `a` (an alias of resource_current) satisfies `c`.
  Result<void> predicate(Sql& s, const Condition& c, const std::string& a, int depth) {
    if (depth > kMaxDepth) return invalid("search conditions are nested too deeply");
    bool neg = c.negate;
    switch (c.kind) {
      case Kind::kId:
        s << (neg ? "NOT " : "") << "(" << a << ".res_id = ";
        s.bind(c.value.value_or(""));
        s << ")";
        return {};
      case Kind::kType:
        s << (neg ? "NOT " : "") << "(" << a << ".res_type = ";
        s.bind(c.value.value_or(""));
        s << ")";
        return {};
      case Kind::kLastUpdated: {
        s << (neg ? "NOT " : "") << "(";
        dateOp(s, a + ".last_updated", "(" + a + ".last_updated + 1)", c.op, c.dlo, c.dhi);
        s << ")";
        return {};
      }
      case Kind::kMissing: {
        // value "true": no row at all for the parameter.
        bool missing = c.value.value_or("true") == "true";
        std::string t = alias();
        s << (missing ? "NOT " : "") << "EXISTS (SELECT 1 FROM " << byRid(dialect_, c.table, t) << " WHERE " << t
          << ".rid = " << a << ".rid AND " << t << ".param = ";
        s.bind(indexParamKey(c.param));
        s << ")";
        return {};
      }
      case Kind::kChain: {
        std::string r = alias(), t = alias();
        s << (neg ? "NOT " : "") << "EXISTS (SELECT 1 FROM " << byRid(dialect_, Table::kReference, r) << " JOIN resource_current " << t
          << " ON " << t << ".res_type = " << r << ".target_type AND " << t << ".res_id = " << r << ".target_id WHERE "
          << r << ".rid = " << a << ".rid AND " << r << ".param = ";
        s.bind(indexParamKey(c.param));
        s << " AND " << r << ".target_type = ";
        s.bind(c.targetType.value_or(""));
        s << " AND " << t << ".deleted = 0";
        for (const auto& g : c.inner) {
          s << " AND ";
          auto r2 = group(s, g, t, depth + 1);
          if (!r2.ok()) return r2;
        }
        s << ")";
        return {};
      }
      case Kind::kHas: {
        std::string r = alias(), t = alias();
        s << (neg ? "NOT " : "") << "EXISTS (SELECT 1 FROM search_reference " << r << " JOIN resource_current " << t
          << " ON " << t << ".rid = " << r << ".rid WHERE " << r << ".param = ";
        s.bind(indexParamKey(c.param));
        s << " AND " << r << ".target_id = " << a << ".res_id AND " << r << ".target_type = " << a << ".res_type AND "
          << t << ".res_type = ";
        s.bind(c.hasType);
        for (const auto& g : c.inner) {
          s << " AND ";
          auto r2 = group(s, g, t, depth + 1);
          if (!r2.ok()) return r2;
        }
        s << ")";
        return {};
      }
      default: {
        std::string t = alias();
        s << (neg ? "NOT " : "") << "EXISTS (SELECT 1 FROM " << byRid(dialect_, tableOf(c), t) << " WHERE " << t
          << ".rid = " << a << ".rid AND ";
        rowPredicate(s, c, t);
        s << ")";
        return {};
      }
    }
  }

  // OR of every member, as one EXISTS per index table (many values of one parameter stay one
  // probe), balanced so that a thousand values do not nest a thousand deep.
  Result<void> group(Sql& s, const std::vector<Condition>& g, const std::string& a, int depth) {
    if (g.empty()) {
      s << dialect_.alwaysTrue;
      return {};
    }
    std::vector<Sql> parts;
    std::map<Table, std::vector<const Condition*>> byTable;
    for (const auto& c : g) {
      if (onIndexTable(c) && !c.negate) {
        byTable[tableOf(c)].push_back(&c);
        continue;
      }
      Sql one;
      auto r = predicate(one, c, a, depth);
      if (!r.ok()) return r;
      parts.push_back(std::move(one));
    }
    for (const auto& [table, members] : byTable) {
      std::string t = alias();
      std::vector<Sql> rows;
      for (const Condition* c : members) {
        Sql row;
        rowPredicate(row, *c, t);
        rows.push_back(std::move(row));
      }
      Sql e;
      e << "EXISTS (SELECT 1 FROM " << byRid(dialect_, table, t) << " WHERE " << t << ".rid = " << a << ".rid AND "
        << balancedOr(rows, 0, rows.size()) << ")";
      parts.push_back(std::move(e));
    }
    s << balancedOr(parts, 0, parts.size());
    return {};
  }

  static Sql balancedOr(const std::vector<Sql>& parts, std::size_t from, std::size_t to) {
    Sql out;
    if (to - from == 1) {
      out << "(" << parts[from] << ")";
      return out;
    }
    std::size_t mid = from + (to - from) / 2;
    out << "(" << balancedOr(parts, from, mid) << " OR " << balancedOr(parts, mid, to) << ")";
    return out;
  }

  static bool drivable(const Condition& c) {
    if (c.negate) return false;
    if (c.kind == Kind::kMissing || c.kind == Kind::kType) return false;
    // A range's complement has no index order.
    if ((c.kind == Kind::kDate || c.kind == Kind::kNumber || c.kind == Kind::kLastUpdated ||
         (c.kind == Kind::kComposite && c.compareSecond)) && c.op == Op::kNe)
      return false;
    if (c.kind == Kind::kString && c.match == Condition::Match::kContains) return false;
    return true;
  }
  static bool drivable(const std::vector<Condition>& g) {
    if (g.empty()) return false;
    for (const auto& c : g)
      if (!drivable(c)) return false;
    return true;
  }

  // A query yielding the rids of the `type` resources satisfying `c` (c is drivable).
  Result<void> ridSet(Sql& s, const Condition& c, const std::string& type, int depth) {
    if (depth > kMaxDepth) return invalid("search conditions are nested too deeply");
    switch (c.kind) {
      case Kind::kId: {
        std::string x = alias();
        s << "SELECT " << x << ".rid FROM resource_current " << x << " WHERE " << x << ".res_type = ";
        s.bind(type);
        s << " AND " << x << ".res_id = ";
        s.bind(c.value.value_or(""));
        return {};
      }
      case Kind::kLastUpdated: {
        std::string x = alias();
        s << "SELECT " << x << ".rid FROM resource_current " << x << " WHERE " << x << ".res_type = ";
        s.bind(type);
        s << " AND ";
        dateOp(s, x + ".last_updated", "(" + x + ".last_updated + 1)", c.op, c.dlo, c.dhi);
        return {};
      }
      case Kind::kChain: {
        // The referring rows whose target is one of the matching targets.
        std::string r = alias(), t = alias();
        s << "SELECT " << r << ".rid FROM search_reference " << r << " WHERE " << r << ".param = ";
        s.bind(indexParamKey(c.param));
        s << " AND " << r << ".target_type = ";
        s.bind(c.targetType.value_or(""));
        s << " AND " << r << ".target_id IN (SELECT " << t << ".res_id FROM resource_current " << t << " WHERE " << t
          << ".res_type = ";
        s.bind(c.targetType.value_or(""));
        s << " AND " << t << ".deleted = 0";
        auto r2 = restrict(s, c.inner, c.targetType.value_or(""), t, depth + 1);
        if (!r2.ok()) return r2;
        s << ")";
        return {};
      }
      case Kind::kHas: {
        // This type's resources that a matching `hasType` resource references.
        std::string r = alias(), t = alias(), x = alias();
        s << "SELECT " << x << ".rid FROM search_reference " << r << " JOIN resource_current " << x << " ON " << x
          << ".res_type = " << r << ".target_type AND " << x << ".res_id = " << r << ".target_id JOIN resource_current "
          << t << " ON " << t << ".rid = " << r << ".rid WHERE " << r << ".param = ";
        s.bind(indexParamKey(c.param));
        s << " AND " << r << ".target_type = ";
        s.bind(type);
        s << " AND " << t << ".res_type = ";
        s.bind(c.hasType);
        auto r2 = restrict(s, c.inner, c.hasType, t, depth + 1);
        if (!r2.ok()) return r2;
        return {};
      }
      default: {
        std::string t = alias();
        s << "SELECT " << t << ".rid FROM " << tableName(tableOf(c)) << " " << t << " WHERE ";
        rowPredicate(s, c, t);
        return {};
      }
    }
  }

  // " AND ..." conditions on alias `a` of a `type` resource: the first drivable group as an
  // IN (rid set), the others as predicates.
  Result<void> restrict(Sql& s, const std::vector<std::vector<Condition>>& groups, const std::string& type,
                        const std::string& a, int depth) {
    bool drove = false;
    for (const auto& g : groups) {
      s << " AND ";
      if (!drove && drivable(g)) {
        drove = true;
        s << a << ".rid IN (";
        auto r = groupRidSet(s, g, type, depth);
        if (!r.ok()) return r;
        s << ")";
      } else {
        auto r = group(s, g, a, depth);
        if (!r.ok()) return r;
      }
    }
    return {};
  }

  // The rids matching any member: one SELECT per index table (and one for ids), the few
  // others (chains, _has, _lastUpdated) each their own, in a UNION.
  Result<void> groupRidSet(Sql& s, const std::vector<Condition>& g, const std::string& type, int depth) {
    std::vector<Sql> selects;
    std::map<Table, std::vector<const Condition*>> byTable;
    std::vector<const Condition*> ids;
    for (const auto& c : g) {
      if (onIndexTable(c)) {
        byTable[tableOf(c)].push_back(&c);
      } else if (c.kind == Kind::kId) {
        ids.push_back(&c);
      } else {
        Sql one;
        auto r = ridSet(one, c, type, depth);
        if (!r.ok()) return r;
        selects.push_back(std::move(one));
      }
    }
    for (const auto& [table, members] : byTable) {
      std::string t = alias();
      std::vector<Sql> rows;
      for (const Condition* c : members) {
        Sql row;
        rowPredicate(row, *c, t);
        rows.push_back(std::move(row));
      }
      Sql sel;
      sel << "SELECT " << t << ".rid FROM " << tableName(table) << " " << t << " WHERE " << balancedOr(rows, 0, rows.size());
      selects.push_back(std::move(sel));
    }
    if (!ids.empty()) {
      std::string x = alias();
      Sql sel;
      sel << "SELECT " << x << ".rid FROM resource_current " << x << " WHERE " << x << ".res_type = ";
      sel.bind(type);
      sel << " AND " << x << ".res_id IN (";
      for (std::size_t i = 0; i < ids.size(); ++i) {
        if (i) sel << ",";
        sel.bind(ids[i]->value.value_or(""));
      }
      sel << ")";
      selects.push_back(std::move(sel));
    }
    for (std::size_t i = 0; i < selects.size(); ++i) {
      if (i) s << " UNION ";
      s << selects[i];
    }
    return {};
  }

  // How many rows the group's rid set yields, counted up to kEstimateBound.
  Result<std::int64_t> estimate(const std::vector<Condition>& g, const std::string& type) {
    Sql s;
    s << "SELECT COUNT(*) FROM (";
    auto r = groupRidSet(s, g, type, 0);
    if (!r.ok()) return r.error();
    s << " LIMIT " << std::to_string(kEstimateBound) << ") AS n";
    std::int64_t n = 0;
    auto r2 = runner_.query(s.text, s.binds, [&](const SqlRow& row) { n = row.i64(0); }, "search estimate");
    if (!r2.ok()) return r2.error();
    return n;
  }

  // True when the single condition's index range yields rids in ascending order, each once.
  static bool ridOrdered(const std::vector<Condition>& g) {
    if (g.size() != 1) return false;
    const Condition& c = g[0];
    if (!drivable(c)) return false;
    switch (c.kind) {
      case Kind::kToken: return c.match == Condition::Match::kEq && c.value && c.system;
      case Kind::kReference: return c.value && c.targetType;
      case Kind::kString: return c.match == Condition::Match::kEq;
      default: return false;
    }
  }

  std::string alias() { return "a" + std::to_string(++aliases_); }

 private:
  SqlRunner& runner_;
  const Dialect& dialect_;
  int aliases_ = 0;
};

// ---- sort keys and cursors ----

struct KeyValue {
  char kind = 'i';  // i: integer, r: real, s: text
  std::int64_t i = 0;
  double r = 0;
  std::string s;
};

const char* kTextMax = "\xF4\x8F\xBF\xBF";

// The SQL expression of a sort key for resource alias `c`, with missing values last.
void sortExpr(Sql& s, const Dialect& d, const SortKey& k, const std::string& c, char& kind) {
  if (k.param == "_id") {
    kind = 's';
    s << c << ".res_id";
    return;
  }
  if (k.param == "_lastUpdated") {
    kind = 'i';
    s << c << ".last_updated";
    return;
  }
  const char* col = "value";
  switch (k.table) {
    case Table::kToken: col = "value"; kind = 's'; break;
    case Table::kString: col = "norm"; kind = 's'; break;
    case Table::kDate: col = k.descending ? "hi" : "lo"; kind = 'i'; break;
    case Table::kNumber: col = k.descending ? "hi" : "lo"; kind = 'r'; break;
    case Table::kReference: col = "target_id"; kind = 's'; break;
    case Table::kComposite: col = "value1"; kind = 's'; break;
  }
  s << "COALESCE((SELECT " << (k.descending ? "MAX(" : "MIN(") << "x." << col << ") FROM " << byRid(d, k.table, "x")
    << " WHERE x.rid = " << c << ".rid AND x.param = ";
  s.bind(indexParamKey(k.param));
  s << "), ";
  if (kind == 's') {
    s.bind(std::string(k.descending ? "" : kTextMax));
  } else if (kind == 'i') {
    s.bind(k.descending ? std::numeric_limits<std::int64_t>::min() : std::numeric_limits<std::int64_t>::max());
  } else {
    s.bind(k.descending ? -std::numeric_limits<double>::max() : std::numeric_limits<double>::max());
  }
  s << ")";
}

std::string base64url(const std::string& in) {
  static const char* t = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
  std::string out;
  std::size_t i = 0;
  for (; i + 2 < in.size(); i += 3) {
    unsigned v = (static_cast<unsigned char>(in[i]) << 16) | (static_cast<unsigned char>(in[i + 1]) << 8) |
                 static_cast<unsigned char>(in[i + 2]);
    out += t[v >> 18];
    out += t[(v >> 12) & 63];
    out += t[(v >> 6) & 63];
    out += t[v & 63];
  }
  if (i + 1 == in.size()) {
    unsigned v = static_cast<unsigned char>(in[i]) << 16;
    out += t[v >> 18];
    out += t[(v >> 12) & 63];
  } else if (i + 2 == in.size()) {
    unsigned v = (static_cast<unsigned char>(in[i]) << 16) | (static_cast<unsigned char>(in[i + 1]) << 8);
    out += t[v >> 18];
    out += t[(v >> 12) & 63];
    out += t[(v >> 6) & 63];
  }
  return out;
}

bool unbase64url(const std::string& in, std::string& out) {
  out.clear();
  unsigned acc = 0;
  int bits = 0;
  for (char ch : in) {
    int v;
    if (ch >= 'A' && ch <= 'Z') v = ch - 'A';
    else if (ch >= 'a' && ch <= 'z') v = ch - 'a' + 26;
    else if (ch >= '0' && ch <= '9') v = ch - '0' + 52;
    else if (ch == '-') v = 62;
    else if (ch == '_') v = 63;
    else return false;
    acc = (acc << 6) | static_cast<unsigned>(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out += static_cast<char>((acc >> bits) & 0xff);
    }
  }
  return true;
}

// A cursor: the sort key values of a row then its rid, each as kind + text, 0x1f separated.
std::string encodeCursor(const std::vector<KeyValue>& keys) {
  std::string raw;
  for (const auto& k : keys) {
    if (!raw.empty()) raw += '\x1f';
    raw += k.kind;
    if (k.kind == 'i') raw += std::to_string(k.i);
    else if (k.kind == 'r') {
      char buf[40];
      std::snprintf(buf, sizeof buf, "%.17g", k.r);
      raw += buf;
    } else raw += k.s;
  }
  return base64url(raw);
}

Result<std::vector<KeyValue>> decodeCursor(const std::string& cursor, const std::vector<char>& kinds) {
  std::string raw;
  Error bad = invalid("the paging cursor is not one this server made for this search");
  if (cursor.size() > 8192 || !unbase64url(cursor, raw)) return bad;
  std::vector<KeyValue> out;
  std::size_t start = 0;
  for (std::size_t n = 0; n < kinds.size(); ++n) {
    std::size_t end = raw.find('\x1f', start);
    if ((end == std::string::npos) != (n + 1 == kinds.size())) return bad;
    std::string part = raw.substr(start, end == std::string::npos ? std::string::npos : end - start);
    start = end + 1;
    if (part.empty() || part[0] != kinds[n]) return bad;
    KeyValue k;
    k.kind = part[0];
    std::string body = part.substr(1);
    try {
      std::size_t used = 0;
      if (k.kind == 'i') {
        k.i = std::stoll(body, &used);
        if (used != body.size()) return bad;
      } else if (k.kind == 'r') {
        k.r = std::stod(body, &used);
        if (used != body.size()) return bad;
      } else {
        k.s = body;
      }
    } catch (...) {
      return bad;
    }
    out.push_back(std::move(k));
  }
  return out;
}

void bindKey(Sql& s, const KeyValue& k) {
  if (k.kind == 'i') s.bind(k.i);
  else if (k.kind == 'r') s.bind(k.r);
  else s.bind(k.s);
}

// (k1, k2, ..., rid) after (or before) the cursor's values, each key in its direction.
void keysetPredicate(Sql& s, const std::vector<std::string>& exprs, const std::vector<bool>& desc,
                     const std::vector<KeyValue>& vals, bool backwards) {
  s << "(";
  for (std::size_t i = 0; i < exprs.size(); ++i) {
    if (i) s << " OR ";
    s << "(";
    for (std::size_t j = 0; j < i; ++j) {
      s << exprs[j] << " = ";
      bindKey(s, vals[j]);
      s << " AND ";
    }
    bool greater = desc[i] == backwards;
    s << exprs[i] << (greater ? " > " : " < ");
    bindKey(s, vals[i]);
    s << ")";
  }
  s << ")";
}

KeyValue columnKey(const SqlRow& st, int col, char kind) {
  KeyValue k;
  k.kind = kind;
  if (kind == 'i') k.i = st.i64(col);
  else if (kind == 'r') k.r = st.real(col);
  else k.s = st.text(col);
  return k;
}

}  // namespace

Result<SearchPage> runSearch(SqlRunner& runner, const SearchQuery& q) {
  const Dialect& dialect = runner.dialect();
  Planner p(runner);
  SearchPage page;
  // Choose the driving group: the one yielding fewest rows.
  int driver = -1;
  if (!q.type.empty()) {
    std::int64_t best = std::numeric_limits<std::int64_t>::max();
    std::vector<int> candidates;
    for (std::size_t i = 0; i < q.where.size(); ++i)
      if (Planner::drivable(q.where[i])) candidates.push_back(static_cast<int>(i));
    if (candidates.size() == 1) {
      driver = candidates[0];
    } else {
      for (int i : candidates) {
        auto n = p.estimate(q.where[i], q.type);
        if (!n.ok()) return n.error();
        // Prefer an ordered driver when counts tie (both beyond the bound).
        bool better = *n < best || (*n == best && Planner::ridOrdered(q.where[i]) && !Planner::ridOrdered(q.where[driver]));
        if (better) {
          best = *n;
          driver = i;
        }
        if (best == 0) break;
      }
    }
  }
  bool orderedJoin = driver >= 0 && q.sort.empty() && Planner::ridOrdered(q.where[driver]);

  // FROM and WHERE, shared by the count and the page.
  Sql from;
  std::string ridCol = "c.rid";
  if (orderedJoin) {
    const Condition& c = q.where[driver][0];
    from << " FROM " << tableName(tableOf(c)) << " d JOIN resource_current c ON c.rid = d.rid WHERE ";
    rowPredicate(from, c, "d");
    from << " AND c.res_type = ";
    from.bind(q.type);
    ridCol = "d.rid";
  } else {
    from << " FROM resource_current c WHERE ";
    if (!q.type.empty()) {
      from << "c.res_type = ";
      from.bind(q.type);
    } else {
      from << dialect.alwaysTrue;
    }
    if (driver >= 0) {
      from << " AND c.rid IN (";
      auto r = p.groupRidSet(from, q.where[driver], q.type, 0);
      if (!r.ok()) return r.error();
      from << ")";
    }
  }
  from << " AND c.deleted = 0";
  for (std::size_t i = 0; i < q.where.size(); ++i) {
    if (static_cast<int>(i) == driver) continue;
    from << " AND ";
    auto r = p.group(from, q.where[i], "c", 0);
    if (!r.ok()) return r.error();
  }

  // A bounded total is counted on the first page only: the following ones are reached by cursor
  // and would count the same rows again.
  bool counted = q.total == SearchQuery::Total::kAccurate || (q.total == SearchQuery::Total::kBounded && q.cursor.empty());
  if (counted) {
    Sql countSql;
    countSql << "SELECT COUNT(*) FROM (SELECT 1" << from;
    if (q.total == SearchQuery::Total::kBounded) countSql << " LIMIT 1001";
    countSql << ") AS n";
    std::int64_t n = 0;
    auto r = runner.query(countSql.text, countSql.binds, [&](const SqlRow& row) { n = row.i64(0); }, "search count");
    if (!r.ok()) return r.error();
    page.total = (q.total == SearchQuery::Total::kBounded && n > 1000) ? -1 : n;
  }
  if (!q.wantItems || q.count <= 0) return page;

  // Sort keys: the requested ones, then the rid.
  std::vector<std::string> exprs;
  std::vector<bool> desc;
  std::vector<char> kinds;
  Sql keyCols;
  for (std::size_t i = 0; i < q.sort.size(); ++i) {
    Sql e;
    char kind = 's';
    sortExpr(e, dialect, q.sort[i], "c", kind);
    keyCols << ", " << e << " AS k" << std::to_string(i);
    exprs.push_back("s.k" + std::to_string(i));
    desc.push_back(q.sort[i].descending);
    kinds.push_back(kind);
  }
  exprs.push_back("s.rid");
  desc.push_back(false);
  kinds.push_back('i');

  std::vector<KeyValue> after;
  if (!q.cursor.empty()) {
    auto d = decodeCursor(q.cursor, kinds);
    if (!d.ok()) return d.error();
    after = std::move(d.value());
  }

  Sql sql;
  sql << "SELECT " << kVersionColumns << ", s.rid";
  for (std::size_t i = 0; i < q.sort.size(); ++i) sql << ", s.k" << std::to_string(i);
  sql << " FROM (SELECT " << ridCol << " AS rid, c.seq AS seq" << keyCols << from;
  if (q.sort.empty() && !after.empty()) {
    // Keyset on the rid alone: let the index seek to it.
    sql << " AND " << ridCol << (q.backwards ? " < " : " > ");
    sql.bind(after.back().i);
  }
  if (q.sort.empty()) sql << " ORDER BY " << ridCol << (q.backwards ? " DESC" : "") << " LIMIT ";
  if (q.sort.empty()) sql.bind(static_cast<std::int64_t>(q.count + 1 + q.offset));
  sql << ") s JOIN resource_version v ON v.seq = s.seq";
  if (!q.sort.empty() && !after.empty()) {
    sql << " WHERE ";
    keysetPredicate(sql, exprs, desc, after, q.backwards);
  }
  sql << " ORDER BY ";
  for (std::size_t i = 0; i < exprs.size(); ++i) {
    if (i) sql << ", ";
    sql << exprs[i] << ((desc[i] != q.backwards) ? " DESC" : "");
  }
  sql << " LIMIT ";
  sql.bind(static_cast<std::int64_t>(q.count + 1));
  sql << " OFFSET ";
  sql.bind(static_cast<std::int64_t>(q.offset));

  std::vector<std::vector<KeyValue>> rowKeys;
  auto run = runner.query(sql.text, sql.binds, [&](const SqlRow& row) {
    page.items.push_back(rowToVersion(row));
    std::vector<KeyValue> keys;
    for (std::size_t i = 0; i < q.sort.size(); ++i) keys.push_back(columnKey(row, 9 + static_cast<int>(i), kinds[i]));
    keys.push_back(columnKey(row, 8, 'i'));
    rowKeys.push_back(std::move(keys));
  }, "search");
  if (!run.ok()) return run.error();
  bool more = static_cast<int>(page.items.size()) > q.count;
  if (more) {
    page.items.resize(q.count);
    rowKeys.resize(q.count);
  }
  if (q.backwards) {
    std::reverse(page.items.begin(), page.items.end());
    std::reverse(rowKeys.begin(), rowKeys.end());
  }
  if (!page.items.empty()) {
    bool hasNext = q.backwards ? true : more;
    bool hasPrevious = q.backwards ? more : (!q.cursor.empty() || q.offset > 0);
    if (hasNext) page.next = encodeCursor(rowKeys.back());
    if (hasPrevious) page.previous = encodeCursor(rowKeys.front());
  } else if (!q.cursor.empty()) {
    // Past either end: offer the way back.
    if (q.backwards) page.next = q.cursor;
    else page.previous = q.cursor;
  }
  return page;
}

Result<std::vector<ResourceVersion>> runInclude(SqlRunner& runner, const IncludeQuery& q) {
  const Dialect& dialect = runner.dialect();
  Sql s;
  std::vector<ResourceVersion> out;
  if (!q.reverse) {
    if (q.rids.empty()) return out;
    s << "SELECT " << kVersionColumns << ", t.rid FROM resource_current t JOIN resource_version v ON v.seq = t.seq"
      << " WHERE t.deleted = 0 AND t.rid IN (SELECT t2.rid FROM " << byRid(dialect, Table::kReference, "r") << " JOIN resource_current t2 ON"
      << " t2.res_type = r.target_type AND t2.res_id = r.target_id WHERE r.rid IN (";
    for (std::size_t i = 0; i < q.rids.size(); ++i) {
      if (i) s << ",";
      s.bind(q.rids[i]);
    }
    s << ")";
    if (!q.params.empty()) {
      s << " AND r.param IN (";
      for (std::size_t i = 0; i < q.params.size(); ++i) {
        if (i) s << ",";
        s.bind(indexParamKey(q.params[i]));
      }
      s << ")";
    }
    if (!q.targetType.empty()) {
      s << " AND r.target_type = ";
      s.bind(q.targetType);
    }
    s << ") ORDER BY t.rid LIMIT ";
  } else {
    if (q.targets.empty() || q.params.empty()) return out;
    s << "SELECT " << kVersionColumns << ", t.rid FROM resource_current t JOIN resource_version v ON v.seq = t.seq"
      << " WHERE t.deleted = 0 AND t.rid IN (SELECT r.rid FROM search_reference r WHERE r.param IN (";
    for (std::size_t i = 0; i < q.params.size(); ++i) {
      if (i) s << ",";
      s.bind(indexParamKey(q.params[i]));
    }
    s << ") AND (";
    for (std::size_t i = 0; i < q.targets.size(); ++i) {
      if (i) s << " OR ";
      s << "(r.target_id = ";
      s.bind(q.targets[i].second);
      s << " AND r.target_type = ";
      s.bind(q.targets[i].first);
      s << ")";
    }
    s << ")) ORDER BY t.rid LIMIT ";
  }
  s.bind(static_cast<std::int64_t>(q.limit));
  auto r = runner.query(s.text, s.binds, [&](const SqlRow& row) { out.push_back(rowToVersion(row)); }, "include");
  if (!r.ok()) return r.error();
  return out;
}

}  // namespace passerelle::store
