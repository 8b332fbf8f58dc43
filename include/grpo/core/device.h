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

/// CPUs this process may run on: its affinity mask (taskset, Slurm, MPI binding), bounded by a
/// cgroup CPU quota (cgroup v2 cpu.max or v1 cpu.cfs_quota_us: containers), rounded up; at least 1.
int64_t available_cpus();

/// Process-wide host setup for tensor work; the trainer and every tool call it before any.
///  - LibTorch's intra-op threads: `threads` when > 0; else OMP_NUM_THREADS when set; else
///    available_cpus() (LibTorch's own default counts the machine's cores, which oversubscribes a
///    container's quota or a process bound to a few cores).
///  - glibc malloc keeps freed memory for reuse: large blocks come from the heap rather than a
///    fresh mmap each, and free heap is not given back to the system. A step's large tensors (logits
///    blocks, the LM head's gradient, AdamW temporaries) then reuse pages instead of faulting in
///    new ones, which took ~40% of a GRPO step's CPU time at a 151k vocabulary
///    (docs/performance.md, "Step roofline"). The process keeps its peak heap. GRPO_SYSTEM_MALLOC=1
///    keeps glibc's defaults.
/// Returns the intra-op thread count chosen. Later calls only change the threads.
int64_t setup_host(int64_t threads);

/// Intra-op threads that follow the CPUs other processes leave free (run.threads: 0). On 2 cores
/// beside one busy process, a step with 2 threads ran 4.1x slower than alone, with 1 thread 1.2x
/// (docs/performance.md, "Threads under load"): every parallel region waits for the thread that
/// shares its core. update(), called between steps, measures over the interval since its last
/// call the CPU time the machine spent busy (/proc/stat, steal included) minus this process's own
/// (getrusage), and sets threads = available_cpus() - that, rounded, at least 1. It acts only
/// where /proc/stat describes this process's CPUs (its affinity covers every online CPU and no
/// cgroup quota applies); elsewhere, and when disabled, it keeps the threads as they are. A change
/// of thread count may change float rounding (reductions split differently): fix run.threads for
/// bit-for-bit reruns under changing load.
class ThreadGovernor {
 public:
  explicit ThreadGovernor(bool enabled);
  /// The threads now set; `changed` tells whether this call changed them.
  int64_t update(bool* changed = nullptr);
  /// CPUs other processes kept busy over the last interval (0 before one was measured).
  double others() const { return others_; }

 private:
  bool on_ = false;
  int64_t cpus_ = 1;
  double busy_ = -1, total_ = 0, self_ = 0, others_ = 0;
};

/// One line for logs and skipped tests: "CUDA kernels built: yes; CUDA devices: 1 (NVIDIA H100 ...)".
std::string cuda_summary();

}  // namespace grpo
