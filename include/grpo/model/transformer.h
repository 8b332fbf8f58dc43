// Decoder-only transformer: token embedding, N blocks of RMSNorm -> attention -> residual ->
// RMSNorm -> MLP -> residual, a final RMSNorm and an LM head. Attention is grouped-query with RoPE
// (Llama/Qwen) or multi-head latent attention (DeepSeek-V3); the MLP is SwiGLU or DeepSeekMoE. Parameters carry Hugging Face names
// ("model.layers.0.self_attn.q_proj.weight", "lm_head.weight", ...), so checkpoints map 1:1.
//
// The LibTorch module lives behind a pimpl: this header stays light (no torch/torch.h), and
// callers see tensors and names only.
#pragma once

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <ATen/core/Tensor.h>

#include "grpo/core/profile.h"
#include "grpo/model/kv_cache.h"
#include "grpo/model/logprob.h"
#include "grpo/model/model_config.h"
#include "grpo/model/moe.h"

namespace grpo::dist {
class Comm;
}

namespace grpo::model {

/// Tensor and expert parallelism of one model replica (dist/parallel.h has the layout). tp:
/// attention heads, MLP/shared-expert widths and the vocabulary are split over the group
/// (Megatron: column-parallel q/k/v/gate/up, row-parallel o/down, vocab-parallel embedding, LM head
/// and log-prob), and so is each routed expert's intermediate width (expert tensor parallel: the
/// routed and shared experts' partial sums are reduced once per MoE layer). ep: the routed experts
/// are split over the group and tokens travel to them by all-to-all. Null or size-1 groups: not split. The groups
/// must outlive the model; every rank of a group runs the same calls in the same order.
struct Parallel {
  dist::Comm* tp = nullptr;
  dist::Comm* ep = nullptr;
};

class Transformer {
 public:
  /// Builds the model with freshly initialised weights, drawn from LibTorch's default generator
  /// (seed it first for reproducible weights). Split models draw the same weights as an unsplit
  /// one and keep their slices, so any layout starts from the same model.
  explicit Transformer(const ModelConfig& config, const Parallel& parallel = {});
  ~Transformer();
  Transformer(const Transformer&) = delete;
  Transformer& operator=(const Transformer&) = delete;

  /// Final hidden states (after the last RMSNorm) [batch, seq, hidden].
  ///  input_ids      [batch, seq] int64
  ///  positions      [batch, seq] int64 RoPE positions; undefined: past .. past+seq-1
  ///  attention_mask [batch, past + seq] bool, true = a real token; undefined: all real.
  ///                 Padding is allowed anywhere (left-padded prompts); padded queries attend
  ///                 to themselves only, so no row is ever all -inf. Where padding only ends
  ///                 rows (no cache), the plain causal path runs: real tokens are unaffected and
  ///                 padded positions' outputs are unspecified. An integer mask holds
  ///                 segment ids instead (packed sequences: a token attends only to earlier
  ///                 tokens of its own segment; 0 = padding); positions then restart per segment.
  ///  cache          when given, past keys/values are read from it and the new ones appended.
  at::Tensor forward(const at::Tensor& input_ids, const at::Tensor& positions = {},
                     const at::Tensor& attention_mask = {}, KVCache* cache = nullptr);

  /// LM head weight [vocab, hidden] (the embedding when tied).
  at::Tensor lm_head_weight() const;
  /// Full logits for the given hidden states [..., hidden] -> [..., vocab] (fp32). Use only for
  /// few positions (sampling); training goes through token_logprobs(). Tensor parallel: the slices
  /// are gathered, every rank gets all of them.
  at::Tensor logits(const at::Tensor& hidden) const;
  /// Per-token log-probs (and entropy) of `targets` [batch, seq] from the hidden states: the
  /// chunked op of logprob.h, vocab-parallel under tensor parallelism.
  TokenLogProbs token_logprobs(const at::Tensor& hidden, const at::Tensor& targets,
                               const LogProbOptions& options = {}) const;

  /// Token ids >= n are padding (a vocabulary padded beyond the tokenizer's, e.g. to split over
  /// tp): logits() leaves them out, so they are never sampled, and token_logprobs() normalises over
  /// ids < n only. 0 (the default): the whole vocabulary.
  void set_vocab_limit(int64_t n);
  int64_t vocab_limit() const;

  /// A cache sized for this model.
  std::unique_ptr<KVCache> make_cache(int64_t batch, int64_t capacity) const;
  /// A paged cache for this model (the rollout engine's): up to `max_blocks` blocks of
  /// `block_size` tokens.
  std::unique_ptr<PagedKVCache> make_paged_cache(int64_t block_size, int64_t max_blocks) const;
  /// What one cached token holds per layer (this rank's heads under tp; MLA: its latent).
  PagedKVCache::Shape cache_shape() const;

  /// This rank's parameters (its slices under tp/ep) with their Hugging Face names, in a stable
  /// order: what the optimizer updates.
  std::vector<std::pair<std::string, at::Tensor>> named_parameters() const;
  std::vector<at::Tensor> parameters() const;
  /// Elements of this rank's parameters.
  int64_t num_parameters() const;
  /// Whole parameters (slices gathered over tp/ep; collective: every rank of the groups calls it).
  std::vector<std::pair<std::string, at::Tensor>> full_parameters() const;
  /// The whole tensor for parameter `name` from this rank's slice-shaped `local` (e.g. an
  /// optimizer moment); collective like full_parameters().
  at::Tensor gather_full(const std::string& name, const at::Tensor& local) const;
  /// This rank's slice of the whole tensor `full` of parameter `name`.
  at::Tensor local_slice(const std::string& name, const at::Tensor& full) const;
  /// True if parameter `name` holds routed experts (split over ep; summed over expert-data-
  /// parallel ranks rather than all data-parallel ones).
  bool is_expert_parameter(const std::string& name) const;
  /// Copies values by name from whole tensors (any layout's checkpoint); every parameter must be
  /// present with its whole shape.
  void load_parameters(const std::vector<std::pair<std::string, at::Tensor>>& tensors,
                       const std::string& origin);
  /// Copies all parameter values from another model with the same config and parallel layout.
  void copy_from(const Transformer& other);
  const Parallel& parallel() const { return parallel_; }
  /// Activation recomputation: training forwards keep only each block's input and run the block
  /// again during backward (less memory, about one more forward of compute). Results are the same.
  void set_recompute(bool on);
  bool recompute() const;
  /// Sequence parallel (Megatron, with tp > 1): between the split layers the residual stream,
  /// its norms and what recomputation keeps are split along the sequence over tp (reduce-scatter
  /// out of row-parallel layers, all-gather into the next). Full-sequence forwards only (not
  /// cached decoding). Results are the same.
  void set_sequence_parallel(bool on);
  /// Expert parallel: every forward (and backward) exchanges tokens with all ranks of the ep
  /// group, so those ranks run their forwards in lock step, the same number in the same order
  /// (generate() and the trainer pad with idle forwards). The group, or nullptr when each rank's
  /// forwards are independent (no ep, or ep = 1).
  dist::Comm* lockstep_group() const;
  /// A forward of no tokens that takes part in a lock-step forward's collectives, for a rank with
  /// nothing left to compute while others still have (no gradient; a no-op without lockstep_group).
  void idle_forward();

  /// Moves parameters, buffers and statistics to `device` (e.g. at::Device("cuda:0")); inputs
  /// to forward() must then be on it too. Parameter tensors keep their identity (an optimizer built
  /// on them stays valid).
  void to(const at::Device& device);
  at::Device device() const;

  void train(bool on = true);
  bool is_training() const;
  const ModelConfig& config() const { return config_; }
  /// The least work of one forward on this rank (the step roofline, core/profile.h): the FLOPs
  /// and weight reads of ModelConfig::forward_flops / forward_weight_elements at the parameters'
  /// element size, plus `kv_read` and `kv_written` cached tokens; the whole model's divided by tp.
  core::Work forward_work(double tokens, double logit_tokens, double attended, double kv_read = 0,
                    double kv_written = 0) const;

  // ---- MoE (deepseek_v3 with n_routed_experts > 0)
  /// Indices of the MoE layers (first_k_dense_replace ..).
  std::vector<int64_t> moe_layers() const;
  /// Routing (indices, weights) of `layer` in the latest forward pass.
  moe::Routing last_routing(int64_t layer) const;
  /// Routing replay (R3) for the next forward only: `experts` [B, T, moe layers, top_k] (any
  /// integer type) are the experts each input token uses in each MoE layer instead of the
  /// router's top-k (a token with a negative entry is routed as usual); the gate weights stay the
  /// router's scores of those experts, so the router still learns. An undefined tensor: none.
  void set_routing_replay(const at::Tensor& experts);
  /// Slots routed to each expert of `layer` [E] int64 by training-mode forwards since the last
  /// reset / bias update.
  at::Tensor expert_load(int64_t layer) const;
  /// Replaces the counts (data parallel: the load summed over ranks before the bias update).
  void set_expert_load(int64_t layer, const at::Tensor& load);
  void reset_expert_load();
  /// Aux-loss-free balancing: every MoE layer's e_score_correction_bias += rate * sign(mean load
  /// - load), from the load counted since the last call; then resets the counts.
  void update_router_bias(double rate);
  /// alpha of DeepSeek-V3's sequence-wise balance loss (0 = off); training forwards accumulate it.
  void set_balance_loss_coef(double alpha);
  /// The accumulated balance loss (undefined if none) and resets it; add it to the loss.
  at::Tensor take_balance_loss();

  struct Impl;

 private:
  ModelConfig config_;
  Parallel parallel_;
  std::shared_ptr<Impl> impl_;
};

}  // namespace grpo::model
