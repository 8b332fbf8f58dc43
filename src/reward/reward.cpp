#include "grpo/reward/reward.h"

#include <cmath>
#include <mutex>
#include <regex>
#include <stdexcept>

#include <nlohmann/json.hpp>

#include "grpo/core/error.h"
#include "grpo/reward/math_verify.h"
#include "grpo/reward/task_rewards.h"

namespace grpo::reward {
namespace {

std::string trim(const std::string& s) {
  size_t b = s.find_first_not_of(" \t\r\n"), e = s.find_last_not_of(" \t\r\n");
  return b == std::string::npos ? std::string() : s.substr(b, e - b + 1);
}

const char* const kTags[] = {"<think>", "</think>", "<answer>", "</answer>"};

size_t count(const std::string& s, const std::string& pat) {
  size_t n = 0;
  for (size_t i = s.find(pat); i != std::string::npos; i = s.find(pat, i + pat.size())) ++n;
  return n;
}

// The final answer (extract_answer) equals the ground truth: identical text, or mathematically
// equal by the math verifier (fractions, LaTeX, sets, intervals, equations, ...).
class Accuracy : public RewardFn {
 public:
  double score_sample(const Sample& s) const override {
    auto a = extract_answer(s.completion);
    if (!a) return 0.0;
    if (*a == trim(s.answer)) return 1.0;
    math::VerifyOptions o;  // within the sample's deadline
    auto left = std::chrono::duration_cast<std::chrono::microseconds>(s.deadline - std::chrono::steady_clock::now());
    if (s.deadline != std::chrono::steady_clock::time_point::max()) o.budget_us = std::max<int64_t>(0, std::min<int64_t>(o.budget_us, left.count()));
    return math::verify(s.answer, *a, o).equal ? 1.0 : 0.0;
  }
};

class Format : public RewardFn {
 public:
  double score(const std::string& completion, const std::string&) const override {
    return has_r1_format(completion) ? 1.0 : 0.0;
  }
};

class FormatLenient : public RewardFn {
 public:
  double score(const std::string& completion, const std::string&) const override {
    return has_r1_format_lenient(completion) ? 1.0 : 0.0;
  }
};

// Partial credit: 0.25 for each of <think>, </think>, <answer>, </answer> appearing exactly once.
class TagCount : public RewardFn {
 public:
  double score(const std::string& completion, const std::string&) const override {
    double s = 0;
    for (const char* tag : kTags) s += count(completion, tag) == 1 ? 0.25 : 0.0;
    return s;
  }
};

// Share of the completion's words in the target script (the prompt's, unless configured).
class Language : public RewardFn {
 public:
  double score_sample(const Sample& s) const override {
    auto target = s.params.language == "auto" ? dominant_scripts(s.prompt) : parse_target_script(s.params.language);
    if (target.empty()) return 1.0;  // nothing to be consistent with
    return language_consistency(s.completion, target);
  }
};

// Countdown: the ground truth is {"target": T, "numbers": [...]}; the answer is an expression.
class CountdownReward : public RewardFn {
 public:
  double score(const std::string& completion, const std::string& truth) const override {
    auto j = nlohmann::json::parse(truth, nullptr, false);
    GRPO_CHECK(!j.is_discarded() && j.is_object() && j.contains("target") && j.contains("numbers"),
               "countdown: the ground truth must be {{\"target\": T, \"numbers\": [...]}}, found '{}'",
               truth.substr(0, 80));
    auto a = extract_answer(completion);
    if (!a) return 0.0;
    auto ok = countdown_correct(*a, j["target"].get<int64_t>(), j["numbers"].get<std::vector<int64_t>>());
    return ok.value_or(false) ? 1.0 : 0.0;
  }
};

// GSM8K: the number after "####" in the ground truth against the completion's final answer.
class Gsm8k : public RewardFn {
 public:
  double score(const std::string& completion, const std::string& truth) const override {
    return math::verify(truth, completion).equal ? 1.0 : 0.0;
  }
};

// Code execution: the last fenced code block, run in the sandbox on the sample's tests (field
// "tests", or the ground truth: a JSON list of {"input", "output"}); the score is the pass rate.
class CodeReward : public RewardFn {
 public:
  double score_sample(const Sample& s) const override {
    auto it = s.fields.find("tests");
    const std::string& text = it != s.fields.end() ? it->second : s.answer;
    auto j = nlohmann::json::parse(text, nullptr, false);
    GRPO_CHECK(!j.is_discarded() && j.is_array(), "code reward: tests must be a JSON list of {{\"input\", \"output\"}}, "
               "found '{}'", text.substr(0, 80));
    std::vector<CodeTest> tests;
    for (auto& t : j) {
      GRPO_CHECK(t.is_object() && t.contains("output"), "code reward: each test needs \"output\"");
      tests.push_back({t.value("input", std::string()), t["output"].get<std::string>()});
    }
    std::string lang;
    auto code = last_code_block(s.completion, &lang);
    if (!code) return 0.0;
    auto lang_field = s.fields.find("language");
    if (lang.empty() && lang_field != s.fields.end()) lang = lang_field->second;
    return code_pass_rate(*code, lang, tests);
  }
};

// A fixed final-answer line for free-text reasoning (chat models on word problems): a line that is
// params.answer_prefix (case-insensitive), an optional colon, and one number ($, commas, sign and
// decimals allowed), optionally ending with a period. 1 when it is the last non-empty line, 0.5
// when such a line comes earlier (shaped: a small model writes it mid-text long before it learns
// to end there), else 0.
class AnswerLine : public RewardFn {
 public:
  double score_sample(const Sample& s) const override {
    const std::string text = trim(s.completion);
    double best = 0.0;
    size_t start = 0;
    while (start <= text.size()) {
      size_t end = text.find('\n', start);
      const bool last = end == std::string::npos;
      if (last) end = text.size();
      if (is_answer_line(trim(text.substr(start, end - start)), s.params.answer_prefix)) best = last ? 1.0 : 0.5;
      if (last) break;
      start = end + 1;
    }
    return best;
  }

 private:
  static bool is_answer_line(const std::string& line, const std::string& prefix) {
    if (line.size() < prefix.size() || prefix.empty()) return false;
    for (size_t i = 0; i < prefix.size(); ++i)
      if (std::tolower(static_cast<unsigned char>(line[i])) != std::tolower(static_cast<unsigned char>(prefix[i])))
        return false;
    static const std::regex number(R"(\s*:?\s*\\?\$?\s*-?\d[\d,]*(\.\d+)?\s*\.?)");
    return std::regex_match(line.substr(prefix.size()), number);
  }
};

// DAPO's soft overlong penalty (0 or negative; weight it like any reward).
class Overlong : public RewardFn {
 public:
  double score_sample(const Sample& s) const override {
    return overlong_penalty(s.response_tokens, s.max_response_tokens, s.params.overlong_buffer);
  }
};

std::mutex& registry_mutex() {
  static std::mutex m;
  return m;
}
std::map<std::string, RewardRegistry::Factory>& registry() {
  static std::map<std::string, RewardRegistry::Factory> r{
      {"accuracy", [] { return std::make_unique<Accuracy>(); }},
      {"format", [] { return std::make_unique<Format>(); }},
      {"format_lenient", [] { return std::make_unique<FormatLenient>(); }},
      {"tag_count", [] { return std::make_unique<TagCount>(); }},
      {"language", [] { return std::make_unique<Language>(); }},
      {"countdown", [] { return std::make_unique<CountdownReward>(); }},
      {"gsm8k", [] { return std::make_unique<Gsm8k>(); }},
      {"answer_line", [] { return std::make_unique<AnswerLine>(); }},
      {"overlong", [] { return std::make_unique<Overlong>(); }},
      {"code", [] { return std::make_unique<CodeReward>(); }},
  };
  return r;
}

std::vector<std::string> known_names() {  // caller holds the lock
  std::vector<std::string> out;
  for (auto& [k, v] : registry()) out.push_back(k);
  return out;
}

}  // namespace

std::optional<std::string> extract_answer(const std::string& completion) {
  std::string ans;
  auto close = completion.rfind("</answer>");
  auto open = close == std::string::npos ? std::string::npos : completion.rfind("<answer>", close);
  if (open != std::string::npos) {
    ans = completion.substr(open + 8, close - open - 8);
  } else {
    auto t = completion.rfind("</think>");
    ans = t == std::string::npos ? completion : completion.substr(t + 8);
    for (const char* tag : kTags) {
      std::string tg(tag);
      for (auto p = ans.find(tg); p != std::string::npos; p = ans.find(tg)) ans.erase(p, tg.size());
    }
  }
  ans = trim(ans);
  if (ans.empty()) return std::nullopt;
  return ans;
}

bool has_r1_format(const std::string& c) {
  for (const char* tag : kTags)
    if (count(c, tag) != 1) return false;
  auto t0 = c.find("<think>"), t1 = c.find("</think>"), a0 = c.find("<answer>"),
       a1 = c.find("</answer>");
  if (!(t0 < t1 && t1 < a0 && a0 < a1)) return false;
  return trim(c.substr(0, t0)).empty() && trim(c.substr(t1 + 8, a0 - t1 - 8)).empty() &&
         trim(c.substr(a1 + 9)).empty() && c.find('<', t0 + 7) == t1 && c.find('<', a0 + 8) == a1;
}

bool has_r1_format_lenient(const std::string& c) {
  for (const char* tag : kTags)
    if (count(c, tag) != 1) return false;
  auto t0 = c.find("<think>"), t1 = c.find("</think>"), a0 = c.find("<answer>"), a1 = c.find("</answer>");
  return t0 < t1 && t1 < a0 && a0 < a1 && !trim(c.substr(a0 + 8, a1 - a0 - 8)).empty();
}

void RewardRegistry::add(const std::string& name, Factory f) {
  std::lock_guard<std::mutex> g(registry_mutex());
  registry()[name] = std::move(f);
}

std::unique_ptr<RewardFn> RewardRegistry::create(const std::string& name) {
  std::lock_guard<std::mutex> g(registry_mutex());
  auto it = registry().find(name);
  GRPO_CHECK(it != registry().end(), "unknown reward '{}'; registered: {}", name,
             fmt::join(known_names(), ", "));
  return it->second();
}

std::vector<std::string> RewardRegistry::names() {
  std::lock_guard<std::mutex> g(registry_mutex());
  return known_names();
}

CombinedReward::CombinedReward(const std::map<std::string, double>& weights, double failure_value,
                               RewardParams params)
    : failure_value_(failure_value), params_(std::move(params)) {
  GRPO_CHECK(!weights.empty(), "no reward functions configured");
  for (auto& [name, w] : weights) {
    weights_.emplace_back(name, w);
    fns_.push_back(RewardRegistry::create(name));
  }
}

RewardResult CombinedReward::score(const std::string& completion, const std::string& truth) const {
  Sample s;
  s.completion = completion;
  s.answer = truth;
  return score(std::move(s));
}

double CombinedReward::total_of(const std::map<std::string, double>& parts) const {
  double t = 0;
  for (auto& [name, w] : weights_) {
    auto it = parts.find(name);
    t += w * (it == parts.end() ? failure_value_ : it->second);
  }
  return t;
}

RewardResult CombinedReward::score(Sample sample) const {
  sample.params = params_;
  RewardResult r;
  for (size_t i = 0; i < fns_.size(); ++i) {
    double s = failure_value_;
    try {
      s = fns_[i]->score_sample(sample);
      if (!std::isfinite(s)) throw std::runtime_error("returned a non-finite score");
    } catch (const std::exception& e) {  // a broken reward never stops training
      s = failure_value_;
      r.failed.push_back(weights_[i].first + ": " + e.what());
    }
    r.parts[weights_[i].first] = s;
    r.total += weights_[i].second * s;
  }
  return r;
}

std::vector<RewardResult> CombinedReward::score_batch(const std::vector<std::string>& completions,
                                                      const std::vector<std::string>& truths) const {
  GRPO_ASSERT(completions.size() == truths.size());
  std::vector<RewardResult> out;
  out.reserve(completions.size());
  for (size_t i = 0; i < completions.size(); ++i) out.push_back(score(completions[i], truths[i]));
  return out;
}

}  // namespace grpo::reward
