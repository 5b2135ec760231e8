#!/usr/bin/env bash
# The GPU checks of issue 8, for a machine with an NVIDIA GPU and no package registry.
# Takes the bundle written by scripts/gpu-bundle.sh on a CPU machine (the CLI built with
# `--features cuda,wgpu`, the wgpu test suite's binary, Debian's Vulkan loader packages) and
# writes everything under one output folder:
#   system.txt        nvidia-smi, the bundle's git revision, the Vulkan driver used
#   verify-<b>.txt    `verify --random` on cuda and on wgpu (batch 1 and 2), every
#                     formulation against the float64 CPU recurrence; on cuda also with
#                     `--matmul fast` (TF32 products, judged with TF32's unit roundoff)
#   tests.txt         the wgpu test suite (crates/rwkv-gpu-tests), including the ignored
#                     reproductions of the defects lavapipe shows, to learn whether a real
#                     GPU shares them
#   scaling-cuda/     the quick scaling study on cuda (records.csv, summary.md, plots)
#   bench-wkv-cuda.txt the WKV formulations against each other on cuda (C = 768, T = 4096)
#   backends/         `compare-backends --backends cuda,cuda:tf32,wgpu` (experiments/backends.yaml:
#                     the 169M shape; prefill per formulation and T, decode, output differences)
#   decode-profile/   kernels.log: every kernel of 5 RNN-mode steps on cuda at the 169M shape,
#                     with its device time (CubeCL's profiling log)
#   peers-torch.md    the PyTorch peers of the targets (scripts/bench_gpu_torch.py), same run
#   summary.md        one line per step: what ran, how long, exit status
# Every step has its own time limit (together 480 s) so that the whole run stays within 8
# minutes on one H100/H200; a step that fails or times out is recorded and the next one runs.
#
# Usage: scripts/gpu-check.sh --bundle DIR --out OUT
set -uo pipefail
cd "$(dirname "$0")/.."
bundle=target/gpu-bundle
out=
while [ $# -gt 0 ]; do
  case "$1" in
    --bundle) bundle=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    -h|--help) sed -n '2,22p' "$0"; exit 0 ;;
    *) echo "error: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
[ -n "$out" ] || { echo "error: --out OUT is required" >&2; exit 2; }
[ -x "$bundle/rwkv-lab" ] || [ -f "$bundle/rwkv-lab.xz" ] ||
  { echo "error: $bundle/rwkv-lab(.xz) missing: run scripts/gpu-bundle.sh first" >&2; exit 2; }
if [ -e "$out" ] && [ -n "$(ls -A "$out" 2>/dev/null)" ]; then
  echo "error: $out exists and is not empty; choose a new folder (nothing is overwritten)" >&2
  exit 2
fi
mkdir -p "$out"
# the bundle's binaries, decompressed where gpu-bundle.sh compressed them
unpacked=$(mktemp -d)
unpack() {
  if [ -x "$bundle/$1" ]; then
    realpath "$bundle/$1"
  elif [ -f "$bundle/$1.xz" ]; then
    if command -v xz >/dev/null; then
      xz -dc "$bundle/$1.xz" >"$unpacked/$1"
    else
      python3 -c 'import lzma, shutil, sys; shutil.copyfileobj(lzma.open(sys.argv[1]), open(sys.argv[2], "wb"))' \
        "$bundle/$1.xz" "$unpacked/$1"
    fi && chmod +x "$unpacked/$1" && echo "$unpacked/$1"
  fi
}
bin=$(unpack rwkv-lab)
[ -x "$bin" ] || { echo "error: could not decompress $bundle/rwkv-lab.xz" >&2; exit 2; }
tests=$(unpack rwkv-gpu-tests)
summary="$out/summary.md"
start_all=$(date +%s)

# The Vulkan loader for wgpu: the bundle's packages, extracted once (the recipe verified on
# the lent machines: into /, then ldconfig), and the NVIDIA ICD.
for icd in /usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json /usr/share/vulkan/icd.d/nvidia_icd.json \
  /etc/vulkan/icd.d/nvidia_icd.json; do
  [ -f "$icd" ] && { export VK_DRIVER_FILES=$icd; break; }
done
if ! ldconfig -p 2>/dev/null | grep -q libvulkan.so.1 && [ -d "$bundle/debs" ]; then
  for f in "$bundle"/debs/*.deb; do dpkg -x "$f" / 2>/dev/null || true; done
  ldconfig 2>/dev/null || true
fi
export XDG_RUNTIME_DIR=${XDG_RUNTIME_DIR:-/tmp}

# CubeCL compiles every kernel at its first use (NVRTC on CUDA) and autotunes each matrix
# product, compiling every candidate kernel before timing it: the first run of 2026-11-29
# spent its whole 30 s of `verify --backend cuda` (a tiny model) there. Each step is a new process, so keep both the compiled
# kernels and the autotune results on disk for the steps after the first: CubeCL reads
# `cubecl.toml` from the working directory (removed at exit unless it was there before).
if [ ! -e cubecl.toml ]; then
  printf '# written by scripts/gpu-check.sh for its run\n[compilation]\ncache = "target"\n[autotune]\ncache = "target"\n' >cubecl.toml
  trap 'rm -f cubecl.toml' EXIT
fi

{
  echo "# system"
  date -u +%FT%TZ
  nvidia-smi 2>&1 | head -20 || echo "nvidia-smi not found"
  echo "bundle git revision: $(cat "$bundle/git-revision" 2>/dev/null || echo unknown)"
  echo "VK_DRIVER_FILES=${VK_DRIVER_FILES:-unset}"
  echo "libvulkan: $(ldconfig -p 2>/dev/null | grep -m1 libvulkan.so.1 || echo missing)"
  echo "cores: $(nproc)"
} >"$out/system.txt" 2>&1

{
  echo "# GPU check"
  echo
  echo "Produced by \`scripts/gpu-check.sh\` on $(date -u +%FT%TZ), bundle git $(head -1 "$bundle/git-revision" 2>/dev/null || echo unknown)."
  echo "GPU: $(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>/dev/null || echo none found)."
  echo
  echo "| step | seconds | status | output |"
  echo "|---|---:|---|---|"
} >"$summary"

# step NAME LIMIT_S OUTFILE CMD...: runs CMD with a time limit, output to OUTFILE
step() {
  local name=$1 limit=$2 file=$3
  shift 3
  local t0 rc status
  t0=$(date +%s)
  echo "== $name (limit ${limit}s)" >&2
  timeout --kill-after=10 "$limit" "$@" >"$out/$file" 2>&1
  rc=$?
  case $rc in
    0) status=ok ;;
    124|137) status="timed out after ${limit}s" ;;
    *) status="exit $rc" ;;
  esac
  echo "| $name | $(( $(date +%s) - t0 )) | $status | $file |" >>"$summary"
  echo "   $status" >&2
}

# Limits from the runs of 2026-11-29 on an H200 (reports/gpu/h200-2026-11-29/): the first
# cuda process compiles and autotunes from scratch (38 s for verify at batch 1); later ones
# reuse the caches above (15-21 s).
step "verify cuda, batch 1" 60 verify-cuda-b1.txt "$bin" verify --random --backend cuda --batch 1
step "verify cuda, batch 1, TF32 products (--matmul fast)" 30 verify-cuda-b1-tf32.txt "$bin" verify --random \
  --backend cuda --batch 1 --matmul fast
step "verify cuda, batch 2" 30 verify-cuda-b2.txt "$bin" verify --random --backend cuda --batch 2
step "verify wgpu, batch 1" 20 verify-wgpu-b1.txt "$bin" verify --random --backend wgpu --batch 1
step "verify wgpu, batch 2" 20 verify-wgpu-b2.txt "$bin" verify --random --backend wgpu --batch 2
if [ -x "$tests" ]; then
  step "GPU test suite (wgpu)" 45 tests.txt "$tests" --include-ignored --test-threads 1
else
  echo "| GPU test suite | 0 | skipped: no test binary in the bundle | |" >>"$summary"
fi
# the device scan against the per-step recurrence at B = 1, C = 768 (target: >= 20x at
# T = 4096); the recurrence is one launch-bound step per token, so few repeats
step "bench-wkv cuda" 40 bench-wkv-cuda.txt "$bin" bench-wkv --backend cuda --channels 768 \
  --seq-lens 4096 --modes recurrent,scan,chunked:64 --repeats 2
step "quick scaling study, cuda" 60 scaling-cuda.txt "$bin" scale --config experiments/scaling.yaml --quick \
  --backend cuda --out "$out/scaling-cuda"
# The same weights and tokens on both GPU backends and both CUDA precisions (items 4 and 7
# of issue 8), the 169M shape at every T of experiments/backends.yaml but the parallel form
# and the per-token loop (bench-wkv times those). cuda (full f32, which `verify` above
# compares with float64) is the reference: a CPU reference at this shape costs about 30 s
# (run it with `--backends ndarray,cuda,...` when time allows). Rows are flushed as they are
# measured, so a timeout keeps them, and the report is then re-rendered.
sed -e 's/^  modes: .*/  modes: [scan, chunked:64]/' -e 's/^  max_seq_len: .*/  max_seq_len: {}/' \
  experiments/backends.yaml >"$out/backends.yaml"
step "compare-backends cuda,cuda:tf32,wgpu" 100 backends.txt "$bin" compare-backends \
  --backends cuda,cuda:tf32,wgpu --config "$out/backends.yaml" --out "$out/backends"
if [ -f "$out/backends/records.csv" ] && [ ! -f "$out/backends/summary.md" ]; then
  "$bin" report "$out/backends" >>"$out/backends.txt" 2>&1 || true
fi

# Where a decode step's time goes (item 4): CubeCL's log of every kernel it launches, with
# its device time, over 1 + 4 RNN-mode steps at the 169M shape (after a tiny prefill, which
# the spec format requires). Each kernel is timed on its own, so the steps run slower than
# in backends/; the log gives the kernels per step and their summed device time against the
# step's wall time. Run from a folder of its own, whose cubecl.toml adds the profiling log
# to the shared caches.
prof=$(realpath "$out")/decode-profile
mkdir -p "$prof/cwd"
cat >"$prof/spec.yaml" <<'SPEC'
study: backends
seed: 0
repeats: 1
warmup: 0
prefill:
  model: { vocab: 256, d_model: 64, n_layers: 2 }
  seq_lens: [16]
  modes: [scan]
decode:
  model: { vocab: 50277, d_model: 768, n_layers: 12 }
  steps: 4
  warmup: 1
SPEC
printf '[compilation]\ncache = { file = "%s" }\n[autotune]\ncache = { file = "%s" }\n[profiling.logger]\nlevel = "basic"\nfile = "%s"\n' \
  "$(realpath target)" "$(realpath target)" "$prof/kernels.log" >"$prof/cwd/cubecl.toml"
step "decode kernel profile, cuda" 35 decode-profile.txt bash -c \
  "cd '$prof/cwd' && '$bin' compare-backends --backends cuda --config '$prof/spec.yaml' --out '$prof/study'"
rm -rf "$prof/cwd"

# The PyTorch peers of the targets, in the same run (decode: BlinkDL's runtime on a random
# checkpoint of the 169M shape; prefill: GPT-2 of that shape with SDPA; f32 vs TF32
# products). Needs python3 with torch (the lent machines' image has it) and, for the decode
# row, the bundle's `rwkv` wheel (pure Python).
if python3 -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null; then
  site=$(mktemp -d)
  for w in "$bundle"/wheels/*.whl; do
    [ -f "$w" ] && python3 -m pip install -q --no-index --no-deps --no-compile --target "$site" "$w" >/dev/null 2>&1
  done
  pth=$(mktemp -d)/rwkv-169m-random.pth
  step "PyTorch peers (decode, prefill, f32/TF32 products)" 40 peers-torch.md bash -c \
    "PYTHONPATH=$site python3 scripts/make_random_blinkdl.py $pth >/dev/null && \
     PYTHONPATH=$site python3 scripts/bench_gpu_torch.py --pth $pth"
else
  echo "| PyTorch peers | 0 | skipped: no python3 with torch and CUDA | |" >>"$summary"
fi

echo >>"$summary"
echo "Total: $(( $(date +%s) - start_all )) s." >>"$summary"
cat "$summary"
