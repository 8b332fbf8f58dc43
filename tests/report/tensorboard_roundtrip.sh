#!/usr/bin/env bash
# TensorBoard files of a run, read back by the real `tensorboard` package (tools/check_tensorboard.py,
# pinned reference environment), equal metrics.jsonl and eval.jsonl, also across a resume that drops
# steps an interrupted run logged after its last checkpoint. A dense run (configs/demo.yaml) and an MoE
# run (configs/moe_tiny.yaml: moe/ tags), each shortened.
# Usage: tensorboard_roundtrip.sh BIN_DIR WORK_DIR
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
bin=$1 work=$2
py=$("$root/tools/setup_reference.sh")
rm -rf "$work"
mkdir -p "$work"
for config in demo moe_tiny; do
  run="$work/$config"
  train() {
    "$bin/grpo_train" --config "$root/configs/$config.yaml" --set run.dir="$run" --set run.threads=1 \
      --set pretrain.steps=30 --set grpo.rollout_steps=4 --set grpo.prompts_per_step=4 --set grpo.group_size=4 \
      --set eval.every=2 --set eval.num_prompts=8 --set checkpoint.every=2 "$@" > "$run.log" 2>&1 ||
      { cat "$run.log"; exit 1; }
  }
  train --set run.resume=never
  # An interrupted run: steps 3 and 4 logged, step 4's checkpoint lost. The resume from step 2
  # drops them from metrics.jsonl / eval.jsonl and trains them again; TensorBoard must not keep the
  # first copies.
  rm -rf "$run/checkpoints/step-000004"
  echo step-000002 > "$run/checkpoints/latest"
  grep -q '"step": *4' "$run/metrics.jsonl"
  train
  grep -q 'resumed from' "$run.log" || { echo "the second run did not resume"; cat "$run.log"; exit 1; }
  echo "== $config"
  "$py" "$root/tools/check_tensorboard.py" "$run" --min-grpo-steps 4
done
