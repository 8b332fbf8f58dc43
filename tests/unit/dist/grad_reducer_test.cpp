// Data parallel (the bucketed gradient all-reduce, ZeRO-1): 2 and 4 processes train what one
// process trains on the same global batch; with bf16 and ZeRO-1, what replicated masters train.
#include <algorithm>
#include <cstdio>
#include <iostream>
#include <string>
#include <vector>

#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "grpo/io/safetensors.h"
#include "grpo/train/config.h"
#include "grpo/train/trainer.h"
#include "../test_util.h"
#include "workers.h"

// Data parallel: after the pretrain stage, an SFT stage and 2 rollout steps (8 optimizer steps, with
// the reference refreshed in between), each stage's batch split over the processes, the parameters
// trained by 2 or 4 processes equal those of one process running the same global batch; the
// metrics (rewards of all ranks, losses) agree too. The same with DAPO dynamic sampling: the ranks
// agree on the rounds (later rounds split unevenly), so they keep the groups one process keeps and
// train on uneven shares of them. And with ZeRO-1: each rank holds part of the AdamW state, the
// checkpoint the whole of it, equal to one process's.
TEST(Dist, DataParallelTrainingEqualsOneProcess) {
  for (std::string scenario : {"grpo_dp", "grpo_dapo", "grpo_zero1"}) {
    const bool dapo = scenario == "grpo_dapo";
    const std::string one = scenario == "grpo_zero1" ? std::string(GRPO_TEST_TMPDIR) + "/dp_one"
                                                     : grpo::test_util::tmpdir(dapo ? "dapo_one" : "dp_one");
    if (scenario != "grpo_zero1") {  // (ZeRO-1 compares with the plain run of one process)
      auto c = dp_run(one);
      c.grpo.dynamic_sampling = dapo;
      grpo::train::Trainer t(c);
      t.run();
    }
    auto params = [](const std::string& run, const char* file = "model") {
      return grpo::io::load_safetensors(run + "/checkpoints/step-000002/" + file + ".safetensors");
    };
    auto ref = params(one);
    auto ref_metrics = grpo::test_util::read_jsonl(one + "/metrics.jsonl");
    if (dapo) {  // the run exercises it: groups were dropped and more rounds sampled
      int64_t dropped = 0;
      for (auto& j : ref_metrics) dropped += j.value("groups_dropped", int64_t(0));
      EXPECT_GT(dropped, 0);
    }
    for (int world : {2, 4}) {
      std::vector<int> ranks;
      for (int r = 0; r < world; ++r) ranks.push_back(r);
      auto ws = run_workers(world, ranks, scenario, 60000);
      for (int r = 0; r < world; ++r) ASSERT_EQ(ws[r].rc, 0) << scenario << " rank " << r << ":\n" << ws[r].out;
      const std::string run = std::string(GRPO_TEST_TMPDIR) + "/dist_" + scenario + "_" + std::to_string(world) + "/run";
      auto got = params(run);
      ASSERT_EQ(got.size(), ref.size());
      double max_diff = 0;
      for (size_t i = 0; i < ref.size(); ++i)
        max_diff = std::max(max_diff, (got[i].second - ref[i].second).abs().max().item<double>());
      EXPECT_LT(max_diff, 2e-5) << scenario << ", " << world << " processes";
      std::cout << scenario << ", " << world << " processes: max |param difference| " << max_diff << "\n";
      auto m = grpo::test_util::read_jsonl(run + "/metrics.jsonl");
      ASSERT_EQ(m.size(), ref_metrics.size());
      EXPECT_EQ(m.back()["processes"], world);
      for (size_t i = 0; i < m.size(); ++i) {  // every stage's loss, step by step
        EXPECT_NEAR(m[i]["loss"].get<double>(), ref_metrics[i]["loss"].get<double>(), 1e-5) << scenario << " " << i;
        if (m[i]["stage"] == "grpo")
          for (const char* k : {"reward_mean", "groups_dropped", "groups_trained", "sampling_rounds", "prompts_sampled"})
            EXPECT_EQ(m[i][k], ref_metrics[i][k]) << scenario << " " << i << " " << k;
      }
      if (scenario == "grpo_zero1") {
        // rank 0 held a share of the state ...
        int64_t mine = 0, total = 0;
        const auto at = ws[0].out.find("ZeRO-1: AdamW state for ");
        ASSERT_NE(at, std::string::npos) << ws[0].out;
        ASSERT_EQ(std::sscanf(ws[0].out.c_str() + at, "ZeRO-1: AdamW state for %ld of %ld", &mine, &total), 2);
        EXPECT_GT(mine, 0);
        EXPECT_LT(mine, total * 3 / (2 * world)) << "about 1/" << world << " of it";
        // ... and the checkpoint has all of it, as one process saves it
        auto opt = params(run, "optimizer"), opt_ref = params(one, "optimizer");
        ASSERT_EQ(opt.size(), opt_ref.size());
        double d = 0;
        for (size_t i = 0; i < opt.size(); ++i) {
          EXPECT_EQ(opt[i].first, opt_ref[i].first);
          d = std::max(d, (opt[i].second.to(at::kDouble) - opt_ref[i].second.to(at::kDouble)).abs().max().item<double>());
        }
        EXPECT_LT(d, 1e-6);
      }
    }
  }
}

// Multi-turn episodes under data parallelism: the episodes of each rank's rows run on that rank,
// and 2 processes train what one process trains, with the same episode metrics (summed over ranks).
TEST(Dist, MultiTurnEpisodesOnTwoRanksEqualOneProcess) {
  const std::string one = grpo::test_util::tmpdir("env_one");
  auto c = dp_run(one);
  with_env(c);
  grpo::train::Trainer t(c);
  t.run();
  auto ws = run_workers(2, {0, 1}, "grpo_env", 60000);
  for (int r = 0; r < 2; ++r) ASSERT_EQ(ws[r].rc, 0) << "rank " << r << ":\n" << ws[r].out;
  const std::string run = std::string(GRPO_TEST_TMPDIR) + "/dist_grpo_env_2/run";
  auto params = [](const std::string& dir) {
    return grpo::io::load_safetensors(dir + "/checkpoints/step-000002/model.safetensors");
  };
  auto ref = params(one), got = params(run);
  ASSERT_EQ(got.size(), ref.size());
  double max_diff = 0;
  for (size_t i = 0; i < ref.size(); ++i)
    max_diff = std::max(max_diff, (got[i].second - ref[i].second).abs().max().item<double>());
  EXPECT_LT(max_diff, 2e-5);
  auto m = grpo::test_util::read_jsonl(run + "/metrics.jsonl"), m_ref = grpo::test_util::read_jsonl(one + "/metrics.jsonl");
  ASSERT_EQ(m.size(), m_ref.size());
  double turns = 0;
  for (size_t i = 0; i < m.size(); ++i) {
    if (m[i]["stage"] != "grpo") continue;
    for (const char* k : {"reward_mean", "env_turns", "env_tool_calls", "env_observation_tokens", "env_truncated_fraction",
                          "response_length"})
      EXPECT_NEAR(m[i][k].get<double>(), m_ref[i][k].get<double>(), 1e-9) << i << " " << k;
    turns += m[i]["env_turns"].get<double>();
  }
  EXPECT_GT(turns, 0.0) << "no turn ended: the test exercises nothing";
}

// Mixed precision with ZeRO-1: each rank keeps fp32 masters and AdamW state for its own share of
// the bf16 parameters; 2 processes train exactly what 2 processes with every master on every rank
// train (the same bf16 gradient sums, the same element-wise updates), and the checkpoint gathers
// the fp32 masters from their owners.
TEST(Dist, MixedPrecisionZero1EqualsReplicatedMasters) {
  std::vector<grpo::io::NamedTensors> got;
  for (const char* scenario : {"grpo_dp_bf16", "grpo_zero1_bf16"}) {
    auto ws = run_workers(2, {0, 1}, scenario, 60000);
    for (int r = 0; r < 2; ++r) ASSERT_EQ(ws[r].rc, 0) << scenario << " rank " << r << ":\n" << ws[r].out;
    const std::string run = std::string(GRPO_TEST_TMPDIR) + "/dist_" + scenario + "_2/run";
    got.push_back(grpo::io::load_safetensors(run + "/checkpoints/step-000002/model.safetensors"));
    got.push_back(grpo::io::load_safetensors(run + "/checkpoints/step-000002/optimizer.safetensors"));
  }
  for (size_t k : {0, 1}) {
    ASSERT_EQ(got[k].size(), got[k + 2].size());
    ASSERT_GT(got[k].size(), 0u);
    for (size_t i = 0; i < got[k].size(); ++i) {
      EXPECT_EQ(got[k][i].first, got[k + 2][i].first);
      if (k == 0) EXPECT_EQ(got[k][i].second.scalar_type(), at::kFloat) << got[k][i].first;  // masters
      EXPECT_TRUE(got[k][i].second.equal(got[k + 2][i].second)) << got[k][i].first;
    }
  }
}
