#!/usr/bin/env bash
# Data-parallel gradient all-reduce on CPU (Gloo over loopback): one all-reduce after the backward
# pass vs 16 MB buckets after it vs buckets overlapped with it (bench/allreduce_bench.cpp), and the
# peer, PyTorch DDP on the same shapes (bench/ddp_overlap.py, the pinned torch of
# tools/requirements.txt), in the same run.
# Usage: bench/allreduce_overlap.sh [processes] [threads per process] [reps]
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
procs=${1:-2}
threads=${2:-1}
reps=${3:-5}
"$root/scripts/build.sh" grpo_bench_allreduce >/dev/null
python=$("$root/tools/setup_reference.sh")
port=$((20000 + RANDOM % 20000))
for shape in "512 8 512" "1024 4 256"; do
  pids=()
  for ((r = 0; r < procs; r++)); do
    # shellcheck disable=SC2086
    RANK=$r WORLD_SIZE=$procs LOCAL_RANK=$r MASTER_ADDR=127.0.0.1 MASTER_PORT=$port \
      "$root/build/bin/grpo_bench_allreduce" $shape "$reps" "$threads" 16 &
    pids+=($!)
  done
  for p in "${pids[@]}"; do wait "$p"; done
  port=$((port + 1))
  pids=()
  for ((r = 0; r < procs; r++)); do
    # shellcheck disable=SC2086
    RANK=$r WORLD_SIZE=$procs LOCAL_RANK=$r MASTER_ADDR=127.0.0.1 MASTER_PORT=$port \
      "$python" "$root/bench/ddp_overlap.py" $shape "$reps" "$threads" 16 &
    pids+=($!)
  done
  for p in "${pids[@]}"; do wait "$p"; done
  port=$((port + 1))
done
