"""Writes a stress reference case for `rwkv-lab verify`: an ill-conditioned random RWKV-4
checkpoint and what three independent implementations compute for it.

The case is built like `tests/fixtures/reference-tiny` (same array names and layouts, see
`tests/fixtures/stress-k30/README.md`), but with key projections drawn at 30 times the usual
scale (so |k| reaches about 100), decays `time_decay` uniform in [-8, 6] (w = -exp(time_decay)
from -3.4e-4 to -403), C = 96, L = 4, V = 300, T = 200, B = 3. Such a case separates the
rounding of a correct implementation (which grows with |k|, |u|, T and depth) from a defect.

Arrays written (reference.safetensors):
  tokens               int64 [B, T]
  logits_exact_f64     float64 [B, T, V]  this script's NumPy forward, everything in float64,
                                          WKV in the explicit softmax form (paper eq. 14
                                          unrolled), checked against a float64 recurrence
  logits_whole         float64 [B, T, V]  Hugging Face transformers RwkvForCausalLM, model cast
                                          to float64, CPU (its WKV state stays float32)
  final_state_0..4     float64 [B, C, L]  Hugging Face's state after the sequence
  blinkdl_seq_logits0  float32 [T, V]     BlinkDL's `rwkv` package, strategy `cpu fp32`,
  blinkdl_rnn_logits0  float32 [T, V]     sequence 0, sequence mode / one token per call

Usage (from the repository root; needs numpy, torch, transformers, rwkv, safetensors):
  python scripts/make_stress_fixture.py --out tests/fixtures/stress-k30
"""
import argparse
import json
import os
import sys
import tempfile

import numpy as np

os.environ.setdefault("RWKV_JIT_ON", "0")
os.environ.setdefault("RWKV_CUDA_ON", "0")


def random_checkpoint(rng, V, C, L, F, key_scale, decay_lo, decay_hi, bonus):
    """A BlinkDL-named state dict, float32. Distributions follow reference-tiny: embedding
    N(0, 1), projections N(0, 1/d_in), LayerNorm scales U(0.5, 1.5) and biases U(-0.3, 0.3),
    token-shift mixes U(0, 1); here the key projections are multiplied by `key_scale`."""
    f32 = np.float32

    def lin(d_out, d_in, scale=1.0):
        return (rng.standard_normal((d_out, d_in)) * scale / np.sqrt(d_in)).astype(f32)

    def ln(prefix):
        sd[prefix + ".weight"] = rng.uniform(0.5, 1.5, C).astype(f32)
        sd[prefix + ".bias"] = rng.uniform(-0.3, 0.3, C).astype(f32)

    sd = {"emb.weight": rng.standard_normal((V, C)).astype(f32)}
    for l in range(L):
        p = f"blocks.{l}."
        if l == 0:
            ln(p + "ln0")
        ln(p + "ln1")
        ln(p + "ln2")
        for m in ["k", "v", "r"]:
            sd[p + f"att.time_mix_{m}"] = rng.uniform(0, 1, (1, 1, C)).astype(f32)
        sd[p + "att.time_decay"] = rng.uniform(decay_lo, decay_hi, C).astype(f32)
        sd[p + "att.time_first"] = rng.uniform(-bonus, bonus, C).astype(f32)
        sd[p + "att.key.weight"] = lin(C, C, key_scale)
        sd[p + "att.value.weight"] = lin(C, C)
        sd[p + "att.receptance.weight"] = lin(C, C)
        sd[p + "att.output.weight"] = lin(C, C)
        for m in ["k", "r"]:
            sd[p + f"ffn.time_mix_{m}"] = rng.uniform(0, 1, (1, 1, C)).astype(f32)
        sd[p + "ffn.key.weight"] = lin(F, C)
        sd[p + "ffn.receptance.weight"] = lin(C, C)
        sd[p + "ffn.value.weight"] = lin(C, F)
    ln("ln_out")
    sd["head.weight"] = lin(V, C)
    return sd


# ---------------------------------------------------------------------------------------
# The exact float64 forward (NumPy), written from the paper's equations (11)-(18).

def layer_norm(x, w, b, eps=1e-5):
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + eps) * w + b


def sigmoid(x):
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def shift(z):
    out = np.zeros_like(z)
    out[:, 1:] = z[:, :-1]
    return out


def wkv_softmax(w, u, k, v, block=16):
    """Explicit form: y_t = sum_i softmax_i(l_{t,i}) v_i with l_{t,i} = k_i + (t-1-i) w for
    i < t and l_{t,t} = u + k_t, the maximum subtracted per (t, channel). Channels in blocks
    of `block` to bound the [B, T, T, block] temporaries."""
    B, T, C = k.shape
    t = np.arange(T)
    dist = (t[:, None] - 1 - t[None, :]).astype(np.float64)[None, :, :, None]  # [1, t, i, 1]
    diag = np.eye(T, dtype=bool)[None, :, :, None]
    future = (t[None, :] > t[:, None])[None, :, :, None]
    y = np.zeros_like(k)
    for c0 in range(0, C, block):
        c = slice(c0, min(C, c0 + block))
        kc, vc = k[:, :, c], v[:, :, c]
        logits = kc[:, None, :, :] + dist * w[c]  # [B, t, i, c]
        logits = np.where(diag, (u[c] + kc)[:, None, :, :], logits)
        logits = np.where(future, -np.inf, logits)
        m = logits.max(axis=2, keepdims=True)
        e = np.exp(logits - m)
        y[:, :, c] = (e * vc[:, None, :, :]).sum(2) / e.sum(2)
    return y


def wkv_recurrence(w, u, k, v):
    """The stable recurrence (numerator aa, denominator bb, running max pp), float64."""
    B, T, C = k.shape
    aa = np.zeros((B, C))
    bb = np.zeros((B, C))
    pp = np.full((B, C), -1e300)
    y = np.zeros_like(k)
    for t in range(T):
        q = np.maximum(pp, u + k[:, t])
        e1, e2 = np.exp(pp - q), np.exp(u + k[:, t] - q)
        y[:, t] = (e1 * aa + e2 * v[:, t]) / (e1 * bb + e2)
        q = np.maximum(pp + w, k[:, t])
        e1, e2 = np.exp(pp + w - q), np.exp(k[:, t] - q)
        aa, bb, pp = e1 * aa + e2 * v[:, t], e1 * bb + e2, q
    return y


def exact_forward(sd, tokens, L, wkv=wkv_softmax):
    g = {k: v.astype(np.float64) for k, v in sd.items()}
    x = g["emb.weight"][tokens]
    kmax = []
    for l in range(L):
        p = f"blocks.{l}."
        if l == 0:
            x = layer_norm(x, g[p + "ln0.weight"], g[p + "ln0.bias"])
        z = layer_norm(x, g[p + "ln1.weight"], g[p + "ln1.bias"])
        zs = shift(z)
        mix = lambda m: z * g[p + m].reshape(-1) + zs * (1 - g[p + m].reshape(-1))
        k = mix("att.time_mix_k") @ g[p + "att.key.weight"].T
        v = mix("att.time_mix_v") @ g[p + "att.value.weight"].T
        r = mix("att.time_mix_r") @ g[p + "att.receptance.weight"].T
        kmax.append(float(np.abs(k).max()))
        w = -np.exp(g[p + "att.time_decay"])
        y = wkv(w, g[p + "att.time_first"], k, v)
        x = x + (sigmoid(r) * y) @ g[p + "att.output.weight"].T
        z = layer_norm(x, g[p + "ln2.weight"], g[p + "ln2.bias"])
        zs = shift(z)
        mix = lambda m: z * g[p + m].reshape(-1) + zs * (1 - g[p + m].reshape(-1))
        h = np.maximum(mix("ffn.time_mix_k") @ g[p + "ffn.key.weight"].T, 0) ** 2
        rr = sigmoid(mix("ffn.time_mix_r") @ g[p + "ffn.receptance.weight"].T)
        x = x + rr * (h @ g[p + "ffn.value.weight"].T)
    x = layer_norm(x, g["ln_out.weight"], g["ln_out.bias"])
    return x @ g["head.weight"].T, kmax


# ---------------------------------------------------------------------------------------
# Third-party runtimes

def hf_key(k):
    """BlinkDL name -> Hugging Face RwkvForCausalLM name."""
    if k == "emb.weight":
        return "rwkv.embeddings.weight"
    if k.startswith("ln_out."):
        return "rwkv." + k
    if k == "head.weight":
        return k
    k = k.replace("ln0", "pre_ln").replace(".att.", ".attention.").replace(".ffn.", ".feed_forward.")
    for a, b in [("time_mix_k", "time_mix_key"), ("time_mix_v", "time_mix_value"),
                 ("time_mix_r", "time_mix_receptance")]:
        k = k.replace(a, b)
    return "rwkv." + k


def hf_run(sd, tokens, V, C, L, F):
    import torch
    from transformers import RwkvConfig, RwkvForCausalLM

    cfg = RwkvConfig(vocab_size=V, hidden_size=C, num_hidden_layers=L, intermediate_size=F,
                     attention_hidden_size=C, context_length=4096, layer_norm_epsilon=1e-5,
                     rescale_every=0, tie_word_embeddings=False, bos_token_id=0,
                     eos_token_id=0)
    from transformers.models.rwkv import modeling_rwkv

    # every weight is loaded below; HF's own init divides by L - 1 and fails for L = 1
    init = modeling_rwkv.RwkvPreTrainedModel._init_weights
    modeling_rwkv.RwkvPreTrainedModel._init_weights = lambda self, module: None
    try:
        model = RwkvForCausalLM(cfg)
    finally:
        modeling_rwkv.RwkvPreTrainedModel._init_weights = init
    hf = {hf_key(k): torch.from_numpy(v.copy()) for k, v in sd.items()}
    missing, unexpected = model.load_state_dict(hf, strict=False)
    assert not missing and not unexpected, (missing, unexpected)
    model.eval()
    f32_state = {k: v.clone() for k, v in model.state_dict().items()}
    model = model.double()
    with torch.no_grad():
        out = model(torch.from_numpy(tokens), use_cache=True)
    logits = out.logits.numpy().astype(np.float64)
    state = [s.double().numpy() for s in out.state]
    return cfg, f32_state, logits, state


def blinkdl_run(sd, tokens0):
    import torch
    from rwkv.model import RWKV

    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "model")
        torch.save({k: torch.from_numpy(v.copy()) for k, v in sd.items()}, path + ".pth")
        model = RWKV(model=path, strategy="cpu fp32", verbose=False)
        seq, _ = model.forward(tokens0.tolist(), None, full_output=True)
        state, rnn = None, []
        for tok in tokens0.tolist():
            out, state = model.forward([tok], state)
            rnn.append(out.clone())
    return seq.float().numpy(), torch.stack(rnn).float().numpy()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--seed", type=int, default=30)
    ap.add_argument("--vocab", type=int, default=300)
    ap.add_argument("--d-model", type=int, default=96)
    ap.add_argument("--n-layers", type=int, default=4)
    ap.add_argument("--seq-len", type=int, default=200)
    ap.add_argument("--batch", type=int, default=3)
    ap.add_argument("--key-scale", type=float, default=30.0)
    ap.add_argument("--decay", type=float, nargs=2, default=[-8.0, 6.0])
    ap.add_argument("--bonus", type=float, default=3.0, help="time_first ~ U(-bonus, bonus)")
    ap.add_argument("--exact-only", action="store_true",
                    help="write only the exact float64 logits (for tolerance surveys)")
    a = ap.parse_args()
    V, C, L, T, B = a.vocab, a.d_model, a.n_layers, a.seq_len, a.batch
    F = 4 * C
    os.makedirs(a.out, exist_ok=True)
    for name in ["config.json", "model.safetensors", "reference.safetensors"]:
        if os.path.exists(os.path.join(a.out, name)):
            sys.exit(f"{os.path.join(a.out, name)} exists; remove it first (not overwritten)")

    rng = np.random.default_rng(a.seed)
    sd = random_checkpoint(rng, V, C, L, F, a.key_scale, a.decay[0], a.decay[1], a.bonus)
    tokens = rng.integers(0, V, (B, T), dtype=np.int64)

    exact, kmax = exact_forward(sd, tokens, L)
    exact_rec, _ = exact_forward(sd, tokens, L, wkv=wkv_recurrence)
    print(f"max |k| per layer: {', '.join(f'{k:.1f}' for k in kmax)}; max |logit| "
          f"{np.abs(exact).max():.2f}")
    print(f"exact: explicit softmax form vs float64 recurrence {np.abs(exact - exact_rec).max():.2e}")

    cfg, hf_sd, hf_logits, hf_state = hf_run(sd, tokens, V, C, L, F)
    arrays = {"tokens": tokens, "logits_exact_f64": exact}
    if not a.exact_only:
        print(f"Hugging Face float64 (float32 WKV state) vs exact "
              f"{np.abs(hf_logits - exact).max():.2e}")
        seq, rnn = blinkdl_run(sd, tokens[0])
        print(f"BlinkDL cpu fp32 sequence vs exact {np.abs(seq - exact[0]).max():.2e}, "
              f"one token per call vs exact {np.abs(rnn - exact[0]).max():.2e}")
        arrays["logits_whole"] = hf_logits
        arrays["blinkdl_seq_logits0"] = seq.astype(np.float32)
        arrays["blinkdl_rnn_logits0"] = rnn.astype(np.float32)
        for i, s in enumerate(hf_state):
            arrays[f"final_state_{i}"] = s

    import torch
    import transformers
    from importlib.metadata import version
    from safetensors.numpy import save_file

    cfg_json = {k: v for k, v in cfg.to_dict().items() if k in [
        "attention_hidden_size", "bos_token_id", "context_length", "eos_token_id",
        "hidden_size", "intermediate_size", "layer_norm_epsilon", "model_type",
        "num_hidden_layers", "rescale_every", "tie_word_embeddings", "transformers_version",
        "use_cache", "vocab_size"]}
    cfg_json["architectures"] = ["RwkvForCausalLM"]
    cfg_json["dtype"] = "float32"
    with open(os.path.join(a.out, "config.json"), "w") as f:
        json.dump(cfg_json, f, indent=2, sort_keys=True)
        f.write("\n")
    save_file({k: v.numpy() for k, v in hf_sd.items()}, os.path.join(a.out, "model.safetensors"))
    meta = {
        "generator": "scripts/make_stress_fixture.py " + " ".join(sys.argv[1:]),
        "versions": f"numpy {np.__version__}, torch {torch.__version__}, transformers "
                    f"{transformers.__version__}, rwkv {version('rwkv')}",
        "max_abs_k_per_layer": ",".join(f"{k:.3f}" for k in kmax),
    }
    save_file(arrays, os.path.join(a.out, "reference.safetensors"), metadata=meta)


if __name__ == "__main__":
    main()
