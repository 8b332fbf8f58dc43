// DeepSeekMoE building blocks as separate ops with a stable interface:
//
//   route()          router logits -> top-k experts and gate weights (sigmoid scores, bias for
//                    selection only, group-limited top-k; exactly DeepseekV3TopkRouter)
//   plan_dispatch()  -> the permutation that groups token slots by expert (stable)
//   permute()        tokens -> expert-major rows         (expert parallelism: all-to-all here)
//   grouped_swiglu() one matmul per expert over its contiguous slice
//   unpermute()      expert rows -> tokens, weighted sum over each token's k slots
//
// The expert-parallel dispatch and the CUDA kernels (kernels/moe/, for GPU tensors) sit behind
// these ops; the MoE layer (src/model/moe_layer.cpp) only calls them.
#pragma once

#include <cstdint>
#include <vector>

#include <ATen/core/Tensor.h>

namespace grpo::dist {
class Comm;
}

namespace grpo::model::moe {

struct RouterConfig {
  int64_t num_experts = 0;
  int64_t top_k = 1;
  int64_t n_group = 1;
  int64_t topk_group = 1;
  bool norm_topk_prob = true;
  double routed_scaling_factor = 1.0;
};

struct Routing {
  at::Tensor indices;  // [N, k] int64: chosen experts, in the reference's (unsorted top-k) order
  at::Tensor weights;  // [N, k] fp32: gate weights from the un-biased scores
  at::Tensor scores;   // [N, E] fp32: sigmoid scores (for the sequence-wise balance loss)
};

/// logits [N, E] fp32 (hidden @ router_weight^T), bias [E] fp32 (e_score_correction_bias, used
/// to choose experts only). scores = sigmoid(logits); each group scores the sum of its two best
/// (biased) experts; the best topk_group groups are kept; top-k of the biased scores within them;
/// weights = un-biased scores of the chosen experts, normalised if norm_topk_prob, times
/// routed_scaling_factor. `replay` [N, k] (routing replay, R3): the experts to use instead of the
/// top-k, where >= 0 (rows with a negative entry are routed as usual); the weights are the same
/// function of the un-biased scores of those experts, so the router's gradient flows through them.
Routing route(const at::Tensor& logits, const at::Tensor& bias, const RouterConfig& c,
              const at::Tensor& replay = {});

struct DispatchPlan {
  at::Tensor slots;              // [N*k] int64: flat slot (token * k + j), sorted by expert, stable
  at::Tensor tokens;             // [N*k] int64: the token of each sorted slot
  std::vector<int64_t> counts;   // [E] slots per expert (the per-expert load)
  int64_t num_tokens = 0;
  at::Tensor positions;          // [N*k] int64, GPU dispatch only: the sorted row of each flat slot
};

DispatchPlan plan_dispatch(const at::Tensor& indices, int64_t num_experts);

/// x [N, H] -> [N*k, H]: row i is the token of sorted slot i (expert-major).
at::Tensor permute(const at::Tensor& x, const DispatchPlan& plan);

/// Expert-major rows [N*k, H] through each expert's SwiGLU: gate/up [E, I, H], down [E, H, I].
at::Tensor grouped_swiglu(const at::Tensor& x, const at::Tensor& gate, const at::Tensor& up,
                          const at::Tensor& down, const std::vector<int64_t>& counts);

/// Expert parallel grouped_swiglu. `x`: this rank's expert-major rows for all E = counts.size()
/// experts; gate/up/down: the E / ep experts this rank holds (experts [r E/ep, (r+1) E/ep) for
/// rank r of `group`). Rows travel to the rank holding their expert (all-to-all with variable
/// splits; per-expert counts exchanged first), through its experts, and back: returns exactly what
/// grouped_swiglu over all experts would, and its backward sends the gradients the reverse way
/// (each rank's expert gradients cover every rank's tokens).
at::Tensor expert_parallel_swiglu(const at::Tensor& x, const at::Tensor& gate, const at::Tensor& up,
                                  const at::Tensor& down, const std::vector<int64_t>& counts,
                                  dist::Comm& group);

/// y [N*k, H] (expert-major) -> [N, H]: out[t] = sum_j weights[t, j] * y[slot of (t, j)].
at::Tensor unpermute(const at::Tensor& y, const DispatchPlan& plan, const at::Tensor& weights);

/// DeepSeek-V3's sequence-wise balance loss for one layer: per sequence,
/// sum_i f_i P_i with f_i = E / (k T) * #tokens choosing i, P_i = mean_t s_i,t / sum_j s_j,t,
/// T its token count. indices [N, k], scores [N, E]; sequence [N] int64: the sequence (0 ..
/// num_sequences-1) each token belongs to, -1 for padding (which takes no part). Returns the mean
/// over sequences (a scalar; a sequence without tokens contributes 0).
at::Tensor sequence_balance_loss(const at::Tensor& indices, const at::Tensor& scores, const at::Tensor& sequence,
                                 int64_t num_sequences, int64_t top_k);

/// Aux-loss-free balancing (DeepSeek-V3): bias += rate * sign(mean load - load), per expert.
void update_bias(at::Tensor& bias, const at::Tensor& load, double rate);

}  // namespace grpo::model::moe
