#!/usr/bin/env bash
# Run a command inside the GIMP 3 chroot with /proc, /sys, /dev, /dev/pts (and the X socket dir,
# when present) mounted in a PRIVATE mount namespace: the mounts vanish when the command ends, so
# nothing stays bind-mounted and an `rm -rf` of the chroot can never reach the host's /dev.
# The chroot shares the host's network namespace: 127.0.0.1 inside == 127.0.0.1 on the host,
# which is how the plug-in reaches the test server.
# Usage: gimp_in_chroot.sh ROOT CMD [ARGS...]
set -euo pipefail
ROOT="$1"; shift
exec unshare --mount --propagation private -- /bin/bash -c '
  set -e
  R="$1"; shift
  mount -t proc proc "$R/proc"
  mount --bind /sys "$R/sys"
  mount --bind /dev "$R/dev"
  mount --bind /dev/pts "$R/dev/pts"
  if [ -d /tmp/.X11-unix ]; then mkdir -p "$R/tmp/.X11-unix"; mount --bind /tmp/.X11-unix "$R/tmp/.X11-unix"; fi
  exec chroot "$R" "$@"
' gimp_in_chroot "$ROOT" "$@"
