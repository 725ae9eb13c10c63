#!/usr/bin/env bash
# npm run test:cuda-emu: the CUDA backend executed on the emulated CUDA device (native/cuda/test/
# emulator), on a machine without a GPU. Builds (when needed) the addon and covpool_cuda_test
# against the emulator with AddressSanitizer + UndefinedBehaviorSanitizer, then runs, once with the
# backend's caching allocator and once with it off (COVPOOL_CUDA_EXACT_ALLOC=1, so out-of-bounds
# accesses into rounding slack and reads of recycled blocks are seen; host copies then also go
# through small pinned staging chunks):
#   1. covpool_cuda_test in full: every op, method and dtype on CUDA against the CPU backend, error
#      messages, chunked svd-newton, no emulator violation, no device memory left after emptyCache;
#   2. native/cuda/test/gpu-checks.js memory / oom / baddevice through the JS API (1000 calls), and
#      the CUDA benchmark's --smoke run (it works before a GPU session depends on it);
#   3. jest: test/device.test.ts with device 'cuda', test/device-tensors.test.ts (tensors on the
#      device) and test/cuda-emulator.test.ts (fault injection, error order, memory accounting).
# Exits non-zero on any failure or sanitizer report; the last line is jest's summary.
#   COVPOOL_EMU_SANITIZE=0   build and run without the sanitizers (faster; build-cmake/cuda-emu)
# Needs: the CUDA headers (scripts/cuda-toolkit.sh finds or assembles them: nvcc's toolkit plus the
# cuBLAS/cuSOLVER wheel files), OpenBLAS/LAPACKE, cmake, the npm dev dependencies.
set -euo pipefail
cd "$(dirname "$0")/.."
say() { echo "test:cuda-emu: $*"; }
start=$(date +%s)

toolkit="$(bash scripts/cuda-toolkit.sh)" || { say "FAIL: no CUDA headers here (cuda_runtime.h, cublas_v2.h, cusolverDn.h): see scripts/cuda-toolkit.sh" >&2; exit 1; }
sanitize="${COVPOOL_EMU_SANITIZE:-1}"
if [ "$sanitize" = 1 ]; then
  out=build-cmake/cuda-emu-asan
  SAN="-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined"
  flags=("--CDCMAKE_BUILD_TYPE=RelWithDebInfo" "--CDCMAKE_CXX_FLAGS=$SAN" "--CDCMAKE_C_FLAGS=$SAN"
         "--CDCMAKE_SHARED_LINKER_FLAGS=$SAN" "--CDCMAKE_EXE_LINKER_FLAGS=$SAN")
  LIBASAN="$(gcc -print-file-name=libasan.so)"
  [ -f "$LIBASAN" ] || { say "FAIL: libasan.so not found (gcc -print-file-name=libasan.so)" >&2; exit 1; }
  # Node is not instrumented: the ASan runtime is preloaded into node commands only. V8's WebAssembly
  # trap handler would take ASan's SIGSEGV reports.
  san() { LD_PRELOAD="$LIBASAN" NODE_OPTIONS="--disable-wasm-trap-handler" "$@"; }
  export ASAN_OPTIONS="detect_leaks=0:abort_on_error=1:allow_user_segv_handler=1"
  export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
else
  out=build-cmake/cuda-emu
  flags=()
  san() { "$@"; }
fi

say "building the CUDA backend against the emulated device ($out, sanitizers: $([ "$sanitize" = 1 ] && echo 'ASan+UBSan' || echo off))"
log=/tmp/covpool-cuda-emu-build.log
if ! npx cmake-js compile --out "$out" --CDCOVPOOL_CUDA_EMULATED=ON "--CDCUDAToolkit_ROOT=$toolkit" "${flags[@]}" >"$log" 2>&1 ||
   ! cmake --build "$out" --target covpool_cuda_test >>"$log" 2>&1; then
  tail -40 "$log"; say "FAIL: build" >&2; exit 1
fi
if grep -E "warning( #|:)" "$log"; then say "FAIL: the emulated build printed warnings (above)" >&2; exit 1; fi
[ -d dist/lib ] && [ -z "$(find lib -newer dist/lib/index.js -name '*.ts' | head -1)" ] || npm run build:ts >/dev/null
export COVPOOL_ADDON="$PWD/$out/Release/covpool.node"
unset COVPOOL_CUDA_ADDON

sanitizerReport() { grep -qE "ERROR: AddressSanitizer|runtime error:|SUMMARY: (Address|UndefinedBehavior)Sanitizer" "$1"; }
failures=0
jestSummary=""
for cache in on off; do
  # The second pass also stages host copies through 16 KiB pinned chunks (8 MiB by default, which
  # the tests' small arrays never fill), so the double-buffered path runs with many chunks.
  if [ "$cache" = off ]; then export COVPOOL_CUDA_EXACT_ALLOC=1 COVPOOL_CUDA_STAGING_KB=16; else unset COVPOOL_CUDA_EXACT_ALLOC COVPOOL_CUDA_STAGING_KB; fi
  tag="allocator cache $cache"; [ "$cache" = off ] && tag="$tag, 16 KiB staging chunks"

  log=/tmp/covpool-cuda-emu-driver-$cache.log
  if "$out/covpool_cuda_test" >"$log" 2>&1 && ! sanitizerReport "$log"; then
    say "ok    covpool_cuda_test, $tag: $(tail -1 "$log" | sed 's/^covpool_cuda_test: //')"
  else
    failures=$((failures + 1)); grep -vE "^(ok|info) " "$log" | head -60; say "FAIL  covpool_cuda_test, $tag" >&2
  fi

  for check in memory oom baddevice; do
    log=/tmp/covpool-cuda-emu-$check-$cache.log
    # ASan keeps freed host memory in a quarantine (256 MB by default), which the memory check would
    # count as growth: a small one there.
    if ASAN_OPTIONS="${ASAN_OPTIONS:-}:quarantine_size_mb=8" san node --expose-gc native/cuda/test/gpu-checks.js "$check" >"$log" 2>&1 &&
       ! sanitizerReport "$log"; then
      say "ok    gpu-checks $check, $tag: $(grep -E '^(ok|FAIL)' "$log" | tail -1)"
    else
      failures=$((failures + 1)); tail -30 "$log"; say "FAIL  gpu-checks $check, $tag" >&2
    fi
  done

  if [ "$cache" = on ]; then
    log=/tmp/covpool-cuda-emu-bench.log
    if san node dist/bench/cuda.js --smoke --out /tmp/covpool-cuda-emu-bench.json >"$log" 2>&1 && ! sanitizerReport "$log"; then
      say "ok    bench:cuda --smoke (device tensors and host arrays; emulated timings mean nothing)"
    else
      failures=$((failures + 1)); tail -20 "$log"; say "FAIL  bench:cuda --smoke" >&2
    fi
  fi

  log=/tmp/covpool-cuda-emu-jest-$cache.log
  san npx jest test/device.test.ts test/device-tensors.test.ts test/cuda-emulator.test.ts >"$log" 2>&1 || true
  jestSummary="$(grep -E '^Tests: ' "$log" | tail -1)"
  if grep -qE "^Tests: .*[0-9]+ passed" "$log" && ! grep -qE "^Tests: .*failed" "$log" && ! sanitizerReport "$log"; then
    say "ok    jest (device 'cuda', fault injection), $tag: $jestSummary"
  else
    failures=$((failures + 1)); grep -E "●|✕|Error|AddressSanitizer|runtime error" "$log" | head -60; say "FAIL  jest, $tag" >&2
  fi
done

say "$([ "$failures" = 0 ] && echo passed || echo "$failures step(s) FAILED") in $(( $(date +%s) - start )) s"
echo "$jestSummary"
[ "$failures" = 0 ]
