// The generation side of a GRPO rollout step (step_batch.h): generation rounds of G samples per
// prompt, scored while generating (reward workers), DAPO dynamic sampling (groups with all-equal
// rewards dropped, more prompts drawn), and the placement of every rank's rows in the step's
// global row order -> StepBatch. Run by the process that trains the step (grpo_step.cpp), or on
// a rollout rank (rollout_ranks.cpp).
#include <functional>
#include <memory>
#include <utility>

#include <ATen/ATen.h>
#include <spdlog/spdlog.h>

#include "grpo/core/error.h"
#include "grpo/core/profile.h"
#include "grpo/dist/comm.h"
#include "grpo/env/episodes.h"
#include "grpo/rollout/generate.h"
#include "step_batch.h"

namespace grpo::train {

at::Tensor StepBatch::local_of(const at::Tensor& global) const {
  auto l = local_at.index_select(0, global);
  return l.masked_select(l >= 0);
}

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

// One generation round: G samples for each of n prompts from data position `first`, scored
// (while generating, with reward workers).
struct Round {
  rollout::RolloutBatch batch;
  std::vector<Item> items;  // one per prompt
  std::vector<reward::RewardResult> scored;
  double reward_busy = 0;
  double reward_wait = 0;  // after generation ended
  int64_t reward_timeouts = 0;
  env::EpisodeStats env;  // multi-turn rollouts (env.name)
};

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
  std::unique_ptr<env::Episodes> episodes;  // multi-turn: one episode per row, on its prompt's task
  if (!s.cfg.env.name.empty()) {
    std::vector<std::pair<std::string, std::string>> tasks;
    for (const auto& item : rd.items)
      for (int64_t k = 0; k < g.group_size; ++k) tasks.emplace_back(item.question, item.answer);
    episodes = std::make_unique<env::Episodes>(s.cfg.env, *s.tok, tasks, s.questions->observation_frame());
    req.turns = episodes.get();
  }
  rd.batch = rollout::generate(model, req);
  if (episodes) rd.env = episodes->stats();
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
    stats.env_episodes += double(rd.env.episodes), stats.env_turns += double(rd.env.turns);
    stats.env_tool_calls += double(rd.env.tool_calls), stats.env_tool_errors += double(rd.env.tool_errors);
    stats.env_tool_timeouts += double(rd.env.tool_timeouts), stats.env_truncated += double(rd.env.truncated);
    stats.env_observation_tokens += double(rd.env.observation_tokens), stats.env_seconds += rd.env.env_seconds;
    stats.env_with_tool += double(rd.env.with_tool);
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

}  // namespace grpo::train
