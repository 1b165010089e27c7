"""The shared steps of every plugin build: copy the client, vendor pure-Python dependencies, zip.

The shared client (`plugins/common` + copies of `server/protocol.py` as `_protocol.py` and
`tiling/geometry.py`, the one `Rect`, as `_geometry.py`) and
pure-Python copies of `websockets` and `msgpack` taken from the *build environment's* installed
packages (compiled speedups are left out: msgpack falls back to `msgpack.fallback`, websockets to
its Python masking). Vendored code is never committed; outputs go to `build/` (git-ignored).
The targets (`plugins/build.py` for Krita, `plugins/gimp/build.py`) only lay out their own files.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import shutil
import subprocess
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PLUGINS = ROOT / "plugins"
VENDORED = ("websockets", "msgpack")
COMMON_NAME = "sdbridge_common"  # import name of the shared client inside a built plugin
# Our own pure-Python files the client shares with the server, copied next to it (never edited there).
SHARED_FILES = {"server/protocol.py": "_protocol.py", "tiling/geometry.py": "_geometry.py"}
# Not needed by the plugins and/or pulling optional third-party deps (trio) or C sources.
_SKIP_DIRS = {"__pycache__", "trio"}
_SKIP_SUFFIXES = (".so", ".pyd", ".c", ".pyc", ".dylib")


def ignore(_dir: str, names: list[str]) -> set[str]:
    return {n for n in names if n in _SKIP_DIRS or n.endswith(_SKIP_SUFFIXES)}


def copy_common(dest: Path) -> Path:
    """Copy the shared client to `dest` (a package dir) with the protocol core and `Rect` vendored in."""
    if dest.exists():
        shutil.rmtree(dest)
    shutil.copytree(PLUGINS / "common", dest, ignore=ignore)
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
        shutil.copytree(src, dest / name, ignore=ignore, dirs_exist_ok=True)
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


def zip_tree(tree: Path, zip_path: Path, base: Path | None = None) -> Path:
    """Zip everything under `tree`, named relative to `base` (default: `tree` itself), folders as
    their own `name/` entries: Krita's "Import Python Plugin from File" finds a plugin only by its
    folder entry. Unix modes are kept (zipfile stores them), so an unzipped GIMP entry point stays
    executable."""
    zip_path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(zip_path, "w", zipfile.ZIP_DEFLATED) as zf:
        for path in sorted(tree.rglob("*")):
            if path.is_file() or path.is_dir():
                zf.write(path, path.relative_to(base or tree).as_posix())  # a folder gets a "name/" entry
    return zip_path


def fill_vendor(vendor: Path) -> list[str]:
    """A plugin's vendor folder (a sys.path entry of the plugin): the shared client as the top-level
    `sdbridge_common` (a name nothing else on an editor's path uses) plus the pure-Python deps."""
    copy_common(vendor / COMMON_NAME)
    return vendor_packages(vendor)
