// Multi-head latent attention (DeepSeek-V2/V3). Keys and values come from a compressed latent
// c = RMSNorm(W_dkv x) (kv_lora_rank wide) plus one RoPE key shared by all heads.
//  * without a cache (training, prefill of the reference): c is expanded to per-head K/V by
//    kv_b_proj and attention runs as usual;
//  * with a cache (generation): the cache holds only (c, k_rope) per token, and kv_b_proj is
//    absorbed into the query and the output ("weight absorption"):
//      q_lat = q_nope W_uk,  scores = q_lat c^T + q_rope k_rope^T,  out = (P c) W_uv^T,
//    which equals the expanded path exactly in real arithmetic.
#include "mla.h"

#include <cmath>

#include <ATen/ATen.h>

#include "attention.h"
#include "grpo/model/kv_cache.h"
#include "grpo/model/model_config.h"
#include "rope.h"

namespace grpo::model::detail {

MLAImpl::MLAImpl(const ModelConfig& c, const Split& sp)
    : heads(sp.part(c.num_attention_heads, "num_attention_heads")), dn(c.qk_nope_head_dim),
      dr(c.qk_rope_head_dim), dv(c.v_head_dim), rank(c.kv_lora_rank), interleave(c.rope_interleave),
      split(sp) {
  auto lin = [&](int64_t in, int64_t out) {
    return torch::nn::Linear(torch::nn::LinearOptions(in, out).bias(false));
  };
  const int64_t qk = dn + dr;
  if (c.q_lora_rank > 0) {
    q_a_proj = register_module("q_a_proj", lin(c.hidden_size, c.q_lora_rank));
    q_a_layernorm = register_module("q_a_layernorm", RMSNorm(c.q_lora_rank, 1e-6));
    q_b_proj = register_module("q_b_proj", lin(c.q_lora_rank, heads * qk));
  } else {
    q_proj = register_module("q_proj", lin(c.hidden_size, heads * qk));
  }
  kv_a_proj_with_mqa = register_module("kv_a_proj_with_mqa", lin(c.hidden_size, rank + dr));
  kv_a_layernorm = register_module("kv_a_layernorm", RMSNorm(rank, 1e-6));
  kv_b_proj = register_module("kv_b_proj", lin(rank, heads * (dn + dv)));
  o_proj = register_module("o_proj", lin(heads * dv, c.hidden_size));
  scale = 1.0 / std::sqrt(double(qk));
  if (c.rope_type != "default" && c.rope_mscale_all_dim != 0) {
    double m = yarn_mscale(c.rope_factor, c.rope_mscale_all_dim);
    scale *= m * m;
  }
}

at::Tensor MLAImpl::forward(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin,
                            const at::Tensor& mask, KVCache* cache, int64_t layer) {
  // tensor parallel: q and kv_b are split by heads; the latents are replicated, so their
  // gradients (partial per rank) are summed over the group where they enter split layers
  at::Tensor q, ckv;  // ckv [B, T, rank + dr]
  if (q_a_proj) {  // both latent projections replicated: Megatron's gather, keeping x's part
    auto lat = split.linears(x, {q_a_proj, kv_a_proj_with_mqa}, /*split_layers=*/false);
    q = linear(q_b_proj, split.copy(q_a_layernorm(lat[0])));
    ckv = lat[1];
  } else {
    auto whole = split.gather(x);
    q = linear(q_proj, split.copy(whole));
    ckv = linear(kv_a_proj_with_mqa, whole);
  }
  const auto B = ckv.size(0), T = ckv.size(1);
  q = q.view({B, T, heads, dn + dr}).transpose(1, 2);  // [B, H, T, dn + dr]
  auto q_nope = q.narrow(-1, 0, dn);
  auto q_rope = apply_rope(q.narrow(-1, dn, dr), cos, sin, interleave);
  auto latent = split.copy(kv_a_layernorm(ckv.narrow(-1, 0, rank))).unsqueeze(1);  // [B, 1, T, rank]
  auto k_rope = apply_rope(split.copy(ckv.narrow(-1, rank, dr)).unsqueeze(1), cos, sin, interleave);  // [B, 1, T, dr]
  at::Tensor out;  // [B, H, T, dv]
  if (!cache) {
    auto kv = linear(kv_b_proj, latent.squeeze(1)).view({B, T, heads, dn + dv}).transpose(1, 2);
    auto k = at::cat({kv.narrow(-1, 0, dn), k_rope.expand({B, heads, T, dr})}, -1);
    out = attend(at::cat({q_nope, q_rope}, -1), k, kv.narrow(-1, dn, dv), mask, scale, false, is_training());
  } else {
    auto w = kv_b_proj->weight.view({heads, dn + dv, rank});
    auto q_lat = at::matmul(q_nope, w.narrow(1, 0, dn));            // [B, H, T, rank]
    auto qa = at::cat({q_lat, q_rope}, -1);
    auto lat = cache->decode_attention(layer, qa, latent, k_rope, scale, /*latent=*/true);  // [B, H, T, rank]
    if (!lat.defined()) {
      auto [c_all, r_all] = cache->append(layer, latent, k_rope);  // [B, 1, S, rank], [B, 1, S, dr]
      lat = attend(qa, at::cat({c_all, r_all}, -1), c_all, mask, scale, true, is_training());
    }
    out = at::matmul(lat, w.narrow(1, dn, dv).transpose(1, 2));     // [B, H, T, dv]
  }
  return row_linear(o_proj, out.transpose(1, 2).reshape({B, T, heads * dv}), split);
}

}  // namespace grpo::model::detail
