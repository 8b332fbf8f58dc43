// AdamW with bf16 masters and ZeRO-1 (train/optimizer.h). Parameters are addressed by their index
// in policy.named_parameters(); owner[i] and master[i] follow that order.
#include "grpo/train/optimizer.h"

#include <algorithm>
#include <cmath>
#include <map>

#include <ATen/ATen.h>
#include <spdlog/spdlog.h>
#include <torch/nn/utils/clip_grad.h>
#include <torch/optim/adamw.h>

#include "grpo/core/error.h"
#include "grpo/dist/comm.h"
#include "grpo/model/transformer.h"

namespace grpo::train {

AdamWSettings stage_adamw(const Config& cfg, const std::string& stage) {
  if (stage == "pretrain") return {cfg.pretrain.lr, cfg.pretrain.weight_decay, 0.9, 0.999, 1e-8};
  if (stage == "sft") return {cfg.sft.lr, cfg.sft.weight_decay, cfg.optim.beta1, cfg.optim.beta2, cfg.optim.eps};
  return {cfg.optim.lr, cfg.optim.weight_decay, cfg.optim.beta1, cfg.optim.beta2, cfg.optim.eps};
}

double scheduled_lr(const OptimConfig& o, int64_t total_steps, int64_t step) {
  if (o.warmup_steps > 0 && step < o.warmup_steps) return o.lr * double(step + 1) / o.warmup_steps;
  if (o.schedule == "cosine") {
    double prog = std::clamp(double(step - o.warmup_steps) / std::max<int64_t>(1, total_steps - o.warmup_steps), 0.0, 1.0);
    double floor = o.lr * o.min_lr_ratio;
    return floor + (o.lr - floor) * 0.5 * (1.0 + std::cos(M_PI * prog));
  }
  return o.lr;
}

struct Optimizer::Impl {
  model::Transformer& policy;
  dist::Comm &dp, &expert_dp;
  const bool bf16, zero1;
  std::unique_ptr<torch::optim::AdamW> adamw;
  // ZeRO-1: owner[i] is the owning rank (in its group) of named_parameters()[i]; whole tensors
  // assigned greedily by size. Empty without ZeRO-1.
  std::vector<int64_t> owner;
  // bf16: master[i] is the fp32 master of named_parameters()[i], undefined where none (frozen, or
  // another rank's under ZeRO-1).
  std::vector<at::Tensor> master;
  io::NamedTensors master_source;  // whole fp32 tensors the masters start from (else the parameters)
  double clip_coef = 1.0;          // bf16: gradient scale applied when copying to the masters

  Impl(model::Transformer& p, dist::Comm& d, dist::Comm& e, bool b, bool z)
      : policy(p), dp(d), expert_dp(e), bf16(b), zero1(z) {}

  dist::Comm& group_of(const std::string& name) const { return policy.is_expert_parameter(name) ? expert_dp : dp; }
  bool owns(size_t i, const std::string& name) const { return owner.empty() || owner[i] == group_of(name).rank(); }
  // ZeRO-1: the owner's fp32 tensor of parameter i (shaped as p) on every rank of its group
  // (collective; `mine` is used on the owner only)
  at::Tensor from_owner(size_t i, const std::string& name, const at::Tensor& p, const at::Tensor& mine) {
    auto t = owns(i, name) && mine.defined() ? mine.clone() : at::empty(p.sizes(), p.options().dtype(at::kFloat));
    group_of(name).broadcast(t, owner[i]);
    return t;
  }
  // The tensor AdamW updates for parameter i.
  at::Tensor opt_param(size_t i, const at::Tensor& p) const { return bf16 && master[i].defined() ? master[i] : p; }

  void assign_owners() {
    owner.clear();
    if (!zero1) return;
    const auto params = policy.named_parameters();
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
      auto& l = load[policy.is_expert_parameter(name)];
      l.resize(size_t(group_of(name).size()), 0);
      owner[i] = int64_t(std::min_element(l.begin(), l.end()) - l.begin());
      l[size_t(owner[i])] += p.numel();
      total += p.numel();
      if (owns(i, name)) mine += p.numel();
    }
    spdlog::info("ZeRO-1: AdamW state for {} of {} parameter elements on this rank", mine, total);
  }
  void init_masters() {
    const auto params = policy.named_parameters();
    std::map<std::string, at::Tensor> whole(master_source.begin(), master_source.end());
    master.assign(params.size(), at::Tensor());
    for (size_t i = 0; i < params.size(); ++i) {
      const auto& [name, p] = params[i];
      if (!p.requires_grad() || !owns(i, name)) continue;
      auto it = whole.find(name);
      master[i] = (it != whole.end() ? policy.local_slice(name, it->second) : p).detach().to(p.device(), at::kFloat).clone();
    }
    master_source.clear();
  }
  // ZeRO-1: every owner broadcasts the parameters it updated, one flat tensor per owner and group.
  void broadcast_updates() {
    at::NoGradGuard ng;
    const auto params = policy.named_parameters();
    for (bool expert : {false, true}) {
      dist::Comm& g = expert ? expert_dp : dp;
      for (int64_t r = 0; r < g.size(); ++r) {
        std::vector<at::Tensor> mine;
        for (size_t i = 0; i < params.size(); ++i)
          if (params[i].second.requires_grad() && owner[i] == r && policy.is_expert_parameter(params[i].first) == expert)
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
};

Optimizer::Optimizer(model::Transformer& policy, dist::Comm& dp, dist::Comm& expert_dp, bool bf16, bool zero1)
    : impl_(std::make_unique<Impl>(policy, dp, expert_dp, bf16, zero1)), bf16_(bf16) {}
Optimizer::~Optimizer() = default;

void Optimizer::to_precision(model::Transformer& m) const {
  if (!bf16_) return;
  at::NoGradGuard ng;
  for (auto& p : m.parameters())
    if (p.requires_grad()) p.set_data(p.data().to(at::kBFloat16));
}

void Optimizer::adopt_policy_precision() {
  if (!bf16_) return;
  impl_->master_source = impl_->policy.full_parameters();
  impl_->master.clear();
  to_precision(impl_->policy);
}

void Optimizer::set_master_source(io::NamedTensors whole) {
  if (bf16_) impl_->master_source = std::move(whole);
}

void Optimizer::reset(const AdamWSettings& s) {
  auto& m = *impl_;
  m.assign_owners();
  if (m.bf16 && (m.master.empty() || !m.master_source.empty())) m.init_masters();
  std::vector<at::Tensor> decay, no_decay;
  size_t i = 0;
  for (auto& [name, p] : m.policy.named_parameters()) {
    if (m.owns(i, name)) (p.dim() >= 2 ? decay : no_decay).push_back(m.opt_param(i, p));
    ++i;
  }
  auto o = torch::optim::AdamWOptions(s.lr).betas({s.beta1, s.beta2}).eps(s.eps).weight_decay(s.weight_decay);
  std::vector<torch::optim::OptimizerParamGroup> groups;
  groups.emplace_back(decay, std::make_unique<torch::optim::AdamWOptions>(o));
  auto o0 = o;
  o0.weight_decay(0.0);
  groups.emplace_back(no_decay, std::make_unique<torch::optim::AdamWOptions>(o0));
  m.adamw = std::make_unique<torch::optim::AdamW>(std::move(groups), o);
}

void Optimizer::set_lr(double lr) {
  for (auto& g : impl_->adamw->param_groups()) static_cast<torch::optim::AdamWOptions&>(g.options()).lr(lr);
}

void Optimizer::zero_grad() {
  for (auto& p : impl_->policy.parameters())
    if (p.grad().defined()) p.mutable_grad() = at::Tensor();
}

double Optimizer::clip_gradients(double max_norm) {
  auto& m = *impl_;
  if (!m.bf16) return torch::nn::utils::clip_grad_norm_(m.policy.parameters(), max_norm);
  at::Tensor sq;  // summed where the gradients live: one sync
  for (auto& p : m.policy.parameters())
    if (p.grad().defined()) {
      auto t = p.grad().to(at::kDouble).pow(2).sum();
      sq = sq.defined() ? sq + t : t;
    }
  const double norm = sq.defined() ? std::sqrt(sq.item<double>()) : 0.0;
  m.clip_coef = max_norm > 0 && norm > max_norm ? max_norm / (norm + 1e-6) : 1.0;  // as clip_grad_norm_
  return norm;
}

namespace {

// One AdamW step of every parameter with a gradient, through PyTorch's fused AdamW (the kernel of
// torch.optim.AdamW(fused=True): one pass over each parameter's value, gradient and two moments,
// ~10x fewer memory passes than torch::optim::AdamW::step's separate ops; an 80.6M-parameter step
// on 2 cores took 0.24 s with those, 0.05 s fused). The state stays torch::optim::AdamW's (exp_avg,
// exp_avg_sq, step), created on first use as AdamW::step creates it, so checkpoints are unchanged.
void fused_adamw_step(torch::optim::AdamW& adamw) {
  at::NoGradGuard ng;
  auto& state = adamw.state();
  for (auto& group : adamw.param_groups()) {
    const auto& o = static_cast<const torch::optim::AdamWOptions&>(group.options());
    GRPO_CHECK(!o.amsgrad(), "AdamW: amsgrad is not supported");
    std::vector<at::Tensor> ps, gs, m1, m2, steps;
    for (auto& p : group.params()) {
      if (!p.grad().defined()) continue;
      auto key = p.unsafeGetTensorImpl();
      auto it = state.find(key);
      if (it == state.end()) {
        auto fresh = std::make_unique<torch::optim::AdamWParamState>();
        fresh->step(0);
        fresh->exp_avg(at::zeros_like(p, at::MemoryFormat::Preserve));
        fresh->exp_avg_sq(at::zeros_like(p, at::MemoryFormat::Preserve));
        it = state.emplace(key, std::move(fresh)).first;
      }
      auto& st = static_cast<torch::optim::AdamWParamState&>(*it->second);
      st.step(st.step() + 1);
      ps.push_back(p);
      gs.push_back(p.grad());
      m1.push_back(st.exp_avg());
      m2.push_back(st.exp_avg_sq());
      steps.push_back(at::scalar_tensor(double(st.step()), p.options().dtype(at::kFloat)));
    }
    if (ps.empty()) continue;
    at::_fused_adamw_(ps, gs, m1, m2, {}, steps, o.lr(), std::get<0>(o.betas()), std::get<1>(o.betas()),
                      o.weight_decay(), o.eps(), false, false);
  }
}

}  // namespace

void Optimizer::step() {
  auto& m = *impl_;
  if (m.bf16) {  // gradients to the masters (clipped), AdamW, masters back to the parameters
    const auto params = m.policy.parameters();
    for (size_t i = 0; i < params.size(); ++i)
      if (m.master[i].defined())
        m.master[i].mutable_grad() = params[i].grad().defined() ? params[i].grad().to(at::kFloat) * m.clip_coef : at::Tensor();
    m.clip_coef = 1.0;
    fused_adamw_step(*m.adamw);
    at::NoGradGuard ng;
    for (size_t i = 0; i < params.size(); ++i)
      if (m.master[i].defined()) params[i].detach().copy_(m.master[i]);
  } else {
    fused_adamw_step(*m.adamw);
  }
  if (!m.owner.empty()) m.broadcast_updates();
}

io::NamedTensors Optimizer::checkpoint_parameters() {
  auto& m = *impl_;
  if (!m.bf16) return m.policy.full_parameters();
  io::NamedTensors out;
  size_t i = 0;
  for (auto& [name, p] : m.policy.named_parameters()) {
    at::Tensor t = p.requires_grad() ? m.master[i] : p;
    if (!m.owner.empty() && p.requires_grad()) t = m.from_owner(i, name, p, t);
    ++i;
    out.emplace_back(name, m.policy.gather_full(name, t));
  }
  return out;
}

io::NamedTensors Optimizer::state_tensors() {
  auto& m = *impl_;
  io::NamedTensors out;
  auto& state = m.adamw->state();
  size_t i = 0;
  for (auto& [name, p] : m.policy.named_parameters()) {
    at::Tensor m1, m2;
    int64_t step = 0;
    bool has = false;
    if (m.owns(i, name))
      if (auto it = state.find(m.opt_param(i, p).unsafeGetTensorImpl()); it != state.end()) {
        auto& s = static_cast<torch::optim::AdamWParamState&>(*it->second);
        has = true, m1 = s.exp_avg(), m2 = s.exp_avg_sq(), step = s.step();
      }
    if (!m.owner.empty() && p.requires_grad()) {  // from the owner: whether it has state, step, m, v
      auto& g = m.group_of(name);
      auto head = at::tensor({int64_t(has), step}, at::kLong);
      g.broadcast(head, m.owner[i]);
      has = head[0].item<int64_t>() == 1, step = head[1].item<int64_t>();
      if (has) m1 = m.from_owner(i, name, p, m1), m2 = m.from_owner(i, name, p, m2);
    }
    ++i;
    if (!has) continue;  // parameter never updated
    out.emplace_back(name + ".exp_avg", m.policy.gather_full(name, m1));
    out.emplace_back(name + ".exp_avg_sq", m.policy.gather_full(name, m2));
    out.emplace_back(name + ".step", at::scalar_tensor(step, at::kLong));
  }
  return out;
}

void Optimizer::load(const io::NamedTensors& tensors, const std::string& origin) {
  auto& m = *impl_;
  std::map<std::string, at::Tensor> by(tensors.begin(), tensors.end());
  auto& state = m.adamw->state();
  size_t i = 0;
  for (auto& [name, p] : m.policy.named_parameters()) {
    if (!m.owns(i++, name)) continue;  // ZeRO-1: another rank's
    auto a = by.find(name + ".exp_avg");
    if (a == by.end()) continue;  // parameter never updated
    auto b = by.find(name + ".exp_avg_sq");
    auto s = by.find(name + ".step");
    GRPO_CHECK(b != by.end() && s != by.end(), "{}: incomplete optimizer state for '{}'", origin, name);
    auto m1 = m.policy.local_slice(name, a->second), m2 = m.policy.local_slice(name, b->second);
    GRPO_CHECK(a->second.sizes() == b->second.sizes() && m1.sizes() == p.sizes() && m2.sizes() == p.sizes(),
               "{}: optimizer state of '{}' does not match the parameter's shape", origin, name);
    auto ps = std::make_unique<torch::optim::AdamWParamState>();
    ps->step(s->second.item<int64_t>());
    ps->exp_avg(m1.to(p.device()).clone());
    ps->exp_avg_sq(m2.to(p.device()).clone());
    state[m.opt_param(i - 1, p).unsafeGetTensorImpl()] = std::move(ps);
  }
}

}  // namespace grpo::train
