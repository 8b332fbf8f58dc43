// Decode attention over a paged KV cache on the CPU in fp32, reading each sequence's keys and values
// in place through its block table (no gather into contiguous tensors, no padding to the longest
// row). Torch-free; paged_attention.cpp splits the work over threads. Built for AVX-512, AVX2+FMA
// and baseline x86-64 (function multiversioning picks one at load time).
#pragma once

#include <cstdint>

namespace grpo::model::cpu {

struct PagedDecodeCpu {
  const float* q = nullptr;  // [batch, heads, dk + dr], contiguous
  const float* k = nullptr;  // pool [slots, kv_heads, dk]
  const float* r = nullptr;  // pool [slots, kv_heads, dr] or null (keys are [k | r])
  const float* v = nullptr;  // pool [slots, kv_heads, dv] (MLA's absorbed decode: v = k)
  float* out = nullptr;      // [batch, heads, dv]
  int64_t batch = 0, heads = 0, kv_heads = 0, dk = 0, dr = 0, dv = 0;
  const int32_t* block_table = nullptr;  // [batch, max_blocks]
  int64_t max_blocks = 0;
  const int32_t* lengths = nullptr;  // [batch]: stored keys per sequence (0: the output row is zero)
  int64_t block_size = 0;
  float scale = 1;
};

/// out for work items [item_begin, item_end), an item being one (sequence, KV head) pair, item =
/// b * kv_heads + h: softmax(scale q K^T) V for the heads / kv_heads query heads that share the KV
/// head, one pass over the sequence's keys with an online softmax per block of the cache. The
/// result does not depend on how the items are split.
void paged_decode_attention(const PagedDecodeCpu& a, int64_t item_begin, int64_t item_end);

}  // namespace grpo::model::cpu
