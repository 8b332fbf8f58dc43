// Opening a policy, in one place: a grpo checkpoint directory (manifest.json; the architecture
// comes from its config), a Hugging Face model directory (config.json + safetensors), or, for a
// training run, a fresh model of the run's config. Each is built once, on its device, in its
// parallel layout. Also the tokenizer that goes with it.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include <c10/core/Device.h>

#include "grpo/rollout/sampler.h"
#include "grpo/text/prompt.h"
#include "grpo/text/tokenizer.h"
#include "grpo/train/config.h"

namespace grpo::model {
class Transformer;
struct Parallel;
}  // namespace grpo::model

namespace grpo::train {

/// The tokenizer of a run: the Hugging Face tokenizer at `path` (EOS overridden by `eos_token`
/// when non-empty), or, for an empty path, the character tokenizer of the built-in task `task`.
std::unique_ptr<text::Tokenizer> make_tokenizer(const std::string& path, const std::string& eos_token = "",
                                                const data::ArithmeticConfig& task = {});

/// The model of a grpo checkpoint or a Hugging Face model directory (on the CPU, one process).
/// `config`, when given, receives the checkpoint's training config (for an HF directory: the
/// defaults with model.path = dir and model = its config.json).
std::unique_ptr<model::Transformer> load_policy(const std::string& dir, Config* config = nullptr);

/// The policy a training run starts from, built once on `device` in the layout `parallel`: the
/// Hugging Face model at model.path when it is set and `from_hf`, else a fresh model of
/// cfg.model (parameters drawn after at::manual_seed(run.seed)); then set up for training (MoE
/// balance loss, recomputation, sequence parallelism; ids of the padded vocabulary, at or above
/// `tokenizer_vocab`, are never sampled). A run that resumes passes from_hf = false: its
/// checkpoint replaces every parameter.
std::unique_ptr<model::Transformer> build_policy(const Config& cfg, const model::Parallel& parallel,
                                                 const c10::Device& device, int64_t tokenizer_vocab, bool from_hf);

struct PolicySource {
  std::string model_dir;      // grpo checkpoint (manifest.json) or Hugging Face directory
  std::string tokenizer_dir;  // empty: the model's, or the checkpoint run's (built-in: character)
  std::string eos_token;      // empty: tokenizer_config.json's, or the checkpoint run's
  std::optional<text::PromptConfig> prompt;  // empty: the checkpoint run's (HF directory: plain)
  bool with_tokenizer = true;  // false: the model only (prompts given as token ids)
};

struct LoadedPolicy {
  std::unique_ptr<model::Transformer> model;
  std::unique_ptr<text::Tokenizer> tokenizer;
  text::PromptConfig prompt;
  rollout::SamplingParams sampling;  // the run's rollout settings (HF directory: greedy, 256 tokens)
  Config run;                        // the checkpoint's training config (HF directory: defaults)
  bool from_checkpoint = false;

  LoadedPolicy();
  LoadedPolicy(LoadedPolicy&&) noexcept;
  LoadedPolicy& operator=(LoadedPolicy&&) noexcept;
  ~LoadedPolicy();
};

/// Opens `source`: the model (train(false)), its tokenizer and prompt format, the sampling
/// settings of the run that made it. Errors name the directory and what is missing (e.g. a
/// tokenizer.json).
LoadedPolicy open_policy(const PolicySource& source);

}  // namespace grpo::train
