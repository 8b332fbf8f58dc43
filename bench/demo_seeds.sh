#!/usr/bin/env bash
# Runs the demo (configs/demo.yaml, or the recipe in $GRPO_CONFIG) for seeds 1..3 from scratch and
# prints the CPU, then per seed held-out greedy accuracy at the start of GRPO, after 10, 30 (the
# learning test's length) and 50 rollout steps, the gain, and wall time. These are the numbers in
# README.md. With a multi-turn recipe (an `env` section, e.g. configs/tool_demo.yaml) also the
# held-out greedy tool use at the start and end, the training episodes' tool use over the first and
# last 5 steps and, per GRPO step, the rollout's time and the time the sandbox ran (summed over
# tool calls, which overlap decoding and each other).
# Usage: [GRPO_CONFIG=configs/moe_tiny.yaml] bench/demo_seeds.sh [seeds...]
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
"$root/scripts/build.sh" grpo_train >/dev/null
out=${GRPO_BENCH_OUT:-$(mktemp -d)}
mkdir -p "$out"
config=${GRPO_CONFIG:-$root/configs/demo.yaml}
seeds=("$@")
[ ${#seeds[@]} -gt 0 ] || seeds=(1 2 3)
isa=$(for f in amx_bf16 avx512_bf16 avx512f avx2; do grep -qw "$f" /proc/cpuinfo && { echo "$f"; break; }; done)
echo "$(basename "$config") on $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)" \
     "(best of amx_bf16/avx512_bf16/avx512f/avx2: ${isa:-none})${ATEN_CPU_CAPABILITY:+, ATEN_CPU_CAPABILITY=$ATEN_CPU_CAPABILITY}"
env=$(grep -q '^env:' "$config" && echo 1 || true)
if [ -n "$env" ]; then
  printf '| seed | start of GRPO | after 10 | after 30 | after 50 | gain (points) | held-out tool use, start -> end | training episodes using the tool, first -> last 5 steps | rollout s/step | sandbox s/step | pretrain stage | GRPO + evals | whole run |\n'
  printf '| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n'
else
  printf '| seed | start of GRPO | after 10 | after 30 | after 50 | gain (points) | pretrain stage | GRPO + evals | whole run |\n'
  printf '| --- | --- | --- | --- | --- | --- | --- | --- | --- |\n'
fi
for s in "${seeds[@]}"; do
  start=$(date +%s.%N)
  "$root/build/bin/grpo_train" --config "$config" --set run.seed="$s" \
    --set run.dir="$out/seed$s" --set eval.every=10 --fresh > "$out/seed$s.log" 2>&1
  total=$(python3 -c "import time;print(f'{time.time()-$start:.1f}')")
  base=$(sed -n 's/.*pretrain stage done in \([0-9.]*\)s.*/\1/p' "$out/seed$s.log")
  python3 - "$out/seed$s" "$s" "$base" "$total" <<'PY'
import json, sys
d, s, base, total = sys.argv[1], sys.argv[2], float(sys.argv[3]), float(sys.argv[4])
evals = {r["step"]: r for r in map(json.loads, open(f"{d}/eval.jsonl"))}
rows = {k: r["accuracy_greedy"] for k, r in evals.items()}
cells = [f"{100*rows[0]:.1f}%", f"{100*rows[10]:.1f}%", f"{100*rows[30]:.1f}%", f"{100*rows[50]:.1f}%",
         f"{100*(rows[50]-rows[0]):+.1f}"]
if "tool_use_greedy" in evals[0]:
    m = [j for j in map(json.loads, open(f"{d}/metrics.jsonl")) if j.get("stage") == "grpo"]
    mean = lambda k: sum(j[k] for j in m) / len(m)
    use = lambda rows: sum(j["env_tool_use"] for j in rows) / len(rows)
    cells += [f"{100*evals[0]['tool_use_greedy']:.1f}% -> {100*evals[50]['tool_use_greedy']:.1f}%",
              f"{100*use(m[:5]):.1f}% -> {100*use(m[-5:]):.1f}%",
              f"{mean('time_rollout'):.2f}", f"{mean('time_env'):.2f}"]
cells += [f"{base:.0f} s", f"{total-base:.0f} s", f"{total:.0f} s"]
print(f"| {s} | " + " | ".join(cells) + " |")
PY
done
echo "(runs in $out)"
