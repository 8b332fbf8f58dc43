#include "grpo/reward/pool.h"

#include <fmt/format.h>

#include "grpo/core/error.h"

namespace grpo::reward {

RewardPool::RewardPool(const CombinedReward& reward, int workers, double budget_seconds, double failure_value)
    : reward_(reward), budget_(budget_seconds), failure_value_(failure_value) {
  GRPO_CHECK(workers >= 1, "reward pool: at least one worker needed, found {}", workers);
  for (int i = 0; i < workers; ++i) threads_.emplace_back([this] { work(); });
}

RewardPool::~RewardPool() {
  {
    std::lock_guard<std::mutex> g(mu_);
    stop_ = true;
  }
  cv_work_.notify_all();
  for (auto& t : threads_) t.join();
}

void RewardPool::submit(int64_t index, Sample sample) {
  sample.deadline = std::chrono::steady_clock::now() +
                    std::chrono::duration_cast<std::chrono::steady_clock::duration>(std::chrono::duration<double>(budget_));
  {
    std::lock_guard<std::mutex> g(mu_);
    if (int64_t(results_.size()) <= index) {
      results_.resize(index + 1);
      done_.resize(index + 1, false);
    }
    queue_.emplace_back(index, std::move(sample));
    ++pending_;
  }
  cv_work_.notify_one();
}

void RewardPool::work() {
  for (;;) {
    std::pair<int64_t, Sample> job;
    {
      std::unique_lock<std::mutex> lk(mu_);
      cv_work_.wait(lk, [&] { return stop_ || !queue_.empty(); });
      if (stop_ && queue_.empty()) return;
      job = std::move(queue_.front());
      queue_.pop_front();
    }
    auto t0 = std::chrono::steady_clock::now();
    RewardResult r = reward_.score(job.second);  // never throws: failures are inside the result
    auto t1 = std::chrono::steady_clock::now();
    bool late = t1 > job.second.deadline;
    if (late) {  // past its budget: the failure value, whatever it computed
      for (auto& [name, v] : r.parts) v = failure_value_;
      r.total = reward_.total_of(r.parts);
      r.failed.push_back(fmt::format("timed out after {:.3f} s (budget {:.3f} s)",
                                     std::chrono::duration<double>(t1 - t0).count(), budget_));
    }
    {
      std::lock_guard<std::mutex> g(mu_);
      results_[job.first] = std::move(r);
      done_[job.first] = true;
      current_.busy_seconds += std::chrono::duration<double>(t1 - t0).count();
      current_.timeouts += late;
      --pending_;
    }
    cv_done_.notify_all();
  }
}

std::vector<RewardResult> RewardPool::wait(int64_t n) {
  std::unique_lock<std::mutex> lk(mu_);
  cv_done_.wait(lk, [&] { return pending_ == 0; });
  GRPO_CHECK(int64_t(results_.size()) == n, "reward pool: {} samples submitted, {} expected",
             results_.size(), n);
  for (int64_t i = 0; i < n; ++i) GRPO_CHECK(done_[i], "reward pool: sample {} was never submitted", i);
  std::vector<RewardResult> out;
  out.swap(results_);
  done_.clear();
  last_ = current_;
  current_ = Stats{};
  return out;
}

}  // namespace grpo::reward
