#!/usr/bin/env bash
# Training throughput of rwkv-lab and of the PyTorch peers, one after the other in one run
# (issue 7 §1, issue 11 item 3). A comparison, not a test. Needs a venv with torch and
# transformers at $VENV (default ./V): python3 -m venv V && V/bin/pip install torch transformers numpy
# Usage: scripts/bench_train_compare.sh [STEPS]
set -euo pipefail
steps=${1:-3}
venv=${VENV:-V}
cd "$(dirname "$0")/.."
cargo build --release --quiet --example bench_train -p lab-train
echo "## $(date -u +%FT%TZ) $(git rev-parse --short HEAD) $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "## rwkv-lab, mimalloc default (purges freed pages)"
./target/release/examples/bench_train "$steps" scan full,transformer 128,256
echo "## rwkv-lab, MIMALLOC_PURGE_DELAY=-1 (what the rwkv-lab CLI sets)"
MIMALLOC_PURGE_DELAY=-1 ./target/release/examples/bench_train "$steps" scan full,transformer 128,256
echo "## PyTorch"
"$venv/bin/python" scripts/bench_train_torch.py --steps "$steps" 2>&1 | grep -v -e Warning -e '\[transformers\]'
