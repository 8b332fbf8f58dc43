// The run directory and everything a run writes into it, in one place:
//
//   <run>/config.yaml        the resolved configuration (grpo_train --config config.yaml reproduces it)
//   <run>/metrics.jsonl      one JSON object per optimizer step of the supervised stages and per
//                            GRPO rollout step (the metrics sink)
//   <run>/eval.jsonl         one JSON object per held-out evaluation (the eval sink)
//   <run>/checkpoints/       step-XXXXXX/ checkpoints and `latest` (train/checkpoint.h)
//   <run>/config_changes.jsonl  every config key changed on a resume: when, from what, to what
//   <run>/tb/events.out.tfevents.*  the metrics and eval values as TensorBoard scalars (metrics.tensorboard)
//
// Only the writer (rank 0 of a multi-process job) touches files; every rank may call every method.
#pragma once

#include <cstdint>
#include <fstream>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "grpo/core/config.h"
#include "grpo/train/checkpoint.h"

namespace grpo::io {
class TfEventWriter;
}

namespace grpo::train {

class RunDir {
 public:
  RunDir(std::string path, bool writer);
  ~RunDir();
  RunDir(const RunDir&) = delete;
  RunDir& operator=(const RunDir&) = delete;

  const std::string& path() const { return path_; }
  std::string checkpoints_dir() const;
  std::string metrics_path() const;
  std::string eval_path() const;

  /// Creates the directory (every rank).
  void create() const;
  /// The writer takes <run>/.lock (an exclusive flock, with its process id in it) for as long as
  /// it runs: a second run on the same directory fails at once, naming the first one's process.
  void lock();
  void unlock();
  /// A run starting over: the metrics and eval files of an earlier run are removed.
  void start_fresh() const;
  /// A run resuming from `s`: drops what an interrupted run wrote after that checkpoint.
  void trim_to(const TrainState& s) const;
  /// Writes config.yaml (`yaml`: the resolved config) and opens the sinks for appending. With
  /// `tensorboard`, tb/ is rewritten from metrics.jsonl and eval.jsonl as they are now (after
  /// trim_to on a resume: no step twice), then the config and the command line as text.
  void open(const std::string& yaml, bool tensorboard = false);

  /// One line of metrics.jsonl / eval.jsonl (flushed), with a `wall_time` (Unix seconds) added;
  /// and its TensorBoard scalars.
  void write_metrics(const nlohmann::json& j);
  void write_eval(const nlohmann::json& j);

  /// Appends one line per changed key to config_changes.jsonl (the checkpoint resumed from, its
  /// stage and steps, the key, its value before and after).
  void record_config_changes(const std::string& checkpoint, const TrainState& s,
                             const std::vector<core::ConfigChange>& changes) const;

  /// The newest checkpoint of this run, if any.
  std::optional<std::string> latest_checkpoint() const;
  /// Saves `ck` as checkpoints/step-<tag>, keeping the newest `keep`; returns its directory.
  std::string save(const std::string& tag, const Checkpoint& ck, int64_t keep) const;

  /// One line on what GRPO achieved, from eval.jsonl: the start of GRPO vs the latest evaluation.
  void summarize() const;

 private:
  std::string path_;
  bool writer_;
  std::ofstream metrics_, evals_;
  std::unique_ptr<io::TfEventWriter> tb_;
  int lock_fd_ = -1;
};

/// The TensorBoard scalars (tag, value) of one metrics.jsonl line (`eval` false) or eval.jsonl line:
/// every numeric field, by section. GRPO lines: time_X -> time/X, moe_X -> moe/X, the per-layer
/// load ratios -> moe/layer_N/max_over_mean and min_over_mean, anything else -> train/<field>;
/// pretrain and SFT lines -> pretrain/<field>, sft/<field>; eval lines -> eval/<field>. `step`
/// (the x axis) and `wall_time` are not scalars; strings, booleans and arrays are left out.
std::vector<std::pair<std::string, double>> tensorboard_scalars(const nlohmann::json& j, bool eval);

/// This process's command line, its arguments quoted where the shell would need it.
std::string process_command_line();

/// A checkpoint directory, or the newest checkpoint of a run directory; errors name `key`
/// (the config key that gave `dir`).
std::string resolve_checkpoint(const std::string& dir, const std::string& key);

}  // namespace grpo::train
