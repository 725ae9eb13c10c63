#!/usr/bin/env bash
# Builds the prebuilt binaries that go into the npm tarball (prebuilds/linux-x64, prebuilds/linux-arm64)
# inside a Debian 11 (bullseye) system rather than on this machine: a binary can only need the glibc
# symbol versions of the C library it was linked against, and bullseye's glibc 2.31, gcc 10 and
# OpenBLAS 0.3.13 are old enough that, with libstdc++/libgcc and OpenBLAS/LAPACKE linked statically
# and the few libm functions that got a new symbol version in glibc 2.29 bound to their old version
# (native/cpu/static/glibc_compat.c), the binaries load on glibc >= 2.28 (RHEL 8, Ubuntu 20.04,
# Debian 10 and everything newer). Built on a newer system, the static C++ runtime alone would pull
# in symbols from glibc 2.32-2.36 (pthread_* at 2.34, __libc_single_threaded, _dl_find_object,
# arc4random). The arm64 binary is cross-compiled there (Debian's aarch64 cross compiler, arm64
# OpenBLAS/LAPACKE through multiarch). scripts/audit-prebuilds.js checks the result; test/package.test.ts
# applies it to every binary in the tarball.
#
# Needs root (debootstrap, chroot, mount); the build systems are cached (scripts/chroot/debian.sh).
# The package's own build/ folder is left alone (each build works on a copy of the sources inside).
#   COVPOOL_PREBUILD_ARCHS   which to build, default "x64 arm64"
#   COVPOOL_PREBUILD_HOST=1  build for this machine's architecture on this machine instead (no root,
#                            chroot or apt): the binary then needs the glibc version it was linked
#                            against (at most this machine's) instead of 2.28; the audit prints it.
#                            It still needs the static OpenBLAS/LAPACKE (Debian: libopenblas-dev,
#                            liblapacke-dev), g++, make and python3.
# Usage: bash scripts/build-prebuilt.sh        (npm run build:prebuilt; npm pack runs it)
set -euo pipefail
cd "$(dirname "$0")/.."
pkg="$(pwd -P)"

if [ "${COVPOOL_PREBUILD_HOST:-}" = 1 ]; then
  arch="$(node -p process.arch)"
  echo "covpool prebuild: linux-$arch on this machine (COVPOOL_PREBUILD_HOST=1; ${COVPOOL_PREBUILD_ARCHS:+COVPOOL_PREBUILD_ARCHS is ignored: }this machine's architecture only): the binary will need up to this machine's glibc ($(getconf GNU_LIBC_VERSION 2>/dev/null | sed 's/^glibc //' || true)) instead of 2.28"
  # This Node's own headers where it has them (N-API binaries do not depend on the Node version),
  # so nothing is downloaded; otherwise node-gyp fetches them.
  node_prefix="$(dirname "$(dirname "$(readlink -f "$(command -v node)")")")"
  if [ -z "${npm_config_nodedir:-}" ] && [ -f "$node_prefix/include/node/node_api.h" ]; then export npm_config_nodedir="$node_prefix"; fi
  npm run build:prebuilt:here
  node scripts/audit-prebuilds.js --host "prebuilds/linux-$arch/covpool.glibc.node"
  exit 0
fi
if [ "$(id -u)" != 0 ]; then
  echo "covpool prebuild: building the tarball's binaries for glibc >= 2.28 needs root (Debian 11 chroots: see scripts/build-prebuilt.sh)." >&2
  echo "  Run as root, or set COVPOOL_PREBUILD_HOST=1 to build on this machine, for its glibc, without root:" >&2
  echo "    COVPOOL_PREBUILD_HOST=1 npm pack" >&2
  exit 1
fi

source scripts/chroot/debian.sh
node_prefix="$(dirname "$(dirname "$(readlink -f "$(command -v node)")")")"

work=""
root=""
trap '[ -n "$root" ] && chroot_remove "$root"; [ -n "$work" ] && rm -rf "$work"' EXIT

# A copy of the package's sources at the same path inside (node-gyp's build/ stays in the throw-away
# system; the package's own build/ is left alone), its node_modules bound in, prebuilds/ copied out.
copy_package_in() {
  mkdir -p "$root$pkg" "$root$pkg/node_modules"
  # (GNU tar exits 1 when a file changed while read, e.g. a log being written: not an error here.)
  { tar -C "$pkg" --exclude=./node_modules --exclude=./build --exclude=./build-cmake --exclude=./gpu-bundle \
      --exclude=./prebuilds --exclude=./.git -cf - . || [ $? -eq 1 ]; } \
    | tar -C "$root$pkg" -xf -
  mount --bind "$(readlink -f node_modules)" "$root$pkg/node_modules"
  mount --make-private "$root$pkg/node_modules"
}

build_arch() {
  local arch="$1" builder env=""
  case "$arch" in
    x64)
      builder="$(chroot_prepared bullseye prebuild-x64 \
        'apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends g++ make python3 libopenblas-dev liblapacke-dev')"
      ;;
    arm64)
      builder="$(chroot_prepared bullseye prebuild-arm64 \
        'dpkg --add-architecture arm64 && apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends g++-aarch64-linux-gnu make python3 libopenblas-dev:arm64 liblapacke-dev:arm64')"
      env="CC=aarch64-linux-gnu-gcc CXX=aarch64-linux-gnu-g++ LINK=aarch64-linux-gnu-g++ AR=aarch64-linux-gnu-ar PREBUILD_STRIP_BIN=aarch64-linux-gnu-strip"
      ;;
    *) echo "covpool prebuild: unknown architecture $arch (x64, arm64)" >&2; return 1 ;;
  esac
  echo "covpool prebuild: linux-$arch in Debian 11 ($builder)"
  work="$(mktemp -d /tmp/covpool-prebuild.XXXXXX)"
  root="$work/root"
  chroot_fresh "$builder" "$root"
  copy_package_in
  # node-gyp builds against the copied Node's headers (prebuildify would download another version's).
  chroot_sh "$root" "cd $(printf %q "$pkg") && $env npm_config_nodedir=$node_prefix npm run build:prebuilt:here -- --arch $arch"
  mkdir -p prebuilds && cp -a "$root$pkg/prebuilds/." prebuilds/
  chroot_remove "$root"; root=""
  rm -rf "$work"; work=""
}

archs="${COVPOOL_PREBUILD_ARCHS:-x64 arm64}"
for arch in $archs; do build_arch "$arch"; done
node scripts/audit-prebuilds.js $(for arch in $archs; do echo "prebuilds/linux-$arch/covpool.glibc.node"; done)
