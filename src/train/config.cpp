#include "grpo/train/config.h"

#include "grpo/core/error.h"
#include "grpo/reward/reward.h"

namespace grpo::train {

Config load_config_text(const std::string& yaml, const std::string& name,
                        const std::vector<std::string>& overrides) {
  Config c;
  core::ConfigSource src;
  core::load_config(yaml, name, overrides, [&](core::ConfigVisitor& v) { c.visit(v); }, &src);
  validate(c, src);
  return c;
}

Config load_config_file(const std::string& path, const std::vector<std::string>& overrides) {
  std::string text;
  try {
    text = core::read_file(path);
  } catch (const Error& e) {
    throw ConfigError(e.what());
  }
  return load_config_text(text, path, overrides);
}

void validate(const Config& c, const core::ConfigSource& src) {
  c.model.validate(src);
  auto known = reward::RewardRegistry::names();
  for (auto& [name, w] : c.reward.weights)
    if (std::find(known.begin(), known.end(), name) == known.end())
      core::config_fail(src, "reward.weights." + name,
                        fmt::format("unknown reward '{}'; registered: {}", name, fmt::join(known, ", ")));
  if (c.reward.weights.empty())
    core::config_fail(src, "reward.weights", "at least one reward function is needed");
  // prompt "a+b=" with the template, plus the response, must fit the model's positions
  int64_t prompt_chars = 2 * c.task.digits + 2 + static_cast<int64_t>(c.task.prompt_template.size()) - 8;
  if (prompt_chars + c.rollout.max_new_tokens > c.model.max_position_embeddings)
    core::config_fail(src, "rollout.max_new_tokens",
                      fmt::format("prompt (~{} tokens) + max_new_tokens ({}) exceeds "
                                  "model.max_position_embeddings ({})",
                                  prompt_chars, c.rollout.max_new_tokens,
                                  c.model.max_position_embeddings));
  if (c.grpo.mini_batches > c.grpo.prompts_per_step * c.grpo.group_size)
    core::config_fail(src, "grpo.mini_batches",
                      fmt::format("{} mini-batches but only {} samples per rollout step",
                                  c.grpo.mini_batches, c.grpo.prompts_per_step * c.grpo.group_size));
  if (c.task.prompt_template.find("{prompt}") == std::string::npos)
    core::config_fail(src, "task.prompt_template", "must contain {prompt}");
}

std::string to_yaml(Config c, bool with_docs) {
  return core::dump_config([&](core::ConfigVisitor& v) { c.visit(v); }, with_docs);
}

}  // namespace grpo::train
