#!/usr/bin/env bash
# Minimal Debian systems (debootstrap --variant=minbase) for the checks that must not see this
# machine's own toolchain: the prebuilt binaries are built in an old Debian (its glibc is the floor
# the binaries need), and the README's commands and the packed tarball are tried in fresh ones.
#
# Source this file, then:
#   chroot_base SUITE              prints the cached pristine system's folder, creating it (debootstrap,
#                                  minutes) when missing. Cache: $COVPOOL_CHROOT_CACHE, default
#                                  /var/cache/covpool-chroots; everything works without it, only slower.
#   chroot_prepared SUITE NAME CMD prints a cached copy of the base system in which CMD (bash, as root)
#                                  ran once, e.g. to install a toolchain
#   chroot_fresh LOWER DEST        a throw-away system at DEST (an overlay over the cached folder LOWER:
#                                  instant, and the cache is never modified) with what a real machine
#                                  has and a bare chroot lacks: DNS, CA certificates (this machine's
#                                  bundle, which includes its local CAs) and this machine's Node
#                                  installation at the same paths (node, npm, npm's global config),
#                                  Node's headers where node-gyp keeps them; /proc, /sys, /dev mounted
#   chroot_node_headers DEST HOME  Node's headers for node-gyp for another user (home HOME inside DEST)
#   chroot_sh DEST [USER] CMD      runs CMD with bash -lc inside DEST (as root, or as USER)
#   chroot_remove DEST             unmounts and deletes DEST
# Needs root (debootstrap, chroot, mount) and the debootstrap package (installed when missing).
# Mirror: $COVPOOL_DEBIAN_MIRROR, default the Debian mirror this machine's apt uses.

COVPOOL_CHROOT_CACHE="${COVPOOL_CHROOT_CACHE:-/var/cache/covpool-chroots}"

chroot_say() { echo "covpool chroot: $*" >&2; }

chroot_mirror() {
  if [ -n "${COVPOOL_DEBIAN_MIRROR:-}" ]; then echo "$COVPOOL_DEBIAN_MIRROR"; return; fi
  local m
  m="$(grep -hs -E '^URIs:.*/debian/?$' /etc/apt/sources.list.d/*.sources | head -1 | awk '{print $2}')"
  [ -z "$m" ] && m="$(grep -hs -E '^deb +[^[]*/debian/? ' /etc/apt/sources.list | head -1 | awk '{print $2}')"
  echo "${m:-http://deb.debian.org/debian}"
}

chroot_need_root() {
  if [ "$(id -u)" != 0 ]; then chroot_say "needs root (debootstrap, chroot, mount)"; return 1; fi
  if ! command -v debootstrap >/dev/null; then
    chroot_say "installing debootstrap"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null || return 1
  fi
}

# Creates the cached folder DIR once, under a lock, by running FUNC DIR.tmp ARGS...; renamed to DIR
# when complete, so an interrupted run never leaves a half-made system under the final name.
chroot_cached() {
  local dir="$1" func="$2" name
  shift 2
  name="$(basename "$dir")"
  mkdir -p "$COVPOOL_CHROOT_CACHE"
  (
    flock 9
    if [ ! -f "$dir/.complete" ]; then
      rm -rf "$dir" "$dir.tmp"
      local t0=$SECONDS
      if ! ("$func" "$dir.tmp" "$@") >"$COVPOOL_CHROOT_CACHE/$name.log" 2>&1; then
        chroot_say "making $name failed:"; tail -30 "$COVPOOL_CHROOT_CACHE/$name.log" >&2
        chroot_umount "$dir.tmp"; rm -rf "$dir.tmp"; exit 1
      fi
      rm -f "$dir.tmp/var/cache/apt/archives/"*.deb
      touch "$dir.tmp/.complete" && mv "$dir.tmp" "$dir"
      chroot_say "made $name in $((SECONDS - t0)) s (cached in $dir)"
    fi
  ) 9>"$COVPOOL_CHROOT_CACHE/.$name.lock" || return 1
  echo "$dir"
}

chroot_debootstrap() { debootstrap --variant=minbase "$2" "$1" "$(chroot_mirror)"; }

chroot_base() {
  local suite="$1"
  chroot_need_root || return 1
  chroot_cached "$COVPOOL_CHROOT_CACHE/$suite-minbase" chroot_debootstrap "$suite"
}

chroot_setup() {
  local d="$1" base="$2" setup="$3" rc
  mkdir -p "$d" && cp -a "$base/." "$d/" && rm -f "$d/.complete" && cp -L /etc/resolv.conf "$d/etc/resolv.conf" || return 1
  chroot_mount "$d"
  chroot_sh "$d" "$setup"; rc=$?
  chroot_umount "$d"
  return $rc
}

chroot_prepared() {
  local suite="$1" name="$2" setup="$3" base
  base="$(chroot_base "$suite")" || return 1
  chroot_cached "$COVPOOL_CHROOT_CACHE/$suite-$name" chroot_setup "$base" "$setup"
}

chroot_mount() {
  local d="$1"
  mountpoint -q "$d/proc" || mount -t proc proc "$d/proc"
  mountpoint -q "$d/sys" || mount --bind /sys "$d/sys"
  mountpoint -q "$d/dev" || mount --bind /dev "$d/dev"
  mountpoint -q "$d/dev/pts" || mount --bind /dev/pts "$d/dev/pts"
  mountpoint -q "$d/dev/shm" || mount -t tmpfs shm "$d/dev/shm"
}

# Unmounts everything under D (deepest first), D itself last.
chroot_umount() {
  local d m
  d="$(readlink -f "$1")"
  for m in $(awk -v d="$d" '$2 == d || index($2, d "/") == 1 {print $2}' /proc/mounts | sort -r); do
    umount "$m" 2>/dev/null || umount -l "$m"
  done
  return 0
}

chroot_remove() {
  local d="$1"
  [ -n "$d" ] && [ -d "$d" ] || return 0
  chroot_umount "$d"
  # Never follow a bind mount into the host: refuse to delete while anything is still mounted.
  if awk -v d="$(readlink -f "$d")" '$2 == d || index($2, d "/") == 1 {f=1} END {exit !f}' /proc/mounts; then
    chroot_say "still mounted under $d; not deleting"; return 1
  fi
  rm -rf "$d" "$d.overlay"
}

# This machine's Node installation, copied to the same paths: the node binary, npm (and npx), Node's
# headers and npm's global config (not this user's ~/.npmrc: a new user on a new machine has none).
chroot_copy_node() {
  local d="$1" node prefix
  node="$(readlink -f "$(command -v node)")"
  prefix="$(dirname "$(dirname "$node")")"
  mkdir -p "$d$prefix/bin" "$d$prefix/lib/node_modules" "$d$prefix/include"
  cp -a "$node" "$d$prefix/bin/node"
  cp -a "$prefix/lib/node_modules/npm" "$d$prefix/lib/node_modules/"
  [ -d "$prefix/include/node" ] && cp -a "$prefix/include/node" "$d$prefix/include/"
  ln -sf ../lib/node_modules/npm/bin/npm-cli.js "$d$prefix/bin/npm"
  ln -sf ../lib/node_modules/npm/bin/npx-cli.js "$d$prefix/bin/npx"
  local rc
  rc="$(npm config get globalconfig 2>/dev/null || true)"
  if [ -n "$rc" ] && [ -f "$rc" ]; then mkdir -p "$d$(dirname "$rc")" && cp "$rc" "$d$rc"; fi
  [ "$prefix" != /usr ] && ln -sf "$prefix/bin/node" "$d/usr/local/bin/node" 2>/dev/null
  chroot_node_headers "$d" /root
}

# Node's headers where node-gyp keeps the ones it downloads (~/.cache/node-gyp/<version>, with the
# installVersion marker its download writes), for a user whose home is HOME inside D: a machine on
# the internet gets them from nodejs.org on the first build; this one may not reach it.
chroot_node_headers() {
  local d="$1" home="$2" node prefix version gyp_version cache
  node="$(readlink -f "$(command -v node)")"
  prefix="$(dirname "$(dirname "$node")")"
  [ -d "$prefix/include/node" ] || return 0
  version="$(node -p process.versions.node)"
  gyp_version="$(node -p "require('$prefix/lib/node_modules/npm/node_modules/node-gyp/package.json').installVersion" 2>/dev/null || echo 11)"
  cache="$d$home/.cache/node-gyp/$version"
  mkdir -p "$cache/include"
  cp -a "$prefix/include/node" "$cache/include/"
  echo "$gyp_version" >"$cache/installVersion"
  chown -R --reference="$d$home" "$d$home/.cache" 2>/dev/null || true
}

# CA certificates as a real machine has them (minbase has none): this machine's bundle, Debian's
# CAs plus the local ones it trusts (an HTTPS proxy's, for instance), so npm reaches its registry.
chroot_copy_certs() {
  local d="$1"
  mkdir -p "$d/etc/ssl/certs" "$d/usr/local/share/ca-certificates"
  cp -a /usr/local/share/ca-certificates/. "$d/usr/local/share/ca-certificates/" 2>/dev/null || true
  if [ -f /etc/ssl/certs/ca-certificates.crt ]; then cp /etc/ssl/certs/ca-certificates.crt "$d/etc/ssl/certs/"; fi
}

chroot_fresh() {
  local lower="$1" dest="$2"
  chroot_need_root || return 1
  rm -rf "$dest" "$dest.overlay" && mkdir -p "$dest" "$dest.overlay/upper" "$dest.overlay/work"
  mount -t overlay overlay -o "lowerdir=$lower,upperdir=$dest.overlay/upper,workdir=$dest.overlay/work" "$dest" || return 1
  cp -L /etc/resolv.conf "$dest/etc/resolv.conf" 2>/dev/null || true
  chroot_copy_certs "$dest"
  chroot_copy_node "$dest"
  chroot_mount "$dest"
}

# Environment of a login shell on a plain machine, plus the CA variables this machine's Node uses.
chroot_sh() {
  local d="$1" user=root
  if [ $# -ge 3 ]; then user="$2"; shift; fi
  local cmd="$2" home=/root
  [ "$user" != root ] && home="/home/$user"
  chroot "$d" /usr/bin/env -i HOME="$home" USER="$user" LANG=C.UTF-8 TERM=dumb CI="${CI:-}" \
    PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    ${NODE_EXTRA_CA_CERTS:+NODE_EXTRA_CA_CERTS=/etc/ssl/certs/ca-certificates.crt} \
    /usr/bin/setpriv --reuid="$user" --regid="$user" --init-groups /bin/bash -lc "cd ~ 2>/dev/null; $cmd"
}
