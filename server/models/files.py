"""Finding model files in the folders A1111 / ComfyUI trees keep them in, and checking client names.

One walking policy for every kind of model file (`walk`):
- names starting with `.` (files and folders) are skipped: editor backups, `.git`, `.cache`…;
- symlinks are followed, to files and to folders, wherever they point: linking a model or a whole
  folder in from another disk is how people share one collection between tools;
- a symlinked folder that leads back to a folder already being walked above it is not entered
  again, so link loops end;
- broken links and unreadable folders are skipped;
- paths come back as found below the folder (a link's own path, not its target), in sorted order.
Clients only ever get names made from these paths, and a name is only ever looked up, never joined
onto a path (`check_name` refuses path-like names before any lookup).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import TypeVar

from ..errors import BadName

log = logging.getLogger(__name__)
T = TypeVar("T")


def walk(base: Path, *, recursive: bool = True, bundle: Callable[[Path], bool] | None = None) -> Iterator[Path]:
    """Files below `base` by the policy above (only its direct files unless `recursive`).

    A folder for which `bundle(folder)` holds (a diffusers model folder) is yielded itself and
    not entered."""

    def visit(folder: Path, above: frozenset[Path]) -> Iterator[Path]:
        try:
            with os.scandir(folder) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError:
            return
        for entry in entries:
            if entry.name.startswith("."):
                continue
            path = folder / entry.name
            try:
                is_dir, is_file = entry.is_dir(), entry.is_file()  # both follow symlinks
            except OSError:
                continue
            if is_file or (is_dir and bundle is not None and bundle(path)):
                yield path
            elif is_dir and recursive:
                real = path.resolve()
                if real not in above:
                    yield from visit(path, above | {real})

    base = Path(base)
    if base.is_dir():
        yield from visit(base, frozenset({base.resolve()}))


def find_files(root: Path, folders: Iterable[str], suffixes: tuple[str, ...], by_stem: bool = False) -> dict[str, Path]:
    """Name → file for every file with one of `suffixes` below `root/<folder>` (first folder wins).

    Names are the path inside the folder without suffix (`sub/name`), or just the stem when
    `by_stem` (A1111 names embeddings that way)."""
    found: dict[str, Path] = {}
    root = Path(root).resolve()
    for sub in folders:
        base = root / sub
        for path in walk(base):
            if path.suffix.lower() in suffixes:
                found.setdefault(path.stem if by_stem else path.relative_to(base).with_suffix("").as_posix(), path)
    return found


def discover_entries(
    root: Path,
    folders: Iterable[str],
    suffixes: tuple[str, ...],
    entry_for: Callable[[Path, str], T],
    bundle: Callable[[Path], bool] | None = None,
) -> dict[str, T]:
    """Name (path inside its folder, without suffix) → `entry_for(path, name)` for every file with one of
    `suffixes` (and every `bundle` folder) below `root/<folder>`; the first folder wins on a clash. What
    `entry_for` refuses (ValueError, OSError, KeyError: not that kind of model, unreadable) is skipped."""
    found: dict[str, T] = {}
    base_root = Path(root).resolve()
    for sub in folders:
        base = base_root / sub
        for path in walk(base, bundle=bundle):
            if path.is_file() and path.suffix.lower() not in suffixes:
                continue
            rel = path.relative_to(base)
            name = rel.with_suffix("").as_posix() if path.is_file() else rel.as_posix()
            if name in found:
                continue
            try:
                found[name] = entry_for(path, name)
            except (OSError, ValueError, KeyError) as exc:
                log.info("skipping %s: %s", path, exc)
    return found


def check_name(name: str, what: str = "model") -> None:
    """Refuse names that look like paths out of the models folder before any lookup."""
    if (
        not name
        or name.startswith(("/", "\\", "~"))
        or ".." in Path(name.replace("\\", "/")).parts
        or (len(name) > 1 and name[1] == ":")
        or "\x00" in name
    ):
        raise BadName(f"{what} name {name!r} is not allowed: use a name from the server's list")
