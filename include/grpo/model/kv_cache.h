// KV cache for incremental decoding. The model talks to this interface only, so other layouts
// (a paged cache, MLA's compressed latent cache, GPU decode kernels) plug in behind it.
#pragma once

#include <cstdint>
#include <utility>

#include <ATen/core/Tensor.h>

namespace grpo::model {

class KVCache {
 public:
  virtual ~KVCache() = default;
  /// Stores k, v [batch, kv_heads, new, head_dim] of `layer` after the positions already
  /// committed and returns keys and values of all positions so far,
  /// [batch, kv_heads, length() + new, head_dim].
  virtual std::pair<at::Tensor, at::Tensor> append(int64_t layer, const at::Tensor& k,
                                                   const at::Tensor& v) = 0;
  /// Marks `n` new positions as stored in every layer (the model calls this after a forward).
  virtual void commit(int64_t n) = 0;
  /// Positions stored per sequence.
  virtual int64_t length() const = 0;
  /// Most positions the cache can hold.
  virtual int64_t capacity() const = 0;
  virtual int64_t batch_size() const = 0;
  /// Keeps only the batch rows in `rows` (int64 [n]), in that order (drops finished sequences).
  virtual void select_rows(const at::Tensor& rows) = 0;
};

/// Preallocated contiguous cache: per layer [batch, kv_heads, capacity, head_dim] for keys and
/// [.., v_head_dim] for values (default: head_dim). MLA stores its compressed latent here: one
/// "head" of c_kv (kv_lora_rank wide) as keys and the shared RoPE key (qk_rope_head_dim) as values,
/// not per-head K/V.
class StaticKVCache : public KVCache {
 public:
  StaticKVCache(int64_t layers, int64_t batch, int64_t kv_heads, int64_t capacity,
                int64_t head_dim, at::TensorOptions options, int64_t v_head_dim = 0);
  std::pair<at::Tensor, at::Tensor> append(int64_t layer, const at::Tensor& k,
                                           const at::Tensor& v) override;
  void commit(int64_t n) override;
  int64_t length() const override { return length_; }
  int64_t capacity() const override { return capacity_; }
  int64_t batch_size() const override { return batch_; }
  void select_rows(const at::Tensor& rows) override;

 private:
  std::vector<at::Tensor> k_, v_;
  int64_t batch_, capacity_, length_ = 0;
};

}  // namespace grpo::model
