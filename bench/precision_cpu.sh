#!/usr/bin/env bash
# The demo (configs/demo.yaml) in fp32 and in bf16 mixed precision (optim.precision), same binary,
# one after the other, for seeds 1..N: time of the pretrain stage, of GRPO's rollouts and updates, of
# the whole run, and held-out greedy accuracy at the start and end of GRPO. bf16 pays off on CPUs
# with native bf16 matrix units (AMX-BF16, Sapphire Rapids and later); elsewhere LibTorch emulates
# bf16 and it is slower. Then, when a Python torch imports (see bench/demo_vs_probe.sh), PyTorch's
# own CPU attention in bf16 vs fp32 (bench/sdpa_cpu_bf16.py).
# Usage: bench/precision_cpu.sh [seeds...]   (default: 1)
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
"$root/scripts/build.sh" grpo_train >/dev/null
out=${GRPO_BENCH_OUT:-$(mktemp -d)}
seeds=("$@")
[ ${#seeds[@]} -gt 0 ] || seeds=(1)
echo "CPU bf16 support: $(grep -m1 '^flags' /proc/cpuinfo | grep -o 'amx_bf16\|avx512_bf16' | sort -u | tr '\n' ' ')"
printf '| seed | precision | pretrain stage | GRPO rollout | GRPO update | whole run | greedy start -> step 50 |\n'
printf '| --- | --- | --- | --- | --- | --- | --- |\n'
for s in "${seeds[@]}"; do
  for p in fp32 bf16; do
    dir="$out/seed$s-$p"
    start=$(date +%s.%N)
    "$root/build/bin/grpo_train" --config "$root/configs/demo.yaml" --set run.seed="$s" \
      --set optim.precision="$p" --set checkpoint.every=0 --set run.dir="$dir" --fresh > "$dir.log" 2>&1
    total=$(python3 -c "import time;print(f'{time.time()-$start:.1f}')")
    base=$(sed -n 's/.*pretrain stage done in \([0-9.]*\)s.*/\1/p' "$dir.log")
    python3 - "$dir" "$s" "$p" "$base" "$total" <<'PY'
import json, sys
d, s, p, base, total = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4]), float(sys.argv[5])
grpo = [r for r in map(json.loads, open(f"{d}/metrics.jsonl")) if r.get("stage") != "pretrain"]
acc = {r["step"]: r["accuracy_greedy"] for r in map(json.loads, open(f"{d}/eval.jsonl"))}
last = max(acc)
print(f"| {s} | {p} | {base:.1f} s | {sum(r['time_rollout'] for r in grpo):.2f} s | "
      f"{sum(r['time_update'] for r in grpo):.2f} s | {total:.1f} s | {acc[0]:.3f} -> {acc[last]:.3f} |")
PY
  done
done
echo "(runs in $out)"
py=${GRPO_BENCH_PYTHON:-$HOME/.local/share/grpo/bench-venv/bin/python}
if "$py" -c 'import torch' 2>/dev/null; then
  "$py" "$root/bench/sdpa_cpu_bf16.py" 2>/dev/null
else
  echo "(no Python torch at $py: PyTorch's SDPA table skipped)"
fi
