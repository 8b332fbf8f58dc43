// grpo_report's page: which charts a run's fields give, several runs overlaid, the config
// differences, smoothing, and bad run directories. That a browser renders it is report.browser.
#include <algorithm>
#include <filesystem>
#include <fstream>
#include <string>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "grpo/report/report.h"
#include "../test_util.h"

using namespace grpo;
using grpo::test_util::error_of;
using grpo::test_util::tmpdir;
using grpo::test_util::write_file;

namespace {

int count(const std::string& s, const std::string& what) {
  int n = 0;
  for (size_t at = s.find(what); at != std::string::npos; at = s.find(what, at + 1)) ++n;
  return n;
}

// A run directory with `steps` GRPO steps (reward rising), evaluations every 2 steps, and a config.
// `tools`: a multi-turn run (the share of episodes calling a tool, in training and held out).
std::string fake_run(const std::string& name, int steps, double kl_coef, bool moe = false, bool tools = false) {
  auto dir = tmpdir(name);
  std::string metrics = R"({"stage": "pretrain", "step": 1, "loss": 2.0})" "\n";
  std::string evals;
  for (int s = 1; s <= steps; ++s) {
    nlohmann::json j = {{"stage", "grpo"}, {"step", s}, {"reward_mean", 0.1 * s}, {"reward_std", 0.05},
                        {"accuracy", 0.1 * s}, {"format_rate", -1.0}, {"kl", 0.001 * s}, {"entropy", 1.0},
                        {"response_length", 20 + s}, {"clip_low_fraction", 0.0}, {"clip_high_fraction", 0.01},
                        {"grad_norm", 0.5}, {"lr", 2e-4}, {"time_rollout", 1.0}, {"time_reward", 0.1},
                        {"time_update", 2.0}, {"time_step", 3.5}};
    if (moe) j["moe_load_max_over_mean"] = 1.5;
    if (tools) j["env_tool_use"] = 0.1 * s;
    metrics += j.dump() + "\n";
    nlohmann::json e{{"step", s}, {"stage", "grpo"}, {"accuracy_greedy", 0.05 * s}, {"accuracy_sampled", 0.04 * s}};
    if (tools) e["tool_use_greedy"] = 0.08 * s, e["format_greedy"] = 0.0;
    if (s % 2 == 0) evals += e.dump() + "\n";
  }
  write_file(dir + "/metrics.jsonl", metrics);
  write_file(dir + "/eval.jsonl", evals);
  write_file(dir + "/config.yaml", "run: {dir: " + dir + ", seed: 1}\ngrpo: {kl_coef: " + std::to_string(kl_coef) +
                                       ", group_size: 8}\nreward: {weights: {accuracy: 1.0}}\n");
  return dir;
}

}  // namespace

TEST(Report, ChartsFollowTheFieldsTheRunsHave) {
  auto a = report::load_run(fake_run("report_a", 6, 0.0));
  EXPECT_EQ(report::chart_ids({a}), (std::vector<std::string>{"reward", "accuracy", "length", "kl", "entropy",
                                                                "clip", "grad_norm", "lr", "supervised_loss",
                                                                "time_split_0"}));
  // format_rate -1 (no format reward) and the MoE load of a dense model leave their charts out
  auto page = report::html({a}, {});
  EXPECT_EQ(count(page, "<svg class=\"chart\""), 10);
  EXPECT_EQ(count(page, "data-field=\"reward_mean\""), 1);
  EXPECT_EQ(count(page, "class=\"band\""), 1);  // the reward's +- std
  EXPECT_EQ(count(page, "class=\"stack\""), 4);  // rollout, reward, update, other
  EXPECT_EQ(page.find("<script"), std::string::npos);
  EXPECT_EQ(page.find("src="), std::string::npos);  // nothing to load
  EXPECT_EQ(page.find("href="), std::string::npos);
  EXPECT_NE(page.find("0.0% → 30.0%"), std::string::npos);  // held-out greedy, first -> last
  // a multi-turn run adds the tool-use chart: training episodes and held-out greedy ones
  auto t = report::load_run(fake_run("report_tools", 6, 0.0, false, true));
  auto ids = report::chart_ids({t});
  EXPECT_NE(std::find(ids.begin(), ids.end(), "tool_use"), ids.end());
  // without a format reward (format_rate -1), the held-out format rate draws no chart
  EXPECT_EQ(std::find(ids.begin(), ids.end(), "format"), ids.end());
  auto tools_page = report::html({t}, {});
  EXPECT_EQ(count(tools_page, "data-field=\"env_tool_use\""), 1);
  EXPECT_EQ(count(tools_page, "data-field=\"tool_use_greedy\""), 1);
}

TEST(Report, RunsOverlayAndTheirConfigDifferencesAreListed) {
  auto a = report::load_run(fake_run("report_runs/seed1", 4, 0.0));
  auto b = report::load_run(fake_run("report_runs/seed2", 6, 0.001, true));
  auto page = report::html({a, b}, {0.6, "two runs"});
  EXPECT_EQ(count(page, "data-field=\"reward_mean\""), 2);
  EXPECT_EQ(count(page, "data-chart=\"moe_load\""), 1);
  // smoothing keeps the raw curve, and leaves the few held-out evaluations as they are
  EXPECT_EQ(count(page, "class=\"raw\""), count(page, "class=\"series\"") - count(page, "data-field=\"accuracy_greedy\"") -
                                            count(page, "data-field=\"accuracy_sampled\""));
  EXPECT_NE(page.find("<td>grpo.kl_coef</td><td>0.000000</td><td>0.001000</td>"), std::string::npos);
  EXPECT_EQ(page.find("<td>grpo.group_size</td>"), std::string::npos);  // the same in both
  EXPECT_EQ(page.find("<td>run.dir</td>"), std::string::npos);
  EXPECT_NE(page.find("<title>two runs</title>"), std::string::npos);
  // runs with the same directory name are told apart by their paths
  auto c = report::load_run(fake_run("report_runs_other/seed1", 2, 0.0));
  page = report::html({a, c}, {});
  EXPECT_NE(page.find("report_runs/seed1"), std::string::npos);
  EXPECT_NE(page.find("report_runs_other/seed1"), std::string::npos);
}

TEST(Report, BadRunDirectoriesAreErrorsNamingTheFile) {
  auto dir = tmpdir("report_bad");
  EXPECT_NE(error_of([&] { report::load_run(dir + "/none"); }).find("no such run directory"), std::string::npos);
  auto err = error_of([&] { report::load_run(dir); });
  EXPECT_NE(err.find(dir + "/metrics.jsonl"), std::string::npos) << err;
  write_file(dir + "/metrics.jsonl", "{\"step\": 1}\nnot json\n");
  err = error_of([&] { report::load_run(dir); });
  EXPECT_NE(err.find("metrics.jsonl:2: expected one JSON object per line"), std::string::npos) << err;
  write_file(dir + "/metrics.jsonl", "{\"step\": 1}\n");
  write_file(dir + "/config.yaml", "run: {dir: [\n");
  err = error_of([&] { report::load_run(dir); });
  EXPECT_NE(err.find("config.yaml:"), std::string::npos) << err;
  auto r = report::load_run(fake_run("report_bad_smooth", 2, 0.0));
  EXPECT_NE(error_of([&] { report::html({r}, {1.0, "x"}); }).find("--smooth"), std::string::npos);
}
