// The expression tree's exact rationals and its evaluation (see math_expr.h): shared by the parser
// (math_parse.cpp, stage 3) and the comparer (math_verify.cpp, stage 4). Rational arithmetic stays
// exact while the operands fit in 2^62 and falls back to doubles; evaluation checks the depth and
// the deadline so that no tree can hang a call.
#include "math_expr.h"

#include <algorithm>
#include <cmath>
#include <limits>

namespace grpo::reward::math::detail {
namespace {

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

}  // namespace

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

namespace {

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

const double kNaN = std::numeric_limits<double>::quiet_NaN();

}  // namespace

// ------------------------------------------------------------------ expression tree
Node num(Q q) {
  Node n;
  n.q = q;
  return n;
}
Node op(Node::Kind k, std::vector<Node> ch, std::string name) {
  Node n;
  n.kind = k;
  n.ch = std::move(ch);
  n.name = std::move(name);
  return n;
}

// ------------------------------------------------------------------ evaluation
Q eval(const Node& n, const Env& env, const Clock::time_point& deadline, int depth) {
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

}  // namespace grpo::reward::math::detail
