// The training loop: pretrain stage (supervised, on imperfect demonstrations), then GRPO.
//
// One GRPO rollout step: sample G responses for each of `prompts_per_step` questions -> score
// them with the configured rewards -> group-relative advantages -> recompute old (and reference)
// log-probs -> `inner_epochs` x `mini_batches` optimizer steps of the clipped policy loss, each
// accumulated over micro-batches of at most `micro_batch_tokens` tokens.
//
// Outputs in the run directory (train/run_dir.h): config.yaml (resolved), metrics.jsonl (one
// object per step), eval.jsonl (one object per evaluation), checkpoints/. The trainer composes
// components that each live in their own file (docs/architecture.md, "Where things are").
#pragma once

#include <functional>
#include <memory>
#include <string>

#include "grpo/text/tokenizer.h"
#include "grpo/train/checkpoint.h"
#include "grpo/train/config.h"

namespace grpo::model {
class Transformer;
}


namespace grpo::train {

struct EvalResult {
  double accuracy_greedy = 0;
  double accuracy_sampled = -1;  // -1 when not measured
  double format_greedy = 0;
  int64_t num_prompts = 0;
  // multi-turn (env.name set), greedy: share of episodes that called a tool, and the accuracy of
  // those that did and of those that did not (-1 when there are none)
  double tool_use_greedy = -1, accuracy_greedy_tool = -1, accuracy_greedy_no_tool = -1;
};

class Trainer {
 public:
  explicit Trainer(Config config);
  ~Trainer();

  /// Runs (or resumes, per run.resume) until the pretrain stage and all GRPO rollout steps are done.
  /// `stop_early`, when given, is asked after every pretrain-stage and GRPO step; returning true
  /// saves a checkpoint and returns (Ctrl-C, a job's time limit; the next run resumes).
  void run(const std::function<bool(const TrainState&)>& stop_early = {});
  /// Held-out evaluation of the current policy.
  EvalResult evaluate();

  const TrainState& state() const;
  model::Transformer& policy();
  const Config& config() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace grpo::train
