// External-process rewards: a reward written in any language, run as a child process that reads
// one JSON object per line on stdin and answers one per line on stdout.
//   request:  {"completion", "answer", "prompt", "response_tokens", "max_response_tokens", ...fields}
//   response: {"score": number}
// The process is started on first use (`sh -c COMMAND`, its own process group) and kept for the
// next samples; concurrent callers each get their own process. A reply that does not arrive by
// the sample's deadline, malformed output or a dead process kill that process (group) and throw,
// so the reward scores the failure value and is counted, and the next call starts a fresh one.
#pragma once

#include <memory>
#include <string>

#include "grpo/reward/reward.h"

namespace grpo::reward {

/// A RewardFn that forwards each sample to `command`. `default_timeout_seconds` applies when the
/// sample has no deadline.
std::unique_ptr<RewardFn> make_process_reward(const std::string& command, double default_timeout_seconds = 10.0);

}  // namespace grpo::reward
