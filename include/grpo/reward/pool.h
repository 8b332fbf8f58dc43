// Reward scoring on worker threads, overlapped with generation: the rollout hands each completion
// over as soon as it finishes (GenerateRequest::on_finish), workers score it while the other rows
// are still generating, and the trainer waits only for what is left. Every sample has a time
// budget: its Sample::deadline is set at submission (rewards that check it stop early), and a
// score that comes back after the deadline counts as a timeout: it scores the failure value and
// is counted, like a reward that throws. Results are indexed by row, so the order of completion
// does not matter.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <mutex>
#include <thread>
#include <vector>

#include "grpo/reward/reward.h"

namespace grpo::reward {

class RewardPool {
 public:
  /// `workers` threads (at least 1); `budget_seconds` per sample.
  RewardPool(const CombinedReward& reward, int workers, double budget_seconds, double failure_value = 0.0);
  ~RewardPool();
  RewardPool(const RewardPool&) = delete;
  RewardPool& operator=(const RewardPool&) = delete;

  /// Queues sample `index` (0-based, unique until the next wait()). Thread-safe.
  void submit(int64_t index, Sample sample);
  /// Blocks until samples 0..n-1 are scored, returns them in index order and resets the pool.
  std::vector<RewardResult> wait(int64_t n);

  struct Stats {
    double busy_seconds = 0;  // time workers spent scoring since the last wait()
    int64_t timeouts = 0;
  };
  /// Stats of the batch the last wait() returned.
  Stats last_stats() const { return last_; }

 private:
  void work();
  const CombinedReward& reward_;
  double budget_, failure_value_;
  std::mutex mu_;
  std::condition_variable cv_work_, cv_done_;
  std::deque<std::pair<int64_t, Sample>> queue_;
  std::vector<RewardResult> results_;
  std::vector<bool> done_;
  int64_t pending_ = 0;
  Stats current_, last_;
  bool stop_ = false;
  std::vector<std::thread> threads_;
};

}  // namespace grpo::reward
