// The built-in tasks: disjoint, deterministic splits; addition's demonstrations with the configured
// mistake and format rates; multiplication's with the configured share of code-tool calls, whose
// observations are not trained on.
#include <set>
#include <string>

#include <gtest/gtest.h>

#include "grpo/core/error.h"
#include "grpo/data/arithmetic.h"
#include "grpo/reward/reward.h"
#include "grpo/text/tokenizer.h"

using namespace grpo;

TEST(ArithmeticTask, SplitsAreDisjointAndDeterministic) {
  data::ArithmeticConfig c;
  data::ArithmeticTask t(c, 1), t2(c, 2);
  std::set<std::pair<int64_t, int64_t>> held;
  for (int i = 0; i < 300; ++i) {
    auto p = t.heldout_problem(i);
    EXPECT_TRUE(t.is_heldout(p.a, p.b));
    EXPECT_EQ(p.a, t2.heldout_problem(i).a);  // same held-out set for every seed
    held.insert({p.a, p.b});
  }
  for (int i = 0; i < 3000; ++i) {
    auto p = t.train_problem(i);
    EXPECT_FALSE(held.count({p.a, p.b}));
    EXPECT_GE(p.a, 100);
    EXPECT_LE(p.b, 999);
    EXPECT_EQ(p.answer, std::to_string(p.a + p.b));
    EXPECT_EQ(p.question, fmt::format("{}+{}=", p.a, p.b));
  }
  EXPECT_EQ(t.train_problem(17).a, data::ArithmeticTask(c, 1).train_problem(17).a);
}

TEST(ArithmeticTask, DemonstrationsHaveTheConfiguredMistakeRate) {
  EXPECT_EQ(data::carry_dropping_sum(457, 386, 3), 733);
  EXPECT_EQ(data::carry_dropping_sum(999, 999, 3), 1888);
  EXPECT_EQ(data::carry_dropping_sum(123, 456, 3), 579);
  data::ArithmeticConfig c;
  c.noise = 0.6;
  c.format_rate = 0.5;
  data::ArithmeticTask t(c, 3);
  int wrong = 0, formatted = 0, n = 4000;
  reward::CombinedReward acc({{"accuracy", 1.0}});
  for (int i = 0; i < n; ++i) {
    auto p = t.train_problem(i);
    auto d = t.demonstration(p, 1000 + i);
    formatted += reward::has_r1_format(d);
    wrong += acc.score(d, p.answer).total == 0.0;
  }
  EXPECT_NEAR(double(formatted) / n, 0.5, 0.03);
  // a carry-dropping demonstration is wrong unless the problem has no carry at all
  EXPECT_GT(double(wrong) / n, 0.4);
  EXPECT_LT(double(wrong) / n, 0.6);
  c.scratchpad = true;
  data::ArithmeticTask ts(c, 3);
  data::Problem p{457, 386, "457+386=", "843"};
  EXPECT_EQ(ts.formatted(p, 843, false), "<think>13,14,8</think><answer>843</answer>");
  EXPECT_EQ(ts.formatted(p, 733, true), "<think>13,13,7</think><answer>733</answer>");
}

TEST(ArithmeticTask, MultiplicationDemonstrationsCallTheToolAtTheConfiguredRate) {
  data::ArithmeticConfig c;
  c.name = "multiplication";
  c.digits = 4;
  c.tool_rate = 0.3;
  data::ToolFormat tool{"<code>", "</code>", "<output>", "</output>"};
  data::ArithmeticTask t(c, 5, tool);
  auto tok = data::task_tokenizer(c);
  reward::CombinedReward acc({{"accuracy", 1.0}});
  int calls = 0, n = 4000;
  for (int i = 0; i < n; ++i) {
    auto p = t.train_problem(i);
    ASSERT_FALSE(t.is_heldout(p.a, p.b));
    ASSERT_GE(p.a, 1000);
    ASSERT_LE(p.b, 9999);
    ASSERT_EQ(p.question, fmt::format("{}*{}=", p.a, p.b));
    ASSERT_EQ(p.answer, std::to_string(p.a * p.b));
    auto pieces = t.demonstration_pieces(p, 77 + i);
    const std::string text = t.demonstration(p, 77 + i);
    EXPECT_EQ(acc.score(text, p.answer).total, 1.0) << text;  // every demonstration answers right
    if (pieces.size() == 1) {  // stated outright
      EXPECT_EQ(text, "<answer>" + p.answer + "</answer>");
      continue;
    }
    ++calls;
    ASSERT_EQ(pieces.size(), 3u);
    EXPECT_EQ(pieces[0].text, fmt::format("<code>print({}*{})</code>", p.a, p.b));
    EXPECT_EQ(pieces[1].text, "<output>" + p.answer + "</output>");
    EXPECT_EQ(pieces[2].text, "<answer>" + p.answer + "</answer>");
    EXPECT_FALSE(pieces[0].observation);
    EXPECT_TRUE(pieces[1].observation);
    EXPECT_FALSE(pieces[2].observation);
    // tokenized piece by piece, the tool's output is not trained on and the rest is
    auto d = data::tokenize_demonstration(*tok, pieces);
    EXPECT_EQ(d.ids, tok->encode(text));  // the tags keep pieces apart: same ids as the whole text
    const size_t code = tok->encode(pieces[0].text).size(), out = tok->encode(pieces[1].text).size();
    ASSERT_EQ(d.trained.size(), d.ids.size());
    for (size_t k = 0; k < d.ids.size(); ++k) EXPECT_EQ(d.trained[k], k < code || k >= code + out) << k;
  }
  EXPECT_NEAR(double(calls) / n, 0.3, 0.03);
  // the held-out set is disjoint and the same for every seed, as for addition
  data::ArithmeticTask t2(c, 6, tool);
  for (int i = 0; i < 200; ++i) {
    auto p = t.heldout_problem(i);
    EXPECT_TRUE(t.is_heldout(p.a, p.b));
    EXPECT_EQ(p.question, t2.heldout_problem(i).question);
    EXPECT_EQ(p.answer, std::to_string(p.a * p.b));
  }
}

TEST(ArithmeticTask, EachTaskHasItsTokenizer) {
  data::ArithmeticConfig add;
  auto a = data::task_tokenizer(add);
  EXPECT_EQ(a->vocab_size(), 2 + 4 + 13);  // pad, eos, the R1 tags, "0123456789+=,"
  EXPECT_THROW(a->encode("12*3="), Error);  // '*' is not addition's
  data::ArithmeticConfig mul;
  mul.name = "multiplication";
  auto m = data::task_tokenizer(mul);
  EXPECT_EQ(m->vocab_size(), 2 + 8 + 96);  // + code/output tags; printable ASCII and newline
  // whatever a tool prints is encodable: a traceback verbatim, other bytes as '?'
  const std::string tb = "Traceback (most recent call last):\n  File \"main.py\", line 1\nSyntaxError: '(' was never closed";
  EXPECT_EQ(m->decode(m->encode(tb)), tb);
  EXPECT_EQ(m->decode(m->encode("caf\xc3\xa9 <code>")), "caf?? <code>");
  EXPECT_EQ(m->encode("<output>").size(), 1u);
}
