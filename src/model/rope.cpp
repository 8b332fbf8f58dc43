// RoPE in the rotate-half layout (Hugging Face Llama): out = x cos + rotate_half(x) sin with
// rotate_half([a, b]) = [-b, a]. One autograd node; its transpose gives the backward:
//   dx = g cos + [ (g sin)_2, -(g sin)_1 ]
#include "rope.h"

#include <cmath>

#include <ATen/ATen.h>
#include <torch/csrc/autograd/custom_function.h>

namespace grpo::model::detail {
namespace {

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

}  // namespace

// RoPE on `x` [.., d]; interleaved (DeepSeek): pairs (x0, x1), (x2, x3), .. each rotate by one
// frequency. De-interleaving to [x0, x2, .., x1, x3, ..] and rotating in the half layout gives
// exactly the reference's output layout (transformers' apply_rotary_pos_emb_interleave).
at::Tensor apply_rope(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin, bool interleave) {
  if (!interleave) return RopeFn::apply(x, cos, sin);
  auto d = x.size(-1);
  auto y = x.unflatten(-1, {d / 2, 2}).transpose(-1, -2).flatten(-2);
  return RopeFn::apply(y, cos, sin);
}

double yarn_mscale(double scale, double mscale) {
  return scale <= 1 ? 1.0 : 0.1 * mscale * std::log(scale) + 1.0;
}

}  // namespace grpo::model::detail
