// Learning: the demo recipes (configs/demo.yaml: dense; configs/moe_tiny.yaml: DeepSeek-V3-style
// MLA + MoE) must make the policy better at held-out addition. Fixed seed, shortened GRPO stage;
// asserts a clear gain in greedy accuracy (answer correctness alone, extracted without requiring
// the format) between the start and the end of GRPO.
#include <filesystem>
#include <fstream>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "grpo/train/config.h"
#include "grpo/train/trainer.h"

namespace fs = std::filesystem;

class Learning : public ::testing::TestWithParam<std::string> {};

TEST_P(Learning, GrpoRaisesHeldOutAccuracy) {
  std::string dir = std::string(GRPO_TEST_TMPDIR) + "/learning_" + GetParam();
  fs::remove_all(dir);
  auto cfg = grpo::train::load_config_file(
      std::string(GRPO_SOURCE_DIR) + "/configs/" + GetParam() + ".yaml",
      {"run.dir=" + dir, "run.seed=1", "grpo.rollout_steps=30", "eval.every=0",
       "eval.num_prompts=300", "checkpoint.every=0"});
  grpo::train::Trainer trainer(cfg);
  trainer.run();

  std::vector<nlohmann::json> evals;
  std::ifstream in(dir + "/eval.jsonl");
  for (std::string line; std::getline(in, line);) evals.push_back(nlohmann::json::parse(line));
  ASSERT_EQ(evals.size(), 2u);
  EXPECT_EQ(evals[0]["stage"], "base");
  EXPECT_EQ(evals[1]["step"], 30);
  double before = evals[0]["accuracy_greedy"], after = evals[1]["accuracy_greedy"];
  std::cout << "held-out greedy accuracy " << before << " -> " << after << "\n";
  EXPECT_GT(before, 0.05);  // the base stage gives some skill ...
  EXPECT_LT(before, 0.7);   // ... but not much
  EXPECT_GE(after - before, 0.25);
  // the reward curve rises too
  std::ifstream m(dir + "/metrics.jsonl");
  std::vector<double> rewards;
  for (std::string line; std::getline(m, line);) {
    auto j = nlohmann::json::parse(line);
    if (j["stage"] == "grpo") rewards.push_back(j["reward_mean"]);
  }
  ASSERT_EQ(rewards.size(), 30u);
  double first = (rewards[0] + rewards[1] + rewards[2]) / 3, last = (rewards[27] + rewards[28] + rewards[29]) / 3;
  EXPECT_GT(last, first + 0.2);
  if (cfg.model.n_routed_experts > 0) {  // the experts stayed in use (aux-loss-free balancing)
    std::ifstream mm(dir + "/metrics.jsonl");
    double ratio = 0;
    for (std::string line; std::getline(mm, line);) {
      auto j = nlohmann::json::parse(line);
      if (j["stage"] == "grpo") ratio = j["moe_load_max_over_mean"];
    }
    EXPECT_GT(ratio, 1.0);
    EXPECT_LT(ratio, 2.5);
  }
}

INSTANTIATE_TEST_SUITE_P(Recipes, Learning, ::testing::Values("demo", "moe_tiny"));
