// The character tokenizer (special tokens) and prompt templates.
#include <gtest/gtest.h>

#include "grpo/core/error.h"
#include "grpo/text/tokenizer.h"

using namespace grpo;

TEST(CharTokenizer, RoundTripWithSpecialTokens) {
  text::CharTokenizer tok("0123456789+=", {"<think>", "</think>"});
  auto ids = tok.encode("12+3=<think>4</think>");
  EXPECT_EQ(ids.size(), 5u + 1 + 1 + 1);
  EXPECT_EQ(tok.decode(ids), "12+3=<think>4</think>");
  EXPECT_EQ(tok.decode(ids, true), "12+3=4");
  EXPECT_EQ(*tok.token_id("<think>"), 2);
  EXPECT_EQ(tok.vocab_size(), 2 + 2 + 12);
  EXPECT_THROW(tok.encode("1a"), Error);
  EXPECT_THROW(tok.decode({99}), Error);
}

TEST(Template, SubstitutesPrompt) {
  EXPECT_EQ(text::apply_template("Q: {prompt} A:", "1+1="), "Q: 1+1= A:");
  EXPECT_EQ(text::apply_template("{{x}} {prompt}", "p"), "{x} p");
  EXPECT_THROW(text::apply_template("no field", "p"), Error);
  EXPECT_THROW(text::apply_template("{question}", "p"), Error);
  auto r1 = text::apply_template(text::resolve_template("r1_zero"), "What is 2+3?");
  EXPECT_EQ(r1.substr(0, 40), "A conversation between User and Assistan");
  EXPECT_EQ(r1.substr(r1.size() - 30), "User: What is 2+3?. Assistant:");
  EXPECT_EQ(text::resolve_template("plain"), "{prompt}");
  EXPECT_THROW(text::resolve_template("chatml2"), Error);
}
