// What the stages of one training run share (private to src/train/): the config, the process
// groups, the device, the tokenizer and questions, the policy and its reference, the optimizer,
// the rewards, the run directory and the counters. The trainer (trainer.cpp) builds it and
// composes the stages, each in its own file:
//   supervised.cpp   the pretrain stage (pretrain_step) and the SFT stage (sft_step)
//   evaluation.cpp   held-out evaluation
//   grpo_step.cpp    one GRPO rollout step: collect groups -> advantages -> policy update
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <ATen/core/Tensor.h>
#include <c10/core/Device.h>
#include <nlohmann/json_fwd.hpp>

#include "grpo/core/rng.h"
#include "grpo/data/arithmetic.h"
#include "grpo/data/jsonl_dataset.h"
#include "grpo/dist/grad_reducer.h"
#include "grpo/dist/parallel.h"
#include "grpo/model/logprob.h"
#include "grpo/model/transformer.h"
#include "grpo/reward/pool.h"
#include "grpo/reward/reward.h"
#include "grpo/text/tokenizer.h"
#include "grpo/train/config.h"
#include "grpo/train/micro_batch.h"
#include "grpo/train/optimizer.h"
#include "grpo/train/run_dir.h"
#include "grpo/train/trainer.h"

namespace grpo::train {

using Clock = std::chrono::steady_clock;
/// Seconds since `t` (the stages' timings in metrics.jsonl and the log).
inline double seconds_since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

/// A question and its ground truth, from the built-in task or a JSONL file.
struct Item {
  std::string question, answer;
  std::string origin;  // "file:line" for dataset items (error messages)
};

/// The run's questions: the built-in task (data.train empty) or JSONL files, and the SFT
/// demonstrations; prompts are encoded as everywhere else (text/prompt.h).
class Questions {
 public:
  Questions(const Config& cfg, const text::Tokenizer& tok);
  Item train(int64_t position, core::Stream stream = core::Stream::kTrainData) const;
  int64_t eval_count() const;
  Item eval(int64_t i) const;
  /// Prompt token ids; a prompt that leaves no room for the response is an error naming its line.
  std::vector<int64_t> prompt_ids(const Item& item) const;
  /// The prompt of `question` formatted with `system` as the system message (an SFT line's own).
  std::vector<int64_t> prompt_ids_with_system(const std::string& question, const std::string& system) const;

  data::ArithmeticTask* task() const { return task_.get(); }
  /// How multi-turn observations are framed (env.observation_role; empty: appended as they are).
  const text::ObservationFrame& observation_frame() const { return frame_; }
  const data::JsonlDataset* train_data() const { return train_data_.get(); }
  const data::JsonlDataset& sft_data() const { return *sft_data_; }

 private:
  const Config& cfg_;
  const text::Tokenizer& tok_;
  std::unique_ptr<data::ArithmeticTask> task_;
  text::ObservationFrame frame_;
  std::unique_ptr<data::JsonlDataset> train_data_, eval_data_, sft_data_;
};

struct RolloutQueue;  // grpo_step.cpp: rollout steps generated ahead of training (grpo.max_staleness)

struct RolloutLink;  // rollout_ranks.cpp: the channels between trainers and rollout ranks

struct Session {
  Config cfg;
  // With parallel.rollout_ranks R > 0 the job's processes split in two roles: the last R ranks
  // generate (rollout ranks), the others train; `world` is then this process's role (its ranks'
  // sub-group) and `job` every process. Without, `world` is every process and `job` is null.
  std::unique_ptr<dist::Comm> job;
  std::unique_ptr<dist::Comm> world;  // the processes of this role (one process: a no-op)
  bool rollout_rank = false;          // this process generates for trainers elsewhere
  std::shared_ptr<RolloutLink> rollout_link;
  dist::Groups groups;                // its data-, tensor- and expert-parallel groups
  dist::Comm* comm = nullptr;         // the data-parallel group: ranks with different data
  // The models live on `device`; batches, rewards, advantages and the loss's bookkeeping stay on
  // the CPU. Inputs go to the device at each model call and log-probs come back (a differentiable
  // copy: backward sends the gradient the other way), so only [rows, tokens] tensors cross.
  at::Device device{at::kCPU};
  std::unique_ptr<text::Tokenizer> tok;
  std::unique_ptr<Questions> questions;
  std::unique_ptr<reward::CombinedReward> rewards;
  std::unique_ptr<reward::RewardPool> reward_pool;  // scores while the rollout generates
  std::unique_ptr<reward::RewardFn> accuracy_fn;    // held-out correctness
  std::unique_ptr<model::Transformer> policy, ref;
  std::unique_ptr<Optimizer> optimizer;
  std::unique_ptr<RunDir> run_dir;
  TrainState st;
  int64_t grpo_first_step = 0;                // where this process's GRPO stage began (a pipeline barrier)
  std::shared_ptr<RolloutQueue> rollout_queue;  // made by the first grpo_step
  std::unique_ptr<model::Transformer> rollout_policy;  // grpo.overlap_generation: the generating copy

  bool leader() const { return !rollout_rank && world->rank() == 0; }  // rank 0 of the job: logs, writes
  model::Parallel model_parallel() const { return {groups.tp.get(), groups.ep.get()}; }
  at::Tensor on_device(const at::Tensor& t) const;
  static model::TokenLogProbs on_cpu(model::TokenLogProbs r);
  /// The learning rate of GRPO optimizer step `step` (train/optimizer.h scheduled_lr).
  double lr_at(int64_t step) const;

  // ---- data parallel
  /// Element-wise sum (or max) of `v` over the data-parallel ranks, in place.
  void reduce(std::vector<double>& v, bool max);
  /// True on every rank when `local` is true on any (collective over the whole job): a signal
  /// delivered to one rank stops all of them at the same step.
  bool any_rank(bool local);
  /// Every rank's gradient becomes the sum over ranks, all-reduced in buckets of ~16 MB: routed
  /// experts over the ranks holding the same experts, everything else over the data-parallel
  /// group. The buckets start during the backward pass arm_gradient_overlap() precedes (the last
  /// micro-batch's), as their gradients become ready (dist/grad_reducer.h).
  void all_reduce_gradients();
  void arm_gradient_overlap();
  /// Micro-batches of `rows` (train/micro_batch.h); under expert parallelism as many as the
  /// busiest rank has, some empty (lock step).
  std::vector<at::Tensor> micro_batches(const at::Tensor& rows, const ResponseBatch& s);

  // ---- MoE balancing and metrics
  /// The loss plus the policy's balance loss; `share`: this rank's fraction of the batch.
  at::Tensor with_balance_loss(const at::Tensor& loss, double share = 1.0);
  /// After every optimizer step: the expert load of the whole batch, the router-bias update.
  void after_optimizer_step();
  /// One line of metrics.jsonl, with the MoE load statistics of the step; returns the mean
  /// max/mean expert load (0 for a dense model).
  double write_metrics(nlohmann::json& j);

  // ---- divergence guard
  /// True when the update about to be made is finite: `loss` and `grad_norm` (the same on every
  /// rank). Otherwise the gradients are dropped, the caller skips the optimizer step, and more
  /// than optim.max_bad_steps such steps in a row throw an error naming `where`.
  bool update_is_finite(double loss, double grad_norm, const std::string& where);
  /// After scoring a rollout step: `failed` of `scored` samples (over all ranks) had a reward
  /// function fail. More than reward.max_failed_steps steps in a row in which every sample failed
  /// (a missing plugin, a broken reward) throw an error with `example`, one of the failures.
  void check_rewards(int64_t failed, int64_t scored, const std::string& example);

 private:
  int64_t bad_steps_ = 0;  // non-finite updates skipped in a row
  int64_t failed_reward_steps_ = 0;  // rollout steps in a row in which every reward failed
  std::unique_ptr<dist::GradientReducer> dense_reducer_, expert_reducer_;
  const model::Transformer* reducers_of_ = nullptr;
  std::map<int64_t, at::Tensor> step_load_;  // per-layer expert load over the stage step
  void ensure_reducers();
};

// The stages (each file says what it does).
void pretrain_step(Session& s);  // supervised.cpp
void sft_step(Session& s);       // supervised.cpp
EvalResult evaluate(Session& s);                             // evaluation.cpp
void evaluate_and_log(Session& s, const std::string& stage); // evaluation.cpp
void grpo_step(Session& s);      // grpo_step.cpp

}  // namespace grpo::train
