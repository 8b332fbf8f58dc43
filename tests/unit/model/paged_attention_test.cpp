// Paged decode attention on the CPU against the formula, per sequence and head in float64: GQA and
// MLA's keys [k | r] with values k. float64 runs the LibTorch reference (the GPU kernel's oracle),
// fp32 the CPU kernel (paged_attention_cpu.cpp), with head sizes that leave vector-loop tails.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include "../../src/model/paged_attention.h"

TEST(PagedDecodeAttention, ReferenceAndCpuKernelAreSoftmaxOverEachSequencesBlocks) {
  at::manual_seed(3);
  for (bool fp32 : {false, true})
  for (bool mla : {false, true}) {
    const int64_t KV = mla ? 1 : 2, g = mla ? 4 : 3, H = KV * g, bs = 3;
    const int64_t dk = fp32 ? (mla ? 40 : 36) : (mla ? 8 : 4), dr = mla ? (fp32 ? 20 : 2) : 0;
    const std::vector<int64_t> lengths = {5, 0, 1, 7};
    const int64_t B = int64_t(lengths.size()), slots = 10 * bs;
    auto q = at::randn({B, H, dk + dr}, at::kDouble);
    auto k = at::randn({slots, KV, dk}, at::kDouble);
    auto r = mla ? at::randn({slots, KV, dr}, at::kDouble) : at::Tensor();
    auto v = mla ? k : at::randn({slots, KV, dk}, at::kDouble);
    // blocks out of order: sequence b's block j is table[b][j]
    auto table = at::tensor(std::vector<int32_t>{4, 2, 0, 1, 0, 0, 9, 0, 0, 3, 7, 5}, at::kInt).view({B, 3});
    auto lens = at::tensor(lengths, at::kLong).to(at::kInt);
    const double scale = 0.7;
    auto f = [&](const at::Tensor& x) { return fp32 && x.defined() ? x.to(at::kFloat) : x; };
    auto kf = f(k);
    auto out = grpo::model::detail::paged_decode_attention(f(q), kf, f(r), mla ? kf : f(v), table, lens, bs, scale)
                   .to(at::kDouble);
    ASSERT_EQ(out.sizes(), (std::vector<int64_t>{B, H, dk}));
    for (int64_t b = 0; b < B; ++b)
      for (int64_t h = 0; h < H; ++h) {
        const int64_t kvh = h / g, L = lengths[size_t(b)];
        if (L == 0) {
          EXPECT_EQ(out[b][h].abs().max().item<double>(), 0.0);
          continue;
        }
        std::vector<double> s(static_cast<size_t>(L), 0.0);
        double mx = -1e300;
        for (int64_t j = 0; j < L; ++j) {
          const int64_t slot = table[b][j / bs].item<int64_t>() * bs + j % bs;
          double dot = (q[b][h].narrow(0, 0, dk) * k[slot][kvh]).sum().item<double>();
          if (mla) dot += (q[b][h].narrow(0, dk, dr) * r[slot][kvh]).sum().item<double>();
          s[size_t(j)] = dot * scale;
          mx = std::max(mx, s[size_t(j)]);
        }
        auto expect = at::zeros({dk}, at::kDouble);
        double z = 0;
        for (int64_t j = 0; j < L; ++j) {
          const int64_t slot = table[b][j / bs].item<int64_t>() * bs + j % bs;
          const double p = std::exp(s[size_t(j)] - mx);
          z += p;
          expect += p * v[slot][kvh];
        }
        expect /= z;
        EXPECT_LT((out[b][h] - expect).abs().max().item<double>(), fp32 ? 2e-5 : 1e-12)
            << "b " << b << " h " << h << " mla " << mla << " fp32 " << fp32;
      }
  }
}
