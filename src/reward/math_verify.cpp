// Stage 4 of math answer verification and its entry points (see math_verify.h): comparing the
// gold and predicted trees (math_expr.h) by exact rational arithmetic where both are numbers,
// evaluation at random points otherwise, and structure for sets, tuples, intervals, matrices and
// relations; verify() runs the whole pipeline (answer_extraction.cpp, math_normalize.cpp,
// math_parse.cpp, then the comparer here) and majority_vote() clusters answers with it.
#include "grpo/reward/math_verify.h"

#include "math_expr.h"
#include "math_text.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <functional>
#include <set>
#include <vector>

namespace grpo::reward::math {
using namespace detail;
namespace {

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
      if (x.exact && y.exact) {
        if (x.r == y.r) return true;
        if (!has_decimal(a) && !has_decimal(b)) return false;  // exact numbers are equal or not
        return decimals_agree(a, x, b, y);
      }
      // an inexact side (pi, sqrt 2, \infty): an exact value past the double range is none of them
      if ((x.exact && !std::isfinite(x.v)) || (y.exact && !std::isfinite(y.v))) return false;
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
  // A decimal stands for its value rounded to the digits written: 0.333333 for 1/3, 0.1 for
  // 0.10000001. Two values agree within the relative tolerance, and never across written digits:
  // the ranges each decimal rounds from ([x - u/2, x + u/2), u a unit of its last digit, times
  // 10^k for "d \times 10^k") must meet, so 0.1234567 and 0.1234568 differ whatever the tolerance.
  bool decimals_agree(const Node& a, const Q& x, const Node& b, const Q& y) {
    const mpq_class diff = abs(x.r - y.r), scale = std::max({mpq_class(1), mpq_class(abs(x.r)), mpq_class(abs(y.r))});
    if (diff > mpq_class(tol) * scale) return false;
    auto ua = written_unit(a), ub = written_unit(b);
    auto lo = [](const Q& v, const std::optional<mpq_class>& u) { return u ? mpq_class(v.r - *u / 2) : v.r; };
    auto hi = [](const Q& v, const std::optional<mpq_class>& u) { return u ? mpq_class(v.r + *u / 2) : v.r; };
    if (ua && ub) return lo(x, ua) < hi(y, ub) && lo(y, ub) < hi(x, ua);
    if (ua) return lo(x, ua) <= y.r && y.r < hi(x, ua);
    if (ub) return lo(y, ub) <= x.r && x.r < hi(y, ub);
    return true;
  }
  // A unit of the last written digit of a decimal literal, -d, or d \times 10^k; nullopt otherwise.
  std::optional<mpq_class> written_unit(const Node& n) {
    if (n.kind == Node::kNum && n.name == "decimal" && n.places >= 0 && n.places < 10000) {
      mpz_class p;
      mpz_ui_pow_ui(p.get_mpz_t(), 10, static_cast<unsigned long>(n.places));
      return mpq_class(mpz_class(1), p);
    }
    if (n.kind == Node::kNeg) return written_unit(n.ch[0]);
    if (n.kind == Node::kMul && n.ch.size() == 2) {
      const Node& pw = n.ch[1];
      auto u = written_unit(n.ch[0]);
      if (!u || pw.kind != Node::kPow || pw.ch[0].kind != Node::kNum || pw.ch[0].q.r != 10) return std::nullopt;
      Q e = eval(pw, {}, deadline);
      if (!e.exact) return std::nullopt;
      return mpq_class(*u * e.r);
    }
    return std::nullopt;
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
  } catch (const Undecided&) {  // too large to compare exactly: never "equal", unless written alike
    v.undecided = v.gold_answer != v.pred_answer;
    v.equal = !v.undecided;
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
