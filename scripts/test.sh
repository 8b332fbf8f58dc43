#!/usr/bin/env bash
# Quick start 2: set up what is missing, build everything, and run the whole test suite
# (labels: unit, learning, multiprocess, sandbox, install, hf_roundtrip, fuzz; gpu tests skip
# without a GPU). Extra arguments go to ctest,
# e.g.  scripts/test.sh -L unit
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
"$root/scripts/setup.sh"
"$root/scripts/build.sh"
build=${GRPO_BUILD_DIR:-$root/build}
cd "$build"
ctest --output-on-failure --timeout 3000 "$@"
