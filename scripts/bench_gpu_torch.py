#!/usr/bin/env python3
"""The PyTorch peers of issue 8's GPU targets, fp32 on one CUDA device, for the same run as
`scripts/gpu-check.sh` (which calls this when python3 has torch):

- decode: BlinkDL's `rwkv` runtime (strategy `cuda fp32`, no custom kernel) on a random
  checkpoint of the RWKV-4-Pile-169M shape (`make_random_blinkdl.py`), ms/token;
- prefill: a GPT-2 of the same shape (12 layers, d_model 768, vocabulary 50,277) through
  Hugging Face transformers with PyTorch's fused attention (SDPA), logits at every
  position, per T;
- matrix products: each shape once in full f32 (`allow_tf32 = False`, PyTorch's default)
  and once with TF32 tensor cores, compared with float64 on the same operands: what each
  kind of product's error looks like on this GPU.

    python3 scripts/bench_gpu_torch.py [--pth MODEL.pth] [--seq-lens 4096,16384]
        [--tokens 64] [--repeats 5]

Prints markdown. Times: median after warm-up, with `torch.cuda.synchronize()` before every
clock read.
"""
import argparse
import os
import statistics
import time

os.environ.setdefault("RWKV_JIT_ON", "1")
os.environ.setdefault("RWKV_CUDA_ON", "0")

import torch  # noqa: E402


def timed(f, repeats, warmup=2):
    for _ in range(warmup):
        f()
    torch.cuda.synchronize()
    xs = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        f()
        torch.cuda.synchronize()
        xs.append(time.perf_counter() - t0)
    return statistics.median(xs), min(xs), max(xs)


def decode(pth, tokens, warmup):
    from rwkv.model import RWKV

    path = pth[:-4] if pth.endswith(".pth") else pth
    model = RWKV(model=path, strategy="cuda fp32")
    state, tok, times = None, 0, []
    with torch.no_grad():
        for i in range(warmup + tokens):
            torch.cuda.synchronize()
            t0 = time.perf_counter()
            out, state = model.forward([tok], state)
            tok = int(torch.argmax(out))  # the logits reach the host, as sampling needs
            dt = time.perf_counter() - t0
            if i >= warmup:
                times.append(dt)
    ms = statistics.median(times) * 1e3
    print(f"| BlinkDL rwkv 0.8 `cuda fp32` (RWKV_CUDA_ON=0) | {ms:.2f} | {1e3 / ms:.0f} | "
          f"median of {len(times)} after {warmup} |")


def prefill(seq_lens, repeats):
    from transformers import GPT2Config, GPT2LMHeadModel

    cfg = GPT2Config(vocab_size=50277, n_positions=max(seq_lens), n_embd=768, n_layer=12, n_head=12,
                     attn_implementation="sdpa")
    model = GPT2LMHeadModel(cfg).float().cuda().eval()
    print(f"attention implementation: {model.config._attn_implementation}\n")
    print("| T | peer | seconds | [min, max] | tokens/s |")
    print("|---:|---|---:|---:|---:|")
    with torch.no_grad():
        for t in seq_lens:
            ids = torch.randint(0, 50277, (1, t), device="cuda")
            med, lo, hi = timed(lambda: model(ids, use_cache=False).logits, repeats)
            print(f"| {t} | GPT-2 169M shape, SDPA, fp32 | {med:.4f} | [{lo:.4f}, {hi:.4f}] | {t / med:.0f} |")
    del model
    torch.cuda.empty_cache()


def matmuls(repeats):
    shapes = [(1024, 768, 768), (1024, 768, 3072), (1024, 768, 50277)]
    print("| m x k x n | mode | ms | TFLOP/s | max abs err / max abs (vs f64) |")
    print("|---|---|---:|---:|---:|")
    g = torch.Generator(device="cpu").manual_seed(0)
    for m, k, n in shapes:
        a = (torch.rand(m, k, generator=g, dtype=torch.float64) * 2 - 1)
        b = (torch.rand(k, n, generator=g, dtype=torch.float64) * 2 - 1)
        a32, b32 = a.float().cuda(), b.float().cuda()
        ref = (a32.double() @ b32.double()).cpu()
        scale = ref.abs().max().item()
        for mode, tf32 in [("f32", False), ("tf32", True)]:
            torch.backends.cuda.matmul.allow_tf32 = tf32
            y = (a32 @ b32).double().cpu()
            med, _, _ = timed(lambda: a32 @ b32, repeats)
            err = (y - ref).abs().max().item() / scale
            print(f"| {m}x{k}x{n} | {mode} | {med * 1e3:.3f} | {2 * m * k * n / med / 1e12:.1f} | {err:.2e} |")
    torch.backends.cuda.matmul.allow_tf32 = False


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--pth", help="BlinkDL checkpoint for the decode peer (skipped without)")
    p.add_argument("--seq-lens", default="4096,16384")
    p.add_argument("--tokens", type=int, default=64)
    p.add_argument("--warmup", type=int, default=8)
    p.add_argument("--repeats", type=int, default=5)
    a = p.parse_args()
    torch.manual_seed(0)
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    print(f"# PyTorch peers on {torch.cuda.get_device_name(0)}\n")
    print(f"torch {torch.__version__}, CUDA {torch.version.cuda}, fp32 with TF32 off unless a row says tf32.\n")
    print("## Decode at the 169M shape\n")
    print("| peer | ms/token | tokens/s | steps |")
    print("|---|---:|---:|---|")
    if a.pth:
        try:
            decode(a.pth, a.tokens, a.warmup)
        except Exception as e:  # a missing package must not cost the other rows
            print(f"| BlinkDL rwkv | failed: {type(e).__name__}: {e} | | |")
    print("\n## Prefill at the 169M shape (logits at every position)\n")
    try:
        prefill([int(x) for x in a.seq_lens.split(",")], a.repeats)
    except Exception as e:
        print(f"\nprefill failed: {type(e).__name__}: {e}")
    print("\n## Matrix products: full f32 against TF32\n")
    matmuls(a.repeats)


if __name__ == "__main__":
    main()
