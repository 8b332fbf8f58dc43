// The communicator: the backend choice and its errors; collectives across 2 and 4 real processes
// (Gloo over loopback TCP, dist/workers.h), a missing or dying rank named within the timeout; the
// same on GPU tensors (label gpu). DistWorker.Run is the worker process every Dist.* test starts.
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include "grpo/core/device.h"
#include "grpo/core/error.h"
#include "grpo/dist/comm.h"
#include "grpo/dist/launch.h"
#include "grpo/io/safetensors.h"
#include "grpo/train/checkpoint.h"
#include "grpo/train/config.h"
#include "grpo/train/trainer.h"
#include "../test_util.h"
#include "workers.h"

using grpo::test_util::error_of;

// parallel.backend: auto takes NCCL only where it can work (GPU tensors, a GPU per process, a build
// with it); asking for NCCL where it cannot work names the key and why.
TEST(Comm, BackendChoiceAndErrors) {
  using grpo::dist::Backend;
  using grpo::dist::resolve_backend;
  const at::Device cpu(at::kCPU), gpu(at::kCUDA, 1);
  const std::string key = "parallel.backend";
  EXPECT_EQ(resolve_backend("auto", cpu, true, key), Backend::gloo);
  EXPECT_EQ(resolve_backend("gloo", gpu, true, key), Backend::gloo);
  EXPECT_EQ(resolve_backend("auto", gpu, false, key), Backend::gloo);  // processes sharing a GPU
  EXPECT_EQ(resolve_backend("auto", gpu, true, key), grpo::dist::nccl_built() ? Backend::nccl : Backend::gloo);
  auto e = error_of([&] { resolve_backend("mpi", cpu, true, key); });
  EXPECT_NE(e.find("parallel.backend: expected auto, gloo or nccl, found 'mpi'"), std::string::npos) << e;
  e = error_of([&] { resolve_backend("nccl", cpu, true, key); });
  EXPECT_NE(e.find("parallel.backend = nccl: NCCL moves GPU tensors, and run.device is cpu"), std::string::npos) << e;
  e = error_of([&] { resolve_backend("nccl", gpu, false, key); });
  EXPECT_NE(e.find(grpo::dist::nccl_built() ? "several processes of this node share cuda:1"
                                            : "this libgrpo was built without NCCL"),
            std::string::npos) << e;
  if (grpo::dist::nccl_built()) {
    EXPECT_EQ(resolve_backend("nccl", gpu, true, key), Backend::nccl);
  } else {
    e = error_of([&] { resolve_backend("nccl", gpu, true, key); });
    EXPECT_NE(e.find("this libgrpo was built without NCCL"), std::string::npos) << e;
  }
}

TEST(DistWorker, Run) {
  const char* scenario = std::getenv("GRPO_DIST_SCENARIO");
  if (!scenario) GTEST_SKIP() << "runs only as a worker process started by the Dist.* tests";
  int64_t tp_train = 1, ep_train = 1, steps = 2, rollout_ranks = 0, staleness = 0;
  const bool moe = std::sscanf(scenario, "grpo_moe_tp%ld_ep%ld", &tp_train, &ep_train) == 2;
  if (std::sscanf(scenario, "grpo_rollout%ld_k%ld", &rollout_ranks, &staleness) == 2 ||
      std::string(scenario) == "grpo_rollout_kill") {  // separate rollout ranks (rollout_ranks_test.cpp)
    try {
      auto cfg = dp_run(std::getenv("GRPO_DIST_RUN_DIR"));
      cfg.parallel.rollout_ranks = std::max<int64_t>(1, rollout_ranks);
      cfg.grpo.max_staleness = staleness;
      cfg.grpo.rollout_steps = 3;
      if (std::strstr(scenario, "_inflight")) {  // generation one sequence at a time: slower than the update
        cfg.parallel.inflight_weight_updates = true;
        cfg.grpo.rollout_steps = 6;
        cfg.rollout.max_running = 1;
      }
      if (std::strstr(scenario, "_r3")) grpo::test_util::make_moe(cfg), cfg.moe.routing_replay = true;
      if (std::strstr(scenario, "_tp2")) cfg.parallel.tp = 2;  // the trainers split the model
      if (std::strstr(scenario, "_env")) with_env(cfg);       // multi-turn episodes on the rollout rank
      if (std::string(scenario) == "grpo_rollout_kill") {  // long enough to be killed in the middle
        cfg.grpo.rollout_steps = 200;
        cfg.grpo.max_staleness = 1;
        cfg.parallel.timeout = 30;
      }
      grpo::train::Trainer t(cfg);
      t.run();
      const auto launch = grpo::dist::detect_launch();
      if (launch.rank >= launch.world_size - cfg.parallel.rollout_ranks)  // the weights a rollout rank ends with
        grpo::io::save_safetensors(std::string(std::getenv("GRPO_DIST_RUN_DIR")) + "/../rollout_final_" +
                                   std::to_string(launch.rank) + ".safetensors", t.policy().named_parameters());
    } catch (const grpo::Error& e) {
      std::cout << "ERROR " << e.what() << "\n";
      std::exit(3);
    }
    std::cout << "trained\n";
    return;
  }
  const std::set<std::string> dp_scenarios{"grpo_dp", "grpo_dapo", "grpo_zero1", "grpo_dp_bf16", "grpo_zero1_bf16",
                                           "grpo_dp_stop", "grpo_env"};
  if (dp_scenarios.count(scenario) || moe ||
      std::sscanf(scenario, "grpo_tp%ld_steps%ld", &tp_train, &steps) == 2) {  // data/tensor/expert-parallel training
    try {
      auto cfg = moe ? moe_run(std::getenv("GRPO_DIST_RUN_DIR")) : dp_run(std::getenv("GRPO_DIST_RUN_DIR"));
      cfg.parallel.tp = tp_train;
      cfg.parallel.ep = ep_train;
      if (std::string(scenario) == "grpo_dapo") cfg.grpo.dynamic_sampling = true;
      if (std::string(scenario) == "grpo_env") with_env(cfg);
      if (std::strstr(scenario, "_zero1")) cfg.parallel.zero1 = true;
      if (std::strstr(scenario, "_recompute")) cfg.parallel.recompute = cfg.parallel.sequence_parallel = true;
      if (std::strstr(scenario, "_bf16")) cfg.optim.precision = "bf16";
      if (const char* d = std::getenv("GRPO_DIST_DEVICE")) cfg.run.device = d;
      if (const char* b = std::getenv("GRPO_DIST_BACKEND")) cfg.parallel.backend = b;
      cfg.grpo.rollout_steps = steps;
      if (const char* from = std::getenv("GRPO_DIST_RESUME_FROM")) cfg.run.resume = from;
      grpo::train::Trainer t(cfg);
      if (std::string(scenario) == "grpo_dp_stop") {  // a signal delivered to rank 1 only, after rollout step 1
        const int64_t rank = grpo::dist::detect_launch().rank;
        t.run([rank](const grpo::train::TrainState& st) { return rank == 1 && st.rollout_step == 1; });
        std::cout << "stopped at rollout step " << t.state().rollout_step << "\n";
      } else {
        t.run();
      }
    } catch (const grpo::Error& e) {
      std::cout << "ERROR " << e.what() << "\n";
      std::exit(3);
    }
    std::cout << "trained\n";
    return;
  }
  const auto launch = grpo::dist::detect_launch();
  const auto timeout = std::chrono::milliseconds(std::atoi(std::getenv("GRPO_DIST_TIMEOUT_MS")));
  // the collectives' tensors on GRPO_DIST_DEVICE (default cpu), through GRPO_DIST_BACKEND's backend
  const char* device_name = std::getenv("GRPO_DIST_DEVICE");
  std::unique_ptr<grpo::dist::Comm> comm;
  at::Device dev(at::kCPU);
  try {
    dev = grpo::resolve_device(device_name ? device_name : "cpu", launch.local_rank, "GRPO_DIST_DEVICE");
    grpo::dist::CommOptions co;
    const char* backend = std::getenv("GRPO_DIST_BACKEND");
    co.backend = grpo::dist::resolve_backend(backend ? backend : "auto", dev,
                                             !device_name || std::string(device_name) == "cuda", "GRPO_DIST_BACKEND");
    co.device_index = dev.is_cuda() ? dev.index() : 0;
    comm = grpo::dist::Comm::connect(launch, timeout, co);
  } catch (const grpo::Error& e) {
    std::cout << "ERROR " << e.what() << "\n";
    std::exit(3);
  }
  const int64_t r = comm->rank(), n = comm->size();
  int64_t tp = 0, ep = 0;
  if (std::sscanf(scenario, "model_tp%ld_ep%ld", &tp, &ep) == 2) {
    try {
      model_parallel_worker(*comm, tp, ep, std::strstr(scenario, "_sp") != nullptr);
    } catch (const grpo::Error& e) {
      std::cout << "ERROR " << e.what() << "\n";
      std::exit(3);
    }
    return;
  }
  if (std::string(scenario) == "exit_after_join") {
    if (r == n - 1) std::exit(0);  // the last rank leaves without a word
    auto t = at::ones({4});
    try {
      comm->all_reduce_sum(t);
    } catch (const grpo::Error& e) {
      std::cout << "ERROR " << e.what() << "\n";
      std::exit(3);
    }
    std::exit(0);
  }
  // sum (blocking and started), max, broadcast, all-gather, uneven all-to-all; results stay on the device
  std::cout << "collectives on " << dev << " through " << comm->backend() << "\n";
  auto on = [&](const at::Tensor& t) { return t.to(dev); };
  auto s = on(at::full({3}, double(r + 1), at::kDouble));
  comm->all_reduce_sum(s);
  EXPECT_EQ(s.device(), dev);
  EXPECT_TRUE(s.cpu().equal(at::full({3}, double(n * (n + 1) / 2), at::kDouble)));
  auto sa = on(at::full({1000}, float(r), at::kFloat));
  auto pending = comm->all_reduce_sum_async(sa);
  pending->wait();
  EXPECT_TRUE(sa.cpu().equal(at::full({1000}, float(n * (n - 1) / 2), at::kFloat)));
  auto m = on(at::tensor({double(r), double(-r)}, at::kDouble));
  comm->all_reduce_max(m);
  EXPECT_EQ(m[0].item<double>(), double(n - 1));
  EXPECT_EQ(m[1].item<double>(), 0.0);
  // reduce-scatter: rank k's block of the sum; rank r's input row i = r + i
  auto rs = comm->reduce_scatter_sum(on(at::arange(2 * n, at::kDouble).add(double(r)).view({2 * n, 1}).expand({2 * n, 3}).contiguous()));
  EXPECT_EQ(rs.device(), dev);
  ASSERT_EQ(rs.sizes(), (std::vector<int64_t>{2, 3}));
  for (int64_t i = 0; i < 2; ++i)
    EXPECT_EQ(rs[i][2].item<double>(), double(n * (2 * r + i) + n * (n - 1) / 2));
  auto b = on(at::full({2}, double(r), at::kFloat));
  comm->broadcast(b, n - 1);
  EXPECT_EQ(b[0].item<float>(), float(n - 1));
  auto g = comm->all_gather(on(at::full({2}, int64_t(10 * r), at::kLong)));
  ASSERT_EQ(int64_t(g.size()), n);
  for (int64_t k = 0; k < n; ++k) {
    EXPECT_EQ(g[k].device(), dev);
    EXPECT_EQ(g[k][1].item<int64_t>(), 10 * k);
  }
  // rank r sends (r + k + 1) rows to rank k, each row = [r, k]
  std::vector<int64_t> send;
  std::vector<at::Tensor> rows;
  for (int64_t k = 0; k < n; ++k) {
    send.push_back(r + k + 1);
    rows.push_back(at::tensor({r, k}, at::kLong).repeat({r + k + 1, 1}));
  }
  std::vector<int64_t> recv;
  auto got = comm->all_to_all(on(at::cat(rows)), send, &recv);
  EXPECT_EQ(got.device(), dev);
  got = got.cpu();
  int64_t off = 0;
  for (int64_t k = 0; k < n; ++k) {
    EXPECT_EQ(recv[k], k + r + 1);
    for (int64_t i = 0; i < recv[k]; ++i, ++off) {
      EXPECT_EQ(got[off][0].item<int64_t>(), k);
      EXPECT_EQ(got[off][1].item<int64_t>(), r);
    }
  }
  comm->barrier();
  std::cout << "rank " << r << " of " << n << " ok\n";
}

TEST(Dist, CollectivesAcrossTwoAndFourProcesses) {
  for (int world : {2, 4}) {
    std::vector<int> ranks;
    for (int r = 0; r < world; ++r) ranks.push_back(r);
    auto ws = run_workers(world, ranks, "collectives", 20000);
    for (int r = 0; r < world; ++r) {
      EXPECT_EQ(ws[r].rc, 0) << "rank " << r << " of " << world << ":\n" << ws[r].out;
      EXPECT_NE(ws[r].out.find("rank " + std::to_string(r) + " of " + std::to_string(world) + " ok"), std::string::npos)
          << ws[r].out;
    }
  }
}

TEST(Dist, AMissingRankIsNamedWithinTheTimeout) {
  auto t0 = std::chrono::steady_clock::now();
  auto ws = run_workers(3, {0, 1}, "collectives", 2000);  // rank 2 never starts
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  for (auto& w : ws) {
    EXPECT_EQ(w.rc, 3) << w.out;
    EXPECT_NE(w.out.find("rank 2 did not join the rendezvous at 127.0.0.1:"), std::string::npos) << w.out;
  }
  EXPECT_LT(s, 30.0);  // a safety net: the 2 s timeout, not a hang
}

TEST(Dist, ARankThatDiesIsAnErrorOnTheOthers) {
  auto ws = run_workers(3, {0, 1, 2}, "exit_after_join", 3000);
  EXPECT_EQ(ws[2].rc, 0);
  for (int r = 0; r < 2; ++r) {
    EXPECT_EQ(ws[r].rc, 3) << ws[r].out;
    EXPECT_NE(ws[r].out.find("all_reduce_sum failed after"), std::string::npos) << ws[r].out;
    EXPECT_NE(ws[r].out.find("(parallel.timeout 3 s)"), std::string::npos) << ws[r].out;
    EXPECT_NE(ws[r].out.find("rank 2 (process "), std::string::npos) << ws[r].out;  // named, by its process
    EXPECT_NE(ws[r].out.find("of this group has exited"), std::string::npos) << ws[r].out;
  }
}

// A stop (SIGINT/SIGTERM in grpo_train) on one rank only stops every rank at the same step, with a
// checkpoint: the stop decision is collective.
TEST(Dist, AStopOnOneRankStopsAllWithACheckpoint) {
  auto ws = run_workers(2, {0, 1}, "grpo_dp_stop", 60000);
  for (int r = 0; r < 2; ++r) {
    EXPECT_EQ(ws[r].rc, 0) << ws[r].out;
    EXPECT_NE(ws[r].out.find("stopped at rollout step 1"), std::string::npos) << ws[r].out;
  }
  const std::string ckpts = std::string(GRPO_TEST_TMPDIR) + "/dist_grpo_dp_stop_2/run/checkpoints";
  EXPECT_EQ(*grpo::train::latest_checkpoint(ckpts), ckpts + "/step-000001");
}

// ---- the same on GPU tensors (label gpu; each skips, saying why, without what it needs)

namespace {
void expect_collectives_ok(const std::vector<Worker>& ws, const std::string& backend) {
  for (size_t r = 0; r < ws.size(); ++r) {
    EXPECT_EQ(ws[r].rc, 0) << "rank " << r << ":\n" << ws[r].out;
    EXPECT_NE(ws[r].out.find("through " + backend), std::string::npos) << ws[r].out;
    EXPECT_NE(ws[r].out.find("rank " + std::to_string(r) + " of " + std::to_string(ws.size()) + " ok"),
              std::string::npos) << ws[r].out;
  }
}
}  // namespace

// Two processes sharing GPU 0, their GPU tensors through Gloo (host copies): every collective
// returns on the GPU what it returns on the CPU.
TEST(GpuDist, CollectivesOnGpuTensorsThroughGloo) {
  if (!grpo::cuda_available()) GTEST_SKIP() << "no usable GPU: " << grpo::cuda_summary();
  WorkerEnv env({{"GRPO_DIST_DEVICE", "cuda:0"}, {"GRPO_DIST_BACKEND", "gloo"}});
  expect_collectives_ok(run_workers(2, {0, 1}, "collectives", 60000), "gloo");
}

// NCCL: a GPU per process, so it needs two.
TEST(GpuDist, CollectivesThroughNcclOnTwoGpus) {
  if (!grpo::cuda_available()) GTEST_SKIP() << "no usable GPU: " << grpo::cuda_summary();
  if (!grpo::dist::nccl_built()) GTEST_SKIP() << "this libgrpo was built without NCCL: " << grpo::cuda_summary();
  const int64_t gpus = at::detail::getCUDAHooks().deviceCount();
  if (gpus < 2) GTEST_SKIP() << "NCCL needs a GPU per process and this machine has " << gpus;
  WorkerEnv env({{"GRPO_DIST_DEVICE", "cuda"}, {"GRPO_DIST_BACKEND", "nccl"}});
  expect_collectives_ok(run_workers(2, {0, 1}, "collectives", 60000), "nccl");
}
