"""Things loaded from model files (upscalers, face restorers, LoRA factors, embeddings), kept for reuse.

Reading and building a network is the slow part of using one; the next job with the same file
gets the loaded object. Entries are keyed by the file's resolved path, size and mtime (a replaced
file loads again) and dropped least recently used first once their total size passes a byte
budget; the newest entry always stays, even alone over budget (it is the one in use).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Generic, TypeVar

import torch

T = TypeVar("T")
Stamp = tuple[int, int]  # size, mtime_ns


def nbytes(tensors: Iterable[torch.Tensor]) -> int:
    return sum(t.numel() * t.element_size() for t in tensors)


def module_bytes(module: torch.nn.Module) -> int:
    return nbytes([*module.parameters(), *module.buffers()])


class FileCache(Generic[T]):
    def __init__(self, budget: int, weigh: Callable[[T], int]) -> None:
        self.budget = budget
        self._weigh = weigh
        self._items: OrderedDict[str, tuple[Stamp, T, int]] = OrderedDict()  # path → stamp, value, bytes
        self._lock = threading.Lock()

    def get(self, path: Path, load: Callable[[Path], T]) -> T:
        """The object `load(path)` made, loaded now only if this file is not cached (or has changed)."""
        st = path.stat()
        key, stamp = str(path.resolve()), (st.st_size, st.st_mtime_ns)
        with self._lock:  # held while loading: two jobs never read the same file at once
            hit = self._items.pop(key, None)
            if hit is not None and hit[0] == stamp:
                self._items[key] = hit  # now the most recently used
                return hit[1]
            value = load(path)
            self._items[key] = (stamp, value, self._weigh(value))
            while len(self._items) > 1 and self.size > self.budget:
                self._items.popitem(last=False)
            return value

    @property
    def size(self) -> int:
        return sum(w for _, _, w in self._items.values())

    def __len__(self) -> int:
        return len(self._items)
