// Learning: the demo recipes (configs/demo.yaml: dense; configs/moe_tiny.yaml: DeepSeek-V3-style
// MLA + MoE) must make the policy better at held-out addition. Fixed seed, shortened GRPO stage;
// asserts a clear gain in greedy accuracy (answer correctness alone, extracted without requiring
// the format) between the start and the end of GRPO.
#include <cstdlib>
#include <filesystem>
#include <fstream>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "grpo/train/config.h"
#include "grpo/train/trainer.h"
#include "../unit/test_util.h"

namespace fs = std::filesystem;

namespace {

using grpo::test_util::read_jsonl;

// The lines of a run's metrics.jsonl from one stage.
std::vector<nlohmann::json> stage_lines(const std::string& path, const std::string& stage) {
  std::vector<nlohmann::json> out;
  for (auto& j : read_jsonl(path))
    if (j.value("stage", "") == stage) out.push_back(std::move(j));
  return out;
}

struct Outcome {
  double before = 0, after = 0;   // held-out greedy accuracy at the start and the end of GRPO
  double first_rewards = 0, last_rewards = 0;  // mean reward over the first and last 3 steps
  double load_ratio = 0;          // MoE: the last step's max/mean expert load
};

Outcome run_recipe(const std::string& recipe, int seed) {
  std::string dir = std::string(GRPO_TEST_TMPDIR) + "/learning_" + recipe + "_seed" + std::to_string(seed);
  fs::remove_all(dir);
  auto cfg = grpo::train::load_config_file(
      std::string(GRPO_SOURCE_DIR) + "/configs/" + recipe + ".yaml",
      {"run.dir=" + dir, "run.seed=" + std::to_string(seed), "grpo.rollout_steps=30", "eval.every=0",
       "eval.num_prompts=300", "checkpoint.every=0"});
  grpo::train::Trainer trainer(cfg);
  trainer.run();

  std::vector<nlohmann::json> evals;
  std::ifstream in(dir + "/eval.jsonl");
  for (std::string line; std::getline(in, line);) evals.push_back(nlohmann::json::parse(line));
  EXPECT_EQ(evals.size(), 2u) << dir;
  Outcome o;
  if (evals.size() != 2u) return o;
  EXPECT_EQ(evals[0]["stage"], "base");
  EXPECT_EQ(evals[1]["step"], 30);
  o.before = evals[0]["accuracy_greedy"];
  o.after = evals[1]["accuracy_greedy"];
  std::ifstream m(dir + "/metrics.jsonl");
  std::vector<double> rewards;
  for (std::string line; std::getline(m, line);) {
    auto j = nlohmann::json::parse(line);
    if (j["stage"] != "grpo") continue;
    rewards.push_back(j["reward_mean"]);
    if (j.contains("moe_load_max_over_mean")) o.load_ratio = j["moe_load_max_over_mean"];
  }
  EXPECT_EQ(rewards.size(), 30u) << dir;
  if (rewards.size() == 30u) {
    o.first_rewards = (rewards[0] + rewards[1] + rewards[2]) / 3;
    o.last_rewards = (rewards[27] + rewards[28] + rewards[29]) / 3;
  }
  std::cout << recipe << " seed " << seed << ": held-out greedy accuracy " << o.before << " -> " << o.after
            << ", reward " << o.first_rewards << " -> " << o.last_rewards << "\n";
  return o;
}

}  // namespace

// A recipe and the seeds it must learn on. Float results differ between CPUs in the last bits
// (docs/testing.md), so a run's trajectory is another random draw on another CPU, and a threshold
// must hold for the recipe, not for one lucky trajectory. The demo gains +44..+64 points on every
// seed and CPU measured (README), far from 25: one seed. moe_tiny's gains spread more over seeds
// (+19.0 / +43.0 / +51.0 points after these 30 steps, seeds 1-3, AMD EPYC with AVX2; docs/testing.md):
// its mean gain over three seeds must reach the 25 points, and each seed must still gain 10.
class Learning : public ::testing::TestWithParam<std::string> {};

TEST_P(Learning, GrpoRaisesHeldOutAccuracy) {
  const std::string recipe = GetParam();
  const bool moe = recipe == "moe_tiny";
  const std::vector<int> seeds = moe ? std::vector<int>{1, 2, 3} : std::vector<int>{1};
  double gains = 0;
  for (int seed : seeds) {
    auto o = run_recipe(recipe, seed);
    gains += o.after - o.before;
    EXPECT_GT(o.before, 0.05) << recipe << " seed " << seed << ": the pretrain stage gives some skill ...";
    EXPECT_LT(o.before, 0.7) << recipe << " seed " << seed << ": ... but not much";
    EXPECT_GE(o.after - o.before, seeds.size() > 1 ? 0.10 : 0.25) << recipe << " seed " << seed;
    EXPECT_GT(o.last_rewards, o.first_rewards + 0.2) << recipe << " seed " << seed << ": the reward curve rises";
    if (moe) {  // the experts stayed in use (aux-loss-free balancing)
      EXPECT_GT(o.load_ratio, 1.0) << recipe << " seed " << seed;
      EXPECT_LT(o.load_ratio, 2.5) << recipe << " seed " << seed;
    }
  }
  EXPECT_GE(gains / seeds.size(), 0.25) << recipe << ": mean gain over " << seeds.size() << " seeds";
}

INSTANTIATE_TEST_SUITE_P(Recipes, Learning, ::testing::Values("demo", "moe_tiny"));

// Issue #7's command: `mpirun -np 2 grpo_train --config configs/demo.yaml` (OpenMPI from Debian; as
// root it needs --allow-run-as-root, more ranks than cores need --oversubscribe) trains data
// parallel over the two processes and learns.
TEST(MultiProcess, MpirunTwoProcessesLearn) {
  if (std::system("command -v mpirun > /dev/null 2>&1") != 0)
    GTEST_SKIP() << "OpenMPI's mpirun is not installed (scripts/setup.sh installs openmpi-bin)";
  const std::string dir = std::string(GRPO_TEST_TMPDIR) + "/learning_mpirun";
  fs::remove_all(dir);
  const std::string cmd = "mpirun -np 2 --allow-run-as-root --oversubscribe " + std::string(GRPO_BIN_DIR) +
                          "/grpo_train --config " + GRPO_SOURCE_DIR + "/configs/demo.yaml --set run.dir=" + dir +
                          " --set run.threads=1 --set grpo.rollout_steps=30 --set eval.every=0"
                          " --set eval.num_prompts=300 --set checkpoint.every=0 > " + dir + ".log 2>&1";
  ASSERT_EQ(std::system(cmd.c_str()), 0) << "see " << dir << ".log";
  const auto evals = read_jsonl(dir + "/eval.jsonl"), steps = stage_lines(dir + "/metrics.jsonl", "grpo");
  ASSERT_EQ(evals.size(), 2u);  // rank 0 alone writes the run directory
  ASSERT_EQ(steps.size(), 30u);
  EXPECT_EQ(steps.back()["processes"], 2);
  EXPECT_EQ(steps.back()["prompts_sampled"], 32);
  double before = evals[0]["accuracy_greedy"], after = evals[1]["accuracy_greedy"];
  std::cout << "mpirun -np 2: held-out greedy accuracy " << before << " -> " << after << "\n";
  EXPECT_GE(after - before, 0.25);
}

// A task where the tool pays (configs/tool_demo.yaml): 4-digit multiplication, which the tiny model
// cannot compute but can delegate to the Python code tool that runs in the sandbox during every
// rollout. After the pretrain stage the greedy policy answers outright and is never right (a third
// of its samples call the tool, and those are right); GRPO makes the tool its habit. Shortened to
// 10 GRPO steps (seed 1 on a 2-core Intel Xeon: greedy 0.0% -> 100.0%, tool use 0% -> 100%).
TEST(ToolUse, GrpoMakesTheCodeToolAHabitAndAccuracyFollows) {
  const std::string dir = std::string(GRPO_TEST_TMPDIR) + "/learning_tool_demo";
  fs::remove_all(dir);
  auto cfg = grpo::train::load_config_file(std::string(GRPO_SOURCE_DIR) + "/configs/tool_demo.yaml",
                                           {"run.dir=" + dir, "grpo.rollout_steps=10", "eval.every=0",
                                            "eval.num_prompts=200", "checkpoint.every=0"});
  grpo::train::Trainer trainer(cfg);
  trainer.run();
  const auto evals = read_jsonl(dir + "/eval.jsonl"), steps = stage_lines(dir + "/metrics.jsonl", "grpo");
  ASSERT_EQ(evals.size(), 2u);
  ASSERT_EQ(steps.size(), 10u);
  const auto &before = evals[0], &after = evals[1];
  std::cout << "tool_demo: held-out greedy accuracy " << before["accuracy_greedy"] << " -> " << after["accuracy_greedy"]
            << ", sampled " << before["accuracy_sampled"] << " -> " << after["accuracy_sampled"] << ", greedy tool use "
            << before["tool_use_greedy"] << " -> " << after["tool_use_greedy"] << "\n";
  // the base policy: answering outright is its habit and never right; the calls it samples are right
  EXPECT_LT(before["tool_use_greedy"].get<double>(), 0.2);
  EXPECT_LT(before.value("accuracy_greedy_no_tool", 0.0), 0.05) << "the model multiplies 4-digit numbers itself?";
  EXPECT_GT(before["accuracy_sampled"].get<double>(), 0.1);
  // after GRPO: it calls the tool and is right
  EXPECT_GT(after["tool_use_greedy"].get<double>(), 0.8);
  EXPECT_GE(after["accuracy_greedy"].get<double>() - before["accuracy_greedy"].get<double>(), 0.5);
  EXPECT_GT(after.value("accuracy_greedy_tool", 0.0), 0.8);
  EXPECT_GT(steps.back()["env_tool_use"].get<double>(), steps.front()["env_tool_use"].get<double>() + 0.2);
  EXPECT_GT(steps.back()["reward_mean"].get<double>(), steps.front()["reward_mean"].get<double>() + 0.2);
  EXPECT_LT(steps.back()["env_tool_errors"].get<double>(), 0.05) << "the programs it writes run";
}
