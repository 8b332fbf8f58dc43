#!/usr/bin/env bash
# Rollout throughput and KV memory on CPU: the rollout engine (continuous batching, paged KV cache,
# prefix sharing) against the lock-step reference engine and against transformers' generate()
# (pinned, tools/requirements.txt; KV cache, same threads), on a random Qwen2-shaped model saved by
# transformers (same weights, same prompts, P prompts x G samples, temperature 1).
#   (a) engine vs transformers: every response max_new tokens (no EOS)
#   (c) engine vs lock-step: R1-like heavy-tailed response lengths forced by a stop rule
#   prefix sharing on and off at G = 16 with long prompts
#   (d) engine vs transformers on the models of bench/grpo_vs_trl.sh (hidden 256 with the Qwen3
#       tokenizer's 151,669-token vocabulary or a 2,048-token BPE; the real SmolLM2-135M-Instruct):
#       8 prompts x 8 samples x 64 tokens
# Usage: bench/rollout.sh [threads] [all|d]    (time on a quiet machine: check `uptime`)
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
threads=${1:-2}
sections=${2:-all}
"$root/scripts/build.sh" grpo_bench_rollout >/dev/null
py=$("$root/tools/setup_reference.sh")
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
bench="$root/build/bin/grpo_bench_rollout"

# model: Qwen2-shaped, 8 layers, hidden 512, GQA 8/2 heads, vocab 8192 (29M parameters), fp32;
# prompts(P, len) -> $work/prompts_P_len.json
"$py" - "$work" <<'PY'
import json, sys, torch, transformers
work = sys.argv[1]
torch.manual_seed(0)
cfg = transformers.Qwen2Config(vocab_size=8192, hidden_size=512, intermediate_size=1408, num_hidden_layers=8,
                               num_attention_heads=8, num_key_value_heads=2, max_position_embeddings=4096,
                               tie_word_embeddings=False)
model = transformers.Qwen2ForCausalLM(cfg)
model.save_pretrained(f"{work}/model")
g = torch.Generator().manual_seed(1)
for P, n in ((8, 64), (16, 64), (4, 512)):
    json.dump({"prompts": [torch.randint(2, 8192, (n,), generator=g).tolist() for _ in range(P)]},
              open(f"{work}/prompts_{P}_{n}.json", "w"))
PY
m="$work/model"

# transformers' generate() on MODEL: PROMPTS_JSON's prompts x G samples, R new tokens each (forced)
hf_generate() {
OMP_NUM_THREADS=$threads "$py" - "$1" "$2" "$3" "$4" "$threads" <<'PY' 2>/dev/null
import json, sys, time, torch, transformers
model_dir, prompts, G, R, threads = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
torch.set_num_threads(threads)
model = transformers.AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
ids = torch.tensor(json.load(open(prompts))["prompts"])  # equal lengths: no padding
torch.manual_seed(0)
with torch.no_grad():
    t0 = time.perf_counter()
    out = model.generate(ids, attention_mask=torch.ones_like(ids), do_sample=True, temperature=1.0, top_k=0, top_p=1.0,
                         num_return_sequences=G, max_new_tokens=R, min_new_tokens=R, pad_token_id=0)
    sec = time.perf_counter() - t0
tokens = (out.shape[1] - ids.shape[1]) * out.shape[0]
print(json.dumps({"engine": "transformers generate()", "rows": out.shape[0], "tokens": tokens, "seconds": sec,
                  "tokens_per_s": tokens / sec, "transformers": transformers.__version__, "torch": torch.__version__}))
PY
}

if [ "$sections" = all ]; then
echo "== (a) 8 prompts x 16 samples, prompt 64, 128 new tokens each, temperature 1, $threads threads"
"$bench" "$m" "$work/prompts_8_64.json" engine 16 128 full 0 1 "$threads"
hf_generate "$m" "$work/prompts_8_64.json" 16 128

echo "== (c) 16 prompts x 16 samples, prompt 64, heavy-tailed lengths up to 1024 tokens, 64 running"
"$bench" "$m" "$work/prompts_16_64.json" lockstep 16 1024 heavy 64 1 "$threads"
"$bench" "$m" "$work/prompts_16_64.json" engine 16 1024 heavy 64 1 "$threads"

echo "== prefix sharing: 4 prompts of 512 tokens x 16 samples, heavy-tailed lengths up to 256, 64 running"
"$bench" "$m" "$work/prompts_4_512.json" engine 16 256 heavy 64 0 "$threads"
"$bench" "$m" "$work/prompts_4_512.json" engine 16 256 heavy 64 1 "$threads"
fi

# The models of bench/grpo_vs_trl.sh (4-layer Qwen2 shape, hidden 256), the issue #24 workload
for v in qwen3 small smollm2; do
  d="$work/$v"
  mkdir -p "$d"
  info=$("$py" "$root/bench/grpo_vs_trl.py" setup "$d" "$(case $v in small) echo 2048;; *) echo "$v";; esac)" 2>/dev/null | tail -1)
  vocab=$(python3 -c "import json; print(json.loads('$info')['vocab'])")
  python3 - "$vocab" >"$d/prompts.json" <<'PY'
import json, random, sys
random.seed(2)
print(json.dumps({"prompts": [[random.randrange(int(sys.argv[1])) for _ in range(32)] for _ in range(8)]}))
PY
  echo "== (d) $v: $info; 8 prompts x 8 samples, prompt 32, 64 new tokens each, temperature 1, $threads threads"
  "$bench" "$d/model" "$d/prompts.json" engine 8 64 full 0 1 "$threads"
  hf_generate "$d/model" "$d/prompts.json" 8 64
done
