#include "grpo/reward/plugin.h"

#include <memory>
#include <mutex>
#include <vector>

#include <nlohmann/json.hpp>

#include "grpo/core/error.h"
#include "grpo/core/line_process.h"

namespace grpo::reward {
namespace {

using Clock = core::LineProcess::Clock;

class ProcessReward : public RewardFn {
 public:
  ProcessReward(std::string command, double timeout) : command_(std::move(command)), timeout_(timeout) {}

  double score_sample(const Sample& s) const override {
    auto deadline = s.deadline != Clock::time_point::max() ? s.deadline : core::LineProcess::after(timeout_);
    std::unique_ptr<core::LineProcess> child = acquire();
    nlohmann::json req = {{"completion", s.completion}, {"answer", s.answer}, {"prompt", s.prompt},
                          {"response_tokens", s.response_tokens}, {"max_response_tokens", s.max_response_tokens}};
    for (auto& [k, v] : s.fields) req[k] = v;
    try {
      child->write_line(req.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace), deadline);
      std::string reply = child->read_line(deadline);
      auto j = nlohmann::json::parse(reply, nullptr, false);
      if (j.is_discarded() || !j.is_object() || !j.contains("score") || !j["score"].is_number())
        fail("reward plugin '{}': expected a line {{\"score\": number}}, got '{}'", command_, reply.substr(0, 200));
      double score = j["score"].get<double>();
      release(std::move(child));
      return score;
    } catch (...) {
      child->kill_now();  // a timed-out, crashed or confused process is not reused
      throw;
    }
  }

 private:
  std::unique_ptr<core::LineProcess> acquire() const {
    {
      std::lock_guard<std::mutex> g(mu_);
      if (!idle_.empty()) {
        auto c = std::move(idle_.back());
        idle_.pop_back();
        return c;
      }
    }
    return std::make_unique<core::LineProcess>(command_, "reward plugin '" + command_ + "'");
  }
  void release(std::unique_ptr<core::LineProcess> c) const {
    std::lock_guard<std::mutex> g(mu_);
    idle_.push_back(std::move(c));
  }

  std::string command_;
  double timeout_;
  mutable std::mutex mu_;
  mutable std::vector<std::unique_ptr<core::LineProcess>> idle_;
};

}  // namespace

std::unique_ptr<RewardFn> make_process_reward(const std::string& command, double default_timeout_seconds) {
  GRPO_CHECK(!command.empty(), "reward plugin: empty command");
  return std::make_unique<ProcessReward>(command, default_timeout_seconds);
}

}  // namespace grpo::reward
