// Built-in environments (env/environment.h): the Python code tool and external processes.
#include "grpo/env/environment.h"

#include <atomic>
#include <chrono>
#include <map>
#include <mutex>

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <nlohmann/json.hpp>

#include "grpo/core/error.h"
#include "grpo/core/line_process.h"
#include "grpo/reward/sandbox.h"

namespace grpo::env {
namespace {

// The code tool: the model writes <code>...</code>; the block runs as a Python program in the
// sandbox (reward/sandbox.h: namespaces, rlimits, seccomp, a wall-clock limit), and its stdout and
// stderr, cut to max_output_chars, come back as <output>...</output>. Whatever the program does --
// loop, fork, flood its output, crash, call what seccomp forbids -- becomes text the model reads.
class CodeTool : public Environment {
 public:
  explicit CodeTool(const EnvConfig& c) : c_(c) {}
  void reset(const std::string&, const std::string&) override {}

  Observation step(const std::string& turn) override {
    Observation o;
    const size_t end = turn.size() >= c_.turn_end.size() ? turn.size() - c_.turn_end.size() : 0;
    const size_t open = turn.rfind(c_.code_open, end);
    if (open == std::string::npos) {
      o.text = c_.output_open + fmt::format("no {} block before {}: nothing was run", c_.code_open, c_.turn_end) +
               c_.output_close;
      return o;
    }
    const std::string code = turn.substr(open + c_.code_open.size(), end - open - c_.code_open.size());
    reward::SandboxLimits limits;
    limits.wall_seconds = c_.tool_seconds;
    limits.cpu_seconds = std::max<int64_t>(1, int64_t(c_.tool_seconds));
    limits.output_bytes = std::max<int64_t>(4096, 4 * c_.max_output_chars);
    const auto r = reward::run_sandboxed({"python3", "main.py"}, "", {{"main.py", code}}, limits);
    o.tool_call = true;
    o.seconds = r.wall_seconds;
    o.tool_timeout = r.timed_out;
    o.tool_error = r.timed_out || r.signal != 0 || r.exit_code != 0;
    std::string out = r.out + r.err;
    if (r.timed_out)
      out += fmt::format("\n[stopped: the program ran longer than {:g} s]", c_.tool_seconds);
    else if (r.signal != 0)
      out += fmt::format("\n[killed by signal {}]", r.signal);
    if (int64_t(out.size()) > c_.max_output_chars)
      out = out.substr(0, size_t(c_.max_output_chars)) +
            fmt::format("\n[output cut: {} more characters]", int64_t(out.size()) - c_.max_output_chars);
    while (!out.empty() && out.back() == '\n') out.pop_back();
    o.text = c_.output_open + out + c_.output_close;
    return o;
  }

 private:
  EnvConfig c_;
};

// The external environment: episodes of a user's process (env.command), JSON lines over its stdin
// and stdout. env.workers processes; episode N always talks to process N % workers, one message at
// a time. A late, malformed or missing reply kills that process: the episode ends with the error as
// its observation, the next message starts a fresh process, and an episode reset on the dead one
// ends when it next steps (its state is gone).
class ExternalPool {
 public:
  explicit ExternalPool(const EnvConfig& c) : c_(c), slots_(size_t(c.workers)) {}

  struct Reply {
    nlohmann::json j;
    std::string error;  // empty: j is the reply
    int64_t generation = 0;
  };
  // Sends `msg` for `episode` and returns the reply (or why there is none).
  Reply call(int64_t episode, const nlohmann::json& msg) {
    auto& slot = slots_[size_t(episode) % slots_.size()];
    std::lock_guard<std::mutex> g(slot.mutex);
    Reply r;
    try {
      if (!slot.process || !slot.process->alive()) {
        slot.process = std::make_unique<core::LineProcess>(c_.command, "environment '" + c_.command + "'");
        ++slot.generation;
      }
      r.generation = slot.generation;
      const auto deadline = core::LineProcess::after(c_.tool_seconds);
      slot.process->write_line(msg.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace), deadline);
      const std::string line = slot.process->read_line(deadline);
      r.j = nlohmann::json::parse(line, nullptr, false);
      if (r.j.is_discarded() || !r.j.is_object())
        fail("environment '{}': expected a JSON object, got '{}'", c_.command, line.substr(0, 200));
    } catch (const Error& e) {
      r.error = e.what();
      if (slot.process) slot.process->kill_now();
    }
    return r;
  }
  int64_t generation(int64_t episode) {
    auto& slot = slots_[size_t(episode) % slots_.size()];
    std::lock_guard<std::mutex> g(slot.mutex);
    return slot.process && slot.process->alive() ? slot.generation : -1;
  }

 private:
  struct Slot {
    std::mutex mutex;
    std::unique_ptr<core::LineProcess> process;
    int64_t generation = 0;
  };
  EnvConfig c_;
  std::vector<Slot> slots_;
};

std::shared_ptr<ExternalPool> external_pool(const EnvConfig& c) {  // one per command and size, kept for reuse
  static std::mutex m;
  static std::map<std::pair<std::string, int64_t>, std::shared_ptr<ExternalPool>> pools;
  std::lock_guard<std::mutex> g(m);
  auto& p = pools[{c.command, c.workers}];
  if (!p) p = std::make_shared<ExternalPool>(c);
  return p;
}

class External : public Environment {
 public:
  explicit External(const EnvConfig& c) : c_(c), pool_(external_pool(c)) {
    static std::atomic<int64_t> next{0};
    episode_ = next++;
  }
  void reset(const std::string& question, const std::string& answer) override {
    auto r = pool_->call(episode_, {{"type", "reset"}, {"episode", episode_}, {"question", question}, {"answer", answer}});
    error_ = r.error;
    generation_ = r.generation;
  }
  Observation step(const std::string& turn) override {
    Observation o;
    auto t0 = std::chrono::steady_clock::now();
    if (error_.empty() && pool_->generation(episode_) != generation_)
      error_ = fmt::format("environment '{}' was restarted after a failure, and this episode's state with it", c_.command);
    ExternalPool::Reply r;
    if (error_.empty()) r = pool_->call(episode_, {{"type", "step"}, {"episode", episode_}, {"turn", turn}});
    if (error_.empty()) error_ = r.error;
    if (error_.empty() && (!r.j.contains("observation") || !r.j["observation"].is_string()))
      error_ = fmt::format("environment '{}': a step reply needs \"observation\" (a string), got {}", c_.command,
                           r.j.dump().substr(0, 200));
    o.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (!error_.empty()) {  // the episode ends; the model sees why
      o.text = c_.output_open + "[environment error: " + error_ + "]" + c_.output_close;
      o.done = o.tool_call = o.tool_error = true;
      o.tool_timeout = error_.find("deadline") != std::string::npos;
      return o;
    }
    o.text = r.j["observation"].get<std::string>();
    o.done = r.j.value("done", false);
    o.tool_call = r.j.value("tool_call", true);
    o.tool_error = r.j.value("tool_error", false);
    return o;
  }

 private:
  EnvConfig c_;
  std::shared_ptr<ExternalPool> pool_;
  int64_t episode_ = 0, generation_ = 0;
  std::string error_;
};

std::mutex& registry_mutex() {
  static std::mutex m;
  return m;
}
std::map<std::string, EnvironmentFactory>& registry() {
  static std::map<std::string, EnvironmentFactory> r{
      {"code", [](const EnvConfig& c) { return std::make_unique<CodeTool>(c); }},
      {"external", [](const EnvConfig& c) -> std::unique_ptr<Environment> {
         GRPO_CHECK(!c.command.empty(), "env.name external needs env.command (the environment process)");
         return std::make_unique<External>(c);
       }}};
  return r;
}

}  // namespace

void register_environment(const std::string& name, EnvironmentFactory factory) {
  GRPO_CHECK(!name.empty() && factory, "register_environment: a name and a factory are needed");
  std::lock_guard<std::mutex> g(registry_mutex());
  registry()[name] = std::move(factory);
}

std::vector<std::string> environment_names() {
  std::lock_guard<std::mutex> g(registry_mutex());
  std::vector<std::string> out;
  for (const auto& [name, f] : registry()) out.push_back(name);
  return out;
}

std::unique_ptr<Environment> make_environment(const EnvConfig& config) {
  EnvironmentFactory f;
  {
    std::lock_guard<std::mutex> g(registry_mutex());
    auto it = registry().find(config.name);
    if (it != registry().end()) f = it->second;
  }
  if (!f) fail("env.name: unknown environment '{}'; expected one of: {}", config.name,
               fmt::join(environment_names(), ", "));
  return f(config);
}

}  // namespace grpo::env
