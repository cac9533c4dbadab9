// What the parser, the evaluator and the value helpers of the FHIRPath engine share.
#pragma once

#include <atomic>
#include <memory>
#include <optional>
#include <regex>
#include <string>
#include <string_view>
#include <vector>

#include "mappings/fhir/fhirpath/fhirpath.h"

namespace passerelle::fhir::fhirpath {

enum class Op : std::uint8_t {
  Literal,   // literal (kind Empty: {})
  Member,    // name, on target or on $this
  Function,  // name(args), on target or on $this
  This,
  Index,
  Total,
  Constant,  // %name
  Indexer,   // args[0][args[1]]
  Negate,
  Plus,  // unary +
  Mul,
  Div,
  IntDiv,
  Mod,
  Add,
  Sub,
  Concat,
  Is,
  As,  // args[0] is/as type
  Union,
  Lt,
  Gt,
  Le,
  Ge,
  Eq,
  Equiv,
  Ne,
  NotEquiv,
  In,
  Contains,
  And,
  Or,
  Xor,
  Implies,
};

enum class Fn : std::uint8_t {
  None,
  Empty,
  Exists,
  All,
  AllTrue,
  AnyTrue,
  AllFalse,
  AnyFalse,
  SubsetOf,
  SupersetOf,
  Count,
  Distinct,
  IsDistinct,
  Where,
  Select,
  Repeat,
  OfType,
  Single,
  First,
  Last,
  Tail,
  Skip,
  Take,
  Intersect,
  Exclude,
  Union,
  Combine,
  Iif,
  ToBoolean,
  ConvertsToBoolean,
  ToInteger,
  ConvertsToInteger,
  ToDecimal,
  ConvertsToDecimal,
  ToString,
  ConvertsToString,
  ToDate,
  ConvertsToDate,
  ToDateTime,
  ConvertsToDateTime,
  ToTime,
  ConvertsToTime,
  ToQuantity,
  ConvertsToQuantity,
  IndexOf,
  Substring,
  StartsWith,
  EndsWith,
  ContainsStr,
  Upper,
  Lower,
  Replace,
  Matches,
  ReplaceMatches,
  Length,
  ToChars,
  Trim,
  Split,
  Join,
  Abs,
  Ceiling,
  Exp,
  Floor,
  Ln,
  Log,
  Power,
  Round,
  Sqrt,
  Truncate,
  Children,
  Descendants,
  Trace,
  Now,
  Today,
  TimeOfDay,
  Not,
  Is,
  As,
  Extension,
  HasValue,
  Resolve,
  HtmlChecks,
  ConformsTo,
  MemberOf,
  GetValue,
  Aggregate,
  Type,
  // FHIRPath 2.0 additions the R4 test suite also uses.
  Sort,
  Precision,
  Comparable,
  LowBoundary,
  HighBoundary,
  MatchesFull,
  Encode,
  Decode,
  Escape,
  Unescape,
};

struct TypeSpec {
  std::string ns;    // "FHIR", "System" or empty
  std::string name;  // "Quantity", "string"
  // Resolved once at compile time.
  bool system = false;  // a System type (systemKind)
  bool fhir = false;    // a FHIR type
  Kind systemKind = Kind::Empty;
};

struct Node {
  Op op = Op::Literal;
  Fn fn = Fn::None;
  std::string name;       // member, function or constant name
  bool pathRoot = false;  // Member: the first name of a path, evaluated on the focus itself
  TypeSpec type;          // is/as operators, is()/as()/ofType()
  Value literal;
  std::unique_ptr<Node> target;             // Member and Function: the input (null: $this)
  std::vector<std::unique_ptr<Node>> args;  // function arguments, operands
  // Member: where `name` was last found (type index, how, element index), so that evaluating again
  // on the same type skips the lookups. Any thread may refresh it; a stale value is only a miss.
  mutable std::atomic<std::uint64_t> memberCache{~std::uint64_t{0}};
  // matches(), matchesFull(), replaceMatches() with a literal pattern, compiled with the expression:
  // `regex` as written (matchesFull, replaceMatches), `containsRegex` as a whole match of any string
  // that contains a match (matches, replaceMatches).
  std::unique_ptr<const std::regex> regex;
  std::unique_ptr<const std::regex> containsRegex;
};

// Parses `text` into an AST; null with `error` on a syntax error.
std::unique_ptr<Node> parse(std::string_view text, std::string& error);

// Date, DateTime and Time values broken into their parts. Precision: 1 year, 2 month, 3 day,
// 4 hour, 5 minute, 6 second, 7 millisecond (Time: 4 to 7).
struct DateTimeParts {
  int year = 0, month = 1, day = 1, hour = 0, minute = 0, second = 0, millis = 0;
  int precision = 0;
  bool hasTz = false;
  int tzMinutes = 0;
};
// Parses the text of a Date/DateTime ("2014-01-01T10:00:00.123+02:00", "2014-01") or a Time
// ("10:00"); false when it is not one.
bool parseDateTime(std::string_view s, bool time, DateTimeParts& out);
std::string formatDateTime(const DateTimeParts& p, bool isDate, bool time);
// Days since 1970-01-01 of a proleptic Gregorian date, and back.
long long daysFromCivil(int y, int m, int d);
void civilFromDays(long long z, int& y, int& m, int& d);

// Digits after the point of a decimal's shortest text.
int decimalScale(long double d);
// Digits after the point of a Decimal or Quantity (JSON numbers get theirs on first need: -1 until then).
inline int scaleOf(const Value& v) {
  if (v.kind == Kind::Integer) return 0;
  return v.scale >= 0 ? v.scale : decimalScale(v.decimal);
}
std::string formatDecimal(long double d, int scale);
// The decimal of a literal or string ("1.50" gives 1.5 with scale 2); false when it is not one.
bool parseDecimal(std::string_view s, long double& d, int& scale);

// Item equality (=) and equivalence (~); nullopt: empty (incomparable precisions).
std::optional<bool> itemsEqual(const Value& a, const Value& b);
bool itemsEquivalent(const Value& a, const Value& b);
// Ordering of two items: -1, 0, 1; nullopt: empty; false in `ok` when they cannot be compared.
std::optional<int> compareItems(const Value& a, const Value& b, bool& ok);

// Whether two quantities' units can be converted into each other (same unit, or the same dimension
// among the UCUM units known here).
bool unitsComparable(const Value& a, const Value& b);
// A quantity in the base unit of its dimension (g, m, L, s); false for other units.
bool baseUnit(const Value& q, long double& value, std::string& unit);

// A FHIR Quantity node (Quantity, Age, Duration...) as a System Quantity; false when not one.
bool quantityOf(const Value& v, Value& out);

Value makeBoolean(bool b);
Value makeInteger(std::int64_t i);
Value makeDecimal(long double d, int scale);
Value makeString(std::string s);
Value makeQuantity(long double d, int scale, std::string unit);
Value makeTemporal(Kind kind, std::string text);

}  // namespace passerelle::fhir::fhirpath
