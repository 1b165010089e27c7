"""Finding model files of one kind in the folders A1111 / ComfyUI trees keep them in."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path


def find_files(
    root: Path, folders: Iterable[str], suffixes: tuple[str, ...], by_stem: bool = False, inside_root: bool = False
) -> dict[str, Path]:
    """Name → file for every file with one of `suffixes` below `root/<folder>` (first folder wins).

    Names are the path inside the folder without suffix (`sub/name`), or just the stem when
    `by_stem` (A1111 names embeddings that way). Hidden files and folders are skipped; folders
    outside `root` are never searched, and with `inside_root` neither are files that resolve there
    through a symlink. Clients only ever get these names, never a path join.
    """
    found: dict[str, Path] = {}
    root = Path(root).resolve()
    for sub in folders:
        base = (root / sub).resolve()
        if not base.is_dir() or not base.is_relative_to(root):
            continue
        for path in sorted(base.rglob("*")):
            rel = path.relative_to(base)
            if path.suffix.lower() not in suffixes or any(p.startswith(".") for p in rel.parts):
                continue
            if not path.is_file() or (inside_root and not path.resolve().is_relative_to(root)):
                continue
            found.setdefault(path.stem if by_stem else rel.with_suffix("").as_posix(), path)
    return found
