// GRPO math against hand-worked values and closed forms computed here in float64.
#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <torch/csrc/autograd/autograd.h>

#include <fstream>
#include <set>

#include <nlohmann/json.hpp>

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
  dr.mode = AdvantageMode::kNoStd;
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
    auto out = policy_loss({logp, old, {}, adv, mask, mask}, o);
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
  auto out = policy_loss({logp, old, ref, adv, mask, w}, o);
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

// ---- modes TRL lacks, against closed forms computed here in float64

TEST(Advantages, RlooIsLeaveOneOutMean) {
  std::vector<double> r{1.0, 0.0, 0.5, 0.0, 2.0, 2.0, 2.0, 2.0};
  AdvantageOptions o;
  o.mode = AdvantageMode::kRloo;
  auto a = group_advantages(at::tensor(r, at::kDouble), 4, o);
  for (int g = 0; g < 2; ++g)
    for (int i = 0; i < 4; ++i) {
      double others = 0;
      for (int j = 0; j < 4; ++j)
        if (j != i) others += r[g * 4 + j];
      EXPECT_NEAR(a.values[g * 4 + i].item<double>(), r[g * 4 + i] - others / 3.0, 1e-6) << g << " " << i;
    }
  EXPECT_EQ(a.zero_std_groups, 1);
  EXPECT_EQ(a.values.narrow(0, 4, 4).abs().max().item<double>(), 0.0);
}

TEST(Advantages, BatchStdCentersPerGroupAndScalesByTheBatch) {
  std::vector<double> r{1.0, 0.0, 3.0, 1.0, 0.0, 0.0};
  AdvantageOptions o;
  o.mode = AdvantageMode::kBatchStd;
  auto a = group_advantages(at::tensor(r, at::kDouble), 3, o);
  double mean = 0, var = 0;
  for (double x : r) mean += x / 6;
  for (double x : r) var += (x - mean) * (x - mean) / 5;  // sample std of the whole batch
  const double sd = std::sqrt(var);
  std::vector<double> gm{4.0 / 3, 1.0 / 3};
  for (int i = 0; i < 6; ++i) EXPECT_NEAR(a.values[i].item<double>(), (r[i] - gm[i / 3]) / (sd + 1e-4), 1e-6) << i;
  EXPECT_THROW(parse_advantage_mode("gae"), grpo::Error);
}

TEST(Kl, K1AndK2MatchTheirFormulas) {
  auto logp = at::tensor({-1.0, -0.2, -3.0}, at::kDouble);
  auto ref = at::tensor({-1.5, -0.9, -0.1}, at::kDouble);
  auto k1 = kl_estimate(logp, ref, KlEstimator::kK1), k2 = kl_estimate(logp, ref, KlEstimator::kK2);
  for (int i = 0; i < 3; ++i) {
    double d = logp[i].item<double>() - ref[i].item<double>();
    EXPECT_NEAR(k1[i].item<double>(), d, 1e-15);
    EXPECT_NEAR(k2[i].item<double>(), 0.5 * d * d, 1e-15);
  }
  EXPECT_THROW(parse_kl_estimator("k4"), grpo::Error);
}

TEST(Kl, InRewardSubtractsTheSequenceSumOfMaskedTokens) {
  auto logp = at::tensor({-1.0, -2.0, -0.5, -0.1, -0.2, -9.0}, at::kDouble).view({2, 3});
  auto ref = at::tensor({-1.2, -1.0, -0.5, -0.4, -0.2, -1.0}, at::kDouble).view({2, 3});
  auto mask = at::tensor({1.0, 1.0, 1.0, 1.0, 1.0, 0.0}, at::kDouble).view({2, 3});
  auto pen = kl_reward_penalty(logp, ref, mask, 0.1, KlEstimator::kK1);
  EXPECT_NEAR(pen[0].item<double>(), 0.1 * ((-1.0 + 1.2) + (-2.0 + 1.0) + 0.0), 1e-15);
  EXPECT_NEAR(pen[1].item<double>(), 0.1 * ((-0.1 + 0.4) + 0.0), 1e-15);  // the padded token is out
}

TEST(PolicyLoss, DualClipBoundsNegativeAdvantageLoss) {
  // A = -1, ratio 5: the clipped surrogate gives max(5, 0.8) = 5; the dual clip (c = 3) caps it at 3
  // with zero gradient; ratio 2 stays at 2 with gradient -A * ratio = 2.
  const double c = 3.0;
  for (auto [ratio, adv] : std::vector<std::pair<double, double>>{{5.0, -1.0}, {2.0, -1.0}, {5.0, 1.0}, {0.5, -2.0}}) {
    auto old = at::tensor({-1.0}, at::kDouble).view({1, 1});
    auto logp = (old + std::log(ratio)).detach().requires_grad_();
    auto mask = at::ones({1, 1}, at::kDouble);
    PolicyLossOptions o;
    o.dual_clip = c;
    auto out = policy_loss({logp, old, {}, at::tensor({adv}, at::kDouble), mask, mask}, o);
    double clipped = std::min(std::max(ratio, 0.8), 1.2);
    double l = std::max(-ratio * adv, -clipped * adv);
    bool bounded = adv < 0 && l > -c * adv;
    double want = bounded ? -c * adv : l;
    double want_grad = bounded ? 0.0 : (-ratio * adv >= -clipped * adv ? -adv * ratio : 0.0);
    EXPECT_NEAR(out.loss.item<double>(), want, 1e-12) << ratio << " " << adv;
    EXPECT_NEAR(torch::autograd::grad({out.loss}, {logp})[0].item<double>(), want_grad, 1e-12) << ratio << " " << adv;
    EXPECT_EQ(out.dual_clip_fraction, bounded ? 1.0 : 0.0);
  }
}

TEST(PolicyLoss, K1AndK2InTheLossAndTheirGradients) {
  auto old = at::tensor({-1.0, -2.0}, at::kDouble).view({1, 2});
  auto ref = at::tensor({-1.5, -1.0}, at::kDouble).view({1, 2});
  auto mask = at::ones({1, 2}, at::kDouble);
  auto w = aggregation_weights(mask, LossAggregation::kTokenMean).to(at::kDouble);
  for (auto est : {KlEstimator::kK1, KlEstimator::kK2}) {
    auto logp = old.clone().requires_grad_();  // ratio 1: surrogate -A, gradient -A
    PolicyLossOptions o;
    o.kl_coef = 0.2;
    o.kl_estimator = est;
    auto out = policy_loss({logp, old, ref, at::tensor({0.5}, at::kDouble), mask, w}, o);
    double want = 0;
    std::vector<double> lp{-1.0, -2.0}, rf{-1.5, -1.0}, grads;
    for (int t = 0; t < 2; ++t) {
      double d = lp[t] - rf[t];
      want += 0.5 * (-0.5 + 0.2 * (est == KlEstimator::kK1 ? d : 0.5 * d * d));
      grads.push_back(0.5 * (-0.5 + 0.2 * (est == KlEstimator::kK1 ? 1.0 : d)));
    }
    EXPECT_NEAR(out.loss.item<double>(), want, 1e-12);
    auto g = torch::autograd::grad({out.loss}, {logp})[0];
    EXPECT_NEAR(g[0][0].item<double>(), grads[0], 1e-12);
    EXPECT_NEAR(g[0][1].item<double>(), grads[1], 1e-12);
  }
}

TEST(PolicyLoss, DrGrpoNormalisesByTheLengthLimit) {
  auto mask = at::tensor({1.0, 1.0, 0.0, 1.0, 1.0, 1.0}, at::kDouble).view({2, 3});
  auto w = aggregation_weights(mask, LossAggregation::kSeqMeanTokenSumNorm, 10);
  EXPECT_DOUBLE_EQ(w[0][0].item<double>(), 1.0 / (2 * 10));
  EXPECT_DOUBLE_EQ(w[0][2].item<double>(), 0.0);
  EXPECT_THROW(aggregation_weights(mask, LossAggregation::kSeqMeanTokenSumNorm), grpo::Error);
}

// ---- against TRL 1.16.0's own GRPOTrainer._compute_loss (tests/fixtures/loss/trl_cases.json,
// made by tools/make_loss_fixtures.py): loss and gradients w.r.t. log-probs and entropies, fp64.
namespace {
at::Tensor tensor_of(const nlohmann::json& j) {
  std::vector<double> flat;
  int64_t rows = 0, cols = 0;
  if (j.is_array() && !j.empty() && j[0].is_array()) {
    rows = int64_t(j.size());
    cols = int64_t(j[0].size());
    for (auto& r : j)
      for (auto& v : r) flat.push_back(v.get<double>());
    return at::tensor(flat, at::kDouble).view({rows, cols});
  }
  for (auto& v : j) flat.push_back(v.get<double>());
  return at::tensor(flat, at::kDouble);
}
}  // namespace

TEST(PolicyLoss, MatchesTrlLossAndGradients) {
  std::ifstream in(std::string(GRPO_SOURCE_DIR) + "/tests/fixtures/loss/trl_cases.json");
  ASSERT_TRUE(in.good());
  auto fx = nlohmann::json::parse(in);
  ASSERT_EQ(fx["trl"], "1.16.0");
  std::set<std::string> seen;
  for (auto& c : fx["cases"]) {
    const std::string name = c["name"], type = c["loss_type"];
    seen.insert(name);
    auto logp = tensor_of(c["logp"]).requires_grad_();
    auto entropy = tensor_of(c["entropy"]).requires_grad_();
    auto mask = tensor_of(c["mask"]);
    PolicyLossOptions o;
    o.clip_eps_low = c["epsilon_low"];
    o.clip_eps_high = c["epsilon_high"];
    o.sequence_ratio = c["importance_sampling_level"] == "sequence";
    o.kl_coef = c["beta"];
    o.kl_estimator = KlEstimator::kK3;
    if (!c["delta"].is_null()) o.ratio_cap = c["delta"];
    o.entropy_coef = c["entropy_coef"];
    o.kl_ratio_weighted = c["use_bias_correction_kl"];
    if (type == "cispo") o.objective = PolicyObjective::kCispo, o.cispo_max = c["epsilon_high"];
    if (type == "sapo") {
      o.objective = PolicyObjective::kSapo;
      o.sapo_tau_pos = c["sapo"]["sapo_temperature_pos"];
      o.sapo_tau_neg = c["sapo"]["sapo_temperature_neg"];
    }
    if (type == "vespo") {
      o.objective = PolicyObjective::kVespo;
      o.vespo_k_pos = c["vespo"]["vespo_k_pos"];
      o.vespo_lambda_pos = c["vespo"]["vespo_lambda_pos"];
      o.vespo_k_neg = c["vespo"]["vespo_k_neg"];
      o.vespo_lambda_neg = c["vespo"]["vespo_lambda_neg"];
    }
    const auto agg = type == "grpo" || type == "sapo" ? LossAggregation::kSeqMeanTokenMean
                     : type == "dr_grpo"             ? LossAggregation::kSeqMeanTokenSumNorm
                     : type == "luspo"               ? LossAggregation::kSeqMeanTokenSum
                                                     : LossAggregation::kTokenMean;  // bnpo, dapo, cispo, vespo
    ASSERT_TRUE(std::set<std::string>({"grpo", "dr_grpo", "bnpo", "dapo", "cispo", "sapo", "vespo", "luspo"})
                    .count(type)) << type;
    PolicyLossInputs li;
    li.logp = logp;
    li.old_logp = tensor_of(c["old_logp"]);
    if (o.kl_coef != 0) li.ref_logp = tensor_of(c["ref_logp"]);
    li.advantages = tensor_of(c["advantages"]);
    li.mask = mask;
    li.weights = aggregation_weights(mask, agg, c["max_completion_length"].get<int64_t>());
    li.entropy = entropy;
    li.entropy_weights = aggregation_weights(mask, LossAggregation::kTokenMean);
    if (!c["is_mode"].is_null()) {  // TRL's importance_sampling_ratio from our off_policy_weights
      const std::string mode = c["is_mode"];
      OffPolicyOptions op;
      op.mode = name == "dapo_icepop" ? OffPolicyCorrection::kIcepop
                : mode.find("truncate") != std::string::npos ? OffPolicyCorrection::kTis
                                                             : OffPolicyCorrection::kMis;
      op.sequence = mode.rfind("sequence", 0) == 0;
      if (op.mode != OffPolicyCorrection::kIcepop) {  // icepop: its own default bounds, which are TRL's here
        if (!c["is_min"].is_null()) op.is_min = c["is_min"];
        op.is_max = c["is_max"];
      }
      auto w = off_policy_weights(li.old_logp, tensor_of(c["sampling_logp"]), mask, op);
      auto ref = tensor_of(c["importance_sampling_ratio"]);
      EXPECT_LE((w.weights - ref).abs().max().item<double>(), 1e-12 * (1 + ref.abs().max().item<double>()))
          << name << ": IS weights";
      li.is_weights = w.weights;
    }
    if (!c["opsm"].is_null()) {
      o.off_policy_mask = c["opsm"];
      li.behaviour_logp = tensor_of(c["sampling_logp"]);
    }
    auto out = policy_loss(li, o);
    const double want = c["loss"];
    EXPECT_NEAR(out.loss.item<double>(), want, 1e-7 + 1e-6 * std::fabs(want)) << name;
    auto grads = torch::autograd::grad({out.loss}, {logp, entropy}, {}, false, false, /*allow_unused=*/true);
    auto check = [&](const at::Tensor& got, const nlohmann::json& ref, const char* what) {
      auto r = tensor_of(ref);
      auto g = got.defined() ? got : at::zeros_like(r);
      auto bad = ((g - r).abs() > 1e-7 + 1e-6 * r.abs()).sum().item<int64_t>();
      EXPECT_EQ(bad, 0) << name << " " << what << ": max |diff| " << (g - r).abs().max().item<double>();
    };
    check(grads[0], c["grad_logp"], "d loss / d logp");
    check(grads[1], c["grad_entropy"], "d loss / d entropy");
  }
  for (const char* must : {"grpo", "grpo_clip_higher", "grpo_kl", "bnpo", "dr_grpo", "dapo", "dapo_kl", "gspo",
                           "gspo_dapo", "grpo_delta", "grpo_entropy", "cispo", "sapo", "vespo", "luspo",
                           "grpo_kl_ratio", "dapo_tis_token", "dapo_tis_sequence", "grpo_mis_token",
                           "grpo_mis_sequence", "dapo_icepop", "vespo_mis_token", "dapo_opsm"})
    EXPECT_TRUE(seen.count(must)) << must;
}

// ---- off-policy corrections against their closed forms (float64)
TEST(OffPolicyWeights, TruncatedMaskedAndIcepopFollowTheirDefinitions) {
  // rho = pi_old / pi_b per token: row 0: 3, 0.25, 1.2, (padding); row 1: 0.4, 6, 1, 1.5
  auto b = at::rand({2, 4}, at::kDouble) * -3.0;  // any behaviour log-probs
  auto r = at::tensor(std::vector<double>{3.0, 0.25, 1.2, 1.0, 0.4, 6.0, 1.0, 1.5}, at::kDouble).view({2, 4});
  auto old = b + at::log(r);
  old[0][3] = 123.0;  // padding: never read
  auto mask = at::tensor(std::vector<double>{1, 1, 1, 0, 1, 1, 1, 1}, at::kDouble).view({2, 4});
  auto check = [&](const OffPolicyOptions& o, const std::vector<std::vector<double>>& want, const char* what) {
    auto w = off_policy_weights(old, b, mask, o);
    for (int i = 0; i < 2; ++i)
      for (int j = 0; j < 4; ++j)
        if (mask[i][j].item<double>() > 0)
          EXPECT_NEAR(w.weights[i][j].item<double>(), want[i][j], 1e-12) << what << " [" << i << "," << j << "]";
    return w;
  };
  OffPolicyOptions o;
  o.mode = OffPolicyCorrection::kNone;
  check(o, {{1, 1, 1, 1}, {1, 1, 1, 1}}, "none");
  o.mode = OffPolicyCorrection::kTis;  // min(rho, 2) (verl's default threshold), no lower bound
  check(o, {{2.0, 0.25, 1.2, 0}, {0.4, 2.0, 1.0, 1.5}}, "tis token");
  o.is_min = 0.5;  // clamp(rho, 0.5, 2)
  check(o, {{2.0, 0.5, 1.2, 0}, {0.5, 2.0, 1.0, 1.5}}, "tis token [0.5, 2]");
  o.mode = OffPolicyCorrection::kMis;  // rho inside [0.5, 2], else 0
  auto m = check(o, {{0.0, 0.0, 1.2, 0}, {0.0, 0.0, 1.0, 1.5}}, "mis token");
  EXPECT_DOUBLE_EQ(m.masked, 4.0);
  EXPECT_DOUBLE_EQ(m.tokens, 7.0);
  o = OffPolicyOptions{};
  o.mode = OffPolicyCorrection::kIcepop;  // IcePop: token-level, rho inside [0.5, 5]
  o.sequence = true;                      // (ignored: IcePop is token-level)
  auto ice = check(o, {{3.0, 0.0, 1.2, 0}, {0.0, 0.0, 1.0, 1.5}}, "icepop");
  EXPECT_DOUBLE_EQ(ice.masked, 3.0);
  // sequence level: rho_seq = prod over the row's tokens: row 0: 3 * 0.25 * 1.2 = 0.9, row 1: 3.6
  o = OffPolicyOptions{};
  o.mode = OffPolicyCorrection::kTis;
  o.sequence = true;
  check(o, {{0.9, 0.9, 0.9, 0.9}, {2.0, 2.0, 2.0, 2.0}}, "tis sequence");
  o.mode = OffPolicyCorrection::kMis;
  o.is_max = 4.0;
  check(o, {{0.9, 0.9, 0.9, 0.9}, {3.6, 3.6, 3.6, 3.6}}, "mis sequence [0, 4]");
  o.is_min = 1.0;
  auto ms = check(o, {{0, 0, 0, 0}, {3.6, 3.6, 3.6, 3.6}}, "mis sequence [1, 4]");
  EXPECT_DOUBLE_EQ(ms.masked, 3.0);
  EXPECT_NEAR(ms.weight_sum, 4 * 3.6, 1e-12);
  EXPECT_NEAR(ms.weight_max, 3.6, 1e-12);
  o.is_min = 5.0;
  EXPECT_THROW(off_policy_weights(old, b, mask, o), grpo::Error);  // is_min above is_max
}
