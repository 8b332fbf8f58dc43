// Rollout throughput and KV memory of the rollout engine (rollout::generate) or the lock-step
// reference (rollout::generate_lockstep) on a Hugging Face model directory. Used by
// bench/rollout.sh next to transformers' generate().
//
// usage: grpo_bench_rollout MODEL_DIR PROMPTS_JSON ENGINE GROUP MAX_NEW LENGTHS MAX_RUNNING SHARING THREADS
//   PROMPTS_JSON  {"prompts": [[ids...], ...]}
//   ENGINE        engine | lockstep
//   LENGTHS       full: no EOS, every response MAX_NEW tokens;
//                 heavy: a stop rule ends row r at a heavy-tailed length (Pareto, alpha 1.2, scale
//                 MAX_NEW / 16, capped at MAX_NEW; median ~MAX_NEW / 9, ~4% reach the cap), the
//                 spread of R1-style responses, forced by the rule rather than by the model
//   SHARING       1: prefix sharing (the engine's default), 0: each sample prefills its prompt
// Prints one JSON line: tokens generated, seconds, tokens/s, peak KV bytes, engine statistics.
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <string>

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <nlohmann/json.hpp>

#include "grpo/core/device.h"
#include "grpo/core/rng.h"
#include "grpo/model/hf_checkpoint.h"
#include "grpo/model/transformer.h"
#include "grpo/rollout/generate.h"

int main(int argc, char** argv) {
  if (argc != 10) {
    std::fprintf(stderr, "usage: grpo_bench_rollout MODEL_DIR PROMPTS_JSON engine|lockstep GROUP MAX_NEW full|heavy "
                         "MAX_RUNNING SHARING THREADS\n");
    return 2;
  }
  const std::string dir = argv[1], prompts_path = argv[2], engine = argv[3], lengths = argv[6];
  const int64_t G = std::atoll(argv[4]), R = std::atoll(argv[5]), max_running = std::atoll(argv[7]);
  const bool sharing = std::atoll(argv[8]) != 0;
  grpo::setup_host(std::atoi(argv[9]));
  auto model = grpo::model::load_hf_model(dir);
  auto j = nlohmann::json::parse(std::ifstream(prompts_path));

  grpo::rollout::GenerateRequest req;
  for (const auto& p : j["prompts"]) req.prompts.push_back(p.get<std::vector<int64_t>>());
  for (size_t p = 0; p < req.prompts.size(); ++p) req.prompt_keys.push_back(p);
  req.group_size = G;
  req.key = {1, 1, 0};
  req.eos_id = -1;  // never sampled: lengths come from the rule below
  req.sampling.temperature = 1.0;
  req.sampling.max_new_tokens = R;
  req.sampling.max_running = max_running;
  req.sampling.prefix_sharing = sharing;
  const int64_t rows = int64_t(req.prompts.size()) * G;
  std::vector<int64_t> target(size_t(rows), R);
  if (lengths == "heavy") {
    for (int64_t r = 0; r < rows; ++r) {
      const double u = grpo::core::uniform01(grpo::core::hash_key({99, uint64_t(r)}));
      target[size_t(r)] = std::min<int64_t>(R, std::max<int64_t>(1, int64_t(double(R) / 16 / std::pow(1 - u, 1 / 1.2))));
    }
    req.stop = [&](int64_t row, const std::vector<int64_t>& resp) { return int64_t(resp.size()) >= target[size_t(row)]; };
  }
  auto run = [&] { return engine == "lockstep" ? grpo::rollout::generate_lockstep(*model, req) : grpo::rollout::generate(*model, req); };
  using Clock = std::chrono::steady_clock;
  const auto t0 = Clock::now();
  auto out = run();
  const double sec = std::chrono::duration<double>(Clock::now() - t0).count();
  const int64_t tokens = out.response_mask.sum().item<int64_t>();
  nlohmann::json o = {{"engine", engine},
                      {"rows", rows},
                      {"lengths", lengths},
                      {"max_running", max_running},
                      {"prefix_sharing", sharing},
                      {"tokens", tokens},
                      {"seconds", sec},
                      {"tokens_per_s", double(tokens) / sec},
                      {"peak_kv_mib", out.stats.peak_kv_bytes / (1 << 20)},
                      {"steps", out.stats.steps},
                      {"forwards", out.stats.forwards},
                      {"prefill_tokens", out.stats.prefill_tokens},
                      {"decode_tokens", out.stats.decode_tokens},
                      {"preemptions", out.stats.preemptions}};
  std::cout << o.dump() << std::endl;
  return 0;
}
