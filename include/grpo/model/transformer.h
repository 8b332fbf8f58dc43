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

#include "grpo/model/kv_cache.h"
#include "grpo/model/model_config.h"
#include "grpo/model/moe.h"

namespace grpo::model {

class Transformer {
 public:
  /// Builds the model with freshly initialised weights, drawn from LibTorch's default generator
  /// (seed it first for reproducible weights).
  explicit Transformer(const ModelConfig& config);
  ~Transformer();
  Transformer(const Transformer&) = delete;
  Transformer& operator=(const Transformer&) = delete;

  /// Final hidden states (after the last RMSNorm) [batch, seq, hidden].
  ///  input_ids      [batch, seq] int64
  ///  positions      [batch, seq] int64 RoPE positions; undefined: past .. past+seq-1
  ///  attention_mask [batch, past + seq] bool, true = a real token; undefined: all real.
  ///                 Padding is allowed anywhere (left-padded prompts); padded queries attend
  ///                 to themselves only, so no row is ever all -inf. An integer mask holds
  ///                 segment ids instead (packed sequences: a token attends only to earlier
  ///                 tokens of its own segment; 0 = padding); positions then restart per segment.
  ///  cache          when given, past keys/values are read from it and the new ones appended.
  at::Tensor forward(const at::Tensor& input_ids, const at::Tensor& positions = {},
                     const at::Tensor& attention_mask = {}, KVCache* cache = nullptr);

  /// LM head weight [vocab, hidden] (the embedding when tied).
  at::Tensor lm_head_weight() const;
  /// Full logits for the given hidden states [..., hidden] -> [..., vocab] (fp32). Use only for
  /// few positions (sampling); training goes through token_logprobs().
  at::Tensor logits(const at::Tensor& hidden) const;

  /// A cache sized for this model.
  std::unique_ptr<KVCache> make_cache(int64_t batch, int64_t capacity) const;

  /// Parameters with their Hugging Face names, in a stable order.
  std::vector<std::pair<std::string, at::Tensor>> named_parameters() const;
  std::vector<at::Tensor> parameters() const;
  int64_t num_parameters() const;
  /// Copies values by name; every parameter must be present with the same shape.
  void load_parameters(const std::vector<std::pair<std::string, at::Tensor>>& tensors,
                       const std::string& origin);
  /// Copies all parameter values from another model with the same config.
  void copy_from(const Transformer& other);

  void train(bool on = true);
  bool is_training() const;
  const ModelConfig& config() const { return config_; }

  // ---- MoE (deepseek_v3 with n_routed_experts > 0)
  /// Indices of the MoE layers (first_k_dense_replace ..).
  std::vector<int64_t> moe_layers() const;
  /// Routing (indices, weights) of `layer` in the latest forward pass.
  moe::Routing last_routing(int64_t layer) const;
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
  std::shared_ptr<Impl> impl_;
};

}  // namespace grpo::model
