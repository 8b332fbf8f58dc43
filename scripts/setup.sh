#!/usr/bin/env bash
# Installs whatever is missing to build grpo; fast no-op when everything is there.
#  - Debian packages: compiler, CMake, Ninja, ccache, yaml-cpp, spdlog, fmt, nlohmann-json, GoogleTest,
#    gloo headers (libgloo-dev: only the declarations c10d's ProcessGroupGloo.hpp needs; the gloo
#    code that runs is the copy inside libtorch_cpu, so libgloo itself is never linked)
#  - LibTorch: the PyPI `torch` wheel at the version pinned in TORCH_VERSION, installed into a
#    virtual environment outside the work tree (GRPO_VENV, default ~/.local/share/grpo/venv), so
#    every clone reuses it. Skipped when the user points at a LibTorch (Torch_DIR or LIBTORCH_DIR).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
torch_version=$(tr -d '[:space:]' < "$root/TORCH_VERSION")
venv=${GRPO_VENV:-$HOME/.local/share/grpo/venv}

say() { printf '[setup] %s\n' "$*" >&2; }

# --- Debian packages -------------------------------------------------------------------------
need_pkgs=()
for p in g++ cmake ninja-build ccache pkg-config libyaml-cpp-dev libspdlog-dev libfmt-dev \
         libpcre2-dev libutf8proc-dev libgmp-dev clang libclang-rt-dev \
         nlohmann-json3-dev libgtest-dev libgloo-dev openmpi-bin python3; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || need_pkgs+=("$p")
done
# python3 may come from elsewhere (pyenv); only ask apt for it when there is none at all
if command -v python3 >/dev/null; then
  need_pkgs=("${need_pkgs[@]/python3}")
fi
pkgs=()
for p in "${need_pkgs[@]}"; do [ -n "$p" ] && pkgs+=("$p"); done
if [ ${#pkgs[@]} -gt 0 ]; then
  say "installing Debian packages: ${pkgs[*]}"
  sudo_cmd=""
  [ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq --no-install-recommends "${pkgs[@]}" >&2
fi

# --- LibTorch ----------------------------------------------------------------------------------
if [ -n "${Torch_DIR:-}${LIBTORCH_DIR:-}" ]; then
  say "using the LibTorch you pointed at (${Torch_DIR:-$LIBTORCH_DIR})"
  exit 0
fi
torch_dir=$("$venv/bin/python" - <<'PY' 2>/dev/null || true
import importlib.util, os
spec = importlib.util.find_spec("torch")
print(os.path.join(spec.submodule_search_locations[0], "share", "cmake", "Torch") if spec else "")
PY
)
have_version=$("$venv/bin/python" -c "import importlib.metadata as m; print(m.version('torch'))" 2>/dev/null || true)
if [ -z "$torch_dir" ] || [ "${have_version%%+*}" != "$torch_version" ]; then
  if [ ! -x "$venv/bin/python" ]; then
    say "creating Python environment $venv"
    mkdir -p "$(dirname "$venv")"
    python3 -m venv "$venv" || {
      say "python3 -m venv failed; installing python3-venv"
      [ "$(id -u)" -ne 0 ] && s=sudo || s=""
      $s apt-get update -qq && DEBIAN_FRONTEND=noninteractive $s apt-get install -y -qq python3-venv >&2
      python3 -m venv "$venv"
    }
  fi
  # --no-deps: the C++ build needs only the wheel's libraries and CMake files, not the
  # multi-gigabyte nvidia-* runtime wheels (a GPU machine brings its own LibTorch).
  say "installing torch==$torch_version (PyPI wheel) into $venv"
  "$venv/bin/python" -m pip install -q --disable-pip-version-check --no-deps "torch==$torch_version" >&2
fi
# libtorch_cpu.so itself needs libcudart and libcupti (it finds them through its RPATH in the
# wheel's nvidia/ folder). Install just those two, at the version this torch wheel asks for, so
# the build runs on machines with no CUDA toolkit.
site=$("$venv/bin/python" -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
if ! ls "$site"/nvidia/cu*/lib/libcudart.so.* >/dev/null 2>&1; then
  cuda_req=$(sed -n 's/^Requires-Dist: cuda-toolkit\[[^]]*\]\(==[0-9.]*\).*/cuda-toolkit[cudart,cupti]\1/p' \
             "$site"/torch-*.dist-info/METADATA | head -n 1)
  if [ -n "$cuda_req" ]; then
    say "installing the CUDA runtime libraries libtorch_cpu links against ($cuda_req)"
    "$venv/bin/python" -m pip install -q --disable-pip-version-check "$cuda_req" >&2
  fi
fi
exit 0
