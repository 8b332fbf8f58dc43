// grpo_tokenize: reads JSON strings, one per line, on stdin and prints the token ids of each as a
// JSON array per line; --decode reads JSON arrays of ids and prints JSON strings. --template NAME
// applies a prompt template first: r1_zero, a chat template (deepseek_v3, qwen3: one user turn plus
// the generation prompt), or a string containing {prompt}. How users debug tokenization and
// templates.
#include <filesystem>
#include <iostream>
#include <string>

#include <nlohmann/json.hpp>

#include "grpo/core/error.h"
#include "grpo/core/config.h"
#include "grpo/text/prompt.h"
#include "grpo/text/hf_tokenizer.h"
#include "grpo/text/tokenizer.h"

#include "../common/errors.h"
#include "../common/tool_flags.h"

namespace fs = std::filesystem;

int main(int argc, char** argv) {
  grpo::tools::ToolParams p;
  if (auto rc = grpo::tools::parse_tool_flags(grpo::tools::Tool::kTokenize, argc, argv, p)) return *rc;
  const std::string& dir = p.tokenize.tokenizer;
  const std::string& tmpl = p.tokenize.template_name;
  const bool decode = p.tokenize.decode, skip_special = p.tokenize.skip_special;
  if (dir.empty()) {
    std::cerr << "grpo_tokenize: --tokenizer is required (see --help)\n";
    return 2;
  }
  try {
    // The same formatting as training (text/prompt.h): a chat format wraps the question as one
    // user turn with the generation prompt; anything else is a template.
    grpo::text::PromptConfig pf;
    if (tmpl == "model" || tmpl == "deepseek_v3" || tmpl == "qwen3" || tmpl == "chatml")
      pf.chat = tmpl == "chatml" ? "qwen3" : tmpl;
    else if (!tmpl.empty())
      pf.template_text = tmpl;
    grpo::core::ConfigSource src;
    src.record("prompt.template", "--template");
    grpo::text::validate_prompt_config(pf, src);
    std::string path = fs::is_directory(dir) ? (fs::path(dir) / "tokenizer.json").string() : dir;
    auto tok = fs::is_directory(dir) ? grpo::text::HfTokenizer::from_dir(dir) : grpo::text::HfTokenizer::from_file(path);
    std::string line;
    for (int64_t n = 1; std::getline(std::cin, line); ++n) {
      if (line.empty()) continue;
      auto j = nlohmann::json::parse(line, nullptr, false);
      if (decode) {
        GRPO_CHECK(j.is_array(), "stdin line {}: expected a JSON array of ids", n);
        std::cout << nlohmann::json(tok->decode(j.get<std::vector<int64_t>>(), skip_special)).dump() << "\n";
      } else {
        GRPO_CHECK(j.is_string(), "stdin line {}: expected a JSON string", n);
        std::string text = j.get<std::string>();
        if (!tmpl.empty()) text = grpo::text::format_prompt(pf, text, tok.get());
        std::cout << nlohmann::json(tok->encode(text)).dump() << "\n";
      }
    }
  } catch (...) {
    return grpo::tools::report_exception("grpo_tokenize");
  }
  return 0;
}
