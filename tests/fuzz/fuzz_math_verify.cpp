// Any bytes as (gold, completion) for the math verifier (split at the first newline) and as a
// completion for the format checks, the answer extraction, the language and Countdown rewards: no crash, no sanitizer report, and
// no call past its time budget (with a margin for the sanitizers' slowdown).
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "grpo/reward/math_verify.h"
#include "grpo/reward/reward.h"
#include "grpo/reward/task_rewards.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string in(reinterpret_cast<const char*>(data), size);
  auto nl = in.find('\n');
  std::string gold = nl == std::string::npos ? in : in.substr(0, nl);
  std::string completion = nl == std::string::npos ? in : in.substr(nl + 1);
  grpo::reward::math::VerifyOptions o;
  o.budget_us = 50000;
  auto t0 = std::chrono::steady_clock::now();
  auto v = grpo::reward::math::verify(gold, completion, o);
  grpo::reward::math::normalize_answer(completion);
  (void)grpo::reward::has_r1_format(completion);
  (void)grpo::reward::extract_answer(completion);
  (void)grpo::reward::has_r1_format_lenient(completion);
  (void)grpo::reward::language_consistency(completion, grpo::reward::dominant_scripts(gold));
  (void)grpo::reward::countdown_correct(completion, 24, {1, 2, 3, 4});
  double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  if (ms > 500) {  // 10x the budget: ASan/UBSan slow everything down, but not by this much
    std::fprintf(stderr, "verify took %.1f ms (budget 50 ms), equal=%d\n", ms, int(v.equal));
    std::abort();
  }
  return 0;
}
