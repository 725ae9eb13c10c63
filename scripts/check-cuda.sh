#!/usr/bin/env bash
# The CUDA backend's checks for machines without a GPU (CI): native/cuda must build, link and pass
# everything that does not need a device, so that a GPU session only has to run it.
#   1. the real build: scripts/cuda-toolkit.sh finds (or assembles, from NVIDIA's cuBLAS/cuSOLVER
#      wheel files on this disk) a toolkit, and CMake builds the CUDA-enabled addon and the GPU test
#      driver covpool_cuda_test against its headers and libraries (kernels for CUDA_ARCH, default
#      "80-real;90"); the addon is then loaded through covpool's loader with those libraries
#      (it must report 0 devices and say why), and covpool_cuda_test runs in its no-GPU mode.
#      Without cuBLAS/cuSOLVER anywhere, this step says so and only the kernels are compiled
#      (nvcc, sm_80 and sm_90, the build's flags);
#   2. the kernels' per-element math (native/cuda/kmath.cuh) is compiled for the host and compared,
#      bit for bit, with the CPU backend's code (native/cuda/test/kmath_host_test.cu);
#   3. the GPU test driver (native/cuda/test/cuda_vs_cpu.cpp) is built in its self-check mode (the CPU
#      backend against itself, plus the CPU replays of the CUDA layer's plan) and run.
# Exits non-zero on any failure; prints a notice and exits 0 when no nvcc is installed.
# Usage: bash scripts/check-cuda.sh   (COVPOOL_NVCC=/path/to/nvcc to choose one; CUDA_ARCH=90 to
# build one architecture only)
set -uo pipefail
cd "$(dirname "$0")/.."

say() { echo "check-cuda: $*"; }

nvcc="${COVPOOL_NVCC:-}"
if [ -z "$nvcc" ]; then
  nvcc="$(command -v nvcc || true)"
fi
if [ -z "$nvcc" ]; then
  for cand in $(ls -d /usr/local/cuda*/bin/nvcc 2>/dev/null | sort -rV); do
    if [ -x "$cand" ]; then nvcc="$cand"; break; fi
  done
fi
if [ -n "${COVPOOL_NVCC:-}" ] && [ ! -x "$COVPOOL_NVCC" ]; then
  say "FAIL: COVPOOL_NVCC=$COVPOOL_NVCC is not an executable"
  exit 1
fi
if [ -z "$nvcc" ] || [ ! -x "$nvcc" ]; then
  say "SKIP: nvcc not found (PATH, /usr/local/cuda*/bin); the CUDA backend was not compile-checked"
  exit 0
fi
say "using $nvcc ($("$nvcc" --version | grep -o 'release [0-9.]*' | head -1))"

cxx="${CXX:-g++}"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
passed=0
failed=0
ok() { passed=$((passed + 1)); say "ok    $*"; }
bad() { failed=$((failed + 1)); say "FAIL  $*"; }

# ---- 1. the real build, or (without cuBLAS/cuSOLVER) the kernels alone ----------------------------
arch="${CUDA_ARCH:-80-real;90}"
if toolkit="$(bash scripts/cuda-toolkit.sh)"; then
  say "toolkit: $toolkit"
  if PATH="$toolkit/bin:$PATH" npx cmake-js compile --out build-cmake/cuda --CDCOVPOOL_CUDA=ON "--CDCUDAToolkit_ROOT=$toolkit" \
       "--CDCMAKE_CUDA_ARCHITECTURES=$arch" --CDCOVPOOL_STATIC_LINK=ON >"$tmp/log" 2>&1 &&
     cmake --build build-cmake/cuda --target covpool_cuda_test >>"$tmp/log" 2>&1; then
    libs="$(if [ -f "$toolkit/.assembled-from" ]; then tr ' ' '\n' <"$toolkit/.assembled-from" | grep -o 'nvidia_cu[a-z]*-[0-9.]*[0-9]' | tr '\n' ' '; else ls "$toolkit"/lib64/libcusolver.so.* "$toolkit"/lib64/libcublas.so.* | xargs -n1 basename | tr '\n' ' '; fi)"
    ok "CUDA-enabled addon and covpool_cuda_test built and linked against ${libs}(architectures $arch)"
    if grep -E "warning( #|:)" "$tmp/log"; then bad "the CUDA build printed warnings (above)"; fi
    # The addon through covpool's own loader: it finds the libraries in COVPOOL_CUDA_LIB_DIRS,
    # loads, and without a GPU reports 0 devices with the reason.
    if COVPOOL_CUDA_ADDON=build-cmake/cuda/Release/covpool.node COVPOOL_CUDA_LIB_DIRS="$toolkit/lib64" node -e "
        const i = require('./dist/lib').backendInfo();
        console.log(JSON.stringify({ cuda: i.cuda, cudaDevices: i.cudaDevices, cudaReason: i.cudaReason }));
        if (!i.cuda) process.exit(1);" >"$tmp/run" 2>&1; then
      ok "CUDA-enabled addon loads: $(cat "$tmp/run")"
    else
      bad "CUDA-enabled addon does not load"; cat "$tmp/run"
    fi
    if LD_LIBRARY_PATH="$toolkit/lib64${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" build-cmake/cuda/covpool_cuda_test --no-gpu-ok >"$tmp/run" 2>&1; then
      ok "covpool_cuda_test --no-gpu-ok ($(grep -m1 '^SKIP' "$tmp/run" | sed 's/^SKIP *//'); $(tail -1 "$tmp/run" | sed 's/^covpool_cuda_test: //'))"
    else
      bad "covpool_cuda_test --no-gpu-ok"; grep -v '^ok' "$tmp/run" | head -40
    fi
  else
    bad "CUDA build (cmake-js, COVPOOL_CUDA=ON)"; tail -60 "$tmp/log"
  fi
else
  say "NOTICE: no cuBLAS/cuSOLVER on this machine (no toolkit with them, no NVIDIA wheel files): the CUDA backend"
  say "        is NOT built or linked here; only its kernels are compiled"
  arches=(-gencode arch=compute_80,code=sm_80 -gencode arch=compute_90,code=sm_90)
  if "$nvcc" -std=c++17 -fmad=false -O3 "${arches[@]}" -Xcompiler -fPIC,-Wall,-Wextra,-Wno-unused-parameter \
      -c native/cuda/kernels.cu -o "$tmp/kernels.o" >"$tmp/log" 2>&1; then
    ok "native/cuda/kernels.cu (sm_80, sm_90)"
  else
    bad "native/cuda/kernels.cu"; cat "$tmp/log"
  fi
  grep -i "warning" "$tmp/log" || true
fi

# ---- 2. kmath host test against the CPU backend ----------------------------------------------------------
cblas_dir=""
for d in /usr/include/x86_64-linux-gnu/openblas-pthread /usr/include/openblas /usr/include /usr/local/include; do
  if [ -f "$d/cblas.h" ]; then cblas_dir="$d"; break; fi
done
if [ -z "$cblas_dir" ]; then
  say "skip  native/cuda/test/kmath_host_test.cu (no cblas.h: install libopenblas-dev, as scripts/setup.sh does)"
elif "$nvcc" -std=c++17 -fmad=false -O2 -I "$cblas_dir" -o "$tmp/kmath_host_test" native/cuda/test/kmath_host_test.cu \
    native/core/pade.cpp -lopenblas >"$tmp/log" 2>&1; then
  if "$tmp/kmath_host_test" >"$tmp/run" 2>&1; then
    ok "native/cuda/test/kmath_host_test.cu ($(tail -1 "$tmp/run" | sed 's/^kmath host test: //'))"
  else
    bad "native/cuda/test/kmath_host_test.cu"; head -40 "$tmp/run"
  fi
else
  bad "native/cuda/test/kmath_host_test.cu (build)"; cat "$tmp/log"
fi

# ---- 3. the GPU test driver, self-check mode ------------------------------------------------------------------
if [ -z "$cblas_dir" ] || [ ! -f /usr/include/lapacke.h ]; then
  say "skip  native/cuda/test/cuda_vs_cpu.cpp (no cblas.h / lapacke.h)"
else
  cpu_objs=()
  for src in native/core/methods.cpp native/core/pade.cpp native/core/threadpool.cpp native/core/host_cache.cpp \
             native/cpu/blas.cpp native/cpu/cpu_backend.cpp; do
    o="$tmp/host_$(basename "$src" .cpp).o"
    if ! "$cxx" -std=c++17 -O1 -fPIC -I "$cblas_dir" -c "$src" -o "$o" >"$tmp/log" 2>&1; then
      bad "$src (build for the driver)"; cat "$tmp/log"
    fi
    cpu_objs+=("$o")
  done
  if "$cxx" -std=c++17 -O1 -Wall -Wextra -Wno-unused-parameter -DCOVPOOL_CUDA_TEST_SELF_CHECK -I "$cblas_dir" \
      native/cuda/test/cuda_vs_cpu.cpp "${cpu_objs[@]}" -llapacke -lopenblas -lpthread -o "$tmp/selfcheck" >"$tmp/log" 2>&1; then
    if "$tmp/selfcheck" >"$tmp/run" 2>&1; then
      ok "native/cuda/test/cuda_vs_cpu.cpp self-check ($(tail -1 "$tmp/run" | sed 's/^covpool_cuda_test: //'))"
    else
      bad "native/cuda/test/cuda_vs_cpu.cpp self-check"; grep -v '^ok' "$tmp/run" | head -40
    fi
  else
    bad "native/cuda/test/cuda_vs_cpu.cpp (self-check build)"; cat "$tmp/log"
  fi
fi

say "$passed ok, $failed failing"
[ "$failed" -eq 0 ]
