// grpo_sample: rejection sampling, R1's way to make SFT data from an RL checkpoint -- k samples
// per question, keep those that pass the configured rewards (and are complete), write SFT-ready
// JSON lines {"prompt", "response", "question", "answer", "scores"}.
#include <fstream>
#include <iostream>
#include <set>

#include <nlohmann/json.hpp>

#include "../common/tool_flags.h"

using nlohmann::json;

namespace {
constexpr auto kTool = grpo::tools::Tool::kSample;
constexpr const char* kAbout =
    "usage: grpo_sample --model DIR [--jsonl QUESTIONS.jsonl] --out SFT.jsonl [options]\n"
    "\n"
    "Writes one JSON line per kept completion: {\"prompt\" (the formatted prompt), \"response\",\n"
    "\"question\", \"answer\", \"scores\"}; prints a summary line. Without --jsonl, a built-in-task\n"
    "checkpoint samples its task's training questions (--limit of them, default 1000).\n"
    "\n";
}  // namespace

int main(int argc, char** argv) {
  try {
    grpo::tools::ToolParams p;
    const auto table = grpo::tools::tool_flags(p);
    table.parse(kTool, argc, argv, p);
    if (p.help) {
      table.usage(std::cout, kTool, kAbout);
      return 0;
    }
    auto& flags = p.policy;
    auto& ro = p.sample.options;
    const std::string& out_path = p.sample.out;
    GRPO_CHECK(!out_path.empty(), "--out FILE is required (see --help)");
    GRPO_CHECK(ro.k >= 1, "-k must be at least 1, found {}", ro.k);
    GRPO_CHECK(ro.max_per_question >= 0, "--max-per-question must be >= 0, found {}", ro.max_per_question);
    auto policy = flags.open();
    auto questions = grpo::train::read_questions(policy, flags.questions, flags.limit,
                                                 grpo::train::BuiltinQuestions::kTraining);
    ro.sampling = policy.sampling;
    ro.seed = uint64_t(flags.seed);
    ro.batch_size = flags.batch_size;
    auto kept = grpo::train::rejection_sample(policy, questions, ro);
    std::ofstream out(out_path);
    GRPO_CHECK(out.good(), "--out: cannot write '{}'", out_path);
    std::set<int64_t> covered;
    for (auto& k : kept) {
      const auto& q = questions[size_t(k.question)];
      out << json{{"prompt", grpo::text::format_prompt(policy.prompt, q.question)},
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
  } catch (const grpo::Error& e) {
    std::cerr << "grpo_sample: error: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
