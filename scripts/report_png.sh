#!/usr/bin/env bash
# Regenerates docs/report.png, the picture of grpo_report's page in README: the demo's run (or the
# run directories given, overlaid) rendered by headless Chromium (Debian's chromium package).
# Usage: [REPORT_PNG=docs/x.png] [REPORT_TITLE=...] scripts/report_png.sh [RUN_DIR...]
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
"$root/scripts/build.sh" grpo_train grpo_report >/dev/null
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
runs=("$@")
out=${REPORT_PNG:-$root/docs/report.png}
if [ ${#runs[@]} -eq 0 ]; then
  runs=("$work/demo")
  "$root/build/bin/grpo_train" --config "$root/configs/demo.yaml" --set run.dir="${runs[0]}" --fresh --quiet
fi
"$root/build/bin/grpo_report" "${runs[@]}" -o "$work/report.html" --smooth 0.6 \
  --title "${REPORT_TITLE:-grpo demo (configs/demo.yaml, seed 1)}"
chromium --headless --no-sandbox --disable-gpu --disable-dev-shm-usage --hide-scrollbars --user-data-dir="$work/profile" \
  --window-size=1200,1980 --screenshot="$out" "file://$work/report.html" 2>/dev/null
echo "wrote $out"
