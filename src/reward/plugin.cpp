#include "grpo/reward/plugin.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <mutex>
#include <vector>

#include <nlohmann/json.hpp>

#include "grpo/core/error.h"

namespace grpo::reward {
namespace {

using Clock = std::chrono::steady_clock;

struct Child {
  pid_t pid = -1;
  int in = -1, out = -1;  // our ends: write requests to `in`, read replies from `out`
  std::string buffer;     // bytes read past the last newline
  ~Child() { kill_now(); }
  void kill_now() {
    if (pid > 0) {
      ::kill(-pid, SIGKILL);  // the whole process group
      ::kill(pid, SIGKILL);
      int st = 0;
      ::waitpid(pid, &st, 0);
      pid = -1;
    }
    if (in >= 0) ::close(in), in = -1;
    if (out >= 0) ::close(out), out = -1;
  }
};

std::unique_ptr<Child> spawn(const std::string& command) {
  int to_child[2], from_child[2];
  GRPO_CHECK(::pipe2(to_child, O_CLOEXEC) == 0 && ::pipe2(from_child, O_CLOEXEC) == 0,
             "reward plugin: pipe: {}", std::strerror(errno));
  pid_t pid = ::fork();
  GRPO_CHECK(pid >= 0, "reward plugin: fork: {}", std::strerror(errno));
  if (pid == 0) {  // child: its own process group, stdin/stdout on the pipes
    ::setpgid(0, 0);
    ::dup2(to_child[0], 0);
    ::dup2(from_child[1], 1);
    ::execl("/bin/sh", "sh", "-c", command.c_str(), static_cast<char*>(nullptr));
    _exit(127);
  }
  ::setpgid(pid, pid);
  ::close(to_child[0]);
  ::close(from_child[1]);
  auto c = std::make_unique<Child>();
  c->pid = pid;
  c->in = to_child[1];
  c->out = from_child[0];
  return c;
}

class ProcessReward : public RewardFn {
 public:
  ProcessReward(std::string command, double timeout) : command_(std::move(command)), timeout_(timeout) {
    // a dead plugin must not kill the trainer with SIGPIPE; writes then fail with EPIPE instead
    struct sigaction sa {};
    sa.sa_handler = SIG_IGN;
    ::sigaction(SIGPIPE, &sa, nullptr);
  }

  double score_sample(const Sample& s) const override {
    auto deadline = s.deadline != Clock::time_point::max()
                        ? s.deadline
                        : Clock::now() + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(timeout_));
    std::unique_ptr<Child> child = acquire();
    nlohmann::json req = {{"completion", s.completion}, {"answer", s.answer}, {"prompt", s.prompt},
                          {"response_tokens", s.response_tokens}, {"max_response_tokens", s.max_response_tokens}};
    for (auto& [k, v] : s.fields) req[k] = v;
    std::string line = req.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
    try {
      write_all(*child, line, deadline);
      std::string reply = read_line(*child, deadline);
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
  std::unique_ptr<Child> acquire() const {
    {
      std::lock_guard<std::mutex> g(mu_);
      if (!idle_.empty()) {
        auto c = std::move(idle_.back());
        idle_.pop_back();
        return c;
      }
    }
    return spawn(command_);
  }
  void release(std::unique_ptr<Child> c) const {
    std::lock_guard<std::mutex> g(mu_);
    idle_.push_back(std::move(c));
  }
  int ms_left(Clock::time_point deadline) const {
    auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
    return ms < 0 ? 0 : int(std::min<int64_t>(ms, 1 << 30));
  }
  void write_all(Child& c, const std::string& data, Clock::time_point deadline) const {
    size_t off = 0;
    while (off < data.size()) {
      pollfd p{c.in, POLLOUT, 0};
      int r = ::poll(&p, 1, ms_left(deadline));
      if (r == 0) fail("reward plugin '{}': timed out sending the sample", command_);
      if (r < 0 && errno == EINTR) continue;
      ssize_t n = ::write(c.in, data.data() + off, data.size() - off);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) fail("reward plugin '{}': the process is gone ({})", command_, std::strerror(errno));
      off += size_t(n);
    }
  }
  std::string read_line(Child& c, Clock::time_point deadline) const {
    for (;;) {
      auto nl = c.buffer.find('\n');
      if (nl != std::string::npos) {
        std::string line = c.buffer.substr(0, nl);
        c.buffer.erase(0, nl + 1);
        return line;
      }
      if (c.buffer.size() > (1u << 20)) fail("reward plugin '{}': a reply line over 1 MiB", command_);
      pollfd p{c.out, POLLIN, 0};
      int r = ::poll(&p, 1, ms_left(deadline));
      if (r == 0) fail("reward plugin '{}': no reply before the deadline", command_);
      if (r < 0 && errno == EINTR) continue;
      char buf[4096];
      ssize_t n = ::read(c.out, buf, sizeof buf);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) fail("reward plugin '{}': the process exited without replying", command_);
      c.buffer.append(buf, size_t(n));
    }
  }

  std::string command_;
  double timeout_;
  mutable std::mutex mu_;
  mutable std::vector<std::unique_ptr<Child>> idle_;
};

}  // namespace

std::unique_ptr<RewardFn> make_process_reward(const std::string& command, double default_timeout_seconds) {
  GRPO_CHECK(!command.empty(), "reward plugin: empty command");
  return std::make_unique<ProcessReward>(command, default_timeout_seconds);
}

}  // namespace grpo::reward
