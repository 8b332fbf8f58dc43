// Chat templates of the model families grpo trains, re-implemented in C++ (no Jinja) and checked
// against transformers' apply_chat_template on the shipped tokenizer_config.json files
// (tests/fixtures/chat_templates.jsonl): DeepSeek-V3/R1 and ChatML as Qwen3 writes it
// (including its <think> handling). Messages with tools are not supported yet.
#pragma once

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

}  // namespace grpo::text
