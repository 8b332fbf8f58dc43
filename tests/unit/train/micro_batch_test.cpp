// Micro-batch packing: rows sorted by length, packed within the token budget.
#include <algorithm>
#include <limits>
#include <vector>

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include "grpo/core/error.h"
#include "grpo/core/rng.h"
#include "grpo/model/transformer.h"
#include "grpo/rollout/generate.h"
#include "grpo/train/micro_batch.h"
#include "../test_util.h"

using namespace grpo;
using grpo::test_util::error_of;

TEST(MicroBatch, PacksRowsSortedByLengthWithinTheTokenBudget) {
  // lengths (prompt + response): row 0: 3 + 2, row 1: 3 + 9, row 2: 2 + 1, row 3: 3 + 2
  const std::vector<int64_t> p{3, 3, 2, 3}, r{2, 9, 1, 2};
  // longest first; row 0 cannot join row 1 (2 x 12 > 20); rows 0, 3 (ties in order) and 2 share
  // one micro-batch of 3 x (3 + 2) = 15 tokens
  EXPECT_EQ(train::pack_micro_batches({0, 1, 2, 3}, p, r, 20),
            (std::vector<std::vector<int64_t>>{{1}, {0, 3, 2}}));
  // the budget counts rows x the longest row (rows are packed to the left): 2 x (6 + 1) = 14
  EXPECT_EQ(train::pack_micro_batches({2, 1}, {3, 6, 1}, {9, 1, 5}, 14), (std::vector<std::vector<int64_t>>{{1, 2}}));
  EXPECT_EQ(train::pack_micro_batches({2, 1}, {3, 6, 1}, {9, 1, 5}, 13), (std::vector<std::vector<int64_t>>{{1}, {2}}));
  // a row longer than the budget goes alone; a subset of the rows, any order
  EXPECT_EQ(train::pack_micro_batches({3, 1}, p, r, 4), (std::vector<std::vector<int64_t>>{{1}, {3}}));
  EXPECT_TRUE(train::pack_micro_batches({}, p, r, 4).empty());
  // random lengths: every row once, lengths non-increasing, budget kept (or a lone row)
  core::KeyedRng rng(42);
  std::vector<int64_t> pl(300), rl(300), rows;
  for (int64_t i = 0; i < 300; ++i) pl[i] = rng.uniform_int(1, 40), rl[i] = rng.uniform_int(1, 200), rows.push_back(i);
  auto mbs = train::pack_micro_batches(rows, pl, rl, 1000);
  std::vector<int64_t> seen;
  int64_t last = std::numeric_limits<int64_t>::max();
  for (auto& mb : mbs) {
    int64_t longest = 0;
    for (auto i : mb) {
      EXPECT_LE(pl[i] + rl[i], last);
      last = pl[i] + rl[i];
      longest = std::max(longest, pl[i] + rl[i]);
      seen.push_back(i);
    }
    EXPECT_TRUE(mb.size() == 1 || int64_t(mb.size()) * longest <= 1000) << mb.size() << " x " << longest;
    EXPECT_TRUE(&mb == &mbs.back() || int64_t(mb.size() + 1) * longest > 1000) << "room for one more row";
  }
  std::sort(seen.begin(), seen.end());
  EXPECT_EQ(seen, rows);
  EXPECT_NE(error_of([&] { train::pack_micro_batches({4}, p, r, 10); }).find("row 4"), std::string::npos);
  EXPECT_NE(error_of([&] { train::pack_micro_batches({0}, p, r, 0); }).find("budget"), std::string::npos);
}

// Routing replay (R3, moe.routing_replay): the rollout records every token's experts in every MoE
// layer; the training forward (response_logprobs, packed rows) uses them. In float64: the
// recorded experts are those a plain forward over the finished rows chooses (the capture is
// right); after the routers are perturbed, the forward with replay routes every real token exactly
// as the rollout did while one without replay does not; and the routers still get a gradient.
TEST(RoutingReplay, TheTrainingForwardRoutesAsTheRolloutDidUnderAPerturbedRouter) {
  model::ModelConfig c;
  c.vocab_size = 16, c.hidden_size = 32, c.num_attention_heads = 4, c.intermediate_size = 48;
  c.max_position_embeddings = 64, c.initializer_range = 0.4;
  test_util::make_moe(c);
  c.num_hidden_layers = 3;  // two MoE layers
  at::manual_seed(7);
  model::Transformer m(c);
  for (auto& p : m.parameters()) p.set_data(p.data().to(at::kDouble));
  rollout::GenerateRequest req;
  req.prompts = {{3, 4, 5}, {6}, {7, 8, 9, 10, 11, 12}};
  req.prompt_keys = {1, 2, 3};
  req.group_size = 3;
  req.sampling.max_new_tokens = 9;
  req.sampling.temperature = 1.0;
  req.sampling.max_running = 4;  // prefix sharing, forks and rows at different steps
  req.key = {5, 1, 0};
  req.eos_id = 1;
  req.record_routing = true;
  const auto batch = rollout::generate(m, req);
  ASSERT_TRUE(batch.routing.defined());
  const int64_t N = batch.rows(), L = 2, k = c.num_experts_per_tok;
  ASSERT_EQ(batch.routing.sizes(), (std::vector<int64_t>{N, batch.tokens.size(1), L, k}));
  const auto s = train::ResponseBatch::of(batch);
  auto without = s;
  without.routing = at::Tensor();
  const auto rows = at::arange(N, at::kLong);
  // the packed layout's routing of the latest forward, as [row][column of s.tokens] -> experts
  auto routed_as = [&](int64_t layer_index, int64_t row, int64_t col) {
    int64_t width = 0;
    for (int64_t i = 0; i < N; ++i) width = std::max(width, s.prompt_len[size_t(i)] + s.resp_len[size_t(i)]);
    const int64_t packed = col - (s.P - s.prompt_len[size_t(row)]);
    return m.last_routing(m.moe_layers()[size_t(layer_index)]).indices[row * (width - 1) + packed];
  };
  // every real token but each row's last was routed by the rollout; compare with a plain forward
  auto compare = [&](bool expect_equal, const std::string& what) -> int64_t {
    int64_t tokens = 0, differ = 0;
    for (int64_t row = 0; row < N; ++row) {
      const int64_t first = s.P - s.prompt_len[size_t(row)], last = s.P + s.resp_len[size_t(row)] - 1;
      for (int64_t col = first; col < last; ++col)
        for (int64_t l = 0; l < L; ++l) {
          auto rec = batch.routing[row][col][l].to(at::kLong);
          EXPECT_TRUE(rec.ge(0).all().item<bool>()) << "row " << row << " column " << col;
          auto got = routed_as(l, row, col);
          // the same set of experts (the top-k order may differ between batch shapes)
          const bool same = std::get<0>(got.sort()).equal(std::get<0>(rec.sort()));
          ++tokens, differ += !same;
          if (expect_equal) EXPECT_TRUE(same) << what << ": row " << row << " column " << col << " layer " << l;
        }
      for (int64_t col = 0; col < s.P + s.R; ++col)  // padding and the last token: none recorded
        if (col < first || col >= last) EXPECT_EQ(batch.routing[row][col].lt(0).all().item<bool>(), true);
    }
    EXPECT_GT(tokens, 20);
    return differ;
  };
  train::response_logprobs(m, without, rows, false);
  compare(true, "recorded vs a plain forward");
  {  // perturbed routers
    at::NoGradGuard ng;
    for (auto& [name, p] : m.named_parameters())
      if (name.find("mlp.gate.weight") != std::string::npos) p.add_(at::randn_like(p) * 3.0);
  }
  train::response_logprobs(m, without, rows, false);
  EXPECT_GT(compare(false, "perturbed, no replay"), 0);  // the perturbation changes the routing
  m.train(true);
  auto lp = train::response_logprobs(m, s, rows, false);
  compare(true, "perturbed, replayed");
  lp.logprobs.sum().backward();
  for (auto& [name, p] : m.named_parameters())
    if (name.find("mlp.gate.weight") != std::string::npos) {
      ASSERT_TRUE(p.grad().defined()) << name;
      EXPECT_GT(p.grad().abs().sum().item<double>(), 0.0) << name;
    }
}
