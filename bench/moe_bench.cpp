// MoE layer forward and forward+backward time with grpo's ops (model/moe.h: route -> permute ->
// grouped SwiGLU -> unpermute, plus the shared expert), exactly the sequence the MoE layer in
// src/model/moe_layer.cpp runs. Used by bench/moe_layer.sh next to transformers' DeepseekV3MoE.
// usage: grpo_bench_moe TOKENS HIDDEN MOE_INTER EXPERTS TOP_K N_GROUP TOPK_GROUP SHARED REPS THREADS
#include <chrono>
#include <cstdio>
#include <cstdlib>

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/csrc/autograd/autograd.h>

#include "grpo/model/moe.h"

using namespace grpo::model;

int main(int argc, char** argv) {
  if (argc != 11) {
    std::fprintf(stderr, "usage: grpo_bench_moe TOKENS HIDDEN MOE_INTER EXPERTS TOP_K N_GROUP TOPK_GROUP SHARED REPS THREADS\n");
    return 2;
  }
  auto arg = [&](int i) { return std::atoll(argv[i]); };
  const int64_t N = arg(1), H = arg(2), I = arg(3), E = arg(4), k = arg(5), G = arg(6), TG = arg(7),
                S = arg(8), reps = arg(9), threads = arg(10);
  at::set_num_threads(int(threads));
  at::manual_seed(0);
  auto p = [](at::Tensor t) { return t.requires_grad_(true); };
  auto router = p(at::randn({E, H}) * 0.5), bias = at::randn({E}) * 0.1;
  auto gate = p(at::randn({E, I, H}) * 0.05), up = p(at::randn({E, I, H}) * 0.05), down = p(at::randn({E, H, I}) * 0.05);
  auto sg = p(at::randn({S * I, H}) * 0.05), su = p(at::randn({S * I, H}) * 0.05), sd = p(at::randn({H, S * I}) * 0.05);
  moe::RouterConfig rc{E, k, G, TG, true, 2.5};
  auto layer = [&](const at::Tensor& x) {
    auto r = moe::route(at::linear(x, router), bias, rc);
    auto plan = moe::plan_dispatch(r.indices, E);
    auto y = moe::unpermute(moe::grouped_swiglu(moe::permute(x, plan), gate, up, down, plan.counts), plan, r.weights);
    return y + at::linear(at::silu(at::linear(x, sg)) * at::linear(x, su), sd);
  };
  auto x = at::randn({N, H});
  using Clock = std::chrono::steady_clock;
  auto time_ms = [&](bool backward) {
    for (int w = 0; w < 3; ++w) {  // warm-up
      auto xi = x.clone().requires_grad_(backward);
      auto y = layer(xi);
      if (backward) y.sum().backward();
    }
    auto t0 = Clock::now();
    for (int64_t r = 0; r < reps; ++r) {
      if (backward) {
        auto xi = x.clone().requires_grad_(true);
        layer(xi).sum().backward();
      } else {
        at::NoGradGuard g;
        layer(x);
      }
    }
    return std::chrono::duration<double, std::milli>(Clock::now() - t0).count() / reps;
  };
  double fwd = time_ms(false), fb = time_ms(true);
  std::printf("grpo            forward %8.2f ms   forward+backward %8.2f ms\n", fwd, fb);
  return 0;
}
