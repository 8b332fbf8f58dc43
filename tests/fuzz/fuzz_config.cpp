// The config parser and --set overrides (core/config.h) on the torch-free sections of grpo's
// config -- model, tokenizer-free prompt, built-in task, dataset, reward: every field type and
// bound the trainer's sections use -- plus the model's cross-field validation. Input: YAML text;
// lines starting with '@' are --set overrides ("@grpo.group_size=4"). Loading either succeeds
// (then the dump loads back to the same values and every number is in range) or throws
// grpo::ConfigError / grpo::Error; nothing else may happen.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <vector>

#include "grpo/core/config.h"
#include "grpo/core/error.h"
#include "grpo/data/arithmetic.h"
#include "grpo/data/jsonl_dataset.h"
#include "grpo/model/model_config.h"
#include "grpo/reward/reward.h"
#include "grpo/text/prompt.h"

namespace {

struct FuzzConfig {
  grpo::model::ModelConfig model;
  grpo::text::PromptConfig prompt;
  grpo::data::ArithmeticConfig task;
  grpo::data::DataConfig data;
  grpo::reward::RewardConfig reward;
  void visit(grpo::core::ConfigVisitor& v) {
    v.section("model", "", model);
    v.section("prompt", "", prompt);
    v.section("task", "", task);
    v.section("data", "", data);
    v.section("reward", "", reward);
  }
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* bytes, size_t size) {
  const std::string input(reinterpret_cast<const char*>(bytes), size);
  std::string yaml;
  std::vector<std::string> overrides;
  size_t start = 0;
  while (start <= input.size()) {
    size_t end = input.find('\n', start);
    if (end == std::string::npos) end = input.size();
    const std::string line = input.substr(start, end - start);
    if (!line.empty() && line[0] == '@') overrides.push_back(line.substr(1));
    else yaml += line + "\n";
    start = end + 1;
  }
  FuzzConfig c;
  auto visit = [&c](grpo::core::ConfigVisitor& v) { c.visit(v); };
  grpo::core::ConfigSource src;
  try {
    grpo::core::load_config(yaml, "fuzz.yaml", overrides, visit, &src);
    c.model.validate(src, "model");
  } catch (const grpo::Error&) {
    return 0;
  }
  // what loaded is in range and dumps to YAML that loads back to the same values
  grpo::core::check_bounds(visit, src, "");
  const auto before = grpo::core::flatten_config(visit);
  FuzzConfig back;
  grpo::core::load_config(grpo::core::dump_config(visit), "dump.yaml", {},
                          [&back](grpo::core::ConfigVisitor& v) { back.visit(v); });
  if (!grpo::core::diff_config(before, grpo::core::flatten_config([&back](grpo::core::ConfigVisitor& v) {
        back.visit(v);
      })).empty())
    std::abort();
  return 0;
}
