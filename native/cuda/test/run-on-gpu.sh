#!/usr/bin/env bash
# One command for a GPU machine: builds the CUDA backend and checks it against the CPU backend.
#   bash native/cuda/test/run-on-gpu.sh
# Needs Node (for cmake-js) and the CUDA toolkit with cuBLAS/cuSOLVER on PATH. Builds in
# build-cmake/cuda (git-ignored); logs go under $OUT when set, else build-cmake/cuda/logs; a short
# table is printed last. CUDA_ARCH picks the architectures to build (default 90: the H200; the
# normal build's default is "80;90").
set -uo pipefail
cd "$(dirname "$0")/../../.."
out="${OUT:-build-cmake/cuda/logs}"
mkdir -p "$out"
arch="${CUDA_ARCH:-90}"
export CMAKE_BUILD_PARALLEL_LEVEL="${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc)}"
summary="$out/summary.txt"
: >"$summary"
status=0

step() {
  local name=$1
  shift
  local t0=$SECONDS r=ok
  "$@" >"$out/$name.log" 2>&1 || { r=FAIL; status=1; }
  # The last line says how it ended; for a failure, the first error line says why.
  local line
  line="$(grep -v '^\s*$' "$out/$name.log" | tail -1)"
  if [ "$r" = FAIL ]; then
    line="$(grep -m1 -iE 'error|FAIL' "$out/$name.log" || echo "$line")"
  fi
  printf '%-14s %-4s %4ss  %s\n' "$name" "$r" $((SECONDS - t0)) "$(echo "$line" | cut -c1-110)" >>"$summary"
}

nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader >"$out/gpu.txt" 2>&1 || echo "no nvidia-smi" >"$out/gpu.txt"
step kernels bash scripts/check-cuda-kernels.sh
step build npx cmake-js compile --out build-cmake/cuda --CDCOVPOOL_CUDA=ON "--CDCMAKE_CUDA_ARCHITECTURES=$arch"
step build-test cmake --build build-cmake/cuda --target covpool_cuda_test
if [ -x build-cmake/cuda/covpool_cuda_test ]; then
  step cuda-vs-cpu build-cmake/cuda/covpool_cuda_test --bench
  grep -E '^(FAIL|info)' "$out/cuda-vs-cpu.log" | head -40 >"$out/cuda-vs-cpu.failures.txt" || true
  grep '^BENCH' "$out/cuda-vs-cpu.log" >>"$summary" || true
fi
step addon-loads node -e "const m = require('./build-cmake/cuda/Release/covpool.node'); console.log(JSON.stringify(m.info()))"

echo "== GPU: $(cat "$out/gpu.txt")"
[ -s "$out/cuda-vs-cpu.failures.txt" ] && { echo "== failing / reported checks (first 40)"; cat "$out/cuda-vs-cpu.failures.txt"; }
echo "== summary (logs in $out)"
cat "$summary"
exit $status
