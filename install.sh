#!/bin/sh
# outpost installer: downloads the outpost binary for this machine (its xz-compressed form when
# xz is here and the release has it; on armv7: the Node.js bundle archive), checks it against the
# release's SHA256SUMS, installs it atomically, writes a config
# once, creates the data folder and, as root on a systemd machine, installs and starts the
# outpost service.
#
#   curl -fsSL https://releases.outpost.dev/install.sh | sh
#   curl -fsSL https://releases.outpost.dev/install.sh | sh -s -- --version 0.2.0
#
# Run with --help for the options and environment variables; docs/install.md has the details.
# POSIX sh (dash, busybox ash): no bashisms. Every path can be moved through the environment.
# Everything is in functions and the last line calls main: a download cut short runs nothing.
set -eu

DEFAULT_BASE_URL="https://releases.outpost.dev"
SERVICE=outpost.service

say() { printf '%s\n' "$*"; }
warn() { printf 'outpost-install: warning: %s\n' "$*" >&2; }
die() {
  printf 'outpost-install: error: %s\n' "$*" >&2
  exit 1
}

usage() {
  cat <<'EOF'
Install, upgrade or remove the outpost edge agent.

Usage: install.sh [options]
  (or: curl -fsSL <base>/install.sh | sh -s -- [options])

Options:
  --version V    version to install (default: $OUTPOST_VERSION, else "latest")
  --prefix DIR   install the binary in DIR/bin (default: /usr/local as root, else ~/.local)
  --no-service   do not install the systemd service
  --uninstall    remove the binary and the service; keep config and data
  --purge        with --uninstall (or alone): also remove the config and the data folder
  --help         this text

Environment:
  OUTPOST_BASE_URL    where releases are: <base>/<version>/outpost-linux-<arch> (armv7:
                      outpost-linux-armv7.tar.gz) and <base>/<version>/SHA256SUMS
                      (default: https://releases.outpost.dev); outpost-linux-<arch>.xz, the
                      compressed form, is downloaded instead when xz (or unxz) is here and
                      SHA256SUMS lists it
  OUTPOST_VERSION     version to install (--version wins)
  OUTPOST_ARCH        skip architecture detection (x86_64, amd64, aarch64, arm64, armv7l, armhf)
  OUTPOST_NODE        armv7 only: the Node.js (20 or newer) to run outpost with (default: node
                      on PATH); its absolute path goes into the service
  OUTPOST_OS          skip OS detection (only Linux is supported)
  OUTPOST_LIBC        skip libc detection: glibc or musl (musl uses outpost-linux-<arch>-musl)
  OUTPOST_BIN_DIR     binary folder (default: <prefix>/bin)
  OUTPOST_CONFIG_DIR  config folder (default: /etc/outpost as root, else ~/.config/outpost)
  OUTPOST_DATA_DIR    data folder (default: /var/lib/outpost as root, else ~/.local/share/outpost)
  OUTPOST_LIB_DIR     where the update pre-start check (and on armv7 the bundles) go
                      (default: <bin dir>/../lib/outpost)
  OUTPOST_UNIT_DIR    where the systemd unit goes (default: /etc/systemd/system); when set, the
                      unit file is written there (as root) even if systemd is not running
  OUTPOST_NO_SYSTEMD  1: never call systemctl (the unit file is still written to OUTPOST_UNIT_DIR)
  OUTPOST_EXEC_WRAPPER  command prefix to run the downloaded binary with, e.g.
                      "qemu-aarch64-static -L /sysroot" when installing for another architecture
EOF
}

# ---------------------------------------------------------------------------------------------
# Options and locations

parse_args() {
  version="${OUTPOST_VERSION:-}"
  prefix=""
  no_service=0
  uninstall=0
  purge=0
  while [ "$#" -gt 0 ]; do
    case "$1" in
      --version)
        [ "$#" -ge 2 ] || die "--version needs a value, e.g. --version 0.2.0"
        version="$2"
        shift 2
        ;;
      --version=*)
        version="${1#--version=}"
        shift
        ;;
      --prefix)
        [ "$#" -ge 2 ] || die "--prefix needs a folder, e.g. --prefix /opt/outpost"
        prefix="$2"
        shift 2
        ;;
      --prefix=*)
        prefix="${1#--prefix=}"
        shift
        ;;
      --no-service)
        no_service=1
        shift
        ;;
      --uninstall)
        uninstall=1
        shift
        ;;
      --purge)
        uninstall=1
        purge=1
        shift
        ;;
      -h | --help)
        usage
        exit 0
        ;;
      *)
        printf 'outpost-install: error: unknown option "%s" (see --help)\n' "$1" >&2
        exit 2
        ;;
    esac
  done
  version="${version:-latest}"
  version="${version#v}"
  case "$version" in
    "" | *[!A-Za-z0-9._+-]*) die "invalid version \"$version\": expected e.g. 0.2.0 or latest" ;;
  esac
}

locate() {
  is_root=0
  if [ "$(id -u)" = 0 ]; then is_root=1; fi

  if [ "$is_root" = 1 ]; then
    prefix="${prefix:-/usr/local}"
    bin_dir="${OUTPOST_BIN_DIR:-$prefix/bin}"
    config_dir="${OUTPOST_CONFIG_DIR:-/etc/outpost}"
    data_dir="${OUTPOST_DATA_DIR:-/var/lib/outpost}"
  else
    [ -n "${HOME:-}" ] || die "HOME is not set: set it, or OUTPOST_BIN_DIR, OUTPOST_CONFIG_DIR and OUTPOST_DATA_DIR"
    prefix="${prefix:-$HOME/.local}"
    bin_dir="${OUTPOST_BIN_DIR:-$prefix/bin}"
    config_dir="${OUTPOST_CONFIG_DIR:-${XDG_CONFIG_HOME:-$HOME/.config}/outpost}"
    data_dir="${OUTPOST_DATA_DIR:-${XDG_DATA_HOME:-$HOME/.local/share}/outpost}"
  fi
  unit_dir="${OUTPOST_UNIT_DIR:-/etc/systemd/system}"
  # Beside the binary's folder, as FHS does it: /usr/local/bin → /usr/local/lib/outpost.
  bin_parent="${bin_dir%/}"
  lib_dir="${OUTPOST_LIB_DIR:-${bin_parent%/*}/lib/outpost}"
  bin="$bin_dir/outpost"
  prestart="$lib_dir/outpost-prestart"
  # armv7: each installed bundle in its own folder, named by its archive's hash; the binary path
  # is a symlink to the launcher of the one in use.
  releases="$lib_dir/releases"
  config="$config_dir/config.json"
  unit="$unit_dir/$SERVICE"

  for p in "$bin_dir" "$config_dir" "$data_dir" "$unit_dir" "$lib_dir"; do
    case "$p" in
      /*) ;;
      *) die "\"$p\" is not an absolute path: every folder must be absolute" ;;
    esac
  done

  # systemd runs (sd_booted) and may be used.
  systemd_running=0
  if [ "${OUTPOST_NO_SYSTEMD:-0}" != 1 ] && [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
    systemd_running=1
  fi

  # The unit is written as root, unless --no-service, when systemd runs or OUTPOST_UNIT_DIR is set.
  want_unit=0
  if [ "$is_root" = 1 ] && [ "$no_service" = 0 ]; then
    if [ "$systemd_running" = 1 ] || [ -n "${OUTPOST_UNIT_DIR:-}" ]; then want_unit=1; fi
  fi
  # The unit holds these paths unquoted: keep them to characters systemd takes literally.
  if [ "$want_unit" = 1 ] && [ "$uninstall" = 0 ]; then
    for p in "$bin_dir" "$config_dir" "$data_dir" "$lib_dir"; do
      case "$p" in
        *[!A-Za-z0-9._/@+-]*)
          die "\"$p\" has characters a systemd unit cannot hold as is (spaces, %, quotes…): choose another folder or use --no-service"
          ;;
      esac
    done
  fi
}

# What was done, printed at the end.
done_list=""
did() {
  done_list="$done_list
  - $*"
}

# Runs the downloaded or installed binary (through OUTPOST_EXEC_WRAPPER when set). Its stdin is
# /dev/null so that it can never read the rest of this script from a `curl | sh` pipe.
run_outpost() {
  # shellcheck disable=SC2086 # the wrapper is a command prefix and is split on purpose
  ${OUTPOST_EXEC_WRAPPER:-} "$@" </dev/null
}

# Removes a folder tree, refusing the obviously wrong ones.
remove_tree() {
  case "$1" in
    "" | / | /bin | /boot | /dev | /etc | /home | /lib | /proc | /root | /sbin | /sys | /usr | /usr/local | /var | /var/lib | /tmp)
      die "refusing to remove \"$1\""
      ;;
  esac
  if [ -n "${HOME:-}" ] && [ "$1" = "$HOME" ]; then die "refusing to remove \"$1\" (your home folder)"; fi
  rm -rf -- "$1"
}

# ---------------------------------------------------------------------------------------------
# Uninstall

do_uninstall() {
  if [ "$systemd_running" = 1 ] && [ "$is_root" = 1 ]; then
    if systemctl is-enabled --quiet "$SERVICE" 2>/dev/null || systemctl is-active --quiet "$SERVICE" 2>/dev/null; then
      systemctl disable --now "$SERVICE" >/dev/null 2>&1 </dev/null || warn "systemctl disable --now $SERVICE failed"
      did "stopped and disabled $SERVICE"
    fi
  fi
  if [ -f "$unit" ]; then
    rm -f -- "$unit"
    did "removed $unit"
    if [ "$systemd_running" = 1 ] && [ "$is_root" = 1 ]; then
      systemctl daemon-reload >/dev/null 2>&1 </dev/null || true
      if [ "$unit_dir" = /etc/systemd/system ] && [ -d /var/cache/outpost ]; then
        rm -rf /var/cache/outpost
        did "removed /var/cache/outpost (runtime cache)"
      fi
    fi
  fi
  if [ -e "$bin" ] || [ -e "$bin.prev" ] || [ -L "$bin" ] || [ -L "$bin.prev" ]; then
    rm -f -- "$bin" "$bin.prev"
    did "removed $bin"
  fi
  if [ -d "$releases" ]; then
    remove_tree "$releases"
    did "removed $releases (the armv7 bundles)"
  fi
  if [ -e "$prestart" ]; then
    rm -f -- "$prestart"
    rmdir -- "$lib_dir" 2>/dev/null || true
    did "removed $prestart"
  fi
  rm -f -- "$bin_dir"/.outpost.download.* "$bin_dir"/.outpost.update.* "$bin_dir"/.outpost.prev.tmp 2>/dev/null || true
  rmdir -- "$lib_dir" 2>/dev/null || true
  if [ "$purge" = 1 ]; then
    if [ -e "$config" ]; then
      rm -f -- "$config"
      did "removed $config"
    fi
    rmdir -- "$config_dir" 2>/dev/null || true
    if [ -e "$data_dir" ]; then
      remove_tree "$data_dir"
      did "removed $data_dir (all stored data)"
    fi
  fi
  if [ -z "$done_list" ]; then
    say "outpost is not installed here (nothing found at $bin)."
  else
    say "outpost uninstalled:$done_list"
  fi
  if [ "$purge" = 0 ]; then
    kept=""
    if [ -e "$config" ]; then kept="$kept $config"; fi
    if [ -e "$data_dir" ]; then kept="$kept $data_dir"; fi
    if [ -n "$kept" ]; then
      say "Kept your config and data:$kept"
      say "Remove them too with: install.sh --purge"
    fi
  fi
}

# ---------------------------------------------------------------------------------------------
# Platform and tools

detect_platform() {
  os="${OUTPOST_OS:-$(uname -s)}"
  case "$os" in
    Linux | linux) ;;
    *) die "unsupported operating system \"$os\": outpost runs on Linux" ;;
  esac

  machine="${OUTPOST_ARCH:-$(uname -m)}"
  case "$machine" in
    x86_64 | amd64 | x64) arch=x64 ;;
    aarch64 | arm64) arch=arm64 ;;
    armv7l | armv7 | armv8l | armhf) arch=armv7 ;;
    *) die "unsupported architecture \"$machine\": outpost has binaries for x86_64 (amd64) and aarch64 (arm64), and a Node.js bundle for armv7 (armv7l, armhf)" ;;
  esac
  if [ -z "${OUTPOST_ARCH:-}" ] && [ "$arch" = arm64 ] && [ "$(getconf LONG_BIT 2>/dev/null || echo 64)" = 32 ]; then
    # A 64-bit ARM kernel with a 32-bit (armhf) userland, as on many Raspberry Pi images.
    arch=armv7
  fi

  libc="${OUTPOST_LIBC:-}"
  if [ -z "$libc" ]; then
    libc=glibc
    if ldd --version 2>&1 | grep -qi musl; then
      libc=musl
    elif ! ls /lib*/ld-linux*.so.* /lib/*-linux-gnu/ld-linux*.so.* >/dev/null 2>&1 &&
      ls /lib/ld-musl-*.so.1 >/dev/null 2>&1; then
      libc=musl
    fi
  fi
  case "$libc" in
    glibc | gnu) artifact="outpost-linux-$arch" ;;
    musl) artifact="outpost-linux-$arch-musl" ;;
    *) die "unknown libc \"$libc\" in OUTPOST_LIBC: expected glibc or musl" ;;
  esac
  node_path=""
  if [ "$arch" = armv7 ]; then
    [ "$libc" != musl ] || die "outpost for armv7 needs glibc (its libSQL driver is built for glibc); this system uses musl"
    artifact="outpost-linux-armv7.tar.gz"
    find_node
  fi
}

# armv7: outpost runs on Node.js 20 or newer, which must be there before anything is downloaded.
find_node() {
  node_cmd="${OUTPOST_NODE:-node}"
  node_path="$(command -v "$node_cmd" 2>/dev/null)" || node_path=""
  if [ -z "$node_path" ]; then
    die "outpost for armv7 runs on Node.js 20 or newer, and \"$node_cmd\" was not found: install Node.js 20+ (the linux-armv7l build from https://nodejs.org/en/download, or your distribution's nodejs package if it is 20 or newer), then run this again (OUTPOST_NODE names a node elsewhere)"
  fi
  case "$node_path" in
    /*) ;;
    *) node_path="$(pwd)/$node_path" ;;
  esac
  node_major="$("$node_path" -e 'process.stdout.write(process.versions.node.split(".")[0])' 2>/dev/null </dev/null)" || node_major=""
  case "$node_major" in
    "" | *[!0-9]*) node_major=0 ;;
  esac
  if [ "$node_major" -lt 20 ]; then
    die "outpost for armv7 needs Node.js 20 or newer; $node_path is $("$node_path" --version 2>/dev/null </dev/null || echo "a version that did not run"): install Node.js 20+ (https://nodejs.org/en/download), then run this again"
  fi
  if [ "$want_unit" = 1 ]; then
    case "$node_path" in
      *[!A-Za-z0-9._/@+-]*) die "\"$node_path\" has characters a systemd unit cannot hold as is: set OUTPOST_NODE to a plain path or use --no-service" ;;
    esac
  fi
}

find_tools() {
  if command -v curl >/dev/null 2>&1; then
    downloader=curl
  elif command -v wget >/dev/null 2>&1; then
    downloader=wget
  else
    die "needs curl or wget to download outpost: install one of them (e.g. apt-get install curl)"
  fi
  if command -v sha256sum >/dev/null 2>&1; then
    hasher=sha256sum
  elif command -v shasum >/dev/null 2>&1; then
    hasher=shasum
  else
    die "needs sha256sum or shasum to verify the download: install coreutils (or perl for shasum)"
  fi
}

sha256() {
  if [ "$hasher" = sha256sum ]; then
    sha256sum "$1" | cut -d ' ' -f 1
  else
    shasum -a 256 "$1" | cut -d ' ' -f 1
  fi
}

# fetch URL FILE: downloads; non-zero (the reason in $work/download.err) when that fails.
fetch() {
  if [ "$downloader" = curl ]; then
    curl -fSsL --retry 3 --connect-timeout 20 -o "$2" "$1" 2>"$work/download.err" </dev/null
  else
    wget -q -T 20 -t 3 -O "$2" "$1" 2>"$work/download.err" </dev/null || {
      echo "wget could not fetch it" >>"$work/download.err"
      return 1
    }
  fi
}

# download URL FILE: fails with a message naming the URL.
download() {
  fetch "$1" "$2" || die "download of $1 failed: $(tail -n 1 "$work/download.err")"
}

# sum_of FILE: the hash SHA256SUMS lists for FILE, or nothing.
sum_of() {
  awk -v f="$1" '$2 == f || $2 == "*" f { print $1; exit }' "$work/SHA256SUMS"
}

check_base_url() {
  base_url="${OUTPOST_BASE_URL:-$DEFAULT_BASE_URL}"
  base_url="${base_url%/}"
  case "$base_url" in
    https://*) ;;
    http://127.0.0.1 | http://127.0.0.1[:/]* | http://localhost | http://localhost[:/]* | http://\[::1\][:/]*) ;;
    http://*) warn "$base_url is plain http: the download and its checksums are not authenticated" ;;
    *) die "OUTPOST_BASE_URL \"$base_url\" is not an http(s) URL" ;;
  esac
}

# ---------------------------------------------------------------------------------------------
# Install

cleanup() {
  rm -rf -- "$work"
  if [ -n "$staged" ]; then rm -f -- "$staged" "$staged.xz"; fi
}

# Downloads SHA256SUMS and sets $expected, the hash it lists for $artifact.
expected_sum() {
  say "Downloading outpost $version for linux-$arch ($libc) from $base_url/$version/"
  download "$base_url/$version/SHA256SUMS" "$work/SHA256SUMS"
  expected="$(sum_of "$artifact")"
  [ -n "$expected" ] || die "$base_url/$version/SHA256SUMS has no entry for $artifact: is linux-$arch published for $version?"
}

install_binary() {
  mkdir -p -- "$bin_dir" || die "cannot create $bin_dir"
  [ -w "$bin_dir" ] || die "cannot write to $bin_dir: run as root, or choose another folder with --prefix"
  if [ "$arch" = armv7 ]; then
    install_archive
    return 0
  fi
  expected_sum

  # The binary is staged in its final folder, so that the last step is one atomic rename.
  staged="$bin_dir/.outpost.download.$$"
  if fetch_compressed; then
    got="$artifact (decompressed from $artifact.xz)"
  else
    say "Downloading $artifact"
    download "$base_url/$version/$artifact" "$staged"
    got="$artifact"
  fi
  actual="$(sha256 "$staged")"
  if [ "$actual" != "$expected" ]; then
    die "checksum mismatch for $got: SHA256SUMS says $expected, the download is $actual. Nothing was installed."
  fi
  chmod 0755 "$staged"

  new_version="$(run_outpost "$staged" --version 2>"$work/version.err" | head -n 1)" || true
  case "$new_version" in
    "outpost "*) ;;
    *) die "the downloaded $artifact does not run on this machine: $(head -c 300 "$work/version.err")" ;;
  esac

  old_version=""
  if [ -x "$bin" ]; then
    old_version="$(run_outpost "$bin" --version 2>/dev/null | head -n 1)" || old_version=""
    old_version="${old_version:-an unknown version}"
  fi

  mv -f -- "$staged" "$bin"
  staged=""
  if [ -n "$old_version" ]; then
    did "upgraded $bin from ${old_version#outpost } to ${new_version#outpost }"
  else
    did "installed $bin (version ${new_version#outpost })"
  fi
  install_prestart
}

# The compressed form, $artifact.xz, into $staged: when xz (or busybox's unxz) is here and
# SHA256SUMS lists it. Its own sum is checked before it is decompressed (a mismatch stops the
# install); the binary it gives is checked afterwards like a plain download. Returns 1 (the plain
# binary is downloaded instead) when there is no decompressor, no compressed form, its download
# fails, or the decompressor cannot decode it.
fetch_compressed() {
  if command -v xz >/dev/null 2>&1; then
    unpack="xz -dc"
  elif command -v unxz >/dev/null 2>&1; then
    unpack="unxz -c"
  else
    say "No xz here: downloading the uncompressed $artifact"
    return 1
  fi
  if [ "$arch" = arm64 ] && [ "$unpack" = "xz -dc" ] && ! xz_decodes_arm64; then
    say "$(xz --version | head -n 1) cannot decode the ARM64 filter of $artifact.xz (5.4 or newer can): downloading the uncompressed $artifact"
    return 1
  fi
  expected_xz="$(sum_of "$artifact.xz")"
  if [ -z "$expected_xz" ]; then
    say "SHA256SUMS lists no $artifact.xz: downloading the uncompressed $artifact"
    return 1
  fi
  say "Downloading $artifact.xz"
  # Beside the binary's staging file, not in $work: /tmp is often in RAM on small devices.
  staged_xz="$staged.xz"
  if ! fetch "$base_url/$version/$artifact.xz" "$staged_xz"; then
    rm -f -- "$staged_xz"
    warn "download of $base_url/$version/$artifact.xz failed ($(tail -n 1 "$work/download.err")): downloading the uncompressed $artifact"
    return 1
  fi
  actual_xz="$(sha256 "$staged_xz")"
  if [ "$actual_xz" != "$expected_xz" ]; then
    die "checksum mismatch for $artifact.xz: SHA256SUMS says $expected_xz, the download is $actual_xz. Nothing was installed."
  fi
  # shellcheck disable=SC2086 # the decompressor is a command and its option
  if ! $unpack "$staged_xz" >"$staged" 2>"$work/xz.err"; then
    warn "${unpack%% *} cannot decompress $artifact.xz ($(head -c 200 "$work/xz.err")): downloading the uncompressed $artifact"
    rm -f -- "$staged" "$staged_xz"
    return 1
  fi
  rm -f -- "$staged_xz"
  return 0
}

# The arm64 .xz uses the ARM64 BCJ filter, which XZ Utils decodes from 5.4 on. Other decoders
# (busybox) are tried: one that cannot decode it fails, and the plain binary is used.
xz_decodes_arm64() {
  xz_v="$(xz --version 2>/dev/null | sed -n 's/^xz (XZ Utils) \([0-9]*\)\.\([0-9]*\).*/\1 \2/p' | head -n 1)"
  [ -n "$xz_v" ] || return 0
  xz_major="${xz_v% *}"
  xz_minor="${xz_v#* }"
  [ "$xz_major" -gt 5 ] || { [ "$xz_major" -eq 5 ] && [ "$xz_minor" -ge 4 ]; }
}

# armv7: the archive (outpost-<version>-linux-armv7/ with the launcher `outpost`, outpost.mjs and
# libsql/index.node) is checked, unpacked into $releases/<hash>, run once, and then $bin becomes a
# symlink to its launcher in one rename. The folder the previous version's symlink ($bin.prev,
# kept by a self-update) points into stays; the others are removed.
install_archive() {
  expected_sum
  download "$base_url/$version/$artifact" "$work/$artifact"
  actual="$(sha256 "$work/$artifact")"
  if [ "$actual" != "$expected" ]; then
    die "checksum mismatch for $artifact: SHA256SUMS says $expected, the download is $actual. Nothing was installed."
  fi
  mkdir "$work/unpacked"
  tar -xzf "$work/$artifact" -C "$work/unpacked" 2>"$work/tar.err" || die "cannot unpack $artifact: $(head -c 300 "$work/tar.err")"
  unpacked=""
  for d in "$work/unpacked"/outpost-*-linux-armv7; do
    if [ -f "$d/outpost" ] && [ -f "$d/outpost.mjs" ] && [ -f "$d/libsql/index.node" ]; then unpacked="$d"; fi
  done
  [ -n "$unpacked" ] || die "$artifact does not hold outpost-<version>-linux-armv7/ with outpost, outpost.mjs and libsql/index.node"
  chmod 0755 "$unpacked/outpost"
  new_version="$(OUTPOST_NODE="$node_path" run_outpost "$unpacked/outpost" --version 2>"$work/version.err" | head -n 1)" || true
  case "$new_version" in
    "outpost "*) ;;
    *) die "the downloaded $artifact does not run with $node_path: $(head -c 300 "$work/version.err")" ;;
  esac

  old_version=""
  if [ -x "$bin" ]; then
    old_version="$(OUTPOST_NODE="$node_path" run_outpost "$bin" --version 2>/dev/null | head -n 1)" || old_version=""
    old_version="${old_version:-an unknown version}"
  fi

  mkdir -p -- "$releases" || die "cannot create $releases"
  release="$releases/$(printf '%s' "$expected" | cut -c 1-16)"
  if [ ! -f "$release/outpost.mjs" ]; then
    rm -rf -- "$release" "$release.tmp"
    # Copied into the same file system, then one rename: a half-copied folder is never used.
    cp -R -- "$unpacked" "$release.tmp" || die "cannot copy the bundle to $release.tmp"
    mv -- "$release.tmp" "$release"
  fi
  staged="$bin_dir/.outpost.download.$$"
  rm -f -- "$staged"
  ln -s -- "$release/outpost" "$staged"
  mv -f -- "$staged" "$bin"
  staged=""
  keep_prev=""
  if [ -L "$bin.prev" ]; then keep_prev="$(readlink "$bin.prev")"; fi
  for d in "$releases"/*; do
    [ -d "$d" ] || continue
    case "$d" in
      "$release") ;;
      *)
        case "$keep_prev" in
          "$d"/*) ;;
          *) rm -rf -- "$d" ;;
        esac
        ;;
    esac
  done
  if [ -n "$old_version" ]; then
    did "upgraded $bin from ${old_version#outpost } to ${new_version#outpost } (runs $release with $node_path)"
  else
    did "installed $bin (version ${new_version#outpost }: a link to $release, run with $node_path)"
  fi
  install_prestart
}

# The self-update trial check (scripts/outpost-prestart.sh in the source tree, kept identical
# here by a test) that the unit runs before every start: it rolls a failed update back even when
# the new binary cannot start at all. See docs/update.md.
prestart_script() {
  cat <<'OUTPOST_PRESTART_EOF'
#!/bin/sh
# outpost-prestart: the self-update trial check that runs before every start of the agent
# (systemd: ExecStartPre=, installed by install.sh). It must work when the new binary cannot start
# at all, so it is plain POSIX sh and never runs the binary.
#
#   outpost-prestart EXE DATA_DIR
#
# When DATA_DIR/update-trial exists (a new binary is on trial; see docs/update.md), it counts
# this start ("starts=") and, when the count is over "max_starts=" or the trial's "deadline="
# (unix seconds) has passed, rolls back: renames EXE.prev over EXE (one atomic rename), records
# the outcome in DATA_DIR/update-result and removes the marker. It also restores EXE.prev when
# EXE is missing. It always exits 0 (a failing ExecStartPre= would keep the agent from starting)
# except on bad usage (2).
set -u

say() { printf 'outpost-prestart: %s\n' "$*" >&2; }

if [ "$#" -ne 2 ] || [ -z "$1" ] || [ -z "$2" ]; then
  say "usage: outpost-prestart EXE DATA_DIR"
  exit 2
fi
exe=$1
data_dir=$2
marker="$data_dir/update-trial"
result="$data_dir/update-result"

# field NAME: the value of NAME= in the marker (first occurrence), or empty.
field() {
  sed -n "s/^$1=//p" "$marker" 2>/dev/null | head -n 1
}

is_number() {
  case "$1" in
    '' | *[!0-9]*) return 1 ;;
    *) return 0 ;;
  esac
}

# write_result STATUS REASON: the outcome, written atomically (temporary file, rename).
write_result() {
  tmp="$result.tmp.$$"
  {
    printf '# outpost: the last update'"'"'s outcome\n'
    printf 'status=%s\n' "$1"
    printf 'version=%s\n' "$version"
    printf 'previous=%s\n' "$previous"
    printf 'reason=%s\n' "$2"
    printf 'at=%s\n' "$(date +%s)"
    printf 'by=prestart\n'
  } >"$tmp" && chmod 600 "$tmp" && mv -f "$tmp" "$result"
}

# The executable went missing (it never should: every change to it is a rename over it).
if [ ! -e "$exe" ] && [ -f "$exe.prev" ]; then
  if mv -f "$exe.prev" "$exe"; then
    say "$exe was missing: restored it from $exe.prev"
  fi
fi

[ -f "$marker" ] || exit 0

version=$(field version)
previous=$(field previous)
starts=$(field starts)
max_starts=$(field max_starts)
deadline=$(field deadline)
boot_id=$(field boot_id)
uptime_deadline=$(field uptime_deadline)
if [ -z "$version" ] || ! is_number "$starts" || ! is_number "$max_starts"; then
  say "$marker is unreadable: removing it"
  rm -f "$marker"
  exit 0
fi

starts=$((starts + 1))
tmp="$marker.tmp.$$"
if sed "s/^starts=.*/starts=$starts/" "$marker" >"$tmp" && chmod 600 "$tmp" && mv -f "$tmp" "$marker"; then
  :
else
  rm -f "$tmp"
  say "cannot update $marker (read-only data folder?): trial start not counted"
fi

reason=""
if [ "$starts" -gt "$max_starts" ]; then
  reason="$version was started $((starts - 1)) times without passing its trial (pre-start check)"
elif [ -n "$boot_id" ]; then
  # Time since boot decides within the boot that wrote it (the wall clock may jump at boot); in
  # another boot the binary starts the trial's time again, so only the start count applies here.
  if [ "$boot_id" = "$(cat /proc/sys/kernel/random/boot_id 2>/dev/null)" ] && is_number "$uptime_deadline"; then
    now_up=$(cut -d. -f1 /proc/uptime 2>/dev/null)
    if is_number "$now_up" && [ "$now_up" -gt "$uptime_deadline" ]; then
      reason="$version did not pass its trial before its deadline (pre-start check)"
    fi
  fi
elif is_number "$deadline" && [ "$(date +%s)" -gt "$deadline" ]; then
  reason="$version did not pass its trial before its deadline (pre-start check)"
fi

if [ -z "$reason" ]; then
  say "$version is on trial: start $starts of $max_starts"
  exit 0
fi

# same_exe A B: the two names are one executable: the same symlink target (armv7, where the
# executable is a link to a bundle's launcher), or the same bytes.
same_exe() {
  if [ -L "$1" ] || [ -L "$2" ]; then
    [ "$(readlink "$1")" = "$(readlink "$2")" ]
  else
    cmp -s "$1" "$2"
  fi
}

if [ -f "$exe.prev" ]; then
  if same_exe "$exe.prev" "$exe"; then
    # The swap never happened (the update was interrupted before its rename): the executable
    # already is the previous binary (mv refuses two names of one file, so it is not used here).
    rm -f "$exe.prev"
    write_result rolled-back "$reason"
    rm -f "$marker"
    say "${previous:-the previous binary} is already in place: $reason"
  elif mv -f "$exe.prev" "$exe"; then
    sync
    write_result rolled-back "$reason"
    rm -f "$marker"
    sync
    say "rolled back to ${previous:-the previous binary}: $reason"
  else
    say "cannot rename $exe.prev over $exe: $reason"
  fi
else
  write_result failed "$reason; cannot roll back: $exe.prev is missing"
  rm -f "$marker"
  say "cannot roll back, $exe.prev is missing: $reason"
fi
exit 0
OUTPOST_PRESTART_EOF
}

install_prestart() {
  mkdir -p -- "$lib_dir" || die "cannot create $lib_dir"
  prestart_script >"$prestart.tmp.$$"
  chmod 0755 "$prestart.tmp.$$"
  mv -f -- "$prestart.tmp.$$" "$prestart"
  did "installed the update pre-start check $prestart"
}

install_config() {
  if [ "$is_root" = 1 ]; then dir_mode=0755; else dir_mode=0700; fi
  if [ ! -d "$config_dir" ]; then
    mkdir -p -- "$config_dir"
    chmod "$dir_mode" "$config_dir"
  fi
  if [ -e "$config" ]; then
    did "kept the existing config $config"
    config_data_dir="$(sed -n 's/^[[:space:]]*"dataDir"[[:space:]]*:[[:space:]]*"\([^"]*\)".*/\1/p' "$config" | head -n 1)"
    case "$config_data_dir" in
      /*)
        if [ "${config_data_dir%/}" != "${data_dir%/}" ]; then
          warn "$config has dataDir \"$config_data_dir\" but the data folder here is $data_dir: set OUTPOST_DATA_DIR=$config_data_dir and re-run"
        fi
        ;;
    esac
  else
    if ! run_outpost "$bin" init --config "$config" --data-dir "$data_dir" >"$work/init.out" 2>&1; then
      die "outpost init --config $config failed: $(cat "$work/init.out")"
    fi
    chmod 0600 "$config"
    did "wrote $config (mode 0600, with a new API token)"
  fi

  if [ ! -d "$data_dir" ]; then
    mkdir -p -- "$data_dir"
    did "created the data folder $data_dir"
  fi
  chmod 0700 "$data_dir"
}

write_unit() {
  # armv7: the node it runs on, and the bundles' folder, which a self-update writes.
  unit_node=""
  unit_rw=""
  if [ -n "$node_path" ]; then
    unit_node="Environment=OUTPOST_NODE=$node_path"
    unit_rw=" $lib_dir"
  fi
  cat <<EOF
# outpost edge agent, installed by install.sh. Local changes: systemctl edit outpost
[Unit]
Description=outpost edge agent
Wants=network-online.target
After=network-online.target
# Keep trying for ever: an edge agent must come back after any failure.
StartLimitIntervalSec=0

[Service]
Type=simple
# Before every start: the self-update trial check (rolls back a new binary that keeps failing).
ExecStartPre=$prestart $bin $data_dir
ExecStart=$bin run --config $config
Restart=always
RestartSec=2
# After a self-update (or a rollback) the agent drains and exits 75 for systemd to start the new
# binary: a success, and always restarted.
SuccessExitStatus=75
RestartForceExitStatus=75
# SIGTERM drains in-flight messages, then the agent exits 0.
KillSignal=SIGTERM
TimeoutStopSec=30
UMask=0077
LimitNOFILE=65536
# The binary unpacks its embedded libSQL driver to BUN_TMPDIR at start: a cache folder that is
# writable and, unlike /tmp on some devices, not mounted noexec.
CacheDirectory=outpost
Environment=BUN_TMPDIR=/var/cache/outpost
$unit_node
# Hardening. The agent writes only its data folder, and its own binary's folder when it
# updates itself. MemoryDenyWriteExecute= is left off: the JavaScript JIT needs it.
NoNewPrivileges=yes
ProtectSystem=strict
ReadWritePaths=$data_dir $bin_dir$unit_rw
ProtectHome=read-only
PrivateTmp=yes
PrivateDevices=yes
ProtectKernelTunables=yes
ProtectKernelModules=yes
ProtectKernelLogs=yes
ProtectControlGroups=yes
ProtectClock=yes
ProtectHostname=yes
RestrictSUIDSGID=yes
RestrictRealtime=yes
RestrictNamespaces=yes
LockPersonality=yes
RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6 AF_NETLINK
SystemCallArchitectures=native
CapabilityBoundingSet=CAP_NET_BIND_SERVICE

[Install]
WantedBy=multi-user.target
EOF
}

install_service() {
  [ "$want_unit" = 1 ] || return 0
  mkdir -p -- "$unit_dir"
  write_unit >"$unit.tmp"
  chmod 0644 "$unit.tmp"
  mv -f -- "$unit.tmp" "$unit"
  did "wrote the systemd unit $unit"
  if [ "$systemd_running" = 1 ]; then
    systemctl daemon-reload </dev/null
    systemctl enable "$SERVICE" >/dev/null 2>&1 </dev/null || die "systemctl enable $SERVICE failed"
    if systemctl restart "$SERVICE" </dev/null; then
      did "enabled and (re)started $SERVICE"
    else
      die "systemctl restart $SERVICE failed: see journalctl -u $SERVICE"
    fi
  fi
}

report() {
  say "outpost ${new_version#outpost } is installed:$done_list"
  say ""
  say "Next:"
  if [ "$want_unit" = 1 ] && [ "$systemd_running" = 1 ]; then
    say "  status:   systemctl status outpost    (logs: journalctl -u outpost -f)"
    say "  connect to a hub: edit $config (\"hub\": {\"url\", \"routingKey\", \"secret\"}),"
    say "            then: systemctl restart outpost"
  else
    if [ "$want_unit" = 1 ]; then
      say "  systemd is not running here, so the service was not started; the unit is $unit"
    elif [ "$is_root" = 1 ] && [ "$no_service" = 0 ]; then
      say "  systemd is not running here, so no service was installed"
    fi
    say "  run the agent:  $bin run --config $config"
    if [ -n "$old_version" ]; then
      say "  (restart an agent that is already running to use the new version)"
    fi
    say "  connect to a hub: edit $config (\"hub\": {\"url\", \"routingKey\", \"secret\"})"
  fi
  say "  ask it:   $bin status --config $config"
  case ":${PATH:-}:" in
    *":$bin_dir:"*) ;;
    *) say "  note: $bin_dir is not on your PATH; add it, e.g.: export PATH=\"$bin_dir:\$PATH\"" ;;
  esac
  say "  remove:   install.sh --uninstall   (add --purge to delete config and data)"
}

main() {
  parse_args "$@"
  locate
  if [ "$uninstall" = 1 ]; then
    do_uninstall
    return 0
  fi
  detect_platform
  find_tools
  check_base_url

  work="$(mktemp -d "${TMPDIR:-/tmp}/outpost-install.XXXXXX")"
  staged=""
  trap cleanup EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM

  install_binary
  install_config
  install_service
  report
}

main "$@"
