// FHIRPath values: decimals with their scale, dates and times with partial precision, and the
// equality, equivalence and ordering rules of http://hl7.org/fhirpath/N1/#equality.
#include <algorithm>
#include <cctype>
#include <charconv>
#include <cmath>
#include <cstdio>

#include "mappings/fhir/fhirpath/fhirpath_internal.h"

namespace passerelle::fhir::fhirpath {

Value makeBoolean(bool b) {
  Value v;
  v.kind = Kind::Boolean;
  v.boolean = b;
  return v;
}

Value makeInteger(std::int64_t i) {
  Value v;
  v.kind = Kind::Integer;
  v.integer = i;
  return v;
}

Value makeDecimal(long double d, int scale) {
  Value v;
  v.kind = Kind::Decimal;
  v.decimal = d;
  v.scale = static_cast<std::int16_t>(scale);
  return v;
}

Value makeString(std::string s) {
  Value v;
  v.kind = Kind::String;
  v.text = std::move(s);
  return v;
}

Value makeQuantity(long double d, int scale, std::string unit) {
  Value v;
  v.kind = Kind::Quantity;
  v.decimal = d;
  v.scale = static_cast<std::int16_t>(scale);
  v.text = std::move(unit);
  return v;
}

Value makeTemporal(Kind kind, std::string text) {
  Value v;
  v.kind = kind;
  v.text = std::move(text);
  return v;
}

int decimalScale(long double d) {
  char buf[64];
  auto r = std::to_chars(buf, buf + sizeof buf, static_cast<double>(d));
  std::string_view s(buf, static_cast<std::size_t>(r.ptr - buf));
  std::size_t e = s.find_first_of("eE");
  int exp = 0;
  if (e != std::string_view::npos) {
    std::from_chars(s.data() + e + 1, s.data() + s.size(), exp);
    s = s.substr(0, e);
  }
  std::size_t dot = s.find('.');
  int digits = dot == std::string_view::npos ? 0 : static_cast<int>(s.size() - dot - 1);
  return std::max(0, digits - exp);
}

std::string formatDecimal(long double d, int scale) {
  char buf[96];
  std::snprintf(buf, sizeof buf, "%.*Lf", std::clamp(scale, 0, 30), d);
  std::string s(buf);
  if (s == "-0") s = "0";
  return s;
}

bool parseDecimal(std::string_view s, long double& d, int& scale) {
  std::string t(s);
  std::size_t i = 0;
  if (i < t.size() && (t[i] == '+' || t[i] == '-')) ++i;
  std::size_t digits = 0, frac = 0;
  bool dot = false;
  for (; i < t.size(); ++i) {
    if (std::isdigit(static_cast<unsigned char>(t[i]))) {
      ++digits;
      if (dot) ++frac;
    } else if (t[i] == '.' && !dot) {
      dot = true;
    } else {
      return false;
    }
  }
  if (digits == 0 || (dot && frac == 0)) return false;
  d = std::strtold(t.c_str(), nullptr);
  scale = static_cast<int>(frac);
  return true;
}

namespace {

bool number(std::string_view s, std::size_t& i, int n, int& out) {
  if (i + static_cast<std::size_t>(n) > s.size()) return false;
  out = 0;
  for (int k = 0; k < n; ++k) {
    char c = s[i + static_cast<std::size_t>(k)];
    if (c < '0' || c > '9') return false;
    out = out * 10 + (c - '0');
  }
  i += static_cast<std::size_t>(n);
  return true;
}

bool parseTime(std::string_view s, std::size_t& i, DateTimeParts& p) {
  if (!number(s, i, 2, p.hour)) return false;
  p.precision = 4;
  if (i < s.size() && s[i] == ':') {
    ++i;
    if (!number(s, i, 2, p.minute)) return false;
    p.precision = 5;
    if (i < s.size() && s[i] == ':') {
      ++i;
      if (!number(s, i, 2, p.second)) return false;
      p.precision = 6;
      if (i < s.size() && s[i] == '.') {
        ++i;
        std::size_t b = i;
        while (i < s.size() && s[i] >= '0' && s[i] <= '9') ++i;
        if (i == b) return false;
        std::string ms(s.substr(b, std::min<std::size_t>(3, i - b)));
        while (ms.size() < 3) ms += '0';
        p.millis = std::stoi(ms);
        p.precision = 7;
      }
    }
  }
  return p.hour < 24 && p.minute < 60 && p.second < 60;
}

// Shifts a date-time with a time zone to UTC (time zone kept as +00:00).
DateTimeParts toUtc(DateTimeParts p) {
  if (!p.hasTz || p.tzMinutes == 0 || p.precision < 4) return p;
  long long minutes = daysFromCivil(p.year, p.month, p.day) * 1440 + p.hour * 60 + p.minute - p.tzMinutes;
  long long days = minutes >= 0 ? minutes / 1440 : (minutes - 1439) / 1440;
  int rest = static_cast<int>(minutes - days * 1440);
  civilFromDays(days, p.year, p.month, p.day);
  p.hour = rest / 60;
  p.minute = rest % 60;
  p.tzMinutes = 0;
  return p;
}

}  // namespace

long long daysFromCivil(int y, int m, int d) {
  y -= m <= 2;
  const long long era = (y >= 0 ? y : y - 399) / 400;
  const unsigned yoe = static_cast<unsigned>(y - era * 400);
  const unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + static_cast<unsigned>(d) - 1;
  const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + static_cast<long long>(doe) - 719468;
}

void civilFromDays(long long z, int& y, int& m, int& d) {
  z += 719468;
  const long long era = (z >= 0 ? z : z - 146096) / 146097;
  const unsigned doe = static_cast<unsigned>(z - era * 146097);
  const unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
  const long long yy = static_cast<long long>(yoe) + era * 400;
  const unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
  const unsigned mp = (5 * doy + 2) / 153;
  d = static_cast<int>(doy - (153 * mp + 2) / 5 + 1);
  m = static_cast<int>(mp < 10 ? mp + 3 : mp - 9);
  y = static_cast<int>(yy + (m <= 2));
}

bool parseDateTime(std::string_view s, bool time, DateTimeParts& p) {
  p = DateTimeParts{};
  std::size_t i = 0;
  if (time) return parseTime(s, i, p) && i == s.size();
  if (!number(s, i, 4, p.year)) return false;
  p.precision = 1;
  if (i < s.size() && s[i] == '-') {
    ++i;
    if (!number(s, i, 2, p.month) || p.month < 1 || p.month > 12) return false;
    p.precision = 2;
    if (i < s.size() && s[i] == '-') {
      ++i;
      if (!number(s, i, 2, p.day) || p.day < 1 || p.day > 31) return false;
      p.precision = 3;
    }
  }
  if (i < s.size() && s[i] == 'T') {
    if (p.precision != 3) return false;
    ++i;
    if (i == s.size()) return true;
    if (!parseTime(s, i, p)) return false;
    if (i < s.size() && s[i] == 'Z') {
      ++i;
      p.hasTz = true;
    } else if (i < s.size() && (s[i] == '+' || s[i] == '-')) {
      int sign = s[i] == '-' ? -1 : 1;
      ++i;
      int h = 0, m = 0;
      if (!number(s, i, 2, h) || i >= s.size() || s[i] != ':') return false;
      ++i;
      if (!number(s, i, 2, m)) return false;
      p.hasTz = true;
      p.tzMinutes = sign * (h * 60 + m);
    }
  }
  return i == s.size();
}

std::string formatDateTime(const DateTimeParts& p, bool isDate, bool time) {
  char buf[64];
  std::string out;
  if (!time) {
    std::snprintf(buf, sizeof buf, "%04d", p.year);
    out = buf;
    if (p.precision >= 2) {
      std::snprintf(buf, sizeof buf, "-%02d", p.month);
      out += buf;
    }
    if (p.precision >= 3) {
      std::snprintf(buf, sizeof buf, "-%02d", p.day);
      out += buf;
    }
    if (isDate || p.precision < 4) return out;
    out += 'T';
  }
  std::snprintf(buf, sizeof buf, "%02d", p.hour);
  out += buf;
  if (p.precision >= 5) {
    std::snprintf(buf, sizeof buf, ":%02d", p.minute);
    out += buf;
  }
  if (p.precision >= 6) {
    std::snprintf(buf, sizeof buf, ":%02d", p.second);
    out += buf;
  }
  if (p.precision >= 7) {
    std::snprintf(buf, sizeof buf, ".%03d", p.millis);
    out += buf;
  }
  if (!time && p.hasTz) {
    if (p.tzMinutes == 0) {
      out += "+00:00";
    } else {
      int m = std::abs(p.tzMinutes);
      std::snprintf(buf, sizeof buf, "%c%02d:%02d", p.tzMinutes < 0 ? '-' : '+', m / 60, m % 60);
      out += buf;
    }
  }
  return out;
}

bool quantityOf(const Value& v, Value& out) {
  if (v.kind == Kind::Quantity) {
    out = v;
    return true;
  }
  if (!v.isNode || v.kind != Kind::Object) return false;
  std::string_view t = v.fhirType;
  if (t != "Quantity" && t != "Age" && t != "Duration" && t != "Distance" && t != "Count" && t != "SimpleQuantity" &&
      t != "MoneyQuantity")
    return false;
  simdjson::dom::object o;
  if (v.node.get_object().get(o) != simdjson::SUCCESS) return false;
  simdjson::dom::element value;
  if (o.at_key("value").get(value) != simdjson::SUCCESS) return false;
  double d = 0;
  if (value.get_double().get(d) != simdjson::SUCCESS) return false;
  std::string_view unit;
  std::string_view system;
  if (o.at_key("system").get_string().get(system) != simdjson::SUCCESS) system = {};
  // UCUM quantities compare by code; others by their human unit.
  if ((system == "http://unitsofmeasure.org" && o.at_key("code").get_string().get(unit) == simdjson::SUCCESS) ||
      o.at_key("unit").get_string().get(unit) == simdjson::SUCCESS ||
      o.at_key("code").get_string().get(unit) == simdjson::SUCCESS) {
  }
  out = makeQuantity(d, -1, std::string(unit));
  return true;
}

namespace {

bool isTemporal(Kind k) { return k == Kind::Date || k == Kind::DateTime || k == Kind::Time; }
bool isNumber(Kind k) { return k == Kind::Integer || k == Kind::Decimal; }
long double numberOf(const Value& v) {
  return v.kind == Kind::Integer ? static_cast<long double>(v.integer) : v.decimal;
}

// Calendar duration keywords and their UCUM equivalents where FHIRPath treats them as equal
// (weeks and shorter: http://hl7.org/fhirpath/N1/#time-valued-quantities).
std::string_view canonicalUnit(std::string_view u) {
  if (u == "year" || u == "years") return "year";
  if (u == "month" || u == "months") return "month";
  if (u == "week" || u == "weeks" || u == "wk") return "wk";
  if (u == "day" || u == "days" || u == "d") return "d";
  if (u == "hour" || u == "hours" || u == "h") return "h";
  if (u == "minute" || u == "minutes" || u == "min") return "min";
  if (u == "second" || u == "seconds" || u == "s") return "s";
  if (u == "millisecond" || u == "milliseconds" || u == "ms") return "ms";
  return u;
}

// Factor to convert the unit to a base unit of its dimension (only a few common UCUM units).
bool unitFactor(std::string_view u, std::string_view& base, long double& factor) {
  struct U {
    std::string_view unit, base;
    long double factor;
  };
  static constexpr U units[] = {
      {"g", "g", 1},
      {"mg", "g", 1e-3L},
      {"ug", "g", 1e-6L},
      {"kg", "g", 1e3L},
      {"ng", "g", 1e-9L},
      {"m", "m", 1},
      {"cm", "m", 1e-2L},
      {"mm", "m", 1e-3L},
      {"km", "m", 1e3L},
      {"L", "L", 1},
      {"mL", "L", 1e-3L},
      {"dL", "L", 1e-1L},
      {"uL", "L", 1e-6L},
      {"s", "s", 1},
      {"ms", "s", 1e-3L},
      {"min", "s", 60},
      {"h", "s", 3600},
      {"d", "s", 86400},
      {"wk", "s", 604800},
      {"[lb_av]", "g", 453.59237L},
      {"[in_i]", "m", 0.0254L},
  };
  for (const U& x : units)
    if (x.unit == u) {
      base = x.base;
      factor = x.factor;
      return true;
    }
  return false;
}

// Both quantities' values in a common unit; false when the units cannot be compared.
bool commonUnit(const Value& a, const Value& b, long double& x, long double& y, int& scale) {
  std::string_view ua = canonicalUnit(a.text), ub = canonicalUnit(b.text);
  x = a.decimal;
  y = b.decimal;
  scale = std::max(scaleOf(a), scaleOf(b));
  if (ua == ub) return true;
  std::string_view ba, bb;
  long double fa, fb;
  if (!unitFactor(ua, ba, fa) || !unitFactor(ub, bb, fb) || ba != bb) return false;
  x *= fa;
  y *= fb;
  scale += 9;
  return true;
}

bool roundedEqual(long double x, long double y, int scale) {
  // Rounded to `scale` digits, as far as 64-bit integers hold them.
  long double m = std::max(std::fabs(x), std::fabs(y));
  scale = std::min(scale, 18);
  while (scale > 0 && m * std::pow(10.0L, scale) > 9e17L) --scale;
  long double f = std::pow(10.0L, scale);
  if (m * f > 9e17L) return x == y;
  return std::llround(x * f) == std::llround(y * f);
}

// Component-wise comparison of two temporal values: -1/0/1, or nullopt when one is less precise
// than the other and they agree up to the shorter precision.
std::optional<int> compareTemporal(const Value& a, const Value& b) {
  bool timeA = a.kind == Kind::Time, timeB = b.kind == Kind::Time;
  if (timeA != timeB) return std::nullopt;
  DateTimeParts pa, pb;
  if (!parseDateTime(a.str(), timeA, pa) || !parseDateTime(b.str(), timeB, pb)) return std::nullopt;
  if (pa.hasTz && pb.hasTz) {
    pa = toUtc(pa);
    pb = toUtc(pb);
  } else if (pa.hasTz != pb.hasTz && std::min(pa.precision, pb.precision) >= 4) {
    return std::nullopt;  // one is local time, the other is not: unknown
  }
  // Seconds and milliseconds are one precision (http://hl7.org/fhirpath/N1/#datetime-equality).
  int ca = std::min(pa.precision, 6), cb = std::min(pb.precision, 6);
  int common = std::min(ca, cb);
  const int va[] = {pa.year, pa.month, pa.day, pa.hour, pa.minute, pa.second * 1000 + pa.millis};
  const int vb[] = {pb.year, pb.month, pb.day, pb.hour, pb.minute, pb.second * 1000 + pb.millis};
  for (int k = timeA ? 3 : 0; k < common; ++k)
    if (va[k] != vb[k]) return va[k] < vb[k] ? -1 : 1;
  if (ca != cb) return std::nullopt;
  return 0;
}

std::string normalizedSpaces(std::string_view s) {
  std::string out;
  bool space = false;
  for (char c : s) {
    if (c == ' ' || c == '\t' || c == '\r' || c == '\n') {
      space = true;
      continue;
    }
    if (space && !out.empty()) out += ' ';
    space = false;
    out += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  }
  return out;
}

bool jsonEqual(simdjson::dom::element a, simdjson::dom::element b) {
  using simdjson::dom::element_type;
  element_type ta = a.type(), tb = b.type();
  bool numA = ta == element_type::INT64 || ta == element_type::UINT64 || ta == element_type::DOUBLE;
  bool numB = tb == element_type::INT64 || tb == element_type::UINT64 || tb == element_type::DOUBLE;
  if (numA && numB) return double(a.get_double().value_unsafe()) == double(b.get_double().value_unsafe());
  if (ta != tb) return false;
  switch (ta) {
    case element_type::STRING: return a.get_string().value_unsafe() == b.get_string().value_unsafe();
    case element_type::BOOL: return a.get_bool().value_unsafe() == b.get_bool().value_unsafe();
    case element_type::NULL_VALUE: return true;
    case element_type::ARRAY: {
      simdjson::dom::array x = a.get_array().value_unsafe(), y = b.get_array().value_unsafe();
      if (x.size() != y.size()) return false;
      auto i = x.begin(), j = y.begin();
      for (; i != x.end(); ++i, ++j)
        if (!jsonEqual(*i, *j)) return false;
      return true;
    }
    case element_type::OBJECT: {
      simdjson::dom::object x = a.get_object().value_unsafe(), y = b.get_object().value_unsafe();
      if (x.size() != y.size()) return false;
      for (auto field : x) {
        simdjson::dom::element other;
        if (y.at_key(field.key).get(other) != simdjson::SUCCESS || !jsonEqual(field.value, other)) return false;
      }
      return true;
    }
    default: return false;
  }
}

}  // namespace

bool baseUnit(const Value& q, long double& value, std::string& unit) {
  std::string_view base;
  long double factor;
  if (!unitFactor(canonicalUnit(q.text), base, factor)) return false;
  value = q.decimal * factor;
  unit = std::string(base);
  return true;
}

bool unitsComparable(const Value& a, const Value& b) {
  long double x, y;
  int scale;
  return commonUnit(a, b, x, y, scale);
}

std::optional<bool> itemsEqual(const Value& a, const Value& b) {
  if (a.kind == Kind::Object || b.kind == Kind::Object) {
    Value qa, qb;
    if (quantityOf(a, qa) && quantityOf(b, qb)) return itemsEqual(qa, qb);
    if (a.kind != b.kind || !a.isNode || !b.isNode) return false;
    return jsonEqual(a.node, b.node);
  }
  if (isNumber(a.kind) && isNumber(b.kind)) {
    if (a.kind == Kind::Integer && b.kind == Kind::Integer) return a.integer == b.integer;
    return numberOf(a) == numberOf(b) || roundedEqual(numberOf(a), numberOf(b), std::max(scaleOf(a), scaleOf(b)));
  }
  if (isTemporal(a.kind) && isTemporal(b.kind)) {
    if ((a.kind == Kind::Time) != (b.kind == Kind::Time)) return false;
    auto c = compareTemporal(a, b);
    if (!c) return std::nullopt;
    return *c == 0;
  }
  if (a.kind == Kind::Quantity && b.kind == Kind::Quantity) {
    long double x, y;
    int scale;
    std::string_view ua = canonicalUnit(a.text), ub = canonicalUnit(b.text);
    // Calendar years and months are not UCUM's 'a' and 'mo'.
    if ((ua == "year" || ua == "month" || ub == "year" || ub == "month") && ua != ub) return std::nullopt;
    if (!commonUnit(a, b, x, y, scale)) return std::nullopt;
    return roundedEqual(x, y, scale);
  }
  if (a.kind != b.kind) return false;
  switch (a.kind) {
    case Kind::Boolean: return a.boolean == b.boolean;
    case Kind::String: return a.str() == b.str();
    default: return false;
  }
}

bool itemsEquivalent(const Value& a, const Value& b) {
  if (isNumber(a.kind) && isNumber(b.kind)) {
    int scale = std::min(scaleOf(a), scaleOf(b));
    return roundedEqual(numberOf(a), numberOf(b), scale);
  }
  if (a.kind == Kind::String && b.kind == Kind::String) return normalizedSpaces(a.str()) == normalizedSpaces(b.str());
  if (isTemporal(a.kind) && isTemporal(b.kind)) {
    auto c = compareTemporal(a, b);
    return c && *c == 0;
  }
  if (a.kind == Kind::Quantity || b.kind == Kind::Quantity) {
    Value qa, qb;
    if (!quantityOf(a, qa) || !quantityOf(b, qb)) return false;
    long double x, y;
    int scale;
    if (!commonUnit(qa, qb, x, y, scale)) return false;
    return roundedEqual(x, y, std::min(scaleOf(qa), scaleOf(qb)));
  }
  auto e = itemsEqual(a, b);
  return e && *e;
}

std::optional<int> compareItems(const Value& a, const Value& b, bool& ok) {
  ok = true;
  if (isNumber(a.kind) && isNumber(b.kind)) {
    long double x = numberOf(a), y = numberOf(b);
    return x < y ? -1 : x > y ? 1 : 0;
  }
  if (a.kind == Kind::String && b.kind == Kind::String) {
    int c = a.str().compare(b.str());
    return c < 0 ? -1 : c > 0 ? 1 : 0;
  }
  if (isTemporal(a.kind) && isTemporal(b.kind) && (a.kind == Kind::Time) == (b.kind == Kind::Time))
    return compareTemporal(a, b);
  Value qa, qb;
  if (quantityOf(a, qa) && quantityOf(b, qb)) {
    long double x, y;
    int scale;
    if (!commonUnit(qa, qb, x, y, scale)) return std::nullopt;
    return x < y ? -1 : x > y ? 1 : 0;
  }
  ok = false;
  return std::nullopt;
}

std::string toText(const Value& v) {
  switch (v.kind) {
    case Kind::Boolean: return v.boolean ? "true" : "false";
    case Kind::Integer: return std::to_string(v.integer);
    case Kind::Decimal: return formatDecimal(v.decimal, scaleOf(v));
    case Kind::String:
    case Kind::Date:
    case Kind::DateTime:
    case Kind::Time: return std::string(v.str());
    case Kind::Quantity: {
      std::string_view u = v.text;
      bool calendar = canonicalUnit(u) != u || u == "year" || u == "month";
      if (u == "d" || u == "h" || u == "s" || u == "ms" || u == "min" || u == "wk") calendar = false;
      return formatDecimal(v.decimal, scaleOf(v)) + " " + (calendar ? std::string(u) : "'" + std::string(u) + "'");
    }
    case Kind::Object: {
      Value q;
      if (quantityOf(v, q)) return toText(q);
      return "";
    }
    case Kind::Empty: return "";
  }
  return "";
}

}  // namespace passerelle::fhir::fhirpath
