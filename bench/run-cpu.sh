#!/usr/bin/env bash
# Runs the PyTorch baseline (bench/torch: the same ten layers written in PyTorch) and then covpool's
# CPU benchmark, one after the other in the same session so that the ratios compare like with like,
# writes both JSON files into a folder of their own, bench/results/STAMP/, and prints the comparison:
#
#   bench/results/STAMP/covpool.json, torch.json            one round
#   bench/results/STAMP/covpool-rN.json, torch-rN.json      round N of several (ROUNDS > 1)
#   bench/results/STAMP/combined.json                       the medians over the rounds (bench/combine.ts)
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
#
# The baseline takes a few minutes on a 2-core machine. Run on an otherwise idle machine: both
# sides are timed with all cores busy, so any other load skews the ratios.
set -euo pipefail

cd "$(dirname "$0")/.."

if [[ $# -gt 0 && "$1" == "--" ]]; then shift; fi

THREADS="${THREADS:-$(nproc 2>/dev/null || echo 1)}"
export COVPOOL_NUM_THREADS="${COVPOOL_NUM_THREADS:-$THREADS}"
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

have_torch=1
if [[ -z "$PYTHON" ]] || ! torch_version "$PYTHON" >/dev/null; then
  echo "run-cpu: no Python with torch found (set PYTHON): skipping the PyTorch baseline"
  have_torch=0
fi

PAIRS=()
for (( round = 1; round <= ROUNDS; round++ )); do
  suffix=""
  if (( ROUNDS > 1 )); then suffix="-r$round"; echo "run-cpu: round $round of $ROUNDS"; fi
  OURS="$RUN/covpool$suffix.json"
  TORCH="$RUN/torch$suffix.json"
  ANCHOR_ARGS=()
  if (( have_torch )); then
    echo "run-cpu: baseline: torch $(torch_version "$PYTHON") from $PYTHON, THREADS=$THREADS (a few minutes)"
    start=$(date +%s)
    THREADS="$THREADS" "$PYTHON" bench/torch/bench_layers.py cpu "$TORCH"
    echo "run-cpu: baseline done in $(( $(date +%s) - start )) s, load average $(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || echo '?')"
    ANCHOR_ARGS=(--anchor "$TORCH")
    PAIRS+=("$OURS" "$TORCH")
  fi
  echo "run-cpu: covpool: node dist/bench/cpu.js ${ANCHOR_ARGS[*]:-} --out $OURS $*"
  node dist/bench/cpu.js "${ANCHOR_ARGS[@]}" --out "$OURS" "$@"
  echo
  echo "run-cpu: results: $OURS${ANCHOR_ARGS:+ and $TORCH}"
done

if (( ROUNDS > 1 && have_torch )); then
  echo
  node dist/bench/combine.js --out "$RUN/combined.json" "${PAIRS[@]}"
fi
