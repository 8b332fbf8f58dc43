// The C++ byte-level BPE tokenizer against HF `tokenizers` on the real DeepSeek-V3 and Qwen3
// tokenizer.json files, over the corpus of tests/fixtures/tokenizers (tools/make_tokenizer_fixtures.py).
// Special tokens from a tokenizer directory's tokenizer_config.json.
#include <fstream>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "grpo/core/error.h"
#include "grpo/text/hf_tokenizer.h"
#include "../test_util.h"

using grpo::text::HfTokenizer;
namespace text = grpo::text;
using grpo::test_util::error_of;
using grpo::test_util::kDeepSeekTok;
using grpo::test_util::kFixtures;
using grpo::test_util::kQwen3Tok;

namespace {

std::string dir(const std::string& name) {
  return std::string(GRPO_SOURCE_DIR) + "/tests/fixtures/tokenizers/" + name;
}

const HfTokenizer& tokenizer(const std::string& name) {
  static std::map<std::string, std::unique_ptr<HfTokenizer>> cache;
  auto& t = cache[name];
  if (!t) t = HfTokenizer::from_file(dir(name) + "/tokenizer.json");
  return *t;
}

class HfTokenizerFixture : public ::testing::TestWithParam<std::string> {};

}  // namespace

TEST_P(HfTokenizerFixture, IdsAndDecodingMatchHuggingFace) {
  const auto& tok = tokenizer(GetParam());
  std::ifstream in(dir(GetParam()) + "/expected.jsonl");
  ASSERT_TRUE(in.good());
  int n = 0, mismatched = 0, roundtrips = 0;
  for (std::string line; std::getline(in, line); ++n) {
    auto j = nlohmann::json::parse(line);
    std::string text = j["text"];
    auto want = j["ids"].get<std::vector<int64_t>>();
    auto got = tok.encode(text);
    if (got != want && ++mismatched <= 5)
      ADD_FAILURE() << GetParam() << ": ids differ for " << nlohmann::json(text).dump() << "\n  want "
                    << nlohmann::json(want).dump() << "\n  got  " << nlohmann::json(got).dump();
    std::string decoded = tok.decode(want);
    EXPECT_EQ(decoded, j["decoded"].get<std::string>()) << nlohmann::json(text).dump();
    if (j["decoded"] == text) {
      ++roundtrips;
      EXPECT_EQ(tok.decode(got), text);
    }
  }
  EXPECT_GE(n, 1000);
  EXPECT_EQ(mismatched, 0) << mismatched << " of " << n << " strings tokenized differently";
  EXPECT_GT(roundtrips, n / 2);
}

INSTANTIATE_TEST_SUITE_P(Files, HfTokenizerFixture, ::testing::Values("deepseek_v3", "qwen3"));

TEST(HfTokenizer, SpecialTokensAndIds) {
  const auto& q = tokenizer("qwen3");
  EXPECT_EQ(q.eos_id(), *q.token_id("<|endoftext|>"));
  auto ids = q.encode("<|im_start|>user");
  ASSERT_EQ(ids.size(), 2u);
  EXPECT_EQ(ids[0], *q.token_id("<|im_start|>"));
  EXPECT_EQ(q.decode(ids, /*skip_special=*/true), "user");
  EXPECT_THROW(q.encode(std::string("bad \xff utf8")), grpo::Error);
  EXPECT_THROW(q.decode({-1}), grpo::Error);
  const auto& d = tokenizer("deepseek_v3");
  EXPECT_EQ(d.eos_id(), *d.token_id("<｜end▁of▁sentence｜>"));
}

TEST(HfTokenizer, InvalidUtf8IsReplacedLikeHuggingFace) {
  // the byte-level pieces of "é" are two tokens; decoding only the first gives U+FFFD
  const auto& q = tokenizer("qwen3");
  auto ids = q.encode("\xc3\xa9\xe4\xbd\xa0");  // é你
  std::vector<int64_t> first;
  for (auto id : ids) {
    first.push_back(id);
    auto s = q.decode(first);
    for (size_t i = 0; i < s.size(); ++i) ASSERT_NE(s[i], '\0');
  }
  EXPECT_EQ(q.decode(ids), "\xc3\xa9\xe4\xbd\xa0");
}

TEST(HfTokenizer, UnsupportedComponentsAreNamed) {
  auto err = [](const std::string& j) {
    try {
      HfTokenizer::from_json(j, "t.json");
    } catch (const grpo::Error& e) {
      return std::string(e.what());
    }
    return std::string();
  };
  EXPECT_NE(err(R"({"model":{"type":"Unigram","vocab":[]}})").find("model type 'Unigram'"), std::string::npos);
  EXPECT_NE(err(R"({"model":{"type":"BPE","vocab":{},"merges":[]},"normalizer":{"type":"Lowercase"},
                   "pre_tokenizer":{"type":"ByteLevel"}})").find("normalizer 'Lowercase'"), std::string::npos);
  EXPECT_NE(err(R"({"model":{"type":"BPE","vocab":{"a":0},"merges":["a b"]},"pre_tokenizer":{"type":"ByteLevel"}})")
                .find("merge 'a b'"), std::string::npos);
  EXPECT_NE(err("{not json").find("not valid JSON"), std::string::npos);
}

TEST(HfTokenizerDir, SpecialTokensComeFromTokenizerConfig) {
  auto q = text::HfTokenizer::from_dir(kQwen3Tok);
  EXPECT_EQ(q->eos_id(), *q->token_id("<|im_end|>"));     // tokenizer_config.json eos_token
  EXPECT_EQ(q->pad_id(), *q->token_id("<|endoftext|>"));  // pad_token
  EXPECT_FALSE(q->bos_id().has_value());                  // bos_token: null
  auto d = text::HfTokenizer::from_dir(kDeepSeekTok);     // tokens given as AddedToken objects
  EXPECT_EQ(d->eos_id(), *d->token_id("<｜end▁of▁sentence｜>"));
  EXPECT_EQ(d->bos_id(), d->token_id("<｜begin▁of▁sentence｜>"));
  auto o = text::HfTokenizer::from_dir(kQwen3Tok, "<|endoftext|>");
  EXPECT_EQ(o->eos_id(), *q->token_id("<|endoftext|>"));
  EXPECT_NE(error_of([&] { text::HfTokenizer::from_dir(kQwen3Tok, "<|nope|>"); }).find("<|nope|>"),
            std::string::npos);
  EXPECT_NE(error_of([&] { text::HfTokenizer::from_dir(kFixtures + "/hf/llama"); }).find("no tokenizer.json"),
            std::string::npos);
}
