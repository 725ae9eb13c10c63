#!/usr/bin/env bash
# Prints the root of a CUDA toolkit that can build covpool's CUDA backend (nvcc, the CUDA runtime,
# cuBLAS and cuSOLVER headers and libraries), assembling one when needed.
#
#   root=$(bash scripts/cuda-toolkit.sh [DIR])      # exit 0: root printed on stdout
#                                                    # exit 2: none possible here (reason on stderr)
#
# 1. A complete toolkit is used as it is: $COVPOOL_CUDA_TOOLKIT, $CUDA_HOME, nvcc's own toolkit,
#    /usr/local/cuda*.
# 2. Otherwise, where nvcc exists but cuBLAS/cuSOLVER do not (CI images, a machine with the CUDA
#    compiler but without the math libraries), NVIDIA's wheel files of those libraries are looked
#    for on this disk (nvidia_cublas, nvidia_cusolver and what libcusolver needs at link time:
#    nvidia_cusparse, nvidia_nvjitlink; $COVPOOL_CUDA_WHEELS names a folder to look in first) and
#    DIR (default build-cmake/cuda-toolkit) is assembled: bin/ and nvvm/ link to nvcc's toolkit,
#    include/ and lib64/ hold links to the toolkit's files plus the wheels' headers and libraries
#    (unpacked under DIR/wheels). CMake takes it as CUDAToolkit_ROOT.
# Nothing is downloaded.
set -euo pipefail
cd "$(dirname "$0")/.."
say() { echo "cuda-toolkit: $*" >&2; }

complete() {  # complete DIR: nvcc, runtime headers, cuBLAS/cuSOLVER headers and libraries
  local d=$1
  [ -x "$d/bin/nvcc" ] && [ -f "$d/include/cuda_runtime.h" ] || return 1
  [ -f "$d/include/cublas_v2.h" ] && [ -f "$d/include/cusolverDn.h" ] || return 1
  ls "$d"/lib64/libcublas.so* "$d"/lib64/libcusolver.so* >/dev/null 2>&1 || return 1
}

# The toolkit nvcc belongs to (nvcc may be a wrapper script: ask it where its headers are).
nvcc_toolkit() {
  local nvcc inc
  nvcc=$(command -v nvcc 2>/dev/null || true)
  if [ -z "$nvcc" ]; then
    for c in $(ls -d /usr/local/cuda*/bin/nvcc 2>/dev/null | sort -rV); do [ -x "$c" ] && { nvcc=$c; break; }; done
  fi
  [ -n "$nvcc" ] || return 1
  inc=$("$nvcc" --dryrun -x cu -c /dev/null -o /dev/null 2>&1 | sed -n 's/^#\$ INCLUDES="-I\([^"]*\)".*/\1/p' | head -1 | sed 's/[[:space:]]*$//')
  local root
  if [ -n "$inc" ] && [ -f "$inc/cuda_runtime.h" ]; then
    root=$(readlink -f "$inc/..")
    # targets/x86_64-linux/include -> the toolkit root two levels up
    case "$root" in */targets/*) root=$(readlink -f "$root/../..") ;; esac
  else
    root=$(readlink -f "$(dirname "$(readlink -f "$nvcc")")/..")
  fi
  [ -x "$root/bin/nvcc" ] && [ -f "$root/include/cuda_runtime.h" ] && echo "$root"
}

for cand in "${COVPOOL_CUDA_TOOLKIT:-}" "${CUDA_HOME:-}" "$(nvcc_toolkit || true)" $(ls -d /usr/local/cuda* 2>/dev/null | sort -rV); do
  if [ -n "$cand" ] && complete "$cand"; then echo "$cand"; exit 0; fi
done

tk=$(nvcc_toolkit || true)
if [ -z "$tk" ]; then say "no nvcc (PATH, /usr/local/cuda*/bin): no CUDA toolkit here"; exit 2; fi

dir=${1:-build-cmake/cuda-toolkit}
# Assembled before (and still complete): reuse it without searching the disk again.
if [ -f "$dir/.assembled-from" ] && complete "$dir"; then (cd "$dir" && pwd); exit 0; fi

wheel() {  # the newest wheel file of a package, from $COVPOOL_CUDA_WHEELS or anywhere on this disk
  local w=""
  if [ -n "${COVPOOL_CUDA_WHEELS:-}" ]; then w=$(ls "$COVPOOL_CUDA_WHEELS"/"$1"-*.whl 2>/dev/null | sort -V | tail -1 || true); fi
  [ -n "$w" ] || w=$(find / -xdev -name "$1-*.whl" -not -path '/proc/*' 2>/dev/null | sort -V | tail -1)
  echo "$w"
}
wheels=()
for name in nvidia_cublas nvidia_cusolver nvidia_cusparse nvidia_nvjitlink; do
  w=$(wheel "$name")
  if [ -z "$w" ]; then say "nvcc at $tk has no cuBLAS/cuSOLVER, and no $name wheel is on this disk"; exit 2; fi
  wheels+=("$w")
done

mkdir -p "$dir"
dir=$(cd "$dir" && pwd)
stamp="$dir/.assembled-from"
want="$tk ${wheels[*]}"

rm -rf "$dir/wheels" "$dir/include" "$dir/lib64"
mkdir -p "$dir/wheels" "$dir/include" "$dir/lib64"
for w in "${wheels[@]}"; do
  say "unpacking $(basename "$w")"
  # headers and libraries only (the wheels' lib folders are nvidia/<lib>/lib or nvidia/cu13/lib)
  python3 - "$w" "$dir/wheels" <<'EOF'
import sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z:
    for n in z.namelist():
        if '/include/' in n or '/lib/' in n:
            z.extract(n, sys.argv[2])
EOF
done

ln -sfn "$tk/bin" "$dir/bin"
if [ -d "$tk/nvvm" ]; then ln -sfn "$tk/nvvm" "$dir/nvvm"; fi
link_into() {  # link every entry of folder $1 into folder $2
  local f
  for f in "$1"/*; do [ -e "$f" ] && ln -sfn "$f" "$2/$(basename "$f")"; done
  return 0
}
link_into "$tk/include" "$dir/include"
for d in "$tk/lib64" "$tk/targets/x86_64-linux/lib"; do [ -d "$d" ] && link_into "$d" "$dir/lib64"; done
while IFS= read -r inc; do link_into "$inc" "$dir/include"; done < <(find "$dir/wheels" -type d -name include)
while IFS= read -r lib; do
  for f in "$lib"/*.so*; do
    b=$(basename "$f")
    ln -sfn "$f" "$dir/lib64/$b"
    ln -sfn "$b" "$dir/lib64/${b%%.so*}.so"  # the link-time name (libcublas.so -> libcublas.so.13)
  done
done < <(find "$dir/wheels" -type d -name lib)
# CMake's FindCUDAToolkit also looks under targets/<arch>/: the same two folders.
mkdir -p "$dir/targets/x86_64-linux"
ln -sfn ../../include "$dir/targets/x86_64-linux/include"
ln -sfn ../../lib64 "$dir/targets/x86_64-linux/lib"

if ! complete "$dir" || ! grep -q cusolverDnXsyevBatched "$dir/include/cusolverDn.h"; then
  say "assembled $dir but it is incomplete (no cusolverDnXsyevBatched?)"; exit 2
fi
echo "$want" >"$stamp"
say "assembled $dir: nvcc from $tk; cuBLAS/cuSOLVER from $(for w in "${wheels[@]}"; do basename "$w" | cut -d- -f1,2; done | tr '\n' ' ')"
echo "$dir"
