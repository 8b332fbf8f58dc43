#!/usr/bin/env bash
# grpo_report rendered by a real browser (headless Chromium, Debian's package; scripts/test.sh
# installs it): the demo's run directory, and a 3-seed comparison, each shortened. The rendered DOM
# must hold every expected chart with one curve per run, nothing may fail to load, and the page
# is rendered to PNG (left in WORK_DIR to look at).
# Usage: browser.sh BIN_DIR WORK_DIR
set -euo pipefail
bin=$1 work=$2
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
browser=$(command -v chromium || command -v chromium-browser || true)
[ -n "$browser" ] || { echo "FAILED: no chromium on PATH (scripts/test.sh installs Debian's chromium)"; exit 1; }
rm -rf "$work"
mkdir -p "$work"
for seed in 1 2 3; do
  "$bin/grpo_train" --config "$root/configs/demo.yaml" --set run.dir="$work/seed$seed" --set run.seed=$seed \
    --set run.threads=1 --set pretrain.steps=60 --set grpo.rollout_steps=6 --set grpo.prompts_per_step=4 \
    --set grpo.group_size=4 --set eval.every=2 --set eval.num_prompts=8 --set checkpoint.every=0 --fresh \
    > "$work/seed$seed.log" 2>&1 || { cat "$work/seed$seed.log"; exit 1; }
done
"$bin/grpo_report" "$work/seed1" -o "$work/demo.html"
"$bin/grpo_report" "$work/seed1" "$work/seed2" "$work/seed3" -o "$work/seeds.html" --smooth 0.5 --title "3 seeds"

render() {  # PAGE RUNS: the DOM after load, a PNG, and the browser's console
  local page=$1 runs=$2
  local flags=(--headless --no-sandbox --disable-gpu --disable-dev-shm-usage --hide-scrollbars --no-first-run --disable-extensions
               --user-data-dir="$work/profile" --enable-logging=stderr --v=0)
  "$browser" "${flags[@]}" --dump-dom "file://$page" > "$page.dom" 2> "$page.console"
  "$browser" "${flags[@]}" --window-size=1240,2600 --screenshot="$page.png" "file://$page" >/dev/null 2>> "$page.console"
  python3 - "$page" "$runs" <<'PY'
import re, struct, sys
page, runs = sys.argv[1], int(sys.argv[2])
dom, console = open(page + ".dom").read(), open(page + ".console").read()
errors = []
charts = re.findall(r'<svg class="chart" id="chart-([a-z_0-9]+)"', dom)
want = ["reward", "accuracy", "format", "length", "entropy", "grad_norm", "lr", "supervised_loss"]
want += [f"time_split_{i}" for i in range(runs)]
for c in want:
    if c not in charts:
        errors.append(f"chart {c} missing (charts: {charts})")
for field in ("reward_mean", "accuracy_greedy", "response_length", "entropy"):
    n = len(re.findall(rf'class="series" data-run="[^"]*" data-field="{field}"', dom))
    if n != runs:
        errors.append(f"{field}: {n} curves, expected one per run ({runs})")
if len(re.findall(r'class="stack"', dom)) != 4 * runs:
    errors.append("time split: expected 4 stacked parts per run")
html = open(page).read()
urls = [u for u in re.findall(r'(?:src|href|url)\s*[=(]\s*["\']?([^"\' )>]+)', html)]
if urls or "<script" in html:
    errors.append(f"the page loads something: {urls[:5]} script={'<script' in html}")
bad = [l for l in console.splitlines() if re.search(r"CONSOLE|Failed to load|net::ERR|Uncaught|Refused", l)]
if bad:
    errors.append("the browser reported: " + " | ".join(bad[:5]))
png = open(page + ".png", "rb").read()
if png[:8] != b"\x89PNG\r\n\x1a\n" or struct.unpack(">II", png[16:24]) != (1240, 2600) or len(png) < 50000:
    errors.append(f"{page}.png is not a 1240 x 2600 rendering of the page ({len(png)} bytes)")
for e in errors:
    print("FAILED:", e)
print(f"{page}: {len(charts)} charts rendered{'' if not errors else ', %d problems' % len(errors)}")
sys.exit(1 if errors else 0)
PY
}
render "$work/demo.html" 1
render "$work/seeds.html" 3
