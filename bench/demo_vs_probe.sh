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
cpp_total=$(echo "$(date +%s.%N) - $start" | bc)
cpp_base=$(sed -n 's/.*base stage done in \([0-9.]*\)s.*/\1/p' "$out/cpp.log")
cpp_rl=$(python3 -c "import json;print(sum(json.loads(l)['time_step'] for l in open('$out/cpp/metrics.jsonl') if '\"grpo\"' in l))")
read -r cpp_acc0 cpp_acc50 < <(python3 -c "
import json; r=[json.loads(l) for l in open('$out/cpp/eval.jsonl')]
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

printf '\n%-28s %12s %12s %8s\n' "" "python probe" "C++ grpo" "ratio"
printf '%-28s %11ss %11ss %7.1fx\n' "base stage (800 steps)" "$probe_base" "$cpp_base" "$(echo "$probe_base / $cpp_base" | bc -l)"
printf '%-28s %11ss %11.1fs %7.1fx\n' "GRPO, 50 rollout steps" "$probe_rl" "$cpp_rl" "$(echo "$probe_rl / $cpp_rl" | bc -l)"
printf '%-28s %12s %12s\n' "held-out greedy acc, start" "$probe_acc0" "$cpp_acc0"
printf '%-28s %12s %12s\n' "held-out greedy acc, step 50" "$probe_acc50" "$cpp_acc50"
printf '(C++ GRPO time includes rewards and metrics, excludes evaluation; the probe'"'"'s includes its\n'
printf ' evaluation at step 25. C++ whole run incl. 6 evaluations: %.1fs)\n' "$cpp_total"
