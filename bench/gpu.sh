#!/usr/bin/env bash
# On the GPU machine (the device tool): build grpo with its CUDA kernels against that machine's own
# PyTorch LibTorch (2.11, CUDA), run the `gpu` tests, then the GPU benchmark (bench/gpu_bench.cpp).
# From the development machine:
#   bash bench/gpu_deps.sh                                  # Debian packages -> .cache/gpu-debs
#   run(command="bash bench/gpu.sh build", carry=[".cache/gpu-debs"])        # about 5 minutes
#   run(command="bash bench/gpu.sh test bench")             # same warm machine: build-gpu/ is kept
# Stages: build, test, bench (default: all three); dist (GpuDist.* in the unit binary, a longer
# build). Logs go to $OUT (the device tool brings them back).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
out=${OUT:-$root/.cache/gpu-out}
mkdir -p "$out"
prefix="$root/.cache/gpu-prefix"
build="$root/build-gpu"
stages=("$@")
[ ${#stages[@]} -gt 0 ] || stages=(build test bench)
export LD_LIBRARY_PATH="$prefix/usr/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"

unpack() {  # a .deb's files into $prefix: dpkg-deb where there is one, else ar + tar by Python
  if command -v dpkg-deb >/dev/null; then dpkg-deb -x "$1" "$prefix"; return; fi
  python3 - "$1" "$prefix" <<'PY'
import io, sys, tarfile
data = open(sys.argv[1], 'rb').read()
assert data[:8] == b'!<arch>\n', 'not a .deb'
i = 8
while i < len(data):
    name, size = data[i:i+16].decode().strip().rstrip('/'), int(data[i+48:i+58])
    body = data[i+60:i+60+size]
    if name.startswith('data.tar'):
        tarfile.open(fileobj=io.BytesIO(body), mode='r:*').extractall(sys.argv[2])
    i += 60 + size + (size % 2)
PY
}

for stage in "${stages[@]}"; do
  case "$stage" in
    build)
      nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv,noheader | tee "$out/device.txt"
      ls "$root"/.cache/gpu-debs/*.deb >/dev/null 2>&1 || { echo "no .cache/gpu-debs: run bench/gpu_deps.sh and carry it" >&2; exit 1; }
      rm -rf "$prefix" && mkdir -p "$prefix"
      for d in "$root"/.cache/gpu-debs/*.deb; do unpack "$d"; done
      torch_cmake=$(python3 -c 'import torch; print(torch.utils.cmake_prefix_path)')
      gen=(); command -v ninja >/dev/null && gen=(-G Ninja)
      cmake -S "$root" -B "$build" "${gen[@]}" -DCMAKE_BUILD_TYPE=Release -DGRPO_CUDA=ON -DGRPO_TORCH_CUDA_LINK=ON \
        -DCMAKE_CUDA_ARCHITECTURES=90 -DCMAKE_CXX_FLAGS="-isystem $prefix/usr/include/x86_64-linux-gnu" -DTorch_DIR="$torch_cmake/Torch" -DCMAKE_PREFIX_PATH="$prefix/usr" \
        > "$out/configure.log" 2>&1 || { tail -40 "$out/configure.log"; exit 1; }
      grep "grpo:" "$out/configure.log"
      start=$(date +%s)
      cmake --build "$build" --parallel "$(nproc)" --target grpo_gpu_tests grpo_bench_gpu > "$out/build.log" 2>&1 ||
        { grep -E "error|FAILED" -A5 "$out/build.log" | head -80; exit 1; }
      echo "built in $(( $(date +%s) - start )) s"
      # the kernels' resource report (registers, spills) and the SASS, for reading without device time
      # (one file each: the device tool brings back at most 8 files)
      objs=$(find "$build" -path "*grpo_kernels.dir*" -name "*.o" | sort)
      for what in res-usage sass; do
        for o in $objs; do echo "=== $(basename "$o")"; cuobjdump -"$what" "$o" 2>/dev/null | c++filt || true; done \
          > "$out/kernels_$what.txt"
      done
      ;;
    test)
      "$build/tests/grpo_gpu_tests" > "$out/gpu_tests.log" 2>&1 && rc=0 || rc=$?
      grep -E "^\[ *(OK|FAILED|SKIPPED|PASSED) *\]|Failure|Expected|actual|trace|kernels_test|largest" "$out/gpu_tests.log" | head -120
      echo "gpu tests exit $rc"
      ;;
    dist)  # collectives on GPU tensors between processes (GpuDist.*): builds the whole unit binary
      cmake --build "$build" --parallel "$(nproc)" --target grpo_unit_tests > "$out/build_unit.log" 2>&1 ||
        { grep -E "error|FAILED" -A5 "$out/build_unit.log" | head -80; exit 1; }
      "$build/tests/grpo_unit_tests" --gtest_filter='GpuDist.*' > "$out/gpu_dist_tests.log" 2>&1 && rc=0 || rc=$?
      grep -E "^\[ *(OK|FAILED|SKIPPED|PASSED) *\]|Failure|Expected|actual|Skipped|needs" "$out/gpu_dist_tests.log" | head -60
      echo "gpu dist tests exit $rc"
      ;;
    bench)
      "$build/bin/grpo_bench_gpu" ${GRPO_BENCH_ARGS:-} 2>&1 | tee "$out/bench.log"
      ;;
    *) echo "unknown stage '$stage' (build, test, dist, bench)" >&2; exit 2 ;;
  esac
done
