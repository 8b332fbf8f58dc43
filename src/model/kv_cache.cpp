#include "grpo/model/kv_cache.h"

#include <ATen/ATen.h>

#include "grpo/core/error.h"

namespace grpo::model {

StaticKVCache::StaticKVCache(int64_t layers, int64_t batch, int64_t kv_heads, int64_t capacity,
                             int64_t head_dim, at::TensorOptions options, int64_t v_head_dim)
    : batch_(batch), capacity_(capacity) {
  if (v_head_dim <= 0) v_head_dim = head_dim;
  // (uninitialised: only the stored prefix [0, length) is ever read)
  for (int64_t l = 0; l < layers; ++l) {
    k_.push_back(at::empty({batch, kv_heads, capacity, head_dim}, options));
    v_.push_back(at::empty({batch, kv_heads, capacity, v_head_dim}, options));
  }
}

std::pair<at::Tensor, at::Tensor> StaticKVCache::append(int64_t layer, const at::Tensor& k,
                                                        const at::Tensor& v) {
  GRPO_ASSERT(layer >= 0 && layer < static_cast<int64_t>(k_.size()));
  int64_t n = k.size(2);
  GRPO_CHECK(length_ + n <= capacity_, "KV cache overflow: {} stored + {} new > capacity {}",
             length_, n, capacity_);
  GRPO_ASSERT(k.size(0) == batch_ && v.size(0) == batch_ && v.size(2) == n);
  k_[layer].narrow(2, length_, n).copy_(k);
  v_[layer].narrow(2, length_, n).copy_(v);
  return {k_[layer].narrow(2, 0, length_ + n), v_[layer].narrow(2, 0, length_ + n)};
}

void StaticKVCache::commit(int64_t n) { length_ += n; }

void StaticKVCache::select_rows(const at::Tensor& rows) {
  // copies the stored prefix only, straight into the new buffers
  auto pick = [&](at::Tensor& t) {
    auto sizes = t.sizes().vec();
    sizes[0] = rows.size(0);
    auto kept = at::empty(sizes, t.options());
    auto prefix = kept.narrow(2, 0, length_);
    at::index_select_out(prefix, t.narrow(2, 0, length_), 0, rows);
    t = kept;
  };
  for (auto& t : k_) pick(t);
  for (auto& t : v_) pick(t);
  batch_ = rows.size(0);
}

}  // namespace grpo::model
