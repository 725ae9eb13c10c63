#!/usr/bin/env bash
# Builds the tarball's CUDA-enabled linux-x64 binary, prebuilds/linux-x64/cuda/covpool-cuda.node:
# the CPU and CUDA backends with the static CUDA runtime, kernels for sm_80 and sm_90 plus PTX (so
# newer GPUs JIT-compile), OpenBLAS/LAPACKE, libstdc++ and libgcc linked statically, as the CPU
# prebuild. Its only other dependencies are cuBLAS and cuSOLVER (libcublas.so.13,
# libcusolver.so.12), which lib/cuda.ts finds and pre-loads at run time; node-gyp-build never
# picks it (it sits in a subfolder), so the CPU binary stays the default everywhere.
# Where no CUDA toolkit with cuBLAS/cuSOLVER can be found or assembled (scripts/cuda-toolkit.sh),
# it says so and the tarball carries the CPU binary only.
# As root it builds in Debian 11 (glibc >= 2.28, like the CPU prebuild); with COVPOOL_PREBUILD_HOST=1
# (or without root) on this machine, no chroot: the binary then needs this machine's glibc at most,
# and the audit checks it against that.
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
mkdir -p build-cmake prebuilds/linux-x64/cuda
pkg="$(pwd -P)"
cmake_args=(--CDCOVPOOL_CUDA=ON "--CDCUDAToolkit_ROOT=$toolkit" "--CDCMAKE_CUDA_ARCHITECTURES=$arch" --CDCOVPOOL_STATIC_LINK=ON)
audit_args=()

if [ "${COVPOOL_PREBUILD_HOST:-}" != 1 ] && [ -f scripts/chroot/debian.sh ] && [ "$(id -u)" = 0 ]; then
  # In Debian 11, like the CPU prebuild (scripts/build-prebuilt.sh): linked against glibc 2.31 with
  # the C++ runtime static, the binary loads on glibc >= 2.28. The toolkit (its folder and nvcc's,
  # which its links point into) is bound in read-only at the same paths.
  source scripts/chroot/debian.sh
  builder="$(chroot_prepared bullseye prebuild-cuda-x64 \
    'apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends g++ make python3 cmake libopenblas-dev liblapacke-dev')"
  say "building in Debian 11 ($builder), toolkit $toolkit, architectures $arch"
  work="$(mktemp -d /tmp/covpool-cuda-prebuild.XXXXXX)"
  root="$work/root"
  trap 'chroot_remove "$root"; rm -rf "$work"' EXIT
  chroot_fresh "$builder" "$root"
  bind_ro() {  # the host folder $1 at the same path inside, read-only
    mkdir -p "$root$1" && mount --bind "$1" "$root$1" && mount --make-private "$root$1" && mount -o remount,bind,ro "$root$1"
  }
  mkdir -p "$root$pkg"
  { tar -C "$pkg" --exclude=./node_modules --exclude=./build --exclude=./build-cmake --exclude=./prebuilds --exclude=./.git \
      --exclude=./gpu-bundle -cf - . || [ $? -eq 1 ]; } | tar -C "$root$pkg" -xf -
  mkdir -p "$root$pkg/build-cmake"
  # node_modules (or, when it is a link, its target) at the same path inside
  modules="$(readlink -f node_modules)"
  mkdir -p "$root$modules" && mount --bind "$modules" "$root$modules" && mount --make-private "$root$modules"
  if [ -L node_modules ]; then ln -s "$modules" "$root$pkg/node_modules"; fi
  bind_ro "$toolkit"
  nvcc_root="$(readlink -f "$toolkit/bin/..")"
  [ "$nvcc_root" = "$toolkit" ] || bind_ro "$nvcc_root"
  chroot_sh "$root" "cd $(printf %q "$pkg") && mkdir -p build-cmake && PATH=$(printf %q "$toolkit/bin"):\$PATH npx cmake-js compile --out build-cmake/cuda-prebuild $(printf '%q ' "${cmake_args[@]}") >build-cmake/cuda-prebuild.log 2>&1" \
    || { tail -40 "$root$pkg/build-cmake/cuda-prebuild.log"; exit 1; }
  built="$root$pkg/build-cmake/cuda-prebuild/Release/covpool.node"
  strip --strip-unneeded -o prebuilds/linux-x64/cuda/covpool-cuda.node "$built"
  cp "$root$pkg/build-cmake/cuda-prebuild/build.ninja" build-cmake/cuda-prebuild.ninja 2>/dev/null || true
else
  if [ "${COVPOOL_PREBUILD_HOST:-}" = 1 ]; then why="COVPOOL_PREBUILD_HOST=1"; else why="not root: no Debian 11 chroot"; fi
  say "building on this machine ($why): the binary will need up to this machine's glibc ($(getconf GNU_LIBC_VERSION 2>/dev/null | sed 's/^glibc //' || true)) instead of 2.28"
  audit_args=(--host)
  say "toolkit $toolkit, architectures $arch"
  PATH="$toolkit/bin:$PATH" npx cmake-js compile --out build-cmake/cuda-prebuild "${cmake_args[@]}" >build-cmake/cuda-prebuild.log 2>&1 \
    || { tail -40 build-cmake/cuda-prebuild.log; exit 1; }
  strip --strip-unneeded -o prebuilds/linux-x64/cuda/covpool-cuda.node build-cmake/cuda-prebuild/Release/covpool.node
fi
say "prebuilds/linux-x64/cuda/covpool-cuda.node ($(du -h prebuilds/linux-x64/cuda/covpool-cuda.node | cut -f1))"
if [ -f scripts/audit-prebuilds.js ]; then node scripts/audit-prebuilds.js ${audit_args[@]+"${audit_args[@]}"} prebuilds/linux-x64/cuda; fi
