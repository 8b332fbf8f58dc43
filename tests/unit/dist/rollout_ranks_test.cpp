// Separate rollout ranks (parallel.rollout_ranks): the last ranks generate with weights the
// trainers send over c10d, the others train. Real processes (dist/workers.h), label multiprocess.
#include <signal.h>
#include <sys/wait.h>

#include <chrono>
#include <filesystem>
#include <iostream>
#include <string>
#include <thread>
#include <vector>

#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "grpo/io/safetensors.h"
#include "grpo/train/trainer.h"
#include "../test_util.h"
#include "workers.h"

namespace {

std::string dist_dir(const std::string& scenario, int world) {
  return std::string(GRPO_TEST_TMPDIR) + "/dist_" + scenario + "_" + std::to_string(world);
}

grpo::io::NamedTensors final_params(const std::string& run) {
  return grpo::io::load_safetensors(run + "/checkpoints/step-000003/model.safetensors");
}

// The metrics that do not measure time or the processes.
nlohmann::json comparable(nlohmann::json j) {
  for (const char* k : {"time_rollout", "time_reward", "time_reward_busy", "time_update", "time_step", "tokens_per_s",
                        "threads", "processes", "time_wait_data", "time_wait_weights", "time", "wall_time", "time_env"})
    j.erase(k);
  return j;
}

}  // namespace

// 1 trainer + 1 rollout rank train exactly what one process trains, with the same staleness: at
// k = 0 the synchronous loop, at k = 1 rollout step m generated with the weights after step m - 1
// (version_lag 1); at k = 1 with an MoE policy and routing replay (the rollout's experts travel
// with the rows); and at k = 1 with multi-turn episodes (the environments run on the rollout rank,
// their statistics travel with the rows). The parameters after the pretrain and SFT stages and 3 rollout steps are equal
// bit for bit, and so is every metric but the timings, which include the policy version of every
// step; the rollout rank ends with the trainer's final weights, bit for bit (broadcast in place).
TEST(Dist, RolloutRanksTrainWhatOneProcessTrains) {
  for (std::string variant : {"k0", "k1", "k1_r3", "k1_env"}) {
    const int k = variant[1] - '0';
    const bool r3 = variant == "k1_r3", env = variant == "k1_env";
    const std::string scenario = "grpo_rollout1_" + variant;
    const std::string one = grpo::test_util::tmpdir("rollout_one_" + variant);
    {
      auto c = dp_run(one);
      if (r3) grpo::test_util::make_moe(c), c.moe.routing_replay = true;
      if (env) with_env(c);
      c.grpo.max_staleness = k;
      c.grpo.rollout_steps = 3;
      grpo::train::Trainer t(c);
      t.run();
    }
    auto ws = run_workers(2, {0, 1}, scenario, 60000);
    for (int r = 0; r < 2; ++r) ASSERT_EQ(ws[r].rc, 0) << scenario << " rank " << r << ":\n" << ws[r].out;
    const std::string run = dist_dir(scenario, 2) + "/run";
    auto ref = final_params(one), got = final_params(run);
    auto rollout = grpo::io::load_safetensors(dist_dir(scenario, 2) + "/rollout_final_1.safetensors");
    ASSERT_EQ(got.size(), ref.size());
    ASSERT_EQ(rollout.size(), ref.size());
    for (size_t i = 0; i < ref.size(); ++i) {
      EXPECT_TRUE(got[i].second.equal(ref[i].second)) << "k = " << k << ": " << ref[i].first;
      EXPECT_EQ(rollout[i].first, got[i].first);
      EXPECT_TRUE(rollout[i].second.equal(got[i].second)) << "k = " << k << ": rollout rank's " << got[i].first;
    }
    auto m_ref = grpo::test_util::read_jsonl(one + "/metrics.jsonl");
    auto m = grpo::test_util::read_jsonl(run + "/metrics.jsonl");
    ASSERT_EQ(m.size(), m_ref.size());
    int64_t grpo_steps = 0;
    double turns = 0;
    for (size_t i = 0; i < m.size(); ++i) {
      auto got_i = comparable(m[i]), ref_i = comparable(m_ref[i]);
      if (env)  // rows waiting on their environment rejoin the decode batch as replies come (thread
                // timing), so batches differ and the sampling log-probs only agree to rounding; the
                // tokens, and what is trained on them, do not change
        for (const char* key : {"behaviour_kl", "old_logprob_diff_mean", "old_logprob_diff_max"})
          if (got_i.contains(key)) {
            EXPECT_NEAR(got_i[key].get<double>(), ref_i[key].get<double>(), 1e-6) << key << ", line " << i;
            got_i.erase(key), ref_i.erase(key);
          }
      EXPECT_EQ(got_i, ref_i) << "k = " << k << ", line " << i;
      if (m[i].value("stage", "") != "grpo") continue;
      ++grpo_steps;
      EXPECT_EQ(m[i].contains("env_turns"), env);
      turns += m[i].value("env_turns", 0.0);
      const int64_t step = m[i]["step"].get<int64_t>() - 1;  // the rollout step trained (0-based)
      EXPECT_EQ(m[i]["policy_version"].get<int64_t>(), std::max<int64_t>(0, step - k)) << "k = " << k;
      EXPECT_LE(m[i]["version_lag"].get<int64_t>(), k);
      EXPECT_EQ(m[i]["processes"].get<int64_t>(), 2);
    }
    EXPECT_EQ(grpo_steps, 3);
    if (env) EXPECT_GT(turns, 0.0) << "no turn ended: the variant exercises nothing";
    auto e = grpo::test_util::read_jsonl(run + "/eval.jsonl"), e_ref = grpo::test_util::read_jsonl(one + "/eval.jsonl");
    ASSERT_EQ(e.size(), e_ref.size());
    for (size_t i = 0; i < e.size(); ++i) {
      for (const char* k : {"time", "wall_time"}) e[i].erase(k), e_ref[i].erase(k);
      EXPECT_EQ(e[i], e_ref[i]);
    }
  }
}

// More of each role: 2 trainers (data parallel over the groups the rollout rank sent) + 1 rollout
// rank, 1 trainer + 2 rollout ranks (each generating half of the prompts, gathered to the first),
// and 2 trainers splitting the model (tp 2: whole tensors are gathered before they are sent) + 1
// rollout rank: what one process trains, within data or tensor parallelism's summation order.
TEST(Dist, RolloutRanksSplitTheirWorkLikeDataParallelism) {
  const std::string one = std::string(GRPO_TEST_TMPDIR) + "/rollout_one_k1";
  if (!std::filesystem::exists(one + "/checkpoints/step-000003")) {
    auto c = dp_run(grpo::test_util::tmpdir("rollout_one_k1"));
    c.grpo.max_staleness = 1;
    c.grpo.rollout_steps = 3;
    grpo::train::Trainer t(c);
    t.run();
  }
  auto ref = final_params(one);
  auto m_ref = grpo::test_util::read_jsonl(one + "/metrics.jsonl");
  for (std::string scenario : {"grpo_rollout1_k1", "grpo_rollout2_k1", "grpo_rollout1_k1_tp2"}) {
    const int rollout_ranks = scenario[12] - '0';
    auto ws = run_workers(3, {0, 1, 2}, scenario, 60000);
    for (int r = 0; r < 3; ++r) ASSERT_EQ(ws[r].rc, 0) << scenario << " rank " << r << ":\n" << ws[r].out;
    const std::string run = dist_dir(scenario, 3) + "/run";
    auto got = final_params(run);
    ASSERT_EQ(got.size(), ref.size());
    double max_diff = 0;
    for (size_t i = 0; i < ref.size(); ++i)
      max_diff = std::max(max_diff, (got[i].second - ref[i].second).abs().max().item<double>());
    EXPECT_LT(max_diff, scenario.find("_tp2") != std::string::npos ? 1e-4 : 2e-5) << scenario;
    std::cout << scenario << ", 3 processes: max |param difference| " << max_diff << "\n";
    for (int r = 3 - rollout_ranks; r < 3; ++r) {  // every rollout rank holds the final weights
      auto w = grpo::io::load_safetensors(dist_dir(scenario, 3) + "/rollout_final_" + std::to_string(r) + ".safetensors");
      ASSERT_EQ(w.size(), got.size());
      for (size_t i = 0; i < got.size(); ++i) EXPECT_TRUE(w[i].second.equal(got[i].second)) << got[i].first;
    }
    auto m = grpo::test_util::read_jsonl(run + "/metrics.jsonl");
    ASSERT_EQ(m.size(), m_ref.size());
    for (size_t i = 0; i < m.size(); ++i) {
      if (m[i].value("stage", "") != "grpo") continue;
      for (const char* key : {"reward_mean", "accuracy", "response_length", "policy_version", "groups_trained"})
        EXPECT_EQ(m[i][key], m_ref[i][key]) << scenario << ", line " << i << ": " << key;
      EXPECT_NEAR(m[i]["loss"].get<double>(), m_ref[i]["loss"].get<double>(), 1e-5) << scenario;
    }
  }
}

// In-flight weight updates: the rollout rank takes each version between engine steps as it
// arrives, in the middle of a rollout step. Generating one sequence at a time (rollout.max_running
// 1) takes several times the update, so the next version arrives mid-step: some tokens of some
// step are sampled by newer weights than the step began with (token_lag_mean < version_lag). What
// must hold every time: each trained token's sampler is at most k = 1 versions behind
// (token_lag_max <= version_lag <= 1), never ahead, and the rollout rank ends with the trainer's
// final weights.
TEST(Dist, InFlightWeightUpdatesKeepEveryTokenWithinTheBound) {
  const std::string scenario = "grpo_rollout1_k1_inflight";
  auto ws = run_workers(2, {0, 1}, scenario, 60000);
  for (int r = 0; r < 2; ++r) ASSERT_EQ(ws[r].rc, 0) << scenario << " rank " << r << ":\n" << ws[r].out;
  const std::string run = dist_dir(scenario, 2) + "/run";
  int64_t steps = 0, swapped = 0;
  for (auto& j : grpo::test_util::read_jsonl(run + "/metrics.jsonl")) {
    if (j.value("stage", "") != "grpo") continue;
    ++steps;
    const int64_t lag = j["version_lag"].get<int64_t>();
    swapped += j["token_lag_mean"].get<double>() < double(lag);
    EXPECT_LE(lag, 1);
    EXPECT_GE(j["token_lag_max"].get<double>(), 0.0);
    EXPECT_LE(j["token_lag_max"].get<double>(), double(lag));
    EXPECT_LE(j["token_lag_mean"].get<double>(), double(lag));
  }
  EXPECT_EQ(steps, 6);
  EXPECT_GT(swapped, 0) << "no step had tokens from weights newer than the step began with";
  auto got = grpo::io::load_safetensors(run + "/checkpoints/step-000006/model.safetensors");
  auto w = grpo::io::load_safetensors(dist_dir(scenario, 2) + "/rollout_final_1.safetensors");
  ASSERT_EQ(w.size(), got.size());
  for (size_t i = 0; i < got.size(); ++i) EXPECT_TRUE(w[i].second.equal(got[i].second)) << got[i].first;
}

// A rollout rank killed in the middle of the GRPO stage ends the trainer with an error naming it,
// well within a minute (parallel.timeout is 30 s; the closed connection is seen at once).
TEST(Dist, AKilledRolloutRankEndsEveryRankWithAClearError) {
  const std::string scenario = "grpo_rollout_kill";
  auto procs = start_workers(2, {0, 1}, scenario, 60000);
  const std::string metrics = dist_dir(scenario, 2) + "/run/metrics.jsonl";
  auto grpo_lines = [&] {
    int64_t n = 0;
    if (std::filesystem::exists(metrics))
      for (auto& j : grpo::test_util::read_jsonl(metrics)) n += j.value("stage", "") == "grpo";
    return n;
  };
  const auto t0 = std::chrono::steady_clock::now();
  while (grpo_lines() < 2 && std::chrono::steady_clock::now() - t0 < std::chrono::seconds(240))
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  ASSERT_GE(grpo_lines(), 2) << "the GRPO stage did not start";
  ::kill(procs[1].first, SIGKILL);
  const auto killed = std::chrono::steady_clock::now();
  auto ws = wait_workers(procs);
  const double took = std::chrono::duration<double>(std::chrono::steady_clock::now() - killed).count();
  EXPECT_EQ(ws[1].rc, 128 + SIGKILL);
  EXPECT_EQ(ws[0].rc, 3) << ws[0].out;
  EXPECT_NE(ws[0].out.find("rank 1 (process " + std::to_string(procs[1].first) + ") of this group has exited"),
            std::string::npos) << ws[0].out;
  EXPECT_LT(took, 60.0);
  EXPECT_LT(grpo_lines(), 200);  // it ended in the middle
}

// parallel.rollout_ranks must leave a process to train: one process asking for a rollout rank is
// an error naming the key, before anything runs.
TEST(RolloutRanks, AJobOfRolloutRanksOnlyIsAClearError) {
  auto c = dp_run(grpo::test_util::tmpdir("rollout_ranks_alone"));
  c.parallel.rollout_ranks = 1;
  const auto what = grpo::test_util::error_of([&] { grpo::train::Trainer t(c); });
  EXPECT_NE(what.find("parallel.rollout_ranks (1) must leave at least one of the 1 process(es) to train"),
            std::string::npos) << what;
}
