// Built-in task: N-digit addition with exactly checkable answers, generated from counters (no
// files). The train/held-out split is a fixed function of the operands, so the two sets are
// disjoint by construction and the held-out set is the same for every seed.
//
// Base-stage demonstrations imitate what R1-Zero relies on: a base model that sometimes, but not
// usually, does the right thing. A fraction `noise` of demonstrations drops every carry (a
// systematic mistake), and only a fraction `format_rate` is written in the R1-Zero
// <think>..</think><answer>..</answer> format.
#pragma once

#include <cstdint>
#include <string>

#include "grpo/core/config.h"
#include "grpo/core/rng.h"

namespace grpo::data {

struct ArithmeticConfig {
  std::string name = "addition";
  int64_t digits = 3;                // operands have exactly this many digits
  double heldout_fraction = 0.1;     // share of all operand pairs reserved for evaluation
  bool scratchpad = false;           // demonstrations think aloud: column sums, right to left
  double noise = 0.6;                // pretrain stage: share of demonstrations that drop all carries
  double format_rate = 0.5;          // pretrain stage: share of demonstrations in the R1-Zero format

  void visit(core::ConfigVisitor& v) {
    v.field("name", name, "built-in task", {"addition"});
    v.field("digits", digits, "digits per operand", core::between(1, 9));
    v.field("heldout_fraction", heldout_fraction,
            "share of operand pairs reserved for held-out evaluation", {0.0, 1.0, true, true});
    v.field("scratchpad", scratchpad,
            "demonstrations put column sums inside <think> (otherwise the think block is empty)");
    v.field("noise", noise, "pretrain stage: share of demonstrations that drop every carry",
            core::between(0, 1));
    v.field("format_rate", format_rate,
            "pretrain stage: share of demonstrations written in the <think>/<answer> format",
            core::between(0, 1));
  }
};

struct Problem {
  int64_t a = 0, b = 0;
  std::string question;  // "a+b=" (the prompt before the template, see text/prompt.h)
  std::string answer;    // ground truth, e.g. "843"
};

class ArithmeticTask {
 public:
  ArithmeticTask(const ArithmeticConfig& config, uint64_t seed);
  /// i-th training problem of this seed in `stream` (GRPO prompts and pretrain-stage demonstrations
  /// use different streams); never a held-out pair.
  Problem train_problem(int64_t i, core::Stream stream = core::Stream::kTrainData) const;
  /// i-th held-out problem (independent of the seed).
  Problem heldout_problem(int64_t i) const;
  bool is_heldout(int64_t a, int64_t b) const;
  /// A pretrain-stage demonstration (the completion text after the prompt) for problem `p`, drawn
  /// from key `k`: right or carry-dropping, formatted or bare, per the config.
  std::string demonstration(const Problem& p, uint64_t key) const;
  /// The completion text of `answer` in the R1-Zero format (with scratchpad if enabled).
  std::string formatted(const Problem& p, int64_t sum, bool drop_carries) const;
  /// Characters the task's text uses (for the tokenizer).
  static std::string alphabet() { return "0123456789+=,"; }
  const ArithmeticConfig& config() const { return config_; }

 private:
  Problem make(int64_t a, int64_t b) const;
  ArithmeticConfig config_;
  uint64_t seed_;
  int64_t lo_, hi_;
};

/// The sum with every carry dropped (except the final carry out of the top digit, which is kept
/// as the leading digit): 457+386 -> 733.
int64_t carry_dropping_sum(int64_t a, int64_t b, int64_t digits);

}  // namespace grpo::data
