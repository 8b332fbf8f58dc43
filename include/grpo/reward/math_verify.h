// Math answer verification: is the final answer of a completion equal to the ground truth?
// One stage per file in src/reward/ (the expression tree of stages 3-4: math_expr.{h,cpp}):
//
//   1. extract_final_answer (answer_extraction.cpp): the <answer> block, else the last \boxed{} /
//      \fbox{}, else "final answer is ...", "The answer is ...", "Answer: ...", GSM8K "#### ...",
//      else the last LaTeX math span, else the last number.
//   2. normalise LaTeX (math_normalize.cpp): \dfrac -> \frac, \left/\right, \text{}, units,
//      degrees, \%, thousands separators, spacing commands, trailing punctuation.
//   3. parse to an expression tree (math_parse.cpp): numbers (exact rationals while they fit),
//      symbols, + - * / ^, \frac, \sqrt[n]{}, \pi, e, \infty, \pm, functions, \binom, factorial,
//      percentages, tuples, sets, intervals (and unions), matrices, equations/relations, choice
//      letters, text.
//   4. compare (math_verify.cpp, with verify and majority_vote): exact rational arithmetic (any
//      size up to ~1.2 million digits) where both sides are numbers; a decimal agrees with a value
//      within the relative tolerance and the digits it writes (0.333333 = 1/3, 0.1234567 !=
//      0.1234568); an inexact side (pi, roots) within the relative tolerance; otherwise evaluation
//      at random positive points (so sqrt(1/n) = 1/sqrt(n)); sets and comma lists are order-free,
//      tuples/intervals/matrices element-wise. Values too large to compute exactly (9^{999999999})
//      or a double overflow are "undecided" and score as not equal: \infty never equals a large
//      number.
// Every call has a time budget and hard limits on sizes and exponents: no input can hang it.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace grpo::reward::math {

struct VerifyOptions {
  double rel_tol = 1e-6;        // numeric comparison: |a - b| <= rel_tol * max(1, |a|, |b|)
  int64_t budget_us = 50000;    // per call; past it the answer counts as not verified
};

struct Verdict {
  bool equal = false;
  bool gold_parsed = false, pred_parsed = false;
  bool timed_out = false;
  bool undecided = false;  // a value too large to compare exactly (9^{999999999}): not equal
  std::string gold_answer, pred_answer;  // extracted and normalised
};

/// The final answer written in a completion (see above), trimmed; nullopt if there is none.
std::optional<std::string> extract_final_answer(const std::string& completion);

/// Normalised LaTeX of an answer (exposed for tests and debugging).
std::string normalize_answer(const std::string& answer);

/// Does `completion` state an answer equal to `gold`? (gold: a bare answer, possibly in $..$,
/// \boxed{} or after ####.)
Verdict verify(const std::string& gold, const std::string& completion, const VerifyOptions& o = {});

/// Majority vote over the final answers of several completions (cons@k, self-consistency):
/// answers that verify as equal form one cluster; the largest cluster wins (ties: the one whose
/// first member came first). Returns the index of the winning cluster's first completion, or -1
/// when no completion states an answer.
int64_t majority_vote(const std::vector<std::string>& completions, const VerifyOptions& o = {});

}  // namespace grpo::reward::math
