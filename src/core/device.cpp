#include "grpo/core/device.h"

#include <malloc.h>
#include <sys/resource.h>
#include <sched.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <mutex>
#include <sstream>
#include <string>
#include <vector>

#include <atomic>
#include <cstdlib>

#include <ATen/Context.h>
#include <ATen/Parallel.h>
#include <ATen/cpu/Utils.h>
#include <fmt/format.h>

#include "grpo/build_config.h"
#include "grpo/core/error.h"

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

c10::Device resolve_device(const std::string& name, int64_t local_rank, const std::string& key) {
  auto check = [&](bool ok, const std::string& why) {
    if (!ok) throw ConfigError(fmt::format("{}{}", key, why));
  };
  check(name == "cpu" || name == "cuda" || name.rfind("cuda:", 0) == 0,
        fmt::format(": expected cpu, cuda or cuda:N, found '{}'", name));
  if (name == "cpu") return c10::Device(c10::kCPU);
  int64_t index = local_rank;
  if (name != "cuda") {
    const std::string n = name.substr(5);
    check(!n.empty() && n.size() < 4 && n.find_first_not_of("0123456789") == std::string::npos,
          fmt::format(": expected cuda:N with N a GPU index, found '{}'", name));
    index = std::stoi(n);
  }
  check(cuda_available(), fmt::format(" = {}: no usable GPU here ({})", name, cuda_summary()));
  const int64_t count = at::detail::getCUDAHooks().deviceCount();
  check(index < count,
        name == "cuda" ? fmt::format(" = cuda: the process of local rank {} takes GPU {}, and this machine has {} "
                                     "GPU(s); run at most {} processes per node, or name one GPU for all of them "
                                     "(cuda:N; they then share it through the gloo backend)", index, index, count, count)
                       : fmt::format(" = {}: this machine has {} GPU(s)", name, count));
  return c10::Device(c10::kCUDA, static_cast<c10::DeviceIndex>(index));
}

bool cpu_has_native_bf16() {
  static const bool yes = [] {
    const auto caps = at::cpu::get_cpu_capabilities();
    auto flag = [&](const char* k) {
      auto it = caps.find(k);
      return it != caps.end() && it->second.isBool() && it->second.toBool();
    };
    return flag("amx_bf16") || flag("avx512_bf16");
  }();
  return yes;
}

std::string cuda_summary() {
  const bool backend = at::hasCUDA();
  return fmt::format("CUDA kernels built: {}{}; NCCL built: {}; CUDA backend in LibTorch: {}; CUDA devices: {}",
                     cuda_kernels_built() ? "yes" : "no", cuda_kernels_built() && !cuda_kernels_enabled() ? " (off)" : "",
                     GRPO_WITH_NCCL ? "yes" : "no", backend ? "yes" : "no",
                     backend ? at::detail::getCUDAHooks().deviceCount() : 0);
}

double host_memory_bytes() { return double(::sysconf(_SC_PHYS_PAGES)) * double(::sysconf(_SC_PAGE_SIZE)); }

namespace {

// CPUs a cgroup quota allows (quota / period, rounded up), or 0 when there is none.
double cgroup_cpu_limit() {
  auto read = [](const std::string& path) {
    std::ifstream f(path);
    std::string s;
    std::getline(f, s);
    return s;
  };
  std::vector<std::string> dirs;  // the process's own cgroup (v2 "0::/path" line), then the root
  {
    std::ifstream f("/proc/self/cgroup");
    for (std::string line; std::getline(f, line);)
      if (line.rfind("0::", 0) == 0) dirs.push_back("/sys/fs/cgroup" + line.substr(3));
  }
  dirs.push_back("/sys/fs/cgroup");
  for (const auto& d : dirs) {  // v2: "max 100000" or "200000 100000"
    std::istringstream in(read(d + "/cpu.max"));
    std::string quota;
    double period = 0;
    if (in >> quota >> period && quota != "max" && period > 0) return std::stod(quota) / period;
  }
  const std::string q = read("/sys/fs/cgroup/cpu/cpu.cfs_quota_us"), p = read("/sys/fs/cgroup/cpu/cpu.cfs_period_us");
  if (!q.empty() && !p.empty() && std::stod(q) > 0 && std::stod(p) > 0) return std::stod(q) / std::stod(p);
  return 0;
}

// cgroup_cpu_limit, 0 when a file holds something other than a number
double cpu_quota() {
  try {
    return cgroup_cpu_limit();
  } catch (const std::exception&) {
    return 0;
  }
}

}  // namespace

int64_t available_cpus() {
  int64_t n = 0;
  cpu_set_t set;
  CPU_ZERO(&set);
  if (::sched_getaffinity(0, sizeof(set), &set) == 0) n = CPU_COUNT(&set);
  if (n <= 0) n = ::sysconf(_SC_NPROCESSORS_ONLN);
  const double quota = cpu_quota();
  if (quota > 0) n = std::min<int64_t>(n, int64_t(std::ceil(quota)));
  return std::max<int64_t>(1, n);
}

namespace {
// Machine-wide busy and total CPU time (seconds, all CPUs) from /proc/stat; false if unreadable.
bool machine_cpu_seconds(double& busy, double& total) {
  std::ifstream f("/proc/stat");
  std::string cpu;
  double v[10] = {0};
  if (!(f >> cpu) || cpu != "cpu") return false;
  for (double& x : v) f >> x;  // user nice system idle iowait irq softirq steal guest guest_nice
  if (!f) return false;
  const double tick = double(::sysconf(_SC_CLK_TCK));
  busy = (v[0] + v[1] + v[2] + v[5] + v[6] + v[7]) / tick;  // guest time is inside user
  total = busy + (v[3] + v[4]) / tick;
  return true;
}
double self_cpu_seconds() {
  rusage u{};
  ::getrusage(RUSAGE_SELF, &u);
  return double(u.ru_utime.tv_sec + u.ru_stime.tv_sec) + 1e-6 * double(u.ru_utime.tv_usec + u.ru_stime.tv_usec);
}
}  // namespace

ThreadGovernor::ThreadGovernor(bool enabled) {
  cpus_ = available_cpus();
  on_ = enabled && cpus_ == ::sysconf(_SC_NPROCESSORS_ONLN) && cpu_quota() <= 0;
}

int64_t ThreadGovernor::update(bool* changed) {
  if (changed) *changed = false;
  if (!on_) return at::get_num_threads();
  double busy = 0, total = 0;
  if (!machine_cpu_seconds(busy, total)) return at::get_num_threads();
  const double self = self_cpu_seconds();
  const double d_busy = busy - busy_, d_total = total - total_, d_self = self - self_;
  const bool first = busy_ < 0;
  busy_ = busy, total_ = total, self_ = self;
  if (first || d_total <= 0) return at::get_num_threads();
  const double wall = d_total / double(cpus_);  // seconds of the interval (total counts every CPU)
  others_ = std::max(0.0, (d_busy - d_self) / wall);
  const int64_t want = std::clamp<int64_t>(cpus_ - int64_t(std::lround(others_)), 1, cpus_);
  if (want != at::get_num_threads()) {
    at::set_num_threads(int(want));
    if (changed) *changed = true;
  }
  return want;
}

int64_t setup_host(int64_t threads) {
  static std::once_flag malloc_once;
  std::call_once(malloc_once, [] {
#ifdef __GLIBC__
    const char* system = std::getenv("GRPO_SYSTEM_MALLOC");
    if (!(system && std::string(system) == "1")) {
      ::mallopt(M_MMAP_MAX, 0);                  // large blocks from the heap, reused after free
      ::mallopt(M_TRIM_THRESHOLD, -1);           // (size_t)-1: never give free heap back
    }
#endif
  });
  int64_t n = threads;
  if (n <= 0) {
    const char* omp = std::getenv("OMP_NUM_THREADS");
    n = omp && std::atoi(omp) > 0 ? std::atoi(omp) : available_cpus();
  }
  if (n != at::get_num_threads()) at::set_num_threads(int(n));
  return n;
}

}  // namespace grpo
