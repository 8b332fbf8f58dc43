// Built-in environments (env/environment.h): the Python code tool.
#include "grpo/env/environment.h"

#include <map>
#include <mutex>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "grpo/core/error.h"
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

std::mutex& registry_mutex() {
  static std::mutex m;
  return m;
}
std::map<std::string, EnvironmentFactory>& registry() {
  static std::map<std::string, EnvironmentFactory> r{
      {"code", [](const EnvConfig& c) { return std::make_unique<CodeTool>(c); }}};
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
