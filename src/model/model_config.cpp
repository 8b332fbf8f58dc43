#include "grpo/model/model_config.h"

#include <fmt/format.h>

namespace grpo::model {

void ModelConfig::validate(const core::ConfigSource& src, const char* prefix) const {
  auto key = [&](const char* k) { return fmt::format("{}.{}", prefix, k); };
  if (head_dim == 0 && hidden_size % num_attention_heads != 0)
    core::config_fail(src, key("num_attention_heads"),
                      fmt::format("hidden_size {} is not divisible by num_attention_heads {}",
                                  hidden_size, num_attention_heads));
  if (num_attention_heads % num_key_value_heads != 0)
    core::config_fail(src, key("num_key_value_heads"),
                      fmt::format("num_attention_heads {} is not a multiple of "
                                  "num_key_value_heads {}",
                                  num_attention_heads, num_key_value_heads));
  if (resolved_head_dim() % 2 != 0)
    core::config_fail(src, key("head_dim"),
                      fmt::format("RoPE needs an even head dimension, found {}",
                                  resolved_head_dim()));
}

}  // namespace grpo::model
