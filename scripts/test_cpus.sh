#!/usr/bin/env bash
# Runs tests with LibTorch, oneDNN and MKL forced onto the kernels another CPU would get, so a test
# that passes only on the developer's CPU is caught before it lands (CI machines are Intel with
# AMX or AMD with AVX-512 or AVX2; float results differ in the last bits between their kernels).
#
# Usage: scripts/test_cpus.sh SETTINGS [ctest arguments]
#   SETTINGS  comma-separated, from:
#     avx2    ATEN_CPU_CAPABILITY=avx2    ONEDNN_MAX_CPU_ISA=AVX2              MKL_ENABLE_INSTRUCTIONS=AVX2
#             (an AVX2-only CPU: AMD Zen 2/3, Intel before Skylake-SP)
#     avx512  ATEN_CPU_CAPABILITY=avx512  ONEDNN_MAX_CPU_ISA=AVX512_CORE_BF16  MKL_ENABLE_INSTRUCTIONS=AVX512
#             (AVX-512 without AMX: AMD Zen 4/5, Intel before Sapphire Rapids; needs AVX-512 here)
#     scalar  ATEN_CPU_CAPABILITY=default ONEDNN_MAX_CPU_ISA=SSE41             MKL_ENABLE_INSTRUCTIONS=SSE4_2
#             (ATen's scalar kernels, SSE-only BLAS: the most different float paths)
#     native  the CPU as it is
#   A setting this CPU cannot run (avx512 without AVX-512) or that is what this CPU runs anyway
#   (avx2 on an AVX2-only CPU) is skipped, saying so.
# Examples:
#   scripts/test_cpus.sh scalar -L unit           # what .ci/run runs after scripts/test.sh
#   scripts/test_cpus.sh avx2,scalar -L 'unit|learning'
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
[ $# -ge 1 ] || { sed -n '2,21p' "$0" >&2; exit 2; }
IFS=, read -r -a settings <<< "$1"
shift
"$root/scripts/setup.sh"
"$root/scripts/build.sh"
build=${GRPO_BUILD_DIR:-$root/build}
flags=$(grep -m1 '^flags' /proc/cpuinfo || true)
has() { [[ " $flags " == *" $1 "* ]]; }
native=avx2
has avx512f && native=avx512
has amx_bf16 && native=amx
status=0
for s in "${settings[@]}"; do
  case "$s" in
    native) env=() ;;
    avx2) env=(ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 MKL_ENABLE_INSTRUCTIONS=AVX2) ;;
    avx512) env=(ATEN_CPU_CAPABILITY=avx512 ONEDNN_MAX_CPU_ISA=AVX512_CORE_BF16 MKL_ENABLE_INSTRUCTIONS=AVX512) ;;
    scalar) env=(ATEN_CPU_CAPABILITY=default ONEDNN_MAX_CPU_ISA=SSE41 MKL_ENABLE_INSTRUCTIONS=SSE4_2) ;;
    *) echo "[test_cpus] unknown setting '$s' (expected native, avx2, avx512 or scalar)" >&2; exit 2 ;;
  esac
  if [ "$s" = avx512 ] && [ "$native" = avx2 ]; then
    echo "[test_cpus] skipping avx512: this CPU has no AVX-512" >&2; continue
  fi
  if [ "$s" = "$native" ]; then
    echo "[test_cpus] skipping $s: it is what this CPU runs anyway (run 'native')" >&2; continue
  fi
  echo "[test_cpus] === $s: ${env[*]:-(no overrides)}" >&2
  (cd "$build" && env "${env[@]}" ctest --output-on-failure --timeout 3000 "$@") || status=1
done
exit $status
