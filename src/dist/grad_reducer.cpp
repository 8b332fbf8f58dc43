#include "grpo/dist/grad_reducer.h"

#include <mutex>

#include <ATen/ATen.h>
#include <torch/csrc/autograd/function_hook.h>
#include <torch/csrc/autograd/variable.h>

#include "grpo/core/error.h"

namespace grpo::dist {

struct GradientReducer::State {
  struct Bucket {
    std::vector<size_t> params;  // indices into State::params
    int64_t ready = 0;
    at::Tensor flat;
    std::unique_ptr<Comm::Pending> pending;
  };
  std::vector<at::Tensor> params;
  std::vector<size_t> bucket_of;
  std::vector<char> ready;
  std::vector<Bucket> buckets;
  size_t next = 0;  // the next bucket to start (they start in order)
  bool armed = false;
  int64_t started_early = 0;
  Comm* group = nullptr;
  std::mutex mu;

  void reset();
  void start(Bucket& b) {
    std::vector<at::Tensor> flat;
    for (auto i : b.params) {
      auto& p = params[i];
      flat.push_back(p.grad().defined() ? p.grad().reshape({-1}) : at::zeros({p.numel()}, p.options()));
    }
    b.flat = at::cat(flat);
    b.pending = group->all_reduce_sum_async(b.flat);
  }
  // start every complete bucket at the front of the queue
  void start_ready() {
    while (next < buckets.size() && buckets[next].ready == int64_t(buckets[next].params.size())) {
      start(buckets[next++]);
      ++started_early;
    }
  }
  void on_grad(size_t i) {
    std::lock_guard<std::mutex> lock(mu);
    if (!armed || ready[i]) return;
    ready[i] = 1;
    ++buckets[bucket_of[i]].ready;
    start_ready();
  }
};

namespace {
struct ReadyHook final : torch::autograd::PostAccumulateGradHook {
  ReadyHook(std::weak_ptr<GradientReducer::State> s, size_t i) : state(std::move(s)), index(i) {}
  void operator()(const torch::autograd::Variable&) override {
    if (auto s = state.lock()) s->on_grad(index);
  }
  std::weak_ptr<GradientReducer::State> state;
  size_t index;
};
}  // namespace

GradientReducer::GradientReducer(std::vector<at::Tensor> params, Comm& group, int64_t bucket_bytes)
    : s_(std::make_shared<State>()) {
  s_->params = std::move(params);
  s_->group = &group;
  const size_t n = s_->params.size();
  s_->bucket_of.assign(n, 0);
  s_->ready.assign(n, 0);
  int64_t bytes = 0;
  for (size_t k = n; k-- > 0;) {  // reverse model order: the order gradients arrive in
    const auto& p = s_->params[k];
    const bool fits = !s_->buckets.empty() && bytes + int64_t(p.nbytes()) <= bucket_bytes &&
                      s_->params[s_->buckets.back().params.front()].scalar_type() == p.scalar_type();
    if (!fits) {
      s_->buckets.emplace_back();
      bytes = 0;
    }
    s_->buckets.back().params.push_back(k);
    s_->bucket_of[k] = s_->buckets.size() - 1;
    bytes += int64_t(p.nbytes());
  }
  if (group.size() > 1)
    for (size_t k = 0; k < n; ++k)
      torch::autograd::impl::set_post_acc_grad_hooks(s_->params[k], std::make_unique<ReadyHook>(s_, k));
}

GradientReducer::~GradientReducer() {
  if (s_->group->size() > 1)
    for (auto& p : s_->params) torch::autograd::impl::set_post_acc_grad_hooks(p, nullptr);
}

int64_t GradientReducer::num_buckets() const { return int64_t(s_->buckets.size()); }

void GradientReducer::State::reset() {
  std::fill(ready.begin(), ready.end(), 0);
  for (auto& b : buckets) {
    b.ready = 0;
    b.pending.reset();
  }
  next = 0;
  started_early = 0;
}

void GradientReducer::arm() {
  std::lock_guard<std::mutex> lock(s_->mu);
  s_->reset();
  s_->armed = s_->group->size() > 1;
}

void GradientReducer::finish() {
  auto& s = *s_;
  std::lock_guard<std::mutex> lock(s.mu);
  if (!s.armed) s.reset();  // not armed: nothing started yet
  s.armed = false;
  started_early_ = s.started_early;
  if (s.group->size() == 1) return;
  while (s.next < s.buckets.size()) s.start(s.buckets[s.next++]);
  for (auto& b : s.buckets) {
    b.pending->wait();
    int64_t off = 0;
    for (auto i : b.params) {
      auto& p = s.params[i];
      if (!p.grad().defined()) p.mutable_grad() = at::zeros_like(p);
      p.grad().copy_(b.flat.narrow(0, off, p.numel()).view_as(p));
      off += p.numel();
    }
    b.pending.reset();
    b.flat = at::Tensor();
  }
}

void GradientReducer::reduce_now() {
  {
    std::lock_guard<std::mutex> lock(s_->mu);
    s_->armed = false;
  }
  finish();
}

}  // namespace grpo::dist
