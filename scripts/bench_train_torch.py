#!/usr/bin/env python3
"""Training throughput of the PyTorch peers, for side-by-side numbers with
`rwkv-lab bench-train` (issue 7 §1, issue 11 item 3). A comparison, not a test.

    python3 -m venv V && V/bin/pip install torch transformers numpy
    V/bin/python scripts/bench_train_torch.py [--steps 5] [--threads 2]

Shapes: vocabulary 256, 4 layers, batch 16 x 256 tokens, d_model 128 and 256; AdamW
(betas 0.9/0.99, eps 1e-8, weight decay 0.1), float32, one warm-up step, then the mean
of the timed steps (forward, backward, optimizer step, loss read). Models: Hugging Face
GPT-2 (heads of width 32, 4x MLP) and Hugging Face RWKV-4 (its own CPU WKV loop).
"""
import argparse
import time

import torch
from transformers import GPT2Config, GPT2LMHeadModel, RwkvConfig, RwkvForCausalLM


def bench(model, steps, batch, seq_len, vocab):
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, betas=(0.9, 0.99), eps=1e-8,
                            weight_decay=0.1)
    g = torch.Generator().manual_seed(0)
    model.train()

    def step():
        x = torch.randint(0, vocab, (batch, seq_len + 1), generator=g)
        out = model(input_ids=x[:, :-1], labels=x[:, :-1])
        opt.zero_grad(set_to_none=True)
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        return out.loss.item()

    step()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    dt = (time.perf_counter() - t0) / steps
    return dt, batch * seq_len / dt


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--d-model", type=int, nargs="+", default=[128, 256])
    ap.add_argument("--models", default="gpt2,rwkv")
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    vocab, layers, batch, seq_len = 256, 4, 16, 256
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; batch {batch} x {seq_len}, "
          f"vocab {vocab}, {layers} layers, {a.steps} timed steps after 1 warm-up step")
    for d in a.d_model:
        for name in a.models.split(","):
            torch.manual_seed(0)
            if name == "gpt2":
                m = GPT2LMHeadModel(GPT2Config(vocab_size=vocab, n_positions=seq_len, n_embd=d,
                                               n_layer=layers, n_head=max(1, d // 32),
                                               resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0))
            else:
                m = RwkvForCausalLM(RwkvConfig(vocab_size=vocab, context_length=seq_len,
                                               hidden_size=d, num_hidden_layers=layers,
                                               attention_hidden_size=d, intermediate_size=4 * d))
            n = sum(p.numel() for p in m.parameters())
            dt, tps = bench(m, a.steps, batch, seq_len, vocab)
            print(f"d_model {d:>4} {('torch-' + name):<12} {n:>9} params  {dt:>8.3f} s/step  {tps:>9.0f} tokens/s")


if __name__ == "__main__":
    main()
