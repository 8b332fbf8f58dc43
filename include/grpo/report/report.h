// grpo_report: one self-contained HTML page (inline SVG; no script, no network, no fonts to fetch)
// with the curves of one or more run directories overlaid: reward mean +- std, held-out accuracy,
// format rate, response length, KL, entropy, clip fractions, gradient norm, learning rate, the
// per-step time split (stacked, one chart per run), MoE expert load, the supervised stages' loss,
// and the resolved config keys that differ between the runs. A chart whose fields no run has is
// left out.
#pragma once

#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace grpo::report {

/// What a run directory holds that the report shows.
struct Run {
  std::string dir, name;                  // name: the legend's label
  std::vector<nlohmann::json> metrics;    // metrics.jsonl, in order
  std::vector<nlohmann::json> evals;      // eval.jsonl
  std::map<std::string, std::string> config;  // config.yaml flattened: "grpo.kl_coef" -> "0.0"
};

/// Reads a run directory; errors name the file (and line) that is missing or malformed.
Run load_run(const std::string& dir);

struct Options {
  double smooth = 0;  // exponential moving average weight in [0, 1) (TensorBoard's smoothing); 0 = raw
  std::string title = "grpo runs";
};

/// The page for `runs` (labels made unique from their directories).
std::string html(std::vector<Run> runs, const Options& options);

/// The ids of the charts html() draws for these runs, in page order (what a test looks for).
std::vector<std::string> chart_ids(const std::vector<Run>& runs);

}  // namespace grpo::report
