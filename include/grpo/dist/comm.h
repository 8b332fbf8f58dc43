// Collectives between the processes of one job, through PyTorch's c10d: the one place grpo talks
// to other ranks. Host tensors go through Gloo; GPU tensors through NCCL when the job uses it
// (each process on its own GPU, a build with LibTorch's CUDA libraries), else through Gloo via a
// host copy. Every collective picks its backend from its tensor's device, as PyTorch's
// "cpu:gloo,cuda:nccl" process groups do; all ranks call the same collectives in the same order.
// Rendezvous through a c10d TCPStore at the launch environment's MASTER_ADDR:MASTER_PORT (rank 0
// serves it); every wait has a timeout, and a rank that never arrives or dies mid-collective
// becomes an error naming it on the others, not a hang.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <ATen/core/Tensor.h>
#include <c10/core/Device.h>

#include "grpo/dist/launch.h"

namespace grpo::dist {

/// How GPU tensors travel: gloo (through a host copy; several processes may share a GPU) or nccl
/// (GPU to GPU; one GPU per process). Host tensors always use Gloo.
enum class Backend { gloo, nccl };

struct CommOptions {
  Backend backend = Backend::gloo;
  int64_t device_index = 0;  // nccl: this process's GPU
};

/// libgrpo was built with c10d's NCCL process group (a LibTorch with its CUDA libraries linked,
/// and nccl.h at build time).
bool nccl_built();

/// The backend for the setting `name` (auto | gloo | nccl) on `device`. `own_gpu`: no other
/// process of this node uses the same GPU. auto = nccl for a GPU of its own in a build with it,
/// else gloo. Throws a ConfigError naming `key` when nccl is asked for and cannot work.
Backend resolve_backend(const std::string& name, const c10::Device& device, bool own_gpu, const std::string& key);

class Comm {
 public:
  /// Joins the job described by `launch` (a one-process job needs no network). Throws
  /// grpo::Error naming the ranks that did not arrive within `timeout`.
  static std::unique_ptr<Comm> connect(const LaunchInfo& launch, std::chrono::milliseconds timeout,
                                       const CommOptions& options = {});
  virtual ~Comm();

  int64_t rank() const { return rank_; }
  int64_t size() const { return size_; }
  /// "gloo", or "nccl (GPU tensors) + gloo (host tensors)"; "none" for one process.
  virtual std::string backend() const = 0;

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
  /// Every rank's `input` summed, of which this rank keeps block rank() of size() equal blocks
  /// along dim 0 (same shape on every rank; its dim 0 divisible by size()).
  virtual at::Tensor reduce_scatter_sum(const at::Tensor& input) = 0;
  virtual void barrier() = 0;

  /// A started collective; wait() blocks until it is done (and throws like the blocking form).
  class Pending {
   public:
    virtual ~Pending() = default;
    virtual void wait() = 0;
    /// True once it has completed (or failed: wait() then throws); never blocks.
    virtual bool ready() = 0;
  };
  /// all_reduce_sum that returns at once; `t` must stay alive and untouched until wait().
  /// Collectives run in the order they are started, on every rank alike.
  virtual std::unique_ptr<Pending> all_reduce_sum_async(at::Tensor& t) = 0;
  /// broadcast that returns at once; `t` must stay alive (and, on the root, unchanged) until wait().
  virtual std::unique_ptr<Pending> broadcast_async(at::Tensor& t, int64_t root) = 0;

  /// A value under `key` in the job's rendezvous store, for every rank to read (peek); no
  /// collective, no waiting. For signals between ranks that do not meet in a collective for longer
  /// than parallel.timeout (the rollout ranks waiting for the trainers' GRPO stage). peek throws
  /// grpo::Error when the store (rank 0) is gone.
  virtual void publish(const std::string& key, const std::string& value) = 0;
  virtual std::optional<std::string> peek(const std::string& key) = 0;

  /// The sub-group of `ranks` (ranks of this communicator, ascending, including this one), as a
  /// communicator of its own (its rank() is the position in `ranks`). Every member calls it with
  /// the same ranks and `name`; `name` must be unique per group in the job.
  virtual std::unique_ptr<Comm> group(const std::vector<int64_t>& ranks, const std::string& name) = 0;

 protected:
  Comm(int64_t rank, int64_t size) : rank_(rank), size_(size) {}
  int64_t rank_, size_;
};

}  // namespace grpo::dist
