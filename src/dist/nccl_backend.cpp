// c10d's NCCL process group (see nccl_backend.h). Compiled with USE_C10D_NCCL, NCCL's and CUDA's
// headers; its code is in libtorch_cuda.
#include "nccl_backend.h"

#include <c10/cuda/CUDAFunctions.h>
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>

namespace grpo::dist::detail {

c10::intrusive_ptr<c10d::Backend> make_nccl_backend(const c10::intrusive_ptr<c10d::Store>& store, int rank,
                                                    int size, std::chrono::milliseconds timeout, int64_t device_index) {
  // A collective that does not finish within the timeout is reported by c10d's watchdog, which
  // then tears the process down (TORCH_NCCL_ASYNC_ERROR_HANDLING's default), so a dead rank ends
  // the others instead of hanging them.
  const auto device = at::Device(at::kCUDA, static_cast<c10::DeviceIndex>(device_index));
  c10::cuda::set_device(device.index());
  auto opts = c10d::ProcessGroupNCCL::Options::create();
  opts->timeout = timeout;
  auto pg = c10::make_intrusive<c10d::ProcessGroupNCCL>(store, rank, size, opts);
  pg->setBoundDeviceId(device);  // barriers and communicator set-up use this GPU, not a guess from the rank
  return pg;
}

}  // namespace grpo::dist::detail
