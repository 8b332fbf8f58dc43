// Held-out evaluation during training: greedy (and optionally sampled) accuracy and the greedy
// format rate on eval.num_prompts held-out questions. Every data-parallel rank evaluates its share
// of each block of eval.batch_size x dp prompts (generation is keyed by prompt, so the split does
// not change the results); sums are reduced.
#include <algorithm>
#include <chrono>
#include <memory>
#include <optional>

#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "grpo/core/progress.h"
#include "grpo/dist/comm.h"
#include "grpo/env/episodes.h"
#include "grpo/rollout/generate.h"
#include "session.h"

namespace grpo::train {

EvalResult evaluate(Session& s) {
  const auto& cfg = s.cfg;
  EvalResult r;
  const int64_t N = s.questions->eval_count();
  if (N == 0) return r;
  const int64_t dp = s.comm->size(), bs = cfg.eval.batch_size;
  // greedy correct, sampled correct, greedy well-formatted; greedy with a tool call: episodes, correct
  std::vector<double> sums{0, 0, 0, 0, 0};
  for (int64_t b0 = 0; b0 < N; b0 += bs * dp) {
    const int64_t b = std::min(N, b0 + s.comm->rank() * bs), n = std::min(N, b + bs) - b;
    if (n == 0 && !s.policy->lockstep_group()) continue;  // under lock step, idle generation
    rollout::GenerateRequest req;
    std::vector<Item> probs;
    for (int64_t i = b; i < b + n; ++i) {
      probs.push_back(s.questions->eval(i));
      req.prompts.push_back(s.questions->prompt_ids(probs.back()));
      req.prompt_keys.push_back(uint64_t(i));
    }
    req.group_size = 1;
    req.eos_id = s.tok->eos_id();
    req.pad_id = s.tok->pad_id();
    req.sampling = cfg.rollout;
    for (int pass = 0; pass < (cfg.eval.sampled ? 2 : 1); ++pass) {
      req.sampling.temperature = pass == 0 ? 0.0 : cfg.rollout.temperature;
      req.key = {uint64_t(cfg.run.seed), uint64_t(core::Stream::kEvalSampling), uint64_t(s.st.rollout_step)};
      std::unique_ptr<env::Episodes> episodes;  // multi-turn: the policy acts in its environment here too
      if (!cfg.env.name.empty()) {
        std::vector<std::pair<std::string, std::string>> tasks;
        for (const auto& p : probs) tasks.emplace_back(p.question, p.answer);
        episodes = std::make_unique<env::Episodes>(cfg.env, *s.tok, tasks, s.questions->observation_frame());
        req.turns = episodes.get();
      }
      auto out = rollout::generate(*s.policy, req);
      for (int64_t i = 0; i < n; ++i) {
        auto text = s.tok->decode(out.responses[i]);
        double ok = s.accuracy_fn->score(text, probs[i].answer);
        sums[pass] += ok;
        if (pass == 0) sums[2] += reward::has_r1_format(text);
        if (pass == 0 && episodes && episodes->tool_calls(i) > 0) sums[3] += 1, sums[4] += ok;
      }
    }
  }
  if (dp > 1) s.reduce(sums, false);
  r.num_prompts = N;
  r.accuracy_greedy = sums[0] / N;
  r.format_greedy = sums[2] / N;
  if (cfg.eval.sampled) r.accuracy_sampled = sums[1] / N;
  if (!cfg.env.name.empty()) {
    r.tool_use_greedy = sums[3] / N;
    if (sums[3] > 0) r.accuracy_greedy_tool = sums[4] / sums[3];
    if (sums[3] < N) r.accuracy_greedy_no_tool = (sums[0] - sums[4]) / (N - sums[3]);
  }
  return r;
}

void evaluate_and_log(Session& s, const std::string& stage) {
  if (s.questions->eval_count() == 0) return;  // no held-out set (data.eval empty)
  auto t0 = Clock::now();
  std::optional<core::Progress::Activity> busy(std::in_place, "evaluating on the held-out prompts");
  auto r = evaluate(s);
  busy.reset();
  if (!s.leader()) return;
  nlohmann::json j = {{"step", s.st.rollout_step},
                      {"optimizer_step", s.st.optimizer_step},
                      {"stage", stage},
                      {"accuracy_greedy", r.accuracy_greedy},
                      {"format_greedy", r.format_greedy},
                      {"num_prompts", r.num_prompts},
                      {"time", seconds_since(t0)}};
  if (r.accuracy_sampled >= 0) j["accuracy_sampled"] = r.accuracy_sampled;
  if (r.tool_use_greedy >= 0) j["tool_use_greedy"] = r.tool_use_greedy;
  if (r.accuracy_greedy_tool >= 0) j["accuracy_greedy_tool"] = r.accuracy_greedy_tool;
  if (r.accuracy_greedy_no_tool >= 0) j["accuracy_greedy_no_tool"] = r.accuracy_greedy_no_tool;
  s.run_dir->write_eval(j);
  spdlog::info("eval  {:>4} ({}) | held-out greedy accuracy {:.3f} sampled {:.3f} format {:.3f} ({} prompts){}",
               s.st.rollout_step, stage, r.accuracy_greedy, r.accuracy_sampled, r.format_greedy, r.num_prompts,
               r.tool_use_greedy >= 0 ? fmt::format(" | tool use {:.3f}", r.tool_use_greedy) : std::string());
}

}  // namespace grpo::train
