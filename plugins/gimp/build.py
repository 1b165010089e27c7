"""Build the GIMP 3 plug-in folder (and a zip) with its dependencies vendored.

    python plugins/gimp/build.py [--out build/gimp] [--no-archive]

Result: `<out>/sdbridge/` — ready to copy into GIMP's `plug-ins` folder — and
`<out>/sdbridge-gimp-<version>.zip` holding that folder. Vendored at build time (never committed):
the shared client `plugins/common` (as `sdbridge_common`, with `server/protocol.py` as its
`_protocol`), and pure-Python copies of `websockets` and `msgpack` taken from the build
interpreter's installed packages. Compiled extensions are left out on purpose: GIMP's Python may
be another version or OS, and both libraries fall back to pure Python.

`plugins/build.py` can call `build(out_dir)` for its `gimp` target.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import os
import shutil
import stat
import sys
import zipfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
NAME = "sdbridge"  # GIMP requires plug-ins/<NAME>/<NAME>.py
VERSION = "0.1.0"
VENDORED = ("websockets", "msgpack")
SKIP_SUFFIXES = (".so", ".pyd", ".dylib", ".c", ".h", ".pyc", ".pyx", ".pxd")


def _ignore(_dir: str, names: list[str]) -> list[str]:
    return [n for n in names if n == "__pycache__" or n.endswith(SKIP_SUFFIXES)]


def _package_dir(name: str) -> Path:
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit(f"build: the package {name!r} is not installed in {sys.executable}; pip install {name}")
    return Path(next(iter(spec.submodule_search_locations)))


def build(out_dir: Path, archive: bool = True) -> Path:
    """Assemble `<out_dir>/sdbridge` (replacing an older build); return the plug-in folder."""
    dest = out_dir / NAME
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    entry = dest / f"{NAME}.py"
    shutil.copy2(HERE / f"{NAME}.py", entry)
    # The executable bit is what makes GIMP list the plug-in at all (a classic "not in the menu").
    entry.chmod(entry.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    shutil.copytree(HERE / "sdbridge_gimp", dest / "sdbridge_gimp", ignore=_ignore)
    shutil.copy2(HERE / "README.md", dest / "README.md")

    vendor = dest / "vendor"
    common = vendor / "sdbridge_common"
    shutil.copytree(REPO / "plugins" / "common", common, ignore=_ignore)
    shutil.copy2(REPO / "server" / "protocol.py", common / "_protocol.py")
    versions = []
    for name in VENDORED:
        shutil.copytree(_package_dir(name), vendor / name, ignore=_ignore)
        versions.append(f"{name}=={importlib.metadata.version(name)}")
    (vendor / "VENDORED.txt").write_text("\n".join(versions) + "\n")

    if archive:
        zpath = out_dir / f"{NAME}-gimp-{VERSION}.zip"
        with zipfile.ZipFile(zpath, "w", zipfile.ZIP_DEFLATED) as zf:
            for path in sorted(dest.rglob("*")):
                if path.is_file():
                    info = zipfile.ZipInfo.from_file(path, path.relative_to(out_dir).as_posix())
                    info.compress_type = zipfile.ZIP_DEFLATED
                    # keep the unix mode (exec bit) for unzip on Linux/macOS
                    info.external_attr = (os.stat(path).st_mode & 0xFFFF) << 16
                    zf.writestr(info, path.read_bytes())
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
