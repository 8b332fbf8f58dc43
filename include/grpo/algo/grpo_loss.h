// GRPO-family math, pure tensor functions with no I/O: group-relative advantages (GRPO, Dr. GRPO,
// RLOO, batch-std), KL estimators, the clipped policy loss (token- or sequence-level ratio, clip-
// higher, dual clip, TRL's two-sided cap) and its token aggregation. Conventions follow DESIGN.md
// "Loss reference"; each option names the TRL/verl setting it matches. The loss is computed in the
// dtype of the log-probs (fp32 in training, fp64 in the tests against TRL).
#pragma once

#include <cstdint>
#include <string>

#include <ATen/core/Tensor.h>

#include "grpo/core/config.h"

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

  /// The keys a run config sets them with (grpo.advantage, grpo.adv_eps, grpo.adv_unbiased_std).
  void visit(core::ConfigVisitor& v) {
    core::choice_field(v, "advantage", mode, "group = (r - group mean) / (group std + adv_eps) (GRPO); "
                       "no_std = r - group mean (Dr. GRPO); batch_std = (r - group mean) / (batch std + "
                       "adv_eps) (TRL scale_rewards=batch); rloo = r - mean of the group's other rewards",
                       {{"group", AdvantageMode::kGroup}, {"no_std", AdvantageMode::kNoStd},
                        {"batch_std", AdvantageMode::kBatchStd}, {"rloo", AdvantageMode::kRloo}});
    v.field("adv_eps", eps, "epsilon added to the std in group/batch_std advantages", core::positive());
    v.field("adv_unbiased_std", unbiased_std, "std with Bessel's correction (TRL, verl); false = population std");
  }
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
///  "seq-mean-token-sum"      (LUSPO / TRL "luspo"): mean over sequences of each one's token sum
enum class LossAggregation { kSeqMeanTokenMean, kTokenMean, kSeqMeanTokenSumNorm, kSeqMeanTokenSum };
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

/// The surrogate each token's loss is (TRL 1.16 `loss_type`; the aggregation is separate). r is the
/// token's ratio pi / pi_old (or its sequence's, with importance_ratio: sequence), sg() stops the
/// gradient.
///  clip   PPO's clipped objective (GRPO, DAPO, Dr. GRPO, GSPO, LUSPO): -min(r A, clip(r) A)
///  cispo  CISPO (MiniMax-M1): -sg(min(r, cispo_max)) A log pi            TRL loss_type="cispo"
///  sapo   SAPO: -(4 / tau) sigmoid(tau (r - 1)) A, tau = sapo_tau_pos for A > 0, else sapo_tau_neg
///                                                                        TRL loss_type="sapo"
///  vespo  VESPO: -sg(phi(w)) A log pi, w = the sequence's product of token ratios (and of any
///         off-policy IS weights), phi(w) = e^lambda w^k e^(-lambda w), (k, lambda) by the sign of A
///                                                                        TRL loss_type="vespo"
enum class PolicyObjective { kClip, kCispo, kSapo, kVespo };

struct PolicyLossOptions {
  PolicyObjective objective = PolicyObjective::kClip;
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
  bool kl_ratio_weighted = false;  // KL term times the (differentiable) ratio r: the unbiased reverse-KL
                                   // gradient of DeepSeek-V3.2 (TRL use_bias_correction_kl)
  double cispo_max = 5.0;       // cispo: the cap on the stop-gradient ratio (TRL epsilon_high)
  double sapo_tau_pos = 1.0, sapo_tau_neg = 1.05;  // sapo temperatures (TRL sapo_temperature_*)
  double vespo_k_pos = 2.0, vespo_lambda_pos = 3.0, vespo_k_neg = 3.0, vespo_lambda_neg = 2.0;
  double off_policy_mask = 0;   // > 0: off-policy sequence masking (DeepSeek-V3.2; TRL
                                // off_policy_mask_threshold): a sequence with A < 0 whose mean
                                // log pi_b - log pi exceeds this takes no part; 0 = off
  // How the caller weights token losses into one number (aggregation_weights); policy_loss itself
  // takes the weights.
  LossAggregation aggregation = LossAggregation::kSeqMeanTokenMean;

  /// The keys a run config sets them with (grpo.clip_eps_low, ...; the defaults of a run config
  /// are the trainer's, e.g. clip_eps_high 0.28).
  void visit(core::ConfigVisitor& v) {
    using core::at_least;
    core::choice_field(v, "loss", objective, "per-token surrogate: clip = PPO clipped ratio (GRPO, DAPO, GSPO); "
                       "cispo = -sg(min(r, cispo_max)) A log pi (MiniMax-M1; TRL loss_type=cispo); sapo = soft "
                       "sigmoid gate (TRL loss_type=sapo); vespo = -sg(phi(w)) A log pi with a gamma weight of the "
                       "sequence ratio (TRL loss_type=vespo)",
                       {{"clip", PolicyObjective::kClip}, {"cispo", PolicyObjective::kCispo},
                        {"sapo", PolicyObjective::kSapo}, {"vespo", PolicyObjective::kVespo}});
    v.field("cispo_max", cispo_max, "cispo: cap on the stop-gradient importance ratio (TRL epsilon_high under "
            "loss_type=cispo; ScaleRL: 5)", core::positive());
    v.field("sapo_tau_pos", sapo_tau_pos, "sapo: gate temperature for A > 0 (TRL sapo_temperature_pos)",
            core::positive());
    v.field("sapo_tau_neg", sapo_tau_neg, "sapo: gate temperature for A <= 0 (TRL sapo_temperature_neg)",
            core::positive());
    v.field("vespo_k_pos", vespo_k_pos, "vespo: power k of the gamma weight for A >= 0 (TRL vespo_k_pos)",
            at_least(0));
    v.field("vespo_lambda_pos", vespo_lambda_pos, "vespo: decay lambda for A >= 0 (TRL vespo_lambda_pos)",
            at_least(0));
    v.field("vespo_k_neg", vespo_k_neg, "vespo: power k for A < 0 (TRL vespo_k_neg)", at_least(0));
    v.field("vespo_lambda_neg", vespo_lambda_neg, "vespo: decay lambda for A < 0 (TRL vespo_lambda_neg)",
            at_least(0));
    v.field("clip_eps_low", clip_eps_low, "ratio clipped below at 1 - clip_eps_low (>= 1: never binds, the "
            "ratio is positive)", at_least(0));
    v.field("clip_eps_high", clip_eps_high, "ratio clipped above at 1 + clip_eps_high (DAPO clip-higher: above "
            "clip_eps_low)", at_least(0));
    core::choice_field(v, "importance_ratio", sequence_ratio, "token = one ratio per token (GRPO, DAPO); "
                       "sequence = exp(mean log-ratio) per sequence (GSPO; TRL importance_sampling_level)",
                       {{"token", false}, {"sequence", true}});
    v.field("dual_clip", dual_clip, "c > 1: for negative advantages the token loss is at most -c * A (dual "
            "clip, verl clip_ratio_c); 0 = off", at_least(0));
    v.field("ratio_cap", ratio_cap, "cap on the unclipped ratio (TRL delta, two-sided clipping); 0 = off",
            at_least(0));
    v.field("log_ratio_clamp", log_ratio_clamp, "log-ratio clamped to [-x, x] before exp (overflow guard; "
            "verl: 20); 0 = off", at_least(0));
    v.field("kl_coef", kl_coef, "beta of the KL(policy || reference) term; 0 = no reference model is built",
            at_least(0));
    core::choice_field(v, "kl_estimator", kl_estimator, "per-token KL estimator: k1 = logp - ref, k2 = (logp - "
                       "ref)^2 / 2, k3 = exp(ref - logp) - (ref - logp) - 1 (GRPO paper, TRL)",
                       {{"k1", KlEstimator::kK1}, {"k2", KlEstimator::kK2}, {"k3", KlEstimator::kK3}});
    v.field("kl_clamp", kl_clamp, "per-token KL clamped to [-x, x] (verl: 10); 0 = off", at_least(0));
    v.field("entropy_coef", entropy_coef, "entropy bonus: loss -= coef * token-mean entropy (TRL entropy_coef); "
            "0 = off", at_least(0));
    v.field("kl_ratio_weighted", kl_ratio_weighted, "KL term times the differentiable ratio r, the unbiased "
            "reverse-KL gradient of DeepSeek-V3.2 (TRL use_bias_correction_kl, default true there)");
    v.field("off_policy_mask", off_policy_mask, "off-policy sequence masking (DeepSeek-V3.2, TRL "
            "off_policy_mask_threshold): sequences with A < 0 whose mean log pi_sampler - log pi exceeds this "
            "are left out of the loss; 0 = off", at_least(0));
    core::choice_field(v, "loss_aggregation", aggregation, "how token losses are averaged: seq-mean-token-mean "
                       "(GRPO, TRL grpo), token-mean (DAPO, TRL dapo/bnpo), seq-mean-token-sum-norm = token sum / "
                       "(sequences * rollout.max_new_tokens) (Dr. GRPO), seq-mean-token-sum = mean of each "
                       "sequence's token sum (LUSPO, with importance_ratio: sequence)",
                       {{"seq-mean-token-mean", LossAggregation::kSeqMeanTokenMean},
                        {"token-mean", LossAggregation::kTokenMean},
                        {"seq-mean-token-sum-norm", LossAggregation::kSeqMeanTokenSumNorm},
                        {"seq-mean-token-sum", LossAggregation::kSeqMeanTokenSum}});
  }
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
  at::Tensor is_weights;          // optional off-policy IS weights (off_policy_weights): each token's
                                  // loss is multiplied by them (vespo: they enter its w instead)
  at::Tensor behaviour_logp;      // the sampler's log-probs; only with off_policy_mask > 0
};

struct PolicyLossOutput {
  at::Tensor loss;        // scalar: sum(weights * per_token) - entropy_coef * sum(entropy_weights * H)
  at::Tensor per_token;   // [rows, tokens] clipped surrogate (+ beta * KL)
  // statistics over masked tokens (detached doubles)
  double clip_low_fraction = 0;   // ratio < 1 - low with A < 0 (clipped from below)
  double clip_high_fraction = 0;  // ratio > 1 + high with A > 0 (clipped from above)
  double dual_clip_fraction = 0;  // A < 0 tokens whose loss the dual clip bounded
  double off_policy_masked_fraction = 0;  // tokens of sequences the off-policy mask left out
  double kl_mean = 0;
  double ratio_mean = 0, ratio_min = 0, ratio_max = 0;
  int64_t tokens = 0;
};

/// ratio r = exp(logp - old) per token, or per sequence (GSPO); with the clip objective
///   l = -min(r A, clip(r, 1-low, 1+high) A)  [dual clip: for A < 0, min(l, -c A)]
/// (the other objectives: PolicyObjective), then l *= off-policy mask, l *= IS weights, l += beta KL
/// [times r with kl_ratio_weighted]: TRL 1.16's order.
PolicyLossOutput policy_loss(const PolicyLossInputs& in, const PolicyLossOptions& options);

/// Off-policy correction between the behaviour policy pi_b (the sampler's log-probs) and pi_old (the
/// trainer's recomputed log-probs of the same tokens), as per-token weights on the loss. With
/// rho = pi_old / pi_b per token (token level) or prod_t rho_t per sequence (sequence level):
///  tis     truncated IS: w = clamp(rho, is_min, is_max)       TRL vllm_importance_sampling_mode
///                                                            token_truncate / sequence_truncate;
///                                                            verl rollout_is token / sequence
///  mis     masked IS: w = rho inside [is_min, is_max], else 0  TRL token_mask / sequence_mask
///  icepop  IcePop (Ring-1T): mis at token level with the bounds [0.5, 5] by default
/// The masked tokens still count in the loss's denominators (as in TRL; verl's rejection sampling
/// drops them from the denominators instead).
enum class OffPolicyCorrection { kNone, kTis, kMis, kIcepop };

struct OffPolicyOptions {
  OffPolicyCorrection mode = OffPolicyCorrection::kNone;
  bool sequence = false;  // is_level: sequence (one rho per sequence) or token
  double is_max = 0;      // upper bound; 0 = the mode's default (tis, mis: 2 as verl; icepop: 5)
  double is_min = 0;      // lower bound; 0 = the mode's default (tis, mis: none; icepop: 0.5)

  double upper() const { return is_max > 0 ? is_max : mode == OffPolicyCorrection::kIcepop ? 5.0 : 2.0; }
  double lower() const { return is_min > 0 ? is_min : mode == OffPolicyCorrection::kIcepop ? 0.5 : 0.0; }

  /// The keys a run config sets them with (grpo.off_policy_correction, grpo.is_level, ...).
  void visit(core::ConfigVisitor& v) {
    core::choice_field(v, "off_policy_correction", mode, "correction for the gap between the sampler's "
                       "log-probs (behaviour policy) and the trainer's old log-probs: none; tis = truncated IS "
                       "weights clamp(rho, is_min, is_max) (TRL *_truncate, verl rollout_is); mis = masked IS, "
                       "rho outside [is_min, is_max] weighs 0 (TRL *_mask); icepop = token-level mis with bounds "
                       "[0.5, 5] (Ring-1T IcePop)",
                       {{"none", OffPolicyCorrection::kNone}, {"tis", OffPolicyCorrection::kTis},
                        {"mis", OffPolicyCorrection::kMis}, {"icepop", OffPolicyCorrection::kIcepop}});
    core::choice_field(v, "is_level", sequence, "tis/mis: token = one ratio per token; sequence = the product "
                       "of the sequence's token ratios (TRL sequence_*)", {{"token", false}, {"sequence", true}});
    v.field("is_max", is_max, "IS upper bound (TRL vllm_importance_sampling_clip_max, verl "
            "rollout_is_threshold); 0 = the mode's default: tis/mis 2, icepop 5", core::at_least(0));
    v.field("is_min", is_min, "IS lower bound (TRL vllm_importance_sampling_clip_min); 0 = the mode's default: "
            "tis/mis none, icepop 0.5", core::at_least(0));
  }
};

struct OffPolicyWeights {
  at::Tensor weights;  // [rows, tokens]: the token's (or its sequence's) weight; 1 at padding (token level)
  // statistics over masked tokens (detached doubles)
  double weight_sum = 0, weight_max = 0;
  double masked = 0;   // tokens whose weight the mask set to 0 (mis, icepop)
  double tokens = 0;
};

/// old_logp, behaviour_logp, mask [rows, tokens]; computed in float64 when the inputs are.
OffPolicyWeights off_policy_weights(const at::Tensor& old_logp, const at::Tensor& behaviour_logp,
                                    const at::Tensor& mask, const OffPolicyOptions& options);

}  // namespace grpo::algo
