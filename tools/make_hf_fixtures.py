#!/usr/bin/env python3
"""Generates tests/fixtures/hf/<family>/: tiny random Hugging Face checkpoints (Llama, Qwen2,
Qwen3) saved by transformers, and expected.safetensors with input ids and the logits that
transformers' forward pass gives for them, in fp32 and in bf16 (the checkpoint loaded with
dtype=bfloat16). The C++ tests load the checkpoint directory and must reproduce the fp32 logits, in
a full forward pass and in incremental decoding with the KV cache, and the bf16 ones bit for bit.

Run (pinned versions in tools/requirements.txt):
    $(tools/setup_reference.sh) tools/make_hf_fixtures.py
"""
import json
import os
import sys

import torch
import transformers
from safetensors.torch import save_file

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "tests", "fixtures", "hf")

COMMON = dict(vocab_size=96, hidden_size=32, intermediate_size=56, num_hidden_layers=2,
              num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64)

FAMILIES = {
    "llama": (transformers.LlamaConfig, transformers.LlamaForCausalLM,
              dict(rope_theta=5000.0, rms_norm_eps=1e-5, tie_word_embeddings=False)),
    "qwen2": (transformers.Qwen2Config, transformers.Qwen2ForCausalLM,
              dict(rope_theta=1000000.0, rms_norm_eps=1e-6, tie_word_embeddings=True,
                   use_sliding_window=False)),
    "qwen3": (transformers.Qwen3Config, transformers.Qwen3ForCausalLM,
              dict(rope_theta=1000000.0, rms_norm_eps=1e-6, tie_word_embeddings=False,
                   head_dim=16, use_sliding_window=False)),
}

# the rest of the folder, made by other scripts or taken as they are
README_OTHERS = """
`deepseek_v3_qlora/`, `deepseek_v3_noqlora/` (tiny DeepSeek-V3 MoE checkpoints, with each MoE
layer's routing in `expected.safetensors`) and `../fp8/` (block-scaled FP8 weights and transformers'
dequantisation of them) come from `$(tools/setup_reference.sh) tools/make_moe_fixtures.py`.

`../deepseek_v3_base_config.json` is the `config.json` of
[deepseek-ai/DeepSeek-V3-Base](https://huggingface.co/deepseek-ai/DeepSeek-V3-Base) (model license:
DeepSeek License; code MIT), minus its `auto_map`: the real 671B architecture, used to check that
grpo parses it and counts 671B parameters.
"""


def cpu_name():
    try:
        with open("/proc/cpuinfo") as f:
            return next(l.split(":", 1)[1].strip() for l in f if l.startswith("model name"))
    except (OSError, StopIteration):
        return "unknown CPU"


def main():
    torch.manual_seed(0)
    for name, (cfg_cls, model_cls, extra) in FAMILIES.items():
        cfg = cfg_cls(**COMMON, **extra)
        model = model_cls(cfg).eval()
        with torch.no_grad():  # every parameter random and O(0.1-1), norms and biases included
            for pname, p in model.named_parameters():
                if "norm" in pname:
                    p.uniform_(0.5, 1.5)
                elif pname.endswith("bias"):
                    p.normal_(0.0, 0.5)
                else:
                    p.normal_(0.0, 0.15)
        out_dir = os.path.join(OUT, name)
        os.makedirs(out_dir, exist_ok=True)
        model.save_pretrained(out_dir, safe_serialization=True)
        ids = torch.randint(0, cfg.vocab_size, (2, 11), generator=torch.Generator().manual_seed(1))
        with torch.no_grad():
            logits = model(input_ids=ids).logits.float()
            # bf16 as users load it (from_pretrained(dtype=bfloat16): the RoPE frequencies stay
            # fp32, unlike model.to(bfloat16)), logits rounded to bf16 and stored as fp32
            bf16 = model_cls.from_pretrained(out_dir, dtype=torch.bfloat16).eval()
            logits_bf16 = bf16(input_ids=ids).logits.float()
        save_file({"input_ids": ids.contiguous(), "logits": logits.contiguous(),
                   "logits_bf16": logits_bf16.contiguous()},
                  os.path.join(out_dir, "expected.safetensors"),
                  metadata={"transformers": transformers.__version__, "torch": torch.__version__,
                            "cpu_capability": torch.backends.cpu.get_cpu_capability()})
        print(f"{name}: {sum(p.numel() for p in model.parameters())} parameters -> {out_dir}")
    with open(os.path.join(OUT, "README.md"), "w") as f:
        f.write("# Hugging Face fixtures\n\nTiny random checkpoints saved by transformers "
                f"{transformers.__version__} (torch {torch.__version__}) and the logits its forward pass "
                "gives (`expected.safetensors`: fp32, and bf16 with the checkpoint loaded in bf16).\n"
                "The bf16 logits are this machine's (LibTorch CPU capability "
                f"{torch.backends.cpu.get_cpu_capability()}, {cpu_name()}): on another CPU transformers' "
                "own bf16 logits differ in the last bits, so the unit test compares them within bf16 "
                "rounding and `hf_roundtrip.bf16_live.*` checks bit-equality against transformers run "
                "on the testing machine (tools/hf_bf16_logits.py).\n"
                "Generated by `$(tools/setup_reference.sh) tools/make_hf_fixtures.py`; do not edit by hand.\n"
                + README_OTHERS)


if __name__ == "__main__":
    sys.exit(main())
