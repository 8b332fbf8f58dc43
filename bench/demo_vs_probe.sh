#!/usr/bin/env bash
# Side-by-side: the C++ demo (configs/demo.yaml) vs the reference Python/PyTorch GRPO script of
# DESIGN.md (shared/reference/grpo_probe.py, `python3 grpo_probe.py 3 0.6`), same machine, one run
# after the other, both on 2 threads. Prints wall times, held-out accuracies and the speed ratios
# that docs/performance.md records.
#
# Needs a Python torch that imports (the build's venv holds only what the C++ build needs):
#   python3 -m venv ~/.local/share/grpo/bench-venv && \
#     ~/.local/share/grpo/bench-venv/bin/pip install torch==$(cat TORCH_VERSION)
# Usage: bench/demo_vs_probe.sh [path/to/grpo_probe.py]
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
probe=${1:-$root/../shared/reference/grpo_probe.py}
py=${GRPO_BENCH_PYTHON:-$HOME/.local/share/grpo/bench-venv/bin/python}
out=$(mktemp -d)
"$root/scripts/build.sh" grpo_train >/dev/null

echo "== C++ grpo_train (configs/demo.yaml, seed 1)"
start=$(date +%s.%N)
"$root/build/bin/grpo_train" --config "$root/configs/demo.yaml" --set run.dir="$out/cpp" --fresh \
  > "$out/cpp.log" 2>&1
cpp_total=$(python3 -c "import time;print(time.time()-$start)")
cpp_base=$(sed -n 's/.*pretrain stage done in \([0-9.]*\)s.*/\1/p' "$out/cpp.log")
cpp_rl=$(python3 -c "import json;print(sum(json.loads(l)['time_step'] for l in open('$out/cpp/metrics.jsonl') if '\"grpo\"' in l))")
read -r cpp_acc0 cpp_acc50 < <(python3 -c "
import json; r=[json.loads(l) for l in open('$out/cpp/eval.jsonl')]
print(r[0]['accuracy_greedy'], [x for x in r if x['step']==50][0]['accuracy_greedy'])")

echo "== C++ grpo_train on the probe's exact task (plain answers, accuracy reward, 5 new tokens)"
"$root/build/bin/grpo_train" --config "$root/configs/demo.yaml" --set run.dir="$out/same" --fresh \
  --set task.format_rate=0 --set "reward.weights={accuracy: 1.0}" --set rollout.max_new_tokens=5 \
  > "$out/same.log" 2>&1
same_base=$(sed -n 's/.*pretrain stage done in \([0-9.]*\)s.*/\1/p' "$out/same.log")
same_rl=$(python3 -c "import json;print(sum(json.loads(l)['time_step'] for l in open('$out/same/metrics.jsonl') if '\"grpo\"' in l))")
read -r same_acc0 same_acc50 < <(python3 -c "
import json; r=[json.loads(l) for l in open('$out/same/eval.jsonl')]
print(r[0]['accuracy_greedy'], [x for x in r if x['step']==50][0]['accuracy_greedy'])")

echo "== Python probe ($probe 3 0.6), stopped after RL step 50"
"$py" -u "$probe" 3 0.6 > "$out/probe.log" 2>&1 &
pid=$!
while ! grep -q "rl step 50 " "$out/probe.log" 2>/dev/null; do
  kill -0 $pid 2>/dev/null || { cat "$out/probe.log"; exit 1; }
  sleep 1
done
kill $pid 2>/dev/null || true
probe_base=$(sed -n 's/^pretrain \([0-9.]*\)s.*/\1/p' "$out/probe.log")
probe_acc0=$(sed -n 's/^pretrain .*held-out greedy acc \([0-9.]*\).*/\1/p' "$out/probe.log")
probe_rl=$(sed -n 's/^rl step 50 \([0-9.]*\)s.*/\1/p' "$out/probe.log")
probe_acc50=$(sed -n 's/^rl step 50 .*held-out greedy \([0-9.]*\).*/\1/p' "$out/probe.log")

python3 - "$probe_base" "$probe_rl" "$probe_acc0" "$probe_acc50" "$same_base" "$same_rl" \
  "$same_acc0" "$same_acc50" "$cpp_base" "$cpp_rl" "$cpp_acc0" "$cpp_acc50" "$cpp_total" <<'PY'
import sys
pb, pr, pa0, pa50, sb, sr, sa0, sa50, cb, cr, ca0, ca50, ct = map(float, sys.argv[1:])
print()
print("| | Python probe | C++, probe's task | ratio | C++ demo (R1 format) | ratio |")
print("| --- | --- | --- | --- | --- | --- |")
print(f"| pretrain stage, 800 steps | {pb:.1f} s | {sb:.1f} s | {pb/sb:.2f}x | {cb:.1f} s | {pb/cb:.2f}x |")
print(f"| GRPO, 50 rollout steps | {pr:.1f} s | {sr:.1f} s | {pr/sr:.2f}x | {cr:.1f} s | {pr/cr:.2f}x |")
print(f"| held-out greedy, start | {pa0:.3f} | {sa0:.3f} | | {ca0:.3f} | |")
print(f"| held-out greedy, step 50 | {pa50:.3f} | {sa50:.3f} | | {ca50:.3f} | |")
print(f"\nratio = probe time / C++ time (>1: C++ faster). C++ GRPO time = rollout + reward + update,")
print(f"no evaluation; the probe's includes one evaluation (step 25). C++ demo whole run: {ct:.1f} s.")
PY
