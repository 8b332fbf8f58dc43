#!/usr/bin/env bash
# Builds the libFuzzer targets with clang (ASan + UBSan) in build/fuzz and runs one of them, or
# all, for FUZZ_SECONDS (default 60) each on a copy of its committed seed corpus.
#   tests/fuzz/run.sh [target]                   # CI: 60 s per target
#   FUZZ_SECONDS=3600 tests/fuzz/run.sh fuzz_tokenizer_encode   # a longer run
# A crash leaves its input as crash-* in build/fuzz/work/<target>/ and fails the run.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
build=${GRPO_FUZZ_BUILD:-$root/build/fuzz}
seconds=${FUZZ_SECONDS:-60}
if [ ! -f "$build/CMakeCache.txt" ]; then
  CXX=clang++ cmake -S "$root/tests/fuzz" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
fi
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(fuzz_safetensors_header fuzz_tokenizer_json fuzz_tokenizer_encode fuzz_math_verify fuzz_reward_format
                                     fuzz_config)
cmake --build "$build" --target "${targets[@]}" >/dev/null
declare -A seeds=([fuzz_safetensors_header]=safetensors [fuzz_tokenizer_json]=tokenizer_json
                  [fuzz_tokenizer_encode]=tokenizer_text [fuzz_math_verify]=math [fuzz_reward_format]=format
                  [fuzz_config]=config)
for t in "${targets[@]}"; do
  work="$build/work/$t"
  rm -rf "$work" && mkdir -p "$work/corpus"
  cp "$root/tests/fuzz/corpus/${seeds[$t]}/"* "$work/corpus/"
  echo "== $t: ${seconds}s"
  (cd "$work" && "$build/$t" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=4096 \
     -print_final_stats=1 corpus 2>&1 | tail -n 12)
done
