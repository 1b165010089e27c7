#!/usr/bin/env bash
# sdbridge set-up in one command each (see README):
#   ./run.sh serve [sdbridge serve options]  make .venv if needed, start the server
#                                            (a tiny random-weight demo model when no --models is given)
#   ./run.sh test [pytest options]           make .venv + the real editor hosts (Krita 5, a Krita 6
#                                            chroot, a GIMP 3 chroot),
#                                            then ruff (lint + format check) and the whole test suite
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
VENV="${SDBRIDGE_VENV:-.venv}"

setup_venv() {
  [ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
  local stamp="$VENV/.sdbridge-installed"
  if [ -f "$stamp" ] && [ "$stamp" -nt pyproject.toml ]; then return; fi
  # torch first, pinned: pip then takes the local wheels on our machines, and the project's own
  # range (torch>=2.4,<3) is already satisfied, so nothing pulls a different build later.
  if ! "$VENV/bin/python" -c "import torch, torchvision" 2>/dev/null; then
    "$VENV/bin/pip" install -q --disable-pip-version-check "torch==2.14.1" "torchvision==0.29.1"
  fi
  # The cluster extra (Ray) too, so the test suite covers `serve --ray` as well.
  "$VENV/bin/pip" install -q --disable-pip-version-check -e '.[test,cluster]'
  touch "$stamp"
}

cmd="${1:-}"
[ $# -gt 0 ] && shift
case "$cmd" in
  serve)
    setup_venv
    exec "$VENV/bin/sdbridge" serve "$@"
    ;;
  test)
    setup_venv
    # Real editor hosts for the plugin tests (idempotent; skipped quickly when already there).
    for s in tests/hosts/krita_setup.sh tests/hosts/krita6_setup.sh tests/hosts/gimp_setup.sh; do
      if [ -x "$s" ]; then "$s"; fi
    done
    # Style is part of the suite: lint and formatting must be clean before any test runs.
    "$VENV/bin/ruff" check .
    "$VENV/bin/ruff" format --check .
    exec "$VENV/bin/python" -m pytest "$@"
    ;;
  *)
    echo "usage: ./run.sh serve [options] | ./run.sh test [pytest options]" >&2
    exit 2
    ;;
esac
