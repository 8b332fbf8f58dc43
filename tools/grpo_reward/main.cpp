// grpo_reward: scores completions with registered reward functions, the way training does.
// stdin: JSON lines {"completion": ..., "answer": ...}; stdout: one JSON line per input, in input
// order: {"score": weighted sum, "components": {name: score}, "failed": [...] (if any)}.
// How users debug rewards and score outputs produced elsewhere.
#include <iostream>
#include <sstream>
#include <string>

#include <nlohmann/json.hpp>

#include "grpo/core/error.h"
#include "grpo/reward/reward.h"

int main(int argc, char** argv) {
  std::map<std::string, double> weights;
  double failure_value = 0.0;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--reward" && i + 1 < argc) {
      std::stringstream ss(argv[++i]);
      for (std::string item; std::getline(ss, item, ',');) {
        if (item.empty()) continue;
        auto eq = item.find('=');  // name=weight (default 1)
        std::string name = item.substr(0, eq);
        double w = 1.0;
        if (eq != std::string::npos) {
          try {
            w = std::stod(item.substr(eq + 1));
          } catch (const std::exception&) {
            std::cerr << "grpo_reward: --reward " << item << ": expected name=weight with a number\n";
            return 2;
          }
        }
        weights[name] = w;
      }
    } else if (a == "--failure-value" && i + 1 < argc) {
      failure_value = std::atof(argv[++i]);
    } else if (a == "--help" || a == "-h") {
      std::cout << "usage: grpo_reward --reward NAME[=WEIGHT][,NAME[=WEIGHT]...] [--failure-value X]\n"
                   "stdin:  JSON lines {\"completion\": ..., \"answer\": ...}\n"
                   "stdout: JSON lines {\"score\", \"components\": {name: score}}, in input order\n"
                   "rewards: ";
      auto names = grpo::reward::RewardRegistry::names();
      for (size_t k = 0; k < names.size(); ++k) std::cout << (k ? ", " : "") << names[k];
      std::cout << "\n";
      return 0;
    } else {
      std::cerr << "grpo_reward: unknown argument '" << a << "' (see --help)\n";
      return 2;
    }
  }
  if (weights.empty()) {
    std::cerr << "grpo_reward: --reward is required (see --help)\n";
    return 2;
  }
  try {
    grpo::reward::CombinedReward reward(weights, failure_value);
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
      auto r = reward.score(j["completion"].get<std::string>(), answer);
      nlohmann::json out = {{"score", r.total}, {"components", r.parts}};
      if (!r.failed.empty()) out["failed"] = r.failed;
      std::cout << out.dump() << "\n";
    }
  } catch (const grpo::Error& e) {
    std::cerr << "grpo_reward: error: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
