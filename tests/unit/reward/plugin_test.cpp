// Reward plugins: scores through a child process that survives crashes, hangs and garbage.
#include <signal.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <thread>

#include <gtest/gtest.h>

#include "grpo/core/error.h"
#include "grpo/reward/plugin.h"
#include "grpo/reward/reward.h"

using namespace grpo;

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
