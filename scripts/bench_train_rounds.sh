#!/usr/bin/env bash
# Training throughput against PyTorch on a shared, noisy machine: interleaved rounds.
# Each round runs, per d_model, rwkv-lab (flex, 4 micro-batches: what `ablate` uses) and
# PyTorch's GPT-2 of the same shape one after the other, so that both see the same load;
# the summary gives the median of each and the median of the per-round ratios (issue 7 §1).
# A comparison, not a test. Needs a venv with torch and transformers at $VENV (default ./V).
#
# Usage: scripts/bench_train_rounds.sh [ROUNDS [STEPS [WIDTHS]]]   (defaults 3, 4, "128 256")
#   BASELINE=path/to/bench_train   adds a third entry per round: another build of the
#                                  example (e.g. of an earlier revision), for before/after
set -euo pipefail
rounds=${1:-3}
steps=${2:-4}
widths=${3:-128 256}
venv=${VENV:-V}
cd "$(dirname "$0")/.."
cargo build --release --quiet --example bench_train -p lab-train --features flex
ours=./target/release/examples/bench_train
log=$(mktemp)
trap 'rm -f "$log"' EXIT
echo "## $(date -u +%FT%TZ) $(git rev-parse --short HEAD)$(git diff --quiet HEAD -- crates || echo '+changes') $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "## $rounds rounds x {rwkv-lab flex 4 micro-batches$([ -n "${BASELINE:-}" ] && echo ", baseline $BASELINE"), PyTorch GPT-2}; $steps timed steps after 1 warm-up step each"
tps() { awk '/tokens\/s/ {print $(NF-1)}' | tail -1; }
for r in $(seq "$rounds"); do
  for d in $widths; do
    # MIMALLOC_PURGE_DELAY=-1: what the rwkv-lab CLI sets (docs/design.md §14 item 12)
    t=$(BENCH_BACKEND=flex BENCH_MICRO_BATCHES=4 MIMALLOC_PURGE_DELAY=-1 "$ours" "$steps" scan full "$d" | tps)
    echo "round $r d_model $d rwkv-lab $t" | tee -a "$log"
    if [ -n "${BASELINE:-}" ]; then
      t=$(BENCH_BACKEND=flex BENCH_MICRO_BATCHES=4 MIMALLOC_PURGE_DELAY=-1 "$BASELINE" "$steps" scan full "$d" | tps)
      echo "round $r d_model $d baseline $t" | tee -a "$log"
    fi
    t=$("$venv/bin/python" scripts/bench_train_torch.py --steps "$steps" --d-model "$d" --models gpt2 2>&1 | tps)
    echo "round $r d_model $d torch-gpt2 $t" | tee -a "$log"
  done
done
python3 - "$log" <<'PY'
import statistics, sys
from collections import defaultdict
runs = defaultdict(dict)
for line in open(sys.argv[1]):
    _, r, _, d, who, t = line.split()
    runs[(int(d), who)][int(r)] = float(t)
print("\n| d_model | rwkv-lab, median tokens/s | PyTorch GPT-2 | rwkv-lab / GPT-2, median of rounds (min–max) |"
      + (" baseline | rwkv-lab / baseline |" if any(w == "baseline" for _, w in runs) else ""))
print("|---:|---:|---:|---:|" + ("---:|---:|" if any(w == "baseline" for _, w in runs) else ""))
for d in sorted({d for d, _ in runs}):
    ours, torch = runs[(d, "rwkv-lab")], runs[(d, "torch-gpt2")]
    ratios = [ours[r] / torch[r] for r in ours if r in torch]
    row = (f"| {d} | {statistics.median(ours.values()):,.0f} | {statistics.median(torch.values()):,.0f} | "
           f"**{statistics.median(ratios):.2f}x** ({min(ratios):.2f}–{max(ratios):.2f}) |")
    if (d, "baseline") in runs:
        base = runs[(d, "baseline")]
        br = [ours[r] / base[r] for r in ours if r in base]
        row += f" {statistics.median(base.values()):,.0f} | {statistics.median(br):.2f}x |"
    print(row)
PY
