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
#include "grpo/train/config.h"
#include "grpo/train/trainer.h"

namespace {

// SIGINT/SIGTERM (Ctrl-C, Slurm preemption): finish the current step, checkpoint, exit. A second
// signal kills the process at once.
std::atomic<bool> g_stop{false};
extern "C" void on_signal(int sig) {
  g_stop = true;
  std::signal(sig, SIG_DFL);
}

void usage(std::ostream& os) {
  os << "usage: grpo_train --config FILE.yaml [--set key.path=value ...] [--resume] [--fresh]\n"
        "\n"
        "Trains a policy with GRPO: base stage (if configured), then rollout -> rewards ->\n"
        "group-relative advantages -> clipped policy updates. Writes config.yaml, metrics.jsonl,\n"
        "eval.jsonl and checkpoints/ into run.dir.\n"
        "\n"
        "  --config FILE      YAML config (see configs/ and docs/configuration.md)\n"
        "  --set KEY=VALUE    override one key, e.g. --set grpo.group_size=16 (repeatable)\n"
        "  --resume           continue from the run directory's latest checkpoint (run.resume=auto)\n"
        "  --fresh            ignore existing checkpoints and start over (run.resume=never)\n"
        "  --print-config     print the resolved config and exit\n"
        "  --config-reference print every key as Markdown tables (docs/configuration.md)\n"
        "  --help             this text\n"
        "\n"
        "Config keys (defaults shown):\n"
     << grpo::core::describe_config([](grpo::core::ConfigVisitor& v) {
          grpo::train::Config c;
          c.visit(v);
        });
}

}  // namespace

int main(int argc, char** argv) {
  std::string config_path;
  std::vector<std::string> overrides;
  bool print_only = false;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto value = [&](const char* flag) -> std::string {
      if (i + 1 >= argc) {
        std::cerr << "grpo_train: " << flag << " needs a value\n";
        std::exit(2);
      }
      return argv[++i];
    };
    if (a == "--help" || a == "-h") {
      usage(std::cout);
      return 0;
    } else if (a == "--config") {
      config_path = value("--config");
    } else if (a.rfind("--config=", 0) == 0) {
      config_path = a.substr(9);
    } else if (a == "--set") {
      overrides.push_back(value("--set"));
    } else if (a.rfind("--set=", 0) == 0) {
      overrides.push_back(a.substr(6));
    } else if (a == "--resume") {
      overrides.push_back("run.resume=auto");
    } else if (a == "--fresh") {
      overrides.push_back("run.resume=never");
    } else if (a == "--config-reference") {
      std::cout << grpo::core::describe_config(
          [](grpo::core::ConfigVisitor& v) {
            grpo::train::Config c;
            c.visit(v);
          },
          true);
      return 0;
    } else if (a == "--print-config") {
      print_only = true;
    } else {
      std::cerr << "grpo_train: unknown argument '" << a << "' (see --help)\n";
      return 2;
    }
  }
  if (config_path.empty()) {
    std::cerr << "grpo_train: --config FILE is required (see --help)\n";
    return 2;
  }
  spdlog::set_pattern("[%H:%M:%S] %v");
  try {
    auto cfg = grpo::train::load_config_file(config_path, overrides);
    if (print_only) {
      std::cout << grpo::train::to_yaml(cfg);
      return 0;
    }
    grpo::train::Trainer trainer(std::move(cfg));
    std::signal(SIGINT, on_signal);
    std::signal(SIGTERM, on_signal);
    trainer.run([](const grpo::train::TrainState&) { return g_stop.load(); });
    if (g_stop) {
      spdlog::info("interrupted: checkpoint written; rerun the same command to resume");
      return 130;
    }
  } catch (const grpo::Error& e) {
    std::cerr << "grpo_train: error: " << e.what() << "\n";
    return 1;
  } catch (const std::exception& e) {
    std::cerr << "grpo_train: unexpected error: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
