// Sizes of a decoder-only transformer (Llama/Qwen family). Field names follow Hugging Face
// config.json where one exists, so a later importer maps them one to one.
#pragma once

#include <cstdint>
#include <string>

#include "grpo/core/config.h"

namespace grpo::model {

struct ModelConfig {
  std::string path;  // Hugging Face directory to start from; empty = random init of these sizes
  std::string model_type = "llama";  // llama | qwen2 | qwen3 (Hugging Face model_type)
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
            {"llama", "qwen2", "qwen3"});
    v.field("vocab_size", vocab_size, "vocabulary size; 0 = the tokenizer's", at_least(0));
    v.field("hidden_size", hidden_size, "model width", at_least(1));
    v.field("num_hidden_layers", num_hidden_layers, "transformer blocks", at_least(1));
    v.field("num_attention_heads", num_attention_heads, "query heads", at_least(1));
    v.field("num_key_value_heads", num_key_value_heads,
            "key/value heads (grouped-query attention; divides num_attention_heads)", at_least(1));
    v.field("head_dim", head_dim, "per-head width; 0 = hidden_size / num_attention_heads",
            at_least(0));
    v.field("intermediate_size", intermediate_size, "SwiGLU MLP width", at_least(1));
    v.field("max_position_embeddings", max_position_embeddings,
            "longest sequence (prompt + response) the model handles", at_least(2));
    v.field("rope_theta", rope_theta, "RoPE base frequency", core::positive());
    v.field("rms_norm_eps", rms_norm_eps, "RMSNorm epsilon", core::positive());
    v.field("tie_word_embeddings", tie_word_embeddings, "LM head shares the embedding matrix");
    v.field("attention_bias", attention_bias, "bias on q/k/v projections (Qwen2 style)");
    v.field("attention_out_bias", attention_out_bias, "bias on the attention output projection");
    v.field("mlp_bias", mlp_bias, "bias on the MLP projections");
    v.field("qk_norm", qk_norm, "RMSNorm per head on q and k before RoPE (Qwen3 style)");
    v.field("initializer_range", initializer_range, "std of the normal weight init",
            core::positive());
  }
};

}  // namespace grpo::model
