#include "grpo/data/arithmetic.h"

#include "grpo/core/error.h"
#include "grpo/core/rng.h"
#include "grpo/text/tokenizer.h"

namespace grpo::data {

using core::hash_key;
using core::KeyedRng;
using core::Stream;

int64_t carry_dropping_sum(int64_t a, int64_t b, int64_t digits) {
  int64_t r = 0, p = 1, carry = 0;
  for (int64_t k = 0; k < digits; ++k, p *= 10) {
    int64_t t = (a / p) % 10 + (b / p) % 10;
    r += (t % 10) * p;
    carry = t / 10;
  }
  return r + carry * p;
}

std::unique_ptr<text::CharTokenizer> task_tokenizer(const ArithmeticConfig& config) {
  std::vector<std::string> specials{"<think>", "</think>", "<answer>", "</answer>"};
  if (!config.multiplication()) return std::make_unique<text::CharTokenizer>("0123456789+=,", specials);
  std::string printable = "\n";
  for (char c = ' '; c <= '~'; ++c) printable += c;
  for (const char* t : {"<code>", "</code>", "<output>", "</output>"}) specials.push_back(t);
  return std::make_unique<text::CharTokenizer>(printable, specials, '?');
}

ArithmeticTask::ArithmeticTask(const ArithmeticConfig& config, uint64_t seed, ToolFormat tool)
    : config_(config), tool_(std::move(tool)), seed_(seed) {
  lo_ = 1;
  for (int64_t i = 1; i < config.digits; ++i) lo_ *= 10;
  hi_ = lo_ * 10 - 1;
  if (config.digits == 1) lo_ = 0;
}

bool ArithmeticTask::is_heldout(int64_t a, int64_t b) const {
  return core::uniform01(hash_key({uint64_t(Stream::kSplit), uint64_t(a), uint64_t(b)})) <
         config_.heldout_fraction;
}

Problem ArithmeticTask::make(int64_t a, int64_t b) const {
  Problem p;
  p.a = a;
  p.b = b;
  const bool mul = config_.multiplication();
  p.question = fmt::format("{}{}{}=", a, mul ? '*' : '+', b);
  p.answer = std::to_string(mul ? a * b : a + b);
  return p;
}

Problem ArithmeticTask::train_problem(int64_t i, Stream stream) const {
  KeyedRng rng(hash_key({uint64_t(stream), seed_, uint64_t(i)}));
  for (;;) {
    int64_t a = rng.uniform_int(lo_, hi_), b = rng.uniform_int(lo_, hi_);
    if (!is_heldout(a, b)) return make(a, b);
  }
}

Problem ArithmeticTask::heldout_problem(int64_t i) const {
  KeyedRng rng(hash_key({uint64_t(Stream::kEvalData), uint64_t(i)}));
  for (;;) {
    int64_t a = rng.uniform_int(lo_, hi_), b = rng.uniform_int(lo_, hi_);
    if (is_heldout(a, b)) return make(a, b);
  }
}

std::string ArithmeticTask::formatted(const Problem& p, int64_t sum, bool drop_carries) const {
  std::string think;
  if (config_.scratchpad) {
    // column sums right to left, each including the incoming carry unless carries are dropped
    int64_t carry = 0, pw = 1;
    for (int64_t k = 0; k < config_.digits; ++k, pw *= 10) {
      int64_t t = (p.a / pw) % 10 + (p.b / pw) % 10 + (drop_carries ? 0 : carry);
      think += (k ? "," : "") + std::to_string(t);
      carry = t / 10;
    }
  }
  return fmt::format("<think>{}</think><answer>{}</answer>", think, sum);
}

std::vector<DemoPiece> ArithmeticTask::demonstration_pieces(const Problem& p, uint64_t key) const {
  KeyedRng rng(key);
  if (config_.multiplication()) {
    const std::string answer = "<answer>" + p.answer + "</answer>";
    if (rng.uniform() >= config_.tool_rate) return {{answer}};
    // the tool's observation exactly as the code tool returns it (env/environment.cpp): stdout,
    // trailing newlines dropped, between the output markers
    return {{tool_.code_open + fmt::format("print({}*{})", p.a, p.b) + tool_.turn_end},
            {tool_.output_open + p.answer + tool_.output_close, true},
            {answer}};
  }
  bool wrong = rng.uniform() < config_.noise;
  bool fmt_ok = rng.uniform() < config_.format_rate;
  int64_t sum = wrong ? carry_dropping_sum(p.a, p.b, config_.digits) : p.a + p.b;
  return {{fmt_ok ? formatted(p, sum, wrong) : std::to_string(sum)}};
}

DemoTokens tokenize_demonstration(const text::Tokenizer& tok, const std::vector<DemoPiece>& pieces) {
  DemoTokens d;
  for (const auto& piece : pieces) {
    auto ids = tok.encode(piece.text);
    d.ids.insert(d.ids.end(), ids.begin(), ids.end());
    d.trained.insert(d.trained.end(), ids.size(), !piece.observation);
  }
  return d;
}

std::string ArithmeticTask::demonstration(const Problem& p, uint64_t key) const {
  std::string text;
  for (const auto& piece : demonstration_pieces(p, key)) text += piece.text;
  return text;
}

}  // namespace grpo::data
