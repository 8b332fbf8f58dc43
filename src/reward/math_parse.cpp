// Stage 3 of math answer verification (see math_verify.h): a normalised answer to an expression
// tree (math_expr.h). A recursive-descent parser over the LaTeX that answers use (numbers, symbols,
// + - * / ^, \frac, \sqrt[n]{}, functions, \binom, factorial, percentages, tuples, sets,
// intervals and unions, matrices, relations), with a depth limit and the call's deadline checked
// on the way down; to_node also recognises choice letters, text and "number + units" answers.
#include "math_expr.h"
#include "math_text.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <set>
#include <vector>

namespace grpo::reward::math::detail {
namespace {

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
    // exact at any length (the digits of a decimal over a power of ten)
    std::string whole;
    for (char ch : digits)
      if (ch != '.') whole += ch;
    const size_t places = dot == std::string::npos ? 0 : i - dot - 1;
    if (whole.size() > kMaxBits / 4) throw Undecided{};
    mpz_class d;
    mpz_ui_pow_ui(d.get_mpz_t(), 10, places);
    auto q = Q::of(mpq_class(mpz_class(whole, 10), d), deadline);
    if (decimal_literal) {
      Node dn = num(q);
      dn.name = "decimal";
      dn.places = int64_t(places);
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

}  // namespace

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


}  // namespace grpo::reward::math::detail
