#!/usr/bin/env python3
"""Greedy decoding by grpo_generate must produce exactly the tokens transformers' generate()
(pinned, tools/requirements.txt) produces from the same Hugging Face checkpoint: prompts of
different lengths generated in one batch (left padding, KV cache) and an EOS token that stops some
of them early.

usage: check_hf_generate.py GRPO_GENERATE MODEL_DIR
"""
import json
import subprocess
import sys

import torch
import transformers

MAX_NEW = 12


def hf_greedy(model, prompt, eos):
    with torch.no_grad():
        out = model.generate(torch.tensor([prompt]), do_sample=False, max_new_tokens=MAX_NEW,
                             eos_token_id=eos, pad_token_id=0, attention_mask=torch.ones(1, len(prompt), dtype=torch.long))
    return out[0, len(prompt):].tolist()


def main():
    binary, model_dir = sys.argv[1], sys.argv[2]
    model = transformers.AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    vocab = model.config.vocab_size
    g = torch.Generator().manual_seed(3)
    prompts = [torch.randint(0, vocab, (n,), generator=g).tolist() for n in (1, 4, 9, 17, 6)]
    # EOS: a token greedy decoding of the first prompt emits mid-way (without an EOS), so at least
    # one row stops early and the others may not.
    eos = hf_greedy(model, prompts[0], eos=None)[MAX_NEW // 2]
    expected = [hf_greedy(model, p, eos) for p in prompts]
    cmd = [binary, "--model", model_dir, "--ids", "--eos-id", str(eos), "--max-new-tokens", str(MAX_NEW),
           "--temperature", "0", "--batch-size", str(len(prompts))]
    for p in prompts:
        cmd += ["--prompt", json.dumps(p)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.splitlines()
    got = []
    for line in out:
        c = json.loads(line)["completions"][0]
        got.append(c["token_ids"] + ([eos] if c["finish"] == "stop" else []))
    stopped = sum(1 for e in expected if e and e[-1] == eos)
    ok = got == expected
    print(f"{model_dir}: {type(model).__name__}, {len(prompts)} prompts, eos {eos}, "
          f"{stopped} stopped early: {'identical' if ok else 'DIFFERENT'}")
    if not ok:
        for i, (a, b) in enumerate(zip(got, expected)):
            print(f"  prompt {i}: grpo {a}\n            hf   {b}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
