// grpo_plan: per-GPU memory and communication of the parallel layouts of a training config.
//   grpo_plan --config configs/r1_zero.yaml --gpus 512 [--tp T] [--ep E] [--memory-gib G] ...
// Prints the best layout's arithmetic, then a table of the layouts (fitting ones first).
#include <fstream>
#include <iostream>
#include <iterator>
#include <optional>
#include <string>
#include <vector>

#include "grpo/core/error.h"
#include "grpo/train/config.h"
#include "grpo/train/memory_plan.h"
#include "../common/errors.h"
#include "../common/tool_flags.h"

int main(int argc, char** argv) {
  grpo::tools::ToolParams params;
  if (auto rc = grpo::tools::parse_tool_flags(grpo::tools::Tool::kPlan, argc, argv, params)) return *rc;
  const std::string& config = params.config.path;
  const std::vector<std::string>& overrides = params.config.overrides;
  grpo::train::PlanOptions& o = params.plan.options;  // flags given on the command line; the config supplies the rest
  const auto& precision = params.plan.precision;
  const auto& max_running = params.plan.max_running;
  const bool zero1 = params.plan.zero1, recompute = params.plan.recompute;
  const bool sequence_parallel = params.plan.sequence_parallel, all = params.plan.all;
  if (config.empty()) {
    std::cerr << "grpo_plan: --config is required (see --help)\n";
    return 2;
  }
  try {
    // as written: the model section plans without the weights (model.path need not exist here)
    std::ifstream in(config);
    GRPO_CHECK(in.good(), "cannot read {}", config);
    std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    auto cfg = grpo::train::load_config_text(text, config, overrides, /*to_run=*/false);
    GRPO_CHECK(cfg.model.vocab_size > 0, "{}: model.vocab_size must be set to plan (the tokenizer is not read)", config);
    {  // the config's settings (what grpo_train would do), then the command line's what-ifs
      auto c = grpo::train::plan_options(cfg, o.gpus);
      o.precision = precision.value_or(c.precision);
      o.zero1 = zero1 || c.zero1;
      o.recompute = recompute || c.recompute;
      o.sequence_parallel = sequence_parallel || c.sequence_parallel;
      o.max_running = max_running.value_or(c.max_running);
      o.kv_cache_bytes = c.kv_cache_bytes;
    }
    auto plans = grpo::train::plan_layouts(cfg, o);
    const auto& best = plans.front();
    std::cout << config << " on " << o.gpus << " GPUs of " << o.gpu_memory_gib << " GiB, " << o.precision
              << (o.zero1 ? " + ZeRO-1" : "") << (o.recompute ? " + recomputation" : "")
              << (o.sequence_parallel ? " + sequence parallel" : "") << ": " << cfg.model.count_parameters() / 1e9
              << " B parameters\n";
    if (o.gpus % cfg.parallel.tp == 0 && (o.gpus / cfg.parallel.tp) % cfg.parallel.ep == 0) {
      try {  // the layout the config asks for
        auto mine = grpo::train::plan_memory(cfg, grpo::dist::make_layout(o.gpus, cfg.parallel.tp, cfg.parallel.ep), o);
        std::cout << fmt::format("the config's layout (parallel.tp {}, parallel.ep {}): {}, peak {:.2f} GiB: {}\n",
                                 cfg.parallel.tp, cfg.parallel.ep, mine.layout.describe(),
                                 mine.peak_bytes / (1024.0 * 1024.0 * 1024.0), mine.fits ? "fits" : "does not fit");
      } catch (const grpo::Error& e) {
        std::cout << "the config's layout: " << e.what() << "\n";
      }
    }
    std::cout << (best.fits ? "best layout: " : "no layout fits; the least memory: ") << best.layout.describe() << "\n";
    for (const auto& line : best.arithmetic) std::cout << "  " << line << "\n";
    std::cout << fmt::format("\n{:<40} {:>10} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>7}  {}\n", "layout",
                             "params/GPU", "weights", "grads", "optim", "activ", "KV", "peak", "dp comm", "tp+ep",
                             "comm s", "fits");
    size_t shown = 0;
    for (const auto& p : plans) {
      if (!all && ++shown > grpo::tools::PlanFlags::kShown) {
        std::cout << "(" << plans.size() - grpo::tools::PlanFlags::kShown << " more: --all)\n";
        break;
      }
      auto g = [](double b) { return fmt::format("{:.1f}G", b / (1024.0 * 1024.0 * 1024.0)); };
      std::cout << fmt::format("{:<40} {:>9.2f}B {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>7.0f}  {}\n",
                               p.layout.describe(), p.params / 1e9, g(p.param_bytes), g(p.grad_bytes),
                               g(p.optimizer_bytes), g(p.activation_bytes), g(p.kv_cache_bytes), g(p.peak_bytes),
                               g(p.dp_bytes), g(p.tp_bytes + p.ep_bytes), p.comm_seconds, p.fits ? "yes" : "no");
    }
    return 0;
  } catch (...) {
    return grpo::tools::report_exception("grpo_plan");
  }
}
