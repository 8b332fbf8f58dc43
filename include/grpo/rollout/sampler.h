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
  int64_t batch_size = 0;    // sequences decoded at once (their KV cache); 0 = all of a request

  void visit(core::ConfigVisitor& v) {
    v.field("temperature", temperature, "sampling temperature; 0 = greedy", core::at_least(0));
    v.field("top_p", top_p, "nucleus sampling mass", {0.0, 1.0, true, false});
    v.field("top_k", top_k, "keep only the k most likely tokens; 0 = no limit", core::at_least(0));
    v.field("max_new_tokens", max_new_tokens, "response length limit (tokens, EOS included)",
            core::at_least(1));
    v.field("batch_size", batch_size, "sequences decoded at once by a process (the KV cache holds "
            "this many); 0 = all of its rollout at once", core::at_least(0));
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
