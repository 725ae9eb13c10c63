#!/usr/bin/env bash
# Builds the prebuilt binaries that go into the npm tarball (prebuilds/<platform>-<arch>/), inside a
# Debian 11 (bullseye) system rather than on this machine: a binary can only need the glibc symbol
# versions of the C library it was linked against, and bullseye's glibc 2.31, gcc 10 and OpenBLAS
# 0.3.13 are old enough that, with libstdc++/libgcc and OpenBLAS/LAPACKE linked statically and the
# few libm functions that got a new symbol version in glibc 2.29 bound to their old version
# (native/cpu/static/glibc_compat.c), the binary loads on glibc >= 2.28 (RHEL 8, Ubuntu 20.04,
# Debian 10 and everything newer). Built on a newer system, the static C++ runtime alone would pull
# in symbols from glibc 2.32-2.36 (pthread_* at 2.34, __libc_single_threaded, _dl_find_object,
# arc4random). test/prebuilds.test.ts audits the result.
#
# Needs root (debootstrap, chroot, mount); the build system is cached (scripts/chroot/debian.sh).
# COVPOOL_PREBUILD_HOST=1 builds on this machine instead (no root needed): the binary then needs
# this machine's glibc, and the audit test says so.
# Usage: bash scripts/build-prebuilt.sh        (npm run build:prebuilt; npm pack runs it)
set -euo pipefail
cd "$(dirname "$0")/.."
pkg="$(pwd -P)"

if [ "${COVPOOL_PREBUILD_HOST:-}" = 1 ]; then
  echo "covpool prebuild: building on this machine (COVPOOL_PREBUILD_HOST=1): the binary needs this machine's glibc"
  exec npm run build:prebuilt:here
fi
if [ "$(id -u)" != 0 ]; then
  echo "covpool prebuild: building the tarball's binaries needs root (a Debian 11 chroot: see scripts/build-prebuilt.sh)." >&2
  echo "  Run as root, or set COVPOOL_PREBUILD_HOST=1 to build against this machine's glibc instead." >&2
  exit 1
fi

source scripts/chroot/debian.sh

builder="$(chroot_prepared bullseye prebuild-x64 \
  'apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends g++ make python3 libopenblas-dev liblapacke-dev')"

work="$(mktemp -d /tmp/covpool-prebuild.XXXXXX)"
root="$work/root"
trap 'chroot_remove "$root"; rm -rf "$work"' EXIT
chroot_fresh "$builder" "$root"

# The package folder (and node_modules, when it is a link elsewhere) at the same paths inside, so
# the build writes build/ and prebuilds/ here as a build on this machine would.
bind_same_path() {
  mkdir -p "$root$1"
  mount --bind "$1" "$root$1"
}
bind_same_path "$pkg"
if [ -L node_modules ]; then bind_same_path "$(readlink -f node_modules)"; fi

# node-gyp builds against the copied Node's headers (prebuildify would download another version's).
node_prefix="$(dirname "$(dirname "$(readlink -f "$(command -v node)")")")"
chroot_sh "$root" "cd $(printf %q "$pkg") && npm_config_nodedir=$node_prefix npm run build:prebuilt:here"
