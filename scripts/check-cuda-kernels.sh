#!/usr/bin/env bash
# Compile check of the CUDA backend for machines without a GPU (CI): native/cuda must not rot just
# because CI has no GPU and no cuBLAS/cuSOLVER.
#   1. every .cu file under native/cuda that needs only the CUDA runtime is compiled by nvcc for
#      sm_80 and sm_90, with the flags the CMake build uses (-std=c++17 -fmad=false);
#   2. the host C++ files of the backend are syntax-checked with the toolkit's headers; where the
#      toolkit has no cuBLAS/cuSOLVER headers (as here and in CI), against the declarations in
#      native/cuda/check/api-decls (written from the libraries' documentation: on a GPU machine the
#      real headers are used and the real build is the authority);
#   3. the kernels' per-element math (native/cuda/kmath.cuh) is compiled for the host and compared,
#      bit for bit, with the CPU backend's code (native/cuda/test/kmath_host_test.cu);
#   4. the GPU test driver (native/cuda/test/cuda_vs_cpu.cpp) is built in its self-check mode (the CPU
#      backend against itself) and run, so that it works when a GPU session needs it;
#   5. link check: the CUDA backend, its kernels and the driver are linked with the CUDA runtime;
#      every symbol must resolve except the cuBLAS / cuSOLVER entry points (when those libraries
#      are absent, as here), which catches kernel launchers declared but not instantiated.
# Exits non-zero on any failure; prints a notice and exits 0 when no nvcc is installed.
# Usage: bash scripts/check-cuda-kernels.sh   (COVPOOL_NVCC=/path/to/nvcc to choose one)
set -uo pipefail
cd "$(dirname "$0")/.."

say() { echo "check-cuda-kernels: $*"; }

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

# The toolkit's include directory, as nvcc itself reports it (nvcc may be a wrapper script).
cuda_inc="$("$nvcc" --dryrun -x cu -c /dev/null -o /dev/null 2>&1 | sed -n 's/^#\$ INCLUDES="-I\([^"]*\)".*/\1/p' | head -1 | sed 's/[[:space:]]*$//')"
if [ -z "$cuda_inc" ] || [ ! -f "$cuda_inc/cuda_runtime.h" ]; then
  cuda_inc="$(dirname "$(readlink -f "$nvcc")")/../include"
fi
cxx="${CXX:-g++}"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
passed=0
failed=0
ok() { passed=$((passed + 1)); say "ok    $*"; }
bad() { failed=$((failed + 1)); say "FAIL  $*"; }

# ---- 1. device code needing only the CUDA runtime -------------------------------------------------
libs_re='#[[:space:]]*include[[:space:]]*[<"](cublas|cusolver|cusparse|curand|cufft|cudnn|nccl)'
arches=(-gencode arch=compute_80,code=sm_80 -gencode arch=compute_90,code=sm_90)
while IFS= read -r cu; do
  if grep -Eq "$libs_re" "$cu"; then
    say "skip  $cu (includes a CUDA library header: built only where the library is, by CMake)"
    continue
  fi
  case "$cu" in native/cuda/test/*) continue ;; esac  # host tests: step 3
  obj="$tmp/cu_$(basename "$cu" .cu).o"
  if "$nvcc" -std=c++17 -fmad=false -O3 "${arches[@]}" -Xcompiler -fPIC,-Wall,-Wextra,-Wno-unused-parameter \
      -c "$cu" -o "$obj" >"$tmp/log" 2>&1; then
    ok "$cu (sm_80, sm_90)"
  else
    bad "$cu"; cat "$tmp/log"
  fi
  grep -i "warning" "$tmp/log" || true
done < <(find native/cuda -name '*.cu' | sort)

# ---- 2. host C++ files of the backend ----------------------------------------------------------------
decls=()
if [ ! -f "$cuda_inc/cublas_v2.h" ] || [ ! -f "$cuda_inc/cusolverDn.h" ]; then
  decls=(-I native/cuda/check/api-decls)
  say "no cuBLAS/cuSOLVER headers in $cuda_inc: syntax-checking against native/cuda/check/api-decls"
fi
for src in $(find native/cuda -maxdepth 1 -name '*.cpp' | sort); do
  if "$cxx" -std=c++17 -Wall -Wextra -Wno-unused-parameter -fsyntax-only -I "$cuda_inc" "${decls[@]}" "$src" >"$tmp/log" 2>&1; then
    ok "$src (syntax, $cxx)"
  else
    bad "$src"; cat "$tmp/log"
  fi
done

# ---- 3. kmath host test against the CPU backend ----------------------------------------------------------
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

# ---- 4. the GPU test driver, self-check mode ------------------------------------------------------------------
if [ -z "$cblas_dir" ] || [ ! -f /usr/include/lapacke.h ]; then
  say "skip  native/cuda/test/cuda_vs_cpu.cpp and the link check (no cblas.h / lapacke.h)"
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

  # ---- 5. link check -----------------------------------------------------------------------------------------
  if [ ! -f "$tmp/cu_kernels.o" ]; then
    say "skip  link check (kernels.cu did not compile)"
  else
    link_objs=("$tmp/cu_kernels.o")
    for src in native/cuda/device_memory.cpp native/cuda/cuda_backend.cpp native/cuda/test/cuda_vs_cpu.cpp; do
      o="$tmp/link_$(basename "$src" .cpp).o"
      "$cxx" -std=c++17 -O1 -fPIC -I "$cuda_inc" "${decls[@]}" -I "$cblas_dir" -c "$src" -o "$o" >"$tmp/log" 2>&1 \
        || { bad "$src (build for the link check)"; cat "$tmp/log"; }
      link_objs+=("$o")
    done
    libs=(-llapacke -lopenblas -lpthread)
    [ ${#decls[@]} -eq 0 ] && libs+=(-lcusolver -lcublas)
    "$nvcc" -o "$tmp/linked" "${link_objs[@]}" "${cpu_objs[@]}" "${libs[@]}" >"$tmp/log" 2>&1
    missing="$(grep -o "undefined reference to \`[^']*'" "$tmp/log" | sed "s/undefined reference to \`//; s/'$//" | sort -u)"
    unexpected="$(printf '%s\n' "$missing" | grep -v -E '^(cublas|cusolver)' | grep -v '^$' || true)"
    if [ -x "$tmp/linked" ]; then
      ok "link check (everything resolves)"
    elif [ -n "$missing" ] && [ -z "$unexpected" ]; then
      ok "link check (all resolved but $(printf '%s\n' "$missing" | wc -l) cuBLAS/cuSOLVER entry points, absent here)"
    else
      bad "link check"; if [ -n "$unexpected" ]; then printf '%s\n' "$unexpected" | sed 's/^/  unresolved: /'; else tail -20 "$tmp/log"; fi
    fi
  fi
fi

say "$passed ok, $failed failing"
[ "$failed" -eq 0 ]
