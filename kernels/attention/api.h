// Paged decode attention: one query token per sequence against the keys and values the sequence
// has stored in a paged KV cache (grpo::model::PagedKVCache, the rollout engine's), read through
// its block table -- no gathered copy. FlashDecoding-style: the keys of each (sequence, head) are
// split over `splits` thread blocks, each keeping an online softmax (running max m, sum l and the
// unnormalised output), and a second kernel merges the splits.
//
// Keys are k, or [k | r] when r is given (MLA's absorbed decode: k = the compressed latent c,
// 512 wide, r = the RoPE key, 64 wide, one KV "head"; values are the latent again: v = k).
// Pools are [slots, kv_heads, dim] contiguous; slot = block_table[b][j / block_size] * block_size
// + j % block_size for key j of sequence b. Query head h reads KV head h / (heads / kv_heads).
//
// Torch-free: raw pointers and a cudaStream_t; accumulation in fp32 (fp64 for fp64). The
// LibTorch wrapper and the CPU reference are grpo::model::detail::paged_decode_attention
// (src/model/paged_attention.cpp).
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "kernels/common/dtype.h"

namespace grpo::kernels {

struct PagedDecodeArgs {
  DType dt = DType::kFloat32;       // q, pools and out
  int64_t batch = 0, heads = 0, kv_heads = 0;
  const void* q = nullptr;          // [batch, heads, dk + dr]
  const void* k = nullptr;          // [slots, kv_heads, dk]
  int64_t dk = 0;
  const void* r = nullptr;          // [slots, kv_heads, dr], or null (dr = 0)
  int64_t dr = 0;
  const void* v = nullptr;          // [slots, kv_heads, dv] (may equal k)
  int64_t dv = 0;                   // at most 512
  const int32_t* block_table = nullptr;  // [batch, max_blocks]
  int64_t max_blocks = 0;
  const int32_t* lengths = nullptr;      // [batch] keys per sequence (0: the output is zeros)
  int64_t block_size = 16;
  int64_t max_length = 0;                // the largest of lengths (sizes the splits)
  double scale = 1.0;
  void* out = nullptr;              // [batch, heads, dv]
};

/// How many splits of the keys `paged_decode_attention` uses for `args`, and the bytes of
/// workspace it needs (accumulator-typed partial outputs, maxima and sums).
int64_t paged_decode_splits(const PagedDecodeArgs& args);
int64_t paged_decode_workspace_bytes(const PagedDecodeArgs& args);

cudaError_t paged_decode_attention(const PagedDecodeArgs& args, void* workspace, cudaStream_t stream);

}  // namespace grpo::kernels
