#include "grpo/rollout/sampler.h"

#include <utility>
#include <vector>

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

namespace {

// The first index whose cumulative mass exceeds u * (total mass), per row, and the total: probs
// [R, V] fp32 (any positive scale), u [R]. Two levels, so no [R, V] cumulative sum is written: the
// sums of blocks of kBlock columns and their prefix sums locate the block, then one block's own
// prefix sums the index.
std::pair<at::Tensor, at::Tensor> inverse_cdf(const at::Tensor& probs, const at::Tensor& u) {
  constexpr int64_t kBlock = 1024;
  const int64_t R = probs.size(0), V = probs.size(1), full = V / kBlock;
  std::vector<at::Tensor> parts;
  if (R > 1 && probs.stride(0) == 1 && probs.stride(1) == R) {  // column-major (Transformer::logits on the CPU)
    auto pt = probs.t();  // [V, R] contiguous: sum over the middle dimension, rows stay vectorized
    if (full > 0) parts.push_back(pt.narrow(0, 0, full * kBlock).view({full, kBlock, R}).sum(1).t());
    if (V > full * kBlock) parts.push_back(pt.narrow(0, full * kBlock, V - full * kBlock).sum(0).unsqueeze(1));
  } else {
    if (full > 0) parts.push_back(probs.narrow(1, 0, full * kBlock).reshape({R, full, kBlock}).sum(-1));
    if (V > full * kBlock) parts.push_back(probs.narrow(1, full * kBlock, V - full * kBlock).sum(-1, true));
  }
  auto block_cdf = (parts.size() == 1 ? parts[0] : at::cat(parts, 1)).cumsum(-1);  // [R, blocks]
  const int64_t nb = block_cdf.size(1);
  auto target = (u.to(probs.device(), at::kFloat) * block_cdf.select(1, nb - 1)).unsqueeze(1).contiguous();
  auto block = at::searchsorted(block_cdf.contiguous(), target, false, /*right=*/true).clamp_max(nb - 1);  // [R, 1]
  auto before = at::where(block > 0, block_cdf.gather(1, (block - 1).clamp_min(0)), at::zeros_like(target));
  auto cols = block * kBlock + at::arange(kBlock, block.options()).unsqueeze(0);  // [R, kBlock]
  auto in = cols < V;
  auto inner = at::where(in, probs.gather(1, cols.clamp_max(V - 1)), at::zeros({}, probs.options()));
  auto inner_cdf = inner.cumsum(-1) + before;
  auto j = at::searchsorted(inner_cdf.contiguous(), target, false, /*right=*/true).clamp_max(kBlock - 1);
  return {(block * kBlock + j).squeeze(1).clamp_max(V - 1), block_cdf.select(1, nb - 1)};
}

}  // namespace

Sampled sample_tokens(const at::Tensor& logits, const at::Tensor& uniforms, const SamplingParams& p) {
  GRPO_CHECK(logits.dim() == 2 && uniforms.dim() == 1 && uniforms.size(0) == logits.size(0),
             "sample_tokens: logits [rows, vocab] and uniforms [rows] expected");
  auto z = logits.to(at::kFloat);
  Sampled s;
  if (p.temperature == 0.0) {
    s.tokens = z.argmax(-1);
    s.logprobs = z.gather(1, s.tokens.unsqueeze(1)).squeeze(1) - at::logsumexp(z, -1);
    return s;
  }
  const int64_t V = z.size(1);
  const bool filtered = (p.top_k > 0 && p.top_k < V) || p.top_p < 1.0;
  auto zt = p.temperature != 1.0 ? z / p.temperature : z;
  auto m = at::amax(zt, -1, /*keepdim=*/true);  // [rows, 1]
  // unfiltered: draw from exp(z / T - m) itself; its total gives log-sum-exp = m + log(total)
  auto e = filtered ? sampling_distribution(z, p) : at::exp(zt - m);
  auto [idx, total] = inverse_cdf(e, uniforms);
  // never land on a zero-probability token (possible only through rounding at the edges)
  auto chosen = e.gather(1, idx.unsqueeze(1)).squeeze(1);
  if (!(chosen > 0).all().item<bool>()) idx = at::where(chosen > 0, idx, e.argmax(-1));
  auto lse = filtered ? at::logsumexp(zt, -1, true) : m + at::log(total).unsqueeze(1);
  s.tokens = idx;
  s.logprobs = (zt.gather(1, idx.unsqueeze(1)) - lse).squeeze(1);
  return s;
}

}  // namespace grpo::rollout
