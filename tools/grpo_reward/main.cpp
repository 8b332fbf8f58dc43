// grpo_reward: scores completions with registered reward functions, the way training does.
// stdin: JSON lines {"completion": ..., "answer": ..., optional "prompt", "response_tokens",
// "max_response_tokens" and any other fields (passed to rewards as Sample::fields)}; stdout: one
// JSON line per input, in input order: {"score": weighted sum, "components": {name: score},
// "failed": [...] (if any)}.
// How users debug rewards and score outputs produced elsewhere.
#include <iostream>
#include <string>

#include <nlohmann/json.hpp>

#include "grpo/core/error.h"
#include "grpo/reward/plugin.h"
#include "grpo/reward/reward.h"

#include "../common/errors.h"
#include "../common/tool_flags.h"

int main(int argc, char** argv) {
  grpo::tools::ToolParams p;
  if (auto rc = grpo::tools::parse_tool_flags(grpo::tools::Tool::kReward, argc, argv, p, [](std::ostream& out) {
        out << "\nrewards: " << fmt::format("{}", fmt::join(grpo::reward::RewardRegistry::names(), ", ")) << "\n";
      }))
    return *rc;
  if (!p.reward.plugin.empty()) {  // an external reward named plugin
    const std::string cmd = p.reward.plugin;
    grpo::reward::RewardRegistry::add("plugin", [cmd] { return grpo::reward::make_process_reward(cmd); });
  }
  const auto& weights = p.reward.weights;
  const double failure_value = p.reward.failure_value;
  const auto& params = p.reward.params;
  if (weights.empty()) {
    std::cerr << "grpo_reward: --reward is required (see --help)\n";
    return 2;
  }
  try {
    grpo::reward::CombinedReward reward(weights, failure_value, params);
    std::string line;
    for (int64_t n = 1; std::getline(std::cin, line); ++n) {
      if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
      auto j = nlohmann::json::parse(line, nullptr, false);
      GRPO_CHECK(!j.is_discarded() && j.is_object(), "stdin line {}: not a JSON object", n);
      GRPO_CHECK(j.contains("completion") && j["completion"].is_string(),
                 "stdin line {}: expected a string field 'completion'", n);
      std::string answer = j.contains("answer") ? (j["answer"].is_string() ? j["answer"].get<std::string>()
                                                                          : j["answer"].dump())
                                                : "";
      grpo::reward::Sample smp;
      smp.completion = j["completion"].get<std::string>();
      smp.answer = answer;
      if (j.contains("prompt") && j["prompt"].is_string()) smp.prompt = j["prompt"].get<std::string>();
      if (j.contains("response_tokens") && j["response_tokens"].is_number_integer())
        smp.response_tokens = j["response_tokens"].get<int64_t>();
      if (j.contains("max_response_tokens") && j["max_response_tokens"].is_number_integer())
        smp.max_response_tokens = j["max_response_tokens"].get<int64_t>();
      for (auto& [k, v] : j.items())  // everything else reaches rewards as fields (JSON text)
        if (k != "completion" && k != "answer" && k != "prompt") smp.fields[k] = v.is_string() ? v.get<std::string>() : v.dump();
      auto r = reward.score(std::move(smp));
      nlohmann::json out = {{"score", r.total}, {"components", r.parts}};
      if (!r.failed.empty()) out["failed"] = r.failed;
      std::cout << out.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) << "\n";
    }
  } catch (...) {
    return grpo::tools::report_exception("grpo_reward");
  }
  return 0;
}
