// Multi-process harness shared by the dist tests: collectives across real processes (Gloo over TCP
// on this machine), started the way torchrun would: RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR,
// MASTER_PORT. The worker is this same test binary running DistWorker.Run (comm_test.cpp), which
// trains dp_run / moe_run or runs model_parallel_worker (parallel_test.cpp).
#pragma once

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "grpo/dist/comm.h"
#include "grpo/env/environment.h"
#include "grpo/train/config.h"
#include "../test_util.h"

inline int free_port() {
  int s = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ::bind(s, reinterpret_cast<sockaddr*>(&a), sizeof a);
  socklen_t len = sizeof a;
  ::getsockname(s, reinterpret_cast<sockaddr*>(&a), &len);
  ::close(s);
  return ntohs(a.sin_port);
}

struct Worker {
  int rc = -1;
  std::string out;
};

// Started workers: their process ids and logs.
using Started = std::vector<std::pair<pid_t, std::string>>;

// Starts `ranks` of a world of `world` processes running `scenario`.
inline Started start_workers(int world, const std::vector<int>& ranks, const std::string& scenario, int timeout_ms) {
  const int port = free_port();
  const std::string dir = grpo::test_util::tmpdir("dist_" + scenario + "_" + std::to_string(world));
  std::vector<std::pair<pid_t, std::string>> procs;
  for (int r : ranks) {
    const std::string log = dir + "/rank" + std::to_string(r) + ".log";
    pid_t pid = ::fork();
    if (pid == 0) {
      ::setenv("RANK", std::to_string(r).c_str(), 1);
      ::setenv("WORLD_SIZE", std::to_string(world).c_str(), 1);
      ::setenv("LOCAL_RANK", std::to_string(r).c_str(), 1);
      ::setenv("MASTER_ADDR", "127.0.0.1", 1);
      ::setenv("MASTER_PORT", std::to_string(port).c_str(), 1);
      ::setenv("GRPO_DIST_SCENARIO", scenario.c_str(), 1);
      ::setenv("GRPO_DIST_TIMEOUT_MS", std::to_string(timeout_ms).c_str(), 1);
      ::setenv("GRPO_DIST_RUN_DIR", (dir + "/run").c_str(), 1);
      int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
      ::dup2(fd, 1);
      ::dup2(fd, 2);
      ::execl("/proc/self/exe", "grpo_unit_tests", "--gtest_filter=DistWorker.Run", (char*)nullptr);
      ::_exit(127);
    }
    procs.emplace_back(pid, log);
  }
  return procs;
}

// Waits for every started worker.
inline std::vector<Worker> wait_workers(const Started& procs) {
  std::vector<Worker> out;
  for (auto& [pid, log] : procs) {
    int st = 0;
    ::waitpid(pid, &st, 0);
    Worker w;
    w.rc = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
    std::ifstream in(log);
    w.out.assign(std::istreambuf_iterator<char>(in), {});
    out.push_back(std::move(w));
  }
  return out;
}

// Starts `ranks` of a world of `world` processes running `scenario`; waits for all of them.
inline std::vector<Worker> run_workers(int world, const std::vector<int>& ranks, const std::string& scenario,
                                       int timeout_ms) {
  return wait_workers(start_workers(world, ranks, scenario, timeout_ms));
}

// Environment variables for the workers started while it lives (they inherit them).
struct WorkerEnv {
  explicit WorkerEnv(const std::map<std::string, std::string>& vars) {
    for (auto& [k, v] : vars) {
      ::setenv(k.c_str(), v.c_str(), 1);
      keys.push_back(k);
    }
  }
  ~WorkerEnv() {
    for (auto& k : keys) ::unsetenv(k.c_str());
  }
  std::vector<std::string> keys;
};

// A small GRPO run (the pretrain stage, then 2 rollout steps of 2 mini-batches x 2 epochs with a KL
// reference refreshed every 3 optimizer steps) whose prompts split over 1, 2 or 4 processes.
inline grpo::train::Config dp_run(const std::string& dir) {
  auto c = grpo::test_util::tiny_run(dir, 2);
  c.run.seed = 5;
  c.model.num_key_value_heads = 2;  // splits over tp = 2
  c.model.vocab_size = 20;          // the built-in task's 19 symbols, padded to split over tp = 2
  c.pretrain.steps = 30;
  // and an SFT stage on correct answers (written once by the driver, read by the workers)
  c.sft.data = std::string(GRPO_TEST_TMPDIR) + "/dp_sft.jsonl";
  if (!std::filesystem::exists(c.sft.data)) {
    std::ofstream f(c.sft.data);
    for (int a = 10; a < 40; ++a) {
      const int b = (a * 7) % 90 + 10;
      f << nlohmann::json{{"question", std::to_string(a) + "+" + std::to_string(b) + "="},
                          {"response", "<answer>" + std::to_string(a + b) + "</answer>"}}.dump() << "\n";
    }
  }
  c.sft.steps = 5;
  c.sft.batch_size = 8;
  c.grpo.prompts_per_step = 8;
  c.grpo.loss.aggregation = grpo::algo::LossAggregation::kTokenMean;
  c.eval.every = 0;
  c.checkpoint.every = 0;
  return c;
}

// dp_run with multi-turn episodes: a registered environment whose turns end at the digit 1 and
// whose observation is "0" (every process registers it: the driver and each worker).
inline void with_env(grpo::train::Config& c) {
  struct Reply : grpo::env::Environment {
    void reset(const std::string&, const std::string&) override {}
    grpo::env::Observation step(const std::string&) override {
      grpo::env::Observation o;
      o.text = "0";
      o.tool_call = true;
      return o;
    }
  };
  grpo::env::register_environment("dist_test_reply", [](const grpo::env::EnvConfig&) { return std::make_unique<Reply>(); });
  c.env.name = "dist_test_reply";
  c.env.turn_end = "1";
  c.env.max_turns = 2;
}

// The same run with a DeepSeek-V3-shaped MoE policy (MLA, a dense first layer, 4 routed experts
// and a shared one, sequence-wise balance loss and router bias updates), evaluated after every
// rollout step: under expert parallel, ranks generate and train different rows, so their forwards
// pair up only through the lock step (idle generation steps, empty micro-batches).
inline grpo::train::Config moe_run(const std::string& dir) {
  auto c = dp_run(dir);
  grpo::test_util::make_moe(c);
  c.moe.balance_loss_coef = 0.01;
  c.moe.bias_update_rate = 0.01;
  c.eval.every = 1;
  // DAPO dynamic sampling: later rounds split unevenly, some ranks generate nothing (idle forwards)
  // and train fewer rows than others (empty micro-batches)
  c.grpo.dynamic_sampling = true;
  c.grpo.dynamic_sampling_max_rounds = 3;
  c.rollout.max_running = 6;  // a few sequences at a time (ranks with fewer rows run idle forwards)
  return c;
}

// Every rank: the model split as `tp` x `ep` against the whole model in this process, on each
// data-parallel rank's own batch. Hidden states, log-probs and logits agree; gradients summed the
// way the trainer sums them (dp group; expert parameters over the expert-dp group) equal the whole
// model's gradients of the sum of all ranks' losses; a KV-cached decode agrees.
void model_parallel_worker(grpo::dist::Comm& world, int64_t tp, int64_t ep, bool sequence_parallel);
