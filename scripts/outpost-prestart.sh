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
