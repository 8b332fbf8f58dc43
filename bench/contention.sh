#!/usr/bin/env bash
# Threads under load: a GRPO step (grpo_train, the small-vocabulary model of bench/grpo_vs_trl.sh)
# and a PyTorch training step of the same model (transformers forward + backward + AdamW on the
# same 32 x 42 tokens, pinned reference environment), each alone and beside a busy process (one
# core spinning), with the thread settings that matter: grpo's default (run.threads 0: threads
# follow the CPUs other processes leave free, core/device.h ThreadGovernor), every core, 1 thread,
# and libgomp's passive wait policy. Prints the median seconds per step after the first.
# Usage: bench/contention.sh [steps]    (on a quiet machine with 2 cores: check `uptime`)
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
steps=${1:-6}
"$root/scripts/build.sh" grpo_train >/dev/null
py=$("$root/tools/setup_reference.sh")
work=$(mktemp -d)
busy_pid=
cleanup() { [ -n "$busy_pid" ] && kill "$busy_pid" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT
"$py" "$root/bench/grpo_vs_trl.py" setup "$work" 2048 >/dev/null 2>&1
cat >"$work/grpo.yaml" <<EOF
run: {dir: $work/run, seed: 1, resume: never}
model: {path: $work/model}
data: {train: $work/train.jsonl}
prompt: {template: plain}
rollout: {temperature: 1.0, max_new_tokens: 32}
grpo: {rollout_steps: $steps, prompts_per_step: 4, group_size: 8, kl_coef: 0.0, skip_zero_advantage: false}
reward: {weights: {accuracy: 1.0}}
eval: {every: 0}
checkpoint: {every: 0}
EOF

grpo() {  # extra args: --set overrides; prints the median step time
  "$root/build/bin/grpo_train" --config "$work/grpo.yaml" "$@" >"$work/log" 2>&1 || { cat "$work/log"; exit 1; }
  python3 -c "import json,statistics as s
v=[json.loads(l)['time_step'] for l in open('$work/run/metrics.jsonl') if '\"grpo\"' in l][1:]
print(f'{s.median(v):.3f}')"
}
torch_step() {  # threads
  "$py" - "$work/model" "$steps" "$1" <<'PY' 2>/dev/null
import statistics, sys, time, torch, transformers
model_dir, steps, threads = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
torch.set_num_threads(threads)
m = transformers.AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
opt = torch.optim.AdamW(m.parameters(), lr=1e-4)
ids = torch.randint(0, m.config.vocab_size, (32, 42), generator=torch.Generator().manual_seed(0))
times = []
for _ in range(steps):
    t0 = time.perf_counter()
    logits = m(ids).logits.float()
    lp = torch.log_softmax(logits[:, 9:-1], -1).gather(2, ids[:, 10:, None]).squeeze(2)
    (-lp.mean()).backward()
    opt.step(); opt.zero_grad()
    times.append(time.perf_counter() - t0)
print(f"{statistics.median(times[1:]):.3f}")
PY
}
busy_on() { python3 -c "while True: pass" & busy_pid=$!; sleep 1; }
busy_off() { kill "$busy_pid"; wait "$busy_pid" 2>/dev/null || true; busy_pid=; }

echo "machine: $(nproc) CPUs; load before: $(cut -d' ' -f1-3 /proc/loadavg)"
printf "%-44s %10s %10s\n" "setting" "alone s" "busy s"
row() {  # label, command...
  local label=$1; shift
  local a b
  a=$("$@")
  busy_on; b=$("$@"); busy_off
  printf "%-44s %10s %10s   (%.1fx)\n" "$label" "$a" "$b" "$(python3 -c "print($b/$a)")"
}
row "grpo, run.threads=0 (default: adapts)" grpo
row "grpo, run.threads=2 (fixed)" grpo --set run.threads=2
row "grpo, run.threads=1" grpo --set run.threads=1
grpo_passive() { OMP_WAIT_POLICY=passive grpo "$@"; }
row "grpo, OMP_WAIT_POLICY=passive" grpo_passive
torch_passive() { OMP_WAIT_POLICY=passive torch_step "$@"; }
row "PyTorch, 2 threads" torch_step 2
row "PyTorch, 1 thread" torch_step 1
row "PyTorch, 2 threads, OMP_WAIT_POLICY=passive" torch_passive 2
