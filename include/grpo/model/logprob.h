// Per-token log-probabilities and entropy from hidden states and the LM head: the op shared by
// training, evaluation and the reference model. Rows are processed in chunks and the backward
// pass recomputes each chunk's logits, so [batch, seq, vocab] logits never exist at once, neither
// in the forward pass nor saved for backward (memory O(chunk_rows x vocab)). Tensor-parallel and
// CUDA versions plug in behind this same function.
#pragma once

#include <cstdint>

#include <ATen/core/Tensor.h>

namespace grpo::dist {
class Comm;
}

namespace grpo::model {

struct LogProbOptions {
  int64_t chunk_rows = 2048;  // rows (tokens) per chunk
  double temperature = 1.0;   // log-probs of softmax(logits / temperature)
  bool with_entropy = true;
};

struct TokenLogProbs {
  at::Tensor logprobs;  // [batch, seq] fp32 (fp64 for fp64 inputs): log p(target)
  at::Tensor entropy;   // [batch, seq] same dtype (undefined when with_entropy is false)
};

/// hidden [batch, seq, hidden], weight [vocab, hidden], targets [batch, seq] int64 in [0, vocab).
/// Differentiable with respect to hidden and weight (through both outputs).
TokenLogProbs token_logprobs(const at::Tensor& hidden, const at::Tensor& weight,
                             const at::Tensor& targets, const LogProbOptions& options = {});

/// Tensor parallel: `weight_shard` holds rows [vocab_begin, vocab_begin + rows) of the LM head of
/// a `vocab_size` vocabulary split over `group` (every rank passes the same hidden and targets).
/// Equal to token_logprobs on the whole weight; [batch, seq, vocab] logits never exist, not even
/// per rank (two small all-reduces per chunk of rows).
TokenLogProbs token_logprobs_vocab_parallel(const at::Tensor& hidden, const at::Tensor& weight_shard,
                                            const at::Tensor& targets, int64_t vocab_begin,
                                            int64_t vocab_size, dist::Comm& group,
                                            const LogProbOptions& options = {});

}  // namespace grpo::model
