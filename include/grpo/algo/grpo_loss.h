// GRPO math, pure tensor functions with no I/O: group-relative advantages, the k3 KL estimator,
// the clipped policy loss and its token aggregation. Conventions follow DESIGN.md "Loss
// reference" (TRL/verl names in comments).
#pragma once

#include <cstdint>
#include <string>

#include <ATen/core/Tensor.h>

namespace grpo::algo {

struct AdvantageOptions {
  double eps = 1e-4;          // A = (r - mean) / (std + eps)   (TRL: 1e-4)
  bool unbiased_std = true;   // sample std with Bessel's correction (TRL, verl)
  bool scale_by_std = true;   // false: Dr. GRPO, A = r - mean
};

struct Advantages {
  at::Tensor values;            // [num_groups * group_size] fp32
  int64_t zero_std_groups = 0;  // groups whose rewards were all equal (advantage 0)
};

/// rewards [num_groups * group_size], group-major (row = group * group_size + member).
/// A group whose rewards are all equal gets exactly zero advantage (never NaN), also for a group
/// of one.
Advantages group_advantages(const at::Tensor& rewards, int64_t group_size,
                            const AdvantageOptions& options = {});

/// k3 estimator of KL(policy || ref) per token: exp(ref - logp) - (ref - logp) - 1 (>= 0).
at::Tensor kl_k3(const at::Tensor& logp, const at::Tensor& ref_logp);

/// How per-token losses become one number.
///  "seq-mean-token-mean" (GRPO / TRL "grpo"): mean over sequences of each one's token mean
///  "token-mean"          (DAPO / TRL "dapo"): sum over all tokens / number of tokens
enum class LossAggregation { kSeqMeanTokenMean, kTokenMean };
LossAggregation parse_loss_aggregation(const std::string& name);

/// Per-token weights w such that loss = sum(w * l) for a whole mini-batch. Computed once for the
/// mini-batch and sliced per micro-batch, so gradient accumulation gives exactly the mini-batch
/// loss. mask [rows, tokens] (1 = response token).
at::Tensor aggregation_weights(const at::Tensor& mask, LossAggregation mode);

struct PolicyLossOptions {
  double clip_eps_low = 0.2;   // ratio clipped to [1 - low, 1 + high]
  double clip_eps_high = 0.2;  // DAPO "clip-higher": high > low
  double kl_coef = 0.0;        // beta; 0 = no KL term (no reference model needed)
};

struct PolicyLossOutput {
  at::Tensor loss;        // scalar: sum(weights * per_token)
  at::Tensor per_token;   // [rows, tokens] clipped surrogate (+ beta * KL)
  // statistics over masked tokens (detached doubles)
  double clip_low_fraction = 0;   // ratio < 1 - low with A < 0 (clipped from below)
  double clip_high_fraction = 0;  // ratio > 1 + high with A > 0 (clipped from above)
  double kl_mean = 0;
  double ratio_mean = 0, ratio_max = 0;
  int64_t tokens = 0;
};

/// logp, old_logp, ref_logp (undefined when kl_coef == 0) [rows, tokens]; advantages [rows];
/// mask, weights [rows, tokens].
///   ratio = exp(logp - old);  l = -min(ratio A, clip(ratio, 1-low, 1+high) A) + beta k3
PolicyLossOutput policy_loss(const at::Tensor& logp, const at::Tensor& old_logp,
                             const at::Tensor& ref_logp, const at::Tensor& advantages,
                             const at::Tensor& mask, const at::Tensor& weights,
                             const PolicyLossOptions& options);

}  // namespace grpo::algo
