// Data-parallel step time on CPU: forward + backward + gradient all-reduce of a dense transformer,
// the all-reduce done three ways (dist/grad_reducer.h): one all-reduce of all gradients after the
// backward pass, 16 MB buckets after the backward pass, and 16 MB buckets started during the
// backward pass as their gradients become ready (overlap). Also the backward pass alone. Run by
// bench/allreduce_overlap.sh, one process per rank (torchrun-style environment).
// usage: grpo_bench_allreduce HIDDEN LAYERS TOKENS REPS THREADS BUCKET_MB
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <vector>

#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include "grpo/dist/comm.h"
#include "grpo/dist/grad_reducer.h"
#include "grpo/dist/launch.h"
#include "grpo/model/transformer.h"

using namespace grpo;

int main(int argc, char** argv) {
  if (argc != 7) {
    std::fprintf(stderr, "usage: grpo_bench_allreduce HIDDEN LAYERS TOKENS REPS THREADS BUCKET_MB\n");
    return 2;
  }
  auto arg = [&](int i) { return std::atoll(argv[i]); };
  const int64_t H = arg(1), layers = arg(2), tokens = arg(3), reps = arg(4), threads = arg(5), bucket_mb = arg(6);
  at::set_num_threads(int(threads));
  auto comm = dist::Comm::connect(dist::detect_launch(), std::chrono::seconds(120));
  model::ModelConfig c;
  c.vocab_size = 8192;
  c.hidden_size = H;
  c.intermediate_size = H * 11 / 4;
  c.num_hidden_layers = layers;
  c.num_attention_heads = H / 64;
  c.num_key_value_heads = H / 128;
  c.max_position_embeddings = tokens;
  at::manual_seed(0);
  model::Transformer m(c);
  auto params = m.parameters();
  auto ids = at::randint(c.vocab_size, {1, tokens}, at::kLong);
  auto step = [&](int mode, dist::GradientReducer& bucketed) {
    for (auto& p : params) p.mutable_grad() = at::Tensor();
    comm->barrier();
    auto t0 = std::chrono::steady_clock::now();
    if (mode == 3) bucketed.arm();
    auto h = m.forward(ids);
    m.token_logprobs(h, ids).logprobs.sum().backward();
    if (mode == 1) {  // one all-reduce of everything after the backward pass
      std::vector<at::Tensor> flat;
      for (auto& p : params) flat.push_back(p.grad().reshape({-1}));
      auto all = at::cat(flat);
      comm->all_reduce_sum(all);
      int64_t off = 0;
      for (auto& p : params) {
        p.grad().copy_(all.narrow(0, off, p.numel()).view_as(p));
        off += p.numel();
      }
    } else if (mode == 2) {
      bucketed.reduce_now();
    } else if (mode == 3) {
      bucketed.finish();
    }
    return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  };
  dist::GradientReducer reducer(params, *comm, bucket_mb << 20);
  const char* names[] = {"backward only (no all-reduce)", "one all-reduce after backward",
                         "buckets after backward", "buckets overlapped with backward"};
  std::vector<at::Tensor> check;
  double ms[4];
  for (int mode = 0; mode < 4; ++mode) {
    step(mode, reducer);  // warm-up
    std::vector<double> t;
    for (int64_t r = 0; r < reps; ++r) t.push_back(step(mode, reducer));
    std::sort(t.begin(), t.end());
    ms[mode] = t[t.size() / 2];
    if (mode >= 1) {  // every mode sums the same gradients
      std::vector<at::Tensor> g;
      for (auto& p : params) g.push_back(p.grad().clone());
      if (check.empty()) {
        check = g;
      } else {
        double d = 0;
        for (size_t i = 0; i < g.size(); ++i) d = std::max(d, (g[i] - check[i]).abs().max().item<double>());
        if (d > 1e-4) {
          std::fprintf(stderr, "mode %d: gradients differ by %g\n", mode, d);
          return 1;
        }
      }
    }
  }
  if (comm->rank() == 0) {
    double mb = 0;
    for (auto& p : params) mb += double(p.nbytes()) / (1 << 20);
    std::printf("%ld processes, %ld threads each: %.1fM parameters (%.0f MB of fp32 gradients, %ld buckets of <= %ld MB), "
                "%ld tokens per rank, median of %ld steps\n",
                long(comm->size()), long(threads), double(m.num_parameters()) / 1e6, mb, long(reducer.num_buckets()),
                long(bucket_mb), long(tokens), long(reps));
    for (int mode = 0; mode < 4; ++mode)
      std::printf("  %-36s %9.1f ms  (%.2fx of one all-reduce after backward)\n", names[mode], ms[mode], ms[mode] / ms[1]);
    std::printf("  buckets started during the backward pass: %ld of %ld\n", long(reducer.started_during_backward()),
                long(reducer.num_buckets()));
  }
  return 0;
}
