#!/usr/bin/env bash
# One-step set-up on a fresh Debian/Ubuntu machine: installs the OpenBLAS and LAPACKE development
# packages when they are missing, then installs the npm dependencies, which builds the addon
# (node-gyp) and compiles the TypeScript.
set -euo pipefail
cd "$(dirname "$0")/.."

have_blas() {
  local h found=""
  for h in /usr/include/cblas.h /usr/include/*/cblas.h /usr/include/*/openblas*/cblas.h; do [ -f "$h" ] && found=1; done
  [ -n "$found" ] && [ -f /usr/include/lapacke.h ] \
    && ldconfig -p 2>/dev/null | grep -q 'libopenblas\.so' && ldconfig -p 2>/dev/null | grep -q 'liblapacke\.so'
}

if ! have_blas; then
  echo "covpool setup: installing libopenblas-dev and liblapacke-dev"
  if [ "$(id -u)" = 0 ]; then SUDO=""; elif command -v sudo >/dev/null; then SUDO="sudo"; else
    echo "covpool setup: need root (or sudo) to run: apt-get install -y libopenblas-dev liblapacke-dev" >&2; exit 1
  fi
  if ! command -v apt-get >/dev/null; then
    echo "covpool setup: no apt-get here; install OpenBLAS (with CBLAS) and LAPACKE development files yourself" >&2; exit 1
  fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq libopenblas-dev liblapacke-dev >/dev/null
fi

# npm ci runs the package's own install (node-gyp rebuild) and prepare (tsc) scripts.
npm ci --no-audit --no-fund
