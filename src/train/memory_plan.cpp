#include "grpo/train/memory_plan.h"

#include <algorithm>

#include "grpo/core/error.h"

namespace grpo::train {
namespace {

constexpr double kGiB = 1024.0 * 1024.0 * 1024.0;

std::string gib(double b) { return fmt::format("{:.2f} GiB", b / kGiB); }

// The divisibility rules of the tensor/expert-parallel model (src/model/parallel_linear.cpp's
// Split::part, the MoE layer in moe_layer.cpp); "" if valid.
std::string layout_problem(const model::ModelConfig& m, const dist::Layout& l) {
  auto need = [&](int64_t n, int64_t d, const char* key) -> std::string {
    return n % d == 0 ? "" : fmt::format("model.{} ({}) is not divisible by {}", key, n, d);
  };
  std::string e;
  for (auto [n, key] : std::vector<std::pair<int64_t, const char*>>{
           {m.num_attention_heads, "num_attention_heads"}, {m.vocab_size, "vocab_size"},
           {m.intermediate_size, "intermediate_size"}})
    if (e.empty()) e = need(n, l.tp, key);
  if (e.empty() && !m.is_mla()) e = need(m.num_key_value_heads, l.tp, "num_key_value_heads");
  if (e.empty() && m.n_routed_experts > 0) {
    e = need(m.moe_intermediate_size, l.tp, "moe_intermediate_size");
    if (e.empty()) e = need(m.n_routed_experts, l.ep, "n_routed_experts");
  }
  return e;
}

}  // namespace

PlanOptions plan_options(const Config& cfg, int64_t gpus) {
  PlanOptions o;
  o.gpus = gpus;
  o.precision = cfg.optim.precision;
  o.zero1 = cfg.parallel.zero1;
  o.recompute = cfg.parallel.recompute;
  o.sequence_parallel = cfg.parallel.sequence_parallel;
  o.max_running = cfg.rollout.max_running;
  o.kv_cache_bytes = cfg.rollout.kv_cache_bytes;
  o.logprob_keep_bytes = cfg.grpo.logprob_keep_bytes;
  return o;
}

double kv_cache_bytes_per_token(const model::ModelConfig& m, int64_t tp, double bytes_per_value) {
  return m.is_mla() ? double(m.kv_lora_rank + m.qk_rope_head_dim) * double(m.num_hidden_layers) * bytes_per_value
                    : 2.0 * double(m.num_key_value_heads / tp) * double(m.resolved_head_dim()) *
                          double(m.num_hidden_layers) * bytes_per_value;
}

MemoryPlan plan_memory(const Config& cfg, const dist::Layout& l, const PlanOptions& o) {
  const auto& m = cfg.model;
  GRPO_CHECK(o.precision == "fp32" || o.precision == "bf16", "precision must be fp32 or bf16, found '{}'",
             o.precision);
  if (auto e = layout_problem(m, l); !e.empty()) fail("layout {}: {}", l.describe(), e);
  MemoryPlan p;
  p.layout = l;
  auto& a = p.arithmetic;
  const auto split = m.parameter_split();
  const int64_t dp = l.dp(), edp = dp / l.ep;
  // routed experts: whole experts over ep, each one's intermediate width over tp
  const int64_t experts_local = split.experts / (l.ep * l.tp), dense_local = split.split / l.tp + split.replicated;
  p.params = dense_local + experts_local;
  p.expert_params = experts_local;
  p.trainable = p.params - split.frozen;
  a.push_back(fmt::format("parameters per GPU = split {} / tp {} + replicated {} + routed experts {} / (ep {} x tp "
                          "{}) = {} ({:.3f} B; {} trainable)", split.split, l.tp, split.replicated, split.experts,
                          l.ep, l.tp, p.params, p.params / 1e9, p.trainable));
  const double wb = o.precision == "fp32" ? 4 : 2;  // weight and gradient bytes
  p.param_bytes = p.params * wb;
  p.grad_bytes = p.trainable * wb;
  // AdamW: exp_avg + exp_avg_sq in fp32 (+ an fp32 master copy with bf16 weights)
  const double ob = o.precision == "fp32" ? 8 : 12;
  const double dense_trainable = double(dense_local - split.frozen), expert_trainable = double(experts_local);
  p.optimizer_bytes = o.zero1 ? ob * (dense_trainable / dp + expert_trainable / edp) : ob * double(p.trainable);
  a.push_back(fmt::format("weights {} B x {} = {}; gradients {} B x {} = {}", wb, p.params, gib(p.param_bytes), wb,
                          p.trainable, gib(p.grad_bytes)));
  a.push_back(o.zero1 ? fmt::format("optimizer {} B x ({} / dp {} + experts {} / expert-dp {}) = {} (ZeRO-1)", ob,
                                    int64_t(dense_trainable), dp, int64_t(expert_trainable), edp,
                                    gib(p.optimizer_bytes))
                      : fmt::format("optimizer {} B x {} = {} (AdamW exp_avg + exp_avg_sq{})", ob, p.trainable,
                                    gib(p.optimizer_bytes), o.precision == "bf16" ? " + fp32 master" : ""));
  // Activations saved for backward by one micro-batch: the trainer's micro-batch holds whole
  // sequences, as many as fit in grpo.micro_batch_tokens (at least one, of the longest length).
  // Estimate, 16-bit (scaled for fp32), after Korthikanti et al. 2022 with fused attention: per
  // layer s h (10 + 24 / tp) bytes (34 s h / tp with sequence parallel) plus, in MoE layers, the
  // routed experts' k rows per token of input, output and 3 intermediate slices (k s (2h + 3 i /
  // tp)). With recomputation only each layer's input is kept (s h, / tp with sequence parallel)
  // and one layer is live at a time.
  const int64_t len = o.prompt_tokens + cfg.grpo.max_new_tokens_max(cfg.rollout.max_new_tokens);
  const double T = double(std::max<int64_t>(1, cfg.grpo.micro_batch_tokens / len) * len);
  p.micro_batch_tokens = int64_t(T);
  const double H = double(m.hidden_size), ab = wb;
  const bool sp = o.sequence_parallel && l.tp > 1;
  auto layer_bytes = [&](int64_t layer) {
    double b = sp ? T * H * 34.0 / l.tp * ab / 2 : T * H * (10.0 + 24.0 / l.tp) * ab / 2;
    if (m.is_moe_layer(layer))
      b += T * m.num_experts_per_tok * (2 * H + 3.0 * m.moe_intermediate_size / l.tp) * ab;
    return b;
  };
  double act = 0, live = 0;
  for (int64_t layer = 0; layer < m.num_hidden_layers; ++layer) {
    live = std::max(live, layer_bytes(layer));
    act += o.recompute ? T * H * ab / (sp ? l.tp : 1) : layer_bytes(layer);
  }
  if (o.recompute) act += live;
  act += 2048.0 * double(m.vocab_size) / l.tp * 4 * 3;  // one chunk of the log-prob op
  // its logits kept for backward (response tokens; at most a micro-batch's tokens)
  const double kept = T * double(m.vocab_size) / l.tp * 4;
  if (kept <= o.logprob_keep_bytes) act += kept;
  p.activation_bytes = act;
  a.push_back(fmt::format("activations (estimate) of a micro-batch of {} tokens ({} x {}-token sequences) x {} "
                          "layers{}{} = {}", int64_t(T), int64_t(T) / len, len, m.num_hidden_layers,
                          o.recompute ? fmt::format(", recomputed: kept layer inputs + one live layer of {}", gib(live)) : "",
                          sp ? ", sequence parallel" : "", gib(act)));
  // KV cache of the rollout: the engine's pool, max_running full-length sequences or its limit
  const int64_t seqs_rank = cfg.grpo.prompts_per_step * cfg.grpo.group_size / dp;
  const int64_t seqs = o.max_running > 0 ? std::min(o.max_running, seqs_rank) : seqs_rank;
  const double per_token = kv_cache_bytes_per_token(m, l.tp, wb);
  const double full = double(seqs) * double(len) * per_token;
  p.kv_cache_bytes = o.kv_cache_bytes > 0 ? std::min(o.kv_cache_bytes, full) : full;
  a.push_back(fmt::format("KV cache pool: {} sequences x {} tokens x {} B per token = {}{}{}", seqs, len,
                          int64_t(per_token), gib(full),
                          seqs < seqs_rank ? fmt::format(" (rollout.max_running {} of the rank's {})", seqs, seqs_rank) : "",
                          p.kv_cache_bytes < full ? fmt::format(", limited by rollout.kv_cache_bytes to {} (the "
                                                                "engine preempts beyond it)", gib(p.kv_cache_bytes))
                                                  : ""));
  p.peak_bytes = p.param_bytes + p.grad_bytes + p.optimizer_bytes + std::max(p.activation_bytes, p.kv_cache_bytes);
  p.fits = p.peak_bytes <= o.gpu_memory_gib * kGiB * 0.9;  // 10% for the allocator and workspaces
  a.push_back(fmt::format("peak = weights + gradients + optimizer + max(activations, KV cache) = {} of {} GiB "
                          "(90% usable): {}", gib(p.peak_bytes), o.gpu_memory_gib, p.fits ? "fits" : "does not fit"));
  p.kv_affordable_bytes = std::max(0.0, o.gpu_memory_gib * kGiB * 0.9 - p.param_bytes - p.grad_bytes - p.optimizer_bytes);
  p.affordable_running = int64_t(p.kv_affordable_bytes / (double(len) * per_token));
  a.push_back(fmt::format("KV pool this GPU can afford: {} = {} sequences of {} tokens at once (more when "
                          "responses are shorter: blocks are taken as tokens are generated)",
                          gib(p.kv_affordable_bytes), p.affordable_running, len));
  // communication per rollout step, bytes sent by one GPU
  const double opt_steps = double(cfg.grpo.mini_batches * cfg.grpo.inner_epochs);
  const double ring_dp = dp > 1 ? 2.0 * (dp - 1) / dp : 0, ring_edp = edp > 1 ? 2.0 * (edp - 1) / edp : 0;
  p.dp_bytes = opt_steps * wb * (ring_dp * dense_trainable + ring_edp * expert_trainable);
  const double tokens_rank = double(seqs_rank) * double(len);  // trained tokens per rank per step (upper bound)
  const double passes = 3;  // training forward + backward, and the reference/old-policy forward
  int64_t moe_layers = 0;
  for (int64_t layer = 0; layer < m.num_hidden_layers; ++layer) moe_layers += m.is_moe_layer(layer);
  // tp: 2 all-reduces of [tokens, H] per layer forward (attention out, MLP out), 2 backward, + embedding
  p.tp_bytes = l.tp > 1 ? cfg.grpo.inner_epochs * passes * tokens_rank * H * wb * 2.0 * (l.tp - 1) / l.tp *
                              (2.0 * m.num_hidden_layers + 1)
                        : 0;
  // ep: dispatch + combine all-to-all of k rows per token per MoE layer, forward and backward
  p.ep_bytes = l.ep > 1 ? cfg.grpo.inner_epochs * passes * tokens_rank * m.num_experts_per_tok * H * wb * 2.0 *
                              (l.ep - 1) / l.ep * moe_layers
                        : 0;
  p.comm_seconds = p.tp_bytes / (o.nvlink_gbs * 1e9) + (p.dp_bytes + p.ep_bytes) / (o.network_gbs * 1e9);
  a.push_back(fmt::format("per rollout step and GPU: gradient all-reduce {} ({} optimizer steps, ring), "
                          "tensor-parallel all-reduces {}, expert all-to-all {} ({} tokens trained per rank, at most): "
                          "{:.0f} s at {} GB/s NVLink (tp) and {} GB/s network (dp, ep)",
                          gib(p.dp_bytes), int64_t(opt_steps), gib(p.tp_bytes), gib(p.ep_bytes), int64_t(tokens_rank),
                          p.comm_seconds, o.nvlink_gbs, o.network_gbs));
  return p;
}

std::vector<MemoryPlan> plan_layouts(const Config& cfg, const PlanOptions& o) {
  GRPO_CHECK(o.gpus >= 1, "--gpus must be at least 1, found {}", o.gpus);
  std::vector<MemoryPlan> out;
  std::string last_problem;
  for (int64_t tp = 1; tp <= o.gpus; ++tp) {
    if (o.gpus % tp || (o.tp && tp != o.tp)) continue;
    if (!o.tp && o.gpus_per_node > 0 && tp > o.gpus_per_node) continue;  // tp inside a node
    const int64_t dp = o.gpus / tp;
    for (int64_t ep = 1; ep <= dp; ++ep) {
      if (dp % ep || (o.ep && ep != o.ep) || (ep > 1 && cfg.model.n_routed_experts == 0)) continue;
      dist::Layout l{o.gpus, tp, ep};
      if (auto e = layout_problem(cfg.model, l); !e.empty()) {
        last_problem = fmt::format("{}: {}", l.describe(), e);
        continue;
      }
      if (cfg.grpo.prompts_per_step % dp) {
        last_problem = fmt::format("{}: grpo.prompts_per_step ({}) does not split over dp {}", l.describe(),
                                   cfg.grpo.prompts_per_step, dp);
        continue;
      }
      out.push_back(plan_memory(cfg, l, o));
    }
  }
  GRPO_CHECK(!out.empty(), "no valid layout for {} GPUs{}", o.gpus,
             last_problem.empty() ? "" : " (e.g. " + last_problem + ")");
  std::stable_sort(out.begin(), out.end(), [](const MemoryPlan& a, const MemoryPlan& b) {
    if (a.fits != b.fits) return a.fits;
    return a.fits ? a.comm_seconds < b.comm_seconds : a.peak_bytes < b.peak_bytes;
  });
  return out;
}

}  // namespace grpo::train
