#!/bin/sh
# Installs the system packages the test suite needs (idempotent, quiet): a real mosquitto broker
# and its clients, qemu for the arm64 binary, shellcheck for install.sh, chromium for the web
# console's browser tests. Needs root (or sudo);
# without either it says what is missing and goes on (those tests then fail with a clear reason).
set -eu

need=""
command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] || need="$need mosquitto"
command -v mosquitto_pub >/dev/null 2>&1 || need="$need mosquitto-clients"
command -v qemu-aarch64-static >/dev/null 2>&1 || need="$need qemu-user-static"
command -v shellcheck >/dev/null 2>&1 || need="$need shellcheck"
command -v curl >/dev/null 2>&1 || need="$need curl"
command -v chromium >/dev/null 2>&1 || [ -x /usr/bin/chromium ] || need="$need chromium"

if [ -n "$need" ]; then
  if [ "$(id -u)" = 0 ]; then SUDO=""; elif command -v sudo >/dev/null 2>&1; then SUDO="sudo"; else
    echo "setup: missing system packages:$need (run as root to install them)" >&2
    exit 0
  fi
  echo "setup: installing$need"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq >/dev/null
  # shellcheck disable=SC2086
  $SUDO apt-get install -y -qq --no-install-recommends $need >/dev/null
fi

# The arm64 sysroot for running the arm64 binary under qemu (made once, kept in .cache/).
if [ -f scripts/arm64-sysroot.sh ]; then
  sh scripts/arm64-sysroot.sh
fi
