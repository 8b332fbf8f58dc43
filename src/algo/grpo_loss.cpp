#include "grpo/algo/grpo_loss.h"

#include <ATen/ATen.h>

#include "grpo/core/error.h"

namespace grpo::algo {

Advantages group_advantages(const at::Tensor& rewards, int64_t group_size,
                            const AdvantageOptions& o) {
  GRPO_CHECK(group_size > 0 && rewards.dim() == 1 && rewards.numel() % group_size == 0,
             "group_advantages: {} rewards do not split into groups of {}", rewards.numel(),
             group_size);
  auto r = rewards.to(at::kDouble).view({-1, group_size});
  auto mean = r.mean(1, true);
  auto centered = r - mean;
  // exact zero for all-equal groups, whatever rounding the mean had
  auto same = r.amax(1, true) == r.amin(1, true);
  centered = at::where(same, at::zeros_like(centered), centered);
  Advantages out;
  out.zero_std_groups = same.sum().item<int64_t>();
  if (o.scale_by_std) {
    at::Tensor std;
    if (group_size == 1) {
      std = at::zeros_like(mean);
    } else {
      std = (centered.pow(2).sum(1, true) / double(o.unbiased_std ? group_size - 1 : group_size)).sqrt();
    }
    centered = centered / (std + o.eps);
  }
  out.values = centered.view({-1}).to(at::kFloat);
  return out;
}

at::Tensor kl_k3(const at::Tensor& logp, const at::Tensor& ref_logp) {
  auto d = ref_logp - logp;
  return at::exp(d) - d - 1.0;
}

LossAggregation parse_loss_aggregation(const std::string& name) {
  if (name == "seq-mean-token-mean") return LossAggregation::kSeqMeanTokenMean;
  if (name == "token-mean") return LossAggregation::kTokenMean;
  fail("unknown loss aggregation '{}'; expected seq-mean-token-mean or token-mean", name);
}

at::Tensor aggregation_weights(const at::Tensor& mask, LossAggregation mode) {
  auto m = mask.to(at::kFloat);
  if (mode == LossAggregation::kTokenMean) return m / m.sum().clamp_min(1.0);
  auto per_seq = m.sum(1, true).clamp_min(1.0);  // tokens per sequence
  return m / per_seq / double(std::max<int64_t>(1, mask.size(0)));
}

PolicyLossOutput policy_loss(const at::Tensor& logp, const at::Tensor& old_logp,
                             const at::Tensor& ref_logp, const at::Tensor& advantages,
                             const at::Tensor& mask, const at::Tensor& weights,
                             const PolicyLossOptions& o) {
  GRPO_CHECK(logp.sizes() == old_logp.sizes() && logp.sizes() == mask.sizes() &&
                 logp.sizes() == weights.sizes() && advantages.dim() == 1 &&
                 advantages.size(0) == logp.size(0),
             "policy_loss: shapes disagree");
  auto m = mask.to(at::kFloat);
  auto A = advantages.to(at::kFloat).unsqueeze(1);
  auto ratio = at::exp(logp - old_logp);
  auto clipped = at::clamp(ratio, 1.0 - o.clip_eps_low, 1.0 + o.clip_eps_high);
  auto per_token = -at::min(ratio * A, clipped * A);
  at::Tensor kl;
  if (o.kl_coef != 0.0) {
    GRPO_CHECK(ref_logp.defined(), "policy_loss: kl_coef = {} needs reference log-probs", o.kl_coef);
    kl = kl_k3(logp, ref_logp);
    per_token = per_token + o.kl_coef * kl;
  }
  PolicyLossOutput out;
  out.per_token = per_token;
  out.loss = (per_token * weights).sum();
  {
    at::NoGradGuard g;
    double n = m.sum().item<double>();
    out.tokens = static_cast<int64_t>(n);
    double denom = std::max(1.0, n);
    auto r = ratio.detach();
    out.clip_low_fraction = ((r < 1.0 - o.clip_eps_low) & (A < 0)).to(at::kFloat).mul(m).sum().item<double>() / denom;
    out.clip_high_fraction = ((r > 1.0 + o.clip_eps_high) & (A > 0)).to(at::kFloat).mul(m).sum().item<double>() / denom;
    out.ratio_mean = (r * m).sum().item<double>() / denom;
    out.ratio_max = n > 0 ? at::where(m > 0, r, at::zeros_like(r)).max().item<double>() : 0.0;
    if (kl.defined()) out.kl_mean = (kl.detach() * m).sum().item<double>() / denom;
  }
  return out;
}

}  // namespace grpo::algo
