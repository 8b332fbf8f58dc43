// Command-line flags shared by the tools that sample from a policy (grpo_generate, grpo_eval,
// grpo_sample): the model and its tokenizer, the prompt format, the sampling settings, a JSONL
// question file. Header-only; the tools are small programs around grpo/train/sampling.h.
#pragma once

#include <optional>
#include <string>
#include <type_traits>

#include <ATen/Parallel.h>

#include "grpo/core/config.h"
#include "grpo/core/error.h"
#include "grpo/data/jsonl_dataset.h"
#include "grpo/train/sampling.h"

namespace grpo::tools {

/// argv walker: the flag at i, and its value(s) as strings or whole-string numbers.
struct Args {
  int argc;
  char** argv;
  int i = 1;
  std::string flag() const { return argv[i]; }
  std::string next() {
    GRPO_CHECK(i + 1 < argc, "{} needs a value", argv[i]);
    return argv[++i];
  }
  template <typename T>
  T number() {
    const std::string a = argv[i], v = next();
    try {
      size_t used = 0;
      T x;
      if constexpr (std::is_integral_v<T>) x = T(std::stoll(v, &used));
      else x = T(std::stod(v, &used));
      if (used == v.size()) return x;
    } catch (const std::exception&) {
    }
    fail("{}: expected {}, found '{}'", a, std::is_integral_v<T> ? "an integer" : "a number", v);
  }
};

struct PolicyFlags {
  train::PolicySource source;
  core::ConfigSource prompt_src;  // which flag set each prompt option, for error messages
  std::optional<double> temperature, top_p;
  std::optional<int64_t> top_k, max_new_tokens;
  data::JsonlDatasetConfig questions;  // --jsonl FILE and its field flags
  int64_t limit = -1;
  int64_t seed = 1, batch_size = 16, threads = 0;

  static const char* usage() {
    return "  --model DIR            grpo checkpoint or Hugging Face model directory\n"
           "  --tokenizer DIR        tokenizer directory (default: the model's, or the checkpoint run's)\n"
           "  --eos-token TEXT       token that ends a completion (default: tokenizer_config.json's)\n"
           "  --template T           r1_zero | plain | a string containing {prompt}\n"
           "  --chat F               none | deepseek_v3 | qwen3     --system TEXT\n"
           "  --thinking on|off      qwen3 chat only                --add-bos\n"
           "                         (default prompt format: the checkpoint run's; HF directory: plain)\n"
           "  --temperature T        0 = greedy      --top-p P      --top-k K\n"
           "  --max-new-tokens N     (defaults: the checkpoint run's rollout settings, else greedy, 256)\n"
           "  --jsonl FILE           questions, one JSON object per line\n"
           "  --prompt-field KEY     field of the question (default: question; dots reach nested keys)\n"
           "  --answer-field KEY     field of the ground truth (default: answer)\n"
           "  --answer-after TEXT    the answer is the text after its last occurrence (GSM8K: ####)\n"
           "  --limit N              at most N questions\n"
           "  --seed S               sampling seed (default 1)\n"
           "  --batch-size N         questions generated at once (default 16)\n"
           "  --threads N            CPU threads (default: all cores)\n";
  }

  /// Consumes the flag at args.i if it is one of these; false otherwise.
  bool take(Args& a) {
    const std::string f = a.flag();
    auto set_prompt = [&](const char* key, auto fn) {
      if (!source.prompt) source.prompt.emplace();
      fn(*source.prompt);
      prompt_src.record(std::string("prompt.") + key, f);
    };
    if (f == "--model") source.model_dir = a.next();
    else if (f == "--tokenizer") source.tokenizer_dir = a.next();
    else if (f == "--eos-token") source.eos_token = a.next();
    else if (f == "--template") { auto v = a.next(); set_prompt("template", [&](auto& p) { p.template_text = v; }); }
    else if (f == "--chat") { auto v = a.next(); set_prompt("chat", [&](auto& p) { p.chat = v; }); }
    else if (f == "--system") { auto v = a.next(); set_prompt("system", [&](auto& p) { p.system = v; }); }
    else if (f == "--thinking") { auto v = a.next(); set_prompt("thinking", [&](auto& p) { p.thinking = v; }); }
    else if (f == "--add-bos") set_prompt("add_bos", [&](auto& p) { p.add_bos = true; });
    else if (f == "--temperature") temperature = a.number<double>();
    else if (f == "--top-p") top_p = a.number<double>();
    else if (f == "--top-k") top_k = a.number<int64_t>();
    else if (f == "--max-new-tokens") max_new_tokens = a.number<int64_t>();
    else if (f == "--jsonl") questions.path = a.next();
    else if (f == "--prompt-field") questions.prompt_field = a.next();
    else if (f == "--answer-field") questions.answer_field = a.next();
    else if (f == "--answer-after") questions.answer_after = a.next();
    else if (f == "--limit") limit = a.number<int64_t>();
    else if (f == "--seed") seed = a.number<int64_t>();
    else if (f == "--batch-size") batch_size = a.number<int64_t>();
    else if (f == "--threads") threads = a.number<int64_t>();
    else return false;
    return true;
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
      GRPO_CHECK(pf.chat == "none" || pf.chat == "deepseek_v3" || pf.chat == "qwen3",
                 "--chat: expected none, deepseek_v3 or qwen3, found '{}'", pf.chat);
      GRPO_CHECK(pf.thinking == "default" || pf.thinking == "on" || pf.thinking == "off",
                 "--thinking: expected on or off, found '{}'", pf.thinking);
      text::validate_prompt_config(pf, prompt_src);
    }
    if (threads > 0) at::set_num_threads(static_cast<int>(threads));
  }
  /// The sampling flags applied over `defaults`.
  rollout::SamplingParams sampling(rollout::SamplingParams defaults) const {
    if (temperature) defaults.temperature = *temperature;
    if (top_p) defaults.top_p = *top_p;
    if (top_k) defaults.top_k = *top_k;
    if (max_new_tokens) defaults.max_new_tokens = *max_new_tokens;
    return defaults;
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
