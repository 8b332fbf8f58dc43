// Token sampling: temperature, top-k, top-p (nucleus). Randomness comes in as one uniform number
// per row, drawn by the caller from a counter-based key (seed, step, prompt, sample, position),
// so a row's token never depends on which other rows share the batch.
#pragma once

#include <cstdint>

#include <ATen/core/Tensor.h>

#include "grpo/core/config.h"

namespace grpo::rollout {

struct SamplingParams {
  double temperature = 1.0;  // 0 = greedy (argmax)
  double top_p = 1.0;        // keep the smallest set of most likely tokens with mass >= top_p
  int64_t top_k = 0;         // keep the k most likely tokens; 0 = all
  int64_t max_new_tokens = 16;
  // The engine (rollout/generate.h): memory and scheduling knobs. In exact arithmetic they do not
  // change any token (each token's randomness is keyed by prompt, sample and position).
  int64_t max_running = 0;            // sequences decoding at once; 0 = all of a request
  int64_t prefill_chunk_tokens = 2048;// prompt tokens prefilled per engine step
  int64_t kv_block_size = 16;         // tokens per KV cache block
  double kv_cache_bytes = 0;          // the KV pool's limit; 0 = what max_running full-length
                                      // sequences need (never preempts)
  bool prefix_sharing = true;         // a group's samples share its prompt's KV blocks

  void visit(core::ConfigVisitor& v) {
    v.field("temperature", temperature, "sampling temperature; 0 = greedy", core::at_least(0));
    v.field("top_p", top_p, "nucleus sampling mass", {0.0, 1.0, true, false});
    v.field("top_k", top_k, "keep only the k most likely tokens; 0 = no limit", core::at_least(0));
    v.field("max_new_tokens", max_new_tokens, "response length limit (tokens, EOS included)",
            core::at_least(1));
    v.field("max_running", max_running, "sequences a process decodes at once (a finished one's slot "
            "goes to the next waiting one at the next step); 0 = all of its rollout at once",
            core::at_least(0));
    v.field("prefill_chunk_tokens", prefill_chunk_tokens, "prompt tokens prefilled per engine "
            "step, so a long prompt does not stall decoding", {1.0, 1048576.0});
    v.field("kv_block_size", kv_block_size, "tokens per block of the paged KV cache", {1.0, 4096.0});
    v.field("kv_cache_bytes", kv_cache_bytes, "limit of a process's KV cache pool in bytes (it grows "
            "with the blocks used up to this); when full, the latest sequences are preempted and "
            "recomputed later, with the same tokens; 0 = what max_running sequences of full "
            "length need (no preemption)", {0.0, 1e15});
    v.field("prefix_sharing", prefix_sharing, "prefill each prompt once and let its group's "
            "samples share its KV blocks (copy-on-write)");
  }
};

/// The distribution the sampler draws from: softmax(logits / temperature) restricted to top-k and
/// top-p and renormalised. logits [rows, vocab] -> probs [rows, vocab] fp32 (one-hot argmax when
/// temperature is 0).
at::Tensor sampling_distribution(const at::Tensor& logits, const SamplingParams& params);

struct Sampled {
  at::Tensor tokens;    // [rows] int64
  at::Tensor logprobs;  // [rows] fp32: log-prob under softmax(logits / T), before top-k/top-p
                        // (what the trainer's forward pass recomputes); greedy: T = 1
};

/// Draws one token per row by inverse CDF with uniforms [rows] in [0, 1).
Sampled sample_tokens(const at::Tensor& logits, const at::Tensor& uniforms,
                      const SamplingParams& params);

}  // namespace grpo::rollout
