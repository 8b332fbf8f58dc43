// Collectives between the processes of one job, through PyTorch's c10d (Gloo on CPU tensors): the
// one place grpo talks to other ranks. Rendezvous through a c10d TCPStore at the launch
// environment's MASTER_ADDR:MASTER_PORT (rank 0 serves it); every wait has a timeout, and a rank
// that never arrives or dies mid-collective becomes an error naming it on the others, not a hang.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <ATen/core/Tensor.h>

#include "grpo/dist/launch.h"

namespace grpo::dist {

class Comm {
 public:
  /// Joins the job described by `launch` (a one-process job needs no network). Throws
  /// grpo::Error naming the ranks that did not arrive within `timeout`.
  static std::unique_ptr<Comm> connect(const LaunchInfo& launch, std::chrono::milliseconds timeout);
  virtual ~Comm();

  int64_t rank() const { return rank_; }
  int64_t size() const { return size_; }

  /// In place, on every rank: the element-wise sum / max over ranks.
  virtual void all_reduce_sum(at::Tensor& t) = 0;
  virtual void all_reduce_max(at::Tensor& t) = 0;
  /// In place: every rank gets root's tensor (same shape and dtype everywhere).
  virtual void broadcast(at::Tensor& t, int64_t root) = 0;
  /// Every rank's tensor (same shape and dtype everywhere), in rank order.
  virtual std::vector<at::Tensor> all_gather(const at::Tensor& t) = 0;
  /// Rows of `input` (dim 0) in rank order, send_counts[r] of them to rank r; returns the rows
  /// received, in rank order (their counts in *recv_counts when given). Counts may differ.
  virtual at::Tensor all_to_all(const at::Tensor& input, const std::vector<int64_t>& send_counts,
                                std::vector<int64_t>* recv_counts = nullptr) = 0;
  virtual void barrier() = 0;

  /// A started collective; wait() blocks until it is done (and throws like the blocking form).
  class Pending {
   public:
    virtual ~Pending() = default;
    virtual void wait() = 0;
  };
  /// all_reduce_sum that returns at once; `t` must stay alive and untouched until wait().
  /// Collectives run in the order they are started, on every rank alike.
  virtual std::unique_ptr<Pending> all_reduce_sum_async(at::Tensor& t) = 0;

  /// The sub-group of `ranks` (ranks of this communicator, ascending, including this one), as a
  /// communicator of its own (its rank() is the position in `ranks`). Every member calls it with
  /// the same ranks and `name`; `name` must be unique per group in the job.
  virtual std::unique_ptr<Comm> group(const std::vector<int64_t>& ranks, const std::string& name) = 0;

 protected:
  Comm(int64_t rank, int64_t size) : rank_(rank), size_(size) {}
  int64_t rank_, size_;
};

}  // namespace grpo::dist
