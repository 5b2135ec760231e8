#!/usr/bin/env bash
# CPU inference speed of rwkv-lab and of the PyTorch peers, one after the other in one
# session (issue 11): decode at the 169M shape (BlinkDL's `rwkv` runtime on the same file),
# prefill at d_model 512 / 6 layers / vocabulary 256 (Hugging Face RWKV-4), and the dense
# products of both shapes (torch.matmul). A comparison, not a test.
#
# Needs a venv with torch, transformers and rwkv at $VENV (default ./V):
#   python3 -m venv V && V/bin/pip install torch transformers numpy rwkv
# Usage: scripts/bench_cpu_compare.sh [OUT.md]
#   BIN=path/to/rwkv-lab   (default: target/release/rwkv-lab, built here with ndarray and flex;
#                           a --no-default-features binary has only ndarray's rows)
#   CKPT=path/to/169m.pth  (default: a random one written to $TMPDIR by make_random_blinkdl.py)
set -euo pipefail
cd "$(dirname "$0")/.."
venv=${VENV:-V}
out=${1:-/dev/stdout}
if [ -z "${BIN:-}" ]; then
  cargo build --release --quiet
  BIN=target/release/rwkv-lab
fi
ckpt=${CKPT:-${TMPDIR:-/tmp}/rwkv-lab-bench-169m.pth}
# written outside the repository and moved at the end, so that the run sees a clean tree
# (rwkv-lab records the git revision, with -dirty when the tree has changes)
tmp=$(mktemp)
[ -f "$ckpt" ] || "$venv/bin/python" scripts/make_random_blinkdl.py "$ckpt"
{
  echo "# CPU inference: rwkv-lab vs PyTorch, one session"
  echo
  echo "Produced by \`scripts/bench_cpu_compare.sh\` on $(date -u +%FT%TZ), git $(git rev-parse --short HEAD),"
  echo "$(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg); checkpoint: random weights at the RWKV-4-Pile-169M shape"
  echo "(\`scripts/make_random_blinkdl.py\`, seed 0). Peers: \`scripts/bench_decode_torch.py\`, \`scripts/bench_prefill_torch.py\`."
  echo
  "$BIN" bench --checkpoint "$ckpt" 2>/dev/null | sed -e 's/^## /### /' -e 's/^# rwkv-lab bench/## rwkv-lab bench/'
  echo "## PyTorch peers"
  echo
  echo "### Decode: BlinkDL rwkv runtime, same checkpoint"
  echo
  "$venv/bin/python" scripts/bench_decode_torch.py "$ckpt" 2>/dev/null | tail -1
  echo
  echo "### Prefill and dense products"
  echo
  "$venv/bin/python" scripts/bench_prefill_torch.py 2>&1 | grep -v -e Warning -e '\[transformers\]'
} > "$tmp"
if [ "$out" = /dev/stdout ]; then cat "$tmp"; rm -f "$tmp"; else mv "$tmp" "$out"; fi
