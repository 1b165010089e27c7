"""A job's outcome as wire events: result rectangles in the requested format, and failures by code."""

from __future__ import annotations

import contextlib
import logging
from typing import Any

from . import images
from .jobs.base import JobResult, ResultFormat, ResultImage
from .protocol import error_event

log = logging.getLogger(__name__)
Event = dict[str, Any]

# What allocators say when they fail (torch's CPU allocator raises RuntimeError, not MemoryError).
_OOM_TEXT = ("out of memory", "can't allocate memory", "cannot allocate memory", "defaultcpuallocator")


def rect_event(img: ResultImage, fmt: ResultFormat) -> Event:
    px = img.pixels
    h, w = px.shape[:2]
    rect: Event = {"x": img.x, "y": img.y, "w": w, "h": h}
    if fmt == "rgba8":
        rect |= {"format": "rgba8", "data": images.rgba8_bytes(px)}
    elif fmt == "webp":
        rect |= {"format": "webp", "data": images.encode_webp(px)}
    else:
        rect |= {"format": "png", "data": images.encode_png(px)}
    if img.seed is not None:
        rect["seed"] = img.seed
    if img.name is not None:
        rect["name"] = img.name
    return rect


def result_event(job_id: str, result: JobResult, fmt: ResultFormat) -> Event:
    ev: Event = {
        "type": "result",
        "id": job_id,
        "images": [rect_event(img, fmt) for img in result.images],
        "params": result.params | {"result_format": fmt},  # every kind reports the encoding it used
    }
    if result.canvas is not None:
        ev["canvas"] = {"w": result.canvas[0], "h": result.canvas[1]}
    return ev


def failure_event(job_id: str, exc: BaseException) -> Event:
    """An unexpected failure: allocator failures (GPU or CPU) are `out_of_memory`, the rest `job_failed`."""
    import torch

    text = str(exc).lower()
    gpu = isinstance(exc, torch.cuda.OutOfMemoryError) or ("cuda" in text and "out of memory" in text)
    if gpu or isinstance(exc, MemoryError) or any(t in text for t in _OOM_TEXT):
        with contextlib.suppress(Exception):  # best effort on a device that may be gone
            torch.cuda.empty_cache()
        where = "the GPU" if gpu else "the server (CPU memory)"
        detail = f": {exc}" if str(exc) else ""
        return error_event("out_of_memory", f"{where} ran out of memory{detail}. Try a smaller size or batch.", job_id)
    log.error("job %s failed", job_id, exc_info=exc)
    return error_event("job_failed", f"{type(exc).__name__}: {exc}", job_id)
