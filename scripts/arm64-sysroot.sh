#!/bin/sh
# Makes an arm64 (aarch64) glibc sysroot in .cache/arm64-sysroot, once, so that tests can run
# the linux-arm64 binary on an x86-64 machine:
#   qemu-aarch64-static -L .cache/arm64-sysroot dist/outpost-linux-arm64 --version
# It holds Debian's libc6, libgcc-s1 and libstdc++6 for arm64, unpacked with dpkg -x (nothing
# is installed on the host). Idempotent and quiet: a second run does nothing. Needs root (or
# sudo) the first time, to add the arm64 architecture to apt; without it, it says so and exits 0
# (the arm64 tests then fail with a clear message).
set -eu
cd "$(dirname "$0")/.."

root=.cache/arm64-sysroot
if [ -e "$root/lib/ld-linux-aarch64.so.1" ] && [ -e "$root/.complete" ]; then
  exit 0
fi

if ! command -v dpkg >/dev/null 2>&1 || ! command -v apt-get >/dev/null 2>&1; then
  echo "arm64-sysroot: needs dpkg and apt-get (Debian or Ubuntu); skipping" >&2
  exit 0
fi
if [ "$(id -u)" = 0 ]; then
  SUDO=""
elif command -v sudo >/dev/null 2>&1; then
  SUDO="sudo"
else
  echo "arm64-sysroot: run as root once to make $root (adds the arm64 architecture to apt)" >&2
  exit 0
fi

echo "arm64-sysroot: making $root"
if ! dpkg --print-foreign-architectures | grep -qx arm64; then
  $SUDO dpkg --add-architecture arm64
  $SUDO apt-get update -qq >/dev/null
fi

mkdir -p .cache
work=$(mktemp -d .cache/arm64-sysroot.tmp.XXXXXX)
trap 'rm -rf "$work"' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
fetch() {
  (cd "$work" && apt-get download -qq libc6:arm64 libgcc-s1:arm64 libstdc++6:arm64) >"$work/apt.log" 2>&1
}
if ! fetch; then
  # The package lists may predate the arm64 architecture: refresh them once and retry.
  $SUDO apt-get update -qq >/dev/null
  if ! fetch; then
    cat "$work/apt.log" >&2
    echo "arm64-sysroot: apt-get download of the arm64 libraries failed" >&2
    exit 1
  fi
fi
mkdir "$work/sysroot"
for deb in "$work"/*.deb; do
  dpkg -x "$deb" "$work/sysroot"
done
if [ ! -e "$work/sysroot/lib/ld-linux-aarch64.so.1" ]; then
  echo "arm64-sysroot: the unpacked packages have no lib/ld-linux-aarch64.so.1" >&2
  exit 1
fi
touch "$work/sysroot/.complete"
rm -rf "$root"
mv "$work/sysroot" "$root"
echo "arm64-sysroot: ready (qemu-aarch64-static -L $root …)"
