// Split's collectives and the row-parallel linear (parallel_linear.h): the only place the model's
// layers call dist/ for tensor parallelism; each method picks the plain, tp or sequence-parallel
// path.
#include "parallel_linear.h"

#include <ATen/ATen.h>
#include <torch/csrc/autograd/custom_function.h>

#include "grpo/core/error.h"
#include "grpo/dist/parallel.h"

namespace grpo::model::detail {

at::Tensor linear(const torch::nn::Linear& l, const at::Tensor& x) { return at::linear(x, l->weight, l->bias); }

at::Tensor Split::reduce(const at::Tensor& y) const {
  if (tp_size() == 1) return y;
  return seq_on() ? dist::reduce_scatter_sequence(y, 1, *tp) : dist::reduce_from_group(y, *tp);
}

at::Tensor Split::gather(const at::Tensor& x) const {
  return seq_on() ? dist::gather_sequence(x, 1, seq->total, *tp) : x;
}

at::Tensor Split::into_split(const at::Tensor& x) const {
  return seq_on() ? dist::gather_sequence_for_split(x, 1, seq->total, *tp) : copy(x);
}

std::vector<at::Tensor> Split::linears(const at::Tensor& x, const std::vector<torch::nn::Linear>& ls,
                                       bool split_layers) const {
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

at::Tensor Split::seq_param(const at::Tensor& w) const { return seq_on() ? dist::copy_to_group(w, *tp) : w; }

int64_t Split::tp_size() const { return tp ? tp->size() : 1; }

int64_t Split::ep_size() const { return ep ? ep->size() : 1; }

int64_t Split::part(int64_t n, const char* key) const {
  GRPO_CHECK(n % tp_size() == 0, "tensor parallel: model.{} ({}) must be divisible by parallel.tp ({})", key,
             n, tp_size());
  return n / tp_size();
}

at::Tensor Split::copy(const at::Tensor& x) const { return tp_size() > 1 ? dist::copy_to_group(x, *tp) : x; }

namespace {

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

}  // namespace

at::Tensor scale_gradient(const at::Tensor& x, double scale) { return ScaleGradient::apply(x, scale); }

at::Tensor row_linear(torch::nn::Linear& l, const at::Tensor& x, const Split& s) {
  if (s.tp_size() == 1) return linear(l, x);
  auto y = s.reduce(at::linear(x, l->weight));
  return l->bias.defined() ? y + s.seq_param(l->bias) : y;
}

}  // namespace grpo::model::detail
