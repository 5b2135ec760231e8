#!/usr/bin/env bash
# Prepares, on a CPU machine with a package registry, everything scripts/gpu-check.sh needs
# on a GPU machine that has none (issue 8): the CLI built with `--features cuda,wgpu` (the
# cuda backend loads the driver at run time, so nothing NVIDIA-specific is needed here), the
# wgpu test suite's binary (crate rwkv-gpu-tests, built as in .ci/run), and Debian's Vulkan/GL
# loader packages for wgpu.
#
# Usage: scripts/gpu-bundle.sh [DIR]        (default: target/gpu-bundle)
# Then carry DIR (a few tens of MiB) with the working tree and, on the GPU machine:
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
cp target/release/rwkv-lab "$dir/rwkv-lab"
cp "$test_bin" "$dir/rwkv-gpu-tests"

# wgpu needs the Vulkan loader (and the GL/EGL loaders it links) on the GPU machine
(cd "$dir/debs" && apt-get download libvulkan1 libegl1 libglvnd0 libopengl0 libgl1 libglx0 libgles2)

git rev-parse --short HEAD >"$dir/git-revision"
git diff --quiet || echo "(built from a tree with uncommitted changes)" >>"$dir/git-revision"
echo "bundle ready: $dir ($(du -sh "$dir" | cut -f1))" >&2
