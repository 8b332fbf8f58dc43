// Fused log-prob/entropy over one chunk of the vocabulary: the CUDA half of
// grpo::model::token_logprobs (src/model/logprob.cpp). The wrapper computes each chunk's logits
// z = h W_chunk^T with cuBLAS and these kernels do everything that would otherwise be several
// passes of LibTorch elementwise and reduction ops over [rows, vocab]:
//
//   forward   stats_init, then stats_update per vocabulary chunk (an online softmax: running max
//             m, s = sum exp(z' - m), q = sum exp(z' - m) z', the target's z'; z' = z / tau),
//             then stats_finalize: lse = m + log s, log p = z'_target - lse, H = lse - q / s
//   backward  grad per vocabulary chunk: dL/dz = (g_logp (onehot - p) - g_H p (log p + H)) / tau
//
// Torch-free: raw pointers and a cudaStream_t, rows are row-major with a leading dimension.
// z and dz use the element type `dt`; m, s, q, z'_target, lse, entropy, log p, the incoming
// gradients and dz are in the accumulator type (fp32; fp64 for fp64 inputs). Every function
// returns the launch's cudaError_t.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "kernels/common/dtype.h"

namespace grpo::kernels {

/// m = -inf, s = q = z'_target = 0 for `rows` rows (accumulator type `acc`).
cudaError_t logprob_stats_init(DType acc, int64_t rows, void* m, void* s, void* q, void* zt,
                               cudaStream_t stream);

/// Merges chunk z [rows, cols] (leading dimension ld, element type dt) holding vocabulary columns
/// [col_begin, col_begin + cols) into the running statistics. targets [rows] int64: vocabulary
/// ids; the chunk that holds a row's target writes its z'_target.
cudaError_t logprob_stats_update(DType dt, const void* z, int64_t rows, int64_t cols, int64_t ld,
                                 const int64_t* targets, int64_t col_begin, double inv_temperature,
                                 void* m, void* s, void* q, void* zt, cudaStream_t stream);

/// lse = m + log s, logp = zt - lse, entropy = lse - q / s (entropy may be null).
cudaError_t logprob_stats_finalize(DType acc, int64_t rows, const void* m, const void* s, const void* q,
                                   const void* zt, void* logp, void* lse, void* entropy, cudaStream_t stream);

/// dz [rows, cols] (contiguous, accumulator type) = dL/dz for chunk z (as in stats_update), given
/// the forward's lse and entropy and the incoming gradients g_logp, g_entropy [rows] (either may
/// be null: zero). entropy may be null when g_entropy is.
cudaError_t logprob_grad(DType dt, const void* z, int64_t rows, int64_t cols, int64_t ld,
                         const int64_t* targets, int64_t col_begin, double inv_temperature,
                         const void* lse, const void* entropy, const void* g_logp, const void* g_entropy,
                         void* dz, cudaStream_t stream);

}  // namespace grpo::kernels
