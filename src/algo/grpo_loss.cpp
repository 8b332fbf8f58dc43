#include "grpo/algo/grpo_loss.h"

#include <cmath>

#include <ATen/ATen.h>

#include "grpo/core/error.h"

namespace grpo::algo {

AdvantageMode parse_advantage_mode(const std::string& name) {
  if (name == "group") return AdvantageMode::kGroup;
  if (name == "no_std") return AdvantageMode::kNoStd;
  if (name == "batch_std") return AdvantageMode::kBatchStd;
  if (name == "rloo") return AdvantageMode::kRloo;
  fail("unknown advantage mode '{}'; expected group, no_std, batch_std or rloo", name);
}

Advantages group_advantages(const at::Tensor& rewards, int64_t group_size, const AdvantageOptions& o) {
  GRPO_CHECK(group_size > 0 && rewards.dim() == 1 && rewards.numel() % group_size == 0,
             "group_advantages: {} rewards do not split into groups of {}", rewards.numel(), group_size);
  auto r = rewards.to(at::kDouble).view({-1, group_size});
  auto mean = r.mean(1, true);
  auto centered = r - mean;
  // exact zero for all-equal groups, whatever rounding the mean had
  auto same = r.amax(1, true) == r.amin(1, true);
  centered = at::where(same, at::zeros_like(centered), centered);
  Advantages out;
  out.zero_std_groups = same.sum().item<int64_t>();
  auto std_of = [&](const at::Tensor& x, int64_t n, const at::Tensor& dev) {  // dev: x - mean(x)
    if (n <= 1) return at::zeros({1, 1}, x.options());
    return (dev.pow(2).sum(-1, true) / double(o.unbiased_std ? n - 1 : n)).sqrt();
  };
  switch (o.mode) {
    case AdvantageMode::kGroup: centered = centered / (std_of(r, group_size, centered) + o.eps); break;
    case AdvantageMode::kNoStd: break;
    case AdvantageMode::kBatchStd: {
      auto flat = r.reshape({1, -1});
      auto s = std_of(flat, flat.numel(), flat - flat.mean(1, true));
      centered = centered / (s + o.eps);
      break;
    }
    case AdvantageMode::kRloo:
      if (group_size > 1) centered = centered * (double(group_size) / double(group_size - 1));
      break;
  }
  out.values = centered.view({-1}).to(at::kFloat);
  return out;
}

KlEstimator parse_kl_estimator(const std::string& name) {
  if (name == "k1") return KlEstimator::kK1;
  if (name == "k2") return KlEstimator::kK2;
  if (name == "k3") return KlEstimator::kK3;
  fail("unknown KL estimator '{}'; expected k1, k2 or k3", name);
}

at::Tensor kl_estimate(const at::Tensor& logp, const at::Tensor& ref_logp, KlEstimator e) {
  auto d = ref_logp - logp;
  switch (e) {
    case KlEstimator::kK1: return -d;
    case KlEstimator::kK2: return 0.5 * d * d;
    case KlEstimator::kK3: break;
  }
  return at::exp(d) - d - 1.0;
}

at::Tensor kl_reward_penalty(const at::Tensor& logp, const at::Tensor& ref_logp, const at::Tensor& mask,
                             double coef, KlEstimator e) {
  at::NoGradGuard g;
  auto kl = kl_estimate(logp.to(at::kDouble), ref_logp.to(at::kDouble), e) * mask.to(at::kDouble);
  return coef * kl.sum(1);
}

LossAggregation parse_loss_aggregation(const std::string& name) {
  if (name == "seq-mean-token-mean") return LossAggregation::kSeqMeanTokenMean;
  if (name == "token-mean") return LossAggregation::kTokenMean;
  if (name == "seq-mean-token-sum-norm") return LossAggregation::kSeqMeanTokenSumNorm;
  if (name == "seq-mean-token-sum") return LossAggregation::kSeqMeanTokenSum;
  fail("unknown loss aggregation '{}'; expected seq-mean-token-mean, token-mean, seq-mean-token-sum-norm or "
       "seq-mean-token-sum", name);
}

at::Tensor aggregation_weights(const at::Tensor& mask, LossAggregation mode, int64_t max_tokens) {
  auto m = mask.is_floating_point() ? mask : mask.to(at::kFloat);
  return aggregation_weights(m, mode, max_tokens, double(mask.size(0)), m.sum().item<double>());
}

at::Tensor aggregation_weights(const at::Tensor& mask, LossAggregation mode, int64_t max_tokens, double total_rows,
                               double total_tokens) {
  auto m = mask.is_floating_point() ? mask : mask.to(at::kFloat);
  const double rows = std::max(1.0, total_rows);
  switch (mode) {
    case LossAggregation::kTokenMean: return m / std::max(1.0, total_tokens);
    case LossAggregation::kSeqMeanTokenSumNorm:
      GRPO_CHECK(max_tokens > 0, "aggregation seq-mean-token-sum-norm needs the response-length limit");
      return m / (rows * double(max_tokens));
    case LossAggregation::kSeqMeanTokenSum: return m / rows;
    case LossAggregation::kSeqMeanTokenMean: break;
  }
  auto per_seq = m.sum(1, true).clamp_min(1.0);  // tokens per sequence
  return m / per_seq / rows;
}

PolicyLossOutput policy_loss(const PolicyLossInputs& in, const PolicyLossOptions& o) {
  const auto& logp = in.logp;
  GRPO_CHECK(logp.dim() == 2 && logp.sizes() == in.old_logp.sizes() && logp.sizes() == in.mask.sizes() &&
                 logp.sizes() == in.weights.sizes() && in.advantages.dim() == 1 &&
                 in.advantages.size(0) == logp.size(0) &&
                 (!in.is_weights.defined() || in.is_weights.sizes() == logp.sizes()),
             "policy_loss: shapes disagree");
  const auto dt = logp.scalar_type();
  auto m = in.mask.to(dt);
  auto A = in.advantages.to(dt).unsqueeze(1);
  auto token_log_ratio = logp - in.old_logp.to(dt);
  auto log_ratio = token_log_ratio;
  if (o.sequence_ratio)  // GSPO: exp of the sequence's mean log-ratio, the same for all its tokens
    log_ratio = ((log_ratio * m).sum(1, true) / m.sum(1, true).clamp_min(1.0)).expand_as(logp);
  if (o.log_ratio_clamp > 0) log_ratio = at::clamp(log_ratio, -o.log_ratio_clamp, o.log_ratio_clamp);
  auto ratio = at::exp(log_ratio);
  at::Tensor per_token, dual_bounded;
  const bool clip = o.objective == PolicyObjective::kClip;
  switch (o.objective) {
    case PolicyObjective::kClip: {
      auto clipped = at::clamp(ratio, 1.0 - o.clip_eps_low, 1.0 + o.clip_eps_high);
      auto unclipped = o.ratio_cap > 0 ? at::clamp_max(ratio, o.ratio_cap) : ratio;
      per_token = at::max(-unclipped * A, -clipped * A);
      if (o.dual_clip > 0) {
        GRPO_CHECK(o.dual_clip > 1.0, "policy_loss: dual_clip must be > 1 (found {})", o.dual_clip);
        auto bound = -o.dual_clip * A;
        dual_bounded = (A < 0) & (per_token > bound);
        per_token = at::where(A < 0, at::min(per_token, bound), per_token);
      }
      break;
    }
    case PolicyObjective::kCispo:
      per_token = -at::clamp_max(ratio, o.cispo_max).detach() * A * logp;
      break;
    case PolicyObjective::kSapo: {
      auto tau = at::where(A > 0, at::full_like(A, o.sapo_tau_pos), at::full_like(A, o.sapo_tau_neg));
      per_token = -(at::sigmoid(tau * (ratio - 1.0)) * 4.0 / tau) * A;
      break;
    }
    case PolicyObjective::kVespo: {  // a sequence-level gamma weight, computed in log space (no gradient)
      at::Tensor phi;
      {
        at::NoGradGuard g;
        const double lo = std::log(1e-8);
        auto seq = (at::clamp(token_log_ratio, -20.0, 20.0) * m).sum(1, true);
        if (in.is_weights.defined()) seq = seq + at::clamp(at::log(in.is_weights.to(dt)), lo, 20.0).sum(1, true);
        auto log_w = at::clamp(seq, lo, 20.0);
        auto pos = A >= 0;
        auto k = at::where(pos, at::full_like(A, o.vespo_k_pos), at::full_like(A, o.vespo_k_neg));
        auto lam = at::where(pos, at::full_like(A, o.vespo_lambda_pos), at::full_like(A, o.vespo_lambda_neg))
                       .clamp_min(1e-4);
        phi = at::nan_to_num(at::exp(lam + k * log_w - lam * at::exp(log_w)), 0.0, 0.0, 0.0);
      }
      per_token = -phi * A * logp;
      break;
    }
  }
  at::Tensor kept;  // off-policy sequence mask (DeepSeek-V3.2): [rows, 1]
  if (o.off_policy_mask > 0) {
    GRPO_CHECK(in.behaviour_logp.defined() && in.behaviour_logp.sizes() == logp.sizes(),
               "policy_loss: off_policy_mask needs the sampler's log-probs");
    auto kl = ((in.behaviour_logp.to(dt) - logp.detach()) * m).sum(1, true) / m.sum(1, true).clamp_min(1.0);
    kept = ((A >= 0) | (kl <= o.off_policy_mask)).to(dt);  // no gradient: logp detached
    per_token = per_token * kept;
  }
  if (in.is_weights.defined() && o.objective != PolicyObjective::kVespo)
    per_token = per_token * in.is_weights.to(dt).detach();
  at::Tensor kl;
  if (o.kl_coef != 0.0) {
    GRPO_CHECK(in.ref_logp.defined(), "policy_loss: kl_coef = {} needs reference log-probs", o.kl_coef);
    kl = kl_estimate(logp, in.ref_logp.to(dt), o.kl_estimator);
    if (o.kl_clamp > 0) kl = at::clamp(kl, -o.kl_clamp, o.kl_clamp);
    per_token = per_token + o.kl_coef * (o.kl_ratio_weighted ? kl * ratio : kl);
  }
  PolicyLossOutput out;
  out.per_token = per_token;
  out.loss = (per_token * in.weights.to(dt)).sum();
  if (o.entropy_coef != 0.0) {
    GRPO_CHECK(in.entropy.defined() && in.entropy_weights.defined() && in.entropy.sizes() == logp.sizes(),
               "policy_loss: entropy_coef = {} needs per-token entropies and their weights", o.entropy_coef);
    out.loss = out.loss - o.entropy_coef * (in.entropy.to(dt) * in.entropy_weights.to(dt)).sum();
  }
  {
    at::NoGradGuard g;
    double n = m.sum().item<double>();
    out.tokens = static_cast<int64_t>(n);
    double denom = std::max(1.0, n);
    auto r = ratio.detach();
    auto frac = [&](const at::Tensor& cond) { return (cond.to(dt) * m).sum().item<double>() / denom; };
    if (clip) {
      out.clip_low_fraction = frac((r < 1.0 - o.clip_eps_low) & (A < 0));
      out.clip_high_fraction = frac((r > 1.0 + o.clip_eps_high) & (A > 0));
    } else if (o.objective == PolicyObjective::kCispo) {
      out.clip_high_fraction = frac(r > o.cispo_max);
    }
    if (dual_bounded.defined()) out.dual_clip_fraction = frac(dual_bounded);
    if (kept.defined()) out.off_policy_masked_fraction = frac(kept.expand_as(m) == 0);
    out.ratio_mean = (r * m).sum().item<double>() / denom;
    if (n > 0) {
      auto inf = std::numeric_limits<double>::infinity();
      out.ratio_max = at::where(m > 0, r, at::full_like(r, -inf)).max().item<double>();
      out.ratio_min = at::where(m > 0, r, at::full_like(r, inf)).min().item<double>();
    }
    if (kl.defined()) out.kl_mean = (kl.detach() * m).sum().item<double>() / denom;
  }
  return out;
}

OffPolicyWeights off_policy_weights(const at::Tensor& old_logp, const at::Tensor& behaviour_logp,
                                    const at::Tensor& mask, const OffPolicyOptions& o) {
  GRPO_CHECK(old_logp.dim() == 2 && old_logp.sizes() == behaviour_logp.sizes() && old_logp.sizes() == mask.sizes(),
             "off_policy_weights: shapes disagree");
  at::NoGradGuard g;
  OffPolicyWeights out;
  const auto dt = old_logp.scalar_type();
  auto m = mask.to(dt);
  out.tokens = m.sum().item<double>();
  if (o.mode == OffPolicyCorrection::kNone) {
    out.weights = at::ones_like(old_logp);
    out.weight_sum = out.tokens;
    out.weight_max = out.tokens > 0 ? 1.0 : 0.0;
    return out;
  }
  // rho = pi_old / pi_b; a token the sampler could not score (NaN) counts as rho = 1 (TRL)
  auto diff = at::nan_to_num((old_logp - behaviour_logp.to(dt)) * m, 0.0);
  const bool sequence = o.sequence && o.mode != OffPolicyCorrection::kIcepop;
  auto rho = at::exp(sequence ? diff.sum(1, true) : diff);
  const double hi = o.upper(), lo = o.lower();
  GRPO_CHECK(lo < hi, "off-policy correction: is_min {} must be below is_max {}", lo, hi);
  at::Tensor w;
  if (o.mode == OffPolicyCorrection::kTis) {
    w = lo > 0 ? at::clamp(rho, lo, hi) : at::clamp_max(rho, hi);
  } else {
    auto out_of_range = (rho < lo) | (rho > hi);
    w = rho.masked_fill(out_of_range, 0.0);
    out.masked = (out_of_range.expand_as(m).to(dt) * m).sum().item<double>();
  }
  out.weights = w.expand_as(old_logp).contiguous();
  out.weight_sum = (out.weights * m).sum().item<double>();
  if (out.tokens > 0) out.weight_max = at::where(m > 0, out.weights, at::zeros_like(out.weights)).max().item<double>();
  return out;
}

}  // namespace grpo::algo
