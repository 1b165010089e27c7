"""Uploaded images held by content hash, so a client can refer to an image it sent before, or send
only the rectangle that changed since (docs/protocol.md, "Image object"). Bounded: least recently
used images go first once the byte budget is reached.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping

import numpy as np

from .images import to_gray
from .protocol import ImageRef, NeedImage, ProtocolError, image_hash

Decode = Callable[[str, ImageRef], np.ndarray]  # name, ref -> pixels (limits enforced)


def pixels_hash(pixels: np.ndarray) -> str:
    """`protocol.image_hash` of decoded pixels: HxWx4 RGBA or HxW gray."""
    h, w = pixels.shape[:2]
    layout = "gray8" if pixels.ndim == 2 else "rgba8"
    return image_hash(layout, w, h, memoryview(np.ascontiguousarray(pixels)).cast("B"))


class ImageStore:
    """Thread-safe (jobs are parsed off the event loop), LRU within `max_bytes`."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._images: OrderedDict[str, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()
        self.size = 0

    def __contains__(self, digest: str) -> bool:
        with self._lock:
            return digest in self._images

    def __len__(self) -> int:
        with self._lock:
            return len(self._images)

    def get(self, digest: str) -> np.ndarray | None:
        """The held pixels (read-only), or None."""
        with self._lock:
            pixels = self._images.get(digest)
            if pixels is not None:
                self._images.move_to_end(digest)
            return pixels

    def put(self, digest: str, pixels: np.ndarray) -> None:
        """Hold `pixels` under `digest`; an image larger than the whole budget is not held."""
        if pixels.nbytes > self.max_bytes:
            return
        held = np.ascontiguousarray(pixels).copy()
        held.setflags(write=False)
        with self._lock:
            old = self._images.pop(digest, None)
            if old is not None:
                self.size -= old.nbytes
            self._images[digest] = held
            self.size += held.nbytes
            while self.size > self.max_bytes:
                _, dropped = self._images.popitem(last=False)
                self.size -= dropped.nbytes

    def missing(self, refs: Mapping[str, ImageRef]) -> list[str]:
        """Names whose `hash` (hash-only) or `base` (patch) this store does not hold."""
        with self._lock:
            return [
                name
                for name, ref in refs.items()
                if (ref.by_hash and ref.hash not in self._images)
                or (ref.base is not None and ref.base not in self._images)
            ]

    def materialize(self, name: str, ref: ImageRef, decode: Decode, job_id: str | None = None) -> np.ndarray:
        """The pixels `ref` stands for (a fresh array the job may change); images sent with a `hash`
        are checked against it and held for later references."""
        if ref.by_hash:
            assert ref.hash is not None
            return self._held(name, ref.hash, job_id).copy()
        pixels = decode(name, ref)
        if ref.base is not None:
            pixels = _patched(name, self._held(name, ref.base, job_id), pixels, ref, job_id)
        if ref.hash is not None:
            actual = pixels_hash(pixels)
            if actual != ref.hash:
                what = "the patched image" if ref.base is not None else "the decoded pixels"
                raise ProtocolError("bad_image", f"images.{name}.hash: {what} hash to {actual}", job_id)
            self.put(ref.hash, pixels)
        return pixels

    def _held(self, name: str, digest: str, job_id: str | None) -> np.ndarray:
        pixels = self.get(digest)
        if pixels is None:  # dropped since `missing` was asked: the client resends it
            raise NeedImage([name], job_id)
        return pixels


def _patched(name: str, base: np.ndarray, patch: np.ndarray, ref: ImageRef, job_id: str | None) -> np.ndarray:
    if patch.ndim == 2 and base.ndim == 3:
        raise ProtocolError("bad_image", f"images.{name}: a gray8 patch cannot change an RGBA image", job_id)
    if patch.ndim == 3 and base.ndim == 2:
        patch = to_gray(patch)  # an encoded patch of a mask: read as any mask image is
    ph, pw = patch.shape[:2]
    bh, bw = base.shape[:2]
    if ref.x + pw > bw or ref.y + ph > bh:
        raise ProtocolError(
            "bad_image",
            f"images.{name}: patch {pw}x{ph} at ({ref.x}, {ref.y}) reaches outside the {bw}x{bh} base image",
            job_id,
        )
    out = base.copy()
    out[ref.y : ref.y + ph, ref.x : ref.x + pw] = patch
    return out
