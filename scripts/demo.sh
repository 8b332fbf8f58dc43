#!/usr/bin/env bash
# Quick start 1: set up what is missing, build, and train the built-in demo
# (pretrain stage on imperfect addition demonstrations, then GRPO); its last lines give the held-out
# accuracy gain.
# Extra arguments go to grpo_train, e.g.  scripts/demo.sh --fresh --set run.seed=2
# Run it again and it resumes the finished run from its checkpoint (fast); --fresh starts over.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
"$root/scripts/setup.sh"
"$root/scripts/build.sh" grpo_train grpo_report
build=${GRPO_BUILD_DIR:-$root/build}
cd "$root"
"$build/bin/grpo_train" --config configs/demo.yaml "$@"
# where to look: the curves as a page, and for TensorBoard (the run directory is the config's
# run.dir unless --set run.dir=... moved it)
run=$("$build/bin/grpo_train" --config configs/demo.yaml "$@" --print-config |
      sed -n '/^run:/,/^[a-z]/s/^  dir: *"\{0,1\}\([^"#]*[^"# ]\)"\{0,1\}.*/\1/p' | head -n 1)
run=$(cd "$run" && pwd)
"$build/bin/grpo_report" "$run" -o "$run/report.html" --title "grpo demo"
echo "report: $run/report.html (open it in a browser; grpo_report RUN_DIR ... overlays several runs)"
if [ -d "$run/tb" ]; then echo "TensorBoard: tensorboard --logdir $run"; fi
