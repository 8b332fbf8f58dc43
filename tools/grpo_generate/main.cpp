// grpo_generate: samples completions from a model directory (Hugging Face or a grpo checkpoint)
// for prompts given on the command line or in a JSONL file -- the quickest way to check that a
// model loaded correctly and to look at what a trained policy writes. Prompts are formatted by
// text/prompt.h exactly as in training; from a checkpoint, the run's prompt and rollout settings
// are the defaults.
#include <filesystem>
#include <iostream>
#include <string>
#include <type_traits>
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
#include "grpo/train/trainer.h"

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

void usage(std::ostream& os) {
  os << "usage: grpo_generate --model DIR (--prompt TEXT ... | --jsonl FILE) [options]\n"
        "\n"
        "Samples completions and prints one JSON object per prompt on stdout:\n"
        "  {\"index\", \"prompt\" (the formatted prompt text), \"completions\": [{\"text\",\n"
        "   \"token_ids\", \"finish\": \"stop\"|\"length\"}, ...]}\n"
        "\n"
        "  --model DIR            Hugging Face model directory or grpo checkpoint directory\n"
        "  --tokenizer DIR        tokenizer directory (default: the model's, or the checkpoint run's)\n"
        "  --eos-token TEXT       token that ends a completion (default: tokenizer_config.json's)\n"
        "  --prompt TEXT          a question (repeatable)\n"
        "  --jsonl FILE           questions from a JSONL file, one object per line\n"
        "  --prompt-field KEY     field of the question in --jsonl (default: question)\n"
        "  --limit N              at most N prompts from --jsonl\n"
        "  --ids                  --prompt values are JSON arrays of token ids, used as they are\n"
        "                         (no template or tokenizer; --eos-id or generation_config.json)\n"
        "  --eos-id N             with --ids: the EOS token id (-1 = never stop early)\n"
        "  --template T           r1_zero | plain | a string containing {prompt}\n"
        "  --chat F               none | deepseek_v3 | qwen3     --system TEXT\n"
        "  --thinking on|off      qwen3 chat only                --add-bos\n"
        "  -n, --num-samples G    completions per prompt (default 1)\n"
        "  --temperature T        0 = greedy (default: checkpoint's rollout.temperature, else 0)\n"
        "  --top-p P  --top-k K   nucleus / top-k sampling\n"
        "  --max-new-tokens N     (default: checkpoint's rollout.max_new_tokens, else 256)\n"
        "  --seed S               sampling seed (default 1)\n"
        "  --batch-size N         prompts generated at once (default 16)\n"
        "  --threads N            CPU threads (default: all cores)\n";
}

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
  std::string model_dir, tokenizer_dir, eos_token, jsonl, prompt_field = "question";
  std::vector<std::string> prompts;
  bool ids_mode = false;
  int64_t eos_id = -2, limit = -1, num_samples = 1, seed = 1, batch_size = 16, threads = 0;
  std::optional<double> temperature, top_p;
  std::optional<int64_t> top_k, max_new_tokens;
  grpo::core::ConfigSource src;  // where each prompt option came from, for error messages
  std::optional<grpo::text::PromptConfig> prompt_flags;
  grpo::text::PromptConfig pf;
  auto set_prompt = [&](const std::string& flag, const std::string& key, auto fn) {
    if (!prompt_flags) prompt_flags.emplace();
    fn(*prompt_flags);
    src.record("prompt." + key, flag);
  };
  try {
    for (int i = 1; i < argc; ++i) {
      std::string a = argv[i];
      auto next = [&]() -> std::string {
        GRPO_CHECK(i + 1 < argc, "{} needs a value", a);
        return argv[++i];
      };
      // A whole-string number of type T (int64_t or double) for flag `a`.
      auto next_number = [&](auto zero) -> decltype(zero) {
        std::string v = next();
        try {
          size_t used = 0;
          decltype(zero) x;
          if constexpr (std::is_integral_v<decltype(zero)>) x = std::stoll(v, &used);
          else x = std::stod(v, &used);
          if (used == v.size()) return x;
        } catch (const std::exception&) {
        }
        grpo::fail("{}: expected {}, found '{}'", a,
                   std::is_integral_v<decltype(zero)> ? "an integer" : "a number", v);
      };
      auto next_int = [&] { return next_number(int64_t(0)); };
      auto next_double = [&] { return next_number(0.0); };
      if (a == "--model") model_dir = next();
      else if (a == "--tokenizer") tokenizer_dir = next();
      else if (a == "--eos-token") eos_token = next();
      else if (a == "--prompt") prompts.push_back(next());
      else if (a == "--jsonl") jsonl = next();
      else if (a == "--prompt-field") prompt_field = next();
      else if (a == "--limit") limit = next_int();
      else if (a == "--ids") ids_mode = true;
      else if (a == "--eos-id") eos_id = next_int();
      else if (a == "--template") { auto v = next(); set_prompt(a, "template", [&](auto& p) { p.template_text = v; }); }
      else if (a == "--chat") { auto v = next(); set_prompt(a, "chat", [&](auto& p) { p.chat = v; }); }
      else if (a == "--system") { auto v = next(); set_prompt(a, "system", [&](auto& p) { p.system = v; }); }
      else if (a == "--thinking") { auto v = next(); set_prompt(a, "thinking", [&](auto& p) { p.thinking = v; }); }
      else if (a == "--add-bos") set_prompt(a, "add_bos", [&](auto& p) { p.add_bos = true; });
      else if (a == "-n" || a == "--num-samples") num_samples = next_int();
      else if (a == "--temperature") temperature = next_double();
      else if (a == "--top-p") top_p = next_double();
      else if (a == "--top-k") top_k = next_int();
      else if (a == "--max-new-tokens") max_new_tokens = next_int();
      else if (a == "--seed") seed = next_int();
      else if (a == "--batch-size") batch_size = next_int();
      else if (a == "--threads") threads = next_int();
      else if (a == "--help" || a == "-h") { usage(std::cout); return 0; }
      else grpo::fail("unknown argument '{}' (see --help)", a);
    }
    GRPO_CHECK(!model_dir.empty(), "--model is required (see --help)");
    GRPO_CHECK(prompts.empty() != jsonl.empty(), "give prompts with --prompt or --jsonl (one of them)");
    GRPO_CHECK(!(ids_mode && !jsonl.empty()), "--ids takes its prompts from --prompt");
    GRPO_CHECK(num_samples >= 1, "--num-samples must be at least 1, found {}", num_samples);
    GRPO_CHECK(batch_size >= 1, "--batch-size must be at least 1, found {}", batch_size);
    GRPO_CHECK(!temperature || *temperature >= 0, "--temperature must be >= 0, found {}", *temperature);
    GRPO_CHECK(!top_p || (*top_p > 0 && *top_p <= 1), "--top-p must be in (0, 1], found {}", *top_p);
    GRPO_CHECK(!top_k || *top_k >= 0, "--top-k must be >= 0, found {}", *top_k);
    GRPO_CHECK(!max_new_tokens || *max_new_tokens >= 1, "--max-new-tokens must be >= 1, found {}", *max_new_tokens);
    if (threads > 0) at::set_num_threads(static_cast<int>(threads));

    // Model, and the defaults of the run that made it (a checkpoint) or plain ones (HF).
    grpo::train::Config run;
    const bool from_checkpoint = fs::exists(fs::path(model_dir) / "manifest.json");
    auto model = grpo::train::load_policy(model_dir, &run);
    model->train(false);
    pf = prompt_flags ? *prompt_flags : run.prompt;
    if (prompt_flags && from_checkpoint)  // flags replace the run's prompt settings as a whole
      std::cerr << "grpo_generate: note: prompt flags given; the checkpoint run's prompt section is not used\n";
    grpo::rollout::SamplingParams sp = run.rollout;
    if (!from_checkpoint) {
      sp.temperature = 0.0;
      sp.max_new_tokens = 256;
    }
    if (temperature) sp.temperature = *temperature;
    if (top_p) sp.top_p = *top_p;
    if (top_k) sp.top_k = *top_k;
    if (max_new_tokens) sp.max_new_tokens = *max_new_tokens;

    // Tokenizer (not needed with --ids).
    std::unique_ptr<grpo::text::Tokenizer> tok;
    if (tokenizer_dir.empty()) tokenizer_dir = run.tokenizer.resolved_path(run.model);
    if (eos_token.empty()) eos_token = run.tokenizer.eos_token;
    if (!ids_mode) {
      if (tokenizer_dir.empty())  // only a built-in-task checkpoint uses the character tokenizer
        GRPO_CHECK(run.data.train.empty() && from_checkpoint,
                   "{} has no tokenizer.json: give --tokenizer DIR (or --ids)", model_dir);
      else
        GRPO_CHECK(fs::exists(fs::path(tokenizer_dir) / "tokenizer.json") || fs::is_regular_file(tokenizer_dir),
                   "{} has no tokenizer.json: give --tokenizer DIR (or --ids)", tokenizer_dir);
      tok = grpo::train::make_tokenizer(tokenizer_dir, eos_token);
      if (prompt_flags) {
        GRPO_CHECK(pf.chat == "none" || pf.chat == "deepseek_v3" || pf.chat == "qwen3",
                   "--chat: expected none, deepseek_v3 or qwen3, found '{}'", pf.chat);
        GRPO_CHECK(pf.thinking == "default" || pf.thinking == "on" || pf.thinking == "off",
                   "--thinking: expected on or off, found '{}'", pf.thinking);
      }
      grpo::text::validate_prompt_config(pf, src);
    } else {
      GRPO_CHECK(!prompt_flags, "--ids prompts are token ids: no template or chat format applies");
    }
    if (eos_id == -2) eos_id = tok ? tok->eos_id() : generation_config_eos(model_dir);
    const int64_t pad_id = tok ? tok->pad_id() : 0;

    // Questions.
    std::vector<std::string> questions = prompts;
    if (!jsonl.empty()) {
      grpo::data::JsonlDatasetConfig dc;
      dc.path = jsonl;
      dc.prompt_field = prompt_field;
      dc.answer_field = prompt_field;  // answers are not needed here
      grpo::data::JsonlDataset ds(dc, 0);
      for (const auto& e : ds.examples()) {
        if (limit >= 0 && int64_t(questions.size()) >= limit) break;
        questions.push_back(e.prompt);
      }
    }
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
          texts.push_back(grpo::text::format_prompt(pf, questions[i]));
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
  } catch (const grpo::Error& e) {
    std::cerr << "grpo_generate: error: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
