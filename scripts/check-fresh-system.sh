#!/usr/bin/env bash
# Proves the README's two from-source commands (Install) on really fresh machines: in minimal Debian systems
# (debootstrap --variant=minbase: no compiler, no make, no python3, no BLAS) with only this machine's
# Node installation added, a copy of the repository runs, exactly as the README says,
#   bash scripts/setup.sh && npm run demo
#   npm test
# Debian 12 (bookworm) as a normal user with sudo; Debian 11 (bullseye, gcc 10) as root, after
# checking that a user with neither root nor sudo is told the exact command to run.
# The systems are cached (scripts/chroot/debian.sh); each run works on a throw-away copy.
#
# Usage: sudo bash scripts/check-fresh-system.sh [SUITE...]     (default: bookworm bullseye)
# CI runs it when COVPOOL_FRESH_SYSTEM_CHECK=1. Prints the time each step took.
set -euo pipefail
cd "$(dirname "$0")/.."
repo="$(pwd -P)"
source scripts/chroot/debian.sh
chroot_need_root

suites=("$@")
[ ${#suites[@]} -eq 0 ] && suites=(bookworm bullseye)

step() { echo "== [$suite] $*"; }
timed() {
  local label="$1" t0=$SECONDS
  shift
  "$@"
  echo "== [$suite] $label: $((SECONDS - t0)) s"
}

root=""
trap '[ -n "$root" ] && chroot_remove "$root"' EXIT

for suite in "${suites[@]}"; do
  base="$(chroot_base "$suite")"
  root="$(mktemp -d /tmp/covpool-fresh-"$suite".XXXXXX)"
  chroot_fresh "$base" "$root"

  # A normal user, and the repository as `git clone` would leave it (tracked files and new ones not
  # ignored; no node_modules, build or dist).
  chroot "$root" useradd --create-home --shell /bin/bash dev
  chroot_node_headers "$root" /home/dev
  mkdir -p "$root/home/dev/covpool"
  git -C "$repo" ls-files -co --exclude-standard -z | (cd "$repo" && tar --null -T - -cf - 2>/dev/null) | tar -xf - -C "$root/home/dev/covpool"
  chroot "$root" chown -R dev:dev /home/dev/covpool

  # Fresh means none of what setup.sh has to install is there.
  for t in g++ c++ make python3 /usr/include/lapacke.h '/usr/lib/*/libopenblas*'; do
    if chroot "$root" sh -c "command -v $t >/dev/null || ls -d $t >/dev/null 2>&1"; then echo "FAIL: $t is already in the fresh $suite system"; exit 1; fi
  done
  step "fresh: no compiler, make, python3, OpenBLAS or LAPACKE"

  if [ "$suite" = bookworm ]; then
    # A user with sudo, as on most workstations (sudo itself is the one thing added).
    chroot_sh "$root" 'apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq sudo >/dev/null && echo "dev ALL=(ALL) NOPASSWD: ALL" >/etc/sudoers.d/dev'
    who=dev
  else
    step "a user with neither root nor sudo is told what to run"
    out="$(chroot_sh "$root" dev 'cd ~/covpool && bash scripts/setup.sh' 2>&1)" && { echo "$out"; echo "setup.sh succeeded without root"; exit 1; }
    echo "$out" | grep -F 'apt-get install -y --no-install-recommends g++ make python3 libopenblas-dev liblapacke-dev' \
      || { echo "$out"; echo "FAIL: setup.sh did not print the command to run as root"; exit 1; }
    chroot "$root" chown -R root:root /home/dev/covpool
    who=root
  fi

  step "as $who: bash scripts/setup.sh && npm run demo"
  timed "bash scripts/setup.sh" chroot_sh "$root" "$who" 'cd /home/dev/covpool && bash scripts/setup.sh 2>&1 | tee /tmp/setup.log; exit ${PIPESTATUS[0]}'
  grep -F 'covpool setup: installed g++ make python3 libopenblas-dev liblapacke-dev' "$root/tmp/setup.log" >/dev/null \
    || { echo "FAIL: setup.sh did not say it installed the toolchain and the BLAS packages"; exit 1; }
  timed "npm run demo" chroot_sh "$root" "$who" 'cd /home/dev/covpool && npm run demo'
  step "as $who: npm test"
  timed "npm test" chroot_sh "$root" "$who" 'cd /home/dev/covpool && npm test 2>&1 | tail -15; exit ${PIPESTATUS[0]}'
  step "compiler used: $(chroot "$root" g++ --version | head -1)"

  chroot_remove "$root"
  root=""
done
echo "check-fresh-system: the README's commands work on fresh ${suites[*]}"
