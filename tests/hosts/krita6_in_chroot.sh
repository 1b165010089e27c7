#!/usr/bin/env bash
# Run a command inside the Krita 6 chroot: see in_chroot.sh (private mounts, shared loopback network,
# CHROOT_BINDS for a test's tmp dir at the same path inside).
# Usage: [CHROOT_BINDS=/dir1:/dir2] krita6_in_chroot.sh ROOT CMD [ARGS...]
exec "$(dirname "${BASH_SOURCE[0]}")/in_chroot.sh" "$@"
