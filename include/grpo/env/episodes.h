// The engine's side of multi-turn rollouts: one environment episode per rollout row, stepped on a
// pool of worker threads while the other rows keep decoding (rollout::TurnHandler).
#pragma once

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "grpo/env/environment.h"
#include "grpo/rollout/generate.h"
#include "grpo/text/prompt.h"

namespace grpo::text {
class Tokenizer;
}

namespace grpo::env {

/// What the episodes of a rollout did (metrics.jsonl env_*).
struct EpisodeStats {
  int64_t episodes = 0, turns = 0, tool_calls = 0, tool_errors = 0, tool_timeouts = 0;
  int64_t with_tool = 0;  // episodes that called a tool at least once
  int64_t observation_tokens = 0, truncated = 0;  // truncated: episodes ended by env.max_turns
  double env_seconds = 0;  // summed over the episodes' steps (they overlap with decoding and each other)
};

class Episodes : public rollout::TurnHandler {
 public:
  /// Row r of the rollout is an episode on tasks[r] = (question, answer). The tokenizer must
  /// outlive this object; it decodes each finished turn and encodes each observation (once),
  /// framed by `frame` (text::observation_frame, for env.observation_role; empty: as it is).
  Episodes(const EnvConfig& config, const text::Tokenizer& tokenizer,
           const std::vector<std::pair<std::string, std::string>>& tasks, text::ObservationFrame frame = {});
  ~Episodes() override;
  Episodes(const Episodes&) = delete;
  Episodes& operator=(const Episodes&) = delete;

  bool ends_turn(int64_t row, const std::vector<int64_t>& response) override;
  void submit(int64_t row, const std::vector<int64_t>& response) override;
  std::vector<Reply> ready(bool wait) override;

  EpisodeStats stats() const;
  /// Tool calls of row `row`'s episode so far.
  int64_t tool_calls(int64_t row) const;

 private:
  struct Job {
    int64_t row;
    std::string turn;
  };
  void work();

  EnvConfig config_;
  const text::Tokenizer& tok_;
  text::ObservationFrame frame_;
  std::vector<std::unique_ptr<Environment>> envs_;
  std::vector<int64_t> turn_start_;  // where each row's current turn starts in its response
  std::vector<int64_t> turns_;       // turns each row has ended
  std::vector<int64_t> row_tool_calls_;
  int64_t marker_tokens_ = 8;        // tokens decoded to look for the turn marker
  mutable std::mutex mutex_;
  std::condition_variable jobs_cv_, done_cv_;
  std::deque<Job> jobs_;
  std::vector<Reply> done_;
  std::vector<std::string> errors_;  // an environment that threw: reported by ready()
  EpisodeStats stats_;
  bool stop_ = false;
  std::vector<std::thread> workers_;
};

}  // namespace grpo::env
