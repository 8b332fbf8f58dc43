// Math answer verification (see the header for the pipeline).
#include "grpo/reward/math_verify.h"

#include "math_text.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <functional>
#include <map>
#include <set>
#include <vector>

namespace grpo::reward::math {
using namespace detail;
namespace {

using Clock = std::chrono::steady_clock;
struct Timeout {};
struct ParseError {};

constexpr size_t kMaxAnswerChars = 2000;
constexpr int kMaxDepth = 100;

// Unwraps \cmd{X} -> X for every occurrence of cmd.
void unwrap(std::string& s, const char* cmd, const std::string& before = "", const std::string& after = "") {
  const std::string c(cmd);
  for (size_t p = s.find(c); p != std::string::npos; p = s.find(c, p)) {
    size_t q = p + c.size();
    if (q < s.size() && std::isalpha(static_cast<unsigned char>(s[q]))) {  // \textbf vs \text
      ++p;
      continue;
    }
    while (q < s.size() && s[q] == ' ') ++q;
    size_t end = 0;
    auto body = braced(s, q, &end);
    if (!body) {
      s.erase(p, q - p);  // \mathrm x
      continue;
    }
    s.replace(p, end - p, before + *body + after);
  }
}

}  // namespace

std::string normalize_answer(const std::string& answer) {
  std::string s = answer.size() > kMaxAnswerChars ? answer.substr(0, kMaxAnswerChars) : answer;
  if (trim(s).empty()) return "";
  // Unicode spellings
  for (auto [a, b] : std::vector<std::pair<const char*, const char*>>{
           {"√", "\\sqrt"}, {"π", "\\pi"}, {"∞", "\\infty"}, {"×", "\\times"}, {"·", "\\cdot"}, {"−", "-"},
           {"≤", "\\le "}, {"≥", "\\ge "}, {"≠", "\\ne "}, {"°", ""}, {"±", "\\pm "}, {"∪", "\\cup "},
           {"²", "^2"}, {"³", "^3"}, {"€", ""}, {"£", ""}})
    replace_all(s, a, b);
  for (const char* c : {"\\dfrac", "\\tfrac", "\\cfrac"}) replace_all(s, c, "\\frac");
  // a JSON/Python-escaped answer (\\frac{1}{2}, \\left( ) writes commands with two backslashes; a real row
  // break is never followed directly by one of these names (\\\frac is a row break, then \frac)
  for (size_t p = s.find("\\\\"); p != std::string::npos; p = s.find("\\\\", p + 1)) {
    static const std::set<std::string> cmds{"frac", "left", "right", "le", "leq", "ge", "geq", "lt", "gt", "sqrt",
                                            "pi", "cdot", "times", "infty", "pm", "in", "cup", "text", "boxed",
                                            "mathbf", "neq", "ne", "circ", "div", "log", "ln", "sin", "cos", "tan"};
    size_t e = p + 2;
    while (e < s.size() && std::isalpha(static_cast<unsigned char>(s[e]))) ++e;
    if (e > p + 2 && (p == 0 || s[p - 1] != '\\') && cmds.count(s.substr(p + 2, e - p - 2))) s.erase(p, 1);
  }
  replace_all(s, "\\\\", "\x02");  // matrix row separators survive the spacing rules below
  replace_all(s, "\\lt", "<");
  replace_all(s, "\\gt", ">");
  replace_all(s, "\\approx", "\x03");
  replace_all(s, "\\left.", "");
  replace_all(s, "\\right.", "");
  for (const char* c : {"\\left", "\\right", "\\displaystyle", "\\textstyle", "\\scriptstyle", "\\bigl", "\\bigr",
                        "\\Bigl", "\\Bigr", "\\big", "\\Big"})
    replace_all(s, c, "");
  unwrap(s, "\\phantom", "\x01", "\x01");  // removed below
  for (size_t p = s.find('\x01'); p != std::string::npos; p = s.find('\x01')) {
    auto e = s.find('\x01', p + 1);
    s.erase(p, e == std::string::npos ? 1 : e - p + 1);
  }
  replace_all(s, "{,}", "");
  replace_all(s, "{, }", "");
  replace_all(s, ",\\!", "");
  replace_all(s, "\\!", "");
  replace_all(s, "\\,", " ");
  replace_all(s, "\\;", " ");
  replace_all(s, "\\:", " ");
  replace_all(s, "\\qquad", " ");
  replace_all(s, "\\quad", " ");
  replace_all(s, "\\ ", " ");
  replace_all(s, "~", " ");
  replace_all(s, "\\$", "");
  replace_all(s, "$", "");
  replace_all(s, "\\%", "%");
  for (const char* c : {"^{\\circ}", "^\\circ", "\\circ", "\\degree", "^{\\degree}"}) replace_all(s, c, "");
  for (const char* c : {"\\text", "\\textbf", "\\textit", "\\mathrm", "\\mathbf", "\\mathit", "\\mbox",
                        "\\operatorname", "\\boxed", "\\fbox", "\\textnormal", "\\mathsf", "\\emph"})
    unwrap(s, c, " ", " ");
  replace_all(s, "**", "");
  replace_all(s, "\\colon", ":");
  // a ratio "a:b" is a/b ("7:32", "V_1:V_2 = 11:21")
  for (size_t p = s.find(':'); p != std::string::npos; p = s.find(':', p + 1))
    if (p > 0 && p + 1 < s.size()) s[p] = '/';
  // "a \approx b": an exact value followed by its approximation keeps the exact value
  if (auto p = s.find('\x03'); p != std::string::npos) {
    auto eq = s.rfind('=', p);
    s = eq == std::string::npos ? s.replace(p, 1, "=") : s.substr(0, p);
  }
  // "and" / "or" between answers separate a list
  {
    std::string out;
    for (size_t k = 0; k < s.size();) {
      if (std::isalpha(static_cast<unsigned char>(s[k])) && (k == 0 || s[k - 1] != '\\') &&
          (k == 0 || !std::isalpha(static_cast<unsigned char>(s[k - 1])))) {
        size_t e = k;
        while (e < s.size() && std::isalpha(static_cast<unsigned char>(s[e]))) ++e;
        std::string w = s.substr(k, e - k);
        out += (w == "and" || w == "or") ? "," : w;
        k = e;
      } else {
        out += s[k++];
      }
    }
    s = out;
  }
  replace_all(s, "\x02", "\\\\");
  s = trim(s);
  // "x \in [1, 2]" -> "[1, 2]"
  if (auto p = s.find("\\in "); p != std::string::npos && p < 12) s = trim(s.substr(p + 4));
  // percent words
  for (const char* w : {" percentage", " percent", " pct", "percent"}) {
    auto p = lower(s).rfind(w);
    if (p != std::string::npos && p + std::strlen(w) == s.size()) s = trim(s.substr(0, p)) + "%";
  }
  // trailing punctuation
  while (!s.empty() && (s.back() == '.' || s.back() == ',' || s.back() == ';' || s.back() == ':' || s.back() == ' '))
    s.pop_back();
  // thousands separators in a plain number: 1,234,567 or 1 234 567
  auto thousands = [](const std::string& x, char sep) {
    size_t i = 0;
    if (i < x.size() && x[i] == '-') ++i;
    size_t b = i;
    while (i < x.size() && std::isdigit(static_cast<unsigned char>(x[i]))) ++i;
    // a thousands-separated number has 1-3 leading digits and does not start with 0 ("0,111" is a decimal comma)
    if (i == b || i - b > 3 || i >= x.size() || x[i] != sep || x[b] == '0') return std::string();
    std::string out = x.substr(0, i);
    while (i < x.size() && x[i] == sep) {
      size_t d = i + 1, e = d;
      while (e < x.size() && std::isdigit(static_cast<unsigned char>(x[e]))) ++e;
      if (e - d != 3) return std::string();
      out += x.substr(d, 3);
      i = e;
    }
    if (i < x.size() && x[i] == '.') {
      size_t e = i + 1;
      while (e < x.size() && std::isdigit(static_cast<unsigned char>(x[e]))) ++e;
      out += x.substr(i, e - i);
      i = e;
    }
    return i == x.size() || x[i] == '%' ? out + x.substr(i) : std::string();
  };
  if (auto t = thousands(s, ','); !t.empty()) s = t;
  else if (auto t2 = thousands(s, ' '); !t2.empty()) s = t2;
  // a decimal comma: "1000,99", "0,111" (not three digits after it, or a leading 0)
  if (!s.empty()) {
    size_t k = s[0] == '-' ? 1 : 0, b = k;
    while (k < s.size() && std::isdigit(static_cast<unsigned char>(s[k]))) ++k;
    if (k > b && k < s.size() && s[k] == ',') {
      size_t e = k + 1;
      while (e < s.size() && std::isdigit(static_cast<unsigned char>(s[e]))) ++e;
      const size_t frac = e - k - 1;
      if (e == s.size() && frac >= 1 && ((frac != 3 && frac != 1) || (k - b == 1 && s[b] == '0'))) s[k] = '.';
    }
  }
  return trim(s);
}

namespace {

// ------------------------------------------------------------------ values
struct Q {  // exact rational (when exact) and its double value
  bool exact = true;
  __int128 n = 0, d = 1;
  double v = 0;
  static Q of_double(double x) {
    Q q;
    q.exact = false;
    q.v = x;
    return q;
  }
  static Q of_int(int64_t x) {
    Q q;
    q.n = x;
    q.v = double(x);
    return q;
  }
  double value() const { return exact ? double(n) / double(d) : v; }
};
constexpr __int128 kLimit = (__int128(1) << 100);
__int128 gcd128(__int128 a, __int128 b) {
  if (a < 0) a = -a;
  if (b < 0) b = -b;
  while (b) {
    auto t = a % b;
    a = b;
    b = t;
  }
  return a;
}
Q make(__int128 n, __int128 d) {
  if (d == 0) return Q::of_double(n == 0 ? NAN : (n > 0 ? INFINITY : -INFINITY));
  if (d < 0) n = -n, d = -d;
  auto g = gcd128(n, d);
  if (g > 1) n /= g, d /= g;
  if (n > kLimit || n < -kLimit || d > kLimit) return Q::of_double(double(n) / double(d));
  Q q;
  q.n = n;
  q.d = d;
  q.v = double(n) / double(d);
  return q;
}
bool fits(__int128 a) { return a <= (__int128(1) << 62) && a >= -(__int128(1) << 62); }
Q add(const Q& a, const Q& b) {
  if (a.exact && b.exact && fits(a.n) && fits(a.d) && fits(b.n) && fits(b.d)) return make(a.n * b.d + b.n * a.d, a.d * b.d);
  return Q::of_double(a.value() + b.value());
}
Q neg(const Q& a) {
  Q r = a;
  r.n = -r.n;
  r.v = -r.v;
  return r;
}
Q mul(const Q& a, const Q& b) {
  if (a.exact && b.exact && fits(a.n) && fits(a.d) && fits(b.n) && fits(b.d)) return make(a.n * b.n, a.d * b.d);
  return Q::of_double(a.value() * b.value());
}
Q div(const Q& a, const Q& b) {
  if (a.exact && b.exact && fits(a.n) && fits(a.d) && fits(b.n) && fits(b.d)) return make(a.n * b.d, a.d * b.n);
  return Q::of_double(a.value() / b.value());
}
Q power(const Q& a, const Q& b) {
  if (a.exact && b.exact && b.d == 1 && b.n >= -64 && b.n <= 64) {
    Q r = Q::of_int(1);
    Q base = b.n < 0 ? div(Q::of_int(1), a) : a;
    for (int64_t i = 0; i < (b.n < 0 ? -b.n : b.n); ++i) {
      r = mul(r, base);
      if (!r.exact) break;
    }
    if (r.exact) return r;
  }
  double x = a.value(), y = b.value();
  if (std::fabs(y) > 1e4 && std::fabs(x) > 1.0) return Q::of_double(y > 0 ? INFINITY : 0.0);
  return Q::of_double(std::pow(x, y));
}

// ------------------------------------------------------------------ expression tree
struct Node {
  enum Kind { kNum, kSym, kAdd, kMul, kPow, kNeg, kInv, kFunc, kTuple, kSet, kList, kInterval, kUnion,
              kMatrix, kRel, kText, kChoice, kPlusMinus } kind = kNum;
  Q q;
  std::string name;  // symbol, function, relation operator, text
  std::vector<Node> ch;
  bool lo_closed = false, hi_closed = false;  // interval
  int64_t rows = 0, cols = 0;                 // matrix
  bool percent = false;
};
Node num(Q q) {
  Node n;
  n.q = q;
  return n;
}
Node op(Node::Kind k, std::vector<Node> ch, std::string name = "") {
  Node n;
  n.kind = k;
  n.ch = std::move(ch);
  n.name = std::move(name);
  return n;
}

struct Parser {
  std::string s;
  size_t i = 0;
  int depth = 0;
  Clock::time_point deadline;
  int abs_depth = 0;  // inside |...|: a '|' closes rather than starts a factor

  void tick() {
    if (++depth > kMaxDepth) throw ParseError{};
    if (Clock::now() > deadline) throw Timeout{};
  }
  void ws() {
    while (i < s.size() && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r')) ++i;
  }
  bool eat(const char* t) {
    ws();
    if (starts_with(s, i, t)) {
      // a command must not be the prefix of a longer one (\le vs \left)
      size_t n = std::strlen(t);
      if (t[0] == '\\' && std::isalpha(static_cast<unsigned char>(t[n - 1])) && i + n < s.size() &&
          std::isalpha(static_cast<unsigned char>(s[i + n])))
        return false;
      i += n;
      return true;
    }
    return false;
  }
  bool at_end() {
    ws();
    return i >= s.size();
  }
  char peek() {
    ws();
    return i < s.size() ? s[i] : '\0';
  }

  Node top() {
    auto n = list();
    if (!at_end()) throw ParseError{};
    return n;
  }
  Node relation() {
    auto first = uni();
    std::vector<Node> parts{first};
    std::vector<std::string> ops;
    for (;;) {
      std::string o;
      if (eat("\\leq") || eat("\\le") || eat("<=")) o = "<=";
      else if (eat("\\geq") || eat("\\ge") || eat(">=")) o = ">=";
      else if (eat("\\neq") || eat("\\ne") || eat("!=")) o = "!=";
      else if (eat("=")) o = "=";
      else if (eat("<")) o = "<";
      else if (eat(">")) o = ">";
      else break;
      ops.push_back(o);
      parts.push_back(uni());
    }
    if (ops.empty()) return first;
    Node r = op(Node::kRel, parts);
    for (auto& o : ops) r.name += o + " ";
    return r;
  }
  Node list() {
    auto first = relation();
    if (peek() != ',' && !(peek() == ';')) return first;
    std::vector<Node> items{first};
    while (eat(",") || eat(";")) {
      if (at_end() || peek() == ',' || peek() == '}' || peek() == ')' || peek() == ']') continue;
      items.push_back(relation());
    }
    return op(Node::kList, items);
  }
  Node uni() {
    auto a = expr();
    if (peek() != '\\' || !starts_with(s, i, "\\cup")) return a;
    std::vector<Node> parts{a};
    while (eat("\\cup")) parts.push_back(expr());
    return op(Node::kUnion, parts);
  }
  Node expr() {
    tick();
    std::vector<Node> terms{term()};
    for (;;) {
      if (eat("+")) terms.push_back(term());
      else if (eat("-")) terms.push_back(op(Node::kNeg, {term()}));
      else if (eat("\\pm") || eat("\\mp")) terms.push_back(op(Node::kPlusMinus, {term()}));
      else break;
    }
    --depth;
    return terms.size() == 1 ? terms[0] : op(Node::kAdd, terms);
  }
  bool starts_factor() {
    char c = peek();
    if (c == '\0') return false;
    if (std::isalnum(static_cast<unsigned char>(c)) || c == '(' || c == '.') return true;
    if (c == '\\') {
      for (const char* stop : {"\\cup", "\\le", "\\ge", "\\ne", "\\pm", "\\mp", "\\cdot", "\\times", "\\div",
                               "\\}", "\\right", "\\end", "\\\\", "\\in", "\\text"})
        if (starts_with(s, i, stop)) return false;
      return true;
    }
    return c == '{' || (c == '|' && abs_depth == 0);
  }
  Node term() {
    tick();
    std::vector<Node> f{unary()};
    for (;;) {
      if (eat("*") || eat("\\cdot") || eat("\\times")) f.push_back(unary());
      else if (eat("/") || eat("\\div")) f.push_back(op(Node::kInv, {unary()}));
      else if (starts_factor()) f.push_back(power());  // implicit multiplication
      else break;
    }
    --depth;
    return f.size() == 1 ? f[0] : op(Node::kMul, f);
  }
  Node unary() {
    tick();
    Node r;
    if (eat("-")) r = op(Node::kNeg, {unary()});
    else if (eat("+")) r = unary();
    else if (eat("\\pm") || eat("\\mp")) r = op(Node::kPlusMinus, {unary()});
    else r = power();
    --depth;
    return r;
  }
  Node power() {
    tick();
    auto b = postfix();
    if (eat("^")) {
      Node e;
      if (peek() == '{') e = group();
      else if (peek() == '-') {
        eat("-");
        e = op(Node::kNeg, {atom_single()});
      } else e = atom_single();
      b = op(Node::kPow, {b, e});
      while (eat("!")) b = op(Node::kFunc, {b}, "factorial");
    }
    --depth;
    return b;
  }
  Node postfix() {
    auto a = primary();
    for (;;) {
      if (peek() == '!' && !starts_with(s, i, "!=")) {
        eat("!");
        a = op(Node::kFunc, {a}, "factorial");
      }
      else if (eat("%")) a.percent = true, a = op(Node::kMul, {a}), a.percent = true;
      else break;
    }
    return a;
  }
  // A single-token exponent/argument: x^2, \frac12, \sqrt3.
  Node atom_single() {
    ws();
    if (i >= s.size()) throw ParseError{};
    if (std::isdigit(static_cast<unsigned char>(s[i]))) return num(Q::of_int(s[i++] - '0'));
    if (std::isalpha(static_cast<unsigned char>(s[i]))) return symbol_node(std::string(1, s[i++]));
    return primary();
  }
  Node group() {  // {...}; "{1, 2}" is a set written without backslashes
    if (!eat("{")) throw ParseError{};
    auto n = list();
    if (!eat("}")) throw ParseError{};
    if (n.kind == Node::kList) n.kind = Node::kSet;
    return n;
  }
  Node symbol_node(const std::string& name) {
    if (name == "e") return op(Node::kSym, {}, "e");
    return op(Node::kSym, {}, name);
  }
  Node number() {
    size_t b = i;
    while (i < s.size() && std::isdigit(static_cast<unsigned char>(s[i]))) ++i;
    size_t dot = std::string::npos;
    if (i < s.size() && s[i] == '.' && i + 1 < s.size() && std::isdigit(static_cast<unsigned char>(s[i + 1]))) {
      dot = i++;
      while (i < s.size() && std::isdigit(static_cast<unsigned char>(s[i]))) ++i;
    } else if (i < s.size() && s[i] == '.' && (i + 1 == s.size() || !std::isalnum(static_cast<unsigned char>(s[i + 1])))) {
      ++i;  // "10." = 10
    }
    std::string digits = s.substr(b, i - b);
    const bool decimal_literal = dot != std::string::npos;
    if (digits.size() > 30) return num(Q::of_double(std::strtod(digits.c_str(), nullptr)));  // inf if huge
    __int128 n = 0, d = 1;
    for (size_t k = 0; k < digits.size(); ++k) {
      if (k == dot - b || digits[k] == '.') continue;
      n = n * 10 + (digits[k] - '0');
    }
    if (dot != std::string::npos)
      for (size_t k = dot + 1; k < i; ++k) d *= 10;
    auto q = make(n, d);
    if (decimal_literal) {
      Node dn = num(q);
      dn.name = "decimal";
      return dn;
    }
    // a mixed number: 1\frac{1}{4} = 1 + 1/4
    ws();
    if (dot == std::string::npos && starts_with(s, i, "\\frac")) {
      auto f = primary();
      return op(Node::kAdd, {num(q), f});
    }
    return num(q);
  }
  std::vector<std::string> split_top(const std::string& body, const std::string& sep) {
    std::vector<std::string> out;
    int depth_b = 0;
    size_t start = 0;
    for (size_t k = 0; k < body.size(); ++k) {
      if (body[k] == '{') ++depth_b;
      else if (body[k] == '}') --depth_b;
      else if (depth_b == 0 && body.compare(k, sep.size(), sep) == 0) {
        out.push_back(body.substr(start, k - start));
        k += sep.size() - 1;
        start = k + 1;
      }
    }
    out.push_back(body.substr(start));
    return out;
  }
  Node parse_sub(const std::string& text) {
    Parser p{text, 0, depth, deadline};
    return p.top();
  }
  Node matrix(const std::string& env) {
    const std::string end = "\\end{" + env + "}";
    auto e = s.find(end, i);
    if (e == std::string::npos) throw ParseError{};
    std::string body = s.substr(i, e - i);
    i = e + end.size();
    std::vector<std::string> rows = split_top(body, "\\\\");
    while (!rows.empty() && trim(rows.back()).empty()) rows.pop_back();
    Node m;
    m.kind = Node::kMatrix;
    m.rows = int64_t(rows.size());
    for (auto& r : rows) {
      auto cells = split_top(r, "&");
      if (m.cols == 0) m.cols = int64_t(cells.size());
      if (int64_t(cells.size()) != m.cols) throw ParseError{};
      for (auto& c : cells) m.ch.push_back(parse_sub(trim(c)));
    }
    if (m.rows == 0) throw ParseError{};
    return m;
  }
  Node func(const std::string& name) {
    // \sin x, \sin(x), \sin^2 x, \log_{b} x
    Node base;
    bool has_base = false;
    if (name == "log" && eat("_")) {
      base = peek() == '{' ? group() : atom_single();
      has_base = true;
    }
    Node pw;
    bool has_pow = false;
    if (eat("^")) {
      pw = peek() == '{' ? group() : atom_single();
      has_pow = true;
    }
    Node arg = peek() == '(' ? primary() : power();
    Node f = has_base ? op(Node::kFunc, {arg, base}, "logb") : op(Node::kFunc, {arg}, name);
    return has_pow ? op(Node::kPow, {f, pw}) : f;
  }
  Node bracketed(char open) {
    // ( ... ) [ ... ] with a comma list inside: tuple / interval
    auto inner = list();
    ws();
    char close = i < s.size() ? s[i] : '\0';
    if (close != ')' && close != ']') throw ParseError{};
    ++i;
    if (inner.kind != Node::kList) {
      if (open == '[' && close == ']') return inner;  // grouping
      if (open == '(' && close == ')') return inner;
      throw ParseError{};
    }
    if (inner.ch.size() == 2 && (open == '[' || close == ']')) {
      Node iv = op(Node::kInterval, inner.ch);
      iv.lo_closed = open == '[';
      iv.hi_closed = close == ']';
      return iv;
    }
    if (open == '(' && close == ')') return op(Node::kTuple, inner.ch);
    if (open == '[' && close == ']') return op(Node::kTuple, inner.ch);
    throw ParseError{};
  }
  Node primary() {
    tick();
    ws();
    if (i >= s.size()) throw ParseError{};
    Node r;
    char c = s[i];
    if (std::isdigit(static_cast<unsigned char>(c)) || (c == '.' && i + 1 < s.size() && std::isdigit(static_cast<unsigned char>(s[i + 1])))) {
      r = number();
    } else if (c == '(' || c == '[') {
      ++i;
      r = bracketed(c);
    } else if (c == '{') {
      r = group();
    } else if (c == '|') {
      ++i;
      ++abs_depth;
      auto a = expr();
      --abs_depth;
      if (!eat("|")) throw ParseError{};
      r = op(Node::kFunc, {a}, "abs");
    } else if (std::isalpha(static_cast<unsigned char>(c))) {
      // known function names written without a backslash
      for (const char* fn : {"sqrt", "sin", "cos", "tan", "log", "ln", "exp"})
        if (starts_with(s, i, fn) && (i + std::strlen(fn) >= s.size() || !std::isalpha(static_cast<unsigned char>(s[i + std::strlen(fn)])))) {
          i += std::strlen(fn);
          --depth;
          return func(std::string(fn) == "sqrt" ? "sqrt" : fn);
        }
      r = symbol_node(std::string(1, s[i++]));
      if (eat("_")) {  // x_1, a_{n}
        ws();
        std::string sub;
        if (peek() == '{') {
          size_t end = 0;
          auto b = braced(s, i, &end);
          if (!b) throw ParseError{};
          sub = *b;
          i = end;
        } else if (i < s.size()) {
          sub = std::string(1, s[i++]);
        }
        r.name += "_" + sub;
      }
    } else if (c == '\\') {
      if (eat("\\{")) {
        auto inner = at_end() ? Node{} : list();
        if (!eat("\\}")) throw ParseError{};
        r = op(Node::kSet, inner.kind == Node::kList ? inner.ch : std::vector<Node>{inner});
      } else if (eat("\\frac")) {
        Node a = peek() == '{' ? group() : atom_single();
        Node b = peek() == '{' ? group() : atom_single();
        r = op(Node::kMul, {a, op(Node::kInv, {b})});
      } else if (eat("\\binom")) {
        Node a = peek() == '{' ? group() : atom_single();
        Node b = peek() == '{' ? group() : atom_single();
        r = op(Node::kFunc, {a, b}, "binom");
      } else if (eat("\\sqrt")) {
        Node idx;
        bool has_idx = false;
        if (eat("[")) {
          auto e = s.find(']', i);
          if (e == std::string::npos) throw ParseError{};
          idx = parse_sub(s.substr(i, e - i));
          i = e + 1;
          has_idx = true;
        }
        Node a = peek() == '{' ? group() : atom_single();
        r = has_idx ? op(Node::kPow, {a, op(Node::kInv, {idx})}) : op(Node::kFunc, {a}, "sqrt");
      } else if (eat("\\pi")) {
        r = op(Node::kSym, {}, "pi");
      } else if (eat("\\infty") || eat("\\infin")) {
        r = num(Q::of_double(INFINITY));
      } else if (eat("\\begin{")) {
        auto e = s.find('}', i);
        if (e == std::string::npos) throw ParseError{};
        std::string env = s.substr(i, e - i);
        i = e + 1;
        if (env.find("matrix") == std::string::npos && env != "array") throw ParseError{};
        if (env == "array" && peek() == '{') {
          size_t end = 0;
          braced(s, i, &end);
          i = end;
        }
        r = matrix(env);
      } else {
        size_t b = i + 1, e = b;
        while (e < s.size() && std::isalpha(static_cast<unsigned char>(s[e]))) ++e;
        std::string cmd = s.substr(b, e - b);
        static const std::set<std::string> fns{"sin", "cos", "tan", "cot", "sec", "csc", "arcsin", "arccos", "arctan",
                                               "sinh", "cosh", "tanh", "ln", "log", "exp"};
        if (fns.count(cmd)) {
          i = e;
          r = func(cmd);
        } else if (!cmd.empty() && cmd != "end" && cmd != "right" && cmd != "begin") {
          i = e;  // any other command names a symbol, as in sympy's LaTeX parser (\alpha, \zzz, \emptyset)
          r = op(Node::kSym, {}, cmd);
        } else {
          throw ParseError{};
        }
      }
    } else {
      throw ParseError{};
    }
    --depth;
    return r;
  }
};

// ------------------------------------------------------------------ evaluation
using Env = std::map<std::string, double>;
const double kNaN = std::numeric_limits<double>::quiet_NaN();

Q eval(const Node& n, const Env& env, const Clock::time_point& deadline, int depth = 0) {
  if (depth > kMaxDepth) throw ParseError{};
  if ((depth & 7) == 0 && Clock::now() > deadline) throw Timeout{};
  auto sub = [&](const Node& c) { return eval(c, env, deadline, depth + 1); };
  switch (n.kind) {
    case Node::kNum: return n.q;
    case Node::kSym: {
      if (n.name == "pi") return Q::of_double(M_PI);
      if (n.name == "e") return Q::of_double(M_E);
      auto it = env.find(n.name);
      return Q::of_double(it == env.end() ? kNaN : it->second);
    }
    case Node::kAdd: {
      Q r = Q::of_int(0);
      for (auto& c : n.ch) r = add(r, sub(c));
      return r;
    }
    case Node::kMul: {
      Q r = Q::of_int(1);
      for (auto& c : n.ch) r = mul(r, sub(c));
      return r;
    }
    case Node::kNeg: return neg(sub(n.ch[0]));
    case Node::kInv: return div(Q::of_int(1), sub(n.ch[0]));
    case Node::kPow: return power(sub(n.ch[0]), sub(n.ch[1]));
    case Node::kFunc: {
      Q a = sub(n.ch[0]);
      double x = a.value();
      const auto& f = n.name;
      if (f == "sqrt") {
        if (a.exact && a.n >= 0) {  // exact square roots of perfect squares
          auto r = [](__int128 v) -> __int128 {
            if (v > (__int128(1) << 100)) return -1;
            __int128 s = __int128(std::sqrt(double(v)));
            while (s * s > v) --s;
            while ((s + 1) * (s + 1) <= v) ++s;
            return s * s == v ? s : -1;
          };
          auto rn = r(a.n), rd = r(a.d);
          if (rn >= 0 && rd > 0) return make(rn, rd);
        }
        return Q::of_double(std::sqrt(x));
      }
      if (f == "abs") return a.exact ? (a.n < 0 ? neg(a) : a) : Q::of_double(std::fabs(x));
      if (f == "factorial") {
        if (!a.exact || a.d != 1 || a.n < 0 || a.n > 170) return Q::of_double(a.exact && a.n > 170 ? INFINITY : kNaN);
        Q r = Q::of_int(1);
        for (int64_t k = 2; k <= int64_t(a.n); ++k) r = mul(r, Q::of_int(k));
        return r;
      }
      if (f == "binom") {
        Q b = sub(n.ch[1]);
        if (!a.exact || !b.exact || a.d != 1 || b.d != 1 || b.n < 0 || a.n < b.n || a.n > 10000) return Q::of_double(kNaN);
        Q r = Q::of_int(1);
        for (int64_t k = 1; k <= int64_t(b.n); ++k) r = div(mul(r, Q::of_int(int64_t(a.n - b.n + k))), Q::of_int(k));
        return r;
      }
      if (f == "logb") {
        double b = sub(n.ch[1]).value();
        double r = std::log(x) / std::log(b);
        double rr = std::round(r);
        return std::fabs(r - rr) < 1e-12 ? Q::of_int(int64_t(rr)) : Q::of_double(r);
      }
      static const std::map<std::string, double (*)(double)> fns{
          {"sin", [](double v) { return std::sin(v); }},   {"cos", [](double v) { return std::cos(v); }},
          {"tan", [](double v) { return std::tan(v); }},   {"cot", [](double v) { return 1 / std::tan(v); }},
          {"sec", [](double v) { return 1 / std::cos(v); }}, {"csc", [](double v) { return 1 / std::sin(v); }},
          {"arcsin", [](double v) { return std::asin(v); }}, {"arccos", [](double v) { return std::acos(v); }},
          {"arctan", [](double v) { return std::atan(v); }}, {"sinh", [](double v) { return std::sinh(v); }},
          {"cosh", [](double v) { return std::cosh(v); }}, {"tanh", [](double v) { return std::tanh(v); }},
          {"ln", [](double v) { return std::log(v); }},    {"log", [](double v) { return std::log(v); }},
          {"exp", [](double v) { return std::exp(v); }}};
      auto it = fns.find(f);
      return Q::of_double(it == fns.end() ? kNaN : it->second(x));
    }
    default: throw ParseError{};  // not a scalar
  }
}

void symbols(const Node& n, std::set<std::string>& out) {
  if (n.kind == Node::kSym && n.name != "pi" && n.name != "e") out.insert(n.name);
  for (auto& c : n.ch) symbols(c, out);
}
bool has_percent(const Node& n) { return n.percent; }
bool has_number(const Node& n) {
  if (n.kind == Node::kNum) return true;
  for (auto& c : n.ch)
    if (has_number(c)) return true;
  return false;
}
bool names_unknowns(const Node& n) {  // symbols only: "x", "(p, q)", "\frac{NO}{BO}", "AB"
  std::set<std::string> syms;
  symbols(n, syms);
  return !syms.empty() && !has_number(n);
}
bool has_matrix(const Node& n) {
  if (n.kind == Node::kMatrix) return true;
  if (n.kind != Node::kAdd && n.kind != Node::kMul && n.kind != Node::kNeg) return false;
  for (auto& c : n.ch)
    if (has_matrix(c)) return true;
  return false;
}
bool has_decimal(const Node& n) {  // a decimal literal: its value is a rounding, compare with tolerance
  if (n.kind == Node::kNum && n.name == "decimal") return true;
  for (auto& c : n.ch)
    if (has_decimal(c)) return true;
  return false;
}
bool is_scalar(const Node& n) {
  switch (n.kind) {
    case Node::kTuple: case Node::kSet: case Node::kList: case Node::kInterval: case Node::kUnion:
    case Node::kMatrix: case Node::kRel: case Node::kText: case Node::kChoice: case Node::kPlusMinus: return false;
    default: break;
  }
  for (auto& c : n.ch)
    if (!is_scalar(c)) return false;
  return true;
}

// Values in [0.5, 3) for each symbol from a linear congruential stream (positive: so that
// sqrt(1/n) = 1/sqrt(n) and logs are defined).
Env random_point(const std::set<std::string>& names, uint64_t& seed) {
  Env env;
  for (auto& name : names) {
    seed = seed * 6364136223846793005ull + 1442695040888963407ull;
    env[name] = 0.5 + 2.5 * double(seed >> 11) / double(1ull << 53);
  }
  return env;
}

bool close_enough(double a, double b, double tol) {
  if (std::isinf(a) || std::isinf(b)) return a == b;
  if (std::isnan(a) || std::isnan(b)) return false;
  return std::fabs(a - b) <= tol * std::max({1.0, std::fabs(a), std::fabs(b)});
}

struct Comparer {
  double tol;
  Clock::time_point deadline;
  int matmuls = 0;  // products written out in this call: each one multiplies the element trees' size

  bool scalar_equal(const Node& a, const Node& b) {
    std::set<std::string> sa, sb;
    symbols(a, sa);
    symbols(b, sb);
    if (sa != sb) return false;
    if (sa.empty()) {
      Q x = eval(a, {}, deadline), y = eval(b, {}, deadline);
      if (x.exact && y.exact && x.n == y.n && x.d == y.d) return true;
      if (x.exact && y.exact && !has_decimal(a) && !has_decimal(b)) return false;
      return close_enough(x.value(), y.value(), tol);
    }
    // symbolic: evaluate at pseudo-random positive points
    uint64_t seed = 0x9e3779b97f4a7c15ull;
    int valid = 0;
    for (int point = 0; point < 6; ++point) {
      Env env = random_point(sa, seed);
      double x = eval(a, env, deadline).value(), y = eval(b, env, deadline).value();
      if (std::isnan(x) && std::isnan(y)) continue;
      if (!close_enough(x, y, 1e-9 > tol ? 1e-9 : tol)) return false;
      ++valid;
    }
    return valid >= 2;
  }
  // The same equation scaled: (l1 - r1) / (l2 - r2) is one non-zero constant at random points.
  bool proportional(const Node& a, const Node& b, bool positive_only = false) {
    std::set<std::string> sa, sb;
    symbols(a, sa);
    symbols(b, sb);
    if (sa != sb || sa.empty()) return false;
    uint64_t seed = 0x2545f4914f6cdd1dull;
    double ratio = 0;
    int valid = 0;
    for (int point = 0; point < 6; ++point) {
      Env env = random_point(sa, seed);
      double x = eval(a, env, deadline).value(), y = eval(b, env, deadline).value();
      if (!std::isfinite(x) || !std::isfinite(y) || std::fabs(y) < 1e-12) continue;
      double r = x / y;
      if (valid == 0) ratio = r;
      else if (!close_enough(r, ratio, 1e-9)) return false;
      ++valid;
    }
    return valid >= 3 && (positive_only ? ratio > 1e-12 : std::fabs(ratio) > 1e-12);
  }
  // Matrix arithmetic written out ("A + B", "A B", "2 A", "-A") as one matrix of element expressions
  // (at most three small products per call: each multiplies the size of the element trees).
  std::optional<Node> matrix_value(const Node& n) {
    auto scale = [](const Node& m, const Node& c) {
      Node r = m;
      for (auto& e : r.ch) e = op(Node::kMul, {c, e});
      return r;
    };
    switch (n.kind) {
      case Node::kMatrix: return n;
      case Node::kNeg: {
        auto m = matrix_value(n.ch[0]);
        if (!m) return std::nullopt;
        return scale(*m, num(Q::of_int(-1)));
      }
      case Node::kAdd: {
        std::optional<Node> sum;
        for (auto& c : n.ch) {
          auto m = matrix_value(c);
          if (!m) return std::nullopt;
          if (!sum) {
            sum = m;
          } else {
            if (m->rows != sum->rows || m->cols != sum->cols) return std::nullopt;
            for (size_t k = 0; k < sum->ch.size(); ++k) sum->ch[k] = op(Node::kAdd, {sum->ch[k], m->ch[k]});
          }
        }
        return sum;
      }
      case Node::kMul: {
        std::optional<Node> prod;
        std::vector<Node> scalars;
        for (auto& c : n.ch) {
          if (is_scalar(c)) {
            scalars.push_back(c);
            continue;
          }
          auto m = matrix_value(c);
          if (!m) return std::nullopt;
          if (!prod) {
            prod = m;
            continue;
          }
          if (prod->cols != m->rows || prod->rows * m->cols * m->rows > 1024 || ++matmuls > 3) return std::nullopt;
          Node r;
          r.kind = Node::kMatrix;
          r.rows = prod->rows;
          r.cols = m->cols;
          for (int64_t i = 0; i < r.rows; ++i)
            for (int64_t j = 0; j < r.cols; ++j) {
              std::vector<Node> terms;
              for (int64_t k = 0; k < prod->cols; ++k)
                terms.push_back(op(Node::kMul, {prod->ch[size_t(i * prod->cols + k)], m->ch[size_t(k * m->cols + j)]}));
              r.ch.push_back(op(Node::kAdd, terms));
            }
          prod = std::move(r);
        }
        if (!prod) return std::nullopt;
        for (auto& c : scalars) prod = scale(*prod, c);
        return prod;
      }
      default: return std::nullopt;
    }
  }
  // "a < x < b" / "b > x > a" (x names unknowns) as the interval (a, b); "a <= |x| <= b" with a > 0
  // as the union [-b, -a] U [a, b]; nullopt for other relations
  std::optional<Node> chain_interval(const Node& rel) {
    if (rel.kind != Node::kRel || rel.ch.size() != 3) return std::nullopt;
    const Node& mid = rel.ch[1];
    const bool abs_mid = mid.kind == Node::kFunc && mid.name == "abs" && mid.ch.size() == 1 && names_unknowns(mid.ch[0]);
    if (!abs_mid && !names_unknowns(mid)) return std::nullopt;
    auto ops = rel.name;  // e.g. "<= < "
    auto sp = ops.find(' ');
    std::string o1 = ops.substr(0, sp), o2 = trim(ops.substr(sp + 1));
    const bool up = (o1 == "<" || o1 == "<=") && (o2 == "<" || o2 == "<=");
    const bool down = (o1 == ">" || o1 == ">=") && (o2 == ">" || o2 == ">=");
    if (!up && !down) return std::nullopt;
    Node iv = op(Node::kInterval, up ? std::vector<Node>{rel.ch[0], rel.ch[2]} : std::vector<Node>{rel.ch[2], rel.ch[0]});
    iv.lo_closed = (up ? o1 : o2) == ">=" || (up ? o1 : o2) == "<=";
    iv.hi_closed = (up ? o2 : o1) == ">=" || (up ? o2 : o1) == "<=";
    if (!abs_mid) return iv;
    const double lo = eval(iv.ch[0], {}, deadline).value();
    if (!(lo > 0) || !std::isfinite(eval(iv.ch[1], {}, deadline).value())) return std::nullopt;
    Node mirrored = op(Node::kInterval, {op(Node::kNeg, {iv.ch[1]}), op(Node::kNeg, {iv.ch[0]})});
    mirrored.lo_closed = iv.hi_closed;
    mirrored.hi_closed = iv.lo_closed;
    return op(Node::kUnion, {mirrored, iv});
  }
  bool percent_equal(const Node& a, const Node& b) {
    // p% also matches p itself: graders accept "25" for "25%"
    auto strip = [](Node n) {
      n.percent = false;
      return n;
    };
    return scalar_equal(strip(a), strip(b));
  }
  // "\pm 2" -> {2, -2}; "\frac{-1 \pm \sqrt{13}}{4}" -> both roots; every \pm in a scalar expression doubles
  // the list (at most 16 values)
  std::vector<Node> expand_pm(const Node& n) {
    std::function<bool(Node&, bool)> replace_first = [&](Node& x, bool plus) {
      if (x.kind == Node::kPlusMinus) {
        x = plus ? x.ch[0] : op(Node::kNeg, {x.ch[0]});
        return true;
      }
      if (x.kind == Node::kRel || x.kind == Node::kList || x.kind == Node::kSet || x.kind == Node::kTuple) return false;
      for (auto& c : x.ch)
        if (replace_first(c, plus)) return true;
      return false;
    };
    std::vector<Node> out{n};
    for (size_t round = 0; round < 4; ++round) {
      std::vector<Node> next;
      bool any = false;
      for (auto& x : out) {
        Node p = x, m = x;
        if (replace_first(p, true)) {
          replace_first(m, false);
          next.push_back(std::move(p));
          next.push_back(std::move(m));
          any = true;
        } else {
          next.push_back(x);
        }
      }
      out = std::move(next);
      if (!any) break;
    }
    return out;
  }
  std::vector<Node> as_set(const Node& n) {
    std::vector<Node> items;
    auto add_items = [&](const Node& x) {
      // "x = 1" inside a list of solutions -> 1
      const bool solution = x.kind == Node::kRel && x.name == "= " && x.ch.size() == 2 && names_unknowns(x.ch[0]);
      for (auto& e : expand_pm(solution ? x.ch[1] : x)) items.push_back(e);
    };
    if (n.kind == Node::kSet || n.kind == Node::kList) {
      if (auto tuples = assignment_tuples(n)) return *tuples;
      for (auto& c : n.ch) add_items(c);
    } else {
      add_items(n);
    }
    return items;
  }
  // "p=5,q=2;p=7,q=2": assignments to the same k >= 2 unknowns, repeated in the same order, are
  // the solutions (5, 2), (7, 2).
  std::optional<std::vector<Node>> assignment_tuples(const Node& list) {
    std::vector<std::string> names;
    for (auto& c : list.ch) {
      if (c.kind != Node::kRel || c.name != "= " || c.ch.size() != 2 || c.ch[0].kind != Node::kSym) return std::nullopt;
      names.push_back(c.ch[0].name);
    }
    size_t k = 1;
    while (k < names.size() && names[k] != names[0]) ++k;
    if (k < 2 || k == names.size() || names.size() % k != 0) return std::nullopt;
    for (size_t i = 0; i < names.size(); ++i)
      if (names[i] != names[i % k]) return std::nullopt;
    std::vector<Node> out;
    for (size_t g = 0; g < names.size(); g += k) {
      std::vector<Node> values;
      for (size_t i = g; i < g + k; ++i) values.push_back(list.ch[i].ch[1]);
      out.push_back(op(Node::kTuple, values));
    }
    return out;
  }
  bool set_equal(const std::vector<Node>& a, const std::vector<Node>& b) {
    auto covered = [&](const std::vector<Node>& x, const std::vector<Node>& y) {
      for (auto& e : x) {
        bool found = false;
        for (auto& f : y)
          if (equal(e, f)) {
            found = true;
            break;
          }
        if (!found) return false;
      }
      return true;
    };
    return covered(a, b) && covered(b, a);
  }
  bool equal(const Node& a, const Node& b) {
    if (Clock::now() > deadline) throw Timeout{};
    // relations: compare sides; "x = 3" against "3"
    if (a.kind == Node::kRel || b.kind == Node::kRel) {
      if (a.kind == Node::kRel && b.kind == Node::kRel) {
        auto canon = [](Node r) {
          bool all_eq = r.name.find_first_not_of("= ") == std::string::npos;
          if (all_eq && r.ch.size() > 2) {  // "x = 5+5+1 = 11": the first and the last side
            r.ch = {r.ch.front(), r.ch.back()};
            r.name = "= ";
          }
          if (r.ch.size() == 2 && (r.name == "> " || r.name == ">= ")) {  // a > b  ->  b < a
            std::swap(r.ch[0], r.ch[1]);
            r.name = r.name == "> " ? "< " : "<= ";
          }
          return r;
        };
        auto ca = canon(a), cb = canon(b);
        if (ca.name != a.name || cb.name != b.name || ca.ch.size() != a.ch.size() || cb.ch.size() != b.ch.size())
          return equal(ca, cb);
        if (a.name != b.name || a.ch.size() != b.ch.size()) return false;
        bool same = true;
        for (size_t k = 0; k < a.ch.size() && same; ++k) same = equal(a.ch[k], b.ch[k]);
        if (same) return true;
        if (a.ch.size() == 2 && (a.name == "= " || a.name == "< " || a.name == "<= ")) {
          // l1 - r1 == c (l2 - r2): any c != 0 for an equation, c > 0 for an inequality (-x > -1 is x < 1)
          auto d1 = op(Node::kAdd, {a.ch[0], op(Node::kNeg, {a.ch[1]})});
          auto d2 = op(Node::kAdd, {b.ch[0], op(Node::kNeg, {b.ch[1]})});
          const bool eq = a.name == "= ";
          try {
            if (is_scalar(d1) && is_scalar(d2) &&
                (scalar_equal(d1, d2) || (eq && scalar_equal(d1, op(Node::kNeg, {d2}))) || proportional(d1, d2, !eq)))
              return true;
          } catch (const ParseError&) {
          }
        }
        return false;
      }
      const Node& rel = a.kind == Node::kRel ? a : b;
      const Node& other = a.kind == Node::kRel ? b : a;
      // the gold "-2 \le x \le 7" accepts "[-2, 7]"; as in math-verify, a gold interval wants an interval
      if (auto iv = chain_interval(rel); iv && &rel == &a) {
        const bool pair = other.kind == Node::kTuple && other.ch.size() == 2;
        return (other.kind == Node::kInterval || other.kind == Node::kUnion || pair) && equal(*iv, other);
      }
      bool all_eq = rel.name.find_first_not_of("= ") == std::string::npos;
      if (!all_eq || rel.ch.size() < 2) return false;
      // a chain "1 = \zzz = x = 0" states its last side
      if (rel.ch.size() > 2) return equal(&rel == &a ? rel.ch.back() : other, &rel == &a ? other : rel.ch.back());
      // the prediction "k = 1/3" states 1/3; the gold "x = 3" accepts "3" only when its left side
      // names unknowns ("7 = 11a + c" does not accept "11a + c")
      if (&rel == &b || names_unknowns(rel.ch[0])) return equal(a.kind == Node::kRel ? rel.ch.back() : other,
                                                                a.kind == Node::kRel ? other : rel.ch.back());
      return false;
    }
    if (a.kind == Node::kText || b.kind == Node::kText || a.kind == Node::kChoice || b.kind == Node::kChoice)
      return (a.kind == b.kind || a.kind == Node::kChoice || b.kind == Node::kChoice) && a.name == b.name && !a.name.empty();
    if (a.kind == Node::kMatrix || b.kind == Node::kMatrix || has_matrix(a) || has_matrix(b)) {
      auto ma = matrix_value(a), mb = matrix_value(b);
      if (ma && mb && (ma->kind != a.kind || mb->kind != b.kind)) return equal(*ma, *mb);
      if (a.kind != b.kind || a.rows != b.rows || a.cols != b.cols) return false;
      for (size_t k = 0; k < a.ch.size(); ++k)
        if (!equal(a.ch[k], b.ch[k])) return false;
      return true;
    }
    if (a.kind == Node::kInterval || b.kind == Node::kInterval) {
      auto open_pair = [](const Node& t) { return t.kind == Node::kTuple && t.ch.size() == 2; };
      if ((a.kind == Node::kInterval || open_pair(a)) && (b.kind == Node::kInterval || open_pair(b))) {
        bool alo = a.kind == Node::kInterval && a.lo_closed, ahi = a.kind == Node::kInterval && a.hi_closed;
        bool blo = b.kind == Node::kInterval && b.lo_closed, bhi = b.kind == Node::kInterval && b.hi_closed;
        return alo == blo && ahi == bhi && equal(a.ch[0], b.ch[0]) && equal(a.ch[1], b.ch[1]);
      }
      return false;
    }
    if (a.kind == Node::kUnion || b.kind == Node::kUnion) {
      if (a.kind != b.kind) return false;
      return set_equal(a.ch, b.ch);
    }
    if ((a.kind == Node::kTuple && b.kind == Node::kSet) || (a.kind == Node::kSet && b.kind == Node::kTuple)) {
      // "{1,3}" written for a pair: math-verify compares it in order
      if (a.ch.size() != b.ch.size()) return false;
      for (size_t k = 0; k < a.ch.size(); ++k)
        if (!equal(a.ch[k], b.ch[k])) return false;
      return true;
    }
    if (a.kind == Node::kTuple || b.kind == Node::kTuple) {
      if (a.kind != b.kind || a.ch.size() != b.ch.size()) return false;
      for (size_t k = 0; k < a.ch.size(); ++k)
        if (!equal(a.ch[k], b.ch[k])) return false;
      return true;
    }
    if (a.kind == Node::kSet || b.kind == Node::kSet || a.kind == Node::kList || b.kind == Node::kList ||
        a.kind == Node::kPlusMinus || b.kind == Node::kPlusMinus || !is_scalar(a) || !is_scalar(b)) {
      auto sa = as_set(a), sb = as_set(b);
      if (sa.size() == 1 && sb.size() == 1 && is_scalar(sa[0]) && is_scalar(sb[0])) return equal(sa[0], sb[0]);
      if (sa.size() == 1 && sb.size() == 1) return false;
      return set_equal(sa, sb);
    }
    if (has_percent(a) || has_percent(b)) return percent_equal(a, b);
    return scalar_equal(a, b);
  }
};

// The answer as a tree; text and multiple-choice answers become kText / kChoice.
std::optional<Node> to_node(const std::string& norm, const Clock::time_point& deadline) {
  if (norm.empty() || norm.size() > kMaxAnswerChars) return std::nullopt;
  // multiple choice: A-E, optionally in parentheses
  {
    std::string t = norm;
    if (t.size() == 3 && t[0] == '(' && t[2] == ')') t = t.substr(1, 1);
    if (t.size() == 1 && t[0] >= 'A' && t[0] <= 'E') {
      Node c;
      c.kind = Node::kChoice;
      c.name = t;
      return c;
    }
  }
  // words of two or more letters (not commands or function names): text, or units after a value
  bool has_word = false, all_letters = true;
  for (size_t k = 0; k < norm.size();) {
    if (std::isalpha(static_cast<unsigned char>(norm[k]))) {
      size_t e = k;
      while (e < norm.size() && std::isalpha(static_cast<unsigned char>(norm[e]))) ++e;
      static const std::set<std::string> fn{"sin", "cos", "tan", "cot", "sec", "csc", "log", "ln", "exp", "sqrt",
                                            "arcsin", "arccos", "arctan", "sinh", "cosh", "tanh"};
      const std::string w = norm.substr(k, e - k);
      const bool all_caps = std::all_of(w.begin(), w.end(), [](char ch) { return std::isupper(static_cast<unsigned char>(ch)); });
      // "AB", "NO": products of point names (geometry), not words; a capitalised word has lower case
      if (e - k >= 2 && !fn.count(w) && !(all_caps && e - k <= 4)) has_word = true;
      k = e;
    } else if (norm[k] == '\\') {  // skip the command name (and an environment's name)
      size_t e = k + 1;
      while (e < norm.size() && std::isalpha(static_cast<unsigned char>(norm[e]))) ++e;
      std::string cmd = norm.substr(k + 1, e - k - 1);
      if ((cmd == "begin" || cmd == "end") && e < norm.size() && norm[e] == '{') {
        auto close = norm.find('}', e);
        const bool array = cmd == "begin" && norm.compare(e, 7, "{array}") == 0;
        e = close == std::string::npos ? norm.size() : close + 1;
        if (array && e < norm.size() && norm[e] == '{') {  // the column spec: \begin{array}{cc}
          auto spec_end = norm.find('}', e);
          e = spec_end == std::string::npos ? norm.size() : spec_end + 1;
        }
      }
      all_letters = false;
      k = std::max(e, k + 1);
    } else {
      if (!std::isspace(static_cast<unsigned char>(norm[k]))) all_letters = false;
      ++k;
    }
  }
  if (!has_word) {
    try {
      Parser p{norm, 0, 0, deadline};
      return p.top();
    } catch (const ParseError&) {
    }
  }
  if (has_word && all_letters) {
    std::string t;
    for (char ch : norm)
      if (std::isalnum(static_cast<unsigned char>(ch))) t += char(std::tolower(static_cast<unsigned char>(ch)));
    Node n;
    n.kind = Node::kText;
    n.name = t;
    return n;
  }
  // "5 cm", "12 dollars": a number followed by words
  {
    size_t k = norm.size();
    while (k > 0 && (std::isalpha(static_cast<unsigned char>(norm[k - 1])) || norm[k - 1] == ' ' || norm[k - 1] == '^' ||
                     norm[k - 1] == '2' || norm[k - 1] == '3'))
      --k;
    // keep a trailing exponent digit only as part of a unit (m^2)
    while (k < norm.size() && std::isdigit(static_cast<unsigned char>(norm[k]))) ++k;
    std::string head = trim(norm.substr(0, k));
    std::string tail = trim(norm.substr(k));
    if (!head.empty() && tail.size() >= 2 && head != norm) {
      try {
        Parser p{head, 0, 0, deadline};
        auto n = p.top();
        if (is_scalar(n)) return n;
      } catch (const ParseError&) {
      }
    }
  }
  // plain text
  std::string t;
  for (char ch : norm)
    if (std::isalnum(static_cast<unsigned char>(ch))) t += char(std::tolower(static_cast<unsigned char>(ch)));
  if (t.empty()) return std::nullopt;
  Node n;
  n.kind = Node::kText;
  n.name = t;
  return n;
}

}  // namespace

Verdict verify(const std::string& gold, const std::string& completion, const VerifyOptions& o) {
  Verdict v;
  const auto deadline = Clock::now() + std::chrono::microseconds(o.budget_us);
  auto g = extract_gold(gold);
  auto p = extract_final_answer(completion);
  if (!g || !p) return v;
  v.gold_answer = normalize_answer(*g);
  v.pred_answer = normalize_answer(*p);
  try {
    auto gn = to_node(v.gold_answer, deadline);
    auto pn = to_node(v.pred_answer, deadline);
    v.gold_parsed = gn && gn->kind != Node::kText;
    v.pred_parsed = pn && pn->kind != Node::kText;
    if (!gn || !pn) return v;
    // a choice letter written as text ("(C)", "\text{C}") or a text answer in both
    if (gn->kind == Node::kChoice && pn->kind == Node::kText && pn->name == lower(gn->name)) pn->kind = Node::kChoice, pn->name = gn->name;
    if (pn->kind == Node::kText && gn->kind != Node::kText) {  // "The largest n is 34": its last number
      if (auto num = last_number(v.pred_answer)) {
        v.pred_answer = normalize_answer(*num);
        pn = to_node(v.pred_answer, deadline);
        if (!pn) return v;
      }
    }
    if (gn->kind == Node::kText && pn->kind != Node::kText) {  // e.g. gold "\text{(B)}", pred "B"
      std::string t;
      for (char ch : v.pred_answer)
        if (std::isalnum(static_cast<unsigned char>(ch))) t += char(std::tolower(static_cast<unsigned char>(ch)));
      v.equal = t == gn->name;
      return v;
    }
    if (gn->kind == Node::kChoice && pn->kind == Node::kSym && pn->name.size() == 1) {
      v.equal = pn->name == gn->name;
      return v;
    }
    Comparer c{o.rel_tol, deadline};
    v.equal = c.equal(*gn, *pn);
  } catch (const Timeout&) {
    v.timed_out = true;
    v.equal = false;
  } catch (const ParseError&) {
    v.equal = false;
  } catch (const std::exception&) {  // e.g. allocation failure on a pathological input
    v.equal = false;
  }
  return v;
}

int64_t majority_vote(const std::vector<std::string>& completions, const VerifyOptions& o) {
  struct Cluster {
    int64_t first;
    std::string boxed;  // the representative answer as a gold
    int64_t size;
  };
  std::vector<Cluster> clusters;
  for (int64_t i = 0; i < int64_t(completions.size()); ++i) {
    auto a = extract_final_answer(completions[size_t(i)]);
    if (!a || trim(*a).empty()) continue;
    const std::string boxed = "\\boxed{" + *a + "}";
    bool placed = false;
    for (auto& c : clusters)
      if (verify(c.boxed, boxed, o).equal) {
        ++c.size;
        placed = true;
        break;
      }
    if (!placed) clusters.push_back({i, boxed, 1});
  }
  int64_t best = -1, best_size = 0;
  for (auto& c : clusters)
    if (c.size > best_size) best = c.first, best_size = c.size;
  return best;
}

}  // namespace grpo::reward::math
