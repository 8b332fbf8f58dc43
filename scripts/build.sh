#!/usr/bin/env bash
# Configures (once) and builds grpo in build/ with Ninja (and ccache when present).
# Usage: scripts/build.sh [ninja targets...]
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=${GRPO_BUILD_DIR:-$root/build}
gen=()
command -v ninja >/dev/null && gen=(-G Ninja)
# Configure unless a configure finished (a failed one, e.g. before LibTorch was installed, leaves
# CMakeCache.txt but no build.ninja/Makefile).
if [ ! -f "$build/build.ninja" ] && [ ! -f "$build/Makefile" ]; then
  cmake -S "$root" -B "$build" "${gen[@]}" -DCMAKE_BUILD_TYPE=Release >/dev/null
fi
cmake --build "$build" --parallel "$(nproc)" ${1:+--target "$@"}
