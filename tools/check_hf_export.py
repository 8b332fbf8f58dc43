#!/usr/bin/env python3
"""Loads a directory written by grpo_export with transformers (pinned, tools/requirements.txt)
and checks that its logits on the fixture's input ids equal the fixture's expected logits
(computed by transformers from the original checkpoint, or grpo's own logits of what it exported:
grpo_export --expected-logits): the export is a faithful HF model.

The error is measured per position against that position's logit scale, max(1, max |expected|):
rounding differences between two fp32 forwards (grpo's and transformers', or two CPUs' GEMM
blockings) enter through the shared hidden state and grow with its size, not with each logit's.
The default tolerance, 2e-5 of the scale, is ~170 fp32 ulps of the largest logit: a 30-layer
135M model's two forwards differ by up to ~5e-6 of it (SmolLM2, 2026-12-04, Intel and AMD), while a
wrong, transposed or permuted tensor moves logits by a sizeable fraction of their scale.

usage: check_hf_export.py EXPORTED_DIR FIXTURE_DIR [tolerance]
"""
import sys

import torch
import transformers
from safetensors.torch import load_file


def main():
    exported, fixture = sys.argv[1], sys.argv[2]
    tol = float(sys.argv[3]) if len(sys.argv) > 3 else 2e-5
    exp = load_file(f"{fixture}/expected.safetensors")
    model = transformers.AutoModelForCausalLM.from_pretrained(exported, dtype=torch.float32).eval()
    with torch.no_grad():
        logits = model(input_ids=exp["input_ids"]).logits.float()
    expected = exp["logits"].float()
    scale = expected.abs().amax(-1).clamp(min=1.0)
    diff = (logits - expected).abs().amax(-1)
    worst = (diff / scale).max().item()
    print(f"{exported}: {type(model).__name__}, max |logits - expected| = {diff.max().item():.3g}, "
          f"at most {worst:.3g} of the position's logit scale (tolerance {tol})")
    return 0 if worst <= tol else 1


if __name__ == "__main__":
    sys.exit(main())
