#!/usr/bin/env bash
# What `npm pack` and `npm publish` run first (package.json "prepack"): the TypeScript build, the
# tarball's prebuilt binaries made anew (prebuilds/ is emptied first, so nothing stale is packed),
# then one audit of them all (scripts/audit-prebuilds.js) that records their glibc floor in
# prebuilds/build.json, which the package carries and the loader reads.
#
#   npm pack                           as root: linux-x64 and linux-arm64 CPU binaries and the
#                                      linux-x64 CUDA binary, built in Debian 11 chroots
#                                      (scripts/build-prebuilt.sh, scripts/build-cuda-prebuilt.sh):
#                                      they load on glibc >= 2.28. This makes the published tarball.
#   COVPOOL_PREBUILD_HOST=1 npm pack   no root needed: the CPU binary (and the CUDA binary where a
#                                      CUDA toolkit is found) for this machine's architecture, built
#                                      on this machine: they load on glibc >= the highest version
#                                      they need (at most this machine's), which the audit prints
#                                      and records. For your own machine and newer systems.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${COVPOOL_PREBUILD_HOST:-}" = 1 ]; then
  echo "covpool pack: building the binaries on this machine (COVPOOL_PREBUILD_HOST=1, no root needed): they will load on this machine's glibc ($(getconf GNU_LIBC_VERSION 2>/dev/null | sed 's/^glibc //' || true)) and newer, not on glibc 2.28 like the published package; the audit at the end prints their exact floor"
else
  echo "covpool pack: building the binaries in Debian 11 chroots (needs root; COVPOOL_PREBUILD_HOST=1 builds on this machine instead): the tarball will load on glibc >= 2.28"
fi
npm run build:ts
rm -rf prebuilds
bash scripts/build-prebuilt.sh
bash scripts/build-cuda-prebuilt.sh
echo "covpool pack: the tarball's binaries"
node scripts/audit-prebuilds.js --summary --record prebuilds
