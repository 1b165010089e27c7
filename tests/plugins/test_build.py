"""Built plugins carry the one `Rect` (tiling/geometry.py) and the protocol core as vendored copies,
and their shared client imports with nothing of the repository (or site-packages) on the path."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

from plugins.build import build_krita
from plugins.bundle import COMMON_NAME, ROOT
from plugins.gimp import build as gimp_build

# Runs in `python -I -S` with only the built tree on sys.path: the vendored client must stand alone.
PROBE = """
import sys
sys.path[:0] = sys.argv[2:]
import importlib
common = __import__(sys.argv[1])
for name in ("geometry", "jobs", "_wire"):
    importlib.import_module(sys.argv[1] + "." + name)
r = common.geometry.Rect(2, 3, 4, 5)
assert type(r).__module__ == sys.argv[1] + "._geometry", type(r).__module__
assert common.geometry.mask_bounds(bytes([0, 255, 0, 0]), 2, 2) == common.geometry.Rect(1, 0, 1, 1)
assert r.padded(1).clamped(6, 6) == common.geometry.Rect(1, 2, 5, 4)
assert common.jobs.UpscaleRequest(region=r).params()["region"] == {"x": 2, "y": 3, "w": 4, "h": 5}
assert common._wire.protocol.__name__ == sys.argv[1] + "._protocol"
everything = {}
exec("from " + sys.argv[1] + " import *", everything)  # the editors' shims: every listed module imports
assert set(common.__all__) <= set(everything), set(common.__all__) - set(everything)
loaded = sorted(m for m in sys.modules if m.split(".")[0] in ("tiling", "server", "plugins", "numpy", "torch"))
assert not loaded, loaded
print("ok")
"""


def _probe(package: str, *paths: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-I", "-S", "-c", PROBE, package, *map(str, paths)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr


def test_krita_zip_vendors_the_one_rect(tmp_path: Path) -> None:
    archive = build_krita(tmp_path)
    with zipfile.ZipFile(archive) as zf:
        vendored = f"sdbridge/_vendor/{COMMON_NAME}"
        assert zf.read(f"{vendored}/_geometry.py") == (ROOT / "tiling" / "geometry.py").read_bytes()
        assert zf.read(f"{vendored}/_protocol.py") == (ROOT / "server" / "protocol.py").read_bytes()
        zf.extractall(tmp_path / "unzipped")
    _probe(COMMON_NAME, tmp_path / "unzipped" / "sdbridge" / "_vendor")  # `sdbridge` needs Krita; the client must not


def test_gimp_folder_vendors_the_one_rect(tmp_path: Path) -> None:
    vendor = gimp_build.build(tmp_path, archive=False) / "vendor"
    assert (vendor / COMMON_NAME / "_geometry.py").read_bytes() == (ROOT / "tiling" / "geometry.py").read_bytes()
    _probe(COMMON_NAME, vendor)


def test_krita_zip_has_folder_entries_for_kritas_importer(tmp_path: Path) -> None:
    # Krita's "Import Python Plugin from File" finds a plugin only through its `name/` folder entry
    # (plugin_importer.get_source_module); the host tests run that importer on both Kritas.
    with zipfile.ZipFile(build_krita(tmp_path)) as zf:
        names = zf.namelist()
    folders = {n.rsplit("/", 1)[0] + "/" for n in names if "/" in n.rstrip("/")}
    assert "sdbridge/" in names and "sdbridge/__init__.py" in names and "sdbridge.desktop" in names
    assert folders <= set(names), sorted(folders - set(names))


def test_the_shared_client_lists_every_module_for_the_editor_shims() -> None:
    """The Krita shim takes the shared client by `import *`: a module left out of `__all__` would be
    missing in the editor only."""
    import plugins.common

    modules = {p.stem for p in (ROOT / "plugins" / "common").glob("*.py") if not p.stem.startswith("_")}
    assert set(plugins.common.__all__) == modules
