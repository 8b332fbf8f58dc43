#include "grpo/core/profile.h"

#include <algorithm>
#include <functional>
#include <mutex>

#include <ATen/ATen.h>
#include <c10/core/impl/DeviceGuardImplInterface.h>
#include <fmt/format.h>

namespace grpo::core {
namespace {

struct ProfileState {
  bool on = false;
  c10::Device device{c10::kCPU};
  std::mutex mu;
  std::array<StageTotals, kStages> totals{};
};
ProfileState& state() {
  static ProfileState s;
  return s;
}

void synchronize(c10::Device d) {
  if (d.is_cpu()) return;
  c10::impl::getDeviceGuardImpl(d.type())->synchronizeDevice(d.index() < 0 ? 0 : d.index());
}

double seconds_of(const std::function<void()>& f, int reps, c10::Device d) {
  f();  // warm-up
  synchronize(d);
  double best = 1e300;
  for (int r = 0; r < reps; ++r) {
    auto t0 = std::chrono::steady_clock::now();
    f();
    synchronize(d);
    best = std::min(best, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  return best;
}

}  // namespace

const char* stage_name(Stage s) {
  static const char* names[kStages] = {"prefill",        "decode",   "sampling",  "reward",   "old log-probs",
                                       "ref log-probs",  "forward",  "backward",  "optimizer"};
  return names[int(s)];
}

void enable_profile(c10::Device device) {
  auto& s = state();
  s.on = true;
  s.device = device;
}
void disable_profile() { state().on = false; }
bool profile_enabled() { return state().on; }

void reset_profile() {
  auto& s = state();
  std::lock_guard<std::mutex> lock(s.mu);
  s.totals = {};
}

std::array<StageTotals, kStages> profile_totals() {
  auto& s = state();
  std::lock_guard<std::mutex> lock(s.mu);
  return s.totals;
}

StageTimer::StageTimer(Stage s) : stage_(s), on_(state().on) {
  if (!on_) return;
  synchronize(state().device);
  t0_ = std::chrono::steady_clock::now();
}

StageTimer::~StageTimer() {
  if (!on_) return;
  auto& s = state();
  synchronize(s.device);
  const double sec = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0_).count();
  std::lock_guard<std::mutex> lock(s.mu);
  auto& t = s.totals[size_t(stage_)];
  t.seconds += sec;
  t.flops += flops_;
  t.bytes += bytes_;
  ++t.calls;
}

MachinePeak measure_peak(c10::Device device, c10::ScalarType dtype) {
  at::NoGradGuard no_grad;
  MachinePeak p;
  const int64_t n = device.is_cpu() ? 2048 : 8192;
  auto opts = at::TensorOptions().dtype(dtype).device(device);
  auto a = at::randn({n, n}, opts), b = at::randn({n, n}, opts), c = at::empty({n, n}, opts);
  const double gemm = seconds_of([&] { at::mm_out(c, a, b); }, 5, device);
  p.flops_per_s = 2.0 * double(n) * double(n) * double(n) / gemm;
  const int64_t bytes = device.is_cpu() ? (int64_t(512) << 20) : (int64_t(4) << 30);
  auto src = at::ones({bytes / 4}, opts.dtype(at::kFloat)), dst = at::empty_like(src);
  const double copy = seconds_of([&] { dst.copy_(src); }, 5, device);
  p.bytes_per_s = 2.0 * double(bytes) / copy;  // read + write
  p.what = fmt::format("{} GEMM {}^3: {:.1f} GFLOP/s; copy {} MiB: {:.1f} GB/s (read + write), best of 5",
                       c10::toString(dtype), n, p.flops_per_s / 1e9, bytes >> 20, p.bytes_per_s / 1e9);
  return p;
}

std::string roofline_table(const std::array<StageTotals, kStages>& totals, const MachinePeak& peak, int64_t steps,
                           double step_seconds) {
  const double k = 1.0 / double(std::max<int64_t>(1, steps));
  double staged = 0, floor_total = 0;
  for (const auto& t : totals) staged += t.seconds * k;
  const double total = step_seconds > 0 ? step_seconds * k : staged;
  std::string out = fmt::format("machine peak: {}\nper step (mean of {} steps):\n", peak.what, steps);
  out += fmt::format("{:<14} {:>9} {:>6} {:>9} {:>8} {:>9} {:>8} {:>10} {:>8}\n", "stage", "seconds", "share",
                     "GFLOP", "GB", "GFLOP/s", "GB/s", "floor s", "of floor");
  for (int i = 0; i < kStages; ++i) {
    const auto& t = totals[size_t(i)];
    if (t.calls == 0) continue;
    const double sec = t.seconds * k, fl = t.flops * k, by = t.bytes * k;
    const double floor_s = std::max(fl / peak.flops_per_s, by / peak.bytes_per_s);
    floor_total += floor_s;
    const bool modeled = fl > 0 || by > 0;
    out += fmt::format("{:<14} {:>9.4f} {:>5.1f}% {:>9.2f} {:>8.3f} {:>9.1f} {:>8.2f} {:>10} {:>8}\n",
                       stage_name(Stage(i)), sec, total > 0 ? 100 * sec / total : 0.0, fl / 1e9, by / 1e9,
                       sec > 0 ? fl / sec / 1e9 : 0.0, sec > 0 ? by / sec / 1e9 : 0.0,
                       modeled ? fmt::format("{:.4f}", floor_s) : std::string("-"),
                       modeled && sec > 0 ? fmt::format("{:.0f}%", 100 * floor_s / sec) : std::string("-"));
  }
  if (step_seconds > 0)
    out += fmt::format("{:<14} {:>9.4f} {:>5.1f}%\n", "(unstaged)", total - staged, 100 * (total - staged) / total);
  out += fmt::format("{:<14} {:>9.4f} {:>6} {:>9} {:>8} {:>9} {:>8} {:>10.4f} {:>8}\n", "total", total, "", "", "", "",
                     "", floor_total, total > 0 ? fmt::format("{:.0f}%", 100 * floor_total / total) : "-");
  return out;
}

}  // namespace grpo::core
