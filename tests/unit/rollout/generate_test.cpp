// The generation engine: samples independent of batch composition, log-probs equal to the
// forward pass, every row reported once when it finishes.
#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <set>

#include "grpo/model/transformer.h"
#include "grpo/rollout/generate.h"
#include "grpo/rollout/sampler.h"

#include <map>

using namespace grpo::rollout;

namespace {
grpo::model::ModelConfig small_model() {
  grpo::model::ModelConfig c;
  c.vocab_size = 12;
  c.hidden_size = 16;
  c.num_hidden_layers = 1;
  c.num_attention_heads = 2;
  c.num_key_value_heads = 1;
  c.intermediate_size = 24;
  c.max_position_embeddings = 32;
  c.initializer_range = 0.5;
  return c;
}
}  // namespace

TEST(Generate, SamplesDoNotDependOnBatchCompositionAndLogprobsMatchForward) {
  at::manual_seed(5);
  grpo::model::Transformer m(small_model());
  GenerateRequest a;
  a.prompts = {{3, 4, 5}, {6, 7}, {8, 9, 10, 11}};
  a.prompt_keys = {10, 20, 30};
  a.group_size = 3;
  a.sampling.max_new_tokens = 8;
  a.key = {7, 1, 2};
  a.eos_id = 1;
  auto full = generate(m, a);
  // the same second prompt alone (different padding, different batch) gives the same samples
  GenerateRequest b = a;
  b.prompts = {{6, 7}};
  b.prompt_keys = {20};
  auto alone = generate(m, b);
  for (int g = 0; g < 3; ++g) EXPECT_EQ(full.responses[3 + g], alone.responses[g]) << g;
  // decoded 4 sequences at a time (rollout.max_running: across groups): the same samples,
  // reported once each
  GenerateRequest chunked = a;
  chunked.sampling.max_running = 4;
  std::set<int64_t> finished;
  chunked.on_finish = [&](int64_t row, const std::vector<int64_t>&) { EXPECT_TRUE(finished.insert(row).second) << row; };
  auto parts = generate(m, chunked);
  EXPECT_EQ(int64_t(finished.size()), full.rows());
  EXPECT_TRUE(parts.tokens.equal(full.tokens));
  EXPECT_TRUE(parts.response_mask.equal(full.response_mask));
  EXPECT_LT((parts.sampling_logprobs - full.sampling_logprobs).abs().max().item<float>(), 1e-5);
  for (int64_t r = 0; r < full.rows(); ++r) EXPECT_EQ(parts.finish[r], full.finish[r]) << r;
  // a different step gives different samples somewhere
  b.key.step = 3;
  auto other = generate(m, b);
  bool differs = false;
  for (int g = 0; g < 3; ++g) differs |= other.responses[g] != alone.responses[g];
  EXPECT_TRUE(differs);
  // sampling log-probs equal the full forward pass over the finished sequences
  auto pos = at::clamp_min(full.attention_mask.to(at::kLong).cumsum(1) - 1, 0);
  at::NoGradGuard ng;
  auto h = m.forward(full.tokens, pos, full.attention_mask);
  auto lp = at::log_softmax(m.logits(h), -1);
  const int64_t P = full.prompt_width;
  for (int64_t r = 0; r < full.rows(); ++r) {
    for (int64_t t = 0; t < full.response_mask.size(1); ++t) {
      if (!full.response_mask[r][t].item<bool>()) continue;
      auto tok = full.tokens[r][P + t].item<int64_t>();
      EXPECT_NEAR(full.sampling_logprobs[r][t].item<float>(), lp[r][P + t - 1][tok].item<float>(), 1e-5);
    }
    EXPECT_EQ(full.finish[r] == FinishReason::kStop,
              static_cast<int64_t>(full.responses[r].size()) < a.sampling.max_new_tokens);
  }
}

TEST(Generate, OnFinishReportsEveryRowOnceWithItsFinalResponse) {
  at::manual_seed(6);
  grpo::model::Transformer m(small_model());
  GenerateRequest a;
  a.prompts = {{3, 4, 5}, {6, 7}};
  a.prompt_keys = {1, 2};
  a.group_size = 4;
  a.sampling.max_new_tokens = 6;
  a.key = {3, 1, 0};
  a.eos_id = 1;
  std::map<int64_t, std::vector<int64_t>> seen;
  std::vector<int64_t> order;
  a.on_finish = [&](int64_t row, const std::vector<int64_t>& r) {
    EXPECT_EQ(seen.count(row), 0u) << "row " << row << " reported twice";
    seen[row] = r;
    order.push_back(row);
  };
  auto out = generate(m, a);
  ASSERT_EQ(int64_t(seen.size()), out.rows());
  bool early = false;
  for (int64_t r = 0; r < out.rows(); ++r) {
    EXPECT_EQ(seen[r], out.responses[r]) << r;
    early |= out.finish[r] == FinishReason::kStop;
  }
  EXPECT_TRUE(early) << "the test wants some rows to stop at EOS (change the seed)";
}
