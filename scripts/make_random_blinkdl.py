#!/usr/bin/env python3
"""Writes a random RWKV-4 checkpoint in BlinkDL's layout (a torch.save of a dict of tensors).

Used for speed comparisons only (the weights are random; shapes and keys are those of
RWKV-4-Pile-169M by default: 12 layers, d_model 768, vocabulary 50,277).

    V/bin/python scripts/make_random_blinkdl.py OUT.pth [--layers 12] [--d-model 768] [--vocab 50277] [--seed 0]
"""
import argparse

import torch


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("out")
    p.add_argument("--layers", type=int, default=12)
    p.add_argument("--d-model", type=int, default=768)
    p.add_argument("--vocab", type=int, default=50277)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()
    g = torch.Generator().manual_seed(a.seed)
    C, V, F = a.d_model, a.vocab, 4 * a.d_model

    def rnd(*shape, scale=1.0):
        return (torch.randn(*shape, generator=g) * scale).float()

    def uni(*shape, lo=0.0, hi=1.0):
        return (torch.rand(*shape, generator=g) * (hi - lo) + lo).float()

    sd = {"emb.weight": rnd(V, C, scale=1e-2)}
    for i in range(a.layers):
        b = f"blocks.{i}."
        if i == 0:
            sd[b + "ln0.weight"] = 1 + rnd(C, scale=0.1)
            sd[b + "ln0.bias"] = rnd(C, scale=0.1)
        for ln in ("ln1", "ln2"):
            sd[b + ln + ".weight"] = 1 + rnd(C, scale=0.1)
            sd[b + ln + ".bias"] = rnd(C, scale=0.1)
        for k in ("time_mix_k", "time_mix_v", "time_mix_r"):
            sd[b + "att." + k] = uni(1, 1, C)
        sd[b + "att.time_decay"] = uni(C, lo=-6.0, hi=1.0)
        sd[b + "att.time_first"] = uni(C, lo=-1.0, hi=1.0)
        for k in ("key", "value", "receptance", "output"):
            sd[b + f"att.{k}.weight"] = rnd(C, C, scale=C**-0.5)
        for k in ("time_mix_k", "time_mix_r"):
            sd[b + "ffn." + k] = uni(1, 1, C)
        sd[b + "ffn.key.weight"] = rnd(F, C, scale=C**-0.5)
        sd[b + "ffn.receptance.weight"] = rnd(C, C, scale=C**-0.5)
        sd[b + "ffn.value.weight"] = rnd(C, F, scale=F**-0.5)
    sd["ln_out.weight"] = 1 + rnd(C, scale=0.1)
    sd["ln_out.bias"] = rnd(C, scale=0.1)
    sd["head.weight"] = rnd(V, C, scale=C**-0.5)
    torch.save(sd, a.out)


if __name__ == "__main__":
    main()
