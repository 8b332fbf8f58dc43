// The MoE layer's forward under tp, sequence parallel and ep: the fp32 router, dispatch through
// moe.h, the routed experts' and shared experts' partial sums reduced once, and the training
// statistics (expert load, balance loss) over real tokens only.
#include "moe_layer.h"

#include <ATen/ATen.h>

#include "grpo/core/error.h"
#include "grpo/model/model_config.h"

namespace grpo::model::detail {

RouterImpl::RouterImpl(int64_t experts, int64_t hidden) {
  weight = register_parameter("weight", at::zeros({experts, hidden}));
  // Not trained by gradients: moved by the aux-loss-free balancing rule (update_router_bias).
  e_score_correction_bias = register_parameter("e_score_correction_bias", at::zeros({experts}), false);
}

ExpertsImpl::ExpertsImpl(int64_t experts, int64_t hidden, int64_t inter) {
  gate_proj = register_parameter("gate_proj", at::zeros({experts, inter, hidden}));
  up_proj = register_parameter("up_proj", at::zeros({experts, inter, hidden}));
  down_proj = register_parameter("down_proj", at::zeros({experts, hidden, inter}));
}

MoEImpl::MoEImpl(const ModelConfig& c, const Split& sp) : split(sp) {
  GRPO_CHECK(c.n_routed_experts % sp.ep_size() == 0,
             "expert parallel: model.n_routed_experts ({}) must be divisible by parallel.ep ({})",
             c.n_routed_experts, sp.ep_size());
  rc.num_experts = c.n_routed_experts;
  rc.top_k = c.num_experts_per_tok;
  rc.n_group = c.n_group;
  rc.topk_group = c.topk_group;
  rc.norm_topk_prob = c.norm_topk_prob;
  rc.routed_scaling_factor = c.routed_scaling_factor;
  gate = register_module("gate", Router(c.n_routed_experts, c.hidden_size));
  // routed experts: split over ep (whole experts) and over tp (each expert's intermediate width)
  experts = register_module("experts", Experts(c.n_routed_experts / sp.ep_size(), c.hidden_size,
                                               sp.part(c.moe_intermediate_size, "moe_intermediate_size")));
  if (c.n_shared_experts > 0)
    shared_experts = register_module(
        "shared_experts", MLP(c.hidden_size, c.moe_intermediate_size * c.n_shared_experts, false, sp,
                              "moe_intermediate_size x n_shared_experts"));
  load = at::zeros({c.n_routed_experts}, at::kLong);
}

at::Tensor MoEImpl::forward(const at::Tensor& x_in) {
  // Under tp each rank computes a slice of every expert's intermediate width, so the expert
  // outputs are partial sums, summed once at the end with the shared experts' partial sums, and
  // their input gradients are partial sums. The combine weights enter through copy_to_group, so
  // the router (replicated, fp32 as in transformers) gets whole gradients on every rank, as in
  // one process. The experts' input:
  //  * tp alone: enters through copy_to_group (one all-reduce of its gradient for the routed and
  //    the shared experts); the router reads it as is;
  //  * sequence parallel: the whole sequence comes from the gather whose backward reduce-scatters
  //    (Megatron; half the bytes of that all-reduce). Every rank's router input gradient is
  //    whole, so it enters that sum weighed 1/tp.
  const bool seq = split.seq_on();
  auto x = seq ? split.into_split(x_in) : x_in;
  const auto H = x.size(-1);
  auto router_in = seq ? scale_gradient(x, 1.0 / double(split.tp_size())) : x;
  auto logits = at::linear(router_in.reshape({-1, H}).to(at::kFloat), gate->weight.to(at::kFloat));
  auto r = moe::route(logits, gate->e_score_correction_bias.to(at::kFloat), rc, replay);
  auto plan = moe::plan_dispatch(r.indices, rc.num_experts);
  auto xc = seq ? x : split.copy(x);
  auto xp = moe::permute(xc.reshape({-1, H}), plan);
  auto y = split.ep_size() > 1
               ? moe::expert_parallel_swiglu(xp, experts->gate_proj, experts->up_proj, experts->down_proj,
                                             plan.counts, *split.ep)
               : moe::grouped_swiglu(xp, experts->gate_proj, experts->up_proj, experts->down_proj,
                                     plan.counts);
  // (the fp32 router's weights: their gradient summed in the wider of fp32 and the model's dtype)
  auto w = split.copy(r.weights.to(at::promote_types(at::kFloat, x.scalar_type())));
  auto out = moe::unpermute(y, plan, w).view(x.sizes());
  // training forwards only (a recomputed block counts in its first, gradient-free pass); real tokens only
  const bool training = is_training() && (at::GradMode::is_enabled() || phase == Phase::kFirstPass);
  if (training && phase != Phase::kRecompute) {
    auto real = sequence.ge(0).nonzero().squeeze(1);
    load += at::bincount(r.indices.index_select(0, real).reshape({-1}), {}, rc.num_experts);
  }
  if (training && balance_coef > 0 && x.numel() > 0) {
    auto l = moe::sequence_balance_loss(r.indices, r.scores, sequence, num_sequences, rc.top_k) * balance_coef;
    if (phase == Phase::kNone) balance_loss = balance_loss.defined() ? balance_loss + l : l;
    else block_balance_loss = l;  // handed to the recomputation (BlockCheckpoint)
  }
  last = {r.indices.detach(), r.weights.detach(), at::Tensor()};
  if (shared_experts) out = out + shared_experts->partial(xc);
  return split.reduce(out);
}

}  // namespace grpo::model::detail
