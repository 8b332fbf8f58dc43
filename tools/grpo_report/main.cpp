// grpo_report: one self-contained HTML page with the curves of one or more run directories.
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <string>
#include <vector>

#include "grpo/core/error.h"
#include "grpo/report/report.h"

#include "../common/errors.h"

namespace {

const char* kUsage = R"(usage: grpo_report RUN_DIR [RUN_DIR ...] -o REPORT.html [--smooth W] [--title TEXT]

Writes one self-contained HTML file (inline SVG; no script, nothing fetched from the network) with
the runs' curves overlaid, one colour per run: reward mean +- std, held-out greedy and sampled
accuracy, format rate, response length, KL, entropy, clip fractions, gradient norm, learning rate,
MoE expert load, the supervised stages' loss, the time split of each run's steps (stacked), and the
resolved config keys that differ between the runs. Charts whose fields no run has are left out.

  -o, --output FILE   the HTML file to write (required)
  --smooth W          exponential moving average weight in [0, 1), as TensorBoard's smoothing
                      (default 0: raw values); the raw curve stays, faint
  --title TEXT        the page title (default: "grpo runs")
  -h, --help          print this help and exit
)";

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> dirs;
  std::string out;
  grpo::report::Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) {
        std::cerr << "grpo_report: " << a << " needs a value (see --help)\n";
        std::exit(2);
      }
      return argv[++i];
    };
    if (a == "-h" || a == "--help") {
      std::cout << kUsage;
      return 0;
    } else if (a == "-o" || a == "--output") {
      out = value();
    } else if (a == "--title") {
      o.title = value();
    } else if (a == "--smooth") {
      const std::string v = value();
      char* end = nullptr;
      o.smooth = std::strtod(v.c_str(), &end);
      if (v.empty() || *end || !(o.smooth >= 0 && o.smooth < 1)) {
        std::cerr << "grpo_report: --smooth '" << v << "': expected a number in [0, 1)\n";
        return 2;
      }
    } else if (!a.empty() && a[0] == '-') {
      std::cerr << "grpo_report: unknown option '" << a << "' (see --help)\n";
      return 2;
    } else {
      dirs.push_back(a);
    }
  }
  if (dirs.empty() || out.empty()) {
    std::cerr << "grpo_report: " << (dirs.empty() ? "no RUN_DIR given" : "-o REPORT.html is required")
              << " (see --help)\n";
    return 2;
  }
  try {
    std::vector<grpo::report::Run> runs;
    for (const auto& d : dirs) runs.push_back(grpo::report::load_run(d));
    const auto page = grpo::report::html(runs, o);
    std::ofstream f(out, std::ios::trunc);
    GRPO_CHECK(f.is_open(), "cannot write '{}'", out);
    f << page;
    f.close();
    GRPO_CHECK(f.good(), "error while writing '{}'", out);
    std::cerr << "grpo_report: " << out << " (" << runs.size() << " run" << (runs.size() == 1 ? "" : "s") << ", "
              << grpo::report::chart_ids(runs).size() << " charts)\n";
  } catch (...) {
    return grpo::tools::report_exception("grpo_report");
  }
  return 0;
}
