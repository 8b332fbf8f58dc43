// GPU tests (CTest label `gpu`): every CUDA kernel against its CPU reference, forward and
// backward, on awkward shapes (1, 19, 989 rows; vocabularies that no block size divides; odd
// widths; non-contiguous views) and every element type the kernels take, by normalized error
// ||gpu - ref|| / ||ref|| with a tolerance per dtype; integer outputs (routing) must match exactly.
// The reference is the same grpo op on CPU tensors in float64. Without a GPU (CI), each test
// reports itself skipped with the reason.
#include <gtest/gtest.h>

#include <ATen/ATen.h>
#include <torch/csrc/autograd/autograd.h>

#include "grpo/core/device.h"
#include "grpo/model/logprob.h"
#include "grpo/model/moe.h"
#include "grpo/model/transformer.h"
#include "grpo/rollout/generate.h"
#include "../../src/model/paged_attention.h"
#include "grpo/io/safetensors.h"
#include "grpo/train/config.h"
#include "grpo/train/trainer.h"
#include "../unit/test_util.h"

namespace {

#define GRPO_REQUIRE_GPU_KERNELS()                                                                        \
  do {                                                                                                    \
    if (!grpo::cuda_available()) GTEST_SKIP() << "no usable CUDA device: " << grpo::cuda_summary();       \
    if (!grpo::cuda_kernels_built()) GTEST_SKIP() << "libgrpo was built without its CUDA kernels: " \
                                                  << grpo::cuda_summary();                               \
  } while (0)

double rel_err(const at::Tensor& a, const at::Tensor& ref) {
  auto r = ref.detach().to(at::kCPU, at::kDouble);
  auto d = a.detach().to(at::kCPU, at::kDouble) - r;
  if (d.isnan().any().item<bool>()) return std::numeric_limits<double>::infinity();
  return d.norm().item<double>() / std::max(r.norm().item<double>(), 1e-30);
}

// Normalized-error tolerance for results computed from inputs of dtype `t` (accumulated in fp32).
double tol_for(at::ScalarType t) {
  switch (t) {
    case at::kDouble: return 1e-12;
    case at::kFloat: return 1e-5;
    case at::kHalf: return 5e-3;
    default: return 2e-2;  // bf16
  }
}

const at::Device kGpu("cuda:0");

// Per token: whether DeepSeek-V3's group-limited choice (grpo::model::moe::route) is decided by
// more than `gap` in choice score, computed in fp64: the topk_group-th against the next group
// score, and the top_k-th against the next expert score within the kept groups.
at::Tensor clear_choices(const at::Tensor& logits, const at::Tensor& bias,
                         const grpo::model::moe::RouterConfig& rc, double gap) {
  auto s = at::sigmoid(logits.to(at::kDouble)) + bias.to(at::kDouble);  // [n, E] choice scores
  const int64_t n = s.size(0), E = s.size(1), G = rc.n_group, tg = rc.topk_group, k = rc.top_k;
  auto margin = at::full({n}, std::numeric_limits<double>::infinity(), at::kDouble);
  if (G > 1) {
    auto gs = std::get<0>(s.view({n, G, E / G}).topk(2, -1)).sum(-1);  // [n, G] group scores
    auto sorted = std::get<0>(gs.sort(-1, /*descending=*/true));
    if (tg < G) margin = at::minimum(margin, sorted.select(1, tg - 1) - sorted.select(1, tg));
    auto kept = at::zeros({n, G}, at::kBool).scatter_(1, std::get<1>(gs.topk(tg, -1)), true);
    s = s.masked_fill(~kept.unsqueeze(-1).expand({n, G, E / G}).reshape({n, E}),
                      -std::numeric_limits<double>::infinity());
  }
  auto sorted = std::get<0>(s.sort(-1, /*descending=*/true));
  if (k < E) margin = at::minimum(margin, sorted.select(1, k - 1) - sorted.select(1, k));
  return margin.gt(gap);
}

}  // namespace

TEST(Gpu, FusedLogProbMatchesReference) {
  GRPO_REQUIRE_GPU_KERNELS();
  at::manual_seed(5);
  struct Shape { int64_t rows, vocab, hidden; };
  for (auto dt : {at::kFloat, at::kBFloat16, at::kHalf, at::kDouble})
    for (Shape s : {Shape{1, 7, 16}, Shape{19, 1000, 64}, Shape{989, 32003, 96}, Shape{0, 50, 8}})
      for (int64_t vchunk : {int64_t(32768), int64_t(4093)})
        for (double temp : {1.0, 0.7})
          for (bool strided : {false, true}) {
            // the large shape (its fp64 CPU reference is the slow part): two of the eight variants
            if (s.rows > 100 && (strided != (vchunk == 32768) || (temp == 1.0) != strided)) continue;
            SCOPED_TRACE(::testing::Message() << c10::toString(dt) << " rows " << s.rows << " vocab " << s.vocab
                                              << " chunk_vocab " << vchunk << " temperature " << temp
                                              << (strided ? " strided" : ""));
            // hidden states of unit scale, logits of a few units: a realistic softmax
            auto h64 = at::randn({1, s.rows, strided ? 2 * s.hidden : s.hidden}, at::kDouble);
            auto w64 = at::randn({s.vocab, s.hidden}, at::kDouble) * (2.0 / std::sqrt(double(s.hidden)));
            auto tgt = at::randint(0, s.vocab, {1, s.rows}, at::kLong);
            auto gl = at::randn({1, s.rows}, at::kDouble), ge = at::randn({1, s.rows}, at::kDouble);
            // the inputs as the GPU sees them (rounded to dt), then the reference in fp64 on the CPU
            auto hg = h64.to(kGpu, dt);
            if (strided) hg = hg.narrow(2, 0, s.hidden);  // non-contiguous rows on the GPU
            hg.requires_grad_();
            if (strided && s.rows > 1) ASSERT_FALSE(hg.is_contiguous());
            auto wg = w64.to(kGpu, dt).requires_grad_();
            auto hr = hg.detach().to(at::kCPU, at::kDouble).requires_grad_();
            auto wr = wg.detach().to(at::kCPU, at::kDouble).requires_grad_();
            grpo::model::LogProbOptions o;
            o.chunk_rows = 300;
            o.chunk_vocab = vchunk;
            o.temperature = temp;
            auto ref = grpo::model::token_logprobs(hr, wr, tgt, o);
            auto out = grpo::model::token_logprobs(hg, wg, tgt.to(kGpu), o);
            ASSERT_TRUE(out.logprobs.is_cuda());
            if (s.rows == 0) {
              EXPECT_EQ(out.logprobs.numel(), 0);
              continue;
            }
            // log-probs and entropy are fp32 from any input dtype: only the input rounding differs
            const double tol = dt == at::kDouble ? 1e-12 : 1e-5;
            EXPECT_LT(rel_err(out.logprobs, ref.logprobs), tol);
            EXPECT_LT(rel_err(out.entropy, ref.entropy), tol);
            auto rg = torch::autograd::grad({(ref.logprobs * gl).sum() + (ref.entropy * ge).sum()}, {hr, wr});
            auto og = torch::autograd::grad({(out.logprobs * gl.to(kGpu, out.logprobs.scalar_type())).sum() +
                                             (out.entropy * ge.to(kGpu, out.entropy.scalar_type())).sum()},
                                            {hg, wg});
            EXPECT_EQ(og[0].scalar_type(), dt);
            EXPECT_LT(rel_err(og[0], rg[0]), tol_for(dt)) << "d hidden";
            EXPECT_LT(rel_err(og[1], rg[1]), tol_for(dt)) << "d weight";
          }
}

TEST(Gpu, MoeRouteMatchesReference) {
  GRPO_REQUIRE_GPU_KERNELS();
  at::manual_seed(6);
  struct Case { int64_t experts, n_group, topk_group, top_k; };
  // DeepSeek-V3, no groups, small groups, the kernel's limits, and one beyond them (LibTorch path)
  for (Case c : {Case{256, 8, 4, 8}, Case{64, 1, 1, 6}, Case{16, 4, 2, 3}, Case{1024, 32, 32, 32},
                 Case{2048, 8, 4, 8}})
    for (int64_t n : {1, 19, 989}) {
      SCOPED_TRACE(::testing::Message() << "experts " << c.experts << " groups " << c.n_group << "/" << c.topk_group
                                        << " top_k " << c.top_k << " tokens " << n);
      grpo::model::moe::RouterConfig rc;
      rc.num_experts = c.experts;
      rc.n_group = c.n_group;
      rc.topk_group = c.topk_group;
      rc.top_k = c.top_k;
      rc.routed_scaling_factor = 2.5;
      auto logits = at::randn({n, c.experts}, at::kFloat);
      auto bias = at::randn({c.experts}, at::kFloat) * 0.1;
      auto lg = logits.to(kGpu).requires_grad_();
      auto lr = logits.clone().requires_grad_();
      auto ref = grpo::model::moe::route(lr, bias, rc);
      auto out = grpo::model::moe::route(lg, bias.to(kGpu), rc);
      // Tokens whose choice a rounding difference cannot change: the GPU's and the CPU's fp32
      // sigmoid may differ by an ulp, which legitimately swaps two experts (or groups) within ~1e-7.
      auto clear = clear_choices(logits, bias, rc, 1e-5).nonzero().squeeze(1);
      EXPECT_GE(clear.size(0) * 10, n * 9) << "too few tokens with a clear choice to compare";
      // the same experts per token (the kernel orders them by score; the reference's order is its own)
      auto [ri, rp] = at::sort(ref.indices, -1);
      auto [oi, op] = at::sort(out.indices.cpu(), -1);
      EXPECT_TRUE(ri.index_select(0, clear).equal(oi.index_select(0, clear)));
      EXPECT_LT(rel_err(out.weights.cpu().gather(1, op).index_select(0, clear),
                        ref.weights.gather(1, rp).index_select(0, clear)),
                1e-6);
      // gate weights stay differentiable in the router logits
      auto gw = at::randn({n, c.top_k}, at::kFloat);
      auto dr = torch::autograd::grad({(ref.weights.gather(1, rp) * gw).sum()}, {lr})[0];
      auto dg = torch::autograd::grad({(out.weights.gather(1, op.to(kGpu)) * gw.to(kGpu)).sum()}, {lg})[0];
      EXPECT_LT(rel_err(dg.cpu().index_select(0, clear), dr.index_select(0, clear)), 1e-5);
      // a diverged model's NaN logits: the chosen ids are still experts (nothing downstream reads
      // out of bounds)
      auto nan_route = grpo::model::moe::route(at::full({n, c.experts}, NAN, at::TensorOptions(kGpu)),
                                               bias.to(kGpu), rc);
      EXPECT_GE(nan_route.indices.min().item<int64_t>(), 0);
      EXPECT_LT(nan_route.indices.max().item<int64_t>(), c.experts);
    }
}

TEST(Gpu, MoePermuteUnpermuteMatchReference) {
  GRPO_REQUIRE_GPU_KERNELS();
  at::manual_seed(7);
  const int64_t E = 8;
  for (auto dt : {at::kFloat, at::kBFloat16, at::kDouble})
    for (int64_t n : {1, 19, 989})
      for (int64_t k : {1, 3})
        for (int64_t H : {1, 7, 129}) {
          SCOPED_TRACE(::testing::Message() << c10::toString(dt) << " tokens " << n << " k " << k << " width " << H);
          auto idx = std::get<1>(at::randn({n, E}).topk(k, -1));  // distinct experts per token
          auto x = at::randn({n, H}, at::kDouble);
          auto w = at::rand({n, k}, at::kDouble);
          auto g = at::randn({n, H}, at::kDouble);
          const auto wt = at::promote_types(dt, at::kFloat);
          // the reference runs in float64 on the inputs rounded to dt, as the GPU sees them
          auto xr = x.to(dt).to(at::kDouble), wr = w.to(wt).to(at::kDouble), gr = g.to(dt).to(at::kDouble);
          auto run = [&](const at::Device& dev, at::ScalarType t) {
            auto plan = grpo::model::moe::plan_dispatch(idx.to(dev), E);
            auto xs = xr.to(dev, t).requires_grad_();
            auto ws = wr.to(dev, at::promote_types(t, at::kFloat)).requires_grad_();
            auto y = grpo::model::moe::permute(xs, plan);
            auto out = grpo::model::moe::unpermute(y.sin(), plan, ws);
            auto grads = torch::autograd::grad({(out * gr.to(dev, t)).sum()}, {xs, ws});
            return std::vector<at::Tensor>{y.detach(), out.detach(), grads[0], grads[1], plan.positions};
          };
          auto ref = run(at::kCPU, at::kDouble);
          auto gpu = run(kGpu, dt);
          EXPECT_TRUE(gpu[4].defined()) << "the GPU dispatch plan has no positions: kernels not used";
          // permute copies rows: exact
          EXPECT_TRUE(gpu[0].cpu().equal(ref[0].to(dt))) << "permute";
          EXPECT_LT(rel_err(gpu[1], ref[1]), tol_for(dt)) << "unpermute";
          EXPECT_LT(rel_err(gpu[2], ref[2]), tol_for(dt)) << "d x";
          // d weights sums `width` products g * sin(y), sin(y) rounded to dt; with few terms of
          // mixed sign the sum can cancel far below its terms (bf16, 1 token, k 3, width 7: 0.0125
          // from terms whose magnitudes sum to 1.68, so the rounding of any correct bf16
          // computation is 0.23 of the result), so each entry's error is measured against the sum
          // of its terms' magnitudes, the scale that rounding acts on (a bf16 simulation of these
          // cases in PyTorch: at most 0.0037 of it).
          auto term_scale = (xr.sin().abs() * gr.abs()).sum(-1, true).expand({n, k});
          auto dw_err = (gpu[3].cpu().to(at::kDouble) - ref[3]).abs() / term_scale;
          EXPECT_LT(dw_err.max().item<double>(), tol_for(dt)) << "d weights";
        }
}

// Whole models on the GPU (kernels inside: MoE routing/permutation, fused log-prob) against the same
// weights on the CPU: hidden states, log-probs, every gradient, and a cached decode step.
TEST(Gpu, TransformerOnGpuMatchesCpu) {
  GRPO_REQUIRE_GPU_KERNELS();
  for (bool moe : {false, true}) {
    SCOPED_TRACE(moe ? "deepseek_v3 MoE" : "dense");
    auto cfg = grpo::test_util::tiny_run(grpo::test_util::tmpdir("gpu_model"), 1);
    if (moe) grpo::test_util::make_moe(cfg);
    auto mc = cfg.model;
    mc.vocab_size = 300;
    at::manual_seed(8);
    grpo::model::Transformer cpu(mc);
    at::manual_seed(8);
    grpo::model::Transformer gpu(mc);
    gpu.to(kGpu);
    ASSERT_TRUE(gpu.device().is_cuda());
    cpu.train(true);
    gpu.train(true);
    auto ids = at::randint(0, mc.vocab_size, {3, 11}, at::kLong);
    auto mask = at::ones({3, 11}, at::kBool);
    mask[0].narrow(0, 0, 4).fill_(false);  // left padding
    auto pos = at::clamp_min(mask.to(at::kLong).cumsum(1) - 1, 0);
    auto tgt = ids.roll(-1, 1);
    auto loss = [&](grpo::model::Transformer& m, const at::Device& d, at::Tensor* h, at::Tensor* lp) {
      *h = m.forward(ids.to(d), pos.to(d), mask.to(d));
      auto r = m.token_logprobs(*h, tgt.to(d));
      *lp = r.logprobs;
      return r.logprobs.sum() + 0.1 * r.entropy.sum();
    };
    at::Tensor hc, lc, hg, lg;
    std::vector<at::Tensor> pc, pg;
    std::vector<std::string> names;
    auto nc = cpu.named_parameters(), ng = gpu.named_parameters();
    for (size_t i = 0; i < nc.size(); ++i)
      if (nc[i].second.requires_grad()) {  // (not the router's bias)
        names.push_back(nc[i].first);
        pc.push_back(nc[i].second);
        pg.push_back(ng[i].second);
      }
    auto gc = torch::autograd::grad({loss(cpu, at::kCPU, &hc, &lc)}, pc, {}, false, false, true);
    auto gg = torch::autograd::grad({loss(gpu, kGpu, &hg, &lg)}, pg, {}, false, false, true);
    EXPECT_LT(rel_err(hg, hc), 1e-4);
    EXPECT_LT(rel_err(lg, lc), 1e-4);
    for (size_t i = 0; i < gc.size(); ++i) {
      if (!gc[i].defined()) continue;
      ASSERT_TRUE(gg[i].defined()) << names[i];
      EXPECT_LT(rel_err(gg[i], gc[i]), 1e-3) << names[i];
    }
    if (moe)
      for (auto l : cpu.moe_layers()) EXPECT_TRUE(gpu.expert_load(l).cpu().equal(cpu.expert_load(l))) << l;
    // a cached decode step
    cpu.train(false);
    gpu.train(false);
    at::NoGradGuard no_grad;
    auto cc = cpu.make_cache(3, 16), cg = gpu.make_cache(3, 16);
    cpu.forward(ids, pos, mask, cc.get());
    gpu.forward(ids.to(kGpu), pos.to(kGpu), mask.to(kGpu), cg.get());
    auto next = at::randint(0, mc.vocab_size, {3, 1}, at::kLong);
    auto mask2 = at::cat({mask, at::ones({3, 1}, at::kBool)}, 1);
    auto pos2 = pos.narrow(1, 10, 1) + 1;
    auto zc = cpu.logits(cpu.forward(next, pos2, mask2, cc.get()));
    auto zg = gpu.logits(gpu.forward(next.to(kGpu), pos2.to(kGpu), mask2.to(kGpu), cg.get()));
    EXPECT_LT(rel_err(zg, zc), 1e-4);
  }
}

// The trainer with run.device = cuda: a pretrain stage, GRPO steps (generation on the GPU, rewards on
// the CPU), evaluation and a checkpoint, against the same run on the CPU. bf16 on GPU too.
// The pretrain stage is tiny_run's full 40 steps so that GRPO's groups have rewards that differ:
// after 6 steps every reward was 0 (first GPU run, H200, 2026-12-04), every advantage 0, and the
// gradient (the KL term at policy = reference) pure rounding noise that Adam scales up to
// lr-sized steps. The parameters then differed by 0.4-0.6% between GPU and CPU, and by as much
// between two CPU runs that only group the micro-batches differently; with rewards that differ,
// those two CPU runs agree to 1.5e-8, and GPU and CPU to 3.6e-7 (dense) and 4.9e-7 (MoE).
TEST(Gpu, TrainerOnGpuMatchesCpu) {
  GRPO_REQUIRE_GPU_KERNELS();
  for (bool moe : {false, true}) {
    SCOPED_TRACE(moe ? "deepseek_v3 MoE" : "dense");
    std::vector<std::vector<grpo::io::NamedTensors>> params(2);  // [device][after pretrain, after GRPO]
    std::vector<std::vector<nlohmann::json>> metrics;
    for (int d = 0; d < 2; ++d) {
      std::string device = d == 0 ? "cpu" : "cuda";
      auto dir = grpo::test_util::tmpdir("gpu_trainer_" + device + (moe ? "_moe" : ""));
      auto c = grpo::test_util::tiny_run(dir, 2);
      c.eval.num_prompts = 8;
      c.run.device = device;
      if (moe) grpo::test_util::make_moe(c);
      grpo::train::Trainer t(c);
      EXPECT_EQ(t.policy().device().is_cuda(), device == "cuda");
      t.run();
      for (const char* step : {"000000", "000002"})
        params[d].push_back(grpo::io::load_safetensors(dir + "/checkpoints/step-" + step + "/model.safetensors"));
      metrics.push_back(grpo::test_util::read_jsonl(dir + "/metrics.jsonl"));
    }
    for (size_t s = 0; s < 2; ++s) {
      SCOPED_TRACE(s == 0 ? "after the pretrain stage" : "after 2 GRPO steps");
      ASSERT_EQ(params[0][s].size(), params[1][s].size());
      double worst = 0;
      for (size_t i = 0; i < params[0][s].size(); ++i) {
        double e = rel_err(params[1][s][i].second, params[0][s][i].second);
        worst = std::max(worst, e);
        EXPECT_LT(e, 1e-5) << params[0][s][i].first;  // H200, 2026-12-04: at most 4.9e-7
      }
      std::cout << (moe ? "moe" : "dense") << (s == 0 ? " after pretrain" : " after GRPO")
                << ": largest relative parameter difference GPU vs CPU " << worst << "\n";
    }
    ASSERT_EQ(metrics[0].size(), metrics[1].size());
    int steps_with_signal = 0;
    for (size_t i = 0; i < metrics[0].size(); ++i) {
      const auto &mc = metrics[0][i], &mg = metrics[1][i];
      if (mc.value("stage", "") != "grpo") {
        EXPECT_NEAR(mg["loss"].get<double>(), mc["loss"].get<double>(), 1e-3 * (1 + std::abs(mc["loss"].get<double>())))
            << "pretrain loss at line " << i;
        continue;
      }
      // the same sampled tokens (hashed uniforms), so the same rewards; losses and gradient norms
      // agree to fp32 rounding
      EXPECT_EQ(mg["reward_mean"], mc["reward_mean"]) << i;
      for (const char* key : {"loss", "grad_norm", "kl"})
        EXPECT_NEAR(mg[key].get<double>(), mc[key].get<double>(), 1e-3 * (1e-3 + std::abs(mc[key].get<double>())))
            << key << " at line " << i;
      steps_with_signal += mc["reward_std"].get<double>() > 0;
    }
    EXPECT_GT(steps_with_signal, 0) << "no GRPO step had rewards that differ: the comparison above measures noise";
  }
  // bf16 on the GPU runs (the fused log-prob's bf16 GEMMs, bf16 grouped expert GEMMs)
  auto dir = grpo::test_util::tmpdir("gpu_trainer_bf16");
  auto c = grpo::test_util::tiny_run(dir, 1);
  c.pretrain.steps = 4;
  c.eval.num_prompts = 4;
  c.run.device = "cuda";
  c.optim.precision = "bf16";
  grpo::test_util::make_moe(c);
  grpo::train::Trainer t(c);
  t.run();
  for (auto& j : grpo::test_util::read_jsonl(dir + "/metrics.jsonl"))
    if (j.contains("loss")) EXPECT_TRUE(std::isfinite(j["loss"].get<double>()));
}

// The paged decode-attention kernel against its LibTorch reference in float64 on the same (rounded)
// inputs: GQA groups of 1, 4 and 16 heads, head dims 64 and 128, MLA's absorbed decode (latent 512
// + RoPE 64, values = latent), blocks of 16 and 7 tokens scattered over the pool, lengths 0, 1, a
// block boundary and one past it, and a 64k-token context.
TEST(Gpu, PagedDecodeAttentionMatchesReference) {
  GRPO_REQUIRE_GPU_KERNELS();
  using grpo::model::detail::paged_decode_attention;
  using grpo::model::detail::paged_decode_attention_reference;
  struct Shape {
    int64_t kv, group, dk, dr, bs;
    std::vector<int64_t> lengths;
  };
  const std::vector<Shape> shapes = {
      {2, 1, 64, 0, 16, {1, 16, 17, 200}},  {2, 4, 128, 0, 16, {0, 33, 5, 512}}, {1, 16, 64, 0, 7, {7, 8, 1, 300}},
      {1, 16, 512, 64, 16, {1, 64, 65, 1000}}, {2, 8, 128, 0, 16, {65536, 3}},  {1, 16, 512, 64, 16, {65536}},
  };
  for (const auto& sh : shapes) {
    for (auto dt : {at::kFloat, at::kBFloat16, at::kDouble}) {
      SCOPED_TRACE(::testing::Message() << "kv " << sh.kv << " group " << sh.group << " dk " << sh.dk << " dr " << sh.dr
                                        << " block " << sh.bs << " " << at::toString(dt));
      const int64_t B = int64_t(sh.lengths.size()), H = sh.kv * sh.group, dv = sh.dk;
      int64_t nb = 1, total = 1;
      for (auto l : sh.lengths) nb = std::max(nb, (l + sh.bs - 1) / sh.bs), total += (l + sh.bs - 1) / sh.bs;
      // each sequence's blocks: a random permutation of the pool's blocks (block 0 unused)
      auto perm = at::randperm(total - 1, at::kLong) + 1;
      auto table = at::zeros({B, nb}, at::kInt);
      int64_t used = 0;
      for (int64_t b = 0; b < B; ++b)
        for (int64_t j = 0; j < (sh.lengths[size_t(b)] + sh.bs - 1) / sh.bs; ++j) table[b][j] = perm[used++].item<int64_t>();
      auto lens = at::tensor(sh.lengths, at::kLong).to(at::kInt);
      const int64_t slots = total * sh.bs;
      auto round = [&](at::Tensor t) { return t.to(dt).to(at::kDouble); };
      auto q = round(at::randn({B, H, sh.dk + sh.dr}, at::kDouble));
      auto k = round(at::randn({slots, sh.kv, sh.dk}, at::kDouble));
      auto r = sh.dr > 0 ? round(at::randn({slots, sh.kv, sh.dr}, at::kDouble)) : at::Tensor();
      auto v = sh.dr > 0 ? k : round(at::randn({slots, sh.kv, dv}, at::kDouble));
      const double scale = 1.0 / std::sqrt(double(sh.dk + sh.dr));
      auto ref = paged_decode_attention_reference(q, k, r, v, table, lens, sh.bs, scale);
      auto on = [&](const at::Tensor& t) { return t.defined() ? t.to(kGpu, dt) : t; };
      auto got = paged_decode_attention(on(q), on(k), on(r), sh.dr > 0 ? on(k) : on(v), table.to(kGpu), lens.to(kGpu),
                                        sh.bs, scale);
      ASSERT_TRUE(got.is_cuda());
      EXPECT_EQ(got.scalar_type(), dt);
      EXPECT_LT(rel_err(got, ref), tol_for(dt) * (dt == at::kBFloat16 ? 0.5 : 1.0));
      for (int64_t b = 0; b < B; ++b)
        if (sh.lengths[size_t(b)] == 0) EXPECT_EQ(got[b].abs().max().item<double>(), 0.0);
    }
  }
}

// The rollout engine on the GPU (paged decode kernel, dense and MLA/MoE) against the lock-step
// engine on the CPU, fp32: the tokens agree (a flip of a sampled token needs a probability within
// ~1e-6 of the uniform), at least 95% of them up to each row's first difference.
TEST(Gpu, RolloutEngineOnGpuMatchesCpu) {
  GRPO_REQUIRE_GPU_KERNELS();
  for (bool moe : {false, true}) {
    SCOPED_TRACE(moe ? "deepseek_v3 MoE" : "dense");
    auto cfg = grpo::test_util::tiny_run(grpo::test_util::tmpdir("gpu_engine"), 1);
    if (moe) grpo::test_util::make_moe(cfg);
    auto mc = cfg.model;
    mc.vocab_size = 300;
    mc.max_position_embeddings = 512;
    at::manual_seed(9);
    grpo::model::Transformer cpu(mc);
    at::manual_seed(9);
    grpo::model::Transformer gpu(mc);
    gpu.to(kGpu);
    grpo::rollout::GenerateRequest req;
    for (int64_t p = 0; p < 6; ++p) {
      auto t = at::randint(2, 300, {3 + 7 * p}, at::kLong);
      req.prompts.emplace_back(t.data_ptr<int64_t>(), t.data_ptr<int64_t>() + t.numel());
      req.prompt_keys.push_back(uint64_t(p));
    }
    req.group_size = 4;
    req.sampling.max_new_tokens = 100;
    req.sampling.kv_block_size = 16;
    req.eos_id = 1;
    auto ref = grpo::rollout::generate_lockstep(cpu, req);
    auto out = grpo::rollout::generate(gpu, req);
    int64_t agree = 0, total = 0;
    for (int64_t r = 0; r < ref.rows(); ++r) {
      const auto& a = ref.responses[size_t(r)];
      const auto& b = out.responses[size_t(r)];
      total += int64_t(a.size());
      for (size_t t = 0; t < std::min(a.size(), b.size()) && a[t] == b[t]; ++t) ++agree;
    }
    EXPECT_GE(double(agree), 0.95 * double(total)) << agree << " of " << total;
    EXPECT_GT(out.stats.peak_kv_bytes, 0);
  }
}
