"""The processes a test started itself: found by walking down from its own child's pid (Linux /proc).

Tests end only these, by pid. Looking processes up by command line across the machine would also
find other checkouts' suites running at the same time (a second GIMP, a second server).
"""

from __future__ import annotations

import contextlib
import os
import signal
from pathlib import Path

PROC = Path("/proc")


def _parents() -> dict[int, int]:
    """pid → parent pid for every process visible now."""
    out: dict[int, int] = {}
    for entry in PROC.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:  # exited while we looked
            continue
        # "pid (comm) state ppid …": comm may hold spaces and parentheses, so split after the last ")"
        out[int(entry.name)] = int(stat.rpartition(")")[2].split()[1])
    return out


def descendants(pid: int) -> list[int]:
    """Every living process below `pid` (children first, then theirs), `pid` itself excluded."""
    children: dict[int, list[int]] = {}
    for child, parent in _parents().items():
        children.setdefault(parent, []).append(child)
    found: list[int] = []
    todo = [pid]
    while todo:
        kids = children.get(todo.pop(0), [])
        found += kids
        todo += kids
    return found


def argv(pid: int) -> list[str]:
    try:
        raw = (PROC / str(pid) / "cmdline").read_bytes()
    except OSError:
        return []
    return [a for a in raw.decode(errors="replace").split("\0") if a]


def find_descendant(pid: int, needle: str) -> tuple[int, list[str]] | None:
    """The first process below `pid` with `needle` in one of its arguments."""
    for child in descendants(pid):
        args = argv(child)
        if any(needle in a for a in args):
            return child, args
    return None


def kill_tree(pid: int) -> None:
    """SIGKILL `pid` and everything below it (collected first, so re-parented orphans are not missed)."""
    for target in [pid, *descendants(pid)]:
        with contextlib.suppress(ProcessLookupError):
            os.kill(target, signal.SIGKILL)
