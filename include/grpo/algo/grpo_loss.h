// GRPO-family math, pure tensor functions with no I/O: group-relative advantages (GRPO, Dr. GRPO,
// RLOO, batch-std), KL estimators, the clipped policy loss (token- or sequence-level ratio, clip-
// higher, dual clip, TRL's two-sided cap) and its token aggregation. Conventions follow DESIGN.md
// "Loss reference"; each option names the TRL/verl setting it matches. The loss is computed in the
// dtype of the log-probs (fp32 in training, fp64 in the tests against TRL).
#pragma once

#include <cstdint>
#include <string>

#include <ATen/core/Tensor.h>

namespace grpo::algo {

/// How rewards become advantages (TRL `scale_rewards`, verl `adv_estimator`).
///  group     (GRPO)       A = (r - mean_group) / (std_group + eps)        TRL scale_rewards="group"
///  no_std    (Dr. GRPO)   A = r - mean_group                               TRL scale_rewards="none"
///  batch_std              A = (r - mean_group) / (std_batch + eps)        TRL scale_rewards="batch"
///  rloo      (RLOO)       A = r - mean of the other G-1 rewards = G/(G-1) (r - mean_group)
enum class AdvantageMode { kGroup, kNoStd, kBatchStd, kRloo };
AdvantageMode parse_advantage_mode(const std::string& name);

struct AdvantageOptions {
  AdvantageMode mode = AdvantageMode::kGroup;
  double eps = 1e-4;          // TRL: 1e-4
  bool unbiased_std = true;   // sample std with Bessel's correction (TRL, verl)
};

struct Advantages {
  at::Tensor values;            // [num_groups * group_size] fp32
  int64_t zero_std_groups = 0;  // groups whose rewards were all equal (advantage 0)
};

/// rewards [num_groups * group_size], group-major (row = group * group_size + member).
/// A group whose rewards are all equal gets exactly zero advantage (never NaN), also for a group
/// of one, in every mode.
Advantages group_advantages(const at::Tensor& rewards, int64_t group_size,
                            const AdvantageOptions& options = {});

/// Per-token estimators of KL(policy || ref) from log-probs (Schulman, "Approximating KL"):
///  k1 = logp - ref            (unbiased, can be negative)
///  k2 = (logp - ref)^2 / 2    (low variance, biased)
///  k3 = exp(ref - logp) - (ref - logp) - 1   (unbiased, >= 0; GRPO paper, TRL)
enum class KlEstimator { kK1, kK2, kK3 };
KlEstimator parse_kl_estimator(const std::string& name);
at::Tensor kl_estimate(const at::Tensor& logp, const at::Tensor& ref_logp, KlEstimator estimator);
inline at::Tensor kl_k3(const at::Tensor& logp, const at::Tensor& ref_logp) {
  return kl_estimate(logp, ref_logp, KlEstimator::kK3);
}

/// KL as a reward penalty instead of a loss term (verl use_kl_in_reward): each sequence's reward
/// minus coef * sum over its response tokens of the per-token estimate, from the sampling
/// policy's log-probs (no gradient). logp, ref_logp, mask [rows, tokens]; returns [rows] fp64.
at::Tensor kl_reward_penalty(const at::Tensor& logp, const at::Tensor& ref_logp, const at::Tensor& mask,
                             double coef, KlEstimator estimator);

/// How per-token losses become one number.
///  "seq-mean-token-mean"     (GRPO / TRL "grpo"): mean over sequences of each one's token mean
///  "token-mean"              (DAPO / TRL "dapo", "bnpo" in one process): sum over tokens / tokens
///  "seq-mean-token-sum-norm" (Dr. GRPO / TRL "dr_grpo"): sum over tokens / (rows * max_tokens)
enum class LossAggregation { kSeqMeanTokenMean, kTokenMean, kSeqMeanTokenSumNorm };
LossAggregation parse_loss_aggregation(const std::string& name);

/// Per-token weights w such that loss = sum(w * l) for a whole mini-batch. Computed once for the
/// mini-batch and sliced per micro-batch, so gradient accumulation gives exactly the mini-batch
/// loss. mask [rows, tokens] (1 = response token); max_tokens: the response-length limit
/// (Dr. GRPO's constant normaliser; TRL max_completion_length), only for kSeqMeanTokenSumNorm.
at::Tensor aggregation_weights(const at::Tensor& mask, LossAggregation mode, int64_t max_tokens = 0);
/// The same for some rows of a mini-batch spread over data-parallel ranks: total_rows and
/// total_tokens are the whole mini-batch's, so the ranks' weighted sums add up to its loss.
at::Tensor aggregation_weights(const at::Tensor& mask, LossAggregation mode, int64_t max_tokens, double total_rows,
                               double total_tokens);

struct PolicyLossOptions {
  double clip_eps_low = 0.2;    // ratio clipped to [1 - low, 1 + high]
  double clip_eps_high = 0.2;   // DAPO "clip-higher": high > low
  bool sequence_ratio = false;  // GSPO: one ratio per sequence, exp(token mean of log-ratios)
                                // (TRL importance_sampling_level="sequence")
  double dual_clip = 0;         // c > 1: for A < 0 the loss is at most -c A (Ye et al. 2020;
                                // verl clip_ratio_c = 3); 0 = off
  double ratio_cap = 0;         // > 0: the unclipped ratio is capped at this (TRL `delta`,
                                // two-sided clipping); 0 = off
  double log_ratio_clamp = 0;   // > 0: log-ratio clamped to [-x, x] before exp (overflow guard;
                                // verl clamps at 20); 0 = off
  double kl_coef = 0.0;         // beta of the KL term in the loss; 0 = none
  KlEstimator kl_estimator = KlEstimator::kK3;
  double kl_clamp = 0;          // > 0: per-token KL clamped to [-x, x] (verl: 10); 0 = off
  double entropy_coef = 0;      // loss -= coef * token-mean entropy (TRL entropy_coef); 0 = off
};

/// Inputs of one micro-batch, all [rows, tokens] unless noted.
struct PolicyLossInputs {
  at::Tensor logp;                // current policy, with gradient
  at::Tensor old_logp;            // behaviour policy (detached)
  at::Tensor ref_logp;            // reference policy; only with kl_coef != 0
  at::Tensor advantages;          // [rows]
  at::Tensor mask;                // 1 = response token
  at::Tensor weights;             // aggregation_weights of the mini-batch, this micro-batch's rows
  at::Tensor entropy;             // only with entropy_coef != 0: per-token entropy, with gradient
  at::Tensor entropy_weights;     // token-mean weights of the mini-batch (like TRL's bonus)
};

struct PolicyLossOutput {
  at::Tensor loss;        // scalar: sum(weights * per_token) - entropy_coef * sum(entropy_weights * H)
  at::Tensor per_token;   // [rows, tokens] clipped surrogate (+ beta * KL)
  // statistics over masked tokens (detached doubles)
  double clip_low_fraction = 0;   // ratio < 1 - low with A < 0 (clipped from below)
  double clip_high_fraction = 0;  // ratio > 1 + high with A > 0 (clipped from above)
  double dual_clip_fraction = 0;  // A < 0 tokens whose loss the dual clip bounded
  double kl_mean = 0;
  double ratio_mean = 0, ratio_min = 0, ratio_max = 0;
  int64_t tokens = 0;
};

/// ratio r = exp(logp - old) per token, or per sequence (GSPO);
///   l = -min(r A, clip(r, 1-low, 1+high) A)  [dual clip: for A < 0, min(l, -c A)]  + beta KL
PolicyLossOutput policy_loss(const PolicyLossInputs& in, const PolicyLossOptions& options);

}  // namespace grpo::algo
