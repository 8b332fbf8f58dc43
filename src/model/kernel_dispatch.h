// Private helpers for the LibTorch wrappers that hand GPU tensors to kernels/: the kernel element
// type of a tensor, the tensor's current CUDA stream (with its device made current), and a check
// that turns a kernel's cudaError_t into a grpo::Error naming the op. Without the kernels
// (GRPO_WITH_KERNELS 0) only use_kernels() exists, always false, and the wrappers' GPU branches
// compile away.
#pragma once

#include <ATen/core/Tensor.h>

#include "grpo/build_config.h"
#include "grpo/core/device.h"
#include "grpo/core/error.h"

#if GRPO_WITH_KERNELS
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <cuda_runtime_api.h>

#include "kernels/common/dtype.h"
#endif

namespace grpo::model::detail {

/// True when `t` is a GPU tensor, libgrpo has its kernels and they are switched on.
inline bool use_kernels(const at::Tensor& t) { return GRPO_WITH_KERNELS && t.is_cuda() && cuda_kernels_enabled(); }

#if GRPO_WITH_KERNELS
inline kernels::DType kernel_dtype(at::ScalarType t) {
  switch (t) {
    case at::kFloat: return kernels::DType::kFloat32;
    case at::kDouble: return kernels::DType::kFloat64;
    case at::kBFloat16: return kernels::DType::kBFloat16;
    case at::kHalf: return kernels::DType::kFloat16;
    default: fail("CUDA kernels: unsupported element type {}", c10::toString(t));
  }
}

/// Makes t's device current for its lifetime; stream() is that device's current stream.
struct KernelLaunch {
  explicit KernelLaunch(const at::Tensor& t) : guard(t.device()) {}
  cudaStream_t stream() const { return c10::cuda::getCurrentCUDAStream().stream(); }
  c10::cuda::CUDAGuard guard;
};

inline void check_kernel(cudaError_t e, const char* op) {
  GRPO_CHECK(e == cudaSuccess, "{}: CUDA kernel failed: {} ({})", op, cudaGetErrorString(e), cudaGetErrorName(e));
}
#endif

}  // namespace grpo::model::detail
