// SwiGLU MLP: down(silu(gate x) * up x), the input gathered/copied into the split gate and up
// through Split::linears and the row-parallel down summed by row_linear.
#include "mlp.h"

#include <ATen/ATen.h>

namespace grpo::model::detail {

MLPImpl::MLPImpl(int64_t hidden, int64_t inter, bool bias, const Split& sp, const char* key) : split(sp) {
  inter = sp.part(inter, key);
  auto lin = [&](int64_t in, int64_t out) {
    return torch::nn::Linear(torch::nn::LinearOptions(in, out).bias(bias));
  };
  gate_proj = register_module("gate_proj", lin(hidden, inter));
  up_proj = register_module("up_proj", lin(hidden, inter));
  down_proj = register_module("down_proj", lin(inter, hidden));
}

at::Tensor MLPImpl::forward(const at::Tensor& x) {
  auto gu = split.linears(x, {gate_proj, up_proj});
  return row_linear(down_proj, at::silu(gu[0]) * gu[1], split);
}

at::Tensor MLPImpl::partial(const at::Tensor& xs) {
  return at::linear(at::silu(linear(gate_proj, xs)) * linear(up_proj, xs), down_proj->weight);
}

}  // namespace grpo::model::detail
