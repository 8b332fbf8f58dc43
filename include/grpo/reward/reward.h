// Rule-based rewards. A reward function scores one completion against the ground truth; the
// config combines registered functions by name with weights. Library users register their own
// with RewardRegistry::add().
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace grpo::reward {

class RewardFn {
 public:
  virtual ~RewardFn() = default;
  /// Score of `completion` (the generated text, without the prompt) given the ground truth.
  virtual double score(const std::string& completion, const std::string& ground_truth) const = 0;
};

/// Name -> factory. Built-ins: "accuracy" (math verification of the final answer), "format"
/// (strict R1-Zero structure), "format_lenient" (the four tags once each, in order, non-empty
/// answer), "tag_count" (0.25 per tag present exactly once).
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
  explicit CombinedReward(const std::map<std::string, double>& weights, double failure_value = 0.0);
  RewardResult score(const std::string& completion, const std::string& ground_truth) const;
  std::vector<RewardResult> score_batch(const std::vector<std::string>& completions,
                                        const std::vector<std::string>& truths) const;

 private:
  std::vector<std::pair<std::string, double>> weights_;
  std::vector<std::unique_ptr<RewardFn>> fns_;
  double failure_value_ = 0.0;
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
