#!/usr/bin/env bash
# Idempotent install of real Krita 5.1.5 (Debian 12 bookworm package) for the `krita` host tests.
# python3-pyqt5 is only a Recommends of krita, but pykrita plugins need it; Xvfb because the krita
# binary forces the xcb platform (no offscreen). Recipe: shared/research/real-hosts.md.
set -euo pipefail
need_install=0
command -v krita >/dev/null 2>&1 || need_install=1
command -v xvfb-run >/dev/null 2>&1 || need_install=1
command -v xauth >/dev/null 2>&1 || need_install=1
/usr/bin/python3 -c 'import PyQt5.QtCore' >/dev/null 2>&1 || need_install=1
if [ "$need_install" = 1 ]; then
  if [ "$(id -u)" != 0 ]; then SUDO=sudo; else SUDO=; fi
  $SUDO apt-get update -q
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends \
    krita python3-pyqt5 xvfb xauth
fi
timeout 60 xvfb-run -a krita --version 2>/dev/null | grep -i '^krita'
