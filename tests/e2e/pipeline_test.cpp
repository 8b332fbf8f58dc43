// The R1 multi-stage pipeline on the built-in task (scripts/pipeline_demo.sh: base -> cold-start
// SFT -> RL -> rejection sampling -> SFT -> RL, and RL alone from the same base), measured by
// grpo_eval: each RL stage raises pass@1 over the stage before it, and the final model beats RL
// alone with the same number of RL steps.
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

TEST(Pipeline, R1StagesEachImproveAndBeatRlAlone) {
  const std::string dir = std::string(GRPO_TEST_TMPDIR) + "/pipeline";
  std::filesystem::remove_all(dir);
  const std::string build = std::filesystem::path(GRPO_BIN_DIR).parent_path().string();
  const std::string cmd = "GRPO_SKIP_BUILD=1 GRPO_BUILD_DIR=" + build + " bash " + GRPO_SOURCE_DIR +
                          "/scripts/pipeline_demo.sh " + dir + " 20 > " + dir + ".log 2>&1";
  ASSERT_EQ(std::system(cmd.c_str()), 0) << "see " << dir << ".log";
  std::map<std::string, nlohmann::json> stage;
  std::ifstream in(dir + "/summary.jsonl");
  for (std::string line; std::getline(in, line);) {
    auto j = nlohmann::json::parse(line);
    stage[j["stage"]] = j;
    std::cout << j["stage"].get<std::string>() << ": pass@1 " << j["pass@1"] << " cons@8 " << j["cons@k"]
              << " greedy " << j["greedy"] << "\n";
  }
  for (const char* s : {"base", "sft1", "rl1", "sft2", "rl2", "rl_only"}) ASSERT_TRUE(stage.count(s)) << s;
  auto pass = [&](const char* s) { return stage[s]["pass@1"].get<double>(); };
  EXPECT_EQ(stage["rl2"]["questions"], 500);
  EXPECT_EQ(stage["rl2"]["k"], 8);
  EXPECT_GT(pass("sft1"), pass("base"));       // the cold start teaches
  EXPECT_GT(pass("rl1"), pass("sft1") + 0.05);  // RL raises it
  EXPECT_GT(pass("rl2"), pass("sft2") + 0.02);  // and again after rejection-sampled SFT
  EXPECT_GT(pass("rl2"), pass("rl_only") + 0.02);  // the pipeline beats RL alone
  EXPECT_GT(stage["rl2"]["format_rate"].get<double>(), 0.9);
}
