"""The peer of bench/allreduce_bench.cpp: PyTorch DistributedDataParallel (Gloo, CPU) on the same
transformer shape and loss, one process per rank (torchrun-style environment, started by
bench/allreduce_overlap.sh).

Model: what grpo builds for the benchmark's ModelConfig (Llama layout: vocabulary 8192, untied LM
head, hidden H, H/64 query heads and H/128 key-value heads of 64, SwiGLU MLP of 11H/4, RMSNorm,
RoPE), written in plain PyTorch; the parameter count is printed to compare with grpo's. Loss: the
sum of the log-probs of the input tokens. DDP with 16 MB buckets (its all-reduces start during the
backward pass, as grpo's overlapped buckets do). Timed: forward + backward + gradient all-reduce,
median of REPS steps after a warm-up; and forward + backward alone (no_sync).

usage: python bench/ddp_overlap.py HIDDEN LAYERS TOKENS REPS THREADS BUCKET_MB
"""
import os
import sys
import time

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn


class RMSNorm(nn.Module):
    def __init__(self, dim, eps=1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


def rope(x, cos, sin):
    half = x.shape[-1] // 2
    rot = torch.cat([-x[..., half:], x[..., :half]], -1)
    return x * cos + rot * sin


class Block(nn.Module):
    def __init__(self, h, heads, kv_heads, inter):
        super().__init__()
        self.heads, self.kv_heads, self.hd = heads, kv_heads, h // heads
        self.input_layernorm = RMSNorm(h)
        self.q = nn.Linear(h, heads * self.hd, bias=False)
        self.k = nn.Linear(h, kv_heads * self.hd, bias=False)
        self.v = nn.Linear(h, kv_heads * self.hd, bias=False)
        self.o = nn.Linear(heads * self.hd, h, bias=False)
        self.post_attention_layernorm = RMSNorm(h)
        self.gate = nn.Linear(h, inter, bias=False)
        self.up = nn.Linear(h, inter, bias=False)
        self.down = nn.Linear(inter, h, bias=False)

    def forward(self, x, cos, sin):
        b, t, _ = x.shape
        a = self.input_layernorm(x)
        q = self.q(a).view(b, t, self.heads, self.hd).transpose(1, 2)
        k = self.k(a).view(b, t, self.kv_heads, self.hd).transpose(1, 2)
        v = self.v(a).view(b, t, self.kv_heads, self.hd).transpose(1, 2)
        q, k = rope(q, cos, sin), rope(k, cos, sin)
        rep = self.heads // self.kv_heads
        k, v = k.repeat_interleave(rep, 1), v.repeat_interleave(rep, 1)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True).transpose(1, 2).reshape(b, t, -1)
        x = x + self.o(y)
        m = self.post_attention_layernorm(x)
        return x + self.down(F.silu(self.gate(m)) * self.up(m))


class Model(nn.Module):
    def __init__(self, vocab, h, layers, tokens):
        super().__init__()
        self.embed = nn.Embedding(vocab, h)
        self.layers = nn.ModuleList(Block(h, h // 64, h // 128, h * 11 // 4) for _ in range(layers))
        self.norm = RMSNorm(h)
        self.lm_head = nn.Linear(h, vocab, bias=False)
        inv = 1.0 / (10000.0 ** (torch.arange(0, 64, 2).float() / 64))
        f = torch.outer(torch.arange(tokens).float(), inv)
        emb = torch.cat([f, f], -1)
        self.register_buffer("cos", emb.cos()[None, None], persistent=False)
        self.register_buffer("sin", emb.sin()[None, None], persistent=False)

    def forward(self, ids):
        x = self.embed(ids)
        for layer in self.layers:
            x = layer(x, self.cos, self.sin)
        logits = self.lm_head(self.norm(x)).float()
        return torch.log_softmax(logits, -1).gather(-1, ids.unsqueeze(-1)).sum()


def main():
    if len(sys.argv) != 7:
        sys.exit(__doc__)
    h, layers, tokens, reps, threads, bucket_mb = map(int, sys.argv[1:])
    torch.set_num_threads(threads)
    dist.init_process_group("gloo")
    torch.manual_seed(0)
    model = Model(8192, h, layers, tokens)
    ddp = nn.parallel.DistributedDataParallel(model, bucket_cap_mb=bucket_mb)
    ids = torch.randint(8192, (1, tokens))

    def step(sync):
        for p in model.parameters():
            p.grad = None
        dist.barrier()
        t0 = time.perf_counter()
        if sync:
            ddp(ids).backward()
        else:
            with ddp.no_sync():
                ddp(ids).backward()
        return (time.perf_counter() - t0) * 1000

    ms = {}
    for name, sync in (("forward + backward only (no_sync)", False), ("DDP, buckets overlapped with backward", True)):
        step(sync)
        ms[name] = sorted(step(sync) for _ in range(reps))[reps // 2]
    if dist.get_rank() == 0:
        n = sum(p.numel() for p in model.parameters())
        print(f"PyTorch {torch.__version__} DDP (gloo), {dist.get_world_size()} processes, {threads} threads each: "
              f"{n / 1e6:.1f}M parameters, {bucket_mb} MB buckets, {tokens} tokens per rank, median of {reps} steps")
        for name, v in ms.items():
            print(f"  {name:<40} {v:9.1f} ms")
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
