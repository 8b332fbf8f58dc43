// The paged KV cache: a pool of token slots per layer, block tables per sequence, reference counts
// for blocks shared by forked sequences (a group's prompt), copy-on-write of a shared last block.
#include <algorithm>

#include <ATen/ATen.h>

#include "grpo/core/error.h"
#include "grpo/model/kv_cache.h"
#include "kernel_dispatch.h"
#include "paged_attention.h"

namespace grpo::model {

PagedKVCache::PagedKVCache(const Shape& shape, int64_t block_size, int64_t max_blocks,
                           at::TensorOptions options)
    : shape_(shape), block_size_(block_size), max_blocks_(max_blocks), options_(options) {
  GRPO_CHECK(block_size >= 1 && max_blocks >= 1, "paged KV cache: block size ({}) and block count ({}) must be >= 1",
             block_size, max_blocks);
  if (shape_.v_head_dim <= 0) shape_.v_head_dim = shape_.head_dim;
  k_.resize(size_t(shape_.layers));
  v_.resize(size_t(shape_.layers));
  ensure_capacity(1 + std::min<int64_t>(max_blocks_, 16));
}

void PagedKVCache::ensure_capacity(int64_t blocks) {
  if (blocks <= capacity_blocks_) return;
  const int64_t cap = std::min(max_blocks_ + 1, std::max(blocks, 2 * capacity_blocks_));
  const int64_t bs = block_size_;
  for (int64_t l = 0; l < shape_.layers; ++l) {
    for (auto* pool : {&k_[size_t(l)], &v_[size_t(l)]}) {
      const int64_t dim = pool == &k_[size_t(l)] ? shape_.head_dim : shape_.v_head_dim;
      // (uninitialised beyond the zero block: a slot is read only after it was written)
      auto grown = at::empty({cap * bs, shape_.kv_heads, dim}, options_);
      if (capacity_blocks_ > 0)
        grown.narrow(0, 0, capacity_blocks_ * bs).copy_(*pool);
      else
        grown.narrow(0, 0, bs).zero_();
      *pool = grown;
    }
  }
  refs_.resize(size_t(cap), 0);
  for (int64_t b = cap - 1; b >= std::max<int64_t>(capacity_blocks_, 1); --b) free_.push_back(int32_t(b));
  capacity_blocks_ = cap;
}

int32_t PagedKVCache::take_block() {
  GRPO_ASSERT(in_use_ < max_blocks_);
  if (free_.empty()) ensure_capacity(capacity_blocks_ + 1);
  int32_t b = free_.back();
  free_.pop_back();
  refs_[size_t(b)] = 1;
  peak_in_use_ = std::max(peak_in_use_, ++in_use_);
  return b;
}

void PagedKVCache::release_block(int32_t b) {
  GRPO_ASSERT(b > 0 && refs_[size_t(b)] > 0);
  if (--refs_[size_t(b)] == 0) {
    free_.push_back(b);
    --in_use_;
  }
}

PagedKVCache::Seq& PagedKVCache::seq(int64_t id) {
  GRPO_ASSERT(id >= 0 && id < int64_t(seqs_.size()) && seqs_[size_t(id)].live);
  return seqs_[size_t(id)];
}
const PagedKVCache::Seq& PagedKVCache::seq(int64_t id) const {
  GRPO_ASSERT(id >= 0 && id < int64_t(seqs_.size()) && seqs_[size_t(id)].live);
  return seqs_[size_t(id)];
}

int64_t PagedKVCache::add_sequence() {
  int64_t id;
  if (!free_ids_.empty()) {
    id = free_ids_.back();
    free_ids_.pop_back();
  } else {
    id = int64_t(seqs_.size());
    seqs_.emplace_back();
  }
  seqs_[size_t(id)] = Seq{{}, 0, true};
  return id;
}

int64_t PagedKVCache::fork(int64_t from) {
  const int64_t id = add_sequence();
  auto& src = seq(from);
  for (auto b : src.blocks) ++refs_[size_t(b)];
  seqs_[size_t(id)].blocks = src.blocks;
  seqs_[size_t(id)].stored = src.stored;
  return id;
}

void PagedKVCache::free(int64_t id) {
  auto& s = seq(id);
  for (auto b : s.blocks) release_block(b);
  s = Seq{};
  free_ids_.push_back(id);
}

int64_t PagedKVCache::stored(int64_t id) const { return seq(id).stored; }

int64_t PagedKVCache::blocks_needed(int64_t id, int64_t n) const {
  const auto& s = seq(id);
  if (n <= 0) return 0;
  const int64_t have = int64_t(s.blocks.size());
  const int64_t want = (s.stored + n + block_size_ - 1) / block_size_;
  const bool copy = s.stored % block_size_ != 0 && refs_[size_t(s.blocks.back())] > 1;
  return std::max<int64_t>(0, want - have) + (copy ? 1 : 0);
}

int64_t PagedKVCache::block_bytes(const Shape& s, int64_t block_size, int64_t element_size) {
  const int64_t v = s.v_head_dim > 0 ? s.v_head_dim : s.head_dim;
  return s.layers * block_size * s.kv_heads * (s.head_dim + v) * element_size;
}

int64_t PagedKVCache::bytes_per_block() const {
  return block_bytes(shape_, block_size_, int64_t(options_.dtype().itemsize()));
}

int64_t PagedKVCache::bytes_allocated() const { return capacity_blocks_ * bytes_per_block(); }

void PagedKVCache::begin_step(const std::vector<int64_t>& seqs, const std::vector<int64_t>& new_tokens) {
  GRPO_ASSERT(seqs.size() == new_tokens.size() && !seqs.empty());
  int64_t need = 0, T = 0, past = 0;
  for (size_t i = 0; i < seqs.size(); ++i) {
    need += blocks_needed(seqs[i], new_tokens[i]);
    T = std::max(T, new_tokens[i]);
    past = std::max(past, seq(seqs[i]).stored);
  }
  GRPO_CHECK(need <= free_blocks(), "paged KV cache: the step needs {} blocks, {} of {} are free", need,
             free_blocks(), max_blocks_);
  const int64_t bs = block_size_, B = int64_t(seqs.size()), S = past + T;
  std::vector<int64_t> write, src, read(size_t(B * S), 0);
  for (int64_t i = 0; i < B; ++i) {
    auto& s = seq(seqs[size_t(i)]);
    const int64_t n = new_tokens[size_t(i)];
    if (n > 0 && s.stored % bs != 0 && refs_[size_t(s.blocks.back())] > 1) {  // copy-on-write
      const int32_t old = s.blocks.back(), nb = take_block();
      for (auto* pools : {&k_, &v_})
        for (auto& pool : *pools)
          pool.narrow(0, int64_t(nb) * bs, s.stored % bs).copy_(pool.narrow(0, int64_t(old) * bs, s.stored % bs));
      release_block(old);
      s.blocks.back() = nb;
    }
    while (int64_t(s.blocks.size()) * bs < s.stored + n) s.blocks.push_back(take_block());
    auto slot = [&](int64_t t) { return int64_t(s.blocks[size_t(t / bs)]) * bs + t % bs; };
    for (int64_t t = 0; t < s.stored; ++t) read[size_t(i * S + t)] = slot(t);
    for (int64_t j = 0; j < n; ++j) {
      const int64_t col = T - n + j;
      write.push_back(slot(s.stored + j));
      src.push_back(i * T + col);
      read[size_t(i * S + past + col)] = slot(s.stored + j);
    }
  }
  auto to_tensor = [&](const std::vector<int64_t>& x) { return at::tensor(x, at::kLong).to(options_.device()); };
  write_slots_ = to_tensor(write);
  write_src_ = to_tensor(src);
  read_slots_ = to_tensor(read);
  block_table_ = lengths_ = at::Tensor();
  if (T == 1 && detail::paged_decode_in_place(k_[0])) {  // decode_attention's block tables
    int64_t nb = 1;
    for (auto id : seqs) nb = std::max<int64_t>(nb, int64_t(seq(id).blocks.size()));
    std::vector<int32_t> table(size_t(B * nb), 0);
    std::vector<int32_t> lens(static_cast<size_t>(B), 0);
    max_length_ = 0;
    for (int64_t i = 0; i < B; ++i) {
      const auto& s = seq(seqs[size_t(i)]);
      std::copy(s.blocks.begin(), s.blocks.end(), table.begin() + i * nb);
      lens[size_t(i)] = int32_t(s.stored + new_tokens[size_t(i)]);
      max_length_ = std::max<int64_t>(max_length_, lens[size_t(i)]);
    }
    block_table_ = at::tensor(table, at::kInt).view({B, nb}).to(options_.device());
    lengths_ = at::tensor(lens, at::kInt).to(options_.device());
  }
  step_seqs_ = seqs;
  step_new_ = new_tokens;
  past_ = past;
  step_T_ = T;
}

std::pair<at::Tensor, at::Tensor> PagedKVCache::append(int64_t layer, const at::Tensor& k, const at::Tensor& v) {
  GRPO_ASSERT(layer >= 0 && layer < shape_.layers && !step_seqs_.empty());
  const int64_t B = batch_size(), T = step_T_, S = past_ + T;
  GRPO_CHECK(k.size(0) == B && k.size(2) == T && v.size(0) == B && v.size(2) == T,
             "paged KV cache: the forward's batch [{}, {}] is not the step's [{}, {}]", k.size(0), k.size(2), B, T);
  // The gathered keys and values go to scratch tensors reused by every layer and step (a fresh
  // tensor of this size per layer costs page faults on every step): what append() returns is
  // valid until the next append().
  auto store = [&](at::Tensor& pool, at::Tensor& scratch, const at::Tensor& x) {  // x [B, H, T, D]
    auto rows = x.transpose(1, 2).reshape({B * T, x.size(1), x.size(3)});
    pool.index_copy_(0, write_slots_, rows.index_select(0, write_src_));
    if (!scratch.defined() || scratch.size(0) < B * S) {
      auto sizes = pool.sizes().vec();
      sizes[0] = std::max<int64_t>(B * S, scratch.defined() ? 2 * scratch.size(0) : 0);
      scratch = at::empty(sizes, pool.options());
    }
    auto out = scratch.narrow(0, 0, B * S);
    at::index_select_out(out, pool, 0, read_slots_);
    return out.view({B, S, x.size(1), x.size(3)}).transpose(1, 2);
  };
  auto keys = store(k_[size_t(layer)], k_scratch_, k);
  auto values = store(v_[size_t(layer)], v_scratch_, v);
  return {keys, values};
}

at::Tensor PagedKVCache::decode_attention(int64_t layer, const at::Tensor& q, const at::Tensor& k,
                                          const at::Tensor& v, double scale, bool latent) {
  if (!block_table_.defined()) return {};
  GRPO_ASSERT(layer >= 0 && layer < shape_.layers && q.size(2) == 1);
  const int64_t B = batch_size();
  for (auto [pool, x] : {std::pair{&k_[size_t(layer)], &k}, std::pair{&v_[size_t(layer)], &v}})
    pool->index_copy_(0, write_slots_, x->transpose(1, 2).reshape({B, x->size(1), x->size(3)}));
  const auto& kp = k_[size_t(layer)];
  const auto& vp = v_[size_t(layer)];
  auto out = latent ? detail::paged_decode_attention(q.squeeze(2), kp, vp, kp, block_table_, lengths_, block_size_,
                                                     scale, max_length_)
                    : detail::paged_decode_attention(q.squeeze(2), kp, at::Tensor(), vp, block_table_, lengths_,
                                                     block_size_, scale, max_length_);
  return out.unsqueeze(2);
}

void PagedKVCache::commit(int64_t) {
  for (size_t i = 0; i < step_seqs_.size(); ++i) seq(step_seqs_[i]).stored += step_new_[i];
  step_seqs_.clear();
  step_new_.clear();
  past_ = step_T_ = 0;
}

void PagedKVCache::select_rows(const at::Tensor&) {
  GRPO_CHECK(false, "paged KV cache: select_rows is not supported (free finished sequences instead)");
}

}  // namespace grpo::model
