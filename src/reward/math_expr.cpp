// The expression tree's exact rationals and its evaluation (see math_expr.h): shared by the parser
// (math_parse.cpp, stage 3) and the comparer (math_verify.cpp, stage 4). Arithmetic on exact
// operands stays exact (GMP rationals) up to kMaxBits; every result's size is estimated before it
// is computed. Inexact (double) arithmetic that overflows, and exact values past the size limit,
// throw Undecided: no comparison may call two such values equal. Evaluation checks the depth and
// the deadline so that no tree can hang a call.
#include "math_expr.h"

#include <algorithm>
#include <cmath>
#include <limits>

namespace grpo::reward::math::detail {

Q Q::of(mpq_class r, const Clock::time_point& deadline) {
  r.canonicalize();
  const size_t bits = mpz_sizeinbase(r.get_num_mpz_t(), 2) + mpz_sizeinbase(r.get_den_mpz_t(), 2);
  if (bits > kMaxBits) throw Undecided{};
  if (bits > (size_t(1) << 16) && Clock::now() > deadline) throw Timeout{};
  Q q;
  q.r = std::move(r);
  q.v = q.r.get_d();  // +-inf past the double range
  return q;
}

namespace {

const double kNaN = std::numeric_limits<double>::quiet_NaN();

// A double result of inexact arithmetic: an overflow (a non-finite value from operands none of
// which is \infty) cannot be compared with anything.
Q inexact(double r, std::initializer_list<const Q*> from) {
  if (std::isinf(r) && std::none_of(from.begin(), from.end(), [](const Q* q) { return q->is_infinity(); }))
    throw Undecided{};
  return Q::of_double(r);
}

size_t bits(const mpz_class& z) { return mpz_sizeinbase(z.get_mpz_t(), 2); }
double log2_abs(const mpz_class& z) {  // log2 |z| for z != 0
  long exp = 0;
  const double m = mpz_get_d_2exp(&exp, z.get_mpz_t());
  return double(exp) + std::log2(std::fabs(m));
}

struct Arith {
  const Clock::time_point& deadline;

  Q add(const Q& a, const Q& b) const {
    if (a.exact && b.exact) return Q::of(a.r + b.r, deadline);
    return inexact(a.v + b.v, {&a, &b});
  }
  Q neg(const Q& a) const {
    Q r = a;
    r.r = -r.r;
    r.v = -r.v;
    return r;
  }
  Q mul(const Q& a, const Q& b) const {
    if (a.exact && b.exact) {
      if (bits(a.r.get_num()) + bits(b.r.get_num()) + bits(a.r.get_den()) + bits(b.r.get_den()) > 2 * kMaxBits)
        throw Undecided{};
      return Q::of(a.r * b.r, deadline);
    }
    return inexact(a.v * b.v, {&a, &b});
  }
  Q div(const Q& a, const Q& b) const {
    if (a.exact && b.exact) {
      if (sgn(b.r) == 0) return Q::of_double(kNaN);  // undefined (not infinity)
      return Q::of(a.r / b.r, deadline);
    }
    if (b.v == 0) return Q::of_double(kNaN);
    return inexact(a.v / b.v, {&a, &b});
  }
  // mpz_root of n and d when both are perfect k-th powers
  static bool exact_root(const mpq_class& x, unsigned long k, mpq_class& out) {
    if (sgn(x) < 0 && k % 2 == 0) return false;
    mpz_class n = abs(x.get_num()), d = x.get_den(), rn, rd;
    if (!mpz_root(rn.get_mpz_t(), n.get_mpz_t(), k) || !mpz_root(rd.get_mpz_t(), d.get_mpz_t(), k)) return false;
    out = mpq_class(sgn(x) < 0 ? mpz_class(-rn) : rn, rd);
    return true;
  }
  Q power(const Q& a, const Q& b) const {
    if (a.exact && b.exact && sgn(a.r) == 0 && sgn(b.r) < 0) return Q::of_double(kNaN);
    if (a.exact && b.exact && b.r.get_den() <= 64) {
      // a^(p/q): the q-th root exactly (when a is a perfect power), then the integer power p
      mpq_class base = a.r;
      const unsigned long q = b.r.get_den().get_ui();
      if (q == 1 || exact_root(a.r, q, base)) {
        const mpz_class p = abs(b.r.get_num());
        if (base == 0 || base == 1) return Q::of(base, deadline);
        if (base == -1) return Q::of_int(mpz_odd_p(p.get_mpz_t()) ? -1 : 1);
        // the result's size before computing it: p * (bits of numerator + denominator)
        const double need = p.get_d() * (log2_abs(base.get_num()) + log2_abs(base.get_den())) + 2;
        if (need > double(kMaxBits)) throw Undecided{};
        const unsigned long e = p.get_ui();
        mpz_class n, d;
        mpz_pow_ui(n.get_mpz_t(), base.get_num_mpz_t(), e);
        mpz_pow_ui(d.get_mpz_t(), base.get_den_mpz_t(), e);
        return sgn(b.r) < 0 ? Q::of(mpq_class(d, n), deadline) : Q::of(mpq_class(n, d), deadline);
      }
    }
    return inexact(std::pow(a.v, b.v), {&a, &b});
  }
};

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
  const Arith ar{deadline};
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
      for (auto& c : n.ch) r = ar.add(r, sub(c));
      return r;
    }
    case Node::kMul: {
      Q r = Q::of_int(1);
      for (auto& c : n.ch) r = ar.mul(r, sub(c));
      return r;
    }
    case Node::kNeg: return ar.neg(sub(n.ch[0]));
    case Node::kInv: return ar.div(Q::of_int(1), sub(n.ch[0]));
    case Node::kPow: return ar.power(sub(n.ch[0]), sub(n.ch[1]));
    case Node::kFunc: {
      Q a = sub(n.ch[0]);
      double x = a.value();
      const auto& f = n.name;
      if (f == "sqrt") {
        mpq_class root;
        if (a.exact && Arith::exact_root(a.r, 2, root)) return Q::of(root, deadline);  // perfect squares
        return inexact(std::sqrt(x), {&a});
      }
      if (f == "abs") return a.exact ? Q::of(abs(a.r), deadline) : Q::of_double(std::fabs(x));
      if (f == "factorial") {
        if (!a.exact || a.r.get_den() != 1 || sgn(a.r) < 0) return Q::of_double(kNaN);
        // log2(n!) before computing it
        if (a.r.get_num() > 1000000000 || std::lgamma(a.r.get_d() + 1) / M_LN2 > double(kMaxBits)) throw Undecided{};
        mpz_class r;
        mpz_fac_ui(r.get_mpz_t(), a.r.get_num().get_ui());
        return Q::of(mpq_class(r), deadline);
      }
      if (f == "binom") {
        Q b = sub(n.ch[1]);
        if (!a.exact || !b.exact || a.r.get_den() != 1 || b.r.get_den() != 1 || sgn(b.r) < 0 || a.r < b.r)
          return Q::of_double(kNaN);
        if (a.r.get_num() > 1000000000) throw Undecided{};
        const double nn = a.r.get_d(), kk = b.r.get_d();
        if ((std::lgamma(nn + 1) - std::lgamma(kk + 1) - std::lgamma(nn - kk + 1)) / M_LN2 > double(kMaxBits))
          throw Undecided{};
        mpz_class r;
        mpz_bin_uiui(r.get_mpz_t(), a.r.get_num().get_ui(), b.r.get_num().get_ui());
        return Q::of(mpq_class(r), deadline);
      }
      if (f == "logb") {
        Q bq = sub(n.ch[1]);
        double r = std::log(x) / std::log(bq.value());
        double rr = std::round(r);
        return std::fabs(r - rr) < 1e-12 && std::fabs(rr) < 1e15 ? Q::of_int(int64_t(rr)) : inexact(r, {&a, &bq});
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
      if (it == fns.end()) return Q::of_double(kNaN);
      // an exact argument past the double range (10^400) has no double to start from
      if (a.exact && !std::isfinite(x)) throw Undecided{};
      return inexact(it->second(x), {&a});
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
