"""PyTorch's own CPU scaled_dot_product_attention, causal, forward + backward: bf16 inputs against
the same inputs upcast to fp32 (output rounded back), and one-token decode queries the same way.
The numbers behind the fp32 cut-off of attend() in src/model/attention.cpp (docs/performance.md).
Run with a Python torch pinned to TORCH_VERSION: bench/precision_cpu.sh runs it when it finds one."""
import time

import torch
import torch.nn.functional as F

torch.set_num_threads(2)


def bench(f, n):
    for _ in range(2):
        f()
    t0 = time.perf_counter()
    for _ in range(n):
        f()
    return (time.perf_counter() - t0) / n * 1e3


print("| [batch, heads, keys, head dim] | train: bf16 kernel | train: fp32 on upcast inputs "
      "| decode: bf16 kernel | decode: fp32 on upcast inputs |")
print("| --- | --- | --- | --- | --- |")
for b, h, t, d in [(128, 4, 20, 32), (16, 8, 128, 64), (8, 8, 256, 64), (4, 16, 256, 128), (2, 16, 512, 64)]:
    torch.manual_seed(0)
    res = []
    for up in (False, True):
        src = [torch.randn(b, h, t, d, dtype=torch.bfloat16, requires_grad=True) for _ in range(3)]

        def train():
            q, k, v = (x.float() for x in src) if up else src
            F.scaled_dot_product_attention(q, k, v, is_causal=True).to(torch.bfloat16).sum().backward()

        res.append(bench(train, 5))
    for up in (False, True):
        q1, k, v = (torch.randn(b, h, n, d, dtype=torch.bfloat16) for n in (1, t, t))

        def decode():
            q, kk, vv = (x.float() for x in (q1, k, v)) if up else (q1, k, v)
            return F.scaled_dot_product_attention(q, kk, vv).to(torch.bfloat16)

        res.append(bench(decode, 20))
    print(f"| {b}, {h}, {t}, {d} | {res[0]:.1f} ms | {res[1]:.1f} ms | {res[2]:.3f} ms | {res[3]:.3f} ms |")
