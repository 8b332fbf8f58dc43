// The MoE ops. CPU tensors run LibTorch reference compositions; GPU tensors (libgrpo built with
// kernels) run kernels/moe/: one routing kernel for the expert choice (the differentiable gate
// weights are still gathered with LibTorch ops, so autograd needs nothing new), and gather kernels
// for permute/unpermute whose backward passes are gathers too (the inverse permutation
// `DispatchPlan::positions`), so no atomics and no scatter-add.
#include "grpo/model/moe.h"

#include <ATen/ATen.h>
#include <torch/csrc/autograd/custom_function.h>

#include "grpo/core/error.h"
#include "grpo/dist/parallel.h"
#include "kernel_dispatch.h"

#if GRPO_WITH_KERNELS
#include "kernels/moe/api.h"
#endif

namespace grpo::model::moe {

#if GRPO_WITH_KERNELS
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::tensor_list;

at::ScalarType acc_of(const at::Tensor& t) { return at::promote_types(t.scalar_type(), at::kFloat); }

// x [N, H] -> [N*k, H] rows in dispatch order; backward: dx[t] = sum_j dxp[pos[t, j]].
struct PermuteFn : torch::autograd::Function<PermuteFn> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x, const at::Tensor& tokens,
                            const at::Tensor& positions, int64_t k) {
    auto xc = x.contiguous();
    auto out = at::empty({tokens.size(0), x.size(1)}, x.options());
    detail::KernelLaunch launch(x);
    detail::check_kernel(kernels::moe_gather_rows(detail::kernel_dtype(x.scalar_type()), xc.data_ptr(),
                                                  tokens.data_ptr<int64_t>(), nullptr, tokens.size(0), x.size(1),
                                                  out.data_ptr(), launch.stream()),
                         "moe::permute");
    ctx->save_for_backward({positions});
    ctx->saved_data["k"] = k;
    ctx->saved_data["n"] = x.size(0);
    return out;
  }
  static tensor_list backward(AutogradContext* ctx, tensor_list grads) {
    auto pos = ctx->get_saved_variables()[0];
    const int64_t k = ctx->saved_data["k"].toInt(), n = ctx->saved_data["n"].toInt();
    auto g = grads[0].contiguous();
    auto dx = at::empty({n, g.size(1)}, g.options());
    detail::KernelLaunch launch(g);
    detail::check_kernel(kernels::moe_gather_sum_rows(detail::kernel_dtype(g.scalar_type()), g.data_ptr(),
                                                      pos.data_ptr<int64_t>(), nullptr, n, int(k), g.size(1),
                                                      dx.data_ptr(), launch.stream()),
                         "moe::permute (backward)");
    return {dx, at::Tensor(), at::Tensor(), at::Tensor()};
  }
};

// y [N*k, H] (dispatch order), w [N, k] (accumulator type) -> out[t] = sum_j w[t, j] y[pos[t, j]].
// Backward: dy[i] = w[slot i] dout[token i];  dw[t, j] = <dout[t], y[pos[t, j]]>.
struct UnpermuteFn : torch::autograd::Function<UnpermuteFn> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& y, const at::Tensor& w, const at::Tensor& tokens,
                            const at::Tensor& slots, const at::Tensor& positions) {
    const int64_t N = w.size(0), k = w.size(1);
    auto yc = y.contiguous();
    auto wc = w.contiguous();
    auto out = at::empty({N, y.size(1)}, y.options());
    detail::KernelLaunch launch(y);
    detail::check_kernel(kernels::moe_gather_sum_rows(detail::kernel_dtype(y.scalar_type()), yc.data_ptr(),
                                                      positions.data_ptr<int64_t>(), wc.data_ptr(), N, int(k),
                                                      y.size(1), out.data_ptr(), launch.stream()),
                         "moe::unpermute");
    ctx->save_for_backward({yc, wc, tokens, slots, positions});
    return out;
  }
  static tensor_list backward(AutogradContext* ctx, tensor_list grads) {
    auto sv = ctx->get_saved_variables();
    auto y = sv[0], w = sv[1], tokens = sv[2], slots = sv[3], pos = sv[4];
    const int64_t N = w.size(0), k = w.size(1), H = y.size(1);
    auto g = grads[0].contiguous();
    auto dt = detail::kernel_dtype(y.scalar_type());
    detail::KernelLaunch launch(y);
    auto dy = at::empty_like(y);
    auto scale = w.reshape({-1}).index_select(0, slots).contiguous();  // [N*k] in dispatch order
    detail::check_kernel(kernels::moe_gather_rows(dt, g.data_ptr(), tokens.data_ptr<int64_t>(), scale.data_ptr(),
                                                  tokens.size(0), H, dy.data_ptr(), launch.stream()),
                         "moe::unpermute (backward)");
    auto dw = at::empty({N, k}, w.options());
    detail::check_kernel(kernels::moe_row_dots(dt, g.data_ptr(), y.data_ptr(), pos.data_ptr<int64_t>(), N, int(k), H,
                                               dw.data_ptr(), launch.stream()),
                         "moe::unpermute (backward)");
    return {dy, dw, at::Tensor(), at::Tensor(), at::Tensor()};
  }
};

}  // namespace
#endif

Routing route(const at::Tensor& logits, const at::Tensor& bias, const RouterConfig& c, const at::Tensor& replay) {
  GRPO_ASSERT(logits.dim() == 2 && logits.size(1) == c.num_experts);
  if (replay.defined()) {
    GRPO_CHECK(replay.dim() == 2 && replay.size(0) == logits.size(0) && replay.size(1) == c.top_k,
               "routing replay: {} experts for {} tokens x top-k {}", replay.sizes(), logits.size(0), c.top_k);
    auto forced = replay.to(logits.device(), at::kLong);
    GRPO_CHECK(forced.lt(c.num_experts).all().item<bool>(), "routing replay: an expert id is beyond the {} experts",
               c.num_experts);
    auto keep = forced.ge(0).all(1, /*keepdim=*/true);  // [N, 1]: rows replayed
    auto idx = keep.all().item<bool>() ? forced : at::where(keep, forced, route(logits, bias, c).indices);
    auto scores = logits.sigmoid();
    auto w = scores.gather(1, idx);
    if (c.norm_topk_prob) w = w / (w.sum(-1, true) + 1e-20);
    return {idx, w * c.routed_scaling_factor, scores};
  }
  const int64_t N = logits.size(0), E = c.num_experts, per_group = E / c.n_group;
  // The same op sequence as the reference (transformers' DeepseekV3TopkRouter), so ties between
  // equal scores resolve the same way.
  auto scores = logits.sigmoid();
#if GRPO_WITH_KERNELS
  if (detail::use_kernels(logits) && logits.scalar_type() == at::kFloat && E <= kernels::kRouteMaxExperts &&
      c.n_group <= kernels::kRouteMaxGroups && c.top_k <= kernels::kRouteMaxTopK && per_group >= 2 &&
      c.top_k <= c.topk_group * per_group) {
    auto lc = logits.detach().contiguous();
    auto bc = bias.detach().to(logits.device(), at::kFloat).contiguous();
    auto idx = at::empty({N, c.top_k}, logits.options().dtype(at::kLong));
    detail::KernelLaunch launch(logits);
    detail::check_kernel(kernels::moe_route_topk(lc.data_ptr<float>(), bc.data_ptr<float>(), N, int(E),
                                                 int(c.n_group), int(c.topk_group), int(c.top_k),
                                                 idx.data_ptr<int64_t>(), launch.stream()),
                         "moe::route");
    auto w = scores.gather(1, idx);
    if (c.norm_topk_prob) w = w / (w.sum(-1, true) + 1e-20);
    return {idx, w * c.routed_scaling_factor, scores};
  }
#endif
  auto choice = scores + bias;
  auto group_scores = std::get<0>(choice.view({N, c.n_group, per_group}).topk(2, -1)).sum(-1);
  auto group_idx = std::get<1>(at::topk(group_scores, c.topk_group, -1, true, /*sorted=*/false));
  auto group_mask = at::zeros_like(group_scores).scatter_(1, group_idx, 1);
  auto score_mask = group_mask.unsqueeze(-1).expand({N, c.n_group, per_group}).reshape({N, E});
  choice = choice.masked_fill(score_mask.logical_not(), -std::numeric_limits<float>::infinity());
  auto idx = std::get<1>(at::topk(choice, c.top_k, -1, true, /*sorted=*/false));
  auto w = scores.gather(1, idx);
  if (c.norm_topk_prob) w = w / (w.sum(-1, true) + 1e-20);
  w = w * c.routed_scaling_factor;
  return {idx, w, scores};
}

DispatchPlan plan_dispatch(const at::Tensor& indices, int64_t num_experts) {
  DispatchPlan p;
  const int64_t k = indices.size(1);
  p.num_tokens = indices.size(0);
  auto flat = indices.reshape({-1});
  p.slots = std::get<1>(at::sort(flat, /*stable=*/true, 0, false));
  p.tokens = at::div(p.slots, k, "floor");
  auto counts = at::bincount(flat, {}, num_experts).cpu();  // host copy: the experts' matmul sizes
  p.counts.assign(counts.data_ptr<int64_t>(), counts.data_ptr<int64_t>() + num_experts);
  if (detail::use_kernels(indices))
    p.positions = at::empty_like(p.slots).index_copy_(0, p.slots, at::arange(p.slots.numel(), p.slots.options()));
  return p;
}

at::Tensor permute(const at::Tensor& x, const DispatchPlan& plan) {
#if GRPO_WITH_KERNELS
  if (detail::use_kernels(x) && plan.positions.defined() && plan.num_tokens > 0)
    return PermuteFn::apply(x, plan.tokens, plan.positions, plan.tokens.numel() / std::max<int64_t>(plan.num_tokens, 1));
#endif
  return x.index_select(0, plan.tokens);
}

at::Tensor grouped_swiglu(const at::Tensor& x, const at::Tensor& gate, const at::Tensor& up,
                          const at::Tensor& down, const std::vector<int64_t>& counts) {
  const auto dt = x.scalar_type();
  const int64_t es = x.element_size();
  const bool aligned = (gate.size(1) * es) % 16 == 0 && (gate.size(2) * es) % 16 == 0;  // _grouped_mm's rule
  // (LibTorch's CUDA grouped GEMM is bf16-only; its CPU version takes the float types)
  const bool grouped_dtype = x.is_cuda() ? dt == at::kBFloat16 : (dt == at::kFloat || dt == at::kBFloat16 || dt == at::kHalf);
  if (grouped_dtype && aligned) {
    // One grouped GEMM per projection over the expert-major rows (offs = end row of each expert);
    // measured 1.3-1.9x faster forward+backward on CPU than a loop of per-expert matmuls
    // (docs/performance.md).
    std::vector<int32_t> ends(counts.size());
    int64_t acc = 0;
    for (size_t e = 0; e < counts.size(); ++e) ends[e] = int32_t(acc += counts[e]);
    auto offs = at::tensor(ends, at::kInt).to(x.device());
    auto g = at::_grouped_mm(x, gate.transpose(1, 2), offs);
    auto u = at::_grouped_mm(x, up.transpose(1, 2), offs);
    return at::_grouped_mm(at::silu(g) * u, down.transpose(1, 2), offs);
  }
  // Other dtypes (fp64 in tests) or odd widths: one matmul per expert over its slice. unbind (not select per
  // expert): its backward stacks the per-expert gradients in one op.
  auto g = gate.unbind(0), u = up.unbind(0), d = down.unbind(0);
  std::vector<at::Tensor> outs;
  int64_t off = 0;
  for (size_t e = 0; e < counts.size(); ++e) {
    if (counts[e] == 0) continue;
    auto xe = x.narrow(0, off, counts[e]);
    outs.push_back(at::mm(at::silu(at::mm(xe, g[e].t())) * at::mm(xe, u[e].t()), d[e].t()));
    off += counts[e];
  }
  if (outs.empty()) return at::zeros({0, down.size(1)}, x.options());
  return at::cat(outs, 0);
}

at::Tensor expert_parallel_swiglu(const at::Tensor& x, const at::Tensor& gate, const at::Tensor& up,
                                  const at::Tensor& down, const std::vector<int64_t>& counts,
                                  dist::Comm& group) {
  const int64_t P = group.size(), E = int64_t(counts.size()), El = gate.size(0);
  GRPO_CHECK(El * P == E, "expert_parallel_swiglu: {} local experts x {} ranks != {} experts", El, P, E);
  // rows per destination rank, and each destination's per-expert counts
  std::vector<int64_t> send(size_t(P), 0);
  for (int64_t e = 0; e < E; ++e) send[size_t(e / El)] += counts[size_t(e)];
  auto recv_counts = group.all_to_all(at::tensor(counts, at::kLong), std::vector<int64_t>(size_t(P), El));
  auto rc = recv_counts.view({P, El});  // rc[s][j]: rows from rank s for local expert j
  const int64_t* c = rc.data_ptr<int64_t>();
  std::vector<int64_t> recv;
  auto xr = dist::all_to_all_rows(x, send, &recv, group);  // source-major, expert-major within
  // source-major -> expert-major: local expert j takes its rows from every source in rank order
  std::vector<int64_t> start(size_t(P * El)), order, local(size_t(El), 0);
  int64_t off = 0;
  for (int64_t s = 0; s < P; ++s)
    for (int64_t j = 0; j < El; ++j) {
      start[size_t(s * El + j)] = off;
      off += c[s * El + j];
    }
  for (int64_t j = 0; j < El; ++j)
    for (int64_t s = 0; s < P; ++s) {
      for (int64_t i = 0; i < c[s * El + j]; ++i) order.push_back(start[size_t(s * El + j)] + i);
      local[size_t(j)] += c[s * El + j];
    }
  auto idx = at::tensor(order, at::kLong).to(x.device());
  auto ye = grouped_swiglu(xr.index_select(0, idx), gate, up, down, local);
  auto inverse = at::empty_like(idx).index_copy_(0, idx, at::arange(idx.numel(), idx.options()));
  return dist::all_to_all_rows(ye.index_select(0, inverse), recv, nullptr, group);
}

at::Tensor unpermute(const at::Tensor& y, const DispatchPlan& plan, const at::Tensor& weights) {
#if GRPO_WITH_KERNELS
  if (detail::use_kernels(y) && plan.positions.defined() && plan.num_tokens > 0)
    return UnpermuteFn::apply(y, weights.reshape({plan.num_tokens, -1}).to(acc_of(y)), plan.tokens, plan.slots,
                              plan.positions);
#endif
  // summed in fp32 (fp64 for fp64), rounded once to y's dtype, as transformers' DeepseekV3 experts
  const auto acc = acc_of(y);
  auto w = weights.reshape({-1}).index_select(0, plan.slots).to(acc).unsqueeze(1);
  return at::zeros({plan.num_tokens, y.size(1)}, y.options().dtype(acc))
      .index_add(0, plan.tokens, y.to(acc) * w)
      .to(y.scalar_type());
}

at::Tensor sequence_balance_loss(const at::Tensor& indices, const at::Tensor& scores, const at::Tensor& sequence,
                                 int64_t num_sequences, int64_t top_k) {
  const int64_t E = scores.size(1);
  auto keep = sequence.ge(0).nonzero().squeeze(1);
  auto seq = sequence.index_select(0, keep);
  auto chosen = at::zeros({keep.size(0), E}, scores.options()).scatter_(1, indices.index_select(0, keep), 1.0);
  auto s = scores.index_select(0, keep);
  s = s / s.sum(-1, true);
  auto count = at::bincount(seq, {}, num_sequences).to(scores.scalar_type()).clamp_min(1.0).unsqueeze(1);
  auto zeros = at::zeros({num_sequences, E}, scores.options());
  auto f = zeros.index_add(0, seq, chosen) * (double(E) / double(top_k)) / count;  // [S, E]
  auto P = zeros.index_add(0, seq, s) / count;                                      // [S, E]
  return (f * P).sum(-1).mean();
}

void update_bias(at::Tensor& bias, const at::Tensor& load, double rate) {
  at::NoGradGuard g;
  auto l = load.to(at::kFloat);
  bias.add_(at::sign(l.mean() - l) * rate);
}

}  // namespace grpo::model::moe
