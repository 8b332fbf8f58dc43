// grpo_report's page (report/report.h): charts drawn as inline SVG from the runs' JSONL files.
#include "grpo/report/report.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <functional>
#include <set>

#include <fmt/format.h>
#include <yaml-cpp/yaml.h>
#include <nlohmann/json.hpp>

#include "grpo/core/error.h"

namespace fs = std::filesystem;

namespace grpo::report {
namespace {

using Json = nlohmann::json;

std::vector<Json> read_jsonl(const fs::path& path, bool required) {
  std::vector<Json> out;
  std::ifstream in(path);
  if (!in) {
    GRPO_CHECK(!required, "{}: cannot open it (is this a grpo run directory? it has no metrics.jsonl)",
               path.string());
    return out;
  }
  int64_t n = 0;
  for (std::string line; std::getline(in, line);) {
    ++n;
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    auto j = Json::parse(line, nullptr, false);
    GRPO_CHECK(!j.is_discarded() && j.is_object(), "{}:{}: expected one JSON object per line, found '{}'",
               path.string(), n, line.substr(0, 80));
    out.push_back(std::move(j));
  }
  return out;
}

void flatten(const YAML::Node& node, const std::string& prefix, std::map<std::string, std::string>& out) {
  if (node.IsMap()) {
    for (const auto& kv : node) flatten(kv.second, prefix.empty() ? kv.first.as<std::string>() :
                                                      prefix + "." + kv.first.as<std::string>(), out);
    return;
  }
  if (node.IsScalar()) {
    out[prefix] = node.as<std::string>();
    return;
  }
  YAML::Emitter e;
  e << YAML::Flow << node;
  out[prefix] = e.c_str();
}

std::string escape(const std::string& s) {
  std::string out;
  for (char c : s) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      default: out += c;
    }
  }
  return out;
}

// Tableau 10: distinguishable, and readable for the common colour-vision deficiencies in order
const char* const kColors[] = {"#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f",
                               "#edc948", "#b07aa1", "#ff9da7", "#9c755f", "#bab0ac"};
const char* color(size_t i) { return kColors[i % 10]; }

// A tick label: few digits, scientific notation for very small or large magnitudes.
std::string num(double v) {
  if (v == 0) return "0";
  const double a = std::abs(v);
  if (a < 1e-3 || a >= 1e5) return fmt::format("{:.1e}", v);
  auto s = fmt::format("{:.3g}", v);
  return s;
}

// About `n` round ticks (1, 2, 5 x 10^k) covering [lo, hi].
std::vector<double> ticks(double lo, double hi, int n) {
  if (!(hi > lo)) return {lo};
  const double raw = (hi - lo) / n, mag = std::pow(10.0, std::floor(std::log10(raw)));
  double step = mag;
  for (double m : {1.0, 2.0, 5.0, 10.0})
    if (m * mag >= raw) {
      step = m * mag;
      break;
    }
  std::vector<double> out;  // from the tick at or below lo to the one at or above hi: round axis ends
  for (double t = std::floor(lo / step + 1e-9) * step; t < hi + step * (1 - 1e-9); t += step)
    out.push_back(std::abs(t) < step * 1e-9 ? 0.0 : t);
  return out;
}

struct Point {
  double x, y;
};

// TensorBoard's smoothing: a debiased exponential moving average.
std::vector<Point> smoothed(const std::vector<Point>& p, double w) {
  if (w <= 0) return p;
  std::vector<Point> out;
  double last = 0;
  int64_t n = 0;
  for (const auto& q : p) {
    last = last * w + (1 - w) * q.y;
    ++n;
    out.push_back({q.x, last / (1 - std::pow(w, double(n)))});
  }
  return out;
}

// One curve: a field of the GRPO lines ("train"), the eval lines ("eval") or a supervised stage's lines.
struct SeriesSpec {
  std::string source, field, label;
  const char* dash = "";   // SVG stroke-dasharray ("" = solid)
  double scale = 1;
  std::string band = "";   // +- this field around the curve (reward_std)
  bool drop_negative = false;  // -1 marks "not measured" (accuracy, format_rate without that reward)
  // drawn only for runs whose training lines measure this field (>= 0): the held-out format rate
  // of a run without a format reward says nothing
  std::string only_with;
};

struct ChartSpec {
  std::string id, title, x_label, y_label;
  std::vector<SeriesSpec> series;
  bool zero_is_off = false;  // 0 throughout means the term is off (no KL term; clipping never hit)
};

std::vector<ChartSpec> chart_specs() {
  const std::string step = "rollout step";
  return {
      {"reward", "Reward, mean ± std of the step's samples", step, "reward",
       {{"train", "reward_mean", "mean ± std", "", 1, "reward_std"}}},
      {"accuracy", "Accuracy", step, "accuracy (%)",
       {{"eval", "accuracy_greedy", "held-out, greedy", "", 100},
        {"eval", "accuracy_sampled", "held-out, sampled", "7 4", 100},
        {"train", "accuracy", "training samples", "2 3", 100, "", true}}},
      {"format", "Format rate", step, "responses in the format (%)",
       {{"train", "format_rate", "training samples", "", 100, "", true},
        {"eval", "format_greedy", "held-out, greedy", "7 4", 100, "", false, "format_rate"}}},
      {"length", "Response length", step, "tokens (mean)", {{"train", "response_length", "", ""}}},
      {"tool_use", "Tool use (multi-turn episodes that called a tool)", step, "episodes (%)",
       {{"train", "env_tool_use", "training samples", "", 100},
        {"eval", "tool_use_greedy", "held-out, greedy", "7 4", 100}}},
      {"kl", "KL divergence to the reference", step, "nats per token", {{"train", "kl", "", ""}}, true},
      {"entropy", "Entropy of the policy", step, "nats per token", {{"train", "entropy", "", ""}}},
      {"clip", "Clipped tokens", step, "fraction of tokens (%)",
       {{"train", "clip_low_fraction", "ratio below 1 − ε (A < 0)", "", 100},
        {"train", "clip_high_fraction", "ratio above 1 + ε (A > 0)", "7 4", 100}},
       true},
      {"grad_norm", "Gradient norm (before clipping)", step, "L2 norm", {{"train", "grad_norm", "", ""}}},
      {"lr", "Learning rate", step, "learning rate", {{"train", "lr", "", ""}}},
      {"moe_load", "MoE expert load (mean over MoE layers)", step, "max / mean tokens per expert",
       {{"train", "moe_load_max_over_mean", "", ""}}},
      {"supervised_loss", "Supervised stages: loss", "step of the stage", "cross-entropy (nats per token)",
       {{"pretrain", "loss", "pretrain", ""}, {"sft", "loss", "SFT", "7 4"}}},
  };
}

const std::vector<Json>& lines_of(const Run& r, const std::string& source) {
  return source == "eval" ? r.evals : r.metrics;
}

std::vector<Point> points(const Run& r, const SeriesSpec& s, const std::string& field) {
  std::vector<Point> out;
  if (!s.only_with.empty() && std::none_of(r.metrics.begin(), r.metrics.end(), [&](const Json& j) {
        auto f = j.find(s.only_with);
        return j.value("stage", "grpo") == "grpo" && f != j.end() && f->is_number() && f->get<double>() >= 0;
      }))
    return out;
  for (const auto& j : lines_of(r, s.source)) {
    if (s.source != "eval" && j.value("stage", "grpo") != (s.source == "train" ? "grpo" : s.source)) continue;
    auto f = j.find(field);
    if (f == j.end() || !f->is_number() || !j.contains("step")) continue;
    const double v = f->get<double>();
    if (!std::isfinite(v) || (s.drop_negative && v < 0)) continue;
    out.push_back({j["step"].get<double>(), v * s.scale});
  }
  return out;
}

// An SVG chart frame with axes; returns the mapping from data to pixels.
struct Frame {
  double x0, x1, y0, y1;
  static constexpr double W = 560, H = 300, L = 64, R = 14, T = 44, B = 46;
  double px(double x) const { return L + (x - x0) / (x1 - x0) * (W - L - R); }
  double py(double y) const { return H - B - (y - y0) / (y1 - y0) * (H - T - B); }
};

std::string frame_svg(Frame& f, const std::string& id, const std::string& title, const std::string& x_label,
                      const std::string& y_label, double xmin, double xmax, double ymin, double ymax,
                      const std::string& style_legend) {
  if (!(xmax > xmin)) xmin -= 0.5, xmax += 0.5;
  if (!(ymax > ymin)) {
    const double pad = ymin == 0 ? 1 : std::abs(ymin) * 0.1;
    ymin -= pad, ymax += pad;
  }
  const auto yt = ticks(ymin, ymax, 5), xt = ticks(xmin, xmax, 6);
  f.x0 = std::min(xmin, xt.front()), f.x1 = std::max(xmax, xt.back());
  f.y0 = std::min(ymin, yt.front()), f.y1 = std::max(ymax, yt.back());
  std::string s = fmt::format(
      "<svg class=\"chart\" id=\"chart-{0}\" data-chart=\"{0}\" xmlns=\"http://www.w3.org/2000/svg\" "
      "viewBox=\"0 0 {1} {2}\" width=\"{1}\" height=\"{2}\" role=\"img\" aria-label=\"{3}\">\n"
      "<text class=\"title\" x=\"{4}\" y=\"19\">{3}</text>\n",
      id, Frame::W, Frame::H, escape(title), Frame::L);
  for (double t : yt) {
    const double y = f.py(t);
    s += fmt::format("<line class=\"grid\" x1=\"{:.1f}\" x2=\"{:.1f}\" y1=\"{:.1f}\" y2=\"{:.1f}\"/>"
                     "<text class=\"tick\" x=\"{:.1f}\" y=\"{:.1f}\" text-anchor=\"end\">{}</text>\n",
                     Frame::L, Frame::W - Frame::R, y, y, Frame::L - 6, y + 4, num(t));
  }
  for (double t : xt) {
    const double x = f.px(t);
    s += fmt::format("<line class=\"grid\" x1=\"{:.1f}\" x2=\"{:.1f}\" y1=\"{:.1f}\" y2=\"{:.1f}\"/>"
                     "<text class=\"tick\" x=\"{:.1f}\" y=\"{:.1f}\" text-anchor=\"middle\">{}</text>\n",
                     x, x, Frame::T, Frame::H - Frame::B, x, Frame::H - Frame::B + 16, num(t));
  }
  s += fmt::format("<rect class=\"axes\" x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\"/>\n", Frame::L, Frame::T,
                   Frame::W - Frame::L - Frame::R, Frame::H - Frame::T - Frame::B);
  s += fmt::format("<text class=\"label\" x=\"{:.1f}\" y=\"{:.1f}\" text-anchor=\"middle\">{}</text>\n",
                   (Frame::L + Frame::W - Frame::R) / 2, Frame::H - 8, escape(x_label));
  s += fmt::format("<text class=\"label\" transform=\"translate(14 {:.1f}) rotate(-90)\" text-anchor=\"middle\">{}"
                   "</text>\n", (Frame::T + Frame::H - Frame::B) / 2, escape(y_label));
  return s + style_legend;
}

std::string path_of(const Frame& f, const std::vector<Point>& p) {
  std::string d;
  for (size_t i = 0; i < p.size(); ++i) d += fmt::format("{}{:.1f},{:.1f}", i ? " L" : "M", f.px(p[i].x), f.py(p[i].y));
  return d;
}

// The legend of line styles (solid / dashed / dotted) when a chart has several series.
std::string style_legend(const std::vector<SeriesSpec>& series, const std::vector<bool>& present) {
  std::string s;
  double x = Frame::L;
  for (size_t i = 0; i < series.size(); ++i) {
    if (!present[i] || series[i].label.empty() || series.size() == 1) continue;
    s += fmt::format("<line class=\"key\" x1=\"{:.1f}\" x2=\"{:.1f}\" y1=\"32\" y2=\"32\" stroke-dasharray=\"{}\"/>"
                     "<text class=\"keytext\" x=\"{:.1f}\" y=\"36\">{}</text>\n",
                     x, x + 22, series[i].dash, x + 27, escape(series[i].label));
    x += 27 + 6.2 * double(series[i].label.size()) + 18;
  }
  return s;
}

// The chart of `c`, or "" when no run has its fields, or "zero" when every value is exactly 0 in a
// chart where that means the term is off (a KL without a KL term, clipping that never happened).
std::string line_chart(const ChartSpec& c, const std::vector<Run>& runs, double smooth) {
  struct Drawn {
    size_t run, series;
    std::vector<Point> p, lo, hi;
  };
  std::vector<Drawn> drawn;
  std::vector<bool> present(c.series.size(), false);
  double xmin = INFINITY, xmax = -INFINITY, ymin = INFINITY, ymax = -INFINITY;
  for (size_t r = 0; r < runs.size(); ++r)
    for (size_t k = 0; k < c.series.size(); ++k) {
      Drawn d{r, k, points(runs[r], c.series[k], c.series[k].field), {}, {}};
      if (d.p.empty()) continue;
      present[k] = true;
      if (!c.series[k].band.empty()) {
        auto sd = points(runs[r], c.series[k], c.series[k].band);
        if (sd.size() == d.p.size())
          for (size_t i = 0; i < sd.size(); ++i)
            d.lo.push_back({d.p[i].x, d.p[i].y - sd[i].y}), d.hi.push_back({d.p[i].x, d.p[i].y + sd[i].y});
      }
      for (const auto* v : {&d.p, &d.lo, &d.hi})
        for (const auto& q : *v) xmin = std::min(xmin, q.x), xmax = std::max(xmax, q.x), ymin = std::min(ymin, q.y),
                                 ymax = std::max(ymax, q.y);
      drawn.push_back(std::move(d));
    }
  if (drawn.empty()) return "";
  if (c.zero_is_off && ymin == 0 && ymax == 0) return "zero";
  Frame f{};
  std::string s = frame_svg(f, c.id, c.title, c.x_label, c.y_label, xmin, xmax, ymin, ymax,
                            style_legend(c.series, present));
  for (const auto& d : drawn) {
    const auto& spec = c.series[d.series];
    const char* col = color(d.run);
    if (!d.lo.empty()) {
      auto poly = d.hi;
      poly.insert(poly.end(), d.lo.rbegin(), d.lo.rend());
      s += fmt::format("<path class=\"band\" d=\"{} Z\" fill=\"{}\" fill-opacity=\"{:.2f}\"/>\n", path_of(f, poly),
                       col, 0.18 / double(runs.size()));
    }
    // held-out evaluations are few points, each an average over many prompts already: not smoothed
    const double w = spec.source == "eval" ? 0.0 : smooth;
    const auto sm = smoothed(d.p, w);
    if (w > 0)
      s += fmt::format("<path class=\"raw\" d=\"{}\" stroke=\"{}\" stroke-dasharray=\"{}\"/>\n", path_of(f, d.p), col,
                       spec.dash);
    s += fmt::format("<path class=\"series\" data-run=\"{}\" data-field=\"{}\" d=\"{}\" stroke=\"{}\" "
                     "stroke-dasharray=\"{}\"/>\n", escape(runs[d.run].name), spec.field, path_of(f, sm), col, spec.dash);
    if (sm.size() <= 2)  // a line of one or two points is hard to see
      for (const auto& q : sm)
        s += fmt::format("<circle cx=\"{:.1f}\" cy=\"{:.1f}\" r=\"3\" fill=\"{}\"/>\n", f.px(q.x), f.py(q.y), col);
  }
  return s + "</svg>\n";
}

// The time split of one run's GRPO steps, stacked: rollout, reward, update, the rest of the step.
std::string time_chart(const Run& r, size_t index, double smooth) {
  const char* names[] = {"time_rollout", "time_reward", "time_update"};
  const char* labels[] = {"rollout (generation)", "reward (not overlapped)", "update", "other"};
  const char* fills[] = {"#4e79a7", "#f28e2b", "#59a14f", "#bab0ac"};
  std::vector<std::array<double, 4>> parts;
  std::vector<double> xs;
  for (const auto& j : r.metrics) {
    if (j.value("stage", "grpo") != "grpo" || !j.contains("time_step") || !j["time_step"].is_number()) continue;
    std::array<double, 4> p{};
    double sum = 0;
    for (int k = 0; k < 3; ++k) sum += p[k] = std::max(0.0, j.value(names[k], 0.0));
    p[3] = std::max(0.0, j["time_step"].get<double>() - sum);
    parts.push_back(p);
    xs.push_back(j.value("step", 0.0));
  }
  if (parts.empty()) return "";
  for (int k = 0; k < 4; ++k) {  // smoothing each part keeps the stack's total the smoothed total
    std::vector<Point> p;
    for (size_t i = 0; i < parts.size(); ++i) p.push_back({xs[i], parts[i][k]});
    p = smoothed(p, smooth);
    for (size_t i = 0; i < parts.size(); ++i) parts[i][k] = p[i].y;
  }
  double ymax = 0;
  for (const auto& p : parts) ymax = std::max(ymax, p[0] + p[1] + p[2] + p[3]);
  std::string legend;
  double x = Frame::L;
  for (int k = 0; k < 4; ++k) {
    legend += fmt::format("<rect x=\"{:.1f}\" y=\"27\" width=\"10\" height=\"10\" fill=\"{}\"/>"
                          "<text class=\"keytext\" x=\"{:.1f}\" y=\"36\">{}</text>\n",
                          x, fills[k], x + 14, labels[k]);
    x += 14 + 6.6 * double(std::string(labels[k]).size()) + 14;
  }
  Frame f{};
  std::string s = frame_svg(f, "time_split_" + std::to_string(index), "Time per step: " + r.name, "rollout step",
                            "seconds", xs.front(), xs.back(), 0, ymax, legend);
  std::vector<double> base(parts.size(), 0.0);
  for (int k = 0; k < 4; ++k) {
    std::vector<Point> top, bottom;
    for (size_t i = 0; i < parts.size(); ++i) {
      bottom.push_back({xs[i], base[i]});
      base[i] += parts[i][k];
      top.push_back({xs[i], base[i]});
    }
    top.insert(top.end(), bottom.rbegin(), bottom.rend());
    s += fmt::format("<path class=\"stack\" data-part=\"{}\" d=\"{} Z\" fill=\"{}\"/>\n", labels[k], path_of(f, top),
                     fills[k]);
  }
  return s + "</svg>\n";
}

std::string config_table(const std::vector<Run>& runs) {
  std::set<std::string> keys;
  for (const auto& r : runs)
    for (const auto& [k, v] : r.config) keys.insert(k);
  std::string rows;
  int64_t n = 0;
  for (const auto& k : keys) {
    if (k == "run.dir") continue;
    std::set<std::string> values;
    for (const auto& r : runs) values.insert(r.config.count(k) ? r.config.at(k) : "(not set)");
    if (values.size() < 2) continue;
    ++n;
    rows += "<tr><td>" + escape(k) + "</td>";
    for (const auto& r : runs) rows += "<td>" + escape(r.config.count(k) ? r.config.at(k) : "(not set)") + "</td>";
    rows += "</tr>\n";
  }
  std::string head = "<tr><th>key</th>";
  for (size_t i = 0; i < runs.size(); ++i)
    head += fmt::format("<th><span class=\"swatch\" style=\"background:{}\"></span>{}</th>", color(i),
                        escape(runs[i].name));
  if (n == 0)
    return "<p class=\"note\">The runs' resolved configs are the same in every key (run.dir aside).</p>\n";
  return "<table class=\"config\" id=\"config-diff\">\n" + head + "</tr>\n" + rows + "</table>\n";
}

std::string summary_table(const std::vector<Run>& runs) {
  std::string s = "<table class=\"summary\" id=\"summary\"><tr><th>run</th><th>GRPO steps</th><th>held-out greedy "
                  "accuracy, first → last</th><th>reward, last step</th><th>time in GRPO steps</th></tr>\n";
  for (size_t i = 0; i < runs.size(); ++i) {
    const auto& r = runs[i];
    int64_t steps = 0;
    double seconds = 0, reward = NAN;
    for (const auto& j : r.metrics)
      if (j.value("stage", "grpo") == "grpo") {
        ++steps;
        seconds += j.value("time_step", 0.0);
        reward = j.value("reward_mean", NAN);
      }
    std::string acc = "–";
    if (!r.evals.empty() && r.evals.front().contains("accuracy_greedy"))
      acc = fmt::format("{:.1f}% → {:.1f}%", 100 * r.evals.front().value("accuracy_greedy", 0.0),
                        100 * r.evals.back().value("accuracy_greedy", 0.0));
    s += fmt::format("<tr><td><span class=\"swatch\" style=\"background:{}\"></span>{}</td><td>{}</td><td>{}</td>"
                     "<td>{}</td><td>{:.1f} s</td></tr>\n", color(i), escape(r.name), steps, acc,
                     std::isfinite(reward) ? fmt::format("{:.3f}", reward) : "–", seconds);
  }
  return s + "</table>\n";
}

const char* kStyle = R"(
body { font-family: "DejaVu Sans", "Liberation Sans", Arial, sans-serif; margin: 24px; color: #222; background: #fff; }
h1 { font-size: 22px; margin: 0 0 4px 0; }
h2 { font-size: 17px; margin: 28px 0 8px 0; }
p.note, p.sub { color: #555; font-size: 13px; margin: 4px 0 12px 0; }
.charts { display: grid; grid-template-columns: repeat(auto-fill, 560px); gap: 18px; }
svg.chart { background: #fff; border: 1px solid #ddd; border-radius: 4px; }
svg .title { font-size: 14px; font-weight: bold; fill: #222; }
svg .tick { font-size: 11px; fill: #555; }
svg .label { font-size: 12px; fill: #333; }
svg .keytext { font-size: 11px; fill: #333; }
svg .grid { stroke: #eee; stroke-width: 1; }
svg .axes { fill: none; stroke: #999; stroke-width: 1; }
svg .series { fill: none; stroke-width: 2; stroke-linejoin: round; }
svg .raw { fill: none; stroke-width: 1; opacity: 0.3; }
svg .band { stroke: none; }
svg .key { stroke: #333; stroke-width: 2; }
svg .stack { stroke: #fff; stroke-width: 0.5; }
table { border-collapse: collapse; font-size: 13px; }
th, td { border: 1px solid #ddd; padding: 4px 10px; text-align: left; }
th { background: #f4f4f4; }
td:first-child { font-family: "DejaVu Sans Mono", monospace; }
table.summary td:first-child { font-family: inherit; }
.swatch { display: inline-block; width: 12px; height: 12px; margin-right: 6px; border-radius: 2px; vertical-align: -1px; }
)";

}  // namespace

Run load_run(const std::string& dir) {
  GRPO_CHECK(fs::is_directory(dir), "{}: no such run directory", dir);
  Run r;
  r.dir = dir;
  r.name = fs::path(dir).lexically_normal().filename().string();
  if (r.name.empty()) r.name = fs::path(dir).lexically_normal().parent_path().filename().string();
  r.metrics = read_jsonl(fs::path(dir) / "metrics.jsonl", true);
  r.evals = read_jsonl(fs::path(dir) / "eval.jsonl", false);
  const auto config = fs::path(dir) / "config.yaml";
  if (fs::exists(config)) {
    try {
      flatten(YAML::LoadFile(config.string()), "", r.config);
    } catch (const YAML::Exception& e) {
      fail("{}:{}: {}", config.string(), e.mark.line + 1, e.msg);
    }
  }
  return r;
}

std::vector<std::string> chart_ids(const std::vector<Run>& runs) {
  std::vector<std::string> out;
  for (const auto& c : chart_specs())
    if (line_chart(c, runs, 0).size() > 4) out.push_back(c.id);
  for (size_t i = 0; i < runs.size(); ++i)
    if (!time_chart(runs[i], i, 0).empty()) out.push_back("time_split_" + std::to_string(i));
  return out;
}

std::string html(std::vector<Run> runs, const Options& o) {
  GRPO_CHECK(o.smooth >= 0 && o.smooth < 1, "--smooth {}: expected a weight in [0, 1)", o.smooth);
  // unique legend labels: the directory name, with its parents where two runs share it
  std::map<std::string, int> uses;
  for (const auto& r : runs) ++uses[r.name];
  for (auto& r : runs)
    if (uses[r.name] > 1) r.name = fs::path(r.dir).lexically_normal().string();
  std::string charts, zero;
  for (const auto& c : chart_specs()) {
    auto chart = line_chart(c, runs, o.smooth);
    if (chart == "zero") zero += (zero.empty() ? "" : ", ") + c.title;
    else charts += chart;
  }
  std::string times;
  for (size_t i = 0; i < runs.size(); ++i) times += time_chart(runs[i], i, o.smooth);
  std::string legend;
  for (size_t i = 0; i < runs.size(); ++i)
    legend += fmt::format("<span class=\"run\"><span class=\"swatch\" style=\"background:{}\"></span>{}</span>&nbsp;&nbsp; ",
                          color(i), escape(runs[i].name));
  std::string page = "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n<title>" + escape(o.title) +
                     "</title>\n<style>" + kStyle + "</style></head>\n<body>\n<h1>" + escape(o.title) + "</h1>\n";
  page += fmt::format("<p class=\"sub\">{} run{}: {} · x axis: GRPO rollout step{}</p>\n", runs.size(),
                      runs.size() == 1 ? "" : "s", legend,
                      o.smooth > 0 ? fmt::format(" · curves smoothed (moving average, weight {}), raw values faint",
                                                 o.smooth)
                                   : "");
  page += summary_table(runs);
  page += "<h2>Learning</h2>\n<div class=\"charts\">\n" + charts + "</div>\n";
  if (!zero.empty()) page += "<p class=\"note\" id=\"zero\">Exactly 0 at every step, so not drawn: " + escape(zero) + ".</p>\n";
  if (!times.empty()) page += "<h2>Where the time goes</h2>\n<div class=\"charts\">\n" + times + "</div>\n";
  page += "<h2>Config</h2>\n";
  if (runs.size() > 1) {
    page += config_table(runs);
  } else if (!runs.empty() && !runs[0].config.empty()) {
    page += "<table class=\"config\" id=\"config\"><tr><th>key</th><th>value</th></tr>\n";
    for (const auto& [k, v] : runs[0].config) page += "<tr><td>" + escape(k) + "</td><td>" + escape(v) + "</td></tr>\n";
    page += "</table>\n";
  }
  return page + "</body></html>\n";
}

}  // namespace grpo::report
