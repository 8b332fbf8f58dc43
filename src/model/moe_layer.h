// The DeepSeekMoE layer as modules (Megatron's moe/{router,experts,moe_layer}): the router's
// parameters, the routed experts' stacked weights, and MoEImpl, which runs the routing ops of
// grpo/model/moe.h (route, dispatch, grouped or expert-parallel SwiGLU) plus the shared experts,
// and keeps the layer's expert load and sequence-wise balance loss.
#pragma once

#include <cstdint>

#include <ATen/core/Tensor.h>

#include "grpo/model/moe.h"
#include "mlp.h"
#include "parallel_linear.h"

namespace grpo::model::detail {

struct RouterImpl : torch::nn::Module {
  RouterImpl(int64_t experts, int64_t hidden);
  at::Tensor weight, e_score_correction_bias;
};
TORCH_MODULE(Router);

struct ExpertsImpl : torch::nn::Module {
  ExpertsImpl(int64_t experts, int64_t hidden, int64_t inter);
  at::Tensor gate_proj, up_proj, down_proj;
};
TORCH_MODULE(Experts);

// DeepSeekMoE: shared experts + routed experts through the moe.h ops.
struct MoEImpl : torch::nn::Module {
  MoEImpl(const ModelConfig& c, const Split& sp);
  // x: the block's residual stream after the norm (under sequence parallel, this rank's part).
  at::Tensor forward(const at::Tensor& x_in);
  moe::RouterConfig rc;
  Split split;
  Router gate{nullptr};
  Experts experts{nullptr};
  MLP shared_experts{nullptr};
  at::Tensor load;          // [E] slots routed to each expert in training forwards since reset
  at::Tensor sequence;      // [B*T]: the sequence of each token of the current forward, -1 = padding
  int64_t num_sequences = 0;
  // Activation recomputation: the block's gradient-free first pass, its recomputation in backward,
  // or neither. The balance loss of either pass goes to block_balance_loss instead.
  enum class Phase { kNone, kFirstPass, kRecompute } phase = Phase::kNone;
  at::Tensor block_balance_loss;
  double balance_coef = 0;  // sequence-wise balance loss coefficient (alpha)
  at::Tensor balance_loss;  // accumulated until taken
  moe::Routing last;        // routing of the latest forward
  at::Tensor replay;        // [B*T, k] experts to use in the current forward (routing replay), or undefined
};
TORCH_MODULE(MoE);

}  // namespace grpo::model::detail
