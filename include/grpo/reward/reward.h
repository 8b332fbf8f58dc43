// Rule-based rewards. A reward function scores one completion against the ground truth; the
// config combines registered functions by name with weights. Library users register their own
// with RewardRegistry::add().
#pragma once

#include <functional>
#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "grpo/core/config.h"

namespace grpo::reward {

/// Settings of the built-in rewards that take any (from the config's reward section).
struct RewardParams {
  int64_t overlong_buffer = 0;     // "overlong": tokens before the limit where the penalty ramps
  std::string language = "auto";   // "language": target script; auto = the prompt's script
  std::string answer_prefix = "The final answer is";  // "answer_line": how the last line starts

  void visit(core::ConfigVisitor& v) {
    v.field("overlong_buffer", overlong_buffer,
            "overlong reward: the penalty ramps from 0 to -1 over the last N tokens before "
            "rollout.max_new_tokens (DAPO)", core::at_least(0));
    v.field("language", language, "language reward: target script or language code (latin, "
            "han, japanese, hangul, cyrillic, ..., en, zh, ja, ...); auto = the prompt's script");
    v.field("answer_prefix", answer_prefix, "answer_line reward: 1 when the completion's last non-empty line "
            "is this text (any case) and a number, e.g. 'The final answer is 42.'; 0.5 when such a line comes earlier");
  }
};

/// The rewards of a training run (the `reward` section of its config).
struct RewardConfig {
  std::map<std::string, double> weights{{"accuracy", 1.0}, {"format", 0.5}};
  double failure_value = 0.0;
  RewardParams params;
  int64_t workers = 1;
  double sample_timeout = 10.0;
  std::string plugin;
  int64_t max_failed_steps = 3;

  void visit(core::ConfigVisitor& v) {
    v.field("weights", weights,
            "reward = sum of weight * reward function, by registered name (accuracy, format, "
            "format_lenient, tag_count, language, countdown, gsm8k, answer_line, overlong, or your own)", {});
    v.field("failure_value", failure_value,
            "score of a reward function that throws or returns NaN (counted in metrics as "
            "reward_failures; training goes on)");
    params.visit(v);
    v.field("workers", workers, "threads scoring completions while the rollout is still "
            "generating (each completion as soon as it ends); 0 = score after generation",
            core::at_least(0));
    v.field("sample_timeout", sample_timeout, "seconds one completion may take to score; later "
            "scores count as failures (reward_timeouts in metrics)", core::positive());
    v.field("plugin", plugin, "command of an external reward (any language: JSON lines on "
            "stdin/stdout, see reward/plugin.h), used as the reward named plugin in weights");
    v.field("max_failed_steps", max_failed_steps, "stop the run when a reward function fails for every "
            "sample in more than this many rollout steps in a row (a missing plugin, a broken reward); "
            "0 = never stop", core::at_least(0));
  }
};

/// Everything a reward function may look at for one completion.
struct Sample {
  std::string completion;            // generated text, without the prompt
  std::string answer;                // ground truth
  std::string prompt;                // the question (before the template)
  int64_t response_tokens = -1;      // length of the completion in tokens (-1: unknown)
  int64_t max_response_tokens = -1;  // the generation limit (-1: unknown)
  std::map<std::string, std::string> fields;  // other dataset fields (JSON text), e.g. tests
  RewardParams params;
  /// When scoring must be done (RewardPool sets it); rewards that can stop early check it.
  std::chrono::steady_clock::time_point deadline = std::chrono::steady_clock::time_point::max();
};

class RewardFn {
 public:
  virtual ~RewardFn() = default;
  /// Score of `completion` (the generated text, without the prompt) given the ground truth.
  virtual double score(const std::string& completion, const std::string& ground_truth) const {
    Sample s;
    s.completion = completion;
    s.answer = ground_truth;
    return score_sample(s);
  }
  /// Score from the whole sample; override this one when the prompt, lengths or extra fields
  /// matter (the default calls score(completion, answer)).
  virtual double score_sample(const Sample& s) const { return score(s.completion, s.answer); }
};

/// Name -> factory. Built-ins: "accuracy" (math verification of the final answer), "format"
/// (strict R1-Zero structure), "format_lenient" (the four tags once each, in order, non-empty
/// answer), "tag_count" (0.25 per tag present exactly once), "language" (share of the
/// completion's words in the target script), "countdown" (the answer expression uses the given
/// numbers once each and equals the target), "gsm8k" (the number after #### in the ground
/// truth), "overlong" (DAPO's soft length penalty, <= 0).
class RewardRegistry {
 public:
  using Factory = std::function<std::unique_ptr<RewardFn>()>;
  static void add(const std::string& name, Factory f);
  static std::unique_ptr<RewardFn> create(const std::string& name);
  static std::vector<std::string> names();
};

struct RewardResult {
  double total = 0;                      // weighted sum
  std::map<std::string, double> parts;   // unweighted score of each function
  std::vector<std::string> failed;       // "name: what went wrong" for functions that threw
};

/// Weighted sum of registered reward functions.
class CombinedReward {
 public:
  /// A function that throws or returns NaN/inf scores `failure_value` (counted in
  /// RewardResult::failed) instead of stopping training.
  explicit CombinedReward(const std::map<std::string, double>& weights, double failure_value = 0.0,
                          RewardParams params = {});
  RewardResult score(const std::string& completion, const std::string& ground_truth) const;
  RewardResult score(Sample sample) const;
  /// The weighted sum of per-function scores.
  double total_of(const std::map<std::string, double>& parts) const;
  std::vector<RewardResult> score_batch(const std::vector<std::string>& completions,
                                        const std::vector<std::string>& truths) const;

 private:
  std::vector<std::pair<std::string, double>> weights_;
  std::vector<std::unique_ptr<RewardFn>> fns_;
  double failure_value_ = 0.0;
  RewardParams params_;
};

/// The final answer of a completion: the content of the last <answer>...</answer> block if there
/// is one; otherwise the text after the last </think> (or all of it) with tags removed. Trimmed;
/// nullopt when empty. Accuracy never requires the format.
std::optional<std::string> extract_answer(const std::string& completion);

/// R1-Zero structure, strictly: optional whitespace, one <think>...</think>, optional whitespace,
/// one <answer>...</answer>, optional whitespace, and no other tags anywhere.
bool has_r1_format(const std::string& completion);

/// Lenient R1 structure: each tag exactly once, in order, a non-empty answer; anything else
/// around them is allowed.
bool has_r1_format_lenient(const std::string& completion);

}  // namespace grpo::reward
