#include "grpo/train/config.h"

#include <cmath>
#include <filesystem>

#include "grpo/core/error.h"
#include "grpo/model/gguf_import.h"
#include "grpo/model/hf_checkpoint.h"
#include "grpo/reward/reward.h"
#include "grpo/reward/task_rewards.h"

namespace fs = std::filesystem;

namespace grpo::train {
namespace {

// model.path set: the architecture comes from its config.json; sizes the user also wrote must
// agree with it (so a resolved config.yaml, which lists every key, loads again).
// A .gguf file is converted once into a directory of the cache (model/gguf_import.h).
void read_model_dir(Config& c, const core::ConfigSource& src) {
  std::string dir = c.model.path;
  try {
    dir = model::resolve_model_path(dir);
  } catch (const Error& e) {
    core::config_fail(src, "model.path", e.what());
  }
  const auto cfg_json = fs::path(dir) / "config.json";
  if (!fs::is_directory(dir) || !fs::exists(cfg_json))
    core::config_fail(src, "model.path", fmt::format("'{}' is not a Hugging Face model directory "
                                                     "(expected {})", dir, cfg_json.string()));
  model::ModelConfig hf;
  try {
    hf = model::read_hf_config(cfg_json.string());
  } catch (const Error& e) {
    core::config_fail(src, "model.path", e.what());
  }
  hf.path = dir;
  hf.initializer_range = c.model.initializer_range;
  auto theirs = core::flatten_config([&](core::ConfigVisitor& v) { hf.visit(v); });
  for (auto& [key, value] : core::flatten_config([&](core::ConfigVisitor& v) { c.model.visit(v); })) {
    const std::string dotted = "model." + key;
    if (key == "path" || src.where(dotted) == "default" || value == theirs[key]) continue;  // path: a .gguf resolved
    core::config_fail(src, dotted, fmt::format("{} but {} says {} (leave it out to use the "
                                               "directory's value)", value, cfg_json.string(),
                                               theirs[key]));
  }
  c.model = hf;
}

void check_tokenizer_path(const Config& c, const core::ConfigSource& src) {
  if (!c.tokenizer.path.empty() && !fs::exists(fs::path(c.tokenizer.path) / "tokenizer.json") &&
      !(fs::is_regular_file(c.tokenizer.path)))
    core::config_fail(src, "tokenizer.path", fmt::format("no tokenizer.json in '{}'", c.tokenizer.path));
  if (c.tokenizer.path.empty() && !c.model.path.empty() &&
      !fs::exists(fs::path(c.model.path) / "tokenizer.json"))
    core::config_fail(src, "tokenizer.path", fmt::format("empty, and model.path '{}' has no "
                      "tokenizer.json: set tokenizer.path", c.model.path));
}

}  // namespace

bool config_change_is_safe(const std::string& key) {
  for (const char* prefix : {"eval.", "metrics.", "checkpoint.", "parallel."})
    if (key.rfind(prefix, 0) == 0) return true;
  return key.rfind("run.", 0) == 0 ? key != "run.seed"
                                   : key == "grpo.rollout_steps" || key == "grpo.micro_batch_tokens" || key == "grpo.logprob_keep_bytes" ||
                                         key == "reward.workers" || key == "optim.max_bad_steps" ||
                                         key == "reward.max_failed_steps" || key == "rollout.max_running" ||
                                         key == "rollout.prefill_chunk_tokens" || key == "rollout.kv_block_size" ||
                                         key == "rollout.kv_cache_bytes" || key == "rollout.prefix_sharing";
}

Config load_config_text(const std::string& yaml, const std::string& name,
                        const std::vector<std::string>& overrides, bool to_run) {
  Config c;
  core::ConfigSource src;
  core::load_config(yaml, name, overrides, [&](core::ConfigVisitor& v) { c.visit(v); }, &src);
  if (to_run && !c.model.path.empty()) read_model_dir(c, src);
  validate(c, src, to_run);
  if (to_run) {
    check_tokenizer_path(c, src);
    if (!c.run.init_from.empty() && !fs::is_directory(c.run.init_from))
      core::config_fail(src, "run.init_from", fmt::format("no such directory '{}'", c.run.init_from));
    for (const auto& [key, path] : {std::pair<const char*, const std::string&>{"data.train", c.data.train},
                                    {"data.eval", c.data.eval}, {"sft.data", c.sft.data}})
      if (!path.empty() && !fs::is_regular_file(path))
        core::config_fail(src, key, fmt::format("no such file '{}'", path));
  }
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

void validate(const Config& c, const core::ConfigSource& src, bool to_run) {
  c.model.validate(src);
  auto known = reward::RewardRegistry::names();
  for (auto& [name, w] : c.reward.weights)
    if (name == "plugin") {
      if (c.reward.plugin.empty())
        core::config_fail(src, "reward.weights.plugin", "the plugin reward needs reward.plugin (a command)");
    } else if (to_run && std::find(known.begin(), known.end(), name) == known.end())
      core::config_fail(src, "reward.weights." + name,
                        fmt::format("unknown reward '{}'; registered: {}", name, fmt::join(known, ", ")));
  if (c.reward.weights.empty())
    core::config_fail(src, "reward.weights", "at least one reward function is needed");
  if (!c.env.name.empty()) {
    const auto envs = env::environment_names();
    if (to_run && std::find(envs.begin(), envs.end(), c.env.name) == envs.end())
      core::config_fail(src, "env.name", fmt::format("unknown environment '{}'; registered: {}", c.env.name,
                                                     fmt::join(envs, ", ")));
    if (c.env.turn_end.empty()) core::config_fail(src, "env.turn_end", "the text that ends a turn must not be empty");
    if (!c.env.observation_role.empty() && c.prompt.chat == "none")
      core::config_fail(src, "env.observation_role", fmt::format("'{}' frames observations with the chat "
                        "template's turn markers, but prompt.chat is none", c.env.observation_role));
    if (c.env.name == "external" && c.env.command.empty())
      core::config_fail(src, "env.command", "env.name external needs the environment process's command");
  }
  if (c.reward.params.language != "auto") {
    try {
      reward::parse_target_script(c.reward.params.language);
    } catch (const Error& e) {
      core::config_fail(src, "reward.language", e.what());
    }
  }
  if (c.reward.weights.count("overlong") && c.reward.params.overlong_buffer >= c.rollout.max_new_tokens)
    core::config_fail(src, "reward.overlong_buffer",
                      fmt::format("{} must be below rollout.max_new_tokens ({})", c.reward.params.overlong_buffer,
                                  c.rollout.max_new_tokens));
  for (auto& [k, v] : c.grpo.length_schedule) {
    const std::string key = "grpo.length_schedule." + k;
    if (k.empty() || k.find_first_not_of("0123456789") != std::string::npos)
      core::config_fail(src, key, "expected an optimizer step (a non-negative integer) as the key");
    if (v < 1 || v != std::floor(v))
      core::config_fail(src, key, fmt::format("expected a whole number of tokens >= 1, found {}", v));
  }
  const int64_t longest = c.grpo.max_new_tokens_max(c.rollout.max_new_tokens);
  // Reading a recipe or checkpoint config without running it, with model.path set, the sizes
  // (max_position_embeddings) are those of a directory not read here: skip the length checks.
  const bool sizes_known = to_run || c.model.path.empty();
  const std::string longest_key = longest == c.rollout.max_new_tokens ? "rollout.max_new_tokens" : "grpo.length_schedule";
  text::validate_prompt_config(c.prompt, src);
  const bool builtin_tokenizer = c.tokenizer.resolved_path(c.model).empty();
  if (!c.data.train.empty()) {
    // A JSONL dataset: the built-in task's keys do not apply, and there are no demonstrations.
    // (a resolved config.yaml lists every key, at its default)
    data::ArithmeticConfig mine(c.task), defaults;
    for (const auto& ch : core::diff_config(core::flatten_config([&](core::ConfigVisitor& v) { defaults.visit(v); }),
                                            core::flatten_config([&](core::ConfigVisitor& v) { mine.visit(v); })))
      core::config_fail(src, "task." + ch.key, "applies to the built-in task only, but data.train is set");
    if (c.pretrain.steps > 0)
      core::config_fail(src, "pretrain.steps", "the pretrain stage trains on the built-in task's "
                        "demonstrations; with data.train set it must be 0");
    if (builtin_tokenizer)
      core::config_fail(src, "data.train", "a JSONL dataset needs a real tokenizer: set "
                        "tokenizer.path or model.path");
  } else {
    if (!c.data.eval.empty())
      core::config_fail(src, "data.eval", "set without data.train (the built-in task has its own "
                        "held-out set)");
    // keys of the other built-in task, changed from their defaults
    const data::ArithmeticConfig d;
    const bool mul = c.task.multiplication();
    const std::vector<std::pair<const char*, bool>> other =
        mul ? std::vector<std::pair<const char*, bool>>{{"noise", c.task.noise != d.noise},
                                                        {"format_rate", c.task.format_rate != d.format_rate},
                                                        {"scratchpad", c.task.scratchpad != d.scratchpad}}
            : std::vector<std::pair<const char*, bool>>{{"tool_rate", c.task.tool_rate != d.tool_rate}};
    for (const auto& [key, changed] : other)
      if (changed)
        core::config_fail(src, std::string("task.") + key,
                          fmt::format("applies to task.name {} only, but the task is {}", mul ? "addition" : "multiplication",
                                      c.task.name));
    if (mul && c.task.tool_rate > 0 && c.pretrain.steps > 0 && c.env.name != "code")
      core::config_fail(src, "env.name", fmt::format("task multiplication's demonstrations call the code tool "
                        "(task.tool_rate {}): expected env.name code, found '{}'", c.task.tool_rate, c.env.name));
  }
  if (builtin_tokenizer) {
    if (c.prompt.chat != "none" || c.prompt.add_bos)
      core::config_fail(src, c.prompt.add_bos ? "prompt.add_bos" : "prompt.chat",
                        "needs a real tokenizer (set tokenizer.path or model.path)");
    if (!c.tokenizer.eos_token.empty())
      core::config_fail(src, "tokenizer.eos_token", "the built-in character tokenizer has a fixed EOS");
    // The built-in task's prompt "a+b=" with the template, plus the response, must fit.
    int64_t prompt_chars = 0;
    try {
      prompt_chars = static_cast<int64_t>(text::format_prompt(c.prompt, std::string(2 * c.task.digits + 2, '0')).size());
    } catch (const Error& e) {
      core::config_fail(src, "prompt.template", e.what());
    }
    if (sizes_known && prompt_chars + longest > c.model.max_position_embeddings)
      core::config_fail(src, longest_key,
                        fmt::format("prompt (~{} tokens) + max_new_tokens ({}) exceeds "
                                    "model.max_position_embeddings ({})",
                                    prompt_chars, longest, c.model.max_position_embeddings));
  }
  if (sizes_known && longest >= c.model.max_position_embeddings)
    core::config_fail(src, longest_key,
                      fmt::format("max_new_tokens {} leaves no room for a prompt within model.max_position_embeddings ({})",
                                  longest, c.model.max_position_embeddings));
  if (c.sft.steps > 0 && c.sft.data.empty())
    core::config_fail(src, "sft.data", "sft.steps > 0 needs a JSONL file of demonstrations");
  const auto& op = c.grpo.off_policy;
  if (op.mode != algo::OffPolicyCorrection::kNone) {
    if (!c.grpo.recompute_old_logprobs)
      core::config_fail(src, "grpo.off_policy_correction",
                        "needs grpo.recompute_old_logprobs: true (otherwise the old log-probs are the sampler's "
                        "and every importance ratio is 1)");
    if (op.lower() >= op.upper())
      core::config_fail(src, "grpo.is_min", fmt::format("{} must be below the upper bound {} (grpo.is_max)",
                                                        op.lower(), op.upper()));
  }
  if (c.grpo.loss.objective == algo::PolicyObjective::kVespo && op.sequence &&
      op.mode != algo::OffPolicyCorrection::kNone)
    core::config_fail(src, "grpo.is_level", "loss vespo takes token-level IS weights only (as TRL)");
  if (c.grpo.mini_batches > c.grpo.prompts_per_step * c.grpo.group_size)
    core::config_fail(src, "grpo.mini_batches",
                      fmt::format("{} mini-batches but only {} samples per rollout step",
                                  c.grpo.mini_batches, c.grpo.prompts_per_step * c.grpo.group_size));
}

std::string to_yaml(Config c, bool with_docs) {
  return core::dump_config([&](core::ConfigVisitor& v) { c.visit(v); }, with_docs);
}

}  // namespace grpo::train
