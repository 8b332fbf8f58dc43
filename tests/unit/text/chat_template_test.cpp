// C++ chat templates against transformers' apply_chat_template on the shipped
// tokenizer_config.json files (tests/fixtures/chat_templates.jsonl, tools/make_chat_template_fixtures.py).
#include <fstream>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "grpo/core/error.h"
#include "grpo/text/chat_template.h"

using namespace grpo::text;

TEST(ChatTemplate, MatchesTransformersApplyChatTemplate) {
  std::ifstream in(std::string(GRPO_SOURCE_DIR) + "/tests/fixtures/chat_templates.jsonl");
  int n = 0;
  for (std::string line; std::getline(in, line); ++n) {
    auto j = nlohmann::json::parse(line);
    std::vector<ChatMessage> msgs;
    for (auto& m : j["messages"]) msgs.push_back({m["role"], m["content"]});
    std::optional<bool> think;
    if (!j["enable_thinking"].is_null()) think = j["enable_thinking"].get<bool>();
    auto got = apply_chat_template(parse_chat_format(j["format"]), msgs, j["add_generation_prompt"], think);
    EXPECT_EQ(got, j["text"].get<std::string>()) << line;
  }
  EXPECT_GE(n, 60);
}

TEST(ChatTemplate, UnknownFormatAndRoleAreErrors) {
  EXPECT_THROW(parse_chat_format("llama2"), grpo::Error);
  EXPECT_THROW(apply_chat_template(ChatFormat::kQwen3, {{"tool", "x"}}, true), grpo::Error);
}
