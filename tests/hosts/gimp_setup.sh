#!/usr/bin/env bash
# Idempotent build of a Debian trixie chroot holding GIMP 3.0.x with Python 3 plug-in support
# (bookworm only ships GIMP 2.10).  Used by the `gimp` real-host tests; `run.sh test` calls it
# before pytest.  ~2 min from nothing, ~0 s when already built.  Leaves nothing mounted.
# Usage: tests/hosts/gimp_setup.sh [ROOT]      (default: $GIMP3_ROOT or /tmp/gimp3-root)
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="${1:-${GIMP3_ROOT:-/tmp/gimp3-root}}"

if [ -x "$ROOT/usr/bin/gimp-console-3.0" ] && [ -f "$ROOT/.sdbridge-gimp-ready" ]; then
  echo "gimp chroot ready: $ROOT"
  exit 0
fi

. "$HERE/chroot_lib.sh"
bootstrap "$ROOT" trixie "$(host_mirror)"

if [ ! -x "$ROOT/usr/bin/gimp-console-3.0" ]; then
  # gimp 3.0.x in trixie already depends on python3-gi + gir1.2-gimp-3.0; listed for clarity.
  "$HERE/gimp_in_chroot.sh" "$ROOT" /bin/sh -c '
    apt-get update -q &&
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
      gimp gir1.2-gimp-3.0 python3-gi python3 &&
    apt-get clean'
fi
chroot "$ROOT" gimp-console-3.0 --version
touch "$ROOT/.sdbridge-gimp-ready"
echo "gimp chroot ready: $ROOT"
