#!/usr/bin/env bash
# Prepares, on a CPU machine with a package registry, everything scripts/gpu-check.sh needs
# on a GPU machine that has none (issue 8): the CLI built with `--features cuda,wgpu` (the
# cuda backend loads the driver at run time, so nothing NVIDIA-specific is needed here), the
# wgpu test suite's binary (crate rwkv-gpu-tests, built as in .ci/run), and Debian's Vulkan/GL
# loader packages for wgpu, and the wheel of BlinkDL's `rwkv` runtime (a PyTorch peer).
#
# Usage: scripts/gpu-bundle.sh [DIR]        (default: target/gpu-bundle)
# Then carry DIR (about 30 MiB) with the working tree and, on the GPU machine:
#   scripts/gpu-check.sh --bundle DIR --out OUT
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${1:-target/gpu-bundle}
mkdir -p "$dir/debs"

echo "building rwkv-lab with --features cuda,wgpu and the wgpu test suite (several minutes)" >&2
cargo build --release --features cuda,wgpu
test_bin=$(cargo test --release --workspace --features rwkv-gpu-tests/wgpu --test wgpu_suite --no-run \
  --message-format=json 2>/dev/null |
  sed -n 's/.*"executable":"\([^"]*\)".*/\1/p' | tail -1)
[ -x "$test_bin" ] || { echo "error: could not find the test binary" >&2; exit 1; }
# stripped and xz-compressed (about 6x smaller: the CLI is 73 MB stripped, 13 MB as .xz), as
# a machine lent through the device tool receives at most 64 MiB with the working tree;
# gpu-check.sh decompresses them (xz, or Python's lzma where xz is missing)
for pair in "target/release/rwkv-lab:rwkv-lab" "$test_bin:rwkv-gpu-tests"; do
  src=${pair%%:*} name=${pair##*:}
  rm -f "$dir/$name" "$dir/$name.xz"
  cp "$src" "$dir/$name"
  strip "$dir/$name" 2>/dev/null || true
  xz -T0 -6 "$dir/$name"
done

# the decode peer of scripts/bench_gpu_torch.py: BlinkDL's `rwkv` runtime (pure Python; the
# lent machines' image has torch but not this package)
mkdir -p "$dir/wheels"
pip=${PIP:-$(command -v pip3 || echo "${VENV:-V}/bin/pip")}
"$pip" download --quiet --no-deps -d "$dir/wheels" rwkv==0.8.32 ||
  echo "warning: could not download the rwkv wheel; the decode peer will be skipped" >&2

# wgpu needs the Vulkan loader (and the GL/EGL loaders it links) on the GPU machine
(cd "$dir/debs" && apt-get download libvulkan1 libegl1 libglvnd0 libopengl0 libgl1 libglx0 libgles2)

git rev-parse --short HEAD >"$dir/git-revision"
git diff --quiet || echo "(built from a tree with uncommitted changes)" >>"$dir/git-revision"
echo "bundle ready: $dir ($(du -sh "$dir" | cut -f1))" >&2
