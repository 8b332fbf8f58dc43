#!/usr/bin/env bash
# Learning on the real model: configs/smollm2_gsm.yaml (SmolLM2-135M-Instruct, GSM-Symbolic) over
# seeds, through scripts/real_model_demo.sh, then one summary line per seed: held-out greedy
# accuracy (format-agnostic) at the start and end, and per-step means of the first and last 5
# steps of reward, accuracy, answer_line (the fixed final line), response length, KL to the
# reference (0 unless grpo.kl_coef > 0: the recipe keeps no reference) and entropy; wall time.
# Hours per seed on 2 cores.
# Extra --set options go to every run (GRPO_BENCH_SET), e.g. a shorter run:
#   GRPO_BENCH_SET="--set grpo.rollout_steps=24 --set grpo.prompts_per_step=4" bench/real_model_seeds.sh 1 2 3
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
seeds=${*:-1 2 3}
for s in $seeds; do
  dir="$root/runs/smollm2_gsm_s$s"
  t0=$(date +%s)
  # shellcheck disable=SC2086
  "$root/scripts/real_model_demo.sh" --fresh --set run.seed="$s" --set run.dir="$dir" ${GRPO_BENCH_SET:-} >"$dir.log" 2>&1 ||
    { tail -20 "$dir.log"; exit 1; }
  python3 - "$dir" "$s" "$(($(date +%s) - t0))" <<'EOF'
import json, sys
d, seed, secs = sys.argv[1], sys.argv[2], int(sys.argv[3])
ev = [json.loads(l) for l in open(f"{d}/eval.jsonl")]
m = [json.loads(l) for l in open(f"{d}/metrics.jsonl") if '"grpo"' in l]
def mean(rows, key):
    v = [r[key] for r in rows if isinstance(r.get(key), (int, float))]
    return sum(v) / len(v) if v else float("nan")
first, last = m[:5], m[-5:]
cols = [("reward", "reward_mean"), ("acc", "accuracy"), ("answer_line", "reward_answer_line"),
        ("len", "response_length"), ("kl", "kl"), ("entropy", "entropy")]
print(f"seed {seed}: held-out greedy {ev[0]['accuracy_greedy']:.3f} -> {ev[-1]['accuracy_greedy']:.3f} "
      f"({100 * (ev[-1]['accuracy_greedy'] - ev[0]['accuracy_greedy']):+.1f} points, {ev[0]['num_prompts']} prompts) | "
      + " | ".join(f"{n} {mean(first, k):.3f} -> {mean(last, k):.3f}" for n, k in cols)
      + f" | {len(m)} steps, {secs} s")
EOF
done
