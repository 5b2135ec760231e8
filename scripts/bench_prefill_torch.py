#!/usr/bin/env python3
"""Prefill and dense-product speed of the PyTorch peers, fp32 CPU: Hugging Face RWKV-4
(`RwkvForCausalLM`, random weights) over one sequence of T tokens (logits at every
position), and `torch.matmul` on the model's products. The peer of `rwkv-lab bench
--only prefill,gemm`; run both in the same session (scripts/bench_cpu_compare.sh).

    V/bin/python scripts/bench_prefill_torch.py [--seq-lens 1024,4096] [--d-model 512]
        [--layers 6] [--vocab 256] [--repeats 3] [--decode-shape 50277,768]

Prints markdown rows: T, seconds (median), tokens/s; then m x k x n, ms, GFLOP/s.
"""
import argparse
import statistics
import time

import torch


def timed(f, repeats, warmup=1):
    for _ in range(warmup):
        f()
    xs = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        f()
        xs.append(time.perf_counter() - t0)
    return statistics.median(xs), min(xs), max(xs)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seq-lens", default="1024,4096")
    p.add_argument("--d-model", type=int, default=512)
    p.add_argument("--layers", type=int, default=6)
    p.add_argument("--vocab", type=int, default=256)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--decode-shape", default="50277,768", help="V,C of the decode shape's products (m = 1)")
    a = p.parse_args()
    torch.manual_seed(0)
    from transformers import RwkvConfig, RwkvForCausalLM

    cfg = RwkvConfig(vocab_size=a.vocab, hidden_size=a.d_model, num_hidden_layers=a.layers,
                     attention_hidden_size=a.d_model, intermediate_size=4 * a.d_model,
                     context_length=1 << 20)
    model = RwkvForCausalLM(cfg).float().eval()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; transformers RWKV-4 "
          f"V={a.vocab} C={a.d_model} L={a.layers}, fp32, median of {a.repeats} after 1 warm-up\n")
    print("| T | peer | seconds | [min, max] | tokens/s |")
    print("|---:|---|---:|---:|---:|")
    with torch.no_grad():
        for t in [int(x) for x in a.seq_lens.split(",")]:
            ids = torch.randint(0, a.vocab, (1, t))
            med, lo, hi = timed(lambda: model(ids, use_cache=False).logits, a.repeats)
            print(f"| {t} | HF RWKV-4 (transformers) | {med:.3f} | [{lo:.3f}, {hi:.3f}] | {t / med:.0f} |")
    print()
    dv, dc = [int(x) for x in a.decode_shape.split(",")]
    m = max(int(x) for x in a.seq_lens.split(","))
    c, v = a.d_model, a.vocab
    shapes = [("att.key (C→C)", 1, dc, dc), ("ffn.key (C→4C)", 1, dc, 4 * dc), ("ffn.value (4C→C)", 1, 4 * dc, dc),
              ("head (C→V)", 1, dc, dv), ("att.key (C→C)", m, c, c), ("ffn.key (C→4C)", m, c, 4 * c),
              ("ffn.value (4C→C)", m, 4 * c, c), ("head (C→V)", m, c, v)]
    print("| product | m x k x n | torch ms | torch GFLOP/s |")
    print("|---|---|---:|---:|")
    with torch.no_grad():
        for name, mm, k, n in shapes:
            x = torch.rand(mm, k) * 2 - 1
            w = torch.rand(k, n) * 2 - 1
            med, _, _ = timed(lambda: x @ w, a.repeats)
            print(f"| {name} | {mm}x{k}x{n} | {med * 1e3:.2f} | {2 * mm * k * n / med / 1e9:.1f} |")


if __name__ == "__main__":
    main()
