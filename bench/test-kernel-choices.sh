#!/usr/bin/env bash
# Runs the numerical test suites under every kernel choice this machine can run: OpenBLAS's core
# type (its own pick, Haswell = the AVX2 kernels, optionally more via CORETYPES) crossed with the
# level of covpool's own SIMD kernels (COVPOOL_CPU_SIMD: avx512, avx2, baseline; a level the CPU
# lacks runs as the highest one it has). Prints one line per combination and fails if any does.
#
#   bench/test-kernel-choices.sh [extra jest arguments]
#   CORETYPES="auto Haswell Zen SkylakeX" LEVELS="avx512 avx2 baseline" bench/test-kernel-choices.sh
#
# "auto" unsets OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE, so OpenBLAS detects the CPU itself.
set -uo pipefail
cd "$(dirname "$0")/.."
CORETYPES="${CORETYPES:-auto Haswell}"
LEVELS="${LEVELS:-avx512 avx2 baseline}"
SUITES=(test/backward.test.ts test/forward.test.ts test/identities.test.ts test/near-singular.test.ts test/pade.test.ts test/eigensolver.test.ts)
# bench/native/machine.cpp reports which kernels each combination picks.
MACHINE=build/covpool-machine
mkdir -p build
INCLUDES=$(for d in $(node scripts/blas-paths.js include); do printf -- '-I%s ' "$d"; done)
g++ -O2 -std=c++17 -pthread bench/native/machine.cpp $INCLUDES -lopenblas -o "$MACHINE" || exit 1
g++ -O1 -g -fsanitize=address -std=c++17 bench/native/gemm_check.cpp $INCLUDES -lopenblas -o build/covpool-gemm-check || exit 1
status=0
build/covpool-gemm-check || status=1
for core in $CORETYPES; do
  for level in $LEVELS; do
    if [[ "$core" == auto ]]; then env=(env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE); else env=(env OPENBLAS_CORETYPE="$core"); fi
    picked=$("${env[@]}" COVPOOL_CPU_SIMD="$level" "$MACHINE" --sizes 64 --ms 10 --rounds 1 2>/dev/null | node -e "const j = JSON.parse(require('fs').readFileSync(0, 'utf8')); process.stdout.write(j.openblas_core + ' / ' + j.covpool_simd)" 2>/dev/null || echo '?')
    out=$("${env[@]}" COVPOOL_CPU_SIMD="$level" npx jest "${SUITES[@]}" "$@" 2>&1)
    rc=$?
    summary=$(printf '%s\n' "$out" | grep -E '^Tests:' | tail -1)
    printf 'OPENBLAS_CORETYPE=%-9s COVPOOL_CPU_SIMD=%-9s (picked: %s)  %s  %s\n' "$core" "$level" "$picked" "$([[ $rc == 0 ]] && echo PASS || echo FAIL)" "$summary"
    if [[ $rc != 0 ]]; then status=1; printf '%s\n' "$out" | grep -E '●|Expected|Received' | head -40; fi
  done
done
exit $status
