// Math answer verification against tests/fixtures/math/cases.jsonl (tools/make_math_fixtures.py:
// math-verify's own test cases and grpo's per-category cases, with math-verify 0.9.0's verdicts).
#include <chrono>
#include <fstream>
#include <map>
#include <set>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "grpo/reward/math_verify.h"

using namespace grpo::reward::math;

namespace {

std::vector<nlohmann::json> cases() {
  std::vector<nlohmann::json> out;
  std::ifstream in(std::string(GRPO_SOURCE_DIR) + "/tests/fixtures/math/cases.jsonl");
  for (std::string line; std::getline(in, line);)
    if (!line.empty()) out.push_back(nlohmann::json::parse(line));
  return out;
}

// Cases grpo does not get right yet (all from math-verify's own suite), by fixture id: matrix
// arithmetic, inequalities that need algebra (-x > -1 vs x < 1), intervals written as
// inequalities, answers buried in long reasoning without a marker, and inputs that only pass under
// a non-default math-verify configuration. The test fails
// when one of these starts passing (shrink the list) or any other case disagrees.
const std::set<int> kKnownGaps{17, 31, 32, 66, 67, 69, 111, 113, 115, 127, 129, 130, 139, 145, 147, 148, 156, 157, 166, 169, 178, 180, 190, 200, 206, 224, 229, 234, 241, 247, 251, 254};

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
}
