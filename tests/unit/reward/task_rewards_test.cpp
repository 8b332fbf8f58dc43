// Task rewards: language consistency, Countdown, the overlong penalty and GSM8K.
#include <optional>
#include <vector>

#include <gtest/gtest.h>

#include "grpo/core/error.h"
#include "grpo/reward/reward.h"
#include "grpo/reward/task_rewards.h"

using namespace grpo;

TEST(Reward, LanguageConsistency) {
  using reward::Script;
  EXPECT_DOUBLE_EQ(reward::language_consistency("We add the two numbers", {Script::kLatin}), 1.0);
  // 4 Han characters + 2 Latin words: 4 / 6 in Chinese
  EXPECT_NEAR(reward::language_consistency("我们相加 the numbers", {Script::kHan}), 4.0 / 6.0, 1e-12);
  // math, LaTeX commands and code are not words
  EXPECT_DOUBLE_EQ(reward::language_consistency("答案 $\\frac{1}{2} x$ \\boxed{y} ```int main```", {Script::kHan}), 1.0);
  EXPECT_DOUBLE_EQ(reward::language_consistency("12 + 7 = 19", {Script::kHan}), 1.0);  // no words
  auto ja = reward::dominant_scripts("次の式を計算してください");
  EXPECT_EQ(ja.size(), 2u);  // Japanese: Han and kana
  EXPECT_EQ(reward::dominant_scripts("Сколько будет 2+2?"), std::vector<Script>{Script::kCyrillic});
  // the registered reward takes the target from the prompt
  reward::CombinedReward r({{"language", 1.0}});
  reward::Sample s;
  s.prompt = "计算 2+2";
  s.completion = "<think>二加二 is four</think><answer>4</answer>";
  EXPECT_NEAR(r.score(s).total, 3.0 / 5.0, 1e-12);  // 二 加 二 vs is, four
  EXPECT_THROW(reward::parse_target_script("klingon"), grpo::Error);
}

TEST(Reward, Countdown) {
  EXPECT_EQ(reward::countdown_correct("(44 - 19) * 35 / 25", 35, {44, 19, 35, 25}), true);
  EXPECT_EQ(reward::countdown_correct("44 + 19 + 35", 98, {44, 19, 35}), true);
  EXPECT_EQ(reward::countdown_correct("44 + 19 + 35 = 98", 98, {44, 19, 35}), true);
  EXPECT_EQ(reward::countdown_correct("44 + 19 + 19", 82, {44, 19, 35}), false);  // 19 reused
  EXPECT_EQ(reward::countdown_correct("44 + 19", 63, {44, 19, 35}), false);       // 35 unused
  EXPECT_EQ(reward::countdown_correct("7 / 2 * 2", 7, {7, 2, 2}), true);          // exact rationals
  EXPECT_EQ(reward::countdown_correct("1 / (2 - 2)", 0, {1, 2, 2}), std::nullopt);
  EXPECT_EQ(reward::countdown_correct("44 +", 44, {44}), std::nullopt);
  auto cd = reward::RewardRegistry::create("countdown");
  EXPECT_DOUBLE_EQ(cd->score("<think>..</think><answer>44 + 19 + 35</answer>", R"({"target": 98, "numbers": [44, 19, 35]})"), 1.0);
  EXPECT_THROW(cd->score("<answer>1</answer>", "98"), grpo::Error);  // a ground truth of the wrong kind
}

TEST(Reward, OverlongPenaltyAndGsm8k) {
  EXPECT_DOUBLE_EQ(reward::overlong_penalty(100, 512, 128), 0.0);
  EXPECT_DOUBLE_EQ(reward::overlong_penalty(384, 512, 128), 0.0);
  EXPECT_DOUBLE_EQ(reward::overlong_penalty(448, 512, 128), -0.5);
  EXPECT_DOUBLE_EQ(reward::overlong_penalty(512, 512, 128), -1.0);
  EXPECT_DOUBLE_EQ(reward::overlong_penalty(600, 512, 128), -1.0);
  reward::CombinedReward r({{"overlong", 1.0}}, 0.0, reward::RewardParams{64, "auto"});
  reward::Sample s;
  s.response_tokens = 240;
  s.max_response_tokens = 256;
  EXPECT_DOUBLE_EQ(r.score(s).total, -0.75);
  auto g = reward::RewardRegistry::create("gsm8k");
  EXPECT_DOUBLE_EQ(g->score("so she pays 18 dollars.\n#### 18", "She has 16 - 3 - 4 = 9 eggs... 9 * 2 = 18\n#### 18"), 1.0);
  EXPECT_DOUBLE_EQ(g->score("The answer is 1,800.", "#### 1800"), 1.0);
  EXPECT_DOUBLE_EQ(g->score("The answer is 17.", "#### 18"), 0.0);
}

TEST(Reward, AnswerLineWantsTheFixedFinalLine) {
  auto r = reward::RewardRegistry::create("answer_line");
  reward::Sample s;
  auto score = [&](const std::string& c) {
    s.completion = c;
    return r->score_sample(s);
  };
  EXPECT_DOUBLE_EQ(score("Step 1: 3 * 4 = 12.\nThe final answer is 12."), 1.0);
  EXPECT_DOUBLE_EQ(score("work\n\nthe final answer is: $1,250.50  \n\n"), 1.0);
  EXPECT_DOUBLE_EQ(score("The final answer is -3"), 1.0);
  EXPECT_DOUBLE_EQ(score("The final answer is 12.\nSo she bought 12 apples."), 0.5);  // not the last line: half
  EXPECT_DOUBLE_EQ(score("x\nThe final answer is 12.\n\nThe solution is 12."), 0.5);
  EXPECT_DOUBLE_EQ(score("The final answer is 30 + 30 = 60."), 0.0);                // not one number
  EXPECT_DOUBLE_EQ(score("The final answer is twelve."), 0.0);
  EXPECT_DOUBLE_EQ(score(""), 0.0);
  s.params.answer_prefix = "####";
  EXPECT_DOUBLE_EQ(score("9 * 2 = 18\n#### 18"), 1.0);
  EXPECT_DOUBLE_EQ(score("The final answer is 18."), 0.0);
}
