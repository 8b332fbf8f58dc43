// Hugging Face checkpoints in and out: config.json of the Llama, Qwen2 and Qwen3 families onto
// ModelConfig, weights by their HF names, and export of a model as an HF directory that
// transformers loads (config.json, safetensors shards + index, generation_config.json).
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "grpo/model/model_config.h"
#include "grpo/model/transformer.h"

namespace grpo::model {

/// Parses config.json text (`origin` names the file in errors). Unknown model_type, rope scaling,
/// activation or sliding-window attention: grpo::Error naming the key and the value found.
ModelConfig parse_hf_config(const std::string& json_text, const std::string& origin);
ModelConfig read_hf_config(const std::string& config_json_path);

/// config.json text for `c` (both transformers 5 `rope_parameters` and the older `rope_theta`).
std::string hf_config_json(const ModelConfig& c, const std::string& dtype = "float32");

/// Loads `dir` (config.json + model.safetensors or sharded index) into a new fp32 model (bf16/fp16
/// weights are converted; block-scaled fp8 weights are dequantised with their weight_scale_inv;
/// DeepSeek's per-expert tensors are stacked; multi-token-prediction layers are skipped with a
/// note). Missing or unexpected tensors are reported by name.
/// With `parallel`, each rank keeps its slices of the whole tensors.
std::unique_ptr<Transformer> load_hf_model(const std::string& dir, const Parallel& parallel = {});

/// w (fp8 or any float) [rows, cols] times its per-block scale scale_inv [ceil(rows / block_rows),
/// ceil(cols / block_cols)] -> fp32 (DeepSeek-V3's weight_scale_inv, 128 x 128 blocks).
at::Tensor dequantize_fp8_blocks(const at::Tensor& w, const at::Tensor& scale_inv,
                                 int64_t block_rows = 128, int64_t block_cols = 128,
                                 const std::string& name = "weight");

struct HfExportOptions {
  std::string dtype = "float32";            // float32 | bfloat16 | float16
  uint64_t max_shard_bytes = 5ull << 30;    // larger models are split into shards + index
  std::string tokenizer_dir;                // copy tokenizer files from here (optional)
  int64_t bos_token_id = -1, eos_token_id = -1;  // generation_config.json (-1: omitted)
};

/// Writes `model` as a Hugging Face directory (a split model: whole tensors, gathered -- every
/// rank of its groups calls it, and should pass a directory of its own or only one should write).
void save_hf_model(const Transformer& model, const std::string& dir, const HfExportOptions& options = {});

}  // namespace grpo::model
