// The built-in addition task: disjoint, deterministic splits; demonstrations with the configured
// mistake and format rates.
#include <set>
#include <string>

#include <gtest/gtest.h>

#include "grpo/data/arithmetic.h"
#include "grpo/reward/reward.h"

using namespace grpo;

TEST(ArithmeticTask, SplitsAreDisjointAndDeterministic) {
  data::ArithmeticConfig c;
  data::ArithmeticTask t(c, 1), t2(c, 2);
  std::set<std::pair<int64_t, int64_t>> held;
  for (int i = 0; i < 300; ++i) {
    auto p = t.heldout_problem(i);
    EXPECT_TRUE(t.is_heldout(p.a, p.b));
    EXPECT_EQ(p.a, t2.heldout_problem(i).a);  // same held-out set for every seed
    held.insert({p.a, p.b});
  }
  for (int i = 0; i < 3000; ++i) {
    auto p = t.train_problem(i);
    EXPECT_FALSE(held.count({p.a, p.b}));
    EXPECT_GE(p.a, 100);
    EXPECT_LE(p.b, 999);
    EXPECT_EQ(p.answer, std::to_string(p.a + p.b));
    EXPECT_EQ(p.question, fmt::format("{}+{}=", p.a, p.b));
  }
  EXPECT_EQ(t.train_problem(17).a, data::ArithmeticTask(c, 1).train_problem(17).a);
}

TEST(ArithmeticTask, DemonstrationsHaveTheConfiguredMistakeRate) {
  EXPECT_EQ(data::carry_dropping_sum(457, 386, 3), 733);
  EXPECT_EQ(data::carry_dropping_sum(999, 999, 3), 1888);
  EXPECT_EQ(data::carry_dropping_sum(123, 456, 3), 579);
  data::ArithmeticConfig c;
  c.noise = 0.6;
  c.format_rate = 0.5;
  data::ArithmeticTask t(c, 3);
  int wrong = 0, formatted = 0, n = 4000;
  reward::CombinedReward acc({{"accuracy", 1.0}});
  for (int i = 0; i < n; ++i) {
    auto p = t.train_problem(i);
    auto d = t.demonstration(p, 1000 + i);
    formatted += reward::has_r1_format(d);
    wrong += acc.score(d, p.answer).total == 0.0;
  }
  EXPECT_NEAR(double(formatted) / n, 0.5, 0.03);
  // a carry-dropping demonstration is wrong unless the problem has no carry at all
  EXPECT_GT(double(wrong) / n, 0.4);
  EXPECT_LT(double(wrong) / n, 0.6);
  c.scratchpad = true;
  data::ArithmeticTask ts(c, 3);
  data::Problem p{457, 386, "457+386=", "843"};
  EXPECT_EQ(ts.formatted(p, 843, false), "<think>13,14,8</think><answer>843</answer>");
  EXPECT_EQ(ts.formatted(p, 733, true), "<think>13,13,7</think><answer>733</answer>");
}
