// Math answer verification against tests/fixtures/math/cases.jsonl (tools/make_math_fixtures.py:
// math-verify's own test cases and grpo's per-category cases, with math-verify 0.9.0's verdicts),
// and the majority vote over completions.
#include <chrono>
#include <fstream>
#include <map>
#include <set>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "grpo/reward/math_verify.h"

using namespace grpo::reward::math;
namespace reward = grpo::reward;

namespace {

std::vector<nlohmann::json> cases() {
  std::vector<nlohmann::json> out;
  std::ifstream in(std::string(GRPO_SOURCE_DIR) + "/tests/fixtures/math/cases.jsonl");
  for (std::string line; std::getline(in, line);)
    if (!line.empty()) out.push_back(nlohmann::json::parse(line));
  return out;
}

// Cases grpo does not agree with (all from math-verify's own suite), by fixture id: four inputs
// whose expected verdict holds only under a non-default math-verify configuration (31, 32:
// LaTeX-only extraction; 139, 145: precision 2). The test fails when one of these starts passing
// (shrink the list) or any other case disagrees.
const std::set<int> kKnownGaps{31, 32, 139, 145};

}  // namespace

TEST(MathVerify, AgreesWithTheFixture) {
  auto all = cases();
  ASSERT_GE(all.size(), 300u);
  std::map<std::string, std::pair<int, int>> by_category;  // agreements with expected, total
  int agree_expected = 0, agree_mv = 0;
  std::vector<std::string> wrong;
  for (auto& c : all) {
    auto v = verify(c["gold"], c["pred"]);
    bool ok = v.equal == c["expected"].get<bool>();
    agree_expected += ok;
    agree_mv += v.equal == c["math_verify"].get<bool>();
    auto& bc = by_category[c["category"]];
    bc.first += ok;
    ++bc.second;
    const int id = c["id"].get<int>();
    if (kKnownGaps.count(id)) {
      EXPECT_FALSE(ok) << "case " << id << " passes now: remove it from kKnownGaps";
      continue;
    }
    if (!ok)
      wrong.push_back(fmt::format("#{} [{}] gold {} | pred {} | ours {} expected {} | extracted '{}' vs '{}'",
                                  c["id"].get<int>(), c["category"].get<std::string>(), c["gold"].dump(),
                                  c["pred"].dump().substr(0, 120), v.equal, c["expected"].get<bool>(),
                                  v.gold_answer, v.pred_answer));
  }
  std::cout << "agreement with expected " << agree_expected << "/" << all.size() << ", with math-verify "
            << agree_mv << "/" << all.size() << "\n";
  for (auto& [cat, n] : by_category) std::cout << "  " << cat << " " << n.first << "/" << n.second << "\n";
  for (auto& w : wrong) ADD_FAILURE() << w;
  // every category of the issue has at least 15 cases
  for (const char* cat : {"integer", "decimal", "fraction", "percent", "scientific", "tuple", "set", "interval",
                          "matrix", "equation", "choice", "text", "symbolic", "latex", "extraction"})
    EXPECT_GE(by_category[cat].second, 15) << cat;
}

TEST(MathVerify, ExtractionOrder) {
  EXPECT_EQ(extract_final_answer("<think>\\boxed{1}</think><answer>2</answer>"), "2");
  EXPECT_EQ(extract_final_answer("so \\boxed{\\frac{1}{2}} and later \\fbox{3}"), "3");
  EXPECT_EQ(extract_final_answer("She has 18 eggs.\n#### 18"), "18");
  EXPECT_EQ(extract_final_answer("The final answer is $12$. I hope it is correct."), "12");
  EXPECT_EQ(extract_final_answer("Answer: 7\nmore text"), "7");
  EXPECT_EQ(extract_final_answer("we get $x = 4$ in the end"), "x = 4");
  EXPECT_EQ(extract_final_answer("no number here at all"), std::nullopt);
  EXPECT_EQ(extract_final_answer("\\boxed{1}, \\boxed{2}"), "1, 2");
}

// Oracles for the forms closed in the last round (each also covered by fixture cases): the math
// is checked by hand, e.g. [[1,2],[3,4]] + [[5,6],[7,8]] = [[6,8],[10,12]].
TEST(MathVerify, AlgebraOnRelationsMatricesAndRoots) {
  auto eq = [](const char* gold, const char* pred) { return verify(gold, pred).equal; };
  // a region in |z| is a union of two intervals, mirrored (closedness too), not one of them (these
  // verdicts are math-verify 0.9.0's on the same strings)
  EXPECT_TRUE(eq("$1 \\le |z| < 2$", "$z \\in (-2, -1] \\cup [1, 2)$"));
  EXPECT_FALSE(eq("$1 \\le |z| < 2$", "$z \\in [-2, -1] \\cup [1, 2)$"));
  EXPECT_FALSE(eq("$1 \\le |z| < 2$", "$[1, 2)$"));
  // boxes in separate math spans, each the right side of an equation, against a list of equations
  EXPECT_TRUE(eq("$a=3, b=x+1$", "So \\(a = \\boxed{3}\\) and \\(b = \\boxed{1 + x}\\)."));
  EXPECT_FALSE(eq("$a=3, b=x+1$", "So \\(a = \\boxed{3}\\) and \\(b = \\boxed{x + 2}\\)."));
  // matrix arithmetic written out
  EXPECT_TRUE(eq("\\begin{pmatrix}6 & 8 \\\\ 10 & 12\\end{pmatrix}",
                 "$\\begin{pmatrix}1 & 2 \\\\ 3 & 4\\end{pmatrix} + \\begin{pmatrix}5 & 6 \\\\ 7 & 8\\end{pmatrix}$"));
  EXPECT_TRUE(eq("\\begin{pmatrix}19 & 22 \\\\ 43 & 50\\end{pmatrix}",
                 "$\\begin{pmatrix}1 & 2 \\\\ 3 & 4\\end{pmatrix} \\begin{pmatrix}5 & 6 \\\\ 7 & 8\\end{pmatrix}$"));
  EXPECT_FALSE(eq("\\begin{pmatrix}5 & 12 \\\\ 21 & 32\\end{pmatrix}",  // element-wise is not the product
                  "$\\begin{pmatrix}1 & 2 \\\\ 3 & 4\\end{pmatrix} \\begin{pmatrix}5 & 6 \\\\ 7 & 8\\end{pmatrix}$"));
  EXPECT_TRUE(eq("\\begin{pmatrix}2 & 4\\end{pmatrix}", "$2\\begin{pmatrix}1 & 2\\end{pmatrix}$"));
  // inequalities: scaling by a positive factor keeps them, by a negative one flips them
  EXPECT_TRUE(eq("$x < 1$", "$2x < 2$"));
  EXPECT_TRUE(eq("$x < 1$", "$-x > -1$"));
  EXPECT_FALSE(eq("$x < 1$", "$-x < -1$"));
  EXPECT_FALSE(eq("$x < 1$", "$x \\le 1$"));
  // a chained inequality gold against an interval (not the other way round, as in math-verify)
  EXPECT_TRUE(eq("$-2 \\le x < 7$", "$[-2, 7)$"));
  EXPECT_FALSE(eq("$-2 \\le x < 7$", "$[-2, 7]$"));
  EXPECT_TRUE(eq("$7 > x > 2$", "$(2, 7)$"));
  EXPECT_FALSE(eq("$[-2, 7]$", "$-2 \\le x \\le 7$"));
  // \pm inside a fraction stands for both roots
  EXPECT_TRUE(eq("$\\frac{-1 + \\sqrt{13}}{4}, \\frac{-1 - \\sqrt{13}}{4}$", "$x = \\frac{-1 \\pm \\sqrt{13}}{4}$"));
  EXPECT_FALSE(eq("$\\frac{-1 + \\sqrt{13}}{4}$", "$x = \\frac{-1 \\pm \\sqrt{13}}{4}$"));
  // a chain of equalities states its last side; |AB| = 1 states 1
  EXPECT_TRUE(eq("$1 = \\zzz = x = 0$", "$0$"));
  EXPECT_TRUE(eq("$|AB| = 1$", "$1$"));
  // a doubly escaped command is the command
  EXPECT_TRUE(eq("$\\\\frac{1}{2}$", "$0.5$"));
  // assignments repeated over the same unknowns are tuples of solutions
  EXPECT_TRUE(eq("$p=5,q=2;p=7,q=2$", "$(5,2),(7,2)$"));
  EXPECT_TRUE(eq("$p=5,q=2;p=7,q=2$", "$(7,2),(5,2)$"));
  EXPECT_FALSE(eq("$p=5,q=2;p=7,q=2$", "$(2,5),(2,7)$"));
  // a decimal comma after a leading zero
  EXPECT_TRUE(eq("0,111", "0.111"));
  EXPECT_TRUE(eq("1,000", "1000"));
}

TEST(MathVerify, ExtractionAcrossMarkers) {
  // boxes joined by a phrase ending in "and" form one answer; "and later" revises it
  EXPECT_EQ(extract_final_answer("\\boxed{1} papers and \\boxed{2} bins"), "1, 2");
  EXPECT_EQ(extract_final_answer("so \\boxed{1} and later \\boxed{3}"), "3");
  // a "final answer is" statement after the last box wins
  EXPECT_EQ(extract_final_answer("\\boxed{255} so the total is 10455. The final answer is $10,455$. I hope it is correct."),
            "10,455");
  // its first math span (or several joined by "and"), in $..$ or \(..\), quoted or not
  EXPECT_EQ(extract_final_answer("The final answer is $16$. Then we try $t$ again"), "16");
  EXPECT_EQ(extract_final_answer("The final answer is \\((-6, 10)\\). I hope it is correct."), "(-6, 10)");
  EXPECT_EQ(extract_final_answer("The final answer is \"$12$ and $13$\". I hope it is correct."), "12, 13");
  // a plain number after the last math span; a plain-text fraction
  EXPECT_EQ(extract_final_answer("with $d = 90/n$ for each divisor, there are 12 sequences."), "12");
  EXPECT_EQ(extract_final_answer("Solving, P(A) = (1/2) / (3/4), so the probability is 2/3"), "2/3");
}

TEST(MathVerify, HostileInputsStayWithinTheBudget) {
  using Clock = std::chrono::steady_clock;
  std::vector<std::string> inputs{
      "\\boxed{" + std::string(5000, '(') + "1" + std::string(5000, ')') + "}",
      "\\boxed{9^{9^{9^{9^{9}}}}}",
      "\\boxed{10^{100000}}",
      "\\boxed{" + std::string(100000, '9') + "}",
      "\\boxed{\\frac{\\frac{\\frac{1}{2}}{3}}{" + std::string(3000, '{') + "}",
      "\\boxed{" + std::string(20000, 'x') + "}",
      "\\boxed{1000!}",
      "\\boxed{\\binom{100000}{50000}}",
      "$$" + std::string(50000, '$'),
      "\\boxed{\\sqrt[0]{2}}",
      "\\boxed{0^{-1}}",
      "\\boxed{\\begin{pmatrix}" + std::string(3000, '&') + "\\end{pmatrix}}",
  };
  VerifyOptions o;
  o.budget_us = 20000;
  for (auto& in : inputs) {
    auto t0 = Clock::now();
    auto v = verify("1", in, o);
    double ms = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
    EXPECT_FALSE(v.equal) << in.substr(0, 60);
    EXPECT_LT(ms, 1000.0) << in.substr(0, 60);  // a safety net far above the 20 ms budget
  }
  EXPECT_TRUE(verify("\\frac{1}{\\sqrt{n}}", "\\boxed{\\sqrt{\\frac{1}{n}}}").equal);
  // a product of 40 8x8 matrices against a matrix: bounded (each product multiplies the element trees)
  std::string m = "\\begin{pmatrix}";
  for (int r = 0; r < 8; ++r) m += "1&2&3&4&5&6&7&8\\\\";
  m += "\\end{pmatrix}";
  std::string product;
  for (int k = 0; k < 40; ++k) product += m;
  auto t0 = Clock::now();
  EXPECT_FALSE(verify(m, "\\boxed{" + product + "}", o).equal);
  const double product_ms = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
  EXPECT_LT(product_ms, 1000.0);
}

// Numbers stay exact at any size the budget allows; past the size limit the verdict is "undecided"
// (not equal) unless both answers are written alike; a sum of huge powers stays within the budget.
TEST(MathVerify, HugeNumbersAreExactOrUndecidedNeverEqualByOverflow) {
  using Clock = std::chrono::steady_clock;
  auto big = verify("9^{999999999}", "\\boxed{9^{999999998}}");
  EXPECT_FALSE(big.equal);
  EXPECT_TRUE(big.undecided);
  auto same = verify("9^{999999999}", "\\boxed{9^{999999999}}");
  EXPECT_TRUE(same.equal);
  EXPECT_FALSE(same.undecided);
  auto inf = verify("\\infty", "\\boxed{10^{400}}");
  EXPECT_FALSE(inf.equal);
  EXPECT_FALSE(inf.undecided);  // decided: 10^400 is finite
  EXPECT_TRUE(verify("10^{400}", "\\boxed{1" + std::string(400, '0') + "}").equal);
  EXPECT_FALSE(verify("10^{400}", "\\boxed{1" + std::string(399, '0') + "1}").equal);
  // 2^4000000 is computed exactly (4,000,001 bits) in far less than the default 50 ms budget
  auto ms_since = [](Clock::time_point t) { return std::chrono::duration<double, std::milli>(Clock::now() - t).count(); };
  auto t0 = Clock::now();
  EXPECT_TRUE(verify("2^{4000000}", "\\boxed{4^{2000000}}").equal);
  EXPECT_LT(ms_since(t0), 1000.0);
  std::string sum;
  for (int k = 0; k < 300; ++k) sum += (k ? "+" : "") + std::string("7^{1400000}");
  VerifyOptions o;
  o.budget_us = 20000;
  t0 = Clock::now();
  auto v = verify("1", "\\boxed{" + sum + "}", o);
  EXPECT_FALSE(v.equal);
  EXPECT_LT(ms_since(t0), 1000.0);
}

// The majority vote (cons@k in grpo_eval) clusters answers that verify as equal.
TEST(Sampling, MajorityVoteClustersEquivalentAnswers) {
  using reward::math::majority_vote;
  EXPECT_EQ(majority_vote({"\\boxed{3}", "so \\boxed{1/2}", "The answer is 0.5", "\\boxed{\\frac{2}{4}}", "no idea"}), 1);
  EXPECT_EQ(majority_vote({"\\boxed{3}", "\\boxed{4}"}), 0);  // a tie: the earlier cluster
  EXPECT_EQ(majority_vote({"nothing", ""}), -1);
}
