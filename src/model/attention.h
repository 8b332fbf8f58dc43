// Grouped-query self-attention (Llama/Qwen): column-parallel q/k/v split by heads over tp,
// optional per-head q/k RMSNorm (Qwen3), RoPE, a KV cache, row-parallel o_proj. attend() is the
// scaled-dot-product attention shared with multi-latent attention (mla.h).
#pragma once

#include <cstdint>
#include <optional>

#include <ATen/core/Tensor.h>
#include <torch/nn/modules/linear.h>

#include "norm.h"
#include "parallel_linear.h"

namespace grpo::model::detail {

// Scaled dot-product attention: causal (mask undefined) or with a bool mask [B, 1, T, S] (true =
// may attend); q [B, H, T, d], k/v [B, KV, S, d] (gqa: KV divides H). training: the model is in
// train mode (bf16 CPU forwards with few keys then run in fp32, attention.cpp).
at::Tensor attend(at::Tensor q, at::Tensor k, at::Tensor v, const at::Tensor& mask,
                  std::optional<double> scale, bool gqa, bool training);

struct AttentionImpl : torch::nn::Module {
  AttentionImpl(const ModelConfig& c, const Split& sp);
  // x [B, T, D]; cos/sin [B, 1, T, hd]; mask: undefined (causal, no padding) or bool
  // [B, 1, T, past+T] (true = may attend).
  // x: the block's stream after the norm (under sequence parallel, this rank's part)
  at::Tensor forward(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin,
                     const at::Tensor& mask, KVCache* cache, int64_t layer);
  int64_t heads, kv_heads, head_dim;
  Split split;
  torch::nn::Linear q_proj{nullptr}, k_proj{nullptr}, v_proj{nullptr}, o_proj{nullptr};
  RMSNorm q_norm{nullptr}, k_norm{nullptr};
};
TORCH_MODULE(Attention);

}  // namespace grpo::model::detail
