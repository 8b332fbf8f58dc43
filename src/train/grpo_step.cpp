// One GRPO rollout step, as typed stages:
//
//   collect_groups   generation rounds (G samples per prompt, scored while generating), DAPO
//                    dynamic sampling (groups with all-equal rewards dropped, more prompts drawn),
//                    and the placement of every rank's rows in the step's global row order
//                    -> StepBatch
//   prepare_targets  rewards, old and reference log-probs, KL in the reward, group-relative
//                    advantages, the loss mask (overlong filtering) -> Targets
//   update_policy    inner_epochs x mini_batches optimizer steps of the clipped policy loss, each
//                    accumulated over micro-batches
//   log_step         the metrics line; StepStats carries the step's sums and maxima and reduces
//                    itself over the data-parallel ranks
//
// With grpo.max_staleness k > 0 the rollout steps are generated ahead of training (RolloutQueue):
// rollout step m is generated with the weights of version v(m) = max(b(m), m - k), a version being
// the number of rollout steps trained, and b(m) the last pipeline barrier <= m (the stage's first
// step and every checkpoint step), so generation never needs weights from before a checkpoint and a
// resumed run continues exactly. k = 0 is the synchronous loop: v(m) = m.
//
// Everything random is keyed by counters (core/rng.h), so a resumed run continues exactly.
#include <chrono>
#include <cmath>
#include <deque>
#include <functional>
#include <limits>
#include <optional>
#include <thread>
#include <utility>

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "grpo/algo/grpo_loss.h"
#include "grpo/core/error.h"
#include "grpo/core/profile.h"
#include "grpo/dist/comm.h"
#include "grpo/rollout/generate.h"
#include "session.h"
#include "step_batch.h"

namespace grpo::train {

constexpr double kInf = std::numeric_limits<double>::infinity();

// ---------------------------------------------------------------- statistics
void StepStats::reduce(Session& s) {
  if (s.comm->size() == 1) return;
  std::vector<double*> summed{&tokens,   &kl,          &clip_low,        &clip_high,      &dual_clip,
                              &ratio_sum, &entropy,    &lp_diff_sum,     &truncated,      &response_tokens,
                              &reward_failures, &reward_timeouts, &reward_busy, &kl_penalty,
                              &behaviour_kl,    &is_weight_sum,   &is_masked,   &off_policy_masked,
                              &token_lag_sum};
  for (auto& [name, v] : parts) summed.push_back(&v);
  std::vector<double> sums, maxes{ratio_max, std::isfinite(ratio_min) ? -ratio_min : -1e300, lp_diff_max,
                                  is_weight_max, token_lag_max};
  for (double* p : summed) sums.push_back(*p);
  s.reduce(sums, false);
  s.reduce(maxes, true);
  for (size_t k = 0; k < summed.size(); ++k) *summed[k] = sums[k];
  ratio_max = maxes[0], ratio_min = maxes[1] == -1e300 ? kInf : -maxes[1], lp_diff_max = maxes[2];
  is_weight_max = maxes[3], token_lag_max = maxes[4];
}

at::Tensor StepBatch::local_of(const at::Tensor& global) const {
  auto l = local_at.index_select(0, global);
  return l.masked_select(l >= 0);
}

namespace {


// ---------------------------------------------------------------- collect groups
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

}  // namespace

rollout::RolloutBatch empty_batch(const Session& s) {
  rollout::RolloutBatch b;
  b.group_size = s.cfg.grpo.group_size;
  b.prompt_width = 1;
  b.tokens = at::full({0, 2}, s.tok->pad_id(), at::kLong);
  b.attention_mask = at::zeros({0, 2}, at::kBool);
  b.response_mask = at::zeros({0, 1}, at::kBool);
  b.sampling_logprobs = at::zeros({0, 1}, at::kFloat);
  b.token_versions = at::zeros({0, 1}, at::kLong);
  return b;
}

namespace {

// Generation reads nothing of the session that training writes (the policy, s.st): with
// grpo.overlap_generation it runs in a thread beside the update, on `model`, a copy of the policy.
Round rollout_round(Session& s, model::Transformer& model, int64_t step, int64_t first, int64_t n,
                    int64_t max_new_tokens, const std::function<int64_t()>& between_steps) {
  const auto& g = s.cfg.grpo;
  Round rd;
  if (n == 0 && !model.lockstep_group()) {  // data parallel: no share of this round
    rd.batch = empty_batch(s);
    return rd;
  }
  rollout::GenerateRequest req;
  for (int64_t j = 0; j < n; ++j) {
    rd.items.push_back(s.questions->train(first + j));
    req.prompts.push_back(s.questions->prompt_ids(rd.items.back()));
    req.prompt_keys.push_back(uint64_t(first + j));
  }
  req.group_size = g.group_size;
  req.sampling = s.cfg.rollout;
  req.sampling.max_new_tokens = max_new_tokens;
  req.key = {uint64_t(s.cfg.run.seed), uint64_t(core::Stream::kSampling), uint64_t(step)};
  req.eos_id = s.tok->eos_id();
  req.pad_id = s.tok->pad_id();
  req.between_steps = between_steps;
  req.record_routing = s.cfg.moe.routing_replay;
  auto make_sample = [&](int64_t row, const std::vector<int64_t>& response) {
    reward::Sample smp;
    smp.completion = s.tok->decode(response);
    smp.answer = rd.items[row / g.group_size].answer;
    smp.prompt = rd.items[row / g.group_size].question;
    // the EOS counts as a generated token; a response of max_new_tokens tokens hit the limit
    smp.response_tokens = int64_t(response.size()) == max_new_tokens ? max_new_tokens : int64_t(response.size()) + 1;
    smp.max_response_tokens = max_new_tokens;
    return smp;
  };
  if (s.reward_pool)
    req.on_finish = [&](int64_t row, const std::vector<int64_t>& response) {
      s.reward_pool->submit(row, make_sample(row, response));
    };
  rd.batch = rollout::generate(model, req);
  const int64_t N = rd.batch.rows();
  auto t_wait = Clock::now();
  core::StageTimer timer(core::Stage::kReward);
  if (s.reward_pool && N > 0) {  // most of it was scored while the rollout was still generating
    rd.scored = s.reward_pool->wait(N);
    rd.reward_busy = s.reward_pool->last_stats().busy_seconds;
    rd.reward_timeouts = s.reward_pool->last_stats().timeouts;
  } else {
    auto t = Clock::now();
    for (int64_t i = 0; i < N; ++i) rd.scored.push_back(s.rewards->score(make_sample(i, rd.batch.responses[i])));
    rd.reward_busy = seconds_since(t);
  }
  rd.reward_wait = seconds_since(t_wait);
  return rd;
}


}  // namespace

StepBatch collect_groups(Session& s, model::Transformer& model, StepStats& stats, int64_t step, int64_t position,
                         int64_t optimizer_step, const std::function<int64_t()>& between_steps) {
  const auto& g = s.cfg.grpo;
  const int64_t dp = s.comm->size();
  StepBatch out;
  out.max_new_tokens = g.max_new_tokens_at(optimizer_step, s.cfg.rollout.max_new_tokens);
  std::vector<Round> rounds;
  std::vector<std::pair<int64_t, int64_t>> kept;  // this rank's (round, group)
  std::vector<int64_t> kept_per_round;           // this rank's groups kept in each round
  int64_t global_kept = 0;
  for (int64_t r = 0; r < (g.dynamic_sampling ? g.dynamic_sampling_max_rounds : 1); ++r) {
    // the round's prompts: the next `want` of the data, split contiguously over the data-parallel
    // ranks (whole groups; a rank's share may be empty in later rounds)
    const int64_t want = g.prompts_per_step - global_kept;
    const int64_t b = want * s.comm->rank() / dp, n = want * (s.comm->rank() + 1) / dp - b;
    rounds.push_back(rollout_round(s, model, step, position + out.prompts_used + b, n, out.max_new_tokens,
                                   between_steps));
    out.prompts_used += want;
    const auto& rd = rounds.back();
    stats.reward_busy += rd.reward_busy;
    out.reward_wait += rd.reward_wait;
    stats.reward_timeouts += double(rd.reward_timeouts);
    std::vector<double> counts{0, 0, double(rd.scored.size()), 0};  // kept, dropped, scored, failed
    for (const auto& r : rd.scored)
      if (!r.failed.empty()) {
        ++counts[3];
        if (out.failure.empty()) out.failure = r.failed.front();
      }
    for (int64_t q = 0; q < n; ++q) {
      bool all_equal = true;
      for (int64_t k = 1; k < g.group_size; ++k)
        all_equal = all_equal && rd.scored[q * g.group_size + k].total == rd.scored[q * g.group_size].total;
      if (g.dynamic_sampling && all_equal) ++counts[1];
      else kept.push_back({r, q}), ++counts[0];
    }
    kept_per_round.push_back(int64_t(counts[0]));
    if (dp > 1) s.reduce(counts, false);
    global_kept += int64_t(counts[0]);
    out.groups_dropped += int64_t(counts[1]);
    out.samples_scored += int64_t(counts[2]);
    out.samples_failed += int64_t(counts[3]);
    if (global_kept >= g.prompts_per_step) break;
  }
  out.rounds = int64_t(rounds.size());
  if (global_kept == 0) {  // every group of every round was uniform: train on the last round as is
    spdlog::warn("dynamic sampling: all {} groups of {} rounds had equal rewards; this step has no signal",
                 out.groups_dropped, rounds.size());
    for (int64_t q = 0; q < int64_t(rounds.back().items.size()); ++q) kept.push_back({int64_t(rounds.size()) - 1, q});
    std::fill(kept_per_round.begin(), kept_per_round.end(), 0);
    kept_per_round.back() = int64_t(rounds.back().items.size());
  }
  if (rounds.size() == 1 && int64_t(kept.size()) * g.group_size == rounds[0].batch.rows()) {
    out.batch = std::move(rounds[0].batch);
    out.scored = std::move(rounds[0].scored);
  } else if (kept.empty()) {  // data parallel: none of this rank's groups were kept
    out.batch = empty_batch(s);
  } else {
    std::vector<const rollout::RolloutBatch*> parts;
    for (auto& rd : rounds) parts.push_back(&rd.batch);
    out.batch = rollout::merge_groups(parts, kept, s.tok->pad_id());
    for (auto [ri, q] : kept)
      for (int64_t k = 0; k < g.group_size; ++k) out.scored.push_back(rounds[ri].scored[q * g.group_size + k]);
  }
  // Row placement: the step's rows over all ranks in data order, round by round, rank by rank.
  const int64_t N = out.rows();
  auto per_rank = at::tensor(kept_per_round, at::kLong);
  auto all_counts = dp > 1 ? at::stack(s.comm->all_gather(per_rank)) : per_rank.unsqueeze(0);  // [dp, rounds]
  out.NG = all_counts.sum().item<int64_t>() * g.group_size;
  std::vector<int64_t> global_row;
  {
    auto c = all_counts.t().contiguous();  // [rounds, dp]
    const int64_t* cp = c.data_ptr<int64_t>();
    int64_t before = 0;
    for (int64_t r = 0; r < c.size(0); ++r)
      for (int64_t k = 0; k < dp; ++k) {
        if (k == s.comm->rank())
          for (int64_t i = 0; i < cp[r * dp + k] * g.group_size; ++i) global_row.push_back(before + i);
        before += cp[r * dp + k] * g.group_size;
      }
  }
  GRPO_CHECK(int64_t(global_row.size()) == N, "internal: {} rows but {} placed", N, global_row.size());
  out.global_rows = at::tensor(global_row, at::kLong);
  out.local_at = at::full({out.NG}, -1, at::kLong).index_copy_(0, out.global_rows, at::arange(N, at::kLong));
  return out;
}

struct RolloutQueue {
  std::deque<Generated> ready;  // generated, not yet trained, in step order
  int64_t next_step = -1;       // the next rollout step to generate (-1: not started)
  int64_t next_position = 0;    // its first prompt's data position
  // grpo.overlap_generation: the thread generating beside the update, and how it ended
  std::thread worker;
  std::exception_ptr error;
  Clock::time_point worker_done;
};

int64_t generation_version(const Session& s, int64_t m) {
  int64_t barrier = s.grpo_first_step;
  const int64_t every = s.cfg.checkpoint.every;
  if (every > 0) barrier = std::max(barrier, m / every * every);
  return std::max(barrier, m - s.cfg.grpo.max_staleness);
}

namespace {

// Whether rollout step `m` is to be generated by weights of `version` (and not later ones).
bool due(const Session& s, int64_t m, int64_t version) {
  return m < s.cfg.grpo.rollout_steps && generation_version(s, m) <= version;
}

// Generates, with `model` holding the weights of `version` (after `optimizer_step` optimizer
// steps), every rollout step up to `last` those weights are for; returns the seconds it took.
double generate_ahead(Session& s, RolloutQueue& q, model::Transformer& model, int64_t version,
                      int64_t optimizer_step, int64_t last) {
  double seconds = 0;
  while (q.next_step <= last && due(s, q.next_step, version)) {
    GRPO_ASSERT(generation_version(s, q.next_step) == version);  // nothing is left behind
    Generated gen;
    gen.step = q.next_step;
    gen.version = version;
    auto t0 = Clock::now();
    gen.sb = collect_groups(s, model, gen.stats, gen.step, q.next_position, optimizer_step,
                            [version] { return version; });
    s.check_rewards(gen.sb.samples_failed, gen.sb.samples_scored, gen.sb.failure);
    const double took = seconds_since(t0);
    gen.time_reward = gen.sb.reward_wait;  // scoring that did not overlap with generation
    gen.time_rollout = took - gen.time_reward;
    seconds += took;
    q.next_position += gen.sb.prompts_used;
    ++q.next_step;
    q.ready.push_back(std::move(gen));
  }
  return seconds;
}

// ---------------------------------------------------------------- targets
// Global row order of mini-batch epoch `epoch`: the same on every rank, a deterministic shuffle
// per (step, epoch) unless one mini-batch is taken in order.
at::Tensor epoch_order(const Session& s, int64_t NG, int64_t n_mb, int64_t epoch) {
  if (n_mb == 1 && epoch == 0) return at::arange(NG, at::kLong);
  core::KeyedRng rng(core::hash_key({uint64_t(core::Stream::kMiniBatchShuffle), uint64_t(s.cfg.run.seed),
                                     uint64_t(s.st.rollout_step), uint64_t(epoch)}));
  std::vector<int64_t> perm(NG);
  for (int64_t i = 0; i < NG; ++i) perm[i] = i;
  for (int64_t i = NG - 1; i > 0; --i) std::swap(perm[i], perm[rng.uniform_int(0, i)]);
  return at::tensor(perm, at::kLong);
}

// What the policy update trains towards.
struct Targets {
  ResponseBatch s;
  at::Tensor rewards_all;  // [NG] fp64, after any KL penalty
  algo::Advantages adv;    // values: this rank's rows
  at::Tensor loss_mask;    // [N, R] response tokens that take part in the loss
  at::Tensor sampling_lp, old_lp, ref_lp;
  bool kl_in_reward = false;
  // Until the first optimizer step the policy being trained is the one that sampled, so for the
  // rows of the first mini-batch the training forward pass itself provides the old log-probs
  // (detached: ratio = 1 exactly, as in TRL); they are stored for later epochs.
  bool first_from_training_pass = false;
};

// The gap between the trainer's recomputed old log-probs and the sampler's (behaviour policy pi_b):
// |log pi_old - log pi_b| and the k3 estimate of KL(pi_b || pi_old), rho - 1 - log rho with
// rho = pi_old / pi_b (unbiased on tokens sampled from pi_b).
void log_prob_diff(StepStats& st, const at::Tensor& recomputed, const at::Tensor& sampled, const at::Tensor& mask) {
  auto lr = recomputed.detach().to(at::kDouble) - sampled.to(at::kDouble);
  auto d = lr.abs() * mask;
  if (d.numel() == 0) return;
  st.lp_diff_max = std::max(st.lp_diff_max, d.max().item<double>());
  st.lp_diff_sum += d.sum().item<double>();
  st.behaviour_kl += ((at::exp(lr) - 1.0 - lr) * mask).sum().item<double>();
}

Targets prepare_targets(Session& s, const StepBatch& sb, StepStats& stats) {
  const auto& g = s.cfg.grpo;
  const int64_t N = sb.rows(), n_mb = std::min(g.mini_batches, sb.NG);
  Targets t;
  // rewards
  std::vector<double> rv(N);
  for (auto& [name, w] : s.cfg.reward.weights) stats.parts[name] = 0.0;
  for (int64_t i = 0; i < N; ++i) {
    rv[i] = sb.scored[i].total;
    for (auto& [k, v] : sb.scored[i].parts) stats.parts[k] += v;
    if (!sb.scored[i].failed.empty() && stats.reward_failures == 0)
      spdlog::warn("reward failed (scored {}): {}", s.cfg.reward.failure_value, sb.scored[i].failed.front());
    stats.reward_failures += double(sb.scored[i].failed.size());
  }
  auto rewards_t = at::tensor(rv, at::kDouble);

  // old and reference log-probs
  t.s = ResponseBatch::of(sb.batch);
  t.sampling_lp = sb.batch.sampling_logprobs.narrow(1, 0, t.s.R);
  auto all_rows = at::arange(N, at::kLong);
  t.kl_in_reward = s.ref && g.kl_in == "reward";
  t.first_from_training_pass = g.recompute_old_logprobs && !t.kl_in_reward;  // with the KL in the reward, all are needed first
  const auto first_rows = sb.local_of(epoch_order(s, sb.NG, n_mb, 0).narrow(0, 0, sb.NG / n_mb));
  t.old_lp = g.recompute_old_logprobs ? t.sampling_lp.clone() : t.sampling_lp;
  {
    at::NoGradGuard ng;
    s.policy->train(false);
    if (g.recompute_old_logprobs) {  // one no-grad pass for the rows the first training pass does not provide
      at::Tensor rest = all_rows;
      if (t.first_from_training_pass) {
        auto in_first = at::zeros({N}, at::kBool).index_fill_(0, first_rows, true);
        rest = all_rows.masked_select(in_first.logical_not());
      }
      for (auto& mb : s.micro_batches(rest, t.s)) {
        core::StageTimer timer(core::Stage::kOldLogprobs);
        if (timer.on()) timer.work(t.s.forward_work(*s.policy, mb));
        auto lp = response_logprobs(*s.policy, t.s, mb, /*with_entropy=*/false).logprobs;
        log_prob_diff(stats, lp, t.sampling_lp.index_select(0, mb), t.s.resp_mask.index_select(0, mb));
        t.old_lp.index_copy_(0, mb, lp.to(t.old_lp.scalar_type()));
      }
    }
    if (s.ref) {
      auto ref_s = t.s;  // the reference routes on its own (routing replay is the policy's)
      ref_s.routing = at::Tensor();
      t.ref_lp = at::zeros({N, t.s.R}, at::kFloat);
      for (auto& mb : s.micro_batches(all_rows, t.s)) {
        core::StageTimer timer(core::Stage::kRefLogprobs);
        if (timer.on()) timer.work(t.s.forward_work(*s.ref, mb));
        t.ref_lp.index_copy_(0, mb, response_logprobs(*s.ref, ref_s, mb, /*with_entropy=*/false).logprobs);
      }
    }
  }
  // KL in the reward (verl use_kl_in_reward): r -= beta * sum_t KL_t of the behaviour policy
  if (t.kl_in_reward) {
    auto pen = algo::kl_reward_penalty(t.old_lp, t.ref_lp, t.s.resp_mask, g.loss.kl_coef, g.loss.kl_estimator);
    stats.kl_penalty = pen.sum().item<double>();
    rewards_t = rewards_t - pen;
  }
  // advantages: every rank computes those of the whole step (batch_std needs them all) and keeps its rows
  t.rewards_all = at::zeros({sb.NG}, at::kDouble).index_copy_(0, sb.global_rows, rewards_t);
  if (s.comm->size() > 1) s.comm->all_reduce_sum(t.rewards_all);
  t.adv = algo::group_advantages(t.rewards_all, g.group_size, g.advantage);
  t.adv.values = t.adv.values.index_select(0, sb.global_rows);
  // overlong filtering (DAPO): truncated responses take no part in the loss
  t.loss_mask = t.s.resp_mask;
  int64_t truncated = 0;
  for (auto f : sb.batch.finish) truncated += f == rollout::FinishReason::kLength;
  stats.truncated = double(truncated);
  if (g.mask_truncated && truncated > 0) {
    std::vector<float> keep(N);
    for (int64_t i = 0; i < N; ++i) keep[i] = sb.batch.finish[i] == rollout::FinishReason::kLength ? 0.f : 1.f;
    t.loss_mask = t.s.resp_mask * at::tensor(keep, at::kFloat).unsqueeze(1);
  }
  return t;
}

// ---------------------------------------------------------------- policy update
// What the optimizer steps of a rollout step did.
struct UpdateResult {
  double loss_sum = 0, grad_norm_sum = 0;
  int64_t steps = 0;
  nlohmann::json updates = nlohmann::json::array();  // one record per optimizer step
};

UpdateResult update_policy(Session& s, const StepBatch& sb, Targets& t, StepStats& stats) {
  const auto& g = s.cfg.grpo;
  const int64_t N = sb.rows(), NG = sb.NG, n_mb = std::min(g.mini_batches, NG);  // dynamic sampling may keep fewer rows
  UpdateResult u;
  s.policy->train(true);
  auto po = g.loss;
  if (t.kl_in_reward) po.kl_coef = 0.0;  // the KL is in the reward instead
  const auto agg = po.aggregation;
  const bool profiling = core::profile_enabled();
  const int64_t n_params = profiling ? s.policy->num_parameters() : 0;
  const int64_t param_bytes = profiling ? n_params * s.policy->lm_head_weight().element_size() : 0;
  for (int64_t epoch = 0; epoch < g.inner_epochs; ++epoch) {
    const at::Tensor order = epoch_order(s, NG, n_mb, epoch);
    for (int64_t m = 0; m < n_mb; ++m) {
      int64_t b = NG * m / n_mb, e = NG * (m + 1) / n_mb;
      auto rows = sb.local_of(order.narrow(0, b, e - b));  // this rank's share of the mini-batch
      auto mb_mask = t.loss_mask.index_select(0, rows);
      // weights from the whole mini-batch's totals, so the ranks' losses add up to its loss
      auto mb_total = mb_mask.sum().to(at::kDouble).reshape({1});
      s.comm->all_reduce_sum(mb_total);
      const double total_tokens = mb_total.item<double>();
      // (indexed by this rank's row ids: micro-batches take the rows in another order)
      auto by_row = [&](const at::Tensor& w) { return at::zeros({N, t.s.R}, w.options()).index_copy_(0, rows, w); };
      auto weights = by_row(algo::aggregation_weights(mb_mask, agg, sb.max_new_tokens, double(e - b), total_tokens));
      auto ent_weights = by_row(algo::aggregation_weights(mb_mask, algo::LossAggregation::kTokenMean, 0,
                                                          double(e - b), total_tokens));
      s.optimizer->zero_grad();
      double mb_loss = 0, mb_kl = 0, mb_tokens = 0, mb_rmin = kInf, mb_rmax = 0;
      const auto mbs = s.micro_batches(rows, t.s);
      for (size_t k = 0; k < mbs.size(); ++k) {
        const auto& mb = mbs[k];
        std::optional<core::StageTimer> timer(core::Stage::kPolicyForward);
        const core::Work fwd = timer->on() ? t.s.forward_work(*s.policy, mb) : core::Work{};
        timer->work(fwd);
        auto lp = response_logprobs(*s.policy, t.s, mb, /*with_entropy=*/true, g.logprob_keep_bytes);
        auto mask = t.loss_mask.index_select(0, mb);
        at::Tensor old_mb;
        if (t.first_from_training_pass && epoch == 0 && m == 0) {
          old_mb = lp.logprobs.detach();
          log_prob_diff(stats, old_mb, t.sampling_lp.index_select(0, mb), t.s.resp_mask.index_select(0, mb));
          t.old_lp.index_copy_(0, mb, old_mb.to(t.old_lp.scalar_type()));
        } else {
          old_mb = t.old_lp.index_select(0, mb);
        }
        algo::PolicyLossInputs li;
        li.logp = lp.logprobs;
        li.old_logp = old_mb;
        if (g.off_policy.mode != algo::OffPolicyCorrection::kNone) {  // pi_old / pi_b of these rows
          auto w = algo::off_policy_weights(old_mb, t.sampling_lp.index_select(0, mb),
                                            t.s.resp_mask.index_select(0, mb), g.off_policy);
          li.is_weights = w.weights;
          stats.is_weight_sum += w.weight_sum;
          stats.is_weight_max = std::max(stats.is_weight_max, w.weight_max);
          stats.is_masked += w.masked;
        }
        if (po.off_policy_mask > 0) li.behaviour_logp = t.sampling_lp.index_select(0, mb);
        if (t.ref_lp.defined() && po.kl_coef != 0) li.ref_logp = t.ref_lp.index_select(0, mb);
        li.advantages = t.adv.values.index_select(0, mb);
        li.mask = mask;
        li.weights = weights.index_select(0, mb);
        li.entropy = lp.entropy;
        li.entropy_weights = ent_weights.index_select(0, mb);
        auto out = algo::policy_loss(li, po);
        auto loss = s.with_balance_loss(out.loss, double(mb.size(0)) / double(e - b));  // this micro-batch's share
        mb_loss += out.loss.item<double>();
        timer.emplace(core::Stage::kBackward);  // twice the forward's matmuls; weights read, gradients added
        timer->work({2 * fwd.flops, fwd.bytes + 2 * double(param_bytes)});
        if (k + 1 == mbs.size()) s.arm_gradient_overlap();  // the last backward of the mini-batch
        loss.backward();
        timer.reset();
        const double nt = out.tokens;
        stats.tokens += nt;
        stats.kl += out.kl_mean * nt;
        stats.clip_low += out.clip_low_fraction * nt;
        stats.clip_high += out.clip_high_fraction * nt;
        stats.dual_clip += out.dual_clip_fraction * nt;
        stats.off_policy_masked += out.off_policy_masked_fraction * nt;
        stats.ratio_sum += out.ratio_mean * nt;
        if (nt > 0) stats.ratio_max = std::max(stats.ratio_max, out.ratio_max), stats.ratio_min = std::min(stats.ratio_min, out.ratio_min);
        if (nt > 0) mb_rmax = std::max(mb_rmax, out.ratio_max), mb_rmin = std::min(mb_rmin, out.ratio_min);
        mb_kl += out.kl_mean * nt;
        mb_tokens += nt;
        stats.entropy += (lp.entropy.detach() * mask).sum().item<double>();
      }
      if (s.comm->size() > 1) {  // the mini-batch's gradient and statistics over all ranks
        s.all_reduce_gradients();
        std::vector<double> sums{mb_loss, mb_kl, mb_tokens}, maxes{mb_rmax, -mb_rmin};
        s.reduce(sums, false);
        s.reduce(maxes, true);
        mb_loss = sums[0], mb_kl = sums[1], mb_tokens = sums[2], mb_rmax = maxes[0], mb_rmin = -maxes[1];
      }
      std::optional<core::StageTimer> opt_timer(core::Stage::kOptimizer);
      // AdamW: parameter, gradient and both moments read, three written, the gradient read by the clip
      opt_timer->work({0, 8.0 * 4.0 * double(n_params)});
      const double norm = s.optimizer->clip_gradients(s.cfg.optim.grad_clip > 0 ? s.cfg.optim.grad_clip : kInf);
      u.grad_norm_sum += norm;
      const bool finite = s.update_is_finite(
          mb_loss, norm, fmt::format("rollout step {}, optimizer step {}", s.st.rollout_step + 1, s.st.optimizer_step + 1));
      if (finite) {  // (a skipped update still counts as an optimizer step: the schedules stay aligned)
        s.optimizer->set_lr(s.lr_at(s.st.optimizer_step));
        s.optimizer->step();
        s.after_optimizer_step();
      }
      opt_timer.reset();
      ++s.st.optimizer_step;
      ++u.steps;
      u.loss_sum += mb_loss;
      const bool refresh = s.ref && g.ref_refresh_steps > 0 && s.st.optimizer_step % g.ref_refresh_steps == 0;
      if (refresh) {
        s.ref->copy_from(*s.policy);
        s.st.ref_version = s.st.optimizer_step;
      }
      u.updates.push_back({{"optimizer_step", s.st.optimizer_step},
                           {"epoch", epoch},
                           {"loss", mb_loss},
                           {"kl", mb_kl / std::max(1.0, mb_tokens)},
                           {"ratio_min", std::isfinite(mb_rmin) ? mb_rmin : 0.0},
                           {"ratio_max", mb_rmax},
                           {"ref_refreshed", refresh}});
      if (!finite) u.updates.back()["skipped"] = true;
    }
  }
  return u;
}

// ---------------------------------------------------------------- metrics
struct StepTimes {
  double rollout = 0, reward = 0, update = 0, step = 0;
  double wait_data = 0;     // training waited for generation (before this step's update, and after it for
                            // the generation running beside it)
  double wait_weights = 0;  // generation beside the update was done and waited for the new weights
};

void log_step(Session& s, const StepBatch& sb, const Targets& t, const UpdateResult& u, const StepStats& st,
              const StepTimes& time, int64_t version) {
  const auto& g = s.cfg.grpo;
  const int64_t NG = sb.NG, groups = NG / g.group_size;
  const double rmean = t.rewards_all.mean().item<double>();
  const double rstd = NG > 1 ? t.rewards_all.std().item<double>() : 0.0;
  const double denom = std::max(1.0, st.tokens);
  auto part = [&](const char* name) { return st.parts.count(name) ? st.parts.at(name) / NG : -1.0; };
  const auto* train_data = s.questions->train_data();
  nlohmann::json j = {
      {"stage", "grpo"},
      {"step", s.st.rollout_step},
      {"optimizer_step", s.st.optimizer_step},
      {"epoch", train_data ? double(s.st.data_position) / train_data->size() : 0.0},
      {"reward_mean", rmean},
      {"reward_std", rstd},
      {"reward_failures", int64_t(st.reward_failures)},
      {"accuracy", part("accuracy")},
      {"format_rate", part("format")},
      {"loss", u.loss_sum / std::max<int64_t>(1, u.steps)},
      {"kl", st.kl / denom},
      {"clip_low_fraction", st.clip_low / denom},
      {"clip_high_fraction", st.clip_high / denom},
      {"clip_fraction", (st.clip_low + st.clip_high) / denom},
      {"ratio_mean", st.ratio_sum / denom},
      {"ratio_max", st.ratio_max},
      {"ratio_min", std::isfinite(st.ratio_min) ? st.ratio_min : 0.0},
      {"dual_clip_fraction", st.dual_clip / denom},
      {"kl_reward_penalty", st.kl_penalty / std::max<int64_t>(1, NG)},
      {"entropy", st.entropy / denom},
      {"response_length", st.response_tokens / NG},
      {"truncation_rate", st.truncated / NG},
      {"zero_adv_group_fraction", double(t.adv.zero_std_groups) / std::max<int64_t>(1, groups)},
      {"max_new_tokens", sb.max_new_tokens},
      {"prompts_sampled", sb.prompts_used},
      {"processes", s.job ? s.job->size() : s.world->size()},
      {"groups_dropped", sb.groups_dropped},
      {"groups_trained", groups},
      {"sampling_rounds", sb.rounds},
      {"grad_norm", u.grad_norm_sum / std::max<int64_t>(1, u.steps)},
      {"lr", s.lr_at(s.st.optimizer_step - 1)},
      {"old_logprob_diff_max", st.lp_diff_max},
      {"old_logprob_diff_mean", st.lp_diff_sum / std::max(1.0, st.response_tokens)},
      {"behaviour_kl", st.behaviour_kl / std::max(1.0, st.response_tokens)},
      {"is_weight_mean", g.off_policy.mode == algo::OffPolicyCorrection::kNone ? 1.0 : st.is_weight_sum / denom},
      {"is_weight_max", g.off_policy.mode == algo::OffPolicyCorrection::kNone ? 1.0 : st.is_weight_max},
      {"is_masked_fraction", st.is_masked / denom},
      {"off_policy_masked_fraction", st.off_policy_masked / denom},
      {"time_rollout", time.rollout},
      {"time_reward", time.reward},
      {"time_reward_busy", st.reward_busy},
      {"reward_timeouts", int64_t(st.reward_timeouts)},
      {"time_update", time.update},
      {"time_step", time.step},
      {"tokens_per_s", st.response_tokens / time.step},
      {"threads", at::get_num_threads()},
      {"ref_version", s.st.ref_version},
      {"policy_version", version},
      {"version_lag", s.st.rollout_step - 1 - version},
      {"token_lag_mean", st.token_lag_sum / std::max(1.0, st.response_tokens)},
      {"token_lag_max", st.token_lag_max},
      {"time_wait_data", time.wait_data},
      {"time_wait_weights", time.wait_weights},
      {"updates", u.updates},
  };
  const double moe_ratio = s.write_metrics(j);
  if (s.st.rollout_step % s.cfg.run.log_every == 0 || s.st.rollout_step == g.rollout_steps) {
    spdlog::info(
        "grpo {:>4}/{} | reward {:.3f}±{:.3f} acc {:.3f} fmt {:.3f} | loss {:+.3e} kl {:.4f} "
        "clip {:.3f} ent {:.3f} | len {:.1f} | gnorm {:.3f} lr {:.2e} | rollout {:.2f}s reward "
        "{:.3f}s update {:.2f}s | {:.0f} tok/s{}",
        s.st.rollout_step, g.rollout_steps, rmean, rstd, j["accuracy"].get<double>(), j["format_rate"].get<double>(),
        j["loss"].get<double>(), j["kl"].get<double>(), j["clip_fraction"].get<double>(), j["entropy"].get<double>(),
        st.response_tokens / NG, j["grad_norm"].get<double>(), j["lr"].get<double>(), time.rollout, time.reward,
        time.update, st.response_tokens / time.step,
        s.policy->moe_layers().empty() ? std::string() : fmt::format(" | expert load max/mean {:.2f}", moe_ratio));
  }
}

}  // namespace

void grpo_step(Session& s) {
  auto t0 = Clock::now();
  if (!s.rollout_queue) s.rollout_queue = std::make_shared<RolloutQueue>();
  auto& q = *s.rollout_queue;
  GRPO_ASSERT(!q.worker.joinable());
  if (q.next_step < 0 || (q.ready.empty() && q.next_step != s.st.rollout_step)) {  // start at the trained position
    q.next_step = s.st.rollout_step;
    q.next_position = s.st.data_position;
  }
  const int64_t version = s.st.rollout_step, optimizer_step = s.st.optimizer_step;
  const bool overlap = s.rollout_policy != nullptr;
  StepTimes time;
  if (s.rollout_link) {  // parallel.rollout_ranks: generated there, received here
    auto t = Clock::now();
    q.ready.push_back(receive_generated(s, s.st.rollout_step));
    time.wait_data = seconds_since(t);
    time.rollout = q.ready.back().time_rollout;
    time.reward = q.ready.back().time_reward;
    time.wait_weights = q.ready.back().time_wait_weights;
  } else {
    // What the current weights are for: everything (sequential), or only this step's batch when it
    // is missing (k = 0, a barrier), the rest then being generated beside the update.
    const size_t queued = q.ready.size();
    time.wait_data = generate_ahead(s, q, *s.policy, version, optimizer_step,
                                    overlap ? version : std::numeric_limits<int64_t>::max());
    for (size_t i = queued; i < q.ready.size(); ++i) {  // generation done in this call (k = 0: this step's)
      time.rollout += q.ready[i].time_rollout;
      time.reward += q.ready[i].time_reward;
    }
  }
  GRPO_CHECK(!q.ready.empty() && q.ready.front().step == s.st.rollout_step,
             "internal: rollout step {} was not generated", s.st.rollout_step);
  Generated gen = std::move(q.ready.front());
  q.ready.pop_front();
  const size_t ahead = q.ready.size();
  int threads = 0;
  if (overlap && due(s, q.next_step, version)) {  // generation beside the update, on a copy of these weights
    s.rollout_policy->copy_from(*s.policy);
    threads = at::get_num_threads();
    at::set_num_threads(std::max(1, threads / 2));  // the update and generation split the CPUs
    q.worker = std::thread([&s, &q, version, optimizer_step] {
      try {
        generate_ahead(s, q, *s.rollout_policy, version, optimizer_step, std::numeric_limits<int64_t>::max());
      } catch (...) {
        q.error = std::current_exception();
      }
      q.worker_done = Clock::now();
    });
  }
  auto join = [&] {  // the queue is the worker's until it is joined
    if (!q.worker.joinable()) return;
    auto t = Clock::now();
    q.worker.join();
    at::set_num_threads(threads);
    const double waited = seconds_since(t);
    time.wait_data += waited;
    if (waited < 1e-3) time.wait_weights = std::chrono::duration<double>(t - q.worker_done).count();
    for (size_t i = ahead; i < q.ready.size(); ++i) {
      time.rollout += q.ready[i].time_rollout;
      time.reward += q.ready[i].time_reward;
    }
    if (q.error) std::rethrow_exception(std::exchange(q.error, nullptr));
  };
  StepStats stats = gen.stats;
  const StepBatch& sb = gen.sb;
  auto t1 = Clock::now();
  try {
    Targets targets = prepare_targets(s, sb, stats);
    UpdateResult u = update_policy(s, sb, targets, stats);
    time.update = seconds_since(t1);  // old and reference log-probs, advantages, optimizer steps
    join();
    ++s.st.rollout_step;
    s.st.data_position += sb.prompts_used;
    if (s.rollout_link) publish_weights(s, s.st.rollout_step);  // to the rollout ranks, if they need them
    stats.response_tokens = targets.s.resp_mask.sum().item<double>();
    if (sb.rows() > 0) {  // how many versions each trained token's sampler was behind
      auto lag = (double(s.st.rollout_step - 1) - sb.batch.token_versions.narrow(1, 0, targets.s.R).to(at::kDouble)) *
                 targets.s.resp_mask.to(at::kDouble);
      stats.token_lag_sum = lag.sum().item<double>();
      stats.token_lag_max = lag.max().item<double>();
    }
    stats.reduce(s);
    time.step = seconds_since(t0);
    log_step(s, sb, targets, u, stats, time, gen.version);
  } catch (...) {
    if (q.worker.joinable()) q.worker.join();  // never leave the thread running past an error
    throw;
  }
}

}  // namespace grpo::train
