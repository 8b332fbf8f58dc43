// The live progress line of a run on a terminal: one line per stage, redrawn in place, with
// step/total, a bar, elapsed time, a smoothed ETA and what the caller adds (tokens/s, reward,
// accuracy); evaluation and checkpointing say what they are doing once they take over a second.
// Log lines (spdlog's default logger) print above it. Off a terminal (CI, `tee`, Slurm logs)
// nothing of it is drawn and the caller prints its plain per-step lines as before: see live().
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <string>
#include <thread>

namespace grpo::core {

class Progress {
 public:
  /// The process's progress line (off until enable(true)).
  static Progress& instance();

  /// On: draws the line if stdout is a terminal (TERM not "dumb", or GRPO_PROGRESS=1 forces it), and
  /// routes spdlog's default logger through it so log lines land above the line. Off: stops drawing
  /// (a drawn line is finished with a newline) and gives the logger its stdout sink back.
  void enable(bool on);
  /// Whether the line is drawn; callers then leave out their per-step log lines.
  bool live() const;

  /// A new stage of `total` steps, `done` of them done before (a resumed run).
  void begin(const std::string& stage, int64_t total, int64_t done = 0);
  /// After a step: steps done, and what follows the timing on the line (e.g. "loss 0.2345").
  void step(int64_t done, const std::string& info);
  /// Finishes the stage's line; it stays on screen.
  void end();

  /// What the run does between steps, shown once it has taken a second, until the guard ends.
  class Activity {
   public:
    explicit Activity(std::string what);
    ~Activity();
    Activity(const Activity&) = delete;
    Activity& operator=(const Activity&) = delete;
  };

  /// For the log sink and the ticker, holding mutex(): draw the current line again (no newline),
  /// or erase it from the screen.
  void redraw_locked();
  void clear_locked();
  std::mutex& mutex() { return mutex_; }

  ~Progress();

 private:
  Progress() = default;
  using Clock = std::chrono::steady_clock;
  std::string line_locked() const;
  void ticker();

  mutable std::mutex mutex_;
  std::condition_variable wake_;
  std::thread thread_;
  bool live_ = false, stop_ = false, shown_ = false;
  std::string stage_, info_, activity_;
  int64_t total_ = 0, done_ = 0, first_done_ = 0;
  double step_seconds_ = -1;  // exponential moving average of a step's time
  Clock::time_point stage_start_, last_step_, activity_start_;
};

}  // namespace grpo::core
