#!/usr/bin/env bash
# Quick start 2: set up what is missing, build everything, and run the whole test suite
# (labels: unit, learning, multiprocess, sandbox, install, hf_roundtrip, report, fuzz; gpu tests
# skip without a GPU). Extra arguments go to ctest,
# e.g.  scripts/test.sh -L unit
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
"$root/scripts/setup.sh"
# Test-only Debian packages: headless Chromium renders grpo_report's page (report.browser)
if ! command -v chromium >/dev/null; then
  echo "[test] installing Debian packages: chromium fonts-dejavu-core" >&2
  sudo_cmd=""
  [ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core >&2
fi
"$root/scripts/build.sh"
build=${GRPO_BUILD_DIR:-$root/build}
cd "$build"
ctest --output-on-failure --timeout 3000 "$@"
