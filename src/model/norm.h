// RMSNorm (Llama/DeepSeek): out = w x rsqrt(mean(x^2) + eps), computed in fp32 (fp64 for fp64
// inputs) as one autograd node with a closed-form backward (norm.cpp).
#pragma once

#include <cstdint>

#include <ATen/core/Tensor.h>

#include "parallel_linear.h"

namespace grpo::model::detail {

struct RMSNormImpl : torch::nn::Module {
  RMSNormImpl(int64_t dim, double eps);
  at::Tensor forward(const at::Tensor& x);
  // on the residual stream: under sequence parallel each rank normalises its part of the sequence
  at::Tensor forward_stream(const at::Tensor& x, const Split& s);
  double eps;
  at::Tensor weight;
};
TORCH_MODULE(RMSNorm);

}  // namespace grpo::model::detail
