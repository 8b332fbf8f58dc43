#include "grpo/model/model_config.h"

#include <algorithm>

#include <fmt/format.h>

namespace grpo::model {

void ModelConfig::validate(const core::ConfigSource& src, const char* prefix) const {
  auto key = [&](const char* k) { return fmt::format("{}.{}", prefix, k); };
  // every size in its range (a config.json is read without the YAML loader's checks)
  core::check_bounds([this](core::ConfigVisitor& v) { const_cast<ModelConfig*>(this)->visit(v); }, src, prefix);
  if (!is_mla() && head_dim == 0 && hidden_size % num_attention_heads != 0)
    core::config_fail(src, key("num_attention_heads"),
                      fmt::format("hidden_size {} is not divisible by num_attention_heads {}",
                                  hidden_size, num_attention_heads));
  if (num_attention_heads % num_key_value_heads != 0)
    core::config_fail(src, key("num_key_value_heads"),
                      fmt::format("num_attention_heads {} is not a multiple of "
                                  "num_key_value_heads {}",
                                  num_attention_heads, num_key_value_heads));
  if (!is_mla() && resolved_head_dim() % 2 != 0)
    core::config_fail(src, key("head_dim"),
                      fmt::format("RoPE needs an even head dimension, found {}",
                                  resolved_head_dim()));
  if (is_mla()) {
    for (auto [k, v] : {std::pair<const char*, int64_t>{"kv_lora_rank", kv_lora_rank},
                        {"qk_nope_head_dim", qk_nope_head_dim},
                        {"qk_rope_head_dim", qk_rope_head_dim}, {"v_head_dim", v_head_dim}})
      if (v <= 0) core::config_fail(src, key(k), fmt::format("deepseek_v3 (MLA) needs {} > 0", k));
    if (qk_rope_head_dim % 2 != 0)
      core::config_fail(src, key("qk_rope_head_dim"),
                        fmt::format("RoPE needs an even width, found {}", qk_rope_head_dim));
  } else {
    if (q_lora_rank || kv_lora_rank || qk_nope_head_dim || qk_rope_head_dim || v_head_dim)
      core::config_fail(src, key("kv_lora_rank"),
                        fmt::format("MLA sizes apply to model_type deepseek_v3 only (found {})",
                                    model_type));
    if (n_routed_experts > 0)
      core::config_fail(src, key("n_routed_experts"),
                        fmt::format("MoE layers apply to model_type deepseek_v3 only (found {})",
                                    model_type));
  }
  if (n_routed_experts > 0) {
    if (num_experts_per_tok < 1 || num_experts_per_tok > n_routed_experts)
      core::config_fail(src, key("num_experts_per_tok"),
                        fmt::format("must be in [1, n_routed_experts = {}], found {}",
                                    n_routed_experts, num_experts_per_tok));
    if (moe_intermediate_size < 1)
      core::config_fail(src, key("moe_intermediate_size"), "MoE layers need moe_intermediate_size > 0");
    if (n_routed_experts % n_group != 0)
      core::config_fail(src, key("n_group"), fmt::format("n_routed_experts {} is not divisible by "
                                                         "n_group {}", n_routed_experts, n_group));
    if (topk_group > n_group)
      core::config_fail(src, key("topk_group"),
                        fmt::format("{} groups chosen out of n_group = {}", topk_group, n_group));
    if (n_routed_experts / n_group < 2)
      core::config_fail(src, key("n_group"), "each group needs at least 2 experts (a group's score "
                                             "is the sum of its top 2)");
    if (num_experts_per_tok > topk_group * (n_routed_experts / n_group))
      core::config_fail(src, key("num_experts_per_tok"),
                        fmt::format("{} experts per token but only {} in the {} chosen groups",
                                    num_experts_per_tok, topk_group * (n_routed_experts / n_group),
                                    topk_group));
  }
  if (rope_type == "yarn" && rope_original_max_position_embeddings <= 0)
    core::config_fail(src, key("rope_original_max_position_embeddings"),
                      "yarn needs the original context length");
}

int64_t ModelConfig::count_parameters() const {
  const int64_t H = hidden_size;
  int64_t n = vocab_size * H * (tie_word_embeddings ? 1 : 2) + H;  // embeddings, head, final norm
  int64_t attn;
  if (is_mla()) {
    const int64_t heads = num_attention_heads, qk = qk_nope_head_dim + qk_rope_head_dim;
    attn = (q_lora_rank > 0 ? H * q_lora_rank + q_lora_rank + q_lora_rank * heads * qk : H * heads * qk) +
           H * (kv_lora_rank + qk_rope_head_dim) + kv_lora_rank +
           kv_lora_rank * heads * (qk_nope_head_dim + v_head_dim) + heads * v_head_dim * H;
  } else {
    const int64_t hd = resolved_head_dim(), q = num_attention_heads * hd, kv = num_key_value_heads * hd;
    attn = H * (q + 2 * kv) + q * H + (attention_bias ? q + 2 * kv : 0) + (attention_out_bias ? H : 0) +
           (qk_norm ? 2 * hd : 0);
  }
  for (int64_t l = 0; l < num_hidden_layers; ++l) {
    int64_t mlp;
    if (is_moe_layer(l))
      mlp = 3 * H * moe_intermediate_size * (n_routed_experts + n_shared_experts) +
            n_routed_experts * H + n_routed_experts;  // router weight + correction bias
    else
      mlp = 3 * H * intermediate_size + (mlp_bias ? 2 * intermediate_size + H : 0);
    n += attn + mlp + 2 * H;
  }
  return n;
}

namespace {
// Matmul weight elements of one layer's attention projections.
double attention_weights(const ModelConfig& c) {
  const double H = double(c.hidden_size), heads = double(c.num_attention_heads);
  if (c.is_mla()) {
    const double qk = double(c.qk_nope_head_dim + c.qk_rope_head_dim), ql = double(c.q_lora_rank),
                 kvl = double(c.kv_lora_rank);
    return (ql > 0 ? H * ql + ql * heads * qk : H * heads * qk) + H * (kvl + double(c.qk_rope_head_dim)) +
           kvl * heads * double(c.qk_nope_head_dim + c.v_head_dim) + heads * double(c.v_head_dim) * H;
  }
  const double hd = double(c.resolved_head_dim()), q = heads * hd, kv = double(c.num_key_value_heads) * hd;
  return H * (q + 2 * kv) + q * H;
}
}  // namespace

double ModelConfig::forward_flops(double tokens, double logit_tokens, double attended) const {
  const double H = double(hidden_size), heads = double(num_attention_heads);
  const double qk = is_mla() ? double(qk_nope_head_dim + qk_rope_head_dim) : double(resolved_head_dim());
  const double v = is_mla() ? double(v_head_dim) : double(resolved_head_dim());
  double per_token = 0;
  for (int64_t l = 0; l < num_hidden_layers; ++l)
    per_token += attention_weights(*this) +
                 (is_moe_layer(l) ? 3 * H * double(moe_intermediate_size) *
                                            double(num_experts_per_tok + n_shared_experts) +
                                        double(n_routed_experts) * H
                                  : 3 * H * double(intermediate_size));
  return 2 * tokens * per_token + 2 * logit_tokens * double(vocab_size) * H +
         2 * attended * heads * (qk + v) * double(num_hidden_layers);
}

double ModelConfig::forward_weight_elements(double tokens, double logit_tokens) const {
  const double H = double(hidden_size);
  double n = tokens * H + (logit_tokens > 0 ? double(vocab_size) * H : 0.0);  // embedding rows, LM head
  for (int64_t l = 0; l < num_hidden_layers; ++l) {
    n += attention_weights(*this);
    if (is_moe_layer(l)) {
      const double hit = std::min(double(n_routed_experts), tokens * double(num_experts_per_tok));
      n += 3 * H * double(moe_intermediate_size) * (hit + double(n_shared_experts)) + double(n_routed_experts) * H;
    } else {
      n += 3 * H * double(intermediate_size);
    }
  }
  return n;
}

int64_t ModelConfig::kv_elements_per_token() const {
  return num_hidden_layers * (is_mla() ? kv_lora_rank + qk_rope_head_dim
                                       : 2 * num_key_value_heads * resolved_head_dim());
}

ModelConfig::ParameterSplit ModelConfig::parameter_split() const {
  ParameterSplit p;
  const int64_t H = hidden_size;
  p.split += vocab_size * H * (tie_word_embeddings ? 1 : 2);  // vocab-parallel embedding / LM head
  p.replicated += H;                                          // final norm
  for (int64_t l = 0; l < num_hidden_layers; ++l) {
    p.replicated += 2 * H;  // the two norms
    if (is_mla()) {
      const int64_t heads = num_attention_heads, qk = qk_nope_head_dim + qk_rope_head_dim;
      if (q_lora_rank > 0) {
        p.replicated += H * q_lora_rank + q_lora_rank;  // q_a_proj, q_a_layernorm
        p.split += q_lora_rank * heads * qk;            // q_b_proj
      } else {
        p.split += H * heads * qk;  // q_proj
      }
      p.replicated += H * (kv_lora_rank + qk_rope_head_dim) + kv_lora_rank;  // kv_a_proj, kv_a_layernorm
      p.split += kv_lora_rank * heads * (qk_nope_head_dim + v_head_dim) + heads * v_head_dim * H;  // kv_b, o
    } else {
      const int64_t hd = resolved_head_dim(), q = num_attention_heads * hd, kv = num_key_value_heads * hd;
      p.split += H * (q + 2 * kv) + q * H + (attention_bias ? q + 2 * kv : 0);
      p.replicated += (attention_out_bias ? H : 0) + (qk_norm ? 2 * hd : 0);
    }
    if (is_moe_layer(l)) {
      p.experts += 3 * H * moe_intermediate_size * n_routed_experts;
      p.split += 3 * H * moe_intermediate_size * n_shared_experts;  // shared experts: a split MLP
      p.replicated += n_routed_experts * H + n_routed_experts;       // router weight + correction bias
      p.frozen += n_routed_experts;
    } else {
      p.split += 3 * H * intermediate_size + (mlp_bias ? 2 * intermediate_size : 0);
      p.replicated += mlp_bias ? H : 0;
    }
  }
  return p;
}

}  // namespace grpo::model
