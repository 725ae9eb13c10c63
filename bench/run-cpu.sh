#!/usr/bin/env bash
# Runs the PyTorch reference (the "anchor") and then covpool's CPU benchmark, one after the other
# in the same session so that the ratios compare like with like, writes both JSON files into
# bench/results/ with date-stamped names and prints the comparison table.
#
#   bench/run-cpu.sh [ANCHORS_DIR] [-- extra options for dist/bench/cpu.js]
#   ANCHORS_DIR=/path/to/anchors bench/run-cpu.sh
#
# ANCHORS_DIR is a folder holding bench_torch.py (the PyTorch re-implementation of the GCP
# layers); it is not part of this repository. Without it, or without a python3 that imports torch
# and mpmath (Debian: apt-get install -y python3-torch python3-mpmath), the anchor is skipped and
# only covpool is timed.
#
# Environment:
#   THREADS              threads for both sides (default: the core count); COVPOOL_NUM_THREADS,
#                        when set, overrides covpool's side
#   PYTHON               interpreter for the anchor (default /usr/bin/python3, else python3)
#   STAMP                file-name stamp (default: today's date, YYYY-MM-DD; a time is appended
#                        when files of that name exist already)
#   CONFIGS              passed through to bench_torch.py (selects the anchor's workloads)
#
# The anchor takes several minutes on a 2-core machine. Run on an otherwise idle machine: both
# sides are timed with all cores busy, so any other load skews the ratios.
set -euo pipefail

cd "$(dirname "$0")/.."

ANCHORS="${ANCHORS_DIR:-}"
if [[ $# -gt 0 && "$1" != --* ]]; then
  ANCHORS="$1"
  shift
fi
if [[ $# -gt 0 && "$1" == "--" ]]; then shift; fi

THREADS="${THREADS:-$(nproc 2>/dev/null || echo 1)}"
export COVPOOL_NUM_THREADS="${COVPOOL_NUM_THREADS:-$THREADS}"
if [[ -z "${PYTHON:-}" ]]; then
  if [[ -x /usr/bin/python3 ]]; then PYTHON=/usr/bin/python3; else PYTHON=python3; fi
fi

RESULTS=bench/results
mkdir -p "$RESULTS"
STAMP="${STAMP:-$(date +%F)}"
if [[ -e "$RESULTS/cpu-$STAMP.json" || -e "$RESULTS/torch-cpu-$STAMP.json" ]]; then
  STAMP="$STAMP-$(date +%H%M%S)"
fi
OURS="$RESULTS/cpu-$STAMP.json"
TORCH="$RESULTS/torch-cpu-$STAMP.json"

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

ANCHOR_ARGS=()
if [[ -z "$ANCHORS" ]]; then
  echo "run-cpu: no anchors folder given (first argument or ANCHORS_DIR): skipping the PyTorch anchor"
elif [[ ! -f "$ANCHORS/bench_torch.py" ]]; then
  echo "run-cpu: $ANCHORS/bench_torch.py not found: skipping the PyTorch anchor"
elif ! "$PYTHON" -c 'import torch, mpmath' >/dev/null 2>&1; then
  echo "run-cpu: $PYTHON cannot import torch and mpmath (apt-get install -y python3-torch python3-mpmath): skipping the PyTorch anchor"
else
  echo "run-cpu: anchor: THREADS=$THREADS $PYTHON $ANCHORS/bench_torch.py cpu $TORCH (several minutes)"
  start=$(date +%s)
  THREADS="$THREADS" "$PYTHON" "$ANCHORS/bench_torch.py" cpu "$TORCH"
  echo "run-cpu: anchor done in $(( $(date +%s) - start )) s, load average $(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || echo '?')"
  ANCHOR_ARGS=(--anchor "$TORCH")
fi

echo "run-cpu: covpool: node dist/bench/cpu.js ${ANCHOR_ARGS[*]:-} --out $OURS $*"
node dist/bench/cpu.js "${ANCHOR_ARGS[@]}" --out "$OURS" "$@"

echo
echo "run-cpu: results: $OURS${ANCHOR_ARGS:+ and $TORCH}"
