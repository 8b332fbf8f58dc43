#include "grpo/rollout/sampler.h"

#include <ATen/ATen.h>

#include "grpo/core/error.h"

namespace grpo::rollout {

at::Tensor sampling_distribution(const at::Tensor& logits, const SamplingParams& p) {
  auto z = logits.to(at::kFloat);
  if (p.temperature == 0.0) {
    auto idx = z.argmax(-1, true);
    return at::zeros_like(z).scatter_(-1, idx, 1.0);
  }
  auto probs = at::softmax(z / p.temperature, -1);
  const int64_t V = z.size(-1);
  if ((p.top_k > 0 && p.top_k < V) || p.top_p < 1.0) {
    auto sorted = probs.sort(-1, /*descending=*/true);
    auto sp = std::get<0>(sorted), si = std::get<1>(sorted);
    auto keep = at::ones_like(sp, at::kBool);
    if (p.top_k > 0 && p.top_k < V) {
      keep = keep & (at::arange(V, si.options()) < p.top_k).unsqueeze(0);
    }
    if (p.top_p < 1.0) {
      // keep token j if the mass strictly before it is < top_p (the top token always stays)
      auto before = sp.cumsum(-1) - sp;
      keep = keep & (before < p.top_p);
    }
    auto kept = at::where(keep, sp, at::zeros_like(sp));
    probs = at::zeros_like(probs).scatter_(-1, si, kept);
    probs = probs / probs.sum(-1, true);
  }
  return probs;
}

Sampled sample_tokens(const at::Tensor& logits, const at::Tensor& uniforms, const SamplingParams& p) {
  GRPO_CHECK(logits.dim() == 2 && uniforms.dim() == 1 && uniforms.size(0) == logits.size(0),
             "sample_tokens: logits [rows, vocab] and uniforms [rows] expected");
  auto z = logits.to(at::kFloat);
  Sampled s;
  if (p.temperature == 0.0) {
    s.tokens = z.argmax(-1);
    s.logprobs = at::log_softmax(z, -1).gather(1, s.tokens.unsqueeze(1)).squeeze(1);
    return s;
  }
  auto probs = sampling_distribution(z, p);
  auto cdf = probs.cumsum(-1);
  // first index whose cumulative mass exceeds u (u scaled by the total to absorb rounding)
  auto u = (uniforms.to(z.device(), at::kFloat) * cdf.select(1, cdf.size(1) - 1)).unsqueeze(1).contiguous();
  auto idx = at::searchsorted(cdf.contiguous(), u, /*out_int32=*/false, /*right=*/true).squeeze(1);
  idx = idx.clamp_max(z.size(1) - 1);
  // never land on a zero-probability token (possible only through rounding at the edges)
  auto chosen_p = probs.gather(1, idx.unsqueeze(1)).squeeze(1);
  idx = at::where(chosen_p > 0, idx, probs.argmax(-1));
  s.tokens = idx;
  s.logprobs = at::log_softmax(z / p.temperature, -1).gather(1, idx.unsqueeze(1)).squeeze(1);
  return s;
}

}  // namespace grpo::rollout
