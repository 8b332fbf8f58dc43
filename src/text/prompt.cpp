#include "grpo/text/prompt.h"

#include "grpo/core/error.h"
#include "grpo/text/chat_template.h"
#include "grpo/text/tokenizer.h"

namespace grpo::text {

void validate_prompt_config(const PromptConfig& c, const core::ConfigSource& src,
                            const std::string& prefix) {
  const std::string p = prefix + ".";
  try {
    resolve_template(c.template_text);
    apply_template(resolve_template(c.template_text), "");
  } catch (const Error& e) {
    core::config_fail(src, p + "template", e.what());
  }
  if (c.chat == "none" && !c.system.empty())
    core::config_fail(src, p + "system", "a system message needs a chat format (" + p + "chat is none)");
  if (c.thinking != "default" && c.chat != "qwen3" && c.chat != "model")
    core::config_fail(src, p + "thinking", "applies to the qwen3 and model chat formats only (" + p + "chat is " +
                      c.chat + ")");
  if (c.add_bos && c.chat == "deepseek_v3")
    core::config_fail(src, p + "add_bos", "the deepseek_v3 chat format already starts with BOS; "
                      "adding it would write it twice");
}

std::string format_prompt(const PromptConfig& c, const std::string& question, const Tokenizer* tok) {
  std::string text = apply_template(resolve_template(c.template_text), question);
  if (c.chat == "none") return text;
  std::vector<ChatMessage> messages;
  if (!c.system.empty()) messages.push_back({"system", c.system});
  messages.push_back({"user", text});
  std::optional<bool> thinking;
  if (c.thinking != "default") thinking = c.thinking == "on";
  if (c.chat == "model") {
    const JinjaChatTemplate* t = tok ? tok->chat_template() : nullptr;
    GRPO_CHECK(t != nullptr, "prompt.chat is 'model', but {}", tok ? "the tokenizer's files have no chat template "
               "(tokenizer_config.json 'chat_template' or chat_template.jinja): choose another prompt.chat"
               : "no tokenizer was given to format the prompt with");
    return t->apply(messages, /*add_generation_prompt=*/true, thinking);
  }
  return apply_chat_template(parse_chat_format(c.chat), messages, /*add_generation_prompt=*/true,
                             thinking);
}

std::vector<int64_t> encode_prompt(const PromptConfig& c, const Tokenizer& tok,
                                   const std::string& question) {
  auto ids = tok.encode(format_prompt(c, question, &tok));
  if (c.add_bos) {
    auto bos = tok.bos_id();
    GRPO_CHECK(bos.has_value(), "prompt.add_bos is set but the tokenizer has no BOS token");
    ids.insert(ids.begin(), *bos);
  }
  return ids;
}

}  // namespace grpo::text
