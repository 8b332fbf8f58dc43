// Fused fp32 CPU passes of the chunked log-prob op (logprob.cpp) over one block of logits: the
// online-softmax fold and the block's dL/dz, each one pass per row after the row's max, instead of
// the five to seven LibTorch elementwise passes (max, subtract, exp, sum, dot, gather). Rows of the
// block are [row_begin, row_end); the caller splits rows over threads. Torch-free. Built for
// AVX-512, AVX2+FMA and baseline x86-64 (function multiversioning picks one at load time).
#pragma once

#include <cstdint>

namespace grpo::model::cpu {

/// z: logits of rows x cols (row stride ld), vocabulary columns [c0, c0 + cols). Folds
/// z / temperature (inv_t = 1 / temperature) into each row's running max m, sum s of exp(z - m),
/// sum q of exp(z - m) z, and target logit zt (where the row's target lies in the block).
void softmax_fold(const float* z, int64_t ld, int64_t row_begin, int64_t row_end, int64_t cols, const int64_t* tgt,
                  int64_t c0, float inv_t, float* m, float* s, float* q, float* zt);

/// dL/dz of the same block into dz (row stride ldz), from the forward's lse and entropy H:
///   dz = inv_t (-p (g_logp + g_H (log p + H)) + g_logp [column = target]),  p = exp(z inv_t - lse).
/// g_logp and g_ent (with ent) may be null (no gradient flows from them).
void softmax_grad(const float* z, int64_t ld, int64_t row_begin, int64_t row_end, int64_t cols, const int64_t* tgt,
                  int64_t c0, float inv_t, const float* lse, const float* ent, const float* g_logp, const float* g_ent,
                  float* dz, int64_t ldz);

}  // namespace grpo::model::cpu
