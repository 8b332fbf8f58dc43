// Sampling from a policy outside the training loop -- what grpo_eval, grpo_sample and
// grpo_generate run, for library users too: with a policy opened by train/policy_loader.h, draw k completions per question (prompts formatted by
// text/prompt.h exactly as in training), score them, evaluate a benchmark (pass@1 averaged over k
// samples, cons@k by majority vote over the extracted answers, greedy accuracy), and keep the
// completions that pass for rejection sampling.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "grpo/data/jsonl_dataset.h"
#include "grpo/rollout/generate.h"
#include "grpo/text/prompt.h"
#include "grpo/text/tokenizer.h"
#include "grpo/train/config.h"
#include "grpo/train/policy_loader.h"

namespace grpo::train {

struct Question {
  std::string question, answer;
  std::string origin;  // "file:line", empty for the built-in task
};

/// Which built-in task questions read_questions gives for an empty path.
enum class BuiltinQuestions { kHeldOut, kTraining };

/// The questions of a JSONL benchmark (data/jsonl_dataset.h fields; `limit` < 0 = all) or, for an
/// empty path, the built-in task's questions of the checkpoint's run: its held-out set (`limit` of
/// them; < 0: the run's eval.num_prompts) or training questions of their own stream, apart from
/// the GRPO prompts (`limit`; < 0: 1000).
std::vector<Question> read_questions(const LoadedPolicy& policy, const data::JsonlDatasetConfig& file,
                                     int64_t limit, BuiltinQuestions builtin = BuiltinQuestions::kHeldOut);

/// k completions per question, question-major.
struct SampleSet {
  std::vector<std::string> prompts;                     // formatted prompt per question
  std::vector<std::vector<std::string>> completions;    // [question][k]
  std::vector<std::vector<rollout::FinishReason>> finish;
};
/// Draws them in batches of `batch_size` questions; sample g of question i uses the keyed stream
/// (seed, i, g, t), so results do not depend on batching. Errors name a question that leaves no
/// room for the response.
SampleSet sample_completions(LoadedPolicy& policy, const std::vector<Question>& questions, int64_t k,
                             const rollout::SamplingParams& sampling, uint64_t seed, int64_t batch_size);

struct BenchmarkOptions {
  int64_t k = 8;                       // samples per question for pass@1 and cons@k
  rollout::SamplingParams sampling;    // temperature, top-p, max_new_tokens of those samples
  bool greedy = true;                  // also one greedy completion per question
  uint64_t seed = 1;
  int64_t batch_size = 16;
};

struct BenchmarkResult {
  int64_t num_questions = 0, k = 0;
  double pass_at_1 = 0;        // mean over questions of the fraction of correct samples
  double cons_at_k = 0;        // majority-vote answer correct
  double greedy = -1;          // greedy accuracy (-1 when not measured)
  double format_rate = 0;      // samples in the R1-Zero <think>/<answer> format
  double truncation_rate = 0;  // samples cut at max_new_tokens
  std::vector<double> per_question_pass;  // fraction correct, per question
};

/// Correctness is the `accuracy` reward (math verification after an exact-text check).
BenchmarkResult evaluate_benchmark(LoadedPolicy& policy, const std::vector<Question>& questions,
                                   const BenchmarkOptions& options);

struct RejectionOptions {
  int64_t k = 8;                            // samples per question
  rollout::SamplingParams sampling;
  std::map<std::string, double> rewards{{"accuracy", 1.0}, {"format", 1.0}};  // each must reach its value
  int64_t max_per_question = 1;             // distinct kept completions per question (0 = all)
  bool drop_truncated = true;               // never keep a completion cut at max_new_tokens
  uint64_t seed = 1;
  int64_t batch_size = 16;
};

struct KeptSample {
  int64_t question = 0;  // index into the questions
  std::string completion;
  std::map<std::string, double> scores;
};

/// Rejection sampling (R1's SFT data): k samples per question, kept when every listed reward
/// scores at least its threshold; duplicates of a kept completion are skipped.
std::vector<KeptSample> rejection_sample(LoadedPolicy& policy, const std::vector<Question>& questions,
                                         const RejectionOptions& options);

}  // namespace grpo::train
