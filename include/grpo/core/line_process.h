// A child process spoken to in lines over its stdin and stdout (JSON lines): what reward plugins
// (reward/plugin.h) and external environments (env/environment.h) run. The process is `sh -c
// COMMAND` in its own process group; every read and write has a deadline; killing it kills the
// group. SIGPIPE is ignored process-wide once one is started, so a dead child makes writes fail
// instead of killing the trainer.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <string>

namespace grpo::core {

class LineProcess {
 public:
  using Clock = std::chrono::steady_clock;

  /// Starts `command`; `what` names it in errors (e.g. "reward plugin 'python3 r.py'").
  LineProcess(const std::string& command, std::string what);
  ~LineProcess();
  LineProcess(const LineProcess&) = delete;
  LineProcess& operator=(const LineProcess&) = delete;

  /// Writes `line` and a newline; throws grpo::Error naming the process on a timeout or a dead
  /// process.
  void write_line(const std::string& line, Clock::time_point deadline);
  /// The next line (without its newline); throws on a timeout, an exit, or a line over 1 MiB.
  std::string read_line(Clock::time_point deadline);
  /// Kills the process group now (also what the destructor does).
  void kill_now();
  bool alive() const { return pid_ > 0; }

  /// A deadline `seconds` from now.
  static Clock::time_point after(double seconds);

 private:
  int ms_left(Clock::time_point deadline) const;
  std::string what_;
  pid_t pid_ = -1;
  int in_ = -1, out_ = -1;  // our ends: write requests to in_, read replies from out_
  std::string buffer_;      // bytes read past the last newline
};

}  // namespace grpo::core
