// How a question becomes the token ids the policy sees, in one place: the template around the
// question, an optional chat format (DeepSeek-V3, Qwen3/ChatML) with an optional system message,
// and an optional BOS token. Training, evaluation, grpo_generate and grpo_tokenize all call
// encode_prompt(), so a prompt is formatted identically everywhere.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "grpo/core/config.h"

namespace grpo::text {

class Tokenizer;

struct PromptConfig {
  std::string template_text = "plain";  // YAML key `template`
  std::string chat = "none";
  std::string system;
  std::string thinking = "default";
  bool add_bos = false;

  void visit(core::ConfigVisitor& v) {
    v.field("template", template_text,
            "text around the question: r1_zero (the DeepSeek-R1-Zero template), plain (the question "
            "itself), or a string containing {prompt}");
    v.field("chat", chat, "chat format wrapped around the templated question as one user turn, "
            "with the assistant generation prompt: model = the model's own Jinja chat template "
            "(tokenizer_config.json or the GGUF file), deepseek_v3 / qwen3 = built-in fast paths of "
            "those templates; none = raw text (base models, R1-Zero)",
            {"none", "model", "deepseek_v3", "qwen3"});
    v.field("system", system, "system message (chat formats only; empty = none)");
    v.field("thinking", thinking, "qwen3 and model chat only: enable_thinking for the template (on "
            "/ off; qwen3's off adds the empty <think></think> block, as enable_thinking=False does in "
            "transformers); default passes none", {"default", "on", "off"});
    v.field("add_bos", add_bos, "prepend the tokenizer's BOS token (Llama/DeepSeek base models; the "
            "deepseek_v3 chat format already starts with it)");
  }
};

/// Throws ConfigError naming the key (prefix + "." + key, located by `src`) when the template or
/// the combination of options is invalid.
void validate_prompt_config(const PromptConfig& c, const core::ConfigSource& src,
                            const std::string& prefix = "prompt");

/// The prompt text for `question` (template, then chat format). BOS is not part of the text.
/// chat: model needs `tok`, whose chat template renders it (an error naming the key otherwise).
std::string format_prompt(const PromptConfig& c, const std::string& question, const Tokenizer* tok = nullptr);

/// How the chat format frames an environment's observation inside an episode (env.observation_role):
/// the model's turn ends, `before` closes it and opens a turn of `role` (e.g. tool), the
/// observation follows, and `after` closes that turn and opens the assistant's again (the
/// generation prompt). So prompt + turn + before + observation + after is the template's own
/// rendering of [system, user, assistant: turn, role: observation] with the generation prompt.
/// Found once by rendering that conversation with placeholder texts; an error names
/// env.observation_role when there is no chat format or the template drops such a message.
struct ObservationFrame {
  std::string before, after;
};
ObservationFrame observation_frame(const PromptConfig& c, const std::string& role, const Tokenizer* tok = nullptr);

/// Token ids of the formatted prompt, with BOS when add_bos (error if the tokenizer has none).
std::vector<int64_t> encode_prompt(const PromptConfig& c, const Tokenizer& tok,
                                   const std::string& question);

}  // namespace grpo::text
