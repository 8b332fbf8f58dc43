// Chat templates, two ways, both checked against transformers' apply_chat_template
// (tests/fixtures/chat_templates.jsonl, tools/make_chat_template_fixtures.py):
// - a model's own Jinja template (tokenizer_config.json `chat_template`, chat_template.jinja, or a
//   GGUF file's), rendered by minja (third_party/minja) with what transformers passes it;
// - fast paths for DeepSeek-V3/R1 and ChatML as Qwen3 writes it (including its <think>
//   handling), re-implemented in C++ and tested equal to the Jinja rendering of those templates.
// Messages with tools are not supported yet.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace grpo::text {

struct ChatMessage {
  std::string role;     // system | user | assistant
  std::string content;
};

enum class ChatFormat { kDeepSeekV3, kQwen3 };

/// "deepseek_v3" or "qwen3" (alias "chatml"); throws grpo::Error otherwise.
ChatFormat parse_chat_format(const std::string& name);

/// The prompt text for `messages`. enable_thinking (Qwen3 only): false adds an empty think block
/// after the generation prompt, as Qwen3's template does.
std::string apply_chat_template(ChatFormat format, const std::vector<ChatMessage>& messages,
                                bool add_generation_prompt,
                                std::optional<bool> enable_thinking = std::nullopt);

/// A model's Jinja chat template, parsed once. Rendering passes `messages` (role, content),
/// `add_generation_prompt`, `bos_token`, `eos_token` and, when set, `enable_thinking`, as
/// transformers does (trim_blocks and lstrip_blocks on).
class JinjaChatTemplate {
 public:
  /// A template that does not parse is a grpo::Error naming `origin` and minja's message.
  JinjaChatTemplate(const std::string& source, const std::string& bos_token, const std::string& eos_token,
                    const std::string& origin);
  ~JinjaChatTemplate();
  std::string apply(const std::vector<ChatMessage>& messages, bool add_generation_prompt,
                    std::optional<bool> enable_thinking = std::nullopt) const;
  const std::string& source() const;

  /// The template of a tokenizer directory: tokenizer_config.json's `chat_template` (a string, or
  /// a list of {name, template}, of which "default" is used), else chat_template.jinja; with the
  /// file's bos/eos tokens. nullptr when the directory has none.
  static std::unique_ptr<JinjaChatTemplate> from_dir(const std::string& dir);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace grpo::text
