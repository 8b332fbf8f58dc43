"""Reads a grpo run's TensorBoard files (RUN_DIR/tb) with the real `tensorboard` package (pinned,
tools/requirements.txt) and checks them against metrics.jsonl and eval.jsonl: every numeric field is
a scalar under its tag (train/, time/, moe/, pretrain/, sft/, eval/; train/run_dir.h), with one
event per step, at the line's step, equal to the line's value in float32 (TensorBoard's
simple_value); and the resolved config and command line are text summaries.

Usage: check_tensorboard.py RUN_DIR [--min-grpo-steps N]
Exit 0 when everything matches; otherwise prints the differences and exits 1.
"""
import glob
import json
import os
import struct
import sys

from tensorboard.backend.event_processing import event_accumulator


def f32(x):
    return struct.unpack("f", struct.pack("f", x))[0]


def expected_scalars(run):
    """{tag: [(step, value)]} from the two JSONL files, by the rules of train/run_dir.h."""
    out = {}

    def add(tag, step, v):
        out.setdefault(tag, []).append((step, f32(v)))

    def numeric(v):
        return isinstance(v, (int, float)) and not isinstance(v, bool)

    for line in open(os.path.join(run, "metrics.jsonl")):
        j = json.loads(line)
        stage = j.get("stage", "")
        grpo = stage in ("grpo", "")
        section = "train" if grpo else stage
        for k, v in j.items():
            if k in ("step", "wall_time"):
                continue
            if numeric(v):
                tag = f"{section}/{k}"
                if grpo and k.startswith("time_"):
                    tag = "time/" + k[5:]
                if grpo and k.startswith("moe_"):
                    tag = "moe/" + k[4:]
                add(tag, j["step"], v)
            elif grpo and k == "moe" and isinstance(v, dict):
                for layer, stats in v.items():
                    for stat in ("max_over_mean", "min_over_mean"):
                        if numeric(stats.get(stat)):
                            add(f"moe/{layer}/{stat}", j["step"], stats[stat])
    for line in open(os.path.join(run, "eval.jsonl")):
        j = json.loads(line)
        for k, v in j.items():
            if k not in ("step", "wall_time") and numeric(v):
                add(f"eval/{k}", j["step"], v)
    return out


def main():
    run = sys.argv[1]
    min_grpo = int(sys.argv[sys.argv.index("--min-grpo-steps") + 1]) if "--min-grpo-steps" in sys.argv else 1
    files = glob.glob(os.path.join(run, "tb", "events.out.tfevents.*"))
    errors = []
    if len(files) != 1:
        errors.append(f"expected one event file in {run}/tb, found {files}")
    acc = event_accumulator.EventAccumulator(os.path.join(run, "tb"),
                                             size_guidance={event_accumulator.SCALARS: 0,
                                                            event_accumulator.TENSORS: 0})
    acc.Reload()
    want = expected_scalars(run)
    have = set(acc.Tags()["scalars"])
    for tag in sorted(set(want) | have):
        if tag not in have:
            errors.append(f"{tag}: in the JSONL files, not in TensorBoard")
            continue
        if tag not in want:
            errors.append(f"{tag}: in TensorBoard, not in the JSONL files")
            continue
        got = [(e.step, e.value) for e in acc.Scalars(tag)]
        if got != want[tag]:
            errors.append(f"{tag}: TensorBoard has {got[:6]}{'...' if len(got) > 6 else ''} ({len(got)} events), "
                          f"the JSONL files {want[tag][:6]} ({len(want[tag])} lines)")
    grpo_steps = [s for s, _ in want.get("train/reward_mean", [])]
    if len(grpo_steps) < min_grpo or len(set(grpo_steps)) != len(grpo_steps):
        errors.append(f"GRPO steps in metrics.jsonl: {grpo_steps} (at least {min_grpo}, each once)")
    texts = set(acc.Tags()["tensors"])
    for tag in ("config", "command_line"):
        if tag not in texts:
            errors.append(f"text summary {tag} missing (tensors: {sorted(texts)})")
    if "config" in texts:
        text = acc.Tensors("config")[-1].tensor_proto.string_val[0].decode()
        if "rollout_steps" not in text:
            errors.append(f"the config text does not hold the resolved config: {text[:200]!r}")
    for e in errors:
        print("MISMATCH", e)
    n = sum(len(v) for v in want.values())
    print(f"{len(want)} scalar tags, {n} values, {len(texts)} text summaries: "
          f"{'all equal to metrics.jsonl / eval.jsonl' if not errors else f'{len(errors)} problems'}")
    sys.exit(1 if errors else 0)


if __name__ == "__main__":
    main()
