#!/usr/bin/env bash
# The GPU test plan, for a bare GPU machine: needs only the NVIDIA driver, the CUDA 13 cuBLAS and
# cuSOLVER libraries, and gpu-bundle/ (built beforehand by `npm run gpu:bundle`; no Node, BLAS,
# compiler or registry is used). Run in the repository root:
#   bash native/cuda/test/run-on-gpu.sh
# Steps, each with a time limit (about 5 minutes in all): unpack the bundle; load the CUDA-enabled
# addon; stop here, with the reason, when no GPU is usable; nvidia-smi; covpool_cuda_test --bench
# (every op, method and dtype against the CPU backend, then gpu-l timings); the jest device tests
# on the CUDA device; the 1000-call memory check; the out-of-memory and bad-device checks; the CUDA
# benchmark. Logs and summary.txt go to $OUT (default gpu-run/); the summary is printed last.
# Exit status: 0 all passed, 1 a step failed, 3 no usable GPU.
# COVPOOL_CUDA_LIB_DIRS names the cuBLAS/cuSOLVER folder when it is not under /usr/local/cuda*.
set -uo pipefail
cd "$(dirname "$0")/../../.."
bundle="${COVPOOL_GPU_BUNDLE:-gpu-bundle}"
out="${OUT:-gpu-run}"
mkdir -p "$out"
summary="$out/summary.txt"
: >"$summary"
status=0
note() { echo "$*" | tee -a "$summary"; }

if [ ! -f "$bundle/covpool-cuda.node.xz" ]; then
  note "no $bundle/ here: build it with 'npm run gpu:bundle' and carry it (native/cuda/README.md, \"Running on a GPU\")"
  exit 1
fi
cat "$bundle/MANIFEST" | tee -a "$summary"

# ---- unpack -------------------------------------------------------------------------------------
work="$(mktemp -d /tmp/covpool-gpu.XXXXXX)"
mkdir -p "$work/bin"
xz -dc "$bundle/node.xz" >"$work/bin/node" && chmod +x "$work/bin/node"
xz -dc "$bundle/covpool-cuda.node.xz" >"$work/covpool-cuda.node"
xz -dc "$bundle/covpool_cuda_test.xz" >"$work/covpool_cuda_test" && chmod +x "$work/covpool_cuda_test"
[ -d node_modules/jest ] || xz -dc "$bundle/node_modules.tar.xz" | tar -xf -
rm -rf dist && xz -dc "$bundle/dist.tar.xz" | tar -xf -
export PATH="$work/bin:$PATH"
# The CUDA-enabled addon serves every op (CPU and CUDA) in the steps below.
export COVPOOL_ADDON="$work/covpool-cuda.node"

# cuBLAS/cuSOLVER: where the dynamic loader will find them for the addon and the test driver.
libdir=""
for d in ${COVPOOL_CUDA_LIB_DIRS//:/ } ${CUDA_HOME:+$CUDA_HOME/targets/x86_64-linux/lib $CUDA_HOME/lib64} \
         $(ls -d /usr/local/cuda*/targets/x86_64-linux/lib /usr/local/cuda*/lib64 2>/dev/null | sort -rV); do
  if [ -e "$d/libcublas.so.13" ] && [ -e "$d/libcusolver.so.12" ]; then libdir="$d"; break; fi
done
if [ -n "$libdir" ]; then
  export LD_LIBRARY_PATH="$libdir${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  note "cuBLAS/cuSOLVER from $libdir"
else
  note "cuBLAS/cuSOLVER: not under COVPOOL_CUDA_LIB_DIRS, CUDA_HOME or /usr/local/cuda*; relying on the system library path"
fi

step() {  # step NAME SECONDS COMMAND...: runs it with a time limit, logs to $out/NAME.log
  local name=$1 limit=$2 t0=$SECONDS r=ok line
  shift 2
  timeout "$limit" "$@" >"$out/$name.log" 2>&1 || { r=FAIL; status=1; }
  line="$(grep -v '^\s*$' "$out/$name.log" | tail -1)"
  if [ "$r" = FAIL ]; then line="$(grep -m1 -E 'FAIL|Error|error|✕' "$out/$name.log" || echo "$line")"; fi
  printf '%-12s %-4s %4ss  %s\n' "$name" "$r" $((SECONDS - t0)) "$(echo "$line" | cut -c1-120)" | tee -a "$summary"
}

step addon 60 node -e "
  const i = require('./dist/lib').backendInfo();
  console.log(JSON.stringify({ binary: i.binary, cuda: i.cuda, cudaDevices: i.cudaDevices, cudaReason: i.cudaReason }));
  if (!i.cuda) process.exit(1);"
devices="$(node -e "console.log(require('./dist/lib').backendInfo().cudaDevices)" 2>/dev/null || echo 0)"
smi=ok
nvidia-smi -L >"$out/nvidia-smi.log" 2>&1 || smi=failed
if [ "$smi" != ok ] || ! [ "${devices:-0}" -gt 0 ] 2>/dev/null; then
  # No usable GPU (the rehearsal on a machine without one ends here): show that the carried test
  # driver and test runner work, then stop with the reason.
  step driver 60 "$work/covpool_cuda_test" --no-gpu-ok
  step jest-nogpu 120 node node_modules/jest/bin/jest.js --ci test/device.test.ts
  reason="$(node -e "console.log(require('./dist/lib').backendInfo().cudaReason)" 2>/dev/null)"
  note "no GPU: nvidia-smi ${smi}: $(head -1 "$out/nvidia-smi.log" 2>/dev/null | cut -c1-100); covpool: ${reason:-the CUDA-enabled addon did not load (see $out/addon.log)}"
  note "stopping: the GPU steps (covpool_cuda_test, jest on cuda, memory, oom, bad device, benchmark) need a GPU"
  rm -rf "$work"
  exit 3
fi
nvidia-smi --query-gpu=name,driver_version,memory.total,compute_cap --format=csv,noheader >>"$out/nvidia-smi.log" 2>&1
note "GPU: $(tail -1 "$out/nvidia-smi.log")"

step cuda-vs-cpu 120 "$work/covpool_cuda_test" --bench
grep -E '^(FAIL|info)' "$out/cuda-vs-cpu.log" | head -40 >"$out/cuda-vs-cpu.failures.txt" || true
step jest-cuda 180 node node_modules/jest/bin/jest.js --ci test/device.test.ts test/device-tensors.test.ts
step memory 60 node --expose-gc native/cuda/test/gpu-checks.js memory
step oom 45 node native/cuda/test/gpu-checks.js oom
step baddevice 30 node native/cuda/test/gpu-checks.js baddevice
step bench 240 node dist/bench/cuda.js --workloads gpu-l,gpu-m,gpu-s --out "$out/bench-cuda.json"

echo "== covpool_cuda_test failures and reported-only rows (first 40; all in $out/cuda-vs-cpu.log)"
cat "$out/cuda-vs-cpu.failures.txt"
grep '^BENCH' "$out/cuda-vs-cpu.log" | tee -a "$summary" || true
grep 'fwd+bwd median' "$out/bench.log" | tee -a "$summary" || true
echo "== summary (logs in $out)"
cat "$summary"
rm -rf "$work"
exit $status
