#!/usr/bin/env bash
# Builds the tarball's CUDA-enabled linux-x64 binary, prebuilds/linux-x64/cuda/covpool-cuda.node:
# the CPU and CUDA backends with the static CUDA runtime, kernels for sm_80 and sm_90 plus PTX (so
# newer GPUs JIT-compile), OpenBLAS/LAPACKE, libstdc++ and libgcc linked statically, as the CPU
# prebuild. Its only other dependencies are cuBLAS and cuSOLVER (libcublas.so.13,
# libcusolver.so.12), which lib/cuda.ts finds and pre-loads at run time; node-gyp-build never
# picks it (it sits in a subfolder), so the CPU binary stays the default everywhere.
# Where no CUDA toolkit with cuBLAS/cuSOLVER can be found or assembled (scripts/cuda-toolkit.sh),
# it says so and the tarball carries the CPU binary only.
# Usage: bash scripts/build-cuda-prebuilt.sh   (npm run build:prebuilt:cuda; npm pack runs it)
set -euo pipefail
cd "$(dirname "$0")/.."
say() { echo "covpool CUDA prebuild: $*"; }
if [ "$(uname -s)-$(uname -m)" != "Linux-x86_64" ]; then say "NOTICE: only built on linux-x64; the tarball carries no CUDA binary"; exit 0; fi
if ! toolkit="$(bash scripts/cuda-toolkit.sh)"; then
  say "NOTICE: no CUDA toolkit with cuBLAS/cuSOLVER here: the tarball carries NO CUDA binary"
  exit 0
fi
arch="${CUDA_ARCH:-80-real;90}"
mkdir -p build-cmake
say "toolkit $toolkit, architectures $arch"
PATH="$toolkit/bin:$PATH" npx cmake-js compile --out build-cmake/cuda-prebuild --CDCOVPOOL_CUDA=ON "--CDCUDAToolkit_ROOT=$toolkit" \
  "--CDCMAKE_CUDA_ARCHITECTURES=$arch" --CDCOVPOOL_STATIC_LINK=ON >build-cmake/cuda-prebuild.log 2>&1 \
  || { tail -40 build-cmake/cuda-prebuild.log; exit 1; }
mkdir -p prebuilds/linux-x64/cuda
strip --strip-unneeded -o prebuilds/linux-x64/cuda/covpool-cuda.node build-cmake/cuda-prebuild/Release/covpool.node
say "prebuilds/linux-x64/cuda/covpool-cuda.node ($(du -h prebuilds/linux-x64/cuda/covpool-cuda.node | cut -f1))"
