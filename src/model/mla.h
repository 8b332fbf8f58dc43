// Multi-head latent attention (DeepSeek-V2/V3; Megatron's multi_latent_attention): keys and values
// from a compressed latent plus one shared RoPE key; the cache holds only the latent, and
// generation absorbs kv_b_proj into the query and the output (mla.cpp).
#pragma once

#include <cstdint>

#include <ATen/core/Tensor.h>
#include <torch/nn/modules/linear.h>

#include "norm.h"
#include "parallel_linear.h"

namespace grpo::model::detail {

struct MLAImpl : torch::nn::Module {
  MLAImpl(const ModelConfig& c, const Split& sp);
  // x: the block's stream after the norm (under sequence parallel, this rank's part)
  at::Tensor forward(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin,
                     const at::Tensor& mask, KVCache* cache, int64_t layer);
  int64_t heads, dn, dr, dv, rank;
  bool interleave;
  Split split;
  double scale;
  torch::nn::Linear q_proj{nullptr}, q_a_proj{nullptr}, q_b_proj{nullptr}, kv_a_proj_with_mqa{nullptr},
      kv_b_proj{nullptr}, o_proj{nullptr};
  RMSNorm q_a_layernorm{nullptr}, kv_a_layernorm{nullptr};
};
TORCH_MODULE(MLA);

}  // namespace grpo::model::detail
