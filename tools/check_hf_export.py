#!/usr/bin/env python3
"""Loads a directory written by grpo_export with transformers (pinned, tools/requirements.txt)
and checks that its logits on the fixture's input ids equal the fixture's expected logits
(computed by transformers from the original checkpoint): the export is a faithful HF model.

usage: check_hf_export.py EXPORTED_DIR FIXTURE_DIR [tolerance]
"""
import sys

import torch
import transformers
from safetensors.torch import load_file


def main():
    exported, fixture = sys.argv[1], sys.argv[2]
    tol = float(sys.argv[3]) if len(sys.argv) > 3 else 1e-4
    exp = load_file(f"{fixture}/expected.safetensors")
    model = transformers.AutoModelForCausalLM.from_pretrained(exported, dtype=torch.float32).eval()
    with torch.no_grad():
        logits = model(input_ids=exp["input_ids"]).logits.float()
    diff = (logits - exp["logits"]).abs().max().item()
    print(f"{exported}: {type(model).__name__}, max |logits - expected| = {diff:.3g} (tolerance {tol})")
    return 0 if diff <= tol else 1


if __name__ == "__main__":
    sys.exit(main())
