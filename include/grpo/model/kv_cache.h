// KV cache for incremental decoding. The model talks to this interface only, so other layouts
// (the paged cache below, MLA's compressed latent cache, GPU decode kernels) plug in behind it.
#pragma once

#include <cstdint>
#include <utility>
#include <vector>

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
  /// For a cache that computes decode attention itself: stores k, v of `layer` as append() does
  /// and returns the attention output [batch, heads, new, dv] of q [batch, heads, new, dq] over
  /// every stored key. latent: MLA's absorbed decode (keys [k | v], values k). Undefined when it
  /// does not (the default): the caller runs attention on append()'s keys and values instead.
  virtual at::Tensor decode_attention(int64_t layer, const at::Tensor& q, const at::Tensor& k,
                                      const at::Tensor& v, double scale, bool latent) {
    (void)layer, (void)q, (void)k, (void)v, (void)scale, (void)latent;
    return {};
  }
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

/// Paged cache (vLLM's PagedAttention layout) for the rollout engine. Keys and values live in one
/// pool of fixed-size blocks of `block_size` token slots, per layer [slots, kv_heads, head_dim];
/// each sequence owns a block table. Blocks are taken on demand and returned when a sequence is
/// freed; sequences forked from one prompt share its blocks (reference counts) and copy a shared,
/// partly filled last block before writing into it (copy-on-write). The pool's tensors grow by
/// doubling up to `max_blocks`, so the memory held follows the blocks used.
///
/// A forward over several sequences is declared with begin_step(): row i of the batch appends
/// new_tokens[i] tokens to sequence seqs[i], which are the last new_tokens[i] columns of the
/// forward's T (rows are left-padded). append() then returns, per row, keys laid out as
///   [the row's stored tokens | zeros up to length() | zeros for the row's padding | its new tokens]
/// (length() = the longest stored sequence of the step). Attention is permutation-invariant over
/// keys, so the caller's attention mask [batch, length() + T] marks the row's stored tokens and its
/// new ones as real and the rest as padding. Padding slots read a reserved all-zero block, never
/// another sequence's data. The tensors append() returns live in scratch memory reused by the
/// next append() (the next layer): use them before that.
class PagedKVCache : public KVCache {
 public:
  struct Shape {
    int64_t layers = 1, kv_heads = 1, head_dim = 1, v_head_dim = 0;  // v_head_dim 0: head_dim
  };
  PagedKVCache(const Shape& shape, int64_t block_size, int64_t max_blocks, at::TensorOptions options);

  // ---- sequences
  /// A new, empty sequence; returns its id.
  int64_t add_sequence();
  /// A new sequence sharing every stored token of `seq` (no copy).
  int64_t fork(int64_t seq);
  /// Returns the sequence's blocks (those no other sequence shares) to the pool.
  void free(int64_t seq);
  /// Tokens stored for `seq`.
  int64_t stored(int64_t seq) const;

  // ---- blocks
  int64_t block_size() const { return block_size_; }
  /// Blocks usable by sequences (the reserved zero block excluded).
  int64_t max_blocks() const { return max_blocks_; }
  int64_t blocks_in_use() const { return in_use_; }
  int64_t peak_blocks_in_use() const { return peak_in_use_; }
  int64_t free_blocks() const { return max_blocks_ - in_use_; }
  /// Blocks that storing `n` more tokens in `seq` takes from the pool (new blocks, plus a copy of
  /// a shared, partly filled last block).
  int64_t blocks_needed(int64_t seq, int64_t n) const;
  /// Bytes of one block over all layers (keys and values).
  int64_t bytes_per_block() const;
  static int64_t block_bytes(const Shape& shape, int64_t block_size, int64_t element_size);
  /// Bytes the pool's tensors hold now (they grow with use).
  int64_t bytes_allocated() const;

  // ---- one forward
  /// Declares the batch of the next forward and takes the blocks it needs (at most free_blocks()
  /// in all, else an error).
  void begin_step(const std::vector<int64_t>& seqs, const std::vector<int64_t>& new_tokens);
  std::pair<at::Tensor, at::Tensor> append(int64_t layer, const at::Tensor& k,
                                           const at::Tensor& v) override;
  /// Stores the step's tokens (the new_tokens of begin_step) and ends the step.
  void commit(int64_t n) override;
  /// The step's past width: the most tokens any of its sequences has stored.
  int64_t length() const override { return past_; }
  int64_t capacity() const override { return max_blocks_ * block_size_; }
  int64_t batch_size() const override { return static_cast<int64_t>(step_seqs_.size()); }
  /// Not supported (sequences are freed instead).
  void select_rows(const at::Tensor& rows) override;
  /// Decode steps (one new token per row) of a pool on a GPU with the CUDA kernels: the paged
  /// decode-attention kernel reads keys and values through the block tables (no gathered copy).
  /// Otherwise undefined (append() and SDPA).
  at::Tensor decode_attention(int64_t layer, const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                              double scale, bool latent) override;

 private:
  struct Seq {
    std::vector<int32_t> blocks;
    int64_t stored = 0;
    bool live = false;
  };
  int32_t take_block();
  void release_block(int32_t b);
  void ensure_capacity(int64_t blocks);  // pool tensors hold block ids < blocks
  Seq& seq(int64_t id);
  const Seq& seq(int64_t id) const;

  Shape shape_;
  int64_t block_size_, max_blocks_;
  at::TensorOptions options_;
  std::vector<at::Tensor> k_, v_;  // per layer [capacity_blocks * block_size, heads, dim]
  int64_t capacity_blocks_ = 0;    // block 0: the zero block
  std::vector<int32_t> refs_;      // per block id
  std::vector<int32_t> free_;      // free block ids below capacity_blocks_
  int64_t in_use_ = 0, peak_in_use_ = 0;
  std::vector<Seq> seqs_;
  std::vector<int64_t> free_ids_;
  // the current step
  std::vector<int64_t> step_seqs_, step_new_;
  int64_t past_ = 0, step_T_ = 0;
  at::Tensor write_slots_, write_src_, read_slots_;  // int64 on the pool's device
  at::Tensor k_scratch_, v_scratch_;                 // what append() returns (reused)
  at::Tensor block_table_, lengths_;                 // int32, decode steps on a GPU
  int64_t max_length_ = 0;
};

}  // namespace grpo::model
