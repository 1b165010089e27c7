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

# Mirror: whatever the host's apt already uses (deb822 first, then one-line format), since that is
# the only network we can count on in CI sandboxes.
MIRROR="$(awk '/^URIs:/{print $2; exit}' /etc/apt/sources.list.d/*.sources 2>/dev/null || true)"
[ -n "$MIRROR" ] || MIRROR="$(awk '$1=="deb"{print $2; exit}' /etc/apt/sources.list 2>/dev/null || true)"
[ -n "$MIRROR" ] || MIRROR="http://deb.debian.org/debian"

if ! command -v debootstrap >/dev/null; then
  # Other host setups (Krita) may hold the dpkg lock concurrently: wait for it instead of failing.
  apt-get -o DPkg::Lock::Timeout=600 update -q || true
  DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -q debootstrap
fi

if [ ! -x "$ROOT/usr/bin/apt-get" ]; then
  # A half-finished debootstrap leaves a tree that a second debootstrap refuses; start clean.
  # --one-file-system: never follow a (stale) bind mount into the host.
  [ -d "$ROOT" ] && rm -rf --one-file-system "$ROOT"
  mkdir -p "$ROOT"
  debootstrap --variant=minbase trixie "$ROOT" "$MIRROR"
fi
cp /etc/resolv.conf "$ROOT/etc/resolv.conf" 2>/dev/null || true

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
