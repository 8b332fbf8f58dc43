// Helpers shared by the unit tests (tests/unit/<layer>/*_test.cpp, tests/gpu): temporary
// directories, files, commands, the tiny runs and models several layers' tests train, and the
// Hugging Face fixtures. A helper that only one test file needs stays in that file.
#pragma once

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <cstdlib>
#include <functional>
#include <iterator>
#include <set>
#include <string>
#include <vector>

#include <ATen/core/Tensor.h>
#include <nlohmann/json.hpp>
#include <torch/csrc/autograd/function.h>

#include "grpo/core/error.h"
#include "grpo/model/hf_checkpoint.h"
#include "grpo/model/transformer.h"
#include "grpo/train/config.h"

namespace grpo::test_util {

namespace train = grpo::train;

/// The message of the grpo::Error that `f` throws, or "" when it throws none.
inline std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

/// A fresh, empty directory under the test build's tmp/ (removed first if it exists).
inline std::string tmpdir(const std::string& name) {
  auto d = std::filesystem::path(GRPO_TEST_TMPDIR) / name;
  std::filesystem::remove_all(d);
  std::filesystem::create_directories(d);
  return d.string();
}

/// Writes `bytes` to `path` as they are.
inline void write_bytes(const std::string& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary) << bytes;
}

/// Writes `text` to `path`.
inline void write_file(const std::string& path, const std::string& text) { std::ofstream(path) << text; }

/// Runs a shell command; its stdout and stderr together, and its exit status in *rc. (Its output
/// file is this process's own: ctest runs tests in parallel processes.)
inline std::string run_command(const std::string& cmd, int* rc) {
  std::filesystem::create_directories(GRPO_TEST_TMPDIR);
  std::string out_path =
      (std::filesystem::path(GRPO_TEST_TMPDIR) / ("cmd_out." + std::to_string(::getpid()) + ".txt")).string();
  *rc = std::system((cmd + " > " + out_path + " 2>&1").c_str());
  std::ifstream in(out_path);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

/// A tiny run of the built-in task (2-digit addition, a 9k-parameter model, a short pretrain stage;
/// GRPO with 2 mini-batches x 2 epochs and a KL reference refreshed every 3 optimizer steps).
inline train::Config tiny_run(const std::string& dir, int64_t rollout_steps) {
  auto c = train::load_config_text(R"(
run: {seed: 3, threads: 1}
model: {hidden_size: 32, num_hidden_layers: 1, num_attention_heads: 2, num_key_value_heads: 1,
        intermediate_size: 48, max_position_embeddings: 40, initializer_range: 0.06}
task: {digits: 2}
pretrain: {steps: 40, batch_size: 32, lr: 3.0e-3}
rollout: {max_new_tokens: 16}
grpo: {prompts_per_step: 4, group_size: 4, mini_batches: 2, inner_epochs: 2, kl_coef: 0.05,
       ref_refresh_steps: 3, micro_batch_tokens: 100}
optim: {warmup_steps: 2, schedule: cosine}
eval: {every: 2, num_prompts: 8}
checkpoint: {every: 1, keep: 10}
)", "tiny.yaml");
  c.run.dir = dir;
  c.grpo.rollout_steps = rollout_steps;
  return c;
}

/// A small model made DeepSeek-V3-shaped: MLA, a dense first layer, then 4 routed experts (2 per
/// token) and a shared one.
inline void make_moe(model::ModelConfig& m) {
  m.model_type = "deepseek_v3";
  m.num_hidden_layers = 2;
  m.num_key_value_heads = 2;
  m.kv_lora_rank = 8;
  m.qk_nope_head_dim = 8;
  m.qk_rope_head_dim = 8;
  m.v_head_dim = 8;
  m.n_routed_experts = 4;
  m.n_shared_experts = 1;
  m.num_experts_per_tok = 2;
  m.moe_intermediate_size = 16;
  m.first_k_dense_replace = 1;
}
/// tiny_run's model as make_moe's MoE.
inline void make_moe(train::Config& c) { make_moe(c.model); }

/// How many nodes of `t`'s autograd graph have `part` in their name (e.g. a custom Function's).
inline int64_t graph_nodes_named(const at::Tensor& t, const std::string& part) {
  int64_t found = 0;
  std::set<torch::autograd::Node*> seen;
  std::vector<torch::autograd::Node*> todo{t.grad_fn().get()};
  while (!todo.empty()) {
    auto* n = todo.back();
    todo.pop_back();
    if (!n || !seen.insert(n).second) continue;
    found += n->name().find(part) != std::string::npos;
    for (auto& e : n->next_edges()) todo.push_back(e.function.get());
  }
  return found;
}

/// The JSON objects of a JSONL file (blank lines skipped).
inline std::vector<nlohmann::json> read_jsonl(const std::string& path) {
  std::vector<nlohmann::json> out;
  std::ifstream in(path);
  for (std::string line; std::getline(in, line);)
    if (!line.empty()) out.push_back(nlohmann::json::parse(line));
  return out;
}

/// The reference data (tests/fixtures) and its two real Hugging Face tokenizers.
inline const std::string kFixtures = std::string(GRPO_SOURCE_DIR) + "/tests/fixtures";
inline const std::string kQwen3Tok = kFixtures + "/tokenizers/qwen3";
inline const std::string kDeepSeekTok = kFixtures + "/tokenizers/deepseek_v3";

/// A tiny random Qwen2 model with the real Qwen3 tokenizer, written as an HF directory (made once).
inline const std::string& hf_model_dir() {
  static const std::string dir = [] {
    auto d = tmpdir("hf_tiny_qwen2_" + std::to_string(::getpid()));  // ctest -j runs tests in parallel processes
    model::ModelConfig c;
    c.model_type = "qwen2";
    c.vocab_size = 151680;  // >= the tokenizer's 151669, as Qwen pads its embeddings
    c.hidden_size = 16;
    c.num_hidden_layers = 1;
    c.num_attention_heads = 2;
    c.num_key_value_heads = 1;
    c.intermediate_size = 32;
    c.max_position_embeddings = 128;
    c.attention_bias = true;
    c.tie_word_embeddings = true;
    at::manual_seed(5);
    model::Transformer m(c);
    model::HfExportOptions o;
    o.tokenizer_dir = kQwen3Tok;
    model::save_hf_model(m, d, o);
    return d;
  }();
  return dir;
}

}  // namespace grpo::test_util
