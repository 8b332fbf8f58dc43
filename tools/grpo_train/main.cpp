// grpo_train: parse flags -> load and validate the config -> run the trainer. The only place
// that catches errors: it prints one clear message and exits non-zero.
#include <atomic>
#include <csignal>
#include <cstring>
#include <iostream>
#include <string>
#include <vector>

#include <spdlog/spdlog.h>

#include "grpo/core/error.h"
#include "grpo/core/progress.h"
#include "grpo/train/config.h"
#include "grpo/train/trainer.h"

#include "../common/errors.h"
#include "../common/tool_flags.h"

namespace {

// SIGINT/SIGTERM (Ctrl-C, Slurm preemption) on any rank: every rank finishes the current step,
// checkpoints and exits with 130. A second signal kills the process at once.
std::atomic<bool> g_stop{false};
extern "C" void on_signal(int sig) {
  g_stop = true;
  std::signal(sig, SIG_DFL);
}

// Every config key, with its default and help (as Markdown tables for docs/configuration.md).
std::string config_keys(bool markdown) {
  return grpo::core::describe_config(
      [](grpo::core::ConfigVisitor& v) {
        grpo::train::Config c;
        c.visit(v);
      },
      markdown);
}

}  // namespace

int main(int argc, char** argv) {
  grpo::tools::ToolParams p;
  if (auto rc = grpo::tools::parse_tool_flags(grpo::tools::Tool::kTrain, argc, argv, p, [](std::ostream& out) {
        out << "\nConfig keys (defaults shown):\n" << config_keys(false);
      }))
    return *rc;
  if (p.train.config_reference) {
    std::cout << config_keys(true);
    return 0;
  }
  const std::string& config_path = p.config.path;
  const std::vector<std::string>& overrides = p.config.overrides;
  const bool print_only = p.train.print_config;
  if (config_path.empty()) {
    std::cerr << "grpo_train: --config FILE is required (see --help)\n";
    return 2;
  }
  spdlog::set_pattern("[%H:%M:%S] %v");
  spdlog::set_level(p.train.quiet ? spdlog::level::warn : spdlog::level::from_str(p.train.log_level));
  // On a terminal, one live line per stage replaces the per-step lines (core/progress.h); it is
  // finished before anything else is printed at the end, an error included.
  struct LiveLine {
    explicit LiveLine(bool on) { grpo::core::Progress::instance().enable(on); }
    ~LiveLine() { grpo::core::Progress::instance().enable(false); }
  };
  try {
    LiveLine live(!p.train.quiet && spdlog::should_log(spdlog::level::info));
    auto cfg = grpo::train::load_config_file(config_path, overrides);
    if (print_only) {
      std::cout << grpo::train::to_yaml(cfg);
      return 0;
    }
    grpo::train::Trainer trainer(std::move(cfg));
    std::signal(SIGINT, on_signal);
    std::signal(SIGTERM, on_signal);
    trainer.run([](const grpo::train::TrainState&) { return g_stop.load(); });
    // a signal on any rank stops every rank (the decision is collective), signalled or not
    const auto& st = trainer.state();
    if (g_stop || st.stage != "grpo" || st.rollout_step < trainer.config().grpo.rollout_steps) {
      spdlog::info("interrupted: checkpoint written; rerun the same command to resume");
      return 130;
    }
  } catch (...) {
    return grpo::tools::report_exception("grpo_train");
  }
  return 0;
}
