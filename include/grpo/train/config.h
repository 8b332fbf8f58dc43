// The complete configuration of a training run: one section per concern, each owned by its layer
// where it has one. Every key is documented in its visit() (and in `grpo_train --help`).
//
// Counters (DESIGN.md "Counting steps"): a *rollout step* is one generation round; an *optimizer
// step* is one parameter update on one mini-batch. Each schedule names the counter it uses.
#pragma once

#include <algorithm>
#include <map>
#include <string>
#include <vector>

#include "grpo/algo/grpo_loss.h"
#include "grpo/core/config.h"
#include "grpo/data/arithmetic.h"
#include "grpo/data/jsonl_dataset.h"
#include "grpo/env/environment.h"
#include "grpo/model/model_config.h"
#include "grpo/reward/reward.h"
#include "grpo/rollout/sampler.h"
#include "grpo/text/prompt.h"

namespace grpo::train {

struct RunConfig {
  std::string dir = "runs/demo";
  int64_t seed = 1;
  std::string resume = "auto";  // auto | never | path to a checkpoint directory
  int64_t threads = 0;          // 0 = OMP_NUM_THREADS or the CPUs available (core/device.h)
  int64_t log_every = 1;        // console line every N rollout steps (metrics.jsonl: every step)

  std::string init_from;        // a grpo checkpoint whose weights start a fresh run
  std::string device = "cpu";   // cpu | cuda | cuda:N
  bool allow_config_change = false;  // resuming with a changed config (see config_change_is_safe)
  bool profile = false;              // the step roofline (core/profile.h) at the end of the GRPO stage

  void visit(core::ConfigVisitor& v) {
    v.field("dir", dir, "run directory: config.yaml, metrics.jsonl, eval.jsonl, checkpoints/");
    v.field("seed", seed, "seed of model init, data order and sampling", core::at_least(0));
    v.field("resume", resume,
            "auto = continue from the run directory's latest checkpoint if there is one; never; "
            "or a checkpoint directory");
    v.field("threads", threads, "CPU threads for LibTorch; 0 = OMP_NUM_THREADS if set, else the CPUs this process may "
            "use (its affinity mask, bounded by a cgroup CPU quota), less those other processes kept busy during "
            "the previous step (measured between steps; a busy neighbour slows a step that keeps every core's "
            "thread several times). A fixed count keeps float rounding the same from run to run",
            core::at_least(0));
    v.field("log_every", log_every, "console line every N rollout steps", core::at_least(1));
    v.field("init_from", init_from, "a grpo checkpoint directory (or a run directory: its latest "
            "checkpoint) whose policy weights start this run -- how the stages of a multi-stage "
            "pipeline hand over; empty = model.path or a new model. Ignored when resuming");
    v.field("device", device, "where the models run: cpu, cuda (GPU local_rank of the launch), or cuda:N. "
            "Batches, rewards and bookkeeping stay on the CPU; the models' forward and backward run "
            "there. Several processes: with cuda each takes the GPU of its local rank (parallel.backend "
            "nccl); with cuda:N they share GPU N (parallel.backend gloo)");
    v.field("allow_config_change", allow_config_change, "resuming with a config that differs from the "
            "checkpoint's in a key that changes the training (anything but run, eval, checkpoint and "
            "parallel settings, grpo.micro_batch_tokens, reward.workers, the guards optim.max_bad_steps and "
            "reward.max_failed_steps, and grpo.rollout_steps): false = refuse, "
            "listing the changed keys; true = go on with the new values, logging each change and "
            "appending it to config_changes.jsonl (grpo_train --allow-config-change)");
    v.field("profile", profile, "time each stage of the GRPO steps (prefill, decode, sampling, reward, old and "
            "reference log-probs, forward, backward, optimizer) beside the least FLOPs and bytes its shapes "
            "need and this machine's measured GEMM and copy peaks; prints the table after the GRPO stage and "
            "writes profile.json to the run directory (the first step, a warm-up, is left out when there are "
            "more). Stage edges synchronize a GPU, which slows it a little (grpo_train --profile)");
  }
};

/// May `key` (a dotted config key) differ between a checkpoint's config and the config resuming
/// from it without changing what is trained? Where and how fast the run executes (run.*,
/// parallel.*, grpo.micro_batch_tokens, grpo.logprob_keep_bytes, reward.workers, the rollout engine's rollout.max_running,
/// prefill_chunk_tokens, kv_block_size, kv_cache_bytes and prefix_sharing), what it reports and
/// keeps (eval.*, checkpoint.*), the guards (optim.max_bad_steps, reward.max_failed_steps), and grpo.rollout_steps (extending or shortening the run; the cosine schedule
/// follows the new length). run.seed is not safe.
bool config_change_is_safe(const std::string& key);

struct TokenizerConfig {
  std::string path;       // empty: model.path's tokenizer, or the built-in character tokenizer
  std::string eos_token;  // empty: tokenizer_config.json's eos_token

  void visit(core::ConfigVisitor& v) {
    v.field("path", path, "Hugging Face tokenizer directory (tokenizer.json, tokenizer_config.json)"
            "; empty = model.path's tokenizer when model.path is set, else the built-in character "
            "tokenizer of the built-in task");
    v.field("eos_token", eos_token, "token that ends a response (its text, e.g. <|im_end|>); empty "
            "= tokenizer_config.json's eos_token");
  }
  /// The directory to load, or "" for the built-in character tokenizer.
  std::string resolved_path(const model::ModelConfig& m) const { return path.empty() ? m.path : path; }
};

/// The pretrain stage: supervised training on imperfect demonstrations, producing a starting policy
/// with some but not much skill (the analogue of R1-Zero's base model).
struct PretrainConfig {
  int64_t steps = 0;
  int64_t batch_size = 128;
  double lr = 1e-3;
  double weight_decay = 0.0;

  void visit(core::ConfigVisitor& v) {
    v.field("steps", steps, "optimizer steps of the pretrain stage (0 = skip it; built-in task only)", core::at_least(0));
    v.field("batch_size", batch_size, "demonstrations per step", core::at_least(1));
    v.field("lr", lr, "AdamW learning rate", core::positive());
    v.field("weight_decay", weight_decay, "AdamW weight decay", core::at_least(0));
  }
};

/// Supervised fine-tuning on JSONL demonstrations (R1's cold start, or SFT on rejection-sampled
/// data), before GRPO: loss on the response tokens only, examples packed into rows.
struct SftConfig {
  std::string data;
  std::string question_field = "question";  // "messages" in both: chat-format lines
  std::string response_field = "response";
  int64_t steps = 0;
  int64_t batch_size = 64;  // examples per optimizer step
  double lr = 1e-4;
  double weight_decay = 0.0;
  bool packing = true;

  void visit(core::ConfigVisitor& v) {
    v.field("data", data, "JSONL of demonstrations, one {question, response} object per line "
            "(grpo_sample writes them); the question is formatted by the prompt section as in "
            "training, the response follows it and ends with EOS");
    v.field("question_field", question_field, "key of the question (dots reach nested keys); "
            "with response_field the same key holding a chat [{role, content}, ...] (system, one "
            "user, the assistant last), the user turn is the question, the assistant's the response "
            "and a system message replaces prompt.system");
    v.field("response_field", response_field, "key of the response to imitate");
    v.field("steps", steps, "optimizer steps of the SFT stage (after the pretrain stage, before GRPO); "
            "0 = no SFT stage", core::at_least(0));
    v.field("batch_size", batch_size, "examples per optimizer step", core::at_least(1));
    v.field("lr", lr, "AdamW learning rate", core::positive());
    v.field("weight_decay", weight_decay, "AdamW weight decay", core::at_least(0));
    v.field("packing", packing, "pack several examples into one row (attention stays within each "
            "example; positions restart) instead of one padded row per example");
  }
};

struct GrpoConfig {
  /// The loss options a run starts from: clip-higher (DAPO) 0.28 above, 0.2 below.
  static algo::PolicyLossOptions run_loss_defaults() {
    algo::PolicyLossOptions o;
    o.clip_eps_low = 0.2;
    o.clip_eps_high = 0.28;
    return o;
  }
  int64_t rollout_steps = 50;        // generation rounds
  int64_t prompts_per_step = 32;     // questions per rollout step
  int64_t group_size = 8;            // G samples per question
  int64_t mini_batches = 1;          // optimizer steps per rollout per inner epoch
  int64_t inner_epochs = 1;          // passes over each rollout batch
  int64_t micro_batch_tokens = 16384;// gradient accumulation: tokens per forward/backward
  double logprob_keep_bytes = 1073741824.0;  // a training pass's logits kept for backward up to this
  // the clipped policy loss and its token aggregation (algo/grpo_loss.h owns these keys)
  algo::PolicyLossOptions loss = run_loss_defaults();
  std::string kl_in = "loss";
  int64_t ref_refresh_steps = 0;     // optimizer steps between reference = policy; 0 = never
  algo::AdvantageOptions advantage;  // group-relative advantages (algo/grpo_loss.h owns these keys)
  algo::OffPolicyOptions off_policy;  // sampler vs trainer correction (algo/grpo_loss.h owns these keys)
  bool recompute_old_logprobs = true;
  bool skip_zero_advantage = true;   // rows whose loss gradient is exactly 0 skip the training passes
  int64_t max_staleness = 0;         // rollout steps generated ahead of training; 0 = synchronous
  bool overlap_generation = false;   // with max_staleness >= 1: generate beside the update (a thread)
  bool mask_truncated = false;
  std::map<std::string, double> length_schedule;  // optimizer step -> rollout.max_new_tokens
  bool dynamic_sampling = false;
  int64_t dynamic_sampling_max_rounds = 3;

  /// The response-length limit in force at an optimizer step: the value of the largest
  /// length_schedule step <= optimizer_step, else `base` (rollout.max_new_tokens).
  int64_t max_new_tokens_at(int64_t optimizer_step, int64_t base) const {
    int64_t best_step = -1, value = base;
    for (auto& [k, v] : length_schedule) {
      int64_t step = std::stoll(k);
      if (step <= optimizer_step && step > best_step) best_step = step, value = int64_t(v);
    }
    return value;
  }
  /// The longest limit any step uses.
  int64_t max_new_tokens_max(int64_t base) const {
    int64_t m = base;
    for (auto& [k, v] : length_schedule) m = std::max(m, int64_t(v));
    return m;
  }

  void visit(core::ConfigVisitor& v) {
    using core::at_least;
    v.field("rollout_steps", rollout_steps, "generation rounds of the GRPO stage", at_least(0));
    v.field("prompts_per_step", prompts_per_step, "questions per rollout step", at_least(1));
    v.field("group_size", group_size, "G: samples per question", at_least(1));
    v.field("mini_batches", mini_batches,
            "each rollout batch is split into this many mini-batches = optimizer steps per epoch",
            at_least(1));
    v.field("inner_epochs", inner_epochs, "passes over each rollout batch", at_least(1));
    v.field("micro_batch_tokens", micro_batch_tokens,
            "token budget of one forward/backward (gradient accumulation inside a mini-batch): rows "
            "sorted by length and packed, each forward as wide as its longest prompt + response",
            at_least(1));
    v.field("logprob_keep_bytes", logprob_keep_bytes,
            "a training forward's response logits (fp32, response tokens x vocabulary) are kept for its "
            "backward when they take at most this many bytes, instead of being recomputed block by block "
            "(one LM-head matmul less per micro-batch); 0 = always recompute (least memory). Same results",
            {0.0, 1e15});
    loss.visit(v);
    v.field("kl_in", kl_in, "loss = beta * KL added to each token's loss (GRPO); reward = beta * "
            "the sequence's summed KL subtracted from its reward before advantages (verl "
            "use_kl_in_reward)", {"loss", "reward"});
    v.field("ref_refresh_steps", ref_refresh_steps,
            "reference model := current policy every N optimizer steps (R1: 400); 0 = never",
            at_least(0));
    advantage.visit(v);
    v.field("recompute_old_logprobs", recompute_old_logprobs,
            "old log-probs from the trainer's own forward pass (true) or from the sampler");
    v.field("skip_zero_advantage", skip_zero_advantage,
            "rows whose gradient is exactly zero take no training forward/backward (nor an old log-prob pass): "
            "advantage 0 (e.g. every row of a group with equal rewards) or no token in the loss, when nothing "
            "else reaches them (no KL term in the loss, entropy_coef 0, a dense model); the gradient and "
            "the update are unchanged, but entropy, ratio and clip statistics then cover the trained rows only "
            "(metrics.jsonl rows_skipped: the fraction left out)");
    off_policy.visit(v);
    v.field("max_staleness", max_staleness, "k: rollout step m is generated with the weights after step m - k "
            "(bounded staleness: generation runs k steps ahead of training, every sampled token at most k "
            "policy versions behind); checkpoint steps are barriers (nothing is generated across them), so a "
            "resumed run continues exactly; 0 = synchronous", at_least(0));
    v.field("overlap_generation", overlap_generation, "with max_staleness >= 1 in one process: generate "
            "the steps ahead in a thread beside the update, on a copy of the weights, the CPU threads split "
            "between the two (the same tokens and results as without; whether it is faster depends on the "
            "machine, see docs/performance.md)");
    v.field("mask_truncated", mask_truncated, "overlong filtering (DAPO): responses cut at "
            "rollout.max_new_tokens take no part in the loss");
    v.field("length_schedule", length_schedule, "response-length schedule: {optimizer step: "
            "max_new_tokens}, each limit in force from its step on (R1: {8200: 65536} after "
            "32768); empty = rollout.max_new_tokens throughout", {});
    v.field("dynamic_sampling", dynamic_sampling, "DAPO dynamic sampling: drop groups whose "
            "rewards are all equal (no signal) and sample more prompts until prompts_per_step "
            "groups remain");
    v.field("dynamic_sampling_max_rounds", dynamic_sampling_max_rounds, "generation rounds per "
            "rollout step at most (then train on the groups kept so far)", at_least(1));
  }
};

struct OptimConfig {
  double lr = 2e-4;
  double beta1 = 0.9, beta2 = 0.999, eps = 1e-8;
  double weight_decay = 0.0;
  double grad_clip = 1.0;
  int64_t warmup_steps = 0;   // optimizer steps
  std::string schedule = "constant";
  double min_lr_ratio = 0.1;  // cosine floor, as a fraction of lr
  std::string precision = "fp32";
  int64_t max_bad_steps = 3;  // non-finite updates skipped in a row before the run stops

  void visit(core::ConfigVisitor& v) {
    v.field("lr", lr, "peak learning rate (AdamW)", core::positive());
    v.field("beta1", beta1, "AdamW beta1", {0.0, 1.0, false, true});
    v.field("beta2", beta2, "AdamW beta2", {0.0, 1.0, false, true});
    v.field("eps", eps, "AdamW epsilon", core::positive());
    v.field("weight_decay", weight_decay, "AdamW decoupled weight decay (matrices only)",
            core::at_least(0));
    v.field("grad_clip", grad_clip, "clip the global gradient norm to this; 0 = off",
            core::at_least(0));
    v.field("warmup_steps", warmup_steps, "linear LR warm-up, in optimizer steps",
            core::at_least(0));
    v.field("schedule", schedule, "LR after warm-up (cosine decays over all optimizer steps)",
            {"constant", "cosine"});
    v.field("min_lr_ratio", min_lr_ratio, "cosine floor as a fraction of lr", core::between(0, 1));
    v.field("max_bad_steps", max_bad_steps, "divergence guard: an optimizer step whose loss or gradient norm "
            "is not finite is skipped (parameters and AdamW state untouched); more than this many in a row "
            "stop the run with an error naming the step (checkpoints are never written with non-finite values)",
            core::at_least(0));
    v.field("precision", precision, "fp32, or bf16: mixed precision -- bf16 trainable parameters, "
            "gradients and activations, fp32 master weights and AdamW state (checkpoints hold the "
            "fp32 masters), fp32 router, log-probs and loss. The GPU setting; on CPUs with AMX-BF16 "
            "(~1.35x) or AVX512-BF16 (AMD Zen 4: ~1.2x) also faster than fp32, on CPUs without bf16 "
            "instructions slower", {"fp32", "bf16"});
  }
};

/// Load balancing of MoE policies (model.n_routed_experts > 0), as in DeepSeek-V3.
struct MoeConfig {
  double bias_update_rate = 0.001;
  double balance_loss_coef = 0.0;
  bool routing_replay = false;

  void visit(core::ConfigVisitor& v) {
    v.field("bias_update_rate", bias_update_rate,
            "gamma of aux-loss-free balancing: after every optimizer step, each router's "
            "e_score_correction_bias += gamma * sign(mean load - expert load); 0 = frozen",
            core::at_least(0));
    v.field("balance_loss_coef", balance_loss_coef,
            "alpha of the sequence-wise balance loss added to the training loss (DeepSeek-V3: "
            "1e-4); 0 = off", core::at_least(0));
    v.field("routing_replay", routing_replay, "Rollout Routing Replay (R3): the rollout records the "
            "experts every token was routed to in every MoE layer, and the policy's training forwards "
            "(old log-probs and updates) use those experts instead of the router's top-k; the gate "
            "weights stay the router's scores of them, so the router still learns. The reference "
            "model routes on its own");
  }
};

/// Multi-process runs (mpirun, srun, torchrun; dist/launch.h). The processes form a dp x tp grid
/// (dist/parallel.h): tp neighbouring ranks split each layer of one model replica (Megatron tensor
/// parallel); the dp = processes / tp replicas each generate and score their share of each step's
/// prompts (whole groups) and sum gradients, so N processes compute what one process computes.
struct ParallelConfig {
  double timeout = 300;  // seconds
  int64_t rollout_ranks = 0;
  bool inflight_weight_updates = false;
  int64_t tp = 1;
  int64_t ep = 1;
  bool zero1 = false;
  bool recompute = false;
  bool sequence_parallel = false;
  std::string backend = "auto";

  void visit(core::ConfigVisitor& v) {
    v.field("rollout_ranks", rollout_ranks, "processes that only generate and score (the last R ranks; "
            "each holds the whole model); the others train (tp, ep and dp apply to them) and, after each "
            "optimizer step whose weights generation needs, send the new weights to them over c10d. "
            "With grpo.max_staleness k they generate up to k steps ahead; 0 = every process does both",
            core::at_least(0));
    v.field("inflight_weight_updates", inflight_weight_updates, "with rollout_ranks: the rollout ranks take "
            "each new version of the weights between two engine steps as soon as it arrives, in the middle "
            "of a rollout step (partial rollout: PipelineRL's in-flight updates, AReaL's interruptible "
            "generation); the cached keys and values stay, every token is tagged with the version that "
            "sampled it (token_lag_* in metrics.jsonl), and runs depend on timing");
    v.field("tp", tp, "tensor-parallel size: ranks splitting each layer's heads, MLP width and "
            "vocabulary; must divide the number of processes, the attention and key-value heads, "
            "the MLP widths and the vocabulary", core::at_least(1));
    v.field("ep", ep, "expert-parallel size: data-parallel ranks splitting the routed experts "
            "(carved out of dp, as in Megatron-Core); must divide dp and n_routed_experts", core::at_least(1));
    v.field("zero1", zero1, "ZeRO-1: shard the AdamW state over the data-parallel ranks (each "
            "parameter's state on one rank, which updates it and broadcasts it); checkpoints still hold "
            "the whole state, so runs resume with or without it");
    v.field("recompute", recompute, "activation recomputation: training forwards keep only each "
            "transformer block's input and run the block again during backward (less activation "
            "memory for about one more forward pass; the same results)");
    v.field("sequence_parallel", sequence_parallel, "Megatron sequence parallel (with tp > 1): the "
            "residual stream, its norms and the inputs recomputation keeps are split along the "
            "sequence over the tp ranks (reduce-scatter / all-gather instead of all-reduce); the "
            "same results");
    v.field("backend", backend, "how GPU tensors travel between processes: nccl (GPU to GPU; each "
            "process on a GPU of its own, run.device: cuda), gloo (through host memory; processes may share "
            "a GPU) or auto (nccl where it can work and libgrpo has it, else gloo); host tensors always use "
            "gloo", {"auto", "gloo", "nccl"});
    v.field("timeout", timeout, "seconds to wait for the other processes at the rendezvous and in "
            "each collective before failing with an error that names them (at most a week)",
            {0.0, 7 * 24 * 3600.0, true, false});
  }
};

struct EvalConfig {
  int64_t every = 10;        // rollout steps
  int64_t num_prompts = 500; // held-out questions
  bool sampled = true;       // also sampled pass@1 (one sample per prompt at the rollout settings)
  int64_t batch_size = 512;

  void visit(core::ConfigVisitor& v) {
    v.field("every", every, "evaluate every N rollout steps (and at the start and end); 0 = only "
            "start and end", core::at_least(0));
    v.field("num_prompts", num_prompts, "held-out questions per evaluation", core::at_least(1));
    v.field("sampled", sampled, "also report sampled pass@1 at the rollout temperature");
    v.field("batch_size", batch_size, "questions generated at once", core::at_least(1));
  }
};

struct CheckpointConfig {
  int64_t every = 25;  // rollout steps
  int64_t keep = 2;

  void visit(core::ConfigVisitor& v) {
    v.field("every", every, "checkpoint every N rollout steps (and after the pretrain stage and at "
            "the end); 0 = only those", core::at_least(0));
    v.field("keep", keep, "checkpoints kept (older ones are deleted)", core::at_least(1));
  }
};

struct MetricsConfig {
  bool tensorboard = true;

  void visit(core::ConfigVisitor& v) {
    v.field("tensorboard", tensorboard, "also write the metrics.jsonl and eval.jsonl values as TensorBoard scalars "
            "(run.dir/tb/events.out.tfevents.*, rank 0): train/..., eval/..., time/..., moe/..., by rollout "
            "step (pretrain/... and sft/... by their own steps), the resolved config and the command line as "
            "text. A resumed run rewrites them from the two files, so no step appears twice; "
            "`tensorboard --logdir RUN_DIR` shows them");
  }
};

struct Config {
  RunConfig run;
  model::ModelConfig model;
  TokenizerConfig tokenizer;
  data::DataConfig data;
  data::ArithmeticConfig task;
  text::PromptConfig prompt;
  PretrainConfig pretrain;
  SftConfig sft;
  rollout::SamplingParams rollout;
  GrpoConfig grpo;
  OptimConfig optim;
  MoeConfig moe;
  ParallelConfig parallel;
  reward::RewardConfig reward;
  env::EnvConfig env;
  EvalConfig eval;
  MetricsConfig metrics;
  CheckpointConfig checkpoint;

  Config() { rollout.max_new_tokens = 24; }

  void visit(core::ConfigVisitor& v) {
    v.section("run", "where and how the run executes", run);
    v.section("model", "policy: a Hugging Face directory or the sizes of a new Llama/Qwen-style "
              "decoder", model);
    v.section("tokenizer", "tokenizer of prompts and responses", tokenizer);
    v.section("data", "prompt/answer datasets (JSONL)", data);
    v.section("task", "built-in task (used when data.train is empty) and its pretrain-stage "
              "demonstrations", task);
    v.section("prompt", "how a question becomes the prompt (same in training, evaluation and "
              "grpo_generate)", prompt);
    v.section("pretrain", "pretrain stage: supervised training on imperfect demonstrations", pretrain);
    v.section("sft", "supervised fine-tuning on JSONL demonstrations (cold start, rejection-sampled "
              "data)", sft);
    v.section("rollout", "sampling of GRPO rollouts", rollout);
    v.section("grpo", "GRPO algorithm", grpo);
    v.section("optim", "optimizer of the GRPO stage", optim);
    v.section("moe", "expert load balancing (MoE policies only)", moe);
    v.section("parallel", "several processes: data parallel over all of them", parallel);
    v.section("reward", "rule-based rewards", reward);
    v.section("env", "multi-turn rollouts: the environment (e.g. a code tool) the policy acts in", env);
    v.section("eval", "held-out evaluation (eval.jsonl)", eval);
    v.section("metrics", "what a run logs besides metrics.jsonl and eval.jsonl", metrics);
    v.section("checkpoint", "checkpoints (checkpoints/ in the run directory)", checkpoint);
  }
};

/// Parses and validates a config file (plus --set overrides). Throws ConfigError naming the file,
/// line and key. With model.path set, the model section is filled from that directory's
/// config.json (sizes also given in the file must agree with it).
Config load_config_file(const std::string& path, const std::vector<std::string>& overrides = {});
/// Same, from YAML text (`name` is used in messages). to_run = false reads a checkpoint's resolved
/// config to sample from or export its model: the model section is kept as written (model.path
/// may be gone), and data files and custom reward functions need not exist here.
Config load_config_text(const std::string& yaml, const std::string& name,
                        const std::vector<std::string>& overrides = {}, bool to_run = true);
/// Cross-field checks (e.g. model heads, reward names, prompt + response fitting the model).
void validate(const Config& c, const core::ConfigSource& src, bool to_run = true);
/// The resolved config as YAML.
std::string to_yaml(Config c, bool with_docs = true);

}  // namespace grpo::train
