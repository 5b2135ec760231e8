"""Calibrates the condition-aware tolerances of `rwkv-lab verify` (crates/rwkv/src/verify.rs).

For random RWKV-4 models over a grid of conditioning (key scale 1-60, T 32-400, L 1-6, decays
in [-4, 2] or [-8, 6], C 32 or 64), writes the case as in scripts/make_stress_fixture.py
(exact float64 NumPy forward, Hugging Face, BlinkDL), runs `rwkv-lab verify --checkpoint ...
--reference ... --json` in f32 and f64, and appends every comparison to a JSON-lines file.

`--analyze FILE` then prints, for each algorithm class, the largest ratio
err / (eps * g(T) * K) over the logits comparisons where that class's rounding dominates (the
other side is float64), and over all state comparisons (one factor for every class), with
err = max(max_abs / max(1, max|ref|), rel_rms), g(T) = T^p of the class and
K = sum over layers of (6 sqrt(C) + max|k| + max|u|): the factors in the code are twice these.
It also prints, per reference, the largest err / tol under the code's factors.

Results of the runs behind the constants (30 cases each; gzip'd JSON lines):
  scripts/survey/calibrate.jsonl.gz   --grid calibrate --seed 2
  scripts/survey/wide.jsonl.gz        --grid wide --seed 3 (validation)

Usage (from the repository root, after `cargo build --release`):
  python scripts/tolerance_survey.py --out /tmp/survey.jsonl --cases 30 --seed 2
  python scripts/tolerance_survey.py --analyze /tmp/survey.jsonl
"""
import argparse
import gzip
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
# the tolerance model of crates/rwkv/src/verify.rs: K = sum_l (6 sqrt(C) + max|k_l| + max|u_l|),
# g(T) = T^p per algorithm class, tol = (F_a eps_a g_a + F_b eps_b g_b) K
DENSE = 6.0
EXPONENT = {"block": 0.25, "recurrent": 0.75, "f32_state": 0.75}
FACTOR = {("block", "logits"): 0.11, ("recurrent", "logits"): 0.06,
          ("f32_state", "logits"): 0.004, ("block", "state"): 0.13,
          ("recurrent", "state"): 0.13, ("f32_state", "state"): 0.13}
ORACLE = "recurrent@ndarray-f64"
GRIDS = {
    # calibration: key scale, T, L, decay range, C
    "calibrate": ([1, 10, 30, 60], [32, 128, 400], [1, 3, 6], [(-4.0, 2.0), (-8.0, 6.0)],
                  [32, 64]),
    # validation on longer sequences, deeper and wider models
    "wide": ([1, 10, 30, 60], [32, 200, 600], [1, 4, 8], [(-4.0, 2.0), (-8.0, 6.0)],
             [32, 96]),
}


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


def sides(dtype, c):
    """(class, eps) of both sides of one comparison of a run in `dtype`."""
    a = (klass(c["a"]), EPS[dtype])
    if c["b"] == "recurrent":
        b = ("recurrent", EPS[dtype])
    elif c["b"] == ORACLE:
        b = ("recurrent", EPS["f64"])
    elif c["b"] == "logits_exact_f64":
        b = ("block", EPS["f64"])
    else:
        b = (klass(c["b"]), EPS["f32"])
    return a, b


def analyze(path):
    opener = gzip.open if path.endswith(".gz") else open
    rows = [json.loads(line) for line in opener(path, "rt")]
    print(f"{len(rows)} cases")
    calib, check = {}, {}
    for case in rows:
        for dtype in ["f32", "f64"]:
            cond = case[dtype]["conditioning"]
            T = cond["time"]
            K = sum(DENSE * case["C"] ** 0.5 + l["max_k"] + l["max_u"] for l in cond["layers"])
            for c in case[dtype]["comparisons"]:
                if c["status"] == "skipped":
                    continue
                kind = "logits" if c["quantity"].startswith("logits") else "state"
                err = max(c["max_abs"] / max(1.0, c["max_ref"]), c["rel_rms"])
                (ca, ea), (cb, eb) = sides(dtype, c)
                ga, gb = T ** EXPONENT[ca], T ** EXPONENT[cb]
                where = (case["key_scale"], T, case["L"], case["C"], dtype, c["a"], c["b"])
                # validation: err / tol with the factors of the code
                tol = (FACTOR[(ca, kind)] * ea * ga + FACTOR[(cb, kind)] * eb * gb) * K
                group = (dtype, c["b"].split("/")[0].split("+")[0], kind)
                if err / tol > check.get(group, (0,))[0]:
                    check[group] = (err / tol, *where)
                # calibration: the ratio err / (eps g K) of the side whose rounding dominates;
                # the state's factor is common to all classes (both sides count)
                if kind == "state":
                    side, ratio = "any", err / ((ea * ga + eb * gb) * K)
                elif eb < ea / 1e6:
                    side, ratio = ca, err / (ea * ga * K)
                elif ea < eb / 1e6:
                    side, ratio = cb, err / (eb * gb * K)
                else:
                    continue
                if ratio > calib.get((side, kind), (0,))[0]:
                    calib[(side, kind)] = (ratio, *where)
    print("calibration: largest err / (eps g(T) K) per class; the factor is twice it")
    for (side, kind), (ratio, *where) in sorted(calib.items()):
        print(f"  {side:10} {kind:7} {ratio:.4f} -> factor {2 * ratio:.3f}   at {where}")
    print("check: largest err / tol with the factors of the code, per reference")
    for group, (r, *where) in sorted(check.items()):
        print(f"  {group[0]} {group[1]:24} {group[2]:7} {r:.3f}   at {where}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out")
    ap.add_argument("--analyze")
    ap.add_argument("--cases", type=int, default=30)
    ap.add_argument("--seed", type=int, default=2)
    ap.add_argument("--binary", default="target/release/rwkv-lab")
    ap.add_argument("--grid", choices=sorted(GRIDS), default="calibrate")
    a = ap.parse_args()
    if a.analyze:
        analyze(a.analyze)
        return
    grid = list(itertools.product(*GRIDS[a.grid]))
    random.Random(a.seed).shuffle(grid)
    with open(a.out, "a") as out:
        for i, (ks, T, L, dec, C) in enumerate(grid[:a.cases]):
            row = run_case(os.path.abspath(a.binary), ks, T, L, dec, C, 1000 * a.seed + i)
            out.write(json.dumps(row) + "\n")
            out.flush()
            print(f"{i}: key scale {ks} T {T} L {L} decay {dec} C {C}", flush=True)


if __name__ == "__main__":
    main()
