#include "grpo/text/chat_template.h"

#include "grpo/core/error.h"

namespace grpo::text {
namespace {

std::string strip_chars(std::string s, bool left, bool right, char c = '\n') {
  if (right)
    while (!s.empty() && s.back() == c) s.pop_back();
  if (left) {
    size_t i = 0;
    while (i < s.size() && s[i] == c) ++i;
    s.erase(0, i);
  }
  return s;
}

void check_roles(const std::vector<ChatMessage>& messages) {
  for (size_t i = 0; i < messages.size(); ++i) {
    const auto& r = messages[i].role;
    GRPO_CHECK(r == "system" || r == "user" || r == "assistant",
               "chat message {}: role '{}' is not supported (system, user, assistant)", i, r);
  }
}

std::string deepseek_v3(const std::vector<ChatMessage>& messages, bool add_generation_prompt) {
  std::string system;
  bool first = true;
  for (const auto& m : messages)
    if (m.role == "system") {
      system += (first ? "" : "\n\n") + m.content;
      first = false;
    }
  std::string out = "<｜begin▁of▁sentence｜>" + system;
  for (const auto& m : messages) {
    if (m.role == "user") out += "<｜User｜>" + m.content;
    else if (m.role == "assistant") out += "<｜Assistant｜>" + m.content + "<｜end▁of▁sentence｜>";
  }
  if (add_generation_prompt) out += "<｜Assistant｜>";
  return out;
}

std::string qwen3(const std::vector<ChatMessage>& messages, bool add_generation_prompt,
                  std::optional<bool> enable_thinking) {
  std::string out;
  if (!messages.empty() && messages[0].role == "system")
    out += "<|im_start|>system\n" + messages[0].content + "<|im_end|>\n";
  // index of the last user query
  int64_t last_query = static_cast<int64_t>(messages.size()) - 1;
  for (int64_t i = last_query; i >= 0; --i) {
    const auto& c = messages[i].content;
    bool tool_response = c.rfind("<tool_response>", 0) == 0 && c.size() >= 16 &&
                         c.compare(c.size() - 16, 16, "</tool_response>") == 0;
    if (messages[i].role == "user" && !tool_response) {
      last_query = i;
      break;
    }
  }
  for (size_t i = 0; i < messages.size(); ++i) {
    const auto& m = messages[i];
    if (m.role == "user" || (m.role == "system" && i != 0)) {
      out += "<|im_start|>" + m.role + "\n" + m.content + "<|im_end|>\n";
    } else if (m.role == "assistant") {
      std::string content = m.content, reasoning;
      auto close = content.find("</think>");
      if (close != std::string::npos) {
        auto last_close = content.rfind("</think>");
        std::string before = content.substr(0, close);
        content = strip_chars(m.content.substr(last_close + 8), true, false);
        before = strip_chars(before, false, true);
        auto open = before.rfind("<think>");
        reasoning = strip_chars(open == std::string::npos ? before : before.substr(open + 7), true, false);
      }
      if (static_cast<int64_t>(i) > last_query && (i + 1 == messages.size() || !reasoning.empty())) {
        out += "<|im_start|>assistant\n<think>\n" + strip_chars(reasoning, true, true) + "\n</think>\n\n" +
               strip_chars(content, true, false);
      } else {
        out += "<|im_start|>assistant\n" + content;
      }
      out += "<|im_end|>\n";
    }
  }
  if (add_generation_prompt) {
    out += "<|im_start|>assistant\n";
    if (enable_thinking.has_value() && !*enable_thinking) out += "<think>\n\n</think>\n\n";
  }
  return out;
}

}  // namespace

ChatFormat parse_chat_format(const std::string& name) {
  if (name == "deepseek_v3") return ChatFormat::kDeepSeekV3;
  if (name == "qwen3" || name == "chatml") return ChatFormat::kQwen3;
  fail("unknown chat template '{}': expected deepseek_v3 or qwen3 (chatml)", name);
}

std::string apply_chat_template(ChatFormat format, const std::vector<ChatMessage>& messages,
                                bool add_generation_prompt, std::optional<bool> enable_thinking) {
  check_roles(messages);
  return format == ChatFormat::kDeepSeekV3 ? deepseek_v3(messages, add_generation_prompt)
                                           : qwen3(messages, add_generation_prompt, enable_thinking);
}

}  // namespace grpo::text
