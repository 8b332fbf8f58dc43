#!/usr/bin/env bash
# The DeepSeek-R1 multi-stage pipeline on the built-in task, stage by stage with the command-line
# tools, and RL alone from the same start for comparison:
#   base -> cold-start data (rejection sampling from the base) -> SFT -> RL
#        -> rejection sampling -> SFT (from the base, as R1 does) -> RL
# Every stage is an ordinary grpo_train run of configs/demo.yaml that starts from the previous
# stage's checkpoint (run.init_from); grpo_eval measures each on 500 held-out questions (pass@1
# averaged over 8 samples at temperature 1 -- R1's headline metric --, cons@8, greedy accuracy).
# The SFT stages are short, as R1's cold start is: they teach the format and some skill, RL does
# the rest. The table is printed at the end and kept in DIR/summary.jsonl.
#   scripts/pipeline_demo.sh [DIR] [RL_STEPS]      (defaults: runs/pipeline 20; ~1.5 min on 2 cores)
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
dir=$(mkdir -p "${1:-runs/pipeline}" && cd "${1:-runs/pipeline}" && pwd)
rl=${2:-20}
build=${GRPO_BUILD_DIR:-$root/build}
[ -n "${GRPO_SKIP_BUILD:-}" ] || "$root/scripts/build.sh" grpo_train grpo_sample grpo_eval >/dev/null
bin=$build/bin
rm -rf "${dir:?}"/* && cd "$root"

train() {  # stage name, then --set overrides
  local name=$1; shift
  echo "== $name"
  "$bin/grpo_train" --config configs/demo.yaml --set run.dir="$dir/$name" --set run.resume=never \
    --set eval.every=0 --set eval.num_prompts=100 --set checkpoint.every=0 "$@" 2>&1 | grep -E "done|stage done|error" || true
  [ -f "$dir/$name/checkpoints/latest" ] || { echo "stage $name left no checkpoint" >&2; exit 1; }
}
ckpt() { echo "$dir/$1/checkpoints/$(cat "$dir/$1/checkpoints/latest")"; }
evaluate() {  # stage name
  "$bin/grpo_eval" --model "$(ckpt "$1")" -k 8 --limit 500 --batch-size 100 |
    sed "s/^{/{\"stage\":\"$1\",/" >> "$dir/summary.jsonl"
}
sample() {  # stage name, output, questions
  "$bin/grpo_sample" --model "$(ckpt "$1")" -k 4 --limit "$3" --batch-size 100 --out "$dir/$2"
}

train base --set grpo.rollout_steps=0                       # imperfect demonstrations only
evaluate base
sample base cold_start.jsonl 100                            # its correct, well-formatted answers
train sft1 --set run.init_from="$dir/base" --set pretrain.steps=0 --set grpo.rollout_steps=0 \
  --set sft.data="$dir/cold_start.jsonl" --set sft.steps=10 --set sft.batch_size=32 --set sft.lr=5e-4
evaluate sft1
train rl1 --set run.init_from="$dir/sft1" --set pretrain.steps=0 --set grpo.rollout_steps="$rl"
evaluate rl1
sample rl1 rejection.jsonl 400
train sft2 --set run.init_from="$dir/base" --set pretrain.steps=0 --set grpo.rollout_steps=0 \
  --set sft.data="$dir/rejection.jsonl" --set sft.steps=20 --set sft.batch_size=32 --set sft.lr=5e-4
evaluate sft2
train rl2 --set run.init_from="$dir/sft2" --set pretrain.steps=0 --set grpo.rollout_steps="$rl"
evaluate rl2
train rl_only --set run.init_from="$dir/base" --set pretrain.steps=0 --set grpo.rollout_steps=$((2 * rl))
evaluate rl_only

echo
printf '%-8s %8s %8s %8s\n' stage pass@1 cons@8 greedy
sed -E 's/.*"stage":"([a-z_0-9]+)".*"cons@k":([0-9.e-]+).*"greedy":([0-9.e-]+).*"pass@1":([0-9.e-]+).*/\1 \4 \2 \3/' \
  "$dir/summary.jsonl" | while read -r s p c g; do printf '%-8s %8.3f %8.3f %8.3f\n' "$s" "$p" "$c" "$g"; done
