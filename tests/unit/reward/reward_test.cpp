// Answer extraction, the R1 format (strict and lenient), tag counts, accuracy through math
// verification, and combined rewards: weights, unknown names, a failing reward's failure value.
#include <cmath>
#include <memory>
#include <stdexcept>

#include <gtest/gtest.h>

#include "grpo/core/error.h"
#include "grpo/reward/reward.h"

using namespace grpo;

TEST(Reward, ExtractAnswer) {
  EXPECT_EQ(reward::extract_answer("<think>x</think><answer> 843 </answer>").value(), "843");
  EXPECT_EQ(reward::extract_answer("843").value(), "843");
  EXPECT_EQ(reward::extract_answer("<think>13,14</think>843").value(), "843");
  EXPECT_EQ(reward::extract_answer("<answer>1</answer><answer>2</answer>").value(), "2");
  EXPECT_EQ(reward::extract_answer("<think>843").value(), "843");
  EXPECT_FALSE(reward::extract_answer("<think></think>").has_value());
}

TEST(Reward, R1FormatIsStrict) {
  EXPECT_TRUE(reward::has_r1_format("<think>a</think><answer>1</answer>"));
  EXPECT_TRUE(reward::has_r1_format(" <think></think> <answer>1</answer> "));
  EXPECT_FALSE(reward::has_r1_format("<answer>1</answer><think>a</think>"));
  EXPECT_FALSE(reward::has_r1_format("<think>a</think>x<answer>1</answer>"));
  EXPECT_FALSE(reward::has_r1_format("<think>a</think><answer>1</answer><answer>1</answer>"));
  EXPECT_FALSE(reward::has_r1_format("<think><answer></think><answer>1</answer>"));
  EXPECT_FALSE(reward::has_r1_format("1"));
}

TEST(Reward, CombinedWeightsAndUnknownName) {
  reward::CombinedReward r({{"accuracy", 1.0}, {"format", 0.5}});
  auto s = r.score("<think></think><answer>12</answer>", "12");
  EXPECT_DOUBLE_EQ(s.total, 1.5);
  EXPECT_DOUBLE_EQ(r.score("12", "12").total, 1.0);
  EXPECT_DOUBLE_EQ(r.score("<think></think><answer>13</answer>", "12").total, 0.5);
  EXPECT_THROW(reward::CombinedReward({{"nope", 1.0}}), Error);
}

TEST(Reward, LenientFormatAndTagCount) {
  EXPECT_TRUE(reward::has_r1_format_lenient("Sure! <think>a</think>\nso: <answer>3</answer> done"));
  EXPECT_FALSE(reward::has_r1_format("Sure! <think>a</think>\nso: <answer>3</answer> done"));
  EXPECT_FALSE(reward::has_r1_format_lenient("<answer>3</answer><think>a</think>"));  // order
  EXPECT_FALSE(reward::has_r1_format_lenient("<think>a</think><answer> </answer>"));  // empty answer
  auto tags = reward::RewardRegistry::create("tag_count");
  EXPECT_DOUBLE_EQ(tags->score("<think>a</think><answer>3</answer>", ""), 1.0);
  EXPECT_DOUBLE_EQ(tags->score("<think>a</think>", ""), 0.5);
  EXPECT_DOUBLE_EQ(tags->score("<think><think>a</think><answer>3", ""), 0.5);
  EXPECT_DOUBLE_EQ(tags->score("nothing", ""), 0.0);
}

namespace {
class Throwing : public reward::RewardFn {
 public:
  double score(const std::string& c, const std::string&) const override {
    if (c == "nan") return std::nan("");
    throw std::runtime_error("boom");
  }
};
}  // namespace

TEST(Reward, AFailingRewardScoresTheFailureValueAndIsCounted) {
  reward::RewardRegistry::add("test_throwing", [] { return std::make_unique<Throwing>(); });
  reward::CombinedReward r({{"test_throwing", 2.0}, {"format", 1.0}}, -0.5);
  auto out = r.score("<think>a</think><answer>1</answer>", "1");
  EXPECT_DOUBLE_EQ(out.parts["test_throwing"], -0.5);
  EXPECT_DOUBLE_EQ(out.total, 2.0 * -0.5 + 1.0);
  ASSERT_EQ(out.failed.size(), 1u);
  EXPECT_NE(out.failed[0].find("test_throwing: boom"), std::string::npos) << out.failed[0];
  auto nan = r.score("nan", "1");
  ASSERT_EQ(nan.failed.size(), 1u);
  EXPECT_NE(nan.failed[0].find("non-finite"), std::string::npos) << nan.failed[0];
}

TEST(Reward, AccuracyUsesMathVerification) {
  auto acc = reward::RewardRegistry::create("accuracy");
  EXPECT_DOUBLE_EQ(acc->score("<think>..</think><answer>\\frac{1}{2}</answer>", "0.5"), 1.0);
  EXPECT_DOUBLE_EQ(acc->score("<think>..</think><answer>\\frac{1}{3}</answer>", "0.5"), 0.0);
  EXPECT_DOUBLE_EQ(acc->score("843", "843"), 1.0);
  EXPECT_DOUBLE_EQ(acc->score("<think>843</think><answer>733</answer>", "843"), 0.0);
}
