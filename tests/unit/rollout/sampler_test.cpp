// The sampler: temperature, top-p, top-k and inverse-CDF sampling.
#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <set>

#include "grpo/model/transformer.h"
#include "grpo/rollout/generate.h"
#include "grpo/rollout/sampler.h"

#include <map>

using namespace grpo::rollout;

TEST(Sampler, TemperatureZeroIsArgmax) {
  at::manual_seed(10);
  auto logits = at::randn({6, 11});
  SamplingParams p;
  p.temperature = 0.0;
  auto u = at::rand({6});
  auto s = sample_tokens(logits, u, p);
  EXPECT_TRUE(s.tokens.equal(logits.argmax(-1)));
}

TEST(Sampler, TopPKeepsTheSmallestSetReachingTheMass) {
  // probs 0.5, 0.3, 0.15, 0.05 (after softmax of their logs)
  auto logits = at::log(at::tensor({0.15, 0.5, 0.05, 0.3}, at::kFloat)).view({1, 4});
  SamplingParams p;
  p.top_p = 0.7;  // 0.5 < 0.7 <= 0.8: keep {0.5, 0.3}
  auto d = sampling_distribution(logits, p);
  EXPECT_NEAR(d[0][1].item<float>(), 0.5 / 0.8, 1e-6);
  EXPECT_NEAR(d[0][3].item<float>(), 0.3 / 0.8, 1e-6);
  EXPECT_EQ(d[0][0].item<float>(), 0.0f);
  EXPECT_EQ(d[0][2].item<float>(), 0.0f);
  p.top_p = 0.8;  // exactly reached by two tokens
  d = sampling_distribution(logits, p);
  EXPECT_EQ(d[0][0].item<float>(), 0.0f);
  p.top_p = 0.81;
  d = sampling_distribution(logits, p);
  EXPECT_NEAR(d[0][0].item<float>(), 0.15 / 0.95, 1e-6);
  p.top_p = 0.1;  // the top token always stays
  d = sampling_distribution(logits, p);
  EXPECT_NEAR(d[0][1].item<float>(), 1.0, 1e-6);
}

TEST(Sampler, TopKAndTemperature) {
  auto logits = at::tensor({1.0, 3.0, 2.0, 0.0}, at::kFloat).view({1, 4});
  SamplingParams p;
  p.top_k = 2;
  p.temperature = 2.0;
  auto d = sampling_distribution(logits, p);
  double a = std::exp(1.5), b = std::exp(1.0);
  EXPECT_NEAR(d[0][1].item<float>(), a / (a + b), 1e-6);
  EXPECT_NEAR(d[0][2].item<float>(), b / (a + b), 1e-6);
  EXPECT_EQ(d[0][0].item<float>() + d[0][3].item<float>(), 0.0f);
}

TEST(Sampler, InverseCdfFollowsTheUniforms) {
  auto logits = at::log(at::tensor({0.2, 0.5, 0.3}, at::kFloat)).view({1, 3}).expand({4, 3}).contiguous();
  SamplingParams p;
  auto s = sample_tokens(logits, at::tensor({0.1f, 0.25f, 0.69f, 0.75f}), p);
  std::vector<int64_t> want{0, 1, 1, 2};
  for (int i = 0; i < 4; ++i) EXPECT_EQ(s.tokens[i].item<int64_t>(), want[i]);
  EXPECT_NEAR(s.logprobs[1].item<float>(), std::log(0.5), 1e-6);
}

TEST(Sampler, EmpiricalFrequenciesMatchTopPDistribution) {
  at::manual_seed(11);
  auto logits = at::randn({1, 8}).expand({20000, 8}).contiguous();
  SamplingParams p;
  p.top_p = 0.9;
  p.temperature = 0.8;
  auto s = sample_tokens(logits, at::rand({20000}, at::kDouble).to(at::kFloat), p);
  auto want = sampling_distribution(logits.narrow(0, 0, 1), p)[0];
  auto counts = at::bincount(s.tokens, {}, 8).to(at::kDouble) / 20000.0;
  EXPECT_LT((counts - want.to(at::kDouble)).abs().max().item<double>(), 0.015);
  EXPECT_EQ(at::where(want == 0, counts, at::zeros_like(counts)).sum().item<double>(), 0.0);
}

// The two-level inverse CDF (block sums, then one block's prefix sums) against the float64 one:
// across block edges (1024 columns) and a partial last block, the first index whose cumulative
// mass exceeds u * total, wherever u is not within rounding of a boundary.
TEST(Sampler, InverseCdfAcrossBlocksMatchesFloat64) {
  at::manual_seed(12);
  const int64_t rows = 64, V = 3 * 1024 + 517;
  auto logits = at::randn({rows, V}) * 3;
  auto u = at::rand({rows}, at::kDouble).to(at::kFloat);
  u[0] = 0.0f, u[1] = 0.9999999f;  // the first token; the last (within rounding of the end: not checked)
  SamplingParams p;
  auto s = sample_tokens(logits, u, p);
  auto probs = at::softmax(logits.to(at::kDouble), -1);
  auto cdf = probs.cumsum(-1);
  int64_t checked = 0;
  for (int64_t r = 0; r < rows; ++r) {
    const double target = double(u[r].item<float>()) * cdf[r][V - 1].item<double>();
    auto above = (cdf[r] > target).nonzero();
    const int64_t want = above.size(0) > 0 ? above[0][0].item<int64_t>() : V - 1;
    const double lo = want > 0 ? cdf[r][want - 1].item<double>() : 0.0, hi = cdf[r][want].item<double>();
    if ((want > 0 && target - lo < 1e-5) || hi - target < 1e-5) continue;  // within float rounding of an edge
    ++checked;
    EXPECT_EQ(s.tokens[r].item<int64_t>(), want) << "row " << r << " u " << u[r].item<float>();
    EXPECT_NEAR(s.logprobs[r].item<float>(), std::log(probs[r][want].item<double>()), 1e-4);
  }
  EXPECT_GE(checked, rows - 6);
}
