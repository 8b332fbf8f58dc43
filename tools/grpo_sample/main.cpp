// grpo_sample: rejection sampling, R1's way to make SFT data from an RL checkpoint -- k samples
// per question, keep those that pass the configured rewards (and are complete), write SFT-ready
// JSON lines {"prompt", "response", "question", "answer", "scores"}.
#include <fstream>
#include <iostream>

#include <nlohmann/json.hpp>

#include "../common/policy_flags.h"
#include "grpo/reward/reward.h"

#include <algorithm>
#include <set>

using nlohmann::json;

namespace {
void usage(std::ostream& os) {
  os << "usage: grpo_sample --model DIR [--jsonl QUESTIONS.jsonl] --out SFT.jsonl [options]\n"
        "\n"
        "Writes one JSON line per kept completion: {\"prompt\" (the formatted prompt), \"response\",\n"
        "\"question\", \"answer\", \"scores\"}; prints a summary line. Without --jsonl, a built-in-task\n"
        "checkpoint samples its task's training questions (--limit of them, default 1000).\n"
        "\n"
        "  -k N                   samples per question (default 8)\n"
        "  --keep NAME[=MIN]      keep completions whose reward NAME is at least MIN (default 1);\n"
        "                         repeatable (default: --keep accuracy --keep format)\n"
        "  --max-per-question N   distinct kept completions per question (default 1; 0 = all)\n"
        "  --keep-truncated       also keep completions cut at max_new_tokens\n"
        "  --out FILE             output JSONL (required)\n"
     << grpo::tools::PolicyFlags::usage();
}
}  // namespace

int main(int argc, char** argv) {
  try {
    grpo::tools::PolicyFlags flags;
    grpo::train::RejectionOptions ro;
    bool keep_given = false;
    std::string out_path;
    for (grpo::tools::Args a{argc, argv}; a.i < argc; ++a.i) {
      const std::string f = a.flag();
      if (flags.take(a)) continue;
      if (f == "-k") ro.k = a.number<int64_t>();
      else if (f == "--keep") {
        if (!keep_given) ro.rewards.clear();
        keep_given = true;
        const std::string v = a.next();
        const auto eq = v.find('=');
        double min = 1.0;
        if (eq != std::string::npos) {
          try {
            size_t used = 0;
            min = std::stod(v.substr(eq + 1), &used);
            GRPO_CHECK(used == v.size() - eq - 1, "");
          } catch (const std::exception&) {
            grpo::fail("--keep {}: expected NAME or NAME=MIN with a number, found '{}'", v, v.substr(eq + 1));
          }
        }
        const std::string name = v.substr(0, eq);
        auto known = grpo::reward::RewardRegistry::names();
        GRPO_CHECK(std::find(known.begin(), known.end(), name) != known.end(),
                   "--keep: unknown reward '{}'; registered: {}", name, fmt::join(known, ", "));
        ro.rewards[name] = min;
      } else if (f == "--max-per-question") ro.max_per_question = a.number<int64_t>();
      else if (f == "--keep-truncated") ro.drop_truncated = false;
      else if (f == "--out") out_path = a.next();
      else if (f == "--help" || f == "-h") { usage(std::cout); return 0; }
      else grpo::fail("unknown argument '{}' (see --help)", f);
    }
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
