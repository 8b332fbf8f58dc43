#!/usr/bin/env bash
# Quick start 1: set up what is missing, build, and train the built-in demo
# (base stage on imperfect addition demonstrations, then GRPO), printing the held-out gain.
# Extra arguments go to grpo_train, e.g.  scripts/demo.sh --fresh --set run.seed=2
# Run it again and it resumes the finished run from its checkpoint (fast); --fresh starts over.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
"$root/scripts/setup.sh"
"$root/scripts/build.sh" grpo_train
build=${GRPO_BUILD_DIR:-$root/build}
cd "$root"
"$build/bin/grpo_train" --config configs/demo.yaml "$@"
run_dir=$("$build/bin/grpo_train" --config configs/demo.yaml "$@" --print-config |
          sed -n '/^run:/,/^[a-z]/s/^  dir: "\(.*\)".*/\1/p' | head -n 1)
if [ -f "$run_dir/eval.jsonl" ]; then
  python3 - "$run_dir/eval.jsonl" <<'PY' || true
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
a, b = rows[0], rows[-1]
print(f"held-out accuracy (greedy): {a['accuracy_greedy']:.3f} at the start of GRPO -> "
      f"{b['accuracy_greedy']:.3f} after {b['step']} rollout steps "
      f"({100 * (b['accuracy_greedy'] - a['accuracy_greedy']):+.1f} points); "
      f"curves in {sys.argv[1].rsplit('/', 1)[0]}/metrics.jsonl")
PY
fi
