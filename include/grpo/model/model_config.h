// Sizes of a decoder-only transformer: the Llama/Qwen family (grouped-query attention, SwiGLU) and
// DeepSeek-V3 (multi-head latent attention, DeepSeekMoE). Field names follow Hugging Face
// config.json, so the importer maps them one to one.
#pragma once

#include <cstdint>
#include <string>

#include "grpo/core/config.h"

namespace grpo::model {

struct ModelConfig {
  std::string path;  // Hugging Face directory to start from; empty = random init of these sizes
  std::string model_type = "llama";  // llama | qwen2 | qwen3 | deepseek_v3 (HF model_type)
  int64_t vocab_size = 0;  // 0: taken from the tokenizer
  int64_t hidden_size = 128;
  int64_t num_hidden_layers = 3;
  int64_t num_attention_heads = 4;
  int64_t num_key_value_heads = 4;
  int64_t head_dim = 0;  // 0: hidden_size / num_attention_heads
  int64_t intermediate_size = 352;
  int64_t max_position_embeddings = 64;
  double rope_theta = 10000.0;
  double rms_norm_eps = 1e-6;
  bool tie_word_embeddings = false;
  bool attention_bias = false;      // q/k/v projection bias (Qwen2: always)
  bool attention_out_bias = false;  // o_proj bias (Llama/Qwen3 attention_bias)
  bool mlp_bias = false;            // gate/up/down bias (Llama mlp_bias)
  bool qk_norm = false;             // RMSNorm on each head of q and k before RoPE (Qwen3)
  double initializer_range = 0.02;

  // RoPE scaling (YaRN, as DeepSeek-V3 uses it) and layout.
  std::string rope_type = "default";  // default | yarn
  double rope_factor = 1.0;
  int64_t rope_original_max_position_embeddings = 0;
  double rope_beta_fast = 32.0, rope_beta_slow = 1.0;
  double rope_mscale = 0.0, rope_mscale_all_dim = 0.0;
  bool rope_interleave = false;  // DeepSeek: rotary dims in interleaved pairs

  // Multi-head latent attention (deepseek_v3).
  int64_t q_lora_rank = 0;  // 0: q is one projection (no low-rank query)
  int64_t kv_lora_rank = 0;
  int64_t qk_nope_head_dim = 0;
  int64_t qk_rope_head_dim = 0;
  int64_t v_head_dim = 0;

  // DeepSeekMoE (deepseek_v3).
  int64_t n_routed_experts = 0;  // 0: every MLP is dense
  int64_t n_shared_experts = 0;
  int64_t num_experts_per_tok = 0;
  int64_t moe_intermediate_size = 0;
  int64_t n_group = 1;
  int64_t topk_group = 1;
  bool norm_topk_prob = true;
  double routed_scaling_factor = 1.0;
  int64_t first_k_dense_replace = 0;

  bool is_mla() const { return model_type == "deepseek_v3"; }
  bool is_moe_layer(int64_t layer) const {
    return n_routed_experts > 0 && layer >= first_k_dense_replace;
  }
  /// Width of the rotary part of a head (all of it, except in MLA).
  int64_t rope_dim() const { return is_mla() ? qk_rope_head_dim : resolved_head_dim(); }
  /// Parameter count of the model this config describes (no allocation; 671B checks).
  int64_t count_parameters() const;
  /// The parameters by how the tensor/expert-parallel model (transformer.h, Parallel) places
  /// them: split over tp (column/row-parallel weights, vocabulary), replicated on every rank, and
  /// routed experts (split over ep). A rank holds split / tp + replicated + experts / ep elements.
  /// `frozen` counts replicated elements that take no gradient (the router's correction bias).
  struct ParameterSplit {
    int64_t split = 0, replicated = 0, experts = 0, frozen = 0;
    int64_t total() const { return split + replicated + experts; }
  };
  ParameterSplit parameter_split() const;

  /// The least work of a forward pass (the step roofline, core/profile.h): `tokens` tokens through
  /// the blocks, `logit_tokens` of them through the LM head, `attended` (query, key) pairs in
  /// attention over all sequences. FLOPs: 2 per multiply-add of every matmul the tokens go
  /// through (MoE: router, shared and top-k routed experts) and of attention's scores and
  /// weighted values.
  double forward_flops(double tokens, double logit_tokens, double attended) const;
  /// Weight elements such a forward reads at least once (MoE: only the routed experts its tokens
  /// can reach; the LM head only when logits are needed).
  double forward_weight_elements(double tokens, double logit_tokens) const;
  /// Elements the KV cache keeps per token over all layers (MLA: the latent and the RoPE key).
  int64_t kv_elements_per_token() const;

  int64_t resolved_head_dim() const {
    return head_dim > 0 ? head_dim : hidden_size / num_attention_heads;
  }
  /// Throws ConfigError for inconsistent sizes (heads not dividing, GQA groups, odd head_dim).
  void validate(const core::ConfigSource& src, const char* prefix = "model") const;

  void visit(core::ConfigVisitor& v) {
    using core::at_least;
    v.field("path", path, "Hugging Face model directory to start from (config.json + safetensors); "
            "empty = a new random model of the sizes below. With a path, the sizes come from its "
            "config.json and any size also set here must agree with it");
    v.field("model_type", model_type, "architecture family (Hugging Face model_type)",
            {"llama", "qwen2", "qwen3", "deepseek_v3"});
    v.field("vocab_size", vocab_size, "vocabulary size; 0 = the tokenizer's", core::between(0, 1 << 24));
    v.field("hidden_size", hidden_size, "model width", core::between(1, 1 << 17));
    v.field("num_hidden_layers", num_hidden_layers, "transformer blocks", core::between(1, 4096));
    v.field("num_attention_heads", num_attention_heads, "query heads", core::between(1, 4096));
    v.field("num_key_value_heads", num_key_value_heads,
            "key/value heads (grouped-query attention; divides num_attention_heads)", at_least(1));
    v.field("head_dim", head_dim, "per-head width; 0 = hidden_size / num_attention_heads",
            at_least(0));
    v.field("intermediate_size", intermediate_size, "SwiGLU MLP width", core::between(1, 1 << 20));
    v.field("max_position_embeddings", max_position_embeddings,
            "longest sequence (prompt + response) the model handles", core::between(2, 1 << 24));
    v.field("rope_theta", rope_theta, "RoPE base frequency", core::positive());
    v.field("rms_norm_eps", rms_norm_eps, "RMSNorm epsilon", core::positive());
    v.field("tie_word_embeddings", tie_word_embeddings, "LM head shares the embedding matrix");
    v.field("attention_bias", attention_bias, "bias on q/k/v projections (Qwen2 style)");
    v.field("attention_out_bias", attention_out_bias, "bias on the attention output projection");
    v.field("mlp_bias", mlp_bias, "bias on the MLP projections");
    v.field("qk_norm", qk_norm, "RMSNorm per head on q and k before RoPE (Qwen3 style)");
    v.field("initializer_range", initializer_range, "std of the normal weight init",
            core::positive());
    v.field("rope_type", rope_type, "RoPE scaling: default, or yarn (DeepSeek-V3's long context)",
            {"default", "yarn"});
    v.field("rope_factor", rope_factor, "yarn: context extension factor", core::at_least(1));
    v.field("rope_original_max_position_embeddings", rope_original_max_position_embeddings,
            "yarn: the pre-extension context length", at_least(0));
    v.field("rope_beta_fast", rope_beta_fast, "yarn: ramp boundary (fast rotations)", core::positive());
    v.field("rope_beta_slow", rope_beta_slow, "yarn: ramp boundary (slow rotations)", core::positive());
    v.field("rope_mscale", rope_mscale, "yarn: mscale (attention temperature)", at_least(0));
    v.field("rope_mscale_all_dim", rope_mscale_all_dim,
            "yarn: mscale_all_dim; also scales the softmax by mscale(factor, mscale_all_dim)^2",
            at_least(0));
    v.field("rope_interleave", rope_interleave,
            "rotary dimensions come in interleaved pairs (DeepSeek checkpoints)");
    v.field("q_lora_rank", q_lora_rank, "MLA: rank of the low-rank query; 0 = a full projection",
            at_least(0));
    v.field("kv_lora_rank", kv_lora_rank, "MLA: rank of the compressed key/value latent", at_least(0));
    v.field("qk_nope_head_dim", qk_nope_head_dim, "MLA: per-head query/key width without RoPE",
            at_least(0));
    v.field("qk_rope_head_dim", qk_rope_head_dim,
            "MLA: per-head query/key width with RoPE (the key part is shared by all heads)",
            at_least(0));
    v.field("v_head_dim", v_head_dim, "MLA: per-head value width", at_least(0));
    v.field("n_routed_experts", n_routed_experts, "MoE: routed experts per layer; 0 = dense MLPs",
            at_least(0));
    v.field("n_shared_experts", n_shared_experts, "MoE: shared experts (always active)", at_least(0));
    v.field("num_experts_per_tok", num_experts_per_tok, "MoE: routed experts per token (top-k)",
            at_least(0));
    v.field("moe_intermediate_size", moe_intermediate_size, "MoE: SwiGLU width of each expert",
            at_least(0));
    v.field("n_group", n_group, "MoE: expert groups (group-limited routing)", at_least(1));
    v.field("topk_group", topk_group, "MoE: groups each token may route to", at_least(1));
    v.field("norm_topk_prob", norm_topk_prob, "MoE: normalise the top-k weights to sum to 1");
    v.field("routed_scaling_factor", routed_scaling_factor, "MoE: routed output scale",
            core::positive());
    v.field("first_k_dense_replace", first_k_dense_replace,
            "MoE: the first k layers keep a dense MLP (intermediate_size)", at_least(0));
  }
};

}  // namespace grpo::model
