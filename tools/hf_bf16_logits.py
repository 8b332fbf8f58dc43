#!/usr/bin/env python3
"""Runs transformers' bf16 forward pass on THIS machine and writes its logits, for the live
bit-for-bit check `hf_roundtrip.bf16_live.<family>` (tests/CMakeLists.txt).

Why live: bf16 results depend on the CPU. LibTorch picks its vectorised kernels by the CPU's
capability (AVX2, AVX-512, AMX: exp, sigmoid and reductions differ in the last fp32 bits), and a
last-bit fp32 difference changes a bf16 rounding now and then, which the next layers carry on. So
"grpo's bf16 logits equal transformers' bf16 logits" can only be checked with both sides computed
on the same machine, by the same LibTorch version (tools/requirements.txt pins the same torch as
TORCH_VERSION), with the same number of threads. The stored fixtures
(tests/fixtures/hf/*/expected.safetensors) hold the generating machine's bf16 logits; the unit
test compares with those at a tolerance (tests/unit/model/hf_checkpoint_test.cpp).

Usage (the pinned reference environment):
    $(tools/setup_reference.sh) tools/hf_bf16_logits.py tests/fixtures/hf/qwen3 /tmp/qwen3_bf16.safetensors

The output holds `input_ids` (the fixture's), `logits_bf16` (fp32 tensor of bf16 values, as the
fixture stores them) and, in its metadata, the torch version, its CPU capability and thread count.
"""
import os
import sys

import torch
import transformers
from safetensors.torch import load_file, save_file


def main():
    if len(sys.argv) != 3:
        sys.exit("usage: hf_bf16_logits.py HF_FIXTURE_DIR OUT.safetensors")
    src, out = sys.argv[1], sys.argv[2]
    threads = int(os.environ.get("GRPO_THREADS", "1"))
    torch.set_num_threads(threads)
    ids = load_file(os.path.join(src, "expected.safetensors"))["input_ids"]
    # bf16 as users load it (from_pretrained(dtype=bfloat16)), as tools/make_hf_fixtures.py does
    model = transformers.AutoModelForCausalLM.from_pretrained(src, dtype=torch.bfloat16).eval()
    with torch.no_grad():
        logits = model(input_ids=ids).logits.float()
    save_file({"input_ids": ids.contiguous(), "logits_bf16": logits.contiguous()}, out,
              metadata={"torch": torch.__version__, "transformers": transformers.__version__,
                        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
                        "threads": str(threads)})
    print(f"{src}: transformers bf16 logits {tuple(logits.shape)} on "
          f"{torch.backends.cpu.get_cpu_capability()}, {threads} thread(s) -> {out}")


if __name__ == "__main__":
    sys.exit(main())
