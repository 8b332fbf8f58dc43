#!/usr/bin/env bash
# Learning and wall time under bounded staleness (grpo.max_staleness), colocated in one process.
# Per seed: the demo's pretrain stage once (configs/demo.yaml, grpo.rollout_steps 0), then its 50
# GRPO steps from that checkpoint (run.init_from) with max_staleness 0 (synchronous), 1 and 2
# (generation k steps ahead, sequential), uncorrected and with truncated IS weights
# (off_policy_correction: tis), k = 2 anchored at the sampler's log-probs (recompute_old_logprobs:
# false, verl's "bypass" mode), and k = 1 + tis with overlap_generation (generation in a thread
# beside the update, the CPU threads split). Prints held-out greedy accuracy at the start of GRPO
# and after 50 steps, the gain, the GRPO stage's wall time and its mean time_wait_data.
# Usage: bench/staleness.sh [seeds...]    (default 1 2 3; time on a quiet machine: check `uptime`)
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
"$root/scripts/build.sh" grpo_train >/dev/null
out=${GRPO_BENCH_OUT:-$(mktemp -d)}
mkdir -p "$out"
config=$root/configs/demo.yaml
seeds=("$@")
[ ${#seeds[@]} -gt 0 ] || seeds=(1 2 3)
train() { "$root/build/bin/grpo_train" --config "$config" "$@" --fresh; }
printf '| seed | setting | start of GRPO | after 50 | gain (points) | GRPO stage | mean time_wait_data |\n'
printf '| --- | --- | --- | --- | --- | --- | --- |\n'
for s in "${seeds[@]}"; do
  train --set run.seed="$s" --set run.dir="$out/base$s" --set grpo.rollout_steps=0 > "$out/base$s.log" 2>&1
  for v in "k=0:0:false:none:true" "k=1:1:false:none:true" "k=2:2:false:none:true" "k=1, tis:1:false:tis:true" \
           "k=2, tis:2:false:tis:true" "k=2, old = sampler's:2:false:none:false" "k=1, tis, overlap:1:true:tis:true"; do
    IFS=: read -r label k overlap corr recompute <<<"$v"
    d="$out/seed${s}_k${k}_${overlap}_${corr}_${recompute}"
    start=$(date +%s.%N)
    train --set run.seed="$s" --set run.dir="$d" --set run.init_from="$out/base$s" --set pretrain.steps=0 \
      --set grpo.max_staleness="$k" --set grpo.overlap_generation="$overlap" --set grpo.off_policy_correction="$corr" \
      --set grpo.recompute_old_logprobs="$recompute" --set eval.every=50 > "$d.log" 2>&1
    total=$(python3 -c "import time;print(f'{time.time()-$start:.1f}')")
    python3 - "$d" "$s" "$label" "$total" <<'PY'
import json, sys
d, s, label, total = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
ev = {r["step"]: r["accuracy_greedy"] for r in map(json.loads, open(f"{d}/eval.jsonl"))}
m = [r for r in map(json.loads, open(f"{d}/metrics.jsonl")) if r.get("stage") == "grpo" and "time_wait_data" in r]
wait = sum(r["time_wait_data"] for r in m) / max(1, len(m))
print(f"| {s} | {label} | {100*ev[0]:.1f}% | {100*ev[50]:.1f}% | {100*(ev[50]-ev[0]):+.1f} | {total:.1f} s | {wait:.3f} s |")
PY
  done
done
echo "(runs in $out)"
