#!/usr/bin/env bash
# Runs the PyTorch baseline (bench/torch: the same ten layers written in PyTorch) and then covpool's
# CPU benchmark, one after the other in the same session so that the ratios compare like with like,
# writes both JSON files into a folder of their own, bench/results/STAMP/, and prints the comparison:
#
#   bench/results/STAMP/covpool.json, torch.json            one round
#   bench/results/STAMP/covpool-rN.json, torch-rN.json      round N of several (ROUNDS > 1)
#   bench/results/STAMP/combined.json                       the medians over the rounds (bench/combine.ts)
#   bench/results/STAMP/machine[-rN].json                   kernels in use and the GEMM rates measured
#                                                           right before covpool's timings (the
#                                                           Newton-Schulz floor's rate)
#   bench/results/STAMP/rounds.log                          per round: the wait for an idle machine,
#                                                           the load when it started
#
#   bench/run-cpu.sh [-- extra options for dist/bench/cpu.js]
#
# The baseline needs a Python with torch (and nothing else). It uses $PYTHON when set; otherwise
# it takes the newest torch among /opt/torch*/bin/python, ./.venv*/bin/python, python3 and
# /usr/bin/python3 (a current PyTorch, e.g. `python3 -m venv /opt/torch && /opt/torch/bin/pip
# install torch --index-url https://download.pytorch.org/whl/cpu`, is much faster on the CPU than
# an old distribution package, and it is what users compare against). Without one, only covpool
# is timed.
#
# Environment:
#   PYTHON               interpreter for the baseline (default: found as above)
#   THREADS              threads for both sides (default: the core count); COVPOOL_NUM_THREADS,
#                        when set, overrides covpool's side
#   STAMP                the run's folder name (default: today's date, YYYY-MM-DD; name what was
#                        measured after it, e.g. STAMP=2026-12-01-2threads-stair; a time is
#                        appended when the folder exists already)
#   ROUNDS               rounds of (baseline, covpool) pairs (default 1); with more than one, each
#                        round's files get an -rN suffix and bench/combine.ts prints and writes the
#                        medians over rounds (combined.json): on a shared machine one pair can be
#                        off by tens of percent
#   CONFIGS, METHODS, REPEATS  passed to bench/torch/bench_layers.py (workloads, methods, runs)
#   CPU_KERNELS          which kernels both sides run (default: the environment decides):
#                          native  everything picks for this CPU: OPENBLAS_CORETYPE, OPENBLAS_L2_SIZE
#                                  and COVPOOL_CPU_SIMD are unset
#                          avx2    the code an AVX2-only x86-64 CPU runs, on any newer one: OpenBLAS's
#                                  Haswell kernels (OPENBLAS_CORETYPE=Haswell), covpool's SIMD capped
#                                  at AVX2 (COVPOOL_CPU_SIMD=avx2), and PyTorch capped likewise
#                                  (ATEN_CPU_CAPABILITY=avx2, MKL_ENABLE_INSTRUCTIONS=AVX2,
#                                  ONEDNN_MAX_CPU_ISA=AVX2). On an AVX-512 machine that is "AVX2 code
#                                  paths on an AVX-512 machine", not an AVX2 machine: clocks, caches
#                                  and load/store widths stay those of the AVX-512 CPU.
#   WAIT_IDLE            before each round, wait until the 1-minute load average is below this
#                        (e.g. 0.5; polled every 30 s, given up after WAIT_MAX seconds, default 1200,
#                        and then run anyway); each round's wait and load go into rounds.log
#   COMPARE_ADDON        another covpool binary (e.g. a build of the previous commit) timed in every
#                        round right after this one, against the same baseline: covpool-compare[-rN].json
#                        and, over rounds, combined-compare.json
#
# The baseline takes a few minutes on a 2-core machine. Run on an otherwise idle machine: both
# sides are timed with all cores busy, so any other load skews the ratios.
set -euo pipefail

cd "$(dirname "$0")/.."

if [[ $# -gt 0 && "$1" == "--" ]]; then shift; fi

THREADS="${THREADS:-$(nproc 2>/dev/null || echo 1)}"
export COVPOOL_NUM_THREADS="${COVPOOL_NUM_THREADS:-$THREADS}"
case "${CPU_KERNELS:-}" in
  "") ;;
  native) unset OPENBLAS_CORETYPE OPENBLAS_L2_SIZE COVPOOL_CPU_SIMD COVPOOL_CPU_BASELINE ATEN_CPU_CAPABILITY MKL_ENABLE_INSTRUCTIONS ONEDNN_MAX_CPU_ISA ;;
  avx2) unset OPENBLAS_L2_SIZE COVPOOL_CPU_BASELINE
        export OPENBLAS_CORETYPE=Haswell COVPOOL_CPU_SIMD=avx2 ATEN_CPU_CAPABILITY=avx2 MKL_ENABLE_INSTRUCTIONS=AVX2 ONEDNN_MAX_CPU_ISA=AVX2 ;;
  *) echo "run-cpu: CPU_KERNELS must be native or avx2, got '$CPU_KERNELS'" >&2; exit 2 ;;
esac
# The interpreter with the newest torch, unless PYTHON names one.
torch_version() { "$1" -c 'import torch; print(torch.__version__)' 2>/dev/null; }
if [[ -z "${PYTHON:-}" ]]; then
  best=""
  for py in /opt/torch*/bin/python .venv*/bin/python python3 /usr/bin/python3; do
    command -v "$py" >/dev/null 2>&1 || continue
    v=$(torch_version "$py") || continue
    if [[ -z "$best" ]] || [[ "$(printf '%s\n%s\n' "$bestv" "$v" | sort -V | tail -1)" == "$v" && "$v" != "$bestv" ]]; then
      best="$py"; bestv="$v"
    fi
  done
  PYTHON="${best:-}"
fi

RESULTS=bench/results
mkdir -p "$RESULTS"
STAMP="${STAMP:-$(date +%F)}"
if [[ -e "$RESULTS/$STAMP" ]]; then
  STAMP="$STAMP-$(date +%H%M%S)"
fi
RUN="$RESULTS/$STAMP"
mkdir -p "$RUN"
ROUNDS="${ROUNDS:-1}"

# Build the TypeScript (the bench is compiled with the library); the addon must be built already
# (build/Release) or prebuilt (prebuilds/).
if [[ -x node_modules/.bin/tsc ]]; then
  node_modules/.bin/tsc -p tsconfig.json
elif [[ ! -f dist/bench/cpu.js ]]; then
  echo "run-cpu: dist/bench/cpu.js is missing and TypeScript is not installed (npm install)" >&2
  exit 1
fi
if ! node -e "require('./dist/lib').backendInfo()" >/dev/null 2>&1; then
  echo "run-cpu: the covpool addon does not load; build it first (npm run build:native)" >&2
  node -e "require('./dist/lib').backendInfo()" 2>&1 | tail -3 >&2 || true
  exit 1
fi

echo "run-cpu: $(nproc) cores, THREADS=$THREADS, COVPOOL_NUM_THREADS=$COVPOOL_NUM_THREADS, load average $(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || echo '?')"
echo "run-cpu: CPU_KERNELS=${CPU_KERNELS:-(environment)}: OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-(auto)} COVPOOL_CPU_SIMD=${COVPOOL_CPU_SIMD:-(auto)} ATEN_CPU_CAPABILITY=${ATEN_CPU_CAPABILITY:-(auto)}"

# The kernels in use and the machine's GEMM rate (bench/native/machine.cpp), measured before each
# round's covpool timings; without a C++ compiler the floor falls back to a fixed rate.
MACHINE=""
SIZES=$(node -e "const c = process.env.CONFIGS ? JSON.parse(process.env.CONFIGS).map((w) => w.C) : [256, 64]; process.stdout.write([...new Set(c)].join(','))")
if command -v g++ >/dev/null 2>&1; then
  mkdir -p build
  INCLUDES=$(for d in $(node scripts/blas-paths.js include); do printf -- '-I%s ' "$d"; done)
  if g++ -O2 -std=c++17 -pthread bench/native/machine.cpp $INCLUDES -lopenblas -o build/covpool-machine; then
    MACHINE=build/covpool-machine
  fi
fi
[[ -n "$MACHINE" ]] || echo "run-cpu: bench/native/machine.cpp did not build: the Newton-Schulz floor uses a fixed GEMM rate"
if [[ -n "${COMPARE_ADDON:-}" && ! -f "$COMPARE_ADDON" ]]; then
  echo "run-cpu: COMPARE_ADDON=$COMPARE_ADDON does not exist" >&2
  exit 1
fi
load1() { cut -d' ' -f1 /proc/loadavg; }
wait_idle() {  # WAIT_IDLE: wait for a 1-minute load below it, at most WAIT_MAX seconds
  local start now waited
  start=$(date +%s)
  while [[ -n "${WAIT_IDLE:-}" ]] && awk -v l="$(load1)" -v t="$WAIT_IDLE" 'BEGIN { exit !(l >= t) }'; do
    now=$(date +%s)
    waited=$(( now - start ))
    if (( waited >= ${WAIT_MAX:-1200} )); then
      echo "gave up after ${waited} s"
      return
    fi
    sleep 30
  done
  echo "waited $(( $(date +%s) - start )) s"
}

have_torch=1
if [[ -z "$PYTHON" ]] || ! torch_version "$PYTHON" >/dev/null; then
  echo "run-cpu: no Python with torch found (set PYTHON): skipping the PyTorch baseline"
  have_torch=0
fi

PAIRS=()
COMPARE_PAIRS=()
for (( round = 1; round <= ROUNDS; round++ )); do
  suffix=""
  if (( ROUNDS > 1 )); then suffix="-r$round"; echo "run-cpu: round $round of $ROUNDS"; fi
  OURS="$RUN/covpool$suffix.json"
  TORCH="$RUN/torch$suffix.json"
  if [[ -n "${WAIT_IDLE:-}" ]]; then
    echo "run-cpu: waiting for a 1-minute load below $WAIT_IDLE (now $(load1); at most ${WAIT_MAX:-1200} s)"
    waitmsg=$(wait_idle)
    echo "run-cpu: $waitmsg"
  else
    waitmsg="no wait (WAIT_IDLE unset)"
  fi
  echo "round $round: $waitmsg; load average at its start $(cut -d' ' -f1-3 /proc/loadavg); $(date -u +%FT%TZ)" >> "$RUN/rounds.log"
  ANCHOR_ARGS=()
  if (( have_torch )); then
    echo "run-cpu: baseline: torch $(torch_version "$PYTHON") from $PYTHON, THREADS=$THREADS (a few minutes)"
    start=$(date +%s)
    THREADS="$THREADS" "$PYTHON" bench/torch/bench_layers.py cpu "$TORCH"
    echo "run-cpu: baseline done in $(( $(date +%s) - start )) s, load average $(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || echo '?')"
    ANCHOR_ARGS=(--anchor "$TORCH")
    PAIRS+=("$OURS" "$TORCH")
  fi
  MACHINE_ARGS=()
  if [[ -n "$MACHINE" ]]; then
    "$MACHINE" --threads "$COVPOOL_NUM_THREADS" --sizes "$SIZES" > "$RUN/machine$suffix.json" && MACHINE_ARGS=(--machine "$RUN/machine$suffix.json")
  fi
  echo "run-cpu: covpool: node dist/bench/cpu.js ${ANCHOR_ARGS[*]:-} ${MACHINE_ARGS[*]:-} --out $OURS $*"
  node dist/bench/cpu.js "${ANCHOR_ARGS[@]}" "${MACHINE_ARGS[@]}" --out "$OURS" "$@"
  if [[ -n "${COMPARE_ADDON:-}" ]]; then
    COMPARE="$RUN/covpool-compare$suffix.json"
    echo "run-cpu: the comparison binary: COVPOOL_ADDON=$COMPARE_ADDON node dist/bench/cpu.js ... --out $COMPARE"
    COVPOOL_ADDON="$COMPARE_ADDON" node dist/bench/cpu.js "${ANCHOR_ARGS[@]}" "${MACHINE_ARGS[@]}" --out "$COMPARE" "$@"
    if (( have_torch )); then COMPARE_PAIRS+=("$COMPARE" "$TORCH"); fi
  fi
  echo
  echo "run-cpu: results: $OURS${ANCHOR_ARGS:+ and $TORCH}"
done

if (( ROUNDS > 1 && have_torch )); then
  echo
  node dist/bench/combine.js --out "$RUN/combined.json" "${PAIRS[@]}"
  if (( ${#COMPARE_PAIRS[@]} > 0 )); then
    echo
    echo "run-cpu: the comparison binary ($COMPARE_ADDON):"
    node dist/bench/combine.js --out "$RUN/combined-compare.json" "${COMPARE_PAIRS[@]}"
  fi
fi
