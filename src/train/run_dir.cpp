// The run directory (train/run_dir.h).
#include "grpo/train/run_dir.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <functional>
#include <vector>

#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "grpo/core/error.h"
#include "grpo/io/tfevents.h"

namespace fs = std::filesystem;

namespace grpo::train {
namespace {

// Keeps the lines of a JSONL file for which keep(json) is true.
void filter_jsonl(const fs::path& path, const std::function<bool(const nlohmann::json&)>& keep) {
  if (!fs::exists(path)) return;
  std::ifstream in(path);
  std::string line, kept;
  while (std::getline(in, line)) {
    if (line.empty()) continue;
    auto j = nlohmann::json::parse(line, nullptr, false);
    if (!j.is_discarded() && keep(j)) kept += line + "\n";
  }
  in.close();
  std::ofstream out(path, std::ios::trunc);
  out << kept;
}

double unix_seconds() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

std::vector<nlohmann::json> read_lines(const fs::path& path) {
  std::vector<nlohmann::json> out;
  std::ifstream in(path);
  for (std::string line; std::getline(in, line);) {
    auto j = nlohmann::json::parse(line, nullptr, false);
    if (!j.is_discarded() && j.is_object()) out.push_back(std::move(j));
  }
  return out;
}

// A metrics or eval line with its wall time: the one it has (a line written before), else now.
nlohmann::json stamped(const nlohmann::json& j) {
  nlohmann::json out = j;
  if (!out.contains("wall_time")) out["wall_time"] = unix_seconds();
  return out;
}

void write_scalars(io::TfEventWriter& tb, const nlohmann::json& j, bool eval) {
  const int64_t step = j.value("step", int64_t(0));
  const double wall = j.value("wall_time", unix_seconds());
  for (const auto& [tag, v] : tensorboard_scalars(j, eval)) tb.scalar(tag, step, v, wall);
}

}  // namespace

RunDir::RunDir(std::string path, bool writer) : path_(std::move(path)), writer_(writer) {}

std::string RunDir::checkpoints_dir() const { return (fs::path(path_) / "checkpoints").string(); }
std::string RunDir::metrics_path() const { return (fs::path(path_) / "metrics.jsonl").string(); }
std::string RunDir::eval_path() const { return (fs::path(path_) / "eval.jsonl").string(); }

void RunDir::create() const { fs::create_directories(path_); }

RunDir::~RunDir() { unlock(); }

void RunDir::lock() {
  if (!writer_ || lock_fd_ >= 0) return;
  const std::string path = (fs::path(path_) / ".lock").string();
  const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  GRPO_CHECK(fd >= 0, "cannot open '{}': {}", path, std::strerror(errno));
  if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
    const int err = errno;
    char buf[32] = {0};
    const auto n = ::pread(fd, buf, sizeof(buf) - 1, 0);
    ::close(fd);
    std::string holder = n > 0 ? std::string(buf, size_t(n)) : std::string("?");
    while (!holder.empty() && (holder.back() == '\n' || holder.back() == ' ')) holder.pop_back();
    fail("run.dir '{}' is in use by another run (process {}; {}): wait for it to finish or choose another run.dir",
         path_, holder, err == EWOULDBLOCK ? std::string("it holds ") + path : std::strerror(err));
  }
  const std::string pid = std::to_string(::getpid()) + "\n";
  if (::ftruncate(fd, 0) != 0 || ::pwrite(fd, pid.data(), pid.size(), 0) != ssize_t(pid.size()))
    spdlog::warn("cannot write the process id into {}: {}", path, std::strerror(errno));
  lock_fd_ = fd;
}

void RunDir::unlock() {
  if (lock_fd_ < 0) return;
  ::flock(lock_fd_, LOCK_UN);
  ::close(lock_fd_);
  lock_fd_ = -1;
}

void RunDir::start_fresh() const {
  if (!writer_) return;
  fs::remove(metrics_path());
  fs::remove(eval_path());
}

void RunDir::trim_to(const TrainState& s) const {
  if (!writer_) return;
  filter_jsonl(metrics_path(), [&](const nlohmann::json& j) {
    if (j.value("stage", "") == "pretrain") return j.value("step", 0) <= s.pretrain_step;
    if (j.value("stage", "") == "sft") return j.value("step", 0) <= s.sft_step;
    return s.stage == "grpo" && j.value("step", 0) <= s.rollout_step;
  });
  filter_jsonl(eval_path(), [&](const nlohmann::json& j) {
    return s.stage == "grpo" && j.value("step", 0) <= s.rollout_step;
  });
}

void RunDir::open(const std::string& yaml, bool tensorboard) {
  if (!writer_) return;  // rank 0 writes the run directory; the others hold the same state
  {
    std::ofstream c(fs::path(path_) / "config.yaml", std::ios::trunc);
    c << "# resolved configuration of this run (grpo_train --config config.yaml reproduces it)\n" << yaml;
  }
  metrics_.open(metrics_path(), std::ios::app);
  evals_.open(eval_path(), std::ios::app);
  const fs::path tb_dir = fs::path(path_) / "tb";
  std::error_code ec;
  fs::remove_all(tb_dir, ec);  // rewritten from the two files: what a resume trimmed is gone from both
  GRPO_CHECK(!ec, "cannot remove the TensorBoard directory '{}' to rewrite it: {}", tb_dir.string(), ec.message());
  tb_.reset();
  if (!tensorboard) return;
  const double now = unix_seconds();
  tb_ = std::make_unique<io::TfEventWriter>(tb_dir.string(), now);
  int64_t step = 0;
  for (const auto& j : read_lines(metrics_path())) {
    write_scalars(*tb_, j, false);
    if (j.value("stage", "") == "grpo") step = std::max(step, j.value("step", int64_t(0)));
  }
  for (const auto& j : read_lines(eval_path())) write_scalars(*tb_, j, true);
  tb_->text("config", step, "```yaml\n" + yaml + "```", now);
  tb_->text("command_line", step, "`" + process_command_line() + "`", now);
}

void RunDir::write_metrics(const nlohmann::json& j) {
  if (!writer_) return;
  const auto line = stamped(j);
  metrics_ << line.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) << "\n" << std::flush;
  if (tb_) write_scalars(*tb_, line, false);
}
void RunDir::write_eval(const nlohmann::json& j) {
  if (!writer_) return;
  const auto line = stamped(j);
  evals_ << line.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) << "\n" << std::flush;
  if (tb_) write_scalars(*tb_, line, true);
}

std::vector<std::pair<std::string, double>> tensorboard_scalars(const nlohmann::json& j, bool eval) {
  std::vector<std::pair<std::string, double>> out;
  const std::string stage = j.value("stage", "");
  const bool grpo = !eval && (stage == "grpo" || stage.empty());
  const std::string section = eval ? "eval" : grpo ? "train" : stage;
  for (const auto& [k, v] : j.items()) {
    if (k == "step" || k == "wall_time") continue;
    if (v.is_number()) {
      std::string tag = section + "/" + k;
      if (grpo && k.rfind("time_", 0) == 0) tag = "time/" + k.substr(5);
      if (grpo && k.rfind("moe_", 0) == 0) tag = "moe/" + k.substr(4);
      out.emplace_back(tag, v.get<double>());
    } else if (grpo && k == "moe" && v.is_object()) {
      for (const auto& [layer, stats] : v.items())
        for (const char* stat : {"max_over_mean", "min_over_mean"})
          if (stats.is_object() && stats.contains(stat) && stats[stat].is_number())
            out.emplace_back("moe/" + layer + "/" + stat, stats[stat].get<double>());
    }
  }
  return out;
}

std::string process_command_line() {
  std::ifstream in("/proc/self/cmdline", std::ios::binary);
  std::string all((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>()), out, arg;
  auto quoted = [](const std::string& a) {
    if (!a.empty() && a.find_first_not_of("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-./=:,+@%") ==
                          std::string::npos)
      return a;
    std::string q = "'";
    for (char c : a) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
    return q + "'";
  };
  for (char c : all) {
    if (c != '\0') {
      arg += c;
      continue;
    }
    out += (out.empty() ? "" : " ") + quoted(arg);
    arg.clear();
  }
  return out;
}

void RunDir::record_config_changes(const std::string& checkpoint, const TrainState& s,
                                   const std::vector<core::ConfigChange>& changes) const {
  if (!writer_ || changes.empty()) return;
  const auto path = fs::path(path_) / "config_changes.jsonl";
  std::ofstream out(path, std::ios::app);
  for (const auto& c : changes)
    out << nlohmann::json{{"checkpoint", checkpoint}, {"stage", s.stage}, {"pretrain_step", s.pretrain_step},
                          {"sft_step", s.sft_step}, {"rollout_step", s.rollout_step}, {"key", c.key},
                          {"before", c.before}, {"after", c.after}}.dump()
        << "\n";
  out.flush();
  GRPO_CHECK(out.good(), "error while writing '{}': {}", path.string(), std::strerror(errno));
}

std::optional<std::string> RunDir::latest_checkpoint() const { return train::latest_checkpoint(checkpoints_dir()); }

std::string RunDir::save(const std::string& tag, const Checkpoint& ck, int64_t keep) const {
  return save_checkpoint(checkpoints_dir(), tag, ck, keep);
}

void RunDir::summarize() const {
  std::ifstream in(eval_path());
  std::vector<nlohmann::json> rows;
  for (std::string line; std::getline(in, line);) {
    auto j = nlohmann::json::parse(line, nullptr, false);
    if (!j.is_discarded()) rows.push_back(j);
  }
  if (rows.size() < 2) return;
  double a = rows.front().value("accuracy_greedy", 0.0), b = rows.back().value("accuracy_greedy", 0.0);
  spdlog::info("held-out greedy accuracy {:.3f} at the start of GRPO -> {:.3f} at rollout step {} "
               "({:+.1f} points); curves in {}", a, b, rows.back().value("step", 0), 100 * (b - a),
               metrics_path());
}

std::string resolve_checkpoint(const std::string& dir, const std::string& key) {
  if (is_checkpoint(dir)) return dir;
  auto latest = train::latest_checkpoint((fs::path(dir) / "checkpoints").string());
  GRPO_CHECK(latest, "{} = {}: neither a grpo checkpoint (manifest.json) nor a run directory with checkpoints",
             key, dir);
  return *latest;
}

}  // namespace grpo::train
