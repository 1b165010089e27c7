"""Build the GIMP 3 plug-in folder (and a zip) with its dependencies vendored.

    python plugins/gimp/build.py [--out build/gimp] [--no-archive]

Result: `<out>/sdbridge/` — ready to copy into GIMP's `plug-ins` folder — and
`<out>/sdbridge-gimp-<version>.zip` holding that folder. Vendored at build time (never committed):
the shared client `plugins/common` (as `sdbridge_common`, with `server/protocol.py` as its
`_protocol` and `tiling/geometry.py` as its `_geometry`), and pure-Python copies of `websockets`
and `msgpack` taken from the build interpreter's installed packages. Compiled extensions are left
out on purpose: GIMP's Python may be another version or OS, and both libraries fall back to pure
Python.

Also available as `python -m plugins.build gimp` (output under build/plugins/gimp/).
"""

from __future__ import annotations

import argparse
import os
import shutil
import stat
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
if str(REPO) not in sys.path:  # run as a script: make `plugins.bundle` importable
    sys.path.insert(0, str(REPO))

from plugins import bundle  # noqa: E402  (the steps every target shares)

NAME = "sdbridge"  # GIMP requires plug-ins/<NAME>/<NAME>.py
VERSION = "0.1.0"


def archive_path(out_dir: Path) -> Path:
    return out_dir / f"{NAME}-gimp-{VERSION}.zip"


def build(out_dir: Path, archive: bool = True) -> Path:
    """Assemble `<out_dir>/sdbridge` (replacing an older build); return the plug-in folder."""
    dest = out_dir / NAME
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    entry = dest / f"{NAME}.py"
    # copy2 keeps the sources' mtimes: GIMP re-queries a plug-in only when its file's mtime changes.
    shutil.copy2(HERE / f"{NAME}.py", entry)
    # The executable bit is what makes GIMP list the plug-in at all (a classic "not in the menu").
    entry.chmod(entry.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    shutil.copytree(HERE / "sdbridge_gimp", dest / "sdbridge_gimp", ignore=bundle.ignore)
    shutil.copy2(HERE / "README.md", dest / "README.md")
    bundle.fill_vendor(dest / "vendor")
    # GIMP re-reads a plug-in's procedures (names, argument types) only when the main file's mtime
    # changes, and otherwise trusts its pluginrc cache. Give the entry point the newest mtime of the
    # whole tree: any change anywhere triggers a re-query, an unchanged build keeps the fast start.
    newest = max(p.stat().st_mtime for p in dest.rglob("*") if p.is_file() and p.name != "VENDORED.txt")
    os.utime(entry, (newest, newest))

    if archive:
        bundle.zip_tree(dest, archive_path(out_dir), base=out_dir)  # the zip holds the `sdbridge/` folder
    return dest


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=REPO / "build" / "gimp", help="output folder (default build/gimp)")
    ap.add_argument("--no-archive", action="store_true", help="only the folder, no zip")
    args = ap.parse_args(argv)
    dest = build(args.out, archive=not args.no_archive)
    print(dest)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
