// Per-token log-probabilities and entropy from hidden states and the LM head: the op shared by
// training, evaluation and the reference model. Logits are computed a block of [chunk_rows,
// chunk_vocab] at a time and folded into an online softmax (running max, sum of exponentials and
// their logit-weighted sum per row); the backward pass recomputes each block. So [batch, seq,
// vocab] logits never exist, neither in the forward pass nor saved for backward: memory is
// O(chunk_rows x chunk_vocab). On GPU tensors (a build with CUDA kernels) the per-block softmax
// and gradient passes are fused kernels (kernels/logprob/); on CPU tensors the same math runs as
// LibTorch ops. The tensor-parallel version all-reduces the same per-row statistics.
#pragma once

#include <cstdint>

#include <ATen/core/Tensor.h>

namespace grpo::dist {
class Comm;
}

namespace grpo::model {

struct LogProbOptions {
  // Block shape; 0 = by device: 512 x 4096 on the CPU (a block's logits, 8 MiB, stay in cache
  // through the elementwise passes: the 151k-vocabulary GRPO step's log-prob backward took 2.8 s
  // instead of 3.6 s with 2048 x 32768), 2048 x 32768 on a GPU.
  int64_t chunk_rows = 0;   // rows (tokens) per block
  int64_t chunk_vocab = 0;  // vocabulary columns per block
  double temperature = 1.0;   // log-probs of softmax(logits / temperature)
  bool with_entropy = true;
  // With autograd: keep the forward's logits (all [rows, vocab], fp32) for the backward pass when
  // they take at most this many bytes, instead of recomputing them block by block (one LM-head
  // matmul less per training pass; 0.6 s of a 151k-vocabulary CPU step); 0 = always recompute.
  double keep_logits_bytes = 0;
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
