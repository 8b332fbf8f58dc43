// Sampling outside training (grpo_eval / grpo_sample's library side): a benchmark's pass@1 and
// cons@k and rejection sampling agree with the samples, and the command lines print / write the same.
// (The majority vote itself: reward/math_verify_test.cpp.)
#include <map>
#include <set>
#include <string>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "grpo/reward/math_verify.h"
#include "grpo/reward/reward.h"
#include "grpo/text/prompt.h"
#include "grpo/train/completions.h"
#include "grpo/train/trainer.h"
#include "../test_util.h"

using namespace grpo;
using grpo::test_util::read_jsonl;
using grpo::test_util::run_command;
using grpo::test_util::tiny_run;
using grpo::test_util::tmpdir;

TEST(Sampling, BenchmarkAndRejectionSamplingAgreeWithTheSamples) {
  auto a = tmpdir("sampling_bench");
  auto c = tiny_run(a, 2);
  c.pretrain.steps = 150;
  train::Trainer t(c);
  t.run();
  train::PolicySource src;
  src.model_dir = a + "/checkpoints/step-000002";
  auto policy = train::open_policy(src);
  auto questions = train::read_questions(policy, {}, 24);
  ASSERT_EQ(questions.size(), 24u);
  train::BenchmarkOptions bo;
  bo.k = 4;
  bo.sampling = policy.sampling;
  bo.batch_size = 5;
  auto r = train::evaluate_benchmark(policy, questions, bo);
  // pass@1 and the majority vote recomputed from the same keyed samples (any batch size)
  auto samples = train::sample_completions(policy, questions, 4, policy.sampling, bo.seed, 24);
  auto accuracy = reward::RewardRegistry::create("accuracy");
  double pass = 0, cons = 0;
  for (size_t i = 0; i < questions.size(); ++i) {
    double ok = 0;
    for (auto& s : samples.completions[i]) ok += accuracy->score(s, questions[i].answer);
    pass += ok / 4;
    auto v = reward::math::majority_vote(samples.completions[i]);
    if (v >= 0) cons += accuracy->score(samples.completions[i][size_t(v)], questions[i].answer);
  }
  EXPECT_DOUBLE_EQ(r.pass_at_1, pass / 24);
  EXPECT_DOUBLE_EQ(r.cons_at_k, cons / 24);
  EXPECT_GT(r.pass_at_1, 0.0);  // the pretrain stage left some skill
  EXPECT_GE(r.greedy, 0.0);
  // rejection sampling keeps only passing, complete, distinct completions
  train::RejectionOptions ro;
  ro.k = 6;
  ro.sampling = policy.sampling;
  ro.max_per_question = 2;
  auto kept = train::rejection_sample(policy, questions, ro);
  ASSERT_FALSE(kept.empty());
  std::map<int64_t, std::set<std::string>> per_q;
  for (auto& k : kept) {
    EXPECT_EQ(k.scores.at("accuracy"), 1.0);
    EXPECT_EQ(k.scores.at("format"), 1.0);
    EXPECT_TRUE(reward::has_r1_format(k.completion)) << k.completion;
    EXPECT_TRUE(per_q[k.question].insert(k.completion).second) << "duplicate " << k.completion;
  }
  for (auto& [q, s] : per_q) EXPECT_LE(s.size(), 2u);

  // the command lines print / write the same
  int rc = 0;
  const std::string bin = GRPO_BIN_DIR;
  auto out = run_command(bin + "/grpo_eval --model " + src.model_dir + " -k 4 --limit 24 --batch-size 7", &rc);
  ASSERT_EQ(rc, 0) << out;
  auto j = nlohmann::json::parse(out.substr(out.find('{')));
  EXPECT_DOUBLE_EQ(j["pass@1"].get<double>(), r.pass_at_1);
  EXPECT_DOUBLE_EQ(j["cons@k"].get<double>(), r.cons_at_k);
  EXPECT_DOUBLE_EQ(j["greedy"].get<double>(), r.greedy);
  EXPECT_EQ(j["questions"], 24);
  const std::string sft = a + "/sft.jsonl";
  out = run_command(bin + "/grpo_sample --model " + src.model_dir + " -k 6 --limit 40 --max-per-question 2 --out " + sft, &rc);
  ASSERT_EQ(rc, 0) << out;
  auto rows = read_jsonl(sft);
  ASSERT_FALSE(rows.empty());
  for (auto& row : rows) {
    EXPECT_TRUE(reward::has_r1_format(row["response"].get<std::string>()));
    EXPECT_EQ(row["prompt"], text::format_prompt(policy.prompt, row["question"].get<std::string>()));
  }
  out = run_command(bin + "/grpo_sample --model " + src.model_dir + " --keep nonsense --out " + sft, &rc);
  EXPECT_NE(rc, 0);
  EXPECT_NE(out.find("unknown reward 'nonsense'"), std::string::npos) << out;
  out = run_command(bin + "/grpo_eval --model " + src.model_dir + " -k 0", &rc);
  EXPECT_NE(rc, 0);
  EXPECT_NE(out.find("-k: expected an integer in [1, 65536], found 0"), std::string::npos) << out;
}
