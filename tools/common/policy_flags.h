// What the flags shared by the tools that sample from a policy (grpo_generate, grpo_eval,
// grpo_sample) set: the model and its tokenizer, the prompt format, the sampling settings, a JSONL
// question file; and the checks and policy loading those tools share. The flags themselves are
// declared in tools/common/tool_flags.h. Header-only; the tools are small programs around
// grpo/train/completions.h.
#pragma once

#include <algorithm>
#include <optional>
#include <string>

#include <ATen/Parallel.h>

#include "grpo/core/config.h"
#include "grpo/core/device.h"
#include "grpo/core/error.h"
#include "grpo/data/jsonl_dataset.h"
#include "grpo/model/transformer.h"
#include "grpo/train/completions.h"
#include "grpo/train/memory_plan.h"

namespace grpo::tools {

struct PolicyFlags {
  train::PolicySource source;
  core::ConfigSource prompt_src;  // which flag set each prompt option, for error messages
  std::optional<double> temperature, top_p;
  std::optional<int64_t> top_k, max_new_tokens;
  data::JsonlDatasetConfig questions;  // --jsonl FILE and its field flags
  int64_t limit = -1;
  int64_t seed = 1, batch_size = 16, threads = 0;

  /// The prompt format the flags build (created at the first prompt flag: then it replaces the
  /// checkpoint run's as a whole); records that `flag` set `key`, for validation messages.
  text::PromptConfig& prompt(const char* key, const char* flag) {
    if (!source.prompt) source.prompt.emplace();
    prompt_src.record(std::string("prompt.") + key, flag);
    return *source.prompt;
  }

  /// Checks the values (and sets the thread count).
  void check() {
    GRPO_CHECK(!source.model_dir.empty(), "--model is required (see --help)");
    GRPO_CHECK(batch_size >= 1, "--batch-size must be at least 1, found {}", batch_size);
    GRPO_CHECK(!temperature || *temperature >= 0, "--temperature must be >= 0, found {}", *temperature);
    GRPO_CHECK(!top_p || (*top_p > 0 && *top_p <= 1), "--top-p must be in (0, 1], found {}", *top_p);
    GRPO_CHECK(!top_k || *top_k >= 0, "--top-k must be >= 0, found {}", *top_k);
    GRPO_CHECK(!max_new_tokens || *max_new_tokens >= 1, "--max-new-tokens must be >= 1, found {}", *max_new_tokens);
    if (source.prompt) {
      const auto& pf = *source.prompt;
      GRPO_CHECK(pf.chat == "none" || pf.chat == "model" || pf.chat == "deepseek_v3" || pf.chat == "qwen3",
                 "--chat: expected none, model, deepseek_v3 or qwen3, found '{}'", pf.chat);
      GRPO_CHECK(pf.thinking == "default" || pf.thinking == "on" || pf.thinking == "off",
                 "--thinking: expected on or off, found '{}'", pf.thinking);
      text::validate_prompt_config(pf, prompt_src);
    }
    grpo::setup_host(threads);
  }
  /// The sampling flags applied over `defaults`.
  rollout::SamplingParams sampling(rollout::SamplingParams defaults) const {
    if (temperature) defaults.temperature = *temperature;
    if (top_p) defaults.top_p = *top_p;
    if (top_k) defaults.top_k = *top_k;
    if (max_new_tokens) defaults.max_new_tokens = *max_new_tokens;
    return defaults;
  }
  /// Refuses, before generating, a batch whose KV cache cannot fit in this machine's memory:
  /// --batch-size (at most `prompts`) prompts x `samples` each, every sequence up to its prompt (`prompt_tokens`) plus
  /// `max_new_tokens` tokens (at most the model's max_position_embeddings), fp32.
  void check_memory(const model::Transformer& model, int64_t prompts, int64_t samples, int64_t max_new_tokens,
                    int64_t prompt_tokens = 256) const {
    const auto& m = model.config();
    const int64_t at_once = std::max<int64_t>(1, std::min(batch_size, prompts));
    const double seqs = double(at_once) * double(samples);
    const double len = double(std::min(m.max_position_embeddings, prompt_tokens + max_new_tokens));
    const double weights = double(model.num_parameters()) * 4;
    const double kv = seqs * len * train::kv_cache_bytes_per_token(m, 1, 4);
    const double gib = double(1 << 30), have = grpo::host_memory_bytes();
    GRPO_CHECK(weights + kv <= have,
               "generating {} sequences at once ({} prompts x {} samples) of up to {} tokens needs about {:.1f} GiB "
               "of KV cache (and {:.1f} GiB of weights), more than this machine's {:.1f} GiB: lower --batch-size, "
               "the number of samples or --max-new-tokens", int64_t(seqs), at_once, samples, int64_t(len), kv / gib,
               weights / gib, have / gib);
  }
  /// check(), then the policy with the sampling flags applied to its defaults.
  train::LoadedPolicy open() {
    check();
    auto p = train::open_policy(source);
    p.sampling = sampling(p.sampling);
    return p;
  }
};

}  // namespace grpo::tools
