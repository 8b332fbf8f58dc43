// The step roofline (grpo_train --profile, run.profile): the time of each stage of a GRPO step
// beside the least work its shapes demand (FLOPs and bytes, model/model_config.h ForwardWork) and
// the fraction of this machine's measured peak that work achieved.
//
//   StageTimer t(Stage::kDecode);  // times until destroyed; on a GPU, synchronizes at both ends
//   t.work(flops, bytes);
//
// Off by default: then a StageTimer is one branch and no synchronization. The totals are
// process-wide (the engine and the trainer add to them); one profile per process.
#pragma once

#include <array>
#include <chrono>
#include <cstdint>
#include <string>

#include <c10/core/Device.h>
#include <c10/core/ScalarType.h>

namespace grpo::core {

enum class Stage : int {
  kPrefill,         // rollout: prompt forwards (with the logits of prompts that start sampling)
  kDecode,          // rollout: one-token forwards and their logits
  kSampling,        // rollout: temperature, top-k/p, the draw and its log-prob
  kReward,          // scoring that did not overlap generation
  kOldLogprobs,     // no-grad forwards of the policy for the old log-probs
  kRefLogprobs,     // no-grad forwards of the reference model
  kPolicyForward,   // training forwards (log-probs with autograd) and the loss
  kBackward,        // their backward passes
  kOptimizer,       // gradient clipping and the AdamW step
};
inline constexpr int kStages = 9;
const char* stage_name(Stage s);

/// Least work: FLOPs and bytes moved (the roofline's numerators).
struct Work {
  double flops = 0, bytes = 0;
};

struct StageTotals {
  double seconds = 0, flops = 0, bytes = 0;
  int64_t calls = 0;
};

/// Turns profiling on for this process (stage edges synchronize `device` when it is a GPU), or
/// off (the totals stay).
void enable_profile(c10::Device device);
void disable_profile();
bool profile_enabled();
/// Forgets the totals so far (after a warm-up step).
void reset_profile();
std::array<StageTotals, kStages> profile_totals();

class StageTimer {
 public:
  explicit StageTimer(Stage s);
  ~StageTimer();
  StageTimer(const StageTimer&) = delete;
  StageTimer& operator=(const StageTimer&) = delete;
  /// The least work of what this timer times (added to the stage's totals).
  void work(const Work& w) {
    flops_ += w.flops;
    bytes_ += w.bytes;
  }
  bool on() const { return on_; }

 private:
  Stage stage_;
  bool on_;
  double flops_ = 0, bytes_ = 0;
  std::chrono::steady_clock::time_point t0_;
};

/// The machine's measured peaks: a large matmul in `dtype` and a large copy, on `device`.
struct MachinePeak {
  double flops_per_s = 0, bytes_per_s = 0;
  std::string what;  // "fp32 GEMM 2048^3 ..., copy 512 MiB ..."
};
MachinePeak measure_peak(c10::Device device, c10::ScalarType dtype);

/// The table: stage, seconds (and share of the step), GFLOP, GB, achieved GFLOP/s and GB/s, the
/// roofline time max(flops / peak, bytes / bandwidth) and its fraction of the measured time.
/// `steps` divides the totals (per-step numbers); `step_seconds` (> 0: the steps' measured wall
/// time) adds a row for the time outside every stage.
std::string roofline_table(const std::array<StageTotals, kStages>& totals, const MachinePeak& peak, int64_t steps,
                           double step_seconds = 0);

}  // namespace grpo::core
