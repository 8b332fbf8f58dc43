// grpo_export: writes a policy as a Hugging Face directory (config.json, safetensors shards +
// index, generation_config.json, tokenizer files) that transformers and vLLM load.
// Input: a grpo checkpoint directory (checkpoints/step-N), a Hugging Face directory, or a GGUF file
// (model/gguf_import.h: dequantized, with its tokenizer and chat template).
#include <filesystem>
#include <iostream>
#include <string>

#include <ATen/ATen.h>
#include <nlohmann/json.hpp>

#include "grpo/core/config.h"
#include "grpo/core/error.h"
#include "grpo/io/safetensors.h"
#include "grpo/model/gguf_import.h"
#include "grpo/model/hf_checkpoint.h"
#include "grpo/model/transformer.h"
#include "grpo/text/hf_tokenizer.h"
#include "grpo/train/config.h"
#include "grpo/train/policy_loader.h"

#include "../common/errors.h"
#include "../common/tool_flags.h"

namespace fs = std::filesystem;

int main(int argc, char** argv) {
  grpo::tools::ToolParams p;
  if (auto rc = grpo::tools::parse_tool_flags(grpo::tools::Tool::kExport, argc, argv, p)) return *rc;
  const std::string& from = p.export_.from;
  const std::string& out = p.export_.out;
  grpo::model::HfExportOptions& o = p.export_.options;
  if (from.empty() || out.empty()) {
    std::cerr << "grpo_export: --from and --out are required (see --help)\n";
    return 2;
  }
  try {
    if (grpo::model::is_gguf_path(from)) {  // tokenizer and ids from the file
      grpo::model::convert_gguf(from, out, o);
      std::cout << "wrote " << out << " (from " << from << ", " << o.dtype << ")\n";
      return 0;
    }
    grpo::train::Config cfg;
    auto model = grpo::train::load_policy(from, &cfg);
    // Tokenizer files: --tokenizer, else the one the run trained with (or the HF source's).
    if (o.tokenizer_dir.empty()) o.tokenizer_dir = cfg.tokenizer.resolved_path(cfg.model);
    if (!o.tokenizer_dir.empty() && fs::exists(fs::path(o.tokenizer_dir) / "tokenizer.json")) {
      auto tok = grpo::text::HfTokenizer::from_dir(o.tokenizer_dir, cfg.tokenizer.eos_token);
      o.eos_token_id = tok->eos_id();
      if (auto bos = tok->bos_id()) o.bos_token_id = *bos;
    } else if (!o.tokenizer_dir.empty()) {
      std::cerr << "grpo_export: note: no tokenizer.json in " << o.tokenizer_dir << "; none copied\n";
      o.tokenizer_dir.clear();
    }
    grpo::model::save_hf_model(*model, out, o);
    if (!p.export_.expected_logits.empty()) {  // grpo's own logits of what was exported
      const int64_t vocab = model->config().vocab_size;
      auto ids = (at::arange(32, at::kLong) * 7919 + 13).remainder(vocab).reshape({2, 16});
      at::NoGradGuard ng;
      model->train(false);
      auto logits = model->logits(model->forward(ids)).to(at::kFloat).contiguous();
      fs::create_directories(p.export_.expected_logits);
      grpo::io::save_safetensors((fs::path(p.export_.expected_logits) / "expected.safetensors").string(),
                                 {{"input_ids", ids}, {"logits", logits}});
    }
    std::cout << "wrote " << out << " (" << model->num_parameters() << " parameters, " << o.dtype << ")\n";
  } catch (...) {
    return grpo::tools::report_exception("grpo_export");
  }
  return 0;
}
