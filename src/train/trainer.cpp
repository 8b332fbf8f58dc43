// Trainer implementation. Everything random is keyed by counters (core/rng.h), so a run resumed
// from a checkpoint continues exactly as the uninterrupted run would have.
#include "grpo/train/trainer.h"

#include <chrono>
#include <filesystem>
#include <fstream>

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>
#include <torch/nn/utils/clip_grad.h>
#include <torch/optim/adamw.h>

#include "grpo/algo/grpo_loss.h"
#include "grpo/core/error.h"
#include "grpo/dist/comm.h"
#include "grpo/dist/grad_reducer.h"
#include "grpo/dist/parallel.h"
#include "grpo/dist/launch.h"
#include "grpo/core/device.h"
#include "grpo/core/rng.h"
#include "grpo/data/arithmetic.h"
#include "grpo/data/jsonl_dataset.h"
#include "grpo/model/hf.h"
#include "grpo/model/logprob.h"
#include "grpo/model/transformer.h"
#include "grpo/reward/plugin.h"
#include "grpo/reward/pool.h"
#include "grpo/reward/reward.h"
#include "grpo/rollout/generate.h"
#include "grpo/text/hf_tokenizer.h"
#include "grpo/text/prompt.h"
#include "grpo/text/tokenizer.h"
#include "grpo/train/micro_batch.h"

namespace fs = std::filesystem;

namespace grpo::train {
namespace {

using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

// Keeps the lines of a JSONL file for which keep(json) is true (used when resuming, to drop what
// the interrupted run wrote after its last checkpoint).
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

}  // namespace

// A question and its ground truth, from the built-in task or a JSONL file.
struct Item {
  std::string question, answer;
  std::string origin;  // "file:line" for dataset items (error messages)
};

struct Trainer::Impl {
  Config cfg;
  fs::path run_dir;
  std::unique_ptr<text::Tokenizer> tok;
  std::unique_ptr<data::ArithmeticTask> task;           // the built-in task (data.train empty)
  std::unique_ptr<data::JsonlDataset> train_data, eval_data, sft_data;
  std::unique_ptr<reward::RewardFn> accuracy_fn;
  std::unique_ptr<model::Transformer> policy, ref;
  std::unique_ptr<torch::optim::AdamW> opt;
  std::unique_ptr<reward::CombinedReward> rewards;
  std::unique_ptr<reward::RewardPool> reward_pool;  // scores while the rollout generates
  TrainState st;
  std::ofstream metrics, evals;
  std::unique_ptr<dist::Comm> world;  // every process of the job (one process: a no-op)
  dist::Groups groups;                // its data-, tensor- and expert-parallel groups
  dist::Comm* comm = nullptr;         // the data-parallel group: ranks with different data
  bool leader() const { return world->rank() == 0; }
  model::Parallel model_parallel() const { return {groups.tp.get(), groups.ep.get()}; }

  explicit Impl(Config c) : cfg(std::move(c)) {
    const auto launch = dist::detect_launch();
    // checked before the rendezvous: every rank fails alike, at once
    const auto layout = dist::make_layout(launch.world_size, cfg.parallel.tp, cfg.parallel.ep);
    const int64_t dp = layout.dp();
    if (dp > 1) {
      GRPO_CHECK(cfg.grpo.prompts_per_step % dp == 0, "grpo.prompts_per_step ({}) must split "
                 "evenly over the {} data-parallel processes (whole groups stay on one rank)",
                 cfg.grpo.prompts_per_step, dp);
      for (auto [key, b] : {std::pair<const char*, int64_t>{"pretrain.batch_size", cfg.pretrain.batch_size},
                            {"sft.batch_size", cfg.sft.batch_size}})
        GRPO_CHECK(b >= dp, "{} ({}) must be at least the number of data-parallel processes ({}): each "
                   "takes a share of the batch", key, b, dp);
    }
    device = grpo::resolve_device(cfg.run.device, launch.local_rank, "run.device");
    dist::CommOptions co;  // a GPU of its own: run.device cuda, or the only process of its node
    co.backend = dist::resolve_backend(cfg.parallel.backend, device, cfg.run.device == "cuda" || launch.local_world_size == 1,
                                       "parallel.backend");
    co.device_index = device.is_cuda() ? device.index() : 0;
    if (launch.rank > 0) spdlog::set_level(spdlog::level::warn);  // rank 0 reports
    world = dist::Comm::connect(launch, std::chrono::milliseconds(int64_t(cfg.parallel.timeout * 1000)), co);
    groups = dist::make_groups(*world, layout);
    comm = groups.dp.get();
    if (launch.world_size > 1)
      spdlog::info("parallel layout: {} processes, {}; collectives: {}", launch.world_size, layout.describe(),
                   world->backend());
    if (cfg.run.threads > 0) at::set_num_threads(static_cast<int>(cfg.run.threads));
    if (cfg.optim.precision == "bf16" && device.is_cpu() && !grpo::cpu_has_native_bf16())
      spdlog::warn("optim.precision: bf16 on a CPU without bf16 matrix instructions (AMX-BF16 or AVX512-BF16): "
                   "LibTorch emulates bf16 here and fp32 is likely faster");
    const std::string tok_path = cfg.tokenizer.resolved_path(cfg.model);
    tok = make_tokenizer(tok_path, cfg.tokenizer.eos_token);
    if (cfg.model.vocab_size == 0) cfg.model.vocab_size = tok->vocab_size();
    GRPO_CHECK(cfg.model.vocab_size >= tok->vocab_size(),
               "model.vocab_size {} is smaller than the tokenizer's {} ({})", cfg.model.vocab_size,
               tok->vocab_size(), tok_path.empty() ? "built-in" : tok_path);
    run_dir = cfg.run.dir;
    if (cfg.data.train.empty()) {
      task = std::make_unique<data::ArithmeticTask>(cfg.task, cfg.run.seed);
    } else {
      train_data = std::make_unique<data::JsonlDataset>(cfg.data.file(cfg.data.train), cfg.run.seed);
      if (!cfg.data.eval.empty())
        eval_data = std::make_unique<data::JsonlDataset>(cfg.data.file(cfg.data.eval), cfg.run.seed);
      spdlog::info("data: {} training examples from {} ({} lines skipped){}", train_data->size(),
                   cfg.data.train, train_data->skipped_lines(),
                   eval_data ? fmt::format(", {} held-out from {} ({} skipped)", eval_data->size(),
                                           cfg.data.eval, eval_data->skipped_lines())
                             : std::string(", no held-out set (data.eval)"));
    }
    if (cfg.sft.steps > 0) {
      data::JsonlDatasetConfig dc{cfg.sft.data, cfg.sft.question_field, cfg.sft.response_field, "",
                                  cfg.data.on_bad_line, true};
      sft_data = std::make_unique<data::JsonlDataset>(dc, cfg.run.seed);
      spdlog::info("sft: {} demonstrations from {} ({} lines skipped)", sft_data->size(), cfg.sft.data,
                   sft_data->skipped_lines());
    }
    if (!cfg.reward.plugin.empty()) {
      const std::string cmd = cfg.reward.plugin;
      const double timeout = cfg.reward.sample_timeout;
      reward::RewardRegistry::add("plugin", [cmd, timeout] { return reward::make_process_reward(cmd, timeout); });
    }
    reward::RewardParams rp;
    rp.overlong_buffer = cfg.reward.overlong_buffer;
    rp.language = cfg.reward.language;
    rewards = std::make_unique<reward::CombinedReward>(cfg.reward.weights, cfg.reward.failure_value, rp);
    if (cfg.reward.workers > 0)
      reward_pool = std::make_unique<reward::RewardPool>(*rewards, int(cfg.reward.workers), cfg.reward.sample_timeout,
                                                         cfg.reward.failure_value);
    accuracy_fn = reward::RewardRegistry::create("accuracy");
    at::manual_seed(cfg.run.seed);
    policy = make_model();
    policy->set_balance_loss_coef(cfg.moe.balance_loss_coef);
    policy->set_recompute(cfg.parallel.recompute);
    policy->set_sequence_parallel(cfg.parallel.sequence_parallel);
    policy->set_vocab_limit(tok->vocab_size());  // padded ids are never sampled
    policy_to_precision();
  }

  // ---------------------------------------------------------------- device
  // The models live on `device`; batches, rewards, advantages and the loss's bookkeeping stay on
  // the CPU. Inputs go to the device at each model call and log-probs come back (a differentiable
  // copy: backward sends the gradient the other way), so only [rows, tokens] tensors cross.
  at::Device device{at::kCPU};
  // A model of the run's config on the run's device.
  std::unique_ptr<model::Transformer> make_model() {
    auto m = std::make_unique<model::Transformer>(cfg.model, model_parallel());
    if (!device.is_cpu()) m->to(device);
    return m;
  }
  at::Tensor on_device(const at::Tensor& t) const { return t.defined() ? t.to(device) : t; }
  static model::TokenLogProbs on_cpu(model::TokenLogProbs r) {
    r.logprobs = r.logprobs.to(at::kCPU);
    if (r.entropy.defined()) r.entropy = r.entropy.to(at::kCPU);
    return r;
  }

  // ---------------------------------------------------------------- MoE balancing
  // Per-layer expert load summed over the optimizer steps of the current stage step.
  std::map<int64_t, at::Tensor> step_load;
  // `share`: this rank's fraction of the batch (data parallel), so the ranks' terms add up.
  at::Tensor with_balance_loss(const at::Tensor& loss, double share = 1.0) {
    auto b = policy->take_balance_loss();
    return b.defined() ? loss + b.to(loss.device()) * share : loss;
  }
  // Data parallel supervised steps: this rank's examples [lo, hi) of a batch of B.
  std::pair<int64_t, int64_t> shard(int64_t B) const {
    return {B * comm->rank() / comm->size(), B * (comm->rank() + 1) / comm->size()};
  }
  // The masked mean log-loss of a supervised batch split over ranks: this rank's sum over the
  // token count of the whole batch; backward, gradients summed over ranks. Returns the loss.
  double supervised_update(const at::Tensor& logprobs, const at::Tensor& mask, double share) {
    auto total = mask.sum().to(at::kDouble).reshape({1});
    comm->all_reduce_sum(total);
    auto loss = with_balance_loss(-(logprobs * mask).sum() / std::max(1.0, total.item<double>()), share);
    arm_gradient_overlap();
    loss.backward();
    double value = loss.item<double>();
    if (comm->size() > 1) {
      all_reduce_gradients();
      std::vector<double> v{value};
      reduce(v, false);
      value = v[0];
    }
    return value;
  }
  // Element-wise sum (or max) of `v` over the data-parallel ranks, in place.
  void reduce(std::vector<double>& v, bool max) {
    auto t = at::tensor(v, at::kDouble);
    if (max) comm->all_reduce_max(t);
    else comm->all_reduce_sum(t);
    for (size_t i = 0; i < v.size(); ++i) v[i] = t[int64_t(i)].item<double>();
  }
  // Data parallel: every rank's gradient becomes the sum over ranks (each rank's loss already
  // carries the whole mini-batch's normalisation), all-reduced in buckets of ~16 MB: routed
  // experts over the ranks holding the same experts, everything else over the data-parallel group.
  // The buckets' all-reduces start during the backward pass that arm_gradient_overlap() precedes
  // (the last micro-batch's), as their gradients become ready (dist/grad_reducer.h).
  void all_reduce_gradients() {
    ensure_reducers();
    dense_reducer->finish();
    expert_reducer->finish();
  }
  void arm_gradient_overlap() {
    if (comm->size() == 1) return;
    ensure_reducers();
    dense_reducer->arm();
    expert_reducer->arm();
  }
  std::unique_ptr<dist::GradientReducer> dense_reducer, expert_reducer;
  const model::Transformer* reducers_of = nullptr;
  void ensure_reducers() {
    if (reducers_of == policy.get()) return;
    expert_reducer.reset();
    dense_reducer.reset();
    std::vector<at::Tensor> dense, experts;
    for (auto& [name, p] : policy->named_parameters())
      if (p.requires_grad()) (policy->is_expert_parameter(name) ? experts : dense).push_back(p);
    dense_reducer = std::make_unique<dist::GradientReducer>(dense, *comm);
    expert_reducer = std::make_unique<dist::GradientReducer>(experts, *groups.expert_dp);
    reducers_of = policy.get();
  }
  void after_optimizer_step() {
    if (comm->size() > 1)  // balance on the load of the whole data-parallel batch
      for (auto layer : policy->moe_layers()) {
        auto l = policy->expert_load(layer);
        comm->all_reduce_sum(l);
        policy->set_expert_load(layer, l);
      }
    for (auto layer : policy->moe_layers()) {
      auto l = policy->expert_load(layer).cpu();
      auto& acc = step_load[layer];
      acc = acc.defined() ? acc + l : l;
    }
    policy->update_router_bias(cfg.moe.bias_update_rate);
  }
  // One line of metrics.jsonl (rank 0), with the MoE load statistics of the step; returns the
  // mean max/mean expert load (0 for a dense model).
  double write_metrics(nlohmann::json& j) {
    double ratio = 0;
    if (!policy->moe_layers().empty()) {
      auto [stats, r] = take_load_stats();
      j["moe_load_max_over_mean"] = ratio = r;
      j["moe"] = stats;
    }
    if (leader()) metrics << j.dump() << "\n" << std::flush;
    return ratio;
  }
  // {"layer_N": {"max_over_mean", "min_over_mean", "load": [...]}} and the mean max/mean ratio.
  std::pair<nlohmann::json, double> take_load_stats() {
    nlohmann::json j = nlohmann::json::object();
    double ratio_sum = 0;
    for (auto& [layer, load] : step_load) {
      auto l = load.to(at::kDouble);
      double mean = std::max(1e-12, l.mean().item<double>());
      double mx = l.max().item<double>() / mean, mn = l.min().item<double>() / mean;
      std::vector<int64_t> counts(load.data_ptr<int64_t>(), load.data_ptr<int64_t>() + load.numel());
      j[fmt::format("layer_{}", layer)] = {{"max_over_mean", mx}, {"min_over_mean", mn}, {"load", counts}};
      ratio_sum += mx;
    }
    double avg = step_load.empty() ? 0.0 : ratio_sum / step_load.size();
    step_load.clear();
    return {j, avg};
  }

  // ---------------------------------------------------------------- questions and prompts
  Item train_item(int64_t position, core::Stream stream = core::Stream::kTrainData) const {
    if (task) {
      auto p = task->train_problem(position, stream);
      return {p.question, p.answer, ""};
    }
    const auto& e = train_data->sample(position);
    return {e.prompt, e.answer, fmt::format("{}:{}", cfg.data.train, e.line)};
  }
  int64_t eval_count() const {
    if (task) return cfg.eval.num_prompts;
    return eval_data ? std::min<int64_t>(cfg.eval.num_prompts, eval_data->size()) : 0;
  }
  Item eval_item(int64_t i) const {
    if (task) {
      auto p = task->heldout_problem(i);
      return {p.question, p.answer, ""};
    }
    const auto& e = eval_data->examples()[i];
    return {e.prompt, e.answer, fmt::format("{}:{}", cfg.data.eval, e.line)};
  }
  // Prompt token ids (text/prompt.h: the same formatting everywhere); a prompt that leaves no
  // room for the response is an error naming its line.
  std::vector<int64_t> prompt_ids(const Item& item) const {
    std::vector<int64_t> ids;
    try {
      ids = text::encode_prompt(cfg.prompt, *tok, item.question);
    } catch (const Error& e) {
      fail("{}: cannot encode the prompt: {}", item.origin.empty() ? "built-in task" : item.origin, e.what());
    }
    const int64_t longest = cfg.grpo.max_new_tokens_max(cfg.rollout.max_new_tokens);
    GRPO_CHECK(int64_t(ids.size()) + longest <= cfg.model.max_position_embeddings,
               "{}: the prompt is {} tokens; with max_new_tokens {} (rollout.max_new_tokens or "
               "grpo.length_schedule) it exceeds model.max_position_embeddings {}",
               item.origin.empty() ? "built-in task" : item.origin, ids.size(), longest,
               cfg.model.max_position_embeddings);
    return ids;
  }

  // ---------------------------------------------------------------- optimizer & checkpoints
  // ZeRO-1 (parallel.zero1): each parameter's AdamW state lives on one rank of its data-parallel
  // group (routed experts: the expert-data-parallel group), whole tensors assigned greedily by size;
  // the owner updates the parameter and broadcasts it. owner[i]: the owning rank (in its group) of
  // named_parameters()[i]; empty without ZeRO-1.
  std::vector<int64_t> owner;
  dist::Comm& group_of(const std::string& name) const {
    return policy->is_expert_parameter(name) ? *groups.expert_dp : *comm;
  }
  bool owns(size_t i, const std::string& name) const {
    return owner.empty() || owner[i] == group_of(name).rank();
  }
  // ZeRO-1: the owner's fp32 tensor of parameter i (shaped as p) on every rank of its group
  // (collective; `mine` is used on the owner only)
  at::Tensor from_owner(size_t i, const std::string& name, const at::Tensor& p, const at::Tensor& mine) {
    auto t = owns(i, name) && mine.defined() ? mine.clone() : at::empty(p.sizes(), p.options().dtype(at::kFloat));
    group_of(name).broadcast(t, owner[i]);
    return t;
  }
  void assign_owners() {
    owner.clear();
    if (!cfg.parallel.zero1) return;
    const auto params = policy->named_parameters();
    std::vector<size_t> order(params.size());
    for (size_t i = 0; i < order.size(); ++i) order[i] = i;
    std::stable_sort(order.begin(), order.end(),
                     [&](size_t a, size_t b) { return params[a].second.numel() > params[b].second.numel(); });
    owner.assign(params.size(), 0);
    std::map<bool, std::vector<int64_t>> load;  // elements owned per rank, dense / expert groups
    int64_t mine = 0, total = 0;
    for (size_t i : order) {
      const auto& [name, p] = params[i];
      if (!p.requires_grad()) continue;
      const bool expert = policy->is_expert_parameter(name);
      auto& l = load[expert];
      l.resize(size_t(group_of(name).size()), 0);
      owner[i] = int64_t(std::min_element(l.begin(), l.end()) - l.begin());
      l[size_t(owner[i])] += p.numel();
      total += p.numel();
      if (owns(i, name)) mine += p.numel();
    }
    spdlog::info("ZeRO-1: AdamW state for {} of {} parameter elements on this rank", mine, total);
  }
  void zero_grad() {
    for (auto& p : policy->parameters())
      if (p.grad().defined()) p.mutable_grad() = at::Tensor();
  }
  // ---- mixed precision (optim.precision: bf16): the trainable parameters are bf16; AdamW updates
  // fp32 master copies (of this rank's parameters under ZeRO-1), which are copied back after each
  // step. master[i]: the master of named_parameters()[i], undefined where none.
  bool bf16() const { return cfg.optim.precision == "bf16"; }
  std::vector<at::Tensor> master;
  io::NamedTensors master_source;  // whole fp32 tensors the masters start from (else the parameters)
  double clip_coef = 1.0;          // bf16: gradient scale applied when copying to the masters
  // A model in the run's precision: trainable parameters in bf16 (the router bias stays fp32).
  void to_precision(model::Transformer& m) {
    if (!bf16()) return;
    at::NoGradGuard ng;
    for (auto& p : m.parameters())
      if (p.requires_grad()) p.set_data(p.data().to(at::kBFloat16));
  }
  // The policy's precision, its masters starting from its current fp32 values (collective).
  void policy_to_precision() {
    if (!bf16()) return;
    master_source = policy->full_parameters();
    master.clear();
    to_precision(*policy);
  }
  void init_masters() {
    const auto params = policy->named_parameters();
    std::map<std::string, at::Tensor> whole(master_source.begin(), master_source.end());
    master.assign(params.size(), at::Tensor());
    for (size_t i = 0; i < params.size(); ++i) {
      const auto& [name, p] = params[i];
      if (!p.requires_grad() || !owns(i, name)) continue;
      auto it = whole.find(name);
      master[i] = (it != whole.end() ? policy->local_slice(name, it->second) : p).detach().to(p.device(), at::kFloat).clone();
    }
    master_source.clear();
  }
  // The tensor AdamW updates for parameter i.
  at::Tensor opt_param(size_t i, const at::Tensor& p) const { return bf16() && master[i].defined() ? master[i] : p; }
  // Clips the global gradient norm to max_norm (0 or inf: no clipping); returns the norm.
  double clip_gradients(double max_norm) {
    if (!bf16()) return torch::nn::utils::clip_grad_norm_(policy->parameters(), max_norm);
    at::Tensor sq;  // summed where the gradients live: one sync
    for (auto& p : policy->parameters())
      if (p.grad().defined()) {
        auto t = p.grad().to(at::kDouble).pow(2).sum();
        sq = sq.defined() ? sq + t : t;
      }
    const double norm = sq.defined() ? std::sqrt(sq.item<double>()) : 0.0;
    clip_coef = max_norm > 0 && norm > max_norm ? max_norm / (norm + 1e-6) : 1.0;  // as clip_grad_norm_
    return norm;
  }
  // Whole parameters for a checkpoint: the fp32 masters under bf16 (from their owners), gathered.
  io::NamedTensors checkpoint_parameters() {
    if (!bf16()) return policy->full_parameters();
    io::NamedTensors out;
    size_t i = 0;
    for (auto& [name, p] : policy->named_parameters()) {
      at::Tensor t = p.requires_grad() ? master[i] : p;
      if (!owner.empty() && p.requires_grad()) t = from_owner(i, name, p, t);
      ++i;
      out.emplace_back(name, policy->gather_full(name, t));
    }
    return out;
  }
  // AdamW on this rank's parameters; with ZeRO-1 every owner then broadcasts what it updated, one
  // flat tensor per owner and group
  void step_optimizer() {
    if (bf16()) {  // gradients to the masters (clipped), AdamW, masters back to the parameters
      const auto params = policy->parameters();
      for (size_t i = 0; i < params.size(); ++i)
        if (master[i].defined())
          master[i].mutable_grad() = params[i].grad().defined() ? params[i].grad().to(at::kFloat) * clip_coef : at::Tensor();
      clip_coef = 1.0;
      opt->step();
      at::NoGradGuard ng;
      for (size_t i = 0; i < params.size(); ++i)
        if (master[i].defined()) params[i].detach().copy_(master[i]);
    } else {
      opt->step();
    }
    if (owner.empty()) return;
    at::NoGradGuard ng;
    const auto params = policy->named_parameters();
    for (bool expert : {false, true}) {
      dist::Comm& g = expert ? *groups.expert_dp : *comm;
      for (int64_t r = 0; r < g.size(); ++r) {
        std::vector<at::Tensor> mine;
        for (size_t i = 0; i < params.size(); ++i)
          if (params[i].second.requires_grad() && owner[i] == r &&
              policy->is_expert_parameter(params[i].first) == expert)
            mine.push_back(params[i].second);
        if (mine.empty()) continue;
        std::vector<at::Tensor> flat_parts;
        for (auto& p : mine) flat_parts.push_back(p.detach().reshape({-1}));
        auto flat = at::cat(flat_parts);
        g.broadcast(flat, r);
        int64_t off = 0;
        for (auto& p : mine) {
          p.detach().copy_(flat.narrow(0, off, p.numel()).view_as(p));
          off += p.numel();
        }
      }
    }
  }
  void make_optimizer(double lr, double weight_decay, double b1, double b2, double eps) {
    assign_owners();
    if (bf16() && (master.empty() || !master_source.empty())) init_masters();
    std::vector<at::Tensor> decay, no_decay;
    size_t i = 0;
    for (auto& [name, p] : policy->named_parameters()) {
      if (owns(i, name)) (p.dim() >= 2 ? decay : no_decay).push_back(opt_param(i, p));
      ++i;
    }
    auto o = torch::optim::AdamWOptions(lr).betas({b1, b2}).eps(eps).weight_decay(weight_decay);
    std::vector<torch::optim::OptimizerParamGroup> groups;
    groups.emplace_back(decay, std::make_unique<torch::optim::AdamWOptions>(o));
    auto o0 = o;
    o0.weight_decay(0.0);
    groups.emplace_back(no_decay, std::make_unique<torch::optim::AdamWOptions>(o0));
    opt = std::make_unique<torch::optim::AdamW>(std::move(groups), o);
  }
  void make_stage_optimizer() {
    if (st.stage == "pretrain")
      make_optimizer(cfg.pretrain.lr, cfg.pretrain.weight_decay, 0.9, 0.999, 1e-8);
    else if (st.stage == "sft")
      make_optimizer(cfg.sft.lr, cfg.sft.weight_decay, cfg.optim.beta1, cfg.optim.beta2, cfg.optim.eps);
    else
      make_optimizer(cfg.optim.lr, cfg.optim.weight_decay, cfg.optim.beta1, cfg.optim.beta2,
                     cfg.optim.eps);
  }
  void set_lr(double lr) {
    for (auto& g : opt->param_groups()) static_cast<torch::optim::AdamWOptions&>(g.options()).lr(lr);
  }

  // Whole AdamW state tensors (collective: with ZeRO-1 each owner broadcasts its parameters' state
  // in its group; slices are gathered over tp/ep).
  io::NamedTensors optimizer_tensors() {
    io::NamedTensors out;
    auto& state = opt->state();
    size_t i = 0;
    for (auto& [name, p] : policy->named_parameters()) {
      at::Tensor m1, m2;
      int64_t step = 0;
      bool has = false;
      if (owns(i, name))
        if (auto it = state.find(opt_param(i, p).unsafeGetTensorImpl()); it != state.end()) {
          auto& s = static_cast<torch::optim::AdamWParamState&>(*it->second);
          has = true, m1 = s.exp_avg(), m2 = s.exp_avg_sq(), step = s.step();
        }
      if (!owner.empty() && p.requires_grad()) {  // from the owner: whether it has state, step, m, v
        auto& g = group_of(name);
        auto head = at::tensor({int64_t(has), step}, at::kLong);
        g.broadcast(head, owner[i]);
        has = head[0].item<int64_t>() == 1, step = head[1].item<int64_t>();
        if (has) m1 = from_owner(i, name, p, m1), m2 = from_owner(i, name, p, m2);
      }
      ++i;
      if (!has) continue;  // parameter never updated
      out.emplace_back(name + ".exp_avg", policy->gather_full(name, m1));
      out.emplace_back(name + ".exp_avg_sq", policy->gather_full(name, m2));
      out.emplace_back(name + ".step", at::scalar_tensor(step, at::kLong));
    }
    return out;
  }
  void load_optimizer_tensors(const io::NamedTensors& tensors, const std::string& origin) {
    std::map<std::string, at::Tensor> by(tensors.begin(), tensors.end());
    auto& state = opt->state();
    size_t i = 0;
    for (auto& [name, p] : policy->named_parameters()) {
      if (!owns(i++, name)) continue;  // ZeRO-1: another rank's
      auto a = by.find(name + ".exp_avg");
      if (a == by.end()) continue;  // parameter never updated
      auto b = by.find(name + ".exp_avg_sq");
      auto s = by.find(name + ".step");
      GRPO_CHECK(b != by.end() && s != by.end(), "{}: incomplete optimizer state for '{}'", origin, name);
      auto m1 = policy->local_slice(name, a->second), m2 = policy->local_slice(name, b->second);
      GRPO_CHECK(a->second.sizes() == b->second.sizes() && m1.sizes() == p.sizes() && m2.sizes() == p.sizes(),
                 "{}: optimizer state of '{}' does not match the parameter's shape", origin, name);
      auto ps = std::make_unique<torch::optim::AdamWParamState>();
      ps->step(s->second.item<int64_t>());
      ps->exp_avg(m1.to(p.device()).clone());
      ps->exp_avg_sq(m2.to(p.device()).clone());
      state[opt_param(i - 1, p).unsafeGetTensorImpl()] = std::move(ps);
    }
  }

  // Checkpoints hold whole tensors (slices gathered over tp/ep), so any layout loads them.
  void save(const std::string& tag) {
    Checkpoint ck;
    ck.model = checkpoint_parameters();  // collective
    ck.optimizer = optimizer_tensors();
    if (ref) ck.reference = ref->full_parameters();
    if (!leader()) return;  // the other data-parallel ranks hold the same state
    ck.state = st;
    ck.config_yaml = to_yaml(cfg, false);
    ck.seed = static_cast<uint64_t>(cfg.run.seed);
    ck.lr = st.optimizer_step > 0 ? lr_at(st.optimizer_step - 1) : 0.0;
    auto dir = save_checkpoint((run_dir / "checkpoints").string(), tag, ck, cfg.checkpoint.keep);
    spdlog::info("checkpoint {}", dir);
  }

  bool try_resume() {
    std::optional<std::string> path;
    if (cfg.run.resume == "never") return false;
    if (cfg.run.resume == "auto") path = latest_checkpoint((run_dir / "checkpoints").string());
    else path = cfg.run.resume;
    if (!path) return false;
    Checkpoint ck;
    try {
      ck = load_checkpoint(*path);
    } catch (const Error& e) {
      fail("run.resume = {}: cannot resume from {}: {}", cfg.run.resume, *path, e.what());
    }
    GRPO_CHECK(ck.seed == static_cast<uint64_t>(cfg.run.seed),
               "{}: checkpoint was made with run.seed {}, the config says {}", *path, ck.seed,
               cfg.run.seed);
    policy->load_parameters(ck.model, *path + "/model.safetensors");
    if (bf16()) master_source = ck.model;
    st = ck.state;
    make_stage_optimizer();
    load_optimizer_tensors(ck.optimizer, *path + "/optimizer.safetensors");
    if (st.stage == "grpo" && cfg.grpo.kl_coef > 0) {
      ref = make_model();
      ref->set_vocab_limit(tok->vocab_size());
      to_precision(*ref);
      ref->load_parameters(ck.reference.empty() ? ck.model : ck.reference,
                           *path + "/reference.safetensors");
      ref->train(false);
    }
    const TrainState s = st;
    if (leader()) filter_jsonl(run_dir / "metrics.jsonl", [&](const nlohmann::json& j) {
      if (j.value("stage", "") == "pretrain") return j.value("step", 0) <= s.pretrain_step;
      if (j.value("stage", "") == "sft") return j.value("step", 0) <= s.sft_step;
      return s.stage == "grpo" && j.value("step", 0) <= s.rollout_step;
    });
    if (leader()) filter_jsonl(run_dir / "eval.jsonl", [&](const nlohmann::json& j) {
      return s.stage == "grpo" && j.value("step", 0) <= s.rollout_step;
    });
    spdlog::info("resumed from {} (stage {}, base step {}, rollout step {}, optimizer step {})",
                 *path, st.stage, st.pretrain_step, st.rollout_step, st.optimizer_step);
    return true;
  }

  // ---------------------------------------------------------------- forward helpers
  // Micro-batches of `rows` (train/micro_batch.h)
  std::vector<at::Tensor> micro_batches(const at::Tensor& rows, const ResponseBatch& s) {
    auto out = s.micro_batches(rows, cfg.grpo.micro_batch_tokens);
    if (policy->lockstep_group()) {  // expert parallel: as many forwards as the busiest rank, some empty
      std::vector<double> n{double(out.size())};
      reduce(n, true);
      while (out.size() < size_t(n[0])) out.push_back(at::empty({0}, at::kLong));
    }
    return out;
  }

  // ---------------------------------------------------------------- base stage
  void pretrain_step() {
    auto t0 = Clock::now();
    const int64_t B = cfg.pretrain.batch_size;
    const auto [lo, hi] = shard(B);  // data parallel: this rank's demonstrations
    std::vector<std::vector<int64_t>> seqs;
    std::vector<int64_t> prompt_lens;
    int64_t L = 0;
    for (int64_t j = lo; j < hi; ++j) {
      auto p = task->train_problem(st.pretrain_position + j, core::Stream::kPretrainData);
      auto demo = task->demonstration(
          p, core::hash_key({uint64_t(core::Stream::kPretrainData), uint64_t(cfg.run.seed),
                             uint64_t(st.pretrain_step), uint64_t(j)}));
      auto ids = prompt_ids({p.question, p.answer, ""});
      prompt_lens.push_back(ids.size());
      auto c = tok->encode(demo);
      ids.insert(ids.end(), c.begin(), c.end());
      ids.push_back(tok->eos_id());
      L = std::max<int64_t>(L, ids.size());
      seqs.push_back(std::move(ids));
    }
    const int64_t Bl = hi - lo;
    auto tokens = at::full({Bl, std::max<int64_t>(L, 2)}, tok->pad_id(), at::kLong);
    L = tokens.size(1);
    auto mask = at::zeros({Bl, L - 1}, at::kFloat);
    auto ta = tokens.accessor<int64_t, 2>();
    auto ma = mask.accessor<float, 2>();
    for (int64_t i = 0; i < Bl; ++i) {
      for (size_t t = 0; t < seqs[i].size(); ++t) ta[i][t] = seqs[i][t];
      for (int64_t t = prompt_lens[i] - 1; t + 1 < static_cast<int64_t>(seqs[i].size()); ++t) ma[i][t] = 1;
    }
    at::Tensor real;  // an MoE model's statistics count the tokens that predict a real token
    if (!policy->moe_layers().empty()) {
      real = at::zeros({Bl, L - 1}, at::kBool);
      for (int64_t i = 0; i < Bl; ++i) real[i].narrow(0, 0, int64_t(seqs[i].size()) - 1).fill_(true);  // with a target
    }
    policy->train(true);
    zero_grad();
    auto hidden = policy->forward(on_device(tokens.narrow(1, 0, L - 1)), {}, on_device(real));
    model::LogProbOptions lo_opts;
    lo_opts.with_entropy = false;
    auto lp = on_cpu(policy->token_logprobs(hidden, on_device(tokens.narrow(1, 1, L - 1)), lo_opts));
    const double loss = supervised_update(lp.logprobs, mask, double(Bl) / double(B));
    step_optimizer();
    after_optimizer_step();
    ++st.pretrain_step;
    st.pretrain_position += B;
    nlohmann::json j = {{"stage", "pretrain"}, {"step", st.pretrain_step}, {"loss", loss},
                        {"time_step", seconds_since(t0)}};
    write_metrics(j);
    if (st.pretrain_step % (cfg.run.log_every * 50) == 0 || st.pretrain_step == cfg.pretrain.steps)
      spdlog::info("base {:>4}/{} | loss {:.4f}", st.pretrain_step, cfg.pretrain.steps, loss);
  }

  // ---------------------------------------------------------------- SFT stage
  // One optimizer step on sft.batch_size demonstrations: prompt (formatted as in training) +
  // response + EOS, loss = mean log-loss over the response tokens. With packing, examples share
  // rows of at most max_position_embeddings tokens, each attending only to itself (segment ids).
  void sft_step() {
    auto t0 = Clock::now();
    const int64_t B = cfg.sft.batch_size, W = cfg.model.max_position_embeddings;
    struct Ex {
      std::vector<int64_t> ids;
      int64_t prompt_len;
    };
    std::vector<Ex> exs;
    const auto [lo, hi] = shard(B);  // data parallel: this rank's examples
    for (int64_t j = lo; j < hi; ++j) {
      const auto& e = sft_data->sample(st.sft_position + j);
      Ex x;
      if (e.system.empty()) {
        x.ids = prompt_ids({e.prompt, "", fmt::format("{}:{}", cfg.sft.data, e.line)});
      } else {  // a chat line's own system message
        GRPO_CHECK(cfg.prompt.chat != "none", "{}:{}: a system message needs a chat format (prompt.chat)",
                   cfg.sft.data, e.line);
        auto pc = cfg.prompt;
        pc.system = e.system;
        x.ids = text::encode_prompt(pc, *tok, e.prompt);
      }
      x.prompt_len = int64_t(x.ids.size());
      auto r = tok->encode(e.answer);
      x.ids.insert(x.ids.end(), r.begin(), r.end());
      x.ids.push_back(tok->eos_id());
      GRPO_CHECK(int64_t(x.ids.size()) <= W, "{}:{}: prompt + response is {} tokens, more than "
                 "model.max_position_embeddings {}", cfg.sft.data, e.line, x.ids.size(), W);
      exs.push_back(std::move(x));
    }
    // rows: each a list of examples (first fit in order when packing)
    std::vector<std::vector<size_t>> rows;
    std::vector<int64_t> used;
    for (size_t k = 0; k < exs.size(); ++k) {
      const int64_t n = int64_t(exs[k].ids.size());
      size_t r = rows.size();
      if (cfg.sft.packing)
        for (size_t q = 0; q < rows.size(); ++q)
          if (used[q] + n <= W) {
            r = q;
            break;
          }
      if (r == rows.size()) rows.emplace_back(), used.push_back(0);
      rows[r].push_back(k);
      used[r] += n;
    }
    const int64_t R = int64_t(rows.size()), L = *std::max_element(used.begin(), used.end());
    auto tokens = at::full({R, L}, tok->pad_id(), at::kLong);
    auto seg = at::zeros({R, L}, at::kLong), pos = at::zeros({R, L}, at::kLong);
    auto mask = at::zeros({R, L}, at::kFloat);  // mask[t] = 1: token t+1 is a response token
    auto ta = tokens.accessor<int64_t, 2>(), sa = seg.accessor<int64_t, 2>(), pa = pos.accessor<int64_t, 2>();
    auto ma = mask.accessor<float, 2>();
    for (int64_t r = 0; r < R; ++r) {
      int64_t off = 0, id = 0;
      for (size_t k : rows[size_t(r)]) {
        const auto& x = exs[k];
        ++id;
        for (int64_t t = 0; t < int64_t(x.ids.size()); ++t) {
          ta[r][off + t] = x.ids[size_t(t)];
          sa[r][off + t] = id;
          pa[r][off + t] = t;
          if (t >= x.prompt_len - 1 && t + 1 < int64_t(x.ids.size())) ma[r][off + t] = 1;
        }
        off += int64_t(x.ids.size());
      }
    }
    policy->train(true);
    zero_grad();
    // an example's last token predicts nothing: segment 0 (it attends to itself, unused), so an MoE
    // model's statistics count each example's tokens alike however the rows were packed
    auto in_seg = seg.narrow(1, 0, L - 1) * seg.narrow(1, 0, L - 1).eq(seg.narrow(1, 1, L - 1));
    auto hidden = policy->forward(on_device(tokens.narrow(1, 0, L - 1)), on_device(pos.narrow(1, 0, L - 1)),
                                  on_device(in_seg));
    model::LogProbOptions lo_opts;
    lo_opts.with_entropy = false;
    auto lp = on_cpu(policy->token_logprobs(hidden, on_device(tokens.narrow(1, 1, L - 1)), lo_opts));
    auto m = mask.narrow(1, 0, L - 1);
    const double loss = supervised_update(lp.logprobs, m, double(hi - lo) / double(B));
    if (cfg.optim.grad_clip > 0) clip_gradients(cfg.optim.grad_clip);
    step_optimizer();
    after_optimizer_step();
    ++st.sft_step;
    st.sft_position += B;
    std::vector<double> counts{double(R), m.sum().item<double>()};
    if (comm->size() > 1) reduce(counts, false);
    nlohmann::json j = {{"stage", "sft"},          {"step", st.sft_step},
                        {"loss", loss},            {"rows", int64_t(counts[0])},
                        {"tokens", int64_t(counts[1])}, {"time_step", seconds_since(t0)}};
    write_metrics(j);
    if (st.sft_step % (cfg.run.log_every * 20) == 0 || st.sft_step == cfg.sft.steps)
      spdlog::info("sft  {:>4}/{} | loss {:.4f} | {} examples in {} rows", st.sft_step, cfg.sft.steps, loss, B,
                   int64_t(counts[0]));
  }

  // ---------------------------------------------------------------- evaluation
  // Every data-parallel rank evaluates its share of each block of eval.batch_size x dp prompts
  // (generation is keyed by prompt, so the split does not change the results); sums are reduced.
  EvalResult evaluate() {
    EvalResult r;
    const int64_t N = eval_count();
    if (N == 0) return r;
    const int64_t dp = comm->size(), bs = cfg.eval.batch_size;
    std::vector<double> sums{0, 0, 0};  // greedy correct, sampled correct, greedy well-formatted
    for (int64_t s = 0; s < N; s += bs * dp) {
      const int64_t b = std::min(N, s + comm->rank() * bs), n = std::min(N, b + bs) - b;
      if (n == 0 && !policy->lockstep_group()) continue;  // under lock step, idle generation
      rollout::GenerateRequest req;
      std::vector<Item> probs;
      for (int64_t i = b; i < b + n; ++i) {
        probs.push_back(eval_item(i));
        req.prompts.push_back(prompt_ids(probs.back()));
        req.prompt_keys.push_back(uint64_t(i));
      }
      req.group_size = 1;
      req.eos_id = tok->eos_id();
      req.pad_id = tok->pad_id();
      req.sampling = cfg.rollout;
      for (int pass = 0; pass < (cfg.eval.sampled ? 2 : 1); ++pass) {
        req.sampling.temperature = pass == 0 ? 0.0 : cfg.rollout.temperature;
        req.key = {uint64_t(cfg.run.seed), uint64_t(core::Stream::kEvalSampling), uint64_t(st.rollout_step)};
        auto out = rollout::generate(*policy, req);
        for (int64_t i = 0; i < n; ++i) {
          auto text = tok->decode(out.responses[i]);
          double ok = accuracy_fn->score(text, probs[i].answer);
          sums[pass] += ok;
          if (pass == 0) sums[2] += reward::has_r1_format(text);
        }
      }
    }
    if (dp > 1) reduce(sums, false);
    r.num_prompts = N;
    r.accuracy_greedy = sums[0] / N;
    r.format_greedy = sums[2] / N;
    if (cfg.eval.sampled) r.accuracy_sampled = sums[1] / N;
    return r;
  }
  void evaluate_and_log(const std::string& stage) {
    if (eval_count() == 0) return;  // no held-out set (data.eval empty)
    auto t0 = Clock::now();
    auto r = evaluate();
    if (!leader()) return;
    nlohmann::json j = {{"step", st.rollout_step},
                        {"optimizer_step", st.optimizer_step},
                        {"stage", stage},
                        {"accuracy_greedy", r.accuracy_greedy},
                        {"format_greedy", r.format_greedy},
                        {"num_prompts", r.num_prompts},
                        {"time", seconds_since(t0)}};
    if (r.accuracy_sampled >= 0) j["accuracy_sampled"] = r.accuracy_sampled;
    evals << j.dump() << "\n" << std::flush;
    spdlog::info("eval  {:>4} ({}) | held-out greedy accuracy {:.3f} sampled {:.3f} format {:.3f} ({} prompts)",
                 st.rollout_step, stage, r.accuracy_greedy, r.accuracy_sampled, r.format_greedy,
                 r.num_prompts);
  }

  // ---------------------------------------------------------------- GRPO
  double lr_at(int64_t step) const {
    const auto& o = cfg.optim;
    if (o.warmup_steps > 0 && step < o.warmup_steps) return o.lr * double(step + 1) / o.warmup_steps;
    if (o.schedule == "cosine") {
      int64_t total = cfg.grpo.rollout_steps * cfg.grpo.mini_batches * cfg.grpo.inner_epochs;
      double prog = std::clamp(double(step - o.warmup_steps) / std::max<int64_t>(1, total - o.warmup_steps), 0.0, 1.0);
      double floor = o.lr * o.min_lr_ratio;
      return floor + (o.lr - floor) * 0.5 * (1.0 + std::cos(M_PI * prog));
    }
    return o.lr;
  }

  // One generation round: G samples for each of n prompts from data position `first`, scored
  // (while generating, with reward workers).
  struct Round {
    rollout::RolloutBatch batch;
    std::vector<Item> items;  // one per prompt
    std::vector<reward::RewardResult> scored;
    double reward_busy = 0;
    double reward_wait = 0;  // after generation ended
    int64_t reward_timeouts = 0;
  };
  rollout::RolloutBatch empty_batch() const {  // no rows (1 prompt and 1 response column)
    rollout::RolloutBatch b;
    b.group_size = cfg.grpo.group_size;
    b.prompt_width = 1;
    b.tokens = at::full({0, 2}, tok->pad_id(), at::kLong);
    b.attention_mask = at::zeros({0, 2}, at::kBool);
    b.response_mask = at::zeros({0, 1}, at::kBool);
    b.sampling_logprobs = at::zeros({0, 1}, at::kFloat);
    return b;
  }
  Round rollout_round(int64_t first, int64_t n, int64_t max_new_tokens) {
    const auto& g = cfg.grpo;
    Round rd;
    if (n == 0 && !policy->lockstep_group()) {  // data parallel: no share of this round
      rd.batch = empty_batch();
      return rd;
    }
    rollout::GenerateRequest req;
    for (int64_t j = 0; j < n; ++j) {
      rd.items.push_back(train_item(first + j));
      req.prompts.push_back(prompt_ids(rd.items.back()));
      req.prompt_keys.push_back(uint64_t(first + j));
    }
    req.group_size = g.group_size;
    req.sampling = cfg.rollout;
    req.sampling.max_new_tokens = max_new_tokens;
    req.key = {uint64_t(cfg.run.seed), uint64_t(core::Stream::kSampling), uint64_t(st.rollout_step)};
    req.eos_id = tok->eos_id();
    req.pad_id = tok->pad_id();
    auto make_sample = [&](int64_t row, const std::vector<int64_t>& response) {
      reward::Sample smp;
      smp.completion = tok->decode(response);
      smp.answer = rd.items[row / g.group_size].answer;
      smp.prompt = rd.items[row / g.group_size].question;
      // the EOS counts as a generated token; a response of max_new_tokens tokens hit the limit
      smp.response_tokens = int64_t(response.size()) == max_new_tokens ? max_new_tokens : int64_t(response.size()) + 1;
      smp.max_response_tokens = max_new_tokens;
      return smp;
    };
    if (reward_pool)
      req.on_finish = [&](int64_t row, const std::vector<int64_t>& response) {
        reward_pool->submit(row, make_sample(row, response));
      };
    rd.batch = rollout::generate(*policy, req);
    const int64_t N = rd.batch.rows();
    auto t_wait = Clock::now();
    if (reward_pool && N > 0) {  // most of it was scored while the rollout was still generating
      rd.scored = reward_pool->wait(N);
      rd.reward_busy = reward_pool->last_stats().busy_seconds;
      rd.reward_timeouts = reward_pool->last_stats().timeouts;
    } else {
      auto t = Clock::now();
      for (int64_t i = 0; i < N; ++i) rd.scored.push_back(rewards->score(make_sample(i, rd.batch.responses[i])));
      rd.reward_busy = seconds_since(t);
    }
    rd.reward_wait = seconds_since(t_wait);
    return rd;
  }

  void grpo_step() {
    const auto& g = cfg.grpo;
    auto t0 = Clock::now();
    // 1. rollout and rewards; with dynamic sampling (DAPO), groups whose rewards are all equal are
    // dropped and more prompts are sampled until prompts_per_step groups remain (or the cap)
    const int64_t R_max = g.max_new_tokens_at(st.optimizer_step, cfg.rollout.max_new_tokens);
    std::vector<Round> rounds;
    std::vector<std::pair<int64_t, int64_t>> kept;  // this rank's (round, group)
    int64_t prompts_used = 0, groups_dropped = 0, global_kept = 0;  // over all ranks
    double reward_busy = 0, reward_wait = 0;
    int64_t reward_timeouts = 0;
    const int64_t dp = comm->size();
    std::vector<int64_t> kept_per_round;  // this rank's groups kept in each round
    for (int64_t r = 0; r < (g.dynamic_sampling ? g.dynamic_sampling_max_rounds : 1); ++r) {
      // the round's prompts: the next `want` of the data, split contiguously over the data-parallel
      // ranks (whole groups; a rank's share may be empty in later rounds)
      const int64_t want = g.prompts_per_step - global_kept;
      const int64_t b = want * comm->rank() / dp, n = want * (comm->rank() + 1) / dp - b;
      rounds.push_back(rollout_round(st.data_position + prompts_used + b, n, R_max));
      prompts_used += want;
      const auto& rd = rounds.back();
      reward_busy += rd.reward_busy;
      reward_wait += rd.reward_wait;
      reward_timeouts += rd.reward_timeouts;
      std::vector<double> counts{0, 0};  // kept, dropped
      for (int64_t q = 0; q < n; ++q) {
        bool all_equal = true;
        for (int64_t k = 1; k < g.group_size; ++k)
          all_equal = all_equal && rd.scored[q * g.group_size + k].total == rd.scored[q * g.group_size].total;
        if (g.dynamic_sampling && all_equal) ++counts[1];
        else kept.push_back({r, q}), ++counts[0];
      }
      kept_per_round.push_back(int64_t(counts[0]));
      if (dp > 1) reduce(counts, false);
      global_kept += int64_t(counts[0]);
      groups_dropped += int64_t(counts[1]);
      if (global_kept >= g.prompts_per_step) break;
    }
    if (global_kept == 0) {  // every group of every round was uniform: train on the last round as is
      spdlog::warn("dynamic sampling: all {} groups of {} rounds had equal rewards; this step has no signal",
                   groups_dropped, rounds.size());
      for (int64_t q = 0; q < int64_t(rounds.back().items.size()); ++q) kept.push_back({int64_t(rounds.size()) - 1, q});
      std::fill(kept_per_round.begin(), kept_per_round.end(), 0);
      kept_per_round.back() = int64_t(rounds.back().items.size());
    }
    rollout::RolloutBatch batch;
    std::vector<reward::RewardResult> scored;
    if (rounds.size() == 1 && int64_t(kept.size()) * g.group_size == rounds[0].batch.rows()) {
      batch = std::move(rounds[0].batch);
      scored = std::move(rounds[0].scored);
    } else if (kept.empty()) {  // data parallel: none of this rank's groups were kept
      batch = empty_batch();
    } else {
      std::vector<const rollout::RolloutBatch*> parts;
      for (auto& rd : rounds) parts.push_back(&rd.batch);
      batch = rollout::merge_groups(parts, kept, tok->pad_id());
      for (auto [ri, q] : kept)
        for (int64_t k = 0; k < g.group_size; ++k) scored.push_back(rounds[ri].scored[q * g.group_size + k]);
    }
    const int64_t N = batch.rows();  // this rank's rows
    // The step's rows over all ranks in data order: round by round, rank by rank. global_row[i]:
    // the position of this rank's row i; local_at[j]: this rank's row at position j, or -1.
    auto per_rank = at::tensor(kept_per_round, at::kLong);
    auto all_counts = dp > 1 ? at::stack(comm->all_gather(per_rank)) : per_rank.unsqueeze(0);  // [dp, rounds]
    const int64_t NG = all_counts.sum().item<int64_t>() * g.group_size;
    std::vector<int64_t> global_row;
    {
      auto c = all_counts.t().contiguous();  // [rounds, dp]
      const int64_t* cp = c.data_ptr<int64_t>();
      int64_t before = 0;
      for (int64_t r = 0; r < c.size(0); ++r)
        for (int64_t k = 0; k < dp; ++k) {
          if (k == comm->rank())
            for (int64_t i = 0; i < cp[r * dp + k] * g.group_size; ++i) global_row.push_back(before + i);
          before += cp[r * dp + k] * g.group_size;
        }
    }
    GRPO_CHECK(int64_t(global_row.size()) == N, "internal: {} rows but {} placed", N, global_row.size());
    const auto global_rows_t = at::tensor(global_row, at::kLong);
    const auto local_at = at::full({NG}, -1, at::kLong).index_copy_(0, global_rows_t, at::arange(N, at::kLong));
    const int64_t groups = NG / g.group_size;
    const int64_t n_mb = std::min(g.mini_batches, NG);  // dynamic sampling may keep fewer rows
    auto local_of = [&](const at::Tensor& global_rows) {  // this rank's rows among global ones, in their order
      auto l = local_at.index_select(0, global_rows);
      return l.masked_select(l >= 0);
    };
    // generation time; scoring that did not overlap with it is time_reward
    double t_rollout = seconds_since(t0) - reward_wait;

    // 2. rewards
    auto t1 = Clock::now();
    std::vector<double> rv(N);
    std::map<std::string, double> part_sums;  // every configured part (the same keys on every rank)
    for (auto& [name, w] : cfg.reward.weights) part_sums[name] = 0.0;
    int64_t reward_failures = 0;
    for (int64_t i = 0; i < N; ++i) {
      rv[i] = scored[i].total;
      for (auto& [k, v] : scored[i].parts) part_sums[k] += v;
      if (!scored[i].failed.empty() && reward_failures == 0)
        spdlog::warn("reward failed (scored {}): {}", cfg.reward.failure_value, scored[i].failed.front());
      reward_failures += int64_t(scored[i].failed.size());
    }
    auto rewards_t = at::tensor(rv, at::kDouble);
    double t_reward = reward_wait + seconds_since(t1);

    // 3. old and reference log-probs, advantages
    auto t2 = Clock::now();
    auto s = ResponseBatch::of(batch);
    auto sampling_lp = batch.sampling_logprobs.narrow(1, 0, s.R);
    auto all_rows = at::arange(N, at::kLong);

    // Old log-probs. Until the first optimizer step the policy being trained is the one that
    // sampled, so for the rows of the first mini-batch the training forward pass itself provides
    // them (detached: ratio = 1 exactly, as in TRL) and is stored for later epochs; one no-grad
    // pass computes them for the other rows only. With the KL in the reward, all are needed first.
    auto order_of = [&](int64_t epoch) {  // global rows, the same on every rank
      if (n_mb == 1 && epoch == 0) return at::arange(NG, at::kLong);
      // deterministic shuffle per (step, epoch)
      core::KeyedRng rng(core::hash_key({uint64_t(core::Stream::kMiniBatchShuffle), uint64_t(cfg.run.seed),
                                         uint64_t(st.rollout_step), uint64_t(epoch)}));
      std::vector<int64_t> perm(NG);
      for (int64_t i = 0; i < NG; ++i) perm[i] = i;
      for (int64_t i = NG - 1; i > 0; --i) std::swap(perm[i], perm[rng.uniform_int(0, i)]);
      return at::tensor(perm, at::kLong);
    };
    const bool kl_in_reward = ref && g.kl_in == "reward";
    const bool first_from_training_pass = g.recompute_old_logprobs && !kl_in_reward;
    const auto first_rows = local_of(order_of(0).narrow(0, 0, NG / n_mb));
    at::Tensor old_lp = g.recompute_old_logprobs ? sampling_lp.clone() : sampling_lp, ref_lp;
    double lp_diff_max = 0, lp_diff_sum = 0;
    auto log_diff = [&](const at::Tensor& recomputed, const at::Tensor& sampled, const at::Tensor& mask) {
      auto d = (recomputed.detach() - sampled).abs() * mask;
      if (d.numel() == 0) return;
      lp_diff_max = std::max(lp_diff_max, d.max().item<double>());
      lp_diff_sum += d.sum().item<double>();
    };
    {
      at::NoGradGuard ng;
      policy->train(false);
      if (g.recompute_old_logprobs) {
        at::Tensor rest = all_rows;
        if (first_from_training_pass) {
          auto in_first = at::zeros({N}, at::kBool).index_fill_(0, first_rows, true);
          rest = all_rows.masked_select(in_first.logical_not());
        }
        for (auto& mb : micro_batches(rest, s)) {
          auto lp = response_logprobs(*policy, s, mb, /*with_entropy=*/false).logprobs;
          log_diff(lp, sampling_lp.index_select(0, mb), s.resp_mask.index_select(0, mb));
          old_lp.index_copy_(0, mb, lp.to(old_lp.scalar_type()));
        }
      }
      if (ref) {
        ref_lp = at::zeros({N, s.R}, at::kFloat);
        for (auto& mb : micro_batches(all_rows, s))
          ref_lp.index_copy_(0, mb, response_logprobs(*ref, s, mb, /*with_entropy=*/false).logprobs);
      }
    }
    // KL in the reward (verl use_kl_in_reward): r -= beta * sum_t KL_t of the behaviour policy
    double kl_penalty_sum = 0;  // this rank's; the metric is the mean over the step's rows
    if (kl_in_reward) {
      auto pen = algo::kl_reward_penalty(old_lp, ref_lp, s.resp_mask, g.kl_coef, algo::parse_kl_estimator(g.kl_estimator));
      kl_penalty_sum = pen.sum().item<double>();
      rewards_t = rewards_t - pen;
    }
    algo::AdvantageOptions ao;
    ao.mode = algo::parse_advantage_mode(g.advantage);
    ao.eps = g.adv_eps;
    ao.unbiased_std = g.adv_unbiased_std;
    // every rank computes the advantages of the whole step (batch_std needs them all) and keeps its rows
    auto rewards_all = at::zeros({NG}, at::kDouble).index_copy_(0, global_rows_t, rewards_t);
    if (dp > 1) comm->all_reduce_sum(rewards_all);
    auto adv = algo::group_advantages(rewards_all, g.group_size, ao);
    adv.values = adv.values.index_select(0, global_rows_t);
    // overlong filtering (DAPO): truncated responses take no part in the loss
    at::Tensor loss_mask = s.resp_mask;
    int64_t truncated = 0;
    for (auto f : batch.finish) truncated += f == rollout::FinishReason::kLength;
    if (g.mask_truncated && truncated > 0) {
      std::vector<float> keep(N);
      for (int64_t i = 0; i < N; ++i) keep[i] = batch.finish[i] == rollout::FinishReason::kLength ? 0.f : 1.f;
      loss_mask = s.resp_mask * at::tensor(keep, at::kFloat).unsqueeze(1);
    }

    // 4. optimizer steps
    policy->train(true);
    algo::PolicyLossOptions po;
    po.clip_eps_low = g.clip_eps_low;
    po.clip_eps_high = g.clip_eps_high;
    po.sequence_ratio = g.importance_ratio == "sequence";
    po.dual_clip = g.dual_clip;
    po.ratio_cap = g.ratio_cap;
    po.log_ratio_clamp = g.log_ratio_clamp;
    po.kl_coef = kl_in_reward ? 0.0 : g.kl_coef;
    po.kl_estimator = algo::parse_kl_estimator(g.kl_estimator);
    po.kl_clamp = g.kl_clamp;
    po.entropy_coef = g.entropy_coef;
    auto agg = algo::parse_loss_aggregation(g.loss_aggregation);
    double loss_sum = 0, kl_sum = 0, clip_lo = 0, clip_hi = 0, dual_sum = 0, ent_sum = 0, ratio_sum = 0,
           ratio_max = 0, ratio_min = std::numeric_limits<double>::infinity(), gn_sum = 0, tok_count = 0;
    int64_t n_opt = 0;
    nlohmann::json updates = nlohmann::json::array();  // one record per optimizer step
    for (int64_t epoch = 0; epoch < g.inner_epochs; ++epoch) {
      const at::Tensor order = order_of(epoch);
      for (int64_t m = 0; m < n_mb; ++m) {
        int64_t b = NG * m / n_mb, e = NG * (m + 1) / n_mb;
        auto rows = local_of(order.narrow(0, b, e - b));  // this rank's share of the mini-batch
        auto mb_mask = loss_mask.index_select(0, rows);
        // weights from the whole mini-batch's totals, so the ranks' losses add up to its loss
        auto mb_total = mb_mask.sum().to(at::kDouble).reshape({1});
        comm->all_reduce_sum(mb_total);
        const double total_tokens = mb_total.item<double>();
        // (indexed by this rank's row ids: micro-batches take the rows in another order)
        auto by_row = [&](const at::Tensor& w) { return at::zeros({N, s.R}, w.options()).index_copy_(0, rows, w); };
        auto weights = by_row(algo::aggregation_weights(mb_mask, agg, R_max, double(e - b), total_tokens));
        auto ent_weights = by_row(algo::aggregation_weights(mb_mask, algo::LossAggregation::kTokenMean, 0,
                                                            double(e - b), total_tokens));
        zero_grad();
        double mb_loss = 0, mb_kl = 0, mb_tokens = 0, mb_rmin = std::numeric_limits<double>::infinity(), mb_rmax = 0;
        const auto mbs = micro_batches(rows, s);
        for (size_t k = 0; k < mbs.size(); ++k) {
          const auto& mb = mbs[k];
          auto lp = response_logprobs(*policy, s, mb);
          auto mask = loss_mask.index_select(0, mb);
          at::Tensor old_mb;
          if (first_from_training_pass && epoch == 0 && m == 0) {
            old_mb = lp.logprobs.detach();
            log_diff(old_mb, sampling_lp.index_select(0, mb), s.resp_mask.index_select(0, mb));
            old_lp.index_copy_(0, mb, old_mb.to(old_lp.scalar_type()));
          } else {
            old_mb = old_lp.index_select(0, mb);
          }
          algo::PolicyLossInputs li;
          li.logp = lp.logprobs;
          li.old_logp = old_mb;
          if (ref_lp.defined() && po.kl_coef != 0) li.ref_logp = ref_lp.index_select(0, mb);
          li.advantages = adv.values.index_select(0, mb);
          li.mask = mask;
          li.weights = weights.index_select(0, mb);
          li.entropy = lp.entropy;
          li.entropy_weights = ent_weights.index_select(0, mb);
          auto out = algo::policy_loss(li, po);
          auto loss = with_balance_loss(out.loss, double(mb.size(0)) / double(e - b));  // this micro-batch's share
          if (k + 1 == mbs.size()) arm_gradient_overlap();  // the last backward of the mini-batch
          loss.backward();
          mb_loss += out.loss.item<double>();
          double nt = out.tokens;
          tok_count += nt;
          kl_sum += out.kl_mean * nt;
          clip_lo += out.clip_low_fraction * nt;
          clip_hi += out.clip_high_fraction * nt;
          dual_sum += out.dual_clip_fraction * nt;
          ratio_sum += out.ratio_mean * nt;
          if (nt > 0) ratio_max = std::max(ratio_max, out.ratio_max), ratio_min = std::min(ratio_min, out.ratio_min);
          if (nt > 0) mb_rmax = std::max(mb_rmax, out.ratio_max), mb_rmin = std::min(mb_rmin, out.ratio_min);
          mb_kl += out.kl_mean * nt;
          mb_tokens += nt;
          ent_sum += (lp.entropy.detach() * mask).sum().item<double>();
        }
        if (dp > 1) {  // the mini-batch's gradient and statistics over all ranks
          all_reduce_gradients();
          std::vector<double> sums{mb_loss, mb_kl, mb_tokens}, maxes{mb_rmax, -mb_rmin};
          reduce(sums, false);
          reduce(maxes, true);
          mb_loss = sums[0], mb_kl = sums[1], mb_tokens = sums[2], mb_rmax = maxes[0], mb_rmin = -maxes[1];
        }
        double max_norm = cfg.optim.grad_clip > 0 ? cfg.optim.grad_clip : std::numeric_limits<double>::infinity();
        gn_sum += clip_gradients(max_norm);
        set_lr(lr_at(st.optimizer_step));
        step_optimizer();
        after_optimizer_step();
        ++st.optimizer_step;
        ++n_opt;
        loss_sum += mb_loss;
        const bool refresh = ref && g.ref_refresh_steps > 0 && st.optimizer_step % g.ref_refresh_steps == 0;
        if (refresh) {
          ref->copy_from(*policy);
          st.ref_version = st.optimizer_step;
        }
        updates.push_back({{"optimizer_step", st.optimizer_step},
                           {"epoch", epoch},
                           {"loss", mb_loss},
                           {"kl", mb_kl / std::max(1.0, mb_tokens)},
                           {"ratio_min", std::isfinite(mb_rmin) ? mb_rmin : 0.0},
                           {"ratio_max", mb_rmax},
                           {"ref_refreshed", refresh}});
      }
    }
    double t_update = seconds_since(t2);
    ++st.rollout_step;
    st.data_position += prompts_used;

    // 5. metrics (over all ranks)
    double rmean = rewards_all.mean().item<double>();
    double rstd = NG > 1 ? rewards_all.std().item<double>() : 0.0;
    double resp_tokens = s.resp_mask.sum().item<double>();
    if (dp > 1) {
      std::vector<double> sums{tok_count, kl_sum, clip_lo, clip_hi, dual_sum, ratio_sum, ent_sum, lp_diff_sum,
                               double(truncated), resp_tokens, double(reward_failures), double(reward_timeouts),
                               reward_busy, kl_penalty_sum};
      for (auto& [k, v] : part_sums) sums.push_back(v);
      std::vector<double> maxes{ratio_max, std::isfinite(ratio_min) ? -ratio_min : -1e300, lp_diff_max};
      reduce(sums, false);
      reduce(maxes, true);
      tok_count = sums[0], kl_sum = sums[1], clip_lo = sums[2], clip_hi = sums[3], dual_sum = sums[4];
      ratio_sum = sums[5], ent_sum = sums[6], lp_diff_sum = sums[7], truncated = int64_t(sums[8]);
      resp_tokens = sums[9], reward_failures = int64_t(sums[10]), reward_timeouts = int64_t(sums[11]);
      reward_busy = sums[12], kl_penalty_sum = sums[13];
      size_t k = 14;
      for (auto& [name, v] : part_sums) v = sums[k++];
      ratio_max = maxes[0], ratio_min = -maxes[1], lp_diff_max = maxes[2];
    }
    double tstep = seconds_since(t0);
    double denom = std::max(1.0, tok_count);
    nlohmann::json j = {
        {"stage", "grpo"},
        {"step", st.rollout_step},
        {"optimizer_step", st.optimizer_step},
        {"epoch", train_data ? double(st.data_position) / train_data->size() : 0.0},
        {"reward_mean", rmean},
        {"reward_std", rstd},
        {"reward_failures", reward_failures},
        {"accuracy", part_sums.count("accuracy") ? part_sums["accuracy"] / NG : -1.0},
        {"format_rate", part_sums.count("format") ? part_sums["format"] / NG : -1.0},
        {"loss", loss_sum / std::max<int64_t>(1, n_opt)},
        {"kl", kl_sum / denom},
        {"clip_low_fraction", clip_lo / denom},
        {"clip_high_fraction", clip_hi / denom},
        {"clip_fraction", (clip_lo + clip_hi) / denom},
        {"ratio_mean", ratio_sum / denom},
        {"ratio_max", ratio_max},
        {"ratio_min", std::isfinite(ratio_min) ? ratio_min : 0.0},
        {"dual_clip_fraction", dual_sum / denom},
        {"kl_reward_penalty", kl_penalty_sum / std::max<int64_t>(1, NG)},
        {"entropy", ent_sum / denom},
        {"response_length", resp_tokens / NG},
        {"truncation_rate", double(truncated) / NG},
        {"zero_adv_group_fraction", double(adv.zero_std_groups) / std::max<int64_t>(1, groups)},
        {"max_new_tokens", R_max},
        {"prompts_sampled", prompts_used},
        {"processes", world->size()},
        {"groups_dropped", groups_dropped},
        {"groups_trained", groups},
        {"sampling_rounds", int64_t(rounds.size())},
        {"grad_norm", gn_sum / std::max<int64_t>(1, n_opt)},
        {"lr", lr_at(st.optimizer_step - 1)},
        {"old_logprob_diff_max", lp_diff_max},
        {"old_logprob_diff_mean", lp_diff_sum / std::max(1.0, resp_tokens)},
        {"time_rollout", t_rollout},
        {"time_reward", t_reward},
        {"time_reward_busy", reward_busy},
        {"reward_timeouts", reward_timeouts},
        {"time_update", t_update},
        {"time_step", tstep},
        {"tokens_per_s", resp_tokens / tstep},
        {"ref_version", st.ref_version},
        {"updates", updates},
    };
    const double moe_ratio = write_metrics(j);
    if (st.rollout_step % cfg.run.log_every == 0 || st.rollout_step == g.rollout_steps) {
      spdlog::info(
          "grpo {:>4}/{} | reward {:.3f}±{:.3f} acc {:.3f} fmt {:.3f} | loss {:+.3e} kl {:.4f} "
          "clip {:.3f} ent {:.3f} | len {:.1f} | gnorm {:.3f} lr {:.2e} | rollout {:.2f}s reward "
          "{:.3f}s update {:.2f}s | {:.0f} tok/s{}",
          st.rollout_step, g.rollout_steps, rmean, rstd, j["accuracy"].get<double>(),
          j["format_rate"].get<double>(), j["loss"].get<double>(), j["kl"].get<double>(),
          j["clip_fraction"].get<double>(), j["entropy"].get<double>(), resp_tokens / NG,
          j["grad_norm"].get<double>(), j["lr"].get<double>(), t_rollout, t_reward, t_update,
          resp_tokens / tstep,
          policy->moe_layers().empty() ? std::string() : fmt::format(" | expert load max/mean {:.2f}", moe_ratio));
    }
  }

  // One line on what GRPO achieved, from eval.jsonl (the start of GRPO vs the latest evaluation).
  void summarize() {
    std::ifstream in(run_dir / "eval.jsonl");
    std::vector<nlohmann::json> rows;
    for (std::string line; std::getline(in, line);) {
      auto j = nlohmann::json::parse(line, nullptr, false);
      if (!j.is_discarded()) rows.push_back(j);
    }
    if (rows.size() < 2) return;
    double a = rows.front().value("accuracy_greedy", 0.0), b = rows.back().value("accuracy_greedy", 0.0);
    spdlog::info("held-out greedy accuracy {:.3f} at the start of GRPO -> {:.3f} at rollout step {} "
                 "({:+.1f} points); curves in {}", a, b, rows.back().value("step", 0), 100 * (b - a),
                 (run_dir / "metrics.jsonl").string());
  }

  std::string tag() const { return fmt::format("{:06d}", st.rollout_step); }

  void run(const std::function<bool(const TrainState&)>& stop_early) {
    fs::create_directories(run_dir);
    bool resumed = try_resume();
    if (!resumed) {
      if (!cfg.model.path.empty()) {
        policy = model::load_hf_model(cfg.model.path, model_parallel());
        policy->set_balance_loss_coef(cfg.moe.balance_loss_coef);
        policy->set_recompute(cfg.parallel.recompute);
        policy->set_sequence_parallel(cfg.parallel.sequence_parallel);
        policy->set_vocab_limit(tok->vocab_size());
        policy_to_precision();
        spdlog::info("policy loaded from {}", cfg.model.path);
      }
      if (!cfg.run.init_from.empty()) {  // the previous stage of a pipeline
        std::string dir = cfg.run.init_from;
        if (!fs::exists(fs::path(dir) / "manifest.json"))
          if (auto latest = latest_checkpoint((fs::path(dir) / "checkpoints").string())) dir = *latest;
        GRPO_CHECK(fs::exists(fs::path(dir) / "manifest.json"),
                   "run.init_from = {}: neither a grpo checkpoint (manifest.json) nor a run directory "
                   "with checkpoints", cfg.run.init_from);
        auto ck = load_checkpoint(dir);
        policy->load_parameters(ck.model, dir + "/model.safetensors");
        if (bf16()) master_source = ck.model;
        spdlog::info("policy initialised from {}", dir);
      }
      st = TrainState{};
      st.stage = cfg.pretrain.steps > 0 ? "pretrain" : cfg.sft.steps > 0 ? "sft" : "grpo";
      make_stage_optimizer();
      if (leader()) {
        fs::remove(run_dir / "metrics.jsonl");
        fs::remove(run_dir / "eval.jsonl");
      }
    }
    if (leader()) {
      std::ofstream c(run_dir / "config.yaml", std::ios::trunc);
      c << "# resolved configuration of this run (grpo_train --config config.yaml reproduces it)\n"
        << to_yaml(cfg, true);
    }
    if (leader()) {  // rank 0 writes the run directory; the others hold the same state
      metrics.open(run_dir / "metrics.jsonl", std::ios::app);
      evals.open(run_dir / "eval.jsonl", std::ios::app);
    }
    spdlog::info("policy: {} parameters, vocab {}, run directory {}", policy->num_parameters(),
                 cfg.model.vocab_size, run_dir.string());

    // The supervised stages: steps until `total`, then hand over to `next` (evaluated and saved as
    // `label`); false when stopped early (saved).
    auto supervised_stage = [&](const char* label, int64_t& done, int64_t total, const std::function<void()>& step,
                                const std::string& next) {
      auto t0 = Clock::now();
      while (done < total) {
        step();
        if (stop_early && stop_early(st)) {
          save(tag());
          spdlog::info("stopped early at {} step {}", label, done);
          return false;
        }
      }
      spdlog::info("{} stage done in {:.1f}s", label, seconds_since(t0));
      st.stage = next;
      make_stage_optimizer();
      evaluate_and_log(label);
      save(tag());
      return true;
    };
    if (st.stage == "pretrain") {
      if (!supervised_stage("base", st.pretrain_step, cfg.pretrain.steps, [&] { pretrain_step(); },
                            cfg.sft.steps > 0 ? "sft" : "grpo"))
        return;
    } else if (!resumed) {
      evaluate_and_log("base");
    }
    if (st.stage == "sft" && !supervised_stage("sft", st.sft_step, cfg.sft.steps, [&] { sft_step(); }, "grpo"))
      return;
    if (cfg.grpo.kl_coef > 0 && !ref) {
      ref = make_model();
      ref->set_vocab_limit(tok->vocab_size());
      to_precision(*ref);
      ref->copy_from(*policy);
      ref->train(false);
      st.ref_version = st.optimizer_step;
    }
    auto t0 = Clock::now();
    bool evaluated = false, saved = false, ran = false;
    while (st.rollout_step < cfg.grpo.rollout_steps) {
      grpo_step();
      ran = true;
      evaluated = saved = false;
      if (cfg.eval.every > 0 && st.rollout_step % cfg.eval.every == 0) {
        evaluate_and_log("grpo");
        evaluated = true;
      }
      if (cfg.checkpoint.every > 0 && st.rollout_step % cfg.checkpoint.every == 0) {
        save(tag());
        saved = true;
      }
      if (stop_early && stop_early(st)) {
        if (!saved) save(tag());
        spdlog::info("stopped early at rollout step {}", st.rollout_step);
        return;
      }
    }
    if (ran && !evaluated) evaluate_and_log("grpo");
    if (ran && !saved) save(tag());
    summarize();
    spdlog::info("done: {} rollout steps, {} optimizer steps in {:.1f}s", st.rollout_step,
                 st.optimizer_step, seconds_since(t0));
  }
};

std::unique_ptr<text::Tokenizer> make_tokenizer(const std::string& path, const std::string& eos_token) {
  if (path.empty())
    return std::make_unique<text::CharTokenizer>(data::ArithmeticTask::alphabet(),
                                                 std::vector<std::string>{"<think>", "</think>", "<answer>", "</answer>"});
  return text::HfTokenizer::from_dir(path, eos_token);
}

std::unique_ptr<model::Transformer> load_policy(const std::string& dir, Config* config) {
  if (fs::exists(fs::path(dir) / "manifest.json")) {  // a grpo checkpoint
    auto ck = load_checkpoint(dir);
    auto cfg = load_config_text(ck.config_yaml, dir + "/manifest.json (config)", {}, /*to_run=*/false);
    GRPO_CHECK(cfg.model.vocab_size > 0, "{}: the checkpoint's config has no vocab_size", dir);
    auto model = std::make_unique<model::Transformer>(cfg.model);
    model->load_parameters(ck.model, dir + "/model.safetensors");
    if (config) *config = std::move(cfg);
    return model;
  }
  GRPO_CHECK(fs::exists(fs::path(dir) / "config.json"), "'{}' is neither a grpo checkpoint "
             "(manifest.json) nor a Hugging Face model directory (config.json)", dir);
  auto model = model::load_hf_model(dir);
  if (config) {
    *config = Config{};
    config->model = model->config();
    config->model.path = dir;
  }
  return model;
}

Trainer::Trainer(Config config) : impl_(std::make_unique<Impl>(std::move(config))) {}
Trainer::~Trainer() = default;
void Trainer::run(const std::function<bool(const TrainState&)>& stop_early) {
  impl_->run(stop_early);
}
EvalResult Trainer::evaluate() { return impl_->evaluate(); }
const TrainState& Trainer::state() const { return impl_->st; }
model::Transformer& Trainer::policy() { return *impl_->policy; }
const Config& Trainer::config() const { return impl_->cfg; }

}  // namespace grpo::train
