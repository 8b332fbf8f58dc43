// grpo_generate: samples completions from a model directory (Hugging Face or a grpo checkpoint)
// for prompts given on the command line or in a JSONL file -- the quickest way to check that a
// model loaded correctly and to look at what a trained policy writes. Prompts are formatted by
// text/prompt.h exactly as in training; from a checkpoint, the run's prompt and rollout settings
// are the defaults.
#include <filesystem>
#include <iostream>
#include <string>
#include <vector>

#include <ATen/Parallel.h>
#include <nlohmann/json.hpp>

#include "grpo/core/config.h"
#include "grpo/core/error.h"
#include "grpo/core/rng.h"
#include "grpo/data/jsonl_dataset.h"
#include "grpo/model/transformer.h"
#include "grpo/rollout/generate.h"
#include "grpo/text/prompt.h"
#include "grpo/train/policy_loader.h"

#include "../common/errors.h"
#include "../common/tool_flags.h"

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

// Reads eos_token_id from generation_config.json (the first, if a list); -1 when absent.
int64_t generation_config_eos(const std::string& dir) {
  auto path = fs::path(dir) / "generation_config.json";
  if (!fs::exists(path)) return -1;
  auto j = json::parse(grpo::core::read_file(path.string()), nullptr, false);
  if (j.is_discarded() || !j.is_object() || !j.contains("eos_token_id")) return -1;
  const auto& e = j["eos_token_id"];
  if (e.is_number_integer()) return e.get<int64_t>();
  if (e.is_array() && !e.empty() && e[0].is_number_integer()) return e[0].get<int64_t>();
  return -1;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    grpo::tools::ToolParams params;
    if (auto rc = grpo::tools::parse_tool_flags(grpo::tools::Tool::kGenerate, argc, argv, params)) return *rc;
    auto& flags = params.policy;
    const std::vector<std::string>& prompts = params.generate.prompts;
    const bool ids_mode = params.generate.ids;
    int64_t eos_id = params.generate.eos_id;
    const int64_t num_samples = params.generate.num_samples;
    const std::string& jsonl = flags.questions.path;
    GRPO_CHECK(prompts.empty() != jsonl.empty(), "give prompts with --prompt or --jsonl (one of them)");
    GRPO_CHECK(!(ids_mode && !jsonl.empty()), "--ids takes its prompts from --prompt");
    GRPO_CHECK(!(ids_mode && flags.source.prompt), "--ids prompts are token ids: no template or chat format applies");
    flags.check();

    // Model and tokenizer (none with --ids), and the sampling defaults of the run that made it.
    auto source = flags.source;
    source.with_tokenizer = !ids_mode;
    grpo::train::LoadedPolicy policy = grpo::train::open_policy(source);
    if (flags.source.prompt && policy.from_checkpoint)  // flags replace the run's prompt settings as a whole
      std::cerr << "grpo_generate: note: prompt flags given; the checkpoint run's prompt section is not used\n";
    auto& model = policy.model;
    auto& tok = policy.tokenizer;
    const auto& pf = policy.prompt;
    const auto sp = flags.sampling(policy.sampling);
    const int64_t seed = flags.seed, batch_size = flags.batch_size, limit = flags.limit;
    if (eos_id == -2) eos_id = tok ? tok->eos_id() : generation_config_eos(flags.source.model_dir);
    const int64_t pad_id = tok ? tok->pad_id() : 0;

    // Questions.
    std::vector<std::string> questions = prompts;
    if (!jsonl.empty()) {
      grpo::data::JsonlDatasetConfig dc = flags.questions;
      dc.answer_field = dc.prompt_field;  // answers are not needed here
      grpo::data::JsonlDataset ds(dc, 0);
      for (const auto& e : ds.examples()) {
        if (limit >= 0 && int64_t(questions.size()) >= limit) break;
        questions.push_back(e.prompt);
      }
    }
    flags.check_memory(*model, int64_t(questions.size()), num_samples, sp.max_new_tokens);
    const int64_t max_pos = model->config().max_position_embeddings;
    for (size_t s = 0; s < questions.size(); s += batch_size) {
      size_t e = std::min(questions.size(), s + size_t(batch_size));
      grpo::rollout::GenerateRequest req;
      std::vector<std::string> texts;
      for (size_t i = s; i < e; ++i) {
        std::vector<int64_t> ids;
        if (ids_mode) {
          auto j = json::parse(questions[i], nullptr, false);
          GRPO_CHECK(!j.is_discarded() && j.is_array() && !j.empty(),
                     "--prompt {}: with --ids, expected a JSON array of token ids, found '{}'", i + 1, questions[i]);
          for (auto& x : j) {
            GRPO_CHECK(x.is_number_integer() && x.get<int64_t>() >= 0 && x.get<int64_t>() < model->config().vocab_size,
                       "--prompt {}: token id {} is not in [0, {})", i + 1, x.dump(), model->config().vocab_size);
            ids.push_back(x.get<int64_t>());
          }
          texts.push_back(questions[i]);
        } else {
          texts.push_back(grpo::text::format_prompt(pf, questions[i], tok.get()));
          ids = grpo::text::encode_prompt(pf, *tok, questions[i]);
        }
        GRPO_CHECK(int64_t(ids.size()) + sp.max_new_tokens <= max_pos,
                   "prompt {} is {} tokens; with --max-new-tokens {} it exceeds the model's "
                   "max_position_embeddings {}", i + 1, ids.size(), sp.max_new_tokens, max_pos);
        req.prompts.push_back(std::move(ids));
        req.prompt_keys.push_back(uint64_t(i));
      }
      req.group_size = num_samples;
      req.sampling = sp;
      req.key = {uint64_t(seed), uint64_t(grpo::core::Stream::kSampling), 0};
      req.eos_id = eos_id;
      req.pad_id = pad_id;
      auto out = grpo::rollout::generate(*model, req);
      for (size_t p = 0; p < e - s; ++p) {
        json completions = json::array();
        for (int64_t g = 0; g < num_samples; ++g) {
          const auto row = int64_t(p) * num_samples + g;
          const auto& ids = out.responses[row];
          json c = {{"token_ids", ids}, {"finish", grpo::rollout::to_string(out.finish[row])}};
          if (tok) c["text"] = tok->decode(ids);
          completions.push_back(std::move(c));
        }
        std::cout << json{{"index", s + p}, {"prompt", texts[p]}, {"completions", completions}}.dump()
                  << "\n" << std::flush;
      }
    }
  } catch (...) {
    return grpo::tools::report_exception("grpo_generate");
  }
  return 0;
}
