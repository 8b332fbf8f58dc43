#include "grpo/core/device.h"

#include <ATen/Context.h>
#include <fmt/format.h>

#include "grpo/build_config.h"

namespace grpo {

bool cuda_kernels_built() { return GRPO_WITH_KERNELS != 0; }

bool cuda_available() { return at::hasCUDA() && at::detail::getCUDAHooks().deviceCount() > 0; }

std::string cuda_summary() {
  const bool backend = at::hasCUDA();
  return fmt::format("CUDA kernels built: {}; CUDA backend in LibTorch: {}; CUDA devices: {}",
                     cuda_kernels_built() ? "yes" : "no", backend ? "yes" : "no",
                     backend ? at::detail::getCUDAHooks().deviceCount() : 0);
}

}  // namespace grpo
