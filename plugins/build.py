"""Build installable editor plugins: `python -m plugins.build krita|gimp [--out DIR]`.

Each target lays out its editor's files and fills a vendor folder with the shared client and
pure-Python `websockets`/`msgpack` (`plugins/bundle.py`, the steps all targets share). Vendored
code is never committed; outputs go to `build/` (git-ignored).

Adding a target: write `def build_x(out: Path) -> Path` and decorate it with `@target("x")`.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from collections.abc import Callable
from pathlib import Path

from plugins import bundle
from plugins.gimp import build as gimp_build

TARGETS: dict[str, Callable[[Path], Path]] = {}


def target(name: str) -> Callable[[Callable[[Path], Path]], Callable[[Path], Path]]:
    def register(fn: Callable[[Path], Path]) -> Callable[[Path], Path]:
        TARGETS[name] = fn
        return fn

    return register


@target("krita")
def build_krita(out: Path) -> Path:
    """`sdbridge.desktop` + `sdbridge/` package, the layout Krita's "Import Python Plugin from File" expects."""
    stage = out / "krita"
    if stage.exists():
        shutil.rmtree(stage)
    pkg = stage / "sdbridge"
    shutil.copytree(bundle.PLUGINS / "krita", pkg, ignore=bundle.ignore)
    (pkg / "sdbridge.desktop").replace(stage / "sdbridge.desktop")  # must sit NEXT TO the package
    bundle.fill_vendor(pkg / "_vendor")
    return bundle.zip_tree(stage, out / "sdbridge-krita.zip")


@target("gimp")
def build_gimp(out: Path) -> Path:
    """`gimp/sdbridge/` plug-in folder (copy into GIMP 3's plug-ins folder) + zip."""
    gimp_build.build(out / "gimp")
    return gimp_build.archive_path(out / "gimp")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m plugins.build", description=__doc__.splitlines()[0])
    ap.add_argument("target", choices=sorted(TARGETS), nargs="+")
    ap.add_argument(
        "--out", type=Path, default=bundle.ROOT / "build" / "plugins", help="output dir (default build/plugins)"
    )
    ap.add_argument(
        "--check-python",
        action="append",
        default=[],
        metavar="EXE",
        help="also import the vendored packages with this interpreter (repeatable), e.g. /usr/bin/python3",
    )
    args = ap.parse_args(argv)
    for name in args.target:
        artifact = TARGETS[name](args.out.resolve())
        print(f"{name}: {artifact}")
        for python in args.check_python:
            vendor = next((p for p in (args.out / name).rglob("_vendor")), None) or next(
                (p for p in (args.out / name).rglob("vendor")), None
            )
            if vendor is not None:
                print(f"  {python}: {bundle.check_vendored(vendor.resolve(), python)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
