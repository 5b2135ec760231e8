#!/usr/bin/env python3
"""Decode speed of BlinkDL's `rwkv` PyTorch runtime (RNN mode, one token at a time, fp32 CPU).

The peer of `rwkv-lab bench --decode`: run both on the same checkpoint in the same session.

    V/bin/python scripts/bench_decode_torch.py MODEL.pth [--tokens 64] [--warmup 8] [--threads N]

Prints one line: ms/token (median of the timed steps) and tokens/s.
"""
import argparse
import os
import statistics
import time

os.environ.setdefault("RWKV_JIT_ON", "1")
os.environ.setdefault("RWKV_CUDA_ON", "0")

import torch  # noqa: E402


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model")
    p.add_argument("--tokens", type=int, default=64)
    p.add_argument("--warmup", type=int, default=8)
    p.add_argument("--threads", type=int, default=0)
    a = p.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    from rwkv.model import RWKV

    path = a.model[:-4] if a.model.endswith(".pth") else a.model
    model = RWKV(model=path, strategy="cpu fp32")
    state = None
    tok = 0
    times = []
    with torch.no_grad():
        for i in range(a.warmup + a.tokens):
            t0 = time.perf_counter()
            out, state = model.forward([tok], state)
            tok = int(torch.argmax(out))
            dt = time.perf_counter() - t0
            if i >= a.warmup:
                times.append(dt)
    ms = statistics.median(times) * 1e3
    print(f"blinkdl-rwkv decode: {ms:.2f} ms/token ({1e3 / ms:.1f} tokens/s), median of {len(times)}, "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads")


if __name__ == "__main__":
    main()
