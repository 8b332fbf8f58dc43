// Data-parallel gradient all-reduce in buckets, overlapped with the backward pass.
//
// Parameters are grouped into buckets of ~bucket_bytes in reverse order (the backward pass
// produces the last layers' gradients first). When armed, a hook that runs right after a
// parameter's gradient is accumulated marks it ready; a bucket whose parameters are all ready is
// flattened and its all-reduce started at once (asynchronously, on the communicator's threads)
// while autograd goes on with earlier layers. Buckets start strictly in order, so every rank issues
// the same collectives in the same order. finish() starts what is left, waits, and writes the sums
// back into the gradients. Unarmed (e.g. the earlier micro-batches of an accumulated step), the
// hooks do nothing.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include <ATen/core/Tensor.h>

#include "grpo/dist/comm.h"

namespace grpo::dist {

class GradientReducer {
 public:
  /// `params` in model order (those that take gradients); sums over `group`.
  GradientReducer(std::vector<at::Tensor> params, Comm& group, int64_t bucket_bytes = int64_t(16) << 20);
  ~GradientReducer();
  GradientReducer(const GradientReducer&) = delete;
  GradientReducer& operator=(const GradientReducer&) = delete;

  /// The next backward pass starts the buckets' all-reduces as their gradients become ready.
  void arm();
  /// Starts the buckets not started yet (all of them when not armed; parameters without a
  /// gradient count as zeros), waits for all of them and writes the sums into the parameters'
  /// gradients; disarms.
  void finish();
  /// All-reduce without overlap, after the backward pass.
  void reduce_now();

  int64_t num_buckets() const;
  /// Buckets started during the last backward pass (before finish()).
  int64_t started_during_backward() const { return started_early_; }

  struct State;

 private:
  std::shared_ptr<State> s_;
  int64_t started_early_ = 0;
};

}  // namespace grpo::dist
