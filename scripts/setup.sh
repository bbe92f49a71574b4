#!/bin/sh
# Installs the system packages the test suite needs (idempotent, quiet): a real mosquitto broker
# and its clients, qemu for the arm64 binary, shellcheck for install.sh, grpcio for the Python
# interop tests, PostgreSQL for the hub's PostgreSQL store, libcoap's coap-client and pymodbus (a
# Modbus TCP server) for the device tests, chromium for the web console's browser tests. Needs
# root (or sudo); without either it says what is missing and goes on (those tests then fail with a
# clear reason).
set -eu

need=""
command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] || need="$need mosquitto"
command -v mosquitto_pub >/dev/null 2>&1 || need="$need mosquitto-clients"
command -v qemu-aarch64-static >/dev/null 2>&1 || need="$need qemu-user-static"
command -v shellcheck >/dev/null 2>&1 || need="$need shellcheck"
command -v curl >/dev/null 2>&1 || need="$need curl"
# The interop tests: a hub and an edge written in Python on grpcio (Debian's, not a pyenv shim's).
/usr/bin/python3 -c "import grpc" >/dev/null 2>&1 || need="$need python3-grpcio"
/usr/bin/python3 -c "import grpc_tools.protoc" >/dev/null 2>&1 || need="$need python3-grpc-tools"
# The hub's PostgreSQL store: the tests start their own cluster with initdb and postgres.
[ -x /usr/lib/postgresql/15/bin/postgres ] || ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 ||
  need="$need postgresql"
# libcoap's coap-client for the CoAP tests, and a real Modbus TCP server (pymodbus) for the Modbus tests.
command -v coap-client-notls >/dev/null 2>&1 || need="$need libcoap3-bin"
/usr/bin/python3 -c "import pymodbus" >/dev/null 2>&1 || need="$need python3-pymodbus"
# Chromium for the web console's browser tests.
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

# The sysroots for running the arm64 binary and the armv7 archive under qemu (made once, kept in
# .cache/).
if [ -f scripts/sysroot.sh ]; then
  sh scripts/sysroot.sh arm64
  sh scripts/sysroot.sh armhf
fi
