// RMSNorm as one autograd node with a closed-form backward (fewer saved tensors and kernel
// launches than the composite, which matters for small models on CPU):
//   r = rsqrt(mean(x^2) + eps), y = x r, out = w y
//   dx = r (g w - y mean(g w y)),   dw = sum over rows of g y
#include "norm.h"

#include <ATen/ATen.h>
#include <torch/csrc/autograd/custom_function.h>

namespace grpo::model::detail {
namespace {

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

}  // namespace

RMSNormImpl::RMSNormImpl(int64_t dim, double eps) : eps(eps) {
  weight = register_parameter("weight", at::ones({dim}));
}

at::Tensor RMSNormImpl::forward(const at::Tensor& x) { return RMSNormFn::apply(x, weight, eps); }

at::Tensor RMSNormImpl::forward_stream(const at::Tensor& x, const Split& s) {
  return RMSNormFn::apply(x, s.seq_param(weight), eps);
}

}  // namespace grpo::model::detail
