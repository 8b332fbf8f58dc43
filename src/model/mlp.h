// The SwiGLU MLP (Llama's gate/up/down; DeepSeekMoE's shared experts): gate and up column-parallel,
// down row-parallel over tp (Megatron's mlp).
#pragma once

#include <cstdint>

#include <ATen/core/Tensor.h>
#include <torch/nn/modules/linear.h>

#include "parallel_linear.h"

namespace grpo::model::detail {

struct MLPImpl : torch::nn::Module {
  // `key` names the config value of the intermediate width (split over tp)
  MLPImpl(int64_t hidden, int64_t inter, bool bias, const Split& sp, const char* key);
  // x: the block's stream after the norm (under sequence parallel, this rank's part)
  at::Tensor forward(const at::Tensor& x);
  // Without the final sum over the group (bias-free MLPs): this rank's partial output. `xs` has
  // been through copy_to_group already (the MoE's input, shared with its routed experts).
  at::Tensor partial(const at::Tensor& xs);
  Split split;
  torch::nn::Linear gate_proj{nullptr}, up_proj{nullptr}, down_proj{nullptr};
};
TORCH_MODULE(MLP);

}  // namespace grpo::model::detail
