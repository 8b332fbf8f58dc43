// What a run's stages share (session.h): its questions, data-parallel reductions and gradient
// all-reduces, MoE balancing and the metrics line.
#include "session.h"

#include <algorithm>
#include <cmath>

#include <ATen/ATen.h>
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "grpo/core/error.h"
#include "grpo/dist/comm.h"
#include "grpo/text/prompt.h"

namespace grpo::train {

// ---------------------------------------------------------------- questions and prompts
Questions::Questions(const Config& cfg, const text::Tokenizer& tok) : cfg_(cfg), tok_(tok) {
  if (cfg.data.train.empty()) {
    task_ = std::make_unique<data::ArithmeticTask>(
        cfg.task, cfg.run.seed,
        data::ToolFormat{cfg.env.code_open, cfg.env.turn_end, cfg.env.output_open, cfg.env.output_close});
  } else {
    train_data_ = std::make_unique<data::JsonlDataset>(cfg.data.file(cfg.data.train), cfg.run.seed);
    if (!cfg.data.eval.empty())
      eval_data_ = std::make_unique<data::JsonlDataset>(cfg.data.file(cfg.data.eval), cfg.run.seed);
    spdlog::info("data: {} training examples from {} ({} lines skipped){}", train_data_->size(),
                 cfg.data.train, train_data_->skipped_lines(),
                 eval_data_ ? fmt::format(", {} held-out from {} ({} skipped)", eval_data_->size(),
                                          cfg.data.eval, eval_data_->skipped_lines())
                            : std::string(", no held-out set (data.eval)"));
  }
  if (!cfg.env.observation_role.empty()) frame_ = text::observation_frame(cfg.prompt, cfg.env.observation_role, &tok);
  if (cfg.sft.steps > 0) {
    data::JsonlDatasetConfig dc{cfg.sft.data, cfg.sft.question_field, cfg.sft.response_field, "",
                                cfg.data.on_bad_line, true};
    sft_data_ = std::make_unique<data::JsonlDataset>(dc, cfg.run.seed);
    spdlog::info("sft: {} demonstrations from {} ({} lines skipped)", sft_data_->size(), cfg.sft.data,
                 sft_data_->skipped_lines());
  }
}

Item Questions::train(int64_t position, core::Stream stream) const {
  if (task_) {
    auto p = task_->train_problem(position, stream);
    return {p.question, p.answer, ""};
  }
  const auto& e = train_data_->sample(position);
  return {e.prompt, e.answer, fmt::format("{}:{}", cfg_.data.train, e.line)};
}

int64_t Questions::eval_count() const {
  if (task_) return cfg_.eval.num_prompts;
  return eval_data_ ? std::min<int64_t>(cfg_.eval.num_prompts, eval_data_->size()) : 0;
}

Item Questions::eval(int64_t i) const {
  if (task_) {
    auto p = task_->heldout_problem(i);
    return {p.question, p.answer, ""};
  }
  const auto& e = eval_data_->examples()[i];
  return {e.prompt, e.answer, fmt::format("{}:{}", cfg_.data.eval, e.line)};
}

std::vector<int64_t> Questions::prompt_ids(const Item& item) const {
  std::vector<int64_t> ids;
  try {
    ids = text::encode_prompt(cfg_.prompt, tok_, item.question);
  } catch (const Error& e) {
    fail("{}: cannot encode the prompt: {}", item.origin.empty() ? "built-in task" : item.origin, e.what());
  }
  const int64_t longest = cfg_.grpo.max_new_tokens_max(cfg_.rollout.max_new_tokens);
  GRPO_CHECK(int64_t(ids.size()) + longest <= cfg_.model.max_position_embeddings,
             "{}: the prompt is {} tokens; with max_new_tokens {} (rollout.max_new_tokens or "
             "grpo.length_schedule) it exceeds model.max_position_embeddings {}",
             item.origin.empty() ? "built-in task" : item.origin, ids.size(), longest,
             cfg_.model.max_position_embeddings);
  return ids;
}

std::vector<int64_t> Questions::prompt_ids_with_system(const std::string& question, const std::string& system) const {
  auto pc = cfg_.prompt;
  pc.system = system;
  return text::encode_prompt(pc, tok_, question);
}

// ---------------------------------------------------------------- device
at::Tensor Session::on_device(const at::Tensor& t) const { return t.defined() ? t.to(device) : t; }

model::TokenLogProbs Session::on_cpu(model::TokenLogProbs r) {
  r.logprobs = r.logprobs.to(at::kCPU);
  if (r.entropy.defined()) r.entropy = r.entropy.to(at::kCPU);
  return r;
}

double Session::lr_at(int64_t step) const {
  return scheduled_lr(cfg.optim, cfg.grpo.rollout_steps * cfg.grpo.mini_batches * cfg.grpo.inner_epochs, step);
}

// ---------------------------------------------------------------- data parallel
bool Session::any_rank(bool local) {
  if (world->size() == 1) return local;
  auto t = at::full({1}, local ? 1.0 : 0.0, at::kDouble);
  world->all_reduce_max(t);
  return t.item<double>() > 0;
}

void Session::reduce(std::vector<double>& v, bool max) {
  auto t = at::tensor(v, at::kDouble);
  if (max) comm->all_reduce_max(t);
  else comm->all_reduce_sum(t);
  for (size_t i = 0; i < v.size(); ++i) v[i] = t[int64_t(i)].item<double>();
}

void Session::ensure_reducers() {
  if (reducers_of_ == policy.get()) return;
  expert_reducer_.reset();
  dense_reducer_.reset();
  std::vector<at::Tensor> dense, experts;
  for (auto& [name, p] : policy->named_parameters())
    if (p.requires_grad()) (policy->is_expert_parameter(name) ? experts : dense).push_back(p);
  dense_reducer_ = std::make_unique<dist::GradientReducer>(dense, *comm);
  expert_reducer_ = std::make_unique<dist::GradientReducer>(experts, *groups.expert_dp);
  reducers_of_ = policy.get();
}

void Session::all_reduce_gradients() {
  ensure_reducers();
  dense_reducer_->finish();
  expert_reducer_->finish();
}

void Session::arm_gradient_overlap() {
  if (comm->size() == 1) return;
  ensure_reducers();
  dense_reducer_->arm();
  expert_reducer_->arm();
}

std::vector<at::Tensor> Session::micro_batches(const at::Tensor& rows, const ResponseBatch& s) {
  auto out = s.micro_batches(rows, cfg.grpo.micro_batch_tokens);
  if (policy->lockstep_group()) {  // expert parallel: as many forwards as the busiest rank, some empty
    std::vector<double> n{double(out.size())};
    reduce(n, true);
    while (out.size() < size_t(n[0])) out.push_back(at::empty({0}, at::kLong));
  }
  return out;
}

// ---------------------------------------------------------------- MoE balancing and metrics
at::Tensor Session::with_balance_loss(const at::Tensor& loss, double share) {
  auto b = policy->take_balance_loss();
  return b.defined() ? loss + b.to(loss.device()) * share : loss;
}

void Session::after_optimizer_step() {
  if (comm->size() > 1)  // balance on the load of the whole data-parallel batch
    for (auto layer : policy->moe_layers()) {
      auto l = policy->expert_load(layer);
      comm->all_reduce_sum(l);
      policy->set_expert_load(layer, l);
    }
  for (auto layer : policy->moe_layers()) {
    auto l = policy->expert_load(layer).cpu();
    auto& acc = step_load_[layer];
    acc = acc.defined() ? acc + l : l;
  }
  policy->update_router_bias(cfg.moe.bias_update_rate);
}

double Session::write_metrics(nlohmann::json& j) {
  double ratio = 0;
  if (!policy->moe_layers().empty()) {
    // {"layer_N": {"max_over_mean", "min_over_mean", "load": [...]}} and the mean max/mean ratio
    nlohmann::json stats = nlohmann::json::object();
    double ratio_sum = 0;
    for (auto& [layer, load] : step_load_) {
      auto l = load.to(at::kDouble);
      double mean = std::max(1e-12, l.mean().item<double>());
      double mx = l.max().item<double>() / mean, mn = l.min().item<double>() / mean;
      std::vector<int64_t> counts(load.data_ptr<int64_t>(), load.data_ptr<int64_t>() + load.numel());
      stats[fmt::format("layer_{}", layer)] = {{"max_over_mean", mx}, {"min_over_mean", mn}, {"load", counts}};
      ratio_sum += mx;
    }
    ratio = step_load_.empty() ? 0.0 : ratio_sum / step_load_.size();
    step_load_.clear();
    j["moe_load_max_over_mean"] = ratio;
    j["moe"] = stats;
  }
  run_dir->write_metrics(j);
  return ratio;
}

// ---------------------------------------------------------------- divergence guard
bool Session::update_is_finite(double loss, double grad_norm, const std::string& where) {
  if (std::isfinite(loss) && std::isfinite(grad_norm)) {
    bad_steps_ = 0;
    return true;
  }
  optimizer->zero_grad();
  ++bad_steps_;
  // NaN's sign bit depends on the CPU's kernels (-nan on some): say "nan" either way
  const auto show = [](double v) { return std::isnan(v) ? std::string("nan") : fmt::format("{}", v); };
  const auto what = fmt::format("loss {}, gradient norm {}", show(loss), show(grad_norm));
  GRPO_CHECK(bad_steps_ <= cfg.optim.max_bad_steps,
             "training diverged at {}: {} ({} non-finite updates in a row, more than optim.max_bad_steps = {}); "
             "no checkpoint was written from the diverged state. Lower optim.lr (now {}) or optim.grad_clip and "
             "resume from the last checkpoint",
             where, what, bad_steps_, cfg.optim.max_bad_steps, cfg.optim.lr);
  spdlog::warn("{}: {}: update skipped ({} in a row; optim.max_bad_steps = {})", where, what, bad_steps_,
               cfg.optim.max_bad_steps);
  return false;
}

void Session::check_rewards(int64_t failed, int64_t scored, const std::string& example) {
  if (scored == 0 || failed < scored) {
    failed_reward_steps_ = 0;
    return;
  }
  ++failed_reward_steps_;
  const int64_t limit = cfg.reward.max_failed_steps;
  GRPO_CHECK(limit == 0 || failed_reward_steps_ <= limit,
             "the rewards failed for every sample in {} rollout steps in a row (up to rollout step {}), more than "
             "reward.max_failed_steps = {}: nothing can be learned. A failure: {}",
             failed_reward_steps_, st.rollout_step + 1, limit, example.empty() ? "(on another rank)" : example);
  spdlog::warn("rollout step {}: the rewards failed for all {} samples ({} step(s) in a row; reward.max_failed_steps "
               "= {})", st.rollout_step + 1, scored, failed_reward_steps_, limit);
}

}  // namespace grpo::train
