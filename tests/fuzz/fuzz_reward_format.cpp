// Any bytes as a completion for the format rewards (strict, lenient, tag count), the answer
// extraction, the language reward and the Countdown checker: no crash, no sanitizer report, and
// the invariants between them (strict format implies lenient format implies a full tag count).
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "grpo/reward/reward.h"
#include "grpo/reward/task_rewards.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string c(reinterpret_cast<const char*>(data), size);
  static auto tags = grpo::reward::RewardRegistry::create("tag_count");
  bool strict = grpo::reward::has_r1_format(c);
  bool lenient = grpo::reward::has_r1_format_lenient(c);
  double tag = tags->score(c, "");
  if (strict && tag != 1.0) std::abort();            // the strict format has every tag once
  if (lenient && tag != 1.0) std::abort();
  if (tag < 0.0 || tag > 1.0) std::abort();
  auto a = grpo::reward::extract_answer(c);
  if (a && a->empty()) std::abort();                 // an answer is never empty
  double l = grpo::reward::language_consistency(c, grpo::reward::dominant_scripts(c));
  if (!(l >= 0.0 && l <= 1.0)) std::abort();
  (void)grpo::reward::countdown_correct(c, 24, {3, 8, 1, 1});
  (void)grpo::reward::last_code_block(c);
  return 0;
}
