// Prompt formatting: the template, then the chat format, then BOS (one function for training,
// evaluation and generation); invalid combinations name the key.
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "grpo/core/config.h"
#include "grpo/core/error.h"
#include "grpo/text/chat_template.h"
#include "grpo/text/hf_tokenizer.h"
#include "grpo/text/prompt.h"
#include "grpo/text/tokenizer.h"
#include "../test_util.h"

using namespace grpo;
using grpo::test_util::error_of;
using grpo::test_util::kDeepSeekTok;
using grpo::test_util::kQwen3Tok;

TEST(Prompt, TemplateThenChatFormatThenBos) {
  text::PromptConfig p;
  p.template_text = "r1_zero";
  EXPECT_EQ(text::format_prompt(p, "1+1"), text::apply_template(text::kR1ZeroTemplate, "1+1"));
  p.template_text = "Q: {prompt}\nA:";
  p.chat = "qwen3";
  p.system = "Be brief.";
  EXPECT_EQ(text::format_prompt(p, "2+2"),
            text::apply_chat_template(text::ChatFormat::kQwen3,
                                      {{"system", "Be brief."}, {"user", "Q: 2+2\nA:"}}, true));
  p.thinking = "off";
  auto off = text::format_prompt(p, "2+2");
  EXPECT_EQ(off.substr(off.size() - 19), "<think>\n\n</think>\n\n") << off;

  auto ds = text::HfTokenizer::from_dir(kDeepSeekTok);
  text::PromptConfig b;
  b.add_bos = true;
  auto ids = text::encode_prompt(b, *ds, "hello");
  ASSERT_FALSE(ids.empty());
  EXPECT_EQ(ids[0], *ds->token_id("<｜begin▁of▁sentence｜>"));
  EXPECT_EQ(std::vector<int64_t>(ids.begin() + 1, ids.end()), ds->encode("hello"));
  auto qwen = text::HfTokenizer::from_dir(kQwen3Tok);
  EXPECT_NE(error_of([&] { text::encode_prompt(b, *qwen, "hello"); }).find("no BOS"), std::string::npos);
}

TEST(Prompt, InvalidCombinationsNameTheKey) {
  core::ConfigSource src;
  auto check = [&](text::PromptConfig p, const std::string& key) {
    auto e = error_of([&] { text::validate_prompt_config(p, src); });
    EXPECT_NE(e.find("prompt." + key), std::string::npos) << e;
  };
  text::PromptConfig p;
  p.system = "x";
  check(p, "system");
  p = {};
  p.thinking = "off";
  check(p, "thinking");
  p = {};
  p.chat = "deepseek_v3";
  p.add_bos = true;
  check(p, "add_bos");
  p = {};
  p.template_text = "no placeholder";
  check(p, "template");
  p.template_text = "{question}";
  check(p, "template");
}

// prompt.chat: model renders the tokenizer's own template: for Qwen3 the same ids as the fast path
// (thinking on and off); a tokenizer without a template is an error naming prompt.chat.
TEST(Prompt, ModelChatUsesTheTokenizersOwnTemplate) {
  auto tok = text::HfTokenizer::from_dir(kQwen3Tok);
  text::PromptConfig fast, own;
  fast.template_text = own.template_text = "Q: {prompt}";
  fast.system = own.system = "Reason, then answer.";
  fast.chat = "qwen3";
  own.chat = "model";
  for (const char* thinking : {"default", "on", "off"}) {
    fast.thinking = own.thinking = thinking;
    EXPECT_EQ(text::encode_prompt(own, *tok, "12*7"), text::encode_prompt(fast, *tok, "12*7")) << thinking;
  }
  auto bare = text::HfTokenizer::from_file(kQwen3Tok + "/tokenizer.json");
  auto e = error_of([&] { text::encode_prompt(own, *bare, "1"); });
  EXPECT_NE(e.find("prompt.chat is 'model', but the tokenizer's files have no chat template"), std::string::npos) << e;
  e = error_of([&] { text::format_prompt(own, "1"); });
  EXPECT_NE(e.find("no tokenizer was given"), std::string::npos) << e;
}
