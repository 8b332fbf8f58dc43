// The chunked log-prob op against a full log-softmax in float64: values, entropies, gradients.
#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <torch/csrc/autograd/autograd.h>

#include "grpo/core/error.h"
#include "grpo/model/logprob.h"
#include "../../src/model/softmax_cpu.h"

using namespace grpo::model;

TEST(TokenLogProbs, MatchesFullLogSoftmaxAndGradients) {
  at::manual_seed(3);
  for (double temp : {1.0, 0.7}) {
    auto h = at::randn({3, 7, 16}, at::kDouble).requires_grad_();
    auto w = at::randn({29, 16}, at::kDouble).requires_grad_();
    auto tgt = at::randint(0, 29, {3, 7}, at::kLong);
    auto gl = at::randn({3, 7}, at::kDouble), ge = at::randn({3, 7}, at::kDouble);
    // reference: full logits in float64, autograd through log_softmax
    auto lp = at::log_softmax(at::matmul(h, w.t()) / temp, -1);
    auto ref_logp = lp.gather(2, tgt.unsqueeze(2)).squeeze(2);
    auto ref_ent = -(lp.exp() * lp).sum(-1);
    auto ref_grads = torch::autograd::grad({(ref_logp * gl).sum() + (ref_ent * ge).sum()}, {h, w});

    // one vocabulary block, blocks that do not divide the 29 columns, one column per block
    for (int64_t vchunk : {int64_t(32768), int64_t(8), int64_t(1)}) {
      auto hf = h.detach().to(at::kFloat).requires_grad_();
      auto wf = w.detach().to(at::kFloat).requires_grad_();
      LogProbOptions o;
      o.chunk_rows = 5;  // chunks that do not divide the 21 rows
      o.chunk_vocab = vchunk;
      o.temperature = temp;
      auto out = token_logprobs(hf, wf, tgt, o);
      // fp32 op vs fp64 reference: rounding error grows with the logits' magnitude
      double tol = 1e-6 * (1.0 + at::matmul(h, w.t()).abs().max().item<double>() / temp);
      EXPECT_LT((out.logprobs.to(at::kDouble) - ref_logp).abs().max().item<double>(), tol) << vchunk;
      EXPECT_LT((out.entropy.to(at::kDouble) - ref_ent).abs().max().item<double>(), tol) << vchunk;
      auto grads = torch::autograd::grad(
          {(out.logprobs * gl.to(at::kFloat)).sum() + (out.entropy * ge.to(at::kFloat)).sum()}, {hf, wf});
      for (int i = 0; i < 2; ++i) {
        double err = (grads[i].to(at::kDouble) - ref_grads[i]).abs().max().item<double>();
        double scale = ref_grads[i].abs().max().item<double>();
        EXPECT_LT(err, 1e-5 * (1 + scale)) << "gradient " << i << " temperature " << temp << " chunk_vocab " << vchunk;
      }
      // the op itself in fp64: equal to the reference to rounding
      auto hd = h.detach().clone().requires_grad_(), wd = w.detach().clone().requires_grad_();
      auto od = token_logprobs(hd, wd, tgt, o);
      EXPECT_LT((od.logprobs - ref_logp).abs().max().item<double>(), 1e-12) << vchunk;
      EXPECT_LT((od.entropy - ref_ent).abs().max().item<double>(), 1e-12) << vchunk;
      auto gd = torch::autograd::grad({(od.logprobs * gl).sum() + (od.entropy * ge).sum()}, {hd, wd});
      for (int i = 0; i < 2; ++i) EXPECT_LT((gd[i] - ref_grads[i]).abs().max().item<double>(), 1e-11) << vchunk;
    }
  }
}

TEST(TokenLogProbs, RejectsOutOfRangeTargets) {
  auto h = at::randn({1, 2, 4});
  auto w = at::randn({5, 4});
  auto tgt = at::tensor({0, 5}, at::kLong).view({1, 2});
  EXPECT_THROW(token_logprobs(h, w, tgt), grpo::Error);
}

// Logits kept for backward (keep_logits_bytes) give the recomputing path's gradients bit for bit:
// the same blocks of the same matmul, read back instead of recomputed, at every block offset
// (blocks that divide neither the rows nor the columns). A budget below the logits' size recomputes.
TEST(TokenLogProbs, KeptLogitsGiveTheRecomputedGradients) {
  at::manual_seed(4);
  auto h = at::randn({3, 7, 16}), w = at::randn({29, 16});
  auto tgt = at::randint(0, 29, {3, 7}, at::kLong);
  auto gl = at::randn({3, 7}), ge = at::randn({3, 7});
  auto run = [&](double keep, double temp) {
    auto hh = h.clone().requires_grad_(), ww = w.clone().requires_grad_();
    LogProbOptions o;
    o.chunk_rows = 5;
    o.chunk_vocab = 8;
    o.temperature = temp;
    o.keep_logits_bytes = keep;
    auto out = token_logprobs(hh, ww, tgt, o);
    auto g = torch::autograd::grad({(out.logprobs * gl).sum() + (out.entropy * ge).sum()}, {hh, ww});
    return std::vector<at::Tensor>{out.logprobs, out.entropy, g[0], g[1]};
  };
  for (double temp : {1.0, 0.7}) {
    auto recomputed = run(0, temp), kept = run(1e9, temp), too_small = run(21 * 29 * 4 - 1, temp);
    for (size_t i = 0; i < 4; ++i) {
      EXPECT_TRUE(kept[i].equal(recomputed[i])) << i << " temperature " << temp;
      EXPECT_TRUE(too_small[i].equal(recomputed[i])) << i;
    }
    // and not trivially: the gradients are not zero
    EXPECT_GT(recomputed[3].abs().max().item<double>(), 0.1);
  }
}

// bf16 operands on the CPU: the logits are fp32 from the exact bf16 values (no bf16 rounding of the
// logits, so the log-probs match float64 on the same values to fp32 rounding), and the gradients are
// those of autograd through a bf16 matmul: dz rounded to bf16, each GEMM's product rounded once, so
// within a few bf16 ulps (2^-8 relative) of float64 gradients on the same values.
TEST(TokenLogProbs, Bf16OperandsGiveFp32LogitsAndBf16RoundedGradients) {
  at::manual_seed(5);
  auto hb = at::randn({2, 9, 32}).to(at::kBFloat16), wb = (at::randn({53, 32}) * 0.5).to(at::kBFloat16);
  auto tgt = at::randint(0, 53, {2, 9}, at::kLong);
  auto gl = at::randn({2, 9}), ge = at::randn({2, 9});
  auto hd = hb.to(at::kDouble).requires_grad_(), wd = wb.to(at::kDouble).requires_grad_();
  auto lp = at::log_softmax(at::matmul(hd, wd.t()), -1);
  auto ref_logp = lp.gather(2, tgt.unsqueeze(2)).squeeze(2);
  auto ref_ent = -(lp.exp() * lp).sum(-1);
  auto ref = torch::autograd::grad({(ref_logp * gl.to(at::kDouble)).sum() + (ref_ent * ge.to(at::kDouble)).sum()},
                                   {hd, wd});
  for (int64_t vchunk : {int64_t(0), int64_t(16)}) {  // one block per row chunk; blocks that split the rows' dz
    for (double keep : {0.0, 1e9}) {
      auto h = hb.clone().requires_grad_(), w = wb.clone().requires_grad_();
      LogProbOptions o;
      o.chunk_rows = 7;
      o.chunk_vocab = vchunk;
      o.keep_logits_bytes = keep;
      auto out = token_logprobs(h, w, tgt, o);
      ASSERT_EQ(out.logprobs.scalar_type(), at::kFloat);
      double tol = 1e-6 * (1.0 + at::matmul(hd, wd.t()).abs().max().item<double>());
      EXPECT_LT((out.logprobs.to(at::kDouble) - ref_logp).abs().max().item<double>(), tol) << vchunk;
      EXPECT_LT((out.entropy.to(at::kDouble) - ref_ent).abs().max().item<double>(), tol) << vchunk;
      auto g = torch::autograd::grad({(out.logprobs * gl).sum() + (out.entropy * ge).sum()}, {h, w});
      for (int i = 0; i < 2; ++i) {
        ASSERT_EQ(g[i].scalar_type(), at::kBFloat16);
        double scale = ref[i].abs().max().item<double>();
        double err = (g[i].to(at::kDouble) - ref[i]).abs().max().item<double>();
        EXPECT_LT(err, scale / 128) << "gradient " << i << " chunk_vocab " << vchunk << " keep " << keep;
        EXPECT_GT(scale, 0.1);
      }
    }
  }
}

// fp32 CPU blocks run fused passes with their own vectorized exp (model/softmax_cpu.cpp): over
// logits spread across +-60 (exp arguments down to -120, below the clamp at -87), block widths
// that leave every remainder of its 16-lane loops, and a temperature, the log-probs, entropies
// and gradients stay within fp32 rounding of float64.
TEST(TokenLogProbs, FusedCpuPassesHoldAcrossAWideLogitRange) {
  at::manual_seed(6);
  auto h = at::randn({1, 11, 8}, at::kDouble) * 6, w = at::randn({97, 8}, at::kDouble);
  auto tgt = at::randint(0, 97, {1, 11}, at::kLong);
  auto gl = at::randn({1, 11}, at::kDouble), ge = at::randn({1, 11}, at::kDouble);
  ASSERT_GT(at::matmul(h, w.t()).abs().max().item<double>(), 40);
  for (double temp : {1.0, 0.6}) {
    auto hd = h.clone().requires_grad_(), wd = w.clone().requires_grad_();
    auto lp = at::log_softmax(at::matmul(hd, wd.t()) / temp, -1);
    auto ref_logp = lp.gather(2, tgt.unsqueeze(2)).squeeze(2);
    auto ref_ent = -(lp.exp() * lp).sum(-1);
    auto ref = torch::autograd::grad({(ref_logp * gl).sum() + (ref_ent * ge).sum()}, {hd, wd});
    for (int64_t vchunk : {int64_t(97), int64_t(33), int64_t(17), int64_t(15)}) {
      auto hf = h.to(at::kFloat).requires_grad_(), wf = w.to(at::kFloat).requires_grad_();
      LogProbOptions o;
      o.chunk_vocab = vchunk;
      o.temperature = temp;
      auto out = token_logprobs(hf, wf, tgt, o);
      double tol = 2e-6 * (1.0 + at::matmul(h, w.t()).abs().max().item<double>() / temp);
      EXPECT_LT((out.logprobs.to(at::kDouble) - ref_logp).abs().max().item<double>(), tol) << vchunk << " " << temp;
      EXPECT_LT((out.entropy.to(at::kDouble) - ref_ent).abs().max().item<double>(), tol) << vchunk << " " << temp;
      auto g = torch::autograd::grad(
          {(out.logprobs * gl.to(at::kFloat)).sum() + (out.entropy * ge.to(at::kFloat)).sum()}, {hf, wf});
      for (int i = 0; i < 2; ++i) {
        double scale = ref[i].abs().max().item<double>();
        EXPECT_LT((g[i].to(at::kDouble) - ref[i]).abs().max().item<double>(), tol * (1 + scale))
            << "gradient " << i << " chunk_vocab " << vchunk << " temperature " << temp;
      }
    }
  }
}

// The fused fold and gradient passes on their own, against float64 on the same fp32 inputs: the
// sums of exponentials to a few fp32 ulps (the exp polynomial is ~1 ulp; an error in one of its
// coefficients shows here long before it shows through a log-prob), over arguments from 0 to -200
// (below -87 the kernel returns e^-87 ~ 1.6e-38: an absolute error of that size is allowed).
TEST(SoftmaxCpu, FoldAndGradientMatchFloat64) {
  const int64_t rows = 3, cols = 203;  // 12 full 16-lane groups and a remainder of 11
  std::vector<float> z(rows * cols);
  for (int64_t i = 0; i < rows; ++i)
    for (int64_t j = 0; j < cols; ++j) z[i * cols + j] = float(-100.0 * j / (cols - 1) + 0.37 * i + 0.001 * (j % 7));
  const std::vector<int64_t> tgt = {5, 202, 1000};  // the last outside this block
  const float inv_t = 2.0f;  // temperature 0.5: scaling is exact, so fused multiply-adds round alike
  std::vector<float> m(rows, -std::numeric_limits<float>::infinity()), s(rows, 0), q(rows, 0), zt(rows, -7);
  grpo::model::cpu::softmax_fold(z.data(), cols, 0, rows, cols, tgt.data(), 0, inv_t, m.data(), s.data(), q.data(),
                                 zt.data());
  std::vector<float> lse(rows), ent(rows), gl = {0.5f, -1.0f, 2.0f}, ge = {0.25f, 0.0f, -1.5f};
  for (int64_t i = 0; i < rows; ++i) {
    // the exp arguments rounded as the kernel rounds them (fp32), the rest in float64
    float M = -std::numeric_limits<float>::infinity();
    for (int64_t j = 0; j < cols; ++j) M = std::max(M, z[i * cols + j] * inv_t);
    double S = 0, Q = 0;
    for (int64_t j = 0; j < cols; ++j) {
      const float za = z[i * cols + j] * inv_t;
      double e = std::exp(double(za - M));
      S += e, Q += e * za;
    }
    EXPECT_EQ(m[i], M) << i;
    EXPECT_NEAR(s[i], S, 4e-7 * S) << i;
    EXPECT_NEAR(q[i], Q, 4e-7 * std::abs(Q) + 1e-6) << i;
    if (tgt[i] < cols) EXPECT_FLOAT_EQ(zt[i], z[i * cols + tgt[i]] * inv_t) << i;
    else EXPECT_EQ(zt[i], -7.0f) << i;
    lse[i] = float(double(M) + std::log(S));
    ent[i] = float(double(M) + std::log(S) - Q / S);
  }
  std::vector<float> dz(rows * cols);
  grpo::model::cpu::softmax_grad(z.data(), cols, 0, rows, cols, tgt.data(), 0, inv_t, lse.data(), ent.data(), gl.data(),
                                 ge.data(), dz.data(), cols);
  for (int64_t i = 0; i < rows; ++i)
    for (int64_t j = 0; j < cols; ++j) {
      const float lpf = z[i * cols + j] * inv_t - lse[i];
      const double p = std::exp(double(lpf));
      // g_logp + g_H (log p + H), as the kernel groups it in fp32 (its rounding is not the exp's)
      const float coef = lpf * ge[i] + (ge[i] * ent[i] + gl[i]);
      double want = -p * coef * inv_t + (j == tgt[i] ? gl[i] * inv_t : 0.0);
      EXPECT_NEAR(dz[i * cols + j], want, 1e-6 * std::abs(want) + 1e-30) << i << " " << j;  // e^-87 floor
    }
}
