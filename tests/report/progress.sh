#!/usr/bin/env bash
# grpo_train's console output (core/progress.h). Off a terminal: the plain lines of before the
# progress line existed, byte for byte apart from numbers and times (tests/fixtures/progress/
# plain_lines.txt, digits masked). On a pseudo-terminal (`script`): one live line per stage, redrawn
# in place, that ends as one line on the screen, with the log lines above it. --quiet: nothing.
# Usage: progress.sh BIN_DIR WORK_DIR
set -euo pipefail
bin=$1 work=$2
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
rm -rf "$work"
mkdir -p "$work"
args=(--config "$root/configs/demo.yaml" --set run.dir="$work/run" --set run.threads=1 --set pretrain.steps=100
      --set grpo.rollout_steps=3 --set grpo.prompts_per_step=4 --set grpo.group_size=4 --set eval.every=2
      --set eval.num_prompts=8 --set checkpoint.every=2 --fresh)
mask() { sed -e "s#$work/run#RUN#g" | python3 -c "import re,sys; sys.stdout.write(re.sub(r'[+-]?\d+', '#', sys.stdin.read()))"; }

"$bin/grpo_train" "${args[@]}" > "$work/plain.txt" 2>&1
mask < "$work/plain.txt" | diff -u "$root/tests/fixtures/progress/plain_lines.txt" - ||
  { echo "FAILED: off a terminal the output changed (above)"; exit 1; }

cmd=$(printf '%q ' "$bin/grpo_train" "${args[@]}")
TERM=xterm script -qec "stty cols 160 2>/dev/null; $cmd" "$work/tty.raw" > /dev/null  # a known width
python3 - "$work/tty.raw" <<'PY'
import re, sys
raw = open(sys.argv[1], "rb").read().decode()
body = raw[raw.index("\n") + 1:raw.rindex("Script done")]  # script's own header and footer
# the screen a terminal keeps: \r goes back to the line's start, ESC[K erases to its end
screen, line, col, redraws = [], [], 0, 0
i = 0
while i < len(body):
    if body.startswith("\x1b[K", i):
        del line[col:]
        i += 3
        continue
    c = body[i]
    i += 1
    if c == "\r":
        col = 0
        redraws += 1
    elif c == "\n":
        screen.append("".join(line))
        line, col = [], 0
    else:
        line[col:col + 1] = [c]
        col += 1
if line:
    screen.append("".join(line))
errors = []
stage_lines = [l for l in screen if re.match(r"(pretrain|grpo) +\d+/\d+ ", l)]
if [l.split()[0] for l in stage_lines] != ["pretrain", "grpo"]:
    errors.append(f"expected one finished line per stage, found {stage_lines}")
else:
    if not re.match(r"pretrain 100/100 \S+ 100% \| \d+:\d\d elapsed, 0:00 left \| loss \d", stage_lines[0]):
        errors.append(f"pretrain's last line: {stage_lines[0]!r}")
    if not re.match(r"grpo 3/3 \S+ 100% \| .* tok/s \| reward ", stage_lines[1]):
        errors.append(f"grpo's last line: {stage_lines[1]!r}")
if any(re.search(r"\] (pretrain|grpo) +\d+/\d+ \|", l) for l in screen):
    errors.append("per-step log lines printed on a terminal")
for want in ("eval     0 (base)", "eval     2 (grpo)", "checkpoint", "done: 3 rollout steps"):
    if not any(want in l for l in screen):
        errors.append(f"log line '{want}' missing from the screen")
draws = len(re.findall(r"\r(?:pretrain|grpo) ", body))
if draws < 100:
    errors.append(f"the live line was drawn {draws} times; expected at least once per step")
for e in errors:
    print("FAILED:", e)
print(f"terminal: {len(screen)} lines on the screen, the live line drawn {draws} times")
print("\n".join(screen))
sys.exit(1 if errors else 0)
PY

"$bin/grpo_train" "${args[@]}" --quiet > "$work/quiet.txt" 2>&1
[ ! -s "$work/quiet.txt" ] || { echo "FAILED: --quiet printed:"; cat "$work/quiet.txt"; exit 1; }
echo "--quiet: nothing printed"
