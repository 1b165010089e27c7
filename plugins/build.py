"""Build installable editor plugins: `python -m plugins.build krita [--out DIR]`.

Each target assembles a plugin tree with the shared client (`plugins/common` + copies of
`server/protocol.py` as `_protocol.py` and `tiling/geometry.py` as `_geometry.py`) and
pure-Python copies of `websockets` and `msgpack` taken from the *build environment's* installed
packages (compiled speedups are left out: msgpack falls back to `msgpack.fallback`, websockets
to its Python masking). Vendored code is never committed; outputs go to `build/` (git-ignored).

Adding a target: write `def build_x(out: Path) -> Path` and decorate it with `@target("x")`.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.metadata
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PLUGINS = ROOT / "plugins"
VENDORED = ("websockets", "msgpack")
# Our own pure-Python files the client shares with the server, copied next to it (never edited there).
SHARED_FILES = {"server/protocol.py": "_protocol.py", "tiling/geometry.py": "_geometry.py"}
# Not needed by the plugins and/or pulling optional third-party deps (trio) or C sources.
_SKIP_DIRS = {"__pycache__", "trio"}
_SKIP_SUFFIXES = (".so", ".pyd", ".c", ".pyc", ".dylib")

TARGETS: dict[str, Callable[[Path], Path]] = {}


def target(name: str) -> Callable[[Callable[[Path], Path]], Callable[[Path], Path]]:
    def register(fn: Callable[[Path], Path]) -> Callable[[Path], Path]:
        TARGETS[name] = fn
        return fn

    return register


def _ignore(_dir: str, names: list[str]) -> set[str]:
    return {n for n in names if n in _SKIP_DIRS or n.endswith(_SKIP_SUFFIXES)}


def copy_common(dest: Path) -> Path:
    """Copy the shared client to `dest` (a package dir) with the protocol core and `Rect` vendored in."""
    if dest.exists():
        shutil.rmtree(dest)
    shutil.copytree(PLUGINS / "common", dest, ignore=_ignore)
    for source, name in SHARED_FILES.items():
        shutil.copy2(ROOT / source, dest / name)
    return dest


def vendor_packages(dest: Path, names: tuple[str, ...] = VENDORED) -> list[str]:
    """Copy pure-Python sources of installed packages into `dest` (a sys.path entry).
    Returns `name==version` lines, also written to `dest/VENDORED.txt`."""
    dest.mkdir(parents=True, exist_ok=True)
    lines = []
    for name in names:
        mod = importlib.import_module(name)
        src = Path(mod.__file__ or "").parent
        shutil.copytree(src, dest / name, ignore=_ignore, dirs_exist_ok=True)
        version = importlib.metadata.version(name)
        lines.append(f"{name}=={version}")
        try:
            dist = importlib.metadata.distribution(name)
            for f in dist.files or []:
                if "LICENSE" in f.name.upper() or "COPYING" in f.name.upper():
                    shutil.copy2(Path(str(dist.locate_file(f))), dest / f"{name}-{f.name}")
        except (OSError, importlib.metadata.PackageNotFoundError):
            pass  # licence files are nice to have; the code is what matters
    (dest / "VENDORED.txt").write_text("\n".join(lines) + "\n")
    return lines


def check_vendored(vendor: Path, python: str) -> str:
    """Import the vendored packages in a clean interpreter (no site-packages) to prove they are
    pure Python and self-contained. Returns the interpreter's report; raises on failure."""
    code = (
        "import sys; sys.path.insert(0, sys.argv[1]);"
        "import msgpack, websockets; from websockets.asyncio.client import connect;"
        "assert msgpack.Packer.__module__ == 'msgpack.fallback', msgpack.Packer.__module__;"
        "assert msgpack.unpackb(msgpack.packb({'a': b'x'})) == {'a': b'x'};"
        "assert websockets.__file__.startswith(sys.argv[1]), websockets.__file__;"
        "print(sys.version.split()[0], 'websockets', websockets.__version__, 'msgpack', msgpack.version)"
    )
    out = subprocess.run([python, "-I", "-S", "-c", code, str(vendor)], capture_output=True, text=True, timeout=60)
    if out.returncode:
        raise RuntimeError(f"vendored packages do not import under {python}:\n{out.stderr}")
    return out.stdout.strip()


def _zip_dir(tree: Path, zip_path: Path) -> Path:
    zip_path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(zip_path, "w", zipfile.ZIP_DEFLATED) as zf:
        for path in sorted(tree.rglob("*")):
            if path.is_file():
                zf.write(path, path.relative_to(tree).as_posix())
    return zip_path


@target("krita")
def build_krita(out: Path) -> Path:
    """`sdbridge.desktop` + `sdbridge/` package, the layout Krita's "Import Python Plugin from File" expects."""
    stage = out / "krita"
    if stage.exists():
        shutil.rmtree(stage)
    pkg = stage / "sdbridge"
    shutil.copytree(PLUGINS / "krita", pkg, ignore=_ignore)
    (pkg / "sdbridge.desktop").replace(stage / "sdbridge.desktop")  # must sit NEXT TO the package
    copy_common(pkg / "common")
    vendor_packages(pkg / "_vendor")
    return _zip_dir(stage, out / "sdbridge-krita.zip")


# --- gimp target (owned by plugins/gimp; the logic lives in plugins/gimp/build.py) ---
@target("gimp")
def build_gimp(out: Path) -> Path:
    """`gimp/sdbridge/` plug-in folder (copy into GIMP 3's plug-ins folder) + zip."""
    from plugins.gimp.build import archive_path, build

    build(out / "gimp")
    return archive_path(out / "gimp")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m plugins.build", description=__doc__.splitlines()[0])
    ap.add_argument("target", choices=sorted(TARGETS), nargs="+")
    ap.add_argument("--out", type=Path, default=ROOT / "build" / "plugins", help="output dir (default build/plugins)")
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
                print(f"  {python}: {check_vendored(vendor.resolve(), python)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
