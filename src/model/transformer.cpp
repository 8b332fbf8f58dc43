// The transformer as LibTorch modules. Module tree mirrors Hugging Face's LlamaForCausalLM /
// DeepseekV3ForCausalLM:
//   model.embed_tokens, model.layers.N.{input_layernorm, self_attn.{q,k,v,o}_proj,
//   post_attention_layernorm, mlp.{gate,up,down}_proj}, model.norm, lm_head;
//   MLA: self_attn.{q_proj | q_a_proj, q_a_layernorm, q_b_proj}, kv_a_proj_with_mqa,
//        kv_a_layernorm, kv_b_proj, o_proj;
//   MoE: mlp.gate.{weight, e_score_correction_bias}, mlp.experts.{gate,up,down}_proj (stacked
//        [E, ...]; hf.cpp maps them to HF's per-expert tensors), mlp.shared_experts.*.
// Attention uses at::scaled_dot_product_attention (fused kernels when available) with native GQA.
//
// Tensor parallel (Megatron): each rank builds the layers at its share of the width (heads, MLP
// width, vocabulary); a replicated activation enters split layers through copy_to_group (its
// gradient summed over the group) and split partial results leave through reduce_from_group.
// Expert parallel: each rank holds E / ep routed experts; moe::expert_parallel_swiglu moves tokens.
#include "grpo/model/transformer.h"

#include <set>

#include <ATen/ATen.h>
#include <torch/csrc/autograd/autograd.h>
#include <torch/csrc/autograd/custom_function.h>
#include <torch/nn/module.h>
#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/modules/embedding.h>
#include <torch/nn/modules/linear.h>

#include "grpo/core/error.h"
#include "grpo/core/tensor_util.h"
#include "grpo/dist/parallel.h"
#include "grpo/model/moe.h"

namespace grpo::model {
namespace {

// bf16 attention of CPU training forwards with fewer keys than this runs in fp32 (attend()).
constexpr int64_t kCpuBf16AttentionMaxKeys = 192;

// Sequence parallel in the current forward: the residual stream split along the sequence over tp
// (set per forward by Transformer::forward; the modules read it through Split::seq).
struct SeqSplit {
  bool on = false;
  int64_t total = 0;  // the whole sequence length
};

// y = x W^T + b as PyTorch's nn.Linear computes it: ATen's linear, whose bias enters one fused
// addmm. The C++ frontend's Linear::forward does matmul and then += bias for 3-d inputs, two
// roundings, so its bf16 results differ from transformers' (hf_roundtrip.bf16_live.*).
at::Tensor linear(const torch::nn::Linear& l, const at::Tensor& x) { return at::linear(x, l->weight, l->bias); }

// The modules' view of the parallel layout.
struct Split {
  dist::Comm* tp = nullptr;
  dist::Comm* ep = nullptr;
  const SeqSplit* seq = nullptr;
  bool seq_on() const { return seq && seq->on; }
  // partial results of split layers: summed over tp (sequence parallel: each rank keeps its part)
  at::Tensor reduce(const at::Tensor& y) const {
    if (tp_size() == 1) return y;
    return seq_on() ? dist::reduce_scatter_sequence(y, 1, *tp) : dist::reduce_from_group(y, *tp);
  }
  // the whole sequence from this rank's part (sequence parallel), else x
  at::Tensor gather(const at::Tensor& x) const { return seq_on() ? dist::gather_sequence(x, 1, seq->total, *tp) : x; }
  // An input that only split layers consume: their partial gradients are summed over tp by
  // copy_to_group, or under sequence parallel by the gather's backward reduce-scatter (Megatron).
  at::Tensor into_split(const at::Tensor& x) const {
    return seq_on() ? dist::gather_sequence_for_split(x, 1, seq->total, *tp) : copy(x);
  }
  // Linears sharing one input x (under sequence parallel, this rank's part) applied to the whole
  // sequence, Megatron's way: only x's part is kept for backward. split_layers: column-parallel
  // layers (their partial input gradients summed over tp by copy_to_group, or by the gather's
  // reduce-scatter); else replicated layers (whole gradients on every rank).
  std::vector<at::Tensor> linears(const at::Tensor& x, const std::vector<torch::nn::Linear>& ls,
                                  bool split_layers = true) const {
    if (seq_on()) {
      std::vector<at::Tensor> w, b;
      for (const auto& l : ls) {
        w.push_back(l->weight);
        if (l->bias.defined()) b.push_back(l->bias);
      }
      return dist::gather_sequence_linears(x, 1, seq->total, w, b, *tp, split_layers);
    }
    auto xs = split_layers ? copy(x) : x;
    std::vector<at::Tensor> out;
    for (const auto& l : ls) out.push_back(linear(l, xs));
    return out;
  }
  // a replicated parameter applied to this rank's part of the sequence: gradients summed over tp
  at::Tensor seq_param(const at::Tensor& w) const { return seq_on() ? dist::copy_to_group(w, *tp) : w; }
  int64_t tp_size() const { return tp ? tp->size() : 1; }
  int64_t ep_size() const { return ep ? ep->size() : 1; }
  // n / tp, checked: `key` names the config value being split
  int64_t part(int64_t n, const char* key) const {
    GRPO_CHECK(n % tp_size() == 0, "tensor parallel: model.{} ({}) must be divisible by parallel.tp ({})", key,
               n, tp_size());
    return n / tp_size();
  }
  at::Tensor copy(const at::Tensor& x) const { return tp_size() > 1 ? dist::copy_to_group(x, *tp) : x; }
};

// Identity forward; backward multiplies the gradient by `scale`.
struct ScaleGradient : torch::autograd::Function<ScaleGradient> {
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& x, double scale) {
    ctx->saved_data["scale"] = scale;
    return x.view_as(x);
  }
  static torch::autograd::tensor_list backward(torch::autograd::AutogradContext* ctx,
                                               torch::autograd::tensor_list g) {
    return {g[0] * ctx->saved_data["scale"].toDouble(), at::Tensor()};
  }
};

// A row-parallel linear layer: partial products summed over the group, then the bias (once).
at::Tensor row_linear(torch::nn::Linear& l, const at::Tensor& x, const Split& s) {
  if (s.tp_size() == 1) return linear(l, x);
  auto y = s.reduce(at::linear(x, l->weight));
  return l->bias.defined() ? y + s.seq_param(l->bias) : y;
}

// RMSNorm as one autograd node with a closed-form backward (fewer saved tensors and kernel
// launches than the composite, which matters for small models on CPU):
//   r = rsqrt(mean(x^2) + eps), y = x r, out = w y
//   dx = r (g w - y mean(g w y)),   dw = sum over rows of g y
struct RMSNormFn : torch::autograd::Function<RMSNormFn> {
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& x,
                            const at::Tensor& w, double eps) {
    auto xf = x.to(at::promote_types(x.scalar_type(), at::kFloat));  // fp32 (or fp64) math
    auto r = at::rsqrt(xf.square().mean(-1, true) + eps);
    auto y = xf * r;
    ctx->save_for_backward({y, r, w});
    return (y.to(x.scalar_type()) * w);
  }
  static torch::autograd::tensor_list backward(torch::autograd::AutogradContext* ctx,
                                               torch::autograd::tensor_list grads) {
    auto saved = ctx->get_saved_variables();
    auto y = saved[0], r = saved[1], w = saved[2];
    auto g = grads[0].to(y.scalar_type());
    auto gw = g * w.to(y.scalar_type());
    auto dx = r * (gw - y * (gw * y).mean(-1, true));
    auto dw = (g * y).reshape({-1, y.size(-1)}).sum(0);
    return {dx.to(grads[0].scalar_type()), dw.to(w.scalar_type()), at::Tensor()};
  }
};

struct RMSNormImpl : torch::nn::Module {
  RMSNormImpl(int64_t dim, double eps) : eps(eps) {
    weight = register_parameter("weight", at::ones({dim}));
  }
  at::Tensor forward(const at::Tensor& x) { return RMSNormFn::apply(x, weight, eps); }
  // on the residual stream: under sequence parallel each rank normalises its part of the sequence
  at::Tensor forward_stream(const at::Tensor& x, const Split& s) { return RMSNormFn::apply(x, s.seq_param(weight), eps); }
  double eps;
  at::Tensor weight;
};
TORCH_MODULE(RMSNorm);

// RoPE in the rotate-half layout (Hugging Face Llama): out = x cos + rotate_half(x) sin with
// rotate_half([a, b]) = [-b, a]. One autograd node; its transpose gives the backward:
//   dx = g cos + [ (g sin)_2, -(g sin)_1 ]
at::Tensor rotate_half(const at::Tensor& x) {
  auto half = x.size(-1) / 2;
  return at::cat({-x.narrow(-1, half, half), x.narrow(-1, 0, half)}, -1);
}
struct RopeFn : torch::autograd::Function<RopeFn> {
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& x,
                            const at::Tensor& cos, const at::Tensor& sin) {
    ctx->save_for_backward({cos, sin});
    return x * cos + rotate_half(x) * sin;
  }
  static torch::autograd::tensor_list backward(torch::autograd::AutogradContext* ctx,
                                               torch::autograd::tensor_list grads) {
    auto saved = ctx->get_saved_variables();
    auto g = grads[0];
    auto gs = g * saved[1];
    auto half = gs.size(-1) / 2;
    auto rt = at::cat({gs.narrow(-1, half, half), -gs.narrow(-1, 0, half)}, -1);
    return {g * saved[0] + rt, at::Tensor(), at::Tensor()};
  }
};

// RoPE on `x` [.., d]; interleaved (DeepSeek): pairs (x0, x1), (x2, x3), .. each rotate by one
// frequency. De-interleaving to [x0, x2, .., x1, x3, ..] and rotating in the half layout gives
// exactly the reference's output layout (transformers' apply_rotary_pos_emb_interleave).
at::Tensor apply_rope(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin, bool interleave) {
  if (!interleave) return RopeFn::apply(x, cos, sin);
  auto d = x.size(-1);
  auto y = x.unflatten(-1, {d / 2, 2}).transpose(-1, -2).flatten(-2);
  return RopeFn::apply(y, cos, sin);
}

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

struct AttentionImpl : torch::nn::Module {
  AttentionImpl(const ModelConfig& c, const Split& sp)
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
  // x [B, T, D]; cos/sin [B, 1, T, hd]; mask: undefined (causal, no padding) or bool
  // [B, 1, T, past+T] (true = may attend).
  // x: the block's stream after the norm (under sequence parallel, this rank's part)
  at::Tensor forward(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin,
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
    q = RopeFn::apply(q, cos, sin);
    k = RopeFn::apply(k, cos, sin);
    if (cache) std::tie(k, v) = cache->append(layer, k, v);
    auto out = attend(q, k, v, mask, std::nullopt, kv_heads != heads, is_training());
    return row_linear(o_proj, out.transpose(1, 2).reshape({B, T, heads * head_dim}), split);
  }
  int64_t heads, kv_heads, head_dim;
  Split split;
  torch::nn::Linear q_proj{nullptr}, k_proj{nullptr}, v_proj{nullptr}, o_proj{nullptr};
  RMSNorm q_norm{nullptr}, k_norm{nullptr};
};
TORCH_MODULE(Attention);

struct MLPImpl : torch::nn::Module {
  MLPImpl(int64_t hidden, int64_t inter, bool bias, const Split& sp, const char* key) : split(sp) {
    inter = sp.part(inter, key);
    auto lin = [&](int64_t in, int64_t out) {
      return torch::nn::Linear(torch::nn::LinearOptions(in, out).bias(bias));
    };
    gate_proj = register_module("gate_proj", lin(hidden, inter));
    up_proj = register_module("up_proj", lin(hidden, inter));
    down_proj = register_module("down_proj", lin(inter, hidden));
  }
  // x: the block's stream after the norm (under sequence parallel, this rank's part)
  at::Tensor forward(const at::Tensor& x) {
    auto gu = split.linears(x, {gate_proj, up_proj});
    return row_linear(down_proj, at::silu(gu[0]) * gu[1], split);
  }
  // Without the final sum over the group (bias-free MLPs): this rank's partial output. `xs` has
  // been through copy_to_group already (the MoE's input, shared with its routed experts).
  at::Tensor partial(const at::Tensor& xs) {
    return at::linear(at::silu(linear(gate_proj, xs)) * linear(up_proj, xs), down_proj->weight);
  }
  Split split;
  torch::nn::Linear gate_proj{nullptr}, up_proj{nullptr}, down_proj{nullptr};
};
TORCH_MODULE(MLP);

// YaRN's attention temperature: 0.1 * mscale * ln(scale) + 1 (1 when not extending).
double yarn_mscale(double scale, double mscale) {
  return scale <= 1 ? 1.0 : 0.1 * mscale * std::log(scale) + 1.0;
}

// Multi-head latent attention (DeepSeek-V2/V3). Keys and values come from a compressed latent
// c = RMSNorm(W_dkv x) (kv_lora_rank wide) plus one RoPE key shared by all heads.
//  * without a cache (training, prefill of the reference): c is expanded to per-head K/V by
//    kv_b_proj and attention runs as usual;
//  * with a cache (generation): the cache holds only (c, k_rope) per token, and kv_b_proj is
//    absorbed into the query and the output ("weight absorption"):
//      q_lat = q_nope W_uk,  scores = q_lat c^T + q_rope k_rope^T,  out = (P c) W_uv^T,
//    which equals the expanded path exactly in real arithmetic.
struct MLAImpl : torch::nn::Module {
  MLAImpl(const ModelConfig& c, const Split& sp)
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
  // x: the block's stream after the norm (under sequence parallel, this rank's part)
  at::Tensor forward(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin,
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
      auto [c_all, r_all] = cache->append(layer, latent, k_rope);  // [B, 1, S, rank], [B, 1, S, dr]
      auto w = kv_b_proj->weight.view({heads, dn + dv, rank});
      auto q_lat = at::matmul(q_nope, w.narrow(1, 0, dn));            // [B, H, T, rank]
      auto lat = attend(at::cat({q_lat, q_rope}, -1), at::cat({c_all, r_all}, -1), c_all, mask, scale, true, is_training());
      out = at::matmul(lat, w.narrow(1, dn, dv).transpose(1, 2));     // [B, H, T, dv]
    }
    return row_linear(o_proj, out.transpose(1, 2).reshape({B, T, heads * dv}), split);
  }
  int64_t heads, dn, dr, dv, rank;
  bool interleave;
  Split split;
  double scale;
  torch::nn::Linear q_proj{nullptr}, q_a_proj{nullptr}, q_b_proj{nullptr}, kv_a_proj_with_mqa{nullptr},
      kv_b_proj{nullptr}, o_proj{nullptr};
  RMSNorm q_a_layernorm{nullptr}, kv_a_layernorm{nullptr};
};
TORCH_MODULE(MLA);

struct RouterImpl : torch::nn::Module {
  RouterImpl(int64_t experts, int64_t hidden) {
    weight = register_parameter("weight", at::zeros({experts, hidden}));
    // Not trained by gradients: moved by the aux-loss-free balancing rule (update_router_bias).
    e_score_correction_bias = register_parameter("e_score_correction_bias", at::zeros({experts}), false);
  }
  at::Tensor weight, e_score_correction_bias;
};
TORCH_MODULE(Router);

struct ExpertsImpl : torch::nn::Module {
  ExpertsImpl(int64_t experts, int64_t hidden, int64_t inter) {
    gate_proj = register_parameter("gate_proj", at::zeros({experts, inter, hidden}));
    up_proj = register_parameter("up_proj", at::zeros({experts, inter, hidden}));
    down_proj = register_parameter("down_proj", at::zeros({experts, hidden, inter}));
  }
  at::Tensor gate_proj, up_proj, down_proj;
};
TORCH_MODULE(Experts);

// DeepSeekMoE: shared experts + routed experts through the moe.h ops.
struct MoEImpl : torch::nn::Module {
  MoEImpl(const ModelConfig& c, const Split& sp) : split(sp) {
    GRPO_CHECK(c.n_routed_experts % sp.ep_size() == 0,
               "expert parallel: model.n_routed_experts ({}) must be divisible by parallel.ep ({})",
               c.n_routed_experts, sp.ep_size());
    rc.num_experts = c.n_routed_experts;
    rc.top_k = c.num_experts_per_tok;
    rc.n_group = c.n_group;
    rc.topk_group = c.topk_group;
    rc.norm_topk_prob = c.norm_topk_prob;
    rc.routed_scaling_factor = c.routed_scaling_factor;
    gate = register_module("gate", Router(c.n_routed_experts, c.hidden_size));
    // routed experts: split over ep (whole experts) and over tp (each expert's intermediate width)
    experts = register_module("experts", Experts(c.n_routed_experts / sp.ep_size(), c.hidden_size,
                                                 sp.part(c.moe_intermediate_size, "moe_intermediate_size")));
    if (c.n_shared_experts > 0)
      shared_experts = register_module(
          "shared_experts", MLP(c.hidden_size, c.moe_intermediate_size * c.n_shared_experts, false, sp,
                                "moe_intermediate_size x n_shared_experts"));
    load = at::zeros({c.n_routed_experts}, at::kLong);
  }
  // x: the block's residual stream after the norm (under sequence parallel, this rank's part).
  at::Tensor forward(const at::Tensor& x_in) {
    // Under tp each rank computes a slice of every expert's intermediate width, so the expert
    // outputs are partial sums, summed once at the end with the shared experts' partial sums, and
    // their input gradients are partial sums. The combine weights enter through copy_to_group, so
    // the router (replicated, fp32 as in transformers) gets whole gradients on every rank, as in
    // one process. The experts' input:
    //  * tp alone: enters through copy_to_group (one all-reduce of its gradient for the routed and
    //    the shared experts); the router reads it as is;
    //  * sequence parallel: the whole sequence comes from the gather whose backward reduce-scatters
    //    (Megatron; half the bytes of that all-reduce). Every rank's router input gradient is
    //    whole, so it enters that sum weighed 1/tp.
    const bool seq = split.seq_on();
    auto x = seq ? split.into_split(x_in) : x_in;
    const auto H = x.size(-1);
    auto router_in = seq ? ScaleGradient::apply(x, 1.0 / double(split.tp_size())) : x;
    auto logits = at::linear(router_in.reshape({-1, H}).to(at::kFloat), gate->weight.to(at::kFloat));
    auto r = moe::route(logits, gate->e_score_correction_bias.to(at::kFloat), rc);
    auto plan = moe::plan_dispatch(r.indices, rc.num_experts);
    auto xc = seq ? x : split.copy(x);
    auto xp = moe::permute(xc.reshape({-1, H}), plan);
    auto y = split.ep_size() > 1
                 ? moe::expert_parallel_swiglu(xp, experts->gate_proj, experts->up_proj, experts->down_proj,
                                               plan.counts, *split.ep)
                 : moe::grouped_swiglu(xp, experts->gate_proj, experts->up_proj, experts->down_proj,
                                       plan.counts);
    // (the fp32 router's weights: their gradient summed in the wider of fp32 and the model's dtype)
    auto w = split.copy(r.weights.to(at::promote_types(at::kFloat, x.scalar_type())));
    auto out = moe::unpermute(y, plan, w).view(x.sizes());
    // training forwards only (a recomputed block counts in its first, gradient-free pass); real tokens only
    const bool training = is_training() && (at::GradMode::is_enabled() || phase == Phase::kFirstPass);
    if (training && phase != Phase::kRecompute) {
      auto real = sequence.ge(0).nonzero().squeeze(1);
      load += at::bincount(r.indices.index_select(0, real).reshape({-1}), {}, rc.num_experts);
    }
    if (training && balance_coef > 0 && x.numel() > 0) {
      auto l = moe::sequence_balance_loss(r.indices, r.scores, sequence, num_sequences, rc.top_k) * balance_coef;
      if (phase == Phase::kNone) balance_loss = balance_loss.defined() ? balance_loss + l : l;
      else block_balance_loss = l;  // handed to the recomputation (BlockCheckpoint)
    }
    last = {r.indices.detach(), r.weights.detach(), at::Tensor()};
    if (shared_experts) out = out + shared_experts->partial(xc);
    return split.reduce(out);
  }
  moe::RouterConfig rc;
  Split split;
  Router gate{nullptr};
  Experts experts{nullptr};
  MLP shared_experts{nullptr};
  at::Tensor load;          // [E] slots routed to each expert in training forwards since reset
  at::Tensor sequence;      // [B*T]: the sequence of each token of the current forward, -1 = padding
  int64_t num_sequences = 0;
  // Activation recomputation: the block's gradient-free first pass, its recomputation in backward,
  // or neither. The balance loss of either pass goes to block_balance_loss instead.
  enum class Phase { kNone, kFirstPass, kRecompute } phase = Phase::kNone;
  at::Tensor block_balance_loss;
  double balance_coef = 0;  // sequence-wise balance loss coefficient (alpha)
  at::Tensor balance_loss;  // accumulated until taken
  moe::Routing last;        // routing of the latest forward
};
TORCH_MODULE(MoE);

struct BlockImpl : torch::nn::Module {
  BlockImpl(const ModelConfig& c, int64_t index, const Split& sp) : split(sp) {
    input_layernorm = register_module("input_layernorm", RMSNorm(c.hidden_size, c.rms_norm_eps));
    if (c.is_mla()) mla = register_module("self_attn", MLA(c, sp));
    else self_attn = register_module("self_attn", Attention(c, sp));
    post_attention_layernorm =
        register_module("post_attention_layernorm", RMSNorm(c.hidden_size, c.rms_norm_eps));
    if (c.is_moe_layer(index)) moe = register_module("mlp", MoE(c, sp));
    else mlp = register_module("mlp", MLP(c.hidden_size, c.intermediate_size, c.mlp_bias, sp, "intermediate_size"));
  }
  // x: the residual stream (under sequence parallel, this rank's part of the sequence)
  at::Tensor forward(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin,
                     const at::Tensor& mask, KVCache* cache, int64_t layer) {
    // Under sequence parallel the attention and the MLP gather the whole sequence themselves:
    // dense blocks' and MLA's projections through Split::linears (only this rank's part kept for
    // backward; split layers' gradients reduce-scattered; MLA's replicated latent projections get
    // whole gradients, copy_to_group'd where the latents enter split layers, as they are narrower
    // than the stream), the MoE in MoEImpl::forward.
    auto a = input_layernorm->forward_stream(x, split);
    auto h = x + (mla ? mla->forward(a, cos, sin, mask, cache, layer)
                      : self_attn->forward(a, cos, sin, mask, cache, layer));
    auto m = post_attention_layernorm->forward_stream(h, split);
    return h + (moe ? moe->forward(m) : mlp(m));
  }
  Split split;
  RMSNorm input_layernorm{nullptr}, post_attention_layernorm{nullptr};
  Attention self_attn{nullptr};
  MLA mla{nullptr};
  MLP mlp{nullptr};
  MoE moe{nullptr};
};
TORCH_MODULE(Block);

// Activation recomputation of one block (reentrant, as torch.utils.checkpoint): forward runs the
// block without building a graph and keeps only its input; backward runs it again with the graph
// and back-propagates through it (parameter gradients accumulate directly, their hooks fire). The
// collectives of tp/ep run again in backward, in the same order on every rank. An MoE block's
// balance loss is a second output, so its gradient reaches the recomputation.
struct BlockCheckpoint : torch::autograd::Function<BlockCheckpoint> {
  // (block output, balance loss or an empty tensor)
  static std::pair<at::Tensor, at::Tensor> run(BlockImpl* b, const at::Tensor& x, const at::Tensor& cos,
                                               const at::Tensor& sin, const at::Tensor& mask, int64_t layer,
                                               MoEImpl::Phase phase) {
    if (b->moe) b->moe->phase = phase, b->moe->block_balance_loss = at::Tensor();
    auto out = b->forward(x, cos, sin, mask, nullptr, layer);
    at::Tensor bl;
    if (b->moe) {
      bl = b->moe->block_balance_loss;
      b->moe->phase = MoEImpl::Phase::kNone, b->moe->block_balance_loss = at::Tensor();
    }
    return {out, bl};
  }
  static torch::autograd::variable_list forward(torch::autograd::AutogradContext* ctx, const at::Tensor& x,
                                                const at::Tensor& cos, const at::Tensor& sin, const at::Tensor& mask,
                                                int64_t block, int64_t layer) {
    auto* b = reinterpret_cast<BlockImpl*>(block);
    const at::Tensor m = mask.dim() == 1 ? at::Tensor() : mask;  // the empty sentinel: no mask
    at::Tensor out, bl;
    {
      at::NoGradGuard ng;
      std::tie(out, bl) = run(b, x, cos, sin, m, layer, MoEImpl::Phase::kFirstPass);
    }
    ctx->save_for_backward({x});
    ctx->saved_data["cos"] = cos;
    ctx->saved_data["sin"] = sin;
    ctx->saved_data["mask"] = m;
    ctx->saved_data["block"] = block;
    ctx->saved_data["layer"] = layer;
    ctx->saved_data["has_bl"] = bl.defined();
    ctx->saved_data["seq_on"] = b->split.seq_on();
    ctx->saved_data["seq_total"] = b->split.seq ? b->split.seq->total : int64_t(0);
    if (b->moe) {  // this forward's token-to-sequence map, for the recomputation
      ctx->saved_data["sequence"] = b->moe->sequence;
      ctx->saved_data["num_sequences"] = b->moe->num_sequences;
    }
    return {out, bl.defined() ? bl : at::zeros({}, out.options())};
  }
  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    auto x = ctx->get_saved_variables()[0].detach().requires_grad_(true);
    auto* b = reinterpret_cast<BlockImpl*>(ctx->saved_data["block"].toInt());
    if (b->moe) {
      b->moe->sequence = ctx->saved_data["sequence"].toTensor();
      b->moe->num_sequences = ctx->saved_data["num_sequences"].toInt();
    }
    at::Tensor out, bl;
    // the sequence split of the forward this recomputes (another forward may have run since)
    auto* seq = const_cast<SeqSplit*>(b->split.seq);
    const SeqSplit now = seq ? *seq : SeqSplit{};
    if (seq) seq->on = ctx->saved_data["seq_on"].toBool(), seq->total = ctx->saved_data["seq_total"].toInt();
    {
      at::AutoGradMode on(true);
      std::tie(out, bl) = run(b, x, ctx->saved_data["cos"].toTensor(), ctx->saved_data["sin"].toTensor(),
                              ctx->saved_data["mask"].toTensor(), ctx->saved_data["layer"].toInt(),
                              MoEImpl::Phase::kRecompute);
    }
    std::vector<at::Tensor> outs{out}, gs{grads[0].defined() ? grads[0] : at::zeros_like(out)};
    if (ctx->saved_data["has_bl"].toBool() && grads[1].defined() && bl.defined()) {
      outs.push_back(bl);
      gs.push_back(grads[1]);
    }
    if (seq) *seq = now;
    torch::autograd::backward(outs, gs);
    return {x.grad(), at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor()};
  }
};

struct BackboneImpl : torch::nn::Module {
  BackboneImpl(const ModelConfig& c, const Split& sp) {
    embed_tokens = register_module("embed_tokens",
                                   torch::nn::Embedding(sp.part(c.vocab_size, "vocab_size"), c.hidden_size));
    layers = register_module("layers", torch::nn::ModuleList());
    for (int64_t i = 0; i < c.num_hidden_layers; ++i) layers->push_back(Block(c, i, sp));
    norm = register_module("norm", RMSNorm(c.hidden_size, c.rms_norm_eps));
  }
  torch::nn::Embedding embed_tokens{nullptr};
  torch::nn::ModuleList layers{nullptr};
  RMSNorm norm{nullptr};
};
TORCH_MODULE(Backbone);

}  // namespace

// How a parameter is split: along `dim` into the parts of `group` (tp or ep).
struct SliceSpec {
  int64_t dim = 0;
  dist::Comm* group = nullptr;
};

struct Transformer::Impl : torch::nn::Module {
  explicit Impl(const ModelConfig& c, const Split& sp) : config(c), split(sp) {
    // LibTorch's layer constructors draw their own (discarded) initial values, as many as their
    // size: the generator is rewound after building, so init_weights draws the same numbers for
    // every layout
    auto gen = at::detail::getDefaultCPUGenerator();
    auto rng_state = gen.get_state();
    model = register_module("model", Backbone(c, sp));
    if (!c.tie_word_embeddings) {
      lm_head = register_module(
          "lm_head",
          torch::nn::Linear(torch::nn::LinearOptions(c.hidden_size, sp.part(c.vocab_size, "vocab_size")).bias(false)));
    }
    find_slices();
    // RoPE table [max_pos, rope_dim] (rotate-half layout, as Hugging Face), YaRN-scaled if set.
    auto hd = c.rope_dim();
    auto pos_freqs = at::pow(c.rope_theta, at::arange(0, hd, 2, at::kDouble) / hd);
    auto inv_freq = 1.0 / pos_freqs;
    double attention_factor = 1.0;
    if (c.rope_type == "yarn") {
      // transformers' _compute_yarn_parameters (truncate = true)
      auto correction_dim = [&](double rotations) {
        return hd * std::log(c.rope_original_max_position_embeddings / (rotations * 2 * M_PI)) /
               (2 * std::log(c.rope_theta));
      };
      double low = std::max(std::floor(correction_dim(c.rope_beta_fast)), 0.0);
      double high = std::min(std::ceil(correction_dim(c.rope_beta_slow)), double(hd - 1));
      if (low == high) high += 0.001;
      auto ramp = at::clamp((at::arange(hd / 2, at::kDouble) - low) / (high - low), 0, 1);
      auto extrapolation = 1 - ramp;
      inv_freq = (1.0 / (c.rope_factor * pos_freqs)) * (1 - extrapolation) + inv_freq * extrapolation;
      attention_factor = (c.rope_mscale != 0 && c.rope_mscale_all_dim != 0)
                             ? yarn_mscale(c.rope_factor, c.rope_mscale) /
                                   yarn_mscale(c.rope_factor, c.rope_mscale_all_dim)
                             : yarn_mscale(c.rope_factor, 1.0);
    }
    auto t = at::arange(c.max_position_embeddings, at::kDouble);
    auto freqs = at::outer(t, inv_freq);
    auto emb = at::cat({freqs, freqs}, -1);
    cos_table = register_buffer("rope_cos", (emb.cos() * attention_factor).to(at::kFloat));
    sin_table = register_buffer("rope_sin", (emb.sin() * attention_factor).to(at::kFloat));
    gen.set_state(rng_state);
    init_weights();
  }
  // Which parameters are split, by their (Hugging Face) names: column-parallel outputs along dim
  // 0, row-parallel inputs along dim 1, the vocabulary along dim 0, routed experts along dim 0 over
  // ep and along their intermediate width over tp.
  void find_slices() {
    auto ends = [](const std::string& n, const std::string& tail) {
      return n.size() >= tail.size() && n.compare(n.size() - tail.size(), tail.size(), tail) == 0;
    };
    for (auto& p : named_parameters()) {
      const auto& n = p.key();
      if (n.find(".mlp.experts.") != std::string::npos) {  // [experts, inter, hidden] / [experts, hidden, inter]
        expert_names.insert(n);
        if (split.ep_size() > 1) slices[n].push_back({0, split.ep});
        if (split.tp_size() > 1) slices[n].push_back({ends(n, "down_proj") ? 2 : 1, split.tp});
        continue;
      }
      if (split.tp_size() == 1) continue;
      if (n == "model.embed_tokens.weight" || n == "lm_head.weight") {
        slices[n] = {{0, split.tp}};
        continue;
      }
      for (const char* col : {"q_proj", "k_proj", "v_proj", "q_b_proj", "kv_b_proj", "gate_proj", "up_proj"})
        if (ends(n, std::string(".") + col + ".weight") || ends(n, std::string(".") + col + ".bias"))
          slices[n] = {{0, split.tp}};
      for (const char* row : {"o_proj", "down_proj"})
        if (ends(n, std::string(".") + row + ".weight")) slices[n] = {{1, split.tp}};
    }
  }
  std::vector<int64_t> full_shape(const std::string& name, const at::Tensor& local) const {
    auto shape = local.sizes().vec();
    auto it = slices.find(name);
    if (it != slices.end())
      for (const auto& sl : it->second) shape[size_t(sl.dim)] *= sl.group->size();
    return shape;
  }
  at::Tensor slice_of(const std::string& name, const at::Tensor& full) const {
    auto it = slices.find(name);
    if (it == slices.end()) return full;
    auto t = full;
    for (const auto& sl : it->second) {
      auto part = dist::even_shard(t.size(sl.dim), sl.group->size(), sl.group->rank());
      t = t.narrow(sl.dim, part.begin, part.size);
    }
    return t;
  }
  void init_weights() {
    at::NoGradGuard g;
    double std = config.initializer_range;
    for (auto& p : named_parameters()) {
      const auto& name = p.key();
      if (name.find("norm") != std::string::npos) continue;  // RMSNorm weights stay 1
      if (name.find("e_score_correction_bias") != std::string::npos) {
        p.value().zero_();
        continue;
      }
      if (name.size() >= 5 && name.compare(name.size() - 5, 5, ".bias") == 0) {
        p.value().zero_();
        continue;
      }
      if (!slices.count(name)) {
        p.value().normal_(0.0, std);
        continue;
      }
      // the whole tensor is drawn and this rank keeps its slice: every layout starts alike
      auto full = at::empty(full_shape(name, p.value()), p.value().options()).normal_(0.0, std);
      p.value().copy_(slice_of(name, full));
    }
  }
  ModelConfig config;
  Split split;
  std::map<std::string, std::vector<SliceSpec>> slices;  // a tensor may be split along two dims
  int64_t vocab_limit = 0;  // 0: the whole vocabulary
  bool recompute = false;   // activation recomputation per block in training forwards
  bool sequence_parallel = false;
  std::shared_ptr<SeqSplit> seq;  // the current forward's sequence split (Split::seq points here)
  std::set<std::string> expert_names;
  Backbone model{nullptr};
  torch::nn::Linear lm_head{nullptr};
  at::Tensor cos_table, sin_table;
};

Transformer::Transformer(const ModelConfig& config, const Parallel& parallel)
    : config_(config), parallel_(parallel) {
  GRPO_CHECK(config.vocab_size > 0, "model.vocab_size must be set (found {})", config.vocab_size);
  auto seq = std::make_shared<SeqSplit>();
  impl_ = std::make_shared<Impl>(config, Split{parallel.tp, parallel.ep, seq.get()});
  impl_->seq = seq;
}

Transformer::~Transformer() = default;

at::Tensor Transformer::forward(const at::Tensor& input_ids, const at::Tensor& positions,
                                const at::Tensor& attention_mask, KVCache* cache) {
  auto& m = *impl_;
  const int64_t B = input_ids.size(0), T = input_ids.size(1);
  const int64_t past = cache ? cache->length() : 0;
  GRPO_CHECK(past + T <= config_.max_position_embeddings || positions.defined(),
             "sequence of {} tokens is longer than model.max_position_embeddings {}", past + T,
             config_.max_position_embeddings);
  at::Tensor pos = positions.defined()
                       ? positions
                       : at::arange(past, past + T, input_ids.options()).unsqueeze(0).expand({B, T});
  GRPO_CHECK(pos.numel() == 0 || pos.max().item<int64_t>() < config_.max_position_embeddings,
             "position {} is beyond model.max_position_embeddings {}", pos.max().item<int64_t>(),
             config_.max_position_embeddings);
  // RoPE tables in the model's dtype (as transformers does), so bf16 activations stay bf16
  const auto dt = m.model->embed_tokens->weight.scalar_type();
  auto cos = m.cos_table.index_select(0, pos.reshape(-1)).view({B, 1, T, m.cos_table.size(1)}).to(dt);
  auto sin = m.sin_table.index_select(0, pos.reshape(-1)).view({B, 1, T, m.cos_table.size(1)}).to(dt);

  // Boolean mask [B, 1, T, past+T] unless the plain causal fused path applies: no mask, or (no
  // cache) padding only at the ends of rows, which no real token attends to causally (the mask
  // still marks the real tokens for the MoE statistics below).
  bool padding_ends_rows = false;
  if (attention_mask.defined() && past == 0 && attention_mask.scalar_type() == at::kBool &&
      attention_mask.dim() == 2 && attention_mask.size(1) == T)
    padding_ends_rows = T < 2 || !(attention_mask.narrow(1, 0, T - 1).logical_not() & attention_mask.narrow(1, 1, T - 1))
                                      .any()
                                      .item<bool>();
  at::Tensor mask;
  if ((attention_mask.defined() && !padding_ends_rows) || past > 0) {
    const int64_t S = past + T;
    auto q_idx = at::arange(past, S, input_ids.options()).view({T, 1});
    auto k_idx = at::arange(0, S, input_ids.options()).view({1, S});
    auto causal = k_idx.le(q_idx);  // [T, S]
    mask = causal.view({1, 1, T, S}).expand({B, 1, T, S});
    if (attention_mask.defined()) {
      GRPO_CHECK(attention_mask.dim() == 2 && attention_mask.size(0) == B && attention_mask.size(1) == S,
                 "attention_mask must be [batch, past + seq] = [{}, {}], found {}", B, S,
                 attention_mask.sizes());
      auto self = k_idx.eq(q_idx).view({1, 1, T, S});  // padded queries see themselves
      if (attention_mask.scalar_type() == at::kBool) {
        mask = (mask & attention_mask.view({B, 1, 1, S})) | self;
      } else {  // segment ids (packed sequences): attend within the own segment; 0 = padding
        auto seg = attention_mask.to(at::kLong);
        auto k_seg = seg.view({B, 1, 1, S});
        auto q_seg = seg.narrow(1, past, T).view({B, 1, T, 1});
        mask = (mask & k_seg.eq(q_seg) & k_seg.gt(0)) | self;
      }
    }
  }
  // Sequence parallel (training and full-sequence forwards; not cached decoding): from the
  // embedding's reduce-scatter to the final norm's gather, each tp rank holds its part of the
  // sequence of the residual stream.
  m.seq->on = m.sequence_parallel && m.split.tp_size() > 1 && !cache && T >= m.split.tp_size();
  m.seq->total = T;
  at::Tensor h;
  if (m.split.tp_size() == 1) {
    h = m.model->embed_tokens(input_ids);
  } else {  // vocab-parallel: ids outside this rank's rows contribute zeros, summed over the group
    const auto& w = m.model->embed_tokens->weight;
    const int64_t v0 = w.size(0) * m.split.tp->rank();
    auto local = input_ids - v0;
    auto in = local.ge(0) & local.lt(w.size(0));
    auto e = at::embedding(w, local.clamp(0, w.size(0) - 1)) * in.unsqueeze(-1).to(w.scalar_type());
    h = m.split.reduce(e);
  }
  // MoE statistics (expert load, balance loss: training forwards only) count the tokens the mask
  // marks real, per sequence (a row, or a segment of a packed row), so they do not depend on how
  // rows were batched
  at::Tensor sequence;
  int64_t num_sequences = B;
  if (config_.n_routed_experts > 0 && is_training()) {
    sequence = at::arange(B, input_ids.options().dtype(at::kLong)).unsqueeze(1).expand({B, T}).reshape({-1});
    if (attention_mask.defined()) {
      auto q = attention_mask.narrow(1, past, T);
      if (q.scalar_type() == at::kBool) {
        sequence = at::where(q.reshape({-1}), sequence, -1);
      } else {  // segment ids: one sequence per (row, segment); segment 0 is padding
        auto seg = q.to(at::kLong).reshape({-1});
        const int64_t span = seg.max().item<int64_t>() + 1;
        auto [uniq, inverse, counts] = at::_unique2(sequence * span + seg, /*sorted=*/true, /*return_inverse=*/true);
        auto is_real = uniq.remainder(span).ne(0).to(at::kLong);
        sequence = at::where(seg.gt(0), (is_real.cumsum(0) - 1).index_select(0, inverse), -1);
        num_sequences = is_real.sum().item<int64_t>();
      }
    }
  }
  int64_t layer = 0;
  for (const auto& mod : *m.model->layers) {
    auto* block = mod->as<BlockImpl>();
    if (block->moe) block->moe->sequence = sequence, block->moe->num_sequences = num_sequences;
    if (m.recompute && !cache && is_training() && at::GradMode::is_enabled() && h.requires_grad()) {
      // (an autograd function's tensor arguments must be defined: no mask is an empty tensor)
      auto outs = BlockCheckpoint::apply(h, cos, sin, mask.defined() ? mask : at::empty({0}, at::kBool),
                                         reinterpret_cast<int64_t>(block), layer++);
      h = outs[0];
      if (block->moe && block->moe->balance_coef > 0 && B * T > 0) {
        auto& acc = block->moe->balance_loss;
        acc = acc.defined() ? acc + outs[1] : outs[1];
      }
    } else {
      h = block->forward(h, cos, sin, mask, cache, layer++);
    }
  }
  if (cache) cache->commit(T);
  auto out = m.split.gather(m.model->norm->forward_stream(h, m.split));
  m.seq->on = false;
  return out;
}

at::Tensor Transformer::lm_head_weight() const {
  return impl_->lm_head ? impl_->lm_head->weight : impl_->model->embed_tokens->weight;
}

at::Tensor Transformer::logits(const at::Tensor& hidden) const {
  auto z = at::matmul(hidden, lm_head_weight().t()).to(at::kFloat);
  if (impl_->split.tp_size() > 1) z = dist::gather_last_dim(z, *impl_->split.tp);
  return vocab_limit() < z.size(-1) ? z.narrow(-1, 0, vocab_limit()) : z;
}

void Transformer::set_vocab_limit(int64_t n) {
  GRPO_CHECK(n >= 0 && n <= config_.vocab_size, "vocabulary limit {} is outside [0, model.vocab_size {}]", n,
             config_.vocab_size);
  impl_->vocab_limit = n;
}
int64_t Transformer::vocab_limit() const { return impl_->vocab_limit > 0 ? impl_->vocab_limit : config_.vocab_size; }

TokenLogProbs Transformer::token_logprobs(const at::Tensor& hidden, const at::Tensor& targets,
                                          const LogProbOptions& options) const {
  const auto& sp = impl_->split;
  auto w = lm_head_weight();
  const int64_t limit = vocab_limit();
  if (sp.tp_size() == 1) return model::token_logprobs(hidden, limit < w.size(0) ? w.narrow(0, 0, limit) : w, targets, options);
  const int64_t v0 = w.size(0) * sp.tp->rank();
  const int64_t rows = std::clamp<int64_t>(limit - v0, 0, w.size(0));
  return token_logprobs_vocab_parallel(hidden, w.narrow(0, 0, rows), targets, v0, limit, *sp.tp, options);
}

std::unique_ptr<KVCache> Transformer::make_cache(int64_t batch, int64_t capacity) const {
  auto w = lm_head_weight();
  if (config_.is_mla())  // the compressed latent: (c_kv, k_rope) per token, one "head"
    return std::make_unique<StaticKVCache>(config_.num_hidden_layers, batch, 1, capacity,
                                           config_.kv_lora_rank, w.options(), config_.qk_rope_head_dim);
  return std::make_unique<StaticKVCache>(config_.num_hidden_layers, batch,
                                         config_.num_key_value_heads / impl_->split.tp_size(), capacity,
                                         config_.resolved_head_dim(), w.options());
}

std::vector<std::pair<std::string, at::Tensor>> Transformer::named_parameters() const {
  std::vector<std::pair<std::string, at::Tensor>> out;
  for (const auto& p : impl_->named_parameters(true)) out.emplace_back(p.key(), p.value());
  return out;
}

std::vector<at::Tensor> Transformer::parameters() const { return impl_->parameters(true); }

int64_t Transformer::num_parameters() const {
  int64_t n = 0;
  for (const auto& p : parameters()) n += p.numel();
  return n;
}

std::vector<std::pair<std::string, at::Tensor>> Transformer::full_parameters() const {
  std::vector<std::pair<std::string, at::Tensor>> out;
  for (auto& [name, p] : named_parameters()) out.emplace_back(name, gather_full(name, p));
  return out;
}

at::Tensor Transformer::gather_full(const std::string& name, const at::Tensor& local) const {
  auto it = impl_->slices.find(name);
  if (it == impl_->slices.end()) return local;
  auto t = local;
  for (auto sl = it->second.rbegin(); sl != it->second.rend(); ++sl) t = dist::gather_dim(t, sl->dim, *sl->group);
  return t;
}

at::Tensor Transformer::local_slice(const std::string& name, const at::Tensor& full) const {
  return impl_->slice_of(name, full);
}

bool Transformer::is_expert_parameter(const std::string& name) const { return impl_->expert_names.count(name) > 0; }

void Transformer::load_parameters(const std::vector<std::pair<std::string, at::Tensor>>& tensors,
                                  const std::string& origin) {
  std::map<std::string, at::Tensor> by_name(tensors.begin(), tensors.end());
  at::NoGradGuard g;
  std::vector<std::string> missing;
  for (auto& [name, p] : named_parameters()) {
    auto it = by_name.find(name);
    if (it == by_name.end()) {
      missing.push_back(name);
      continue;
    }
    auto whole = impl_->full_shape(name, p);
    GRPO_CHECK(it->second.sizes() == at::IntArrayRef(whole), "{}: tensor '{}' has shape {}, the model expects {}",
               origin, name, it->second.sizes(), at::IntArrayRef(whole));
    p.copy_(impl_->slice_of(name, it->second));
    by_name.erase(it);
  }
  GRPO_CHECK(missing.empty(), "{}: missing tensors: {}", origin, fmt::join(missing, ", "));
}

void Transformer::copy_from(const Transformer& other) {
  auto mine = named_parameters(), theirs = other.named_parameters();
  GRPO_CHECK(mine.size() == theirs.size(), "model copy: {} parameters vs {}", theirs.size(), mine.size());
  at::NoGradGuard g;
  for (size_t i = 0; i < mine.size(); ++i) {
    GRPO_CHECK(mine[i].first == theirs[i].first && mine[i].second.sizes() == theirs[i].second.sizes(),
               "model copy: '{}' {} does not match '{}' {}", theirs[i].first, theirs[i].second.sizes(),
               mine[i].first, mine[i].second.sizes());
    mine[i].second.copy_(theirs[i].second);
  }
}

namespace {
MoEImpl* moe_of(torch::nn::Module& model, int64_t layer) {
  auto& layers = *static_cast<Transformer::Impl&>(model).model->layers;
  GRPO_CHECK(layer >= 0 && layer < int64_t(layers.size()), "layer {} out of range", layer);
  auto* b = layers[layer]->as<BlockImpl>();
  GRPO_CHECK(b->moe, "layer {} is not an MoE layer", layer);
  return b->moe.get();
}
}  // namespace

std::vector<int64_t> Transformer::moe_layers() const {
  std::vector<int64_t> out;
  for (int64_t l = 0; l < config_.num_hidden_layers; ++l)
    if (config_.is_moe_layer(l)) out.push_back(l);
  return out;
}

moe::Routing Transformer::last_routing(int64_t layer) const { return moe_of(*impl_, layer)->last; }

at::Tensor Transformer::expert_load(int64_t layer) const { return moe_of(*impl_, layer)->load.clone(); }

void Transformer::set_expert_load(int64_t layer, const at::Tensor& load) {
  auto& l = moe_of(*impl_, layer)->load;
  GRPO_CHECK(load.sizes() == l.sizes(), "set_expert_load: {} counts for {} experts", load.numel(), l.numel());
  l.copy_(load);
}

void Transformer::reset_expert_load() {
  for (auto l : moe_layers()) moe_of(*impl_, l)->load.zero_();
}

void Transformer::update_router_bias(double rate) {
  for (auto l : moe_layers()) {
    auto* m = moe_of(*impl_, l);
    if (rate > 0) moe::update_bias(m->gate->e_score_correction_bias, m->load, rate);
    m->load.zero_();
  }
}

void Transformer::to(const at::Device& device) {
  impl_->to(device);  // parameters (in place: references to them stay valid) and the RoPE tables
  for (auto l : moe_layers()) {
    auto& load = moe_of(*impl_, l)->load;
    load = load.to(device);
  }
}

at::Device Transformer::device() const { return impl_->model->embed_tokens->weight.device(); }

void Transformer::set_recompute(bool on) { impl_->recompute = on; }
void Transformer::set_sequence_parallel(bool on) { impl_->sequence_parallel = on; }
bool Transformer::recompute() const { return impl_->recompute; }

dist::Comm* Transformer::lockstep_group() const {
  return parallel_.ep && parallel_.ep->size() > 1 ? parallel_.ep : nullptr;
}

void Transformer::idle_forward() {
  if (!lockstep_group()) return;
  at::NoGradGuard ng;
  auto none = at::zeros({0, 1}, at::TensorOptions(device()).dtype(at::kLong));
  forward(none, none, at::ones({0, 1}, at::TensorOptions(device()).dtype(at::kBool)));
}

void Transformer::set_balance_loss_coef(double alpha) {
  for (auto l : moe_layers()) moe_of(*impl_, l)->balance_coef = alpha;
}

at::Tensor Transformer::take_balance_loss() {
  at::Tensor total;
  for (auto l : moe_layers()) {
    auto* m = moe_of(*impl_, l);
    if (!m->balance_loss.defined()) continue;
    total = total.defined() ? total + m->balance_loss : m->balance_loss;
    m->balance_loss = at::Tensor();
  }
  return total;
}

void Transformer::train(bool on) { impl_->train(on); }
bool Transformer::is_training() const { return impl_->is_training(); }

}  // namespace grpo::model
