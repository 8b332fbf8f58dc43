// The answer as an expression tree, shared by stages 3 and 4 of math answer verification (see
// math_verify.h): math_parse.cpp builds it, math_verify.cpp compares two of them, math_expr.cpp
// holds the exact rationals and the evaluation both rely on. Numbers are exact rationals (GMP) of
// any size up to kMaxBits; past that, or where a double overflows, the comparison is undecided
// (not equal), never "equal because both are infinite".
// Internal: not installed.
#pragma once

#include <chrono>
#include <cmath>
#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include <gmpxx.h>

namespace grpo::reward::math::detail {

using Clock = std::chrono::steady_clock;
struct Timeout {};     // the call's time budget is spent
struct ParseError {};  // not something the parser reads, or past a size/depth limit
struct Undecided {};   // an exact value past kMaxBits, or a double that overflowed: cannot compare

inline constexpr int kMaxDepth = 100;            // nesting of parser calls and of evaluation
inline constexpr size_t kMaxBits = size_t(1) << 22;  // numerator + denominator of an exact value (~1.2M digits)

// ------------------------------------------------------------------ values (math_expr.cpp)
struct Q {  // an exact rational (exact), or a double (pi, sqrt 2, a symbol's value, ...)
  bool exact = true;
  mpq_class r;   // the value when exact (canonical)
  double v = 0;  // the double value; for an exact one past the double range +-inf (not an infinity)
  static Q of_double(double x) {
    Q q;
    q.exact = false;
    q.v = x;
    return q;
  }
  static Q of_int(int64_t x) {
    Q q;
    q.r = static_cast<long>(x);
    q.v = double(x);
    return q;
  }
  // r in lowest terms; throws Undecided past kMaxBits, Timeout past `deadline` (big values only)
  static Q of(mpq_class r, const Clock::time_point& deadline = Clock::time_point::max());
  double value() const { return v; }
  bool is_infinity() const { return !exact && std::isinf(v); }  // \infty (exact values are finite)
};

// ------------------------------------------------------------------ expression tree
struct Node {
  enum Kind { kNum, kSym, kAdd, kMul, kPow, kNeg, kInv, kFunc, kTuple, kSet, kList, kInterval, kUnion,
              kMatrix, kRel, kText, kChoice, kPlusMinus } kind = kNum;
  Q q;
  std::string name;  // symbol, function, relation operator, text
  std::vector<Node> ch;
  bool lo_closed = false, hi_closed = false;  // interval
  int64_t rows = 0, cols = 0;                 // matrix
  int64_t places = -1;                        // a decimal literal (name "decimal"): digits after the point
  bool percent = false;
};
Node num(Q q);
Node op(Node::Kind k, std::vector<Node> ch, std::string name = "");

// ------------------------------------------------------------------ evaluation (math_expr.cpp)
using Env = std::map<std::string, double>;
// The value of a scalar tree with its symbols set from env (unset: nan); throws ParseError for a
// non-scalar node, Timeout past the deadline.
Q eval(const Node& n, const Env& env, const Clock::time_point& deadline, int depth = 0);
void symbols(const Node& n, std::set<std::string>& out);  // free symbols (not pi, e)
bool has_percent(const Node& n);
bool has_number(const Node& n);
bool names_unknowns(const Node& n);  // symbols only: "x", "(p, q)", "\frac{NO}{BO}", "AB"
bool has_matrix(const Node& n);
bool has_decimal(const Node& n);  // a decimal literal: its value is a rounding, compare with tolerance
bool is_scalar(const Node& n);
// Values in [0.5, 3) for each symbol from a linear congruential stream (positive: so that
// sqrt(1/n) = 1/sqrt(n) and logs are defined).
Env random_point(const std::set<std::string>& names, uint64_t& seed);
bool close_enough(double a, double b, double tol);

// ------------------------------------------------------------------ stage 3 (math_parse.cpp)
// The answer as a tree; text and multiple-choice answers become kText / kChoice.
std::optional<Node> to_node(const std::string& norm, const Clock::time_point& deadline);

}  // namespace grpo::reward::math::detail
