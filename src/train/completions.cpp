#include "grpo/train/completions.h"

#include <set>

#include "grpo/core/error.h"
#include "grpo/core/rng.h"
#include "grpo/data/arithmetic.h"
#include "grpo/model/transformer.h"
#include "grpo/reward/math_verify.h"
#include "grpo/reward/reward.h"

namespace grpo::train {

std::vector<Question> read_questions(const LoadedPolicy& policy, const data::JsonlDatasetConfig& file,
                                     int64_t limit, BuiltinQuestions builtin) {
  std::vector<Question> out;
  if (file.path.empty()) {
    GRPO_CHECK(policy.from_checkpoint && policy.run.data.train.empty(),
               "no question file given (--jsonl), and the model is not a built-in-task checkpoint "
               "whose own questions could be used");
    data::ArithmeticTask task(policy.run.task, uint64_t(policy.run.run.seed));
    const bool held_out = builtin == BuiltinQuestions::kHeldOut;
    const int64_t n = limit >= 0 ? limit : held_out ? policy.run.eval.num_prompts : 1000;
    for (int64_t i = 0; i < n; ++i) {
      auto pr = held_out ? task.heldout_problem(i) : task.train_problem(i, core::Stream::kSftData);
      out.push_back({pr.question, pr.answer, ""});
    }
    return out;
  }
  data::JsonlDataset ds(file, 0);
  for (const auto& e : ds.examples()) {
    if (limit >= 0 && int64_t(out.size()) >= limit) break;
    out.push_back({e.prompt, e.answer, file.path + ":" + std::to_string(e.line)});
  }
  GRPO_CHECK(!out.empty(), "{}: no questions", file.path);
  return out;
}

SampleSet sample_completions(LoadedPolicy& policy, const std::vector<Question>& questions, int64_t k,
                             const rollout::SamplingParams& sampling, uint64_t seed, int64_t batch_size) {
  GRPO_CHECK(k >= 1 && batch_size >= 1, "sample_completions: k ({}) and batch size ({}) must be >= 1", k,
             batch_size);
  SampleSet out;
  const int64_t max_pos = policy.model->config().max_position_embeddings;
  for (size_t s = 0; s < questions.size(); s += size_t(batch_size)) {
    const size_t e = std::min(questions.size(), s + size_t(batch_size));
    rollout::GenerateRequest req;
    for (size_t i = s; i < e; ++i) {
      const auto& q = questions[i];
      std::vector<int64_t> ids;
      try {
        ids = text::encode_prompt(policy.prompt, *policy.tokenizer, q.question);
      } catch (const Error& err) {
        fail("{}: cannot encode the prompt: {}", q.origin.empty() ? "question " + std::to_string(i + 1) : q.origin,
             err.what());
      }
      GRPO_CHECK(int64_t(ids.size()) + sampling.max_new_tokens <= max_pos,
                 "{}: the prompt is {} tokens; with max_new_tokens {} it exceeds the model's "
                 "max_position_embeddings {}", q.origin.empty() ? "question " + std::to_string(i + 1) : q.origin,
                 ids.size(), sampling.max_new_tokens, max_pos);
      out.prompts.push_back(text::format_prompt(policy.prompt, q.question, policy.tokenizer.get()));
      req.prompts.push_back(std::move(ids));
      req.prompt_keys.push_back(uint64_t(i));
    }
    req.group_size = k;
    req.sampling = sampling;
    req.key = {seed, uint64_t(core::Stream::kSampling), 0};
    req.eos_id = policy.tokenizer->eos_id();
    req.pad_id = policy.tokenizer->pad_id();
    auto batch = rollout::generate(*policy.model, req);
    for (size_t p = 0; p < e - s; ++p) {
      std::vector<std::string> texts;
      std::vector<rollout::FinishReason> fin;
      for (int64_t g = 0; g < k; ++g) {
        const size_t row = p * size_t(k) + size_t(g);
        texts.push_back(policy.tokenizer->decode(batch.responses[row]));
        fin.push_back(batch.finish[row]);
      }
      out.completions.push_back(std::move(texts));
      out.finish.push_back(std::move(fin));
    }
  }
  return out;
}

BenchmarkResult evaluate_benchmark(LoadedPolicy& policy, const std::vector<Question>& questions,
                                   const BenchmarkOptions& o) {
  BenchmarkResult r;
  r.num_questions = int64_t(questions.size());
  r.k = o.k;
  if (questions.empty()) return r;
  auto accuracy = reward::RewardRegistry::create("accuracy");
  auto samples = sample_completions(policy, questions, o.k, o.sampling, o.seed, o.batch_size);
  int64_t formatted = 0, truncated = 0;
  for (size_t i = 0; i < questions.size(); ++i) {
    double correct = 0;
    for (int64_t g = 0; g < o.k; ++g) {
      const auto& text = samples.completions[i][size_t(g)];
      correct += accuracy->score(text, questions[i].answer);
      formatted += reward::has_r1_format(text);
      truncated += samples.finish[i][size_t(g)] == rollout::FinishReason::kLength;
    }
    r.per_question_pass.push_back(correct / double(o.k));
    r.pass_at_1 += correct / double(o.k);
    const int64_t vote = reward::math::majority_vote(samples.completions[i]);
    if (vote >= 0) r.cons_at_k += accuracy->score(samples.completions[i][size_t(vote)], questions[i].answer);
  }
  const double n = double(questions.size());
  r.pass_at_1 /= n;
  r.cons_at_k /= n;
  r.format_rate = double(formatted) / (n * double(o.k));
  r.truncation_rate = double(truncated) / (n * double(o.k));
  if (o.greedy) {
    auto greedy = o.sampling;
    greedy.temperature = 0.0;
    auto g = sample_completions(policy, questions, 1, greedy, o.seed, o.batch_size);
    double correct = 0;
    for (size_t i = 0; i < questions.size(); ++i) correct += accuracy->score(g.completions[i][0], questions[i].answer);
    r.greedy = correct / n;
  }
  return r;
}

std::vector<KeptSample> rejection_sample(LoadedPolicy& policy, const std::vector<Question>& questions,
                                         const RejectionOptions& o) {
  GRPO_CHECK(!o.rewards.empty(), "rejection sampling needs at least one reward to pass");
  std::vector<std::pair<std::string, std::unique_ptr<reward::RewardFn>>> fns;
  for (auto& [name, threshold] : o.rewards) fns.emplace_back(name, reward::RewardRegistry::create(name));
  auto samples = sample_completions(policy, questions, o.k, o.sampling, o.seed, o.batch_size);
  std::vector<KeptSample> kept;
  for (size_t i = 0; i < questions.size(); ++i) {
    std::set<std::string> seen;
    int64_t n = 0;
    for (int64_t g = 0; g < o.k; ++g) {
      if (o.max_per_question > 0 && n >= o.max_per_question) break;
      const auto& text = samples.completions[i][size_t(g)];
      if (o.drop_truncated && samples.finish[i][size_t(g)] == rollout::FinishReason::kLength) continue;
      if (seen.count(text)) continue;
      reward::Sample smp;
      smp.completion = text;
      smp.answer = questions[i].answer;
      smp.prompt = questions[i].question;
      KeptSample ks{int64_t(i), text, {}};
      bool pass = true;
      for (auto& [name, fn] : fns) {
        const double v = fn->score_sample(smp);
        ks.scores[name] = v;
        pass = pass && v >= o.rewards.at(name);
      }
      if (!pass) continue;
      seen.insert(text);
      kept.push_back(std::move(ks));
      ++n;
    }
  }
  return kept;
}

}  // namespace grpo::train
