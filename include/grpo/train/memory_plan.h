// Memory and communication planner (grpo_plan): for a training config and a number of GPUs, the
// per-GPU bytes of each parallel layout (dp x tp, experts over ep) -- parameters, gradients,
// optimizer state, activations of one micro-batch, the rollout's KV cache -- and the bytes each
// GPU sends per rollout step for the data-parallel gradient all-reduce, the tensor-parallel
// all-reduces and the expert-parallel all-to-alls. Parameter and optimizer bytes are exact for the
// model grpo builds (a test compares them with what the trainer allocates); activations are an
// estimate (stated in docs/distributed.md); communication counts ring all-reduce / all-to-all
// traffic.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "grpo/dist/parallel.h"
#include "grpo/train/config.h"

namespace grpo::train {

struct PlanOptions {
  int64_t gpus = 1;
  int64_t tp = 0, ep = 0;          // 0: every valid value
  double gpu_memory_gib = 80;      // H800 / H100: 80 GB
  std::string precision = "fp32";  // fp32: fp32 weights, gradients and AdamW state; bf16: bf16
                                   // weights and gradients, fp32 master weights + AdamW state
                                   // (optim.precision)
  bool zero1 = false;              // AdamW state (and master weights) split over data-parallel ranks
                                   // (grpo_train: parallel.zero1)
  bool recompute = false;          // full activation recomputation per layer: only each layer's
                                   // input is kept (grpo_train: parallel.recompute)
  bool sequence_parallel = false;  // Megatron sequence parallel: norms and the kept layer inputs
                                   // split over tp (grpo_train: parallel.sequence_parallel)
  int64_t prompt_tokens = 512;     // prompt length assumed for the KV cache and activations
  int64_t max_running = 0;         // sequences decoding at once per GPU (rollout.max_running); 0:
                                   // the rank's whole share
  double kv_cache_bytes = 0;       // the KV pool's limit (rollout.kv_cache_bytes); 0: what
                                   // max_running full-length sequences need
  double logprob_keep_bytes = 0;   // training logits kept for backward up to this (grpo.logprob_keep_bytes)
  int64_t gpus_per_node = 8;       // tp stays inside a node (NVLink); 0: no limit
  double nvlink_gbs = 400, network_gbs = 50;  // per-GPU bandwidths (GB/s) ranking fitting layouts:
                                              // tp traffic over NVLink, dp and ep traffic over the network
};

struct MemoryPlan {
  dist::Layout layout;
  int64_t params = 0, trainable = 0, expert_params = 0;  // elements held by one GPU
  double param_bytes = 0, grad_bytes = 0, optimizer_bytes = 0, activation_bytes = 0, kv_cache_bytes = 0;
  double peak_bytes = 0;  // parameters + gradients + optimizer + max(activations, KV cache)
  // The rollout engine's paged KV pool: what this GPU can give it (90% of its memory less
  // weights, gradients and optimizer), and how many sequences of full length (prompt +
  // max_new_tokens) that holds at once. Sequences shorter than that take fewer blocks, so more of
  // them run; the engine preempts when the pool is full.
  double kv_affordable_bytes = 0;
  int64_t affordable_running = 0;
  double dp_bytes = 0, tp_bytes = 0, ep_bytes = 0;  // sent per GPU per rollout step
  double comm_seconds = 0;  // at options.nvlink_gbs / network_gbs: the ranking of fitting layouts
  int64_t micro_batch_tokens = 0;  // tokens of one training micro-batch (whole sequences)
  bool fits = false;
  std::vector<std::string> arithmetic;  // the computation, line by line
};

/// Bytes of KV cache one token of one sequence takes (per tensor-parallel rank of `tp`), with
/// `bytes_per_value` per cached number (4: fp32, 2: bf16). MLA caches its compressed latent.
double kv_cache_bytes_per_token(const model::ModelConfig& m, int64_t tp, double bytes_per_value);

/// The options a config implies: its optim.precision, parallel.zero1 / recompute /
/// sequence_parallel and rollout.batch_size (what grpo_train would do), for `gpus` GPUs.
PlanOptions plan_options(const Config& config, int64_t gpus);
/// One layout. Throws grpo::Error if the layout does not divide the model (as the trainer would).
MemoryPlan plan_memory(const Config& config, const dist::Layout& layout, const PlanOptions& options);
/// Every valid layout for options.gpus (restricted to options.tp / options.ep when set; tp within
/// a node): fitting layouts first, least communication time first; then the rest, least peak
/// memory first.
std::vector<MemoryPlan> plan_layouts(const Config& config, const PlanOptions& options);

}  // namespace grpo::train
