// Char tokenizer, templates, answer extraction, format reward and the addition task.
#include <signal.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <cmath>
#include <thread>
#include <set>
#include <stdexcept>

#include <gtest/gtest.h>

#include "grpo/core/error.h"
#include "grpo/data/arithmetic.h"
#include "grpo/reward/plugin.h"
#include "grpo/reward/pool.h"
#include "grpo/reward/reward.h"
#include "grpo/reward/task_rewards.h"
#include "grpo/text/tokenizer.h"

using namespace grpo;

TEST(CharTokenizer, RoundTripWithSpecialTokens) {
  text::CharTokenizer tok("0123456789+=", {"<think>", "</think>"});
  auto ids = tok.encode("12+3=<think>4</think>");
  EXPECT_EQ(ids.size(), 5u + 1 + 1 + 1);
  EXPECT_EQ(tok.decode(ids), "12+3=<think>4</think>");
  EXPECT_EQ(tok.decode(ids, true), "12+3=4");
  EXPECT_EQ(*tok.token_id("<think>"), 2);
  EXPECT_EQ(tok.vocab_size(), 2 + 2 + 12);
  EXPECT_THROW(tok.encode("1a"), Error);
  EXPECT_THROW(tok.decode({99}), Error);
}

TEST(Template, SubstitutesPrompt) {
  EXPECT_EQ(text::apply_template("Q: {prompt} A:", "1+1="), "Q: 1+1= A:");
  EXPECT_EQ(text::apply_template("{{x}} {prompt}", "p"), "{x} p");
  EXPECT_THROW(text::apply_template("no field", "p"), Error);
  EXPECT_THROW(text::apply_template("{question}", "p"), Error);
  auto r1 = text::apply_template(text::resolve_template("r1_zero"), "What is 2+3?");
  EXPECT_EQ(r1.substr(0, 40), "A conversation between User and Assistan");
  EXPECT_EQ(r1.substr(r1.size() - 30), "User: What is 2+3?. Assistant:");
  EXPECT_EQ(text::resolve_template("plain"), "{prompt}");
  EXPECT_THROW(text::resolve_template("chatml2"), Error);
}

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

namespace {
class Slow : public reward::RewardFn {
 public:
  double score(const std::string& c, const std::string&) const override {
    if (c == "slow") std::this_thread::sleep_for(std::chrono::milliseconds(300));
    return double(c.size());
  }
};
}  // namespace

TEST(RewardPool, ScoresOutOfOrderSubmissionsByIndexAndTimesOutLateOnes) {
  reward::RewardRegistry::add("test_slow", [] { return std::make_unique<Slow>(); });
  reward::CombinedReward r({{"test_slow", 2.0}}, -1.0);
  reward::RewardPool pool(r, 2, /*budget_seconds=*/0.1, -1.0);
  const std::vector<std::string> texts{"a", "bb", "slow", "dddd"};
  for (int64_t i : {3, 0, 2, 1}) {
    reward::Sample s;
    s.completion = texts[i];
    pool.submit(i, s);
  }
  auto out = pool.wait(4);
  ASSERT_EQ(out.size(), 4u);
  EXPECT_DOUBLE_EQ(out[0].total, 2.0);
  EXPECT_DOUBLE_EQ(out[1].total, 4.0);
  EXPECT_DOUBLE_EQ(out[3].total, 8.0);
  EXPECT_DOUBLE_EQ(out[2].total, -2.0);  // past its 0.1 s budget: the failure value
  ASSERT_EQ(out[2].failed.size(), 1u);
  EXPECT_NE(out[2].failed[0].find("timed out"), std::string::npos);
  EXPECT_EQ(pool.last_stats().timeouts, 1);
  // the pool is reusable; a missing index is an error
  reward::Sample s;
  s.completion = "x";
  pool.submit(1, s);
  EXPECT_THROW(pool.wait(2), grpo::Error);
}

TEST(RewardPlugin, ScoresThroughAChildProcessAndSurvivesCrashesHangsAndGarbage) {
  auto tmp = std::string(GRPO_TEST_TMPDIR);
  std::filesystem::create_directories(tmp);
  // a plugin in shell: the score is the number of characters of the completion field's line
  auto ok = reward::make_process_reward("while read -r line; do echo \"{\\\"score\\\": ${#line}}\"; done", 5.0);
  reward::Sample s;
  s.completion = "abc";
  double first = ok->score_sample(s);
  EXPECT_GT(first, 0.0);
  s.completion = "abcdef";
  EXPECT_DOUBLE_EQ(ok->score_sample(s), first + 3);  // the same process answers again
  // crash, garbage and a hang are errors (-> the failure value in CombinedReward); a hung plugin's
  // whole process group is killed at the deadline
  auto crash = reward::make_process_reward("read -r line; exit 3", 5.0);
  EXPECT_THROW(crash->score_sample(s), grpo::Error);
  EXPECT_THROW(crash->score_sample(s), grpo::Error);  // restarted, fails again, no hang
  auto garbage = reward::make_process_reward("while read -r line; do echo 'not json'; done", 5.0);
  EXPECT_THROW(garbage->score_sample(s), grpo::Error);
  const std::string pidfile = tmp + "/plugin_sleep.pid";
  std::filesystem::remove(pidfile);
  auto hang = reward::make_process_reward("sleep 100 & echo $! > " + pidfile + "; wait", 5.0);
  s.deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(300);
  auto t0 = std::chrono::steady_clock::now();
  EXPECT_THROW(hang->score_sample(s), grpo::Error);
  EXPECT_LT(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(), 3.0);
  std::ifstream in(pidfile);
  pid_t sleeper = 0;
  in >> sleeper;
  ASSERT_GT(sleeper, 0);
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  // gone, or a zombie waiting for init to reap it (kill(pid, 0) still succeeds on zombies)
  std::ifstream stat("/proc/" + std::to_string(sleeper) + "/stat");
  std::string pid_s, comm, state;
  if (stat >> pid_s >> comm >> state) EXPECT_EQ(state, "Z") << "the plugin's background sleep outlived the timeout";
  // through CombinedReward: the failure value, counted
  reward::RewardRegistry::add("test_crash_plugin", [] { return reward::make_process_reward("exit 1", 5.0); });
  reward::CombinedReward r({{"test_crash_plugin", 1.0}}, -1.0);
  auto out = r.score("x", "y");
  EXPECT_DOUBLE_EQ(out.total, -1.0);
  EXPECT_EQ(out.failed.size(), 1u);
}
