// The tensor-parallel layout as the model's modules see it (Megatron's tensor_parallel/layers):
// Split carries the tp/ep groups and the current forward's sequence split, and applies linears to
// a replicated or sequence-split input the Megatron way (column-parallel layers' input gradients
// summed over tp by copy_to_group or by the sequence gather's reduce-scatter); row_linear sums a
// row-parallel layer's partial products. The dist/ collectives stay behind parallel_linear.cpp.
#pragma once

#include <cstdint>
#include <vector>

#include <ATen/core/Tensor.h>
#include <torch/nn/module.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/pimpl.h>

// (the model's private headers include this one, and with it the module headers and these names)
namespace grpo::dist {
class Comm;
}
namespace grpo::model {
class KVCache;
struct ModelConfig;
}  // namespace grpo::model

namespace grpo::model::detail {

// Sequence parallel in the current forward: the residual stream split along the sequence over tp
// (set per forward by Transformer::forward; the modules read it through Split::seq).
struct SeqSplit {
  bool on = false;
  int64_t total = 0;  // the whole sequence length
};

// y = x W^T + b as PyTorch's nn.Linear computes it: ATen's linear, whose bias enters one fused
// addmm. The C++ frontend's Linear::forward does matmul and then += bias for 3-d inputs, two
// roundings, so its bf16 results differ from transformers' (hf_roundtrip.bf16_live.*).
at::Tensor linear(const torch::nn::Linear& l, const at::Tensor& x);

// The modules' view of the parallel layout.
struct Split {
  dist::Comm* tp = nullptr;
  dist::Comm* ep = nullptr;
  const SeqSplit* seq = nullptr;
  bool seq_on() const { return seq && seq->on; }
  // partial results of split layers: summed over tp (sequence parallel: each rank keeps its part)
  at::Tensor reduce(const at::Tensor& y) const;
  // the whole sequence from this rank's part (sequence parallel), else x
  at::Tensor gather(const at::Tensor& x) const;
  // An input that only split layers consume: their partial gradients are summed over tp by
  // copy_to_group, or under sequence parallel by the gather's backward reduce-scatter (Megatron).
  at::Tensor into_split(const at::Tensor& x) const;
  // Linears sharing one input x (under sequence parallel, this rank's part) applied to the whole
  // sequence, Megatron's way: only x's part is kept for backward. split_layers: column-parallel
  // layers (their partial input gradients summed over tp by copy_to_group, or by the gather's
  // reduce-scatter); else replicated layers (whole gradients on every rank).
  std::vector<at::Tensor> linears(const at::Tensor& x, const std::vector<torch::nn::Linear>& ls,
                                  bool split_layers = true) const;
  // a replicated parameter applied to this rank's part of the sequence: gradients summed over tp
  at::Tensor seq_param(const at::Tensor& w) const;
  int64_t tp_size() const;
  int64_t ep_size() const;
  // n / tp, checked: `key` names the config value being split
  int64_t part(int64_t n, const char* key) const;
  at::Tensor copy(const at::Tensor& x) const;
};

// Identity forward; backward multiplies the gradient by `scale` (one autograd node).
at::Tensor scale_gradient(const at::Tensor& x, double scale);

// A row-parallel linear layer: partial products summed over the group, then the bias (once).
at::Tensor row_linear(torch::nn::Linear& l, const at::Tensor& x, const Split& s);

}  // namespace grpo::model::detail
