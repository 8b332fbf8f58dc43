// One decoder layer (Megatron's transformer_layer): RMSNorm -> attention (GQA or MLA) -> residual
// -> RMSNorm -> MLP (SwiGLU or MoE) -> residual, named as Hugging Face's model.layers.N; and its
// activation recomputation (recompute_block, block.cpp).
#pragma once

#include <cstdint>
#include <vector>

#include <ATen/core/Tensor.h>

#include "attention.h"
#include "mla.h"
#include "mlp.h"
#include "moe_layer.h"
#include "norm.h"
#include "parallel_linear.h"

namespace grpo::model::detail {

struct BlockImpl : torch::nn::Module {
  BlockImpl(const ModelConfig& c, int64_t index, const Split& sp);
  // x: the residual stream (under sequence parallel, this rank's part of the sequence)
  at::Tensor forward(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin,
                     const at::Tensor& mask, KVCache* cache, int64_t layer);
  Split split;
  RMSNorm input_layernorm{nullptr}, post_attention_layernorm{nullptr};
  Attention self_attn{nullptr};
  MLA mla{nullptr};
  MLP mlp{nullptr};
  MoE moe{nullptr};
};
TORCH_MODULE(Block);

// Block `layer` with activation recomputation (training forwards without a cache): keeps only x
// and runs the block again in backward. Returns {block output, the MoE block's balance loss (a
// 0-dim zero for other blocks)}; mask undefined = no mask.
std::vector<at::Tensor> recompute_block(BlockImpl& block, const at::Tensor& x, const at::Tensor& cos,
                                        const at::Tensor& sin, const at::Tensor& mask, int64_t layer);

}  // namespace grpo::model::detail
