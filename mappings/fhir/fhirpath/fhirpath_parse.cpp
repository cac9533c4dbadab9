// The FHIRPath N1 grammar (http://hl7.org/fhirpath/N1/grammar.html): a hand-written lexer and a
// precedence-climbing parser. Function names are resolved here, so that an unknown function is a
// compile error rather than a surprise at evaluation.
#include <cctype>
#include <charconv>
#include <unordered_map>

#include "mappings/fhir/fhirpath/fhirpath_internal.h"

namespace passerelle::fhir::fhirpath {

namespace {

enum class Tok : std::uint8_t { End, Ident, QuotedIdent, String, Number, DateTime, Time, Constant, Special, Symbol };

struct Token {
  Tok kind = Tok::End;
  std::string text;  // identifier (unquoted), string (unescaped), number, date text, symbol
  std::size_t pos = 0;
};

bool identStart(char c) { return std::isalpha(static_cast<unsigned char>(c)) || c == '_'; }
bool identChar(char c) { return std::isalnum(static_cast<unsigned char>(c)) || c == '_'; }
bool digit(char c) { return c >= '0' && c <= '9'; }

class Lexer {
 public:
  explicit Lexer(std::string_view s) : s_(s) {}

  bool next(Token& t, std::string& error) {
    if (!skipBlanks(error)) return false;
    t = Token{};
    t.pos = i_;
    if (i_ >= s_.size()) return true;
    char c = s_[i_];
    if (identStart(c)) {
      std::size_t b = i_;
      while (i_ < s_.size() && identChar(s_[i_])) ++i_;
      t.kind = Tok::Ident;
      t.text = std::string(s_.substr(b, i_ - b));
      return true;
    }
    if (c == '`' || c == '\'') {
      t.kind = c == '`' ? Tok::QuotedIdent : Tok::String;
      return quoted(c, t.text, error);
    }
    if (digit(c)) {
      std::size_t b = i_;
      while (i_ < s_.size() && digit(s_[i_])) ++i_;
      if (i_ + 1 < s_.size() && s_[i_] == '.' && digit(s_[i_ + 1])) {
        ++i_;
        while (i_ < s_.size() && digit(s_[i_])) ++i_;
      }
      t.kind = Tok::Number;
      t.text = std::string(s_.substr(b, i_ - b));
      return true;
    }
    if (c == '@') {
      ++i_;
      return dateTime(t, error);
    }
    if (c == '%') {
      ++i_;
      t.kind = Tok::Constant;
      if (i_ < s_.size() && (s_[i_] == '`' || s_[i_] == '\'')) return quoted(s_[i_], t.text, error);
      std::size_t b = i_;
      while (i_ < s_.size() && (identChar(s_[i_]) || s_[i_] == '-')) ++i_;
      if (b == i_) return fail("a name after %", error);
      t.text = std::string(s_.substr(b, i_ - b));
      return true;
    }
    if (c == '$') {
      std::size_t b = ++i_;
      while (i_ < s_.size() && identChar(s_[i_])) ++i_;
      t.kind = Tok::Special;
      t.text = std::string(s_.substr(b, i_ - b));
      if (t.text != "this" && t.text != "index" && t.text != "total") return fail("unknown $" + t.text, error);
      return true;
    }
    static constexpr std::string_view two[] = {"!=", "!~", "<=", ">="};
    for (std::string_view op : two) {
      if (s_.substr(i_, 2) == op) {
        t.kind = Tok::Symbol;
        t.text = std::string(op);
        i_ += 2;
        return true;
      }
    }
    if (std::string_view(".[](),+-*/&|=~<>{}").find(c) != std::string_view::npos) {
      t.kind = Tok::Symbol;
      t.text = std::string(1, c);
      ++i_;
      return true;
    }
    return fail(std::string("unexpected character '") + c + "'", error);
  }

 private:
  bool fail(const std::string& what, std::string& error) {
    error = what + " at offset " + std::to_string(i_);
    return false;
  }

  bool skipBlanks(std::string& error) {
    while (i_ < s_.size()) {
      char c = s_[i_];
      if (c == ' ' || c == '\t' || c == '\r' || c == '\n') {
        ++i_;
      } else if (s_.substr(i_, 2) == "//") {
        while (i_ < s_.size() && s_[i_] != '\n') ++i_;
      } else if (s_.substr(i_, 2) == "/*") {
        std::size_t end = s_.find("*/", i_ + 2);
        if (end == std::string_view::npos) return fail("unterminated comment", error);
        i_ = end + 2;
      } else {
        break;
      }
    }
    return true;
  }

  static void appendUtf8(std::string& out, unsigned cp) {
    if (cp < 0x80) {
      out += static_cast<char>(cp);
    } else if (cp < 0x800) {
      out += static_cast<char>(0xC0 | (cp >> 6));
      out += static_cast<char>(0x80 | (cp & 0x3F));
    } else {
      out += static_cast<char>(0xE0 | (cp >> 12));
      out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
      out += static_cast<char>(0x80 | (cp & 0x3F));
    }
  }

  bool quoted(char q, std::string& out, std::string& error) {
    ++i_;
    while (i_ < s_.size() && s_[i_] != q) {
      char c = s_[i_++];
      if (c != '\\') {
        out += c;
        continue;
      }
      if (i_ >= s_.size()) break;
      char e = s_[i_++];
      switch (e) {
        case 't': out += '\t'; break;
        case 'n': out += '\n'; break;
        case 'r': out += '\r'; break;
        case 'f': out += '\f'; break;
        case 'u': {
          unsigned cp = 0;
          if (i_ + 4 > s_.size() ||
              std::from_chars(s_.data() + i_, s_.data() + i_ + 4, cp, 16).ptr != s_.data() + i_ + 4)
            return fail("bad \\u escape", error);
          i_ += 4;
          appendUtf8(out, cp);
          break;
        }
        default: out += e;  // \' \" \` \\ \/
      }
    }
    if (i_ >= s_.size()) return fail("unterminated string", error);
    ++i_;
    return true;
  }

  // After '@': a date or date-time (YYYY[-MM[-DD]][T[hh[:mm[:ss[.fff]]]]][Z|+hh:mm]) or a time (Thh...).
  bool dateTime(Token& t, std::string& error) {
    std::size_t b = i_;
    auto digits = [&](int n) {
      for (int k = 0; k < n; ++k)
        if (i_ + k >= s_.size() || !digit(s_[i_ + k])) return false;
      i_ += n;
      return true;
    };
    auto timePart = [&]() {
      if (!digits(2)) return false;
      if (i_ + 2 < s_.size() && s_[i_] == ':' && digit(s_[i_ + 1])) {
        ++i_;
        if (!digits(2)) return false;
        if (i_ + 2 < s_.size() && s_[i_] == ':' && digit(s_[i_ + 1])) {
          ++i_;
          if (!digits(2)) return false;
          if (i_ + 1 < s_.size() && s_[i_] == '.' && digit(s_[i_ + 1])) {
            ++i_;
            while (i_ < s_.size() && digit(s_[i_])) ++i_;
          }
        }
      }
      return true;
    };
    if (i_ < s_.size() && s_[i_] == 'T') {
      ++i_;
      if (!timePart()) return fail("bad time literal", error);
      t.kind = Tok::Time;
      t.text = std::string(s_.substr(b + 1, i_ - b - 1));
      return true;
    }
    if (!digits(4)) return fail("bad date literal", error);
    if (i_ + 1 < s_.size() && s_[i_] == '-' && digit(s_[i_ + 1])) {
      ++i_;
      if (!digits(2)) return fail("bad date literal", error);
      if (i_ + 1 < s_.size() && s_[i_] == '-' && digit(s_[i_ + 1])) {
        ++i_;
        if (!digits(2)) return fail("bad date literal", error);
      }
    }
    t.kind = Tok::DateTime;
    if (i_ < s_.size() && s_[i_] == 'T') {
      ++i_;
      if (i_ < s_.size() && digit(s_[i_])) {
        if (!timePart()) return fail("bad date-time literal", error);
        if (i_ < s_.size() && s_[i_] == 'Z') {
          ++i_;
        } else if (i_ + 5 < s_.size() + 0 && (s_[i_] == '+' || s_[i_] == '-') && digit(s_[i_ + 1]) &&
                   digit(s_[i_ + 2]) && s_[i_ + 3] == ':') {
          i_ += 4;
          if (!digits(2)) return fail("bad time zone", error);
        }
      }
      t.text = std::string(s_.substr(b, i_ - b));
      if (t.text.back() == 'T') t.text.pop_back();
      t.text.insert(0, "T");  // marks a DateTime (a Date has no 'T')
      return true;
    }
    t.text = std::string(s_.substr(b, i_ - b));
    return true;
  }

  std::string_view s_;
  std::size_t i_ = 0;
};

const std::unordered_map<std::string_view, Fn>& functionNames() {
  static const std::unordered_map<std::string_view, Fn> names = {
      {"empty", Fn::Empty},
      {"exists", Fn::Exists},
      {"all", Fn::All},
      {"allTrue", Fn::AllTrue},
      {"anyTrue", Fn::AnyTrue},
      {"allFalse", Fn::AllFalse},
      {"anyFalse", Fn::AnyFalse},
      {"subsetOf", Fn::SubsetOf},
      {"supersetOf", Fn::SupersetOf},
      {"count", Fn::Count},
      {"distinct", Fn::Distinct},
      {"isDistinct", Fn::IsDistinct},
      {"where", Fn::Where},
      {"select", Fn::Select},
      {"repeat", Fn::Repeat},
      {"ofType", Fn::OfType},
      {"single", Fn::Single},
      {"first", Fn::First},
      {"last", Fn::Last},
      {"tail", Fn::Tail},
      {"skip", Fn::Skip},
      {"take", Fn::Take},
      {"intersect", Fn::Intersect},
      {"exclude", Fn::Exclude},
      {"union", Fn::Union},
      {"combine", Fn::Combine},
      {"iif", Fn::Iif},
      {"toBoolean", Fn::ToBoolean},
      {"convertsToBoolean", Fn::ConvertsToBoolean},
      {"toInteger", Fn::ToInteger},
      {"convertsToInteger", Fn::ConvertsToInteger},
      {"toDecimal", Fn::ToDecimal},
      {"convertsToDecimal", Fn::ConvertsToDecimal},
      {"toString", Fn::ToString},
      {"convertsToString", Fn::ConvertsToString},
      {"toDate", Fn::ToDate},
      {"convertsToDate", Fn::ConvertsToDate},
      {"toDateTime", Fn::ToDateTime},
      {"convertsToDateTime", Fn::ConvertsToDateTime},
      {"toTime", Fn::ToTime},
      {"convertsToTime", Fn::ConvertsToTime},
      {"toQuantity", Fn::ToQuantity},
      {"convertsToQuantity", Fn::ConvertsToQuantity},
      {"indexOf", Fn::IndexOf},
      {"substring", Fn::Substring},
      {"startsWith", Fn::StartsWith},
      {"endsWith", Fn::EndsWith},
      {"contains", Fn::ContainsStr},
      {"upper", Fn::Upper},
      {"lower", Fn::Lower},
      {"replace", Fn::Replace},
      {"matches", Fn::Matches},
      {"replaceMatches", Fn::ReplaceMatches},
      {"length", Fn::Length},
      {"toChars", Fn::ToChars},
      {"trim", Fn::Trim},
      {"split", Fn::Split},
      {"join", Fn::Join},
      {"abs", Fn::Abs},
      {"ceiling", Fn::Ceiling},
      {"exp", Fn::Exp},
      {"floor", Fn::Floor},
      {"ln", Fn::Ln},
      {"log", Fn::Log},
      {"power", Fn::Power},
      {"round", Fn::Round},
      {"sqrt", Fn::Sqrt},
      {"truncate", Fn::Truncate},
      {"children", Fn::Children},
      {"descendants", Fn::Descendants},
      {"trace", Fn::Trace},
      {"now", Fn::Now},
      {"today", Fn::Today},
      {"timeOfDay", Fn::TimeOfDay},
      {"not", Fn::Not},
      {"is", Fn::Is},
      {"as", Fn::As},
      {"extension", Fn::Extension},
      {"hasValue", Fn::HasValue},
      {"resolve", Fn::Resolve},
      {"htmlChecks", Fn::HtmlChecks},
      {"conformsTo", Fn::ConformsTo},
      {"memberOf", Fn::MemberOf},
      {"getValue", Fn::GetValue},
      {"aggregate", Fn::Aggregate},
      {"type", Fn::Type},
      {"sort", Fn::Sort},
      {"precision", Fn::Precision},
      {"comparable", Fn::Comparable},
      {"lowBoundary", Fn::LowBoundary},
      {"highBoundary", Fn::HighBoundary},
      {"matchesFull", Fn::MatchesFull},
      {"encode", Fn::Encode},
      {"decode", Fn::Decode},
      {"escape", Fn::Escape},
      {"unescape", Fn::Unescape},
  };
  return names;
}

// How many arguments a function takes (at least, at most).
std::pair<std::size_t, std::size_t> arity(Fn f) {
  switch (f) {
    case Fn::Exists:
    case Fn::Round:
    case Fn::Join:
    case Fn::ToQuantity:
    case Fn::ConvertsToQuantity:
    case Fn::LowBoundary:
    case Fn::HighBoundary: return {0, 1};
    case Fn::All:
    case Fn::SubsetOf:
    case Fn::SupersetOf:
    case Fn::Where:
    case Fn::Select:
    case Fn::Repeat:
    case Fn::OfType:
    case Fn::Is:
    case Fn::As:
    case Fn::Skip:
    case Fn::Take:
    case Fn::Intersect:
    case Fn::Exclude:
    case Fn::Union:
    case Fn::Combine:
    case Fn::IndexOf:
    case Fn::StartsWith:
    case Fn::EndsWith:
    case Fn::ContainsStr:
    case Fn::Matches:
    case Fn::MatchesFull:
    case Fn::Split:
    case Fn::Log:
    case Fn::Power:
    case Fn::Extension:
    case Fn::ConformsTo:
    case Fn::MemberOf:
    case Fn::Comparable:
    case Fn::Encode:
    case Fn::Decode:
    case Fn::Escape:
    case Fn::Unescape: return {1, 1};
    case Fn::Substring:
    case Fn::Trace:
    case Fn::Aggregate: return {1, 2};
    case Fn::Replace:
    case Fn::ReplaceMatches: return {2, 2};
    case Fn::Iif: return {2, 3};
    case Fn::Sort: return {0, 16};
    default: return {0, 0};
  }
}

bool calendarUnit(std::string_view s) {
  static constexpr std::string_view units[] = {"year",   "years",   "month",       "months",      "week",   "weeks",
                                               "day",    "days",    "hour",        "hours",       "minute", "minutes",
                                               "second", "seconds", "millisecond", "milliseconds"};
  for (std::string_view u : units)
    if (s == u) return true;
  return false;
}

class Parser {
 public:
  Parser(std::string_view text, std::string& error) : lex_(text), error_(error) {}

  std::unique_ptr<Node> run() {
    if (!advance()) return nullptr;
    auto n = expression(0);
    if (!n) return nullptr;
    if (tok_.kind != Tok::End) return fail("unexpected '" + tok_.text + "'");
    return n;
  }

 private:
  std::unique_ptr<Node> fail(const std::string& what) {
    if (error_.empty()) error_ = what + " at offset " + std::to_string(tok_.pos);
    return nullptr;
  }

  bool advance() { return lex_.next(tok_, error_); }
  bool isSymbol(std::string_view s) const { return tok_.kind == Tok::Symbol && tok_.text == s; }
  bool expectSymbol(std::string_view s) {
    if (!isSymbol(s)) {
      fail("expected '" + std::string(s) + "'");
      return false;
    }
    return advance();
  }

  // The binary operator at the current token, with its precedence (higher binds tighter); 0: none.
  int binary(Op& op) const {
    if (tok_.kind == Tok::Symbol) {
      static const std::pair<std::string_view, std::pair<Op, int>> symbols[] = {
          {"*", {Op::Mul, 10}},   {"/", {Op::Div, 10}},     {"+", {Op::Add, 9}}, {"-", {Op::Sub, 9}},
          {"&", {Op::Concat, 9}}, {"|", {Op::Union, 7}},    {"<", {Op::Lt, 6}},  {">", {Op::Gt, 6}},
          {"<=", {Op::Le, 6}},    {">=", {Op::Ge, 6}},      {"=", {Op::Eq, 5}},  {"~", {Op::Equiv, 5}},
          {"!=", {Op::Ne, 5}},    {"!~", {Op::NotEquiv, 5}}};
      for (const auto& s : symbols)
        if (tok_.text == s.first) {
          op = s.second.first;
          return s.second.second;
        }
      return 0;
    }
    if (tok_.kind != Tok::Ident) return 0;
    static const std::pair<std::string_view, std::pair<Op, int>> words[] = {
        {"div", {Op::IntDiv, 10}}, {"mod", {Op::Mod, 10}},          {"is", {Op::Is, 8}},   {"as", {Op::As, 8}},
        {"in", {Op::In, 4}},       {"contains", {Op::Contains, 4}}, {"and", {Op::And, 3}}, {"or", {Op::Or, 2}},
        {"xor", {Op::Xor, 2}},     {"implies", {Op::Implies, 1}}};
    for (const auto& w : words)
      if (tok_.text == w.first) {
        op = w.second.first;
        return w.second.second;
      }
    return 0;
  }

  std::unique_ptr<Node> expression(int minPrec) {
    auto left = unary();
    if (!left) return nullptr;
    for (;;) {
      Op op;
      int prec = binary(op);
      if (prec == 0 || prec < minPrec) break;
      if (!advance()) return nullptr;
      auto n = std::make_unique<Node>();
      n->op = op;
      n->args.push_back(std::move(left));
      if (op == Op::Is || op == Op::As) {
        if (!typeSpecifier(n->type)) return nullptr;
      } else {
        auto right = expression(prec + 1);
        if (!right) return nullptr;
        n->args.push_back(std::move(right));
      }
      left = std::move(n);
    }
    return left;
  }

  bool identifierToken(std::string& out) {
    if (tok_.kind != Tok::Ident && tok_.kind != Tok::QuotedIdent) {
      fail("expected an identifier");
      return false;
    }
    out = tok_.text;
    return advance();
  }

  bool typeSpecifier(TypeSpec& t) {
    std::string first;
    if (!identifierToken(first)) return false;
    if (isSymbol(".")) {
      if (!advance()) return false;
      t.ns = first;
      return identifierToken(t.name);
    }
    t.name = first;
    return true;
  }

  std::unique_ptr<Node> unary() {
    if (isSymbol("-") || isSymbol("+")) {
      bool minus = tok_.text == "-";
      if (!advance()) return nullptr;
      auto operand = unary();
      if (!operand) return nullptr;
      auto n = std::make_unique<Node>();
      n->op = minus ? Op::Negate : Op::Plus;
      n->args.push_back(std::move(operand));
      return n;
    }
    auto n = term();
    while (n) {
      if (isSymbol(".")) {
        if (!advance()) return nullptr;
        auto inv = invocation();
        if (!inv) return nullptr;
        inv->target = std::move(n);
        n = std::move(inv);
      } else if (isSymbol("[")) {
        if (!advance()) return nullptr;
        auto index = expression(0);
        if (!index || !expectSymbol("]")) return nullptr;
        auto ix = std::make_unique<Node>();
        ix->op = Op::Indexer;
        ix->args.push_back(std::move(n));
        ix->args.push_back(std::move(index));
        n = std::move(ix);
      } else {
        break;
      }
    }
    return n;
  }

  // An identifier or a function call (after '.', or as a term).
  std::unique_ptr<Node> invocation() {
    auto n = std::make_unique<Node>();
    if (tok_.kind == Tok::Special) {
      n->op = tok_.text == "this" ? Op::This : tok_.text == "index" ? Op::Index : Op::Total;
      if (!advance()) return nullptr;
      return n;
    }
    bool quotedName = tok_.kind == Tok::QuotedIdent;
    if (!identifierToken(n->name)) return nullptr;
    if (!quotedName && isSymbol("(")) {
      if (!advance()) return nullptr;
      auto it = functionNames().find(n->name);
      if (it == functionNames().end()) return fail("unknown function '" + n->name + "'");
      n->op = Op::Function;
      n->fn = it->second;
      if (!isSymbol(")")) {
        for (;;) {
          auto arg = expression(0);
          if (!arg) return nullptr;
          n->args.push_back(std::move(arg));
          if (isSymbol(",")) {
            if (!advance()) return nullptr;
            continue;
          }
          break;
        }
      }
      if (!expectSymbol(")")) return nullptr;
      auto counts = arity(n->fn);
      if (n->args.size() < counts.first || n->args.size() > counts.second)
        return fail(n->name + "() takes " +
                    (counts.first == counts.second
                         ? std::to_string(counts.first)
                         : std::to_string(counts.first) + " to " + std::to_string(counts.second)) +
                    " argument(s)");
      if (n->fn == Fn::Is || n->fn == Fn::As || n->fn == Fn::OfType) {
        // The argument is a type specifier, written as an identifier or a qualified one.
        if (n->args.size() != 1) return fail(n->name + "() takes one type");
        Node* a = n->args[0].get();
        if (a->op == Op::Member && !a->target) {
          n->type.name = a->name;
        } else if (a->op == Op::Member && a->target && a->target->op == Op::Member && !a->target->target) {
          n->type.ns = a->target->name;
          n->type.name = a->name;
        } else {
          return fail(n->name + "() takes a type name");
        }
        n->args.clear();
      }
      return n;
    }
    n->op = Op::Member;
    return n;
  }

  std::unique_ptr<Node> term() {
    auto n = std::make_unique<Node>();
    switch (tok_.kind) {
      case Tok::End: return fail("unexpected end of expression");
      case Tok::String: n->literal = makeString(tok_.text); return advance() ? std::move(n) : nullptr;
      case Tok::Number: {
        std::string number = tok_.text;
        if (!advance()) return nullptr;
        bool isDecimal = number.find('.') != std::string::npos;
        std::string unit;
        if (tok_.kind == Tok::String || (tok_.kind == Tok::Ident && calendarUnit(tok_.text))) {
          unit = tok_.text;
          if (!advance()) return nullptr;
          long double d;
          int scale;
          parseDecimal(number, d, scale);
          n->literal = makeQuantity(d, scale, unit);
          return n;
        }
        if (isDecimal) {
          long double d;
          int scale;
          parseDecimal(number, d, scale);
          n->literal = makeDecimal(d, scale);
        } else {
          std::int64_t i = 0;
          auto r = std::from_chars(number.data(), number.data() + number.size(), i);
          if (r.ec != std::errc()) {
            long double d;
            int scale;
            parseDecimal(number, d, scale);
            n->literal = makeDecimal(d, 0);
          } else {
            n->literal = makeInteger(i);
          }
        }
        return n;
      }
      case Tok::DateTime: {
        bool isDateTime = tok_.text[0] == 'T';
        std::string text = isDateTime ? tok_.text.substr(1) : tok_.text;
        DateTimeParts p;
        if (!parseDateTime(text, false, p)) return fail("bad date literal");
        n->literal = makeTemporal(isDateTime ? Kind::DateTime : Kind::Date, text);
        return advance() ? std::move(n) : nullptr;
      }
      case Tok::Time: {
        DateTimeParts p;
        if (!parseDateTime(tok_.text, true, p)) return fail("bad time literal");
        n->literal = makeTemporal(Kind::Time, tok_.text);
        return advance() ? std::move(n) : nullptr;
      }
      case Tok::Constant:
        n->op = Op::Constant;
        n->name = tok_.text;
        return advance() ? std::move(n) : nullptr;
      case Tok::Symbol:
        if (isSymbol("(")) {
          if (!advance()) return nullptr;
          auto inner = expression(0);
          if (!inner || !expectSymbol(")")) return nullptr;
          return inner;
        }
        if (isSymbol("{")) {
          if (!advance() || !expectSymbol("}")) return nullptr;
          return n;  // the empty collection
        }
        return fail("unexpected '" + tok_.text + "'");
      case Tok::Ident:
        if (tok_.text == "true" || tok_.text == "false") {
          n->literal = makeBoolean(tok_.text == "true");
          return advance() ? std::move(n) : nullptr;
        }
        return invocation();
      case Tok::QuotedIdent:
      case Tok::Special: return invocation();
    }
    return fail("unexpected token");
  }

  Lexer lex_;
  Token tok_;
  std::string& error_;
};

}  // namespace

std::unique_ptr<Node> parse(std::string_view text, std::string& error) {
  error.clear();
  Parser p(text, error);
  auto n = p.run();
  if (!n && error.empty()) error = "syntax error";
  return n;
}

}  // namespace passerelle::fhir::fhirpath
