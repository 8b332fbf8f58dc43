#!/usr/bin/env bash
# Separate rollout ranks against data parallelism, 2 processes each (mpirun, Gloo, 1 thread per
# process), and against the synchronous run of one process: learning and time per rollout step.
# Per seed: the demo's pretrain stage once (configs/demo.yaml, grpo.rollout_steps 0), then its 50
# GRPO steps from that checkpoint (run.init_from):
#   1 process, k = 0           the synchronous reference (run.threads 2)
#   2-rank DP, k = 0           both processes generate and train (the synchronous throughput baseline)
#   1 rollout + 1 trainer, k = 1 / k = 1 + tis / k = 2 / k = 2 + tis / k = 1 with in-flight weight updates
# Prints held-out greedy accuracy at the start of GRPO and after 50 steps, the gain, the GRPO
# stage's wall time, and the mean per rollout step of time_step, time_update, time_wait_data
# (training waited for generation), time_wait_weights (generation waited for the trainers) and
# token_lag_mean (versions between each token's sampler and the trained weights).
# Usage: bench/rollout_ranks.sh [seeds...]   (default 1 2 3; time on a quiet machine: check `uptime`)
#        bench/rollout_ranks.sh throughput [max_new_tokens...]   (default 24 48 96)
#   Time per rollout step only, on a workload whose generation is as long as the caller likes: the
#   demo's GRPO stage from its random initialisation (no pretrain: responses run to max_new_tokens),
#   12 steps, no checkpoints, 2-rank DP (k = 0) against 1 rollout + 1 trainer (k = 1); the mean over
#   steps 3..12 of time_step, time_rollout, time_update and the waits. GRPO_BENCH_SET="--set key=value
#   ..." adds settings to both runs (e.g. rollout.max_running, to make generation slower).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
"$root/scripts/build.sh" grpo_train >/dev/null
out=${GRPO_BENCH_OUT:-$(mktemp -d)}
mkdir -p "$out"
config=$root/configs/demo.yaml
mpi=(mpirun -np 2 --oversubscribe)
[ "$(id -u)" = 0 ] && mpi+=(--allow-run-as-root)
if [ "${1:-}" = throughput ]; then
  shift
  lengths=("$@")
  [ ${#lengths[@]} -gt 0 ] || lengths=(24 48 96)
  printf '| max_new_tokens | setting | per step | generation | update | wait data | wait weights | response length |\n'
  printf '| --- | --- | --- | --- | --- | --- | --- | --- |\n'
  for n in "${lengths[@]}"; do
    for v in "2-rank DP, k=0:0:0" "1 rollout + 1 trainer, k=1:1:1"; do
      IFS=: read -r label rr k <<<"$v"
      d="$out/tp_n${n}_rr${rr}"
      "${mpi[@]}" "$root/build/bin/grpo_train" --config "$config" --fresh --set run.dir="$d" --set pretrain.steps=0 \
        --set run.threads=1 --set parallel.rollout_ranks="$rr" --set grpo.max_staleness="$k" \
        --set rollout.max_new_tokens="$n" --set model.max_position_embeddings=$((n + 32)) --set grpo.rollout_steps=12 \
        --set eval.every=0 --set eval.num_prompts=8 --set checkpoint.every=0 ${GRPO_BENCH_SET:-} > "$d.log" 2>&1
      python3 - "$d" "$n" "$label" <<'PY'
import json, sys
d, n, label = sys.argv[1], sys.argv[2], sys.argv[3]
m = [r for r in map(json.loads, open(f"{d}/metrics.jsonl")) if r.get("stage") == "grpo" and r["step"] >= 3]
mean = lambda k: sum(r[k] for r in m) / len(m)
print(f"| {n} | {label} | {mean('time_step'):.3f} s | {mean('time_rollout'):.3f} s | {mean('time_update'):.3f} s | "
      f"{mean('time_wait_data'):.3f} s | {mean('time_wait_weights'):.3f} s | {mean('response_length'):.1f} |")
PY
    done
  done
  echo "(runs in $out)"
  exit 0
fi
seeds=("$@")
[ ${#seeds[@]} -gt 0 ] || seeds=(1 2 3)
printf '| seed | setting | start of GRPO | after 50 | gain (points) | GRPO stage | per step | update | wait data | wait weights | token lag |\n'
printf '| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n'
for s in "${seeds[@]}"; do
  "$root/build/bin/grpo_train" --config "$config" --fresh --set run.seed="$s" --set run.dir="$out/base$s" \
    --set grpo.rollout_steps=0 > "$out/base$s.log" 2>&1
  for v in "1 process, k=0:1:0:0:none:false" "2-rank DP, k=0:2:0:0:none:false" "1 rollout + 1 trainer, k=1:2:1:1:none:false" \
           "1 rollout + 1 trainer, k=1, tis:2:1:1:tis:false" \
           "1 rollout + 1 trainer, k=2:2:1:2:none:false" "1 rollout + 1 trainer, k=2, tis:2:1:2:tis:false" \
           "1 rollout + 1 trainer, k=1, in-flight updates:2:1:1:none:true"; do
    IFS=: read -r label np rr k corr inflight <<<"$v"
    inflight=${inflight:-false}
    d="$out/seed${s}_np${np}_rr${rr}_k${k}_${corr}_${inflight}"
    launch=("$root/build/bin/grpo_train")
    threads=2
    if [ "$np" = 2 ]; then launch=("${mpi[@]}" "$root/build/bin/grpo_train"); threads=1; fi
    start=$(date +%s.%N)
    "${launch[@]}" --config "$config" --fresh --set run.seed="$s" --set run.dir="$d" --set run.init_from="$out/base$s" \
      --set pretrain.steps=0 --set run.threads="$threads" --set parallel.rollout_ranks="$rr" \
      --set parallel.inflight_weight_updates="$inflight" \
      --set grpo.max_staleness="$k" --set grpo.off_policy_correction="$corr" --set eval.every=50 > "$d.log" 2>&1
    total=$(python3 -c "import time;print(f'{time.time()-$start:.1f}')")
    python3 - "$d" "$s" "$label" "$total" <<'PY'
import json, sys
d, s, label, total = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
ev = {r["step"]: r["accuracy_greedy"] for r in map(json.loads, open(f"{d}/eval.jsonl"))}
m = [r for r in map(json.loads, open(f"{d}/metrics.jsonl")) if r.get("stage") == "grpo"]
mean = lambda k: sum(r[k] for r in m) / max(1, len(m))
print(f"| {s} | {label} | {100*ev[0]:.1f}% | {100*ev[50]:.1f}% | {100*(ev[50]-ev[0]):+.1f} | {total:.1f} s | "
      f"{mean('time_step'):.3f} s | {mean('time_update'):.3f} s | {mean('time_wait_data'):.3f} s | "
      f"{mean('time_wait_weights'):.3f} s | {mean('token_lag_mean'):.2f} |")
PY
  done
done
echo "(runs in $out)"
