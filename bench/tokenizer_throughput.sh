#!/usr/bin/env bash
# Single-thread encode throughput, grpo's C++ tokenizer vs HF `tokenizers` (pinned,
# tools/requirements.txt), same corpus (tests/fixtures/tokenizers/corpus.jsonl), same files.
# Usage: bench/tokenizer_throughput.sh [repeats]
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
repeats=${1:-20}
"$root/scripts/build.sh" grpo_bench_tokenizer >/dev/null
py=$("$root/tools/setup_reference.sh")
corpus="$root/tests/fixtures/tokenizers/corpus.jsonl"
for name in deepseek_v3 qwen3; do
  tj="$root/tests/fixtures/tokenizers/$name/tokenizer.json"
  echo "== $name"
  "$root/build/bin/grpo_bench_tokenizer" "$tj" "$corpus" "$repeats"
  RAYON_NUM_THREADS=1 TOKENIZERS_PARALLELISM=false "$py" - "$tj" "$corpus" "$repeats" <<'PY'
import json, sys, time, tokenizers
tok = tokenizers.Tokenizer.from_file(sys.argv[1])
corpus = [json.loads(l) for l in open(sys.argv[2], encoding="utf-8")]
reps = int(sys.argv[3]); nbytes = sum(len(s.encode()) for s in corpus)
ntok = sum(len(tok.encode(s, add_special_tokens=False).ids) for s in corpus)  # warm-up
t0 = time.perf_counter()
for _ in range(reps):
    for s in corpus:
        tok.encode(s, add_special_tokens=False)
sec = time.perf_counter() - t0
print(f"hf tokenizers {nbytes * reps / sec / 1e6:6.2f} MB/s  {ntok * reps / sec:10.0f} tokens/s  "
      f"(encode() per string, 1 thread, {sec:.2f} s)")
t0 = time.perf_counter()
for _ in range(reps):
    tok.encode_batch(corpus, add_special_tokens=False)
sec = time.perf_counter() - t0
print(f"hf tokenizers {nbytes * reps / sec / 1e6:6.2f} MB/s  {ntok * reps / sec:10.0f} tokens/s  "
      f"(encode_batch, RAYON_NUM_THREADS=1, {sec:.2f} s)")
PY
done
