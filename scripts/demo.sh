#!/usr/bin/env bash
# Quick start 1: set up what is missing, build, and train the built-in demo
# (pretrain stage on imperfect addition demonstrations, then GRPO); its last lines give the held-out
# accuracy gain.
# Extra arguments go to grpo_train, e.g.  scripts/demo.sh --fresh --set run.seed=2
# Run it again and it resumes the finished run from its checkpoint (fast); --fresh starts over.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
"$root/scripts/setup.sh"
"$root/scripts/build.sh" grpo_train
build=${GRPO_BUILD_DIR:-$root/build}
cd "$root"
exec "$build/bin/grpo_train" --config configs/demo.yaml "$@"
