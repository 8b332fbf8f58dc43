#!/usr/bin/env bash
# MoE layer forward and forward+backward on CPU: grpo's ops (bench/moe_bench.cpp) vs transformers'
# DeepseekV3MoE (pinned, tools/requirements.txt) with each of its expert implementations, same
# shapes, same threads, fp32, random weights (routing is data-dependent only through the scores).
# Usage: bench/moe_layer.sh [threads] [reps]
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
threads=${1:-2}
reps=${2:-10}
"$root/scripts/build.sh" grpo_bench_moe >/dev/null
py=$("$root/tools/setup_reference.sh")
# tokens hidden moe_inter experts top_k n_group topk_group shared
for shape in "2048 512 256 64 6 8 4 1" "4096 256 128 16 4 4 2 1"; do
  echo "== tokens hidden moe_inter experts top_k n_group topk_group shared = $shape, $threads threads"
  # shellcheck disable=SC2086
  "$root/build/bin/grpo_bench_moe" $shape "$reps" "$threads"
  # shellcheck disable=SC2086
  OMP_NUM_THREADS=$threads "$py" - $shape "$reps" "$threads" <<'PY' 2>/dev/null
import sys, time, torch, transformers
N, H, I, E, k, G, TG, S, reps, threads = map(int, sys.argv[1:11])
torch.set_num_threads(threads)
torch.manual_seed(0)
for impl in ("eager", "grouped_mm"):  # batched_mm gathers a weight copy per token: OOM here
    cfg = transformers.DeepseekV3Config(hidden_size=H, moe_intermediate_size=I, n_routed_experts=E,
                                        num_experts_per_tok=k, n_group=G, topk_group=TG,
                                        n_shared_experts=S, routed_scaling_factor=2.5)
    cfg._experts_implementation = impl
    moe = transformers.models.deepseek_v3.modeling_deepseek_v3.DeepseekV3MoE(cfg)
    with torch.no_grad():
        moe.gate.weight.normal_(0, 0.5); moe.gate.e_score_correction_bias.normal_(0, 0.1)
        moe.experts.gate_up_proj.normal_(0, 0.05); moe.experts.down_proj.normal_(0, 0.05)
    x = torch.randn(1, N, H)
    def run(backward):
        for _ in range(3):
            xi = x.clone().requires_grad_(backward); y = moe(xi)
            if backward: y.sum().backward()
        t0 = time.perf_counter()
        for _ in range(reps):
            if backward:
                xi = x.clone().requires_grad_(True); moe(xi).sum().backward()
            else:
                with torch.no_grad(): moe(x)
        return (time.perf_counter() - t0) * 1000 / reps
    try:
        f, fb = run(False), run(True)
        print(f"hf {impl:<12} forward {f:8.2f} ms   forward+backward {fb:8.2f} ms")
    except Exception as e:
        print(f"hf {impl:<12} not available on CPU: {type(e).__name__}: {str(e)[:80]}")
PY
done
