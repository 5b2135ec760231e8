"""Calibrates the condition-aware tolerances of `rwkv-lab verify` (crates/rwkv/src/verify.rs).

For random RWKV-4 models over a grid of conditioning (key scale 1-60, T 32-400, L 1-6, decays
in [-4, 2] or [-8, 6], C 32 or 64), writes the case as in scripts/make_stress_fixture.py
(exact float64 NumPy forward, Hugging Face, BlinkDL), runs `rwkv-lab verify --checkpoint ...
--reference ... --json` in f32 and f64, and appends every comparison to a JSON-lines file.

`--analyze FILE` then prints, for each algorithm class and quantity, the largest ratio
err / (eps * g(T) * K) over the rows where that class's rounding dominates (the other side is
float64), with err = max(max_abs / max(1, max|ref|), rel_rms), g(T) = T^p of the class and
K = sum over layers of (10 + max|k| + max|u|). The factors in the code are twice these.

Usage (from the repository root, after `cargo build --release`):
  python scripts/tolerance_survey.py --out /tmp/survey.jsonl --cases 30 --seed 2
  python scripts/tolerance_survey.py --analyze /tmp/survey.jsonl
"""
import argparse
import itertools
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_stress_fixture import (blinkdl_run, exact_forward, hf_key, hf_run,  # noqa: E402
                                 random_checkpoint)

EPS = {"f32": 2.0 ** -24, "f64": 2.0 ** -53}
C0 = 10.0
EXPONENT = {"block": 0.25, "recurrent": 0.75, "f32_state": 0.75}
ORACLE = "recurrent@ndarray-f64"


def run_case(binary, ks, T, L, dec, C, seed, V=300, B=2):
    from safetensors.numpy import save_file

    rng = np.random.default_rng(seed)
    F = 4 * C
    sd = random_checkpoint(rng, V, C, L, F, ks, dec[0], dec[1], 3.0)
    tokens = rng.integers(0, V, (B, T), dtype=np.int64)
    exact, _ = exact_forward(sd, tokens, L)
    _, hf_sd, hf_logits, hf_state = hf_run(sd, tokens, V, C, L, F)
    seq, rnn = blinkdl_run(sd, tokens[0])
    d = tempfile.mkdtemp(prefix="rwkv-survey-")
    try:
        cfg = dict(model_type="rwkv", vocab_size=V, hidden_size=C, num_hidden_layers=L,
                   intermediate_size=F, attention_hidden_size=C, layer_norm_epsilon=1e-5,
                   rescale_every=0)
        with open(os.path.join(d, "config.json"), "w") as f:
            json.dump(cfg, f)
        save_file({k: v.numpy() for k, v in hf_sd.items()}, os.path.join(d, "model.safetensors"))
        arrays = {"tokens": tokens, "logits_exact_f64": exact, "logits_whole": hf_logits,
                  "blinkdl_seq_logits0": seq.astype(np.float32),
                  "blinkdl_rnn_logits0": rnn.astype(np.float32)}
        for i, s in enumerate(hf_state):
            arrays[f"final_state_{i}"] = s
        save_file(arrays, os.path.join(d, "reference.safetensors"))
        out = {"seed": seed, "key_scale": ks, "T": T, "L": L, "decay": dec, "C": C}
        for dtype in ["f32", "f64"]:
            r = subprocess.run([binary, "verify", "--checkpoint", d, "--reference",
                                os.path.join(d, "reference.safetensors"), "--dtype", dtype,
                                "--json"], capture_output=True, text=True)
            if r.returncode not in (0, 1):
                raise RuntimeError(r.stderr)
            js = json.loads(r.stdout)
            out[dtype] = {
                "conditioning": js["conditioning"],
                "comparisons": [{k: c[k] for k in ["a", "b", "quantity", "max_abs", "rel_rms",
                                                    "max_ref", "status"]}
                                for c in js["comparisons"]],
            }
        return out
    finally:
        shutil.rmtree(d)


def klass(name):
    """Algorithm class of a run name or reference array."""
    if name == "logits_exact_f64":
        return "block"
    if name.startswith("logits_") or name.startswith("final_state_"):
        return "f32_state"
    if name.startswith("blinkdl_"):
        return "recurrent"
    if name.startswith("parallel") or name.startswith("chunked") or "(parallel)" in name \
            or "(chunked" in name:
        return "block"
    return "recurrent"


def analyze(path):
    rows = [json.loads(line) for line in open(path)]
    print(f"{len(rows)} cases")
    worst = {}
    for case in rows:
        for dtype in ["f32", "f64"]:
            cond = case[dtype]["conditioning"]
            T = cond["time"]
            K = sum(C0 + l["max_k"] + l["max_u"] for l in cond["layers"])
            for c in case[dtype]["comparisons"]:
                if c["status"] == "skipped" or c["max_abs"] is None:
                    continue
                kind = "logits" if c["quantity"].startswith("logits") else "state"
                err = max(c["max_abs"] / max(1.0, c["max_ref"]), c["rel_rms"])
                # which side's rounding dominates: the float32 one against float64
                if dtype == "f32" and c["b"] in ("logits_exact_f64", ORACLE):
                    side, eps = klass(c["a"]), EPS["f32"]
                elif dtype == "f64" and klass(c["b"]) in ("f32_state",) or \
                        (dtype == "f64" and c["b"].startswith("blinkdl_")):
                    side, eps = klass(c["b"]), EPS["f32"]
                else:
                    continue
                ratio = err / (eps * T ** EXPONENT[side] * K)
                key = (side, kind)
                if ratio > worst.get(key, (0,))[0]:
                    worst[key] = (ratio, case["key_scale"], T, case["L"], case["C"], dtype,
                                  c["a"], c["b"])
    for key, (ratio, *where) in sorted(worst.items()):
        print(f"{key[0]:10} {key[1]:7} largest ratio {ratio:.4f} -> factor {2 * ratio:.3f}   "
              f"(key scale {where[0]}, T {where[1]}, L {where[2]}, C {where[3]}, {where[4]}, "
              f"{where[5]} vs {where[6]})")
    fails = [(case["seed"], d, c["a"], c["b"], c["quantity"])
             for case in rows for d in ["f32", "f64"] for c in case[d]["comparisons"]
             if c["status"] == "fail"]
    print(f"comparisons failing with the tolerances of the binary that ran: {len(fails)}")
    for f in fails[:20]:
        print("  ", f)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out")
    ap.add_argument("--analyze")
    ap.add_argument("--cases", type=int, default=30)
    ap.add_argument("--seed", type=int, default=2)
    ap.add_argument("--binary", default="target/release/rwkv-lab")
    a = ap.parse_args()
    if a.analyze:
        analyze(a.analyze)
        return
    grid = list(itertools.product([1, 10, 30, 60], [32, 128, 400], [1, 3, 6],
                                  [(-4.0, 2.0), (-8.0, 6.0)], [32, 64]))
    random.Random(a.seed).shuffle(grid)
    with open(a.out, "a") as out:
        for i, (ks, T, L, dec, C) in enumerate(grid[:a.cases]):
            row = run_case(os.path.abspath(a.binary), ks, T, L, dec, C, 1000 * a.seed + i)
            out.write(json.dumps(row) + "\n")
            out.flush()
            print(f"{i}: key scale {ks} T {T} L {L} decay {dec} C {C}", flush=True)


if __name__ == "__main__":
    main()
