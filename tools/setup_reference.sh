#!/usr/bin/env bash
# Creates (once) the Python environment with the pinned reference implementations
# (tools/requirements.txt) at GRPO_REF_VENV (default ~/.local/share/grpo/ref-venv) and prints its
# python. Used by fixture generators in tools/, by bench/ and by the `hf_roundtrip` tests.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
venv=${GRPO_REF_VENV:-$HOME/.local/share/grpo/ref-venv}
stamp="$venv/.requirements"
if [ ! -f "$stamp" ] || ! cmp -s "$stamp" "$root/tools/requirements.txt"; then
  [ -x "$venv/bin/python" ] || python3 -m venv "$venv" >&2
  "$venv/bin/python" -m pip install -q --disable-pip-version-check -r "$root/tools/requirements.txt" >&2
  cp "$root/tools/requirements.txt" "$stamp"
fi
echo "$venv/bin/python"
