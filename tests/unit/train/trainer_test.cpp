// The trainer end to end on tiny runs: gradient accumulation, the reference model and its refreshes,
// on-policy ratios, every GRPO variant, DAPO dynamic sampling, the response-length schedule, bf16
// against fp32, device errors; the SFT stage and stage hand-over; training from a Hugging Face
// directory (and grpo_generate / grpo_export on the result).
#include <cmath>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <string>
#include <vector>

#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "grpo/core/config.h"
#include "grpo/core/device.h"
#include "grpo/core/error.h"
#include "grpo/core/profile.h"
#include "grpo/core/rng.h"
#include "grpo/data/arithmetic.h"
#include "grpo/env/environment.h"
#include "grpo/io/safetensors.h"
#include "grpo/reward/reward.h"
#include "grpo/text/hf_tokenizer.h"
#include "grpo/text/prompt.h"
#include "grpo/train/checkpoint.h"
#include "grpo/train/config.h"
#include "grpo/train/policy_loader.h"
#include "grpo/train/trainer.h"
#include "../test_util.h"

namespace fs = std::filesystem;
using namespace grpo;
using grpo::test_util::error_of;
using grpo::test_util::hf_model_dir;
using grpo::test_util::kQwen3Tok;
using grpo::test_util::read_jsonl;
using grpo::test_util::run_command;
using grpo::test_util::tiny_run;
using grpo::test_util::tmpdir;
using grpo::test_util::write_file;

TEST(Trainer, GradientAccumulationMatchesOneBigMicroBatch) {
  // Same rollout step with micro-batches of ~4 rows vs one micro-batch per mini-batch: the
  // aggregation weights are computed per mini-batch, so the updates agree to rounding.
  auto a = tmpdir("accum_small"), b = tmpdir("accum_big");
  auto ca = tiny_run(a, 2), cb = tiny_run(b, 2);
  ca.grpo.micro_batch_tokens = 100;
  cb.grpo.micro_batch_tokens = 1000000;
  ca.checkpoint.every = cb.checkpoint.every = 0;
  train::Trainer ta(ca), tb(cb);
  ta.run();
  tb.run();
  auto pa = ta.policy().named_parameters(), pb = tb.policy().named_parameters();
  double max_diff = 0, max_change = 0;
  auto base = train::load_checkpoint(a + "/checkpoints/step-000000").model;  // after the pretrain stage
  for (size_t i = 0; i < pa.size(); ++i) {
    max_diff = std::max(max_diff, (pa[i].second - pb[i].second).abs().max().item<double>());
    max_change = std::max(max_change, (pa[i].second - base[i].second).abs().max().item<double>());
  }
  EXPECT_GT(max_change, 1e-5);  // GRPO did move the weights
  EXPECT_LT(max_diff, 1e-5);
}

// Divergence guard: with a learning rate that blows the weights up, the non-finite updates are
// skipped, the run stops with an error naming the step, and every checkpoint on disk stays finite.
TEST(Trainer, DivergenceStopsTheRunAndNeverWritesANonFiniteCheckpoint) {
  auto a = tmpdir("diverge");
  auto c = tiny_run(a, 3);
  c.optim.lr = 1e30;
  c.optim.warmup_steps = 0;
  c.optim.max_bad_steps = 1;
  train::Trainer t(c);
  auto msg = error_of([&] { t.run(); });
  EXPECT_NE(msg.find("training diverged at rollout step"), std::string::npos) << msg;
  EXPECT_NE(msg.find("optim.max_bad_steps = 1"), std::string::npos) << msg;
  int checked = 0;
  for (auto& e : fs::directory_iterator(a + "/checkpoints"))
    if (e.is_directory() && train::is_checkpoint(e.path().string())) {
      for (auto& [name, w] : train::load_checkpoint(e.path().string()).model)
        EXPECT_TRUE(at::isfinite(w).all().item<bool>()) << e.path() << " " << name;
      ++checked;
    }
  EXPECT_GE(checked, 1);
  // a checkpoint holding NaN: resuming from it skips the non-finite updates, then stops
  auto ck = train::load_checkpoint(a + "/checkpoints/step-000000");
  ck.model[0].second = ck.model[0].second.clone().fill_(std::nanf(""));
  auto b = tmpdir("diverge_nan_ckpt");
  train::save_checkpoint(b + "/checkpoints", "000000", ck, 2);
  auto cb = c;  // the checkpoint's config; a higher max_bad_steps is a safe change on resume
  cb.run.dir = b;
  cb.optim.max_bad_steps = 2;
  train::Trainer tb(cb);
  msg = error_of([&] { tb.run(); });
  EXPECT_NE(msg.find("training diverged"), std::string::npos) << msg;
  EXPECT_NE(msg.find("gradient norm nan"), std::string::npos) << msg;
  // infinity is never a valid value
  msg = error_of([] { train::load_config_text("optim: {lr: .inf}\n", "inf.yaml", {}, false); });
  EXPECT_NE(msg.find("optim.lr"), std::string::npos) << msg;
  msg = error_of([] { train::load_config_text("grpo: {kl_coef: .inf}\n", "inf.yaml", {}, false); });
  EXPECT_NE(msg.find("grpo.kl_coef"), std::string::npos) << msg;
}

// Re-running a finished run directory trains nothing and keeps its config.yaml (which describes
// the checkpoints); a directory given as the config file is an error.
TEST(Trainer, AFinishedRunSaysSoAndKeepsItsConfig) {
  auto a = tmpdir("finished");
  auto c = tiny_run(a, 1);
  c.checkpoint.every = 0;
  train::Trainer(c).run();
  const auto before = grpo::core::read_file(a + "/config.yaml");
  c.optim.lr = 1e-5;  // new hyperparameters: refused, they do not describe the checkpoint
  auto refused = error_of([&] { train::Trainer(c).run(); });
  EXPECT_NE(refused.find("optim.lr"), std::string::npos) << refused;
  c.run.allow_config_change = true;
  train::Trainer again(c);
  again.run();
  EXPECT_EQ(again.state().rollout_step, 1);
  EXPECT_EQ(grpo::core::read_file(a + "/config.yaml"), before);
  auto msg = error_of([&] { train::load_config_file(a, {}); });
  EXPECT_NE(msg.find("is a directory"), std::string::npos) << msg;
}

// A reward that fails for every sample (here a plugin command that does not exist) stops the run
// after reward.max_failed_steps such rollout steps, with one of the failures.
TEST(Trainer, ARewardThatAlwaysFailsStopsTheRun) {
  auto a = tmpdir("reward_fails");
  auto c = tiny_run(a, 6);
  c.pretrain.steps = 0;
  c.reward.plugin = a + "/no-such-reward";
  c.reward.weights = {{"plugin", 1.0}};
  c.reward.max_failed_steps = 2;
  train::Trainer t(c);
  auto msg = error_of([&] { t.run(); });
  EXPECT_NE(msg.find("failed for every sample in 3 rollout steps in a row (up to rollout step 3)"), std::string::npos)
      << msg;
  EXPECT_NE(msg.find("reward.max_failed_steps = 2"), std::string::npos) << msg;
  EXPECT_NE(msg.find("no-such-reward"), std::string::npos) << msg;
  EXPECT_EQ(t.state().rollout_step, 2);
}

// grpo_plan's estimate is applied before anything is allocated: a run that cannot fit in this
// machine's memory is refused with the estimate and the knobs.
TEST(Trainer, ARunThatCannotFitInMemoryIsRefusedUpFront) {
  auto c = tiny_run(tmpdir("too_big"), 1);
  c.grpo.group_size = 1'000'000;
  auto msg = error_of([&] { train::Trainer t(c); });
  EXPECT_NE(msg.find("by grpo_plan's estimate"), std::string::npos) << msg;
  EXPECT_NE(msg.find("grpo.prompts_per_step x grpo.group_size (now 4 x 1000000)"), std::string::npos) << msg;
}

TEST(Trainer, NoReferenceModelWithoutKl) {
  auto a = tmpdir("no_ref");
  auto c = tiny_run(a, 1);
  c.grpo.loss.kl_coef = 0.0;
  train::Trainer t(c);
  t.run();
  EXPECT_FALSE(fs::exists(a + "/checkpoints/step-000001/reference.safetensors"));
  auto k = tmpdir("with_ref");
  train::Trainer tk(tiny_run(k, 1));
  tk.run();
  EXPECT_TRUE(fs::exists(k + "/checkpoints/step-000001/reference.safetensors"));
}

// R1 refreshes the reference every 400 optimizer steps (not rollout steps): here every 3, with 4
// optimizer steps per rollout step, so refreshes fall inside rollout steps too.
TEST(Trainer, ReferenceRefreshesExactlyEveryNOptimizerSteps) {
  auto a = tmpdir("ref_refresh");
  auto c = tiny_run(a, 3);  // 2 mini-batches x 2 epochs = 4 optimizer steps per rollout step
  c.grpo.ref_refresh_steps = 3;
  train::Trainer t(c);
  t.run();
  std::vector<int64_t> refreshed, all;
  for (auto& m : read_jsonl(a + "/metrics.jsonl")) {
    if (m["stage"] != "grpo") continue;
    for (auto& u : m["updates"]) {
      all.push_back(u["optimizer_step"].get<int64_t>());
      if (u["ref_refreshed"].get<bool>()) refreshed.push_back(u["optimizer_step"].get<int64_t>());
    }
  }
  EXPECT_EQ(all, (std::vector<int64_t>{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12}));
  EXPECT_EQ(refreshed, (std::vector<int64_t>{3, 6, 9, 12}));
  EXPECT_EQ(t.state().ref_version, 12);
  // the refresh copies the policy: at rollout step 3 (optimizer step 12) the saved reference is the
  // policy bit for bit; at rollout step 2 (optimizer step 8) it is the policy of step 6, not 8
  auto same = [&](const std::string& ck) {
    auto model = io::load_safetensors(a + "/checkpoints/" + ck + "/model.safetensors");
    auto ref = io::load_safetensors(a + "/checkpoints/" + ck + "/reference.safetensors");
    EXPECT_EQ(model.size(), ref.size());
    for (size_t i = 0; i < model.size(); ++i)
      if (!model[i].second.equal(ref[i].second)) return false;
    return true;
  };
  EXPECT_TRUE(same("step-000003"));
  EXPECT_FALSE(same("step-000002"));
}

// With old log-probs recomputed by the trainer, the first mini-batch of every rollout batch is
// on-policy: its ratio is exactly 1 (also with several mini-batches and epochs); later mini-batches
// follow a changed policy.
TEST(Trainer, FirstMiniBatchOfAnOnPolicyBatchHasRatioExactlyOne) {
  auto a = tmpdir("ratio_one");
  auto c = tiny_run(a, 2);
  c.grpo.loss.clip_eps_high = 0.2;
  train::Trainer t(c);
  t.run();
  int checked = 0;
  bool later_moved = false;
  for (auto& m : read_jsonl(a + "/metrics.jsonl")) {
    if (m["stage"] != "grpo") continue;
    auto& u = m["updates"];
    ASSERT_EQ(u.size(), 4u);
    EXPECT_EQ(u[0]["ratio_min"].get<double>(), 1.0) << m["step"];
    EXPECT_EQ(u[0]["ratio_max"].get<double>(), 1.0) << m["step"];
    ++checked;
    for (size_t k = 1; k < u.size(); ++k)
      later_moved = later_moved || u[k]["ratio_max"].get<double>() != 1.0 || u[k]["ratio_min"].get<double>() != 1.0;
  }
  EXPECT_EQ(checked, 2);
  EXPECT_TRUE(later_moved);
}

// Every loss/advantage option runs through the trainer (one rollout step each) and leaves finite
// metrics; the KL-in-reward run reports its penalty, overlong filtering masks what was truncated.
TEST(Trainer, EveryGrpoVariantTrains) {
  struct Variant {
    const char* name;
    std::function<void(train::Config&)> set;
  };
  std::vector<Variant> variants{
      {"dr_grpo", [](train::Config& c) { c.grpo.advantage.mode = algo::AdvantageMode::kNoStd; c.grpo.loss.aggregation = algo::LossAggregation::kSeqMeanTokenSumNorm; }},
      {"dapo", [](train::Config& c) { c.grpo.loss.aggregation = algo::LossAggregation::kTokenMean; c.grpo.mask_truncated = true; c.rollout.max_new_tokens = 6; }},
      {"gspo", [](train::Config& c) { c.grpo.loss.sequence_ratio = true; c.grpo.loss.clip_eps_low = 3e-4; c.grpo.loss.clip_eps_high = 4e-4; }},
      {"rloo_dual", [](train::Config& c) { c.grpo.advantage.mode = algo::AdvantageMode::kRloo; c.grpo.loss.dual_clip = 3; c.grpo.loss.ratio_cap = 5; }},
      {"batch_std_k2", [](train::Config& c) { c.grpo.advantage.mode = algo::AdvantageMode::kBatchStd; c.grpo.loss.kl_estimator = algo::KlEstimator::kK2; c.grpo.loss.kl_clamp = 10; }},
      {"kl_in_reward", [](train::Config& c) { c.grpo.kl_in = "reward"; c.grpo.loss.kl_estimator = algo::KlEstimator::kK1; c.grpo.ref_refresh_steps = 0; }},
      {"entropy", [](train::Config& c) { c.grpo.loss.entropy_coef = 0.01; c.grpo.loss.log_ratio_clamp = 20; }},
      {"cispo_tis", [](train::Config& c) { c.grpo.loss.objective = algo::PolicyObjective::kCispo; c.grpo.loss.aggregation = algo::LossAggregation::kTokenMean; c.grpo.off_policy.mode = algo::OffPolicyCorrection::kTis; }},
      {"sapo_mis_seq", [](train::Config& c) { c.grpo.loss.objective = algo::PolicyObjective::kSapo; c.grpo.off_policy.mode = algo::OffPolicyCorrection::kMis; c.grpo.off_policy.sequence = true; }},
      {"vespo_icepop", [](train::Config& c) { c.grpo.loss.objective = algo::PolicyObjective::kVespo; c.grpo.loss.aggregation = algo::LossAggregation::kTokenMean; c.grpo.off_policy.mode = algo::OffPolicyCorrection::kIcepop; }},
      {"luspo_opsm_klratio", [](train::Config& c) { c.grpo.loss.sequence_ratio = true; c.grpo.loss.clip_eps_low = 3e-4; c.grpo.loss.clip_eps_high = 4e-4; c.grpo.loss.aggregation = algo::LossAggregation::kSeqMeanTokenSum; c.grpo.loss.off_policy_mask = 0.01; c.grpo.loss.kl_ratio_weighted = true; }},
      {"moe_routing_replay_stale", [](train::Config& c) { test_util::make_moe(c); c.moe.routing_replay = true; c.grpo.max_staleness = 1; c.grpo.off_policy.mode = algo::OffPolicyCorrection::kTis; }},
  };
  for (auto& v : variants) {
    auto dir = tmpdir(std::string("variant_") + v.name);
    auto c = tiny_run(dir, 2);
    c.checkpoint.every = 0;
    v.set(c);
    train::Trainer t(c);
    t.run();
    auto rows = read_jsonl(dir + "/metrics.jsonl");
    const auto& last = rows.back();
    ASSERT_EQ(last["stage"], "grpo") << v.name;
    for (const char* k : {"loss", "kl", "entropy", "ratio_mean", "grad_norm", "clip_fraction"})
      EXPECT_TRUE(std::isfinite(last[k].get<double>())) << v.name << " " << k;
    EXPECT_GT(last["grad_norm"].get<double>(), 0.0) << v.name;
    if (std::string(v.name) == "kl_in_reward") {
      EXPECT_NE(last["kl_reward_penalty"].get<double>(), 0.0);
      EXPECT_EQ(last["kl"].get<double>(), 0.0);  // not in the loss
    }
    if (std::string(v.name) == "dapo") EXPECT_GT(last["truncation_rate"].get<double>(), 0.0);
    for (const char* k : {"behaviour_kl", "is_weight_mean", "is_weight_max", "is_masked_fraction"})
      EXPECT_TRUE(std::isfinite(last[k].get<double>())) << v.name << " " << k;
  }
}

// grpo.max_staleness: rollout step m is generated with the weights after max(barrier, m - k) steps
// (barriers: the stage's start and the checkpoint steps); a run extended from a checkpoint ends
// with the same parameters as one run straight through; with a barrier at every step, k = 2 is
// the synchronous run bit for bit.
TEST(Trainer, BoundedStalenessFollowsItsScheduleAndResumesExactly) {
  auto same = [](train::Trainer& x, train::Trainer& y) {  // bit for bit
    auto px = x.policy().named_parameters(), py = y.policy().named_parameters();
    bool eq = px.size() == py.size();
    for (size_t i = 0; eq && i < px.size(); ++i) eq = px[i].first == py[i].first && at::equal(px[i].second, py[i].second);
    return eq;
  };
  auto config = [](const std::string& dir, int64_t steps, int64_t k, int64_t every) {
    auto c = tiny_run(dir, steps);
    c.grpo.max_staleness = k;
    c.checkpoint.every = every;
    c.eval.every = 0;
    return c;
  };
  // straight through: 6 steps, k = 2, checkpoints (barriers) every 4
  const auto a_dir = tmpdir("stale_a");
  train::Trainer a(config(a_dir, 6, 2, 4));
  a.run();
  int64_t seen = 0;
  for (auto& r : read_jsonl(a_dir + "/metrics.jsonl")) {
    if (r["stage"] != "grpo" || !r.contains("policy_version")) continue;
    const int64_t m = r["step"].get<int64_t>() - 1, barrier = m / 4 * 4;
    EXPECT_EQ(r["policy_version"].get<int64_t>(), std::max(barrier, m - 2)) << "rollout step " << m;
    EXPECT_LE(r["version_lag"].get<int64_t>(), 2);
    EXPECT_EQ(r["version_lag"].get<int64_t>(), m - r["policy_version"].get<int64_t>());
    ++seen;
  }
  EXPECT_EQ(seen, 6);
  // the same run in two processes: stopped after step 4 (a checkpoint), then resumed
  const auto b_dir = tmpdir("stale_b");
  {
    train::Trainer b(config(b_dir, 6, 2, 4));
    b.run([](const train::TrainState& st) { return st.stage == "grpo" && st.rollout_step == 4; });
  }
  auto cb = config(b_dir, 6, 2, 4);
  cb.run.resume = "auto";
  train::Trainer b(cb);
  b.run();
  EXPECT_TRUE(same(a, b)) << "resumed from the step-4 checkpoint";
  // generation in a thread beside the update (one CPU thread each here, as in the runs above)
  const auto o_dir = tmpdir("stale_overlap");
  auto co = config(o_dir, 6, 2, 4);
  co.grpo.overlap_generation = true;
  train::Trainer o(co);
  o.run();
  EXPECT_TRUE(same(a, o)) << "generated beside the update";
  for (auto& r : read_jsonl(o_dir + "/metrics.jsonl"))
    if (r["stage"] == "grpo" && r.contains("policy_version"))
      EXPECT_EQ(r["policy_version"].get<int64_t>(), std::max((r["step"].get<int64_t>() - 1) / 4 * 4,
                                                             r["step"].get<int64_t>() - 3));
  // a barrier at every step: nothing is generated ahead, so k = 2 is k = 0
  const auto s_dir = tmpdir("stale_sync"), e_dir = tmpdir("stale_every");
  train::Trainer sync(config(s_dir, 3, 0, 1)), every(config(e_dir, 3, 2, 1));
  sync.run();
  every.run();
  EXPECT_TRUE(same(sync, every)) << "k = 2 with a barrier at every step";
  // and staleness changes the run when it acts (the test can fail)
  const auto c_dir = tmpdir("stale_c");
  train::Trainer c0(config(c_dir, 6, 0, 4));
  c0.run();
  EXPECT_FALSE(same(a, c0)) << "k = 2 trained exactly as k = 0";
}

// DAPO dynamic sampling: groups with equal rewards are dropped and more prompts sampled; the
// merged batch (re-padded across rounds) recomputes the sampler's log-probs.
TEST(Trainer, DynamicSamplingKeepsOnlyGroupsWithSignal) {
  auto a = tmpdir("dynamic_sampling");
  auto c = tiny_run(a, 3);
  c.grpo.dynamic_sampling = true;
  c.grpo.dynamic_sampling_max_rounds = 4;
  c.grpo.prompts_per_step = 6;
  c.pretrain.steps = 150;  // a policy good enough that some groups are all correct
  c.checkpoint.every = 0;
  train::Trainer t(c);
  t.run();
  int64_t dropped = 0, sampled = 0, multi_round = 0;
  for (auto& m : read_jsonl(a + "/metrics.jsonl")) {
    if (m["stage"] != "grpo") continue;
    const int64_t trained = m["groups_trained"], drop = m["groups_dropped"], used = m["prompts_sampled"];
    EXPECT_EQ(used, trained + drop) << m.dump();
    EXPECT_LE(trained, 6);
    EXPECT_LE(m["sampling_rounds"].get<int64_t>(), 4);
    EXPECT_EQ(m["zero_adv_group_fraction"].get<double>(), 0.0);  // every trained group has signal
    if (trained < 6) EXPECT_EQ(m["sampling_rounds"].get<int64_t>(), 4);  // short only at the cap
    EXPECT_LT(m["old_logprob_diff_max"].get<double>(), 1e-4);      // merged rows line up
    dropped += drop;
    sampled += used;
    multi_round += m["sampling_rounds"].get<int64_t>() > 1;
  }
  EXPECT_GT(dropped, 0) << "no group was uniform: the test exercises nothing";
  EXPECT_GT(multi_round, 0);
  EXPECT_EQ(t.state().data_position, sampled);
}

// grpo.skip_zero_advantage: rows whose loss gradient is exactly 0 (advantage 0: every row of a group
// with equal rewards) take no training pass, and the update is that of training on every row.
TEST(Trainer, RowsWithZeroAdvantageSkipTheUpdateAndChangeNothing) {
  struct Run {
    std::vector<at::Tensor> params;
    double skipped = 0;  // summed over steps
    int64_t all_skipped_steps = 0;
  };
  auto run = [](const std::string& name, bool skip, bool no_signal) {
    auto dir = tmpdir(name);
    auto c = tiny_run(dir, 3);
    c.grpo.loss.kl_coef = 0.0;
    c.grpo.ref_refresh_steps = 0;
    c.pretrain.steps = 150;  // some groups all correct, some mixed
    c.grpo.skip_zero_advantage = skip;
    c.checkpoint.every = 0;
    c.eval.every = 0;
    c.optim.weight_decay = 0.1;  // the optimizer moves the weights even on a zero gradient
    if (no_signal) {  // an untrained model never sums 9-digit numbers: every reward is 0
      c.pretrain.steps = 0;
      c.task.digits = 9;
      c.model.max_position_embeddings = 128;
      c.reward.weights = {{"accuracy", 1.0}};
    }
    train::Trainer t(c);
    t.run();
    Run r;
    for (auto& [n, p] : t.policy().named_parameters()) r.params.push_back(p.clone());
    for (auto& m : read_jsonl(dir + "/metrics.jsonl")) {
      if (m["stage"] != "grpo") continue;
      r.skipped += m["rows_skipped"].get<double>();
      r.all_skipped_steps += m["rows_skipped"].get<double>() == 1.0;
      EXPECT_TRUE(std::isfinite(m["entropy"].get<double>())) << m.dump();
    }
    return r;
  };
  auto max_diff = [](const Run& a, const Run& b) {
    double d = 0;
    for (size_t i = 0; i < a.params.size(); ++i) d = std::max(d, (a.params[i] - b.params[i]).abs().max().item<double>());
    return d;
  };
  auto on = run("skip_zero_adv_on", true, false), off = run("skip_zero_adv_off", false, false);
  EXPECT_GT(on.skipped, 0.0) << "no row had advantage 0: the test exercises nothing";
  EXPECT_LT(on.skipped, 3.0) << "every row was skipped: the test compares no gradient";
  EXPECT_EQ(off.skipped, 0.0);
  EXPECT_LT(max_diff(on, off), 1e-5);  // micro-batches hold other rows: float rounding only
  // No group has signal: every row is skipped, but one row per
  // mini-batch still runs, so the optimizer steps (weight decay) as it does on all rows' zero gradient.
  auto none_on = run("skip_zero_adv_none_on", true, true), none_off = run("skip_zero_adv_none_off", false, true);
  EXPECT_EQ(none_on.all_skipped_steps, 3);
  EXPECT_EQ(max_diff(none_on, none_off), 0.0);
}

// R1: responses up to 32,768 tokens, then 65,536 from optimizer step 8,200.
TEST(Trainer, ResponseLengthScheduleByOptimizerStep) {
  auto a = tmpdir("length_schedule");
  auto c = tiny_run(a, 3);  // 4 optimizer steps per rollout step
  c.grpo.length_schedule = {{"4", 8.0}, {"8", 12.0}};
  c.checkpoint.every = 0;
  train::Trainer t(c);
  t.run();
  std::vector<int64_t> limits;
  for (auto& m : read_jsonl(a + "/metrics.jsonl"))
    if (m["stage"] == "grpo") {
      limits.push_back(m["max_new_tokens"].get<int64_t>());
      EXPECT_LE(m["response_length"].get<double>(), double(limits.back()));
    }
  EXPECT_EQ(limits, (std::vector<int64_t>{16, 8, 12}));
  EXPECT_EQ(c.grpo.max_new_tokens_at(8200, 32768), 12);
  auto e = error_of([&] {
    train::load_config_text("grpo: {length_schedule: {soon: 64}}", "bad.yaml");
  });
  EXPECT_NE(e.find("grpo.length_schedule.soon"), std::string::npos) << e;
  e = error_of([&] { train::load_config_text("grpo: {length_schedule: {10: 4096}}", "bad.yaml"); });
  EXPECT_NE(e.find("max_position_embeddings"), std::string::npos) << e;
}

// ---- the SFT stage and stage hand-over

namespace {
// Correct, formatted demonstrations of the built-in task as SFT JSONL.
std::string write_sft_data(const std::string& dir, const train::Config& c, int64_t n) {
  data::ArithmeticTask task(c.task, uint64_t(c.run.seed));
  const std::string path = dir + "/sft.jsonl";
  std::ofstream out(path);
  for (int64_t i = 0; i < n; ++i) {
    auto p = task.train_problem(i, core::Stream::kSftData);
    out << nlohmann::json{{"question", p.question}, {"response", task.formatted(p, p.a + p.b, false)}}.dump() << "\n";
  }
  return path;
}
}  // namespace

TEST(Sft, PackingGivesTheSameLossAndTheStageTeaches) {
  auto a = tmpdir("sft_packed"), b = tmpdir("sft_unpacked");
  auto ca = tiny_run(a, 0), cb = tiny_run(b, 0);
  for (auto* c : {&ca, &cb}) {
    c->sft.data = write_sft_data(a, *c, 400);
    c->sft.steps = 60;
    c->sft.batch_size = 32;
    c->sft.lr = 3e-3;
    c->eval.num_prompts = 64;
  }
  cb.sft.packing = false;
  cb.sft.steps = 1;
  train::Trainer ta(ca), tb(cb);
  ta.run();
  tb.run();
  auto ma = read_jsonl(a + "/metrics.jsonl"), mb = read_jsonl(b + "/metrics.jsonl");
  std::vector<nlohmann::json> sa, sb;
  for (auto& m : ma) if (m["stage"] == "sft") sa.push_back(m);
  for (auto& m : mb) if (m["stage"] == "sft") sb.push_back(m);
  ASSERT_EQ(sa.size(), 60u);
  ASSERT_EQ(sb.size(), 1u);
  // the first step sees the same examples from the same weights: packed or not, the same loss
  EXPECT_NEAR(sa[0]["loss"].get<double>(), sb[0]["loss"].get<double>(), 1e-4);
  EXPECT_LT(sa[0]["rows"].get<int64_t>(), sb[0]["rows"].get<int64_t>());  // packing did pack
  EXPECT_EQ(sb[0]["rows"], 32);
  EXPECT_LT(sa.back()["loss"].get<double>(), 0.7 * sa[0]["loss"].get<double>());  // it learns
  // (that SFT raises accuracy on a model big enough is the pipeline's learning test)
  auto ev = read_jsonl(a + "/eval.jsonl");
  ASSERT_EQ(ev.size(), 2u);
  EXPECT_EQ(ev[0]["stage"], "base");
  EXPECT_EQ(ev[1]["stage"], "sft");
  EXPECT_EQ(ta.state().sft_step, 60);
  EXPECT_EQ(train::load_checkpoint(a + "/checkpoints/step-000000").state.sft_step, 60);
  // chat-format lines train the same way; a system message needs a chat format
  auto chat = tmpdir("sft_chat");
  auto cm = tiny_run(chat, 0);
  cm.sft.data = chat + "/chat.jsonl";
  {
    std::ofstream f(cm.sft.data);
    f << R"({"messages": [{"role": "user", "content": "12+34="}, {"role": "assistant", "content": "<think>4,6</think><answer>46</answer>"}]})" << "\n";
    f << R"({"messages": [{"role": "system", "content": "add"}, {"role": "user", "content": "1+2="}, {"role": "assistant", "content": "3"}]})" << "\n";
  }
  cm.sft.question_field = cm.sft.response_field = "messages";
  cm.sft.steps = 1;
  cm.sft.batch_size = 1;  // position 0 of the seeded order: line 1
  EXPECT_NO_THROW(train::Trainer(cm).run());
  cm.sft.batch_size = 2;
  cm.run.resume = "never";
  auto se = error_of([&] { train::Trainer(cm).run(); });
  EXPECT_NE(se.find("chat.jsonl:2: a system message needs a chat format"), std::string::npos) << se;
  // a response that does not fit is an error naming the file and line
  auto bad = tmpdir("sft_bad");
  auto cc = tiny_run(bad, 0);
  cc.sft.data = bad + "/long.jsonl";
  std::ofstream(cc.sft.data) << nlohmann::json{{"question", "1+1="}, {"response", std::string(60, '1')}}.dump() << "\n";
  cc.sft.steps = 1;
  cc.sft.batch_size = 1;
  auto e = error_of([&] { train::Trainer(cc).run(); });
  EXPECT_NE(e.find("long.jsonl:1"), std::string::npos) << e;
}

TEST(Sft, InitFromHandsTheWeightsToTheNextStage) {
  auto a = tmpdir("stage_a"), b = tmpdir("stage_b");
  auto ca = tiny_run(a, 1);
  train::Trainer ta(ca);
  ta.run();
  auto cb = tiny_run(b, 0);
  cb.pretrain.steps = 0;
  cb.run.init_from = a;  // a run directory: its latest checkpoint
  train::Trainer tb(cb);
  tb.run();
  // b's starting policy is a's final one, bit for bit
  auto pa = ta.policy().named_parameters(), pb = tb.policy().named_parameters();
  ASSERT_EQ(pa.size(), pb.size());
  for (size_t i = 0; i < pa.size(); ++i) EXPECT_TRUE(pa[i].second.equal(pb[i].second)) << pa[i].first;
  auto fresh = tiny_run(tmpdir("stage_fresh"), 0);
  fresh.pretrain.steps = 0;
  train::Trainer tf(fresh);
  tf.run();
  EXPECT_FALSE(tf.policy().named_parameters()[0].second.equal(pa[0].second));
  auto e = error_of([&] {
    train::load_config_text("run: {init_from: /no/such/run}", "x.yaml");
  });
  EXPECT_NE(e.find("run.init_from"), std::string::npos) << e;
}

// Mixed precision (optim.precision: bf16): the policy's trainable parameters are bf16 and AdamW
// updates fp32 masters (what the checkpoint holds). Stated tolerance: after 4 pretrain-stage AdamW
// steps from the same initial weights, the bf16 run's update of all parameters differs from the
// fp32 run's by at most 10% of its norm, and each step's loss by at most 1%. (Element-wise, Adam
// turns bf16 rounding of near-zero gradients into flipped update signs, so no per-element bound.)
// With MoE and a router bias (kept fp32) too.
TEST(Trainer, Bf16StepsStayNearFp32) {
  for (bool moe : {false, true}) {
    SCOPED_TRACE(moe ? "moe" : "dense");
    std::vector<io::NamedTensors> params;
    std::vector<std::vector<nlohmann::json>> metrics;
    io::NamedTensors init;
    for (std::string precision : {"fp32", "bf16"}) {
      auto dir = tmpdir("bf16_" + precision + (moe ? "_moe" : ""));
      auto c = tiny_run(dir, 0);
      c.pretrain.steps = 4;
      c.eval.num_prompts = 1;
      c.optim.precision = precision;
      if (moe) grpo::test_util::make_moe(c);
      train::Trainer t(c);
      if (precision == "bf16") {
        int64_t bf = 0;
        for (auto& [name, p] : t.policy().named_parameters()) bf += p.scalar_type() == at::kBFloat16;
        EXPECT_GT(bf, 5);
      } else {
        for (auto& [name, p] : t.policy().full_parameters()) init.emplace_back(name, p.detach().clone());
      }
      t.run();
      params.push_back(io::load_safetensors(dir + "/checkpoints/step-000000/model.safetensors"));
      metrics.push_back(read_jsonl(dir + "/metrics.jsonl"));
    }
    ASSERT_EQ(params[0].size(), params[1].size());
    double update_sq = 0, diff_sq = 0, dot = 0;
    for (size_t i = 0; i < params[0].size(); ++i) {
      ASSERT_EQ(params[1][i].second.scalar_type(), at::kFloat) << params[1][i].first;  // the fp32 masters
      auto u32 = (params[0][i].second - init[i].second).to(at::kDouble);
      auto u16 = (params[1][i].second - init[i].second).to(at::kDouble);
      update_sq += u32.pow(2).sum().item<double>();
      diff_sq += (u16 - u32).pow(2).sum().item<double>();
      dot += (u16 * u32).sum().item<double>();
    }
    const double rel = std::sqrt(diff_sq / update_sq), cosine = dot / std::sqrt(update_sq * (update_sq + diff_sq));
    std::cout << (moe ? "moe" : "dense") << ": |bf16 update - fp32 update| / |fp32 update| = " << rel
              << ", cosine ~ " << cosine << "\n";
    EXPECT_GT(update_sq, 0);
    EXPECT_LE(rel, 0.10);
    ASSERT_EQ(metrics[0].size(), metrics[1].size());
    for (size_t i = 0; i < metrics[0].size(); ++i)
      EXPECT_NEAR(metrics[1][i]["loss"].get<double>(), metrics[0][i]["loss"].get<double>(),
                  0.01 * std::abs(metrics[0][i]["loss"].get<double>())) << i;
  }
}

TEST(Trainer, RunDeviceErrorsNameTheKey) {
  auto c = tiny_run(tmpdir("device_errors"), 0);
  c.run.device = "tpu";
  auto e = error_of([&] { train::Trainer t(c); });
  EXPECT_NE(e.find("run.device: expected cpu, cuda or cuda:N, found 'tpu'"), std::string::npos) << e;
  c.run.device = "cuda:x";
  e = error_of([&] { train::Trainer t(c); });
  EXPECT_NE(e.find("run.device: expected cuda:N"), std::string::npos) << e;
  c.run.device = "cuda:99";
  e = error_of([&] { train::Trainer t(c); });
  if (grpo::cuda_available()) {
    EXPECT_NE(e.find("GPU(s)"), std::string::npos) << e;
  } else {  // this machine: the reason, with what the build and the machine have
    EXPECT_NE(e.find("run.device = cuda:99: no usable GPU here (CUDA kernels built:"), std::string::npos) << e;
  }
}

// ---- training from a Hugging Face directory: model.path, the tokenizer directory, JSONL data,
// prompt formatting (template + chat format + BOS), resume, and the grpo_generate / grpo_export
// command lines on the result

// A reward a random policy earns sometimes (so advantages, losses and updates are not all zero):
// the byte length of the completion modulo 5, scaled to [0, 1].
class LengthModReward : public reward::RewardFn {
 public:
  double score(const std::string& completion, const std::string&) const override {
    return double(completion.size() % 5) / 4.0;
  }
};

TEST(TrainFromHf, JsonlDataChatPromptResumeGenerateExport) {
  reward::RewardRegistry::add("test_length_mod5", [] { return std::make_unique<LengthModReward>(); });
  const auto& model_dir = hf_model_dir();
  auto root = tmpdir("train_from_hf");
  std::string train_lines, eval_lines;
  for (int i = 0; i < 7; ++i)
    train_lines += nlohmann::json{{"q", {{"text", fmt::format("What is {} plus {}?", i, 2 * i)}}},
                                  {"a", std::to_string(3 * i)}}.dump() + "\n";
  train_lines += "{not json\n";  // skipped and counted (on_bad_line: skip)
  for (int i = 0; i < 3; ++i)
    eval_lines += nlohmann::json{{"q", {{"text", fmt::format("What is {} times 2?", i)}}},
                                 {"a", std::to_string(2 * i)}}.dump() + "\n";
  write_file(root + "/train.jsonl", train_lines);
  write_file(root + "/eval.jsonl", eval_lines);
  auto config = [&](const std::string& run) {
    auto c = train::load_config_text(
        "run: {seed: 4, threads: 1}\n"
        "model: {path: " + model_dir + "}\n"
        "data: {train: " + root + "/train.jsonl, eval: " + root + "/eval.jsonl, prompt_field: q.text, "
        "answer_field: a, on_bad_line: skip}\n"
        "prompt: {template: r1_zero, chat: qwen3, system: Answer briefly.}\n"
        "rollout: {max_new_tokens: 6}\n"
        "grpo: {rollout_steps: 3, prompts_per_step: 3, group_size: 2, kl_coef: 0.1}\n"
        "optim: {lr: 1.0e-2}\n"
        "reward: {weights: {test_length_mod5: 1.0}}\n"
        "eval: {every: 2, num_prompts: 10, batch_size: 2}\n"
        "checkpoint: {every: 1, keep: 5}\n", "hf.yaml");
    c.run.dir = root + "/" + run;
    return c;
  };
  {
    train::Trainer t(config("a"));
    t.run();
  }
  {
    train::Trainer t(config("b"));
    t.run([](const train::TrainState& s) { return s.rollout_step == 1; });
  }
  train::Trainer resumed(config("b"));
  resumed.run();
  auto ma = read_jsonl(root + "/a/metrics.jsonl"), mb = read_jsonl(root + "/b/metrics.jsonl");
  ASSERT_EQ(ma.size(), 3u);
  ASSERT_EQ(mb.size(), 3u);
  for (size_t i = 0; i < ma.size(); ++i) {
    EXPECT_EQ(ma[i]["loss"].get<double>(), mb[i]["loss"].get<double>()) << i;
    EXPECT_EQ(ma[i]["reward_mean"].get<double>(), mb[i]["reward_mean"].get<double>()) << i;
    EXPECT_GT(ma[i]["grad_norm"].get<double>(), 0.0) << i;  // the policy is really updated
  }
  EXPECT_GT(ma.back()["kl"].get<double>(), 0.0);
  EXPECT_DOUBLE_EQ(ma.back()["epoch"].get<double>(), 9.0 / 7.0);  // 3 steps x 3 of 7 examples
  auto ev = read_jsonl(root + "/a/eval.jsonl");
  ASSERT_EQ(ev.size(), 3u);  // start, step 2, end
  EXPECT_EQ(ev[0]["num_prompts"], 3);  // the whole held-out file (num_prompts is 10)
  EXPECT_NO_THROW(train::load_config_file(root + "/a/config.yaml"));

  // The checkpoint loads back as a policy with the run's settings.
  train::Config ck_cfg;
  auto ck = root + "/a/checkpoints/step-000003";
  auto policy = train::load_policy(ck, &ck_cfg);
  EXPECT_EQ(ck_cfg.prompt.chat, "qwen3");
  auto trained = resumed.policy().named_parameters();
  auto loaded = policy->named_parameters();
  ASSERT_EQ(trained.size(), loaded.size());
  for (size_t i = 0; i < trained.size(); ++i)
    EXPECT_TRUE(trained[i].second.equal(loaded[i].second)) << trained[i].first;

  // grpo_generate on the checkpoint formats prompts exactly as training did.
  int rc = 0;
  auto out = run_command(std::string(GRPO_BIN_DIR) + "/grpo_generate --model " + ck +
                             " --prompt 'What is 5 plus 1?' -n 3 --temperature 1 --max-new-tokens 5",
                         &rc);
  ASSERT_EQ(rc, 0) << out;
  auto j = nlohmann::json::parse(out.substr(0, out.find('\n')));
  EXPECT_EQ(j["prompt"], text::format_prompt(ck_cfg.prompt, "What is 5 plus 1?"));
  ASSERT_EQ(j["completions"].size(), 3u);
  for (auto& c : j["completions"]) {
    EXPECT_LE(c["token_ids"].size(), 5u);
    EXPECT_TRUE(c.contains("text"));
  }
  auto bad = run_command(std::string(GRPO_BIN_DIR) + "/grpo_generate --model " + ck +
                             " --prompt x --chat llama2", &rc);
  EXPECT_NE(rc, 0);
  EXPECT_NE(bad.find("--chat"), std::string::npos) << bad;
  auto too_long = run_command(std::string(GRPO_BIN_DIR) + "/grpo_generate --model " + model_dir +
                                  " --prompt x --max-new-tokens 500", &rc);
  EXPECT_NE(rc, 0);
  EXPECT_NE(too_long.find("max_position_embeddings 128"), std::string::npos) << too_long;

  // grpo_export of the checkpoint carries the run's tokenizer and its EOS.
  out = run_command(std::string(GRPO_BIN_DIR) + "/grpo_export --from " + ck + " --out " + root + "/export", &rc);
  ASSERT_EQ(rc, 0) << out;
  EXPECT_TRUE(fs::exists(root + "/export/tokenizer.json"));
  auto gen = nlohmann::json::parse(core::read_file(root + "/export/generation_config.json"));
  EXPECT_EQ(gen["eos_token_id"], *text::HfTokenizer::from_dir(kQwen3Tok)->token_id("<|im_end|>"));
}

// run.profile: every stage of the GRPO steps timed, with its least work, the warm-up step left
// out, and evaluation not counted; the table's floors come from the measured peaks.
TEST(Trainer, ProfileTimesEveryStageBesideItsLeastWork) {
  auto a = tmpdir("profile");
  auto c = tiny_run(a, 3);
  c.run.profile = true;
  c.pretrain.steps = 0;
  train::Trainer t(c);
  t.run();
  EXPECT_FALSE(core::profile_enabled());  // only inside the steps
  std::ifstream in(a + "/profile.json");
  ASSERT_TRUE(in.good());
  auto j = nlohmann::json::parse(in);
  EXPECT_EQ(j["steps"].get<int64_t>(), 2);  // the first of 3 warms up
  EXPECT_GT(j["peak_flops_per_s"].get<double>(), 0);
  EXPECT_GT(j["peak_bytes_per_s"].get<double>(), 0);
  for (const char* stage : {"prefill", "decode", "sampling", "reward", "old log-probs", "ref log-probs", "forward",
                            "backward", "optimizer"}) {
    ASSERT_TRUE(j["stages"].contains(stage)) << stage << "\n" << j.dump(2);
    EXPECT_GT(j["stages"][stage]["seconds"].get<double>(), 0) << stage;
  }
  for (const char* stage : {"prefill", "decode", "old log-probs", "ref log-probs", "forward", "backward"})
    EXPECT_GT(j["stages"][stage]["flops"].get<double>(), 0) << stage;
  // backward: twice the forward's matmuls (the forward of the training pass, same rows)
  EXPECT_DOUBLE_EQ(j["stages"]["backward"]["flops"].get<double>(), 2 * j["stages"]["forward"]["flops"].get<double>());
  // the optimizer reads and writes 8 fp32 words per parameter
  EXPECT_DOUBLE_EQ(j["stages"]["optimizer"]["bytes"].get<double>(),
                   32.0 * double(t.policy().num_parameters()) * double(j["stages"]["optimizer"]["calls"].get<int64_t>()) / 2);
}

// Multi-turn rollouts in the trainer (env.name): a registered environment whose turns end at a
// character the small model writes often; its observations enter the rows, the episodes' metrics
// are logged, the losses stay finite, and evaluation runs the episodes too.
TEST(Trainer, MultiTurnEpisodesTrainAndLogTheirMetrics) {
  struct Reply : env::Environment {
    void reset(const std::string&, const std::string&) override {}
    env::Observation step(const std::string&) override {
      env::Observation o;
      o.text = "0";
      o.tool_call = true;
      return o;
    }
  };
  env::register_environment("trainer_test_reply", [](const env::EnvConfig&) { return std::make_unique<Reply>(); });
  auto dir = tmpdir("multiturn_trainer");
  auto c = tiny_run(dir, 3);
  c.env.name = "trainer_test_reply";
  c.env.turn_end = "1";  // the digit 1 ends a turn
  c.env.max_turns = 2;
  c.checkpoint.every = 0;
  train::Trainer t(c);
  t.run();
  double turns = 0;
  for (auto& m : read_jsonl(dir + "/metrics.jsonl")) {
    if (m["stage"] != "grpo") continue;
    EXPECT_TRUE(std::isfinite(m["loss"].get<double>())) << m.dump();
    ASSERT_TRUE(m.contains("env_turns")) << m.dump();
    turns += m["env_turns"].get<double>();
    EXPECT_GE(m["env_observation_tokens"].get<double>(), m["env_turns"].get<double>() - 1e-9);
    EXPECT_LE(m["env_turns"].get<double>(), 3.0);  // max_turns 2, then one more ends the episode
    EXPECT_EQ(m["env_tool_calls"].get<double>(), m["env_turns"].get<double>() - m["env_truncated_fraction"].get<double>());
  }
  EXPECT_GT(turns, 0.0) << "no turn ended: the test exercises nothing";
}
