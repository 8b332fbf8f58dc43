// One environment episode per rollout row, stepped on worker threads (env/episodes.h).
#include "grpo/env/episodes.h"

#include <algorithm>

#include <fmt/format.h>

#include "grpo/core/error.h"
#include "grpo/text/tokenizer.h"

namespace grpo::env {

Episodes::Episodes(const EnvConfig& config, const text::Tokenizer& tokenizer,
                   const std::vector<std::pair<std::string, std::string>>& tasks, text::ObservationFrame frame)
    : config_(config), tok_(tokenizer), frame_(std::move(frame)) {
  GRPO_CHECK(!config.turn_end.empty(), "env.turn_end: the text that ends a turn must not be empty");
  GRPO_CHECK(config.workers >= 1, "env.workers: expected at least 1, found {}", config.workers);
  for (const auto& [q, a] : tasks) {
    envs_.push_back(make_environment(config));
    envs_.back()->reset(q, a);
  }
  turn_start_.assign(tasks.size(), 0);
  turns_.assign(tasks.size(), 0);
  row_tool_calls_.assign(tasks.size(), 0);
  stats_.episodes = int64_t(tasks.size());
  // enough trailing tokens to hold the marker even if every token is one byte
  marker_tokens_ = int64_t(config.turn_end.size()) + 1;
  for (int64_t i = 0; i < config.workers; ++i) workers_.emplace_back([this] { work(); });
}

Episodes::~Episodes() {
  {
    std::lock_guard<std::mutex> g(mutex_);
    stop_ = true;
  }
  jobs_cv_.notify_all();
  for (auto& t : workers_) t.join();
}

bool Episodes::ends_turn(int64_t row, const std::vector<int64_t>& response) {
  const int64_t n = int64_t(response.size()) - turn_start_[size_t(row)];
  if (n <= 0) return false;
  const int64_t k = std::min(n, marker_tokens_);
  const std::string tail = tok_.decode(std::vector<int64_t>(response.end() - k, response.end()));
  return tail.size() >= config_.turn_end.size() &&
         tail.compare(tail.size() - config_.turn_end.size(), config_.turn_end.size(), config_.turn_end) == 0;
}

void Episodes::submit(int64_t row, const std::vector<int64_t>& response) {
  GRPO_ASSERT(turn_start_[size_t(row)] <= int64_t(response.size()));
  const auto start = response.begin() + turn_start_[size_t(row)];
  Job job{row, tok_.decode(std::vector<int64_t>(start, response.end()))};
  turn_start_[size_t(row)] = int64_t(response.size());  // + the observation's ids, when ready() hands them over
  {
    std::lock_guard<std::mutex> g(mutex_);
    ++stats_.turns;
    if (++turns_[size_t(row)] > config_.max_turns) {  // the limit: the episode ends here, cut short
      ++stats_.truncated;
      done_.push_back(Reply{row, {}, false, true});
      done_cv_.notify_all();
      return;
    }
    jobs_.push_back(std::move(job));
  }
  jobs_cv_.notify_one();
}

void Episodes::work() {
  while (true) {
    Job job;
    {
      std::unique_lock<std::mutex> g(mutex_);
      jobs_cv_.wait(g, [&] { return stop_ || !jobs_.empty(); });
      if (stop_) return;
      job = std::move(jobs_.front());
      jobs_.pop_front();
    }
    Reply r{job.row, {}, false, false};
    std::string error;
    Observation o;
    try {
      o = envs_[size_t(job.row)]->step(job.turn);
      // tokenized once, here (with the chat template's turn markers around it, env.observation_role):
      // these are the ids the model conditions on
      r.ids = tok_.encode(frame_.before + o.text + frame_.after);
      r.done = o.done;
    } catch (const std::exception& e) {
      error = fmt::format("environment '{}' failed on row {}: {}", config_.name, job.row, e.what());
    }
    std::lock_guard<std::mutex> g(mutex_);
    if (!error.empty()) {
      errors_.push_back(error);
    } else {
      stats_.tool_calls += o.tool_call;
      stats_.with_tool += o.tool_call && row_tool_calls_[size_t(job.row)] == 0;
      row_tool_calls_[size_t(job.row)] += o.tool_call;
      stats_.tool_errors += o.tool_error;
      stats_.tool_timeouts += o.tool_timeout;
      stats_.env_seconds += o.seconds;
      stats_.observation_tokens += int64_t(r.ids.size());
    }
    done_.push_back(std::move(r));
    done_cv_.notify_all();
  }
}

std::vector<rollout::TurnHandler::Reply> Episodes::ready(bool wait) {
  std::unique_lock<std::mutex> g(mutex_);
  if (wait) done_cv_.wait(g, [&] { return !done_.empty(); });
  GRPO_CHECK(errors_.empty(), "{}", errors_.front());
  std::vector<Reply> out;
  out.swap(done_);
  for (const auto& r : out) turn_start_[size_t(r.row)] += int64_t(r.ids.size());  // the next turn starts after it
  return out;
}

int64_t Episodes::tool_calls(int64_t row) const {
  std::lock_guard<std::mutex> g(mutex_);
  return row_tool_calls_.at(size_t(row));
}

EpisodeStats Episodes::stats() const {
  std::lock_guard<std::mutex> g(mutex_);
  return stats_;
}

}  // namespace grpo::env
