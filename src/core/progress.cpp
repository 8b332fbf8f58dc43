// The live progress line (core/progress.h).
#include "grpo/core/progress.h"

#include <sys/ioctl.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <vector>

#include <fmt/format.h>
#include <spdlog/sinks/sink.h>
#include <spdlog/spdlog.h>

namespace grpo::core {
namespace {

// Wraps the default logger's sinks: each log line first clears the progress line, then the line is
// drawn again below it.
class AboveTheLine : public spdlog::sinks::sink {
 public:
  explicit AboveTheLine(std::vector<spdlog::sink_ptr> inner) : inner_(std::move(inner)) {}
  void log(const spdlog::details::log_msg& msg) override {
    auto& p = Progress::instance();
    std::lock_guard<std::mutex> g(p.mutex());
    p.clear_locked();
    for (auto& s : inner_)
      if (s->should_log(msg.level)) s->log(msg), s->flush();
    p.redraw_locked();
  }
  void flush() override {
    for (auto& s : inner_) s->flush();
  }
  void set_pattern(const std::string& pattern) override {
    for (auto& s : inner_) s->set_pattern(pattern);
  }
  void set_formatter(std::unique_ptr<spdlog::formatter> f) override {
    for (auto& s : inner_) s->set_formatter(f->clone());
  }
  const std::vector<spdlog::sink_ptr>& inner() const { return inner_; }

 private:
  std::vector<spdlog::sink_ptr> inner_;
};

bool stdout_is_terminal() {
  if (const char* force = std::getenv("GRPO_PROGRESS")) return std::strcmp(force, "0") != 0;
  const char* term = std::getenv("TERM");
  return ::isatty(STDOUT_FILENO) == 1 && !(term && std::strcmp(term, "dumb") == 0);
}

int terminal_width() {
  winsize w{};
  if (::ioctl(STDOUT_FILENO, TIOCGWINSZ, &w) == 0 && w.ws_col >= 20) return w.ws_col;
  const char* columns = std::getenv("COLUMNS");
  const int n = columns ? std::atoi(columns) : 0;
  return n >= 20 ? n : 100;
}

std::string clock_text(double seconds) {
  if (!std::isfinite(seconds) || seconds < 0) return "?";
  const auto s = int64_t(seconds + 0.5);
  return s >= 3600 ? fmt::format("{}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60) : fmt::format("{}:{:02}", s / 60, s % 60);
}

// The first `width` characters (code points) of UTF-8 `s`.
std::string fit(const std::string& s, int width) {
  int n = 0;
  for (size_t i = 0; i < s.size(); ++i)
    if ((uint8_t(s[i]) & 0xc0) != 0x80 && n++ == width) return s.substr(0, i);
  return s;
}

}  // namespace

Progress& Progress::instance() {
  static Progress p;
  return p;
}

Progress::~Progress() {  // at exit: the logger may be gone already, so only the thread is stopped
  {
    std::lock_guard<std::mutex> g(mutex_);
    stop_ = true;
  }
  wake_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void Progress::enable(bool on) {
  auto logger = spdlog::default_logger();
  if (on && !live_ && stdout_is_terminal()) {
    {
      std::lock_guard<std::mutex> g(mutex_);
      live_ = true;
      stop_ = false;
    }
    auto sinks = logger->sinks();
    logger->sinks() = {std::make_shared<AboveTheLine>(sinks)};
    thread_ = std::thread([this] { ticker(); });
  } else if (!on && live_) {
    {
      std::lock_guard<std::mutex> g(mutex_);
      if (shown_ && stage_.empty()) clear_locked();
      if (shown_) std::fputs("\n", stdout);
      std::fflush(stdout);
      shown_ = false;
      stage_.clear();
      live_ = false;
      stop_ = true;
    }
    wake_.notify_all();
    if (thread_.joinable()) thread_.join();
    if (logger->sinks().size() == 1)
      if (auto* above = dynamic_cast<AboveTheLine*>(logger->sinks()[0].get())) {
        auto inner = above->inner();
        logger->sinks() = inner;
      }
  }
}

bool Progress::live() const {
  std::lock_guard<std::mutex> g(mutex_);
  return live_;
}

void Progress::begin(const std::string& stage, int64_t total, int64_t done) {
  std::lock_guard<std::mutex> g(mutex_);
  if (!live_) return;
  if (shown_ && stage_.empty()) clear_locked();  // an activity's line goes; a stage's stays
  if (shown_) std::fputs("\n", stdout);
  shown_ = false;
  stage_ = stage, total_ = total, done_ = first_done_ = done, info_.clear(), step_seconds_ = -1;
  stage_start_ = last_step_ = Clock::now();
  redraw_locked();
}

void Progress::step(int64_t done, const std::string& info) {
  std::lock_guard<std::mutex> g(mutex_);
  if (!live_ || stage_.empty()) return;
  const auto now = Clock::now();
  const double dt = std::chrono::duration<double>(now - last_step_).count() / double(std::max<int64_t>(1, done - done_));
  step_seconds_ = step_seconds_ < 0 ? dt : 0.8 * step_seconds_ + 0.2 * dt;  // smoothed, as ETAs should be
  last_step_ = now;
  done_ = done;
  info_ = info;
  redraw_locked();
}

void Progress::end() {
  std::lock_guard<std::mutex> g(mutex_);
  if (!live_ || stage_.empty()) return;
  redraw_locked();
  std::fputs("\n", stdout);
  std::fflush(stdout);
  shown_ = false;
  stage_.clear();
}

Progress::Activity::Activity(std::string what) {
  auto& p = instance();
  std::lock_guard<std::mutex> g(p.mutex_);
  p.activity_ = std::move(what);
  p.activity_start_ = Clock::now();
}

Progress::Activity::~Activity() {
  auto& p = instance();
  std::lock_guard<std::mutex> g(p.mutex_);
  p.activity_.clear();
  p.redraw_locked();
}

std::string Progress::line_locked() const {
  const auto now = Clock::now();
  const double busy = std::chrono::duration<double>(now - activity_start_).count();
  const std::string doing = activity_.empty() || busy < 1.0 ? "" : fmt::format("{}... {:.0f}s", activity_, busy);
  if (stage_.empty()) return doing;  // between stages: only a slow activity
  const double elapsed = std::chrono::duration<double>(now - stage_start_).count();
  const double frac = total_ > 0 ? std::min(1.0, double(done_) / double(total_)) : 1.0;
  constexpr int kBar = 24;
  const int full = int(frac * kBar + 1e-9);
  std::string bar;
  for (int i = 0; i < kBar; ++i) bar += i < full ? "\u2588" : "\u2591";
  const double eta = step_seconds_ < 0 ? NAN : double(total_ - done_) * step_seconds_;
  std::string s = fmt::format("{} {:>{}}/{} {} {:3.0f}% | {} elapsed, {} left", stage_, done_,
                              int(std::to_string(total_).size()), total_, bar, 100 * frac, clock_text(elapsed),
                              done_ >= total_ ? "0:00" : clock_text(eta));
  if (!info_.empty()) s += " | " + info_;
  if (!doing.empty()) s += " | " + doing;
  return s;
}

void Progress::redraw_locked() {
  if (!live_) return;
  const std::string line = fit(line_locked(), terminal_width() - 1);  // never wrap: \r returns to this row only
  if (line.empty()) {
    clear_locked();
    return;
  }
  std::fputs(("\r" + line + "\033[K").c_str(), stdout);
  std::fflush(stdout);
  shown_ = true;
}

void Progress::clear_locked() {
  if (!shown_) return;
  std::fputs("\r\033[K", stdout);
  shown_ = false;
}

void Progress::ticker() {
  std::unique_lock<std::mutex> g(mutex_);
  while (!stop_) {
    wake_.wait_for(g, std::chrono::milliseconds(250));
    if (!stop_) redraw_locked();  // elapsed time and a slow activity move on between steps
  }
}

}  // namespace grpo::core
