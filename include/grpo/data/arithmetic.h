// Built-in tasks with exactly checkable answers, generated from counters (no files): N-digit
// addition ("a+b=") and N-digit multiplication ("a*b="). The train/held-out split is a fixed
// function of the operands, so the two sets are disjoint by construction and the held-out set is
// the same for every seed.
//
// Base-stage demonstrations imitate what R1-Zero relies on: a base model that sometimes, but not
// usually, does the right thing.
//   addition:       a fraction `noise` of demonstrations drops every carry (a systematic mistake),
//                   and only a fraction `format_rate` is written in the R1-Zero
//                   <think>..</think><answer>..</answer> format.
//   multiplication: a fraction `tool_rate` calls the code tool (env.name: code) --
//                   <code>print(a*b)</code><output>P</output><answer>P</answer> -- and the rest
//                   state the product outright, <answer>P</answer>, which a small model can imitate
//                   in form but not compute: the task where using the tool pays.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "grpo/core/config.h"
#include "grpo/core/rng.h"

namespace grpo::text {
class CharTokenizer;
class Tokenizer;
}  // namespace grpo::text

namespace grpo::data {

struct ArithmeticConfig {
  std::string name = "addition";     // addition | multiplication
  int64_t digits = 3;                // operands have exactly this many digits
  double heldout_fraction = 0.1;     // share of all operand pairs reserved for evaluation
  bool scratchpad = false;           // demonstrations think aloud: column sums, right to left
  double noise = 0.6;                // pretrain stage: share of demonstrations that drop all carries
  double format_rate = 0.5;          // pretrain stage: share of demonstrations in the R1-Zero format
  double tool_rate = 0.3;            // multiplication, pretrain stage: share of demonstrations calling the code tool

  bool multiplication() const { return name == "multiplication"; }

  void visit(core::ConfigVisitor& v) {
    v.field("name", name, "built-in task: addition (a+b=) or multiplication (a*b=, where the code tool pays: "
            "env.name code)", {"addition", "multiplication"});
    v.field("digits", digits, "digits per operand", core::between(1, 9));
    v.field("heldout_fraction", heldout_fraction,
            "share of operand pairs reserved for held-out evaluation", {0.0, 1.0, true, true});
    v.field("scratchpad", scratchpad,
            "addition: demonstrations put column sums inside <think> (otherwise the think block is empty)");
    v.field("noise", noise, "addition, pretrain stage: share of demonstrations that drop every carry",
            core::between(0, 1));
    v.field("format_rate", format_rate,
            "addition, pretrain stage: share of demonstrations written in the <think>/<answer> format",
            core::between(0, 1));
    v.field("tool_rate", tool_rate,
            "multiplication, pretrain stage: share of demonstrations that compute the product with the code tool "
            "(<code>print(a*b)</code>, its output, then <answer>); the rest state the product outright",
            core::between(0, 1));
  }
};

/// How demonstrations write a code-tool call; the session fills it from the `env` section, so
/// that a demonstration's observation is byte for byte what the code tool returns.
struct ToolFormat {
  std::string code_open = "<code>", turn_end = "</code>";
  std::string output_open = "<output>", output_close = "</output>";
};

/// A piece of a demonstration: text the model writes (trained on) or an environment's
/// observation (conditioned on, never trained on, as in multi-turn rollouts).
struct DemoPiece {
  std::string text;
  bool observation = false;
};

/// A demonstration's token ids and, per token, whether it is trained on (false on observations).
struct DemoTokens {
  std::vector<int64_t> ids;
  std::vector<bool> trained;
};
/// Tokenizes `pieces` one by one, as a rollout tokenizes each observation on its own.
DemoTokens tokenize_demonstration(const text::Tokenizer& tok, const std::vector<DemoPiece>& pieces);

struct Problem {
  int64_t a = 0, b = 0;
  std::string question;  // "a+b=" or "a*b=" (the prompt before the template, see text/prompt.h)
  std::string answer;    // ground truth, e.g. "843"
};

class ArithmeticTask {
 public:
  ArithmeticTask(const ArithmeticConfig& config, uint64_t seed, ToolFormat tool = {});
  /// i-th training problem of this seed in `stream` (GRPO prompts and pretrain-stage demonstrations
  /// use different streams); never a held-out pair.
  Problem train_problem(int64_t i, core::Stream stream = core::Stream::kTrainData) const;
  /// i-th held-out problem (independent of the seed).
  Problem heldout_problem(int64_t i) const;
  bool is_heldout(int64_t a, int64_t b) const;
  /// A pretrain-stage demonstration (the completion after the prompt) for problem `p`, drawn from
  /// `key`: addition: right or carry-dropping, formatted or bare; multiplication: with the code tool
  /// or without, per the config.
  std::vector<DemoPiece> demonstration_pieces(const Problem& p, uint64_t key) const;
  /// The same demonstration as one text.
  std::string demonstration(const Problem& p, uint64_t key) const;
  /// The completion text of `answer` in the R1-Zero format (with scratchpad if enabled).
  std::string formatted(const Problem& p, int64_t sum, bool drop_carries) const;
  const ArithmeticConfig& config() const { return config_; }

 private:
  Problem make(int64_t a, int64_t b) const;
  ArithmeticConfig config_;
  ToolFormat tool_;
  uint64_t seed_;
  int64_t lo_, hi_;
};

/// The character tokenizer of a built-in task. Addition: its 13 characters and the four R1 tags.
/// Multiplication: printable ASCII and newline (a tool's output, e.g. a traceback, is shown as is;
/// any other byte reads as '?') and the R1, code and output tags.
std::unique_ptr<text::CharTokenizer> task_tokenizer(const ArithmeticConfig& config);

/// The sum with every carry dropped (except the final carry out of the top digit, which is kept
/// as the leading digit): 457+386 -> 733.
int64_t carry_dropping_sum(int64_t a, int64_t b, int64_t digits);

}  // namespace grpo::data
