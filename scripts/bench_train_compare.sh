#!/usr/bin/env bash
# Training throughput of rwkv-lab and of the PyTorch peers, one after the other in one run
# (issue 7 §1, issue 11 item 3). A comparison, not a test. Needs a venv with torch and
# transformers at $VENV (default ./V): python3 -m venv V && V/bin/pip install torch transformers numpy
# Usage: scripts/bench_train_compare.sh [STEPS]
set -euo pipefail
steps=${1:-3}
venv=${VENV:-V}
cd "$(dirname "$0")/.."
cargo build --release --quiet --example bench_train -p lab-train --features flex
echo "## $(date -u +%FT%TZ) $(git rev-parse --short HEAD) $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"
# MIMALLOC_PURGE_DELAY=-1: what the rwkv-lab CLI sets (docs/design.md §14 item 12)
for backend in ndarray flex; do
  for micro in 1 4; do
    echo "## rwkv-lab, $backend, $micro micro-batches$([ "$backend$micro" = flex4 ] && echo ' (what ablate uses)')"
    BENCH_BACKEND=$backend BENCH_MICRO_BATCHES=$micro MIMALLOC_PURGE_DELAY=-1 \
      ./target/release/examples/bench_train "$steps" scan full,transformer 128,256
  done
done
echo "## PyTorch"
"$venv/bin/python" scripts/bench_train_torch.py --steps "$steps" 2>&1 | grep -v -e Warning -e '\[transformers\]'
