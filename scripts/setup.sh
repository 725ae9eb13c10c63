#!/usr/bin/env bash
# One-step set-up of a clone of the repository: installs what the source build needs when it is
# missing (a C++17 compiler, make, python3, the OpenBLAS/LAPACKE development files) with apt on
# Debian and Ubuntu (as root, or through sudo), then installs the npm dependencies (npm ci) and builds
# the TypeScript and the addon (npm run build). Elsewhere it says what to install and stops.
# scripts/check-fresh-system.sh runs it in minimal Debian 11 and 12 systems.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { echo "covpool setup: $*"; }

if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  say "Node.js >= 18 with npm is needed first (https://nodejs.org, or your system's packages)" >&2; exit 1
fi
node_major="$(node -p 'process.versions.node.split(".")[0]')"
if [ "$node_major" -lt 18 ]; then say "Node.js >= 18 is needed; this is $(node -v)" >&2; exit 1; fi

# What is missing, as Debian/Ubuntu package names.
missing=()
cxx17() {
  local cxx
  for cxx in g++ c++; do
    command -v "$cxx" >/dev/null && echo 'int main() { if constexpr (true) return 0; }' | "$cxx" -std=c++17 -x c++ -fsyntax-only - 2>/dev/null && return 0
  done
  return 1
}
cxx17 || missing+=(g++)
command -v make >/dev/null || missing+=(make)
command -v python3 >/dev/null || missing+=(python3)
has_header() {
  local h
  for h in /usr/include/"$1" /usr/local/include/"$1" /usr/include/*/"$1" /usr/include/*/openblas*/"$1" /usr/include/openblas/"$1"; do
    [ -f "$h" ] && return 0
  done
  return 1
}
ldconfig="$(command -v ldconfig || echo /sbin/ldconfig)"  # not on a normal user's PATH on Debian
has_lib() { "$ldconfig" -p 2>/dev/null | grep "$1\\.so " >/dev/null; }  # not -q: an early exit fails the pipe
{ has_header cblas.h && has_lib libopenblas; } || missing+=(libopenblas-dev)
{ has_header lapacke.h && has_lib liblapacke; } || missing+=(liblapacke-dev)

if [ ${#missing[@]} -eq 0 ]; then
  say "build prerequisites present (C++17 compiler, make, python3, OpenBLAS, LAPACKE)"
else
  if ! command -v apt-get >/dev/null; then
    say "missing: ${missing[*]} (Debian/Ubuntu package names). This is not a Debian/Ubuntu system: install" >&2
    say "  a C++17 compiler, make, python3 and the OpenBLAS (with CBLAS) and LAPACKE development files, e.g." >&2
    say "  Fedora/RHEL: dnf install gcc-c++ make python3 openblas-devel lapack-devel" >&2
    say "  Alpine:      apk add build-base python3 openblas-dev lapack-dev" >&2
    say "then run this script again." >&2
    exit 1
  fi
  if [ "$(id -u)" = 0 ]; then
    sudo=()
  elif command -v sudo >/dev/null; then
    sudo=(sudo)
    say "installing with sudo (it may ask for your password)"
  else
    say "missing: ${missing[*]}; installing them needs root. Run as root:" >&2
    say "  apt-get update && apt-get install -y --no-install-recommends ${missing[*]}" >&2
    say "then run this script again." >&2
    exit 1
  fi
  say "installing with apt-get: ${missing[*]}"
  "${sudo[@]}" apt-get update -qq
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  say "installed ${missing[*]}"
fi

say "npm ci (the npm dependencies)"
npm ci --no-audit --no-fund
say "npm run build (TypeScript, then the addon from source with node-gyp)"
npm run build
say "done: the addon is in build/Release, the compiled TypeScript in dist/"
