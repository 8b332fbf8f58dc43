// Grouped-query attention through at::scaled_dot_product_attention (fused kernels when available)
// with native GQA; the fp32 detour of bf16 CPU training forwards is attend()'s.
#include "attention.h"

#include <cmath>
#include <tuple>

#include <ATen/ATen.h>

#include "grpo/model/kv_cache.h"
#include "grpo/model/model_config.h"
#include "rope.h"

namespace grpo::model::detail {
namespace {

// bf16 attention of CPU training forwards with fewer keys than this runs in fp32 (attend()).
constexpr int64_t kCpuBf16AttentionMaxKeys = 192;

}  // namespace

// Scaled dot-product attention: causal (mask undefined) or with a bool mask [B, 1, T, S] (true =
// may attend). LibTorch's CPU flash kernel is slow on bf16 with short keys in training (at 20 keys
// its backward took 17 ms where fp32 took 1.2 ms, so the bf16 demo ran 1.6x slower than fp32). So
// training forwards (model in train mode) of bf16 CPU tensors with fewer than kCpuBf16AttentionMaxKeys
// keys upcast the inputs to fp32 and round the output back (the fp32 kernel accumulates in fp32 as
// the bf16 one does; the results differ by bf16 rounding). The crossover on a 2-core Xeon is
// ~192 keys (docs/performance.md). Forwards in eval mode (generation, evaluation, the reference
// model) keep the bf16 kernel and so give transformers' bf16 results bit for bit.
at::Tensor attend(at::Tensor q, at::Tensor k, at::Tensor v, const at::Tensor& mask,
                  std::optional<double> scale, bool gqa, bool training) {
  const bool upcast = training && q.is_cpu() && q.scalar_type() == at::kBFloat16 && q.size(-2) > 1 &&
                      k.size(-2) < kCpuBf16AttentionMaxKeys;
  if (upcast) {
    q = q.to(at::kFloat);
    k = k.to(at::kFloat);
    v = v.to(at::kFloat);
  }
  auto out = mask.defined() ? at::scaled_dot_product_attention(q, k, v, mask, 0.0, false, scale, gqa)
                            : at::scaled_dot_product_attention(q, k, v, {}, 0.0, /*is_causal=*/true, scale, gqa);
  return upcast ? out.to(at::kBFloat16) : out;
}

AttentionImpl::AttentionImpl(const ModelConfig& c, const Split& sp)
    : heads(sp.part(c.num_attention_heads, "num_attention_heads")),
      kv_heads(sp.part(c.num_key_value_heads, "num_key_value_heads")), head_dim(c.resolved_head_dim()),
      split(sp) {
  auto lin = [&](int64_t in, int64_t out, bool bias) {
    return torch::nn::Linear(torch::nn::LinearOptions(in, out).bias(bias));
  };
  q_proj = register_module("q_proj", lin(c.hidden_size, heads * head_dim, c.attention_bias));
  k_proj = register_module("k_proj", lin(c.hidden_size, kv_heads * head_dim, c.attention_bias));
  v_proj = register_module("v_proj", lin(c.hidden_size, kv_heads * head_dim, c.attention_bias));
  o_proj = register_module("o_proj", lin(heads * head_dim, c.hidden_size, c.attention_out_bias));
  if (c.qk_norm) {
    q_norm = register_module("q_norm", RMSNorm(head_dim, c.rms_norm_eps));
    k_norm = register_module("k_norm", RMSNorm(head_dim, c.rms_norm_eps));
  }
}

at::Tensor AttentionImpl::forward(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin,
                                  const at::Tensor& mask, KVCache* cache, int64_t layer) {
  auto qkv = split.linears(x, {q_proj, k_proj, v_proj});
  auto B = qkv[0].size(0), T = qkv[0].size(1);
  auto q = qkv[0].view({B, T, heads, head_dim}).transpose(1, 2);     // [B, H, T, hd]
  auto k = qkv[1].view({B, T, kv_heads, head_dim}).transpose(1, 2);  // [B, KV, T, hd]
  auto v = qkv[2].view({B, T, kv_heads, head_dim}).transpose(1, 2);
  if (q_norm) {  // Qwen3: normalise each head before the rotation
    q = q_norm(q);
    k = k_norm(k);
  }
  q = apply_rope(q, cos, sin, /*interleave=*/false);
  k = apply_rope(k, cos, sin, /*interleave=*/false);
  at::Tensor out;  // [B, H, T, hd]
  if (cache) out = cache->decode_attention(layer, q, k, v, 1.0 / std::sqrt(double(head_dim)), false);
  if (!out.defined()) {
    if (cache) std::tie(k, v) = cache->append(layer, k, v);
    out = attend(q, k, v, mask, std::nullopt, kv_heads != heads, is_training());
  }
  return row_linear(o_proj, out.transpose(1, 2).reshape({B, T, heads * head_dim}), split);
}

}  // namespace grpo::model::detail
