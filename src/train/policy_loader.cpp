// Opening a policy (train/policy_loader.h).
#include "grpo/train/policy_loader.h"

#include <filesystem>

#include <ATen/ATen.h>
#include <spdlog/spdlog.h>

#include "grpo/core/error.h"
#include "grpo/data/arithmetic.h"
#include "grpo/model/gguf_import.h"
#include "grpo/model/hf_checkpoint.h"
#include "grpo/model/transformer.h"
#include "grpo/text/hf_tokenizer.h"
#include "grpo/train/checkpoint.h"

namespace fs = std::filesystem;

namespace grpo::train {

std::unique_ptr<text::Tokenizer> make_tokenizer(const std::string& path, const std::string& eos_token,
                                                const data::ArithmeticConfig& task) {
  if (path.empty()) return data::task_tokenizer(task);
  return text::HfTokenizer::from_dir(path, eos_token);
}

std::unique_ptr<model::Transformer> load_policy(const std::string& path, Config* config) {
  const std::string dir = model::resolve_model_path(path);  // a .gguf file: its converted directory
  if (is_checkpoint(dir)) {
    auto ck = load_checkpoint(dir);
    auto cfg = load_config_text(ck.config_yaml, dir + "/manifest.json (config)", {}, /*to_run=*/false);
    GRPO_CHECK(cfg.model.vocab_size > 0, "{}: the checkpoint's config has no vocab_size", dir);
    auto model = std::make_unique<model::Transformer>(cfg.model);
    model->load_parameters(ck.model, dir + "/model.safetensors");
    if (config) *config = std::move(cfg);
    return model;
  }
  GRPO_CHECK(fs::exists(fs::path(dir) / "config.json"), "'{}' is neither a grpo checkpoint "
             "(manifest.json) nor a Hugging Face model directory (config.json)", dir);
  auto model = model::load_hf_model(dir);
  if (config) {
    *config = Config{};
    config->model = model->config();
    config->model.path = dir;
  }
  return model;
}

std::unique_ptr<model::Transformer> build_policy(const Config& cfg, const model::Parallel& parallel,
                                                 const c10::Device& device, int64_t tokenizer_vocab, bool from_hf) {
  at::manual_seed(cfg.run.seed);
  std::unique_ptr<model::Transformer> m;
  if (from_hf && !cfg.model.path.empty()) {
    m = model::load_hf_model(cfg.model.path, parallel);
    spdlog::info("policy loaded from {}", cfg.model.path);
  } else {
    m = std::make_unique<model::Transformer>(cfg.model, parallel);
  }
  if (!device.is_cpu()) m->to(device);
  m->set_balance_loss_coef(cfg.moe.balance_loss_coef);
  m->set_recompute(cfg.parallel.recompute);
  m->set_sequence_parallel(cfg.parallel.sequence_parallel);
  m->set_vocab_limit(tokenizer_vocab);  // padded ids are never sampled
  return m;
}

LoadedPolicy::LoadedPolicy() = default;
LoadedPolicy::LoadedPolicy(LoadedPolicy&&) noexcept = default;
LoadedPolicy& LoadedPolicy::operator=(LoadedPolicy&&) noexcept = default;
LoadedPolicy::~LoadedPolicy() = default;

LoadedPolicy open_policy(const PolicySource& src) {
  GRPO_CHECK(!src.model_dir.empty(), "no model directory given");
  LoadedPolicy p;
  p.from_checkpoint = is_checkpoint(src.model_dir);
  p.model = load_policy(src.model_dir, &p.run);
  p.model->train(false);
  p.prompt = src.prompt ? *src.prompt : p.run.prompt;
  p.sampling = p.run.rollout;
  if (!p.from_checkpoint) {
    p.sampling.temperature = 0.0;
    p.sampling.max_new_tokens = 256;
  }
  if (!src.with_tokenizer) return p;
  const std::string tok_dir = src.tokenizer_dir.empty() ? p.run.tokenizer.resolved_path(p.run.model) : src.tokenizer_dir;
  const std::string eos = src.eos_token.empty() ? p.run.tokenizer.eos_token : src.eos_token;
  if (tok_dir.empty())  // only a built-in-task checkpoint uses the character tokenizer
    GRPO_CHECK(p.run.data.train.empty() && p.from_checkpoint,
               "{} has no tokenizer.json: give a tokenizer directory", src.model_dir);
  else
    GRPO_CHECK(fs::exists(fs::path(tok_dir) / "tokenizer.json") || fs::is_regular_file(tok_dir),
               "{} has no tokenizer.json: give a tokenizer directory", tok_dir);
  p.tokenizer = make_tokenizer(tok_dir, eos, p.run.task);
  core::ConfigSource none;
  text::validate_prompt_config(p.prompt, none);
  return p;
}

}  // namespace grpo::train
