#!/usr/bin/env bash
# Run a command inside a Debian chroot (the GIMP 3 and Krita 6 test hosts) with /proc, /sys, /dev,
# /dev/pts, a private /dev/shm and the host's X socket dir mounted in a PRIVATE mount namespace: the
# mounts vanish when the command ends (even on kill -9), so nothing stays mounted and an
# `rm -rf --one-file-system` of the chroot can never reach the host's /dev. The chroot shares the
# host's network namespace: 127.0.0.1 inside is 127.0.0.1 outside (the test server).
# /dev/shm gets its own tmpfs because `mount --bind /dev` is not recursive (Qt and Mesa need shm).
# CHROOT_BINDS=/a:/b bind-mounts host directories at the SAME path inside (a test's tmp dir), so a
# harness uses one path on both sides.
# Usage: [CHROOT_BINDS=/dir1:/dir2] tests/hosts/in_chroot.sh ROOT CMD [ARGS...]
set -euo pipefail
ROOT="$1"; shift
exec unshare --mount --propagation private -- /bin/bash -c '
  set -e
  R="$1"; shift
  mount -t proc proc "$R/proc"
  mount --bind /sys "$R/sys"
  mount --bind /dev "$R/dev"
  mount --bind /dev/pts "$R/dev/pts"
  mkdir -p "$R/dev/shm"
  mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs "$R/dev/shm"
  # The shared X socket dir lets a host Xvfb serve the chroot (DISPLAY=:N), and xvfb-run -a on
  # either side sees the other side'"'"'s displays and picks a free number.
  if [ -d /tmp/.X11-unix ]; then
    [ -d "$R/tmp/.X11-unix" ] || install -d -m 1777 "$R/tmp/.X11-unix"
    mount --bind /tmp/.X11-unix "$R/tmp/.X11-unix"
  fi
  IFS=: read -ra binds <<< "${CHROOT_BINDS:-}"
  for d in "${binds[@]}"; do
    [ -n "$d" ] || continue
    case "$d" in /?*) ;; *) echo "CHROOT_BINDS: not an absolute path: $d" >&2; exit 2 ;; esac
    [ -d "$d" ] || { echo "CHROOT_BINDS: no such directory: $d" >&2; exit 2; }
    mkdir -p "$R$d"; mount --bind "$d" "$R$d"
  done
  exec chroot "$R" "$@"
' in_chroot "$ROOT" "$@"
