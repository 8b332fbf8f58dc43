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

namespace {

// `messages` (after the system message, if any) in c's chat format, with the generation prompt.
std::string render_chat(const PromptConfig& c, std::vector<ChatMessage> messages, const Tokenizer* tok) {
  if (!c.system.empty()) messages.insert(messages.begin(), {"system", c.system});
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

}  // namespace

std::string format_prompt(const PromptConfig& c, const std::string& question, const Tokenizer* tok) {
  std::string text = apply_template(resolve_template(c.template_text), question);
  if (c.chat == "none") return text;
  return render_chat(c, {{"user", text}}, tok);
}

ObservationFrame observation_frame(const PromptConfig& c, const std::string& role, const Tokenizer* tok) {
  GRPO_CHECK(c.chat != "none", "env.observation_role '{}' frames observations with the chat template's turn "
             "markers, but prompt.chat is none: set prompt.chat, or leave env.observation_role empty", role);
  const std::string turn = "\x01grpo turn\x01", obs = "\x01grpo observation\x01";
  std::string text;
  try {
    text = render_chat(c, {{"user", "question"}, {"assistant", turn}, {role, obs}}, tok);
  } catch (const Error& e) {
    fail("env.observation_role '{}': the chat format ({}) cannot render such a message: {}", role, c.chat, e.what());
  }
  const size_t t = text.find(turn), o = text.find(obs);
  GRPO_CHECK(t != std::string::npos && o != std::string::npos && t < o && text.find(turn, t + 1) == std::string::npos &&
                 text.find(obs, o + 1) == std::string::npos,
             "env.observation_role '{}': the chat format ({}) does not render the model's turn and then the "
             "observation, each once (it rendered '{}')", role, c.chat, text.substr(0, 400));
  return {text.substr(t + turn.size(), o - t - turn.size()), text.substr(o + obs.size())};
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
