// c10d's NCCL process group, made in nccl_backend.cpp: that file needs NCCL's and LibTorch's CUDA
// headers and links against libtorch_cuda, so it is compiled only in builds with both
// (GRPO_WITH_NCCL, CMakeLists.txt); comm.cpp calls it only when the job asked for NCCL.
#pragma once

#include <chrono>

#include <torch/csrc/distributed/c10d/Backend.hpp>
#include <torch/csrc/distributed/c10d/Store.hpp>

namespace grpo::dist::detail {

/// An NCCL process group of `size` ranks over `store`, bound to GPU `device_index` (made the
/// current device). Collectives time out after `timeout` (c10d's watchdog then ends the process
/// with the collective named, rather than hang). Throws where NCCL is not built in.
c10::intrusive_ptr<c10d::Backend> make_nccl_backend(const c10::intrusive_ptr<c10d::Store>& store, int rank,
                                                    int size, std::chrono::milliseconds timeout, int64_t device_index);

}  // namespace grpo::dist::detail
