// GPU benchmark (bench/gpu.sh runs it on the GPU machine after the `gpu` tests). In one process:
//   1. the device's two ceilings, measured: device-to-device copy bandwidth and a bf16 GEMM rate;
//   2. each kernel against the LibTorch composite it replaces, on the same GPU, same inputs
//      (grpo::set_cuda_kernels_enabled(false) runs the composite): median time and peak memory;
//      the fused log-prob also against a naive full-logits log_softmax (the peers' path);
//   3. end to end with random weights in bf16: rollout decode tokens/s (KV cache, batch of
//      sequences) against the memory-bandwidth roofline, and training tokens/s (forward, fused
//      log-prob, backward) with MFU, for a Qwen2.5-1.5B-shaped dense model and a small
//      DeepSeek-V3-shaped MoE model.
// Times are CUDA-event medians over repetitions after warm-up; inputs are random, never zeros.
// usage: grpo_bench_gpu [--quick]     (--quick: smaller shapes, for a smoke run)
#include <algorithm>
#include <cstdio>
#include <functional>
#include <string>
#include <vector>

#include <ATen/ATen.h>
#include <c10/cuda/CUDACachingAllocator.h>
#include <c10/cuda/CUDAFunctions.h>
#include <c10/cuda/CUDAStream.h>
#include <cuda_runtime_api.h>
#include <torch/csrc/autograd/autograd.h>

#include "grpo/core/device.h"
#include "grpo/model/logprob.h"
#include "grpo/model/moe.h"
#include "grpo/model/transformer.h"

namespace {

using grpo::model::ModelConfig;
const at::Device kGpu("cuda:0");

void check(cudaError_t e, const char* what) {
  if (e != cudaSuccess) {
    std::fprintf(stderr, "%s: %s\n", what, cudaGetErrorString(e));
    std::exit(1);
  }
}

// Median milliseconds of f over `reps` runs (after `warm` runs), timed with CUDA events.
double median_ms(const std::function<void()>& f, int reps = 10, int warm = 3) {
  for (int i = 0; i < warm; ++i) f();
  cudaEvent_t a, b;
  check(cudaEventCreate(&a), "cudaEventCreate");
  check(cudaEventCreate(&b), "cudaEventCreate");
  auto stream = c10::cuda::getCurrentCUDAStream().stream();
  std::vector<double> t;
  for (int i = 0; i < reps; ++i) {
    check(cudaEventRecord(a, stream), "cudaEventRecord");
    f();
    check(cudaEventRecord(b, stream), "cudaEventRecord");
    check(cudaEventSynchronize(b), "cudaEventSynchronize");
    float ms = 0;
    check(cudaEventElapsedTime(&ms, a, b), "cudaEventElapsedTime");
    t.push_back(ms);
  }
  cudaEventDestroy(a);
  cudaEventDestroy(b);
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

// Peak bytes the allocator held above what was allocated before f ran (one run).
double peak_gib(const std::function<void()>& f) {
  c10::cuda::device_synchronize();
  auto& alloc = *c10::cuda::CUDACachingAllocator::get();
  const auto before = alloc.getDeviceStats(0).allocated_bytes[0].current;
  alloc.resetPeakStats(0);
  f();
  c10::cuda::device_synchronize();
  const auto peak = alloc.getDeviceStats(0).allocated_bytes[0].peak;
  return double(peak - before) / double(1ull << 30);
}

struct Row {
  std::string what, ours, peer;
  double ours_ms, peer_ms, ours_gib, peer_gib;
};
std::vector<Row> rows;

void compare(const std::string& what, const std::string& ours, const std::function<void()>& f_ours,
             const std::string& peer, const std::function<void()>& f_peer, int reps = 10) {
  Row r{what, ours, peer, 0, 0, 0, 0};
  r.ours_gib = peak_gib(f_ours);
  r.ours_ms = median_ms(f_ours, reps);
  r.peer_gib = peak_gib(f_peer);
  r.peer_ms = median_ms(f_peer, reps);
  std::printf("%-34s %-10s %9.3f ms %7.2f GiB | %-16s %9.3f ms %7.2f GiB | speed-up %5.2fx, memory %5.2fx less\n",
              what.c_str(), ours.c_str(), r.ours_ms, r.ours_gib, peer.c_str(), r.peer_ms, r.peer_gib,
              r.peer_ms / r.ours_ms, r.peer_gib / std::max(r.ours_gib, 1e-9));
  std::fflush(stdout);
  rows.push_back(r);
}

// f with the kernels switched off: the LibTorch composites they replace, on the same GPU.
std::function<void()> without_kernels(std::function<void()> f) {
  return [f] {
    grpo::set_cuda_kernels_enabled(false);
    f();
    grpo::set_cuda_kernels_enabled(true);
  };
}

// ---- 1. ceilings
double copy_tbs() {
  auto a = at::randn({int64_t(1) << 29}, at::TensorOptions(kGpu).dtype(at::kFloat));  // 2 GiB
  auto b = at::empty_like(a);
  double ms = median_ms([&] { b.copy_(a); });
  return 2.0 * a.nbytes() / (ms * 1e-3) / 1e12;  // bytes read + written
}
double gemm_tflops() {
  const int64_t n = 8192;
  auto o = at::TensorOptions(kGpu).dtype(at::kBFloat16);
  auto a = at::randn({n, n}, o), b = at::randn({n, n}, o);
  double ms = median_ms([&] { at::mm(a, b); });
  return 2.0 * n * n * n / (ms * 1e-3) / 1e12;
}

// ---- 2. kernels
void bench_logprob(int64_t N, int64_t H, int64_t V) {
  auto o = at::TensorOptions(kGpu).dtype(at::kBFloat16);
  auto h = (at::randn({1, N, H}, o)).requires_grad_();
  auto w = (at::randn({V, H}, o) * (1.0 / std::sqrt(double(H)))).requires_grad_();
  auto tgt = at::randint(0, V, {1, N}, at::TensorOptions(kGpu).dtype(at::kLong));
  auto fused = [&] {
    auto r = grpo::model::token_logprobs(h, w, tgt);
    torch::autograd::grad({r.logprobs.sum() + 0.01 * r.entropy.sum()}, {h, w});
  };
  auto naive = [&] {  // full [N, V] fp32 logits, as a plain LibTorch/PyTorch trainer computes them
    auto lp = at::log_softmax(at::matmul(h, w.t()).to(at::kFloat), -1);
    auto logp = lp.gather(2, tgt.unsqueeze(2)).squeeze(2);
    auto ent = -(lp.exp() * lp).sum(-1);
    torch::autograd::grad({logp.sum() + 0.01 * ent.sum()}, {h, w});
  };
  const std::string what = "log-prob+entropy fwd+bwd " + std::to_string(N) + "x" + std::to_string(V);
  compare(what, "fused", fused, "naive log_softmax", naive, 5);
  compare(what, "fused", fused, "chunked, LibTorch", without_kernels(fused), 5);
}

void bench_route(int64_t N, int64_t E, int64_t G, int64_t TG, int64_t k) {
  grpo::model::moe::RouterConfig rc{E, k, G, TG, true, 2.5};
  auto logits = at::randn({N, E}, at::TensorOptions(kGpu).dtype(at::kFloat));
  auto bias = at::randn({E}, at::TensorOptions(kGpu).dtype(at::kFloat)) * 0.1;
  auto run = [&] { grpo::model::moe::route(logits, bias, rc); };
  compare("route " + std::to_string(N) + " tok, " + std::to_string(E) + " experts top-" + std::to_string(k), "kernel",
          run, "LibTorch", without_kernels(run));
}

void bench_permute(int64_t N, int64_t H, int64_t E, int64_t k) {
  auto o = at::TensorOptions(kGpu).dtype(at::kBFloat16);
  auto idx = std::get<1>(at::randn({N, E}, at::TensorOptions(kGpu)).topk(k, -1));
  auto x = at::randn({N, H}, o).requires_grad_();
  auto w = at::rand({N, k}, at::TensorOptions(kGpu).dtype(at::kFloat)).requires_grad_();
  auto run = [&] {
    auto plan = grpo::model::moe::plan_dispatch(idx, E);
    auto y = grpo::model::moe::unpermute(grpo::model::moe::permute(x, plan), plan, w);
    torch::autograd::grad({y.sum()}, {x, w});
  };
  compare("permute+unpermute fwd+bwd " + std::to_string(N) + "x" + std::to_string(H) + " k" + std::to_string(k),
          "kernels", run, "LibTorch", without_kernels(run));
}

// ---- 3. end to end
ModelConfig qwen25_1p5b() {
  ModelConfig c;
  c.model_type = "qwen2";
  c.vocab_size = 151936;
  c.hidden_size = 1536;
  c.num_hidden_layers = 28;
  c.num_attention_heads = 12;
  c.num_key_value_heads = 2;
  c.intermediate_size = 8960;
  c.max_position_embeddings = 32768;
  c.rope_theta = 1e6;
  c.tie_word_embeddings = true;
  c.attention_bias = true;
  return c;
}
ModelConfig small_deepseek_v3() {
  ModelConfig c;
  c.model_type = "deepseek_v3";
  c.vocab_size = 32000;
  c.hidden_size = 1024;
  c.num_hidden_layers = 8;
  c.num_attention_heads = 16;
  c.num_key_value_heads = 16;
  c.intermediate_size = 2816;
  c.max_position_embeddings = 8192;
  c.q_lora_rank = 384;
  c.kv_lora_rank = 128;
  c.qk_nope_head_dim = 64;
  c.qk_rope_head_dim = 32;
  c.v_head_dim = 64;
  c.n_routed_experts = 64;
  c.n_shared_experts = 1;
  c.num_experts_per_tok = 6;
  c.moe_intermediate_size = 512;
  c.n_group = 8;
  c.topk_group = 4;
  c.routed_scaling_factor = 2.5;
  c.first_k_dense_replace = 1;
  return c;
}

void end_to_end(const std::string& name, const ModelConfig& c, int64_t decode_batch, int64_t prompt, int64_t gen,
                int64_t train_batch, int64_t train_len, double bw_tbs, double peak_tflops) {
  at::manual_seed(0);
  grpo::model::Transformer m(c);
  m.to(kGpu);
  for (auto& p : m.named_parameters())
    if (p.first.find("e_score_correction_bias") == std::string::npos) p.second.set_data(p.second.data().to(at::kBFloat16));
  int64_t params = 0, param_bytes = 0, active = 0;
  for (auto& p : m.named_parameters()) {
    params += p.second.numel();
    param_bytes += p.second.nbytes();
    const bool routed = p.first.find(".mlp.experts.") != std::string::npos;
    const bool embedding = p.first.find("embed_tokens") != std::string::npos && !c.tie_word_embeddings;
    if (!embedding) active += routed ? p.second.numel() * c.num_experts_per_tok / c.n_routed_experts : p.second.numel();
  }
  const auto lo = at::TensorOptions(kGpu).dtype(at::kLong);
  // decode: prefill `prompt` tokens, then `gen` greedy steps over a batch, KV cache
  double step_ms = 0;
  {
    at::NoGradGuard ng;
    m.train(false);
    auto ids = at::randint(0, c.vocab_size, {decode_batch, prompt}, lo);
    auto run = [&] {
      auto cache = m.make_cache(decode_batch, prompt + gen);
      auto h = m.forward(ids, {}, {}, cache.get());
      for (int64_t s = 0; s < gen; ++s) {
        auto next = m.logits(h.narrow(1, h.size(1) - 1, 1)).argmax(-1);
        h = m.forward(next, {}, {}, cache.get());
      }
    };
    auto prefill = [&] {
      auto cache = m.make_cache(decode_batch, prompt + gen);
      m.forward(ids, {}, {}, cache.get());
    };
    step_ms = (median_ms(run, 3, 1) - median_ms(prefill, 3, 1)) / gen;
  }
  // KV bytes read per step at the mean context (MLA caches the latent + rope key)
  const int64_t ctx = prompt + gen / 2;
  const int64_t per_token = c.is_mla() ? (c.kv_lora_rank + c.qk_rope_head_dim)
                                       : 2 * c.num_key_value_heads * c.resolved_head_dim();
  const double kv_bytes = double(c.num_hidden_layers) * decode_batch * ctx * per_token * 2;
  const double roofline_tps = decode_batch / ((param_bytes + kv_bytes) / (bw_tbs * 1e12));
  const double decode_tps = decode_batch / (step_ms * 1e-3);
  // training: forward, fused log-prob, backward over train_batch x train_len tokens
  m.train(true);
  auto ids = at::randint(0, c.vocab_size, {train_batch, train_len}, lo);
  auto tgt = ids.roll(-1, 1);
  std::vector<at::Tensor> ps;
  for (auto& p : m.parameters())
    if (p.requires_grad()) ps.push_back(p);
  auto train_step = [&] {
    auto h = m.forward(ids);
    auto r = m.token_logprobs(h, tgt);
    torch::autograd::grad({r.logprobs.mean() + 0.001 * r.entropy.mean()}, ps);
    m.reset_expert_load();
  };
  const double train_ms = median_ms(train_step, 5, 2);
  const double train_gib = peak_gib(train_step);
  const double tokens = double(train_batch * train_len);
  const int64_t attn_dim = c.num_attention_heads * (c.is_mla() ? c.qk_nope_head_dim + c.qk_rope_head_dim
                                                                 : c.resolved_head_dim());
  // 6 x active parameters per token, plus causal attention: fwd QK^T and AV 2 x 2 x T^2 x d / 2
  const double flops = 6.0 * active * tokens +
                       3.0 * 2.0 * train_batch * double(train_len) * train_len * attn_dim * c.num_hidden_layers;
  const double achieved = flops / (train_ms * 1e-3) / 1e12;
  std::printf("%s: %.2fB parameters (%.2fB active per token), bf16\n", name.c_str(), params / 1e9, active / 1e9);
  std::printf("  decode  batch %ld, context %ld+%ld: %.2f ms/step, %.0f tokens/s; roofline %.0f tokens/s "
              "(weights %.2f GB + KV %.2f GB per step at %.2f TB/s): %.0f%% of it\n",
              long(decode_batch), long(prompt), long(gen), step_ms, decode_tps, roofline_tps, param_bytes / 1e9,
              kv_bytes / 1e9, bw_tbs, 100.0 * decode_tps / roofline_tps);
  std::printf("  train   %ld x %ld tokens fwd+logprob+bwd: %.1f ms, %.0f tokens/s, %.1f TFLOP/s, MFU %.1f%% "
              "(of %.0f TFLOP/s), peak %.1f GiB\n",
              long(train_batch), long(train_len), train_ms, tokens / (train_ms * 1e-3), achieved,
              100.0 * achieved / peak_tflops, peak_tflops, train_gib);
  std::fflush(stdout);
}

}  // namespace

int main(int argc, char** argv) {
  const bool quick = argc > 1 && std::string(argv[1]) == "--quick";
  std::printf("%s\n", grpo::cuda_summary().c_str());
  if (!grpo::cuda_available() || !grpo::cuda_kernels_built()) {
    std::fprintf(stderr, "grpo_bench_gpu needs a GPU and a libgrpo built with its kernels\n");
    return 2;
  }
  cudaDeviceProp prop{};
  check(cudaGetDeviceProperties(&prop, 0), "cudaGetDeviceProperties");
  const double bw = copy_tbs(), mm = gemm_tflops();
  const std::string dev = prop.name;
  // dense bf16 tensor-core peak of the SXM parts (H100 and H200 alike); elsewhere: the measured GEMM
  const double peak = dev.find("H100") != std::string::npos || dev.find("H200") != std::string::npos ? 989.4 : mm;
  std::printf("device %s, %d SMs, %.1f GiB; copy %.2f TB/s (read+write), bf16 GEMM 8192^3 %.0f TFLOP/s; "
              "MFU against %.1f TFLOP/s\n\n",
              prop.name, prop.multiProcessorCount, prop.totalGlobalMem / double(1ull << 30), bw, mm, peak);
  const int64_t s = quick ? 4 : 1;
  std::printf("kernels against the LibTorch composite they replace (median time, peak memory above inputs)\n");
  bench_logprob(8192 / s, 1536, 151936 / s);
  bench_route(16384 / s, 256, 8, 4, 8);
  bench_permute(8192 / s, 7168 / s, 256, 8);
  std::printf("\nend to end (random weights)\n");
  end_to_end("Qwen2.5-1.5B-shaped dense", qwen25_1p5b(), 64 / s, 256, 128 / s, 8 / s, 1024, bw, peak);
  end_to_end("small DeepSeek-V3-shaped MoE", small_deepseek_v3(), 64 / s, 256, 128 / s, 8 / s, 1024, bw, peak);
  return 0;
}
