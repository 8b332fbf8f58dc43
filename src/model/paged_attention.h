// Decode attention over a paged KV cache (kernels/attention/api.h on GPU tensors,
// paged_attention_cpu.h on fp32 CPU tensors; the same math in LibTorch otherwise).
#pragma once

#include <cstdint>

#include <ATen/core/Tensor.h>

namespace grpo::model::detail {

/// out [batch, heads, dv] = softmax(scale q K^T) V over each sequence's lengths[b] stored keys,
/// read through its block table.
///  q            [batch, heads, dk + dr]
///  k, v         pools [slots, kv_heads, dk] / [.., dv]; r: [slots, kv_heads, dr] or undefined.
///               Keys are k, or [k | r]; MLA's absorbed decode passes v = k (values = latent).
///  block_table  int32 [batch, max_blocks]; lengths int32 [batch] (0: zeros out)
/// GPU tensors go to the CUDA kernel (when built and enabled), fp32 CPU tensors to the CPU kernel
/// (keys and values read in place), others to the LibTorch reference (gather the keys, matmuls and
/// a softmax in the accumulator type).
/// max_length: the largest of lengths when the caller knows it (else read from `lengths`, a
/// device synchronisation).
at::Tensor paged_decode_attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& r,
                                  const at::Tensor& v, const at::Tensor& block_table, const at::Tensor& lengths,
                                  int64_t block_size, double scale, int64_t max_length = -1);

/// Whether decode steps over pools like `pool` run paged_decode_attention in place (a kernel reads
/// the blocks) rather than gathering the keys for SDPA: CUDA with the kernels on, and fp32 on CPU.
bool paged_decode_in_place(const at::Tensor& pool);

/// The LibTorch reference of paged_decode_attention, on any device.
at::Tensor paged_decode_attention_reference(const at::Tensor& q, const at::Tensor& k, const at::Tensor& r,
                                            const at::Tensor& v, const at::Tensor& block_table,
                                            const at::Tensor& lengths, int64_t block_size, double scale);

}  // namespace grpo::model::detail
