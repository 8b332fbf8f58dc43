// DeepSeekMoE routing and token permutation: the CUDA half of grpo::model::moe (src/model/moe.cpp).
//
//   route_topk        sigmoid + bias + group-limited top-k in one kernel (one warp per token),
//                     replacing LibTorch's sigmoid, add, two topk, scatter, expand, masked_fill
//   gather_rows       dst[i] = scale[i] * src[index[i]]           permute; unpermute's backward
//   gather_sum_rows   dst[t] = sum_j w[t,j] src[pos[t,j]]          unpermute; permute's backward
//   row_dots          out[t,j] = <a[t], b[pos[t,j]]>               unpermute's gate-weight grad
//
// pos[t, j] is the expert-major row of token t's j-th slot (the inverse of the dispatch
// permutation), so every reduction is a gather: no atomics, results independent of scheduling.
// Rows are contiguous, `width` elements of type `dt`; scales, weights and dot products are in the
// accumulator type (fp32; fp64 for fp64). Each function returns the launch's cudaError_t.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "kernels/common/dtype.h"

namespace grpo::kernels {

/// Largest expert count, group count and top-k route_topk handles (the wrapper falls back to the
/// LibTorch reference beyond them).
inline constexpr int kRouteMaxExperts = 1024;
inline constexpr int kRouteMaxGroups = 32;
inline constexpr int kRouteMaxTopK = 32;

/// logits [tokens, experts] fp32, bias [experts] fp32 -> indices [tokens, top_k] int64: the experts
/// chosen by DeepSeek-V3's router (choice score sigmoid(logit) + bias; groups ranked by the sum of
/// their two best choice scores; the best topk_group groups kept; top_k experts within them),
/// in decreasing choice score, ties to the lower expert id. Needs experts % n_group == 0, at least
/// 2 experts per group and top_k <= topk_group * experts / n_group.
cudaError_t moe_route_topk(const float* logits, const float* bias, int64_t tokens, int experts, int n_group,
                           int topk_group, int top_k, int64_t* indices, cudaStream_t stream);

/// dst[i, :] = src[index[i], :] (times scale[i] when scale is not null), i < rows.
cudaError_t moe_gather_rows(DType dt, const void* src, const int64_t* index, const void* scale, int64_t rows,
                            int64_t width, void* dst, cudaStream_t stream);

/// dst[t, :] = sum_j weights[t, j] src[pos[t, j], :] (weight 1 when weights is null), summed in the
/// accumulator type; t < tokens, j < k.
cudaError_t moe_gather_sum_rows(DType dt, const void* src, const int64_t* pos, const void* weights,
                                int64_t tokens, int k, int64_t width, void* dst, cudaStream_t stream);

/// out[t, j] = sum_h a[t, h] b[pos[t, j], h] (accumulator type), t < tokens, j < k.
cudaError_t moe_row_dots(DType dt, const void* a, const void* b, const int64_t* pos, int64_t tokens, int k,
                         int64_t width, void* out, cudaStream_t stream);

}  // namespace grpo::kernels
