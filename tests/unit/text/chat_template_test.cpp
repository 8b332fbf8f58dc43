// Chat templates against transformers' apply_chat_template on the shipped tokenizer_config.json
// files and SmolLM2's GGUF template (tests/fixtures/chat_templates.jsonl,
// tools/make_chat_template_fixtures.py): the Jinja rendering (minja) of every case, and the C++
// fast paths of the deepseek_v3 and qwen3 formats, so the two are equal to each other as well.
#include <ctime>
#include <fstream>
#include <map>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "grpo/core/config.h"
#include "grpo/core/error.h"
#include "grpo/text/chat_template.h"
#include "grpo/text/hf_tokenizer.h"
#include "../test_util.h"

using namespace grpo::text;
using grpo::test_util::kFixtures;

TEST(ChatTemplate, MatchesTransformersApplyChatTemplate) {
  std::ifstream in(std::string(GRPO_SOURCE_DIR) + "/tests/fixtures/chat_templates.jsonl");
  int n = 0;
  for (std::string line; std::getline(in, line);) {
    auto j = nlohmann::json::parse(line);
    if (j["format"] == "smollm2") continue;  // Jinja only (below)
    ++n;
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

// The model's own template through minja equals transformers on every case, fast-path formats
// included (with enable_thinking on, off and absent for Qwen3).
TEST(JinjaChatTemplate, RendersEveryCaseAsTransformersDoes) {
  auto meta = nlohmann::json::parse(std::ifstream(kFixtures + "/gguf/smollm2_meta.json"));
  std::map<std::string, std::unique_ptr<JinjaChatTemplate>> templates;
  templates["deepseek_v3"] = JinjaChatTemplate::from_dir(kFixtures + "/tokenizers/deepseek_v3");
  templates["qwen3"] = JinjaChatTemplate::from_dir(kFixtures + "/tokenizers/qwen3");
  templates["smollm2"] = std::make_unique<JinjaChatTemplate>(meta["chat_template"], meta["bos_token"],
                                                             meta["eos_token"], "smollm2_meta.json");
  std::map<std::string, int> n;
  std::ifstream in(kFixtures + "/chat_templates.jsonl");
  for (std::string line; std::getline(in, line);) {
    auto j = nlohmann::json::parse(line);
    const auto& t = templates.at(j["format"]);
    ASSERT_NE(t, nullptr) << j["format"];
    std::vector<ChatMessage> msgs;
    for (auto& m : j["messages"]) msgs.push_back({m["role"], m["content"]});
    std::optional<bool> think;
    if (!j["enable_thinking"].is_null()) think = j["enable_thinking"].get<bool>();
    EXPECT_EQ(t->apply(msgs, j["add_generation_prompt"], think), j["text"].get<std::string>()) << line;
    ++n[j["format"]];
  }
  EXPECT_GE(n["deepseek_v3"], 20);
  EXPECT_GE(n["qwen3"], 60);
  EXPECT_GE(n["smollm2"], 20);
}

TEST(JinjaChatTemplate, ComesWithTheTokenizerAndBadTemplatesAreNamedErrors) {
  auto tok = HfTokenizer::from_dir(kFixtures + "/tokenizers/qwen3");
  ASSERT_NE(tok->chat_template(), nullptr);
  EXPECT_EQ(tok->chat_template()->apply({{"user", "hi"}}, true, false),
            apply_chat_template(ChatFormat::kQwen3, {{"user", "hi"}}, true, false));
  auto e = grpo::test_util::error_of([] { JinjaChatTemplate("{% for m in messages %}{{ m.content }", "", "", "x.json"); });
  EXPECT_NE(e.find("x.json: the chat template does not parse as Jinja"), std::string::npos) << e;
  e = grpo::test_util::error_of([] {
    JinjaChatTemplate("{{ raise_exception('only user turns') }}", "", "", "y.json").apply({{"user", "a"}}, true);
  });
  EXPECT_NE(e.find("y.json: rendering the chat template failed"), std::string::npos) << e;
  EXPECT_NE(e.find("only user turns"), std::string::npos) << e;
  // a directory with no template: none, and prompt.chat: model says so
  auto dir = grpo::test_util::tmpdir("no_chat_template");
  grpo::test_util::write_file(dir + "/tokenizer.json", grpo::core::read_file(kFixtures + "/tokenizers/qwen3/tokenizer.json"));
  EXPECT_EQ(JinjaChatTemplate::from_dir(dir), nullptr);
}

TEST(JinjaChatTemplate, OffersStrftimeNowAsTransformersDoes) {
  JinjaChatTemplate t("{{ strftime_now('%Y') }}|{{ bos_token }}|{{ eos_token }}", "<s>", "</s>", "z.json");
  const auto out = t.apply({}, false);
  char year[8];
  const std::time_t now = std::time(nullptr);
  std::strftime(year, sizeof year, "%Y", std::localtime(&now));
  EXPECT_EQ(out, std::string(year) + "|<s>|</s>");
}
