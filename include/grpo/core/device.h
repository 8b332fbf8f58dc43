// What this build and this machine offer for GPU work: whether libgrpo was compiled with its CUDA
// kernels (nvcc and a LibTorch with libc10_cuda at build time) and whether a CUDA device can be
// used now (a CUDA LibTorch and a GPU at run time). Ops dispatch GPU tensors to the kernels when
// both hold and fall back to their LibTorch reference path otherwise.
#pragma once

#include <cstdint>
#include <string>

#include <c10/core/Device.h>

namespace grpo {

/// libgrpo was built with its CUDA kernels (kernels/).
bool cuda_kernels_built();

/// A CUDA device is usable: the LibTorch grpo runs on has its CUDA backend and sees a GPU.
bool cuda_available();

/// Turns the dispatch to the CUDA kernels on or off for this process (on by default when built;
/// the environment variable GRPO_CUDA_KERNELS=0 starts it off). Off: GPU tensors run the LibTorch
/// reference compositions, which is what bench/gpu.sh times the kernels against.
void set_cuda_kernels_enabled(bool on);
bool cuda_kernels_enabled();

/// The device a setting names: "cpu", "cuda" (GPU `local_rank`: each process of a node on a GPU
/// of its own) or "cuda:N" (GPU N, whatever the process). Throws a ConfigError naming `key` for
/// other values, when no GPU is usable, and for an index the machine lacks.
c10::Device resolve_device(const std::string& name, int64_t local_rank, const std::string& key);

/// This CPU has bf16 matrix instructions (AMX-BF16 or AVX512-BF16), which LibTorch's CPU matmuls
/// use for bf16 operands. Without them bf16 is emulated and slower than fp32 (docs/performance.md).
bool cpu_has_native_bf16();

/// Bytes of physical memory of this machine (what up-front memory checks compare with).
double host_memory_bytes();

/// One line for logs and skipped tests: "CUDA kernels built: yes; CUDA devices: 1 (NVIDIA H100 ...)".
std::string cuda_summary();

}  // namespace grpo
