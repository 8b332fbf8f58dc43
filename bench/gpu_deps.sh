#!/usr/bin/env bash
# Run here (not on the GPU machine): downloads the Debian packages grpo builds against into
# .cache/gpu-debs (git-ignored, about 2.5 MB), for the device tool to carry to the GPU machine,
# which has no package registry. bench/gpu.sh unpacks them there.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
dest="$root/.cache/gpu-debs"
rm -rf "$dest" && mkdir -p "$dest" && cd "$dest"
apt-get download libyaml-cpp-dev libyaml-cpp0.7 libspdlog-dev libspdlog1.10 libfmt-dev libfmt9 \
  libpcre2-dev libpcre2-8-0 libutf8proc-dev libutf8proc2 libgmp-dev libgmpxx4ldbl libgmp10 nlohmann-json3-dev libgtest-dev libgloo-dev 2>&1 |
  grep -v "^W: Download is performed unsandboxed" || true
ls "$dest"/*.deb >/dev/null
du -sh "$dest"
