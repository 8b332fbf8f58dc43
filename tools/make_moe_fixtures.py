#!/usr/bin/env python3
"""Generates tests/fixtures/hf/deepseek_v3_*/: tiny random DeepSeek-V3 checkpoints saved by
transformers (pinned, tools/requirements.txt) and expected.safetensors with, from transformers'
DeepseekV3ForCausalLM in fp32:
  input_ids, logits                    the forward pass
  logits_bf16                          the same with the checkpoint loaded in bf16
  router.<layer>.indices / .weights    each MoE layer's routing (DeepseekV3TopkRouter outputs)
  router_bf16.<layer>.indices          the bf16 model's routing (a near-tie in the router may
                                       break another way in bf16, and on another CPU)
Configs cover: several experts, n_group > 1, first_k_dense_replace >= 1, with and without
q_lora_rank, YaRN (mscale) and plain RoPE, interleaved and rotate-half RoPE, a non-zero
e_score_correction_bias, and experts with identical router rows (ties).

Also tests/fixtures/fp8/: block-scaled FP8 weights (128x128 blocks, `weight_scale_inv`) and their
dequantisation by transformers' reference (_dequantize_fp8_weight).

Run (pinned versions in tools/requirements.txt):
    $(tools/setup_reference.sh) tools/make_moe_fixtures.py
"""
import json
import os

import torch
import transformers
from safetensors.torch import save_file
from transformers.integrations.finegrained_fp8 import _dequantize_fp8_weight

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "tests", "fixtures", "hf")

COMMON = dict(vocab_size=96, hidden_size=32, intermediate_size=48, moe_intermediate_size=16,
              num_hidden_layers=3, num_attention_heads=4, num_key_value_heads=4,
              kv_lora_rank=16, qk_nope_head_dim=8, qk_rope_head_dim=4, v_head_dim=12,
              max_position_embeddings=64, rms_norm_eps=1e-6, tie_word_embeddings=False,
              num_nextn_predict_layers=0)

CONFIGS = {
    # q_lora, YaRN with mscale, interleaved RoPE, 4 groups choose 2, normalised top-k weights
    "deepseek_v3_qlora": dict(q_lora_rank=24, n_routed_experts=8, n_shared_experts=1,
                              num_experts_per_tok=3, n_group=4, topk_group=2,
                              first_k_dense_replace=1, norm_topk_prob=True,
                              routed_scaling_factor=2.5, rope_interleave=True,
                              rope_parameters=dict(rope_type="yarn", rope_theta=10000.0, factor=4.0,
                                                   original_max_position_embeddings=16,
                                                   beta_fast=32, beta_slow=1, mscale=1.0,
                                                   mscale_all_dim=1.0)),
    # no q_lora, plain RoPE in the rotate-half layout, 2 shared experts, un-normalised weights
    "deepseek_v3_noqlora": dict(q_lora_rank=None, n_routed_experts=12, n_shared_experts=2,
                                num_experts_per_tok=2, n_group=3, topk_group=1,
                                first_k_dense_replace=2, num_hidden_layers=4, norm_topk_prob=False,
                                routed_scaling_factor=1.5, rope_interleave=False,
                                rope_parameters=dict(rope_type="default", rope_theta=5000.0)),
}


def make_model(name, extra):
    cfg = transformers.DeepseekV3Config(**{**COMMON, **extra})
    model = transformers.DeepseekV3ForCausalLM(cfg).eval()
    with torch.no_grad():
        for pname, p in model.named_parameters():
            if "norm" in pname:
                p.uniform_(0.5, 1.5)
            elif pname.endswith("gate.weight"):
                p.normal_(0.0, 0.5)   # router: scores spread over (0, 1)
            else:
                p.normal_(0.0, 0.15)
        for lname, layer in enumerate(model.model.layers):
            gate = getattr(layer.mlp, "gate", None)
            if gate is None:
                continue
            gate.e_score_correction_bias.normal_(0.0, 0.1)
            # Ties: two experts with identical router rows and biases score exactly the same.
            gate.weight[1] = gate.weight[0]
            gate.e_score_correction_bias[1] = gate.e_score_correction_bias[0]
    return cfg, model


def main():
    torch.manual_seed(0)
    for name, extra in CONFIGS.items():
        cfg, model = make_model(name, extra)
        out_dir = os.path.join(OUT, name)
        os.makedirs(out_dir, exist_ok=True)
        model.save_pretrained(out_dir, safe_serialization=True)
        routing = {}

        def record(m, prefix, weights):
            hooks = []
            for i, layer in enumerate(m.model.layers):
                gate = getattr(layer.mlp, "gate", None)
                if gate is None:
                    continue
                def hook(mod, args, out, i=i):
                    _, w, idx = out
                    routing[f"{prefix}.{i}.indices"] = idx.contiguous()
                    if weights:
                        routing[f"{prefix}.{i}.weights"] = w.float().contiguous()
                hooks.append(gate.register_forward_hook(hook))
            return hooks

        ids = torch.randint(0, cfg.vocab_size, (2, 13), generator=torch.Generator().manual_seed(1))
        hooks = record(model, "router", True)
        with torch.no_grad():
            logits = model(input_ids=ids).logits.float()
        for h in hooks:
            h.remove()
        with torch.no_grad():  # bf16 as users load it (the router's correction bias stays fp32)
            bf16 = transformers.AutoModelForCausalLM.from_pretrained(out_dir, dtype=torch.bfloat16).eval()
            hooks = record(bf16, "router_bf16", False)
            logits_bf16 = bf16(input_ids=ids).logits.float()
        for h in hooks:
            h.remove()
        save_file({"input_ids": ids.contiguous(), "logits": logits.contiguous(),
                   "logits_bf16": logits_bf16.contiguous(), **routing},
                  os.path.join(out_dir, "expected.safetensors"),
                  metadata={"transformers": transformers.__version__, "torch": torch.__version__,
                            "cpu_capability": torch.backends.cpu.get_cpu_capability()})
        n = sum(p.numel() for p in model.parameters())
        print(f"{name}: {n} parameters, routing of {len(routing) // 3} MoE layers -> {out_dir}")

    # FP8 block-scaled weights and the reference dequantisation.
    fp8_dir = os.path.join(ROOT, "tests", "fixtures", "fp8")
    os.makedirs(fp8_dir, exist_ok=True)
    g = torch.Generator().manual_seed(2)
    tensors, expected = {}, {}
    for wname, (rows, cols) in {"a": (256, 384), "b": (200, 130), "c": (64, 300)}.items():
        w = (torch.randn(rows, cols, generator=g) * 100).to(torch.float8_e4m3fn)
        s = torch.rand((rows + 127) // 128, (cols + 127) // 128, generator=g) * 0.01 + 1e-4
        tensors[f"{wname}.weight"] = w
        tensors[f"{wname}.weight_scale_inv"] = s
        expected[f"{wname}.weight"] = _dequantize_fp8_weight(w.clone(), s, [128, 128], torch.float32)
    save_file(tensors, os.path.join(fp8_dir, "fp8.safetensors"))
    save_file(expected, os.path.join(fp8_dir, "expected.safetensors"),
              metadata={"transformers": transformers.__version__, "torch": torch.__version__})
    print(f"fp8: {len(expected)} weights -> {fp8_dir}")


if __name__ == "__main__":
    main()
