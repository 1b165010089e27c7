#!/usr/bin/env bash
# Run a command inside the GIMP 3 chroot: see in_chroot.sh (private mounts, shared loopback network).
# Usage: gimp_in_chroot.sh ROOT CMD [ARGS...]
exec "$(dirname "${BASH_SOURCE[0]}")/in_chroot.sh" "$@"
