// Parsing of search and history parameters.
#include "gateway/fhir/search_params.h"

#include <Poco/URI.h>

#include "mappings/fhir/fhir_time.h"
#include "mappings/fhir/resource_types.h"

namespace passerelle::fhir {
namespace {

Error bad(const std::string& param, const std::string& message) {
  return makeError(ErrorCode::kInvalid, "search parameter '" + param + "': " + message);
}

bool parseCount(const std::string& v, int& out) {
  if (v.empty() || v.size() > 9) return false;
  int r = 0;
  for (char c : v) {
    if (c < '0' || c > '9') return false;
    r = r * 10 + (c - '0');
  }
  out = r;
  return true;
}

Result<store::TimeRange> dateCondition(const std::string& param, const std::string& raw) {
  std::string prefix = "eq";
  std::string value = raw;
  if (raw.size() >= 2 && std::isalpha(static_cast<unsigned char>(raw[0])) && std::isalpha(static_cast<unsigned char>(raw[1]))) {
    prefix = raw.substr(0, 2);
    value = raw.substr(2);
  }
  std::int64_t lo, hi;
  if (!parseDateRange(value, lo, hi)) return bad(param, "'" + raw + "' is not a FHIR date, dateTime or instant");
  store::TimeRange r;
  if (prefix == "eq") { r.lo = lo; r.hi = hi; }
  else if (prefix == "ne") { r.lo = lo; r.hi = hi; r.negate = true; }
  else if (prefix == "gt" || prefix == "sa") { r.lo = hi; }
  else if (prefix == "ge") { r.lo = lo; }
  else if (prefix == "lt" || prefix == "eb") { r.hi = lo; }
  else if (prefix == "le") { r.hi = hi; }
  else if (prefix == "ap") return bad(param, "the prefix 'ap' is not supported");
  else return bad(param, "unknown prefix '" + prefix + "'");
  return r;
}

bool isControl(const std::string& name) {
  return name == "_format" || name == "_pretty";
}

}  // namespace

std::vector<std::string> splitEscaped(const std::string& s, char sep) {
  std::vector<std::string> out(1);
  for (std::size_t i = 0; i < s.size(); ++i) {
    char c = s[i];
    if (c == '\\' && i + 1 < s.size()) {
      out.back() += s[++i];
    } else if (c == sep) {
      out.emplace_back();
    } else {
      out.back() += c;
    }
  }
  return out;
}

Params parseQueryString(const std::string& query) {
  Params out;
  std::size_t start = 0;
  while (start <= query.size()) {
    std::size_t amp = query.find('&', start);
    std::string part = query.substr(start, amp == std::string::npos ? std::string::npos : amp - start);
    if (!part.empty()) {
      std::size_t eq = part.find('=');
      std::string k = part.substr(0, eq), v = eq == std::string::npos ? "" : part.substr(eq + 1);
      for (auto* s : {&k, &v})
        for (auto& c : *s)
          if (c == '+') c = ' ';
      std::string dk, dv;
      try {
        Poco::URI::decode(k, dk);
        Poco::URI::decode(v, dv);
      } catch (...) {
        dk = k;
        dv = v;
      }
      out.emplace_back(std::move(dk), std::move(dv));
    }
    if (amp == std::string::npos) break;
    start = amp + 1;
  }
  return out;
}

std::string encodeQuery(const Params& params) {
  std::string out;
  for (const auto& [k, v] : params) {
    if (!out.empty()) out += '&';
    std::string ek, ev;
    Poco::URI::encode(k, "&=+#%?", ek);
    Poco::URI::encode(v, "&=+#%?", ev);
    out += ek + "=" + ev;
  }
  return out;
}

Result<ParsedSearch> parseSearch(const std::string& type, const Params& params, const SearchLimits& limits, bool strict) {
  ParsedSearch ps;
  auto& q = ps.query;
  q.type = type;
  q.count = limits.defaultCount;
  for (const auto& [rawName, value] : params) {
    std::string name = rawName, modifier;
    if (auto colon = rawName.find(':'); colon != std::string::npos) {
      name = rawName.substr(0, colon);
      modifier = rawName.substr(colon + 1);
    }
    if (isControl(name)) continue;
    if (name == "_count") {
      int c;
      if (!parseCount(value, c)) return bad(name, "'" + value + "' is not a non-negative integer");
      q.count = std::min(c, limits.maxCount);
      ps.applied.emplace_back(name, std::to_string(q.count));
      continue;
    }
    if (name == "_offset") {
      int o;
      if (!parseCount(value, o)) return bad(name, "'" + value + "' is not a non-negative integer");
      q.offset = o;
      continue;  // put back by the paging links
    }
    if (name == "_total") {
      if (value != "none" && value != "estimate" && value != "accurate") return bad(name, "expected none, estimate or accurate");
      q.wantTotal = value != "none";
      ps.applied.emplace_back(name, value);
      continue;
    }
    if (name == "_summary") {
      if (value == "count") {
        ps.summaryCount = true;
        q.wantItems = false;
        q.wantTotal = true;
        ps.applied.emplace_back(name, value);
        continue;
      }
      if (strict) return bad(name, "only _summary=count is supported");
      continue;
    }
    bool known = name == "_id" || name == "_lastUpdated" || (name == "identifier" && (type.empty() || hasIdentifierParam(type)));
    if (!known) {
      if (strict) return bad(rawName, "not supported" + std::string(type.empty() ? "" : " for " + type));
      continue;
    }
    if (!modifier.empty()) return bad(rawName, "the modifier ':" + modifier + "' is not supported");
    auto values = splitEscaped(value, ',');
    if (static_cast<int>(values.size()) > limits.maxValues)
      return bad(name, "more than " + std::to_string(limits.maxValues) + " values");
    if (name == "_id") {
      for (const auto& v : values)
        if (!isValidId(v)) return bad(name, "'" + v + "' is not a valid id");
      q.ids.push_back(values);
    } else if (name == "_lastUpdated") {
      std::vector<store::TimeRange> group;
      for (const auto& v : values) {
        auto r = dateCondition(name, v);
        if (!r.ok()) return r.error();
        group.push_back(r.value());
      }
      q.lastUpdated.push_back(std::move(group));
    } else {
      std::vector<store::TokenMatch> group;
      for (const auto& v : values) {
        store::TokenMatch m;
        m.param = "identifier";
        // The system|value split honours "\|" escapes inside either part.
        auto parts = splitEscaped(v, '|');
        if (parts.size() == 1) {
          if (parts[0].empty()) return bad(name, "empty value");
          m.hasValue = true;
          m.value = parts[0];
        } else if (parts.size() == 2) {
          m.hasSystem = true;
          m.system = parts[0];
          if (!parts[1].empty()) {
            m.hasValue = true;
            m.value = parts[1];
          } else if (parts[0].empty()) {
            return bad(name, "'|' alone is not a token");
          }
        } else {
          return bad(name, "'" + v + "' has more than one unescaped '|'");
        }
        group.push_back(std::move(m));
      }
      q.tokens.push_back(std::move(group));
    }
    ps.applied.emplace_back(rawName, value);
  }
  return ps;
}

Result<ParsedHistory> parseHistory(const Params& params, const SearchLimits& limits, bool strict) {
  ParsedHistory ph;
  ph.query.count = limits.defaultCount;
  for (const auto& [name, value] : params) {
    if (isControl(name)) continue;
    if (name == "_count") {
      int c;
      if (!parseCount(value, c) || c == 0) return bad(name, "'" + value + "' is not a positive integer");
      ph.query.count = std::min(c, limits.maxCount);
      ph.applied.emplace_back(name, std::to_string(ph.query.count));
    } else if (name == "_since") {
      std::int64_t lo, hi;
      if (!parseDateRange(value, lo, hi)) return bad(name, "'" + value + "' is not a FHIR instant");
      ph.query.sinceMs = lo;
      ph.applied.emplace_back(name, value);
    } else if (name == "_cursor") {
      std::int64_t c = 0;
      for (char ch : value) {
        if (ch < '0' || ch > '9' || c > INT64_MAX / 10 - 10) return bad(name, "not a paging cursor");
        c = c * 10 + (ch - '0');
      }
      if (value.empty()) return bad(name, "not a paging cursor");
      ph.query.beforeSeq = c;
    } else if (strict) {
      return bad(name, "not supported for history");
    }
  }
  return ph;
}

}  // namespace passerelle::fhir
