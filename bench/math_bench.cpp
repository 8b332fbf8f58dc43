// Per-call latency of grpo's math verifier (extraction + normalisation + parsing + comparison) on
// the cases of tests/fixtures/math/cases.jsonl. Used by bench/math_verify.sh next to math-verify.
// usage: grpo_bench_math CASES.jsonl REPEATS
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "grpo/reward/math_verify.h"

int main(int argc, char** argv) {
  if (argc != 3) {
    std::fprintf(stderr, "usage: grpo_bench_math CASES.jsonl REPEATS\n");
    return 2;
  }
  std::vector<std::pair<std::string, std::string>> cases;
  std::ifstream in(argv[1]);
  for (std::string line; std::getline(in, line);) {
    auto j = nlohmann::json::parse(line);
    cases.emplace_back(j["gold"], j["pred"]);
  }
  const int reps = std::atoi(argv[2]);
  std::vector<double> per_case;  // microseconds, best of `reps` (steady-state cost of one call)
  using Clock = std::chrono::steady_clock;
  for (auto& [g, p] : cases) {
    double best = 1e30;
    for (int r = 0; r < reps; ++r) {
      auto t0 = Clock::now();
      auto v = grpo::reward::math::verify(g, p);
      (void)v;
      best = std::min(best, std::chrono::duration<double, std::micro>(Clock::now() - t0).count());
    }
    per_case.push_back(best);
  }
  std::sort(per_case.begin(), per_case.end());
  double total = 0;
  for (double x : per_case) total += x;
  std::printf("grpo         %zu cases: median %8.1f us  p99 %8.1f us  worst %8.1f us  total %8.2f ms\n",
              per_case.size(), per_case[per_case.size() / 2], per_case[per_case.size() * 99 / 100], per_case.back(),
              total / 1000);
  return 0;
}
