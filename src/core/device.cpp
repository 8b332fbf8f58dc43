#include "grpo/core/device.h"

#include <atomic>
#include <cstdlib>

#include <ATen/Context.h>
#include <fmt/format.h>

#include "grpo/build_config.h"

namespace grpo {

namespace {
std::atomic<bool>& kernels_switch() {
  static std::atomic<bool> on{[] {
    const char* v = std::getenv("GRPO_CUDA_KERNELS");
    return !(v && std::string(v) == "0");
  }()};
  return on;
}
}  // namespace

bool cuda_kernels_built() { return GRPO_WITH_KERNELS != 0; }

void set_cuda_kernels_enabled(bool on) { kernels_switch() = on; }
bool cuda_kernels_enabled() { return cuda_kernels_built() && kernels_switch().load(std::memory_order_relaxed); }

bool cuda_available() { return at::hasCUDA() && at::detail::getCUDAHooks().deviceCount() > 0; }

std::string cuda_summary() {
  const bool backend = at::hasCUDA();
  return fmt::format("CUDA kernels built: {}{}; CUDA backend in LibTorch: {}; CUDA devices: {}",
                     cuda_kernels_built() ? "yes" : "no", cuda_kernels_built() && !cuda_kernels_enabled() ? " (off)" : "",
                     backend ? "yes" : "no",
                     backend ? at::detail::getCUDAHooks().deviceCount() : 0);
}

}  // namespace grpo
