#!/usr/bin/env bash
# Installs the packed tarball in a fresh minimal Debian 11 (bullseye: glibc 2.31, no compiler, no
# BLAS) with npm's defaults, as a user of the published package would, and checks that
#   - npm prints no install-script approval warning for covpool (nothing needs building),
#   - the prebuilt binary loads and a layer's forward (S S = A) and backward run correctly there.
# The system is cached (scripts/chroot/debian.sh); each run works on a throw-away copy.
#
# Usage: sudo bash scripts/check-tarball-old-system.sh covpool-0.1.0.tgz [SUITE]   (default bullseye)
# test/package.test.ts runs it on the tarball it packs when COVPOOL_OLD_SYSTEM_CHECK=1 (CI does).
set -euo pipefail
tarball="$(readlink -f "$1")"
suite="${2:-bullseye}"
cd "$(dirname "$0")/.."
source scripts/chroot/debian.sh
chroot_need_root

root="$(mktemp -d /tmp/covpool-tarball-"$suite".XXXXXX)"
trap 'chroot_remove "$root"' EXIT
chroot_fresh "$(chroot_base "$suite")" "$root"
cp "$tarball" "$root/root/covpool.tgz"

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
console.log(JSON.stringify({ glibc, err, gradFinite: dx.data.every(Number.isFinite), addon: require.resolve('covpool') }));
if (!(err < 1e-10) || !dx.data.every(Number.isFinite)) process.exit(1);
EOF
)"

echo "== [$suite] glibc $(chroot "$root" ldd --version | head -1 | grep -o '[0-9.]*$'); no compiler: $(chroot "$root" sh -c 'command -v g++ cc make || echo none')"
echo "== [$suite] npm install covpool.tgz (npm's defaults)"
out="$(chroot_sh "$root" 'mkdir app && cd app && npm init -y >/dev/null && npm install ../covpool.tgz 2>&1')"
echo "$out"
if echo "$out" | grep -i 'install-scripts' | grep -q covpool; then
  echo "FAIL: npm asks to approve an install script of covpool"; exit 1
fi
if [ -d "$root/root/app/node_modules/covpool/build" ]; then echo "FAIL: something was built at install time"; exit 1; fi
echo "== [$suite] layer forward/backward from the installed package"
echo "$layer_check" >"$root/root/app/layer-check.js"
chroot_sh "$root" 'cd app && node layer-check.js'
echo "check-tarball-old-system: the tarball installs and runs on Debian $suite"
