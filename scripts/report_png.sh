#!/usr/bin/env bash
# Regenerates docs/report.png, the picture of grpo_report's page in README: the demo's run (or the
# run directory given) rendered by headless Chromium (Debian's chromium package).
# Usage: scripts/report_png.sh [RUN_DIR]
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
"$root/scripts/build.sh" grpo_train grpo_report >/dev/null
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
run=${1:-}
if [ -z "$run" ]; then
  run="$work/demo"
  "$root/build/bin/grpo_train" --config "$root/configs/demo.yaml" --set run.dir="$run" --fresh --quiet
fi
"$root/build/bin/grpo_report" "$run" -o "$work/report.html" --smooth 0.6 --title "grpo demo (configs/demo.yaml, seed 1)"
chromium --headless --no-sandbox --disable-gpu --disable-dev-shm-usage --hide-scrollbars --user-data-dir="$work/profile" \
  --window-size=1200,1980 --screenshot="$root/docs/report.png" "file://$work/report.html" 2>/dev/null
echo "wrote $root/docs/report.png"
