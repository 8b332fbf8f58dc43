// grpo_eval: a model on a benchmark -- pass@1 averaged over k samples at a temperature, cons@k
// (majority vote over the extracted answers) and greedy accuracy, as the R1 paper reports them.
#include <fstream>
#include <iostream>

#include <nlohmann/json.hpp>

#include "../common/errors.h"
#include "../common/tool_flags.h"

using nlohmann::json;

int main(int argc, char** argv) {
  try {
    grpo::tools::ToolParams p;
    if (auto rc = grpo::tools::parse_tool_flags(grpo::tools::Tool::kEval, argc, argv, p)) return *rc;
    auto& flags = p.policy;
    auto& bo = p.eval.options;
    const std::string& per_question = p.eval.per_question;
    auto policy = flags.open();
    auto questions = grpo::train::read_questions(policy, flags.questions, flags.limit);
    flags.check_memory(*policy.model, int64_t(questions.size()), bo.k, policy.sampling.max_new_tokens);
    bo.sampling = policy.sampling;
    bo.seed = uint64_t(flags.seed);
    bo.batch_size = flags.batch_size;
    auto r = grpo::train::evaluate_benchmark(policy, questions, bo);
    json out = {{"model", flags.source.model_dir},
                {"benchmark", flags.questions.path.empty() ? "built-in held-out set" : flags.questions.path},
                {"questions", r.num_questions},
                {"k", r.k},
                {"temperature", bo.sampling.temperature},
                {"top_p", bo.sampling.top_p},
                {"max_new_tokens", bo.sampling.max_new_tokens},
                {"pass@1", r.pass_at_1},
                {"cons@k", r.cons_at_k},
                {"greedy", r.greedy >= 0 ? json(r.greedy) : json(nullptr)},
                {"format_rate", r.format_rate},
                {"truncation_rate", r.truncation_rate}};
    std::cout << out.dump() << "\n";
    if (!per_question.empty()) {
      std::ofstream f(per_question);
      GRPO_CHECK(f.good(), "--per-question: cannot write '{}'", per_question);
      for (size_t i = 0; i < questions.size(); ++i)
        f << json{{"question", questions[i].question}, {"answer", questions[i].answer},
                  {"pass", r.per_question_pass[i]}}.dump() << "\n";
    }
  } catch (...) {
    return grpo::tools::report_exception("grpo_eval");
  }
  return 0;
}
