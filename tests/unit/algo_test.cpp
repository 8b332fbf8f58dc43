// GRPO math against hand-worked values and closed forms computed here in float64.
#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <torch/csrc/autograd/autograd.h>

#include "grpo/algo/grpo_loss.h"
#include "grpo/core/error.h"

using namespace grpo::algo;

TEST(Advantages, HandWorkedGroup) {
  // group {1, 0, 0, 1}: mean 0.5, sample std sqrt(1/3) -> A = +-0.5 / (0.57735 + 1e-4)
  auto r = at::tensor({1.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 3.0}, at::kDouble);
  auto a = group_advantages(r, 4);
  double s1 = std::sqrt(1.0 / 3.0);
  double expect1 = 0.5 / (s1 + 1e-4);
  // group {0,0,0,3}: mean 0.75, sample std = sqrt((3*0.5625 + 5.0625)/3) = 1.5
  double expect2 = 2.25 / (1.5 + 1e-4), expect2n = -0.75 / (1.5 + 1e-4);
  std::vector<double> want{expect1, -expect1, -expect1, expect1, expect2n, expect2n, expect2n, expect2};
  for (int i = 0; i < 8; ++i) EXPECT_NEAR(a.values[i].item<double>(), want[i], 1e-6) << i;
  EXPECT_EQ(a.zero_std_groups, 0);
}

TEST(Advantages, PopulationStdAndNoStd) {
  auto r = at::tensor({2.0, 0.0}, at::kDouble);
  AdvantageOptions pop;
  pop.unbiased_std = false;
  pop.eps = 0.0 + 1e-6;
  EXPECT_NEAR(group_advantages(r, 2, pop).values[0].item<double>(), 1.0 / (1.0 + 1e-6), 1e-6);
  AdvantageOptions dr;
  dr.scale_by_std = false;
  EXPECT_NEAR(group_advantages(r, 2, dr).values[0].item<double>(), 1.0, 1e-7);
}

TEST(Advantages, AllEqualRewardsGiveExactlyZeroNoNaN) {
  auto r = at::tensor({0.7, 0.7, 0.7, 1.0, 1.0, 1.0}, at::kDouble);
  auto a = group_advantages(r, 3);
  EXPECT_EQ(a.values.abs().max().item<double>(), 0.0);
  EXPECT_FALSE(a.values.isnan().any().item<bool>());
  EXPECT_EQ(a.zero_std_groups, 2);
  auto single = group_advantages(at::tensor({5.0, -1.0}, at::kDouble), 1);  // groups of one
  EXPECT_EQ(single.values.abs().max().item<double>(), 0.0);
  EXPECT_EQ(single.zero_std_groups, 2);
}

TEST(Kl, K3MatchesFormulaAndIsNonNegative) {
  auto logp = at::tensor({-1.0, -0.2, -3.0, -0.5}, at::kDouble);
  auto ref = at::tensor({-1.0, -0.9, -0.1, -2.5}, at::kDouble);
  auto k = kl_k3(logp, ref);
  for (int i = 0; i < 4; ++i) {
    double d = ref[i].item<double>() - logp[i].item<double>();
    EXPECT_NEAR(k[i].item<double>(), std::exp(d) - d - 1.0, 1e-12);
    EXPECT_GE(k[i].item<double>(), 0.0);
  }
  EXPECT_EQ(k[0].item<double>(), 0.0);
}

TEST(PolicyLoss, ClippedValuesAndGradientsMatchClosedForm) {
  // one token per case; ratio = exp(logp - old); eps_low 0.2, eps_high 0.28
  struct Case { double ratio, adv; };
  std::vector<Case> cases{{1.1, 1.0}, {1.5, 1.0}, {0.5, 1.0}, {0.5, -1.0}, {1.5, -1.0}, {0.9, -2.0}, {1.25, 2.0}};
  const double lo = 0.2, hi = 0.28;
  for (auto c : cases) {
    auto old = at::tensor({-1.0}, at::kDouble).view({1, 1});
    auto logp = (old + std::log(c.ratio)).detach().requires_grad_();
    auto adv = at::tensor({c.adv}, at::kDouble);
    auto mask = at::ones({1, 1}, at::kDouble);
    PolicyLossOptions o;
    o.clip_eps_low = lo;
    o.clip_eps_high = hi;
    auto out = policy_loss(logp, old, {}, adv, mask, mask, o);
    double clipped = std::min(std::max(c.ratio, 1 - lo), 1 + hi);
    double unclipped_term = c.ratio * c.adv, clipped_term = clipped * c.adv;
    double want = -std::min(unclipped_term, clipped_term);
    EXPECT_NEAR(out.loss.item<double>(), want, 1e-12) << c.ratio << " " << c.adv;
    // d/dlogp: -A * ratio when the unclipped term is the minimum (and not equal), else 0
    double want_grad = unclipped_term <= clipped_term ? -c.adv * c.ratio : 0.0;
    auto g = torch::autograd::grad({out.loss}, {logp})[0];
    EXPECT_NEAR(g.item<double>(), want_grad, 1e-12) << c.ratio << " " << c.adv;
    bool low = c.ratio < 1 - lo && c.adv < 0, high = c.ratio > 1 + hi && c.adv > 0;
    EXPECT_EQ(out.clip_low_fraction, low ? 1.0 : 0.0);
    EXPECT_EQ(out.clip_high_fraction, high ? 1.0 : 0.0);
  }
}

TEST(PolicyLoss, KlTermAndItsGradient) {
  auto old = at::tensor({-1.0, -2.0}, at::kDouble).view({1, 2});
  auto logp = old.clone().requires_grad_();  // ratio 1: surrogate gradient = -A
  auto ref = at::tensor({-1.5, -1.0}, at::kDouble).view({1, 2});
  auto adv = at::tensor({0.5}, at::kDouble);
  auto mask = at::ones({1, 2}, at::kDouble);
  auto w = aggregation_weights(mask, LossAggregation::kSeqMeanTokenMean).to(at::kDouble);
  PolicyLossOptions o;
  o.kl_coef = 0.1;
  auto out = policy_loss(logp, old, ref, adv, mask, w, o);
  double want = 0, g0 = 0;
  std::vector<double> lp{-1.0, -2.0}, rf{-1.5, -1.0};
  std::vector<double> grads;
  for (int t = 0; t < 2; ++t) {
    double d = rf[t] - lp[t];
    want += 0.5 * (-0.5 + 0.1 * (std::exp(d) - d - 1));
    // d/dlogp of k3 = -exp(d) + 1
    grads.push_back(0.5 * (-0.5 + 0.1 * (1 - std::exp(d))));
  }
  (void)g0;
  EXPECT_NEAR(out.loss.item<double>(), want, 1e-12);
  auto g = torch::autograd::grad({out.loss}, {logp})[0];
  EXPECT_NEAR(g[0][0].item<double>(), grads[0], 1e-12);
  EXPECT_NEAR(g[0][1].item<double>(), grads[1], 1e-12);
  EXPECT_GT(out.kl_mean, 0.0);
}

TEST(PolicyLoss, AggregationWeights) {
  // rows with 2 and 4 response tokens (rest padding)
  auto mask = at::tensor({1.0, 1.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0}, at::kFloat).view({2, 4});
  auto seq = aggregation_weights(mask, LossAggregation::kSeqMeanTokenMean);
  EXPECT_FLOAT_EQ(seq[0][0].item<float>(), 0.25f);   // 1 / (2 tokens * 2 sequences)
  EXPECT_FLOAT_EQ(seq[1][0].item<float>(), 0.125f);  // 1 / (4 * 2)
  EXPECT_FLOAT_EQ(seq[0][3].item<float>(), 0.0f);
  auto tok = aggregation_weights(mask, LossAggregation::kTokenMean);
  EXPECT_FLOAT_EQ(tok[0][0].item<float>(), 1.0f / 6);
  EXPECT_FLOAT_EQ(tok.sum().item<float>(), 1.0f);
  EXPECT_FLOAT_EQ(seq.sum().item<float>(), 1.0f);
  EXPECT_THROW(parse_loss_aggregation("mean"), grpo::Error);
}
