// The parallel layout of a job and the tensor-/expert-parallel building blocks the model uses.
//
// Layout: world = dp x tp. Tensor-parallel ranks are neighbours (rank = dp_rank * tp + tp_rank,
// so a tp group sits on one node); they hold slices of the same replica and see the same data.
// Expert parallelism is carved out of data parallelism, as in Megatron-Core and DeepSeek-V3's own
// training: ep consecutive dp ranks (same tp_rank) form an expert-parallel group that splits the
// routed experts between them while each still processes its own data; the ranks holding the same
// experts in different ep groups form the expert-data-parallel group, over which expert gradients
// are summed. (Room for pp: a third factor of world, outermost.)
//
// Ops: differentiable collectives with Megatron's conjugate pairs (copy_to_group: identity forward,
// all-reduce backward; reduce_from_group: all-reduce forward, identity backward), a differentiable
// variable-split all-to-all for the MoE dispatch, and even shards of a dimension.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <ATen/core/Tensor.h>

#include "grpo/dist/comm.h"

namespace grpo::dist {

struct Layout {
  int64_t world = 1, tp = 1, ep = 1;
  int64_t dp() const { return world / tp; }
  int64_t tp_rank(int64_t rank) const { return rank % tp; }
  int64_t dp_rank(int64_t rank) const { return rank / tp; }
  int64_t ep_rank(int64_t rank) const { return dp_rank(rank) % ep; }
  /// The ranks of each group that `rank` belongs to (ascending).
  std::vector<int64_t> tp_group(int64_t rank) const;
  std::vector<int64_t> dp_group(int64_t rank) const;
  std::vector<int64_t> ep_group(int64_t rank) const;
  std::vector<int64_t> expert_dp_group(int64_t rank) const;
  std::string describe() const;  // "dp 2 x tp 2 (ep 2)"
};

/// Checks the layout: tp and ep divide the world and dp, as `parallel.tp` / `parallel.ep`.
Layout make_layout(int64_t world, int64_t tp, int64_t ep);

/// This rank's communicators, one per dimension (a size-1 group is a no-op communicator).
struct Groups {
  Layout layout;
  Comm* world = nullptr;
  std::unique_ptr<Comm> dp, tp, ep, expert_dp;
};
/// Collective over `world`: every rank builds the groups it belongs to. `prefix` names them apart
/// from the groups of another communicator of the same job (group names are unique per job).
Groups make_groups(Comm& world, const Layout& layout, const std::string& prefix = "");

/// [begin, begin + size) of part `index` of `n` split into `parts` equal parts.
struct Shard {
  int64_t begin = 0, size = 0;
};
Shard even_shard(int64_t n, int64_t parts, int64_t index);

/// Identity forward; backward all-reduces (sums) the gradient over `group`. For a replicated
/// tensor entering layers whose outputs are split over the group.
at::Tensor copy_to_group(const at::Tensor& x, Comm& group);
/// Sums over `group` forward; identity backward. For partial results of split layers.
at::Tensor reduce_from_group(const at::Tensor& x, Comm& group);
/// Concatenation of every rank's `x` along the last dimension (no gradient).
at::Tensor gather_last_dim(const at::Tensor& x, Comm& group);
/// Concatenation of every rank's `x` along `dim` (no gradient; same shapes everywhere).
at::Tensor gather_dim(const at::Tensor& x, int64_t dim, Comm& group);
/// Sequence parallel (Megatron): the residual stream is split along `dim` (the sequence) over the
/// group (the first total % size ranks take one more position). gather_sequence: every rank's shard concatenated
/// (forward all-gather; backward keeps this rank's part of the gradient, which the consumers --
/// replicated, or entering split layers through copy_to_group -- make equal on every rank).
at::Tensor gather_sequence(const at::Tensor& x, int64_t dim, int64_t total, Comm& group);
/// gather_sequence for an input that only split layers consume, without copy_to_group (Megatron's
/// sequence-parallel gather): their input gradients are partial sums, which backward reduce-scatters
/// (half the bytes of copy_to_group's all-reduce).
at::Tensor gather_sequence_for_split(const at::Tensor& x, int64_t dim, int64_t total, Comm& group);
/// Linear layers sharing one sequence-parallel input, Megatron's way: y_i = g(x) W_i^T (+ b_i)
/// with g = gather_sequence_for_split (split_layers: column-parallel layers, whose input gradients
/// are partial sums) or gather_sequence (replicated layers), but only this rank's part of x is
/// kept for backward, which gathers the whole sequence again for the weight gradients (1/size of
/// the activation memory, one more all-gather). biases: none, or one per weight.
std::vector<at::Tensor> gather_sequence_linears(const at::Tensor& x, int64_t dim, int64_t total,
                                                const std::vector<at::Tensor>& weights,
                                                const std::vector<at::Tensor>& biases, Comm& group,
                                                bool split_layers = true);
/// The sum over the group, of which this rank keeps its shard along `dim` (forward reduce-scatter;
/// backward all-gather). For split layers' partial results entering the sequence-split stream.
at::Tensor reduce_scatter_sequence(const at::Tensor& x, int64_t dim, Comm& group);
/// Comm::all_to_all with a backward: rows sent as `send_counts`, received as *recv_counts; the
/// gradient goes back the reverse way.
at::Tensor all_to_all_rows(const at::Tensor& x, const std::vector<int64_t>& send_counts,
                           std::vector<int64_t>* recv_counts, Comm& group);

}  // namespace grpo::dist
