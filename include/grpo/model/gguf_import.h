// GGUF checkpoints in: a llama.cpp GGUF file becomes a Hugging Face model directory that every
// grpo tool reads (config.json, fp32 model.safetensors, tokenizer.json, tokenizer_config.json
// with the chat template, generation_config.json), as transformers' own GGUF loader builds them:
// tensors dequantized (io/gguf.h), llama.cpp's Q/K row permutation undone, the byte-level BPE
// tokenizer rebuilt from tokenizer.ggml.* with the pre-tokenizer split its `pre` type names.
// In C++ rather than a Python script so that `model.path: file.gguf` needs no Python at all, the
// conversion takes seconds, and a bad file is reported by grpo itself.
#pragma once

#include <string>

#include "grpo/io/safetensors.h"
#include "grpo/model/hf_checkpoint.h"
#include "grpo/model/model_config.h"

namespace grpo::model {

/// Everything a GGUF file holds, in Hugging Face terms.
struct GgufImport {
  std::string config_json;            // config.json text (transformers' names)
  ModelConfig config;                 // the same, parsed
  io::NamedTensors tensors;           // fp32, Hugging Face names and layouts
  std::string tokenizer_json;         // tokenizer.json text
  std::string tokenizer_config_json;  // tokenizer_config.json text (special tokens, chat template)
  int64_t bos_token_id = -1, eos_token_id = -1;
};

/// Reads `gguf_path` (architecture llama; tokenizer gpt2-style byte-level BPE). Unsupported
/// architectures, tokenizers, quantization types and tensors are errors naming the file and key.
GgufImport import_gguf(const std::string& gguf_path);

/// Writes the Hugging Face directory of `gguf_path` into `out_dir` (created; options.dtype and
/// max_shard_bytes apply, the tokenizer and its special ids come from the file).
void convert_gguf(const std::string& gguf_path, const std::string& out_dir, const HfExportOptions& options = {});

/// Whether `path` names a GGUF file (by its .gguf extension).
bool is_gguf_path(const std::string& path);

/// `path` unchanged, or, for a `.gguf` file, its converted directory under the cache
/// ($GRPO_CACHE_DIR, else ~/.cache/grpo; gguf/<name>-<size>-<mtime>), converted on first use.
std::string resolve_model_path(const std::string& path);

}  // namespace grpo::model
