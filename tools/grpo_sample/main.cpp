// grpo_sample: rejection sampling, R1's way to make SFT data from an RL checkpoint -- k samples
// per question, keep those that pass the configured rewards (and are complete), write SFT-ready
// JSON lines {"prompt", "response", "question", "answer", "scores"}.
#include <fstream>
#include <iostream>
#include <set>

#include <nlohmann/json.hpp>

#include "../common/errors.h"
#include "../common/tool_flags.h"

using nlohmann::json;

int main(int argc, char** argv) {
  try {
    grpo::tools::ToolParams p;
    if (auto rc = grpo::tools::parse_tool_flags(grpo::tools::Tool::kSample, argc, argv, p)) return *rc;
    auto& flags = p.policy;
    auto& ro = p.sample.options;
    const std::string& out_path = p.sample.out;
    GRPO_CHECK(!out_path.empty(), "--out FILE is required (see --help)");
    GRPO_CHECK(ro.max_per_question >= 0, "--max-per-question must be >= 0, found {}", ro.max_per_question);
    auto policy = flags.open();
    auto questions = grpo::train::read_questions(policy, flags.questions, flags.limit,
                                                 grpo::train::BuiltinQuestions::kTraining);
    flags.check_memory(*policy.model, int64_t(questions.size()), ro.k, policy.sampling.max_new_tokens);
    ro.sampling = policy.sampling;
    ro.seed = uint64_t(flags.seed);
    ro.batch_size = flags.batch_size;
    auto kept = grpo::train::rejection_sample(policy, questions, ro);
    std::ofstream out(out_path);
    GRPO_CHECK(out.good(), "--out: cannot write '{}'", out_path);
    std::set<int64_t> covered;
    for (auto& k : kept) {
      const auto& q = questions[size_t(k.question)];
      out << json{{"prompt", grpo::text::format_prompt(policy.prompt, q.question, policy.tokenizer.get())},
                  {"response", k.completion},
                  {"question", q.question},
                  {"answer", q.answer},
                  {"scores", k.scores}}.dump() << "\n";
      covered.insert(k.question);
    }
    std::cout << json{{"questions", questions.size()},
                      {"samples", int64_t(questions.size()) * ro.k},
                      {"kept", kept.size()},
                      {"questions_covered", covered.size()},
                      {"out", out_path}}.dump() << "\n";
  } catch (...) {
    return grpo::tools::report_exception("grpo_sample");
  }
  return 0;
}
