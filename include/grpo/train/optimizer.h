// The optimizer of a training run, kept out of the loop (as Megatron-LM's optimizer/ and
// torchtitan's components/optimizer.py): AdamW with decoupled weight decay on matrices only,
// mixed precision (bf16 trainable parameters, fp32 master copies that AdamW updates), ZeRO-1
// (each parameter's AdamW state on one rank of its data-parallel group, which updates it and
// broadcasts it), global gradient-norm clipping, the learning-rate schedule, and the whole-tensor
// state a checkpoint holds (any layout, with or without ZeRO-1, loads it).
//
// One Optimizer lives as long as its policy. Each training stage calls reset() with its AdamW
// settings: the AdamW state starts afresh, the fp32 masters carry over.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <ATen/core/Tensor.h>

#include "grpo/io/safetensors.h"
#include "grpo/train/config.h"

namespace grpo::model {
class Transformer;
}
namespace grpo::dist {
class Comm;
}

namespace grpo::train {

struct AdamWSettings {
  double lr = 1e-3;
  double weight_decay = 0.0;  // matrices (dim >= 2) only
  double beta1 = 0.9, beta2 = 0.999, eps = 1e-8;
};

/// The AdamW settings of a stage ("pretrain", "sft" or "grpo") from the run's config.
AdamWSettings stage_adamw(const Config& cfg, const std::string& stage);

/// The learning rate of GRPO optimizer step `step` (0-based): linear warm-up over
/// optim.warmup_steps, then constant or cosine down to lr * min_lr_ratio at the last of
/// `total_steps` optimizer steps.
double scheduled_lr(const OptimConfig& o, int64_t total_steps, int64_t step);

class Optimizer {
 public:
  /// `dp`: the data-parallel group; `expert_dp`: the group of ranks holding the same routed
  /// experts (both one process when not distributed). bf16: mixed precision; zero1: ZeRO-1.
  Optimizer(model::Transformer& policy, dist::Comm& dp, dist::Comm& expert_dp, bool bf16, bool zero1);
  ~Optimizer();
  Optimizer(const Optimizer&) = delete;
  Optimizer& operator=(const Optimizer&) = delete;

  bool bf16() const { return bf16_; }
  /// A model in the run's precision: trainable parameters in bf16 (the router bias stays fp32).
  void to_precision(model::Transformer& m) const;
  /// The policy's precision, its masters starting from its current fp32 values (collective).
  void adopt_policy_precision();
  /// The fp32 masters start from these whole tensors at the next reset() (a checkpoint's).
  void set_master_source(io::NamedTensors whole);

  /// A fresh AdamW for a stage (ZeRO-1 owners assigned, masters made where missing).
  void reset(const AdamWSettings& s);
  void set_lr(double lr);
  /// Drops every parameter's gradient.
  void zero_grad();
  /// Measures the global gradient norm and, above max_norm (> 0; infinity: never), scales the
  /// gradients down to it (bf16: when copying them to the masters). Returns the norm.
  double clip_gradients(double max_norm);
  /// One AdamW step (then, under ZeRO-1, every owner broadcasts what it updated).
  void step();

  /// Whole parameters for a checkpoint: the fp32 masters under bf16 (collective).
  io::NamedTensors checkpoint_parameters();
  /// Whole AdamW state tensors, "<param>.exp_avg", ".exp_avg_sq", ".step" (collective).
  io::NamedTensors state_tensors();
  /// Loads state_tensors() (this rank's share under ZeRO-1); `origin` names the file in errors.
  void load(const io::NamedTensors& tensors, const std::string& origin);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
  bool bf16_;
};

}  // namespace grpo::train
