#!/usr/bin/env bash
# Idempotent build of a Debian sid chroot holding real Krita 6 (Qt 6 / PyQt6, from Debian
# experimental) for the `krita` real-host tests; `run.sh test` calls it before pytest, like the
# GIMP chroot. ~1.5 min from nothing (debootstrap + ~360 MB of packages), ~0 s when ready.
# Safe to run from several jobs at once (flock) and leaves nothing mounted (the wrapper mounts in
# a private namespace). Needs root (debootstrap, chroot, mount).
# Usage: tests/hosts/krita6_setup.sh [ROOT]      (default: $KRITA6_ROOT or /tmp/krita6-root)
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="${1:-${KRITA6_ROOT:-/tmp/krita6-root}}"
ROOT="${ROOT%/}"
IN="$HERE/krita6_in_chroot.sh"
STAMP="$ROOT/.sdbridge-krita6-ready"

ready() { [ -x "$ROOT/usr/bin/krita" ] && [ -x "$ROOT/usr/bin/xvfb-run" ] && [ -f "$STAMP" ]; }
if ready; then echo "krita6 chroot ready: $ROOT ($(cat "$STAMP"))"; exit 0; fi
[ "$(id -u)" = 0 ] || { echo "krita6_setup.sh: needs root (debootstrap, chroot, mount)" >&2; exit 1; }

# Two suites building the same ROOT at once would corrupt it: one builds, the other waits and re-checks.
mkdir -p "$(dirname "$ROOT")"
exec 9>"$ROOT.setup-lock"
flock 9
if ready; then echo "krita6 chroot ready: $ROOT ($(cat "$STAMP"))"; exit 0; fi

# Never delete or reuse a tree with something mounted in it (an rm -rf must not reach the host's /dev).
if awk -v r="$ROOT" '$5 == r || index($5, r "/") == 1 {found = 1} END {exit !found}' /proc/self/mountinfo; then
  echo "krita6_setup.sh: something is mounted under $ROOT; unmount it first" >&2; exit 1
fi

. "$HERE/chroot_lib.sh"
MIRROR="$(host_mirror)"
bootstrap "$ROOT" sid "$MIRROR"
# experimental is NotAutomatic: only what is asked for comes from it (krita, and krita-data with it).
printf 'deb %s sid main\ndeb %s experimental main\n' "$MIRROR" "$MIRROR" > "$ROOT/etc/apt/sources.list"
# Snapshot mirrors serve sid/experimental Release files past their one-week Valid-Until; apt then
# refuses them ("Release file ... is expired"). Harmless against a live mirror.
printf 'Acquire::Check-Valid-Until "false";\n' > "$ROOT/etc/apt/apt.conf.d/99sdbridge-no-valid-until"

if [ ! -x "$ROOT/usr/bin/krita" ] || [ ! -x "$ROOT/usr/bin/xvfb-run" ] || \
   ! "$IN" "$ROOT" /usr/bin/python3 -c 'import PyQt6.QtCore' >/dev/null 2>&1; then
  "$IN" "$ROOT" /bin/sh -ec '
    apt-get update -q
    # krita/experimental while experimental has a newer krita than sid (once Krita 6 reaches sid,
    # sid'"'"'s); the version check below insists on 6.x either way.
    vexp=$(apt-cache madison krita | awk -F"|" "/experimental/ {gsub(/ /, \"\", \$2); print \$2; exit}")
    vsid=$(apt-cache madison krita | awk -F"|" "/ (sid|unstable)\\// {gsub(/ /, \"\", \$2); print \$2; exit}")
    K=krita
    if [ -n "$vexp" ] && { [ -z "$vsid" ] || dpkg --compare-versions "$vexp" gt "$vsid"; }; then K=krita/experimental; fi
    echo "installing $K (experimental: ${vexp:-none}, sid: ${vsid:-none})"
    # python3-pyqt6 is only a Recommends of krita but plugins need it; Krita needs a real X server
    # (offscreen segfaults), hence xvfb + xauth; qt6-svg-plugins keeps the logs free of icon errors.
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
      "$K" python3-pyqt6 xvfb xauth qt6-svg-plugins
    apt-get clean'
fi

VER="$("$IN" "$ROOT" env -i PATH=/usr/bin:/bin HOME=/root LANG=C.UTF-8 \
        timeout -k 5 120 xvfb-run -n 200 -a krita --version 2>/dev/null | grep -i '^krita' || true)"
case "$VER" in
  "krita 6."*) ;;
  *) echo "krita6_setup.sh: expected Krita 6.x in $ROOT, got '$VER'" >&2; exit 1 ;;
esac
echo "$VER" > "$STAMP"
echo "krita6 chroot ready: $ROOT ($VER)"
