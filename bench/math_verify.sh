#!/usr/bin/env bash
# Per-call latency of the math answer verifier: grpo (bench/math_bench.cpp) vs math-verify
# (pinned, tools/requirements.txt: parse(gold) + parse(pred) + verify, its default configuration,
# timeouts disabled for timing), on the 487 cases of tests/fixtures/math/cases.jsonl, one thread,
# best of N calls per case.
# Usage: bench/math_verify.sh [repeats]
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
reps=${1:-5}
"$root/scripts/build.sh" grpo_bench_math >/dev/null
cases="$root/tests/fixtures/math/cases.jsonl"
"$root/build/bin/grpo_bench_math" "$cases" "$reps"
py=$("$root/tools/setup_reference.sh")
"$py" - "$cases" "$reps" <<'PY' 2>/dev/null
import json, sys, time
from math_verify import parse, verify
cases = [json.loads(l) for l in open(sys.argv[1], encoding="utf-8")]
reps = int(sys.argv[2])
# warm-up (imports, grammar) on a case outside the set
verify(parse("$\\frac{1}{7}$"), parse("$\\frac{2}{14}$"))
times, first = [], []
for c in cases:
    gold = c["gold"] if (c["source"] != "grpo" or "$" in c["gold"] or "\\boxed" in c["gold"]) else f"${c['gold']}$"
    best = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter()
        try:
            verify(parse(gold, parsing_timeout=None), parse(c["pred"], parsing_timeout=None), timeout_seconds=None)
        except Exception:
            pass
        dt = time.perf_counter() - t0
        if best == float("inf"):
            first.append(dt * 1e6)  # the first call: math-verify's parse caches are still cold
        best = min(best, dt)
    times.append(best * 1e6)
for name, t in (("first call", first), ("best (cached)", times)):
    t.sort()
    n = len(t)
    print(f"math-verify  {n} cases: median {t[n // 2]:8.1f} us  p99 {t[n * 99 // 100]:8.1f} us  "
          f"worst {t[-1]:8.1f} us  total {sum(t) / 1000:8.2f} ms   [{name}]")
PY
