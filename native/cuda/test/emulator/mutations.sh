#!/usr/bin/env bash
# Checks that the emulated CUDA device catches the kinds of bugs it exists for: each mutation below
# is applied to the backend's sources in turn, covpool_cuda_test is rebuilt against the emulator
# (build-cmake/cuda-emu-mutations, no sanitizers) and must FAIL; the sources are restored after each.
# Not part of CI (five rebuilds); run by hand after changing the emulator:
#   bash native/cuda/test/emulator/mutations.sh
set -euo pipefail
cd "$(dirname "$0")/../../../.."
toolkit="$(bash scripts/cuda-toolkit.sh)"
out=build-cmake/cuda-emu-mutations
npx cmake-js configure --out "$out" --CDCOVPOOL_CUDA_EMULATED=ON "--CDCUDAToolkit_ROOT=$toolkit" >/dev/null

# file | sed expression | what it models
mutations=(
  "native/cuda/cuda_backend.cpp|s/gemmSq<T>(cx, false, true, n, T(1), t1, w, T(0), g, B);    \/\/ M = W G W^T/gemmSq<T>(cx, false, false, n, T(1), t1, w, T(0), g, B);/|a wrong transpose in a cuBLAS call"
  "native/cuda/kernels.cu|s/y\[b \* tri + rowStart(i, n) + (j - i)\] = a\[idx\];/y[b * tri + rowStart(i, n) + (j - i) + 1] = a[idx];/|an off-by-one in a packing kernel"
  "native/cuda/kernels.cu|s/for (int off = 16; off > 0; off >>= 1)/for (int off = 16; off > 1; off >>= 1)/|a shortened warp reduction"
  "native/cuda/cuda_backend.cpp|s/xc, N, sx, xc, N, sx, T(0), a, C, sa, B);/xc, N, sx, xc, N, sx, T(0), a, C + 1, sa, B);/|a wrong leading dimension"
  "native/cuda/cuda_backend.cpp|s/void\* inBlock = k + 2 < chunks ? cx.pinned(cx.up, k \& 1) : nullptr;/void* inBlock = k + 2 < chunks ? cx.up.block[k \& 1] : nullptr;/|a pinned block refilled before its DMA is known to be done"
)
caught=0
for m in "${mutations[@]}"; do
  IFS='|' read -r file expr what <<<"$m"
  cp "$file" "$file.orig"
  trap 'mv "$file.orig" "$file"; touch "$file"' EXIT
  sed -i "$expr" "$file"
  if cmp -s "$file" "$file.orig"; then echo "mutations: '$what' did not apply to $file" >&2; exit 1; fi
  cmake --build "$out" --target covpool_cuda_test >/tmp/covpool-mutation.log 2>&1 || { tail -20 /tmp/covpool-mutation.log; exit 1; }
  if "$out/covpool_cuda_test" >/tmp/covpool-mutation-run.log 2>&1; then
    echo "NOT CAUGHT  $what"
  else
    caught=$((caught + 1))
    echo "caught      $what: $(grep -c '^FAIL' /tmp/covpool-mutation-run.log) failing checks, $(grep -c 'VIOLATION' /tmp/covpool-mutation-run.log) emulator violations"
  fi
  mv "$file.orig" "$file"
  touch "$file"  # newer than what the mutated build generated from it, so the next build redoes it
  trap - EXIT
done
cmake --build "$out" --target covpool_cuda_test >/dev/null 2>&1
echo "mutations: $caught of ${#mutations[@]} caught"
[ "$caught" = "${#mutations[@]}" ]
