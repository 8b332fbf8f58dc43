// The trainer composes the components of a run (session.h lists them): it builds them, resumes or
// starts the run, and drives the stages -- base, SFT, GRPO -- with evaluation and checkpoints.
// Everything random is keyed by counters (core/rng.h), so a run resumed from a checkpoint
// continues exactly as the uninterrupted run would have.
#include "grpo/train/trainer.h"

#include <chrono>
#include <fstream>

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "grpo/core/device.h"
#include "grpo/core/error.h"
#include "grpo/core/profile.h"
#include "grpo/core/progress.h"
#include "grpo/dist/comm.h"
#include "grpo/dist/launch.h"
#include "grpo/reward/plugin.h"
#include "grpo/train/memory_plan.h"
#include "grpo/train/policy_loader.h"
#include "session.h"
#include "step_batch.h"

namespace grpo::train {
namespace {

// Multi-process checks made before the rendezvous, so every rank fails alike, at once.
void check_data_parallel(const Config& cfg, int64_t dp) {
  if (dp == 1) return;
  GRPO_CHECK(cfg.grpo.prompts_per_step % dp == 0, "grpo.prompts_per_step ({}) must split evenly over the {} "
             "data-parallel processes (whole groups stay on one rank)", cfg.grpo.prompts_per_step, dp);
  for (auto [key, b] : {std::pair<const char*, int64_t>{"pretrain.batch_size", cfg.pretrain.batch_size},
                        {"sft.batch_size", cfg.sft.batch_size}})
    GRPO_CHECK(b >= dp, "{} ({}) must be at least the number of data-parallel processes ({}): each takes a "
               "share of the batch", key, b, dp);
}

}  // namespace

struct Trainer::Impl : Session {
  std::optional<std::string> resume_from;  // the checkpoint run() resumes from
  std::unique_ptr<grpo::ThreadGovernor> governor;  // run.threads 0: threads follow the free CPUs

  void adapt_threads() {
    bool changed = false;
    const int64_t n = governor->update(&changed);
    if (changed)
      spdlog::info("threads: {} (other processes kept {:.1f} of {} CPUs busy; run.threads fixes the count)", n,
                   governor->others(), grpo::available_cpus());
  }

  explicit Impl(Config c) {
    cfg = std::move(c);
    connect();
    grpo::setup_host(cfg.run.threads);
    governor = std::make_unique<grpo::ThreadGovernor>(cfg.run.threads == 0 && !std::getenv("OMP_NUM_THREADS"));
    if (cfg.optim.precision == "bf16" && device.is_cpu() && !grpo::cpu_has_native_bf16())
      spdlog::warn("optim.precision: bf16 on a CPU without bf16 matrix instructions (AMX-BF16 or AVX512-BF16): "
                   "LibTorch emulates bf16 here and fp32 is likely faster");
    const std::string tok_path = cfg.tokenizer.resolved_path(cfg.model);
    tok = make_tokenizer(tok_path, cfg.tokenizer.eos_token, cfg.task);
    if (cfg.model.vocab_size == 0) cfg.model.vocab_size = tok->vocab_size();
    GRPO_CHECK(cfg.model.vocab_size >= tok->vocab_size(), "model.vocab_size {} is smaller than the tokenizer's {} ({})",
               cfg.model.vocab_size, tok->vocab_size(), tok_path.empty() ? "built-in" : tok_path);
    check_memory();
    run_dir = std::make_unique<RunDir>(cfg.run.dir, leader());
    questions = std::make_unique<Questions>(cfg, *tok);
    make_rewards();
    resume_from = find_resume_checkpoint();
    policy = build_policy(cfg, model_parallel(), device, tok->vocab_size(), /*from_hf=*/!resume_from);
    optimizer = std::make_unique<Optimizer>(*policy, *comm, *groups.expert_dp, cfg.optim.precision == "bf16",
                                            cfg.parallel.zero1);
    optimizer->adopt_policy_precision();
  }

  // The process groups and the device.
  void connect() {
    const auto launch = dist::detect_launch();
    const int64_t R = cfg.parallel.rollout_ranks, T = launch.world_size - R;  // rollout ranks, trainers
    if (R > 0) {
      GRPO_CHECK(T >= 1, "parallel.rollout_ranks ({}) must leave at least one of the {} process(es) to train", R,
                 launch.world_size);
      GRPO_CHECK(cfg.grpo.prompts_per_step % R == 0, "grpo.prompts_per_step ({}) must split evenly over the {} "
                 "rollout ranks (parallel.rollout_ranks; whole groups stay on one rank)", cfg.grpo.prompts_per_step, R);
    }
    rollout_rank = launch.rank >= T;
    const auto layout = rollout_rank ? dist::make_layout(R, 1, 1)  // each rollout rank holds the whole model
                                     : dist::make_layout(T, cfg.parallel.tp, cfg.parallel.ep);
    if (!rollout_rank) check_data_parallel(cfg, layout.dp());
    device = grpo::resolve_device(cfg.run.device, launch.local_rank, "run.device");
    dist::CommOptions co;  // a GPU of its own: run.device cuda, or the only process of its node
    co.backend = dist::resolve_backend(cfg.parallel.backend, device, cfg.run.device == "cuda" || launch.local_world_size == 1,
                                       "parallel.backend");
    co.device_index = device.is_cuda() ? device.index() : 0;
    if (launch.rank > 0) {  // rank 0 reports
      spdlog::set_level(spdlog::level::warn);
      core::Progress::instance().enable(false);
    }
    world = dist::Comm::connect(launch, std::chrono::milliseconds(int64_t(cfg.parallel.timeout * 1000)), co);
    if (R > 0) {  // the roles' own groups (their tp/dp/ep groups named apart), then the channels between them
      job = std::move(world);
      std::vector<int64_t> mine;
      for (int64_t r = rollout_rank ? T : 0; r < (rollout_rank ? launch.world_size : T); ++r) mine.push_back(r);
      world = job->group(mine, rollout_rank ? "rollout" : "trainers");
      groups = dist::make_groups(*world, layout, rollout_rank ? "rollout/" : "trainers/");
      connect_rollout_link(*this);
    } else {
      groups = dist::make_groups(*world, layout);
    }
    comm = groups.dp.get();
    if (launch.world_size > 1)
      spdlog::info("parallel layout: {} processes, {}{}; collectives: {}", launch.world_size,
                   R > 0 ? fmt::format("{} training ({}) and {} rollout rank(s)", T, layout.describe(), R)
                         : layout.describe(),
                   R > 0 ? " (the last ranks generate)" : "", world->backend());
  }

  // grpo_plan's estimate before anything is allocated: a config that cannot fit in this machine's
  // memory is refused with the estimate and the knobs. (On a GPU the check is grpo_plan's, by hand.)
  void check_memory() const {
    if (!device.is_cpu()) return;
    const auto launch = dist::detect_launch();
    const auto plan = plan_memory(cfg, groups.layout, plan_options(cfg, groups.layout.world));
    const double gib = double(1 << 30);
    const double have = grpo::host_memory_bytes() / double(std::max<int64_t>(1, launch.local_world_size));
    GRPO_CHECK(plan.peak_bytes <= have,
               "this run needs about {:.1f} GiB per process by grpo_plan's estimate (weights {:.1f}, gradients {:.1f}, "
               "optimizer {:.1f}, activations {:.1f}, KV cache {:.1f} GiB), more than the {:.1f} GiB of memory each of "
               "the {} process(es) on this machine has: lower grpo.prompts_per_step x grpo.group_size (now {} x {}), "
               "rollout.max_running or rollout.kv_cache_bytes, grpo.micro_batch_tokens or rollout.max_new_tokens, or use more processes "
               "(grpo_plan --config ... shows the arithmetic)",
               plan.peak_bytes / gib, plan.param_bytes / gib, plan.grad_bytes / gib, plan.optimizer_bytes / gib,
               plan.activation_bytes / gib, plan.kv_cache_bytes / gib, have / gib, launch.local_world_size,
               cfg.grpo.prompts_per_step, cfg.grpo.group_size);
  }

  void make_rewards() {
    if (!cfg.reward.plugin.empty()) {
      const std::string cmd = cfg.reward.plugin;
      const double timeout = cfg.reward.sample_timeout;
      reward::RewardRegistry::add("plugin", [cmd, timeout] { return reward::make_process_reward(cmd, timeout); });
    }
    rewards = std::make_unique<reward::CombinedReward>(cfg.reward.weights, cfg.reward.failure_value, cfg.reward.params);
    if (cfg.reward.workers > 0)
      reward_pool = std::make_unique<reward::RewardPool>(*rewards, int(cfg.reward.workers), cfg.reward.sample_timeout,
                                                         cfg.reward.failure_value);
    accuracy_fn = reward::RewardRegistry::create("accuracy");
  }

  // ---------------------------------------------------------------- checkpoints
  std::optional<std::string> find_resume_checkpoint() const {
    if (cfg.run.resume == "never") return std::nullopt;
    if (cfg.run.resume == "auto") return run_dir->latest_checkpoint();
    return cfg.run.resume;
  }

  std::string tag() const { return fmt::format("{:06d}", st.rollout_step); }

  // A reference model: the policy's architecture in the run's precision (for inference only).
  std::unique_ptr<model::Transformer> make_reference() {
    auto m = std::make_unique<model::Transformer>(cfg.model, model_parallel());
    if (!device.is_cpu()) m->to(device);
    m->set_vocab_limit(tok->vocab_size());
    optimizer->to_precision(*m);
    return m;
  }

  // Checkpoints hold whole tensors (slices gathered over tp/ep), so any layout loads them.
  void save() {
    Checkpoint ck;
    ck.model = optimizer->checkpoint_parameters();  // collective
    ck.optimizer = optimizer->state_tensors();
    if (ref) ck.reference = ref->full_parameters();
    // never over a good checkpoint with a diverged state (every rank holds the same tensors)
    for (const auto* part : {&ck.model, &ck.optimizer, &ck.reference})
      for (const auto& [name, t] : *part)
        GRPO_CHECK(!t.is_floating_point() || at::isfinite(t).all().item<bool>(),
                   "refusing to write checkpoint step-{}: '{}' has non-finite values (training diverged); the "
                   "checkpoints already in {} are kept", tag(), name, run_dir->checkpoints_dir());
    if (!leader()) return;  // the other data-parallel ranks hold the same state
    ck.state = st;
    ck.config_yaml = to_yaml(cfg, false);
    ck.seed = static_cast<uint64_t>(cfg.run.seed);
    ck.lr = st.optimizer_step > 0 ? lr_at(st.optimizer_step - 1) : 0.0;
    core::Progress::Activity busy("writing checkpoint step-" + tag());
    spdlog::info("checkpoint {}", run_dir->save(tag(), ck, cfg.checkpoint.keep));
  }

  // The config resuming must be the checkpoint's, but for keys that do not change what is trained
  // (config_change_is_safe); other changes need run.allow_config_change. Every change is logged
  // and recorded in config_changes.jsonl.
  void check_config_identity(const Checkpoint& ck, const std::string& path) {
    const std::string origin = path + "/manifest.json (config)";
    std::map<std::string, std::string> before;
    try {
      Config saved = load_config_text(ck.config_yaml, origin, {}, /*to_run=*/false);
      before = core::flatten_config([&](core::ConfigVisitor& v) { saved.visit(v); });
    } catch (const Error& e) {
      GRPO_CHECK(cfg.run.allow_config_change, "{}: the checkpoint's config does not load ({}); resume with "
                 "--allow-config-change to continue with the current config, or start over with --fresh",
                 path, e.what());
      spdlog::warn("{}: the checkpoint's config does not load ({}); continuing with the current config", path,
                   e.what());
      return;
    }
    const auto changes = core::diff_config(before, core::flatten_config([&](core::ConfigVisitor& v) { cfg.visit(v); }));
    std::vector<std::string> unsafe;
    for (const auto& c : changes)
      if (!config_change_is_safe(c.key)) unsafe.push_back(fmt::format("{}: {} -> {}", c.key, c.before, c.after));
    GRPO_CHECK(unsafe.empty() || cfg.run.allow_config_change,
               "{}: the config differs from the one this checkpoint was trained with in {} key(s) that change "
               "the training:\n  {}\nresume with the checkpoint's config ({}/manifest.json, or config.yaml of "
               "the run), accept the change with --allow-config-change (run.allow_config_change: true), or start "
               "over with --fresh", path, unsafe.size(), fmt::join(unsafe, "\n  "), path);
    for (const auto& c : changes) {
      if (config_change_is_safe(c.key)) spdlog::info("config change on resume: {}: {} -> {}", c.key, c.before, c.after);
      else spdlog::warn("config change on resume (allowed): {}: {} -> {}", c.key, c.before, c.after);
    }
    run_dir->record_config_changes(path, ck.state, changes);
  }

  void resume(const std::string& path) {
    Checkpoint ck;
    try {
      ck = load_checkpoint(path);
    } catch (const Error& e) {
      fail("run.resume = {}: cannot resume from {}: {}", cfg.run.resume, path, e.what());
    }
    GRPO_CHECK(ck.seed == static_cast<uint64_t>(cfg.run.seed), "{}: checkpoint was made with run.seed {}, the "
               "config says {}", path, ck.seed, cfg.run.seed);
    check_config_identity(ck, path);
    policy->load_parameters(ck.model, path + "/model.safetensors");
    optimizer->set_master_source(ck.model);
    st = ck.state;
    optimizer->reset(stage_adamw(cfg, st.stage));
    optimizer->load(ck.optimizer, path + "/optimizer.safetensors");
    if (st.stage == "grpo" && cfg.grpo.loss.kl_coef > 0) {
      ref = make_reference();
      ref->load_parameters(ck.reference.empty() ? ck.model : ck.reference, path + "/reference.safetensors");
      ref->train(false);
    }
    run_dir->trim_to(st);
    spdlog::info("resumed from {} (stage {}, pretrain step {}, rollout step {}, optimizer step {})", path, st.stage,
                 st.pretrain_step, st.rollout_step, st.optimizer_step);
  }

  void start() {
    if (!cfg.run.init_from.empty()) {  // the previous stage of a pipeline
      const std::string dir = resolve_checkpoint(cfg.run.init_from, "run.init_from");
      auto ck = load_checkpoint(dir);
      policy->load_parameters(ck.model, dir + "/model.safetensors");
      optimizer->set_master_source(ck.model);
      spdlog::info("policy initialised from {}", dir);
    }
    st = TrainState{};
    st.stage = cfg.pretrain.steps > 0 ? "pretrain" : cfg.sft.steps > 0 ? "sft" : "grpo";
    optimizer->reset(stage_adamw(cfg, st.stage));
    run_dir->start_fresh();
  }

  // ---------------------------------------------------------------- stages
  // A supervised stage: steps until `total`, then hand over to `next`, evaluated (eval.jsonl
  // stage `eval_label`) and saved; false when stopped early (saved).
  bool supervised_stage(const char* label, const char* eval_label, const int64_t& done, int64_t total,
                        void (*step)(Session&), const std::string& next,
                        const std::function<bool(const TrainState&)>& stop_early) {
    auto t0 = Clock::now();
    auto& progress = core::Progress::instance();
    progress.begin(label, total, done);
    while (done < total) {
      adapt_threads();
      step(*this);
      if (any_rank(stop_early && stop_early(st))) {  // collective: one rank's signal stops all
        progress.end();
        save();
        spdlog::info("stopped early at {} step {}", label, done);
        return false;
      }
    }
    progress.end();
    spdlog::info("{} stage done in {:.1f}s", label, seconds_since(t0));
    st.stage = next;
    optimizer->reset(stage_adamw(cfg, st.stage));
    evaluate_and_log(*this, eval_label);
    save();
    return true;
  }

  // The step roofline of the last `steps` GRPO steps (run.profile): logged, and profile.json.
  void report_profile(int64_t steps, double seconds) {
    const auto totals = core::profile_totals();
    const auto dtype = cfg.optim.precision == "bf16" ? at::kBFloat16 : at::kFloat;
    const auto peak = core::measure_peak(device, dtype);
    spdlog::info("step roofline (run.profile):\n{}", core::roofline_table(totals, peak, steps, seconds));
    if (!leader()) return;
    nlohmann::json j = {{"steps", steps}, {"step_seconds", seconds / double(steps)},
                        {"peak_flops_per_s", peak.flops_per_s}, {"peak_bytes_per_s", peak.bytes_per_s},
                        {"peak", peak.what}, {"threads", at::get_num_threads()}, {"device", device.str()}};
    for (int i = 0; i < core::kStages; ++i) {
      const auto& t = totals[size_t(i)];
      if (t.calls == 0) continue;
      j["stages"][core::stage_name(core::Stage(i))] = {{"seconds", t.seconds / double(steps)},
                                                       {"flops", t.flops / double(steps)},
                                                       {"bytes", t.bytes / double(steps)},
                                                       {"calls", t.calls}};
    }
    std::ofstream(run_dir->path() + "/profile.json") << j.dump(2) << "\n";
  }

  // GRPO rollout steps until grpo.rollout_steps, evaluating and saving every so often; false when
  // stopped early (saved).
  bool grpo_stage(const std::function<bool(const TrainState&)>& stop_early) {
    if (cfg.grpo.loss.kl_coef > 0 && !ref) {
      ref = make_reference();
      ref->copy_from(*policy);
      ref->train(false);
      st.ref_version = st.optimizer_step;
    }
    auto t0 = Clock::now();
    bool evaluated = false, saved = false, ran = false;
    const int64_t first_step = st.rollout_step;
    grpo_first_step = first_step;  // generation ahead of training (grpo.max_staleness) starts afresh here
    rollout_queue.reset();
    rollout_policy.reset();
    if (cfg.grpo.overlap_generation && cfg.grpo.max_staleness > 0) {
      if (world->size() > 1 || cfg.run.profile || rollout_link)
        spdlog::warn("grpo.overlap_generation: not with {} (generation stays sequential)",
                     rollout_link ? "parallel.rollout_ranks (they generate)"
                     : world->size() > 1 ? "several processes" : "--profile");
      else
        rollout_policy = make_reference();  // the generating copy of the policy
    }
    if (rollout_link && st.rollout_step < cfg.grpo.rollout_steps) start_rollout_ranks(*this);
    int64_t profiled = 0;
    double profiled_seconds = 0;
    auto& progress = core::Progress::instance();
    progress.begin("grpo", cfg.grpo.rollout_steps, st.rollout_step);
    while (st.rollout_step < cfg.grpo.rollout_steps) {
      if (cfg.run.profile) {  // the first step warms up when more follow
        if (st.rollout_step == first_step + 1) core::reset_profile(), profiled = 0, profiled_seconds = 0;
        core::enable_profile(device);
      }
      adapt_threads();
      auto t_step = Clock::now();
      grpo_step(*this);
      core::disable_profile();  // evaluation is not part of the step
      ++profiled, profiled_seconds += seconds_since(t_step);
      ran = true;
      evaluated = saved = false;
      if (cfg.eval.every > 0 && st.rollout_step % cfg.eval.every == 0) {
        evaluate_and_log(*this, "grpo");
        evaluated = true;
      }
      if (cfg.checkpoint.every > 0 && st.rollout_step % cfg.checkpoint.every == 0) {
        save();
        saved = true;
      }
      if (any_rank(stop_early && stop_early(st))) {  // collective: one rank's signal stops all
        progress.end();
        if (!saved) save();
        spdlog::info("stopped early at rollout step {}", st.rollout_step);
        return false;
      }
    }
    progress.end();
    if (rollout_link) stop_rollout_ranks(*this, /*finished=*/true);  // the final weights, before evaluating
    if (ran && cfg.run.profile) report_profile(profiled, profiled_seconds);
    if (ran && !evaluated) evaluate_and_log(*this, "grpo");
    if (ran && !saved) save();
    run_dir->summarize();
    spdlog::info("done: {} rollout steps, {} optimizer steps in {:.1f}s", st.rollout_step, st.optimizer_step,
                 seconds_since(t0));
    return true;
  }

  void run(const std::function<bool(const TrainState&)>& stop_early) {
    if (rollout_rank) return run_rollout_rank(*this);  // parallel.rollout_ranks: generate for the trainers
    run_stages(stop_early);
    if (rollout_link) stop_rollout_ranks(*this, /*finished=*/false);  // stopped, or nothing to train
  }

  void run_stages(const std::function<bool(const TrainState&)>& stop_early) {
    run_dir->create();
    run_dir->lock();  // released when run() returns
    struct Unlock {
      RunDir& d;
      ~Unlock() { d.unlock(); }
    } unlock{*run_dir};
    if (resume_from) resume(*resume_from);
    else start();
    if (st.stage == "grpo" && st.rollout_step >= cfg.grpo.rollout_steps && st.rollout_step > 0) {
      // nothing to do: config.yaml keeps describing the run that made the checkpoint
      spdlog::info("run.dir {} is finished (rollout step {} of grpo.rollout_steps {}): nothing to train; --fresh "
                   "starts it over, a larger grpo.rollout_steps extends it", run_dir->path(), st.rollout_step,
                   cfg.grpo.rollout_steps);
      run_dir->summarize();
      return;
    }
    if (cfg.grpo.group_size == 1 && cfg.grpo.rollout_steps > 0)
      spdlog::warn("grpo.group_size is 1: every group-relative advantage is 0, so GRPO cannot learn");
    run_dir->open(to_yaml(cfg, true), cfg.metrics.tensorboard);
    spdlog::info("policy: {} parameters, vocab {}, run directory {}", policy->num_parameters(), cfg.model.vocab_size,
                 run_dir->path());
    // eval.jsonl calls the policy GRPO starts from "base" (the base model), after SFT "sft"
    if (st.stage == "pretrain") {
      if (!supervised_stage("pretrain", "base", st.pretrain_step, cfg.pretrain.steps, pretrain_step,
                            cfg.sft.steps > 0 ? "sft" : "grpo", stop_early))
        return;
    } else if (!resume_from) {
      evaluate_and_log(*this, "base");
    }
    if (st.stage == "sft" &&
        !supervised_stage("sft", "sft", st.sft_step, cfg.sft.steps, sft_step, "grpo", stop_early))
      return;
    grpo_stage(stop_early);
  }
};

Trainer::Trainer(Config config) : impl_(std::make_unique<Impl>(std::move(config))) {}
Trainer::~Trainer() = default;
void Trainer::run(const std::function<bool(const TrainState&)>& stop_early) { impl_->run(stop_early); }
EvalResult Trainer::evaluate() { return train::evaluate(*impl_); }
const TrainState& Trainer::state() const { return impl_->st; }
model::Transformer& Trainer::policy() { return *impl_->policy; }
const Config& Trainer::config() const { return impl_->cfg; }

}  // namespace grpo::train
