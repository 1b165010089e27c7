"""Upload de-duplication, client side (sans-I/O, pure Python): send an image the server already holds
by its content hash only, or only the rectangle that changed since the last image of the same name.

The client remembers which images it sent on this connection (their hashes, and the last raw image
per wire name for diffing). It can be wrong — the server drops images least recently used, or it
restarted — and then the server answers `need_image`: `forget` those and send the job again in full.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from ._wire import protocol
from .geometry import Rect
from .jobs import WireImage
from .pixels import crop

BPP = {"rgba8": 4, "gray8": 1}
# A patch is worth it while the changed rectangle is at most this share of the image.
PATCH_MAX_SHARE = 0.5


def wire_hash(img: WireImage) -> str | None:
    """The server's content hash of a raw image (None for encoded formats: their pixels are not here)."""
    if img.format not in BPP or img.w is None or img.h is None:
        return None
    return protocol.image_hash(img.format, img.w, img.h, img.data)


def changed_rect(old: bytes, new: bytes, w: int, h: int, bpp: int) -> Rect | None:
    """Bounding box of the pixels that differ between two same-size raw images; None when equal.
    Row compares and prefix bisection on bytes slices, so C does the scanning."""
    if old == new:
        return None
    stride = w * bpp
    rows = [y for y in range(h) if old[y * stride : (y + 1) * stride] != new[y * stride : (y + 1) * stride]]
    x0, x1 = w, 0
    for y in rows:
        a, b = old[y * stride : (y + 1) * stride], new[y * stride : (y + 1) * stride]
        x0 = min(x0, _common_prefix(a, b) // bpp)
        x1 = max(x1, w - _common_prefix(a[::-1], b[::-1]) // bpp)
    return Rect.from_bounds(x0, rows[0], x1, rows[-1] + 1)


def _common_prefix(a: bytes, b: bytes) -> int:
    lo, hi = 0, min(len(a), len(b))  # a[:lo] == b[:lo] holds; find the largest such lo
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if a[lo:mid] == b[lo:mid]:
            lo = mid
        else:
            hi = mid - 1
    return lo


@dataclass
class Uploads:
    """What this connection has sent: hashes (LRU, bounded) and the last raw image per wire name."""

    max_hashes: int = 64
    sent: OrderedDict[str, None] = field(default_factory=OrderedDict)
    last: dict[str, tuple[str, WireImage]] = field(default_factory=dict)

    def wire(self, name: str, img: WireImage) -> dict[str, Any]:
        """The image object to send for `img` under `name`: hash only, a patch, or bytes with the hash."""
        digest = wire_hash(img)
        if digest is None:
            return img.to_wire()
        if digest in self.sent:
            self._remember(name, digest, img)
            return {"hash": digest}
        obj = self._patch(name, img, digest) or img.to_wire() | {"hash": digest}
        self._remember(name, digest, img)
        return obj

    def forget(self, digests: list[str] | None = None) -> None:
        """The server lacks these (None: anything): they go in full next time."""
        if digests is None:
            self.sent.clear()
            self.last.clear()
            return
        for d in digests:
            self.sent.pop(d, None)
        self.last = {n: (d, img) for n, (d, img) in self.last.items() if d not in digests}

    def _patch(self, name: str, img: WireImage, digest: str) -> dict[str, Any] | None:
        prev = self.last.get(name)
        if prev is None or prev[0] not in self.sent:
            return None
        base_hash, base = prev
        if (base.format, base.w, base.h) != (img.format, img.w, img.h):
            return None
        assert img.w is not None and img.h is not None
        rect = changed_rect(base.data, img.data, img.w, img.h, BPP[img.format])
        if rect is None or rect.area > PATCH_MAX_SHARE * img.w * img.h:
            return None
        data = crop(img.data, img.w, BPP[img.format], rect.x, rect.y, rect.w, rect.h)
        return {
            "format": img.format,
            "w": rect.w,
            "h": rect.h,
            "data": data,
            "x": rect.x,
            "y": rect.y,
            "base": base_hash,
            "hash": digest,
        }

    def _remember(self, name: str, digest: str, img: WireImage) -> None:
        self.sent[digest] = None
        self.sent.move_to_end(digest)
        while len(self.sent) > self.max_hashes:
            self.sent.popitem(last=False)
        self.last[name] = (digest, img)
