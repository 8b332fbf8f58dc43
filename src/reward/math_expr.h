// The answer as an expression tree, shared by stages 3 and 4 of math answer verification (see
// math_verify.h): math_parse.cpp builds it, math_verify.cpp compares two of them, math_expr.cpp
// holds the exact rationals and the evaluation both rely on. Numbers stay exact rationals while
// numerator and denominator fit in 2^100 and fall back to doubles past that.
// Internal: not installed.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

namespace grpo::reward::math::detail {

using Clock = std::chrono::steady_clock;
struct Timeout {};     // the call's time budget is spent
struct ParseError {};  // not something the parser reads, or past a size/depth limit

inline constexpr int kMaxDepth = 100;  // nesting of parser calls and of evaluation

// ------------------------------------------------------------------ values (math_expr.cpp)
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
// n/d in lowest terms; a double past 2^100 (and inf/nan for d == 0).
Q make(__int128 n, __int128 d);

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
